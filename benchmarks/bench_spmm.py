"""Side-by-side benchmark: kernels_c.spmm vs scipy CSR vs MKL (sparse_dot_mkl) vs dense BLAS.

Everything runs in one process, interleaved (one repeat of every contender per round), with
BLAS/MKL threads limited to the thread count under test by threadpoolctl. Sparse weights
are prepared once (``plan_spmm``, like prepacked weights); times are medians.

    python benchmarks/bench_spmm.py                  # DLMC ResNet-50 + synthetic, 1 and 2 threads
    python benchmarks/bench_spmm.py --quick          # fewer shapes
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_spmm.py

MKL runs twice: on B as the other contenders get it, 16 bytes past a cache line ("mkl"), and
on a copy of B that starts on one ("mkl64"), where MKL is fastest.

Prints, per shape, speed relative to dense BLAS for each sparsity, the crossover sparsity
(where each sparse kernel starts to beat dense, linearly interpolated), and for N <= 8 the
fraction of STREAM-triad bandwidth our kernel reaches (bytes: values + indices + row
pointers + B + C), the STREAM runs interleaved with the kernels.
"""

from __future__ import annotations

import argparse
import glob
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

import _idle_threads  # noqa: F401  (before numpy: the worker threads' idle policy)
import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_info, threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kernels_c._memory import placed_copy  # noqa: E402
from kernels_c.spmm import plan_spmm  # noqa: E402
from perfmodel.shapes import load_matrix, matrix_sources  # noqa: E402

DLMC = ROOT.parent / "shared" / "data" / "dlmc" / "rn50"
SPARSITIES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)
#: B starts this many floats (16 bytes) past a cache line, as a fresh numpy array may
#: (numpy aligns to 16 bytes: 0, 16, 32 or 48 past one, by chance); MKL runs on it ("mkl")
#: and on a copy of B that starts on a line ("mkl64"): 1024 x 1024, N = 256 at sparsity 0.9
#: ran 1.75x faster on the aligned copy, 4096 x 4096, N = 128 1.3x, N = 196 alike; ours
#: within 3 % (docs/spmm.md, twentieth session). With B wherever numpy put it, MKL moved
#: between runs.
B_OFFSET = 4


def _mkl_peer():
    """sparse_dot_mkl's dot_product_mkl, or None (it needs MKL_RT inside a venv)."""
    if "MKL_RT" not in os.environ:
        libs = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")))
        if libs:
            os.environ["MKL_RT"] = libs[0]
    try:
        from sparse_dot_mkl import dot_product_mkl
    except (ImportError, OSError):
        return None
    return dot_product_mkl


def stream_contenders(threads: int) -> tuple[dict, dict[str, int]]:
    """STREAM triad and read-only runs (3 x 64 MiB fp32 arrays, twice the 32 MiB L3 of the
    development machine) as contenders for :func:`time_interleaved`, and the bytes each
    moves: timed in the same rounds as the kernels, the reference sees the same load (on
    the shared machine it moved 32-45 GB/s between runs)."""
    from kernels_c import microbench

    n = 16 * 1024 * 1024
    b, c, a = (np.ones(n, np.float32) for _ in range(3))
    triad = microbench.plan_stream("triad", b, a=a, c=c, threads=threads)
    read = microbench.plan_stream("read", b, threads=threads)
    return {"triad": triad.run, "read": read.run}, {"triad": 12 * n, "read": 4 * n}


def time_interleaved(contenders: dict, repeats: int, budget_s: float) -> dict[str, float]:
    for f in contenders.values():
        f()  # warm-up
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    start = time.perf_counter()
    for r in range(repeats):
        for name, f in contenders.items():
            t = time.perf_counter()
            f()
            samples[name].append(time.perf_counter() - t)
        if r >= 2 and time.perf_counter() - start > budget_s:
            break
    return {k: statistics.median(v) for k, v in samples.items()}


def crossover(sparsities: list[float], speedups: list[float]) -> float | None:
    """Lowest sparsity where speedup over dense reaches 1 (linear interpolation); when the
    lowest measured sparsity already wins, that sparsity (an upper bound, printed "<=")."""
    pairs = sorted(zip(sparsities, speedups, strict=True))
    if pairs[0][1] >= 1.0:
        return pairs[0][0]
    for (s0, v0), (s1, v1) in itertools.pairwise(pairs):
        if v0 < 1.0 <= v1:
            return s0 + (1.0 - v0) * (s1 - s0) / (v1 - v0)
    return None


def problems(quick: bool, rng: np.random.Generator, narrow: bool = False):
    """Yield (label, N, {sparsity: csr}) problems (``narrow``: only the N <= 8 ones)."""
    synthetic = [(4096, 4096, 128), (384, 2304, 1352), (1024, 1024, 256), (4096, 4096, 8),
                 (4096, 4096, 1)]
    if quick:
        synthetic = synthetic[:2] + synthetic[3:4]
    if narrow:
        synthetic = [s for s in synthetic if s[2] <= 8]
    for m, k, n in synthetic:
        mats = {s: sp.random_array((m, k), density=1 - s, format="csr", dtype=np.float32,
                                   rng=rng) for s in SPARSITIES}
        yield f"random {m}x{k}", n, mats
    if narrow:
        return
    if not DLMC.is_dir():
        print(f"# DLMC matrices not found at {DLMC}: skipping real layers")
        return
    layers = ["bottleneck_2_block_group1_1_1", "bottleneck_2_block_group2_1_1",
              "bottleneck_2_block_group3_1_1", "bottleneck_2_block_group4_1_1",
              "bottleneck_3_block_group3_2_1", "bottleneck_1_block_group4_1_1"]
    if quick:
        layers = layers[2:4]
    for layer in layers:
        sources = [matrix_sources(DLMC / "magnitude_pruning" / s / f"{layer}.smtx")[0]
                   for s in ("0.7", "0.8", "0.9")]
        mats = {src.sparsity_label: load_matrix(src.path, seed=1) for src in sources}
        yield f"dlmc {layer}", sources[0].n_hint, mats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--narrow", action="store_true",
                        help="only the memory-bound shapes (N <= 8)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    mkl = _mkl_peer()
    blas = [(i["internal_api"], i.get("version"), i.get("architecture"))
            for i in threadpool_info() if i["user_api"] == "blas"]
    import kernels_c
    from kernels_c import microbench

    sig = microbench.cpu_signature()  # (family, model, stepping): the core
    cpuid = f" (family {sig[0]:#x} model {sig[1]:#x})" if sig else ""
    print(f"# CPU {kernels_c._isa.cpu_brand()}{cpuid}  kernels_c isa={kernels_c.isa()}  "
          f"BLAS={blas}  MKL peer={'yes' if mkl else 'no'}")
    summary = []
    for label, n, mats in problems(args.quick, rng, args.narrow):
        m, k = next(iter(mats.values())).shape
        b = placed_copy(rng.standard_normal((k, n), dtype=np.float32), B_OFFSET)
        b64 = placed_copy(b, 0)
        dense_a = {s: a.toarray() for s, a in mats.items()}
        for threads in args.threads:
            with threadpool_limits(threads):
                rows = []
                streams, stream_bytes = stream_contenders(threads) if n <= 8 else ({}, {})
                for s, a in mats.items():
                    plan = plan_spmm(a, b, threads=threads)
                    contenders = {"dense": lambda d=dense_a[s], b=b: d @ b, "ours": plan.run,
                                  "scipy": lambda a=a, b=b: a @ b}
                    if mkl is not None:
                        contenders["mkl"] = lambda a=a, b=b: mkl(a, b)
                        contenders["mkl64"] = lambda a=a, b=b64: mkl(a, b)
                    contenders.update(streams)
                    t = time_interleaved(contenders, args.repeats, budget_s=3.0)
                    rows.append((s, t, a.nnz))
            print(f"\n{label}  M={m} K={k} N={n}  threads={threads}")
            names = [c for c in ("ours", "scipy", "mkl", "mkl64") if c in rows[0][1]]
            print("  sparsity  dense_ms  " + "  ".join(f"{c:>7}" for c in names)
                  + "  ours/scipy  ours/mkl  ours/mkl64  GFLOP/s")
            for s, t, nnz in rows:
                sp_ = [t["dense"] / t[c] for c in names]
                extra = f"{t['scipy'] / t['ours']:10.2f}"
                extra += (f"  {t['mkl'] / t['ours']:8.2f}  {t['mkl64'] / t['ours']:10.2f}"
                          if "mkl" in t else "         -           -")
                print(f"  {s:8.2f}  {t['dense'] * 1e3:8.3f}  "
                      + "  ".join(f"{v:6.2f}x" for v in sp_) + extra
                      + f"  {2 * nnz * n / t['ours'] / 1e9:7.1f}")
            cross = {c: crossover([r[0] for r in rows], [r[1]["dense"] / r[1][c] for r in rows])
                     for c in names}
            print("  crossover sparsity: " + ", ".join(
                _fmt_cross(v, min(mats), max(mats), c) for c, v in cross.items()))
            for s, t, nnz in rows if n <= 8 else ():
                moved = nnz * 8 + (m + 1) * 4 + 4 * (k * n + m * n)
                rate = moved / t["ours"]
                bw = {kind: stream_bytes[kind] / t[kind] for kind in stream_bytes}
                print(f"  s={s:.2f}: {rate / 1e9:6.1f} GB/s = {rate / bw['triad']:5.0%} of "
                      f"triad {bw['triad'] / 1e9:.1f} GB/s, {rate / bw['read']:5.0%} of "
                      f"read {bw['read'] / 1e9:.1f} GB/s (interleaved)")
            summary.append((label, n, threads, cross, min(mats), max(mats)))
    print("\nsummary: crossover sparsity per shape")
    for label, n, threads, cross, lo, hi in summary:
        print(f"  {label:40s} N={n:5d} t={threads}  " + "  ".join(
            _fmt_cross(v, lo, hi, c) for c, v in cross.items()))


def _fmt_cross(value: float | None, lowest: float, highest: float, name: str) -> str:
    if value is None:
        return f"{name} >{highest:.2f}"
    return f"{name} <={value:.2f}" if value == lowest else f"{name} {value:.2f}"


if __name__ == "__main__":
    main()
