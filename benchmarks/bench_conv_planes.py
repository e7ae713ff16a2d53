"""The direct convolution with its phase planes hq wq floats apart (before) and moved apart
by ``kernels_c.conv._plane_stride`` (after), side by side.

Usage::

    taskset -c 0 python benchmarks/bench_conv_planes.py [ROUNDS]

Both arms are built from the same weights (sparsity 0.5 and 0.9) and input, checked
equal, and timed by the suite's harness (0.2 s budget each) in ROUNDS interleaved rounds
(default 7), one thread. Prints per layer and sparsity the plane distances, each arm's
median and the median and range of the per-round ratio after / before, and
the share of a register tile's input lines beyond the ways of their set in an 8-way L1
(``kernels_c.conv.input_set_overflow``) before and after. The first five layers' planes lie
(close to) a multiple of 4 KiB apart; then controls whose layout changes little or not at
all, and two layers the standard sweep measured slower after the change. docs/conv.md has
what it gave.
"""

from __future__ import annotations

import sys

import numpy as np

#: (C, H, W, O, R, S, stride, padding)
LAYERS = ((192, 30, 30, 48, 3, 3, 1, 1), (64, 27, 27, 192, 5, 5, 1, 2),     # AlexNet conv2
          (64, 62, 62, 64, 3, 3, 2, 1), (336, 54, 54, 96, 3, 3, 1, 1),
          (256, 14, 14, 256, 3, 3, 1, 1),                                   # ResNet-50 layer3
          (3, 224, 224, 64, 11, 11, 4, 2),                                  # AlexNet conv1
          (128, 28, 28, 128, 3, 3, 1, 1), (64, 56, 56, 64, 3, 3, 1, 1),
          (32, 45, 45, 48, 3, 3, 1, 1),
          # read 1.1-1.3x slower than before in the standard sweep at 0.7-0.9
          (468, 30, 30, 51, 3, 3, 2, 1), (128, 78, 78, 96, 3, 3, 2, 1))


def main(rounds: int) -> None:
    import kernels_c.conv as kc
    from perfmodel import harness

    config = harness.TimingConfig(budget_s=0.2, target_rel_ci=0.02)
    chosen = kc._plane_stride

    def unmoved(geo, level, nv, block, align):
        hq, wq = kc._phase_dims(geo, kc.VECTOR_WIDTH[level] if align else 1)
        return hq * wq

    rng = np.random.default_rng(0)
    cases = []
    for c, h, w, o, r, s, stride, pad in LAYERS:
        x = rng.standard_normal((1, c, h, w)).astype(np.float32)
        for sparsity in (0.5, 0.9):
            weight = rng.standard_normal((o, c, r, s)).astype(np.float32)
            weight[rng.random(weight.shape) < sparsity] = 0
            arms = []
            for stride_of in (unmoved, chosen):
                kc._plane_stride = stride_of
                try:
                    arms.append(kc.SparseConv2d(weight, input_shape=(c, h, w), stride=stride,
                                                padding=pad))
                finally:
                    kc._plane_stride = chosen
            plans = [conv.plan(x) for conv in arms]
            np.testing.assert_allclose(plans[0].run(), plans[1].run(), rtol=1e-5, atol=1e-4)
            layout = kc.tile_layout(arms[1].geometry, arms[1].isa, arms[1].params)
            overflow = kc._overflow(*kc._lines_per_set(
                *layout, [conv._plane_stride for conv in arms]), 8)
            cases.append((f"{c}x{h}x{w} -> {o}, {r}x{s} /{stride}", sparsity,
                          [conv._plane_stride for conv in arms], overflow, plans))
    times = np.zeros((len(cases), 2, rounds))
    for k in range(rounds):
        for i, (*_, plans) in enumerate(cases):
            for arm, plan in enumerate(plans):
                times[i, arm, k] = harness.measure(plan, config).median_s
    print(f"# isa {cases[0][4][1].isa}; {rounds} interleaved rounds, 1 thread; ratio = after / "
          f"before per round (median, range)")
    print(f"{'layer':28s} {'sparsity':>8s} {'planes':>12s} {'overflow':>11s} {'before ms':>9s} "
          f"{'after ms':>9s}  ratio")
    for (name, sparsity, planes, overflow, _), (before, after) in zip(cases, times,
                                                                      strict=True):
        ratio = after / before
        print(f"{name:28s} {sparsity:8.1f} {planes[0]:5d}->{planes[1]:5d} "
              f"{overflow[0]:4.2f}->{overflow[1]:4.2f} {np.median(before) * 1e3:9.3f} "
              f"{np.median(after) * 1e3:9.3f}  {np.median(ratio):.3f} "
              f"({ratio.min():.2f}-{ratio.max():.2f})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
