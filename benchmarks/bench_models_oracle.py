"""Which side of the crossover the model's error is on: rescore saved predictions with the
measured times of one side.

Usage::

    python benchmarks/bench_models_oracle.py PREDICTIONS.csv

``PREDICTIONS.csv`` is what ``perfmodel evaluate --predictions`` writes (every row with its
out-of-fold ``predicted_s``). Prints the crossover hits (within ±0.05) and MAE of the
predictions as they are, with the dense baselines' predictions replaced by their measured
times, and with the sparse kernels' replaced instead: the hits a perfect dense (or sparse)
model would add. docs/models.md, thirteenth session.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd


def main(path: str) -> None:
    from perfmodel.models._evaluate import _dense_mask, format_hits_by, metrics

    rows = pd.read_csv(path)
    predicted = rows["predicted_s"].to_numpy(dtype=np.float64)
    measured = rows["median_s"].to_numpy(dtype=np.float64)
    dense = _dense_mask(rows)
    for label, use_measured in (("as predicted", np.zeros_like(dense)),
                                ("measured dense times", dense),
                                ("measured sparse times", ~dense)):
        m = metrics(rows, np.where(use_measured, measured, predicted))
        shapes = m["crossover_shapes"] + m["crossover_missed"]
        print(f"{label:22s} crossover hits {round(m['crossover_hit_rate'] * shapes)} of "
              f"{shapes} ({m['crossover_hit_rate']:.0%}), MAE {m['crossover_mae']:.3f}, "
              f"speedup at the crossover off by {m['crossover_speedup_error']:.1%} "
              f"(±0.05 allows {m['crossover_tolerance']:.1%})")
        print(f"  by operation and threads: {format_hits_by(m)}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
