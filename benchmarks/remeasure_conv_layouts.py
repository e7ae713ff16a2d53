"""Measure again, in a store swept before the direct convolution's phase planes were moved
apart (``kernels_c.conv._plane_stride``, thirty-second session), the standard preset's
direct-convolution points whose input layout changed, with their dense baselines.

Usage::

    python benchmarks/remeasure_conv_layouts.py STORE.db [PASSES]     # PASSES: 6

The other direct points run exactly as before (same layout). Prints how many points it
measures; ``--dry-run`` as the last argument only counts them. docs/conv.md has what the
thirty-first session's store gave.
"""

from __future__ import annotations

import sys


def changed_points(spec):
    """The spec's direct-convolution points whose planes now lie apart, and the im2col
    points of the same shapes, threads and cache."""
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
    shapes = {(tuple(sorted(p.problem.dims.items())), p.threads, p.cache) for p in changed}
    dense = [p for p in spec.points if p.kernel == "conv_im2col_blas_f32"
             and (tuple(sorted(p.problem.dims.items())), p.threads, p.cache) in shapes]
    return changed, dense


def main(store: str, passes: int, dry_run: bool) -> None:
    from dataclasses import replace

    from perfmodel._sweep import load_spec, sweep

    spec = load_spec("standard")
    changed, dense = changed_points(spec)
    print(f"{len(changed)} direct-convolution points moved, {len(dense)} dense baselines")
    if not dry_run:
        print(sweep(replace(spec, points=changed + dense, passes=1), store, remeasure=True,
                    progress=False, passes=passes))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--dry-run"]
    if not 1 <= len(args) <= 2:
        sys.exit(__doc__)
    main(args[0], int(args[1]) if len(args) > 1 else 6, "--dry-run" in sys.argv[1:])
