"""Simulation mode: record an exhaustive sweep of a search space once, then replay it.

:func:`record_sweep` measures every valid configuration of a problem (answer check, then
the harness) and stores one row per configuration in the results store (sweep
:data:`SWEEP`, status ``ok`` or ``invalid`` with the reason). :class:`ReplayObjective`
answers each trial from those rows instead of timing, so strategies can be compared
quickly and deterministically (Kernel Tuner's simulation runner does the same).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from .objective import (
    Infeasible,
    Objective,
    Operands,
    config_key,
    make_plan,
    measure_plan,
    run_checked,
)
from .space import SearchSpace

__all__ = ["SWEEP", "ReplayObjective", "record_sweep", "recorded"]

#: sweep name of the exhaustive tuner sweeps in the results store
SWEEP = "tuner-exhaustive"
_PROBLEM_COLUMNS = ("m", "n", "k")


def _point_key(op: str, problem: Mapping[str, Any], kernel: str,
               params: Mapping[str, Any]) -> str:
    import hashlib

    blob = json.dumps({"sweep": SWEEP, "op": op, "problem": dict(problem), "kernel": kernel,
                       "params": dict(params)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _params_text(params: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in params.items() if k != "threads"}, sort_keys=True)


def record_sweep(space: SearchSpace, store: Any = None, *, timing: Any = None, seed: int = 0,
                 progress: Callable[[int, int], None] | None = None) -> int:
    """Measure every configuration of ``space`` and store it (sweep :data:`SWEEP`).

    Points already in the store (same machine, problem and config) are skipped, so an
    interrupted sweep resumes.

    Parameters
    ----------
    space : SearchSpace of one problem (op ``spmm``).
    store : results store (path, URL, Store or None for the default file).
    timing : perfmodel.harness.TimingConfig per point.
    seed : operand seed.
    progress : called as ``progress(done, total)`` after each point.

    Returns
    -------
    Number of points measured now.
    """
    from perfmodel.store import open_store

    configs = list(space.configs())
    operands = Operands.spmm(**space.problem, seed=seed)
    st = open_store(store)
    try:
        mid = st.machine_id()
        have = st.measured_keys(mid)
        run = st.start_run(mid, SWEEP, spec={"op": space.op, "problem": space.problem})
        m, n, k = (space.problem[c] for c in _PROBLEM_COLUMNS)
        nnz = int(operands.a.nnz)
        measured = 0
        for i, (kernel, params) in enumerate(configs):
            key = _point_key(space.op, space.problem, kernel, params)
            if key not in have:
                threads = int(params.get("threads", 1))
                row: dict[str, Any] = {
                    "point_key": key, "sweep": SWEEP, "op": space.op, "kernel": kernel,
                    "threads": threads, "params": _params_text(params), "m": m, "n": n,
                    "k": k, "sparsity": space.problem["sparsity"],
                    "density": nnz / (m * k), "nnz": nnz, "pattern": "random",
                    "cache": "warm", "flops": 2.0 * nnz * n,
                }
                samples: np.ndarray | tuple = ()
                try:
                    plan = make_plan(kernel, params, operands)
                    run_checked(plan, operands, threads)
                    t = measure_plan(plan, threads, timing)
                    row.update(t.as_row(), status="ok", isa=str(plan.isa),
                               gflops=2.0 * nnz * n / t.median_s * 1e-9)
                    samples = t.samples
                except (ValueError, Infeasible) as exc:
                    row.update(status="invalid", error=str(exc))
                except RuntimeError as exc:
                    row.update(status="runtime_failed", error=str(exc))
                st.add_measurement(run, mid, row, samples)
                measured += 1
            if progress is not None:
                progress(i + 1, len(configs))
        st.finish_run(run)
        return measured
    finally:
        if st is not store:
            st.close()


def recorded(space: SearchSpace, store: Any = None, *,
             fingerprint: str | None = None) -> pd.DataFrame:
    """The recorded sweep rows of ``space``'s problem: DataFrame with ``config`` (see
    :func:`tuner.objective.config_key`), ``kernel``, ``params`` (dict), ``status``,
    ``error``, ``median_s``; one row per configuration of the space that was recorded."""
    from perfmodel import _context
    from perfmodel.store import load_results

    if fingerprint is None:
        fingerprint = _context.machine()[0]
    df = load_results(store, sweep=SWEEP, op=space.op, fingerprint=fingerprint)
    for col in _PROBLEM_COLUMNS:
        df = df[df[col] == space.problem[col]]
    df = df[np.isclose(df["sparsity"], space.problem["sparsity"])]
    params = [{**json.loads(p), "threads": int(t)}
              for p, t in zip(df["params"], df["threads"], strict=True)]
    out = pd.DataFrame({
        "config": [config_key(kn, p) for kn, p in zip(df["kernel"], params, strict=True)],
        "kernel": df["kernel"].to_numpy(), "params": params,
        "status": df["status"].to_numpy(), "error": df["error"].to_numpy(),
        "median_s": df["median_s"].to_numpy(),
    })
    valid = {config_key(kn, p) for kn, p in space.configs()}
    return out[out["config"].isin(valid)].drop_duplicates("config").reset_index(drop=True)


class ReplayObjective(Objective):
    """Answers each trial from a recorded sweep (no timing, deterministic).

    Parameters
    ----------
    space : the problem's SearchSpace.
    table : :func:`recorded` rows of that problem (must cover the space).
    """

    def __init__(self, space: SearchSpace, table: pd.DataFrame,
                 seed: int | None = None) -> None:
        super().__init__(space, seed)
        if table.empty:
            raise ValueError(f"no recorded sweep for {space.op} {space.problem} in the store; "
                             f"record one first (tuner.simulate.record_sweep or "
                             f"perfmodel tune-eval)")
        self.table = {row.config: row for row in table.itertuples(index=False)}

    def evaluate(self, kernel: str, params: dict[str, Any], trial: Any) -> float:
        row = self.table.get(config_key(kernel, params))
        if row is None:
            raise KeyError(f"configuration {config_key(kernel, params)} is not in the "
                           f"recorded sweep")
        if row.status != "ok":
            raise Infeasible(f"{row.status} in the recorded sweep: {row.error}")
        return float(row.median_s)

    @property
    def optimum(self) -> tuple[str, float]:
        """(config, seconds) of the fastest recorded configuration."""
        ok = [(r.median_s, c) for c, r in self.table.items() if r.status == "ok"]
        seconds, config = min(ok)
        return config, float(seconds)
