"""qgemm: exact int32 accumulation on every ISA path, FBGEMM requantization, int4, torch."""

from __future__ import annotations

import numpy as np
import pytest

import kernels_c
from kernels_c.quant import (
    GROUP_SIZES,
    LAYOUT,
    QuantizedWeight,
    plan_qgemm,
    qgemm,
    qgemm_dynamic,
)
from perfmodel.ops import fbgemm_saturates

from ..conftest import ISA_PATHS, requires_torch

SENT_I32 = np.int32(-123456789)
SENT_F32 = np.float32(-7777.0)
SENT_U8 = np.uint8(77)
# widths around every path's panel (NR = 16, 64) and awkward sizes
N_SIZES = [1, 3, 7, 13, 15, 16, 17, 63, 64, 65, 129]
# K around every kernel's K step (1, 2, 4) and the 8-byte int4 pair
K_SIZES = [1, 3, 4, 5, 7, 8, 9, 13, 255]


def _raw_ref(x, w, za=0, zb=None):
    """Exact int64 sum_k (x - za)(w - zb)."""
    zb = np.zeros(w.shape[0], dtype=np.int64) if zb is None else np.asarray(zb, np.int64)
    return (x.astype(np.int64) - za) @ (w.astype(np.int64) - zb[:, None]).T


def _int32(x, qw, za=0, **kw):
    m, n = x.shape[0], qw.shape[0]
    out = np.full((m, n), SENT_I32, dtype=np.int32)
    got = plan_qgemm(x, 0.5, za, qw, out=out, out_dtype=np.int32, **kw).run()
    assert got is out
    return got


def _worst(rng, m, n, k):
    x = np.full((m, k), 255, dtype=np.uint8)
    w = rng.choice(np.array([-128, 127], dtype=np.int8), size=(n, k))
    return x, w


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("m", [1, 3, 7, 13])
def test_int32_exact_worst_case_all_sizes(isa_path, m, threads):
    rng = np.random.default_rng(m)
    for n in N_SIZES:
        for k in K_SIZES:
            x, w = _worst(rng, m, n, k)
            qw = QuantizedWeight.from_quantized(w, 0.01, isa=isa_path)
            np.testing.assert_array_equal(_int32(x, qw, isa=isa_path, threads=threads),
                                          _raw_ref(x, w), err_msg=f"n={n} k={k}")


def test_int32_exact_random_with_zero_points(isa_path):
    rng = np.random.default_rng(5)
    for m, n, k in [(13, 65, 129), (7, 17, 1000), (1, 130, 77)]:
        x = rng.integers(0, 256, (m, k), dtype=np.uint8)
        w = rng.integers(-128, 128, (n, k), dtype=np.int8)
        zb = rng.integers(-128, 128, n)
        qw = QuantizedWeight.from_quantized(w, np.full(n, 0.02), zb)
        for za in (0, 1, 128, 255):
            np.testing.assert_array_equal(_int32(x, qw, za, isa=isa_path, threads=2),
                                          _raw_ref(x, w, za, zb))


def test_int32_at_the_overflow_limit(isa_path):
    """K = 65793 with x = 255, w = -128 reaches -2^31 + 128: still exact; one more refuses."""
    k = 65793
    x = np.full((2, k), 255, dtype=np.uint8)
    w = np.full((3, k), -128, dtype=np.int8)
    w[1] = 127
    qw = QuantizedWeight.from_quantized(w, 1.0, isa=isa_path)
    ref = _raw_ref(x, w)
    assert ref.min() == -(2**31) + 128
    np.testing.assert_array_equal(_int32(x, qw, isa=isa_path), ref)
    w2 = np.full((1, k + 1), -128, dtype=np.int8)
    qw2 = QuantizedWeight.from_quantized(w2, 1.0, isa=isa_path)
    with pytest.raises(ValueError, match="int32 accumulation could overflow"):
        qgemm(np.zeros((1, k + 1), dtype=np.uint8), 1.0, 0, qw2, isa=isa_path)
    # the bound uses the actual weights: a long K of small weights is accepted and exact
    w3 = np.ones((2, 200_000), dtype=np.int8)
    qw3 = QuantizedWeight.from_quantized(w3, 1.0, isa=isa_path)
    x3 = np.full((1, 200_000), 255, dtype=np.uint8)
    np.testing.assert_array_equal(_int32(x3, qw3, isa=isa_path), _raw_ref(x3, w3))


@pytest.mark.parametrize("params", [{"mc": 1}, {"mc": 7, "nc": 64}, {"mc": 24, "nc": 128}])
@pytest.mark.parametrize("threads", [1, 2])
def test_cache_blocking_does_not_change_results(isa_path, params, threads):
    rng = np.random.default_rng(9)
    x = rng.integers(0, 256, (37, 300), dtype=np.uint8)
    w = rng.integers(-128, 128, (300, 300), dtype=np.int8)
    qw = QuantizedWeight.from_quantized(w, 0.1)
    np.testing.assert_array_equal(_int32(x, qw, 3, isa=isa_path, threads=threads, **params),
                                  _raw_ref(x, w, 3))


def _fbgemm_u8(raw, xs, ws, bias, sc, zc, relu):
    """FBGEMM ReQuantizeOutput in float32 numpy (IEEE, same operation order)."""
    f32 = np.float32
    ats = f32(xs) * ws.astype(f32)
    mult = ats / f32(sc)
    f = raw.astype(f32)
    if bias is not None:
        f = f + bias / ats
    q = np.rint(f * mult).astype(np.int64) + zc
    return np.clip(q, zc if relu else 0, 255).astype(np.uint8)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_u8_requantization_matches_fbgemm_formula(isa_path, relu, with_bias):
    rng = np.random.default_rng(11)
    m, n, k = 13, 65, 131
    x = rng.integers(0, 256, (m, k), dtype=np.uint8)
    w = rng.standard_normal((n, k)).astype(np.float32)
    qw = QuantizedWeight.from_float(w)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    xs, za, sc, zc = 0.021, 117, 0.13, 100
    out = np.full((m, n), SENT_U8, dtype=np.uint8)
    got = qgemm(x, xs, za, qw, bias=bias, out_scale=sc, out_zero_point=zc, relu=relu,
                out=out, isa=isa_path, threads=2)
    raw = _raw_ref(x, qw.w_q, za)
    ref = _fbgemm_u8(raw, xs, qw.scales, bias, sc, zc, relu)
    np.testing.assert_array_equal(got, ref)
    assert 0 < (got == 255).sum() < got.size and (got == (zc if relu else 0)).any()


def test_fp32_output_and_paths_agree_bitwise():
    rng = np.random.default_rng(12)
    m, n, k = 7, 129, 70
    x = rng.integers(0, 256, (m, k), dtype=np.uint8)
    qw = QuantizedWeight.from_float(rng.standard_normal((n, k)).astype(np.float32))
    bias = rng.standard_normal(n).astype(np.float32)
    outs = []
    for isa in ISA_PATHS:
        out = np.full((m, n), SENT_F32, dtype=np.float32)
        outs.append(qgemm(x, 0.05, 9, qw, bias=bias, relu=True, out=out, isa=isa))
    raw = _raw_ref(x, qw.w_q, 9).astype(np.float64)
    ref = np.maximum(raw * (np.float32(0.05) * qw.scales) + bias, 0)
    np.testing.assert_allclose(outs[0], ref, rtol=1e-6, atol=1e-5)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_c_reference_twin_matches(isa_path):
    rng = np.random.default_rng(13)
    x = rng.integers(0, 256, (5, 33), dtype=np.uint8)
    w = rng.integers(-128, 128, (19, 33), dtype=np.int8)
    qw = QuantizedWeight.from_quantized(w, rng.uniform(0.01, 0.1, 19),
                                        rng.integers(-5, 5, 19))
    bias = rng.standard_normal(19).astype(np.float32)
    for kw in ({}, {"out_scale": 0.3, "out_zero_point": 50}):
        plan = plan_qgemm(x, 0.1, 30, qw, bias=bias, isa=isa_path, **kw)
        fast = plan.run().copy()
        plan.out[...] = 0
        np.testing.assert_array_equal(plan.run_reference(), fast)


# ------------------------------------------------------------------ int4
def _int4_ref(x, w4, scales, group, xs, za=0):
    """fp32 result of the int4 pipeline computed exactly in float64 (exact when scales are
    powers of two and sums stay below 2^24)."""
    k = w4.shape[1]
    full = np.repeat(scales.astype(np.float64), group, axis=1)[:, :k]
    return xs * ((x.astype(np.float64) - za) @ (w4 * full).T)


@pytest.mark.parametrize("group", GROUP_SIZES)
def test_int4_exact_worst_case(isa_path, group):
    rng = np.random.default_rng(group)
    for m in (1, 3, 7, 13):
        for n in (1, 15, 17, 63, 65):
            for k in (1, 7, group - 1, group, group + 1, 3 * group + 5):
                x = np.full((m, k), 255, dtype=np.uint8)
                w = rng.choice(np.array([-8, 7], dtype=np.int8), size=(n, k))
                ng = -(-k // group)
                scales = 2.0 ** rng.integers(-3, 3, (n, ng))
                qw = QuantizedWeight.from_quantized(w, scales, bits=4, group_size=group)
                out = np.full((m, n), SENT_F32, dtype=np.float32)
                got = qgemm(x, 0.25, 0, qw, out=out, isa=isa_path, threads=2)
                np.testing.assert_array_equal(got, _int4_ref(x, w, scales, group, 0.25),
                                              err_msg=f"m={m} n={n} k={k}")


def test_int4_zero_point_bias_relu_u8_and_paths_agree():
    rng = np.random.default_rng(21)
    m, n, k, group = 9, 70, 200, 32
    x = rng.integers(0, 256, (m, k), dtype=np.uint8)
    qw = QuantizedWeight.from_float(rng.standard_normal((n, k)).astype(np.float32), bits=4,
                                    group_size=group)
    bias = rng.standard_normal(n).astype(np.float32)
    ref = _int4_ref(x, qw.w_q, qw.scales, group, 0.02, 100) + bias
    results = {}
    for isa in ISA_PATHS:
        f = qgemm(x, 0.02, 100, qw, bias=bias, isa=isa)
        np.testing.assert_allclose(f, ref, rtol=1e-5, atol=1e-4 * np.abs(ref).max())
        u8 = qgemm(x, 0.02, 100, qw, bias=bias, out_scale=0.05, out_zero_point=128,
                   relu=True, isa=isa)
        results[isa] = (f, u8)
        plan = plan_qgemm(x, 0.02, 100, qw, bias=bias, isa=isa)
        plan.run()
        np.testing.assert_array_equal(plan.run_reference(), f)
    f0, u0 = results[ISA_PATHS[0]]
    expect = np.clip(np.rint(np.maximum(f0, 0) / np.float32(0.05)) + 128, 128, 255)
    assert np.abs(u0.astype(int) - expect).max() <= 1
    for f, u8 in results.values():
        np.testing.assert_array_equal(f, f0)
        np.testing.assert_array_equal(u8, u0)


def test_int4_accuracy_against_fp32():
    """Per-element weight error <= scale / 2, and the GEMM error stays near int8's."""
    rng = np.random.default_rng(22)
    n, k = 64, 512
    w = rng.standard_normal((n, k)).astype(np.float32)
    qw4 = QuantizedWeight.from_float(w, bits=4, group_size=32)
    full = np.repeat(qw4.scales, 32, axis=1)[:, :k]
    assert (np.abs(qw4.dequantize() - w) <= full / 2 * (1 + 1e-6)).all()
    qw8 = QuantizedWeight.from_float(w)
    assert (np.abs(qw8.dequantize() - w) <= qw8.scales[:, None] / 2 * (1 + 1e-6)).all()
    x = rng.random((16, k), dtype=np.float32)
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    rel = {b: np.linalg.norm(qgemm_dynamic(x, q) - exact) / np.linalg.norm(exact)
           for b, q in ((8, qw8), (4, qw4))}
    assert rel[8] < 0.02 and rel[4] < 0.15, rel


# ------------------------------------------------------------------ validation
def test_validation_errors():
    rng = np.random.default_rng(30)
    w = rng.standard_normal((8, 16)).astype(np.float32)
    qw = QuantizedWeight.from_float(w)
    x = rng.integers(0, 256, (4, 16), dtype=np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        qgemm(x.astype(np.int8), 0.1, 0, qw)
    with pytest.raises(ValueError, match="K = 16"):
        qgemm(x[:, :15].copy(), 0.1, 0, qw)
    with pytest.raises(ValueError, match="x_zero_point"):
        qgemm(x, 0.1, 256, qw)
    with pytest.raises(ValueError, match="x_scale"):
        qgemm(x, 0.0, 0, qw)
    with pytest.raises(ValueError, match="bias must have shape"):
        qgemm(x, 0.1, 0, qw, bias=np.zeros(7, dtype=np.float32))
    with pytest.raises(ValueError, match="out_zero_point"):
        qgemm(x, 0.1, 0, qw, out_zero_point=3)
    with pytest.raises(ValueError, match="unknown qgemm parameter"):
        qgemm(x, 0.1, 0, qw, kc=4)
    with pytest.raises(ValueError, match="multiple of"):
        qgemm(x, 0.1, 0, qw, nc=3, isa="portable")
    with pytest.raises(TypeError, match="QuantizedWeight"):
        qgemm(x, 0.1, 0, w)
    with pytest.raises(ValueError, match="group_size"):
        QuantizedWeight.from_float(w, bits=4, group_size=48)
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        QuantizedWeight.from_quantized(np.full((2, 8), 9, np.int8), np.ones((2, 1)), bits=4,
                                       group_size=16)
    with pytest.raises(ValueError, match="zero_points"):
        QuantizedWeight.from_quantized(np.zeros((2, 8), np.int8), 1.0, [1, 200])
    with pytest.raises(ValueError, match="bits must be 8 or 4"):
        QuantizedWeight.from_float(w, bits=2)
    qw4 = QuantizedWeight.from_float(w, bits=4, group_size=16)
    with pytest.raises(ValueError, match="int4 sums groups"):
        plan_qgemm(x, 0.1, 0, qw4, out_dtype=np.int32)


def test_packed_layouts_are_cached_per_path():
    qw = QuantizedWeight.from_float(np.ones((5, 9), dtype=np.float32), isa="portable")
    for isa in ISA_PATHS:
        packed, _ = qw.packed(isa)
        level = kernels_c._isa.resolve(isa, tuple(LAYOUT))[0]
        nr, ks = LAYOUT[level]
        assert packed.size == -(-5 // nr) * nr * -(-9 // ks) * ks
        assert qw.packed(isa)[0] is packed


# ------------------------------------------------------------------ torch (FBGEMM) peer
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("relu", [False, True])
def test_bit_exact_against_torch_fbgemm(isa_path, per_channel, relu):
    torch = requires_torch()
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        pytest.skip("this torch build has no fbgemm engine")
    torch.backends.quantized.engine = "fbgemm"
    rng = np.random.default_rng(40)
    op = torch.ops.quantized.linear_relu if relu else torch.ops.quantized.linear
    # FBGEMM without VNNI saturates pairs of 8-bit products; 7-bit activations fit (and
    # the kernels' exact sums over the full range are checked against numpy elsewhere)
    x_max = 128 if fbgemm_saturates() else 256
    for m, n, k in [(1, 7, 13), (13, 65, 63), (64, 256, 1024), (5, 100, 300)]:
        w = rng.standard_normal((n, k)).astype(np.float32)
        qw = QuantizedWeight.from_float(w, per_channel=per_channel)
        x = rng.integers(0, x_max, (m, k), dtype=np.uint8)
        xs, za = 0.037, 121
        bias = rng.standard_normal(n).astype(np.float32)
        f = qgemm(x, xs, za, qw, bias=bias, relu=relu, isa=isa_path)
        sc = float(np.float32((f.max() - f.min()) / 240))  # output range well inside u8
        zc = int(np.clip(np.rint(-f.min() / sc) + 5, 0, 255))
        wi = torch.from_numpy(qw.w_q.copy())
        if per_channel:
            wt = torch._make_per_channel_quantized_tensor(
                wi, torch.from_numpy(qw.scales.astype(np.float64)),
                torch.zeros(n, dtype=torch.long), 0)
        else:
            wt = torch._make_per_tensor_quantized_tensor(wi, float(qw.scales[0]), 0)
        xt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x.copy()), xs, za)
        packed = torch.ops.quantized.linear_prepack(wt, torch.from_numpy(bias))
        yt = op(xt, packed, sc, zc)
        got = qgemm(x, xs, za, qw, bias=bias, out_scale=sc, out_zero_point=zc, relu=relu,
                    isa=isa_path)
        np.testing.assert_array_equal(got, yt.int_repr().numpy(), err_msg=f"{m},{n},{k}")
        inside = (got > 0) & (got < 255)
        assert inside.mean() > 0.9
        np.testing.assert_array_less(np.abs(f - yt.dequantize().numpy())[inside],
                                     sc / 2 * (1 + 1e-4) + 1e-5)


def test_dynamic_close_to_torch_linear_dynamic():
    torch = requires_torch()
    torch.backends.quantized.engine = "fbgemm"
    rng = np.random.default_rng(41)
    m, n, k = 16, 64, 256
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    qw = QuantizedWeight.from_float(w)
    wt = torch._make_per_channel_quantized_tensor(
        torch.from_numpy(qw.w_q.copy()), torch.from_numpy(qw.scales.astype(np.float64)),
        torch.zeros(n, dtype=torch.long), 0)
    packed = torch.ops.quantized.linear_prepack(wt, torch.from_numpy(bias))
    seven = fbgemm_saturates()  # 8-bit activations would saturate FBGEMM's int16 pair sums
    ref = torch.ops.quantized.linear_dynamic(torch.from_numpy(x), packed, seven).numpy()
    got = qgemm_dynamic(x, qw, bias=bias, reduce_range=seven)
    exact = x @ w.T + bias
    # both quantize x to 8 (7) bits per tensor: they agree far better than either with fp32
    assert np.abs(got - ref).max() < 0.25 * np.abs(got - exact).max() + 1e-3


def test_prefetch_variant_compiled_on_demand(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELS_C_CACHE", str(tmp_path))
    kernels_c._loader.load.cache_clear()
    try:
        rng = np.random.default_rng(50)
        x = rng.integers(0, 256, (7, 300), dtype=np.uint8)
        w = rng.integers(-128, 128, (70, 300), dtype=np.int8)
        qw = QuantizedWeight.from_quantized(w, 0.1)
        np.testing.assert_array_equal(_int32(x, qw, 5, pf_dist=0), _raw_ref(x, w, 5))
        assert list(tmp_path.glob("_qgemm_v*")), "variant was not cached"
        with pytest.raises(ValueError, match="pf_dist"):
            qgemm(x, 0.1, 0, qw, pf_dist=100)
    finally:
        kernels_c._loader.load.cache_clear()


@pytest.mark.parametrize("out_scale", [1e-9, 1e-3, 1.0, 1e9])
def test_u8_saturates_at_extreme_scales(isa_path, out_scale):
    """Requantized values far beyond int32 (tiny out_scale) saturate to 0 / 255 like
    FBGEMM's scalar lrintf path, on every vector path (no INT_MIN wrap-around)."""
    x = np.full((3, 64), 255, dtype=np.uint8)
    x[1] = 0
    w = np.full((70, 64), 127, dtype=np.int8)
    w[::2] = -128
    qw = QuantizedWeight.from_quantized(w, 1.0)
    raw = _raw_ref(x, w)
    for relu in (False, True):
        got = qgemm(x, 1.0, 0, qw, out_scale=out_scale, out_zero_point=17, relu=relu,
                    isa=isa_path)
        with np.errstate(over="ignore"):
            ref = _fbgemm_u8(np.clip(raw, -(2**24), 2**24), 1.0, qw.scales, None,
                             out_scale, 17, relu)
        np.testing.assert_array_equal(got, ref)


def test_plan_params_replay(isa_path):
    """A plan's params are valid plan_qgemm arguments (tuners store and replay them)."""
    rng = np.random.default_rng(60)
    x = rng.integers(0, 256, (9, 40), dtype=np.uint8)
    for bits in (8, 4):
        qw = QuantizedWeight.from_float(rng.standard_normal((20, 40)).astype(np.float32),
                                        bits=bits, group_size=32)
        plan = plan_qgemm(x, 0.1, 0, qw, isa=isa_path)
        again = plan_qgemm(x, 0.1, 0, qw, isa=isa_path, **plan.params)
        np.testing.assert_array_equal(again.run(), plan.run())
        assert plan.tile[0] >= 1 and plan.tile[1] in (16, 64)
