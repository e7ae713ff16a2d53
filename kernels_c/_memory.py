"""Buffers the kernels want aligned (numpy aligns large arrays to 16 bytes only)."""

from __future__ import annotations

import numpy as np


def aligned_empty(size: int, alignment: int = 64) -> np.ndarray:
    """float32 buffer of ``size`` whose data starts on an ``alignment``-byte boundary."""
    raw = np.empty(size + alignment // 4, dtype=np.float32)
    skip = (-raw.ctypes.data % alignment) // 4
    return raw[skip:skip + size]
