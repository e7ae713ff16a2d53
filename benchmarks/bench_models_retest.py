"""Noise floor of the model metrics: the same sweep measured twice.

Usage::

    python benchmarks/bench_models_retest.py FIRST.db SECOND.db [--retest-only]
        [--predictions PREDICTIONS.csv]

``SECOND.db`` is a copy of ``FIRST.db`` re-measured with ``perfmodel sweep SPEC --remeasure``,
or another store with some of the same points (a spec swept into an empty store: the points
both have are compared). Prints (1) how well one measurement predicts the other (the MAPE a
perfect model would get against a single noisy run, and how often the two runs' crossover
sparsities agree within ±0.05: the most a model can score against one run), with
``--predictions`` (``perfmodel evaluate --predictions`` on FIRST's store) the model's
held-out predictions scored on the same points, against either run, and (2) the learned and
roofline models' held-out metrics on the best of the two runs per point (contention only
slows a kernel down, so the faster of two medians is the better estimate of its time).
``--retest-only`` stops after (1).
"""

from __future__ import annotations

import sys

import numpy as np


def main(first: str, second: str, retest_only: bool = False,
         predictions: str | None = None) -> None:
    from perfmodel.models._evaluate import evaluate, format_hits_by, format_report, metrics
    from perfmodel.models.learned import LearnedModel
    from perfmodel.models.roofline import RooflineModel
    from perfmodel.store import load_results

    a = load_results(first).set_index("point_key")
    b = load_results(second).set_index("point_key")
    common = a.index.intersection(b.index)
    a, b = a.loc[common], b.loc[common]
    ape = np.abs(b["median_s"] / a["median_s"] - 1)
    both = (~a["noisy"]) & (~b["noisy"])
    one = a["threads"] == 1
    print(f"test-retest on {len(common)} points: MAPE {ape.mean():.3f} (median "
          f"{ape.median():.3f}); 1 thread {ape[one].mean():.3f} ({ape[one].median():.3f}); "
          f"converged in both ({int(both.sum())}) {ape[both].mean():.3f} "
          f"({ape[both].median():.3f})")
    # the second run as a "prediction" of the first: crossover agreement between two runs
    rows = a.reset_index()
    m = metrics(rows, b["median_s"].to_numpy(dtype=np.float64))
    print(f"test-retest crossovers: {m['crossover_shapes']} shapes in range in both "
          f"({m['crossover_missed']} only in the first), MAE {m['crossover_mae']:.3f}, max "
          f"{m['crossover_max']:.3f}, within ±0.05 {m['crossover_within_0.05']:.0%}; hits "
          f"(as perfmodel evaluate's: of every shape in range in the first) "
          f"{m['crossover_hit_rate']:.0%}; speedup at the first run's crossover off by "
          f"{m['crossover_speedup_error']:.1%} (median), ±0.05 allows "
          f"{m['crossover_tolerance']:.1%} there")
    print(f"  within ±0.05 by operation and threads: {format_hits_by(m)}")
    if predictions is not None:
        import pandas as pd

        predicted = pd.read_csv(predictions).set_index("point_key")["predicted_s"]
        both = common.intersection(predicted.index)
        for name, run in (("first", a), ("second", b)):
            m = metrics(run.loc[both].reset_index(),
                        predicted.loc[both].to_numpy(dtype=np.float64))
            print(f"model against the {name} run ({len(both)} points): crossovers within "
                  f"±0.05 {m['crossover_within_0.05']:.0%} of {m['crossover_shapes']}, "
                  f"MAE {m['crossover_mae']:.3f}; {format_hits_by(m)}")
    if retest_only:
        return
    faster = b["median_s"] < a["median_s"]
    best = a.copy()
    for col in ("median_s", "min_s", "iqr_s", "rel_ci", "noisy", "converged"):
        best.loc[faster, col] = b.loc[faster, col]
    best = best.reset_index()
    print(format_report(evaluate(lambda: LearnedModel(), best), "learned"))
    print(format_report(evaluate(lambda: RooflineModel(), best), "roofline"))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--retest-only"]
    csv = None
    if "--predictions" in args:
        i = args.index("--predictions")
        csv = args[i + 1] if i + 1 < len(args) else None
        args = args[:i] + args[i + 2:]
    if len(args) != 2 or ("--predictions" in sys.argv and csv is None):
        sys.exit(__doc__)
    main(args[0], args[1], retest_only="--retest-only" in sys.argv[1:], predictions=csv)
