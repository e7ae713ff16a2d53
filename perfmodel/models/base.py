"""The contract every performance model follows (scikit-learn style).

``__init__`` only stores keyword-only arguments; ``fit(results)`` validates, sets fitted
attributes ending in ``_`` and returns ``self``; ``predict(rows)`` checks that the model is
fitted and returns predicted seconds. ``rows`` and ``results`` are pandas DataFrames with the
results-store columns (op, kernel, params, threads, m, n, k, c, h, w, o, r, s, stride,
padding, batch, bits, sparsity, density, nnz; ``median_s`` for training).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import pandas as pd

__all__ = ["NotFittedError", "PerfModel", "check_is_fitted", "ok_rows"]


class NotFittedError(ValueError):
    """``predict`` before ``fit``."""


def check_is_fitted(model: PerfModel, attribute: str) -> None:
    if getattr(model, attribute, None) is None:
        raise NotFittedError(f"{type(model).__name__} is not fitted: call fit(results) "
                             f"first or load a fitted model")


def ok_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Training rows: status ok, positive finite median time, known op and kernel."""
    need = {"op", "kernel", "median_s"}
    missing = need - set(results.columns)
    if missing:
        raise ValueError(f"results lack columns {sorted(missing)}; expected the results-store "
                         f"columns (perfmodel.load_results())")
    keep = np.isfinite(results["median_s"].astype(float)) & (results["median_s"] > 0)
    if "status" in results.columns:
        keep &= results["status"] == "ok"
    return results.loc[keep].reset_index(drop=True)


class PerfModel(ABC):
    """A run-time predictor for (problem, kernel, parameters) rows."""

    #: registry name (``perfmodel evaluate --model NAME``)
    name: str = ""

    @abstractmethod
    def fit(self, results: pd.DataFrame) -> PerfModel:
        """Learn from measured rows; returns ``self``."""

    @abstractmethod
    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        """Predicted seconds, ndarray (len(rows),), float64."""
