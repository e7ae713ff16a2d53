"""Kernel smoke test run under ``qemu-x86_64 -cpu <model>`` by test_isa_qemu.py.

Prints the ISA path kernels_c chose, then checks each kernel against numpy. Exits non-zero
on a wrong result; a SIGILL would kill the process (exit -4), which the caller reports.
"""

import sys

import numpy as np
import scipy.sparse as sp

import kernels_c
from kernels_c.conv import conv2d_reference

rng = np.random.default_rng(0)
print("isa", kernels_c.isa(), flush=True)
a = sp.random_array((40, 300), density=0.3, format="csr", dtype=np.float32, rng=rng)
for n in (1, 5, 8, 17, 40, 100):
    b = rng.standard_normal((300, n), dtype=np.float32)
    for params in ({}, {"k_block": 64, "reg_vectors": 2}):
        got = kernels_c.spmm(a, b, threads=2, **params)
        if not np.allclose(got, a @ b, rtol=1e-4, atol=1e-4):
            print("spmm mismatch for n =", n, params, file=sys.stderr)
            sys.exit(1)

# direct sparse convolution (3x3, stride 1 and 2) against the numpy reference
x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
w[rng.random(w.shape) < 0.6] = 0
for stride in (1, 2):
    conv = kernels_c.SparseConv2d(w, input_shape=(3, 9, 11), stride=stride, padding=1)
    ref = conv2d_reference(x, w, stride=stride, padding=1)
    if not np.allclose(conv.conv(x, threads=2), ref, rtol=1e-4, atol=1e-4):
        print("conv mismatch for stride", stride, file=sys.stderr)
        sys.exit(1)
# 1x1, strides 1 and 2: the pointwise path (spmm per image) and the direct loop
w1 = np.ascontiguousarray(w[:, :, :1, :1])
for stride in (1, 2):
    ref = conv2d_reference(x, w1, stride=stride)
    for pointwise in (0, 1):
        conv = kernels_c.SparseConv2d(w1, input_shape=(3, 9, 11), stride=stride,
                                      pointwise=pointwise)
        if not np.allclose(conv.conv(x, threads=2), ref, rtol=1e-4, atol=1e-4):
            print("conv mismatch for 1x1, stride", stride, "pointwise", pointwise,
                  file=sys.stderr)
            sys.exit(1)

# quantized GEMM: the SIMD path must equal the portable path bit for bit (u8 and fp32 out)
xq = rng.integers(0, 256, size=(7, 70), dtype=np.uint8)
for bits in (8, 4):
    qw = kernels_c.QuantizedWeight.from_float(
        rng.standard_normal((13, 70)).astype(np.float32), bits=bits)
    for out in ({}, {"out_scale": 0.05, "out_zero_point": 3}):
        simd = kernels_c.qgemm(xq, 0.02, 128, qw, threads=2, **out)
        portable = kernels_c.qgemm(xq, 0.02, 128, qw, isa="portable", **out)
        if not np.array_equal(simd, portable):
            print("qgemm mismatch for bits", bits, out, file=sys.stderr)
            sys.exit(1)
print("ok", flush=True)
