"""Measure again, in a store swept before a kernel change, the standard preset's points
whose plan the change altered (with the dense baselines of their shapes); the other points
run exactly as before.

Usage::

    python benchmarks/remeasure_changed_points.py STORE.db CHANGE [PASSES]   # PASSES: 6

CHANGE is one of

- ``conv-planes``: the direct convolution's phase planes moved apart
  (``kernels_c.conv._plane_stride``, thirty-second session): its points whose input layout
  changed, and the im2col points of the same shapes, threads and cache;
- ``spmm-slices``: our spmm's L1-sized K-block slices copied, and on AVX2 N tiles taken,
  where B's rows alias in L1 (``kernels_c.spmm._slice_overflows_l1``, thirty-third
  session): its points whose plan changed, and the BLAS points of the same shapes,
  threads and cache.

Prints how many points it measures; ``--dry-run`` as the last argument only counts them.
docs/conv.md and docs/spmm.md have what the stores gave.
"""

from __future__ import annotations

import sys


def _shape_key(p):
    return tuple(sorted(p.problem.dims.items())), p.threads, p.cache


def conv_planes(spec):
    """The direct-convolution points whose planes now lie apart."""
    import kernels_c.conv as kc

    level = kc._isa.resolve(None, kc.IMPLEMENTED)[0]
    changed = []
    for p in spec.points:
        if p.kernel != "conv_direct_sparse_f32":
            continue
        d = p.problem.dims
        geo = kc.ConvGeometry(d["c"], d["h"], d["w"], d["o"], d["r"], d["s"], d["stride"],
                              d["padding"], d["groups"])
        full = {**kc.default_params(geo, level, 1 - p.problem.sparsity), **dict(p.params)}
        if full["pointwise"] and kc.is_pointwise(geo):
            continue
        layout = kc.tile_layout(geo, level, full)
        hq, wq = kc._phase_dims(geo, kc.VECTOR_WIDTH[level] if layout[4] else 1)
        if kc._plane_stride(*layout) != hq * wq:
            changed.append(p)
    return changed, "conv_im2col_blas_f32"


def spmm_slices(spec):
    """Our spmm's points whose plan the aliased-slice rules change: K blocks of an N tile
    now read from copied slices, or (AVX2) N tiles where there were none
    (``_SLICE_ALIASED_B``, ``_ALIASED_L1_N_TILES``). B's alignment, which can add a copy
    of B, is not known before the run and not checked."""
    import importlib

    spmm = importlib.import_module("kernels_c.spmm")
    level = spmm._isa.resolve(None, spmm.IMPLEMENTED)[0]

    def plan(p, rules):
        spmm._SLICE_ALIASED_B = spmm._ALIASED_L1_N_TILES = rules
        try:
            d = p.problem.dims
            m, n, k, density = d["m"], d["n"], d["k"], 1 - p.problem.sparsity
            full = {**spmm.default_params(m, k, n, density, level), **dict(p.params)}
            return full, spmm._slices_b(full, level, m, k, n, round(density * m * k), 0)
        finally:
            spmm._SLICE_ALIASED_B = spmm._ALIASED_L1_N_TILES = True

    changed = [p for p in spec.points
               if p.kernel == "spmm_csr_f32" and plan(p, False) != plan(p, True)]
    return changed, "gemm_blas_f32"


CHANGES = {"conv-planes": conv_planes, "spmm-slices": spmm_slices}


def main(store: str, change: str, passes: int, dry_run: bool) -> None:
    from dataclasses import replace

    from perfmodel._sweep import load_spec, sweep

    spec = load_spec("standard")
    changed, dense_kernel = CHANGES[change](spec)
    shapes = {_shape_key(p) for p in changed}
    dense = [p for p in spec.points if p.kernel == dense_kernel and _shape_key(p) in shapes]
    print(f"{change}: {len(changed)} points changed, {len(dense)} dense baselines")
    if not dry_run:
        print(sweep(replace(spec, points=changed + dense, passes=1), store, remeasure=True,
                    progress=False, passes=passes))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--dry-run"]
    if not 2 <= len(args) <= 3 or args[1] not in CHANGES:
        sys.exit(__doc__)
    main(args[0], args[1], int(args[2]) if len(args) > 2 else 6, "--dry-run" in sys.argv[1:])
