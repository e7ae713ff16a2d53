"""quantize / dequantize: nearest and stochastic rounding, reproducibility, unbiasedness."""

from __future__ import annotations

import numpy as np
import pytest

from kernels_c import dequantize, quantize
from kernels_c.quant import choose_qparams


def test_nearest_rounds_half_to_even_and_clamps():
    x = np.array([-1.0, 0.0, 0.25, 0.75, 1.25, 100.0, -100.0], dtype=np.float32)
    q = quantize(x, 0.5, 10, np.uint8)
    np.testing.assert_array_equal(q, [8, 10, 10, 12, 12, 210, 0])
    q8 = quantize(x, 0.5, 0, np.int8)
    np.testing.assert_array_equal(q8, [-2, 0, 0, 2, 2, 127, -128])
    assert q.dtype == np.uint8 and q8.dtype == np.int8


def test_round_trip_error_at_most_half_a_step():
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, 10_000).astype(np.float32)
    scale, zp = choose_qparams(x)
    back = dequantize(quantize(x, scale, zp), scale, zp)
    assert np.abs(back - x).max() <= scale / 2 * (1 + 1e-5)
    s = rng.uniform(0.01, 0.1, (4, 1)).ravel()
    xc = rng.uniform(-1, 1, (4, 50))
    qc = quantize(xc, s, 0, np.int8, axis=0)
    assert (np.abs(dequantize(qc, s, 0, axis=0) - xc) <= s[:, None] / 2 + 1e-7).all()


def test_stochastic_is_reproducible_and_rounds_to_neighbours():
    rng = np.random.default_rng(1)
    x = rng.uniform(-5, 5, 1000)
    a = quantize(x, 0.1, 0, np.int8, rounding="stochastic", seed=7)
    b = quantize(x, 0.1, 0, np.int8, rounding="stochastic", seed=7)
    c = quantize(x, 0.1, 0, np.int8, rounding="stochastic", seed=8)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    v = x / 0.1
    assert np.all((a == np.floor(v)) | (a == np.ceil(v)))


@pytest.mark.parametrize("frac", [0.1, 0.3, 0.5, 0.77])
def test_stochastic_rounding_is_unbiased(frac):
    """Mean error over n draws -> 0: each draw's error e = q - v has E[e] = 0 and
    Var[e] = f (1 - f) for fractional part f, so |mean| <= 5 sqrt(f (1 - f) / n) except with
    probability ~6e-7 (normal approximation). Nearest rounding fails the same bound."""
    n = 200_000
    scale = 0.25
    v = 3.0 + frac
    x = np.full(n, v * scale)
    q = quantize(x, scale, 0, np.int32, rounding="stochastic", seed=123)
    err = q.astype(np.float64) - v
    tol = 5 * np.sqrt(frac * (1 - frac) / n)
    assert abs(err.mean()) <= tol
    # the fraction rounded up estimates f (binomial)
    assert abs((q == 4).mean() - frac) <= tol
    nearest = quantize(x, scale, 0, np.int32).astype(np.float64) - v
    assert abs(nearest.mean()) > tol


def test_stochastic_unbiased_over_many_values():
    rng = np.random.default_rng(2)
    v = rng.uniform(-50, 50, 4000)
    draws = 200
    errs = np.stack([quantize(v, 1.0, 0, np.int8, rounding="stochastic", seed=s) - v
                     for s in range(draws)])
    f = v - np.floor(v)
    var_of_mean = (f * (1 - f)).sum() / (draws * v.size) ** 2 * draws
    assert abs(errs.mean()) <= 5 * np.sqrt(var_of_mean)


def test_quantize_validation():
    x = np.zeros(3, dtype=np.float32)
    with pytest.raises(TypeError, match="float32 or float64"):
        quantize(np.zeros(3, dtype=np.int32), 1.0, 0)
    with pytest.raises(ValueError, match="rounding"):
        quantize(x, 1.0, 0, rounding="up")
    with pytest.raises(ValueError, match="scale"):
        quantize(x, -1.0, 0)
    with pytest.raises(ValueError, match="zero_point"):
        quantize(x, 1.0, 300, np.uint8)
    with pytest.raises(ValueError, match="dtype"):
        quantize(x, 1.0, 0, np.float32)
    with pytest.raises(ValueError, match="NaN"):
        quantize(np.array([np.nan], dtype=np.float32), 1.0, 0)
    with pytest.raises(ValueError, match="axis"):
        quantize(x, np.ones(3), 0)
