"""Learned (hybrid) model: gradient boosting on the roofline's residual.

The regressor predicts ``log(measured / reference)`` from features of the problem (shape,
sparsity, nnz distribution across rows), the kernel and its parameters, the machine
description and the hierarchical roofline's prediction; time = reference *
exp(prediction). The reference is the roofline over compute and main memory only: a
physical scale that is smooth in the problem dimensions. Learning a correction to it
generalizes to unseen shapes better than learning raw times, and better than a correction
to the hierarchical bound, whose cache cliffs rarely sit where the machine's do.

One regressor per kernel with enough training rows and one per operation for the rest
(``LearnedModel.own_model_rows``). Files are JSON (no pickle): the trees of each fitted
``HistGradientBoostingRegressor`` exported as arrays and summed in C (kernels_c.forest), plus
the feature schema and its hash. A file whose schema differs from this code's (another
feature set or schema version) is refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kernels_c.conv import (
    VECTOR_WIDTH,
    ConvGeometry,
    direct_work,
    input_set_overflow,
    is_pointwise,
)

from ._problem import from_row, params_dict
from .base import PerfModel, check_is_fitted, ok_rows
from .roofline import FAMILIES, RooflineModel, footprint

__all__ = ["FEATURE_SCHEMA_VERSION", "LearnedModel", "load_calibration"]

FORMAT = "perfmodel-learned-model"
FORMAT_VERSION = 3
#: format versions :meth:`LearnedModel.load` reads: 2 wrote the node arrays as JSON lists,
#: whose parsing was ~0.15 s of every command's first query (85k nodes); 3 as base64 bytes
READABLE_FORMAT_VERSIONS = (2, 3)
FEATURE_SCHEMA_VERSION = 7
#: features every model has, in order (kernel and parameter columns follow, per file)
BASE_FEATURES: tuple[str, ...] = (
    "is_conv", "is_qgemm", "n_is_one", "log2_m", "log2_n", "log2_k", "density", "log2_nnz",
    "row_nnz_mean_log2", "row_nnz_cv", "row_nnz_max_ratio", "pattern_block", "pattern_real",
    "conv_rs", "conv_stride", "log2_batch", "bits", "threads",
    *(f"family_{f}" for f in FAMILIES),
    "machine_log10_fp32", "machine_log10_int8", "machine_log10_bw", "machine_log2_llc",
    "roof_log10_bound", "roof_log2_comp_over_mem", "roof_log2_intensity",
    "ws_log2_over_l2", "ws_log2_over_llc", "cache_cold",
    "conv_log2_c", "conv_log2_o", "conv_log2_pq", "n_vector_tail",
    "block_log2_rows", "block_log2_cols", "dense_b_log2_over_l2", "out_log2_over_l2",
    "log10_ops", "log10_footprint", "conv_l1_set_overflow",
)
#: problem features checked for extrapolation: base features only (the same for every
#: parameter set of a problem, which predict_configs checks once)
RANGE_FEATURES = ("log2_m", "log2_n", "log2_k", "density", "threads")
_PROBLEM_COLS = ("op", "kernel", "params", "threads", "m", "n", "k", "c", "h", "w", "o", "r",
                 "s", "stride", "padding", "batch", "groups", "bits", "sparsity", "density",
                 "nnz", "pattern", "cache")


#: the columns :meth:`_Featurizer.base` reads: rows equal on these share base features
_BASE_COLS = tuple(c for c in _PROBLEM_COLS if c != "params")
_KEPT_SIZE = 4096


def _kept(cache: dict, key: Any, compute: Callable[[], Any],
          array_of: Callable[[Any], np.ndarray]) -> Any:
    """``compute()``, kept in ``cache`` under ``key`` (cleared when it holds ``_KEPT_SIZE``)
    with its array (``array_of``) made read-only; computed every time for an unhashable
    key."""
    try:
        hit = cache.get(key)
    except TypeError:
        return compute()
    if hit is None:
        if len(cache) >= _KEPT_SIZE:
            cache.clear()
        hit = cache[key] = compute()
        array_of(hit).flags.writeable = False
    return hit


_GEMM_KERNEL, _IM2COL_KERNEL = "gemm_blas_f32", "conv_im2col_blas_f32"
_SPMM_KERNEL, _DIRECT_KERNEL = "spmm_csr_f32", "conv_direct_sparse_f32"
_QGEMM_KERNELS = ("gemm_u8s8_acc32", "gemm_s4s8_acc32")
#: units of kernels_c.conv.direct_work the direct convolution's reference time weighs
_DIRECT_UNITS = ("fma_slots", "tile_visits", "copy_vectors")


def _schema_hash(kernels: list[str], params: list[str]) -> str:
    blob = json.dumps({"version": FEATURE_SCHEMA_VERSION, "base": list(BASE_FEATURES),
                       "kernels": kernels, "params": params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _row_stats(p: Mapping[str, Any], pattern: str) -> tuple[float, float, float]:
    """Mean (log2), coefficient of variation and max/mean of nonzeros per row.

    The results carry no per-row counts, so these are the expectations for the pattern:
    binomial rows for random sparsity (block patterns vary per block row, i.e. with
    ``k / block`` trials), a wider spread for real pruned matrices.
    """
    k, d = float(p["k"]), min(max(float(p["density"]), 1e-9), 1.0)
    mean = max(d * k, 1e-9)
    trials = k
    if pattern.startswith("block"):
        try:
            bc = float(pattern[5:].split("x")[1])
            trials = max(k / bc, 1.0)
        except (IndexError, ValueError):
            pass
    cv = math.sqrt(max(1.0 - d, 0.0) / max(d * trials, 1e-9))
    if pattern == "real":
        cv = cv * 2.0 + 0.1
    ratio = 1.0 + 3.0 * cv
    return math.log2(mean), cv, ratio


def _block_dims(pattern: str) -> tuple[float, float]:
    """log2 of the (rows, columns) of a ``block<R>x<C>`` pattern; (0, 0) otherwise."""
    if pattern.startswith("block"):
        try:
            r, c = (float(v) for v in pattern[5:].split("x"))
            return math.log2(max(r, 1.0)), math.log2(max(c, 1.0))
        except ValueError:
            pass
    return 0.0, 0.0


class _Featurizer:
    """Turns result rows into the feature matrix (schema: base + kernels + params)."""

    def __init__(self, kernels: list[str], params: list[str], target: str = "host") -> None:
        self.kernels, self.params, self.target = kernels, params, target
        self.names = [*BASE_FEATURES, *(f"kernel={k}" for k in kernels),
                      *(f"param_{p}" for p in params)]
        self._roof = RooflineModel(target=target).defaults()
        self._param_vectors: dict[Any, np.ndarray] = {}
        self._bases: dict[tuple, tuple[np.ndarray, float]] = {}
        self._machines: dict[int | None, tuple[list[float], tuple[float, float], str]] = {}
        self.direct_cost = None

    @property
    def direct_cost(self) -> dict[str, float] | None:
        """Seconds per unit of :func:`kernels_c.conv.direct_work`, fitted by
        :meth:`calibrate_direct_conv` (None: the padded compute bound instead)."""
        return self._direct_cost

    @direct_cost.setter
    def direct_cost(self, value: dict[str, float] | None) -> None:
        self._direct_cost = value
        self._bases.clear()      # the convolutions' references depend on it

    def calibrate_direct_conv(self, rows: pd.DataFrame) -> None:
        """Fit the seconds per unit of the direct convolution's work (non-negative least
        squares in relative error over the kernel's rows; needs 3 shapes)."""
        from scipy.optimize import nnls

        self.direct_cost = None
        sel = rows[rows["kernel"].astype(str) == _DIRECT_KERNEL]
        cols = [c for c in _PROBLEM_COLS if c in sel.columns]
        units, times, shapes = [], [], set()
        for rec, t in zip(sel[cols].to_dict("records"), sel["median_s"], strict=True):
            work = self._direct_units(from_row(rec), rec)
            if work is not None and t > 0:
                units.append(work)
                times.append(float(t))
                shapes.add(tuple(rec.get(k) for k in ("c", "h", "w", "o", "r", "s", "stride")))
        if len(shapes) < 3:
            return
        u, t = np.asarray(units, dtype=np.float64), np.asarray(times)
        coef, _ = nnls(u / t[:, None], np.ones(len(t)))
        if coef.any():
            self.direct_cost = dict(zip(_DIRECT_UNITS, coef.tolist(), strict=True))

    def _direct_level(self) -> str | None:
        """The kernels_c path whose vector width the target has (None: a GPU)."""
        isa = self._roof._target(None).isa
        return {16: "avx512", 8: "avx2", 4: "portable"}.get(_fp32_lanes(isa))

    def _direct_geometry(self, p: Mapping[str, Any], rec: Mapping[str, Any]
                         ) -> tuple[ConvGeometry, str] | None:
        """A direct convolution row's geometry and the kernels_c path of the target's
        vector width; None for a pointwise layer (spmm) or a target without SIMD lanes."""
        level = self._direct_level()
        groups = _num(rec, "groups", 1.0)
        if level is None or not math.isfinite(groups):
            return None
        geo = ConvGeometry(c=int(p["c"]), h=int(p["h"]), w=int(p["w"]), o=int(p["o"]),
                           r=int(p["r"]), s=int(p["s"]), stride=int(p["stride"]),
                           padding=int(p["padding"]), groups=max(int(groups), 1))
        return None if is_pointwise(geo) else (geo, level)

    def _direct_units(self, p: Mapping[str, Any], rec: Mapping[str, Any],
                      direct: tuple[ConvGeometry, str] | None = None) -> list[float] | None:
        """Units of direct-convolution work of a row (the whole batch, per thread), None for
        a pointwise layer (spmm) or a target without SIMD lanes (``direct``: the row's
        :meth:`_direct_geometry`, when the caller has it)."""
        direct = direct or self._direct_geometry(p, rec)
        if direct is None:
            return None
        threads = max(int(_num(rec, "threads", 1.0)), 1)
        work = direct_work(*direct, float(p["nnz"]))
        return [work[u] * p["batch"] / threads for u in _DIRECT_UNITS]

    def _machine(self, threads: int | None
                 ) -> tuple[list[float], tuple[float, float, float], str]:
        """The target's features (log10 fp32 and int8 peaks, main-memory bandwidth, log2
        of the largest cache), its (L2 per core, last-level cache, L1 per core) bytes
        (2 MiB / 32 MiB / 32 KiB if unknown) and the name of its main-memory level, per
        thread count (kept: every row of a query asks)."""
        memo = self._machines
        if threads not in memo:
            t = self._roof._target(threads)
            named = {lv.name: lv.size_bytes for lv in t.memory if lv.size is not None}
            per_core = max(t.cores.value, 1.0) if t.device == "cpu" else 1
            l2 = named.get("L2", 2.0**21) / per_core
            l1 = named.get("L1", 2.0**15 * per_core) / per_core
            llc = max(named.values()) if named else 2.0**25
            memo[threads] = (
                [math.log10(t.peak("fp32").value), math.log10(t.peak("int8").value),
                 math.log10(t.main_memory().bandwidth.value),
                 math.log2(max(named.values())) if named else 0.0],
                (max(l2, 1.0), max(llc, 1.0), max(l1, 1.0)), t.main_memory().name)
        return memo[threads]

    def row(self, rec: Mapping[str, Any]) -> tuple[np.ndarray, float]:
        """Feature vector and the reference time (seconds) of one row."""
        base, reference = self.base(rec)
        return np.concatenate([base, self.param_vector(rec.get("params"))]), reference

    def cached_base(self, rec: Mapping[str, Any]) -> tuple[np.ndarray, float]:
        """:meth:`base`, kept for the last few thousand distinct problems (read-only): a
        query's candidates share their kernel's, and queries ask one shape at many
        sparsities, whose dense baselines and GEMM views do not change with it."""
        return _kept(self._bases, tuple(map(rec.get, _BASE_COLS)), lambda: self.base(rec),
                     lambda hit: hit[0])

    def param_vector(self, params: Any) -> np.ndarray:
        """Parameter values of one row (NaN where the kernel has no such parameter).

        Kept per distinct parameter set: a query's candidates are the same few dozen
        configurations every time (read-only; copy before writing)."""
        key = params if isinstance(params, str) else tuple((params or {}).items())
        return _kept(self._param_vectors, key, lambda: self._param_vector(params),
                     lambda hit: hit)

    def _param_vector(self, params: Any) -> np.ndarray:
        params = params_dict(params)
        x = []
        for name in self.params:
            v = params.get(name)
            x.append(float(v) if isinstance(v, (int, float)) else math.nan)
        return np.asarray(x, dtype=np.float64)

    def base(self, rec: Mapping[str, Any]) -> tuple[np.ndarray, float]:
        """Features that do not depend on the kernel parameters, and the reference."""
        p = from_row(rec)
        threads = rec.get("threads")
        if type(threads) is not int:
            threads = int(threads) if threads is not None and not pd.isna(threads) else 1
        kernel = str(rec["kernel"])
        pattern = str(rec.get("pattern") or "random")
        fam, t_comp, t_mem = self._roof._terms(kernel, p, threads)
        t_m = max(t_mem.values())
        bound = max(t_comp, t_m)
        mach, sizes, main_memory = self._machine(threads)
        mean_l2, cv, ratio = _row_stats(p, pattern)
        ops = 2.0 * p["m"] * p["n"] * p["k"]
        is_conv = p["op"] == "conv2d"
        # N = 1 is its own regime (matrix-vector code in scipy, MKL, BLAS) and needs its own
        # feature, before log2_n: trees split features' ties in favour of the earlier one,
        # and a split of log2_n between the N = 1 and N = 4 rows of a training set falls at
        # log2 N = 1, which put a held-out N = 2 with N = 1 (scipy's product predicted 4x
        # too fast at N = 2; docs/models.md, fourteenth session)
        x = [float(is_conv), float(p["op"] == "qgemm"), float(p["n"] == 1),
             math.log2(p["m"]), math.log2(p["n"]),
             math.log2(p["k"]), float(p["density"]), math.log2(max(p["nnz"], 1.0)),
             mean_l2, cv, ratio, float(pattern.startswith("block")), float(pattern == "real"),
             float(p["r"] * p["s"]) if is_conv else 0.0,
             float(p["stride"]) if is_conv else 0.0,
             math.log2(p["batch"]) if is_conv else 0.0,
             float(p.get("bits", 32)), float(threads),
             *(float(fam == f) for f in FAMILIES), *mach,
             math.log10(bound), math.log2(max(t_comp, 1e-30) / max(t_m, 1e-30)),
             math.log2(ops / max(float(len(t_mem)), 1.0) / max(t_m, 1e-30) / 1e9
                       if t_m > 0 else 1.0)]
        ws = max(footprint(fam, p), 1.0)
        x += [math.log2(ws / sizes[0]), math.log2(ws / sizes[1]),
              float(str(rec.get("cache") or "warm") == "cold"),
              math.log2(p["c"]) if is_conv else 0.0, math.log2(p["o"]) if is_conv else 0.0,
              math.log2(p["p"] * p["q"]) if is_conv else 0.0,
              # columns left over after whole 16-lane vectors (masked tail work)
              float(p["n"] % 16) / 16.0,
              # block sparsity: rows of a block share column indices (reuse of B rows),
              # columns of a block are contiguous (B rows read back to back)
              *_block_dims(pattern),
              # the dense operand B (K x N, or the conv input) and the output C (M x N)
              # against the per-core L2: whether B's rows are re-read from L2 or beyond
              math.log2(4.0 * p["k"] * p["n"] / sizes[0]),
              math.log2(4.0 * p["m"] * p["n"] / sizes[0]),
              # absolute size: tiny calls are dominated by their fixed cost
              math.log10(max(ops, 1.0)), math.log10(ws)]
        # the direct convolution's input planes that share L1 sets: the kernel ran 20-30 %
        # slower than predicted on the layers where most of them did (docs/models.md)
        direct = self._direct_geometry(p, rec) if fam == "sparse_conv" else None
        x.append(input_set_overflow(*direct, float(p["nnz"]), l1_bytes=int(sizes[2]))
                 if direct is not None else 0.0)
        x += [float(kernel == k) for k in self.kernels]
        # the regression target is log(time / reference) with a reference that is smooth in
        # the problem dimensions: the roofline over compute and main memory only. The
        # hierarchical bound jumps where a working set leaves a cache level; where the real
        # cliff lies (the VM's share of L3, prefetchers) is learned from the features above
        # instead of being built into the target (leave-shape-out MAPE 18.6 % -> 16.4 % on
        # the standard sweep, docs/models.md)
        target = self._roof._target(threads)
        if fam == "spmm":
            # spmm kernels vectorize along N: a nonzero costs at least one whole vector of
            # FMAs however narrow N is. Without this the compute term of a cache-resident
            # narrow problem shrinks with N while the time does not (our kernel: 0.3 ns per
            # nonzero from N = 1 to 8), and log(time / reference) fell by ln 2 per doubling
            # of N, which trees cannot interpolate for an unseen N (docs/models.md)
            lanes = _fp32_lanes(target.isa)
            t_comp *= math.ceil(p["n"] / lanes) * lanes / p["n"]
        elif fam == "sparse_conv":
            # the direct kernel FMAs whole register tiles of the flattened output plane,
            # discarded columns included, plus loop work per tile, reloads its tiles once
            # per channel block and copies the input padded first: a calibrated sum of the
            # three (kernels_c.conv.direct_work) follows its time within 4-16 % on
            # held-out layers, where nonzeros x pixels alone left 7 x 7 planes 1.5x slower
            # per FMA than larger ones (docs/models.md). Pointwise layers run spmm.
            units = self._direct_units(p, rec, direct)
            if units is None:
                lanes = _fp32_lanes(target.isa)
                pixels = p["n"] / max(p["batch"], 1)
                t_comp *= math.ceil(pixels / lanes) * lanes / pixels
            elif self.direct_cost is not None:
                t_comp = sum(self.direct_cost[u] * v
                             for u, v in zip(_DIRECT_UNITS, units, strict=True))
            else:   # FMA slots of whole vectors over the useful lane-FMAs
                t_comp *= units[0] * VECTOR_WIDTH[self._direct_level()] / (
                    p["nnz"] * p["n"] / max(threads, 1))
        reference = max(t_comp, t_mem[main_memory])
        return np.asarray(x, dtype=np.float64), reference

    def matrix(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        cols = [c for c in _PROBLEM_COLS if c in rows.columns]
        recs = rows[cols].to_dict("records")
        if not recs:
            return np.empty((0, len(self.names))), np.empty(0)
        out = [self.row(r) for r in recs]
        return np.vstack([x for x, _ in out]), np.array([b for _, b in out])


def _num(rec: Mapping[str, Any], key: str, default: float = math.nan) -> float:
    """A row's number at ``key``; ``default`` when missing or NaN, NaN when not a number."""
    try:
        v = float(rec.get(key, default))
    except (TypeError, ValueError):
        return math.nan
    return default if math.isnan(v) else v


def _twin(rec: Mapping[str, Any]) -> tuple[dict[str, Any], float] | None:
    """The GEMM-view kernel calls of a convolution row that is nothing but those calls, and
    how many (:func:`_view`; None for any other row): im2col + BLAS on a 1 x 1, stride-1,
    unpadded layer skips the im2col, and the sparse convolution with ``pointwise = 1``
    unstrided reads the image in place. Strided, or with an im2col, a copy comes first that
    no GEMM-view row measures: such rows stay convolutions, referred to their calls.

    The GEMM-view models have seen many more shapes than the convolutions': the dense 1 x 1
    layers' held-out error fell from 7-10 % to 2.5 % (docs/models.md)."""
    view = _view(rec)
    return view if view is not None and _is_twin(rec) else None


def _is_twin(rec: Mapping[str, Any]) -> bool:
    """Whether a convolution row with GEMM-view calls is nothing but them (:func:`_twin`)."""
    if _num(rec, "stride", 1.0) != 1:
        return False
    return str(rec.get("kernel")) != _IM2COL_KERNEL or _pointwise_layer(rec)


def _pointwise_layer(rec: Mapping[str, Any]) -> bool:
    """Whether a row's layer is 1 x 1, unpadded, one group (``kernels_c.conv.is_pointwise``:
    the direct kernel may run it as spmm, and im2col is a reshape there)."""
    return (_num(rec, "r"), _num(rec, "s"), _num(rec, "padding", 0.0),
            _num(rec, "groups", 1.0)) == (1, 1, 0, 1)


def _view(rec: Mapping[str, Any]) -> tuple[dict[str, Any], float] | None:
    """The GEMM-view kernel calls a convolution row makes, and how many; None for any other
    row or an incomplete geometry.

    - im2col + BLAS: ``gemm_blas_f32`` of the weights O/g x (C/g R S) times the columns
      (C/g R S) x (Ho Wo), batch x groups calls (after the im2col copy, which 1 x 1,
      stride-1, unpadded layers skip);
    - the sparse convolution with ``pointwise = 1`` (1 x 1, unpadded, one group):
      ``spmm_csr_f32`` of the weights O x C times the pixels C x (Ho Wo), with its default
      parameters for that view, batch calls (strided: after a copy of the subsampled
      pixels; kernels_c.conv)."""
    kernel = str(rec.get("kernel"))
    if kernel not in (_IM2COL_KERNEL, _DIRECT_KERNEL):
        return None
    # checked first: most direct-convolution rows (a query's candidates) have no view, and
    # pointwise runs on 1 x 1 layers only (is_pointwise below decides)
    if kernel == _DIRECT_KERNEL and (
            params_dict(rec.get("params")).get("pointwise") != 1
            or (_num(rec, "r", 1), _num(rec, "s", 1)) != (1, 1)):
        return None
    dims = [_num(rec, key) for key in ("c", "h", "w", "o")]
    dims += [_num(rec, key, default) for key, default in (
        ("r", 1), ("s", 1), ("stride", 1), ("padding", 0), ("batch", 1), ("groups", 1))]
    if not all(math.isfinite(v) for v in dims):
        return None
    c, h, w, o, r, s, stride, pad, batch, groups = (int(v) for v in dims)
    groups, stride = max(groups, 1), max(stride, 1)
    ho, wo = (h + 2 * pad - r) // stride + 1, (w + 2 * pad - s) // stride + 1
    m, n, k = o // groups, ho * wo, c // groups * r * s
    if min(m, n, k, batch) < 1:
        return None
    view = {key: rec[key] for key in ("threads", "cache") if key in rec}
    if kernel == _IM2COL_KERNEL:
        view.update(op="spmm", kernel=_GEMM_KERNEL, m=m, n=n, k=k, sparsity=0.0,
                    density=1.0, nnz=m * k, pattern="dense", params="{}")
        return view, float(batch * groups)
    if not is_pointwise(ConvGeometry(c, h, w, o, r, s, stride, pad, groups)):
        return None
    try:
        from kernels_c.spmm import default_params
    except ImportError:
        return None
    density = _num(rec, "density", 1.0 - _num(rec, "sparsity", 0.0))
    view.update(op="spmm", kernel=_SPMM_KERNEL, m=m, n=n, k=k, sparsity=1.0 - density,
                density=density, nnz=_num(rec, "nnz", density * m * k),
                pattern=rec.get("pattern") or "random",
                params=json.dumps(default_params(m, k, n, density)))
    return view, float(batch)


def _calls(rec: Mapping[str, Any], known: set[str]
           ) -> tuple[Mapping[str, Any], float, tuple[dict[str, Any], float] | None]:
    """How a row is predicted, given the kernels the training saw: (the row, or for a
    convolution that is nothing but GEMM-view calls that call (:func:`_twin`); the calls
    it makes, 1 for a row that stays; the GEMM-view calls of a convolution that stays and
    copies first, or None). Views of a kernel the training never saw are not used."""
    view = _view(rec) if rec.get("op") == "conv2d" else None
    if view is None or view[0]["kernel"] not in known:
        return rec, 1.0, None
    if _is_twin(rec):
        return view[0], view[1], None
    return rec, 1.0, view


def _may_have_view(rec: Mapping[str, Any]) -> bool:
    """Whether a row has GEMM-view calls (:func:`_view`) with some parameter set:
    :func:`_view` reads the parameters only for the direct convolution's ``pointwise``."""
    return _view({**rec, "params": {"pointwise": 1}}) is not None


def _feature_ranges(x: np.ndarray) -> dict[str, list[float]]:
    """[min, max] of each column of ``x`` (the :data:`RANGE_FEATURES` of training rows)."""
    return {name: [float(np.nanmin(x[:, i])), float(np.nanmax(x[:, i]))]
            for i, name in enumerate(RANGE_FEATURES)}


def _feature_rows(bases: list[np.ndarray], params: list[np.ndarray]) -> np.ndarray:
    """The feature matrix of rows given as base features and parameter values (equal
    lengths each), (n_rows, n_base + n_params) float64; a third of the time of stacking
    them with vstack and hstack, which was ~5 % of a query."""
    n_base = bases[0].size
    x = np.empty((len(bases), n_base + params[0].size))
    x[:, :n_base] = bases
    x[:, n_base:] = params
    return x


def _with_views(bound: np.ndarray, views: list[tuple[int, dict[str, Any], float]],
                view_bound: np.ndarray, view_log_ratio: np.ndarray) -> np.ndarray:
    """``bound`` with row ``i`` of every view replaced by its calls' predicted time
    (reference x exp(log ratio) x calls), where that is a positive number."""
    out = np.array(bound, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        seconds = view_bound * np.exp(view_log_ratio)
    for (i, _, n_calls), t in zip(views, seconds, strict=True):
        if np.isfinite(t) and t > 0:
            out[i] = t * n_calls
    return out


_CONV_COLS = ("c", "h", "w", "o", "r", "s", "stride", "padding", "batch", "groups")


def _as_twins(rows: pd.DataFrame) -> pd.DataFrame:
    """Training rows with every convolution that is a GEMM-view kernel call (:func:`_twin`)
    recorded as that call (time per call): they teach the GEMM-view models shapes of
    their own, instead of a convolution model that has few (leave-one-shape-out on the
    standard sweep: crossovers within +-0.05 58 -> 62 %, regret 1.018 -> 1.010)."""
    records = rows.to_dict("records")
    changed = False
    for i, rec in enumerate(records):
        twin = _twin(rec)
        if twin is None:
            continue
        call, calls = twin
        records[i] = {**rec, **{key: math.nan for key in _CONV_COLS if key in rec}, **call,
                      "median_s": float(rec["median_s"]) / calls}
        changed = True
    return pd.DataFrame(records, columns=rows.columns) if changed else rows


def _fp32_lanes(isa: str) -> int:
    """fp32 lanes of one SIMD vector of a CPU ISA path (``Target.isa``); 1 (no padding)
    for GPUs, whose threads do not map to one vector per nonzero."""
    isa = isa.lower()
    if isa.startswith("avx512"):
        return 16
    if isa.startswith("avx"):
        return 8
    return 4 if isa.startswith(("sse", "portable", "neon")) else 1


#: how a forest's node arrays are stored (format 3): little-endian, every value exact
_STORED_ARRAYS = {"feature": "<i4", "threshold": "<f8", "left": "<i4", "right": "<i4",
                  "missing_left": "u1", "value": "<f8", "is_leaf": "u1", "roots": "<i4"}


class _Forest:
    """Exported boosted trees as flat arrays (evaluated by :class:`_ForestSet`)."""

    def __init__(self, arrays: Mapping[str, Any]) -> None:
        self.feature = np.asarray(arrays["feature"], dtype=np.int64)
        self.threshold = np.asarray(arrays["threshold"], dtype=np.float64)
        self.left = np.asarray(arrays["left"], dtype=np.int64)
        self.right = np.asarray(arrays["right"], dtype=np.int64)
        self.missing_left = np.asarray(arrays["missing_left"], dtype=bool)
        self.value = np.asarray(arrays["value"], dtype=np.float64)
        self.is_leaf = np.asarray(arrays["is_leaf"], dtype=bool)
        self.roots = np.asarray(arrays["roots"], dtype=np.int64)
        self.baseline = float(arrays["baseline"])

    @classmethod
    def from_sklearn(cls, est: Any) -> _Forest:
        parts = {k: [] for k in ("feature", "threshold", "left", "right", "missing_left",
                                 "value", "is_leaf")}
        roots, offset = [], 0
        for (pred,) in est._predictors:
            nodes = pred.nodes
            if nodes["is_categorical"].any():
                raise ValueError("categorical splits are not supported by the JSON export")
            roots.append(offset)
            parts["feature"].append(nodes["feature_idx"].astype(np.int64))
            parts["threshold"].append(nodes["num_threshold"].astype(np.float64))
            parts["left"].append(nodes["left"].astype(np.int64) + offset)
            parts["right"].append(nodes["right"].astype(np.int64) + offset)
            parts["missing_left"].append(nodes["missing_go_to_left"].astype(bool))
            parts["value"].append(nodes["value"].astype(np.float64))
            parts["is_leaf"].append(nodes["is_leaf"].astype(bool))
            offset += len(nodes)
        arrays = {k: np.concatenate(v) if v else np.empty(0) for k, v in parts.items()}
        arrays.update(roots=np.array(roots, dtype=np.int64),
                      baseline=float(np.ravel(est._baseline_prediction)[0]))
        return cls(arrays)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: _encode(getattr(self, k), dtype)
                               for k, dtype in _STORED_ARRAYS.items()}
        out["baseline"] = self.baseline
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> _Forest:
        """A forest from :meth:`to_json` (format 3) or format 2's JSON lists."""
        return cls({**{k: _decode(doc[k], k) for k in _STORED_ARRAYS},
                    "baseline": doc["baseline"]})


def _encode(values: np.ndarray, dtype: str) -> dict[str, str]:
    """``values`` as {"dtype", "base64"} of their little-endian bytes; ValueError when a
    value does not fit ``dtype`` exactly."""
    stored = np.ascontiguousarray(values).astype(dtype)
    if not np.array_equal(stored, values):
        raise ValueError(f"node values do not fit {dtype}")
    return {"dtype": dtype, "base64": base64.b64encode(stored.tobytes()).decode("ascii")}


def _decode(value: Any, name: str) -> np.ndarray:
    """Node array ``name`` from :func:`_encode`'s form, or a JSON list (format 2)."""
    if isinstance(value, list):
        return np.asarray(value)
    dtype = _STORED_ARRAYS[name]
    if not isinstance(value, Mapping) or value.get("dtype") != dtype:
        raise ValueError(f"forest array {name!r}: expected {{'dtype': {dtype!r}, "
                         f"'base64': ...}}")
    try:
        return np.frombuffer(base64.b64decode(value["base64"], validate=True), dtype=dtype)
    except (KeyError, TypeError, ValueError) as exc:   # binascii.Error is a ValueError
        raise ValueError(f"forest array {name!r} is not valid base64 of {dtype} values: "
                         f"{exc}") from None


class _ForestSet:
    """Several forests (one per model group) evaluated in one C call
    (:class:`kernels_c.forest.TreeSums`): every row sums the trees of its own forest. The
    numpy walk this replaced spent ~1 ms of a ``best_config`` query on 17 rows x 300 trees
    in per-call overhead (docs/models.md, "Queries")."""

    def __init__(self, forests: Mapping[str, _Forest]) -> None:
        from kernels_c.forest import TreeSums

        self.forests = dict(forests)
        parts = {k: [] for k in ("feature", "threshold", "left", "right", "missing_left",
                                 "value", "is_leaf")}
        roots: list[np.ndarray] = []
        #: forest name -> (first root in the concatenated roots, number of trees)
        self.span: dict[str, tuple[int, int]] = {}
        self.baseline: dict[str, float] = {}
        offset = n_roots = 0
        for name, f in self.forests.items():
            for k in parts:
                arr = getattr(f, k)
                parts[k].append(arr + offset if k in ("left", "right") else arr)
            roots.append(f.roots + offset)
            self.span[name] = (n_roots, int(f.roots.size))
            self.baseline[name] = f.baseline
            offset += f.feature.size
            n_roots += int(f.roots.size)
        arrays = {k: np.concatenate(v) if v else np.empty(0) for k, v in parts.items()}
        self._sums = TreeSums(**arrays, roots=np.concatenate(roots) if roots
                              else np.empty(0, dtype=np.int64))

    def __contains__(self, name: str) -> bool:
        return name in self.forests

    def predict(self, x: np.ndarray, names: Sequence[str],
                repeats: Sequence[int] | None = None) -> np.ndarray:
        """Sum of each row's forest, shape (n_rows,); NaN where there is no such forest.
        ``names[i]`` names the forest of row ``i``, or with ``repeats`` of the next
        ``repeats[i]`` rows."""
        x = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float64)
        spans = [self.span.get(name, (0, -1)) for name in names]
        start = np.array([s for s, _ in spans], dtype=np.int64)
        count = np.array([c for _, c in spans], dtype=np.int64)
        base = np.array([self.baseline.get(name, math.nan) for name in names])
        if repeats is not None:
            repeats = np.asarray(repeats)
            start, count, base = start.repeat(repeats), count.repeat(repeats), base.repeat(
                repeats)
        known = count >= 0
        if known.all():
            return base + self._sums.sums(x, start, count)
        out = np.full(x.shape[0], np.nan)
        if known.any():
            out[known] = base[known] + self._sums.sums(
                np.ascontiguousarray(x[known]), start[known], count[known])
        return out


class LearnedModel(PerfModel):
    """Hybrid gradient-boosting model (see the module docstring).

    Parameters
    ----------
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization, loss :
        passed to ``sklearn.ensemble.HistGradientBoostingRegressor`` (``loss`` on
        log(time / reference): ``"absolute_error"`` fits the median, robust to noisy points).
    kernel_balance : float
        exponent of the per-kernel weight in an operation's model (rows / kernels / rows of
        this kernel): 1 = every kernel weighs the same in total, 0 = every row the same.
    own_model_rows : int
        a kernel with at least this many training rows gets a boosted model of its own;
        the others (and kernels the training never saw) use their operation's model, fitted
        on every row of that operation. Rows of an operation absent from the training get
        the calibrated roofline, flagged as extrapolation. 100, not 50: dense BLAS (86 rows
        of the standard sweep, spmm and qgemm together) predicted by its operations' models
        placed 55-63 % of held-out crossovers within +-0.05 instead of 47-57 %
        (docs/models.md).
    random_state : int, seed of the regressor.
    target : str, the machine the training rows come from (``"host"``).
    """

    name = "learned"

    def __init__(self, *, max_iter: int = 300, learning_rate: float = 0.05,
                 max_leaf_nodes: int = 15, min_samples_leaf: int = 8,
                 l2_regularization: float = 1e-3, loss: str = "absolute_error",
                 kernel_balance: float = 1.0, own_model_rows: int = 100,
                 random_state: int = 0, target: str = "host") -> None:
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.loss = loss
        self.kernel_balance = kernel_balance
        self.own_model_rows = own_model_rows
        self.random_state = random_state
        self.target = target

    # -- fit / predict ---------------------------------------------------------------
    def fit(self, results: pd.DataFrame) -> LearnedModel:
        """Train on measured rows (status ok); returns ``self``."""
        measured = ok_rows(results)
        if len(measured) < 10:
            raise ValueError(f"need at least 10 measured rows to fit, got {len(measured)}; "
                             f"run a sweep first (perfmodel sweep quick)")
        rows = _as_twins(measured)
        kernels = sorted(rows["kernel"].astype(str).unique())
        params: set[str] = set()
        for text in rows.get("params", pd.Series(dtype=str)).fillna("{}"):
            try:
                d = json.loads(text) if isinstance(text, str) and text else dict(text or {})
            except (ValueError, TypeError):
                d = {}
            params.update(k for k, v in d.items() if isinstance(v, (int, float)))
        self.featurizer_ = _Featurizer(kernels, sorted(params), self.target)
        self.featurizer_.calibrate_direct_conv(rows)
        x, bound = self.featurizer_.matrix(rows)
        y = np.log(rows["median_s"].to_numpy(dtype=np.float64) / bound)
        kernel = rows["kernel"].astype(str).to_numpy()
        op = rows["op"].astype(str).to_numpy()
        # trust converged timings more than ones a busy machine left uncertain
        trust = np.ones(len(rows))
        if "rel_ci" in rows:
            rel = rows["rel_ci"].astype(float).fillna(0.05).clip(0.0, 1.0).to_numpy()
            trust = 0.1 / (0.05 + rel)
        # One model per operation over all of its rows, and one per kernel with enough rows
        # of its own: in a single shared model the trees split on shape features before
        # they split on the kernel, and one kernel's cliffs (scipy at N = 4: 5x its
        # neighbours) leaked into the others' predictions; per kernel, leave-shape-out MAPE
        # fell from 17-19 % to 13.5-14 % on the standard sweep (docs/models.md).
        forests: dict[str, _Forest] = {}
        counts = pd.Series(kernel).value_counts()
        groups = [(f"op:{o}", op == o) for o in sorted(set(op))]
        groups += [(f"kernel:{k}", kernel == k) for k in sorted(counts.index)
                   if counts[k] >= self.own_model_rows]
        # convolutions that copy their input are referred to their GEMM-view calls
        # (_view_references): the models of those calls are fitted first, the
        # convolutions' after
        is_conv = [bool((op[sel] == "conv2d").any()) for _, sel in groups]
        for stage in (False, True):
            if stage:
                self.forests_ = _ForestSet(forests)
                records = rows[[c for c in _PROBLEM_COLS if c in rows.columns]].to_dict(
                    "records")
                bound = self._view_references(bound, records)
                y = np.log(rows["median_s"].to_numpy(dtype=np.float64) / bound)
            for (name, sel), later in zip(groups, is_conv, strict=True):
                if later != stage:
                    continue
                # every kernel weighs the same within the model: dense baselines are
                # measured once per shape, sparse kernels at every sparsity and parameters
                k_sel = pd.Series(kernel[sel])
                balance = (sel.sum() / k_sel.nunique() / k_sel.map(k_sel.value_counts())
                           ).to_numpy(dtype=np.float64) ** self.kernel_balance
                forests[name] = self._fit_forest(x[sel], y[sel], trust[sel] * balance)
        self.forests_ = _ForestSet(forests)
        pred = self._log_ratio(x, kernel, op)
        self.roofline_ = RooflineModel(target=self.target).fit(measured)
        columns = [self.featurizer_.names.index(name) for name in RANGE_FEATURES]
        self.ranges_ = _feature_ranges(x[:, columns])
        # and per kernel: a sparse kernel measured from sparsity 0.1 to 0.98 extrapolates
        # at 0 although the dense rows span density 1
        self.kernel_ranges_ = {k: _feature_ranges(x[kernel == k][:, columns])
                               for k in sorted(set(kernel))}
        resid = y - pred
        # in-sample spread underestimates; evaluate() reports held-out numbers and fit()
        # callers may replace this with the cross-validated spread
        self.log_uncertainty_ = float(np.quantile(np.abs(resid), 0.68)) if len(resid) else 0.5
        self.n_train_ = len(rows)
        self.fingerprints_ = sorted(set(rows.get("fingerprint", pd.Series(dtype=str))
                                        .dropna().astype(str)))
        return self

    def _fit_forest(self, x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> _Forest:
        from sklearn.ensemble import HistGradientBoostingRegressor
        from threadpoolctl import threadpool_limits

        # columns that are all missing here (other operations' parameters) cannot be
        # binned; constant, they are never split on, so prediction may see any value there
        x = np.where(np.isnan(x).all(axis=0), 0.0, x)
        est = HistGradientBoostingRegressor(
            max_iter=self.max_iter, learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes, min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization, loss=self.loss,
            random_state=self.random_state, early_stopping=False)
        # one thread: the sets are small, and OpenMP on a loaded machine costs ~20x
        with threadpool_limits(1):
            est.fit(x, y, sample_weight=weight)
            reference = est.predict(x)
        forest = _Forest.from_sklearn(est)
        check = _ForestSet({"": forest}).predict(x, np.full(len(x), "", dtype=object))
        if not np.allclose(check, reference, rtol=1e-9, atol=1e-9):
            raise RuntimeError("exported trees disagree with scikit-learn's prediction; "
                               "this scikit-learn version changed its tree layout")
        return forest

    def _log_ratio(self, x: np.ndarray, kernel: np.ndarray, op: np.ndarray) -> np.ndarray:
        """Predicted log(time / reference) per row: the kernel's own model, else its
        operation's; NaN for an operation the training never saw."""
        return self.forests_.predict(x, [self._forest_name(k, o)
                                         for k, o in zip(kernel, op, strict=True)])

    def _view_rows(self, views: list[tuple[int, dict[str, Any], float]]
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Features and references of the views' GEMM-view rows."""
        f = self.featurizer_
        if not views:
            return np.empty((0, len(f.names))), np.empty(0)
        featurized = [f.cached_base(v) for _, v, _ in views]
        return (_feature_rows([b for b, _ in featurized],
                              [f.param_vector(v.get("params")) for _, v, _ in views]),
                np.array([t for _, t in featurized]))

    def _view_references(self, bound: np.ndarray, records: list[Mapping[str, Any]]
                         ) -> np.ndarray:
        """``bound`` with the reference of every convolution that copies its input and then
        makes GEMM-view calls (im2col + sgemm, strided pointwise spmm; :func:`_view`)
        replaced by the predicted time of those calls, where the training saw their
        kernel: the GEMM-view models have seen many more shapes than there are
        convolutions, and what is left for the convolution's model is the copy (0-43 % of
        the im2col layers' time on ResNet-50, docs/models.md)."""
        known = set(self.featurizer_.kernels)
        views = [(i, *view) for i, (_, _, view) in enumerate(
            _calls(rec, known) for rec in records) if view is not None]
        if not views:
            return bound
        view_x, view_bound = self._view_rows(views)
        log_ratio = self.forests_.predict(view_x, [self._forest_name(v["kernel"], "spmm")
                                                   for _, v, _ in views])
        return _with_views(bound, views, view_bound, log_ratio)

    def _forest_name(self, kernel: str, op: str) -> str:
        """The forest that predicts a kernel's rows: its own, else its operation's (kept
        per forest set: fit replaces it)."""
        memo = self.__dict__.get("_forest_names")
        if memo is None or memo[0] is not self.forests_:
            memo = self._forest_names = (self.forests_, {})
        name = memo[1].get((kernel, op))
        if name is None:
            name = memo[1][kernel, op] = (f"kernel:{kernel}" if f"kernel:{kernel}" in
                                          self.forests_ else f"op:{op}")
        return name

    def candidate_configs(self, rec: Mapping[str, Any]) -> list[dict]:
        """The parameter sets a query ranks for row ``rec``'s kernel: the kernel's own
        defaults for the problem (what the training rows of a default run hold); for a
        kernel whose defaults perfmodel cannot resolve, the sets the model file lists as
        measured most often for it (``configs``; ``[{}]`` when none).

        Sets measured on other problems are not ranked: our spmm's and direct
        convolution's were their resolved defaults there (``row_block`` = m, tiles from the
        layer), each measured on a few shapes, and the model carried those shapes' speed to
        any problem given the same parameters — the direct path on 1 x 1 layers 3x, our
        spmm's most frequent sets 16-30 % too fast; nor are the knobs a parameter grid
        varied on five shapes, which picked sets 0.88-1.04x as fast as the defaults
        (docs/models.md, thirty-first session). Parameters for a new problem are the
        tuner's to measure (``perfmodel tune``)."""
        defaults = _default_params(rec)
        if defaults is not None:
            return [defaults]
        configs = getattr(self, "metadata_", {}).get("configs", {})
        return configs.get(str(rec["kernel"])) or _DEFAULTS_ONLY

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        """Predicted seconds of results rows (:data:`_PROBLEM_COLS`), shape (n_rows,)."""
        cols = [c for c in _PROBLEM_COLS if c in rows.columns]
        return self.predict_records(rows[cols].to_dict("records"))[0]

    def predict_records(self, records: list[Mapping[str, Any]]) -> tuple[np.ndarray,
                                                                         np.ndarray]:
        """Predicted seconds and extrapolation flags of plain dict rows, shape (n_rows,)
        each."""
        return self.predict_configs([(rec, (rec.get("params"),)) for rec in records])

    def predict_configs(self, problems: Sequence[tuple[Mapping[str, Any], Sequence[Any]]]
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Predicted seconds and extrapolation flags of problem rows each run with several
        parameter sets: ``problems`` lists (row, its parameter sets), the row's own
        ``params`` ignored; the results are flat, (sum of the set counts,), the first row's
        sets in order, then the next row's.

        The numbers :meth:`predict_records` gives for the rows ``{**row, "params": set}``,
        with what does not depend on the parameters (the base features, the forest, the
        extrapolation checks) done once per row; :meth:`predict_records` is this with one
        set per row."""
        check_is_fitted(self, "forests_")
        for row, configs in problems:
            if not isinstance(row, Mapping) or isinstance(configs, (str, Mapping)):
                raise TypeError(f"problems must be (row dict, sequence of parameter sets) "
                                f"pairs, got ({type(row).__name__}, "
                                f"{type(configs).__name__})")
        f = self.featurizer_
        known = set(f.kernels)
        # blocks of output rows sharing a row (a convolution that runs as GEMM-view calls
        # replaced by the call, times the calls): (row, parameter sets, calls)
        blocks: list[tuple[Mapping[str, Any], Sequence[Any], float]] = []
        views: list[tuple[int, dict[str, Any], float]] = []
        n_rows = 0
        for row, configs in problems:
            if len(configs) > 1 and not _may_have_view(row):
                blocks.append((row, configs, 1.0))
                n_rows += len(configs)
                continue
            for params in configs:
                rec, calls, view = _calls({**row, "params": params}, known)
                if view is not None:
                    views.append((n_rows, *view))
                blocks.append((rec, (rec.get("params"),), calls))
                n_rows += 1
        if not blocks:
            return np.empty(0), np.empty(0, dtype=bool)
        featurized = [f.cached_base(rec) for rec, _, _ in blocks]
        sizes = [len(configs) for _, configs, _ in blocks]
        n_base = featurized[0][0].size
        x = np.empty((n_rows + len(views), len(f.names)))
        row = 0
        for (base, _), size in zip(featurized, sizes, strict=True):
            x[row:row + size, :n_base] = base
            row += size
        x[:n_rows, n_base:] = [f.param_vector(params) for _, configs, _ in blocks
                               for params in configs]
        view_x, view_bound = self._view_rows(views)
        x[n_rows:] = view_x
        names = [self._forest_name(str(rec["kernel"]), str(rec["op"])) for rec, _, _ in blocks]
        log_ratio = self.forests_.predict(
            x, names + [self._forest_name(v["kernel"], "spmm") for _, v, _ in views],
            sizes + [1] * len(views))
        reference = np.repeat([t for _, t in featurized], sizes)
        if views:
            reference = _with_views(reference, views, view_bound, log_ratio[n_rows:])
        seconds = reference * np.exp(log_ratio[:n_rows]) * np.repeat(
            [calls for _, _, calls in blocks], sizes)
        unseen = np.isnan(seconds)
        if unseen.any():
            rows = [rec for (rec, _, _), size in zip(blocks, sizes, strict=True)
                    for _ in range(size)]
            seconds[unseen] = self.roofline_.predict(
                pd.DataFrame([rows[i] for i in np.flatnonzero(unseen)]))
        kernels = [str(rec["kernel"]) for rec, _, _ in blocks]
        unknown = [k not in known or f"op:{rec.get('op')}" not in self.forests_
                   for k, (rec, _, _) in zip(kernels, blocks, strict=True)]
        # the range features are base features: one check per block
        firsts = np.cumsum([0, *sizes[:-1]])
        return seconds, np.repeat(self._out_of_range(x[firsts], kernels) | unknown, sizes)

    def _out_of_range(self, x: np.ndarray, kernels: Sequence[str]) -> np.ndarray:
        """True where featurized row ``i``, of kernel ``kernels[i]``, lies outside its
        kernel's training ranges (a kernel without ranges of its own, or a model file from
        before they were kept, checks the ranges of all rows)."""
        columns, index, lo, hi = self._ranges()
        rows = [index.get(k, -1) for k in kernels]
        values = x[:, columns]
        return ((values < lo[rows]) | (values > hi[rows])).any(axis=1)

    def _ranges(self) -> tuple[np.ndarray, dict[str, int], np.ndarray, np.ndarray]:
        """Columns of the range features, the row of each kernel in the bounds, and the
        bounds (training range +- 5 %) that :meth:`_out_of_range` checks them against, the
        ranges of all rows last."""
        per_kernel = getattr(self, "kernel_ranges_", {})
        memo = self.__dict__.get("_range_bounds")
        if memo is None or memo[0] is not self.ranges_ or memo[1] is not per_kernel:
            names = list(self.ranges_)
            tables = [*per_kernel.values(), self.ranges_]
            lo = np.array([[t[n][0] for n in names] for t in tables], dtype=np.float64)
            hi = np.array([[t[n][1] for n in names] for t in tables], dtype=np.float64)
            margin = 0.05 * np.maximum(hi - lo, 1e-9)
            columns = np.array([self.featurizer_.names.index(n) for n in names], dtype=np.intp)
            index = {k: i for i, k in enumerate(per_kernel)}
            memo = self._range_bounds = (self.ranges_, per_kernel,
                                         (columns, index, lo - margin, hi + margin))
        return memo[2]

    # -- persistence -----------------------------------------------------------------
    def save(self, path: str | Path, *, extra: Mapping[str, Any] | None = None) -> Path:
        """Write the fitted model as JSON (no pickle), with ``extra`` entries and those a
        loaded or :func:`fit_and_save`'d model carries (``metadata_``: its candidate
        configurations, probed uncertainty)."""
        check_is_fitted(self, "forests_")
        path = Path(path)
        f = self.featurizer_
        doc = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "feature_schema": {"version": FEATURE_SCHEMA_VERSION, "base": list(BASE_FEATURES),
                               "kernels": f.kernels, "params": f.params},
            "schema_hash": _schema_hash(f.kernels, f.params),
            "target": self.target,
            "hyperparameters": {k: getattr(self, k) for k in (
                "max_iter", "learning_rate", "max_leaf_nodes", "min_samples_leaf",
                "l2_regularization", "loss", "kernel_balance", "own_model_rows",
                "random_state")},
            "forests": {name: f.to_json() for name, f in self.forests_.forests.items()},
            "roofline": {"factors": self.roofline_.factors_,
                         "source": self.roofline_.calibration_source_},
            "direct_conv_cost": f.direct_cost,
            "ranges": self.ranges_, "kernel_ranges": self.kernel_ranges_,
            "log_uncertainty": self.log_uncertainty_,
            "training": {"rows": self.n_train_, "fingerprints": self.fingerprints_,
                         "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")},
        }
        doc.update({k: v for k, v in getattr(self, "metadata_", {}).items() if k not in doc})
        doc.update(extra or {})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(doc, separators=(",", ":")))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> LearnedModel:
        """Read a model written by :meth:`save`; refuses other formats and schemas."""
        doc = _read(path)
        schema = doc["feature_schema"]
        model = cls(target=doc.get("target", "host"), **doc.get("hyperparameters", {}))
        model.featurizer_ = _Featurizer(list(schema["kernels"]), list(schema["params"]),
                                        model.target)
        model.featurizer_.direct_cost = doc.get("direct_conv_cost")
        model.forests_ = _ForestSet({str(name): _Forest.from_json(f)
                                     for name, f in doc["forests"].items()})
        model.roofline_ = RooflineModel(target=model.target).defaults()
        model.roofline_.factors_ = doc["roofline"]["factors"]
        model.roofline_.calibration_source_ = doc["roofline"]["source"]
        model.ranges_ = {k: list(v) for k, v in doc["ranges"].items()}
        model.kernel_ranges_ = {str(kernel): {k: list(v) for k, v in ranges.items()}
                                for kernel, ranges in doc.get("kernel_ranges", {}).items()}
        model.log_uncertainty_ = float(doc["log_uncertainty"])
        model.n_train_ = int(doc["training"]["rows"])
        model.fingerprints_ = list(doc["training"].get("fingerprints", []))
        model.metadata_ = {k: v for k, v in doc.items() if k not in ("forests",)}
        return model


def _read(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is not a perfmodel model file (invalid JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path} is not a perfmodel model file (format {FORMAT!r} expected)")
    if doc.get("format_version") not in READABLE_FORMAT_VERSIONS:
        raise ValueError(f"{path} has format_version {doc.get('format_version')!r}; this "
                         f"perfmodel reads {', '.join(map(str, READABLE_FORMAT_VERSIONS))}: "
                         f"refit with `perfmodel fit`")
    schema = doc.get("feature_schema", {})
    if schema.get("version") != FEATURE_SCHEMA_VERSION or list(schema.get("base", [])) != list(
            BASE_FEATURES):
        raise ValueError(f"{path} was made for feature schema {schema.get('version')!r} "
                         f"with other features; this perfmodel uses schema "
                         f"{FEATURE_SCHEMA_VERSION}: refit with `perfmodel fit`")
    expected = _schema_hash(list(schema.get("kernels", [])), list(schema.get("params", [])))
    if doc.get("schema_hash") != expected:
        raise ValueError(f"{path}: feature-schema hash mismatch (file {doc.get('schema_hash')!r}"
                         f", computed {expected!r}): the file was edited or made for another "
                         f"schema; refit with `perfmodel fit`")
    return doc


def load_calibration(path: str | Path) -> dict[str, Any]:
    """The roofline factors stored in a model file (validated like a full load)."""
    doc = _read(path)
    return {"factors": doc["roofline"]["factors"], "source": doc["roofline"]["source"]}


_DEFAULTS_ONLY: list[dict] = [{}]


def _common_configs(rows: pd.DataFrame, limit: int = 16) -> dict[str, list[dict]]:
    """Most frequent parameter sets per kernel: the candidates ``best_config`` ranks for a
    kernel whose defaults perfmodel does not resolve (:meth:`LearnedModel.candidate_configs`)."""
    out: dict[str, list[dict]] = {}
    for kernel, g in rows.groupby(rows["kernel"].astype(str)):
        counts = g["params"].fillna("{}").astype(str).value_counts()
        configs = []
        for text in counts.index[:limit]:
            try:
                configs.append(json.loads(text) if text else {})
            except ValueError:
                continue
        out[str(kernel)] = configs or [{}]
    return out


def _default_params(rec: Mapping[str, Any]) -> dict[str, int] | None:
    """The parameters the kernel of row ``rec`` resolves by default for its problem, as a
    sweep of its defaults records them (this machine's ISA); None for a kernel whose
    defaults perfmodel does not resolve (peers, BLAS: no parameters) or an incomplete row."""
    kernel = str(rec.get("kernel"))
    try:
        if kernel == _SPMM_KERNEL and rec.get("op") == "spmm":
            from kernels_c.spmm import default_params
            return default_params(int(rec["m"]), int(rec["k"]), int(rec["n"]),
                                  float(rec["density"]))
        if kernel == _DIRECT_KERNEL:
            from kernels_c.conv import default_params as conv_defaults
            geo = ConvGeometry(*(int(_num(rec, key, default)) for key, default in (
                ("c", math.nan), ("h", math.nan), ("w", math.nan), ("o", math.nan),
                ("r", math.nan), ("s", math.nan), ("stride", 1), ("padding", 0),
                ("groups", 1))))
            return conv_defaults(geo, None, float(rec["density"]))
        if kernel in _QGEMM_KERNELS:
            from kernels_c.quant import default_params as qgemm_defaults
            out = qgemm_defaults(int(rec["m"]), int(rec["n"]), int(rec["k"]))
            if kernel == "gemm_s4s8_acc32":   # QuantizedWeight.from_float's default
                out["group_size"] = int(_num(rec, "group_size", 64))
            return out
    except (KeyError, TypeError, ValueError):
        return None
    return None


def fit_and_save(results: pd.DataFrame, path: str | Path, *, cv_folds: int = 3,
                 **hyper: Any) -> LearnedModel:
    """Fit on ``results``, estimate the uncertainty out of sample, save JSON to ``path``.

    The saved ``log_uncertainty`` is the 68th percentile of |log(predicted / measured)| over
    leave-shape-out folds (in-sample when there are too few shapes);
    ``log_uncertainty_probed`` the same for predictions corrected by measurements of the
    shape (``perfmodel.models._evaluate.probed`` at sparsity 0.5, the probes left out).
    """
    from ._evaluate import out_of_fold, probed

    rows = ok_rows(results).reset_index(drop=True)
    model = LearnedModel(**hyper).fit(rows)
    extra: dict[str, Any] = {"configs": _common_configs(rows)}
    if cv_folds >= 2 and len(rows) >= 50:
        pred = out_of_fold(lambda: LearnedModel(**hyper), rows, "leave-shape-out",
                           n_folds=cv_folds)
        measured = rows["median_s"].to_numpy()
        ok = np.isfinite(pred)
        if ok.any():
            model.log_uncertainty_ = float(np.quantile(np.abs(np.log(
                pred[ok] / measured[ok])), 0.68))
        # the same with each held-out shape probed at sparsity 0.5 (best_config's answers
        # for a shape the store has measured at other sparsities), over the other rows
        fixed, was_probe = probed(rows, pred, 0.5)
        ok &= ~was_probe
        if ok.any():
            extra["log_uncertainty_probed"] = float(np.quantile(np.abs(np.log(
                fixed[ok] / measured[ok])), 0.68))
    model.save(path, extra=extra)
    model.metadata_ = extra
    return model
