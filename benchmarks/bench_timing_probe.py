"""Does a compute probe timed beside each point track a shared machine's noise?

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_timing_probe.py [RUNS]

Measures 63 points (dense BLAS GEMM, ``kernels_c.spmm`` and scipy's CSR product at 7
shapes, sparsity 0.5-0.95; 1 thread) RUNS times (default 3) with ``perfmodel.harness``,
the fp32 FMA peak loop timed just before and after each point on the timing thread's CPU.
Prints, for each pair of runs, the point-by-point MAPE of the medians as measured and as
normalized by the probe (median probe time / this point's probe time). docs/store.md
(twenty-second session) has what it gave on the AMD EPYC host: no better normalized.
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


def main(runs: int = 3) -> None:
    import kernels_c.microbench as mb
    from kernels_c.spmm import plan_spmm
    from perfmodel import harness

    config = harness.TimingConfig(budget_s=0.5, target_rel_ci=0.02)
    probe_plan = mb.plan_peak("fp32", iters=100_000, pin=False)

    def probe() -> float:
        with harness.pinned(1):  # the CPU the harness times single-threaded points on
            return float(np.median([probe_plan.run().seconds for _ in range(5)]))

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
    probes = np.empty_like(times)
    with threadpool_limits(1):
        for r in range(runs):
            for i, (_, target) in enumerate(points):
                before = probe()
                times[i, r] = harness.measure(target, config).median_s
                probes[i, r] = (before + probe()) / 2
    normalized = times * np.median(probes) / probes
    kinds = np.array([name.split()[0] for name, _ in points])
    print(f"{len(points)} points, {runs} runs; probe: standard deviation of log time "
          f"{np.log(probes).std():.3f}")
    for i, j in itertools.combinations(range(runs), 2):
        raw = np.abs(times[:, i] / times[:, j] - 1)
        norm = np.abs(normalized[:, i] / normalized[:, j] - 1)
        per_kind = ", ".join(f"{kind} {raw[kinds == kind].mean():.3f} / "
                             f"{norm[kinds == kind].mean():.3f}"
                             for kind in ("dense", "spmm", "scipy"))
        print(f"runs {i}-{j}: MAPE raw {raw.mean():.3f}, normalized {norm.mean():.3f} "
              f"(raw / normalized: {per_kind})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
