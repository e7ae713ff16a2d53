"""Sweeps: a validated spec expands into points; each point is built, checked against a
reference, timed by :mod:`perfmodel.harness` and committed to the store at once.

Call ``perfmodel.sweep(spec, store=...)`` (defined here) or run
``perfmodel sweep [--preset quick | SPEC] [--db URL] [--remeasure]``.

Spec (TOML, or the same structure as a dict)::

    name = "mine"              # recorded with every point
    budget_s = 0.5             # per point: measuring stops here if not converged
    target_rel_ci = 0.02       # stop when the median's 95 % CI is within +-2 %
    seed = 0                   # all generated operands derive from it
    passes = 1                 # measure every point this many times, in passes over the
                               # whole spec, and keep the fastest median (noisy machines)
    threads = [1]              # default for blocks
    cache = ["warm"]           # "warm" and/or "cold" (caches flushed before each call)

    [[block]]                  # any number of blocks
    op = "spmm"                # see perfmodel.ops.OPS
    kernels = ["spmm_csr_f32", "gemm_blas_f32", "scipy_csr"]   # default: all of the op
    shapes = [{m = 512, k = 512, n = 128}]   # explicit shapes, and/or
    layers = ["resnet50"]      # named layer sets (perfmodel.shapes.LAYER_SETS), and/or
    matrices = "../shared/data/dlmc/rn50/magnitude_pruning/0.8"   # real matrices
    max_matrices = 8           # at most this many files from ``matrices``
    n = [256]                  # dense width for matrices without a known one
    sparsities = [0.5, 0.9]    # fractions of zeros (generated operands)
    patterns = ["random"]      # dense | random | block<R>x<C>
    [block.params.spmm_csr_f32]
    reg_vectors = [2, 4]       # cross product of the listed values

A point is identified by a stable key (op, kernel, shape, sparsity, pattern, matrix,
layer, seed, params, threads, cache, ISA cap); points already in the store for this
machine are skipped unless ``remeasure`` is set, so an interrupted sweep resumes.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _context, harness
from .ops import OPS, Problem, get_op, parse_pattern
from .shapes import layer_set, matrix_sources
from .store import Store, open_store
from .store.store import canonical_json

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: TOML specs need the tomli backport
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["PRESETS", "Point", "Spec", "SpecError", "SweepSummary", "load_spec", "sweep"]

PRESET_DIR = Path(__file__).resolve().parent / "presets"
PRESETS = ("quick", "standard", "full")
CACHES = ("warm", "cold")


class SpecError(ValueError):
    """A sweep spec field is missing, unknown or out of range (the message names it)."""


@dataclass(frozen=True)
class Point:
    """One measurement to take."""

    kernel: str
    problem: Problem
    params: tuple[tuple[str, Any], ...]
    threads: int
    cache: str

    @property
    def op(self) -> str:
        return self.problem.op

    def key(self, isa_cap: str) -> str:
        """Stable identity of the point on one machine (hex, 40 chars)."""
        p = self.problem
        matrix = "/".join(Path(p.matrix).parts[-2:]) if p.matrix else ""
        ident = {"op": p.op, "kernel": self.kernel, "shape": dict(p.shape),
                 "sparsity": round(p.sparsity, 6), "pattern": p.pattern, "matrix": matrix,
                 "layer": p.layer, "seed": p.seed, "params": dict(self.params),
                 "threads": self.threads, "cache": self.cache, "isa": isa_cap}
        return hashlib.sha256(canonical_json(ident).encode()).hexdigest()[:40]


@dataclass
class Spec:
    """A validated sweep spec: its name, timing settings and the points it expands to."""

    name: str
    timing: harness.TimingConfig
    points: list[Point]
    raw: dict[str, Any]
    isa: str | None = None
    passes: int = 1


@dataclass
class SweepSummary:
    """What a sweep did."""

    name: str
    run_id: int
    planned: int = 0
    skipped: int = 0  # already in the store
    stale: int = 0  # stored, but measured with other kernels_c code: measured again
    measured: int = 0
    status: Counter = field(default_factory=Counter)
    converged: int = 0
    noisy: int = 0
    unavailable: int = 0
    rechecked: int = 0  # points measured again for being slower than at a lower sparsity
    recheck_kept: int = 0  # ... whose second measurement was faster and replaced the first
    pass_measured: int = 0  # measurements of the passes after the first
    pass_kept: int = 0  # ... faster than the stored median, which they replaced
    interrupted: bool = False
    wall_s: float = 0.0
    max_loadavg: float = 0.0  # highest 1-minute load average seen while measuring

    @property
    def converged_fraction(self) -> float:
        ok = self.status.get("ok", 0)
        return self.converged / ok if ok else float("nan")

    def __str__(self) -> str:
        parts = [f"sweep {self.name!r}: {self.measured} measured, {self.skipped} already "
                 f"in the store"]
        if self.stale:
            parts.append(f"{self.stale} stored points measured again: their kernel's code "
                         f"changed since")
        if self.status:
            parts.append(", ".join(f"{n} {s}" for s, n in sorted(self.status.items())))
        ok = self.status.get("ok", 0)
        if ok:
            parts.append(f"{self.converged}/{ok} converged, {self.noisy} noisy (CI wider "
                         f"than the target or IQR > 25 % of the median)")
        if self.unavailable:
            parts.append(f"{self.unavailable} points skipped: kernel not available here")
        if self.pass_measured:
            parts.append(f"{self.pass_measured} measured again in later passes, "
                         f"{self.pass_kept} faster than before (kept)")
        if self.rechecked:
            parts.append(f"{self.rechecked} points slower than at a lower sparsity measured "
                         f"again, {self.recheck_kept} faster the second time (kept)")
        parts.append(f"{self.wall_s:.1f} s")
        cpus = os.cpu_count() or 1
        if self.max_loadavg > cpus:
            parts.append(f"machine busy (load average up to {self.max_loadavg:.1f} on {cpus} "
                         f"CPUs): expect noisier timings")
        if self.interrupted:
            parts.append("INTERRUPTED: rerun the same command to resume")
        return "; ".join(parts)


# ---- spec validation ---------------------------------------------------------------------
_TOP = {"name", "description", "budget_s", "target_rel_ci", "min_samples", "max_samples",
        "seed", "passes", "threads", "cache", "isa", "block"}
MAX_PASSES = 100
_BLOCK = {"op", "kernels", "shapes", "layers", "matrices", "max_matrices", "n",
          "sparsities", "patterns", "threads", "cache", "params", "seed"}
_CONV_DEFAULTS = {"stride": 1, "padding": 0, "batch": 1, "groups": 1}


def _fail(where: str, message: str) -> SpecError:
    return SpecError(f"sweep spec field {where}: {message}")


def _list(value: Any, where: str, kind: type | tuple[type, ...]) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__
                                                                          for k in kind)
            raise _fail(where, f"expected {names} (or a list of them), got {item!r}")
    if not items:
        raise _fail(where, "must not be empty")
    return items


def _number(value: Any, where: str, low: float, high: float, integer: bool = False) -> Any:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        raise _fail(where, f"expected {'an integer' if integer else 'a number'} in "
                           f"[{low}, {high}], got {value!r}")
    return value


def _threads(value: Any, where: str) -> list[int]:
    return [_number(t, where, 1, 1024, integer=True) for t in _list(value, where, int)]


def _caches(value: Any, where: str) -> list[str]:
    items = _list(value, where, str)
    bad = [c for c in items if c not in CACHES]
    if bad:
        raise _fail(where, f"{bad} not allowed; allowed: {', '.join(CACHES)}")
    return items


def _shapes(op: Any, value: Any, where: str) -> list[dict[str, int]]:
    out = []
    for i, shape in enumerate(_list(value, where, dict)):
        w = f"{where}[{i}]"
        defaults = _CONV_DEFAULTS if op.name == "conv2d" else {}
        unknown = set(shape) - set(op.shape_fields)
        if unknown:
            raise _fail(w, f"unknown dimension(s) {sorted(unknown)} for {op.name}; allowed: "
                           f"{', '.join(op.shape_fields)}")
        full = {**{k: v for k, v in defaults.items() if k in op.shape_fields}, **shape}
        missing = [f for f in op.shape_fields if f not in full]
        if missing:
            raise _fail(w, f"missing dimension(s) {missing} for {op.name} (needs "
                           f"{', '.join(op.shape_fields)})")
        for name, v in full.items():
            low = 0 if name == "padding" else 1
            _number(v, f"{w}.{name}", low, 2**31 - 1, integer=True)
        out.append({f: int(full[f]) for f in op.shape_fields})
    return out


def _resolve_path(value: str, base: Path | None, where: str) -> Path:
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path] + (
        [base / path] if base else [])
    for c in candidates:
        if c.exists():
            return c.resolve()
    raise _fail(where, f"matrix file or folder {value!r} not found (looked in "
                       f"{', '.join(str(c) for c in candidates)})")


def _expand_block(raw: dict[str, Any], i: int, top: dict[str, Any], base: Path | None,
                  seed: int) -> list[Point]:
    where = f"block[{i}]"
    if not isinstance(raw, dict):
        raise _fail(where, f"expected a table, got {raw!r}")
    unknown = set(raw) - _BLOCK
    if unknown:
        raise _fail(f"{where}.{sorted(unknown)[0]}", f"unknown field; allowed: "
                                                     f"{', '.join(sorted(_BLOCK))}")
    if "op" not in raw:
        raise _fail(f"{where}.op", f"missing; allowed: {', '.join(sorted(OPS))}")
    if raw["op"] not in OPS:
        raise _fail(f"{where}.op", f"unknown op {raw['op']!r}; allowed: "
                                   f"{', '.join(sorted(OPS))}")
    op = get_op(raw["op"])
    kernels_all = op.kernels
    kernels = _list(raw.get("kernels", list(kernels_all)), f"{where}.kernels", str)
    bad = [k for k in kernels if k not in kernels_all]
    if bad:
        raise _fail(f"{where}.kernels", f"unknown kernel(s) {bad} for {op.name}; allowed: "
                                        f"{', '.join(kernels_all)}")
    threads = _threads(raw.get("threads", top["threads"]), f"{where}.threads")
    caches = _caches(raw.get("cache", top["cache"]), f"{where}.cache")
    seed = _number(raw.get("seed", seed), f"{where}.seed", 0, 2**63 - 1, integer=True)
    sparsities = [_number(s, f"{where}.sparsities", 0.0, 0.9999)
                  for s in _list(raw.get("sparsities", [0.0]), f"{where}.sparsities",
                                 (int, float))]
    patterns = _list(raw.get("patterns", ["random"]), f"{where}.patterns", str)
    for p in patterns:
        try:
            if parse_pattern(p)[0] == "real":
                raise ValueError("pattern 'real' comes from 'matrices', not 'patterns'")
        except ValueError as exc:
            raise _fail(f"{where}.patterns", str(exc)) from None
    params_raw = raw.get("params", {})
    if not isinstance(params_raw, dict):
        raise _fail(f"{where}.params", "expected a table of kernel -> {param: [values]}")
    grids: dict[str, list[dict[str, Any]]] = {}
    for kernel in kernels:
        grid = params_raw.get(kernel)
        if grid is not None and not isinstance(grid, dict):
            raise _fail(f"{where}.params.{kernel}", "expected a table {param: [values]}")
        try:
            grids[kernel] = op.param_grid(kernel, {k: v if isinstance(v, list) else [v]
                                                   for k, v in (grid or {}).items()})
        except ValueError as exc:
            raise _fail(f"{where}.params.{kernel}", str(exc)) from None
    stray = set(params_raw) - set(kernels)
    if stray:
        raise _fail(f"{where}.params", f"kernel(s) {sorted(stray)} are not in this block's "
                                       f"kernels {kernels}")
    if not any(k in raw for k in ("shapes", "layers", "matrices")):
        raise _fail(where, "needs at least one of shapes, layers, matrices")

    # (shape, layer, matrix, pattern-sparsity pairs)
    sources: list[tuple[dict[str, int], str, str, list[tuple[str, float]]]] = []
    generated = [(p, 0.0) if parse_pattern(p)[0] == "dense" else (p, s)
                 for p in patterns for s in sparsities]
    generated = list(dict.fromkeys(generated))
    if "shapes" in raw:
        for shape in _shapes(op, raw["shapes"], f"{where}.shapes"):
            sources.append((shape, "", "", generated))
    if "layers" in raw:
        for name in _list(raw["layers"], f"{where}.layers", str):
            try:
                layers = layer_set(name)
            except ValueError as exc:
                raise _fail(f"{where}.layers", str(exc)) from None
            for layer in layers:
                shape = op.shape_from_layer(layer)
                if shape is not None:
                    sources.append((shape, f"{name}:{layer.name}", "", generated))
    if "matrices" in raw:
        if "m" not in op.shape_fields:
            raise _fail(f"{where}.matrices", f"op {op.name} does not take matrix files "
                                             f"(spmm does)")
        value = raw["matrices"]
        if not isinstance(value, str):
            raise _fail(f"{where}.matrices", f"expected a path string, got {value!r}")
        path = _resolve_path(value, base, f"{where}.matrices")
        limit = raw.get("max_matrices")
        if limit is not None:
            _number(limit, f"{where}.max_matrices", 1, 10**9, integer=True)
        try:
            found = matrix_sources(path, limit)
        except (FileNotFoundError, ValueError) as exc:
            raise _fail(f"{where}.matrices", str(exc)) from None
        widths = [_number(n, f"{where}.n", 1, 2**31 - 1, integer=True)
                  for n in _list(raw.get("n", [256]), f"{where}.n", int)]
        for src in found:
            label = src.sparsity_label if src.sparsity_label is not None else \
                1 - src.nnz / max(1, src.m * src.k)
            for n in ([src.n_hint] if src.n_hint else widths):
                sources.append(({"m": src.m, "k": src.k, "n": n}, src.layer, str(src.path),
                                [("real", float(label))]))
    points = []
    for shape, layer, matrix, variants in sources:
        items = tuple(sorted(shape.items()))
        for kernel in kernels:
            sparse = kernels_all[kernel].sparse
            for pattern, sparsity in variants:
                if not sparse:  # dense work: one point per shape
                    problem = Problem(op.name, items, 0.0, "dense", "", layer, seed)
                else:
                    problem = Problem(op.name, items, float(sparsity), pattern, matrix, layer,
                                      seed)
                for params in grids[kernel]:
                    for t in threads:
                        for cache in caches:
                            points.append(Point(kernel, problem,
                                                tuple(sorted(params.items())), t, cache))
    return points


def load_spec(spec: str | Path | dict[str, Any] | Spec) -> Spec:
    """Validate a spec (a preset name, a TOML/YAML file, or a dict) and expand its points.

    Raises
    ------
    SpecError (a ValueError) naming the bad field and the allowed values;
    FileNotFoundError for a missing spec file.
    """
    if isinstance(spec, Spec):
        return spec
    base: Path | None = None
    if isinstance(spec, dict):
        raw = spec
    else:
        text = str(spec)
        path = PRESET_DIR / f"{text}.toml" if text in PRESETS else Path(text).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no sweep spec {text!r}: not a file and not a preset "
                                    f"({', '.join(PRESETS)})")
        base = path.resolve().parent
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                raw = yaml.safe_load(path.read_text()) or {}
            else:
                raw = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, ValueError) as exc:
            raise SpecError(f"sweep spec {path} does not parse: {exc}") from exc
        if not isinstance(raw, dict):
            raise SpecError(f"sweep spec {path} must be a table at the top level")
        raw.setdefault("name", path.stem)
    unknown = set(raw) - _TOP
    if unknown:
        raise _fail(sorted(unknown)[0], f"unknown field; allowed: {', '.join(sorted(_TOP))}")
    name = raw.get("name", "sweep")
    if not isinstance(name, str) or not name:
        raise _fail("name", f"expected a non-empty string, got {name!r}")
    top = {"threads": _threads(raw.get("threads", [1]), "threads"),
           "cache": _caches(raw.get("cache", ["warm"]), "cache")}
    defaults = harness.TimingConfig()
    timing = harness.TimingConfig(
        target_rel_ci=_number(raw.get("target_rel_ci", defaults.target_rel_ci),
                              "target_rel_ci", 1e-4, 0.5),
        budget_s=_number(raw.get("budget_s", defaults.budget_s), "budget_s", 0.001, 3600),
        min_samples=_number(raw.get("min_samples", defaults.min_samples), "min_samples", 1,
                            10**6, integer=True),
        max_samples=_number(raw.get("max_samples", defaults.max_samples), "max_samples", 10,
                            10**7, integer=True))
    seed = _number(raw.get("seed", 0), "seed", 0, 2**63 - 1, integer=True)
    passes = _number(raw.get("passes", 1), "passes", 1, MAX_PASSES, integer=True)
    isa = raw.get("isa")
    if isa is not None:
        import kernels_c

        levels = kernels_c._isa.supported_levels()
        if isa not in levels:
            raise _fail("isa", f"{isa!r} is not a path this CPU runs; allowed: {levels}")
    blocks = raw.get("block")
    if not isinstance(blocks, list) or not blocks:
        raise _fail("block", "needs at least one [[block]] table")
    points: list[Point] = []
    for i, block in enumerate(blocks):
        points.extend(_expand_block(block, i, top, base, seed))
    points = list(dict.fromkeys(points))  # a dense baseline shared by sparsities: once
    return Spec(name, timing, points, raw, isa, passes)


# ---- running -----------------------------------------------------------------------------
#: ``recheck``: a point this many times slower than the same configuration at the next
#: lower sparsity (more work) is measured again. On the 2-vCPU Intel VM 16 of 175 points
#: of the standard sweep at sparsity 0.2, measured in one batch, ran 1.1-1.9x slower than
#: at 0.1; measured again, the worst took 0.67-0.77x their first time; they had moved the
#: measured crossovers of their layers by up to 0.1 (docs/models.md)
RECHECK_SLOWDOWN = 1.10


def _slower_than_sparser_neighbour(keyed: list[tuple[Point, str]], medians: dict[str, float]
                                   ) -> list[tuple[Point, str]]:
    """Points of a sparse kernel slower by RECHECK_SLOWDOWN than the same kernel, shape,
    pattern and parameters at the next lower sparsity (only points with a median)."""
    series: dict[tuple, list[tuple[float, Point, str]]] = {}
    for point, key in keyed:
        p = point.problem
        if key in medians and p.sparsity > 0:
            same = (point.kernel, p.op, p.shape, p.pattern, p.matrix, p.layer, p.seed,
                    point.params, point.threads, point.cache)
            series.setdefault(same, []).append((p.sparsity, point, key))
    out = []
    for items in series.values():
        items.sort(key=lambda item: item[0])
        for (_, _, lower), (_, point, key) in itertools.pairwise(items):
            if medians[key] > RECHECK_SLOWDOWN * medians[lower]:
                out.append((point, key))
    return out


def _classify(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if any(w in text.lower() for w in ("compil", "cffi", "verificationerror")):
        return "compile_failed"
    return "invalid" if isinstance(exc, (ValueError, TypeError)) else "runtime_failed"


def _base_row(point: Point, key: str, sweep_name: str, versions: dict[str, str]
              ) -> dict[str, Any]:
    p = point.problem
    return {"point_key": key, "sweep": sweep_name, "op": p.op, "kernel": point.kernel,
            "threads": point.threads, "params": dict(point.params), **p.dims,
            "layer": p.layer, "matrix": p.matrix, "sparsity": p.sparsity,
            "pattern": p.pattern, "cache": point.cache, "versions": versions}


def _measure_point(point: Point, inputs: dict[str, Any], reference: Callable[[], Any],
                   timing: harness.TimingConfig, isa: str | None) -> tuple[dict, Any]:
    """(columns, samples) for one point; failures become a status, never an exception."""
    op = get_op(point.op)
    row: dict[str, Any] = dict(op.describe(inputs))
    try:
        prepared = op.prepare(point.kernel, inputs, dict(point.params), point.threads, isa)
    except Exception as exc:  # a bad parameter combination or a variant that won't build
        return {**row, "status": _classify(exc), "error": f"{type(exc).__name__}: {exc}"}, ()
    row.update(isa=prepared.isa, params=prepared.params or dict(point.params),
               flops=prepared.flops, **prepared.columns)
    try:
        with prepared.context():
            prepared.run()
        reason = op.check(prepared.output(), reference(), inputs, point.kernel)
    except Exception as exc:
        return {**row, "status": "runtime_failed",
                "error": f"{type(exc).__name__}: {exc}"}, ()
    if reason is not None:
        return {**row, "status": "invalid", "error": f"verification failed: {reason}"}, ()
    config = timing if point.cache == "warm" else harness.TimingConfig(
        **{**timing.__dict__, "cold": True})
    try:
        with prepared.context():
            result = harness.measure(prepared.target, config, threads=point.threads)
    except Exception as exc:
        return {**row, "status": "runtime_failed",
                "error": f"{type(exc).__name__}: {exc}"}, ()
    row.update(result.as_row(), status="ok", error="")
    if result.median_s > 0:
        row["gflops"] = prepared.flops / result.median_s * 1e-9
    return row, result.samples


class _ProblemCache:
    """Operands and reference of one problem, built on first use and shared by its points."""

    def __init__(self, op: Any, problem: Problem) -> None:
        self.op, self.problem = op, problem
        self._inputs: dict[str, Any] | None = None
        self._ref: Any = None
        self._error: Exception | None = None

    def inputs(self) -> dict[str, Any]:
        if self._error is not None:
            raise self._error
        if self._inputs is None:
            try:
                self._inputs = self.op.make_inputs(self.problem)
            except Exception as exc:
                self._error = exc
                raise
        return self._inputs

    def reference(self) -> Any:
        if self._ref is None:
            self._ref = self.op.reference(self.inputs())
        return self._ref


def sweep(spec: str | Path | dict[str, Any] | Spec,
          store: str | Path | Store | None = None, *, remeasure: bool = False,
          progress: bool | None = None, limit: int | None = None,
          recheck: bool = False, passes: int | None = None) -> SweepSummary:
    """Measure every point of ``spec`` not yet in ``store`` for this machine.

    Parameters
    ----------
    spec : preset name ("quick", "standard", "full"), spec file path (TOML/YAML), dict or
        Spec.
    store : anything :func:`perfmodel.store.open_store` takes (None: the default file).
    remeasure : measure points already stored and replace them. Without it, a stored
        point of one of our kernels is measured again (and replaced) when the kernels_c
        code it ran has changed since (``Op.source_digest``, kept in ``versions``).
    progress : show a progress bar with ETA (default: when stderr is a terminal).
    limit : measure at most this many points (then stop; rerun to continue).
    recheck : afterwards, measure again every point of the spec that ran more than
        ``RECHECK_SLOWDOWN`` times slower than the same kernel, shape and parameters at
        the next lower sparsity (less work), and keep the faster of the two medians.
    passes : measure every point this many times (default: the spec's ``passes``, 1), in
        passes over the whole spec, minutes apart, and keep the fastest median: on a
        shared machine other tenants' load comes and goes over seconds to minutes and
        only ever adds time. Pass p (>= 2) measures the ok points stored with fewer than
        p passes, so an interrupted multi-pass sweep resumes too; the later passes start
        once every point of the spec is stored.

    Returns
    -------
    SweepSummary; on Ctrl-C the run is closed as interrupted and KeyboardInterrupt is
    re-raised after every finished point is safely stored.
    """
    import kernels_c

    parsed = load_spec(spec)
    n_passes = parsed.passes if passes is None else passes
    if isinstance(n_passes, bool) or not isinstance(n_passes, int) or not (
            1 <= n_passes <= MAX_PASSES):
        raise ValueError(f"passes must be an int in [1, {MAX_PASSES}], got {n_passes!r}")
    st = open_store(store)
    started = time.perf_counter()
    fingerprint, name, info = _context.machine()
    mid = st.machine_id(fingerprint, name, info)
    versions = _context.versions()
    run_id = st.start_run(mid, parsed.name, parsed.raw, versions)
    summary = SweepSummary(parsed.name, run_id, planned=len(parsed.points))
    isa_cap = parsed.isa or kernels_c.isa()
    keyed = [(p, p.key(isa_cap)) for p in parsed.points]
    digests: dict[tuple[str, str], str | None] = {}  # (op, kernel) -> its code's digest

    def source_digest(point: Point) -> str | None:
        which = (point.op, point.kernel)
        if which not in digests:
            digests[which] = get_op(point.op).source_digest(point.kernel)
        return digests[which]

    done = set() if remeasure else st.measured_keys(mid)
    stored_digests = {} if remeasure else st.stored_kernel_sources(mid)
    stale = {k for p, k in keyed if k in stored_digests
             and stored_digests[k] != source_digest(p)}
    todo = [(p, k) for p, k in keyed if k not in done or k in stale]
    summary.skipped = len(keyed) - len(todo)
    why_not: dict[tuple[str, str], str | None] = {}  # (op, kernel) -> why it cannot run here

    def runs_here(point: Point) -> bool:
        which = (point.op, point.kernel)
        if which not in why_not:
            why_not[which] = get_op(point.op).available(point.kernel)
        return why_not[which] is None

    runnable = [(p, k) for p, k in todo if runs_here(p)]
    summary.unavailable = len(todo) - len(runnable)
    first_pass_complete = limit is None or len(runnable) <= limit
    if limit is not None:
        runnable = runnable[:limit]
    summary.stale = sum(k in stale for _, k in runnable)
    if progress is None:
        progress = sys.stderr.isatty()
    from tqdm import tqdm

    bar = tqdm(total=len(runnable), desc=f"sweep {parsed.name}", unit="pt",
               disable=not progress, dynamic_ncols=True)
    status = "done"

    def measure(point: Point, key: str, cache: _ProblemCache) -> tuple[dict, Any]:
        digest = source_digest(point)
        row = _base_row(point, key, parsed.name,
                        {**versions, "kernel_source": digest} if digest else versions)
        samples: Any = ()
        try:
            inputs = cache.inputs()
        except Exception as exc:
            row.update(status="invalid", error=f"inputs: {type(exc).__name__}: {exc}")
        else:
            measured, samples = _measure_point(point, inputs, cache.reference,
                                               parsed.timing, parsed.isa)
            row.update(measured)
        row["loadavg"] = _context.loadavg()
        summary.max_loadavg = max(summary.max_loadavg, row["loadavg"] or 0.0)
        row["timestamp"] = _context.utc_now()
        return row, samples

    def measure_by_problem(items: list[tuple[Point, str]]
                           ) -> Iterator[tuple[Point, str, dict, Any]]:
        """Measure (point, key) pairs one problem at a time, so each operand set is
        generated (and checked against its reference) once; yields (point, key, row,
        samples)."""
        groups: dict[Problem, list[tuple[Point, str]]] = {}
        for p, k in items:
            groups.setdefault(p.problem, []).append((p, k))
        for problem, members in groups.items():
            cache = _ProblemCache(get_op(problem.op), problem)
            for point, key in members:
                bar.set_postfix_str(f"{point.op} {point.kernel} {problem.pattern} "
                                    f"s={problem.sparsity:g}", refresh=False)
                yield point, key, *measure(point, key, cache)

    def keep_if_faster(row: dict, samples: Any, stored: tuple[int, float],
                       passes: int) -> bool:
        """Replace a stored point (``stored`` = (passes, median)) by a faster measurement."""
        if row["status"] == "ok" and row["median_s"] < stored[1]:
            st.add_measurement(run_id, mid, {**row, "passes": passes}, samples, replace=True)
            return True
        return False

    try:
        for _, key, row, samples in measure_by_problem(runnable):
            st.add_measurement(run_id, mid, row, samples, replace=remeasure or key in stale)
            summary.measured += 1
            summary.status[row["status"]] += 1
            if row["status"] == "ok":
                summary.converged += bool(row["converged"])
                summary.noisy += bool(row["noisy"])
            bar.update(1)
        if n_passes > 1 and first_pass_complete:
            left = None if limit is None else limit - len(runnable)
            for pass_no in range(2, n_passes + 1):
                stored = st.stored_passes(mid)
                behind = [(p, k) for p, k in keyed
                          if k in stored and stored[k][0] < pass_no and runs_here(p)]
                if left is not None:
                    behind, left = behind[:left], left - min(left, len(behind))
                bar.reset(total=len(behind))
                bar.set_description(f"sweep {parsed.name} pass {pass_no}/{n_passes}")
                for _, key, row, samples in measure_by_problem(behind):
                    summary.pass_measured += 1
                    if keep_if_faster(row, samples, stored[key], pass_no):
                        summary.pass_kept += 1
                    else:
                        st.set_passes(mid, key, pass_no)
                    bar.update(1)
        if recheck:
            stored = st.stored_passes(mid)
            medians = {k: median for k, (_, median) in stored.items()}
            suspects = [(p, k) for p, k in _slower_than_sparser_neighbour(keyed, medians)
                        if runs_here(p)]
            summary.rechecked = len(suspects)
            for _, key, row, samples in measure_by_problem(suspects):
                summary.recheck_kept += keep_if_faster(row, samples, stored[key],
                                                       stored[key][0])
    except KeyboardInterrupt as exc:
        status = "interrupted"
        summary.interrupted = True
        # Before the run is closed as interrupted: an interrupt outside the store's own
        # guard (Store._transaction) can leave a SQLite connection, and its write lock,
        # referenced by this traceback's frames or pooled mid-transaction; the closing
        # write below then waited its busy timeout on this process's own lock (seen once
        # under a loaded test run). Drop both; the store reconnects.
        traceback.clear_frames(exc.__traceback__)
        st.close()
        raise
    finally:
        bar.close()
        summary.wall_s = time.perf_counter() - started
        try:
            st.finish_run(run_id, status)
        except Exception:  # never mask the interrupt / error that got us here
            if status == "done":
                raise
        finally:
            if st is not store:
                st.close()
    return summary

