"""A small real tuning run, answer checking, failures and bad input."""

from __future__ import annotations

import argparse

import numpy as np
import optuna
import pytest

from perfmodel.harness import TimingConfig
from perfmodel.store import open_store
from tuner import TuneOptions, search_space, tune
from tuner.objective import MeasureObjective, Operands
from tuner.study import problem_record

SMALL = {"m": 13, "n": 7, "k": 33, "sparsity": 0.5}
FAST = TimingConfig(budget_s=0.005, target_rel_ci=0.2, min_samples=3, warmup_s=0.0)


def test_small_real_tuning_run_records_the_result(tmp_path):
    store = tmp_path / "results.db"
    result = tune("spmm", n_trials=6, threads=1, options=TuneOptions(
        store=store, seed=0, timing=FAST, retime_top=2, retime_rounds=2, model=False), **SMALL)
    space = search_space("spmm", threads=1, **SMALL)
    assert space.violation(result.kernel, result.params) is None
    assert result.seconds > 0 and result.speedup_over_default > 0
    assert result.recorded and not result.interrupted
    done = [t for t in result.study.trials if t.state == optuna.trial.TrialState.COMPLETE
            and "duplicate_of" not in t.user_attrs]
    assert done
    for t in done:  # the objective is the harness median; the raw samples are kept
        samples = t.user_attrs["samples_s"]
        assert len(samples) >= 1 and t.user_attrs["ci_low_s"] <= t.value
        assert t.value == pytest.approx(float(np.median(samples)), rel=1e-9) or \
            t.user_attrs["n_samples"] > len(samples)
    # the default storage is the SQLite file in the data folder
    from perfmodel._paths import data_dir

    assert result.study.study_name in optuna.get_all_study_names(
        f"sqlite:///{data_dir() / 'tuner.db'}")
    with open_store(store) as st:
        tuned = st.tuned_config(problem_record("spmm", space.problem, 1))
    assert tuned["kernel"] == result.kernel and tuned["params"] == result.params
    assert tuned["seconds"] == pytest.approx(result.seconds)
    # from now on perfmodel.best_config answers "tuned" for this problem
    from perfmodel.query import best_config

    answer = best_config("spmm", threads=1, store=store, **SMALL)
    assert answer.source == "tuned"


def test_wrong_answer_is_an_infeasible_trial():
    space = search_space("spmm", threads=1, **SMALL)
    operands = Operands.spmm(**space.problem)
    operands.reference = operands.reference + 1.0  # every candidate now looks wrong
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(MeasureObjective(space, operands, FAST), n_trials=3)
    assert all(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    assert all(t.user_attrs["infeasible"].startswith("wrong answer") for t in study.trials)


def test_answer_check_accepts_the_kernels():
    operands = Operands.spmm(**SMALL)
    assert operands.check(operands.reference.astype(np.float32)) is None
    bad = operands.reference.astype(np.float32)
    bad[3, 2] += 1.0
    assert "(3, 2)" in operands.check(bad)
    assert "shape" in operands.check(bad[:, :3])


def test_a_raising_trial_fails_and_the_study_goes_on(monkeypatch):
    calls = {"n": 0}
    real = MeasureObjective.evaluate

    def flaky(self, kernel, params, trial):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return real(self, kernel, params, trial)

    monkeypatch.setattr(MeasureObjective, "evaluate", flaky)
    result = tune("spmm", n_trials=4, threads=1, storage=optuna.storages.InMemoryStorage(),
                  options=TuneOptions(seed=1, timing=FAST, retime_rounds=1, model=False,
                                      record=False), **SMALL)
    first = result.study.trials[0]
    assert first.state == optuna.trial.TrialState.FAIL
    assert first.user_attrs["error"] == "RuntimeError: boom"
    evaluated = [t for t in result.study.trials if t.user_attrs.get("evaluated")]
    assert len(evaluated) == 4  # n_trials counts configurations evaluated


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_trials": 0}, "n_trials must be a positive int"),
    ({"n_trials": -3}, "n_trials must be a positive int"),
    ({"n_trials": 2, "sampler": "annealing"}, "unknown sampler 'annealing'"),
    ({"n_trials": 2, "timeout": 0}, "timeout"),
    ({"n_trials": 2, "storage": "postgresql+psycopg2://nobody:secret@127.0.0.1:1/none"},
     "cannot open tuning storage"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        tune("spmm", threads=1, **kwargs, **SMALL)
    assert "secret" not in str(info.value)


def test_unknown_op_and_shape_key():
    with pytest.raises(ValueError, match="no search space for op"):
        tune("fft", n_trials=1, **SMALL)
    with pytest.raises(ValueError, match=r"unknown \['z'\]"):
        tune("spmm", n_trials=1, z=1, **SMALL)


def _parser():
    from tuner import _cli

    parser = argparse.ArgumentParser(prog="perfmodel")
    _cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_is_registered():
    import perfmodel.cli

    assert "tuner._cli" in perfmodel.cli.COMMANDS


def test_cli_tune_simulated(tiny_sweep, capsys):
    from .conftest import TINY

    store, _ = tiny_sweep
    args = _parser().parse_args([
        "tune", "spmm", "--m", str(TINY["m"]), "--n", str(TINY["n"]), "--k", str(TINY["k"]),
        "--sparsity", str(TINY["sparsity"]), "--threads", "1", "--trials", "20", "--simulate",
        "--db", str(store), "--seed", "0", "--sampler", "random", "-q"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("best: spmm_csr_f32") and "20 configurations evaluated" in out
