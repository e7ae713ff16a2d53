"""Measure one layer once, so that ``best_config`` corrects the model for it.

Held out, the learned model's error on a shape is mostly one factor per kernel that every
sparsity of the shape shares, and that factor is what moves the predicted crossover
(docs/models.md, "Twenty-seventh session"). One measurement of the shape at one sparsity —
the dense baseline and the sparse kernel with its default parameters — removes most of it:
with a probe at 0.5, 88 % of held-out crossovers are within +-0.05 instead of 48 %.
:func:`probe` takes that measurement into the store (a one-point sweep; nothing is measured
twice), and every later ``best_config`` of the shape, at any sparsity, is corrected by it
(``perfmodel/models/_probe.py``). ``perfmodel best ... --probe`` does both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .models._problem import CANDIDATES, SHAPE_KEYS, normalize

if TYPE_CHECKING:
    from ._sweep import SweepSummary

__all__ = ["probe", "probe_spec"]

#: the sparsity a probe measures by default: most crossovers lie at 0.2-0.6, and a probe
#: at 0.5 placed more held-out crossovers within +-0.05 than one at 0.3, 0.7 or 0.9
DEFAULT_SPARSITY = 0.5


def probe_spec(problems: Sequence[tuple[str, Mapping[str, Any]]], *,
               threads: int | None = None, sparsity: float = DEFAULT_SPARSITY
               ) -> dict[str, Any]:
    """The sweep spec (``perfmodel.sweep``) that probes shapes at one sparsity.

    ``problems``: (op, shape) pairs as ``best_config`` takes them, each shape without its
    sparsity (the probe measures ``sparsity``). ``threads`` defaults to every core, as
    ``best_config``'s does. Each shape gets ``best_config``'s candidate kernels for its op
    (sparse and dense) with their default parameters, warm cache, random sparsity.

    Raises
    ------
    ValueError
        ``qgemm`` (its answers have no sparsity to correct across), or what
        ``best_config`` refuses for a shape and the sparsity.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"threads must be an int >= 1 or None, got {threads!r}")
    blocks = []
    for op, shape in problems:
        if op == "qgemm":
            raise ValueError("probing applies to spmm, gemm and conv2d: a qgemm answer has "
                             "no sparsity for a probe to carry over")
        p = normalize(op, {**shape, "sparsity": sparsity})
        required, optional = SHAPE_KEYS[p["op"]]
        sparse, dense = CANDIDATES[p["op"]]
        block = {"op": p["op"], "kernels": [*sparse, *dense],
                 "shapes": [{k: int(p[k]) for k in (*required, *optional) if k != "sparsity"}],
                 "sparsities": [float(p["sparsity"])]}
        if block not in blocks:     # networks repeat layer shapes
            blocks.append(block)
    if not blocks:
        raise ValueError("nothing to probe: no problems given")
    return {"name": "probe", "threads": [threads or (os.cpu_count() or 1)], "block": blocks}


def probe(op: str, *, threads: int | None = None, sparsity: float = DEFAULT_SPARSITY,
          store: Any = None, passes: int = 1, progress: bool | None = None,
          **shape: Any) -> SweepSummary:
    """Measure a shape at one sparsity into ``store`` (default: the default store file).

    ``op``, ``shape`` (without its sparsity) and ``threads`` as for ``best_config``;
    ``passes`` and ``progress`` as for ``perfmodel.sweep`` (on a busy machine, 3 passes
    keep the fastest of three medians). See :func:`probe_spec` for what is measured.

    Returns
    -------
    SweepSummary of the sweep (points already stored are not measured again).
    """
    from ._sweep import sweep

    spec = probe_spec([(op, shape)], threads=threads, sparsity=sparsity)
    return sweep(spec, store, passes=passes, progress=progress)
