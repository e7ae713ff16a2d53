"""Hold out each shape matching a query, one at a time; print how the learned model
predicts it: the dense baseline's predicted / measured time and every crossover.

Usage::

    python benchmarks/bench_models_holdout.py STORE.db "op == 'spmm' and n <= 16 and threads == 1"
    python benchmarks/bench_models_holdout.py STORE.db "kernel == 'gemm_blas_f32'" --train

The query is a pandas ``DataFrame.query`` over the results' columns. Each matching shape is
predicted by a model fitted on all other shapes (leave-one-shape-out for those shapes only,
minutes instead of the full ``perfmodel evaluate --folds 0``, and the same predictions);
docs/models.md used it to try changes to the narrow-N dense baseline. With ``--train`` the
models are fitted on the other matching rows only (the BLAS baseline alone: one kernel's
own model, fitted in seconds) and the dense rows' error is summarised per operation,
thread count and narrow (N <= 16 or M <= 32) or not. The host description
is the ``host.json`` next to STORE.db when PERFMODEL_HOME is not set (as ``perfmodel
evaluate`` finds it in PERFMODEL_HOME); without one the model uses the fallback host.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np


def main(store: str, query: str, train_on_query: bool = False) -> None:
    home = Path(store).resolve().parent
    if "PERFMODEL_HOME" not in os.environ and (home / "host.json").exists():
        os.environ["PERFMODEL_HOME"] = str(home)
    from perfmodel.models._evaluate import _context_id, _dense_mask, held_out_groups, metrics
    from perfmodel.models.base import ok_rows
    from perfmodel.models.learned import LearnedModel
    from perfmodel.store import load_results

    rows = ok_rows(load_results(store))
    if train_on_query:
        rows = rows.query(query).reset_index(drop=True)
    shape = held_out_groups(rows)
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
    d = sub[dense].assign(abs_log=np.abs(np.log(p[dense] / sub.loc[dense, "median_s"])),
                          narrow=(sub.loc[dense, "n"] <= 16) | (sub.loc[dense, "m"] <= 32))
    print(d.groupby(["op", "threads", "narrow"])["abs_log"].agg(
        ["count", "mean", "median"]).round(3).rename(
        columns={"mean": "mean |log pred/meas|", "median": "median"}).to_string())
    if train_on_query:
        return
    m = metrics(sub, p)
    for key, (measured, predicted) in m["crossovers"].items():
        print(f"  crossover {measured:.3f} -> {predicted:.3f}  {key}")
    print(f"MAPE {m['mape']:.3f}, regret {m['regret_geomean']:.4f}, crossover hits "
          f"{m['crossover_hit_rate']:.0%}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--train"]
    if len(args) != 2:
        sys.exit(__doc__)
    main(args[0], args[1], train_on_query="--train" in sys.argv[1:])
