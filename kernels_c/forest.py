"""Sums of regression trees per row (``forest_sum``): the inner loop of the learned model's
prediction in perfmodel, which a query runs over a few dozen rows and a few thousand trees.

The node arrays are validated once, when a :class:`TreeSums` is built, and packed into one
array of 16-byte nodes; each call validates its rows. C walks the rows that share trees
together, down one tree after another; it replaced numpy's level-by-level walk, whose time
was per-call overhead (docs/models.md, "Queries").
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._loader import load
from ._validate import check_dense

_NODE_ARRAYS = {"feature": np.int64, "threshold": np.float64, "left": np.int64,
                "right": np.int64, "missing_left": np.uint8, "is_leaf": np.uint8,
                "value": np.float64}


#: one node as C reads it (``forest_node`` in cdef/forest.h)
_NODE_DTYPE = np.dtype([("value_or_threshold", np.float64), ("feature", np.int16),
                        ("left", np.int16), ("right", np.int16), ("missing_left", np.uint8),
                        ("unused", np.uint8)])
_INT16_MAX = 2**15 - 1


class TreeSums:
    """Regression trees as flat node arrays, summed per row by C.

    Parameters
    ----------
    feature, threshold, left, right, missing_left, is_leaf, value : array-like, (n_nodes,)
        Node ``i`` is a leaf (``is_leaf[i]``, value ``value[i]``) or goes to ``left[i]``
        when ``x[feature[i]] <= threshold[i]``, to ``right[i]`` when greater, and to
        ``left[i]`` for a missing value (NaN) when ``missing_left[i]``, else ``right[i]``.
    roots : array-like of int, (n_roots,)
        Root nodes of every tree; rows name theirs by a slice of this array.

    Raises
    ------
    ValueError
        Arrays of different lengths, a child or root outside the node arrays, a negative
        feature index on an inner node, or a tree with a cycle (a child index not greater
        than its parent's: the exported layout numbers children after their parent).
    """

    def __init__(self, *, feature: ArrayLike, threshold: ArrayLike, left: ArrayLike,
                 right: ArrayLike, missing_left: ArrayLike, is_leaf: ArrayLike,
                 value: ArrayLike, roots: ArrayLike) -> None:
        given = {"feature": feature, "threshold": threshold, "left": left, "right": right,
                 "missing_left": missing_left, "is_leaf": is_leaf, "value": value}
        arrays = {k: np.ascontiguousarray(v, dtype=_NODE_ARRAYS[k]) for k, v in given.items()}
        n = arrays["feature"].size
        for k, v in arrays.items():
            if v.ndim != 1 or v.size != n:
                raise ValueError(f"{k} must be 1-D with {n} nodes (as feature), got shape "
                                 f"{v.shape}")
        self.roots = np.ascontiguousarray(roots, dtype=np.int64)
        if self.roots.ndim != 1 or ((self.roots < 0) | (self.roots >= n)).any():
            raise ValueError(f"roots must be 1-D node indices in [0, {n})")
        inner = np.flatnonzero(arrays["is_leaf"] == 0)
        for k in ("left", "right"):
            child = arrays[k][inner]
            if ((child <= inner) | (child >= n)).any():
                raise ValueError(f"{k} of an inner node must be a later node in [0, {n}) "
                                 f"(children after their parent, no cycles)")
        if (arrays["feature"][inner] < 0).any():
            raise ValueError("feature of an inner node must be >= 0")
        self.n_features = int(arrays["feature"][inner].max(initial=-1)) + 1
        if self.n_features > _INT16_MAX:
            raise ValueError(f"trees may split on at most {_INT16_MAX} features, got "
                             f"{self.n_features}")
        offsets = {k: arrays[k][inner] - inner for k in ("left", "right")}
        if any((v > _INT16_MAX).any() for v in offsets.values()):
            raise ValueError(f"a child more than {_INT16_MAX} nodes after its parent: the "
                             f"packed nodes keep children as 16-bit offsets")
        nodes = np.zeros(n, dtype=_NODE_DTYPE)
        leaf = arrays["is_leaf"] != 0
        nodes["value_or_threshold"] = np.where(leaf, arrays["value"], arrays["threshold"])
        nodes["feature"] = np.where(leaf, -1, arrays["feature"])
        for k in ("left", "right"):
            nodes[k][inner] = offsets[k]
        nodes["missing_left"][inner] = arrays["missing_left"][inner] != 0
        self.n_nodes = n
        self._module = load("forest")
        ffi = self._module.ffi
        self._nodes = nodes          # kept alive: the C buffers below point into them
        self._c_nodes = ffi.from_buffer("forest_node[]", nodes)
        self._c_roots = ffi.from_buffer("int64_t[]", self.roots)

    def sums(self, x: np.ndarray, start: ArrayLike, count: ArrayLike) -> np.ndarray:
        """Per row ``r`` of ``x`` (n_rows x n_features, float64, C-contiguous; NaN =
        missing), the sum of the leaf values of trees ``roots[start[r] : start[r] +
        count[r]]``; shape (n_rows,), float64."""
        x = check_dense(x, np.float64, "x")
        if x.shape[1] < self.n_features:
            raise ValueError(f"x has {x.shape[1]} features, the trees split on feature "
                             f"{self.n_features - 1}")
        start = np.ascontiguousarray(start, dtype=np.int64)
        count = np.ascontiguousarray(count, dtype=np.int64)
        if start.shape != (x.shape[0],) or count.shape != (x.shape[0],):
            raise ValueError(f"start and count must have shape ({x.shape[0]},), got "
                             f"{start.shape} and {count.shape}")
        if ((start < 0) | (count < 0) | (start + count > self.roots.size)).any():
            raise ValueError(f"start / count must select trees within the {self.roots.size} "
                             f"roots")
        # C walks each run of consecutive rows with the same trees down each tree together:
        # rows of one forest side by side read each tree once. Sorted only when some
        # forest's rows are not side by side already (a query lists its rows by kernel)
        order, key = None, start * (self.roots.size + 1) + count
        runs = 1 + np.count_nonzero(key[1:] != key[:-1])
        if runs > 1 and runs > len(set(key.tolist())):
            order = np.argsort(key, kind="stable")
            x, start, count = np.ascontiguousarray(x[order]), start[order], count[order]
        out = np.empty(x.shape[0])
        status = self._module.lib.forest_sum(self._c_args(x, start, count, out))
        if status == -2:
            raise MemoryError(f"forest_sum: no memory for {x.shape[0]} rows")
        if status != 0:
            raise RuntimeError("forest_sum: malformed trees")  # unreachable after the checks
        if order is not None:
            out[order] = out.copy()
        return out

    def _c_args(self, x: np.ndarray, start: np.ndarray, count: np.ndarray, out: np.ndarray
               ) -> object:
        """``forest_sum``'s argument struct for already validated rows: ``x`` C-contiguous
        float64, ``start`` / ``count`` int64 within the roots, ``out`` float64 (n_rows,).
        For :meth:`sums`, and for benchmarks timing the C call alone (the buffers must
        outlive the struct)."""
        ffi = self._module.ffi
        return ffi.new("forest_sum_args *", {
            "n_rows": x.shape[0], "n_features": x.shape[1], "n_nodes": self.n_nodes,
            "n_roots": self.roots.size, "x": ffi.from_buffer("double[]", x),
            "nodes": self._c_nodes, "roots": self._c_roots,
            "row_start": ffi.from_buffer("int64_t[]", start),
            "row_count": ffi.from_buffer("int64_t[]", count),
            "out": ffi.from_buffer("double[]", out),
        })
