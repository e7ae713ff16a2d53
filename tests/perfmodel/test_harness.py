"""Measurement harness: CI of the median, convergence, C and Python timing loops."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import binom

from perfmodel.harness import (
    Timing,
    TimingConfig,
    measure,
    median_ci,
    noop_overhead,
    pinned,
    summarize,
)


@pytest.mark.parametrize("n", [6, 7, 13, 20, 100, 1001])
def test_median_ci_uses_the_binomial_order_statistics(n):
    x = np.arange(n, dtype=float)  # X_(i) = i - 1
    lo, hi = median_ci(x[::-1])
    j = int(lo) + 1  # 1-based rank of the lower bound
    assert hi == n - j  # symmetric: X_(n - j + 1)
    coverage = binom.cdf(n - j, n, 0.5) - binom.cdf(j - 1, n, 0.5)
    assert coverage >= 0.95
    # one rank narrower would drop below 95 %
    if j + 1 <= n - j:
        assert binom.cdf(n - j - 1, n, 0.5) - binom.cdf(j, n, 0.5) < 0.95


def test_median_ci_covers_the_true_median_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    hits = 0
    trials = 2000
    for _ in range(trials):
        x = rng.lognormal(0.0, 0.5, size=31)  # skewed: the true median is exp(0) = 1
        lo, hi = median_ci(x)
        hits += lo <= 1.0 <= hi
    assert 0.94 <= hits / trials <= 0.995


def test_median_ci_small_samples():
    assert median_ci(np.array([3.0])) == (3.0, 3.0)
    assert median_ci(np.array([2.0, 1.0, 5.0])) == (1.0, 5.0)
    assert all(np.isnan(median_ci(np.array([]))))


def test_summarize_flags():
    cfg = TimingConfig(target_rel_ci=0.02)
    tight = summarize(np.full(50, 1e-3) + np.linspace(0, 1e-6, 50), cfg)
    assert tight.converged and not tight.noisy and tight.n_samples == 50
    assert tight.min_s == pytest.approx(1e-3) and tight.ci_low_s <= tight.median_s
    spread = summarize(np.tile([1e-3, 3e-3], 25), cfg)  # bimodal: the CI spans both modes
    assert not spread.converged and spread.noisy and spread.rel_ci > 0.02
    few = summarize(np.array([1.0, 1.0, 1.0]), cfg)  # too few samples to bound the median
    assert not few.converged and few.rel_ci == float("inf")
    row = tight.as_row()
    assert set(row) == {"median_s", "min_s", "mean_s", "iqr_s", "ci_low_s", "ci_high_s",
                        "rel_ci", "n_samples", "converged", "noisy"}


@pytest.mark.parametrize("field,value", [("target_rel_ci", 0.0), ("budget_s", -1.0),
                                         ("min_samples", 0), ("batch_s", 0.0),
                                         ("flush_bytes", -1)])
def test_timing_config_rejects_out_of_range(field, value):
    with pytest.raises(ValueError, match=f"TimingConfig.{field}"):
        TimingConfig(**{field: value})


def test_noop_overhead_samples():
    timing, per_call = noop_overhead(TimingConfig(budget_s=0.05, max_samples=5000))
    assert isinstance(timing, Timing) and timing.n_samples >= 10
    assert timing.samples.shape == (timing.n_samples,) and (timing.samples >= 0).all()
    assert per_call > 0 and timing.wall_s > 0


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 7, 13), (13, 17, 15)])
def test_measure_c_plan_and_python_callable(m, k, n):
    from kernels_c.spmm import plan_spmm

    a = sp.random_array((m, k), density=0.5, format="csr", dtype=np.float32, rng=0)
    b = np.ones((k, n), np.float32)
    plan = plan_spmm(a, b)
    plan.out.fill(np.nan)  # sentinel: the timed calls must write it
    cfg = TimingConfig(budget_s=0.05, min_samples=10)
    t = measure(plan, cfg)
    assert t.n_samples >= 10 and np.isfinite(t.median_s) and t.median_s > 0
    np.testing.assert_allclose(plan.out, (a @ b), rtol=1e-5, atol=1e-6)
    calls = []
    t = measure(lambda: calls.append(1), cfg)
    assert len(calls) >= t.n_samples >= 10  # warm-up calls are not samples


def test_measure_cold_cache_flushes_between_calls():
    calls = []
    cfg = TimingConfig(budget_s=0.05, min_samples=5, cold=True, flush_bytes=1 << 16)
    t = measure(lambda: calls.append(1), cfg)
    assert t.n_samples >= 5


def test_measure_stops_at_the_budget_and_flags_noise():
    state = {"i": 0}

    def bimodal():
        state["i"] += 1
        time.sleep(0.002 if state["i"] % 2 else 0.0005)

    t = measure(bimodal, TimingConfig(budget_s=0.1, min_samples=10))
    # every call sleeps >= 0.5 ms, so a harness that respects the 0.1 s budget stops after
    # at most ~200 timed calls (plus the doubling batch in flight), however slow the machine
    assert 6 <= t.n_samples <= 400
    assert not t.converged and t.noisy


def test_measure_reports_kernel_errors():
    from kernels_c._loader import load

    rt = load("runtime")
    calls = []

    def failing(_args):  # a C-callable kernel that fails on its third call
        calls.append(1)
        return 0 if len(calls) < 3 else 3

    class FakePlan:
        module = rt
        function = rt.ffi.callback("int(void *)", failing)
        args = rt.ffi.NULL

    with pytest.raises(RuntimeError, match="error code 3"):
        measure(FakePlan(), TimingConfig(budget_s=0.01))
    with pytest.raises(TypeError, match="plan or a callable"):
        measure(42)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux CPU affinity")
def test_pinned_restores_affinity():
    before = os.sched_getaffinity(0)
    with pinned(1):
        inside = os.sched_getaffinity(0)
        assert len(inside) == 1 and inside <= before
    assert os.sched_getaffinity(0) == before
    with pinned(2):  # multi-threaded kernels are left to the scheduler
        assert os.sched_getaffinity(0) == before
