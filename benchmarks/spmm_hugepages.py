"""Does B on transparent huge pages make the streamed-B spmm faster? (DTLB reach)

    python benchmarks/spmm_hugepages.py

B's rows (256 bytes at N = 49-64) spread over hundreds of 4 KiB pages, more than a
first-level DTLB holds. Each shape is planned twice, once on ordinary numpy arrays and once
with B (and the aligned copy of B the kernel reads for N not a multiple of 16) in
2 MiB-aligned slices of buffers of at least 4 MiB, which numpy madvises for huge pages
(Linux, transparent_hugepage = madvise or always); the AnonHugePages line shows that they
were granted. Prints the median time ratio (ordinary / huge pages) of interleaved runs,
1 thread. docs/spmm.md, thirteenth session: 0.99-1.10, median 1.02, on the Intel Xeon host.
"""

from __future__ import annotations

import importlib
import time

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

spmm_module = importlib.import_module("kernels_c.spmm")  # kernels_c.spmm is the function

HUGE_PAGE = 2 << 20
SHAPES = [(512, 2048, 49), (512, 4608, 49), (2048, 4096, 64), (1024, 4608, 128),
          (4096, 4096, 128)]
SPARSITIES = (0.9, 0.95)


def huge_page_empty(count: int) -> np.ndarray:
    """float32[count] starting on a 2 MiB boundary of a buffer numpy madvises."""
    nbytes = 4 * count
    buf = np.empty(max(nbytes + HUGE_PAGE, 4 << 20) + HUGE_PAGE, dtype=np.uint8)
    start = (-buf.ctypes.data) % HUGE_PAGE
    return buf[start:start + nbytes].view(np.float32)


def anon_huge_pages_kib() -> int:
    with open("/proc/self/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("AnonHugePages"))


def median_call_s(plan, calls: int = 30) -> float:
    plan.run()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        plan.run()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    rng = np.random.default_rng(0)
    ordinary_empty = spmm_module.aligned_empty
    for m, k, n in SHAPES:
        for sparsity in SPARSITIES:
            a = sp.random(m, k, density=1 - sparsity, format="csr", dtype=np.float32,
                          random_state=rng)
            b = rng.standard_normal((k, n), dtype=np.float32)
            b_huge = huge_page_empty(k * n).reshape(k, n)
            b_huge[...] = b
            ordinary = spmm_module.plan_spmm(a, b)
            try:
                spmm_module.aligned_empty = huge_page_empty
                huge = spmm_module.plan_spmm(a, b_huge)
            finally:
                spmm_module.aligned_empty = ordinary_empty
            np.testing.assert_allclose(ordinary.run(), huge.run(), rtol=1e-5, atol=1e-4)
            ratios = [median_call_s(ordinary) / median_call_s(huge) for _ in range(5)]
            print(f"{m} x {k} x {n}, sparsity {sparsity}: ordinary / huge pages "
                  f"{np.median(ratios):.3f} (rounds {np.round(ratios, 3).tolist()}); "
                  f"AnonHugePages {anon_huge_pages_kib()} KiB", flush=True)


if __name__ == "__main__":
    with threadpool_limits(1):
        main()
