"""Simulation mode: replaying a recorded sweep, warm start, failures, strategy counting."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from tuner import TuneOptions, tune
from tuner.evaluate import format_table, trials_to_target
from tuner.objective import config_key
from tuner.simulate import ReplayObjective, recorded
from tuner.study import _rows_for_model, default_config, seed_study

from .conftest import TINY, synthetic_seconds, write_sweep


def _sim(store, **kw):
    opts = dict(store=store, simulate=True, seed=0, model=False)
    opts.update(kw.pop("options", {}))
    return tune("spmm", threads=1, storage=optuna.storages.InMemoryStorage(),
                options=TuneOptions(**opts), **TINY, **kw)


def test_replay_finds_the_recorded_optimum(tiny_sweep):
    store, times = tiny_sweep
    result = _sim(store, n_trials=120, sampler="random")
    best = min(times, key=times.get)
    assert config_key(result.kernel, result.params) == best
    assert result.seconds == times[best]
    assert not result.recorded  # a replay writes nothing back
    # 120 asked, but the space holds fewer: the run stops once every one was tried
    evaluated = [t for t in result.study.trials if t.user_attrs.get("evaluated")]
    assert len(evaluated) == len(times)
    assert len({t.user_attrs["config"] for t in evaluated}) == len(times)
    # speedup = the recorded time of the default configuration / the best (NaN when the
    # default lies outside this small space, as it does on wide-vector paths)
    kernel, params = default_config(_space())
    if _space().violation(kernel, params) is None:
        assert result.speedup_over_default >= 1.0
    else:
        assert math.isnan(result.speedup_over_default)


def test_replay_is_deterministic(tiny_sweep):
    store, _ = tiny_sweep
    runs = [_sim(store, n_trials=15, sampler="tpe") for _ in range(2)]
    params = [[t.params for t in r.study.trials] for r in runs]
    assert params[0] == params[1]


def test_missing_config_fails_the_trial_and_the_study_goes_on(tmp_path, tiny_space):
    configs = [config_key(k, p) for k, p in tiny_space.configs()]
    store = tmp_path / "partial.db"
    write_sweep(tiny_space, store, skip=configs[:10], invalid=configs[10:20])
    result = _sim(store, n_trials=60, sampler="random")
    states = {t.state for t in result.study.trials}
    assert optuna.trial.TrialState.FAIL in states
    assert optuna.trial.TrialState.COMPLETE in states
    failed = [t for t in result.study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert all("not in the recorded sweep" in t.user_attrs["error"] for t in failed)
    pruned = [t for t in result.study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and all("invalid in the recorded sweep" in t.user_attrs["infeasible"]
                          for t in pruned)


def test_no_recorded_sweep_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no recorded sweep"):
        _sim(tmp_path / "empty.db", n_trials=3)


class _PerfectModel:
    """Predicts the synthetic landscape exactly (a stand-in for a fitted PerfModel)."""

    def predict(self, rows):
        import json

        return [synthetic_seconds(k, {**json.loads(p), "threads": t})
                for k, p, t in zip(rows["kernel"], rows["params"], rows["threads"],
                                   strict=True)]


def test_model_warm_start_enqueues_top_k_first(tiny_sweep):
    store, times = tiny_sweep
    result = _sim(store, n_trials=5, options={"model": _PerfectModel(), "top_k": 3})
    trials = result.study.trials
    if trials[0].user_attrs.get("source") == "default":  # the default lies in the space
        trials = trials[1:]
    first = trials[:3]
    assert [t.user_attrs.get("source") for t in first] == ["model"] * 3
    assert first[0].value == min(times.values())
    run = trials_to_target(_space(), recorded(_space(), store), "model", 0,
                           model=_PerfectModel())
    # the default configuration goes first when it lies in the space (it does where the
    # vector is as wide as N), then the model's best, which is the optimum
    kernel, params = default_config(_space())
    default_first = (_space().violation(kernel, params) is None
                     and config_key(kernel, params) != min(times, key=times.get))
    assert run.evaluations == 1 + default_first and run.reached


def _space():
    from tuner.space import search_space

    return search_space("spmm", threads=1, **TINY)


def test_store_measurements_become_completed_trials(tiny_sweep, tiny_space):
    store, times = tiny_sweep
    study = optuna.create_study()
    counts = seed_study(study, tiny_space, store=store, model=None, default=False)
    assert counts == {"store": len(times), "default": 0, "model": 0}
    assert len(study.trials) == len(times)
    assert all(t.user_attrs["source"] == "store" for t in study.trials)
    assert study.best_value == min(times.values())


def test_strategies_reach_the_target(tiny_sweep, tiny_space):
    store, _ = tiny_sweep
    table = recorded(tiny_space, store)
    assert len(table) == tiny_space.size
    opt = ReplayObjective(tiny_space, table).optimum[1]
    for strategy in ("random", "tpe"):
        run = trials_to_target(tiny_space, table, strategy, seed=3, max_evaluations=100)
        assert run.reached and 1 <= run.evaluations <= tiny_space.size
        assert run.trials >= run.evaluations
    # a tolerance no configuration but the optimum meets still ends at the optimum
    run = trials_to_target(tiny_space, table, "random", seed=3, tolerance=0.0)
    assert run.reached
    assert opt > 0
    # the guide's settings pass through (an uninformed prior still gets there)
    run = trials_to_target(tiny_space, table, "model-only", seed=3, model=_FlatModel(),
                           tolerance=0.0, guide={"every": 2, "kappa": 1.0})
    assert run.reached
    with pytest.raises(TypeError, match="unexpected keyword"):
        trials_to_target(tiny_space, table, "model", seed=3, model=_FlatModel(),
                         guide={"kapa": 1.0})


def test_format_table():
    import pandas as pd

    df = pd.DataFrame([{"problem": "p", "space_size": 300, "optimum_s": 1e-5,
                        "default_s": 2e-5, "strategy": s, "median_evals": v,
                        "p25_evals": v - 1, "p75_evals": v + 1, "median_trials": v,
                        "reached": 1.0} for s, v in (("random", 40), ("model", 3))])
    text = format_table(df)
    assert "| p | 300 | 10.0 | 2.00 | 40 [39-41] | 3 [2-4] |" in text


class _KBlockModel:
    """Prefers k_block = 32 above all (a model that is sure about one parameter)."""

    def predict(self, rows):
        import json

        return [1.0 if json.loads(p).get("k_block") == 32 else 2.0 + i * 1e-3
                for i, p in enumerate(rows["params"])]


def test_model_top_k_spreads_parameter_values(tiny_space):
    from tuner.study import model_top_k

    plain = model_top_k(tiny_space, _KBlockModel(), 6, diverse=False)
    assert all(p["k_block"] == 32 for _, p, _ in plain)
    spread = model_top_k(tiny_space, _KBlockModel(), 6, diverse=True)
    assert len(spread) == 6
    assert sum(p["k_block"] == 32 for _, p, _ in spread) == 3
    assert spread[0][2] == 1.0  # still the best prediction first
    keys = {config_key(k, p) for k, p, _ in spread}
    assert len(keys) == 6
    # predictions computed once (the guide's) are used as given: no second model pass
    given = np.asarray(_KBlockModel().predict(_rows_for_model(
        tiny_space, list(tiny_space.configs()))), dtype=float)
    assert model_top_k(tiny_space, _BrokenModel(), 6, predicted=given) == plain


def test_default_configuration_is_tried_first():
    from tuner.space import search_space

    space = search_space("spmm", threads=1, m=64, n=256, k=512, sparsity=0.9)
    kernel, params = default_config(space)
    assert space.violation(kernel, params) is None
    study = optuna.create_study()
    assert seed_study(study, space, model=None, from_store=False)["default"] == 1
    trial = study.ask()
    assert trial.user_attrs["source"] == "default"
    assert space.suggest(trial) == (kernel, params)


def test_model_guide_proposes_untried_configurations(tiny_space, tiny_sweep):
    from tuner.study import ModelGuide

    store, times = tiny_sweep
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    objective = ReplayObjective(tiny_space, recorded(tiny_space, store))
    guide = ModelGuide(tiny_space, _PerfectModel(), every=1)
    study.optimize(objective, n_trials=12, callbacks=[guide])
    proposed = [t for t in study.trials if t.user_attrs.get("source") == "surrogate"]
    assert proposed
    # every proposal that ran is a configuration no earlier trial had (it costs a
    # measurement); the last one may still be queued when the study stops
    ran = [t for t in proposed if t.state == optuna.trial.TrialState.COMPLETE]
    assert ran
    for t in ran:
        earlier = {u.user_attrs.get("config") for u in study.trials if u.number < t.number}
        assert t.user_attrs["config"] not in earlier and t.user_attrs.get("evaluated")
    # with a perfect prior the surrogate closes in on the optimum
    assert study.best_value == min(times.values())


class _FlatModel:
    """Predicts the same time for every configuration (no prior preference)."""

    def predict(self, rows):
        return [1e-3] * len(rows)


def test_model_guide_posterior_moves_configurations_sharing_a_value(tiny_space):
    from tuner.study import ModelGuide

    guide = ModelGuide(tiny_space, _FlatModel(), kappa=0.0)
    kernel, params = guide.configs[0]
    slow_value = ("reg_vectors", params["reg_vectors"])
    # one configuration measured 2x slower than the prior says
    lcb = guide.lower_bound(np.array([0]), np.log([2e-3]), np.arange(1, len(guide.configs)))
    shares = np.array([c[0] == kernel and c[1].get(slow_value[0]) == slow_value[1]
                       for c in guide.configs[1:]])
    assert shares.any() and (~shares).any()
    # configurations with the measured (slow) parameter value are now predicted slower
    # than those without it; with no measurement the posterior is the prior
    assert lcb[shares].mean() > lcb[~shares].mean()
    prior = guide.lower_bound(np.array([], dtype=int), np.array([]), np.arange(3))
    np.testing.assert_allclose(prior, np.log(1e-3))


def _first_proposal(space, seed):
    """The configuration a guide with a flat prior proposes after one measurement."""
    from tuner.study import ModelGuide

    guide = ModelGuide(space, _FlatModel(), seed=seed)
    study = optuna.create_study()
    kernel, params = guide.configs[0]
    study.add_trial(optuna.trial.create_trial(
        params=space.optuna_params(kernel, params),
        distributions=space.distributions(kernel, params), value=1e-3,
        user_attrs={"config": config_key(kernel, params)}))
    guide(study, study.trials[-1])
    assert len(study.get_trials(states=(optuna.trial.TrialState.WAITING,))) == 1
    return config_key(*space.suggest(study.ask()))


def test_model_guide_breaks_ties_at_random_and_reproducibly(tiny_space):
    # a flat prior cannot tell the configurations apart: the seed picks among the tied
    # ones (the same seed the same one), never the measured one
    picks = {seed: _first_proposal(tiny_space, seed) for seed in range(8)}
    assert len(set(picks.values())) > 1
    assert _first_proposal(tiny_space, 3) == picks[3]
    from tuner.study import ModelGuide

    measured = config_key(*ModelGuide(tiny_space, _FlatModel()).configs[0])
    assert measured not in picks.values()


class _BrokenModel:
    def predict(self, rows):
        raise ValueError("feature schema mismatch")


def test_an_unusable_model_does_not_stop_tuning(tiny_sweep):
    store, _ = tiny_sweep
    result = _sim(store, n_trials=10, options={"model": _BrokenModel()})
    assert sum(bool(t.user_attrs.get("evaluated")) for t in result.study.trials) == 10
    assert not any(t.user_attrs.get("source") == "model" for t in result.study.trials)
