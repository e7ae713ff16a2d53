"""Hierarchical roofline model of every kernel family the suite measures.

For a kernel on a problem, :func:`work` counts operations (1 MAC = 2) and, for each memory
level with a bandwidth, the bytes that cross it: the traffic of a level depends on the
capacity of the levels closer to the core (the working set that fits there is reused).

    time = max(a_family * ops / F,  max over levels  b_family * bytes_level / B_level)

``F`` is the target's dense ceiling for the dtype, ``B_level`` the level bandwidth. The
factors ``a`` (compute) and ``b`` (bandwidth) start from the target description
(``a = 1 / dense_efficiency`` for dense kernels, ``sparse_alpha / dense_efficiency`` for
sparse ones: Park et al.'s alpha) and are calibrated from measurements by :meth:`fit`
(``calibration_source_`` says which).

Byte model per family (s = operand bytes; Z = capacity closer to the level, per core for
private L1/L2):

- spmm (CSR A m x k with nnz, dense B k x n, C m x n): A = nnz (s_val + s_idx) + (m + 1) 4;
  B between k n s (reused from cache) and nnz n s (no reuse), interpolated by how much of
  a tiled B panel (k x 64 columns) fits in Z/2; C = m n s written + write-allocate (read)
  beyond the registers.
- sparse direct conv: as spmm on the GEMM view, but B is the input tensor c h w batch s
  (no im2col copy), reused while a 32-channel block of it fits in Z/2; without reuse each
  nonzero streams an output-sized input window.
- dense GEMM: compulsory A, B, C plus the blocked re-reads 2 m n k s / sqrt(Z / s).
- im2col conv: dense GEMM on the GEMM view plus the im2col buffer (written, allocated, read).
- int8 / int4 GEMM: dense GEMM with 1-byte activations, 1- or 0.5-byte weights, int32 out.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from ..targets import Target, load_target
from ._problem import from_row
from .base import PerfModel, check_is_fitted, ok_rows

__all__ = ["FAMILIES", "RooflineModel", "Work", "family_of", "footprint", "work"]

#: kernel family → (dtype of the compute ceiling, sparse?)
FAMILIES: dict[str, tuple[str, bool]] = {
    "spmm": ("fp32", True), "sparse_conv": ("fp32", True), "gemm": ("fp32", False),
    "im2col_conv": ("fp32", False), "int8_gemm": ("int8", False),
    "int4_gemm": ("int4", False),
}
_REGISTER_BYTES = 2048.0     # what a core keeps in registers: the "capacity" before L1
_S = 4.0                     # fp32 / int32 bytes


@functools.lru_cache(maxsize=256)
def family_of(kernel: str, op: str) -> str:
    """Kernel family from the kernel name (contract names; peers by keyword)."""
    name = kernel.lower()
    if "s4" in name or "int4" in name:
        return "int4_gemm"
    if "u8s8" in name or "int8" in name or "qlinear" in name or "quantized" in name:
        return "int8_gemm"
    if op == "conv2d":
        return "sparse_conv" if ("sparse" in name or "csr" in name) else "im2col_conv"
    if "csr" in name or "sparse" in name or name.startswith("spmm"):
        return "spmm"
    return "gemm"


@dataclass(frozen=True)
class Work:
    """Operations and per-level traffic of one kernel call."""

    family: str
    dtype: str
    ops: float
    bytes: Mapping[str, float]      # level name → bytes crossing that level

    def intensity(self, level: str) -> float:
        return self.ops / max(self.bytes[level], 1.0)


def _gemm_bytes(m: float, n: float, k: float, sa: float, sb: float, sc: float,
                z: float) -> float:
    compulsory = m * k * sa + k * n * sb + 2.0 * m * n * sc
    s = max(sa, sb)
    blocked = 2.0 * m * n * k * s / math.sqrt(max(z / s, 1.0))
    return max(compulsory, blocked)


def _reuse(ws: float, z: float) -> float:
    """Fraction of re-reads that miss: 0 when ``ws`` fits in half of ``z``, → 1 beyond."""
    return 0.0 if ws <= z / 2 else min(1.0, 1.0 - z / (2.0 * ws))


def footprint(family: str, p: Mapping[str, Any]) -> float:
    """Bytes of every operand the kernel touches (its working set)."""
    m, n, k, nnz = float(p["m"]), float(p["n"]), float(p["k"]), float(p["nnz"])
    if family == "spmm":
        return nnz * (_S + 4.0) + (m + 1.0) * 4.0 + (k + m) * n * _S
    if family == "sparse_conv":
        return (nnz * (_S + 4.0) + (m + 1.0) * 4.0
                + (float(p["c"]) * p["h"] * p["w"] * p["batch"] + m * n) * _S)
    if family == "im2col_conv":
        return (m * k + 2.0 * k * n + m * n) * _S
    sb = {"int8_gemm": 1.0, "int4_gemm": 0.5}.get(family, _S)
    sa = _S if family == "gemm" else 1.0
    return m * k * sa + k * n * sb + m * n * _S


def _traffic(family: str, p: Mapping[str, Any], z: float, ws: float) -> float:
    """Bytes crossing the level below capacity ``z``, for working set ``ws`` (bytes)."""
    # warm cache (the harness's default): a working set that fits in half of the capacity
    # closer to the core never crosses this level; beyond, a growing share of it does
    # (no cache keeps all of a working set its size: conflicts, other tenants, prefetch)
    if z <= _REGISTER_BYTES:
        return _streamed(family, p, z)
    miss = _reuse(ws, z)
    return miss * _streamed(family, p, z) if miss > 0.0 else 0.0


def _streamed(family: str, p: Mapping[str, Any], z: float) -> float:
    """Bytes crossing a level below capacity ``z`` when the working set is not cached."""
    m, n, k, nnz = float(p["m"]), float(p["n"]), float(p["k"]), float(p["nnz"])
    if family in ("spmm", "sparse_conv"):
        a_bytes = nnz * (_S + 4.0) + (m + 1.0) * 4.0
        if family == "spmm":
            touched = 1.0 - (1.0 - min(max(nnz / (m * k), 0.0), 1.0)) ** m
            b_min = k * n * _S * touched
        else:
            b_min = float(p["c"]) * p["h"] * p["w"] * p["batch"] * _S
        b_max = max(nnz * n * _S, b_min)
        # tuned kernels tile B so that one panel is reused from cache: a K x 64-column
        # panel for spmm (n_tile), 32 input channels of the input for the direct conv
        # (c_block); re-reads miss only when even that panel does not fit
        panel = (k * min(n, 64.0) * _S if family == "spmm"
                 else b_min * min(1.0, 32.0 / max(float(p["c"]), 1.0)))
        b_bytes = b_min + (b_max - b_min) * _reuse(panel, z)
        c_bytes = m * n * _S * (1.0 if z <= _REGISTER_BYTES else 2.0)
        return a_bytes + b_bytes + c_bytes
    if family == "gemm":
        return _gemm_bytes(m, n, k, _S, _S, _S, z)
    if family == "im2col_conv":
        col = k * n * _S
        inp = float(p["c"]) * p["h"] * p["w"] * p["batch"] * _S
        # the column buffer is written, read back by the GEMM (and allocated on write)
        # beyond the capacity it fits in
        col_traffic = col * (1.0 + 2.0 * (col > z / 2))
        return _gemm_bytes(m, n, k, _S, _S, _S, z) + inp + col_traffic
    if family == "int8_gemm":
        return _gemm_bytes(m, n, k, 1.0, 1.0, _S, z)
    if family == "int4_gemm":
        return _gemm_bytes(m, n, k, 1.0, 0.5, _S, z)
    raise ValueError(f"unknown kernel family {family!r}; valid: {sorted(FAMILIES)}")


def _capacities(target: Target) -> Mapping[str, float]:
    """Capacity closer to each bandwidth level (bytes, per core for private caches)."""
    return _levels(target)[0]


def _bandwidths(target: Target) -> Mapping[str, float]:
    """Bandwidth of each level that has one (bytes/s)."""
    return _levels(target)[1]


def _levels(target: Target) -> tuple[Mapping[str, float], Mapping[str, float]]:
    """:func:`_capacities` and :func:`_bandwidths`, kept per target object (read-only;
    the entry holds the target, so its id is not reused): every row's work asks."""
    hit = _KEPT_LEVELS.get(id(target))
    if hit is None or hit[0] is not target:
        if len(_KEPT_LEVELS) > 64:
            _KEPT_LEVELS.clear()
        hit = _KEPT_LEVELS[id(target)] = (
            target, MappingProxyType(_level_capacities(target)),
            MappingProxyType({lv.name: lv.bandwidth.value for lv in target.memory
                              if lv.bandwidth is not None}))
    return hit[1], hit[2]


_KEPT_LEVELS: dict[int, tuple[Target, Mapping[str, float], Mapping[str, float]]] = {}


def _level_capacities(target: Target) -> dict[str, float]:
    cores = max(target.cores.value, 1.0)
    caps, closer = {}, _REGISTER_BYTES
    for lv in target.memory:
        if lv.bandwidth is not None:
            caps[lv.name] = closer
        if lv.size is not None:
            private = target.device == "cpu" and lv.name in ("L1", "L2")
            closer = lv.size.value / cores if private else lv.size.value
    return caps


def work(kernel: str, problem: Mapping[str, Any], target: Target) -> Work:
    """Operations and bytes per bandwidth level of ``kernel`` on ``problem``.

    ``problem`` is a normalized problem (``perfmodel.models._problem.normalize`` or
    ``from_row``): the GEMM view m, n, k plus nnz, and conv dimensions for conv2d.
    """
    family = family_of(kernel, problem["op"])
    dtype, sparse = FAMILIES[family]
    macs = float(problem["nnz"] if sparse else problem["m"] * problem["k"]) * problem["n"]
    ws = footprint(family, problem)
    return Work(family, dtype, 2.0 * macs, {lv: _traffic(family, problem, z, ws)
                                            for lv, z in _capacities(target).items()})


def _default_factors(target: Target) -> dict[str, dict[str, float]]:
    eta = target.model["dense_efficiency"].value
    alpha = target.model["sparse_alpha"].value
    out = {}
    for fam, (_dtype, sparse) in FAMILIES.items():
        a = (alpha if sparse else 1.0) / eta
        if fam == "int4_gemm":
            a *= 2.0   # nibble unpacking costs about one extra instruction per MAC pair
        out[fam] = {"compute": a, "memory": 1.0}
    return out


class RooflineModel(PerfModel):
    """Roofline predictor; calibrate with :meth:`fit` or use the description's defaults.

    Parameters
    ----------
    target : str or Target
        Machine the predictions are for (``"host"``: this machine, per thread count).
    """

    name = "roofline"

    def __init__(self, *, target: str | Target = "host") -> None:
        self.target = target

    # -- helpers ---------------------------------------------------------------------
    def _target(self, threads: int | None) -> Target:
        if isinstance(self.target, Target):
            return self.target
        # memoized per instance: models are rebuilt when their files change, and a
        # load_target call (a stat of the description) per prediction adds up in queries
        memo = self.__dict__.setdefault("_targets", {})
        if threads not in memo:
            memo[threads] = load_target(self.target,
                                        threads=threads if self.target == "host" else None)
        return memo[threads]

    def _terms(self, kernel: str, problem: Mapping[str, Any], threads: int | None
               ) -> tuple[str, float, dict[str, float]]:
        t = self._target(threads)
        w = work(kernel, problem, t)
        t_comp = w.ops / t.peak(w.dtype).value
        bandwidth = _bandwidths(t)
        t_mem = {lv: b / bandwidth[lv] for lv, b in w.bytes.items()}
        return w.family, t_comp, t_mem

    # -- contract --------------------------------------------------------------------
    def fit(self, results: pd.DataFrame) -> RooflineModel:
        """Calibrate compute and bandwidth factors from measured rows.

        For each family: ``a`` = median of measured / compute-bound time over the rows the
        uncalibrated model calls compute-bound, ``b`` likewise over memory-bound rows. A
        family (or regime) without rows keeps the description's default. Each measured
        kernel also gets its own factors (``factors_["kernel:<name>"]``), used for it.
        """
        rows = ok_rows(results)
        probe = self._target(None)
        factors = _default_factors(probe)
        source = {fam: "description" for fam in factors}
        acc: dict[str, dict[str, list[float]]] = {}
        per_kernel: dict[tuple[str, str], dict[str, list[float]]] = {}
        for rec in rows.to_dict("records"):
            threads = _threads(rec)
            p = from_row(rec)
            fam, t_comp, t_mem = self._terms(str(rec["kernel"]), p, threads)
            t_m = max(t_mem.values())
            meas = float(rec["median_s"])
            regime, ratio = (("compute", meas / t_comp) if t_comp >= t_m
                             else ("memory", meas / t_m))
            acc.setdefault(fam, {"compute": [], "memory": []})[regime].append(ratio)
            per_kernel.setdefault((fam, str(rec["kernel"])),
                                  {"compute": [], "memory": []})[regime].append(ratio)

        counts = {}
        for fam, bucket in acc.items():
            counts[fam] = {k: len(v) for k, v in bucket.items()}
            for regime, ratios in bucket.items():
                if ratios:
                    factors[fam][regime] = float(np.median(ratios))
                    source[fam] = "measured"
            # a memory-only family still needs a compute factor no better than measured
            if not bucket["compute"] and bucket["memory"]:
                factors[fam]["compute"] = max(factors[fam]["compute"],
                                              factors[fam]["memory"] * 0.5)
        # kernels of one family differ (our CSR kernel vs scipy's): each measured kernel
        # gets its own factors, falling back to its family's for a regime it was not seen in
        for (fam, kernel), bucket in per_kernel.items():
            factors[f"kernel:{kernel}"] = {
                regime: float(np.median(ratios)) if ratios else factors[fam][regime]
                for regime, ratios in bucket.items()}
        for fam, alpha in _park_alphas(rows).items():
            factors[fam]["park_alpha"] = alpha
        self.factors_ = factors
        self.calibration_source_ = source
        self.counts_ = counts
        return self

    def defaults(self) -> RooflineModel:
        """Use the target description's factors (no measurements); returns ``self``."""
        t = self._target(None)
        self.factors_ = _default_factors(t)
        self.calibration_source_ = {fam: "description" for fam in self.factors_}
        self.counts_ = {}
        return self

    @property
    def alpha_(self) -> float:
        """Sparse compute overhead (Park et al.'s alpha): spmm vs dense GEMM factor."""
        return self.park_alpha("spmm")

    def park_alpha(self, family: str = "spmm") -> float:
        """Park et al.'s alpha for a sparse family: measured time per useful operation over
        dense GEMM's (calibrated), else the ratio of the compute factors (description)."""
        check_is_fitted(self, "factors_")
        f = self.factors_[family]
        if "park_alpha" in f:
            return float(f["park_alpha"])
        return f["compute"] / self.factors_["gemm"]["compute"]

    def predict_one(self, kernel: str, problem: Mapping[str, Any],
                    threads: int | None = None) -> float:
        """Predicted seconds for one normalized problem."""
        check_is_fitted(self, "factors_")
        fam, t_comp, t_mem = self._terms(kernel, problem, threads)
        f = self.factors_.get(f"kernel:{kernel}") or self.factors_[fam]
        return max(f["compute"] * t_comp, f["memory"] * max(t_mem.values()))

    def bound(self, kernel: str, problem: Mapping[str, Any], threads: int | None = None
              ) -> float:
        """Uncalibrated roofline bound (seconds): the hybrid model's reference time."""
        _, t_comp, t_mem = self._terms(kernel, problem, threads)
        return max(t_comp, max(t_mem.values()))

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "factors_")
        return np.array([self.predict_one(str(r["kernel"]), from_row(r), _threads(r))
                         for r in rows.to_dict("records")], dtype=np.float64)

    def analyze(self, kernel: str, problem: Mapping[str, Any], threads: int | None = None
                ) -> dict[str, Any]:
        """Roofline breakdown: ops, bytes and intensity per level, the binding ceiling."""
        t = self._target(threads)
        w = work(kernel, problem, t)
        fam, t_comp, t_mem = self._terms(kernel, problem, threads)
        factors = self.factors_ if getattr(self, "factors_", None) else _default_factors(t)
        f = factors.get(f"kernel:{kernel}") or factors[fam]
        times = {"compute": f["compute"] * t_comp,
                 **{lv: f["memory"] * v for lv, v in t_mem.items()}}
        binding = max(times, key=times.get)
        return {"family": fam, "dtype": w.dtype, "ops": w.ops, "bytes": dict(w.bytes),
                "intensity": {lv: w.intensity(lv) for lv in w.bytes}, "times": times,
                "bound_by": binding, "seconds": times[binding]}


def _threads(rec: Mapping[str, Any]) -> int | None:
    v = rec.get("threads")
    try:
        v = int(v)
    except (TypeError, ValueError):
        return None
    return v if v > 0 else None


_DENSE_OF = {"spmm": "gemm", "sparse_conv": "im2col_conv"}


def _is_peer(op: str, kernel: str) -> bool:
    """Whether ``kernel`` is another library's (its KernelSpec says so), not ours."""
    from ..ops import OPS

    spec = OPS[op].kernels.get(kernel) if op in OPS else None
    return bool(spec and spec.peer)


def _park_alphas(rows: pd.DataFrame) -> dict[str, float]:
    """Park et al.'s alpha per sparse family, measured: t_sparse / (x t_dense).

    Per problem (shape, threads, cache, sparsity) the best configuration of the suite's own
    sparse kernel (peers excluded) against the best dense time of the same shape, at
    moderate sparsity (nonzero fraction x >= 0.1, where their model is compute-bound);
    the median over problems.
    """
    dense: dict[tuple, float] = {}
    sparse: dict[tuple, float] = {}
    for rec in rows.to_dict("records"):
        p = from_row(rec)
        kernel = str(rec["kernel"])
        fam = family_of(kernel, p["op"])
        ctx = (p["op"], p["m"], p["n"], p["k"], _threads(rec), str(rec.get("cache") or "warm"))
        t = float(rec["median_s"])
        if fam in _DENSE_OF.values():
            dense[(fam, *ctx)] = min(dense.get((fam, *ctx), math.inf), t)
        elif fam in _DENSE_OF and not _is_peer(p["op"], kernel) and p["density"] >= 0.1:
            key = (fam, *ctx, round(p["density"], 4), str(rec.get("pattern") or "random"))
            sparse[key] = min(sparse.get(key, math.inf), t)
    ratios: dict[str, list[float]] = {}
    for (fam, *rest), t in sparse.items():
        ctx, density = tuple(rest[:6]), rest[6]
        td = dense.get((_DENSE_OF[fam], *ctx))
        if td:
            ratios.setdefault(fam, []).append(t / (density * td))
    return {fam: float(np.median(v)) for fam, v in ratios.items() if v}
