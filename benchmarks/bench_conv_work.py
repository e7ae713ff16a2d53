"""How well the direct convolution's counted work explains its time, per layer.

Usage::

    python benchmarks/bench_conv_work.py STORE.db

Fits seconds per unit of ``kernels_c.conv.direct_work`` (FMA slots, register-tile visits,
copied input vectors) on the store's direct-convolution rows, exactly as the learned model
does for its reference (``_Featurizer.calibrate_direct_conv``), and prints per layer the
mean absolute relative error of that sum alone: fitted on every layer, and fitted without
the layer (what a held-out layer gets). Also the time per FMA slot fitted per layer: if the
units were complete it would be one number.
"""

from __future__ import annotations

import sys

import numpy as np


def main(store: str) -> None:
    from perfmodel.models._problem import from_row
    from perfmodel.models.base import ok_rows
    from perfmodel.models.learned import _as_twins, _Featurizer
    from perfmodel.store import load_results

    rows = _as_twins(ok_rows(load_results(store)))
    rows = rows[rows["kernel"] == "conv_direct_sparse_f32"].reset_index(drop=True)
    featurizer = _Featurizer([], [])
    units = [featurizer._direct_units(from_row(r), r)
             for r in rows.to_dict("records")]
    keep = [u is not None for u in units]   # pointwise layers run spmm: not this kernel
    rows = rows[keep].reset_index(drop=True)
    units = np.array([u for u in units if u is not None])
    layer = [f"{int(r.c)}x{int(r.h)}x{int(r.w)} -> {int(r.o)}, {int(r.r)}x{int(r.s)} "
             f"stride {int(r.stride)}" for r in rows.itertuples()]
    layer = np.array(layer, dtype=object)
    t = rows["median_s"].to_numpy(dtype=np.float64)

    def error(fit_rows: np.ndarray, test_rows: np.ndarray) -> float:
        featurizer.calibrate_direct_conv(rows[fit_rows])
        if featurizer.direct_cost is None:
            return float("nan")
        cost = np.array(list(featurizer.direct_cost.values()))
        return float(np.mean(np.abs(units[test_rows] @ cost / t[test_rows] - 1)))

    everything = np.ones(len(rows), dtype=bool)
    print(f"{len(rows)} direct-convolution rows, {len(set(layer))} layers")
    featurizer.calibrate_direct_conv(rows)
    print("seconds per unit (all layers): " + ", ".join(
        f"{k} {v * 1e9:.3f} ns" for k, v in (featurizer.direct_cost or {}).items()))
    print(f"{'layer':36s} {'in-sample':>9s} {'held out':>9s} {'ns/FMA slot':>11s}")
    for name in sorted(set(layer)):
        mine = layer == name
        slot, *_ = np.linalg.lstsq(np.c_[units[mine, 0], np.ones(mine.sum())], t[mine],
                                   rcond=None)
        print(f"{name:36s} {error(everything, mine):9.3f} {error(~mine, mine):9.3f} "
              f"{slot[0] * 1e9:11.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
