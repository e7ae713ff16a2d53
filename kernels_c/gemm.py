"""Dense fp32 GEMM through the system BLAS (``gemm``): the dense baseline for ``spmm``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._blas import blas_function, blas_threads
from ._loader import load
from ._validate import check_dense, check_out, check_threads

_INT_MAX = 2**31 - 1


@dataclass
class GemmPlan:
    """A validated ``gemm`` call whose C argument block can be run or timed repeatedly.

    The C function calls BLAS, whose thread count is process state: time
    ``plan.function`` inside ``with kernels_c._blas.blas_threads(plan.threads):``.
    """

    args: Any            # cffi ``gemm_blas_f32_args *``
    module: Any
    out: np.ndarray
    threads: int
    _keepalive: tuple
    isa: str = "blas"
    params: dict[str, int] | None = None

    @property
    def function(self) -> Any:
        """C entry point ``int f(void *args)``, for the C timing loop."""
        return self.module.lib.gemm_blas_f32

    def run(self) -> np.ndarray:
        with blas_threads(self.threads):
            rc = self.module.lib.gemm_blas_f32(self.args)
        if rc != 0:
            raise RuntimeError(f"gemm_blas_f32 failed (code {rc})")
        return self.out


def plan_gemm(a: np.ndarray, b: np.ndarray, *, threads: int = 1,
              out: np.ndarray | None = None) -> GemmPlan:
    """Validate operands and build the C call for ``out = a @ b`` (see :func:`gemm`)."""
    a = check_dense(a, np.float32, "a")
    b = check_dense(b, np.float32, "b")
    m, k = (int(s) for s in a.shape)
    if b.shape[0] != k:
        raise ValueError(f"shape mismatch: a is {m} x {k} but b is {b.shape[0]} x {b.shape[1]}"
                         f" (b must have K = {k} rows)")
    n = int(b.shape[1])
    if max(m, n, k) > _INT_MAX:
        raise ValueError(f"gemm dimensions {(m, k, n)} exceed the 32-bit BLAS interface")
    threads = check_threads(threads)
    out = check_out(out, (m, n), np.float32, (a, b))
    module = load("dense")
    ffi = module.ffi
    args = ffi.new("gemm_blas_f32_args *")
    args.m, args.k, args.n = m, k, n
    args.a = ffi.from_buffer("float[]", a)
    args.lda = k
    args.b = ffi.from_buffer("float[]", b)
    args.ldb = n
    args.c = ffi.from_buffer("float[]", out)
    args.ldc = n
    args.sgemm = blas_function("sgemm")
    args.sgemv = blas_function("sgemv")
    return GemmPlan(args, module, out, threads, (a, b, out), params={})


def gemm(a: np.ndarray, b: np.ndarray, *, threads: int = 1,
         out: np.ndarray | None = None) -> np.ndarray:
    """Dense product ``a @ b`` by the BLAS sgemm scipy links (OpenBLAS in the wheels), or
    its sgemv when ``a`` has one row or ``b`` one column (as numpy's matmul).

    Parameters
    ----------
    a : ndarray (M, K), float32, C-contiguous
    b : ndarray (K, N), float32, C-contiguous
    threads : int, BLAS threads for this call (set through threadpoolctl, restored after).
    out : ndarray (M, N), float32, C-contiguous, optional; reused as the result.

    Returns
    -------
    ndarray (M, N), float32.
    """
    return plan_gemm(a, b, threads=threads, out=out).run()


def gemm_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Naive C reference (double accumulation), validated like :func:`gemm`."""
    plan = plan_gemm(a, b)
    if plan.module.lib.gemm_f32_ref(plan.args) != 0:
        raise RuntimeError("gemm_f32_ref failed")
    return plan.out
