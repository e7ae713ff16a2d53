"""The system BLAS (sgemm, sgemv) as C function pointers, and control of its thread count.

Dense baselines (``gemm_blas_f32``, ``conv_im2col_blas_f32``) call BLAS from C so that the
same C timing loop (``kc_time_calls``) times them as the sparse kernels, with no Python in the
timed region. The pointer comes from scipy: ``scipy.linalg.cython_blas.__pyx_capi__`` maps
each BLAS routine to a ``PyCapsule`` holding the address of scipy's Fortran-ABI wrapper (every
argument by pointer, column-major; scipy links its bundled OpenBLAS, or the BLAS scipy was
built against). Kernels take the address as ``uintptr_t``.

BLAS threads are not an argument of sgemm: :func:`blas_threads` sets them for every loaded
BLAS library through threadpoolctl. Plans of BLAS-backed kernels apply it in ``run()``; a
harness that times ``plan.function`` directly must wrap the timing loop in
``with blas_threads(plan.threads):``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Iterator


@functools.cache
def blas_function(name: str = "sgemm") -> int:
    """Address of scipy's Fortran-ABI BLAS routine ``name`` (e.g. ``'sgemm'``) as an int."""
    from scipy.linalg import cython_blas

    try:
        capsule = cython_blas.__pyx_capi__[name]
    except KeyError:
        raise ValueError(f"scipy.linalg.cython_blas has no BLAS routine {name!r}") from None
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    address = get_pointer(capsule, get_name(capsule))
    if not address:
        raise RuntimeError(f"scipy's {name} capsule holds no function pointer")
    return int(address)


@functools.lru_cache(maxsize=1)
def _controller():
    from scipy.linalg import cython_blas  # noqa: F401  (load scipy's BLAS before scanning)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def blas_threads(threads: int) -> Iterator[None]:
    """Limit every loaded BLAS library (scipy's and numpy's OpenBLAS) to ``threads``."""
    with _controller().limit(limits=int(threads), user_api="blas"):
        yield


def blas_info() -> list[dict]:
    """threadpoolctl's description of the loaded BLAS libraries (name, version, threads)."""
    return [d for d in _controller().info() if d.get("user_api") == "blas"]
