"""A shape's measurements as a correction to the model's predictions for that shape.

Held out, the learned model's error on a shape is mostly one factor per kernel that every
sparsity of the shape shares (standard deviation of the log error 0.13 between the direct
convolution's shapes, 0.07 within one, on the standard sweep; docs/models.md, twenty-seventh
session), and it moves the crossover: sparse and dense stay within ~9 % of each other over
±0.05 of sparsity. A few measurements of the shape remove most of it: the dense baseline
(measured once per shape) and each sparse kernel at one sparsity. ``best_config`` corrects
its predictions with the store's measurements of the asked shape at other sparsities, and
``perfmodel evaluate --probe S`` scores what that is worth on held-out shapes.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np


def probe_factors(kernels: Sequence[str], dense: Sequence[bool], sparsity: Sequence[float],
                  measured_s: Sequence[float], predicted_s: Sequence[float],
                  near: float) -> tuple[dict[str, float], np.ndarray]:
    """Measured / predicted time per kernel, from measurements of one shape (same threads
    and cache state).

    Dense kernels use all their rows (they have no sparsity); a sparse kernel uses its rows
    at the measured sparsity nearest ``near``: its error changes with sparsity, and the
    nearest measurement is the best guess there. Each factor is the geometric median
    (median of the log ratios) of the rows it uses. Kernels without a usable row (non-positive
    or non-finite times) get no factor. Also returns the mask of the rows used.
    """
    # plain Python: best_config calls this per query on a shape's few dozen rows
    rows: dict[str, list[tuple[int, bool, float, float]]] = {}
    for i, (k, d, s, m, p) in enumerate(zip(kernels, dense, sparsity, measured_s,
                                            predicted_s, strict=True)):
        if m > 0 and p > 0 and math.isfinite(m) and math.isfinite(p):
            rows.setdefault(str(k), []).append((i, bool(d), float(s), math.log(m / p)))
    factors: dict[str, float] = {}
    used = np.zeros(len(kernels), dtype=bool)
    for name, mine in rows.items():
        if not mine[0][1]:  # a sparse kernel (a kernel's rows are all dense or none)
            nearest = min((abs(s - near), s) for _, _, s, _ in mine)[1]
            mine = [r for r in mine if r[2] == nearest]
        factors[name] = math.exp(statistics.median(r[3] for r in mine))
        used[[r[0] for r in mine]] = True
    return factors, used
