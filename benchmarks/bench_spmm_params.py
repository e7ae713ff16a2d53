"""spmm default parameters against variants, side by side with dense BLAS in one process.

For each shape and sparsity: dense OpenBLAS (numpy), ``kernels_c.spmm`` with its defaults,
and each ``--variant`` (the defaults with some parameters overridden), timed in interleaved
rounds over three allocations of B (numpy's alignment of B varies between allocations);
prints each one's speed relative to dense (median). How docs/spmm.md compared the default
K blocks, row blocks and the aligned copy of B:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_spmm_params.py \\
        --variant k_block=64 --variant row_block=32 --variant pack=0

``pack=0`` turns off the aligned copy of B (taken when N is not a multiple of the vector
width; when it is but B is misaligned and each row of B serves >= 48 nonzeros, or >= 4
below two register tiles of N, the peel runs instead; or for narrow N when B is
misaligned), ``order=0`` keeps the rows of a
narrow-N plan (or of K blocks under tiles of up to 4 vectors) in place instead of sorted
by length, ``slice=0`` lets K blocks under N tiles read B in place instead of a copy of
their slice, and K blocks read the whole aligned copy of B where B is copied (instead of
copying it slice by slice), ``index16=0`` keeps int32 column indices in narrow-N plans,
``apart=0`` reads a sliced last column that alone takes a vector of the register tiles
(N = 49) as a masked vector instead of apart, ``phase=0`` copies B (whole or slice by
slice) where K blocks would read its rows by phase in place, ``b_offset=F`` runs on a
copy of B placed F floats past a cache line (numpy usually leaves large arrays 4 past
one); every other name
is a ``kernels_c.spmm`` parameter. How docs/spmm.md compared a misaligned B with an
aligned one below two register tiles (eighteenth session):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_spmm_params.py \
        --shape 256x2304x32 --shape 256x2304x96 --shape 256x2304x192 --shape 64x1152x192 \
        --sparsities 0.5,0.7,0.9,0.95 --rounds 5 --variant b_offset=0 --variant b_offset=4
``--one-shot`` times the preparation instead: ``plan_spmm``, ``plan.run()`` and one
``kernels_c.spmm`` call (both) per problem.
``--row-lengths 1,8,16,...`` times rows of exactly that many nonzeros instead (M = 16384,
K = 1024, N = 8 unless ``--shape``; B in L1): nanoseconds per row of a prepared run,
scipy's CSR product side by side.
``--shape MxKxN`` (repeatable) replaces the built-in shapes. ``--dlmc`` adds three pruned
ResNet-50 layers (sparsity 0.7, 0.8, 0.9) from ../shared/data when present. ``--narrow``
runs 4096 x 4096 with N = 2, 4, 8, 16 instead of the wide shapes; how docs/spmm.md compared
the narrow-N K blocks with none:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_spmm_params.py \
        --narrow --sparsities 0.5,0.8,0.9,0.95,0.98 --variant k_block=0

``--cold`` runs a 192 MiB STREAM triad (untimed) before every timed call, so A, B and C
come from DRAM as in bench_spmm.py's narrow shapes (twenty-fourth session, N = 8):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_spmm_params.py \
        --shape 4096x4096x8 --sparsities 0.9,0.95,0.98 --rounds 3 --cold \
        --variant k_block=512 --variant k_block=256 --variant k_block=0
"""

from __future__ import annotations

import argparse
import functools
import importlib
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# the module (kernels_c.spmm the attribute is the function of the same name)
spmm_module = importlib.import_module("kernels_c.spmm")
from kernels_c._memory import placed_copy  # noqa: E402
from perfmodel.shapes import load_matrix, matrix_sources  # noqa: E402

DLMC = ROOT.parent / "shared" / "data" / "dlmc" / "rn50"
DLMC_LAYERS = ("bottleneck_2_block_group3_1_1", "bottleneck_3_block_group3_2_1",
               "bottleneck_2_block_group4_1_1")

SHAPES = [(4096, 4096, 128), (1024, 1024, 256), (384, 2304, 1352), (2048, 2048, 128),
          (256, 2304, 196), (128, 1152, 784), (512, 4608, 49), (2048, 1024, 49),
          (1024, 256, 196), (64, 576, 3136)]
NARROW_SHAPES = [(4096, 4096, n) for n in (2, 4, 8, 16)]


def _variant(text: str) -> dict[str, int]:
    out = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        out[name.strip()] = int(value)
    return out


def _in_row_order(lengths: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Stand-in for spmm's row order that keeps every row in place (``order=0``)."""
    return np.tile(np.arange(lengths.shape[1], dtype=np.int32), (lengths.shape[0], 1))


def _plan(a: sp.csr_array, b: np.ndarray, overrides: dict[str, int]):
    switches = ("pack", "order", "slice", "index16", "apart", "phase", "b_offset")
    params = {k: v for k, v in overrides.items() if k not in switches}
    if "b_offset" in overrides:  # the same B, that many floats past a cache line
        b = placed_copy(b, overrides["b_offset"])
    names = ("_MIN_USES_TO_PACK", "_row_order", "_MIN_USES_TO_SLICE", "_SLICE_COPIED_B",
             "_MAX_INDEX16_BLOCK", "_COLUMN_APART_ISAS", "_PHASED_B_ISAS")
    saved = {name: getattr(spmm_module, name) for name in names}
    if overrides.get("pack", 1) == 0:
        spmm_module._MIN_USES_TO_PACK = sys.maxsize  # never copy B
    if overrides.get("order", 1) == 0:
        spmm_module._row_order = _in_row_order  # same layout, rows not sorted by length
    if overrides.get("slice", 1) == 0:
        spmm_module._MIN_USES_TO_SLICE = sys.maxsize  # K blocks read B in place
        spmm_module._SLICE_COPIED_B = False  # ... or from the whole copy of B
    if overrides.get("index16", 1) == 0:
        spmm_module._MAX_INDEX16_BLOCK = 0  # int32 indices
    if overrides.get("apart", 1) == 0:
        spmm_module._COLUMN_APART_ISAS = ()  # the last column in a masked vector
    if overrides.get("phase", 1) == 0:
        spmm_module._PHASED_B_ISAS = ()  # B copied for K blocks, not read by phase
    try:
        return spmm_module.plan_spmm(a, b, **params)
    finally:
        for name, value in saved.items():
            setattr(spmm_module, name, value)


def _shape(text: str) -> tuple[int, int, int]:
    m, k, n = (int(x) for x in text.lower().split("x"))
    return m, k, n


def _problems(args: argparse.Namespace, rng: np.random.Generator):
    """Yield (label, CSR matrix with int32 indices, N)."""
    shapes = args.shape or (NARROW_SHAPES if args.narrow else SHAPES)[:args.shapes]
    for m, k, n in shapes:
        for s in (float(x) for x in args.sparsities.split(",")):
            a = sp.random_array((m, k), density=1 - s, format="csr", dtype=np.float32,
                                rng=rng)
            a.indices, a.indptr = a.indices.astype(np.int32), a.indptr.astype(np.int32)
            yield f"{m}x{k}x{n} {s:g}", a, n
    if args.dlmc and DLMC.is_dir():
        for layer in DLMC_LAYERS:
            for s in ("0.7", "0.8", "0.9"):
                src = matrix_sources(DLMC / "magnitude_pruning" / s / f"{layer}.smtx")[0]
                yield f"{layer} {s}", load_matrix(src.path, seed=1), src.n_hint


def _median_time(f, reps: int, flush=None) -> float:
    """Median of ``reps`` timed calls of ``f`` after one untimed one; ``flush`` (untimed)
    before each call when given."""
    f()
    times = []
    for _ in range(reps):
        if flush is not None:
            flush()
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _cache_flush():
    """bench_spmm.py's STREAM triad (3 x 64 MiB): A, B and C leave every cache level."""
    from bench_spmm import stream_contenders

    return stream_contenders(1)[0]["triad"]


def _one_shot(args: argparse.Namespace) -> int:
    """Milliseconds (median) to prepare a plan (validation, copies of B and A), to run it,
    and for one ``kernels_c.spmm`` call (a plan for one call, then its run)."""
    rng = np.random.default_rng(0)
    print("problem  plan_ms  run_ms  spmm()_ms  spmm()/run")
    with threadpool_limits(1):
        for label, a, n in _problems(args, rng):
            b = rng.standard_normal((a.shape[1], n), dtype=np.float32)
            plan = spmm_module.plan_spmm(a, b)
            t_plan = _median_time(functools.partial(spmm_module.plan_spmm, a, b), 5)
            t_run = _median_time(plan.run, 9)
            t_call = _median_time(functools.partial(spmm_module.spmm, a, b), 9)
            print(f"{label}  {t_plan * 1e3:7.2f}  {t_run * 1e3:6.2f}  {t_call * 1e3:9.2f}  "
                  f"{t_call / t_run:10.2f}", flush=True)
    return 0


def _row_lengths(args: argparse.Namespace) -> int:
    """Per row of exactly L nonzeros (sorted random columns, values 1): nanoseconds of a
    prepared ``kernels_c.spmm`` run and of scipy's product, medians of 41 calls."""
    rng = np.random.default_rng(0)
    m, k, n = args.shape[0] if args.shape else (16384, 1024, 8)
    print(f"M={m} K={k} N={n}\n    L  ours_ns/row  scipy_ns/row  scipy/ours")
    with threadpool_limits(1):
        for length in (int(x) for x in args.row_lengths.split(",")):
            if not 0 <= length <= k:
                raise SystemExit(f"--row-lengths: {length} is not in [0, K={k}]")
            idx = np.concatenate([np.sort(rng.choice(k, length, replace=False))
                                  for _ in range(m)]).astype(np.int32)
            indptr = np.arange(m + 1, dtype=np.int32) * length
            a = sp.csr_array((np.ones(idx.size, np.float32), idx, indptr), shape=(m, k))
            b = rng.standard_normal((k, n), dtype=np.float32)
            ours = _median_time(spmm_module.plan_spmm(a, b).run, 41) / m * 1e9
            theirs = _median_time(functools.partial(a.__matmul__, b), 41) / m * 1e9
            print(f"{length:5d}  {ours:11.2f}  {theirs:12.2f}  {theirs / ours:10.2f}",
                  flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", action="append", default=[],
                    help="parameters overriding the defaults, e.g. k_block=64,row_block=32")
    ap.add_argument("--sparsities", default="0.55,0.7,0.9")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per B")
    ap.add_argument("--shapes", type=int, default=len(SHAPES), help="the first N shapes")
    ap.add_argument("--dlmc", action="store_true", help="also three DLMC ResNet-50 layers")
    ap.add_argument("--narrow", action="store_true", help="N = 2, 4, 8, 16 (4096 x 4096)")
    ap.add_argument("--shape", action="append", type=_shape, metavar="MxKxN",
                    help="these shapes instead (repeatable), e.g. 768x512x128")
    ap.add_argument("--one-shot", action="store_true",
                    help="time plan_spmm, plan.run and spmm() (plan + run) with defaults")
    ap.add_argument("--row-lengths", metavar="L1,L2,...",
                    help="time rows of exactly these many nonzeros (ns per row)")
    ap.add_argument("--cold", action="store_true",
                    help="run a 192 MiB STREAM triad before every timed call (operands "
                         "from DRAM, as bench_spmm's narrow shapes see them)")
    args = ap.parse_args()
    if args.row_lengths:
        return _row_lengths(args)
    if args.one_shot:
        return _one_shot(args)
    variants = {"default": {}, **{v: _variant(v) for v in args.variant}}
    rng = np.random.default_rng(0)
    flush = _cache_flush() if args.cold else None
    print("problem " + " ".join(f"[{v}]" for v in variants) + "  (speed / dense)")
    with threadpool_limits(1):
        for label, a, n in _problems(args, rng):
            k = a.shape[1]
            dense_a = a.toarray()
            times: dict[str, list[float]] = {"dense": [], **{v: [] for v in variants}}
            for _ in range(3):
                b = rng.standard_normal((k, n), dtype=np.float32)
                plans = {v: _plan(a, b, o) for v, o in variants.items()}
                dense_run = functools.partial(np.matmul, dense_a, b)
                for _ in range(args.rounds):
                    times["dense"].append(_median_time(dense_run, 3, flush))
                    for v, plan in plans.items():
                        times[v].append(_median_time(plan.run, 5, flush))
            dense = statistics.median(times["dense"])
            cells = " ".join(f"{dense / statistics.median(times[v]):.2f}" for v in variants)
            print(f"{label} {cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
