"""Kernel smoke test run under ``qemu-x86_64 -cpu <model>`` by test_isa_qemu.py.

Prints the ISA path kernels_c chose, then checks each kernel against numpy. Exits non-zero
on a wrong result; a SIGILL would kill the process (exit -4), which the caller reports.
"""

import sys

import numpy as np
import scipy.sparse as sp

import kernels_c

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
print("ok", flush=True)
