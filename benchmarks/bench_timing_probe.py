"""Do probes timed beside each point track a shared machine's noise?

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_timing_probe.py [RUNS]

Measures 63 points (dense BLAS GEMM, ``kernels_c.spmm`` and scipy's CSR product at 7
shapes, sparsity 0.5-0.95; 1 thread) RUNS times (default 3) with ``perfmodel.harness``,
four probes timed just before and after each point on the timing thread's CPU: the fp32
FMA peak loop ("fma") and the read kernel over 256 KiB, 8 MiB and 128 MiB ("l2", "l3",
"dram"). Prints per probe the spread of its time and how its log time correlates with the
points' (each centered per point), and, for each pair of runs, the point-by-point MAPE of
the medians as measured and as normalized by each probe (this point's median / its probe
time). docs/store.md has what it gave on the AMD EPYC host.
"""

from __future__ import annotations

import itertools
import sys

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

SHAPES = [(512, 512, 128), (1024, 1024, 256), (256, 2304, 196), (64, 576, 3136),
          (4096, 1024, 8), (2048, 2048, 1), (768, 3072, 128)]
SPARSITIES = (0.5, 0.7, 0.9, 0.95)
#: read probes: name, bytes read (in the L2, the L3 and DRAM of the hosts measured), passes
PROBE_READS = (("l2", 256 << 10, 200), ("l3", 8 << 20, 6), ("dram", 128 << 20, 1))


def main(runs: int = 3) -> None:
    import kernels_c.microbench as mb
    from kernels_c.spmm import plan_spmm
    from perfmodel import harness

    config = harness.TimingConfig(budget_s=0.5, target_rel_ci=0.02)
    plans = {"fma": mb.plan_peak("fp32", iters=100_000, pin=False)}
    for name, nbytes, passes in PROBE_READS:
        plans[name] = mb.plan_stream("read", np.ones(nbytes // 4, np.float32), passes=passes,
                                     pin=False)

    def probe() -> dict[str, float]:
        with harness.pinned(1):  # the CPU the harness times single-threaded points on
            return {name: float(np.median([plan.run().seconds for _ in range(3)]))
                    for name, plan in plans.items()}

    rng = np.random.default_rng(0)
    points = []
    for m, k, n in SHAPES:
        b = rng.standard_normal((k, n), dtype=np.float32)
        dense = rng.standard_normal((m, k), dtype=np.float32)
        points.append((f"dense {m}x{k}x{n}", lambda d=dense, b=b: d @ b))
        for s in SPARSITIES:
            a = sp.random(m, k, density=1 - s, format="csr", dtype=np.float32,
                          random_state=rng)
            points.append((f"spmm {m}x{k}x{n} {s}", plan_spmm(a, b)))
            points.append((f"scipy {m}x{k}x{n} {s}", lambda a=a, b=b: a @ b))
    times = np.empty((len(points), runs))
    probes = {name: np.empty_like(times) for name in plans}
    with threadpool_limits(1):
        for r in range(runs):
            for i, (_, target) in enumerate(points):
                before = probe()
                times[i, r] = harness.measure(target, config).median_s
                after = probe()
                for name in plans:
                    probes[name][i, r] = (before[name] + after[name]) / 2
    kinds = np.array([name.split()[0] for name, _ in points])
    print(f"{len(points)} points, {runs} runs")

    def centered(x: np.ndarray) -> np.ndarray:  # log time less the point's mean over runs
        return (np.log(x) - np.log(x).mean(axis=1, keepdims=True)).ravel()

    for name, p in probes.items():
        print(f"probe {name:4s}: standard deviation of log time {np.log(p).std():.3f}, "
              f"correlation with the points' {np.corrcoef(centered(times), centered(p))[0, 1]:.2f}")
    for i, j in itertools.combinations(range(runs), 2):
        raw = np.abs(times[:, i] / times[:, j] - 1)
        per_kind = ", ".join(f"{kind} {raw[kinds == kind].mean():.3f}"
                             for kind in ("dense", "spmm", "scipy"))
        normalized = ", ".join(
            f"{name} {np.abs(times[:, i] / p[:, i] / (times[:, j] / p[:, j]) - 1).mean():.3f}"
            for name, p in probes.items())
        print(f"runs {i}-{j}: MAPE raw {raw.mean():.3f} ({per_kind}); normalized by "
              f"{normalized}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
