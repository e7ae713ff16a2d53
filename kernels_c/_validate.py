"""Input validation at the Python/C boundary.

Every public kernel entry point checks shapes, dtypes, contiguity and sparse structure here,
before any C code runs, so the C kernels can trust their inputs. Policy: values are never
silently converted between floating/integer types (a hidden copy would distort every
measurement); index arrays of a wider integer type are narrowed to int32 when they fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._memory import aligned_empty

INT32_MAX = np.iinfo(np.int32).max


def check_dense(x: Any, dtype: type, name: str, ndim: int = 2) -> np.ndarray:
    """Return ``x`` as is if it is a C-contiguous ndarray of ``dtype`` with ``ndim`` dims."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype != dtype:
        raise TypeError(
            f"{name} must have dtype {np.dtype(dtype).name}, got {x.dtype}; "
            f"convert with {name}.astype(np.{np.dtype(dtype).name})"
        )
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    if not x.flags.c_contiguous:
        raise ValueError(
            f"{name} must be C-contiguous (got strides {x.strides} for shape {x.shape}); "
            f"pass np.ascontiguousarray({name})"
        )
    return x


def check_out(out: np.ndarray | None, shape: tuple[int, ...], dtype: type,
              inputs: tuple[np.ndarray, ...]) -> np.ndarray:
    """Validate a caller-provided output buffer (or allocate one, cache-line aligned: the
    kernels store whole vectors of C's rows, and a store across two lines costs two; 3-10 %
    of the time of spmm at N = 1280 with K blocks, docs/spmm.md)."""
    if out is None:
        return aligned_empty(int(np.prod(shape)), dtype=dtype).reshape(shape)
    check_dense(out, dtype, "out", ndim=len(shape))
    if out.shape != shape:
        raise ValueError(f"out must have shape {shape}, got {out.shape}")
    if not out.flags.writeable:
        raise ValueError("out must be writeable")
    for arr in inputs:
        if np.shares_memory(out, arr):
            raise ValueError("out must not overlap the inputs")
    return out


def check_threads(threads: int) -> int:
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(f"threads must be an int, got {type(threads).__name__}")
    if not 1 <= threads <= 1024:
        raise ValueError(f"threads must be in [1, 1024], got {threads}")
    return int(threads)


def _index_array(x: np.ndarray, name: str) -> np.ndarray:
    if x.dtype == np.int32 and x.flags.c_contiguous:
        return x
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"CSR {name} must be integers, got {x.dtype}")
    if x.size and (x.max() > INT32_MAX or x.min() < np.iinfo(np.int32).min):
        raise ValueError(f"CSR {name} do not fit in int32 (max {x.max()}); int64 is unsupported")
    return np.ascontiguousarray(x, dtype=np.int32)


def check_csr(a: Any, dtype: type, name: str = "a") -> tuple[np.ndarray, np.ndarray,
                                                              np.ndarray, tuple[int, int]]:
    """Validate a scipy CSR matrix/array; return (indptr, indices, data, shape).

    The arrays are scipy's own when they already are int32/``dtype`` and contiguous.
    Structure checks: len(indptr) == M + 1, indptr[0] == 0, non-decreasing, indptr[-1] ==
    nnz == len(indices) == len(data), 0 <= indices < K. Unsorted or duplicate column
    indices are allowed (duplicates are summed, as scipy does).
    """
    import scipy.sparse as sp  # here: most importers (perfmodel's queries) never need it

    if not sp.issparse(a) or a.format != "csr":
        kind = getattr(a, "format", type(a).__name__)
        raise TypeError(f"{name} must be a scipy.sparse CSR matrix or array, got {kind}; "
                        f"use scipy.sparse.csr_array({name})")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {a.shape}")
    m, k = (int(s) for s in a.shape)
    if m > INT32_MAX or k > INT32_MAX:
        raise ValueError(f"{name} shape {a.shape} exceeds int32 indexing")
    data = a.data
    if data.dtype != dtype:
        raise TypeError(
            f"{name}.data must be {np.dtype(dtype).name}, got {data.dtype}; "
            f"convert with {name}.astype(np.{np.dtype(dtype).name})"
        )
    data = np.ascontiguousarray(data)
    indptr = _index_array(np.asarray(a.indptr), "indptr")
    indices = _index_array(np.asarray(a.indices), "indices")
    if indptr.ndim != 1 or indptr.shape[0] != m + 1:
        raise ValueError(f"{name}.indptr must have length M + 1 = {m + 1}, got {indptr.shape}")
    if indptr[0] != 0:
        raise ValueError(f"{name}.indptr[0] must be 0, got {indptr[0]}")
    if m and np.any(indptr[1:] < indptr[:-1]):
        raise ValueError(f"{name}.indptr must be non-decreasing")
    nnz = int(indptr[-1])
    if indices.ndim != 1 or data.ndim != 1 or indices.shape[0] != nnz or data.shape[0] != nnz:
        raise ValueError(
            f"{name}.indptr[-1] = {nnz} must equal len(indices) = {indices.shape[0]} "
            f"and len(data) = {data.shape[0]}"
        )
    # one pass: negative int32 indices read as uint32 are >= 2**31 > K
    if nnz and indices.view(np.uint32).max() >= k:
        raise ValueError(
            f"{name}.indices must lie in [0, K={k}), got range "
            f"[{indices.min()}, {indices.max()}]"
        )
    return indptr, indices, data, (m, k)
