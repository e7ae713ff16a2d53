"""C kernels bound with cffi: sparse x dense GEMM, sparse convolution, quantized GEMM and
machine micro-benchmarks, with runtime ISA dispatch (see :func:`isa`)."""

from ._isa import cpu_features, isa
from .spmm import spmm

__all__ = ["cpu_features", "isa", "spmm"]
