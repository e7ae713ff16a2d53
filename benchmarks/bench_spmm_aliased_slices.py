"""Our spmm on B whose rows alias in the L1, before and after the thirty-third session's
two rules, side by side: K blocks of an N tile read from a per-thread copy of the block's
slice where its rows, one row of B apart, would overflow a set of the L1
(``kernels_c.spmm._slice_overflows_l1``), and on AVX2 N tiles of 64 columns at every
K-block density where that happens (``_ALIASED_L1_N_TILES``).

Usage::

    taskset -c 1 python benchmarks/bench_spmm_aliased_slices.py [ROUNDS]

Both arms run the same matrices (random CSR, seeded) with the kernel's default parameters
for the problem, are checked equal, and are timed by the suite's harness (0.2 s budget each)
in ROUNDS interleaved rounds (default 5), one thread, with the dense BLAS product (one
thread) as the yardstick. Prints per problem each arm's N tile and K block, each arm's
median, the median and range of the per-round ratio after / before, and the speedup of
each arm over BLAS. The first problems' rows of B lie a multiple of 1-4 KiB apart (N =
512-2560, 12544); then shapes of the layers with narrower N whose sparser K-block
slices overflow a set; then controls whose rows do not alias (N = 1040, 1008, 3136),
where both arms are the same plan. docs/spmm.md has what it gave.
"""

from __future__ import annotations

import sys

import numpy as np

#: (M, K, N): the standard preset's problems the rules change (ResNet-50 conv1 as a GEMM,
#: four of the sparse GEMM grid's), more aliasing N, then controls
PROBLEMS = ((2368, 304, 1024), (880, 144, 512), (320, 176, 2560), (112, 544, 1792),
            (64, 147, 12544), (1024, 1024, 1024), (512, 768, 2048), (768, 512, 768),
            # the layers' (and two grid) shapes whose sparser plans the rules change:
            # K-block slices of N = 128-1352 overflowing a set
            (768, 768, 128), (1024, 1024, 256), (256, 2304, 196), (4096, 4096, 128),
            (384, 2304, 1352), (512, 1024, 196), (1733, 812, 156), (558, 234, 424),
            (2368, 304, 1040), (1024, 1024, 1008), (256, 576, 3136))
SPARSITIES = (0.3, 0.5, 0.7, 0.8, 0.9)


def main(rounds: int) -> None:
    import importlib

    import scipy.sparse as sp
    from threadpoolctl import threadpool_limits

    from perfmodel import harness

    spmm = importlib.import_module("kernels_c.spmm")
    config = harness.TimingConfig(budget_s=0.2, target_rel_ci=0.02)
    rng = np.random.default_rng(0)
    cases = []
    for m, k, n in PROBLEMS:
        b = rng.standard_normal((k, n), dtype=np.float32)
        for sparsity in SPARSITIES:
            a = sp.random(m, k, density=1 - sparsity, format="csr", dtype=np.float32,
                          random_state=rng)
            plans = []
            for rules in (False, True):
                spmm._SLICE_ALIASED_B = spmm._ALIASED_L1_N_TILES = rules
                try:
                    plans.append(spmm.plan_spmm(a, b))
                finally:
                    spmm._SLICE_ALIASED_B = spmm._ALIASED_L1_N_TILES = True
            np.testing.assert_allclose(plans[0].run(), plans[1].run(), rtol=1e-4, atol=1e-3)
            blocks = " ".join(f"{p.params['n_tile']}/{p.params['k_block']}"
                              + ("s" if p.args.slice_b else "") for p in plans)
            dense = a.toarray()

            def blas(dense=dense, b=b):
                return dense @ b

            cases.append((f"{m}x{k}x{n}", sparsity, blocks, [*plans, blas]))
    times = np.zeros((len(cases), 3, rounds))
    with threadpool_limits(1):
        for r in range(rounds):
            for i, (*_, arms) in enumerate(cases):
                for j, arm in enumerate(arms):
                    times[i, j, r] = harness.measure(arm, config).median_s
    print(f"# isa {cases[0][3][0].isa}; {rounds} interleaved rounds, 1 thread; ratio = "
          f"after / before per round (median, range); x BLAS = BLAS time / arm time; "
          f"plans: N tile / K block before, after (s: slices of B copied)")
    print(f"{'M x K x N':18s} {'sparsity':>8s} {'plans':>17s} {'before ms':>9s} "
          f"{'after ms':>9s}  {'ratio':17s} x BLAS before, after")
    for (name, sparsity, blocks, _), (before, after, dense) in zip(cases, times,
                                                                   strict=True):
        ratio = after / before
        print(f"{name:18s} {sparsity:8.1f} {blocks:>17s} "
              f"{np.median(before) * 1e3:9.3f} {np.median(after) * 1e3:9.3f}  "
              f"{np.median(ratio):.3f} ({ratio.min():.2f}-{ratio.max():.2f})  "
              f"{np.median(dense / before):.2f}, {np.median(dense / after):.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
