"""The measurement harness: turns one prepared kernel call into trustworthy timings.

C kernels (plans from :mod:`kernels_c` with ``.function`` and ``.args``) are timed by the C
loop ``kc_time_calls`` (``kernels_c/src/runtime.c``): ``clock_gettime`` around every call,
so a sub-microsecond kernel is not buried under Python overhead. Python callables (peers
such as scipy's CSR product or numpy's BLAS) are timed with ``perf_counter_ns`` around each
call in a tight Python loop.

Procedure for one point: warm up (one call, then ``warmup_s`` of calls), then batches of
calls that each last about ``batch_s``; after each batch the distribution-free 95 %
confidence interval of the median (binomial order statistics) is updated, and measuring
stops as soon as its relative half-width ``(ci_high - ci_low) / (2 median)`` is at most
``target_rel_ci`` (converged), or when the per-point ``budget_s`` runs out (not
converged). Every sample is kept.

A point is *noisy* when it did not converge, or when its interquartile range exceeds
``noisy_rel_iqr`` of the median (a wide spread that a narrow CI on the median can hide).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._context import cache_sizes

__all__ = ["Timing", "TimingConfig", "measure", "median_ci", "noop_overhead", "pinned"]


@dataclass(frozen=True)
class TimingConfig:
    """How long and how precisely to measure one point.

    Parameters
    ----------
    target_rel_ci : stop when the 95 % CI half-width of the median is this fraction of it.
    budget_s : seconds of measuring per point (warm-up included) before giving up.
    min_samples : never judge convergence on fewer samples than this.
    max_samples : hard cap on samples per point.
    warmup_s : seconds of untimed warm-up calls (at least one call always runs).
    batch_s : seconds each batch of timed calls should last (fewer Python round trips).
    cold : flush the caches before every timed call (``cache = "cold"``).
    flush_bytes : bytes written per flush; 0 = twice the last-level cache (>= 8 MiB).
    noisy_rel_iqr : IQR / median above which a point is flagged noisy.
    pin : pin single-threaded measurements to one CPU (Linux; see :func:`pinned`).
    """

    target_rel_ci: float = 0.02
    budget_s: float = 0.5
    min_samples: int = 10
    max_samples: int = 20_000
    warmup_s: float = 0.005
    batch_s: float = 0.02
    cold: bool = False
    flush_bytes: int = 0
    noisy_rel_iqr: float = 0.25
    pin: bool = True

    def __post_init__(self) -> None:
        checks = {
            "target_rel_ci": 0 < self.target_rel_ci < 1,
            "budget_s": self.budget_s > 0,
            "min_samples": 1 <= self.min_samples <= self.max_samples,
            "warmup_s": self.warmup_s >= 0,
            "batch_s": self.batch_s > 0,
            "flush_bytes": self.flush_bytes >= 0,
            "noisy_rel_iqr": self.noisy_rel_iqr > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"TimingConfig.{name}={getattr(self, name)!r} is out of "
                                 f"range (see the TimingConfig docstring)")


@dataclass
class Timing:
    """Result of measuring one point; times in seconds."""

    samples: np.ndarray = field(repr=False)
    median_s: float
    min_s: float
    mean_s: float
    iqr_s: float
    ci_low_s: float
    ci_high_s: float
    rel_ci: float
    n_samples: int
    converged: bool
    noisy: bool
    wall_s: float = 0.0  # time spent measuring (warm-up included)

    def as_row(self) -> dict[str, Any]:
        """Store columns (measurements table) of this timing."""
        return {k: getattr(self, k) for k in (
            "median_s", "min_s", "mean_s", "iqr_s", "ci_low_s", "ci_high_s", "rel_ci",
            "n_samples", "converged", "noisy")}


_Z975 = 1.959963984540054  # standard normal 97.5 % quantile


@functools.lru_cache(maxsize=4096)
def _ci_ranks(n: int, confidence: float) -> tuple[int, int]:
    """0-based order-statistic indices (lo, hi) bracketing the median with >= confidence.

    With B ~ Binomial(n, 1/2) the number of samples below the median, X_(j) .. X_(n-j+1)
    covers it with probability 1 - 2 P(B <= j - 1); j is the largest rank keeping that at
    or above ``confidence``. Exact (log-space pmf sums) up to n = 5000; above, the normal
    approximation with continuity correction (off by at most one rank there).
    """
    alpha = (1.0 - confidence) / 2
    if n <= 5000:
        log_half_n = n * math.log(0.5)
        lg_n = math.lgamma(n + 1)
        cdf = 0.0
        j = 0
        while j <= n:
            cdf += math.exp(lg_n - math.lgamma(j + 1) - math.lgamma(n - j + 1) + log_half_n)
            if cdf > alpha:
                break
            j += 1
        # P(B <= j - 1) <= alpha < P(B <= j): ranks j .. n - j + 1 (1-based) hold; j >= 1
    else:
        z = _Z975 if confidence == 0.95 else _normal_quantile(1 - alpha)
        j = math.floor(n / 2 - z * math.sqrt(n) / 2 - 0.5) + 1
    j = max(j, 1)
    return j - 1, n - j


def _normal_quantile(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def median_ci(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median (binomial order statistics).

    Parameters
    ----------
    samples : 1-D array of float
    confidence : coverage, e.g. 0.95

    Returns
    -------
    (low, high): order statistics X_(j), X_(n-j+1) with P(X_(j) <= median <= X_(n-j+1))
    >= confidence. With fewer than 6 samples no such pair exists at 95 %: the full range
    is returned (its coverage is below the level asked for).
    """
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = x.size
    if n == 0:
        return float("nan"), float("nan")
    lo, hi = _ci_ranks(n, confidence)
    if lo > hi or n < 6:
        return float(x[0]), float(x[-1])
    return float(x[lo]), float(x[hi])


def _rel_half_width(samples: np.ndarray) -> tuple[float, float, float, float]:
    med = float(np.median(samples))
    lo, hi = median_ci(samples)
    rel = (hi - lo) / (2 * med) if med > 0 else float("inf")
    if samples.size < 6:
        rel = float("inf")  # too few samples to bound the median at 95 %
    return med, lo, hi, rel


def summarize(samples: np.ndarray, config: TimingConfig, wall_s: float = 0.0) -> Timing:
    """Statistics of raw samples (seconds) under ``config``'s convergence rules."""
    x = np.asarray(samples, dtype=np.float64)
    med, lo, hi, rel = _rel_half_width(x)
    q1, q3 = np.percentile(x, [25, 75])
    converged = bool(x.size >= min(config.min_samples, 6) and rel <= config.target_rel_ci)
    iqr = float(q3 - q1)
    noisy = bool(not converged or (med > 0 and iqr / med > config.noisy_rel_iqr))
    return Timing(x, med, float(x.min()), float(x.mean()), iqr, lo, hi, float(rel), int(x.size),
                  converged, noisy, wall_s)


@contextlib.contextmanager
def pinned(threads: int, enabled: bool = True) -> Iterator[None]:
    """Pin the calling thread to one of its allowed CPUs while inside the block, when the
    kernel runs on ``threads == 1`` thread.

    Pinning keeps the scheduler from migrating the timed thread; the CPU chosen is the last
    one allowed (CPU 0 takes most interrupts). Multi-threaded kernels are not pinned: a
    thread pool (OpenMP, BLAS, torch) started while the caller is pinned inherits the
    caller's mask and would keep it afterwards. No-op where unsupported.
    """
    if not enabled or threads != 1 or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    allowed = sorted(before)
    if threads >= len(allowed):
        yield
        return
    try:
        os.sched_setaffinity(0, allowed[-threads:])
    except OSError:
        yield
        return
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@functools.lru_cache(maxsize=1)
def _runtime() -> Any:
    from kernels_c._loader import load

    return load("runtime")


def _flush_buffer(config: TimingConfig) -> np.ndarray | None:
    if not config.cold:
        return None
    size = config.flush_bytes or max(8 << 20, 2 * cache_sizes().get("l3_bytes", 0))
    return np.zeros(size, dtype=np.uint8)


class _CTimer:
    """Times ``plan.function(plan.args)`` in batches through ``kc_time_calls``."""

    def __init__(self, plan: Any, flush: np.ndarray | None) -> None:
        rt = _runtime()
        self.ffi, self.lib = rt.ffi, rt.lib
        src_ffi = plan.module.ffi
        # the kernel lives in another cffi module: pass it across as plain addresses
        self.fn = self.ffi.cast("kc_kernel_fn", int(src_ffi.cast("uintptr_t", plan.function)))
        self.args = self.ffi.cast("void *", int(src_ffi.cast("uintptr_t", plan.args)))
        self.plan = plan  # keeps args and buffers alive
        self.flush = flush
        self.flush_ptr = self.ffi.from_buffer("char[]", flush) if flush is not None \
            else self.ffi.NULL
        self.nflush = 0 if flush is None else flush.nbytes
        self.buf = np.empty(0)

    def __call__(self, n: int, warmup: int = 0) -> np.ndarray:
        if self.buf.size < n:
            self.buf = np.empty(max(n, 1024), dtype=np.float64)
        rc = self.lib.kc_time_calls(self.fn, self.args, warmup, n,
                                    self.ffi.cast("double *", self.buf.ctypes.data),
                                    self.flush_ptr, self.nflush)
        if rc != 0:
            raise RuntimeError(f"kernel returned error code {rc}")
        return self.buf[:n].copy()


class _PyTimer:
    """Times a Python callable with ``perf_counter_ns`` around each call."""

    def __init__(self, fn: Callable[[], Any], flush: np.ndarray | None) -> None:
        self.fn, self.flush = fn, flush

    def __call__(self, n: int, warmup: int = 0) -> np.ndarray:
        fn, flush, clock = self.fn, self.flush, time.perf_counter_ns
        for _ in range(warmup):
            fn()
        out = np.empty(n, dtype=np.float64)
        for i in range(n):
            if flush is not None:
                np.add(flush, 1, out=flush)
            t0 = clock()
            fn()
            out[i] = clock() - t0
        out *= 1e-9
        return out


def measure(target: Any, config: TimingConfig | None = None, *, threads: int = 1) -> Timing:
    """Time a kernel call until its median is known to ``config.target_rel_ci``.

    Parameters
    ----------
    target : a kernels_c plan (``.function``, ``.args``, ``.module``: timed in C) or a
        zero-argument callable (timed in Python).
    config : TimingConfig, default ``TimingConfig()``.
    threads : CPUs to pin to while measuring (the kernel's own thread count is part of
        the plan / callable).

    Returns
    -------
    Timing with every sample (seconds) and its statistics.

    Raises
    ------
    RuntimeError when the kernel reports an error (non-zero return code).
    """
    config = config or TimingConfig()
    flush = _flush_buffer(config)
    if hasattr(target, "function") and hasattr(target, "args"):
        timer: Callable[..., np.ndarray] = _CTimer(target, flush)
    elif callable(target):
        timer = _PyTimer(target, flush)
    else:
        raise TypeError(f"measure() needs a kernels_c plan or a callable, got "
                        f"{type(target).__name__}")
    with pinned(threads, config.pin):
        start = time.perf_counter()
        timer(1)  # the first warm-up call; its wall time sizes what follows
        # wall time per call (flush included) sizes the batches; the samples do not
        per_call = max(time.perf_counter() - start, 1e-9)
        n_warm = int(min(10_000, config.warmup_s / per_call))
        if n_warm:
            t0 = time.perf_counter()
            timer(1, warmup=n_warm)
            per_call = max((time.perf_counter() - t0) / (n_warm + 1), 1e-9)
        chunks: list[np.ndarray] = []
        n = 0
        deadline = start + config.budget_s
        while True:
            # batches double (from min_samples) so fast kernels stop after few samples,
            # and last at most batch_s and what is left of the budget
            remaining = max(deadline - time.perf_counter(), 0.0)
            per_batch = min(max(n, config.min_samples),
                            int(min(config.batch_s, remaining) / per_call))
            if n < config.min_samples:  # always reach min_samples when they fit a batch
                per_batch = max(per_batch, min(config.min_samples - n,
                                               int(config.batch_s / per_call)))
            per_batch = max(1, min(per_batch, config.max_samples - n))
            t0 = time.perf_counter()
            batch = timer(per_batch)
            per_call = max((time.perf_counter() - t0) / per_batch, 1e-9)
            chunks.append(batch)
            n += batch.size
            samples = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
            if n >= config.min_samples:
                _, _, _, rel = _rel_half_width(samples)
                if rel <= config.target_rel_ci:
                    break
            if n >= config.max_samples:
                break
            now = time.perf_counter()
            if now >= deadline and (n >= min(config.min_samples, 6)
                                    or now >= start + 3 * config.budget_s):
                break
        wall = time.perf_counter() - start
    return summarize(samples, config, wall)


def noop_overhead(config: TimingConfig | None = None) -> tuple[Timing, float]:
    """Harness overhead on the empty C kernel ``kc_noop``.

    Returns
    -------
    (timing, wall_per_call_s): the per-call samples (timer + call overhead inside the C
    loop) and the wall time of the whole :func:`measure` divided by the calls it made
    (everything the harness adds per call, Python batching included).
    """
    rt = _runtime()

    class _Noop:
        module = rt
        function = rt.lib.kc_noop
        args = rt.ffi.NULL

    # a fixed, large number of calls: the per-call cost, not the fixed setup, is measured
    config = config or TimingConfig(budget_s=1.0, min_samples=100_000, max_samples=100_000)
    timing = measure(_Noop(), config)
    return timing, timing.wall_s / max(timing.n_samples, 1)
