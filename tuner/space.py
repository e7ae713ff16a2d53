"""Search spaces as data: per op, one spec per kernel (parameter -> values, constraint
strings, conditions), as in Kernel Tuner's ``tune_params`` / ``restrictions``.

A :class:`SearchSpace` is built for one problem (shape, threads): constraints that name a
single parameter are applied to its value list up front (``n_tile < n`` drops the tiles
wider than N), constraints over several parameters are checked when a trial proposes a
configuration (a violation is an infeasible trial, never a crash). A parameter with a
condition (``row_block`` only matters when ``k_block > 0``) is suggested only when its
condition holds and takes its ``fixed`` value otherwise, so Optuna sees a conditional
(define-by-run) space and no two configurations differ only in an inert parameter.

Expressions are Python expressions over the parameter names and the problem variables
(``m``, ``n``, ``k``, ``sparsity``, ``vector_width``, ``cores``), evaluated without builtins.
"""

from __future__ import annotations

import ast
import itertools
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SPECS", "KernelSpec", "SearchSpace", "search_space"]

#: shape keys each tunable op takes (the same as ``perfmodel.best_config``'s)
SHAPE_KEYS: dict[str, tuple[str, ...]] = {"spmm": ("m", "n", "k", "sparsity")}
_EVAL_GLOBALS: dict[str, Any] = {"__builtins__": {}, "min": min, "max": max}


@dataclass(frozen=True)
class KernelSpec:
    """One kernel's tunable parameters.

    Parameters
    ----------
    params : name -> allowed values (tuple). ``threads`` is added by the space.
    constraints : expressions that must hold for a configuration to be valid.
    conditions : name -> expression; the parameter is tuned only where it holds.
    fixed : name -> value a conditional parameter takes where its condition is false.
    defaults : problem -> the kernel's default parameters for it, or None. Their values
        join the grid, so that the configuration an untuned call runs is in the space
        (spmm's default blocking depends on the shape and is not always a grid value).
    """

    params: Mapping[str, tuple[Any, ...]]
    constraints: tuple[str, ...] = ()
    conditions: Mapping[str, str] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    defaults: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None


def _spmm_specs() -> dict[str, KernelSpec]:
    from kernels_c.spmm import PARAMS, default_params

    grid = {name: tuple(PARAMS[name]) for name in
            ("reg_vectors", "n_tile", "k_block", "row_block", "acc_sets", "prefetch")}
    return {
        "spmm_csr_f32": KernelSpec(
            params=grid,
            constraints=(
                # a cache tile as wide as N (or wider) is the same as no tiling (0)
                "n_tile == 0 or n_tile < n",
                "k_block == 0 or k_block < k",
                # a register tile of more than twice N's width only adds masked lanes
                "reg_vectors == 1 or reg_vectors * vector_width < 2 * n",
                # a cache tile narrower than one register tile wastes the tile
                "n_tile == 0 or n_tile >= reg_vectors * vector_width",
            ),
            conditions={"row_block": "k_block > 0"},
            fixed={"row_block": 32},
            defaults=lambda p: default_params(p["m"], p["k"], p["n"], 1.0 - p["sparsity"]),
        ),
        # the dense baseline: the sparse matrix densified, through the system BLAS
        "gemm_blas_f32": KernelSpec(params={}),
    }


#: op -> factory of {kernel name: KernelSpec} (factories: kernels_c is imported lazily)
SPECS: dict[str, Any] = {"spmm": _spmm_specs}


def _names(expr: str) -> set[str]:
    return {node.id for node in ast.walk(ast.parse(expr, mode="eval"))
            if isinstance(node, ast.Name)} - set(_EVAL_GLOBALS)


def _holds(expr: str, env: Mapping[str, Any]) -> bool:
    return bool(eval(expr, dict(_EVAL_GLOBALS), dict(env)))


def _vector_width() -> int:
    import kernels_c
    from kernels_c.spmm import VECTOR_WIDTH

    level = kernels_c.isa()
    return VECTOR_WIDTH["avx512" if level.startswith("avx512") else level]


@dataclass
class _Kernel:
    name: str
    values: dict[str, tuple[Any, ...]]        # after single-parameter constraints
    constraints: tuple[str, ...]              # checked per configuration
    conditions: dict[str, str]
    fixed: dict[str, Any]


class SearchSpace:
    """The valid configurations of one op for one problem.

    Use :func:`search_space` to build one. ``kernels`` lists the kernel choices;
    :meth:`configs` enumerates every valid ``(kernel, params)``; :meth:`suggest` draws one
    from an Optuna trial; :meth:`violation` names the constraint a configuration breaks.
    """

    def __init__(self, op: str, problem: dict[str, Any], env: dict[str, Any],
                 kernels: dict[str, _Kernel],
                 defaults: dict[str, dict[str, Any]] | None = None) -> None:
        self.op = op
        self.problem = problem    # the shape, normalized
        self.env = env            # problem + derived variables the expressions may use
        self._kernels = kernels
        self.kernels = tuple(kernels)
        #: kernel -> its default parameters for this problem (``KernelSpec.defaults``)
        self.defaults = dict(defaults or {})

    def __repr__(self) -> str:
        return f"SearchSpace({self.op}, {self.problem}, kernels={list(self.kernels)})"

    def values(self, kernel: str) -> dict[str, tuple[Any, ...]]:
        """Allowed values of each parameter of ``kernel`` (single-parameter constraints
        applied)."""
        return dict(self._kernel(kernel).values)

    def _kernel(self, kernel: str) -> _Kernel:
        try:
            return self._kernels[kernel]
        except KeyError:
            raise ValueError(f"kernel {kernel!r} is not in the {self.op} search space; "
                             f"valid: {list(self.kernels)}") from None

    def _active(self, spec: _Kernel, name: str, chosen: Mapping[str, Any]) -> bool:
        cond = spec.conditions.get(name)
        return cond is None or _holds(cond, {**self.env, **chosen})

    def violation(self, kernel: str, params: Mapping[str, Any]) -> str | None:
        """The first constraint ``params`` break (or an unknown/invalid parameter), else None."""
        spec = self._kernel(kernel)
        unknown = set(params) - set(spec.values)
        if unknown:
            return f"unknown parameter(s) {sorted(unknown)} for {kernel}; valid: " \
                   f"{sorted(spec.values)}"
        for name, allowed in spec.values.items():
            if name not in params:
                return f"parameter {name} missing"
            active = self._active(spec, name, params)
            if active and params[name] not in allowed:
                return f"{name}={params[name]!r} not allowed; allowed: {allowed}"
            if not active and params[name] != spec.fixed[name]:
                return f"{name} is fixed to {spec.fixed[name]!r} unless " \
                       f"{spec.conditions[name]}"
        env = {**self.env, **params}
        for expr in spec.constraints:
            if not _holds(expr, env):
                return f"constraint violated: {expr}"
        return None

    def canonical(self, kernel: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` with every inactive conditional parameter set to its fixed value
        (a row_block measured with K blocking off is the same configuration as any other)."""
        spec = self._kernel(kernel)
        out = dict(params)
        for name in spec.conditions:
            if name in out and not self._active(spec, name, out):
                out[name] = spec.fixed[name]
        return out

    def configs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every valid configuration, kernel by kernel, in a fixed order."""
        for kernel in self.kernels:
            spec = self._kernels[kernel]
            names = list(spec.values)
            seen: set[tuple] = set()
            for combo in itertools.product(*(spec.values[n] for n in names)):
                params = dict(zip(names, combo, strict=False))
                for name in spec.conditions:
                    if not self._active(spec, name, params):
                        params[name] = spec.fixed[name]
                key = tuple(params[n] for n in names)
                if key in seen or self.violation(kernel, params) is not None:
                    continue
                seen.add(key)
                yield kernel, params

    @property
    def size(self) -> int:
        """Number of valid configurations."""
        return sum(1 for _ in self.configs())

    def distributions(self, kernel: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Optuna distributions of the parameters a trial with this config suggests."""
        import optuna

        spec = self._kernel(kernel)
        dists: dict[str, Any] = {}
        if len(self.kernels) > 1:
            dists["kernel"] = optuna.distributions.CategoricalDistribution(self.kernels)
        for name, allowed in spec.values.items():
            if len(allowed) > 1 and self._active(spec, name, params):
                dists[self._optuna_name(kernel, name)] = \
                    optuna.distributions.CategoricalDistribution(allowed)
        return dists

    def optuna_params(self, kernel: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The Optuna parameter dict of a configuration (for enqueue / add_trial)."""
        dists = self.distributions(kernel, params)
        out: dict[str, Any] = {}
        for name in dists:
            out[name] = kernel if name == "kernel" else params[name.split(":", 1)[-1]]
        return out

    def _optuna_name(self, kernel: str, name: str) -> str:
        # "threads" is shared by every kernel; others are namespaced so that two kernels
        # may give one parameter name different value lists
        return name if name == "threads" else f"{kernel}:{name}"

    def suggest(self, trial: Any) -> tuple[str, dict[str, Any]]:
        """Draw ``(kernel, params)`` from an Optuna trial (define-by-run, conditional)."""
        kernel = (trial.suggest_categorical("kernel", self.kernels) if len(self.kernels) > 1
                  else self.kernels[0])
        spec = self._kernels[kernel]
        params: dict[str, Any] = {}
        for name, allowed in spec.values.items():
            if not self._active(spec, name, params):
                params[name] = spec.fixed[name]
            elif len(allowed) == 1:
                params[name] = allowed[0]
            else:
                params[name] = trial.suggest_categorical(self._optuna_name(kernel, name),
                                                         allowed)
        return kernel, params

    def from_optuna(self, optuna_params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """Inverse of :meth:`optuna_params` for a finished trial's ``params``."""
        kernel = optuna_params.get("kernel", self.kernels[0])
        spec = self._kernel(kernel)
        params: dict[str, Any] = {}
        for name, allowed in spec.values.items():
            key = self._optuna_name(kernel, name)
            if key in optuna_params:
                params[name] = optuna_params[key]
            elif not self._active(spec, name, params):
                params[name] = spec.fixed[name]
            else:
                params[name] = allowed[0]
        return kernel, params


def _check_problem(op: str, shape: Mapping[str, Any]) -> dict[str, Any]:
    if op not in SPECS:
        raise ValueError(f"no search space for op {op!r}; tunable ops: {sorted(SPECS)}")
    keys = SHAPE_KEYS[op]
    missing = [k for k in keys if k not in shape]
    unknown = sorted(set(shape) - set(keys))
    if missing or unknown:
        raise ValueError(f"tuning {op} takes the shape {list(keys)}; missing {missing}, "
                         f"unknown {unknown}")
    problem: dict[str, Any] = {}
    for key in keys:
        value = shape[key]
        if key == "sparsity":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    0.0 <= float(value) < 1.0):
                raise ValueError(f"sparsity must be a fraction of zeros in [0, 1), got "
                                 f"{value!r}")
            problem[key] = float(value)
        else:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive int, got {value!r}")
            problem[key] = int(value)
    return problem


def search_space(op: str, *, threads: int | tuple[int, ...] | None = None,
                 specs: Mapping[str, KernelSpec] | None = None,
                 **shape: Any) -> SearchSpace:
    """Build the search space of ``op`` for one problem.

    Parameters
    ----------
    op : str, e.g. ``"spmm"``.
    threads : int (fixed), tuple of ints (tuned over) or None (tuned over 1 .. the CPUs
        this process may use).
    specs : kernel name -> KernelSpec, overriding :data:`SPECS` (tests, experiments).
    **shape : the problem, e.g. ``m=256, n=128, k=512, sparsity=0.9``.

    Raises
    ------
    ValueError
        Unknown op, missing or unknown shape keys, invalid values, a constraint naming an
        unknown variable, or no valid configuration left after the constraints.
    """
    problem = _check_problem(op, shape)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    if threads is None:
        thread_values: tuple[int, ...] = tuple(range(1, cores + 1))
    elif isinstance(threads, int) and not isinstance(threads, bool):
        thread_values = (threads,)
    else:
        thread_values = tuple(threads)
    if not thread_values or any(isinstance(t, bool) or not isinstance(t, int) or t < 1
                                for t in thread_values):
        raise ValueError(f"threads must be a positive int or a tuple of them, got {threads!r}")
    env = {**problem, "vector_width": _vector_width(), "cores": cores}
    specs = dict(specs if specs is not None else SPECS[op]())
    kernels: dict[str, _Kernel] = {}
    defaults = {kernel: dict(spec.defaults(problem)) for kernel, spec in specs.items()
                if spec.defaults}
    for kernel, spec in specs.items():
        values = {name: tuple(v) for name, v in spec.params.items()}
        for name, v in defaults.get(kernel, {}).items():
            if name in values and v not in values[name]:
                values[name] = tuple(sorted((*values[name], v)))
        values["threads"] = thread_values
        multi = []
        for expr in (*spec.constraints, *spec.conditions.values()):
            names = _names(expr)
            unknown = names - set(values) - set(env)
            if unknown:
                raise ValueError(f"{kernel}: constraint {expr!r} names unknown variable(s) "
                                 f"{sorted(unknown)}; known: {sorted({*values, *env})}")
        for expr in spec.constraints:
            names = _names(expr) & set(values)
            if len(names) == 1:
                (name,) = names
                values[name] = tuple(v for v in values[name] if _holds(expr, {**env, name: v}))
            else:
                multi.append(expr)
        kernels[kernel] = _Kernel(kernel, values, tuple(multi), dict(spec.conditions),
                                  dict(spec.fixed))
    space = SearchSpace(op, problem, env, kernels, defaults)
    emptied = []
    for kernel in list(kernels):
        space.kernels = (kernel,)
        if any(not v for v in kernels[kernel].values.values()) or \
                next(space.configs(), None) is None:
            emptied.append(kernel)
            del kernels[kernel]
    space.kernels = tuple(kernels)
    if not kernels:
        raise ValueError(f"the {op} search space for {problem} is empty after its "
                         f"constraints (kernels emptied: {emptied}); relax the constraints "
                         f"or check the shape")
    return space
