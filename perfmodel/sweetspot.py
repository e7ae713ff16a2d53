"""Park et al.'s sweet spot of sparsity for a layer on a target (ICLR 2017, section 3).

With C the dense operation count, F the dense compute ceiling, B the bandwidth of the level
the layer's working set streams from, S_A the activation bytes (input + output), S_W the
dense weight bytes and x the nonzero fraction of the weights::

    t_dense  = max(C / F, (S_A + S_W) / B)          (Park et al.: C / F, compute-bound)
    t_sparse = max(alpha x C / F, (S_A + beta x S_W) / B)

alpha is the sparse kernel's compute overhead per useful operation, beta the bytes per
nonzero relative to a dense weight (value + index). Sparse beats dense below
``x_lower`` (where t_sparse = t_dense) and is bandwidth-bound below ``x_upper`` (where its
two terms meet): pruning beyond ``1 - x_upper`` buys no more speed. As sparsities (1 - x):
``lower = 1 - x_lower`` ≤ useful sparsity ≤ ``upper = 1 - x_upper``.

For ``host`` alpha, F and B come from the roofline calibrated on this machine's measurements
when there are any; otherwise (and for every other target) from the target description.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .models._calibrate import roofline_for
from .models._problem import SPARSE_OPS, normalize
from .models.roofline import _capacities, footprint

__all__ = ["SweetSpot", "sweet_spot"]


@dataclass(frozen=True)
class SweetSpot:
    """Sweet spot of one layer on one target.

    Attributes
    ----------
    lower : float or None
        Sparsity above which the sparse kernel beats dense (None: never, up to 0.999).
    upper : float
        Sparsity beyond which the sparse kernel is bandwidth-bound (more pruning buys
        nothing). ``upper < lower`` means the sparse kernel is bandwidth-bound before it
        wins: the range is empty.
    curve : pandas.Series
        Predicted speedup over dense (t_dense / t_sparse), indexed by sparsity.
    alpha, beta, flops_per_s, bytes_per_s : float
        The model's parameters (F in FLOP/s, B in B/s); ``level`` names B's memory level.
    source : str
        ``measured`` when alpha/F/B were calibrated on this machine, ``given`` when alpha
        was passed in, else ``description``.
    """

    op: str
    target: str
    lower: float | None
    upper: float
    curve: pd.Series
    alpha: float
    beta: float
    flops_per_s: float
    bytes_per_s: float
    level: str
    source: str

    @property
    def empty(self) -> bool:
        return self.lower is None or self.upper < self.lower

    def speedup(self, sparsity: float) -> float:
        """Predicted speedup over dense at ``sparsity`` (Park's model)."""
        return float(self._t_dense / self._t_sparse(1.0 - sparsity))

    # the two model times, kept for speedup(); set by sweet_spot()
    _c: float = 0.0
    _s_a: float = 0.0
    _s_w: float = 0.0

    @property
    def _t_dense(self) -> float:
        return max(self._c / self.flops_per_s, (self._s_a + self._s_w) / self.bytes_per_s)

    def _t_sparse(self, x: Any) -> Any:
        return np.maximum(self.alpha * x * self._c / self.flops_per_s,
                          (self._s_a + self.beta * x * self._s_w) / self.bytes_per_s)


def _parameters(op: str, p: dict, target: str, store: Any, threads: int | None):
    model = roofline_for(target, store, threads)
    t = model._target(threads)
    f = model.factors_
    flops = t.peak("fp32").value / f["gemm"]["compute"]
    family = "spmm" if op == "spmm" else "sparse_conv"
    alpha = model.park_alpha(family)
    caps = _capacities(t)
    ws = footprint("gemm", p) if op == "spmm" else footprint("im2col_conv", p)
    # the furthest level the working set spills into (warm cache), else the closest
    levels = [lv for lv, z in caps.items() if z <= 2048 or ws > z / 2]
    level = levels[-1] if levels else next(iter(caps))
    # B is the level's measured (STREAM-like) bandwidth, as in Park et al.
    bw = next(lv.bandwidth.value for lv in t.memory if lv.name == level)
    measured = "park_alpha" in f[family]
    return alpha, t.model["sparse_beta"].value, flops, bw, level, (
        "measured" if measured else "description")


def sweet_spot(op: str, *, target: str = "host", store: Any = None,
               threads: int | None = None, points: int = 100, alpha: float | None = None,
               **shape: Any) -> SweetSpot:
    """Park et al.'s sweet spot for a layer (see the module docstring).

    Parameters
    ----------
    op : {"spmm", "gemm", "conv2d"}
        ``spmm``/``gemm``: weights A (m x k, pruned) times activations B (k x n).
        ``conv2d``: weights o x c x r x s over an input batch x c x h x w.
    target : str
        ``"host"`` or a catalog/user target (``perfmodel targets``).
    store : path, URL or Store, optional
        Where host measurements are read for calibration (default: the default store).
    alpha : float, optional
        Park et al.'s alpha to use instead of the calibrated or described one (a sparse
        kernel measured elsewhere, or a what-if); ``source`` is then ``given``.
    **shape
        m, n, k or c, h, w, o, r, s (stride, padding, batch optional); ``sparsity`` is
        accepted and ignored (the sweet spot spans all sparsities).

    Returns
    -------
    SweetSpot with ``.lower``, ``.upper`` (sparsities) and ``.curve``.
    """
    if op not in SPARSE_OPS:
        raise ValueError(f"sweet_spot needs a prunable op; valid: {list(SPARSE_OPS)} "
                         f"(got {op!r})")
    shape = {**shape, "sparsity": 0.0}
    p = normalize(op, shape)
    op = p["op"]
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, numbers.Real)
                              or not 0.0 < alpha < 1e6):
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")
    fitted_alpha, beta, flops, bw, level, source = _parameters(op, p, target, store, threads)
    if alpha is None:
        alpha = fitted_alpha
    else:
        source = "given"
    c = 2.0 * p["m"] * p["n"] * p["k"]
    s_w = p["m"] * p["k"] * 4.0
    if op == "spmm":
        s_a = (p["k"] * p["n"] + p["m"] * p["n"]) * 4.0
    else:
        s_a = (p["c"] * p["h"] * p["w"] * p["batch"] + p["m"] * p["n"]) * 4.0
    t_dense = max(c / flops, (s_a + s_w) / bw)
    # x_lower: t_sparse(x) = t_dense, both terms increasing in x
    x_comp = t_dense * flops / (alpha * c)
    x_mem = (t_dense * bw - s_a) / (beta * s_w)
    x_lower = min(x_comp, x_mem)
    lower = None if x_lower <= 1e-3 else float(max(0.0, 1.0 - min(x_lower, 1.0)))
    # x_upper: alpha x C / F = (S_A + beta x S_W) / B
    denom = alpha * c / flops - beta * s_w / bw
    x_upper = (s_a / bw) / denom if denom > 0 else np.inf
    upper = float(min(1.0, max(0.0, 1.0 - x_upper)))
    grid = np.round(np.linspace(0.0, 0.99, points), 6)
    spot = SweetSpot(op=op, target=target, lower=lower, upper=upper,
                     curve=pd.Series(np.zeros_like(grid), index=pd.Index(grid, name="sparsity"),
                                     name="speedup"),
                     alpha=float(alpha), beta=float(beta), flops_per_s=float(flops),
                     bytes_per_s=float(bw), level=level, source=source,
                     _c=c, _s_a=s_a, _s_w=s_w)
    spot.curve[:] = spot._t_dense / spot._t_sparse(1.0 - grid)
    return spot
