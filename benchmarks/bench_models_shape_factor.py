"""Can a shape's features predict the model's held-out error on that shape (what a probe
measures)? Scored on saved out-of-fold predictions.

Usage::

    python benchmarks/bench_models_shape_factor.py PREDICTIONS.csv

``PREDICTIONS.csv`` is what ``perfmodel evaluate --split leave-shape-out --predictions``
writes. Per shape and thread count (warm cache, random sparsity): ``rs``, the median log
error log(measured / predicted) of our sparse kernel over its sparsities, ``rd``, the
smallest median log error of a dense baseline, and ``rs - rd``, which is what moves a
crossover. Each is regressed on the shape's features, leave-one-shape-out (ridge, and a
small gradient-boosting model); R² <= 0 means the features do not predict it. Also counts
how often the predicted and the measured times rise with sparsity between neighbouring
sparsities of a kernel, shape and parameters. docs/models.md, twenty-eighth session.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

_SHAPE = {"conv2d": ["c", "h", "w", "o", "r", "s", "stride", "padding", "batch"],
          "spmm": ["m", "n", "k"]}
_OURS = {"conv2d": "conv_direct_sparse_f32", "spmm": "spmm_csr_f32"}


def shape_factors(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (op, shape, threads): rs, rd and rs - rd (log errors)."""
    out = []
    for op, cols in _SHAPE.items():
        for key, g in rows[rows["op"] == op].groupby([*cols, "threads"], dropna=False):
            dense = g[g["sparsity"] == 0]
            ours = g[(g["sparsity"] > 0) & (g["kernel"] == _OURS[op])]
            if not len(dense) or not len(ours):
                continue
            rs = float(ours.groupby("sparsity")["log_error"].median().median())
            rd = float(dense.groupby("kernel")["log_error"].median().min())
            out.append({**dict(zip([*cols, "threads"], key, strict=True)), "op": op,
                        "rs": rs, "rd": rd, "rs - rd": rs - rd})
    return pd.DataFrame(out)


def features(shapes: pd.DataFrame, op: str) -> pd.DataFrame:
    s = shapes
    if op == "spmm":
        return pd.DataFrame({"log2_m": np.log2(s["m"]), "log2_n": np.log2(s["n"]),
                             "log2_k": np.log2(s["k"]), "threads": s["threads"]})
    ho = (s["h"] + 2 * s["padding"] - s["r"]) // s["stride"] + 1
    wo = (s["w"] + 2 * s["padding"] - s["s"]) // s["stride"] + 1
    return pd.DataFrame({
        "log2_c": np.log2(s["c"]), "log2_o": np.log2(s["o"]), "log2_h": np.log2(s["h"]),
        "r": s["r"], "stride": s["stride"], "padding": s["padding"],
        "log2_input_bytes": np.log2(4 * s["c"] * s["h"] * s["w"]),
        "log2_pixels": np.log2(ho * wo), "threads": s["threads"],
        "log2_macs": np.log2(s["c"] * s["o"] * s["r"] * s["s"] * ho * wo),
        "pixels_mod_8": (ho * wo) % 8})


def main(path: str) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import LeaveOneOut, cross_val_predict

    rows = pd.read_csv(path)
    rows = rows[(rows["status"] == "ok") & (rows["cache"].fillna("warm") == "warm")
                & rows["pattern"].isin(["random", "dense"])].copy()
    rows["log_error"] = np.log(rows["median_s"] / rows["predicted_s"])
    shapes = shape_factors(rows)
    print(f"{'op':7s} {'target':8s} {'shapes':>6s} {'s.d.':>6s} {'ridge R2':>9s} "
          f"{'GBM R2':>7s}")
    for op in _SHAPE:
        mine = shapes[shapes["op"] == op].reset_index(drop=True)
        x = features(mine, op).to_numpy(dtype=np.float64)
        for target in ("rs", "rd", "rs - rd"):
            y = mine[target].to_numpy()
            scores = []
            for est in (RidgeCV(alphas=np.logspace(-2, 3, 20)),
                        HistGradientBoostingRegressor(max_iter=100, max_leaf_nodes=4,
                                                      min_samples_leaf=5, learning_rate=0.05)):
                pred = cross_val_predict(est, x, y, cv=LeaveOneOut())
                scores.append(1.0 - np.var(y - pred) / np.var(y))
            print(f"{op:7s} {target:8s} {len(y):6d} {y.std():6.3f} {scores[0]:9.2f} "
                  f"{scores[1]:7.2f}")
        print(f"{op:7s} correlation of rs and rd: "
              f"{np.corrcoef(mine['rs'], mine['rd'])[0, 1]:.2f}")
    rising_pred = rising_meas = steps = 0
    keys = ["op", "kernel", "params", "threads", *_SHAPE["conv2d"], "m", "n", "k"]
    for _, g in rows[rows["pattern"] == "random"].groupby(keys, dropna=False):
        g = g.sort_values("sparsity")
        steps += max(len(g) - 1, 0)
        rising_pred += int((np.diff(g["predicted_s"].to_numpy()) > 0).sum())
        rising_meas += int((np.diff(g["median_s"].to_numpy()) > 0).sum())
    print(f"time rising with sparsity, of {steps} steps between neighbouring sparsities: "
          f"predicted {rising_pred}, measured {rising_meas}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
