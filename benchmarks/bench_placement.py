"""Does where the operands lie in memory change a point's time?

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_placement.py [ROUNDS]

Six points of ``benchmarks/retest_layers.toml`` (sparse and dense, GEMMs and convolutions)
are measured ROUNDS times (default 8) in interleaved rounds with ``perfmodel.harness``: each
round times every point twice, on the operands built at the start ("same": the same
buffers every round) and on operands built again for that round ("fresh": the same values,
seeded, in new buffers, the kernel prepared again). Time-varying noise hits both alike;
a spread that only "fresh" shows comes from placement (pages, cache sets, the buffers'
offsets from each other). Prints per point the median of each, the standard deviation of
the log times and max / min. docs/store.md has what it gave.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perfmodel import harness  # noqa: E402
from perfmodel._sweep import load_spec  # noqa: E402
from perfmodel.ops import get_op  # noqa: E402

#: (layer, kernel, sparsity) of the points measured
POINTS = (("alexnet:conv4", "conv_direct_sparse_f32", 0.9),
          ("resnet50:layer2.conv3", "spmm_csr_f32", 0.5),
          ("resnet50:layer4.conv2_first", "gemm_blas_f32", 0.0),
          ("resnet50:layer3.conv2_first", "spmm_csr_f32", 0.98),
          ("alexnet:conv4", "conv_im2col_blas_f32", 0.0),
          ("bert-base:intermediate", "spmm_csr_f32", 0.9))


def prepared(point):
    """The point's kernel, prepared on freshly built operands (which it holds)."""
    op = get_op(point.op)
    return op.prepare(point.kernel, op.make_inputs(point.problem), dict(point.params),
                      point.threads, None)


def main(rounds: int) -> None:
    spec = load_spec(ROOT / "benchmarks" / "retest_layers.toml")
    points = [next(p for p in spec.points if p.problem.layer == layer and p.kernel == kernel
                   and abs(p.problem.sparsity - sparsity) < 1e-9)
              for layer, kernel, sparsity in POINTS]
    config = harness.TimingConfig(budget_s=0.5, target_rel_ci=0.02)
    kept = [prepared(p) for p in points]
    times: dict[str, list[list[float]]] = {"same": [[] for _ in points],
                                           "fresh": [[] for _ in points]}
    for _ in range(rounds):
        for i, point in enumerate(points):
            for arm, target in (("same", kept[i]), ("fresh", prepared(point))):
                with target.context():
                    times[arm][i].append(harness.measure(target.target, config).median_s)
    print(f"{'point':58s} {'median ms same / fresh':>23s} {'sd(log) same / fresh':>21s} "
          f"{'max/min same / fresh':>21s}")
    for i, point in enumerate(points):
        same, fresh = np.log(times["same"][i]), np.log(times["fresh"][i])
        name = f"{point.problem.layer} {point.kernel} {point.problem.sparsity:g}"
        print(f"{name:58s} {np.exp(np.median(same)) * 1e3:11.3f} / "
              f"{np.exp(np.median(fresh)) * 1e3:9.3f} {same.std():11.3f} / {fresh.std():7.3f} "
              f"{np.exp(np.ptp(same)):11.2f} / {np.exp(np.ptp(fresh)):7.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
