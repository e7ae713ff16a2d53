"""``best_config``: what to run for a problem on a target, and how fast it will be.

Sources, in order of preference (only ``host`` has measurements):

1. ``measured`` - the store holds this machine's timings of this exact problem (warm cache,
   unstructured sparsity: ``pattern`` random, dense baselines);
2. ``tuned``    - the tuner recorded a best configuration for it (``Store.tuned_config``);
3. ``model``    - the learned model (``perfmodel fit`` → ``model_path()``) ranks candidates;
4. ``roofline`` - the roofline model, calibrated on the store's measurements when there are
   any, otherwise from the target description.

Defaults: the store is ``default_store_path()`` (``$PERFMODEL_HOME/results.db``), the model
``model_path()`` (``$PERFMODEL_HOME/model.json``); ``store=`` overrides the store. Answers are
cached per (problem, target, threads, store file and model file state), so a repeated query
costs a dictionary lookup plus three ``stat`` calls.
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._paths import file_stamp, host_profile_path, model_path
from .models._calibrate import _store_key, host_results, roofline_for
from .models._probe import ShapeProbes
from .models._problem import CANDIDATES, SHAPE_KEYS, SPARSE_OPS, normalize, params_dict
from .models.roofline import family_of
from .targets import list_targets, load_target

__all__ = ["BestConfig", "best_config", "break_even"]

DTYPES = ("float32",)
_CACHE: OrderedDict[tuple, BestConfig] = OrderedDict()
_CACHE_SIZE = 4096
#: relative uncertainty of the roofline when calibrated on this machine / also corrected by
#: the shape's own measurements / from a description: about twice the leave-shape-out MAPE
#: on the nine-pass standard store (24.4 %, and 14.4 % probed at 0.5; docs/models.md)
ROOFLINE_UNCERTAINTY = {"measured": 0.5, "probed": 0.3, "description": 1.0}
TUNED_UNCERTAINTY = 0.1
#: the sparsities :func:`break_even` asks: the standard sweep's (so that a measured shape's
#: curve is its measurements), and 0
BREAK_EVEN_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)


@dataclass(frozen=True)
class BestConfig:
    """Answer of :func:`best_config`.

    Attributes
    ----------
    kernel : str, params : dict
        What to run (``params`` empty: the kernel's own defaults).
    seconds : float
        Predicted (or measured) time of that choice, seconds.
    dense_kernel : str, dense_seconds : float
        The best dense choice and its time, seconds.
    sparse_kernel : str, sparse_seconds : float
        The best sparse (qgemm: quantized) choice and its time, seconds, also when dense is
        faster: ``dense_seconds / sparse_seconds`` below 1 says by how much sparse loses.
    speedup : float
        ``dense_seconds / seconds`` (1.0 when dense is the best choice).
    source : {"measured", "tuned", "model", "roofline"}
    uncertainty : float
        Relative uncertainty of ``seconds`` (e.g. 0.2 = ±20 %, about one sigma).
    extrapolation : bool
        The problem lies outside the data the answer rests on (or no data: roofline
        from a description).
    notes : tuple of str
        Why this source, what was assumed.
    """

    op: str
    target: str
    threads: int | None
    kernel: str
    params: Mapping[str, Any]
    seconds: float
    dense_kernel: str
    dense_seconds: float
    sparse_kernel: str
    sparse_seconds: float
    speedup: float
    source: str
    uncertainty: float
    extrapolation: bool
    notes: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        params = json.dumps(dict(self.params), sort_keys=True) if self.params else "defaults"
        lines = [f"{self.op} on {self.target}"
                 f"{'' if self.threads is None else f' ({self.threads} threads)'}: "
                 f"{self.kernel} {params}",
                 f"  predicted {self.seconds * 1e3:.4g} ms ±{self.uncertainty:.0%} "
                 f"[{self.source}]{'  EXTRAPOLATION' if self.extrapolation else ''}",
                 f"  dense {self.dense_kernel}: {self.dense_seconds * 1e3:.4g} ms -> speedup "
                 f"{self.speedup:.2f}x"]
        if self.kernel == self.dense_kernel and self.sparse_seconds > 0:
            lines.append(f"  best {'quantized' if self.op == 'qgemm' else 'sparse'} "
                         f"{self.sparse_kernel}: {self.sparse_seconds * 1e3:.4g} ms -> "
                         f"{self.dense_seconds / self.sparse_seconds:.2f}x")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


#: the dimensions that name a shape in the measured index, per kind of op
_CONV_SHAPE = ("c", "h", "w", "o", "r", "s", "stride", "padding", "batch")
_GEMM_SHAPE = ("m", "n", "k")


def _shape_key(p: Mapping[str, Any]) -> tuple:
    return tuple(int(p[k]) for k in (_CONV_SHAPE if p["op"] == "conv2d" else _GEMM_SHAPE))


def _is_dense(kernel: str, op: str) -> bool:
    return family_of(kernel, op) in ("gemm", "im2col_conv")


def _measured_index(store: Any, key: tuple) -> dict[tuple, list[tuple[str, dict, float,
                                                                         float]]]:
    """(op, shape, sparsity|bits|'dense', threads) → [(kernel, params, median_s, rel_ci)];
    ``key``: the store's ``_store_key``, taken once per query."""
    cached = _INDEX.get(key)
    if cached is not None:
        return cached
    index: dict[tuple, list] = {}
    rows = host_results(store) if key[0] != "missing" else None
    if rows is not None:
        ok = rows[(rows["status"] == "ok") & (rows["median_s"] > 0)]
        # best_config's problems are warm-cache, unstructured sparsity (random or dense)
        if "cache" in ok:
            ok = ok[ok["cache"].fillna("warm") == "warm"]
        if "pattern" in ok:
            ok = ok[ok["pattern"].fillna("random").isin(("random", "dense"))]
        # a store holds a few hundred distinct parameter sets: each parsed once (shared,
        # read-only: answers copy theirs)
        params = {text: params_dict(text) for text in set(ok["params"].tolist())}
        for entry_key, entry in zip(_index_keys(ok), zip(
                ok["kernel"].astype(str).tolist(), map(params.__getitem__, ok["params"]),
                ok["median_s"].astype(float).tolist(),
                ok["rel_ci"].astype(float).fillna(0.05).tolist(), strict=True), strict=True):
            index.setdefault(entry_key, []).append(entry)
    _INDEX.clear()
    _INDEX[key] = index
    return index


def _index_keys(rows: Any) -> list[tuple]:
    """(op, shape, slot, threads) of every results row, as :func:`_measured_index` files
    them: ``from_row``'s defaults and :func:`_shape_key`, applied a column at a time rather
    than a row at a time (the first query of a process indexes the whole store: 0.3 s for
    3,561 rows before; tests/perfmodel/test_query.py checks the two agree)."""
    def column(name: str, default: float) -> Any:
        values = rows[name] if name in rows else None
        return (values.astype(float).fillna(default) if values is not None
                else pd.Series(default, index=rows.index, dtype=float))

    op = rows["op"].astype(str).replace("gemm", "spmm").tolist()
    dims = {k: column(k, d).astype(int).tolist() for k, d in (
        ("c", 1), ("h", 1), ("w", 1), ("o", 1), ("r", 1), ("s", 1), ("stride", 1),
        ("padding", 0), ("batch", 1), ("m", 1), ("n", 1), ("k", 1), ("bits", 8))}
    conv_shape = zip(*(dims[k] for k in _CONV_SHAPE), strict=True)
    gemm_shape = zip(*(dims[k] for k in _GEMM_SHAPE), strict=True)
    # from_row's sparsity: as recorded, else 1 - density, else 0
    sparsity = column("sparsity", math.nan).fillna(1.0 - column("density", math.nan))
    sparsity = sparsity.fillna(0.0)
    kernels = rows["kernel"].astype(str).tolist()
    dense = {(k, o): _is_dense(k, o) for k, o in set(zip(kernels, op, strict=True))}
    keys = []
    for o, cs, gs, kernel, s, bits, threads in zip(
            op, conv_shape, gemm_shape, kernels, sparsity.tolist(), dims["bits"],
            rows["threads"].astype(int).tolist(), strict=True):
        slot: Any = ("dense" if dense[kernel, o] else ("bits", bits) if o == "qgemm"
                     else round(s, 4))
        keys.append((o, cs if o == "conv2d" else gs, slot, threads))
    return keys


_INDEX: dict[tuple, dict] = {}


def _shape_index(store: Any, key: tuple) -> dict[tuple, list[tuple[Any, str, dict, float]]]:
    """(op, shape, threads) → [(slot, kernel, params, median_s)]: every measurement of a
    shape, at any sparsity (:func:`_measured_index` regrouped)."""
    index = _measured_index(store, key)
    cached = _SHAPES.get("index")
    if cached is not None and cached[0] is index:
        return cached[1]
    shapes: dict[tuple, list] = {}
    for (op, shape, slot, threads), entries in index.items():
        shapes.setdefault((op, shape, threads), []).extend(
            (slot, kernel, params, seconds) for kernel, params, seconds, _ in entries)
    _SHAPES["index"] = (index, shapes)
    return shapes


_SHAPES: dict[str, tuple] = {}


def _at_sparsity(p: Mapping[str, Any], sparsity: float) -> dict[str, Any]:
    """Problem ``p`` (normalized) at another sparsity."""
    required, optional = SHAPE_KEYS[p["op"]]
    return normalize(p["op"], {**{k: p[k] for k in (*required, *optional) if k in p},
                               "sparsity": sparsity})


def _probe_correction(predict: Callable[[list[tuple[str, dict, dict]]], list[float]],
                      p: Mapping[str, Any], threads: int, store: Any, state: tuple
                      ) -> tuple[dict[str, float], list[str]]:
    """Per kernel, measured / predicted time on the store's measurements of this shape
    (:class:`~.models._probe.ShapeProbes`: dense baselines, sparse kernels at the measured
    sparsity nearest the asked one), and the note that says so (empty: no correction).

    ``predict`` gives a model's seconds for (kernel, params, normalized problem) items;
    ``state`` is (the model's name, the store's stamp, the stamps of the other files the
    model comes from): the kept predictions are valid for it."""
    if p["op"] == "qgemm":
        return {}, []
    shape_key = (p["op"], _shape_key(p), threads)
    measured = _shape_index(store, state[1]).get(shape_key)
    if not measured:
        return {}, []
    # the shape's probes, kept: the next sparsity asked of the same shape needs the same
    cache = _PROBES.setdefault(state, {})
    if len(_PROBES) > 2 or len(cache) > _CACHE_SIZE:
        _PROBES.clear()
        cache = _PROBES.setdefault(state, {})
    probes = cache.get(shape_key)
    if probes is None:
        dense = [m[0] == "dense" for m in measured]
        sparsity = [0.0 if d else float(m[0]) for m, d in zip(measured, dense, strict=True)]
        predicted = predict([(m[1], m[2], p if d else _at_sparsity(p, s))
                             for m, d, s in zip(measured, dense, sparsity, strict=True)])
        probes = cache[shape_key] = ShapeProbes(
            [m[1] for m in measured], dense, sparsity, [m[3] for m in measured],
            [float(t) for t in predicted])
    factors, used = probes.factors(p["sparsity"])
    if not factors:
        return {}, []
    return factors, [f"corrected by {len(used)} measurement(s) of this shape in the store ("
                     + ", ".join(f"{k} x{f:.2f}" for k, f in sorted(factors.items())) + ")"]


_PROBES: dict[tuple, dict[tuple, ShapeProbes]] = {}


def _load_learned(stamp: tuple | None = None) -> tuple[Any, str | None]:
    """The learned model file's model, or None and why it was refused (None: no file);
    ``stamp``: the file's ``file_stamp`` when the caller has taken it."""
    path = model_path()
    stamp = file_stamp(path) if stamp is None else stamp
    if not stamp:
        return None, None
    cached = _LEARNED.get("model")
    if cached is not None and cached[0] == stamp:
        return cached[1], cached[2]
    from .models.learned import LearnedModel
    try:
        model, refused = LearnedModel.load(path), None
    except (ValueError, KeyError, OSError) as exc:
        model, refused = None, f"model file not used: {exc}"
    _LEARNED["model"] = (stamp, model, refused)
    return model, refused


_LEARNED: dict[str, tuple] = {}


def _candidates(p: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    choices, dense = CANDIDATES[p["op"]]
    if p["op"] == "qgemm":
        choices = tuple(c for c in choices if p["bits"] == 4 or "s4" not in c)
    return list(choices), list(dense)


def _record(kernel: str, params: Mapping[str, Any], p: Mapping[str, Any], threads: int,
            ) -> dict[str, Any]:
    dense = _is_dense(kernel, p["op"])
    rec = {k: p[k] for k in ("m", "n", "k") if p["op"] != "conv2d"}
    if p["op"] == "conv2d":
        rec.update({k: p[k] for k in ("c", "h", "w", "o", "r", "s", "stride", "padding",
                                      "batch")})
    rec.update(op=p["op"], kernel=kernel, threads=threads, params=dict(params),
               sparsity=0.0 if dense else p["sparsity"], density=1.0 if dense else p["density"],
               nnz=p["m"] * p["k"] if dense else p["nnz"],
               pattern="dense" if dense else "random")
    if p["op"] == "qgemm" and not dense:
        rec["bits"] = p["bits"]
    return rec


def _answer(op: str, target: str, threads: int | None, choice: tuple, dense: tuple,
            source: str, uncertainty: float, extrapolation: bool, notes: list[str]
            ) -> BestConfig:
    sparse = choice
    # the best overall choice may be the dense kernel itself
    if dense[2] <= choice[2]:
        choice = dense
    return BestConfig(op=op, target=target, threads=threads, kernel=choice[0],
                      params=dict(choice[1]), seconds=float(choice[2]),
                      dense_kernel=dense[0], dense_seconds=float(dense[2]),
                      sparse_kernel=sparse[0], sparse_seconds=float(sparse[2]),
                      speedup=float(dense[2] / choice[2]), source=source,
                      uncertainty=float(uncertainty), extrapolation=bool(extrapolation),
                      notes=tuple(notes))


def _from_measurements(p, threads, store, store_key, op, target):
    index = _measured_index(store, store_key)
    slot = ("bits", p["bits"]) if p["op"] == "qgemm" else round(p["sparsity"], 4)
    shape = _shape_key(p)
    sparse = index.get((p["op"], shape, slot, threads))
    dense = index.get((p["op"], shape, "dense", threads))
    if not sparse or not dense:
        return None
    best = min(sparse, key=lambda r: r[2])
    best_dense = min(dense, key=lambda r: r[2])
    return _answer(op, target, threads, best, best_dense, "measured",
                   max(best[3], best_dense[3]), False,
                   [f"{len(sparse) + len(dense)} measured configurations in the store"])


def _from_model(model, p, threads, op, target, tuned=None, store=None, state=()):
    choices, dense_kernels = _candidates(p)
    problems = []
    for kernel in choices + dense_kernels:
        rec = _record(kernel, {}, p, threads)
        problems.append((rec, model.candidate_configs(rec)))
    labels = [(rec["kernel"], params) for rec, configs in problems for params in configs]
    seconds, extrap = model.predict_configs(problems)
    unc = math.expm1(model.log_uncertainty_)
    notes = [f"learned model trained on {model.n_train_} measurements"]
    factors, correction = _probe_correction(
        lambda items: model.predict_records([_record(k, prm, q, threads)
                                             for k, prm, q in items])[0].tolist(),
        p, threads, store, ("model", *state))
    if factors:
        seconds = seconds * [factors.get(kernel, 1.0) for kernel, _ in labels]
        probed_unc = getattr(model, "metadata_", {}).get("log_uncertainty_probed")
        if probed_unc is not None:
            unc = math.expm1(float(probed_unc))
    rows = list(zip(labels, seconds.tolist(), extrap.tolist(), strict=True))
    # the sparse (or quantized) choices' rows come first, then the dense baselines'
    n_sparse = sum(len(configs) for _, configs in problems[:len(choices)])
    sparse, dense = rows[:n_sparse], rows[n_sparse:]
    best = min(sparse, key=lambda r: r[1])
    best_dense = min(dense, key=lambda r: r[1])
    if tuned is not None:
        best = ((tuned["kernel"], tuned["params"]), tuned["seconds"], False)
        notes = [f"tuned by study {tuned.get('study_name') or '?'}; dense from the model"]
        source, unc = "tuned", TUNED_UNCERTAINTY
    else:
        source = "model"
    notes += correction
    return _answer(op, target, threads, (*best[0], best[1]), (*best_dense[0], best_dense[1]),
                   source, unc, bool(best[2] or best_dense[2]), notes)


def _from_roofline(p, threads, store, op, target, tuned=None, refused=None, state=None):
    model = roofline_for(target, store, threads)
    choices, dense_kernels = _candidates(p)
    thr = threads if target == "host" else None
    factors, correction = {}, []
    if state is not None:   # the host, with its store: correct by the shape's measurements
        factors, correction = _probe_correction(
            lambda items: [model.predict_one(k, q, thr) for k, _, q in items],
            p, threads, store, ("roofline", *state))
    sparse = [(k, {}, model.predict_one(k, p, thr) * factors.get(k, 1.0)) for k in choices]
    dense = [(k, {}, model.predict_one(k, p, thr) * factors.get(k, 1.0))
             for k in dense_kernels]
    calibrated = any(v in ("measured", "model file")
                     for v in model.calibration_source_.values())
    notes = [("roofline calibrated on this machine's measurements" if calibrated else
              f"roofline from the {target} description (no measurements: alpha and "
              f"efficiencies are the description's)")]
    if refused:
        notes.append(refused)
    notes += correction
    best = min(sparse, key=lambda r: r[2])
    source = "roofline"
    unc = ROOFLINE_UNCERTAINTY["probed" if factors else
                               "measured" if calibrated else "description"]
    if tuned is not None:
        best = (tuned["kernel"], tuned["params"], tuned["seconds"])
        source, unc = "tuned", TUNED_UNCERTAINTY
        notes.insert(0, f"tuned by study {tuned.get('study_name') or '?'}; dense from the "
                        f"roofline")
    return _answer(op, target, threads, best, min(dense, key=lambda r: r[2]), source, unc,
                   not calibrated, notes)


def _tuned(store: Any, skey: tuple, op: str, shape: Mapping[str, Any], threads: int
           ) -> dict | None:
    """The tuner's best configuration for this problem on this machine, or None.

    All of this machine's tuned configurations are read once per store state (``skey``, the
    store's ``_store_key``), keyed by the store's ``problem_key``.
    """
    if skey[0] == "missing":
        return None
    table = _TUNED.get(skey)
    if table is None:
        table = _read_tuned(store)
        _TUNED.clear()
        _TUNED[skey] = table
    if not table:       # no study saved a configuration: no key to build
        return None
    from .store.store import problem_key
    return table.get(problem_key({"op": op, **shape, "threads": threads}))


_TUNED: dict[tuple, dict | None] = {}


def _read_tuned(store: Any) -> dict[str, dict] | None:
    try:
        from .store import open_store
        st = open_store(store, create=False, readonly=True)
    except (ImportError, ValueError, FileNotFoundError, OSError):
        return None
    try:
        return st.tuned_configs()
    except Exception:  # a store without the table (older schema): no tuned answers
        return None
    finally:
        if st is not store:
            st.close()


def best_config(op: str, *, target: str = "host", threads: int | None = None,
                dtype: str = "float32", store: Any = None, **shape: Any) -> BestConfig:
    """The fastest kernel and parameters for a problem, with the dense alternative.

    Parameters
    ----------
    op : {"spmm", "gemm", "conv2d", "qgemm"}
        ``spmm``/``gemm``: A (m x k, sparse) times B (k x n, dense), keys m, n, k, sparsity.
        ``conv2d``: keys c, h, w, o, r, s, sparsity and optionally stride (1), padding (0),
        batch (1). ``qgemm``: keys m, n, k and bits (4 or 8).
    target : str
        ``"host"`` (this machine) or a name from ``perfmodel targets``.
    threads : int, optional
        Threads on the host (default: every core). Ignored for other targets.
    dtype : {"float32"}
        Element type of the activations.
    store : path, URL or Store, optional
        Results store for measured/tuned answers and calibration (default: the default
        store file, when it exists). A model (or host roofline) answer for a shape the
        store has measured at other sparsities is corrected by those measurements
        (``perfmodel/models/_probe.py``; a note gives the factors).

    Returns
    -------
    BestConfig

    Raises
    ------
    ValueError
        Unknown op/target/dtype, missing or out-of-range shape values, sparsity outside
        [0, 1); the message lists what is valid.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} not supported; valid: {list(DTYPES)}")
    if not isinstance(target, str) or (target != "host" and target not in list_targets()):
        raise ValueError(f"unknown target {target!r}; valid: {list_targets()}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"threads must be an int >= 1 or None, got {threads!r}")
    store_key, model_stamp = _store_key(store), file_stamp(model_path())
    host_stamp = file_stamp(host_profile_path())
    key = (op, tuple(sorted(shape.items())), target, threads, dtype, store_key, model_stamp,
           host_stamp)
    try:
        hit = _CACHE.get(key)
    except TypeError:          # unhashable shape value: validation below reports it
        hit, key = None, None
    if hit is not None:
        return hit
    p = normalize(op, shape)
    if target == "host":
        threads = threads or (os.cpu_count() or 1)
    else:
        threads = None
    load_target(target, threads=threads)   # fails early with the list of targets
    answer = None
    if target == "host":
        answer = _from_measurements(p, threads, store, store_key, op, target)
        if answer is None:
            tuned = _tuned(store, store_key, p["op"], shape, threads)
            model, refused = _load_learned(model_stamp)
            if model is not None:
                answer = _from_model(model, p, threads, op, target, tuned, store,
                                     (store_key, model_stamp))
            else:
                answer = _from_roofline(p, threads, store, op, target, tuned, refused,
                                        (store_key, model_stamp, host_stamp))
    else:
        answer = _from_roofline(p, threads, store, op, target)
    if key is not None:
        _CACHE[key] = answer
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return answer


def break_even(op: str, *, target: str = "host", threads: int | None = None,
               store: Any = None, **shape: Any) -> float | None:
    """The sparsity from which the best sparse kernel beats the best dense one.

    Where pruning starts to pay on ``target`` by the answers :func:`best_config` gives
    (measured, tuned, the learned model or the roofline, as it chooses for each sparsity):
    the speedup ``dense_seconds / sparse_seconds`` at every sparsity of
    ``BREAK_EVEN_GRID``, and the crossover read from it as ``perfmodel evaluate`` reads the
    measured and the predicted ones (:func:`perfmodel.models._evaluate.crossover`: where it
    first reaches 1, interpolated in log speedup), so the evaluation's crossover errors are
    this answer's. Unlike Park et al.'s lower bound (:func:`perfmodel.sweet_spot`, one
    calibrated alpha for every layer) it follows each layer's own measurements or
    predictions.

    Parameters
    ----------
    op : {"spmm", "gemm", "conv2d"}
    target, threads, store
        As for :func:`best_config`.
    **shape
        The shape as for :func:`best_config`; ``sparsity`` is accepted and ignored.

    Returns
    -------
    float or None
        A sparsity (fraction of zeros) in [0, 0.98]: 0.0 when sparse is ahead at every
        sparsity asked, None when it is behind at every one.
    """
    if op not in SPARSE_OPS:
        raise ValueError(f"break_even needs a prunable op; valid: {list(SPARSE_OPS)} "
                         f"(got {op!r})")
    from .models._evaluate import crossover

    shape = {k: v for k, v in shape.items() if k != "sparsity"}
    speedup = []
    for sparsity in BREAK_EVEN_GRID:
        answer = best_config(op, target=target, threads=threads, store=store,
                             sparsity=sparsity, **shape)
        speedup.append(answer.dense_seconds / answer.sparse_seconds)
    if speedup[0] >= 1.0:
        return 0.0
    found = crossover(np.asarray(BREAK_EVEN_GRID), np.asarray(speedup))
    return None if math.isnan(found) else found
