"""GPU-class target check: cuSPARSE CSR x dense vs cuBLAS SGEMM, and the machine's ceilings.

The suite runs no kernels on GPUs; its GPU targets (``perfmodel/machines/nvidia-*.yaml``)
are descriptions. This script measures, on a CUDA machine, what those descriptions assume:
HBM (and L2) bandwidth, the fp32 GEMM ceiling, and sparse x dense (torch's CSR matmul,
which calls cuSPARSE SpMM) against dense SGEMM over shapes and sparsities, so that the
description's dense efficiency and Park et al.'s alpha become measurements and the
model's crossover error on a GPU can be stated (``benchmarks/gpu_model_check.py``).

    python benchmarks/bench_gpu_spmm.py --out gpu.json          # on a CUDA machine
    python benchmarks/bench_gpu_spmm.py --device cpu --quick    # dry run of the code paths

Needs only torch and numpy (the suite's package is not imported: a GPU machine need not
have its build). fp32 throughout with TF32 off, so the dense baseline is true SGEMM.
Times are the median over repeats of the mean of a batch of back-to-back calls (a batch
lasts >= ``--min-batch-ms``), with a 95 % bootstrap interval of the median. ``--graphs``
times CUDA-graph replays instead (no host launch overhead: what the GPU itself takes),
keeping the eager per-call time beside it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

#: (m, k, n): A is m x k (sparse weights), B is k x n; CPU benchmark shapes, ResNet-50
#: layers at batch 8-256 (GEMM view), a transformer FFN and a square GEMM
SHAPES = (
    (4096, 4096, 8), (4096, 4096, 128), (4096, 4096, 1024), (4096, 4096, 4096),
    (1024, 1024, 256), (384, 2304, 1352), (256, 2304, 25088), (2048, 512, 3136),
    (1000, 2048, 256), (16384, 4096, 512),
)
QUICK_SHAPES = ((512, 512, 64), (256, 1024, 8))
SPARSITIES = (0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995)
SPARSE_KERNEL = "cusparse_csr_f32"
DENSE_KERNEL = "cublas_sgemm_f32"


class Timer:
    """Seconds per call of ``fn``: median over repeats of batch means, bootstrap CI."""

    def __init__(self, device: torch.device, repeats: int, min_batch_s: float, *,
                 graphs: bool = False) -> None:
        self.device, self.repeats, self.min_batch_s = device, repeats, min_batch_s
        self.cuda = device.type == "cuda"
        self.graphs = graphs and self.cuda

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def _batch(self, fn, calls: int) -> float:
        if self.cuda:
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(
                enable_timing=True)
            start.record()
            for _ in range(calls):
                fn()
            stop.record()
            stop.synchronize()
            return start.elapsed_time(stop) * 1e-3 / calls
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - t0) / calls

    def _graph(self, fn, calls: int):
        """``calls`` calls of ``fn`` captured in one CUDA graph: replays time the GPU work
        without the host's per-call launch overhead."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(calls):
                fn()
        return graph

    def __call__(self, fn) -> dict:
        for _ in range(3):
            fn()
        self._sync()
        one = max(self._batch(fn, 1), 1e-7)
        calls = int(min(10_000, max(1, np.ceil(self.min_batch_s / one))))
        mode, note = "eager", None
        if self.graphs:
            calls = min(calls, 1000)
            try:
                graph = self._graph(fn, calls)
            except RuntimeError as exc:  # not capturable: time it eagerly, say so
                note = f"graph capture failed: {exc}"[:300]
                torch.cuda.synchronize(self.device)
            else:
                graph.replay()
                self._sync()
                # several replays per timed batch when one replay is short
                reps = int(min(100, max(1, np.ceil(
                    self.min_batch_s / max(self._batch(graph.replay, 1), 1e-7)))))
                samples = np.array([self._batch(graph.replay, reps)
                                    for _ in range(self.repeats)]) / calls
                mode, calls = "cuda_graph", calls * reps
                del graph
        if mode == "eager":
            samples = np.array([self._batch(fn, calls) for _ in range(self.repeats)])
        rng = np.random.default_rng(0)
        boot = np.median(rng.choice(samples, (2000, samples.size)), axis=1)
        return {"median_s": float(np.median(samples)),
                "ci_low": float(np.quantile(boot, 0.025)),
                "ci_high": float(np.quantile(boot, 0.975)),
                "repeats": int(samples.size), "calls_per_repeat": calls, "timing": mode,
                **({"timing_note": note} if note else {})}


def machine(device: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "host": platform.node(), "device": str(device)}
    if device.type == "cuda":
        prop = torch.cuda.get_device_properties(device)
        info.update(name=prop.name, sm_count=prop.multi_processor_count,
                    memory_bytes=prop.total_memory,
                    l2_bytes=getattr(prop, "L2_cache_size", None),
                    capability=f"{prop.major}.{prop.minor}", cuda=torch.version.cuda,
                    cusparse="torch.sparse CSR @ dense (cusparseSpMM)")
    return info


def bandwidth(timer: Timer, device: torch.device, quick: bool) -> list[dict]:
    """STREAM copy and triad (a = b + s c) over working sets from L2-sized to HBM.

    Bytes counted: copy 2 x 4 n, triad 3 x 4 n (GPUs write without allocating)."""
    rows = []
    logs = range(16, 21) if quick else range(18, 29)   # floats per array: 256 Ki ... 256 Mi
    for lg in logs:
        n = 1 << lg
        a, b, c = (torch.rand(n, device=device) for _ in range(3))
        for kind, fn, nbytes in (
                ("copy", lambda a=a, b=b: a.copy_(b), 8 * n),
                ("triad", lambda a=a, b=b, c=c: torch.add(b, c, alpha=3.0, out=a), 12 * n)):
            t = timer(fn)
            rows.append({"kind": kind, "floats": n, "working_set_bytes": nbytes, **t,
                         "bytes_per_s": nbytes / t["median_s"]})
        del a, b, c
    return rows


def gemm_peaks(timer: Timer, device: torch.device, quick: bool) -> list[dict]:
    """Dense matrix product throughput: fp32 (TF32 off), TF32 and bf16, square n^3."""
    rows = []
    n = 512 if quick else 8192
    for name, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                              ("bf16", torch.bfloat16, False)):
        if device.type != "cuda" and name != "fp32":
            continue
        torch.backends.cuda.matmul.allow_tf32 = tf32
        x = torch.randn(n, n, device=device).to(dtype)
        y = torch.randn(n, n, device=device).to(dtype)
        t = timer(lambda x=x, y=y: torch.mm(x, y))
        rows.append({"dtype": name, "n": n, **t, "flop_per_s": 2.0 * n**3 / t["median_s"]})
    torch.backends.cuda.matmul.allow_tf32 = False
    return rows


def _with_eager(timer: Timer, eager: Timer | None, fn) -> dict:
    t = timer(fn)
    if eager is not None:
        t["eager_median_s"] = eager(fn)["median_s"]
    return t


def spmm_sweep(timer: Timer, eager: Timer | None, device: torch.device, shapes,
               sparsities, rows: list[dict]) -> None:
    """Append store-shaped rows: one dense SGEMM row per shape, one cuSPARSE row per
    sparsity (appended as measured, so an interrupted run keeps what it has)."""
    gen = torch.Generator(device=device).manual_seed(0)
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device, generator=gen)
        b = torch.randn(k, n, device=device, generator=gen)
        base = {"op": "spmm", "m": m, "n": n, "k": k, "threads": None}
        t = _with_eager(timer, eager, lambda a=a, b=b: torch.mm(a, b))
        rows.append({**base, "kernel": DENSE_KERNEL, "sparsity": 0.0, "density": 1.0,
                     "nnz": m * k, **t})
        print(f"{m}x{k}x{n} dense {t['median_s'] * 1e3:.4f} ms", flush=True)
        for s in sparsities:
            keep = torch.rand(m, k, device=device, generator=gen) >= s
            a_s = a * keep
            a_csr = a_s.to_sparse_csr()
            nnz = int(a_csr.values().numel())
            ref = torch.mm(a_s, b)
            got = a_csr @ b
            err = float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
            if not err < 1e-4:
                raise RuntimeError(f"{m}x{k}x{n} at {s}: CSR product differs by {err:.2e}")
            ts = _with_eager(timer, eager, lambda a_csr=a_csr, b=b: a_csr @ b)
            rows.append({**base, "kernel": SPARSE_KERNEL, "sparsity": 1.0 - nnz / (m * k),
                         "density": nnz / (m * k), "nnz": nnz, "max_rel_err": err, **ts})
            print(f"  sparsity {s:.3f}: {ts['median_s'] * 1e3:.4f} ms, "
                  f"dense / sparse {t['median_s'] / ts['median_s']:.2f}", flush=True)
            del keep, a_s, a_csr, ref, got
        del a, b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="torch device (default: cuda)")
    ap.add_argument("--out", help="write the JSON results here")
    ap.add_argument("--quick", action="store_true", help="two small shapes, small arrays")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--min-batch-ms", type=float, default=2.0)
    ap.add_argument("--graphs", action="store_true",
                    help="time CUDA-graph replays (GPU time without per-call launch "
                         "overhead); spmm rows also keep the eager time")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA device; use --device cpu for a dry run")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    timer = Timer(device, args.repeats, args.min_batch_ms * 1e-3, graphs=args.graphs)
    eager = Timer(device, args.repeats, args.min_batch_ms * 1e-3) if timer.graphs else None
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    shapes = QUICK_SHAPES if args.quick else SHAPES
    result = {"command": " ".join([sys.executable, *sys.argv]), "started": started,
              "machine": machine(device)}
    print(json.dumps(result["machine"]), flush=True)
    result["bandwidth"] = bandwidth(timer, device, args.quick)
    for r in result["bandwidth"]:
        print(f"{r['kind']:5s} {r['working_set_bytes'] / 2**20:9.1f} MiB "
              f"{r['bytes_per_s'] / 1e9:8.1f} GB/s", flush=True)
    result["gemm"] = gemm_peaks(timer, device, args.quick)
    for r in result["gemm"]:
        print(f"{r['dtype']} {r['n']}^3: {r['flop_per_s'] / 1e12:.1f} TFLOP/s", flush=True)
    result["spmm"] = []
    try:
        spmm_sweep(timer, eager, device, shapes, SPARSITIES, result["spmm"])
    finally:
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
