"""Several worker processes on one study (SQLite file and the real PostgreSQL of CI)."""

from __future__ import annotations

import multiprocessing as mp

import optuna

from tuner.study import open_storage

from .conftest import TINY

WORKERS = 3
TRIALS = 8


def _worker(storage: str, sweep: str, home: str, seed: int) -> None:
    import os

    os.environ["PERFMODEL_HOME"] = home
    from tuner import TuneOptions, tune

    tune("spmm", n_trials=TRIALS, storage=storage, study_name="fleet", threads=1,
         options=TuneOptions(store=sweep, seed=seed, simulate=True, model=False), **TINY)


def test_workers_share_one_study(store_url, tiny_sweep, tmp_path):
    sweep, times = tiny_sweep
    storage = store_url if "://" in store_url else f"sqlite:///{store_url}"
    ctx = mp.get_context("spawn")  # a fresh interpreter per worker, as on a fleet
    procs = [ctx.Process(target=_worker, args=(storage, str(sweep), str(tmp_path / "home"),
                                               seed)) for seed in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0
    study = optuna.load_study(study_name="fleet", storage=open_storage(storage))
    numbers = sorted(t.number for t in study.trials)
    assert numbers == list(range(len(numbers)))  # every trial landed exactly once
    assert len({t._trial_id for t in study.trials}) == len(numbers)
    assert all(t.state.is_finished() for t in study.trials)
    # each worker evaluated its TRIALS configurations (repeats answered from the study).
    # PostgreSQL pops enqueued trials under SELECT ... FOR UPDATE, so the count is exact;
    # SQLite has no row locks, and two workers may both run one enqueued trial (its one
    # record then stands for two evaluations), at most once per worker here.
    evaluated = sum(bool(t.user_attrs.get("evaluated")) for t in study.trials)
    if storage.startswith("postgresql"):
        assert evaluated == WORKERS * TRIALS
    else:
        assert WORKERS * TRIALS - WORKERS <= evaluated <= WORKERS * TRIALS
    assert study.best_value >= min(times.values())
