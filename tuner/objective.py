"""Objectives: what one trial does with the configuration it proposes.

Both objectives share the trial protocol of :class:`Objective`:

1. draw ``(kernel, params)`` from the search space (conditional parameters);
2. a configuration that breaks a constraint is an *infeasible* trial (state PRUNED, reason
   in the ``infeasible`` user attribute), it costs no measurement;
3. a configuration already evaluated in this study is answered from the earlier trial
   (``duplicate_of`` user attribute) instead of being measured again;
4. :meth:`Objective.evaluate` returns the seconds; an exception there is recorded in the
   ``error`` user attribute and re-raised, so Optuna marks the trial FAIL and goes on.

:class:`MeasureObjective` builds the kernel plan, checks its output against the reference
(a wrong answer is infeasible, with the error size recorded) and times it with the
measurement harness (median with its 95 % CI; raw samples go to the ``samples_s`` user
attribute). The replaying objective lives in :mod:`tuner.simulate`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .space import SearchSpace

__all__ = ["MeasureObjective", "Objective", "Operands", "config_key", "measure_plan"]

#: raw samples kept per trial in the user attributes (the CI is computed from all of them)
MAX_STORED_SAMPLES = 200


def config_key(kernel: str, params: Mapping[str, Any]) -> str:
    """Canonical text of one configuration (kernel + params, sorted keys)."""
    return json.dumps({"kernel": kernel, "params": dict(params)}, sort_keys=True)


class Infeasible(Exception):
    """The configuration cannot be evaluated (constraint, invalid plan, wrong answer)."""


class Objective:
    """Optuna objective over a :class:`SearchSpace`; subclasses implement ``evaluate``."""

    #: proposals of already evaluated configurations in a row after which an unevaluated
    #: configuration, drawn at random, is enqueued (TPE can collapse onto one kernel choice
    #: that has a single configuration, such as the dense baseline, and re-propose it)
    STUCK_AFTER = 3

    def __init__(self, space: SearchSpace, seed: int | None = None) -> None:
        self.space = space
        #: configurations this process evaluated (measured or replayed)
        self.evaluations = 0
        self.counted_last = False
        #: every configuration of the space has been tried (nothing left to explore)
        self.exhausted = False
        self._repeats = 0
        self._configs: list[tuple[str, dict[str, Any]]] | None = None
        self._rng = np.random.default_rng(seed)

    def evaluate(self, kernel: str, params: dict[str, Any], trial: Any) -> float:
        raise NotImplementedError

    def _explore(self, study: Any) -> None:
        """Enqueue one configuration no trial of ``study`` has tried yet."""
        if self._configs is None:
            self._configs = list(self.space.configs())
        tried = {t.user_attrs.get("config") for t in study.get_trials(deepcopy=False)}
        fresh = [c for c in self._configs if config_key(*c) not in tried]
        self.exhausted = not fresh
        if fresh:
            kernel, params = fresh[int(self._rng.integers(len(fresh)))]
            study.enqueue_trial(self.space.optuna_params(kernel, params),
                                user_attrs={"source": "explore"})

    def __call__(self, trial: Any) -> float:
        import optuna

        self.counted_last = False  # whether this call counts as one of our evaluations
        kernel, params = self.space.suggest(trial)
        key = config_key(kernel, params)
        trial.set_user_attr("config", key)
        reason = self.space.violation(kernel, params)
        if reason is not None:
            trial.set_user_attr("infeasible", reason)
            raise optuna.TrialPruned(reason)
        for old in trial.study.get_trials(deepcopy=False, states=(
                optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)):
            if old.user_attrs.get("config") == key and old.number != trial.number:
                self._repeats += 1
                if self._repeats >= self.STUCK_AFTER:
                    self._repeats = 0
                    self._explore(trial.study)
                trial.set_user_attr("duplicate_of", old.number)
                if old.state == optuna.trial.TrialState.PRUNED:
                    trial.set_user_attr("infeasible", old.user_attrs.get("infeasible", ""))
                    raise optuna.TrialPruned("repeat of an infeasible configuration")
                return float(old.value)
        self._repeats = 0
        self.evaluations += 1
        self.counted_last = True
        trial.set_user_attr("evaluated", True)
        try:
            return float(self.evaluate(kernel, params, trial))
        except Infeasible as exc:
            trial.set_user_attr("infeasible", str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            raise


@dataclass
class Operands:
    """The inputs of one problem and the float64 reference output.

    a : scipy.sparse CSR (M, K), float32; b : ndarray (K, N), float32;
    reference : ndarray (M, N), float64; bound : ndarray (M, N), float64 = |A| @ |B|
    (scales the tolerance of the answer check).
    """

    a: Any
    b: np.ndarray
    reference: np.ndarray
    bound: np.ndarray
    _dense: np.ndarray | None = None

    @classmethod
    def spmm(cls, m: int, n: int, k: int, sparsity: float, seed: int = 0) -> Operands:
        import scipy.sparse as sp

        rng = np.random.default_rng(seed)
        nnz = round((1.0 - sparsity) * m * k)
        flat = rng.choice(m * k, size=nnz, replace=False)
        a = sp.csr_matrix((rng.standard_normal(nnz).astype(np.float32),
                           (flat // k, flat % k)), shape=(m, k), dtype=np.float32)
        a.sort_indices()
        b = rng.standard_normal((k, n), dtype=np.float32)
        a64 = a.astype(np.float64)
        return cls(a, b, a64 @ b.astype(np.float64), abs(a64) @ np.abs(b).astype(np.float64))

    @property
    def dense_a(self) -> np.ndarray:
        if self._dense is None:
            self._dense = np.ascontiguousarray(self.a.toarray())
        return self._dense

    def check(self, out: np.ndarray) -> str | None:
        """None when ``out`` matches the reference to float32 accuracy, else the reason."""
        if out.shape != self.reference.shape:
            return f"wrong answer: output shape {out.shape}, expected {self.reference.shape}"
        k = self.b.shape[0]
        # worst-case float32 summation error of k products is about k * eps * (|A| @ |B|)
        tol = k * np.finfo(np.float32).eps * self.bound + 1e-30
        err = np.abs(out.astype(np.float64) - self.reference)
        bad = ~(err <= tol)
        if bad.any():
            i = np.unravel_index(int(np.argmax(np.where(bad, err / tol, 0))), err.shape)
            return (f"wrong answer: {int(bad.sum())} of {bad.size} outputs off, worst at "
                    f"{tuple(int(x) for x in i)}: {out[i]!r} vs reference "
                    f"{self.reference[i]:.6g}")
        return None


def make_plan(kernel: str, params: Mapping[str, Any], operands: Operands) -> Any:
    """A kernels_c plan of ``kernel`` with ``params`` (``threads`` included) on fresh
    sentinel-filled output, ready for :func:`measure_plan`."""
    params = dict(params)
    threads = int(params.pop("threads", 1))
    out = np.full(operands.reference.shape, np.nan, dtype=np.float32)
    if kernel == "spmm_csr_f32":
        from kernels_c.spmm import plan_spmm

        return plan_spmm(operands.a, operands.b, threads=threads, out=out, **params)
    if kernel == "gemm_blas_f32":
        from kernels_c.gemm import plan_gemm

        return plan_gemm(operands.dense_a, operands.b, threads=threads, out=out)
    raise ValueError(f"no plan builder for kernel {kernel!r}")


def measure_plan(plan: Any, threads: int, timing: Any = None) -> Any:
    """Time a plan with the measurement harness: ``perfmodel.harness.Timing``.

    The one place the tuner measures (BLAS kernels get their thread count here, since it
    is process state rather than part of the plan).
    """
    from perfmodel.harness import measure

    if getattr(plan, "isa", "") == "blas":
        from kernels_c._blas import blas_threads

        with blas_threads(threads):
            return measure(plan, timing, threads=threads)
    return measure(plan, timing, threads=threads)


def run_checked(plan: Any, operands: Operands, threads: int) -> None:
    """Run ``plan`` once and raise :class:`Infeasible` when its answer is wrong."""
    if getattr(plan, "isa", "") == "blas":
        from kernels_c._blas import blas_threads

        with blas_threads(threads):
            out = plan.run()
    else:
        out = plan.run()
    reason = operands.check(out)
    if reason is not None:
        raise Infeasible(reason)


class MeasureObjective(Objective):
    """Measures each configuration on this machine (see the module docstring).

    Parameters
    ----------
    space : the problem's SearchSpace.
    operands : the problem's inputs and reference.
    timing : perfmodel.harness.TimingConfig for each trial.
    """

    def __init__(self, space: SearchSpace, operands: Operands, timing: Any = None,
                 seed: int | None = None) -> None:
        super().__init__(space, seed)
        self.operands = operands
        self.timing = timing

    def evaluate(self, kernel: str, params: dict[str, Any], trial: Any) -> float:
        try:
            plan = make_plan(kernel, params, self.operands)
        except ValueError as exc:  # the kernel's own validation rejected the config
            raise Infeasible(f"invalid plan: {exc}") from None
        threads = int(params.get("threads", 1))
        run_checked(plan, self.operands, threads)
        timing = measure_plan(plan, threads, self.timing)
        samples = np.asarray(timing.samples, dtype=np.float64)
        if trial is not None:
            trial.set_user_attr("samples_s", samples[:MAX_STORED_SAMPLES].tolist())
            for name in ("ci_low_s", "ci_high_s", "rel_ci", "n_samples", "converged",
                         "noisy"):
                value = getattr(timing, name)
                trial.set_user_attr(name, value.item() if hasattr(value, "item") else value)
        return float(timing.median_s)
