"""Fixtures of the tuner tests: a private data folder and a tiny recorded sweep."""

from __future__ import annotations

import math

import pytest

from tuner.objective import config_key
from tuner.space import search_space

#: a problem whose spmm space is a few dozen configurations on every ISA path
TINY = {"m": 16, "n": 16, "k": 64, "sparsity": 0.5}


@pytest.fixture(autouse=True)
def _private_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFMODEL_HOME", str(tmp_path / "home"))


def synthetic_seconds(kernel: str, params: dict) -> float:
    """A deterministic landscape with one best configuration (acc_sets 2, no prefetch,
    K blocking with row_block 32, reg_vectors 1); the dense baseline is slow."""
    if kernel == "gemm_blas_f32":
        return 5e-5
    t = 1e-5 * (1 + 0.3 * (params["acc_sets"] == 1) + 0.2 * params["prefetch"] / 16
                + 0.5 * (params["k_block"] == 0) + 0.2 * (params["reg_vectors"] - 1)
                + 0.05 * abs(math.log2(params["row_block"] / 32)))
    return t


def write_sweep(space, store_path, *, skip=(), invalid=()) -> dict[str, float]:
    """Store a synthetic exhaustive sweep of ``space`` (what record_sweep writes);
    configs in ``skip`` are left out, those in ``invalid`` recorded as invalid."""
    from perfmodel.store import open_store
    from tuner.simulate import SWEEP, _params_text, _point_key

    times = {}
    with open_store(store_path) as st:
        mid = st.machine_id()
        run = st.start_run(mid, SWEEP)
        p = space.problem
        for kernel, params in space.configs():
            key = config_key(kernel, params)
            if key in skip:
                continue
            t = synthetic_seconds(kernel, params)
            row = {"point_key": _point_key(space.op, p, kernel, params), "sweep": SWEEP,
                   "op": space.op, "kernel": kernel, "threads": params["threads"],
                   "params": _params_text(params), "m": p["m"], "n": p["n"], "k": p["k"],
                   "sparsity": p["sparsity"], "pattern": "random"}
            if key in invalid:
                row.update(status="invalid", error="synthetic: rejected")
            else:
                row.update(status="ok", median_s=t, ci_low_s=t, ci_high_s=t, n_samples=3)
                times[key] = t
            st.add_measurement(run, mid, row, [t, t, t] if key not in invalid else [])
        st.finish_run(run)
    return times


@pytest.fixture
def tiny_space():
    return search_space("spmm", threads=1, **TINY)


@pytest.fixture
def tiny_sweep(tmp_path, tiny_space):
    """(store path, {config: seconds}) of a synthetic recorded sweep of TINY."""
    path = tmp_path / "sweep.db"
    return path, write_sweep(tiny_space, path)
