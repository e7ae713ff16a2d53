"""What ``perfmodel.break_even`` answers for shapes the model has not seen, against the
measured crossovers.

Usage::

    PERFMODEL_HOME=STORE_HOME python benchmarks/bench_models_break_even.py [FOLDS]

Folds as ``perfmodel evaluate --split leave-shape-out --folds FOLDS`` (default 5, seed 0):
per fold a learned model is fitted on the other shapes, with the model file entries
``perfmodel fit`` would write for them. For every held-out shape, thread count (warm cache,
random sparsity) of spmm or conv2d with both a sparse and a dense candidate kernel measured,
three crossovers are read as ``evaluate`` reads them (first speedup >= 1, interpolated in
log speedup) over the shape's measured sparsities:

- measured: the best measured candidate sparse kernel over the best measured dense one
  (``best_config``'s candidates only: our spmm and direct convolution, BLAS and im2col;
  ``evaluate`` takes every kernel measured);
- rows: the model's predictions of the measured rows (what ``evaluate`` scores);
- answers: ``best_config``'s model answers (no store: no probe correction), its
  candidate parameter sets ranked (``LearnedModel.candidate_configs``), as ``break_even``
  reads them.

Prints the share within +-0.05 of the measured crossover (a crossover placed outside the
measured range counts as a miss), the mean signed error and its spread, per operation and
thread count.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict

import numpy as np
import pandas as pd


def main(n_folds: int = 5) -> None:
    from perfmodel.models._evaluate import _dense_mask, _groups, crossover
    from perfmodel.models._problem import CANDIDATES, SHAPE_KEYS, normalize
    from perfmodel.models.base import ok_rows
    from perfmodel.models.learned import LearnedModel, _common_configs
    from perfmodel.query import _from_model
    from perfmodel.store import load_results

    rows = ok_rows(load_results()).reset_index(drop=True)
    folds = _groups(rows, "leave-shape-out", n_folds, seed=0)
    dense = _dense_mask(rows)
    usable = (rows["op"].isin(("spmm", "conv2d")) & (rows["cache"].fillna("warm") == "warm")
              & rows["pattern"].fillna("random").isin(("random", "dense"))).to_numpy()
    candidates = {k for op in ("spmm", "conv2d") for kinds in CANDIDATES[op] for k in kinds}
    usable = usable & rows["kernel"].isin(candidates).to_numpy()
    no_store = (("missing", ""), ())          # best_config's state without a store
    errors: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for fold in sorted(set(folds.tolist())):
        test = folds == fold
        model = LearnedModel().fit(rows.loc[~test])
        model.metadata_ = {"configs": _common_configs(rows.loc[~test])}
        held = rows.loc[test & usable]
        predicted = model.predict(held)
        held = held.assign(predicted_s=predicted, dense=dense[test & usable])
        required, optional = SHAPE_KEYS["conv2d"]
        for (op, threads), g in held.groupby(["op", "threads"]):
            keys = ["m", "n", "k"] if op == "spmm" else [
                k for k in (*required, *optional) if k != "sparsity"]
            for shape_values, s in g.groupby(keys):
                shape = {k: int(v) for k, v in zip(keys, shape_values, strict=True)}
                curves = _curves(s)
                if curves is None:
                    continue
                sparsities, measured, from_rows = curves
                answers = []
                for sparsity in sparsities:
                    p = normalize(op, {**shape, "sparsity": float(sparsity)})
                    a = _from_model(model, p, int(threads), op, "host", None, None,
                                    no_store)
                    answers.append(a.dense_seconds / a.sparse_seconds)
                truth = crossover(sparsities, measured)
                if not math.isfinite(truth):
                    continue
                group = f"{op}, {int(threads)} thread(s)"
                errors[group].append((crossover(sparsities, from_rows) - truth,
                                      crossover(sparsities, np.array(answers)) - truth))
        print(f"fold {fold}: {sum(len(v) for v in errors.values())} crossovers so far",
              flush=True)
    print(f"{'':24s} {'crossovers':>10s} {'rows: hits':>11s} {'answers: hits':>14s} "
          f"{'rows: mean err (sd)':>20s} {'answers: mean err (sd)':>23s}")
    everything = [e for v in errors.values() for e in v]
    for group, errs in [*sorted(errors.items()), ("all", everything)]:
        e = np.array(errs, dtype=np.float64)
        hits = (np.abs(np.nan_to_num(e, nan=1.0)) <= 0.05).sum(axis=0)
        mean = np.nanmean(e, axis=0)
        sd = np.nanstd(e, axis=0)
        print(f"{group:24s} {len(e):10d} {hits[0]:5d} ({hits[0] / len(e):3.0%}) "
              f"{hits[1]:7d} ({hits[1] / len(e):3.0%}) {mean[0]:+12.3f} ({sd[0]:.3f}) "
              f"{mean[1]:+15.3f} ({sd[1]:.3f})")


def _curves(shape_rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(sparsities, measured speedup, predicted speedup) of one shape and thread count:
    the best sparse row per sparsity over the best dense row; None without both."""
    dense = shape_rows[shape_rows["dense"]]
    sparse = shape_rows[~shape_rows["dense"]]
    if dense.empty or sparse["sparsity"].round(4).nunique() < 2:
        return None
    best = sparse.groupby(sparse["sparsity"].round(4))[["median_s", "predicted_s"]].min()
    return (best.index.to_numpy(), dense["median_s"].min() / best["median_s"].to_numpy(),
            dense["predicted_s"].min() / best["predicted_s"].to_numpy())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
