"""Strategy evaluation in simulation mode (``perfmodel tune-eval``).

For each problem the whole search space is measured once (:func:`tuner.simulate.record_sweep`,
stored, resumable); its fastest configuration is the optimum. Each strategy then runs over
``seeds`` seeds against the replayed sweep, and we count how many *evaluations* it needs
until its best is within ``tolerance`` (5 %) of the optimum. An evaluation is a distinct
configuration measured: a repeated proposal is answered from the earlier trial and a
constraint violation is rejected before measuring, neither costs a measurement (Kernel
Tuner counts the same way). Strategies:

- ``random``: Optuna's RandomSampler;
- ``tpe``: TPE (multivariate, grouped, 8 random start-up trials), no warm start;
- ``default+tpe``: the same TPE, starting from the kernel's default configuration;
- ``model``: what :func:`tuner.tune` does with a model: the same TPE study, warm-started
  with the default configuration and the learned model's top-k predictions, then every
  trial proposed by :class:`tuner.study.ModelGuide` (a surrogate refitted on the
  trials, with the learned model as its prior mean). The model is fitted on the
  *other* problems' sweeps (leave one problem out), so it has
  never seen the problem it guides;
- ``model-only``: the same without the default configuration (what the learned model
  contributes by itself);
- ``gp``: Optuna's GPSampler (8 start-up trials).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .objective import config_key
from .simulate import SWEEP, ReplayObjective, record_sweep, recorded
from .space import SearchSpace, search_space
from .study import ModelGuide, default_config, make_sampler, seed_study

__all__ = ["PROBLEMS", "STRATEGIES", "evaluate", "format_table", "trials_to_target"]

#: single-threaded spmm problems (so the exhaustive sweeps stay affordable on a shared
#: 2-core machine), sparse enough that the CSR kernel beats dense BLAS, so the landscape is
#: its blocking parameters (1-3 % of each space lies within 5 % of the optimum on the quiet
#: machine); each space has >= 300 valid configurations. Every problem is evaluated; the
#: model that guides one is fitted on the sweeps of the others. The guide's settings were
#: chosen on the first ten; the last four were added afterwards as a held-out check.
PROBLEMS: tuple[dict[str, Any], ...] = (
    {"m": 128, "n": 512, "k": 512, "sparsity": 0.9},
    {"m": 256, "n": 256, "k": 512, "sparsity": 0.9},
    {"m": 512, "n": 128, "k": 1024, "sparsity": 0.95},
    {"m": 256, "n": 512, "k": 1024, "sparsity": 0.8},
    {"m": 128, "n": 1024, "k": 256, "sparsity": 0.9},
    {"m": 512, "n": 256, "k": 512, "sparsity": 0.95},
    {"m": 64, "n": 2048, "k": 256, "sparsity": 0.9},
    {"m": 256, "n": 384, "k": 768, "sparsity": 0.85},
    {"m": 1024, "n": 64, "k": 512, "sparsity": 0.8},
    {"m": 512, "n": 256, "k": 256, "sparsity": 0.8},
    {"m": 192, "n": 768, "k": 384, "sparsity": 0.9},
    {"m": 384, "n": 256, "k": 768, "sparsity": 0.85},
    {"m": 96, "n": 1536, "k": 512, "sparsity": 0.92},
    {"m": 768, "n": 128, "k": 512, "sparsity": 0.8},
)
STRATEGIES = ("random", "tpe", "default+tpe", "model-only", "model", "gp")


@dataclass
class _Run:
    evaluations: int   # distinct configurations measured until the target (or the cap)
    trials: int        # Optuna trials until then (repeats and infeasible ones included)
    reached: bool


def trials_to_target(space: SearchSpace, table: pd.DataFrame, strategy: str, seed: int, *,
                     model: Any = None, top_k: int = 4, tolerance: float = 0.05,
                     max_evaluations: int = 200,
                     guide: Mapping[str, Any] | None = None) -> _Run:
    """Run one strategy on a replayed sweep until its best is within ``tolerance`` of the
    optimum (or ``max_evaluations`` distinct configurations were measured). ``guide``:
    keyword arguments of :class:`tuner.study.ModelGuide` (``every``, ``noise_scale``...)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective = ReplayObjective(space, table, seed=seed)
    target = objective.optimum[1] * (1.0 + tolerance)
    sampler = make_sampler("tpe" if strategy.startswith("model") else
                           strategy.rsplit("+", 1)[-1], seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    callbacks: list[Any] = []
    if strategy in ("model", "model-only"):
        model_guide = ModelGuide(space, model, seed=seed, **(guide or {}))
        seed_study(study, space, model=model, top_k=top_k, from_store=False,
                   default=strategy == "model", predicted=model_guide.predicted)
        callbacks.append(model_guide)
    elif strategy.startswith("default+"):
        seed_study(study, space, model=None, from_store=False)
    state = {"reached": False}

    def stop(study: Any, trial: Any) -> None:
        if trial.value is not None and trial.value <= target:
            state["reached"] = True
            study.stop()
        elif objective.evaluations >= max_evaluations or objective.exhausted or \
                len(study.trials) >= 20 * max_evaluations:
            study.stop()

    study.optimize(objective, callbacks=[stop, *callbacks], catch=(Exception,))
    return _Run(objective.evaluations, len(study.trials), state["reached"])


def _fit_model(results: pd.DataFrame) -> Any:
    from perfmodel.models.learned import LearnedModel

    return LearnedModel().fit(results)


def evaluate(problems: Sequence[dict[str, Any]] = PROBLEMS, *,
             strategies: Sequence[str] = STRATEGIES, seeds: int = 20, store: Any = None,
             timing: Any = None, tolerance: float = 0.05, max_evaluations: int = 200,
             top_k: int = 4, guide: Mapping[str, Any] | None = None,
             fit_model: Callable[[pd.DataFrame], Any] = _fit_model,
             progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Median evaluations to within ``tolerance`` of the exhaustive optimum.

    Parameters
    ----------
    problems : spmm shapes (m, n, k, sparsity); threads are fixed to 1.
    strategies : subset of :data:`STRATEGIES`.
    seeds : runs per strategy and problem (seeds 0 .. seeds - 1).
    store : results store holding (or receiving) the exhaustive sweeps.
    timing : perfmodel.harness.TimingConfig of each sweep point (default 20 ms budget).
    guide : keyword arguments of the model strategies' ModelGuide (default: its defaults).
    fit_model : fits the warm-start model on results rows (leave one problem out).

    Returns
    -------
    DataFrame, one row per (problem, strategy): problem, space_size, optimum_s,
    default_s, median_evals, p25_evals, p75_evals, median_trials, reached (fraction of
    seeds that reached the target within ``max_evaluations``).
    """
    from perfmodel.harness import TimingConfig

    say = progress or (lambda _msg: None)
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        raise ValueError(f"unknown strategies {sorted(unknown)}; valid: {list(STRATEGIES)}")
    timing = timing or TimingConfig(budget_s=0.02, target_rel_ci=0.02, min_samples=5)
    spaces = [search_space("spmm", threads=1, **p) for p in problems]
    for space in spaces:
        say(f"sweep {space.problem}: {space.size} configurations")
        record_sweep(space, store, timing=timing)
    tables = [recorded(space, store) for space in spaces]
    uses_model = any(s.startswith("model") for s in strategies)
    results = [_as_results(space, store) for space in spaces] if uses_model else []
    rows = []
    for i, (space, table) in enumerate(zip(spaces, tables, strict=True)):
        model = None
        if uses_model:
            model = fit_model(pd.concat([r for j, r in enumerate(results) if j != i],
                                        ignore_index=True))
        objective = ReplayObjective(space, table)
        _opt_cfg, opt_s = objective.optimum
        drow = objective.table.get(config_key(*default_config(space)))
        for strategy in strategies:
            runs = [trials_to_target(space, table, strategy, seed, model=model, top_k=top_k,
                                     tolerance=tolerance, max_evaluations=max_evaluations,
                                     guide=guide)
                    for seed in range(seeds)]
            ev = np.array([r.evaluations for r in runs])
            rows.append({
                "problem": "m{m} n{n} k{k} s{sparsity:g}".format(**space.problem),
                "space_size": len(table), "optimum_s": opt_s,
                "default_s": float(drow.median_s) if drow is not None else float("nan"),
                "strategy": strategy, "median_evals": float(np.median(ev)),
                "p25_evals": float(np.percentile(ev, 25)),
                "p75_evals": float(np.percentile(ev, 75)),
                "median_trials": float(np.median([r.trials for r in runs])),
                "reached": float(np.mean([r.reached for r in runs])),
            })
            say(f"{rows[-1]['problem']} {strategy}: median {rows[-1]['median_evals']:g}")
    return pd.DataFrame(rows)


def _as_results(space: SearchSpace, store: Any) -> pd.DataFrame:
    """The store rows of one recorded sweep (what a model is fitted on)."""
    from perfmodel import _context
    from perfmodel.store import load_results

    df = load_results(store, sweep=SWEEP, op=space.op, fingerprint=_context.machine()[0])
    keep = (df["m"] == space.problem["m"]) & (df["n"] == space.problem["n"]) & \
        (df["k"] == space.problem["k"]) & np.isclose(df["sparsity"], space.problem["sparsity"])
    return df[keep].reset_index(drop=True)


def format_table(df: pd.DataFrame) -> str:
    """Markdown table: one row per problem, median evaluations per strategy."""
    strategies = list(dict.fromkeys(df["strategy"]))
    head = ["problem", "configs", "optimum (us)", "default / optimum",
            *(f"{s} median [IQR]" for s in strategies)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for problem, group in df.groupby("problem", sort=False):
        first = group.iloc[0]
        cells = [problem, str(int(first.space_size)), f"{first.optimum_s * 1e6:.1f}",
                 f"{first.default_s / first.optimum_s:.2f}"]
        for s in strategies:
            r = group[group["strategy"] == s].iloc[0]
            mark = "" if r.reached == 1 else f" ({r.reached:.0%} reached)"
            cells.append(f"{r.median_evals:g} [{r.p25_evals:g}-{r.p75_evals:g}]{mark}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
