"""Side-by-side benchmark: qgemm (int8 and int4) vs torch FBGEMM vs fp32 OpenBLAS.

Run as ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_qgemm.py``
(``--quick`` for a short shape list, ``--threads 1 2``, ``--markdown FILE`` to also write
the table); OPENBLAS_* are unset in that command only, so OpenBLAS picks its own kernels.

For each shape (M, N, K): weights prepacked once for every contender; activations already
quantized (u8); output requantized to u8 for qgemm and for torch's static quantized linear
(``torch.ops.quantized.linear``, engine fbgemm, per-channel weights, fp32 bias), fp32 for
numpy ``x @ w.T`` (OpenBLAS, limited with threadpoolctl). Timing: warm cache (operands stay
resident between calls); rounds interleave the contenders so load from other processes hits
all of them alike, each round keeps its fastest call, the result is the median over
rounds. torch's time includes its per-call dispatch (as a user sees it: several us, which
dominates tiny shapes), ours the cffi call of a prepared plan. For M <= 8 the int8 and int4
qgemm are also timed cold (64 MiB flushed before every call, as FBGEMM's own benchmark
does), which is where weight bytes decide. GOP/s = 2 M N K / t. "% peak" is relative to the
1-core int8 peak times the threads: host profile if present, else measured at start
(kernels_c.microbench), else 467 GOP/s (../shared/reference/peers.md).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable

import _idle_threads  # noqa: F401  (before numpy: the worker threads' idle policy)
import numpy as np
from threadpoolctl import threadpool_limits

from kernels_c.quant import QuantizedWeight, plan_qgemm, qgemm_dynamic

FBGEMM_SHAPES = [(1, 128, 512), (1, 1024, 256), (1, 2048, 512), (1, 4096, 1024),
                 (6, 256, 1024), (6, 4096, 2048), (20, 4096, 1024), (102, 1024, 512),
                 (102, 2323, 256), (1, 800, 3200), (16, 256, 1500), (64, 800, 320),
                 (64, 768, 512), (256, 512, 256), (1024, 1024, 1024)]
RESNET50_SHAPES = [(25088, 64, 576), (6272, 128, 1152), (1568, 256, 2304), (392, 512, 4608)]
QUICK_SHAPES = [(1, 1024, 256), (6, 256, 1024), (64, 768, 512), (256, 512, 256),
                (392, 512, 4608)]
PEAK_1CORE_OPS = 467e9
NCOLS = 15
HEADER = ("| M | N | K | thr | qgemm GOP/s | % peak | FBGEMM GOP/s | vs FBGEMM | fp32 BLAS "
          "GFLOP/s | vs BLAS | int4 GOP/s | int4/int8 | cold int8 | cold int4 | "
          "cold int4/int8 |")


def peak() -> tuple[float, str]:
    """1-core int8 peak: host profile, else measured now (vpdpbusd loop), else peers.md."""
    try:
        from perfmodel.characterize import load_host_profile

        peaks = load_host_profile()["peaks"]["int8"]
        return float(max(v["1"]["median_ops"] for v in peaks.values())), "host profile"
    except Exception:  # no profile yet, or another schema: measure
        pass
    try:
        from kernels_c import microbench

        best = max(microbench.peak("int8", iters=1_000_000).rate for _ in range(7))
        return best, "measured at start: kernels_c.microbench.peak('int8'), best of 7"
    except Exception:  # no micro-benchmark module: the documented number
        return PEAK_1CORE_OPS, "peers.md"


_FLUSH = np.zeros(64 * 2**20 // 8, dtype=np.float64)


def _flush() -> None:
    np.add(_FLUSH, 1.0, out=_FLUSH)  # 64 MiB read + write: evicts L2 and the 32 MiB L3


def time_all(fns: dict[str, Callable[[], object]], rounds: int = 5, min_round_s: float = 0.05,
             cold: bool = False, min_reps: int = 3) -> dict[str, float]:
    """Seconds per call of each contender (see the module docstring)."""
    reps = {}
    for name, fn in fns.items():
        for _ in range(2):
            fn()
        t0 = time.perf_counter()
        fn()
        one = max(time.perf_counter() - t0, 1e-7)
        reps[name] = int(min(100, max(min_reps, min_round_s / one)))
    best: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            b = math.inf
            for _ in range(reps[name]):
                if cold:
                    _flush()
                t0 = time.perf_counter()
                fn()
                b = min(b, time.perf_counter() - t0)
            best[name].append(b)
    return {name: statistics.median(v) for name, v in best.items()}


def _torch_linear(torch, x_u8, xs, za, qw, bias, sc, zc):
    torch.backends.quantized.engine = "fbgemm"
    n = qw.shape[0]
    wt = torch._make_per_channel_quantized_tensor(
        torch.from_numpy(qw.w_q.copy()), torch.from_numpy(qw.scales.astype(np.float64)),
        torch.zeros(n, dtype=torch.long), 0)
    packed = torch.ops.quantized.linear_prepack(wt, torch.from_numpy(bias))
    xt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x_u8), xs, za)
    op = torch.ops.quantized.linear
    return lambda: op(xt, packed, sc, zc)


def _blas(x_f, wt_f, out):
    return lambda: np.matmul(x_f, wt_f, out=out)


def bench(shapes, threads_list, peak_ops, with_torch=True):
    torch = None
    if with_torch:
        try:
            import torch
        except ImportError:
            print("torch not installed (pip install -e '.[peers]'): FBGEMM column empty",
                  file=sys.stderr)
    rng = np.random.default_rng(0)
    rows = []
    for m, n, k in shapes:
        w = rng.standard_normal((n, k)).astype(np.float32)
        bias = rng.standard_normal(n).astype(np.float32)
        x_f = rng.random((m, k), dtype=np.float32)
        x_u8 = rng.integers(0, 256, (m, k), dtype=np.uint8)
        xs, za = 0.01, 3
        qw8 = QuantizedWeight.from_float(w)
        qw4 = QuantizedWeight.from_float(w, bits=4, group_size=64) if m <= 8 else None
        # output scale that spreads the outputs over the u8 range
        sc = float(np.float32(xs * qw8.scales.mean() * 128 * math.sqrt(k) * 4 / 255))
        wt_f = np.ascontiguousarray(w.T)
        for t in threads_list:
            r = {"m": m, "n": n, "k": k, "threads": t}
            ops = 2.0 * m * n * k
            fns = {"ours": plan_qgemm(x_u8, xs, za, qw8, bias=bias, out_scale=sc,
                                      out_zero_point=128, threads=t).run}
            if torch is not None:
                torch.set_num_threads(t)
                fns["fbgemm"] = _torch_linear(torch, x_u8, xs, za, qw8, bias, sc, 128)
            fns["blas"] = _blas(x_f, wt_f, np.empty((m, n), dtype=np.float32))
            if qw4 is not None:
                fns["int4"] = plan_qgemm(x_u8, xs, za, qw4, bias=bias, out_scale=sc,
                                         out_zero_point=128, threads=t).run
            with threadpool_limits(limits=t):  # OpenBLAS (and OpenMP) pools: t threads
                r.update({key: ops / sec for key, sec in time_all(fns).items()})
            if qw4 is not None:
                cold = time_all({"ours": fns["ours"], "int4": fns["int4"]}, rounds=7,
                                min_round_s=0.0, cold=True, min_reps=5)
                r.update({f"{key}_cold": ops / sec for key, sec in cold.items()})
            rows.append(r)
            print(fmt(r, peak_ops), flush=True)
    return rows


def fmt(r, peak_ops):
    def g(key):
        return f"{r[key] / 1e9:.1f}" if key in r else "–"

    def ratio(a, b):
        return f"{r[a] / r[b]:.2f}" if a in r and b in r else "–"

    pct = f"{100 * r['ours'] / (peak_ops * r['threads']):.0f}"
    return (f"| {r['m']} | {r['n']} | {r['k']} | {r['threads']} | {g('ours')} | {pct} | "
            f"{g('fbgemm')} | {ratio('ours', 'fbgemm')} | {g('blas')} | {ratio('ours', 'blas')}"
            f" | {g('int4')} | {ratio('int4', 'ours')} | {g('ours_cold')} | {g('int4_cold')}"
            f" | {ratio('int4_cold', 'ours_cold')} |")


def _geo(values):
    return math.exp(float(np.mean(np.log(values))))


def summary(rows) -> list[str]:
    lines = []
    for t in sorted({r["threads"] for r in rows}):
        sel = [r for r in rows if r["threads"] == t]
        fb = [(r["ours"] / r["fbgemm"], (r["m"], r["n"], r["k"])) for r in sel if "fbgemm" in r]
        if fb:
            worst = min(fb)
            lines.append(f"threads={t}: vs FBGEMM geomean {_geo([v for v, _ in fb]):.2f}x, "
                         f"min {worst[0]:.2f}x at {worst[1]}")
        bl = [r["ours"] / r["blas"] for r in sel if r["m"] >= 64]
        if bl:
            lines.append(f"threads={t}: vs fp32 BLAS for M >= 64: geomean {_geo(bl):.2f}x, "
                         f"min {min(bl):.2f}x")
        for suffix, label in (("", "warm"), ("_cold", "cold")):
            i4 = [r["int4" + suffix] / r["ours" + suffix] for r in sel if "int4" + suffix in r]
            if i4:
                lines.append(f"threads={t}: int4 / int8 for M <= 8 ({label} cache): geomean "
                             f"{_geo(i4):.2f}x, min {min(i4):.2f}x")
    return lines


def accuracy(m: int = 64, n: int = 512, k: int = 1024) -> list[str]:
    """Relative Frobenius error vs fp32 of int8 and int4 (group 32/64/128) weights, with
    activations quantized per call (qgemm_dynamic)."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((n, k)).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    out = [f"| weights ({m}x{k} @ {k}x{n}, Gaussian; u8 activations per call) | weight rel. "
           "error | output rel. error vs fp32 |", "|---|---|---|"]
    cases = [("int8 per-channel", QuantizedWeight.from_float(w))] + [
        (f"int4 group {g}", QuantizedWeight.from_float(w, bits=4, group_size=g))
        for g in (32, 64, 128)]
    for label, qw in cases:
        y = qgemm_dynamic(x, qw)
        werr = np.linalg.norm(qw.dequantize() - w) / np.linalg.norm(w)
        yerr = np.linalg.norm(y - exact) / np.linalg.norm(exact)
        out.append(f"| {label} | {werr:.4f} | {yerr:.4f} |")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short shape list")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--markdown", help="also write the table to this file")
    args = ap.parse_args(argv)
    peak_ops, source = peak()
    shapes = QUICK_SHAPES if args.quick else FBGEMM_SHAPES + RESNET50_SHAPES
    peak_line = f"int8 peak {peak_ops / 1e9:.0f} GOP/s per core ({source})"
    print(peak_line)
    print(HEADER)
    print("|" + "---|" * NCOLS)
    rows = bench(shapes, args.threads, peak_ops, with_torch=not args.no_torch)
    lines = summary(rows)
    acc = accuracy()
    print("\n".join(["", *lines, "", *acc]))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join([peak_line, "", HEADER, "|" + "---|" * NCOLS,
                               *(fmt(r, peak_ops) for r in rows), "", *lines, "", *acc, ""]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
