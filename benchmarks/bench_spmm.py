"""Side-by-side benchmark: kernels_c.spmm vs scipy CSR vs MKL (sparse_dot_mkl) vs torch CSR vs
dense BLAS.

Everything runs in one process, interleaved (one repeat of every contender per round, each
round starting one contender later), with BLAS/MKL threads limited to the thread count under
test by threadpoolctl. Sparse weights are prepared once (``plan_spmm``, like prepacked
weights); times are medians.

    python benchmarks/bench_spmm.py                  # DLMC ResNet-50 + synthetic, 1 and 2 threads
    python benchmarks/bench_spmm.py --quick          # fewer shapes
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_spmm.py

MKL runs twice: on B as the other contenders get it, 16 bytes past a cache line ("mkl"), and
on a copy of B that starts on one ("mkl64"), where MKL is fastest. torch's CSR @ dense
("torch", when torch imports) calls MKL's sparse BLAS on x86 builds of torch that have MKL
(the header says whether this one has): an MKL peer where sparse_dot_mkl is not installed.

Prints, per shape, speed relative to dense BLAS for each sparsity, the crossover sparsity
(where each sparse kernel starts to beat dense, linearly interpolated), and for N <= 8 the
fraction of STREAM-triad bandwidth our kernel reaches (bytes: values + indices + row
pointers + B + C), the STREAM runs interleaved with the kernels.
"""

from __future__ import annotations

import argparse
import contextlib
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
from perfmodel.ops import SpmmOp  # noqa: E402
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
#: sparse contenders besides ours, in table order (those that run here)
PEERS = ("scipy", "mkl", "mkl64", "torch")


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
    """Median seconds per contender, one call of each per round. Each round starts one
    contender later than the last, so none always runs right after the same one: what a
    contender leaves in the caches (the dense GEMM's packing evicts part of a B of a few
    MiB) falls on each in turn, not on the same follower every round."""
    for f in contenders.values():
        f()  # warm-up
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    order = list(contenders.items())
    start = time.perf_counter()
    for r in range(repeats):
        shift = r % len(order)
        for name, f in order[shift:] + order[:shift]:
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
    op = SpmmOp()
    torch_missing = op.available("torch_csr")
    blas = [(i["internal_api"], i.get("version"), i.get("architecture"))
            for i in threadpool_info() if i["user_api"] == "blas"]
    import kernels_c
    from kernels_c import microbench

    sig = microbench.cpu_signature()  # (family, model, stepping): the core
    cpuid = f" (family {sig[0]:#x} model {sig[1]:#x})" if sig else ""
    print(f"# CPU {kernels_c._isa.cpu_brand()}{cpuid}  kernels_c isa={kernels_c.isa()}  "
          f"BLAS={blas}  MKL peer={'yes' if mkl else 'no'}  "
          f"torch peer={_torch_peer(torch_missing)}")
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
                    limit = contextlib.nullcontext()
                    if torch_missing is None:
                        torch_csr = op.prepare("torch_csr", {"a": a, "b": b}, {}, threads, None)
                        contenders["torch"] = torch_csr.run
                        limit = torch_csr.context()
                    contenders.update(streams)
                    with limit:
                        t = time_interleaved(contenders, args.repeats, budget_s=3.0)
                    rows.append((s, t, a.nnz))
            print(f"\n{label}  M={m} K={k} N={n}  threads={threads}")
            names = [c for c in ("ours", *PEERS) if c in rows[0][1]]
            print("  sparsity  dense_ms  " + "  ".join(f"{c:>7}" for c in names) + "  "
                  + "  ".join(f"{'ours/' + c:>10}" for c in names[1:]) + "  GFLOP/s")
            for s, t, nnz in rows:
                print(f"  {s:8.2f}  {t['dense'] * 1e3:8.3f}  "
                      + "  ".join(f"{t['dense'] / t[c]:6.2f}x" for c in names) + "  "
                      + "  ".join(f"{t[c] / t['ours']:10.2f}" for c in names[1:])
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


def _torch_peer(missing: str | None) -> str:
    """'no' or whether torch's CPU build has MKL (its CSR @ dense then runs MKL's)."""
    if missing is not None:
        return "no"
    import torch

    return f"yes (MKL {'yes' if torch.backends.mkl.is_available() else 'no'})"


def _fmt_cross(value: float | None, lowest: float, highest: float, name: str) -> str:
    if value is None:
        return f"{name} >{highest:.2f}"
    return f"{name} <={value:.2f}" if value == lowest else f"{name} {value:.2f}"


if __name__ == "__main__":
    main()
