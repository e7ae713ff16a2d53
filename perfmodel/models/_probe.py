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


class ShapeProbes:
    """A shape's measured / predicted log ratios, grouped for :meth:`factors` (built once
    per shape: ``best_config`` asks one shape at many sparsities).

    Parameters are per row (same threads and cache state): kernel name, whether it is dense,
    its sparsity, measured and predicted seconds. Rows with non-positive or non-finite times
    are not used.
    """

    def __init__(self, kernels: Sequence[str], dense: Sequence[bool], sparsity: Sequence[float],
                 measured_s: Sequence[float], predicted_s: Sequence[float]) -> None:
        logs: dict[str, dict[float | None, list[tuple[int, float]]]] = {}
        for i, (k, d, s, m, p) in enumerate(zip(kernels, dense, sparsity, measured_s,
                                                predicted_s, strict=True)):
            if m > 0 and p > 0 and math.isfinite(m) and math.isfinite(p):
                # dense kernels have no sparsity: all their rows are one group
                group = logs.setdefault(str(k), {}).setdefault(None if d else float(s), [])
                group.append((i, math.log(m / p)))
        #: kernel -> sparsity (None: dense) -> (factor, rows it comes from)
        self.groups = {k: {s: (math.exp(statistics.median(v for _, v in rows)),
                               [i for i, _ in rows]) for s, rows in by.items()}
                       for k, by in logs.items()}

    def factors(self, near: float) -> tuple[dict[str, float], list[int]]:
        """Per kernel, the factor at the measured sparsity nearest ``near`` (dense kernels:
        from all their rows), and the rows used."""
        factors, used = {}, []
        for kernel, by in self.groups.items():
            s = None if None in by else min(by, key=lambda v: (abs(v - near), v))
            factors[kernel], rows = by[s]
            used += rows
        return factors, used


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
    factors, rows = ShapeProbes(kernels, dense, sparsity, measured_s, predicted_s).factors(near)
    used = np.zeros(len(kernels), dtype=bool)
    used[rows] = True
    return factors, used
