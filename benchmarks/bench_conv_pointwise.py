"""1 x 1 convolutions: the pointwise path (spmm per image) vs the direct loop vs dense.

ResNet-50's 1 x 1 layers (12 stride-1, 3 stride-2 downsampling projections), batch 1, at
each sparsity: ``SparseConv2d(pointwise=1)``, ``SparseConv2d(pointwise=0)`` (the direct
loop) and im2col + BLAS, 1 thread (BLAS limited by threadpoolctl), each plan timed in C by
the suite's harness (``perfmodel.harness.measure``) in interleaved rounds; the median of
the rounds' medians. Prints direct / pointwise, dense / pointwise and the default's
choice.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_conv_pointwise.py
    python benchmarks/bench_conv_pointwise.py --sparsities 0.5,0.9 --rounds 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _idle_threads  # noqa: F401  (before numpy: the worker threads' idle policy)
import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels_c.conv import SparseConv2d, plan_conv2d_im2col
from perfmodel.harness import TimingConfig, measure

#: (C, H = W, O, stride)
LAYERS = (
    (64, 56, 64, 1), (64, 56, 256, 1), (256, 56, 64, 1), (256, 56, 128, 1),
    (128, 28, 512, 1), (512, 28, 128, 1), (512, 28, 256, 1), (256, 14, 1024, 1),
    (1024, 14, 256, 1), (1024, 14, 512, 1), (512, 7, 2048, 1), (2048, 7, 512, 1),
    (256, 56, 512, 2), (512, 28, 1024, 2), (1024, 14, 2048, 2),
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sparsities", default="0.3,0.5,0.7,0.9,0.95")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--budget", type=float, default=0.03,
                    help="seconds of measuring per contender and round")
    args = ap.parse_args(argv)
    sparsities = [float(s) for s in args.sparsities.split(",")]
    rng = np.random.default_rng(0)
    config = TimingConfig(budget_s=args.budget, min_samples=5)
    print("layer (C->O at HxW, stride)  sparsity  direct ms  pointwise ms  direct/pw  "
          "dense/pw  default")
    with threadpool_limits(1):
        for c, hw, o, stride in LAYERS:
            x = rng.standard_normal((1, c, hw, hw), dtype=np.float32)
            dense_w = rng.standard_normal((o, c, 1, 1), dtype=np.float32)
            dense = plan_conv2d_im2col(x, dense_w, stride=stride, threads=1)
            for s in sparsities:
                w = dense_w * (rng.random(dense_w.shape) >= s)
                kw = dict(input_shape=(c, hw, hw), stride=stride)
                plans = {"direct": SparseConv2d(w, pointwise=0, **kw).plan(x),
                         "pointwise": SparseConv2d(w, pointwise=1, **kw).plan(x),
                         "dense": dense}
                default = SparseConv2d(w, **kw).params["pointwise"]
                samples: dict[str, list[float]] = {k: [] for k in plans}
                for _ in range(args.rounds):
                    for name, plan in plans.items():
                        samples[name].append(measure(plan, config).median_s)
                t = {k: float(np.median(v)) for k, v in samples.items()}
                print(f"{c:5d}->{o:<5d} at {hw}x{hw}, {stride}   {s:8.2f}  "
                      f"{t['direct'] * 1e3:9.3f}  {t['pointwise'] * 1e3:12.3f}  "
                      f"{t['direct'] / t['pointwise']:9.2f}  {t['dense'] / t['pointwise']:8.2f}  "
                      f"{'pointwise' if default else 'direct'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
