"""C kernels bound with cffi: sparse x dense GEMM, sparse convolution, quantized GEMM and
machine micro-benchmarks, with runtime ISA dispatch (see :func:`isa`); also the sums of
regression trees that perfmodel's learned model evaluates per query (:mod:`.forest`)."""

from ._isa import cpu_features, isa
from .conv import SparseConv2d, conv2d_im2col
from .gemm import gemm, plan_gemm
from .quant import QuantizedWeight, dequantize, qgemm, qgemm_dynamic, quantize
from .spmm import spmm

__all__ = ["QuantizedWeight", "SparseConv2d", "conv2d_im2col", "cpu_features", "dequantize",
           "gemm", "isa", "plan_gemm", "qgemm", "qgemm_dynamic", "quantize", "spmm"]
