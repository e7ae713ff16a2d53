"""Buffers the kernels want aligned (numpy aligns large arrays to 16 bytes only)."""

from __future__ import annotations

import numpy as np


def aligned_empty(size: int, alignment: int = 64, dtype: type = np.float32) -> np.ndarray:
    """1-D buffer of ``size`` elements of ``dtype`` (float32 by default) whose data starts
    on an ``alignment``-byte boundary."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.empty(size * itemsize + alignment, dtype=np.uint8)
    skip = -raw.ctypes.data % alignment
    return raw[skip:skip + size * itemsize].view(dtype)


def placed_copy(x: np.ndarray, offset: int) -> np.ndarray:
    """A C-contiguous copy of ``x`` whose data starts ``offset`` elements past a 64-byte
    boundary (0 <= offset < 64 / itemsize): where numpy may put a fresh array, for
    benchmarks that fix it."""
    out = aligned_empty(x.size + offset, dtype=x.dtype)[offset:].reshape(x.shape)
    out[...] = x
    return out
