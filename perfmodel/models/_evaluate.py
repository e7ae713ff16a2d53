"""Held-out evaluation of performance models (``perfmodel evaluate``).

Every row gets an out-of-fold prediction from a model that did not see its group; the
metrics are computed on the full table of out-of-fold predictions:

- MAPE of the run time, over all rows and per kernel (``by_kernel``);
- Kendall tau between predicted and measured times over the configurations (kernel +
  parameters) of each problem (shape, sparsity, sparsity pattern, threads, cache state;
  the dense baselines of that shape join every problem), averaged over problems;
- top-1 regret: measured time of the configuration the model ranks first / the measured
  best, geometric mean over problems (1.0 = always right);
- crossover sparsity: per shape, where the best sparse time meets the best dense time
  (linear interpolation of log speedup between measured sparsities), predicted vs
  measured, over shapes where both cross inside the measured range (``xover MAE``,
  ``xover <=0.05``); ``xover missed`` counts the shapes whose measured crossover is in
  range and the predicted one is not, and ``xover hits`` is the share of all shapes with a
  measured crossover in range that are predicted within ±0.05 (misses count against it;
  ``crossover_hits_by``: the hits per operation and thread count).
  How well conditioned the crossovers are, medians over the measured ones: ``xover sp
  err`` = |predicted / measured speedup − 1| at the measured crossover sparsity (the
  model's error where the crossover is read) and ``xover tol`` = the relative change of
  speedup that moves the measured crossover by 0.05 (what the ±0.05 target allows there;
  a few percent where sparse and dense stay close over a wide range of sparsities).

Splits: ``random`` (5-fold over rows), ``leave-shape-out`` (groups = shapes, each joined
with the rows that are the same problem in another form: :func:`held_out_groups`),
``leave-sparsity-out`` (groups = sparsity levels of the sparse rows; dense baselines, which
carry no sparsity, are spread over the folds at random). ``n_folds=0`` gives every group a
fold of its own (leave-one-shape-out: each shape predicted by a model fitted on all the
others, as a model fitted on the whole store predicts a new shape); grouped splits only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ._probe import probe_factors
from ._problem import from_row
from .base import PerfModel, ok_rows
from .roofline import family_of

__all__ = ["SPLITS", "crossover", "evaluate", "metrics", "out_of_fold"]

SPLITS = ("random", "leave-shape-out", "leave-sparsity-out")
_WORST_SHOWN = 10  # largest regrets kept per split
# bits is not part of a shape: a qgemm problem's fp32 baseline has none (see _problem_id)
_SHAPE_COLS = ("op", "m", "n", "k", "c", "h", "w", "o", "r", "s", "stride", "padding",
               "batch")


def _shape_id(rows: pd.DataFrame) -> pd.Series:
    cols = [c for c in _SHAPE_COLS if c in rows.columns]
    return pd.Series(["|".join(map(str, t)) for t in rows[cols].itertuples(index=False)],
                     index=rows.index, dtype=object)


def _gemm_problem(rec: dict[str, Any]) -> tuple[int, int, int] | None:
    """The (M, N, K) of the matrix product a row is, or whose GEMM view (im2col, the
    pointwise spmm) a convolution row is computed or predicted through, per call; None
    if a dimension is missing."""
    conv = rec.get("op") == "conv2d"
    if not all(pd.notna(rec.get(key)) for key in (("c", "h", "w", "o") if conv
                                                  else ("m", "n", "k"))):
        return None
    p = from_row(rec)
    if not conv:
        return p["m"], p["n"], p["k"]
    groups = rec.get("groups")
    groups = int(groups) if groups is not None and pd.notna(groups) and groups > 1 else 1
    return p["m"] // groups, p["p"] * p["q"], p["k"] // groups


def held_out_groups(rows: pd.DataFrame) -> pd.Series:
    """The leave-shape-out group of every row: its shape, joined with every row that is the
    same problem in another form: the same named layer (``layer``), or the same matrix
    product (a GEMM shape, a quantized GEMM of it, a convolution whose im2col or pointwise
    view it is). The standard sweep measures ResNet-50's layers both as convolutions and
    as GEMMs; grouped by shape alone, a held-out 1 x 1 layer had its spmm twin's rows, the
    same calls, in the training set (docs/models.md)."""
    shape = _shape_id(rows)
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        root = parent.setdefault(key, key)
        while root != parent[root]:
            parent[root] = parent[parent[root]]
            root = parent[root]
        return root

    cols = [c for c in (*_SHAPE_COLS, "groups", "layer") if c in rows.columns]
    for rec, sid in zip(rows[cols].to_dict("records"), shape, strict=True):
        links = []
        layer = rec.get("layer")
        if isinstance(layer, str) and layer:
            links.append(f"layer {layer}")
        gemm = _gemm_problem(rec)
        if gemm is not None:
            links.append("gemm {} {} {}".format(*gemm))
        for link in links:
            a, b = find(sid), find(link)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return pd.Series([find(sid) for sid in shape], index=rows.index, dtype=object)


def _dense_mask(rows: pd.DataFrame) -> np.ndarray:
    return np.array([family_of(str(k), str(o)) in ("gemm", "im2col_conv")
                     for k, o in zip(rows["kernel"], rows["op"], strict=True)])


def _groups(rows: pd.DataFrame, split: str, n_folds: int, seed: int) -> np.ndarray:
    """Fold number of every row (-1: always training)."""
    rng = np.random.default_rng(seed)
    if n_folds < 0 or n_folds == 1 or (n_folds == 0 and split == "random"):
        raise ValueError(f"n_folds must be >= 2, or 0 (one fold per group) for a grouped "
                         f"split; got {n_folds} for {split!r}")
    if split == "random":
        return rng.permutation(len(rows)) % n_folds
    if split == "leave-shape-out":
        keys = held_out_groups(rows)
    elif split == "leave-sparsity-out":
        keys = pd.Series([f"{v:.4f}" for v in rows["sparsity"]], index=rows.index)
    else:
        raise ValueError(f"unknown split {split!r}; valid: {list(SPLITS)}")
    uniq = np.array(sorted(keys.unique()))
    n_folds = n_folds or len(uniq)
    order = rng.permutation(len(uniq))
    fold_of = {u: int(i % n_folds) for u, i in zip(uniq[order], range(len(uniq)),
                                                   strict=True)}
    folds = keys.map(fold_of).to_numpy()
    if split == "leave-sparsity-out":
        # dense baselines carry no sparsity (measured once per shape at 0): they are
        # spread over the folds at random, so each is still predicted out of fold
        folds = np.where(_dense_mask(rows), rng.permutation(len(rows)) % n_folds, folds)
    return folds


def out_of_fold(make_model: Callable[[], PerfModel], rows: pd.DataFrame, split: str, *,
                n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Predicted seconds of every row by a model fitted without the row's fold."""
    rows = rows.reset_index(drop=True)
    folds = _groups(rows, split, n_folds, seed)
    pred = np.full(len(rows), np.nan)
    for fold in sorted(set(folds.tolist()) - {-1}):
        test = folds == fold
        model = make_model().fit(rows.loc[~test])
        pred[test] = model.predict(rows.loc[test])
    return pred


def _col(rows: pd.DataFrame, name: str, default: str) -> pd.Series:
    if name in rows.columns:
        return pd.Series([default if pd.isna(v) else str(v) for v in rows[name]],
                         index=rows.index, dtype=object)
    return pd.Series(default, index=rows.index, dtype=object)


def _context_id(rows: pd.DataFrame) -> pd.Series:
    """Shape, threads and cache state: what a dense baseline shares with sparse rows, in
    words (``spmm m=1024 n=256 k=1024, 1 thread(s), warm``: ``--details`` prints it)."""
    cols = [c for c in _SHAPE_COLS[1:] if c in rows.columns]
    ids = []
    for rec, op, threads, cache in zip(rows[cols].to_dict("records"), rows["op"],
                                       rows["threads"], _col(rows, "cache", "warm"),
                                       strict=True):
        dims = " ".join(f"{c}={int(v) if float(v).is_integer() else v}"
                        for c, v in rec.items() if pd.notna(v))
        ids.append(f"{op} {dims}, {threads} thread(s), {cache}")
    return pd.Series(ids, index=rows.index, dtype=object)


def _problem_id(rows: pd.DataFrame, context: pd.Series) -> pd.Series:
    """One problem = context (:func:`_context_id` of ``rows``) + sparsity + sparsity
    pattern + weight bits (qgemm)."""
    bits = [f", {int(b)} bits" if pd.notna(b) else "" for b in rows["bits"]] \
        if "bits" in rows.columns else [""] * len(rows)
    return pd.Series([f"{a}, sparsity {round(b, 4):g}, {c}{d}" for a, b, c, d in zip(
        context, rows["sparsity"], _col(rows, "pattern", "random"), bits, strict=True)],
        index=rows.index, dtype=object)


def crossover(sparsity: np.ndarray, speedup: np.ndarray) -> float:
    """Sparsity where ``speedup`` (sparse over dense) first reaches 1, interpolated in log.

    NaN when it never crosses inside the range (always faster or always slower).
    """
    order = np.argsort(sparsity)
    s, v = np.asarray(sparsity)[order], np.log(np.asarray(speedup)[order])
    for i in range(len(s) - 1):
        if v[i] < 0 <= v[i + 1]:
            return float(s[i] + (s[i + 1] - s[i]) * (-v[i]) / (v[i + 1] - v[i]))
    return math.nan


def _speedup_curves(rows: pd.DataFrame, seconds: np.ndarray, context: pd.Series,
                    dense: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per context and pattern: (sparsities ascending, speedup of the fastest sparse kernel
    over the fastest dense one); ``context`` (:func:`_context_id`) and ``dense``
    (:func:`_dense_mask`) are those of ``rows``, computed once by the caller."""
    df = pd.DataFrame({"ctx": context.to_numpy(),
                       "pattern": _col(rows, "pattern", "random").to_numpy(),
                       "sparsity": rows["sparsity"].round(4).to_numpy(), "dense": dense,
                       "t": seconds})
    best_dense = df[df.dense].groupby("ctx")["t"].min()
    out = {}
    for (ctx, pattern), g in df[~df.dense].groupby(["ctx", "pattern"]):
        if ctx not in best_dense.index or g["sparsity"].nunique() < 2:
            continue
        best = g.groupby("sparsity")["t"].min()  # index sorted ascending
        out[f"{ctx}, {pattern}"] = (best.index.to_numpy(), best_dense[ctx] / best.to_numpy())
    return out


def _crossover_conditioning(measured: tuple[np.ndarray, np.ndarray],
                            predicted: tuple[np.ndarray, np.ndarray] | None,
                            s_star: float | None = None) -> tuple[float, float]:
    """At the measured crossover ``s_star`` (computed when not given): (|predicted speedup
    / measured speedup - 1|, the change of speedup that moves the measured crossover by
    0.05), both relative.

    The first is the model's error where the crossover is read, the second what the ±0.05
    target allows there: a flat curve (sparse and dense close over a wide range of
    sparsities) allows a few percent. NaN where there is no measured crossover.
    """
    s, v = measured
    if s_star is None:
        s_star = crossover(s, v)
    if not np.isfinite(s_star):
        return math.nan, math.nan
    # the segment crossover() interpolated in: s[i] < s_star <= s[i + 1]
    i = int(np.searchsorted(s, s_star, side="left")) - 1
    slope = (np.log(v[i + 1]) - np.log(v[i])) / (s[i + 1] - s[i])
    tolerance = math.expm1(abs(slope) * 0.05)
    error = math.nan
    if predicted is not None:
        ps, pv = predicted
        if ps[0] <= s_star <= ps[-1]:
            error = abs(math.expm1(float(np.interp(s_star, ps, np.log(pv)))))
    return error, tolerance


def metrics(rows: pd.DataFrame, pred: np.ndarray) -> dict[str, Any]:
    """MAPE, Kendall tau, top-1 regret and crossover error of predictions ``pred``."""
    from scipy.stats import kendalltau

    rows = rows.reset_index(drop=True)
    meas = rows["median_s"].to_numpy(dtype=np.float64)
    valid = np.isfinite(pred)
    ape = np.abs(pred[valid] - meas[valid]) / meas[valid]
    out: dict[str, Any] = {"rows": int(valid.sum()), "mape": float(np.mean(ape)),
                           "median_ape": float(np.median(ape))}
    # the same per kernel: peers timed from Python and our C kernels err differently
    by_kernel = pd.Series(ape).groupby(rows.loc[valid, "kernel"].astype(str).to_numpy())
    out["by_kernel"] = {str(k): {"rows": int(g.size), "mape": float(g.mean()),
                                 "median_ape": float(g.median())} for k, g in by_kernel}
    # rank configurations within each problem; dense rows join every sparsity and pattern
    # of their shape, thread count and cache state
    dense = _dense_mask(rows)
    ctx = _context_id(rows)
    dense_by_ctx = {c: g.index.to_numpy() for c, g in rows.loc[dense & valid].groupby(
        ctx[dense & valid])}
    taus, regrets, worst = [], [], []
    sparse_rows = rows.loc[~dense & valid]
    for problem, g in sparse_rows.groupby(_problem_id(sparse_rows, ctx[sparse_rows.index])):
        extra = dense_by_ctx.get(ctx[g.index[0]], np.empty(0, dtype=np.int64))
        idx = np.concatenate([g.index.to_numpy(), extra])
        if len(idx) < 2:
            continue
        p, m = pred[idx], meas[idx]
        regrets.append(m[np.argmin(p)] / m.min())
        worst.append((regrets[-1], str(problem), str(rows.at[idx[np.argmin(p)], "kernel"]),
                      str(rows.at[idx[np.argmin(m)], "kernel"])))
        if len(idx) >= 3:
            tau = kendalltau(p, m).statistic
            if np.isfinite(tau):
                taus.append(tau)
    out["kendall_tau"] = float(np.mean(taus)) if taus else math.nan
    out["problems"] = len(regrets)
    out["regret_geomean"] = float(np.exp(np.mean(np.log(regrets)))) if regrets else math.nan
    out["regret_max"] = float(np.max(regrets)) if regrets else math.nan
    measured_curves = _speedup_curves(rows.loc[valid], meas[valid], ctx[valid], dense[valid])
    predicted_curves = _speedup_curves(rows.loc[valid], pred[valid], ctx[valid], dense[valid])
    measured = {k: crossover(*c) for k, c in measured_curves.items()}
    predicted = {k: crossover(*c) for k, c in predicted_curves.items()}
    errs = [abs(predicted[k] - v) for k, v in measured.items()
            if k in predicted and np.isfinite(v) and np.isfinite(predicted[k])]
    missed = sum(1 for k, v in measured.items() if np.isfinite(v) and not np.isfinite(
        predicted.get(k, math.nan)))
    out["crossover_shapes"] = len(errs)
    out["crossover_missed"] = int(missed)
    out["crossover_mae"] = float(np.mean(errs)) if errs else math.nan
    out["crossover_max"] = float(np.max(errs)) if errs else math.nan
    out["crossover_within_0.05"] = float(np.mean(np.array(errs) <= 0.05)) if errs else math.nan
    # the same over every shape whose measured crossover is in range: a crossover the
    # model places outside the range counts as a miss
    hits = sum(1 for e in errs if e <= 0.05)
    out["crossover_hit_rate"] = (hits / (len(errs) + missed)) if errs or missed else math.nan
    # the same per operation and thread count: where the sweet spots can be trusted
    group_of = {f"{c}, {p}": f"{o}, {int(t)} thread(s)" for c, p, o, t in zip(
        ctx[valid], _col(rows, "pattern", "random")[valid], rows.loc[valid, "op"],
        rows.loc[valid, "threads"], strict=True)}
    by_group: dict[str, dict[str, int]] = {}
    for k, v in measured.items():
        if np.isfinite(v):
            g = by_group.setdefault(group_of[k], {"hits": 0, "shapes": 0})
            g["shapes"] += 1
            g["hits"] += int(_crossover_error(v, predicted.get(k, math.nan)) <= 0.05)
    out["crossover_hits_by"] = dict(sorted(by_group.items()))
    # how well conditioned the crossovers are: the predicted speedup's error at the
    # measured crossover, and the speedup error that ±0.05 of sparsity allows there
    cond = np.array([_crossover_conditioning(c, predicted_curves.get(k), measured[k])
                     for k, c in measured_curves.items() if np.isfinite(measured[k])]
                    ).reshape(-1, 2)
    out["crossover_speedup_error"] = float(np.nanmedian(cond[:, 0])) \
        if np.isfinite(cond[:, 0]).any() else math.nan
    out["crossover_tolerance"] = float(np.median(cond[:, 1])) if len(cond) else math.nan
    # the per-problem detail behind the numbers (format_details prints it)
    out["crossovers"] = {k: [measured.get(k, math.nan), predicted.get(k, math.nan)]
                         for k in sorted(set(measured) | set(predicted))
                         if np.isfinite(measured.get(k, math.nan))
                         or np.isfinite(predicted.get(k, math.nan))}
    out["worst_regrets"] = [list(w) for w in sorted(worst, reverse=True)[:_WORST_SHOWN]]
    return out


def probed(rows: pd.DataFrame, pred: np.ndarray, near: float) -> tuple[np.ndarray,
                                                                       np.ndarray]:
    """``pred`` corrected per shape as if each shape had been probed: its dense baselines
    and its sparse kernels at the sparsity nearest ``near`` measured, every kernel's
    predictions scaled by :func:`~._probe.probe_factors` (per context and pattern).

    Returns the corrected predictions (the probes' own rows are their measurement) and the
    mask of those probe rows.
    """
    rows = rows.reset_index(drop=True)
    meas = rows["median_s"].to_numpy(dtype=np.float64)
    dense = _dense_mask(rows)
    out = np.array(pred, dtype=np.float64)
    probe = np.zeros(len(rows), dtype=bool)
    sparsity = rows["sparsity"].fillna(0.0).round(4).to_numpy()
    kernel = rows["kernel"].astype(str).to_numpy()
    context = _context_id(rows)
    pattern = _col(rows, "pattern", "random")
    groups: dict[str, dict[str, list[int]]] = {}
    for i, (c, pt) in enumerate(zip(context, pattern, strict=True)):
        groups.setdefault(c, {}).setdefault("dense" if dense[i] else pt, []).append(i)
    for by_pattern in groups.values():
        base = by_pattern.pop("dense", [])
        for idx in list(by_pattern.values()) or [[]]:
            idx = np.asarray(base + idx, dtype=np.int64)
            factors, used = probe_factors(kernel[idx], dense[idx], sparsity[idx], meas[idx],
                                          pred[idx], near)
            out[idx] = pred[idx] * np.array([factors.get(k, 1.0) for k in kernel[idx]])
            out[idx[used]] = meas[idx[used]]
            probe[idx[used]] = True
    return out, probe


def evaluate(make_model: Callable[[], PerfModel], results: pd.DataFrame, *,
             splits: tuple[str, ...] = SPLITS, n_folds: int = 5, seed: int = 0,
             predictions: dict[str, pd.DataFrame] | None = None,
             probe: float | None = None) -> dict[str, dict[str, Any]]:
    """Metrics per split (see the module docstring); rows with status != ok are dropped.

    Keys are the split names (every row scored) and, when the results flag noisy rows
    (``noisy``: confidence interval wider than the sweep's target), ``<split>/converged``:
    the same out-of-fold predictions scored on the converged rows only, whose measured
    time is known to the sweep's precision. Training always uses every row.

    ``predictions``, when given, receives per split the scored rows with their out-of-fold
    prediction in a ``predicted_s`` column, so they can be kept and rescored
    (``metrics(df, df["predicted_s"].to_numpy())``) without refitting.

    ``probe`` (a sparsity), when given, adds ``leave-shape-out/probe <sparsity>`` (with
    that split): the same predictions corrected per held-out shape by :func:`probed` (its
    dense baselines and its sparse kernels at the sparsity nearest ``probe`` measured);
    MAPE, median APE and ``by_kernel`` over the other rows (``rows`` counts them,
    ``probe_rows`` the probes).
    """
    rows = ok_rows(results)
    out: dict[str, dict[str, Any]] = {}
    converged = (~rows["noisy"].fillna(False).astype(bool)).to_numpy() \
        if "noisy" in rows else None
    for split in splits:
        pred = out_of_fold(make_model, rows, split, n_folds=n_folds, seed=seed)
        if predictions is not None:
            predictions[split] = rows.assign(predicted_s=pred)
        out[split] = metrics(rows, pred)
        if converged is not None and 0 < converged.sum() < len(rows):
            out[f"{split}/converged"] = metrics(rows.loc[converged], pred[converged])
        if probe is not None and split == "leave-shape-out":
            # the crossovers and choices with the probes measured; the time errors over
            # the rows that were not probes
            fixed, was_probe = probed(rows, pred, probe)
            m = metrics(rows, fixed)
            rest = metrics(rows.loc[~was_probe], fixed[~was_probe])
            m.update({k: rest[k] for k in ("rows", "mape", "median_ape", "by_kernel")},
                     probe_rows=int(was_probe.sum()))
            out[f"{split}/probe {probe:g}"] = m
    return out


def format_report(report: dict[str, dict[str, Any]], name: str = "") -> str:
    """A plain-text table of :func:`evaluate`'s output."""
    cols = ("rows", "mape", "median_ape", "kendall_tau", "regret_geomean", "regret_max",
            "crossover_shapes", "crossover_missed", "crossover_mae", "crossover_within_0.05",
            "crossover_hit_rate", "crossover_speedup_error", "crossover_tolerance")
    heads = ("rows", "MAPE", "median APE", "Kendall tau", "regret geo", "regret max",
             "xover shapes", "xover missed", "xover MAE", "xover <=0.05", "xover hits",
             "xover sp err", "xover tol")
    lines = [f"{'model':9s} {'split':29s} " + " ".join(f"{c:>12s}" for c in heads)]
    for split, m in report.items():
        cells = []
        for c in cols:
            v = m.get(c, math.nan)
            cells.append(f"{v:12d}" if isinstance(v, int) else f"{v:12.4f}")
        lines.append(f"{name:9s} {split:29s} " + " ".join(cells))
    return "\n".join(lines)


def format_details(report: dict[str, dict[str, Any]], name: str = "") -> str:
    """Where :func:`evaluate`'s errors are, per split: MAPE per kernel, every crossover
    predicted more than 0.05 away from the measured one (or on one side of the sparsity
    range only), and the problems whose predicted kernel choice cost the most (regret =
    chosen / best time)."""
    lines = []
    for split, m in report.items():
        if "/" in split:
            continue  # the converged subset repeats the same predictions
        lines.append(f"{name} {split}: MAPE per kernel (rows, MAPE, median APE)")
        for kernel, k in sorted(m.get("by_kernel", {}).items(), key=lambda kv: -kv[1]["mape"]):
            lines.append(f"  {kernel:24s} {k['rows']:6d} {k['mape']:8.4f} {k['median_ape']:8.4f}")
        if m.get("crossover_hits_by"):
            lines.append(f"{name} {split}: crossovers within ±0.05 by operation and threads: "
                         + format_hits_by(m))
        lines.append(f"{name} {split}: crossovers off by more than 0.05 "
                     "(shape, threads, cache, pattern: measured -> predicted)")
        for key, (meas, pred) in sorted(m.get("crossovers", {}).items(),
                                        key=lambda kv: -_crossover_error(*kv[1])):
            if _crossover_error(meas, pred) > 0.05:
                lines.append(f"  {key}: {_fmt_sparsity(meas)} -> {_fmt_sparsity(pred)}")
        lines.append(f"{name} {split}: largest regrets (problem: regret, chosen -> best)")
        for regret, pid, chosen, best in m.get("worst_regrets", []):
            if regret > 1.0:
                lines.append(f"  {pid}: {regret:.3f}, {chosen} -> {best}")
    return "\n".join(lines)


def format_hits_by(m: dict[str, Any]) -> str:
    """``metrics(...)["crossover_hits_by"]`` in one line: ``conv2d, 1 thread(s) 35 of 70;
    ...``."""
    return "; ".join(f"{g} {v['hits']} of {v['shapes']}"
                     for g, v in m.get("crossover_hits_by", {}).items())


def _crossover_error(measured: float, predicted: float) -> float:
    """|predicted - measured|; inf when only one of them lies in the measured range."""
    if np.isfinite(measured) and np.isfinite(predicted):
        return abs(predicted - measured)
    return math.inf


def _fmt_sparsity(value: float) -> str:
    return f"{value:.3f}" if np.isfinite(value) else "out of range"


def report_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True, default=float)
