"""gemm: the dense BLAS baseline against numpy (float64), awkward sizes, threads, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import kernels_c
from kernels_c._blas import blas_function, blas_info, blas_threads
from kernels_c.gemm import gemm, gemm_reference, plan_gemm

SENTINEL = np.float32(-7777.0)


@pytest.mark.parametrize("m", [1, 3, 7, 13, 17])
@pytest.mark.parametrize("n", [1, 7, 15, 16, 17, 64])
@pytest.mark.parametrize("threads", [1, 2])
def test_matches_numpy(m, n, threads):
    rng = np.random.default_rng(m * 100 + n)
    k = 13
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = np.full((m, n), SENTINEL, np.float32)
    assert gemm(a, b, threads=threads, out=out) is out
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(1000, 2048, 1), (1, 2048, 300), (1, 5, 1)])
def test_one_row_or_column_calls_sgemv(shape):
    m, k, n = shape
    rng = np.random.default_rng(k)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    plan = plan_gemm(a, b)
    assert plan.args.sgemv == blas_function("sgemv")
    ref = a.astype(np.float64) @ b
    np.testing.assert_allclose(plan.run(), ref, rtol=1e-4, atol=1e-3)
    plan.args.sgemv = 0  # the sgemm path gives the same product
    np.testing.assert_allclose(plan.run(), ref, rtol=1e-4, atol=1e-3)


def test_large_and_reference():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((130, 257), dtype=np.float32)
    b = rng.standard_normal((257, 65), dtype=np.float32)
    ref = a.astype(np.float64) @ b
    np.testing.assert_allclose(gemm(a, b, threads=2), ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gemm_reference(a, b), ref, rtol=1e-5, atol=1e-5)


def test_empty_k_gives_zeros():
    out = np.full((3, 4), SENTINEL, np.float32)
    gemm(np.ones((3, 0), np.float32), np.ones((0, 4), np.float32), out=out)
    assert (out == 0).all()


def test_plan_reruns_and_blas_threads_are_restored():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((40, 30), dtype=np.float32)
    b = rng.standard_normal((30, 20), dtype=np.float32)
    before = [d["num_threads"] for d in blas_info()]
    plan = plan_gemm(a, b, threads=1)
    first = plan.run().copy()
    np.testing.assert_array_equal(plan.run(), first)
    assert plan.function is plan.module.lib.gemm_blas_f32
    with blas_threads(1):
        assert all(d["num_threads"] == 1 for d in blas_info())
    assert [d["num_threads"] for d in blas_info()] == before
    assert blas_function("sgemm") == blas_function("sgemm") != 0


def test_exported():
    assert kernels_c.gemm is gemm


def test_bad_input():
    a = np.ones((3, 4), np.float32)
    b = np.ones((4, 5), np.float32)
    with pytest.raises(TypeError, match="dtype float32"):
        gemm(a.astype(np.float64), b)
    with pytest.raises(ValueError, match="shape mismatch"):
        gemm(a, np.ones((5, 5), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        gemm(a, np.ones((5, 4), np.float32).T)
    with pytest.raises(ValueError, match="out must have shape"):
        gemm(a, b, out=np.empty((3, 4), np.float32))
    with pytest.raises(ValueError, match="threads"):
        gemm(a, b, threads=0)
    with pytest.raises(ValueError, match="no BLAS routine"):
        blas_function("sgemm_nope")
