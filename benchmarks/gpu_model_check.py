"""How well the suite's models describe a GPU target, from ``bench_gpu_spmm.py`` results.

    python benchmarks/gpu_model_check.py benchmarks/results/gpu/nvidia-h100.json \
        --target nvidia-h100

Prints, for the target description against the measurements in the file:

- ceilings: HBM triad bandwidth (the largest working sets), the L2 plateau, the fp32 GEMM
  ceiling and the dense efficiency it implies, Park et al.'s alpha of the measured sparse
  kernel (``RooflineModel.fit``'s median of t_sparse / (x t_dense) at x >= 0.1);
- per shape, the measured crossover sparsity (sparse = dense) against Park's lower bound
  from the description (``perfmodel.sweet_spot(..., target=...)``) and from alpha measured
  on the other shapes only (leave-one-shape-out);
- the hierarchical roofline's errors (``perfmodel evaluate``'s metrics): with the
  description's factors, and calibrated on the other shapes (leave-one-shape-out).

Reads only the JSON; needs no GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perfmodel import sweet_spot  # noqa: E402
from perfmodel.models._evaluate import crossover, evaluate, metrics  # noqa: E402
from perfmodel.models.roofline import RooflineModel, family_of  # noqa: E402
from perfmodel.targets import load_target  # noqa: E402


def load(path: str | Path) -> tuple[dict, pd.DataFrame]:
    """The results file and its spmm rows as a results-store-shaped table."""
    with open(path, encoding="utf-8") as fh:
        result = json.load(fh)
    rows = pd.DataFrame(result["spmm"])
    rows["status"] = "ok"
    return result, rows


def ceilings(result: dict, target: str) -> dict[str, float]:
    """Measured HBM / L2 triad bandwidth (B/s), fp32 GEMM (FLOP/s) and dense efficiency."""
    bw = pd.DataFrame(result["bandwidth"])
    triad = bw[bw.kind == "triad"].sort_values("working_set_bytes")
    l2 = float(result["machine"].get("l2_bytes") or 0)
    fp32 = next(r for r in result["gemm"] if r["dtype"] == "fp32")
    peak = load_target(target).peak("fp32").value
    return {"hbm_triad": float(triad.bytes_per_s.iloc[-3:].median()),
            "l2_triad": float(triad[triad.working_set_bytes <= l2 / 2].bytes_per_s.max())
            if l2 else math.nan,
            "sgemm": float(fp32["flop_per_s"]), "dense_efficiency": fp32["flop_per_s"] / peak}


def park_alpha(rows: pd.DataFrame, target: str) -> float:
    return RooflineModel(target=target).fit(rows).park_alpha("spmm")


def shape_key(rows: pd.DataFrame) -> pd.Series:
    return rows.m.astype(str) + "x" + rows.k.astype(str) + "x" + rows.n.astype(str)


def measured_crossover(g: pd.DataFrame, column: str = "median_s") -> float:
    is_dense = g.kernel.map(lambda k: family_of(k, "spmm") == "gemm")
    dense = g[is_dense][column].min()
    sparse = g[~is_dense]
    return crossover(sparse.sparsity.to_numpy(), dense / sparse[column].to_numpy())


def per_shape(rows: pd.DataFrame, target: str) -> pd.DataFrame:
    keys = shape_key(rows)
    out = []
    for key, g in rows.groupby(keys, sort=False):
        m, k, n = (int(v) for v in key.split("x"))
        alpha = park_alpha(rows[keys != key], target)
        desc = sweet_spot("spmm", target=target, m=m, n=n, k=k)
        loso = sweet_spot("spmm", target=target, m=m, n=n, k=k, alpha=alpha)
        row = {"shape": key, "measured": measured_crossover(g),
               "eager": measured_crossover(g, "eager_median_s")
               if "eager_median_s" in g else math.nan,
               "description": desc.lower, "alpha_loso": alpha, "park_loso": loso.lower}
        out.append(row)
    return pd.DataFrame(out)


def _fmt(v: float | None) -> str:
    return "never" if v is None or not np.isfinite(v) else f"{v:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="JSON written by bench_gpu_spmm.py --out")
    ap.add_argument("--target", required=True, help="catalog target the file measured")
    args = ap.parse_args(argv)
    result, rows = load(args.results)
    t = load_target(args.target)
    c = ceilings(result, args.target)
    print(f"{result['machine'].get('name', '?')} ({args.results}) vs {args.target}")
    hbm = t.main_memory().bandwidth
    print(f"HBM triad {c['hbm_triad'] / 1e12:.2f} TB/s (description {hbm.value / 1e12:.2f}, "
          f"{hbm.kind}); L2 plateau {c['l2_triad'] / 1e12:.2f} TB/s")
    eta = t.model["dense_efficiency"]
    print(f"SGEMM 8192^3 {c['sgemm'] / 1e12:.1f} TFLOP/s = {c['dense_efficiency']:.3f} of "
          f"{t.peak('fp32').value / 1e12:.1f} (description {eta.value:.3f}, {eta.kind})")
    alpha = t.model["sparse_alpha"]
    print(f"Park alpha, all shapes: {park_alpha(rows, args.target):.2f} (description "
          f"{alpha.value:.2f}, {alpha.kind})\n")
    table = per_shape(rows, args.target)
    print(f"{'shape':>18} {'measured':>9} {'eager':>7} {'descr.':>7} {'err':>7} "
          f"{'LOSO a':>7} {'Park':>7} {'err':>7}")
    for r in table.itertuples():
        e1, e2 = r.description - r.measured, r.park_loso - r.measured
        print(f"{r.shape:>18} {_fmt(r.measured):>9} {_fmt(r.eager):>7} "
              f"{_fmt(r.description):>7} {e1:+7.3f} {r.alpha_loso:7.2f} "
              f"{_fmt(r.park_loso):>7} {e2:+7.3f}")
    for name, col in (("description", "description"), ("Park, alpha LOSO", "park_loso")):
        err = (table[col] - table.measured).abs().dropna()
        print(f"{name}: crossover MAE {err.mean():.3f}, max {err.max():.3f}, within 0.05 "
              f"{(err <= 0.05).sum()} of {len(err)}")
    print()
    described = metrics(rows, RooflineModel(target=args.target).defaults().predict(rows))
    loso = evaluate(lambda: RooflineModel(target=args.target), rows,
                    splits=("leave-shape-out",), n_folds=0)["leave-shape-out"]
    for name, mt in (("roofline, description factors", described),
                     ("roofline, calibrated LOSO", loso)):
        print(f"{name}: MAPE {mt['mape']:.1%}, median APE {mt['median_ape']:.1%}, "
              f"regret {mt['regret_geomean']:.3f}, crossover MAE {mt['crossover_mae']:.3f} "
              f"({mt['crossover_shapes']} shapes, {mt['crossover_missed']} missed), within "
              f"0.05 {mt['crossover_within_0.05']:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
