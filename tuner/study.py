"""The one entry point: :func:`tune` wraps an Optuna study with an injected, seeded sampler.

Storage: a local SQLite file (``$PERFMODEL_HOME/tuner.db``) by default; with a PostgreSQL
URL any number of processes, on one machine or on several identical ones, work on one study
at once (Optuna's RDB storage hands out trial numbers in transactions, so every trial lands
once; the TPE sampler runs with ``constant_liar`` so concurrent workers do not all propose
the same configuration).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perfmodel.store.store import with_installed_driver

from .objective import (
    MeasureObjective,
    Objective,
    Operands,
    config_key,
    make_plan,
    measure_plan,
    run_checked,
)
from .space import SearchSpace, search_space

__all__ = ["SAMPLERS", "TuneOptions", "TuneResult", "make_sampler", "open_storage", "tune"]

log = logging.getLogger("tuner")

#: sampler names accepted by :func:`tune` / :func:`make_sampler`
SAMPLERS = ("tpe", "random", "gp")
#: TPE settings shared by plain and model-guided runs (only the warm start differs)
TPE_STARTUP_TRIALS = 8


@dataclass
class TuneOptions:
    """Settings of :func:`tune` beyond the common ones.

    Parameters
    ----------
    store : results store (path, URL, Store; None = the default file): warm-start
        measurements are read from it and the tuned result is written to it.
    seed : sampler seed (None: random; give each fleet worker its own or none).
    timing : perfmodel.harness.TimingConfig of one trial (default: 0.2 s, 3 % CI).
    top_k : model predictions enqueued by the warm start.
    model : a fitted PerfModel for the warm start; None = the learned model file
        (``perfmodel fit``) when it exists; False = no model.
    retime_top : best configurations re-timed interleaved at the end (with the default).
    retime_rounds : interleaved rounds of the re-timing.
    simulate : replay the recorded exhaustive sweep of the store instead of timing.
    record : write the result to the store (``perfmodel.best_config`` answers "tuned").
    progress : show a tqdm progress bar.
    operand_seed : seed of the generated operands.
    """

    store: Any = None
    seed: int | None = None
    timing: Any = None
    top_k: int = 4
    model: Any = None
    retime_top: int = 3
    retime_rounds: int = 5
    simulate: bool = False
    record: bool = True
    progress: bool = False
    operand_seed: int = 0


@dataclass
class TuneResult:
    """Outcome of :func:`tune`.

    kernel : str; params : dict (``threads`` included); seconds : float, median time of
    the winner (re-timed, or replayed in simulation); speedup_over_default : float, time
    of the kernel's default configuration / ``seconds``; study : optuna.Study.
    """

    kernel: str
    params: dict[str, Any]
    seconds: float
    speedup_over_default: float
    study: Any = field(repr=False)
    default_seconds: float = float("nan")
    interrupted: bool = False
    recorded: bool = False


# ---- storage and samplers -------------------------------------------------------------
def _redact(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<storage URL>"


def open_storage(storage: Any = None) -> Any:
    """The Optuna storage for ``storage``: None = the local SQLite file
    ``$PERFMODEL_HOME/tuner.db``; a URL (``sqlite:///...``, ``postgresql://...``); a path
    (SQLite file); an Optuna storage object is returned as is.

    Raises
    ------
    ValueError when the storage cannot be reached or opened (the message names it, with
    the password hidden, and the database error).
    """
    import optuna

    if storage is not None and not isinstance(storage, str) and not hasattr(storage,
                                                                           "__fspath__"):
        return storage
    if storage is None:
        from perfmodel._paths import data_dir

        path = data_dir() / "tuner.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path}"
    elif "://" not in str(storage):
        from pathlib import Path

        url = f"sqlite:///{Path(storage).expanduser().resolve()}"
    else:
        url = str(storage)
    url = with_installed_driver(url)
    kwargs: dict[str, Any] = {}
    if url.startswith("postgresql"):
        kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    elif url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 60}}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            # workers starting together on a fresh database race to create Optuna's
            # tables; the losers see a unique violation and find the tables on retry
            if attempt < 4 and any(s in first for s in ("IntegrityError", "UniqueViolation",
                                                         "already exists", "locked")):
                time.sleep(0.2 * (attempt + 1))
                continue
            break
    raise ValueError(f"cannot open tuning storage {_redact(url)}: {first} (check the "
                         f"URL, that the server runs and accepts this user)") from None


def make_sampler(name: str, seed: int | None = None) -> Any:
    """An Optuna sampler by name (``SAMPLERS``), seeded."""
    import optuna

    if name == "tpe":
        # ``group`` (conditional parameters sampled jointly) is marked experimental
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP_TRIALS,
                                          multivariate=True, group=True,
                                          constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        # GPSampler has no conditional (dynamic) spaces: the parameters under the kernel
        # choice are sampled at random by it (docs/tuner.md)
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=TPE_STARTUP_TRIALS,
                                         warn_independent_sampling=False)
    raise ValueError(f"unknown sampler {name!r}; valid: {list(SAMPLERS)}")


# ---- warm start -----------------------------------------------------------------------
def _rows_for_model(space: SearchSpace, configs: list[tuple[str, dict[str, Any]]]) -> Any:
    import pandas as pd

    p = space.problem
    nnz = round((1.0 - p["sparsity"]) * p["m"] * p["k"])
    return pd.DataFrame([{
        "op": space.op, "kernel": kernel,
        "params": json.dumps({k: v for k, v in params.items() if k != "threads"},
                             sort_keys=True),
        "threads": int(params.get("threads", 1)), "m": p["m"], "n": p["n"], "k": p["k"],
        "c": np.nan, "h": np.nan, "w": np.nan, "o": np.nan, "r": np.nan, "s": np.nan,
        "stride": np.nan, "padding": np.nan, "batch": np.nan, "groups": np.nan,
        "bits": np.nan, "group_size": np.nan, "sparsity": p["sparsity"],
        "density": nnz / (p["m"] * p["k"]), "nnz": nnz,
        "pattern": "dense" if kernel.startswith("gemm") else "random",
    } for kernel, params in configs])


def model_top_k(space: SearchSpace, model: Any, k: int, *, diverse: bool = False,
                predicted: np.ndarray | None = None) -> list[tuple[str, dict, float]]:
    """The ``k`` configurations of ``space`` a fitted PerfModel predicts fastest:
    ``[(kernel, params, predicted_s), ...]``, fastest first.

    ``diverse``: no value of any parameter fills more than half of the picks (the next
    best prediction with another value is taken instead), a hedge against a model that is
    wrong about one parameter. Off by default: in the evaluation (docs/tuner.md) it helped
    no problem and cost one (15.5 instead of 6 median evaluations). ``predicted``: the
    model's seconds for ``space.configs()`` in order, when already computed.
    """
    configs = list(space.configs())
    if predicted is None:
        predicted = model.predict(_rows_for_model(space, configs))
    pred = np.asarray(predicted, dtype=np.float64)
    pred = np.where(np.isfinite(pred), pred, np.inf)
    order = np.argsort(pred, kind="stable")
    cap = max(1, -(-k // 2))
    picked: list[int] = []
    counts: dict[tuple[str, Any], int] = {}
    for i in order:
        if len(picked) == k:
            break
        kernel, params = configs[i]
        keys = [(name, value) for name, value in params.items()
                if len(space.values(kernel)[name]) > 1]
        if diverse and any(counts.get(key, 0) >= cap for key in keys):
            continue
        picked.append(int(i))
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
    if len(picked) < k:  # a small space: fill up in predicted order
        picked += [int(i) for i in order if int(i) not in picked][:k - len(picked)]
    return [(configs[i][0], configs[i][1], float(pred[i])) for i in picked]


def _default_model(store: Any) -> Any:
    from perfmodel._paths import model_path

    path = model_path()
    if not path.is_file():
        log.info("no learned model at %s (perfmodel fit): warm start without predictions",
                 path)
        return None
    try:
        from perfmodel.models.learned import LearnedModel

        return LearnedModel.load(path)
    except Exception as exc:  # a stale or foreign file must not stop tuning
        log.warning("learned model %s not usable for the warm start: %s", path, exc)
        return None


def store_trials(space: SearchSpace, store: Any) -> list[tuple[str, dict, float, int]]:
    """Configurations of ``space`` already measured on this machine for this problem:
    ``[(kernel, params, median_s, measurement_id)]``."""
    from perfmodel import _context
    from perfmodel.store import load_results

    df = load_results(store, op=space.op, fingerprint=_context.machine()[0])
    p = space.problem
    df = df[(df["status"] == "ok") & (df["m"] == p["m"]) & (df["n"] == p["n"])
            & (df["k"] == p["k"]) & np.isfinite(df["median_s"])]
    # dense baselines are stored once per shape (sparsity 0), sparse kernels per sparsity
    dense = df["kernel"].str.startswith("gemm")
    df = df[dense | np.isclose(df["sparsity"], p["sparsity"])]
    out = []
    for row in df.itertuples(index=False):
        if row.kernel not in space.kernels:
            continue
        try:
            params = space.canonical(row.kernel, {**json.loads(row.params),
                                                  "threads": int(row.threads)})
        except (TypeError, ValueError):
            continue
        if space.violation(row.kernel, params) is None:
            out.append((row.kernel, params, float(row.median_s), int(row.measurement_id)))
    return out


class ModelGuide:
    """Optuna callback: after every ``every``-th trial, enqueue the configuration a
    surrogate fitted on this study's measurements expects to be fastest.

    The surrogate is Bayesian linear regression on log time with the learned model as its
    prior mean: ``log t = log model(c) + w . onehot(c)``, ``w ~ N(0, prior_scale^2)``,
    measurement noise ``noise_scale`` (both in log units). The learned model ranks the
    whole space before anything is measured; each measurement moves the effect of the
    parameter values it used, so one trial informs every configuration that shares a value
    (blocking parameters act nearly independently on spmm time). The next configuration
    minimizes the posterior mean minus ``kappa`` posterior standard deviations (lower
    confidence bound) over the configurations not yet tried; exact ties (configurations
    the model cannot tell apart) are broken at random. With ``every = 1`` (default) the
    surrogate proposes every trial and the study's sampler (TPE) only fills in while a
    proposal is still queued (warm start, another worker's). The defaults come from the
    comparison in docs/tuner.md (noise 0.05 and TPE every second trial needed up to 22.5
    evaluations on the first ten tune-eval problems where these need up to 10).

    Parameters
    ----------
    space : the problem's SearchSpace; model : a fitted PerfModel (``predict(rows)``).
    every : propose after every ``every``-th finished trial.
    prior_scale, noise_scale : standard deviations (log time) of a parameter value's
        effect beyond the model and of a measurement (noise here also absorbs what the
        additive model cannot express, such as interactions).
    kappa : exploration weight of the lower confidence bound.
    seed : seeds the tie-breaking.
    """

    def __init__(self, space: SearchSpace, model: Any, *, every: int = 1,
                 prior_scale: float = 0.3, noise_scale: float = 0.15,
                 kappa: float = 0.5, seed: int | None = None) -> None:
        self.space = space
        self.configs = list(space.configs())
        self.index = {config_key(*c): i for i, c in enumerate(self.configs)}
        pred = np.asarray(model.predict(_rows_for_model(space, self.configs)), dtype=float)
        #: the model's seconds per configuration of ``space.configs()`` (as predicted)
        self.predicted = pred
        usable = np.isfinite(pred) & (pred > 0)
        if not usable.any():
            raise ValueError("the model predicts no positive finite time for this space")
        pred = np.where(usable, pred, pred[usable].max())
        columns: dict[tuple[str, Any], int] = {}
        for kernel, params in self.configs:
            for item in (("kernel", kernel), *((f"{kernel}:{k}", v) for k, v in
                                               params.items())):
                columns.setdefault(item, len(columns))
        # one-hot parameter values plus an intercept (the model's overall scale error)
        x = np.zeros((len(self.configs), len(columns) + 1))
        for i, (kernel, params) in enumerate(self.configs):
            x[i, columns[("kernel", kernel)]] = 1.0
            for k, v in params.items():
                x[i, columns[(f"{kernel}:{k}", v)]] = 1.0
        x[:, -1] = 1.0
        self.x = x
        self.prior = np.log(pred)
        self.every = every
        self.prior_scale, self.noise_scale, self.kappa = prior_scale, noise_scale, kappa
        self._rng = np.random.default_rng(seed)
        self._calls = 0

    def __call__(self, study: Any, trial: Any) -> None:
        import optuna

        self._calls += 1
        if self._calls % self.every:
            return
        states = optuna.trial.TrialState
        trials = study.get_trials(deepcopy=False)
        if any(t.state == states.WAITING for t in trials):
            return  # a proposal (warm start, another worker's) is still queued
        best: dict[int, float] = {}
        tried: set[int] = set()
        for t in trials:
            i = self.index.get(t.user_attrs.get("config"))
            if i is None:
                continue
            tried.add(i)
            if t.state == states.COMPLETE and t.value is not None:
                best[i] = min(best.get(i, np.inf), float(t.value))
        if not best or len(tried) >= len(self.configs):
            return
        idx = np.fromiter(best, dtype=int)
        free = np.setdiff1d(np.arange(len(self.configs)), np.fromiter(tried, dtype=int))
        lcb = self.lower_bound(idx, np.log([best[i] for i in idx]), free)
        tied = np.flatnonzero(lcb <= lcb.min() + 1e-9)
        kernel, params = self.configs[int(free[int(self._rng.choice(tied))])]
        study.enqueue_trial(self.space.optuna_params(kernel, params),
                            user_attrs={"source": "surrogate"})

    def lower_bound(self, measured: np.ndarray, log_seconds: np.ndarray,
                    candidates: np.ndarray) -> np.ndarray:
        """Posterior mean - kappa std of log time for the ``candidates`` (config indices)
        given ``log_seconds`` measured at the ``measured`` indices."""
        xa = self.x[measured]
        resid = log_seconds - self.prior[measured]
        precision = xa.T @ xa / self.noise_scale**2 + np.eye(xa.shape[1]) / self.prior_scale**2
        cov = np.linalg.inv(precision)
        weights = cov @ xa.T @ resid / self.noise_scale**2
        xc = self.x[candidates]
        mean = self.prior[candidates] + xc @ weights
        std = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", xc, cov, xc), 0.0))
        return mean - self.kappa * std


def seed_study(study: Any, space: SearchSpace, *, store: Any = None, model: Any = None,
               top_k: int = 4, from_store: bool = True, default: bool = True,
               predicted: np.ndarray | None = None) -> dict[str, int]:
    """Seed a new study: measured configurations from the store become completed trials,
    the kernel's default configuration (``default``) and the model's ``top_k``
    predictions are enqueued (``predicted``: the model's seconds per configuration when
    already computed, e.g. ``ModelGuide.predicted``). Returns counts."""
    import optuna

    counts = {"store": 0, "default": 0, "model": 0}
    if default:
        # the kernel's own default blocking is a hand-made model of the same kind: the
        # first configuration to try (skipped when outside the space or already measured)
        kernel, params = default_config(space)
        if space.violation(kernel, params) is None:
            study.enqueue_trial(space.optuna_params(kernel, params),
                                user_attrs={"source": "default"}, skip_if_exists=True)
            counts["default"] = 1
    if from_store:
        seen: set[str] = set()
        for kernel, params, seconds, mid in sorted(store_trials(space, store),
                                                   key=lambda t: t[2]):
            key = config_key(kernel, params)
            if key in seen:
                continue
            seen.add(key)
            study.add_trial(optuna.trial.create_trial(
                params=space.optuna_params(kernel, params),
                distributions=space.distributions(kernel, params), value=seconds,
                user_attrs={"config": key, "source": "store", "measurement_id": mid}))
            counts["store"] += 1
    if model is not None and model is not False and top_k > 0:
        for kernel, params, seconds in model_top_k(space, model, top_k, predicted=predicted):
            study.enqueue_trial(space.optuna_params(kernel, params),
                                user_attrs={"source": "model", "predicted_s": seconds},
                                skip_if_exists=True)
            counts["model"] += 1
    return counts


# ---- the end of a run -----------------------------------------------------------------
def default_config(space: SearchSpace) -> tuple[str, dict[str, Any]]:
    """The configuration an untuned call runs: spmm with its default blocking
    (``space.defaults``, from the kernel's ``KernelSpec.defaults``)."""
    threads = space.values(space.kernels[0]).get("threads", (1,))
    return "spmm_csr_f32", {**space.defaults["spmm_csr_f32"],
                            "threads": 1 if 1 in threads else int(threads[0])}


def _best_distinct(study: Any, n: int) -> list[tuple[str, dict[str, Any], float]]:
    import optuna

    best: dict[str, tuple[float, Any]] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        key = t.user_attrs.get("config")
        if key and (key not in best or t.value < best[key][0]):
            best[key] = (float(t.value), t)
    ranked = sorted(best.items(), key=lambda kv: kv[1][0])[:n]
    out = []
    for key, (value, _) in ranked:
        cfg = json.loads(key)
        out.append((cfg["kernel"], cfg["params"], value))
    return out


def retime(candidates: list[tuple[str, dict[str, Any]]], operands: Operands, *,
           timing: Any = None, rounds: int = 5) -> list[float]:
    """Median seconds of each candidate, timed in interleaved rounds (A B C A B C ...), so
    a load spike hits every candidate alike and one lucky measurement cannot win."""
    from perfmodel.harness import TimingConfig

    base = timing or TimingConfig(budget_s=0.2, target_rel_ci=0.03)
    per_round = TimingConfig(target_rel_ci=base.target_rel_ci,
                             budget_s=max(base.budget_s / rounds, 0.005), min_samples=5,
                             warmup_s=base.warmup_s, batch_s=base.batch_s, pin=base.pin)
    plans = []
    for kernel, params in candidates:
        plan = make_plan(kernel, params, operands)
        run_checked(plan, operands, int(params.get("threads", 1)))
        plans.append((plan, int(params.get("threads", 1))))
    samples: list[list[np.ndarray]] = [[] for _ in plans]
    for _ in range(rounds):
        for i, (plan, threads) in enumerate(plans):
            samples[i].append(np.asarray(measure_plan(plan, threads, per_round).samples))
    return [float(np.median(np.concatenate(s))) for s in samples]


def problem_record(op: str, problem: Mapping[str, Any], threads: int) -> dict[str, Any]:
    """The problem dict tuned results are stored under (``Store.record_tuned``): the one
    ``perfmodel.best_config(op, threads=threads, **shape)`` looks up, where ``threads`` is
    the most threads the tuned configuration may use."""
    return {"op": op, **{k: problem[k] for k in sorted(problem)}, "threads": int(threads)}


def _default_study_name(space: SearchSpace, simulate: bool) -> str:
    from perfmodel import _context

    p = space.problem
    threads = "-".join(str(t) for t in space.values(space.kernels[0]).get("threads", ()))
    name = (f"{space.op}-m{p['m']}-n{p['n']}-k{p['k']}-s{p['sparsity']:g}-t{threads}-"
            f"{_context.machine()[0][:8]}")
    return name + ("-sim" if simulate else "")


class _Progress:
    def __init__(self, total: int, objective: Objective) -> None:
        from tqdm import tqdm

        self.objective = objective
        self.bar = tqdm(total=total, unit="config", desc="tuning", dynamic_ncols=True)

    def __call__(self, study: Any, trial: Any) -> None:
        self.bar.update(self.objective.evaluations - self.bar.n)
        try:
            self.bar.set_postfix(best=f"{study.best_value * 1e6:.1f}us", refresh=False)
        except ValueError:
            pass

    def close(self) -> None:
        self.bar.close()


# ---- entry point ----------------------------------------------------------------------
def tune(op: str, *, n_trials: int, timeout: float | None = None, storage: Any = None,
         study_name: str | None = None, sampler: str = "tpe", warm_start: bool = True,
         threads: int | None = None, options: TuneOptions | None = None,
         **shape: Any) -> TuneResult:
    """Find the fastest kernel and parameters for one problem on this machine.

    Parameters
    ----------
    op : ``"spmm"`` (CSR sparse x dense, dense BLAS baseline among the choices).
    n_trials : int >= 1, configurations this process evaluates (fleet workers each run
        theirs). Proposals of a configuration the study already evaluated are answered
        from that trial and do not count (at most ``20 * n_trials`` trials in all).
    timeout : seconds after which no new trial starts (None = no limit).
    storage : None (local SQLite file), a database URL (PostgreSQL for a fleet) or a path.
    study_name : None derives one from op, shape, threads and the machine fingerprint,
        so every worker of a fleet lands in the same study.
    sampler : ``"tpe"`` (default), ``"random"`` or ``"gp"``.
    warm_start : seed a new study with the store's measurements and the model's top-k.
    threads : fix the thread count (None: tuned over 1 .. the CPUs available).
    options : TuneOptions (store, seed, timing, model, simulation, progress...).
    **shape : ``m``, ``n``, ``k`` (ints), ``sparsity`` (fraction of zeros in [0, 1)).

    Returns
    -------
    TuneResult. Ctrl-C during the trials stops them and returns the best found so far
    (``interrupted=True``, not re-timed).

    Raises
    ------
    ValueError for an unknown op, sampler or shape key, n_trials <= 0, an empty search
    space or an unreachable storage; RuntimeError when no trial succeeded.
    """
    import optuna

    opts = options or TuneOptions()
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials <= 0:
        raise ValueError(f"n_trials must be a positive int, got {n_trials!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be positive seconds or None, got {timeout!r}")
    space = search_space(op, threads=threads, **shape)
    smp = make_sampler(sampler, opts.seed)
    objective: Objective
    if opts.simulate:
        from .simulate import ReplayObjective, recorded

        objective = ReplayObjective(space, recorded(space, opts.store), seed=opts.seed)
        operands = None
    else:
        from perfmodel.harness import TimingConfig

        operands = Operands.spmm(**space.problem, seed=opts.operand_seed)
        timing = opts.timing or TimingConfig(budget_s=0.2, target_rel_ci=0.03)
        objective = MeasureObjective(space, operands, timing, seed=opts.seed)
    store_obj = opts.store
    rdb = open_storage(storage)
    name = study_name or _default_study_name(space, opts.simulate)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=rdb, study_name=name, direction="minimize",
                                sampler=smp, load_if_exists=True)
    model = None
    if warm_start:
        model = _default_model(store_obj) if opts.model is None else opts.model or None
    guide = None
    if model is not None:
        try:
            guide = ModelGuide(space, model, seed=opts.seed)
        except Exception as exc:  # a model that cannot score this space must not stop tuning
            log.warning("learned model unusable for this problem (%s): tuning without it",
                        exc)
            model = None
    if warm_start and not study.user_attrs.get("warm_started"):
        # the first worker seeds the study; a late one finds the attribute and skips
        study.set_user_attr("warm_started", True)
        counts = seed_study(study, space, store=store_obj, model=model, top_k=opts.top_k,
                            from_store=not opts.simulate,
                            predicted=guide.predicted if guide is not None else None)
        log.info("warm start: %s", counts)
    study.set_user_attr("op", op)
    study.set_user_attr("problem", space.problem)
    progress = _Progress(n_trials, objective) if opts.progress else None

    # at most 20 trials per evaluation in all (repeats answered from earlier trials and
    # infeasible proposals are cheap but not free), retries after a lost race included
    trials_left = 20 * n_trials

    def enough(study: Any, trial: Any) -> None:
        nonlocal trials_left
        trials_left -= 1
        if objective.evaluations >= n_trials or objective.exhausted or trials_left <= 0:
            study.stop()

    interrupted = False
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                study.optimize(objective, n_trials=max(trials_left, 1), timeout=left,
                               catch=(Exception,),
                               callbacks=[enough,
                                          *(c for c in (guide, progress) if c is not None)])
                break
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
                # SQLite has no SELECT ... FOR UPDATE, so two workers can pop the same
                # enqueued trial; the first one recorded it, nothing is lost: go on
                if isinstance(exc, ValueError) and not str(exc).startswith("Cannot tell a"):
                    raise
                # this worker's evaluation of that trial was not recorded: do one more
                objective.evaluations -= int(getattr(objective, "counted_last", False))
                trials_left -= 1
                if objective.evaluations >= n_trials or objective.exhausted or left == 0.0 \
                        or trials_left <= 0:
                    break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if progress:
            progress.close()
    ranked = _best_distinct(study, max(1, opts.retime_top))
    if not ranked:
        if interrupted:
            raise KeyboardInterrupt
        raise RuntimeError(f"no trial of study {name!r} succeeded; see the trials' "
                           f"'error'/'infeasible' user attributes (optuna-dashboard)")
    dkernel, dparams = default_config(space)
    if opts.simulate:
        kernel, params, seconds = ranked[0]
        table = objective.table  # type: ignore[attr-defined]
        drow = table.get(config_key(dkernel, dparams))
        dsec = float(drow.median_s) if drow is not None and drow.status == "ok" else \
            float("nan")
    elif interrupted:
        kernel, params, seconds = ranked[0]
        dsec = float("nan")
    else:
        cands = [(k, p) for k, p, _ in ranked]
        if space.violation(dkernel, dparams) is None and (dkernel, dparams) not in cands:
            cands.append((dkernel, dparams))  # the untuned call may win the re-timing too
        with_default = cands + ([(dkernel, dparams)] if (dkernel, dparams) not in cands
                                else [])
        times = retime(with_default, operands, timing=opts.timing, rounds=opts.retime_rounds)
        best = int(np.argmin(times[:len(cands)]))
        kernel, params = cands[best]
        seconds = times[best]
        dsec = times[with_default.index((dkernel, dparams))]
    result = TuneResult(kernel, dict(params), float(seconds),
                        float(dsec / seconds) if np.isfinite(dsec) else float("nan"), study,
                        default_seconds=dsec, interrupted=interrupted)
    if opts.record and not opts.simulate:
        from perfmodel.store import open_store

        st = open_store(store_obj)
        try:
            max_threads = max(space.values(space.kernels[0]).get("threads", (1,)))
            st.record_tuned(problem_record(op, space.problem, max_threads), kernel,
                            dict(params),
                            float(seconds), name)
            result.recorded = True
        finally:
            if st is not store_obj:
                st.close()
    return result
