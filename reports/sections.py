"""The data behind each report section, and the sections themselves.

:func:`collect` gathers what a report reads (the store's results, the host profile, the
targets, the learned model); each ``section_*`` function turns that into a :class:`Section`:
tables, figures (as ``data:`` URIs), and ``missing`` — the reasons a part of the section
has no data, which the report prints instead of leaving the section out. The ``*_data``
functions return plain pandas data and are what the unit tests check.

Other parts of the suite are reached only through their public functions (``perfmodel``,
``perfmodel.models``, ``perfmodel.characterize``, ``tuner``). Where one is missing or fails,
the affected section says which function and why; no section can take the report down
(:func:`build_sections` turns an exception into a "failed" note on that section).
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import os
import traceback
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import figures as F

__all__ = ["Figure", "Inputs", "Section", "Table", "build_sections", "collect"]

#: the shape columns that identify a problem (besides op and sparsity)
SHAPE = ("m", "n", "k", "c", "h", "w", "o", "r", "s", "stride", "padding", "batch", "bits",
         "group_size")
DENSE_FAMILIES = ("gemm", "im2col_conv")
#: dots per roofline chart (a deterministic sample beyond this keeps figures light)
MAX_ROOFLINE_PROBLEMS = 400
MAX_SWEET_SHAPES = 6
#: rows predicted for the accuracy section (a deterministic sample beyond this)
ACCURACY_SAMPLE = 2000
DEFAULT_NETWORK = "resnet50"


# ------------------------------------------------------------------------- containers
@dataclass
class Figure:
    """One embedded figure: ``uri`` (data: URI), caption saying what to read from it."""

    uri: str
    caption: str
    alt: str


@dataclass
class Table:
    """A sortable table; ``rows`` hold raw values (numbers stay numbers for sorting)."""

    caption: str
    columns: list[str]
    rows: list[list[Any]]

    @classmethod
    def from_frame(cls, df: pd.DataFrame, caption: str) -> Table:
        return cls(caption, [str(c) for c in df.columns],
                   [list(r) for r in df.itertuples(index=False, name=None)])


@dataclass
class Section:
    """A report section; ``missing`` lists why parts have no data (shown in the report)."""

    id: str
    title: str
    lead: str
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    failed: str = ""

    @property
    def status(self) -> str:
        if self.failed:
            return "failed"
        if not self.figures and not self.tables:
            return "no data"
        return "partial" if self.missing else "ok"


# ------------------------------------------------------------------------- API access
def api(module: str, name: str) -> Callable[..., Any] | None:
    """``module.name`` if that part of the suite is installed, else None."""
    try:
        mod = importlib.import_module(module)
        value = getattr(mod, name)
    except (ImportError, AttributeError):
        return None
    # a submodule of the same name (perfmodel.advise) is not the function
    return None if isinstance(value, types.ModuleType) else value


def _fmt_exc(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ------------------------------------------------------------------------- inputs
@dataclass
class Inputs:
    """Everything a report reads, gathered once by :func:`collect`.

    Attributes
    ----------
    results : DataFrame, every measured row of the store (``perfmodel.load_results``).
    store : the open store (None when it could not be opened: see ``problems``).
    host_profile : dict from ``perfmodel characterize`` or None.
    targets : target names (``host`` first) the roofline and sweet-spot sections draw.
    host_fingerprint, host_name : the machine whose rows are "host" in this report.
    """

    results: pd.DataFrame
    store: Any
    store_url: str
    host_profile: dict[str, Any] | None
    targets: list[str]
    host_fingerprint: str
    host_name: str
    network: str = DEFAULT_NETWORK
    tuning_storage: str | None = None
    model_file: Path | None = None
    evaluation_file: Path | None = None
    tune_eval_file: Path | None = None
    generated: str = ""
    problems: dict[str, str] = field(default_factory=dict)
    #: measurement_id -> (roofline, learned) predicted seconds
    _pred: dict[int, tuple[float, float]] = field(default_factory=dict, repr=False)

    @functools.cached_property
    def host_rows(self) -> pd.DataFrame:
        """This machine's rows with status ok and a positive time."""
        df = self.results
        if df.empty:
            return df
        keep = (df["fingerprint"] == self.host_fingerprint) & (df["status"] == "ok") & (
            df["median_s"] > 0)
        out = df.loc[keep].copy()
        out["family"] = [_family(k, o)
                         for k, o in zip(out["kernel"], out["op"], strict=True)]
        return out.reset_index(drop=True)

    @functools.cached_property
    def roofline(self) -> Any:
        """The host roofline calibrated on the store (or None, reason in ``problems``)."""
        model_cls = api("perfmodel.models", "RooflineModel")
        if model_cls is None:
            self.problems["roofline"] = "perfmodel.models.RooflineModel is not available"
            return None
        try:
            shared = api("perfmodel.models._calibrate", "roofline_for")
            if shared is not None and self.store is not None and len(self.host_rows) and \
                    self.host_fingerprint == _this_machine():
                # the same cached calibration perfmodel.sweet_spot uses: fitted once
                return shared("host", self.model_store)
            model = model_cls(target="host")
            rows = self.host_rows
            return model.fit(rows) if len(rows) else model.defaults()
        except Exception as exc:
            self.problems["roofline"] = f"calibrating the roofline failed: {_fmt_exc(exc)}"
            return None

    @functools.cached_property
    def learned(self) -> Any:
        """The learned model from ``perfmodel fit`` (or None, reason in ``problems``)."""
        cls = api("perfmodel.models.learned", "LearnedModel")
        path = self.model_file
        if cls is None:
            self.problems["learned"] = "perfmodel.models.learned.LearnedModel is not available"
            return None
        if path is None or not Path(path).is_file():
            self.problems["learned"] = (f"no learned model at {path}: run `perfmodel fit` "
                                        f"(or `perfmodel run`)")
            return None
        try:
            return cls.load(path)
        except Exception as exc:
            self.problems["learned"] = f"loading {path} failed: {_fmt_exc(exc)}"
            return None

    @property
    def model_store(self) -> Any:
        """The store as handed to perfmodel's model functions: the SQLite file path (their
        caches key a path by its modification time; an object only by its id, which a
        later store can reuse), else the open store."""
        if self.store is None:
            return None
        return str(self.store.path) if getattr(self.store, "path", None) else self.store

    def predict(self, rows: pd.DataFrame) -> pd.DataFrame:
        """``rows`` (host rows) with ``pred_roofline_s`` and ``pred_learned_s`` added (NaN
        where a model is missing or failed); predictions are cached per measurement."""
        out = rows.copy()
        if out.empty:
            out["pred_roofline_s"] = pd.Series(dtype=float)
            out["pred_learned_s"] = pd.Series(dtype=float)
            return out
        ids = out["measurement_id"].to_numpy()
        todo = ~np.isin(ids, np.fromiter(self._pred, dtype=np.int64, count=len(self._pred)))
        if todo.any():
            sub = out.loc[todo].drop_duplicates("measurement_id")
            rf, lf = (self._predict_or_nan(name, sub) for name in ("roofline", "learned"))
            for mid, a, b in zip(sub["measurement_id"].to_numpy(), rf, lf, strict=True):
                self._pred[int(mid)] = (float(a), float(b))
        out["pred_roofline_s"] = [self._pred[int(i)][0] for i in ids]
        out["pred_learned_s"] = [self._pred[int(i)][1] for i in ids]
        return out

    def _predict_or_nan(self, name: str, rows: pd.DataFrame) -> np.ndarray:
        """Seconds predicted by the ``name`` model (attribute), NaN when it is missing or
        fails (the failure is recorded in ``problems``)."""
        model = getattr(self, name)
        if model is not None:
            try:
                return np.asarray(model.predict(rows), dtype=float)
            except Exception as exc:
                self.problems[f"{name}_predict"] = f"{name} predict failed: {_fmt_exc(exc)}"
        return np.full(len(rows), np.nan)

    @functools.cached_property
    def predictions(self) -> pd.DataFrame:
        """A deterministic sample of at most ``ACCURACY_SAMPLE`` host rows, predicted."""
        rows = self.host_rows
        if len(rows) > ACCURACY_SAMPLE:
            rows = rows.sample(ACCURACY_SAMPLE, random_state=0).sort_index()
        return self.predict(rows)


def _this_machine() -> str:
    try:
        from perfmodel._context import machine
        return str(machine()[0])
    except Exception:
        return ""


def _family(kernel: str, op: str) -> str:
    fn = api("perfmodel.models.roofline", "family_of")
    if fn is not None:
        return str(fn(str(kernel), str(op)))
    name = str(kernel).lower()
    if "s4" in name:
        return "int4_gemm"
    if "u8s8" in name or "int8" in name:
        return "int8_gemm"
    if op == "conv2d":
        return "sparse_conv" if "sparse" in name else "im2col_conv"
    return "spmm" if ("csr" in name or "sparse" in name) else "gemm"


def _empty_results() -> pd.DataFrame:
    cols = api("perfmodel.store.store", "RESULT_COLUMNS") or (
        "measurement_id", "machine", "fingerprint", "op", "kernel", "status", "median_s")
    return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})


def collect(store: Any = None, *, targets: Sequence[str] | None = None,
            host_profile: dict[str, Any] | str | os.PathLike | None = None,
            model_file: str | os.PathLike | None = None, network: str = DEFAULT_NETWORK,
            tuning_storage: str | None = None,
            evaluation_file: str | os.PathLike | None = None,
            tune_eval_file: str | os.PathLike | None = None) -> Inputs:
    """Gather the report's inputs; never raises for missing parts (see ``problems``).

    Parameters
    ----------
    store : path, URL, Store or None (the default SQLite store).
    targets : target names; default ``host`` and every catalog/user target.
    host_profile : dict, or path to ``host.json`` (default ``host_profile_path()``).
    model_file : learned-model JSON (default ``model_path()``).
    network : network of the guided-pruning table (``perfmodel advise --network``).
    tuning_storage : Optuna storage URL of the tuner's studies (default: the tuner's
        SQLite file ``tuner.db`` in the data folder, when it exists).
    evaluation_file : held-out evaluation JSON (default :func:`evaluation_path`).
    tune_eval_file : strategy comparison CSV of ``perfmodel tune-eval --csv`` (default
        ``tune-eval.csv`` in the data folder).
    """
    from perfmodel import _paths

    problems: dict[str, str] = {}
    st, url, results = None, str(store) if store is not None else str(
        _paths.default_store_path()), _empty_results()
    try:
        from perfmodel.store import open_store
        st = open_store(store, create=False)
        url = st.url
        results = st.results()
    except FileNotFoundError as exc:
        problems["store"] = f"no results store ({exc}): run `perfmodel sweep` or `perfmodel run`"
    except Exception as exc:
        problems["store"] = f"the results store {url} could not be read: {_fmt_exc(exc)}"

    profile = host_profile if isinstance(host_profile, dict) else None
    if profile is None:
        path = Path(host_profile) if host_profile is not None else _paths.host_profile_path()
        loader = api("perfmodel.characterize", "load_host_profile")
        try:
            if loader is not None:
                profile = loader(path)
            elif path.is_file():
                profile = json.loads(path.read_text())
            else:
                raise FileNotFoundError(f"no host profile at {path}")
        except FileNotFoundError:
            problems["profile"] = (f"no host profile at {path}: run `perfmodel characterize` "
                                   f"(or `perfmodel run`)")
        except Exception as exc:
            problems["profile"] = f"host profile {path} unreadable: {_fmt_exc(exc)}"

    if targets is None:
        lister = api("perfmodel.targets", "list_targets")
        targets = lister() if lister is not None else ["host"]
    targets = list(dict.fromkeys(str(t) for t in targets))

    fingerprint, name = _host_identity(results, profile)
    return Inputs(results=results, store=st, store_url=url, host_profile=profile,
                  targets=targets, host_fingerprint=fingerprint, host_name=name,
                  network=network, tuning_storage=tuning_storage,
                  model_file=Path(model_file) if model_file else _paths.model_path(),
                  evaluation_file=Path(evaluation_file) if evaluation_file
                  else evaluation_path(),
                  tune_eval_file=Path(tune_eval_file) if tune_eval_file
                  else _paths.data_dir() / "tune-eval.csv",
                  generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
                  problems=problems)


def evaluation_path() -> Path:
    """Held-out evaluation written by ``perfmodel run`` (``perfmodel evaluate --json``
    format: ``{model: {split: metrics}}``)."""
    from perfmodel._paths import data_dir

    return data_dir() / "evaluation.json"


def _host_identity(results: pd.DataFrame, profile: dict | None) -> tuple[str, str]:
    """This machine's fingerprint; when the store has no rows of it, the machine with
    the most rows (a report made elsewhere from a fleet store)."""
    fp = _this_machine() or str((profile or {}).get("fingerprint", ""))
    if len(results):
        counts = results["fingerprint"].value_counts()
        if fp not in counts.index:
            fp = str(counts.index[0])
        names = results.loc[results["fingerprint"] == fp, "machine"]
        return fp, str(names.iloc[0]) if len(names) else fp
    import socket
    return fp, socket.gethostname()


# ------------------------------------------------------------------------- helpers
def _shape_cols(df: pd.DataFrame) -> list[str]:
    return [c for c in SHAPE if c in df.columns and df[c].notna().any()]


def _shape_label(row: Any, op: str) -> str:
    def g(k: str) -> int:
        v = row.get(k) if isinstance(row, dict) else getattr(row, k, None)
        return int(v) if v is not None and v == v else 0
    if op == "conv2d":
        return (f"{g('c')}x{g('h')}x{g('w')}→{g('o')} {g('r')}x{g('s')}"
                f"{'' if g('stride') in (0, 1) else ' s' + str(g('stride'))}")
    return f"{g('m')}x{g('k')}·{g('k')}x{g('n')}"


def _problem_size(row: Any, op: str) -> float:
    def g(k: str) -> float:
        v = row.get(k) if isinstance(row, dict) else getattr(row, k, None)
        return float(v) if v is not None and v == v else 1.0
    if op == "conv2d":
        return g("c") * g("o") * g("r") * g("s") * g("h") * g("w")
    return g("m") * g("n") * g("k")


def geomean(values: Sequence[float]) -> float:
    v = np.asarray([x for x in values if x == x and x > 0], dtype=float)
    return float(np.exp(np.mean(np.log(v)))) if v.size else math.nan


def _run_guarded(fn: Callable[[Inputs], Section], inputs: Inputs, sid: str, title: str
                 ) -> Section:
    try:
        return fn(inputs)
    except Exception as exc:
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        return Section(sid, title, "", failed=f"{_fmt_exc(exc)} (at {Path(tb.filename).name}"
                                                  f":{tb.lineno})")


# ------------------------------------------------------------------------- 1. machine
def machine_data(profile: dict[str, Any] | None) -> dict[str, Any]:
    """Host-vs-spec table and bandwidth series from a host profile.

    Returns
    -------
    dict with ``table`` (DataFrame: quantity, measured, spec, ratio, unit),
    ``series`` (name -> (bytes list, bytes/s list)), ``caches`` (level -> bytes),
    ``plateaus`` (level -> bytes/s at the largest thread count).
    """
    if not profile:
        return {"table": pd.DataFrame(), "series": {}, "caches": {}, "plateaus": {}}
    cpu = profile.get("cpu", {}) or {}
    theo = profile.get("theoretical", {}) or {}
    rows: list[dict[str, Any]] = [
        {"quantity": "CPU", "measured": cpu.get("brand", "?"), "spec": "", "ratio": None,
         "unit": ""},
        {"quantity": "cores", "measured": cpu.get("cores"), "spec": "", "ratio": None,
         "unit": ""},
        {"quantity": "ISA path", "measured": cpu.get("isa_path", "?"), "spec": "",
         "ratio": None, "unit": ""},
    ]
    clock = theo.get("clock_hz")
    if clock:
        rows.append({"quantity": "clock (1 thread, estimated)", "measured": clock / 1e9,
                     "spec": "", "ratio": None, "unit": "GHz"})
    for kind, unit_key in (("fp32", "flops"), ("int8", "ops")):
        paths = (profile.get("peaks", {}) or {}).get(kind, {}) or {}
        theo_peak = (theo.get("peak", {}) or {}).get(kind, {}) or {}
        per_cycle = theo.get("fp32_flops_per_cycle" if kind == "fp32" else "int8_ops_per_cycle")
        for path, table in paths.items():
            for t_key, entry in sorted(table.items(), key=lambda kv: _int_or(kv[0])):
                meas = entry.get(f"median_{unit_key}") or entry.get("median_flops") or \
                    entry.get("median_ops")
                spec = theo_peak.get(t_key)
                if spec is None and per_cycle and clock:
                    spec = per_cycle * clock * _int_or(t_key)
                rows.append({
                    "quantity": f"{kind} peak, {path}, {t_key} thread(s)",
                    "measured": meas / 1e9 if meas else None,
                    "spec": spec / 1e9 if spec else None,
                    "ratio": (meas / spec) if meas and spec else None,
                    "unit": "GFLOP/s" if kind == "fp32" else "GOP/s"})
    caches = profile.get("caches", {}) or {}
    cache_sizes = {}
    for lv, key in (("L1d", "l1d_bytes"), ("L2", "l2_bytes"), ("L3", "l3_bytes")):
        if caches.get(key):
            size = float(caches[key])
            cache_sizes[lv] = size
            mib = size >= 2**20
            rows.append({"quantity": f"{lv} size (per instance)", "measured":
                         size / (2**20 if mib else 2**10), "spec": "", "ratio": None,
                         "unit": "MiB" if mib else "KiB"})
    levels = profile.get("levels", {}) or {}
    plateaus: dict[str, float] = {}
    for kind in ("read", "triad"):
        table = levels.get(kind) or {}
        for t_key, lv_bw in sorted(table.items(), key=lambda kv: _int_or(kv[0])):
            for lv, bw in (lv_bw or {}).items():
                if bw:
                    rows.append({"quantity": f"{kind} bandwidth {lv}, {t_key} thread(s)",
                                 "measured": bw / 1e9, "spec": "", "ratio": None,
                                 "unit": "GB/s"})
        if table and not plateaus:
            top = max(table, key=_int_or)
            plateaus = {f"{lv} ({kind}, {top} thr)": float(bw)
                        for lv, bw in (table[top] or {}).items() if bw}
    series: dict[str, tuple[list[float], list[float]]] = {}
    for kind, pts in (profile.get("bandwidth", {}) or {}).items():
        by_t: dict[Any, list[tuple[float, float]]] = {}
        for p in pts or []:
            if p.get("bytes") and p.get("median_bytes_per_s"):
                by_t.setdefault(p.get("threads", 1), []).append(
                    (float(p["bytes"]), float(p["median_bytes_per_s"])))
        for t, pairs in sorted(by_t.items(), key=lambda kv: _int_or(kv[0])):
            pairs.sort()
            series[f"{kind}, {t} thread(s)"] = ([a for a, _ in pairs], [b for _, b in pairs])
    return {"table": pd.DataFrame(rows), "series": series, "caches": cache_sizes,
            "plateaus": plateaus}


def _int_or(text: Any, default: int = 10**6) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def section_machine(inputs: Inputs) -> Section:
    sec = Section("machine", "1. Machine",
                  "The characterized host next to what its specification (clock × "
                  "operations per cycle × cores) promises, and how bandwidth falls as the "
                  "working set leaves each cache level.")
    data = machine_data(inputs.host_profile)
    sec.data = data
    if inputs.host_profile is None:
        sec.missing.append(inputs.problems.get("profile", "no host profile"))
    else:
        prof = inputs.host_profile
        sec.notes.append(f"Host profile {prof.get('fingerprint', '?')} created "
                         f"{prof.get('created', '?')}; this report treats machine "
                         f"“{inputs.host_name}” ({inputs.host_fingerprint}) as the host.")
        sec.tables.append(Table.from_frame(
            data["table"], "Host measured vs specification: peaks from the micro-benchmarks "
            "(median), spec = estimated clock × ops/cycle × threads; ratio < 1 is the share "
            "of the theoretical peak actually reached."))
        if data["series"]:
            sec.figures.append(Figure(
                F.bandwidth_plot(data["series"], data["caches"], data["plateaus"],
                                 "bandwidth vs working set"),
                "Bandwidth vs working-set size (log-log). Read the plateaus: each flat "
                "stretch is a memory level (dotted lines = cache sizes per instance), the "
                "steps between them show where the working set spills to the next level; "
                "dashed lines are the plateau values the roofline uses.",
                "bandwidth versus working set plot"))
        else:
            sec.missing.append("the host profile has no bandwidth sweep")
    try:
        load_target = api("perfmodel.targets", "load_target")
        if load_target is not None:
            t = load_target("host")
            rows = [{"ceiling": k, "value": q.value / 1e9, "unit": "G" + q.unit,
                     "kind": q.kind, "source": q.source} for k, q in t.compute.items()]
            rows += [{"ceiling": f"{lv.name} bandwidth", "value": lv.bandwidth.value / 1e9,
                      "unit": "GB/s", "kind": lv.bandwidth.kind, "source": lv.bandwidth.source}
                     for lv in t.bandwidth_levels()]
            sec.tables.append(Table.from_frame(
                pd.DataFrame(rows), f"The host target as the models see it ({t.origin}): "
                "every number with its kind (measured / derived / assumed) and source."))
    except Exception as exc:
        sec.missing.append(f"host target unavailable: {_fmt_exc(exc)}")
    return sec


# ------------------------------------------------------------------------- 2. roofline
def _problems_for_dots(inputs: Inputs) -> pd.DataFrame:
    """Distinct (op, kernel, shape, sparsity, threads) with the best measured time."""
    rows = inputs.host_rows
    if rows.empty:
        return rows
    keys = ["op", "kernel", *_shape_cols(rows), "sparsity", "threads"]
    keys = [k for k in keys if k in rows.columns]
    best = rows.sort_values("median_s").drop_duplicates(
        [k for k in keys], keep="first")
    if len(best) > MAX_ROOFLINE_PROBLEMS:
        best = best.sample(MAX_ROOFLINE_PROBLEMS, random_state=0)
    return best.reset_index(drop=True)


def roofline_data(inputs: Inputs, target_name: str) -> dict[str, Any]:
    """Ceilings and dots of one target's roofline.

    Returns
    -------
    dict ``{target, title, mem: [{name, bytes_per_s, empirical, kind, source}],
    comp: [{name, ops_per_s, empirical, kind, source}], dots: [{intensity, ops_per_s, group,
    level, kernel}], kind: "measured" | "predicted"}``; dots for ``host`` are measured runs,
    for other targets the same problems as predicted by the target's roofline. A dot is drawn
    once per memory level its traffic crosses; a problem whose working set stays in a cache
    level without a bandwidth figure is drawn once at its compulsory traffic ("in cache").
    """
    load_target = api("perfmodel.targets", "load_target")
    work = api("perfmodel.models.roofline", "work")
    from_row = api("perfmodel.models._problem", "from_row")
    footprint = api("perfmodel.models.roofline", "footprint")
    if load_target is None:
        raise RuntimeError("perfmodel.targets.load_target is not available")
    t = load_target(target_name)
    mem = [{"name": lv.name, "bytes_per_s": lv.bandwidth.value,
            "empirical": lv.bandwidth.kind == "measured", "kind": lv.bandwidth.kind,
            "source": lv.bandwidth.source} for lv in t.bandwidth_levels()]
    comp = [{"name": k, "ops_per_s": q.value, "empirical": q.kind == "measured",
             "kind": q.kind, "source": q.source} for k, q in t.compute.items()]
    dots: list[dict[str, Any]] = []
    measured = target_name == "host"
    probs = _problems_for_dots(inputs)
    if work is None or from_row is None or probs.empty:
        return {"target": target_name, "title": t.title, "mem": mem, "comp": comp,
                "dots": dots, "kind": "measured" if measured else "predicted"}
    model = None
    if not measured:
        cls = api("perfmodel.models", "RooflineModel")
        model = cls(target=t).defaults() if cls is not None else None
    for rec in probs.to_dict("records"):
        try:
            p = from_row(rec)
            w = work(str(rec["kernel"]), p, t)
            if measured:
                seconds = float(rec["median_s"])
            elif model is not None:
                seconds = float(model.predict_one(str(rec["kernel"]), p))
            else:
                continue
        except Exception:
            continue
        if not (seconds > 0 and w.ops > 0):
            continue
        y = w.ops / seconds
        placed = False
        for lv, b in w.bytes.items():
            if b > 0:
                placed = True
                dots.append({"intensity": w.ops / b, "ops_per_s": y, "group": w.family,
                             "level": lv, "kernel": rec["kernel"]})
        if not placed and footprint is not None:
            # the working set stays in a cache level with no bandwidth figure: place the
            # dot at its compulsory traffic (every operand once)
            b = footprint(w.family, p)
            if b > 0:
                dots.append({"intensity": w.ops / b, "ops_per_s": y, "group": w.family,
                             "level": "in cache", "kernel": rec["kernel"]})
    return {"target": target_name, "title": t.title, "mem": mem, "comp": comp, "dots": dots,
            "kind": "measured" if measured else "predicted"}


def section_roofline(inputs: Inputs) -> Section:
    sec = Section("roofline", "2. Roofline",
                  "Attainable performance vs arithmetic intensity, one chart per target: "
                  "sloped lines are memory-level ceilings, flat lines compute ceilings "
                  "(fp32, int8, …); solid = measured, dashed = specification/derived. Each "
                  "kernel run is drawn once per memory level at the same height "
                  "(hierarchical roofline: the marker shape is the level).")
    if inputs.host_rows.empty:
        sec.missing.append("no host measurements in the store: the host chart shows "
                           "ceilings only and catalog charts have no predicted dots"
                           + (f" ({inputs.problems['store']})" if "store" in inputs.problems
                              else ""))
    ceilings = []
    for name in inputs.targets:
        try:
            d = roofline_data(inputs, name)
        except Exception as exc:
            sec.missing.append(f"target {name}: {_fmt_exc(exc)}")
            continue
        sec.data[name] = d
        uri = F.roofline_plot(d["mem"], d["comp"], d["dots"], f"{name}: {d['title']}",
                              d["kind"])
        what = ("measured runs on this machine" if d["kind"] == "measured" else
                "the host's problems as this target's roofline predicts them")
        sec.figures.append(Figure(
            uri, f"Roofline of {name} ({d['title']}), dots = {what}. Read which ceiling a "
            "kernel sits under: dots on a slope are bandwidth-bound at that level, dots near "
            "a flat line compute-bound; the gap to the nearest ceiling is the headroom.",
            f"roofline chart of {name}"))
        for c in d["comp"]:
            ceilings.append({"target": name, "ceiling": c["name"],
                             "value [G/s]": c["ops_per_s"] / 1e9, "kind": c["kind"],
                             "source": c["source"]})
        for c in d["mem"]:
            ceilings.append({"target": name, "ceiling": f"{c['name']} bandwidth",
                             "value [G/s]": c["bytes_per_s"] / 1e9, "kind": c["kind"],
                             "source": c["source"]})
    if ceilings:
        sec.tables.append(Table.from_frame(
            pd.DataFrame(ceilings), "Every ceiling drawn above, with its kind and source "
            "(G/s = GFLOP/s, GOP/s or GB/s)."))
    return sec


# ------------------------------------------------------------------------- 3. sweet spots
def _variant(pattern: Any, threads: Any, cache: Any) -> str:
    parts = []
    if isinstance(pattern, str) and pattern not in ("", "random", "dense"):
        parts.append(pattern)
    parts.append(f"t{int(threads)}")
    if isinstance(cache, str) and cache not in ("", "warm"):
        parts.append(cache)
    return " ".join(parts)


def shape_labels(df: pd.DataFrame, op: str) -> pd.Series:
    """:func:`_shape_label` of every row, vectorized."""
    def col(k: str) -> pd.Series:
        v = df[k] if k in df.columns else pd.Series(0, index=df.index)
        return v.fillna(0).astype("int64").astype(str)
    if op == "conv2d":
        stride = df["stride"].fillna(1).astype("int64") if "stride" in df.columns else 1
        tail = np.where(stride == 1, "", " s" + col("stride"))
        return (col("c") + "x" + col("h") + "x" + col("w") + "→" + col("o") + " " + col("r")
                + "x" + col("s") + tail)
    return col("m") + "x" + col("k") + "·" + col("k") + "x" + col("n")


def _with_keys(df: pd.DataFrame, op: str) -> pd.DataFrame:
    df = df.assign(shape=shape_labels(df, op), dense=df["family"].isin(DENSE_FAMILIES))
    for col, default in (("cache", "warm"), ("pattern", "random")):
        if col not in df.columns:
            df[col] = default
        df[col] = df[col].fillna(default)
    return df


def measured_speedups(rows: pd.DataFrame, op: str = "spmm") -> pd.DataFrame:
    """Measured speedup of the best sparse kernel over the best dense kernel.

    Returns
    -------
    DataFrame (op, shape, variant, size, threads, cache, pattern, sparsity, sparse_kernel,
    sparse_s, dense_kernel, dense_s, speedup, layer), one row per (shape, threads, cache, pattern,
    sparsity) with both measured; the dense time of a shape is its fastest dense run at any
    recorded sparsity (dense time does not depend on the zeros). ``variant`` names the
    pattern / threads / cache ("t1", "block4x1 t2 cold", ...).
    """
    cols = ["op", "shape", "variant", "size", "threads", "cache", "pattern", "sparsity",
            "sparse_kernel", "sparse_s", "dense_kernel", "dense_s", "speedup", "layer"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    df = rows[rows["op"] == op]
    if df.empty:
        return pd.DataFrame(columns=cols)
    df = _with_keys(df, op)
    out = []
    for (shape, threads, cache), g in df.groupby(["shape", "threads", "cache"], sort=False):
        dense = g[g["dense"]]
        sparse = g[~g["dense"] & g["sparsity"].notna()]
        if dense.empty or sparse.empty:
            continue
        d = dense.loc[dense["median_s"].idxmin()]
        for (pattern, sp), gs in sparse.groupby(["pattern", "sparsity"]):
            sr = gs.loc[gs["median_s"].idxmin()]
            out.append({"op": op, "shape": shape,
                        "variant": _variant(pattern, threads, cache),
                        "size": _problem_size(sr, op), "threads": int(threads),
                        "cache": cache, "pattern": pattern, "sparsity": float(sp),
                        "sparse_kernel": sr["kernel"], "sparse_s": float(sr["median_s"]),
                        "dense_kernel": d["kernel"], "dense_s": float(d["median_s"]),
                        "speedup": float(d["median_s"] / sr["median_s"]),
                        "layer": str(sr.get("layer") or "")})
    return pd.DataFrame(out, columns=cols)


def main_variant(points: pd.DataFrame) -> pd.DataFrame:
    """The points of a shape's main variant: warm cache, random/real pattern, the thread
    count with the most points (what the model curve is compared with)."""
    if points.empty:
        return points
    p = points[(points["cache"] == "warm") & points["pattern"].isin(("random", "real"))]
    if p.empty:
        p = points
    threads = p["threads"].value_counts().index[0]
    return p[p["threads"] == threads]


def measured_crossover(points: pd.DataFrame) -> float | str | None:
    """Smallest measured sparsity from which sparse stays faster than dense.

    None when sparse never stays ahead; the text ``"≤ s"`` when it already wins at the
    smallest measured sparsity s (the crossover lies below the measured range).
    """
    if points.empty:
        return None
    pts = points.sort_values("sparsity")
    wins = (pts["speedup"] >= 1.0).to_numpy()
    for i in range(len(wins)):
        if wins[i:].all():
            value = float(pts["sparsity"].iloc[i])
            return f"≤ {value:g}" if i == 0 else value
    return None


def _shape_dict(rec: dict[str, Any], op: str) -> dict[str, int]:
    keys = ("c", "h", "w", "o", "r", "s", "stride", "padding", "batch") if op == "conv2d" \
        else ("m", "n", "k")
    out = {}
    for k in keys:
        v = rec.get(k)
        if v is not None and v == v:
            out[k] = int(v)
    return out


DEFAULT_SHAPES = ({"m": 512, "k": 512, "n": 64}, {"m": 2048, "k": 2048, "n": 128},
                  {"m": 256, "k": 4608, "n": 196})


def sweet_spot_data(inputs: Inputs) -> dict[str, Any]:
    """Measured speedups and the model's sweet spots per shape, for every target.

    Returns
    -------
    dict ``{measured: DataFrame (measured_speedups), shapes: [(label, op, shape dict)],
    spots: {target: [{name, op, model_x, model_y, lower, upper, source, level}]}, errors:
    {target: reason}}``.
    """
    fn = api("perfmodel", "sweet_spot")
    meas = pd.concat([measured_speedups(inputs.host_rows, op) for op in ("spmm", "conv2d")],
                     ignore_index=True)
    shapes: list[tuple[str, str, dict[str, int]]] = []
    if not meas.empty:
        rows = inputs.host_rows
        for (op, label), _g in meas.groupby(["op", "shape"], sort=False):
            sub = rows[rows["op"] == op]
            rec = sub[shape_labels(sub, op) == label].iloc[0].to_dict()
            shapes.append((label, op, _shape_dict(rec, op)))
        shapes.sort(key=lambda s: -len(meas[meas["shape"] == s[0]]))
        shapes = shapes[:MAX_SWEET_SHAPES]
    if not shapes:
        shapes = [(_shape_label(s, "spmm"), "spmm", dict(s)) for s in DEFAULT_SHAPES]
    spots: dict[str, list[dict[str, Any]]] = {}
    errors: dict[str, str] = {}
    if fn is None:
        errors["*"] = "perfmodel.sweet_spot is not available"
        return {"measured": meas, "shapes": shapes, "spots": spots, "errors": errors}
    store = inputs.model_store
    for target in inputs.targets:
        for label, op, shape in shapes:
            try:
                spot = fn(op, target=target, store=store, **shape)
            except TypeError:
                try:
                    spot = fn(op, target=target, **shape)
                except Exception as exc:
                    errors[target] = _fmt_exc(exc)
                    continue
            except Exception as exc:
                errors[target] = _fmt_exc(exc)
                continue
            curve = spot.curve
            xs = np.asarray(getattr(curve, "index", []), dtype=float)
            ys = np.asarray(getattr(curve, "values", curve), dtype=float)
            spots.setdefault(target, []).append({
                "name": label, "op": op, "model_x": xs, "model_y": ys,
                "lower": spot.lower, "upper": spot.upper,
                "source": getattr(spot, "source", ""), "level": getattr(spot, "level", ""),
                "empty": bool(getattr(spot, "empty", False))})
    return {"measured": meas, "shapes": shapes, "spots": spots, "errors": errors}


def section_sweet_spots(inputs: Inputs) -> Section:
    sec = Section("sweet-spots", "3. Sparsity sweet spots",
                  "Speedup of the sparse kernel over dense as sparsity grows, per layer "
                  "shape: dots are measured on this machine, lines the model (Park et al.'s "
                  "sweet spot), the shaded band the range where pruning pays off (from the "
                  "lower bound, where sparse starts to win, to the upper bound, beyond which "
                  "the sparse kernel is bandwidth-bound and more pruning buys nothing).")
    data = sweet_spot_data(inputs)
    sec.data = data
    meas = data["measured"]
    if meas.empty:
        sec.missing.append("no measured sparse-vs-dense pairs on the host (needs a sparse "
                           "kernel and a dense baseline of the same shape): model curves "
                           "only, for default shapes")
    for key, why in data["errors"].items():
        sec.missing.append(f"model sweet spot {'' if key == '*' else 'for ' + key + ' '}"
                           f"unavailable: {why}")
    summary = []
    shapes = {label: shape for label, _, shape in data["shapes"]}
    for target in inputs.targets:
        spots = data["spots"].get(target, [])
        curves = []
        for sp in spots:
            c = dict(sp)
            if target == "host":
                m = main_variant(meas[meas["shape"] == sp["name"]])
                c["meas_x"], c["meas_y"] = m["sparsity"].to_numpy(), m["speedup"].to_numpy()
                if len(m):
                    c["name"] = f"{sp['name']} ({m['variant'].iloc[0]})"
            curves.append(c)
            m = main_variant(meas[meas["shape"] == sp["name"]]) if target == "host" \
                else meas.iloc[:0]
            summary.append({
                "target": target, "shape": sp["name"], "op": sp["op"],
                "model lower": sp["lower"], "model upper": sp["upper"],
                "measured crossover": measured_crossover(m) if len(m) else None,
                "break-even": _break_even(sp["op"], target, inputs.model_store,
                                          shapes.get(sp["name"]),
                                          int(m["threads"].iloc[0]) if len(m) else None),
                "model speedup @0.9": _curve_at(sp["model_x"], sp["model_y"], 0.9),
                "best measured speedup": float(m["speedup"].max()) if len(m) else None,
                "calibration": sp["source"], "bound level": sp["level"]})
        if target == "host" and not spots and not meas.empty:
            for label, g in meas.groupby("shape", sort=False):
                g = main_variant(g)
                curves.append({"name": f"{label} ({g['variant'].iloc[0]})",
                               "meas_x": g["sparsity"].to_numpy(),
                               "meas_y": g["speedup"].to_numpy()})
        if not curves:
            continue
        what = "measured (dots) and modelled (lines)" if target == "host" else \
            "predicted from the target description"
        sec.figures.append(Figure(
            F.sweet_spot_plot(curves, f"{target}: speedup over dense vs sparsity"),
            f"{target}: speedup over dense, {what}. Read where each curve crosses 1× "
            "(the lower bound of the sweet spot, dotted line) and where it flattens (upper "
            "bound); the coloured strips along the bottom are each shape's sweet-spot range, "
            "the sparsities worth pruning to on this target.",
            f"sweet spot chart of {target}"))
    if summary:
        sec.tables.append(Table.from_frame(
            pd.DataFrame(summary), "Sweet spots per target and shape (sparsities). "
            "Measured crossover = smallest measured sparsity from which sparse stays "
            "faster; compare it with the model's lower bound. Break-even = where the "
            "suite's answers (perfmodel.break_even: best_config's measured, model or "
            "roofline times) put sparse ahead."))
    if not meas.empty:
        sec.tables.append(Table.from_frame(
            meas.drop(columns=["size"]), "Every measured sparse/dense pair on the host."))
    return sec


def _break_even(op: str, target: str, store: Any, shape: dict[str, int] | None,
                threads: int | None) -> float | None:
    """``perfmodel.break_even`` for a sweet-spot shape (``threads``: the host's measured
    variant's, None elsewhere), None where it is unavailable."""
    fn = api("perfmodel", "break_even")
    if fn is None or shape is None:
        return None
    try:
        return fn(op, target=target, store=store, threads=threads, **shape)
    except Exception:   # the sweet-spot table reports the model's own errors
        return None


def _curve_at(xs: Any, ys: Any, x: float) -> float | None:
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if xs.size == 0:
        return None
    return float(np.interp(x, xs, ys))


# ------------------------------------------------------------------------- 4. choice map
def choice_data(inputs: Inputs) -> pd.DataFrame:
    """Measured best kernel vs the model's choice at every measured (shape, sparsity).

    Returns
    -------
    DataFrame (op, shape, size, threads, sparsity, measured_best, measured_s, predicted,
    predicted_measured_s, regret, model, agree); regret = measured time of the predicted
    kernel / measured time of the best (1 = the model chose right).
    """
    cols = ["op", "shape", "size", "threads", "sparsity", "measured_best", "measured_s",
            "predicted", "predicted_measured_s", "regret", "model", "agree"]
    rows = inputs.host_rows
    if rows.empty:
        return pd.DataFrame(columns=cols)
    cells = []
    for op in ("spmm", "conv2d", "qgemm"):
        df = rows[rows["op"] == op]
        if df.empty:
            continue
        df = _with_keys(df, op)
        for (shape, threads, cache), g in df.groupby(["shape", "threads", "cache"],
                                                     sort=False):
            dense = g[g["dense"]]
            sparse = g[~g["dense"]]
            if op == "qgemm":
                groups = [("dense", 0.0, g)]
            else:
                groups = [(pat, sp, pd.concat([dense, gs])) for (pat, sp), gs in
                          sparse[sparse["sparsity"].notna()].groupby(["pattern", "sparsity"])]
            for pattern, sp, cand in groups:
                # one row per kernel: its best measured configuration
                cand = cand.sort_values("median_s").drop_duplicates("kernel")
                if cand["kernel"].nunique() >= 2:
                    cells.append((op, shape, threads, cache, pattern, sp, cand))
    if not cells:
        return pd.DataFrame(columns=cols)
    # predict only the candidate rows (one per kernel and point), all at once
    pred = inputs.predict(pd.concat([c[-1] for c in cells]))
    pred = pred.drop_duplicates("measurement_id").set_index("measurement_id")
    use = "pred_learned_s" if pred["pred_learned_s"].notna().any() else "pred_roofline_s"
    model = "learned" if use == "pred_learned_s" else "roofline"
    out = []
    for op, shape, threads, cache, pattern, sp, cand in cells:
        best = cand.iloc[0]
        p = pred.loc[cand["measurement_id"], use].to_numpy()
        if np.isfinite(p).all():
            chosen = cand.iloc[int(np.argmin(p))]
            pk, ps = chosen["kernel"], float(chosen["median_s"])
        else:
            pk, ps = None, math.nan
        out.append({"op": op, "shape": f"{shape} {_variant(pattern, threads, cache)}",
                    "size": _problem_size(best, op), "threads": int(threads),
                    "sparsity": float(sp), "measured_best": best["kernel"],
                    "measured_s": float(best["median_s"]), "predicted": pk,
                    "predicted_measured_s": ps,
                    "regret": ps / float(best["median_s"]) if pk else math.nan,
                    "model": model, "agree": pk == best["kernel"] if pk else None})
    return pd.DataFrame(out, columns=cols)


def section_choice(inputs: Inputs) -> Section:
    sec = Section("choice", "4. Kernel choice map",
                  "Which kernel is fastest at each measured problem size and sparsity, "
                  "and whether the model would have picked it.")
    df = choice_data(inputs)
    sec.data = {"choices": df}
    if df.empty:
        sec.missing.append("no measured point with two or more kernels on the host (run a "
                           "sweep with sparse kernels and dense baselines)")
        return sec
    if df["predicted"].isna().all():
        sec.missing.append("no model predictions: " + "; ".join(
            v for k, v in inputs.problems.items() if k.startswith(("roofline", "learned")))
        )
    for op, g in df.groupby("op", sort=False):
        if op == "qgemm":
            continue
        shapes = list(g.sort_values("size")["shape"].drop_duplicates())
        sps = sorted(g["sparsity"].unique())
        grid_m = [[None] * len(sps) for _ in shapes]
        grid_p = [[None] * len(sps) for _ in shapes]
        for r in g.to_dict("records"):
            yi, xi = shapes.index(r["shape"]), sps.index(r["sparsity"])
            grid_m[yi][xi], grid_p[yi][xi] = r["measured_best"], r["predicted"]
        n_dis = int((g["agree"] == False).sum())  # noqa: E712
        sec.figures.append(Figure(
            F.choice_map_plot(shapes, sps, grid_m, grid_p,
                              f"{op}: best kernel (measured) vs {g['model'].iloc[0]} model"),
            f"{op}: cell colour = measured fastest kernel; ○ the {g['model'].iloc[0]} model "
            f"chose the same, ✕ it chose another ({n_dis} of {len(g)} cells). Read the "
            "boundary between colours as the measured crossover; ✕ marks cluster where the "
            "model's crossover is off.", f"kernel choice map for {op}"))
    agree = df["agree"].dropna()
    sec.notes.append(f"Model ({df['model'].iloc[0]}) agrees with the measured best kernel at "
                     f"{int(agree.sum())} of {len(agree)} points; geometric-mean regret "
                     f"{geomean(df['regret']):.3f} (1.000 = always the fastest).")
    dis = df[df["agree"] == False].drop(columns=["size"])  # noqa: E712
    sec.tables.append(Table.from_frame(
        dis if len(dis) else df.drop(columns=["size"]),
        "Points where the model's choice differs from the measured best (regret = how much "
        "slower the model's choice runs)." if len(dis) else
        "Every point: the model's choice matches the measured best everywhere."))
    return sec


# ------------------------------------------------------------------------- 5. quantized
QUANT_KERNELS = {"int8": ("u8s8", "int8", "qlinear"), "int4": ("s4s8", "int4")}


def quant_data(rows: pd.DataFrame) -> pd.DataFrame:
    """Per qgemm shape: best time of fp32, int8, int4 and peers, and the speedups.

    Returns
    -------
    DataFrame (shape, threads, fp32_s, int8_s, int4_s, peer, peer_s, int8_vs_fp32,
    int4_vs_fp32, int8_vs_peer); NaN where not measured.
    """
    cols = ["shape", "threads", "fp32_s", "int8_s", "int4_s", "peer", "peer_s",
            "int8_vs_fp32", "int4_vs_fp32", "int8_vs_peer"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    df = rows[rows["op"] == "qgemm"]
    out = []
    for (m, n, k, threads), g in df.groupby(["m", "n", "k", "threads"], sort=True):
        def best(mask: pd.Series, g: pd.DataFrame = g) -> tuple[str, float]:
            sub = g[mask]
            if sub.empty:
                return "", math.nan
            r = sub.loc[sub["median_s"].idxmin()]
            return str(r["kernel"]), float(r["median_s"])
        kern = g["kernel"].str.lower()
        is_peer = kern.str.startswith(("torch", "fbgemm", "mkl", "onednn"))
        _, fp32 = best(g["family"].eq("gemm") & ~is_peer)
        _, int8 = best(g["family"].eq("int8_gemm") & ~is_peer)
        _, int4 = best(g["family"].eq("int4_gemm") & ~is_peer)
        peer, peer_s = best(is_peer & ~g["family"].eq("gemm"))
        out.append({"shape": f"{int(m)}x{int(k)}·{int(k)}x{int(n)}", "threads": int(threads),
                    "fp32_s": fp32, "int8_s": int8, "int4_s": int4, "peer": peer,
                    "peer_s": peer_s, "int8_vs_fp32": fp32 / int8, "int4_vs_fp32": fp32 / int4,
                    "int8_vs_peer": peer_s / int8})
    return pd.DataFrame(out, columns=cols)


def section_quantized(inputs: Inputs) -> Section:
    sec = Section("quantized", "5. Quantized kernels",
                  "int8 and int4-weight GEMM against the fp32 GEMM of the same shape, and "
                  "against the peer library (torch/FBGEMM) where it was measured.")
    df = quant_data(inputs.host_rows)
    sec.data = {"quant": df}
    if df.empty:
        sec.missing.append("no qgemm measurements on the host (a sweep with op qgemm)")
        return sec
    series = {"int8 vs fp32": df["int8_vs_fp32"].tolist(),
              "int4 vs fp32": df["int4_vs_fp32"].tolist()}
    if df["int8_vs_peer"].notna().any():
        series["int8 vs peer"] = df["int8_vs_peer"].tolist()
    else:
        sec.missing.append("no peer (torch/FBGEMM) qgemm measured: install the `peers` "
                           "extra and sweep it to compare")
    sec.figures.append(Figure(
        F.bar_plot([f"{s} t{t}" for s, t in zip(df["shape"], df["threads"], strict=True)],
                   series,
                   "quantized GEMM speedups", "speedup (×)"),
        "Speedup of the quantized kernels per shape (bars above the 1× line are faster). "
        "Read int8 vs fp32 against the ideal 4× of 4× narrower operands; int4 adds "
        "unpacking work, so it wins only where weight bandwidth dominates.",
        "quantized kernel speedups"))
    sec.tables.append(Table.from_frame(df, "Best measured time per kernel class (s) and "
                                           "speedups; empty = not measured."))
    return sec


# ------------------------------------------------------------------------- 6. accuracy
def accuracy_data(inputs: Inputs) -> dict[str, Any]:
    """Predicted vs measured per model, error table per kernel family, evaluation splits.

    Returns
    -------
    dict ``{scatter: {model: (measured, predicted)}, errors: DataFrame (model, family, n,
    MAPE %, median |error| %), splits: DataFrame or None, regret: float}``.
    """
    rows = inputs.predictions
    scatter, err = {}, []
    for model, col in (("roofline (calibrated)", "pred_roofline_s"),
                       ("learned", "pred_learned_s")):
        if rows.empty or col not in rows or rows[col].isna().all():
            continue
        ok = rows[rows[col].notna() & (rows[col] > 0)]
        scatter[model] = (ok["median_s"].to_numpy(), ok[col].to_numpy())
        rel = (ok[col] - ok["median_s"]).abs() / ok["median_s"]
        for fam, r in rel.groupby(ok["family"]):
            err.append({"model": model, "family": fam, "n": len(r),
                        "MAPE %": 100 * float(r.mean()),
                        "median |error| %": 100 * float(r.median())})
        err.append({"model": model, "family": "(all)", "n": len(rel),
                    "MAPE %": 100 * float(rel.mean()),
                    "median |error| %": 100 * float(rel.median())})
    splits = evaluation_table(inputs.evaluation_file)
    choices = choice_data(inputs)
    return {"scatter": scatter, "errors": pd.DataFrame(err), "splits": splits,
            "regret": geomean(choices["regret"]) if len(choices) else math.nan}


def evaluation_table(path: Path | None) -> pd.DataFrame | None:
    """Rows (model, split, metrics...) of a ``perfmodel evaluate --json`` file, or None."""
    if path is None or not Path(path).is_file():
        return None
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    recs = []
    for model, splits in doc.items():
        if not isinstance(splits, dict):
            continue
        for split, vals in splits.items():
            if isinstance(vals, dict):
                recs.append({"model": model, "split": split,
                             **{k: v for k, v in vals.items()
                                if isinstance(v, (int, float, str)) and not isinstance(v, bool)}})
    if not recs:
        return None
    df = pd.DataFrame(recs)
    first = [c for c in ("model", "split", "rows", "mape", "median_ape", "kendall_tau",
                         "regret_geomean", "regret_max", "crossover_mae",
                         "crossover_within_0.05", "crossover_hit_rate",
                         "crossover_speedup_error", "crossover_tolerance") if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


def section_accuracy(inputs: Inputs) -> Section:
    sec = Section("accuracy", "6. Model accuracy",
                  "How close the models' predicted run times are to the measured ones on "
                  "this machine.")
    data = accuracy_data(inputs)
    sec.data = data
    if not data["scatter"]:
        sec.missing.append("no predictions to compare: " + ("; ".join(
            v for k, v in inputs.problems.items() if k in ("roofline", "learned", "store"))
            or "no host measurements"))
        return sec
    if "learned" not in data["scatter"]:
        sec.missing.append("learned model: " + inputs.problems.get("learned", "no predictions"))
    sec.figures.append(Figure(
        F.scatter_pred_meas(data["scatter"], "predicted vs measured"),
        "Predicted vs measured run time (log-log); the diagonal is a perfect prediction, the "
        "grey band ±25 %. Read the spread around the diagonal as the model's error and any "
        "tilt as a systematic bias at small or large problems. In-sample: these rows also "
        "trained the models.", "predicted versus measured scatter"))
    n_all, n_used = len(inputs.host_rows), len(inputs.predictions)
    sample = "" if n_used == n_all else f" (a fixed random sample of {n_used} of {n_all} rows)"
    sec.tables.append(Table.from_frame(data["errors"], f"In-sample error per kernel "
                                                       f"family{sample}."))
    if data["splits"] is not None:
        sec.tables.append(Table.from_frame(
            data["splits"], f"Held-out evaluation per split ({inputs.evaluation_file}): "
            "MAPE (fraction), Kendall τ of the configuration ranking, top-1 regret (1 = the "
            "model always picks the fastest), crossover-sparsity error. The split "
            "leave-shape-out/probe 0.5 corrects each held-out shape's predictions by its "
            "dense baselines and its sparse kernels measured at sparsity 0.5, as best_config "
            "does for a shape the store has measured (its MAPE excludes those rows); "
            "`perfmodel best ... --probe` takes that measurement for a layer of your own."))
    else:
        sec.missing.append(f"held-out errors per split (random, leave-shape-out, "
                           f"leave-sparsity-out): no evaluation at {inputs.evaluation_file}; "
                           f"run `perfmodel run` or `perfmodel evaluate --json FILE`")
    if data["regret"] == data["regret"]:
        sec.notes.append(f"Kernel-choice regret (geometric mean over the choice map): "
                         f"{data['regret']:.3f}.")
    return sec


# ------------------------------------------------------------------------- 7. tuning
def tuned_rows(store: Any) -> pd.DataFrame:
    """The store's tuned configurations (problem, kernel, params, seconds, study)."""
    cols = ["machine", "problem", "kernel", "params", "seconds", "study", "timestamp"]
    if store is None:
        return pd.DataFrame(columns=cols)
    from sqlalchemy import select

    from perfmodel.store import tables as T

    tc, mc = T.tuned_configs, T.machines
    with store.engine.connect() as conn:
        rows = conn.execute(select(mc.c.name, tc.c.problem, tc.c.kernel, tc.c.params,
                                   tc.c.seconds, tc.c.study_name, tc.c.timestamp)
                            .join(mc, mc.c.id == tc.c.machine_id)).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=cols)


def _tuning_storage(inputs: Inputs) -> str | None:
    if inputs.tuning_storage:
        return inputs.tuning_storage
    from perfmodel._paths import data_dir

    # the tuner's default (tuner.study.open_storage(None)); not opened through the tuner,
    # which would create the file
    path = data_dir() / "tuner.db"
    return f"sqlite:///{path}" if path.is_file() else None


def study_curves(storage: str) -> dict[str, Any]:
    """Best-so-far value per trial of every Optuna study in ``storage``.

    Returns ``{study name: {"trials": [...], "best": [...], "strategy": str}}``.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = {}
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = [t for t in study.get_trials(deepcopy=False)]
        values = [t.value if t.value is not None and t.state.name == "COMPLETE" else math.nan
                  for t in trials]
        attrs = dict(study.user_attrs)
        strategy = str(attrs.get("strategy") or attrs.get("sampler") or "")
        if not strategy:
            sampler = study.sampler.__class__.__name__ if hasattr(study, "sampler") else ""
            strategy = "" if sampler in ("", "TPESampler") else sampler
        out[summary.study_name] = {"trials": [t.number for t in trials],
                                   "best": F.best_so_far(values), "strategy": strategy}
    return out


def tune_eval_table(path: Path | None) -> pd.DataFrame | None:
    """The strategy comparison of ``perfmodel tune-eval --csv FILE`` (one row per problem
    and strategy: median evaluations to within 5 % of the exhaustive optimum), or None."""
    if path is None or not Path(path).is_file():
        return None
    try:
        df = pd.read_csv(path)
    except Exception:
        return None
    need = {"problem", "strategy", "median_evals"}
    return df if need <= set(df.columns) and len(df) else None


def section_tuning(inputs: Inputs) -> Section:
    sec = Section("tuning", "7. Tuning",
                  "Tuner studies: the best time found so far against the trial number, and "
                  "the configurations the tuner wrote back to the store.")
    tuned = tuned_rows(inputs.store)
    sec.data["tuned"] = tuned
    storage = _tuning_storage(inputs)
    curves: dict[str, Any] = {}
    if storage is None:
        sec.missing.append("no tuner studies: no tuner.db in the data folder (run "
                           "`perfmodel tune …`, or pass --tuning-storage URL)")
    else:
        try:
            curves = study_curves(storage)
        except Exception as exc:
            sec.missing.append(f"tuner studies in {storage} unreadable: {_fmt_exc(exc)}")
        if not curves and not sec.missing:
            sec.missing.append(f"no tuner studies in {storage} (run `perfmodel tune`)")
    sec.data["studies"] = curves
    if curves:
        plot = {name: (c["trials"], c["best"]) for name, c in list(curves.items())[:10]}
        sec.figures.append(Figure(
            F.trials_plot(plot, "best-so-far time per study"),
            "Best time found so far vs trial, per study. Read how many trials each study "
            "needs to reach its plateau: a steep early drop means the warm start or the "
            "sampler found good configurations quickly.", "tuning progress"))
        strat: dict[str, list[int]] = {}
        for c in curves.values():
            best = c["best"]
            final = best[-1] if best else math.nan
            if c["strategy"] and final == final:
                need = next(i + 1 for i, v in enumerate(best) if v <= final * 1.05)
                strat.setdefault(c["strategy"], []).append(need)
        if strat:
            sec.tables.append(Table.from_frame(pd.DataFrame(
                [{"strategy": k, "studies": len(v), "median trials to within 5 %":
                  float(np.median(v))} for k, v in strat.items()]),
                "Strategies compared: trials each needed to get within 5 % of its final "
                "best (median over studies)."))
    ev = tune_eval_table(inputs.tune_eval_file)
    sec.data["tune_eval"] = ev
    if ev is not None:
        problems = list(dict.fromkeys(ev["problem"].astype(str)))
        series = {}
        for strat, g in ev.groupby("strategy", sort=False):
            by = dict(zip(g["problem"].astype(str), g["median_evals"], strict=True))
            series[str(strat)] = [float(by.get(p, math.nan)) for p in problems]
        sec.figures.append(Figure(
            F.bar_plot(problems, series, "trials to within 5 % of the optimum",
                       "median evaluations", ref_line=None),
            "Simulated tuning (replayed exhaustive sweeps, `perfmodel tune-eval`): median "
            "number of evaluations each strategy needs to get within 5 % of the exhaustive "
            "optimum, per problem. Lower is better; read whether the model-guided strategy "
            "beats random and plain TPE on every problem.", "tuning strategies compared"))
        sec.tables.append(Table.from_frame(ev, f"Strategy comparison ({inputs.tune_eval_file})"
                                               ": evaluations over seeds (median, quartiles)"
                                               ", fraction of seeds that reached the target."))
    elif not any(c["strategy"] for c in curves.values()):
        sec.missing.append(f"strategy comparison: no `perfmodel tune-eval --csv "
                           f"{inputs.tune_eval_file}` results and no studies with a strategy "
                           f"attribute")
    if len(tuned):
        sec.tables.append(Table.from_frame(tuned, "Tuned configurations in the store (what "
                                                  "best_config answers as “tuned”)."))
    else:
        sec.missing.append("no tuned configurations in the store (run `perfmodel tune`)")
    return sec


# ------------------------------------------------------------------------- 8. pruning
def advise_data(network: str, target: str = "host", store: Any = None) -> pd.DataFrame:
    """The guided-pruning table of ``perfmodel advise`` as a DataFrame."""
    fn = api("perfmodel.advise", "advise") or api("perfmodel", "advise")
    if fn is None:
        raise LookupError("perfmodel.advise is not available (issue 6)")
    try:
        res = fn(network, target=target, store=store)
    except TypeError:
        res = fn(network, target=target)
    if isinstance(res, pd.DataFrame):
        return res.reset_index(drop=isinstance(res.index, pd.RangeIndex))
    if hasattr(res, "to_frame"):
        return res.to_frame()
    out = []
    for r in getattr(res, "rows", res):
        d = dict(r) if isinstance(r, dict) else dict(getattr(r, "__dict__", {"value": r}))
        if isinstance(d.get("shape"), dict):
            d["shape"] = " ".join(f"{k}={v}" for k, v in d["shape"].items())
        if hasattr(r, "useful"):
            d["worth pruning"] = bool(r.useful)
        out.append(d)
    return pd.DataFrame(out)


def section_pruning(inputs: Inputs) -> Section:
    sec = Section("pruning", "8. Guided pruning",
                  f"Per layer of {inputs.network}: the sparsity range worth pruning to on "
                  "this machine and the speedup to expect (Park et al.'s guided pruning).")
    try:
        df = advise_data(inputs.network, "host", inputs.model_store)
    except Exception as exc:
        sec.missing.append(f"guided pruning table unavailable: {_fmt_exc(exc)}")
        return sec
    sec.data["advise"] = df
    if df.empty:
        sec.missing.append(f"perfmodel advise returned no layers for {inputs.network}")
        return sec
    sec.tables.append(Table.from_frame(df, f"perfmodel advise --network {inputs.network} "
                                           "--target host: prune each layer into its range; "
                                           "layers with no range are not worth pruning for "
                                           "speed here."))
    return sec


# ------------------------------------------------------------------------- 9. provenance
def provenance_data(inputs: Inputs) -> dict[str, pd.DataFrame]:
    """Runs, machines, versions, dates and noise counts of the store."""
    df = inputs.results
    out: dict[str, pd.DataFrame] = {}
    if inputs.store is not None:
        from sqlalchemy import func, select

        from perfmodel.store import tables as T

        r, mc, m = T.runs, T.machines, T.measurements
        with inputs.store.engine.connect() as conn:
            runs = conn.execute(
                select(r.c.id, mc.c.name, r.c.sweep, r.c.status, r.c.started, r.c.finished,
                       r.c.spec, func.count(m.c.id))
                .join(mc, mc.c.id == r.c.machine_id)
                .outerjoin(m, m.c.run_id == r.c.id)
                .group_by(r.c.id, mc.c.name, r.c.sweep, r.c.status, r.c.started,
                          r.c.finished, r.c.spec).order_by(r.c.id)).all()
        out["runs"] = pd.DataFrame(
            [(i, n, s, st, a, b, _spec_summary(sp), c) for i, n, s, st, a, b, sp, c in runs],
            columns=["run", "machine", "sweep", "status", "started", "finished", "spec",
                     "points"])
    if len(df):
        g = df.groupby(["machine", "fingerprint"], sort=False)
        out["machines"] = pd.DataFrame({
            "points": g.size(), "ok": g["status"].apply(lambda s: int((s == "ok").sum())),
            "noisy": g["noisy"].apply(lambda s: int(s.astype(bool).sum())),
            "not converged": g["converged"].apply(lambda s: int((~s.astype(bool)).sum())),
            "first": g["timestamp"].min(), "last": g["timestamp"].max()}).reset_index()
        out["status"] = df.groupby(["op", "status"]).size().rename("points").reset_index()
        vers = df["versions"].fillna("{}").value_counts()
        vrows = []
        for text, count in vers.items():
            try:
                d = json.loads(text) if text else {}
            except ValueError:
                d = {"raw": text}
            vrows.append({"points": int(count), **{k: str(v) for k, v in sorted(d.items())}})
        out["versions"] = pd.DataFrame(vrows)
        noisy = df[df["noisy"].astype(bool) | ~df["converged"].astype(bool)]
        out["noisy"] = noisy[["machine", "op", "kernel", "sparsity", "median_s", "rel_ci",
                              "n_samples", "converged", "noisy", "loadavg"]].head(200)
        bad = df[df["status"] != "ok"]
        out["failed"] = bad[["machine", "op", "kernel", "status", "error"]].head(200)
    return out


def _spec_summary(text: str) -> str:
    try:
        spec = json.loads(text) if text else {}
    except ValueError:
        return str(text)[:200]
    s = json.dumps(spec, sort_keys=True)
    return s if len(s) <= 300 else s[:299] + "…"


def section_provenance(inputs: Inputs) -> Section:
    sec = Section("provenance", "9. Provenance",
                  "Where every number in this report comes from: store, runs and sweep "
                  "specs, machines, software versions, dates, and the points flagged as "
                  "noisy or failed.")
    data = provenance_data(inputs)
    sec.data = data
    try:
        from importlib.metadata import version
        suite = version("perfmodel-suite")
    except Exception:
        suite = "dev"
    info = pd.DataFrame([
        {"item": "report generated", "value": inputs.generated},
        {"item": "perfmodel-suite", "value": suite},
        {"item": "store", "value": inputs.store_url},
        {"item": "host (this report)", "value": f"{inputs.host_name} "
                                                f"({inputs.host_fingerprint})"},
        {"item": "host profile created", "value": str((inputs.host_profile or {}).get(
            "created", "none"))},
        {"item": "learned model", "value": str(inputs.model_file) if inputs.learned is not None
         else inputs.problems.get("learned", "none")},
        {"item": "targets", "value": ", ".join(inputs.targets)},
    ])
    sec.tables.append(Table.from_frame(info, "Report inputs."))
    if "store" in inputs.problems:
        sec.missing.append(inputs.problems["store"])
    captions = {
        "runs": "Sweeps recorded in the store, with their specs and number of points.",
        "machines": "Machines in the store; noisy = confidence interval stayed wide, not "
                    "converged = the time budget ran out before the CI target.",
        "status": "Points per op and status (failed points are recorded, not dropped).",
        "versions": "Software versions the points were measured with.",
        "noisy": "Noisy or unconverged points (first 200): treat their times with care.",
        "failed": "Points that failed (first 200), with the reason.",
    }
    for key, caption in captions.items():
        df = data.get(key)
        if df is not None and len(df):
            sec.tables.append(Table.from_frame(df, caption))
    if "noisy" in data and not len(data["noisy"]):
        sec.notes.append("No point was flagged noisy or unconverged.")
    return sec


# ------------------------------------------------------------------------- all
SECTIONS: tuple[tuple[str, str, Callable[[Inputs], Section]], ...] = (
    ("machine", "1. Machine", section_machine),
    ("roofline", "2. Roofline", section_roofline),
    ("sweet-spots", "3. Sparsity sweet spots", section_sweet_spots),
    ("choice", "4. Kernel choice map", section_choice),
    ("quantized", "5. Quantized kernels", section_quantized),
    ("accuracy", "6. Model accuracy", section_accuracy),
    ("tuning", "7. Tuning", section_tuning),
    ("pruning", "8. Guided pruning", section_pruning),
    ("provenance", "9. Provenance", section_provenance),
)


def build_sections(inputs: Inputs) -> list[Section]:
    """Every section in order; a section that raises becomes a "failed" section."""
    return [_run_guarded(fn, inputs, sid, title) for sid, title, fn in SECTIONS]
