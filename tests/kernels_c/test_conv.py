"""Convolution: direct sparse (every ISA path, 1 and 2 threads) and im2col + BLAS against an
independent float64 numpy reference; edge cases; bad input rejected before any C code."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kernels_c.conv import (
    PARAMS,
    ConvGeometry,
    SparseConv2d,
    check_params,
    conv2d_im2col,
    conv2d_reference,
    default_params,
)

SENTINEL = np.float32(-7777.0)


def reference(x, w, stride=1, padding=0, groups=1, bias=None, relu=False):
    """float64 cross-correlation by shifted slices (no code shared with the kernels)."""
    n, _, h, width = x.shape
    o, cg, r, s = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - r) // stride + 1
    wo = (width + 2 * padding - s) // stride + 1
    out = np.zeros((n, o, ho, wo))
    og = o // groups
    for oo in range(o):
        g = oo // og
        for ci in range(cg):
            for i in range(r):
                for j in range(s):
                    if w[oo, ci, i, j] == 0:
                        continue
                    win = xp[:, g * cg + ci, i:i + stride * (ho - 1) + 1:stride,
                             j:j + stride * (wo - 1) + 1:stride]
                    out[:, oo] += float(w[oo, ci, i, j]) * win
    if bias is not None:
        out += bias.astype(np.float64)[None, :, None, None]
    if relu:
        out = np.maximum(out, 0)
    return out


def _weights(rng, o, cg, k, density):
    w = rng.standard_normal((o, cg, k, k), dtype=np.float32)
    return (w * (rng.random(w.shape) < density)).astype(np.float32)


def _close(got, ref):
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=2e-5 * scale)


def _run_sparse(x, w, threads=1, **kw):
    conv = SparseConv2d(w, input_shape=x.shape[1:], **kw)
    out = np.full(conv.output_shape(x.shape[0]), SENTINEL, np.float32)
    got = conv.conv(x, threads=threads, out=out)
    assert got is out
    return got


#: (N, C, H, W, O, kernel, stride, padding, groups)
CASES = [
    (1, 3, 7, 9, 5, 3, 1, 1, 1),        # widths not a multiple of any vector width
    (2, 4, 13, 13, 6, 3, 2, 1, 2),      # stride 2, groups, batch > 1
    (1, 8, 27, 27, 16, 5, 1, 2, 2),     # AlexNet conv2-like
    (1, 3, 23, 23, 4, 11, 4, 2, 1),     # AlexNet conv1-like: 11x11 stride 4
    (1, 3, 11, 11, 4, 11, 2, 5, 1),     # 11x11, stride 2
    (2, 5, 1, 17, 3, 1, 1, 0, 1),       # H = 1, 1x1 kernel
    (1, 5, 17, 1, 3, 3, 1, 1, 1),       # W = 1
    (1, 2, 3, 3, 3, 7, 1, 3, 1),        # kernel larger than the input, padded
    (1, 6, 15, 16, 4, 5, 3, 2, 2),      # stride 3
    (3, 16, 7, 7, 17, 1, 2, 0, 1),      # 1x1 stride 2
    (1, 1, 1, 1, 1, 1, 1, 0, 1),        # everything 1
    (1, 4, 16, 17, 8, 3, 1, 1, 4),      # depthwise-like groups; 16 +- 1
    (1, 3, 9, 13, 2, 7, 1, 3, 1),       # 7 shifted copies when aligned
    (1, 3, 9, 40, 4, 3, 2, 1, 1),       # stride 2, rows wider than one de-interleave step
    (2, 2, 6, 37, 3, 5, 2, 2, 1),       # stride 2, odd width, even padding
    # planes moved apart (_plane_stride: 32 x 32 planes, 4 KiB apart, fill a quarter of
    # the L1 sets) with a zeroed gap between them
    (2, 24, 30, 30, 8, 3, 1, 1, 1),
    (1, 12, 62, 62, 8, 3, 2, 1, 1),     # four 32 x 32 phase planes per channel
    (1, 8, 27, 27, 8, 5, 1, 2, 1),      # and five shifted copies (aligned paths)
]


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
@pytest.mark.parametrize("threads", [1, 2])
def test_sparse_matches_reference(isa_path, case, threads):
    n, c, h, w_, o, k, st, pad, g = case
    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    x = rng.standard_normal((n, c, h, w_), dtype=np.float32)
    w = _weights(rng, o, c // g, k, 0.4)
    bias = rng.standard_normal(o).astype(np.float32)
    kw = dict(stride=st, padding=pad, groups=g)
    _close(_run_sparse(x, w, threads, isa=isa_path, **kw), reference(x, w, **kw))
    got = _run_sparse(x, w, threads, isa=isa_path, bias=bias, relu=True, **kw)
    _close(got, reference(x, w, bias=bias, relu=True, **kw))


@pytest.mark.parametrize("params", [
    {"tile_vectors": 1, "c_block": 1, "o_block": 1, "align": 1},
    {"tile_vectors": 3, "c_block": 2, "o_block": 3, "align": 0},
    {"tile_vectors": 7, "c_block": 0, "o_block": 64, "align": 1},
    {"tile_vectors": 12, "c_block": 4, "o_block": 2, "align": 0},
])
@pytest.mark.parametrize("threads", [1, 2])
def test_blocking_parameters(isa_path, params, threads):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 10, 13, 14), dtype=np.float32)
    w = _weights(rng, 10, 5, 3, 0.3)
    kw = dict(stride=1, padding=1, groups=2)
    _close(_run_sparse(x, w, threads, isa=isa_path, **kw, **params), reference(x, w, **kw))
    kw = dict(stride=2, padding=2, groups=1)
    w = _weights(rng, 9, 10, 5, 0.3)
    _close(_run_sparse(x, w, threads, isa=isa_path, **kw, **params), reference(x, w, **kw))


def test_long_register_tiles_avx512():
    if "avx512" not in _supported():
        pytest.skip("no AVX-512 on this CPU")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 6, 29, 30), dtype=np.float32)
    w = _weights(rng, 5, 6, 3, 0.5)
    for nv in (13, 17, 24):
        for align in (0, 1):
            _close(_run_sparse(x, w, padding=1, isa="avx512", tile_vectors=nv, align=align),
                   reference(x, w, padding=1))


def _supported():
    import kernels_c

    return kernels_c._isa.supported_levels()


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3), cg=st.integers(1, 4), groups=st.sampled_from([1, 2]),
    og=st.integers(1, 5), h=st.integers(1, 20), w=st.integers(1, 35), r=st.integers(1, 6),
    s=st.integers(1, 6), stride=st.integers(1, 3), padding=st.integers(0, 3),
    density=st.floats(0.0, 1.0), threads=st.sampled_from([1, 2]),
    tile=st.integers(1, 12), c_block=st.integers(0, 3), o_block=st.integers(1, 6),
    align=st.sampled_from([0, 1]), pointwise=st.sampled_from([0, 1]),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_random_geometry(n, cg, groups, og, h, w, r, s, stride, padding, density,
                                    threads, tile, c_block, o_block, align, pointwise, seed):
    ho = (h + 2 * padding - r) // stride + 1
    wo = (w + 2 * padding - s) // stride + 1
    assume(ho >= 1 and wo >= 1)
    rng = np.random.default_rng(seed)
    c, o = cg * groups, og * groups
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((o, cg, r, s), dtype=np.float32)
    wt = (wt * (rng.random(wt.shape) < density)).astype(np.float32)
    kw = dict(stride=stride, padding=padding, groups=groups)
    ref = reference(x, wt, **kw)
    for path in _supported():
        eligible = (r, s, padding, groups) == (1, 1, 0, 1)
        got = _run_sparse(x, wt, threads, isa=path, tile_vectors=tile, c_block=c_block,
                          o_block=o_block, align=align, pointwise=pointwise * eligible, **kw)
        _close(got, ref)


@pytest.mark.parametrize("shape", [(3, 20, 5, 7, 9, 1), (3, 40, 8, 8, 24, 1),
                                   (2, 70, 16, 16, 33, 1), (1, 1, 1, 1, 1, 1),
                                   (3, 20, 9, 11, 9, 2), (2, 70, 16, 16, 33, 2),
                                   (2, 6, 7, 5, 4, 3)])
@pytest.mark.parametrize("threads", [1, 2])
def test_pointwise_path_matches_reference(isa_path, shape, threads):
    # 1x1 convolutions as one spmm per image: H W not a multiple of the vector width (B
    # copied or read unaligned), a multiple of it (per-image peel), misaligned x; strided
    # ones subsample each image into a buffer first
    n, c, h, w_, o, stride = shape
    rng = np.random.default_rng(c * o + h)
    raw = np.empty(n * c * h * w_ + 1, np.float32)
    x = raw[1:].reshape(n, c, h, w_)
    x[...] = rng.standard_normal(x.shape)
    w = _weights(rng, o, c, 1, 0.3)
    bias = rng.standard_normal(o).astype(np.float32)
    for extra in ({}, {"bias": bias, "relu": True}):
        ref = reference(x, w, stride=stride, **extra)
        for pointwise in (0, 1):
            got = _run_sparse(x, w, threads, isa=isa_path, pointwise=pointwise,
                              stride=stride, **extra)
            _close(got, ref)
    assert SparseConv2d(w, input_shape=(c, h, w_), stride=stride).params["pointwise"] == 1


def test_pointwise_nan_and_plan_reuse(isa_path):
    rng = np.random.default_rng(21)
    x = rng.standard_normal((2, 6, 4, 5), dtype=np.float32)
    w = _weights(rng, 5, 6, 1, 1.0)
    w[1] = 0.0
    x[1, 2, 3, 4] = np.nan
    conv = SparseConv2d(w, input_shape=(6, 4, 5), isa=isa_path, pointwise=1, relu=True)
    plan = conv.plan(x, threads=2)
    got = plan.run()
    assert np.isnan(got[1, [0, 2, 3, 4], 3, 4]).all() and np.isnan(got).sum() == 4
    assert np.isfinite(got[0]).all() and not np.isnan(got[1, 1]).any()
    x[0] *= 2.0  # the plan reads its input on every call
    again = plan.run()
    _close(again[0], reference(x[:1], w, relu=True)[0])


def test_pointwise_default_rule():
    from kernels_c.conv import ConvGeometry

    def pointwise(c, hw, o, density, **kw):
        geo = ConvGeometry(c, hw, hw, o, kw.get("r", 1), kw.get("r", 1), kw.get("stride", 1),
                           kw.get("padding", 0), kw.get("groups", 1))
        return default_params(geo, None, density)["pointwise"]  # any path: not ISA-specific

    # the spmm kernel measured faster on every 1x1 ResNet-50 layer, strided too (docs/conv.md)
    assert pointwise(256, 56, 64, 0.7) == pointwise(2048, 7, 512, 0.05) == 1
    assert pointwise(1024, 14, 2048, 0.7, stride=2) == 1
    assert pointwise(64, 56, 256, 0.3) == pointwise(64, 56, 64, 0.7) == 1  # any C, density
    for kw in ({"r": 3, "padding": 1}, {"padding": 1}, {"groups": 2}):
        assert pointwise(256, 14, 256, 0.1, **kw) == 0


def test_all_zero_weights_and_one_nonzero(isa_path):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 4, 9, 10), dtype=np.float32)
    w = np.zeros((6, 4, 3, 3), np.float32)
    bias = np.arange(6, dtype=np.float32) - 2
    got = _run_sparse(x, w, 2, padding=1, bias=bias, relu=True, isa=isa_path)
    np.testing.assert_array_equal(got, np.broadcast_to(np.maximum(bias, 0)[None, :, None, None],
                                                       got.shape))
    w[4, 2, 0, 2] = 1.5
    _close(_run_sparse(x, w, padding=1, isa=isa_path), reference(x, w, padding=1))


def test_csr_weight_equals_dense_weight(isa_path):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((1, 6, 12, 11), dtype=np.float32)
    w = _weights(rng, 8, 3, 3, 0.3)
    csr = sp.csr_array(w.reshape(8, -1))
    got = _run_sparse(x, csr, padding=1, groups=2, isa=isa_path)
    _close(got, reference(x, w, padding=1, groups=2))
    # non-square kernel needs kernel_size; unsorted + duplicate entries are summed
    w2 = _weights(rng, 4, 6, 3, 0.3)[:, :, :, :2].copy()
    coo = sp.coo_array(w2.reshape(4, -1))
    dup = sp.csr_array((np.concatenate([coo.data / 2, coo.data / 2])[::-1],
                        (np.concatenate([coo.row, coo.row])[::-1],
                         np.concatenate([coo.col, coo.col])[::-1])), shape=(4, 36))
    got = _run_sparse(x, dup, padding=1, kernel_size=(3, 2), isa=isa_path)
    _close(got, reference(x, w2, padding=1))


def test_nan_in_input_reaches_only_its_outputs(isa_path):
    x = np.ones((1, 2, 8, 8), np.float32)
    x[0, 1, 4, 4] = np.nan
    w = np.zeros((3, 2, 3, 3), np.float32)
    w[0, 1, 1, 1] = 1.0  # output 0 sees the NaN at (4, 4) only
    w[1, 0, 0, 0] = 1.0  # output 1 never reads channel 1
    got = _run_sparse(x, w, padding=1, isa=isa_path, relu=True)
    assert np.isnan(got[0, 0, 4, 4]) and np.isnan(got[0, 0]).sum() == 1
    assert np.isfinite(got[0, 1:]).all()


def test_unaligned_input_and_output(isa_path):
    rng = np.random.default_rng(11)
    raw = np.empty(2 * 3 * 10 * 11 + 1, np.float32)
    x = raw[1:].reshape(2, 3, 10, 11)
    x[...] = rng.standard_normal(x.shape)
    assert x.ctypes.data % 64 != 0
    w = _weights(rng, 5, 3, 3, 0.5)
    conv = SparseConv2d(w, input_shape=(3, 10, 11), padding=1, isa=isa_path)
    raw_out = np.empty(2 * 5 * 10 * 11 + 1, np.float32)
    out = raw_out[1:].reshape(2, 5, 10, 11)
    _close(conv(x, out=out), reference(x, w, padding=1))


def test_repeated_runs_of_one_plan_are_identical(isa_path):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 8, 13, 13), dtype=np.float32)
    conv = SparseConv2d(_weights(rng, 16, 8, 3, 0.2), input_shape=(8, 13, 13), padding=1,
                        isa=isa_path)
    plan = conv.plan(x, threads=2)
    first = plan.run().copy()
    x *= 2  # the plan re-pads its input on every call
    np.testing.assert_allclose(plan.run(), 2 * first, rtol=1e-6)


@pytest.mark.parametrize("case", CASES[:6], ids=[str(c) for c in CASES[:6]])
@pytest.mark.parametrize("threads", [1, 2])
def test_im2col_blas_and_c_reference(case, threads):
    n, c, h, w_, o, k, st, pad, g = case
    rng = np.random.default_rng(13)
    x = rng.standard_normal((n, c, h, w_), dtype=np.float32)
    w = _weights(rng, o, c // g, k, 0.7)
    bias = rng.standard_normal(o).astype(np.float32)
    kw = dict(stride=st, padding=pad, groups=g, bias=bias, relu=True)
    ref = reference(x, w, **kw)
    out = np.full(ref.shape, SENTINEL, np.float32)
    assert conv2d_im2col(x, w, threads=threads, out=out, **kw) is out
    _close(out, ref)
    _close(conv2d_reference(x, w, **kw), ref)


def test_im2col_1x1_skips_lowering():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((2, 7, 5, 6), dtype=np.float32)
    w = _weights(rng, 3, 7, 1, 1.0)
    _close(conv2d_im2col(x, w), reference(x, w))


def test_default_params_are_valid():
    from kernels_c.conv import ConvGeometry

    for geo in (ConvGeometry(96, 27, 27, 256, 5, 5, 1, 2, 2),
                ConvGeometry(256, 13, 13, 384, 3, 3, 1, 1, 1),
                ConvGeometry(64, 56, 56, 64, 3, 3, 1, 1, 1),
                ConvGeometry(3, 227, 227, 96, 11, 11, 4, 0, 1)):
        for level in _supported():
            if level == "avx512_vnni":
                continue
            p = default_params(geo, level)
            assert set(p) == set(PARAMS)
            assert p["tile_vectors"] in range(1, 25) and p["c_block"] >= 0 and p["o_block"] >= 1


def test_direct_work_counts_computed_columns_tiles_and_copy():
    from kernels_c.conv import ConvGeometry, direct_work

    # 7 x 7 output, pad 1: planes 9 x 9 (aligning to 16 would waste > 15 %), 63 computed
    # pixels = 4 vectors of 16 in one tile of 4: (4 FMAs + 3) per nonzero
    small = ConvGeometry(512, 7, 7, 512, 3, 3, 1, 1, 1)
    params = {"tile_vectors": 4, "c_block": 64, "align": 0}
    work = direct_work(small, "avx512", 1000.0, params)
    assert work == pytest.approx({"fma_slots": 7000.0, "tile_visits": 512 * 8 * 1.0,
                                  "copy_vectors": 512 * 81 / 16})
    # tiles of 1 vector: 4 tiles of (1 + 3); no channel blocks: one visit per tile
    work = direct_work(small, "avx512", 1000.0, {**params, "tile_vectors": 1, "c_block": 0})
    assert work["fma_slots"] == 16000.0 and work["tile_visits"] == 512 * 4
    # stride 2, aligned: 4 phase planes of 29 x 32 per channel, one copy per column phase
    # (S / stride = 2 shifted copies); 28 rows of 32 = 56 vectors, tiles of 19 -> 3 x 22
    strided = ConvGeometry(128, 56, 56, 128, 3, 3, 2, 1, 1)
    work = direct_work(strided, "avx512", 100.0, {"tile_vectors": 19, "c_block": 0, "align": 1})
    assert work == pytest.approx({"fma_slots": 100.0 * 66, "tile_visits": 128 * 3.0,
                                  "copy_vectors": 128 * 4 * 29 * 32 * 2 / 16})
    # defaults: the kernel's own choice (default_params) for the density
    d = direct_work(small, "avx512", 0.1 * 512 * 512 * 9)
    p = default_params(small, "avx512", 0.1) if "avx512" in _supported() else None
    if p is not None:
        assert d == direct_work(small, "avx512", 0.1 * 512 * 512 * 9, p)
    with pytest.raises(ValueError, match="unknown ISA path"):
        direct_work(small, "sse2", 10.0)
    with pytest.raises(ValueError, match="tile_vectors must be an int >= 1"):
        direct_work(small, "avx512", 10.0, {"tile_vectors": 0})
    with pytest.raises(ValueError, match="unknown conv parameter"):
        direct_work(small, "avx512", 10.0, {"tiles": 4})


def test_planes_are_moved_apart_in_the_gap_cases(isa_path):
    from kernels_c.conv import _lines_per_set, _overflow

    moved = 0
    for _, c, h, w, o, k, stride, pad, g in CASES[-3:]:
        conv = SparseConv2d(np.ones((o, c // g, k, k), np.float32), input_shape=(c, h, w),
                            stride=stride, padding=pad, groups=g, isa=isa_path)
        p, plane = conv.params, conv._hq * conv._wq
        unmoved = _lines_per_set(conv.geometry, isa_path, p["tile_vectors"],
                                 min(p["c_block"] or c // g, c // g), p["align"], plane)
        # moved exactly where the planes hq wq apart overflowed an 8-way L1 set
        assert (conv._plane_stride > plane) == (_overflow(*unmoved, 8)[0] > 0)
        moved += conv._plane_stride > plane
    assert moved >= 2


@pytest.mark.parametrize("geometry, params", [
    ((192, 30, 30, 48, 3, 3, 1, 1, 1), {}),            # 32 x 32 planes: 4 KiB apart
    ((64, 27, 27, 192, 5, 5, 1, 2, 1), {}),            # five shifted copies
    ((64, 62, 62, 64, 3, 3, 2, 1, 1), {}),             # four 32 x 32 phase planes each
    ((32, 45, 45, 48, 3, 3, 1, 1, 1), {"c_block": 8}),
    ((3, 40, 40, 16, 11, 11, 4, 2, 1), {"tile_vectors": 3}),
    ((24, 13, 13, 32, 3, 3, 1, 1, 2), {"align": 0}),    # groups, unaligned
    ((16, 9, 9, 8, 3, 3, 1, 1, 1), {"tile_vectors": 12, "c_block": 0}),  # tile > plane
])
def test_input_set_overflow_of_the_lines_the_kernels_offsets_read(isa_path, geometry, params):
    from kernels_c.conv import (
        L1_SETS,
        LINE_BYTES,
        VECTOR_WIDTH,
        _lines_per_set,
        _overflow,
        input_set_overflow,
    )

    c, h, w, o, r, s, stride, padding, groups = geometry
    geo = ConvGeometry(*geometry)
    weight = np.ones((o, c // groups, r, s), dtype=np.float32)
    conv = SparseConv2d(weight, input_shape=(c, h, w), stride=stride, padding=padding,
                        groups=groups, isa=isa_path, **params)
    p = conv.params
    # independent of input_set_overflow: the lines that output channel 0's nonzeros in
    # its first channel block read (a dense weight reads every line any weight can)
    tile = p["tile_vectors"] * VECTOR_WIDTH[isa_path]
    offsets = conv._offs[conv._kptr[0, 0]:conv._kptr[0, 1]].astype(np.int64)
    lines = np.unique(np.concatenate([np.arange(off * 4 // LINE_BYTES,
                                                (off + tile - 1) * 4 // LINE_BYTES + 1)
                                      for off in offsets]))
    for l1_bytes in (32 * 1024, 48 * 1024, 1 << 20):
        ways = l1_bytes // (L1_SETS * LINE_BYTES)
        per_set = np.bincount(lines % L1_SETS, minlength=L1_SETS)
        expected = np.maximum(per_set - ways, 0).sum() / len(lines)
        got = input_set_overflow(geo, isa_path, float(weight.size), p, l1_bytes)
        assert got == pytest.approx(expected, abs=1e-12)
    assert input_set_overflow(geo, isa_path, float(weight.size), p, 1 << 20) == 0.0
    if isa_path != "portable" and geometry[0] == 192:
        # aligned 32 x 32 planes, 4 KiB apart: moved apart, they overflow no set any more
        plane = conv._hq * conv._wq
        assert plane == 1024 and conv._plane_stride > plane
        before = _lines_per_set(geo, isa_path, p["tile_vectors"], min(p["c_block"] or c, c), 1,
                                plane)
        assert _overflow(*before, 8)[0] > 0.3      # 0.47 (avx512), 0.78 (avx2)
        assert input_set_overflow(geo, isa_path, float(weight.size), p) == 0.0
    pointwise = ConvGeometry(64, 14, 14, 64, 1, 1, 1, 0, 1)
    assert input_set_overflow(pointwise, isa_path, 100.0) == 0.0
    with pytest.raises(ValueError, match="unknown ISA path"):
        input_set_overflow(geo, "sse2", 10.0)
    # a layer SparseConv2d would refuse is refused before any C code runs
    with pytest.raises(ValueError, match="empty output"):
        input_set_overflow(ConvGeometry(8, 3, 3, 8, 5, 5, 1, 0, 1), isa_path, 10.0)
    with pytest.raises(ValueError, match="o must be >= 1"):
        input_set_overflow(ConvGeometry(8, 9, 9, 0, 3, 3, 1, 1, 1), isa_path, 10.0)
    with pytest.raises(ValueError, match="groups=3 must divide"):
        input_set_overflow(ConvGeometry(8, 9, 9, 6, 3, 3, 1, 1, 3), isa_path, 10.0)


# ---------------------------------------------------------------- bad input


def test_bad_construction_raises():
    w = np.ones((4, 3, 3, 3), np.float32)
    with pytest.raises(TypeError, match="float32"):
        SparseConv2d(w.astype(np.float64), input_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="4-D"):
        SparseConv2d(w[0], input_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="channel mismatch"):
        SparseConv2d(w, input_shape=(5, 8, 8))
    with pytest.raises(ValueError, match="groups=2 must divide"):
        SparseConv2d(w, input_shape=(3, 8, 8), groups=2)
    with pytest.raises(ValueError, match="channel mismatch"):
        SparseConv2d(np.ones((6, 3, 3, 3), np.float32), input_shape=(3, 8, 8), groups=3)
    with pytest.raises(ValueError, match="empty output"):
        SparseConv2d(w, input_shape=(3, 2, 8))
    with pytest.raises(ValueError, match="empty output"):
        SparseConv2d(np.ones((4, 3, 5, 5), np.float32), input_shape=(3, 8, 3), padding=0)
    with pytest.raises(ValueError, match="stride"):
        SparseConv2d(w, input_shape=(3, 8, 8), stride=0)
    with pytest.raises(ValueError, match="padding"):
        SparseConv2d(w, input_shape=(3, 8, 8), padding=-1)
    with pytest.raises(ValueError, match=r"input_shape must be \(C, H, W\)"):
        SparseConv2d(w, input_shape=(8, 8))
    with pytest.raises(ValueError, match="bias must have shape"):
        SparseConv2d(w, input_shape=(3, 8, 8), bias=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="unknown conv parameter"):
        SparseConv2d(w, input_shape=(3, 8, 8), tile=4)
    with pytest.raises(ValueError, match="tile_vectors"):
        SparseConv2d(w, input_shape=(3, 8, 8), tile_vectors=0)
    with pytest.raises(ValueError, match="tile_vectors must be <= 12"):
        SparseConv2d(w, input_shape=(3, 8, 8), tile_vectors=13, isa="portable")
    with pytest.raises(ValueError, match="unknown ISA"):
        SparseConv2d(w, input_shape=(3, 8, 8), isa="sse9")
    with pytest.raises(ValueError, match="pointwise=1 needs a 1x1 unpadded convolution"):
        SparseConv2d(w, input_shape=(3, 8, 8), pointwise=1)
    with pytest.raises(ValueError, match="pointwise=1 needs"):
        SparseConv2d(np.ones((4, 3, 1, 1), np.float32), input_shape=(3, 8, 8), padding=1,
                     pointwise=1)
    with pytest.raises(ValueError, match="pointwise must be 0 or 1"):
        SparseConv2d(np.ones((4, 3, 1, 1), np.float32), input_shape=(3, 8, 8), pointwise=2)
    # the same rules without a weight (perfmodel ranks candidate parameters with them)
    three, one = (ConvGeometry(c=3, h=8, w=8, o=4, r=k, s=k, stride=1, padding=0, groups=1)
                  for k in (3, 1))
    with pytest.raises(ValueError, match="pointwise=1 needs a 1x1 unpadded convolution"):
        check_params(three, {"pointwise": 1})
    with pytest.raises(ValueError, match="tile_vectors must be <= 12"):
        check_params(one, {"tile_vectors": 13}, isa="portable")
    assert check_params(one, {"pointwise": 1, "o_block": np.int64(8)}) == {"pointwise": 1,
                                                                         "o_block": 8}
    with pytest.raises(TypeError, match="CSR"):
        SparseConv2d(sp.coo_array(w.reshape(4, -1)), input_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="kernel_size"):
        SparseConv2d(sp.csr_array(np.ones((4, 3 * 6), np.float32)), input_shape=(3, 8, 8))


def test_bad_call_raises_before_c():
    w = np.ones((4, 3, 3, 3), np.float32)
    conv = SparseConv2d(w, input_shape=(3, 8, 8), padding=1)
    x = np.ones((2, 3, 8, 8), np.float32)
    with pytest.raises(ValueError, match="prepared for input_shape"):
        conv(np.ones((2, 3, 9, 8), np.float32))
    with pytest.raises(ValueError, match="prepared for input_shape"):
        conv(np.ones((2, 4, 8, 8), np.float32))
    with pytest.raises(ValueError, match="4-D"):
        conv(x[0])
    with pytest.raises(TypeError, match="dtype float32"):
        conv(x.astype(np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        conv(np.ones((8, 8, 3, 2), np.float32).transpose(3, 2, 1, 0))
    with pytest.raises(ValueError, match="out must have shape"):
        conv(x, out=np.empty((2, 4, 8, 7), np.float32))
    with pytest.raises(ValueError, match="threads"):
        conv(x, threads=0)
    with pytest.raises(ValueError, match="channel mismatch"):
        conv2d_im2col(x, np.ones((4, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="empty output"):
        conv2d_im2col(x, np.ones((4, 3, 9, 9), np.float32))


def test_default_tile_is_the_cheapest_and_the_widest_of_equals():
    """The default register tile minimizes the per-nonzero cost ceil(V / nv) (nv + 3) over
    the path's tiles, and of tiles that cost the same it takes the widest."""
    from kernels_c.conv import _DEFAULT_TILE, _default_tile, _tile_cost

    for level, widest in _DEFAULT_TILE.items():
        for vectors in range(1, 400):
            tiles = range(1, min(widest, vectors) + 1)
            nv = _default_tile(vectors, level)
            cheapest = min(_tile_cost(vectors, v) for v in tiles)
            assert _tile_cost(vectors, nv) == cheapest
            assert all(_tile_cost(vectors, v) > cheapest for v in tiles if v > nv)
