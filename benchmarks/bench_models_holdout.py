"""Hold out each shape matching a query, one at a time; print how the learned model
predicts it: the dense baseline's predicted / measured time and every crossover.

Usage::

    python benchmarks/bench_models_holdout.py STORE.db "op == 'spmm' and n <= 16 and threads == 1"

The query is a pandas ``DataFrame.query`` over the results' columns. Each matching shape is
predicted by a model fitted on all other shapes (leave-one-shape-out for those shapes only,
minutes instead of the full ``perfmodel evaluate --folds 0``, and the same predictions);
docs/models.md used it to try changes to the narrow-N dense baseline. The host description
is the ``host.json`` next to STORE.db when PERFMODEL_HOME is not set (as ``perfmodel
evaluate`` finds it in PERFMODEL_HOME); without one the model uses the fallback host.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np


def main(store: str, query: str) -> None:
    home = Path(store).resolve().parent
    if "PERFMODEL_HOME" not in os.environ and (home / "host.json").exists():
        os.environ["PERFMODEL_HOME"] = str(home)
    from perfmodel.models._evaluate import _context_id, _dense_mask, _shape_id, metrics
    from perfmodel.models.base import ok_rows
    from perfmodel.models.learned import LearnedModel
    from perfmodel.store import load_results

    rows = ok_rows(load_results(store))
    shape = _shape_id(rows)
    pred = np.full(len(rows), np.nan)
    for held_out in sorted(set(shape[rows.query(query).index])):
        test = (shape == held_out).to_numpy()
        pred[test] = LearnedModel().fit(rows.loc[~test]).predict(rows.loc[test])
    scored = np.isfinite(pred)
    sub, p = rows.loc[scored].reset_index(drop=True), pred[scored]
    dense = _dense_mask(sub)
    for label, g in sub[dense].groupby(_context_id(sub)[dense]):
        print(f"dense {label}: predicted / measured "
              f"{np.median(p[g.index] / g['median_s']):.2f}")
    m = metrics(sub, p)
    for key, (measured, predicted) in m["crossovers"].items():
        print(f"  crossover {measured:.3f} -> {predicted:.3f}  {key}")
    print(f"MAPE {m['mape']:.3f}, regret {m['regret_geomean']:.4f}, crossover hits "
          f"{m['crossover_hit_rate']:.0%}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
