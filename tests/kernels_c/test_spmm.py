"""spmm: every ISA path, variant and thread count against scipy, edge cases, bad input."""

from __future__ import annotations

import importlib
import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels_c
from kernels_c._memory import aligned_empty
from kernels_c.spmm import PARAMS, VECTOR_WIDTH, default_params, plan_spmm, spmm_reference

SENTINEL = np.float32(-7777.0)
SPMM_MODULE = importlib.import_module("kernels_c.spmm")  # kernels_c.spmm: the function


@pytest.fixture
def unphased(monkeypatch):
    """Plans that copy B (whole or slice by slice) where they would read it by phase."""
    monkeypatch.setattr(SPMM_MODULE, "_PHASED_B_ISAS", ())


def _random_csr(rng, m, k, density, dtype=np.float32):
    return sp.random_array((m, k), density=density, format="csr", dtype=dtype, rng=rng)


def _check(a, b, **kw):
    ref = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)
    out = np.full((a.shape[0], b.shape[1]), SENTINEL, dtype=np.float32)
    got = kernels_c.spmm(a, b, out=out, **kw)
    assert got is out
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("n", [1, 3, 7, 8, 13, 15, 16, 17, 33, 48, 64, 65, 80, 129, 257])
@pytest.mark.parametrize("threads", [1, 2])
def test_matches_scipy_all_paths(isa_path, n, threads):
    rng = np.random.default_rng(n)
    a = _random_csr(rng, 37, 29, 0.3)
    b = rng.standard_normal((29, n), dtype=np.float32)
    for reg in PARAMS["reg_vectors"]:
        _check(a, b, isa=isa_path, threads=threads, reg_vectors=reg)


@pytest.mark.parametrize("n_tile", [16, 64, 128])
@pytest.mark.parametrize("prefetch", [0, 8])
def test_cache_tiling_and_prefetch(isa_path, n_tile, prefetch):
    rng = np.random.default_rng(1)
    a = _random_csr(rng, 50, 300, 0.1)
    b = rng.standard_normal((300, 200), dtype=np.float32)
    _check(a, b, isa=isa_path, n_tile=n_tile, reg_vectors=1, prefetch=prefetch)


@pytest.mark.parametrize(("k_block", "row_block"), [(16, 1), (32, 7), (64, 32)])
@pytest.mark.parametrize("threads", [1, 2])
def test_k_blocking(isa_path, k_block, row_block, threads):
    rng = np.random.default_rng(k_block + row_block)
    a = _random_csr(rng, 45, 301, 0.15)
    b = rng.standard_normal((301, 70), dtype=np.float32)
    for reg in (1, 4):
        _check(a, b, isa=isa_path, k_block=k_block, row_block=row_block, reg_vectors=reg,
               threads=threads, n_tile=16 * reg)


@pytest.mark.parametrize("n", [2, 5, 8, 13, 16])
@pytest.mark.parametrize("threads", [1, 2])
def test_k_blocking_of_narrow_b(isa_path, n, threads):
    rng = np.random.default_rng(n)
    a = _random_csr(rng, 70, 1000, 0.3)
    b = rng.standard_normal((1000, n), dtype=np.float32)
    for k_block, row_block in ((128, 4096), (256, 9), (300, 64)):
        _check(a, b, isa=isa_path, k_block=k_block, row_block=row_block, threads=threads)


@pytest.mark.parametrize("n", [8, 16])
@pytest.mark.parametrize("block_rows,indices16", [(0, False), (1, True), (2, False)])
def test_narrow_plans_read_uint16_row_offsets_within_65536_floats(isa_path, n, block_rows,
                                                                  indices16):
    """One vector per row of C: K blocks (or, without them, all of K) whose rows of B span
    at most 65536 floats (k_block * N) are read through uint16 offsets of B's rows from
    their block's first (plan.args.indices16); larger blocks keep the int32 column indices.
    block_rows 1: the largest such block, whose last row's offset is the largest index16
    holds; 2: one row more; 0: no K blocks over all of K."""
    rng = np.random.default_rng(n + block_rows)
    largest = 65536 // n
    k_block = {0: 0, 1: largest, 2: largest + 1}[block_rows]
    k = 2 * largest + 5
    dense = (rng.random((12, k)) < 0.01) * rng.standard_normal((12, k))
    dense[:, [0, largest - 1, largest, k - 1]] = 1.5  # the ends of the blocks
    a = sp.csr_array(dense.astype(np.float32))
    b = rng.standard_normal((k, n), dtype=np.float32)
    plan = plan_spmm(a, b, isa=isa_path, k_block=k_block)
    np.testing.assert_allclose(plan.run(), spmm_reference(a, b), rtol=1e-4, atol=1e-4)
    if plan.isa != "portable" and n <= VECTOR_WIDTH[plan.isa]:
        assert (plan.args.indices16 != plan.module.ffi.NULL) == indices16


@pytest.mark.parametrize("k_block", [1, 7, 64, 256, 1000])
@pytest.mark.parametrize("n,threads,row_block", [(20, 1, 32), (20, 2, 40), (8, 1, 32),
                                                 (8, 2, 32)])
def test_k_block_layout_regroups_each_rows_nonzeros_in_order(k_block, n, threads, row_block):
    """Segment (row i, block b) holds row i's nonzeros of block b in row order; with one
    vector per row of C (N = 8 on AVX2), or register tiles of up to 4 vectors (N = 20) and
    one block of rows, the rows are stored and visited per block sorted by segment length
    within each thread's rows."""
    rng = np.random.default_rng(k_block)
    dense = _random_csr(rng, 40, 300, 0.2).toarray()
    dense[4] = 0  # an empty row
    a = sp.csr_array(dense)
    for s, e in zip(a.indptr[:-1], a.indptr[1:], strict=True):  # unsorted rows
        order = rng.permutation(e - s)
        a.indices[s:e], a.data[s:e] = a.indices[s:e][order], a.data[s:e][order]
    plan = plan_spmm(a, rng.standard_normal((300, n), dtype=np.float32), k_block=k_block,
                     threads=threads, row_block=row_block,
                     isa="avx2" if kernels_c.isa() != "portable" else "portable")
    if plan.isa == "portable":
        pytest.skip("the portable path has no K blocking")
    ffi = plan.module.ffi
    nkb = plan.args.n_kblocks
    assert nkb == -(-300 // k_block)
    kptr = np.frombuffer(ffi.buffer(plan.args.kptr, 4 * (nkb * 40 + 1)), np.int32)
    val = np.frombuffer(ffi.buffer(plan.args.data, 4 * a.nnz), np.float32)
    assert (plan.args.indices16 != ffi.NULL) == (n <= 8)  # one vector per row of C
    if n <= 8:  # the uint16 copy only
        assert plan.args.indices == ffi.NULL
        idx = np.frombuffer(ffi.buffer(plan.args.indices16, 2 * a.nnz), np.uint16)
    else:
        idx = np.frombuffer(ffi.buffer(plan.args.indices, 4 * a.nnz), np.int32)
    ordered = n <= 8 or row_block >= 40
    assert (plan.args.row_order != ffi.NULL) == ordered
    if ordered:
        assert plan.args.order_threads == threads
        order = np.frombuffer(ffi.buffer(plan.args.row_order, 4 * nkb * 40), np.int32)
        order = order.reshape(nkb, 40)
        bounds = np.empty(threads + 1, np.int64)
        plan.module.lib.spmm_thread_rows(ffi.from_buffer("int32_t[]", a.indptr), 40,
                                         threads, ffi.from_buffer("int64_t[]", bounds))
    else:
        order = np.tile(np.arange(40), (nkb, 1))
        bounds = np.array([0, 40])
    assert kptr[0] == 0 and kptr[-1] == a.nnz and np.all(np.diff(kptr) >= 0)
    for blk in range(nkb):
        lengths = np.diff(kptr[blk * 40:(blk + 1) * 40 + 1])
        for lo, hi in itertools.pairwise(bounds):  # each thread's rows, shortest first
            assert sorted(order[blk, lo:hi]) == list(range(lo, hi))
            assert np.all(np.diff(lengths[lo:hi]) >= 0) or not ordered
        for r in range(40):
            i = order[blk, r]
            row_idx = a.indices[a.indptr[i]:a.indptr[i + 1]]
            row_val = a.data[a.indptr[i]:a.indptr[i + 1]]
            lo, hi = kptr[blk * 40 + r], kptr[blk * 40 + r + 1]
            in_block = row_idx // k_block == blk
            # relative to the block for sliced B; the uint16 copy of narrow plans holds
            # offsets of B's rows (row * N) from the block's first
            relative = plan.args.slice_b or plan.args.indices16 != ffi.NULL
            relative_to = blk * k_block if relative else 0
            scale = n if plan.args.indices16 != ffi.NULL else 1
            np.testing.assert_array_equal(idx[lo:hi],
                                          (row_idx[in_block] - relative_to) * scale)
            np.testing.assert_array_equal(val[lo:hi], row_val[in_block])


@pytest.mark.parametrize("n", [2, 8, 16])
@pytest.mark.parametrize("planned,run", [(1, 2), (2, 1), (2, 2)])
def test_row_order_for_another_thread_count(isa_path, n, planned, run):
    """A plan's row order is made for its thread count; run with another (as when OpenMP
    grants fewer threads) every row is still computed once."""
    rng = np.random.default_rng(n)
    a = _random_csr(rng, 333, 700, 0.3)
    b = rng.standard_normal((700, n), dtype=np.float32)
    plan = plan_spmm(a, b, threads=planned, isa=isa_path)
    plan.args.threads = run
    np.testing.assert_allclose(plan.run(), spmm_reference(a, b), rtol=1e-4, atol=1e-4)


def test_narrow_default_k_blocks():
    if "avx512" not in kernels_c._isa.supported_levels():
        pytest.skip("the narrow-N rule is for one 16-lane vector per row")

    def k_block(m, k, n, density, **kw):
        return default_params(m, k, n, density, isa="avx512", **kw)["k_block"]

    assert k_block(4096, 4096, 8, 0.5) == 1024  # 32 KiB of B
    assert k_block(4096, 4096, 8, 0.05) == 1024  # segments of ~50 nonzeros
    assert k_block(4096, 4096, 8, 0.02) == 2048  # of ~20: doubled to ~40
    assert k_block(4096, 4096, 8, 0.015) == 0    # ~31 even so: too short
    assert k_block(4096, 4096, 16, 0.02) == 0    # 64 KiB blocks of 64-byte rows: ~20
    assert k_block(4096, 4096, 8, 0.5, expected_calls=1) == 0  # the copy would not pay
    assert k_block(4096, 4096, 4, 0.2) == 2048  # B of 64 KiB: 32 KiB blocks
    assert k_block(4096, 1024, 8, 0.5) == 0     # B fits 32 KiB
    assert k_block(4096, 4096, 1, 0.5) == 0     # the SpMV path
    assert default_params(8192, 4096, 8, 0.5, isa="avx512")["row_block"] == 8192  # all rows
    assert default_params(2048, 4096, 1024, 0.5)["row_block"] == 1024  # 4 MiB of C


@pytest.mark.parametrize("m, k, n, density", [
    (40, 64, 400, 0.5),     # K within one block: 128-column N tiles
    (24, 147, 1280, 0.5),   # N a multiple of 256: N tiles under K blocks
    (30, 200, 300, 0.2),    # B in L2, small panel
    (50, 700, 390, 0.03),   # streams B: N tiles, any row length
])
@pytest.mark.parametrize("threads", [1, 2])
def test_default_n_tiles_match_reference(m, k, n, density, threads):
    rng = np.random.default_rng(m + k + n)
    a = _random_csr(rng, m, k, density)
    b = rng.standard_normal((k, n), dtype=np.float32)
    if "avx512" in kernels_c._isa.supported_levels():
        assert default_params(m, k, n, a.nnz / (m * k), isa="avx512")["n_tile"] == 128
    _check(a, b, threads=threads)


def test_streamed_b_is_prefetched_only_beyond_half_the_l2(monkeypatch):
    spmm_module = SPMM_MODULE
    assert spmm_module._l2_bytes() > 0  # CPUID's L2, or 1 MiB assumed

    def prefetch(l2_bytes, m, k, n, density):
        monkeypatch.setattr(spmm_module, "_l2_bytes", lambda: l2_bytes)
        return default_params(m, k, n, density, isa="avx2")["prefetch"]

    # 1 MiB of B (K x N) streamed, not K blocked: from L2 on a 2 MiB L2, beyond half of 1 MiB
    assert prefetch(2 << 20, 2048, 2048, 128, 0.05) == 0
    assert prefetch(1 << 20, 2048, 2048, 128, 0.05) == 16
    assert prefetch(1 << 20, 2048, 2048, 128, 0.3) == 0  # K blocked: nothing streams


def test_four_vector_tiles_k_block_from_density_0_09():
    def k_block(m, k, n, density, isa="avx2"):
        return default_params(m, k, n, density, isa=isa)["k_block"]

    assert k_block(512, 4608, 49, 0.1) == 256   # segments of ~26 nonzeros
    assert k_block(512, 2048, 49, 0.2) == 256   # B in L2, beyond a 64 KiB block: blocked
    assert k_block(512, 4608, 48, 0.08) == 0    # below 0.09: B streamed
    assert k_block(512, 4608, 49, 0.08) == 256  # ... unless B is copied anyway (next test)
    assert k_block(1024, 256, 49, 0.2) == 0     # B (49 KiB) fits one block
    assert k_block(1024, 2048, 16, 0.1) == 0    # two-vector tiles (AVX2): from 0.15 on
    assert k_block(1024, 2048, 16, 0.2) == 1024


def test_avx2_l1_n_tiles_from_density_0_38():
    """AVX2, 4-vector tiles, a 64-row K block of all N beyond 64 KiB: N tiles of 64
    columns keep a 16 KiB slice of B in L1 (sparsity <= 0.62)."""
    def tiles(m, k, n, density):
        p = default_params(m, k, n, density, isa="avx2")
        return p["reg_vectors"], p["k_block"], p["n_tile"]

    assert tiles(384, 2304, 1352, 0.5) == (4, 64, 64)
    assert tiles(64, 576, 3136, 0.4) == (4, 64, 64)
    assert tiles(256, 2304, 392, 0.38) == (4, 64, 64)
    assert tiles(384, 2304, 1352, 0.3)[2] == 0    # sparser: the block of all N
    assert tiles(1024, 1024, 256, 0.5) == (4, 64, 0)  # 64 x 256 of B fits 64 KiB
    assert tiles(4096, 4096, 128, 0.5) == (4, 128, 0)


def test_avx2_l1_n_tiles_at_any_k_block_density_where_rows_of_b_alias():
    """Sparser than that, the same N tiles where the slice's rows, one row of B apart,
    overflow an L1 set and serve enough nonzeros to be copied: down to density 0.25, and
    below it where every row of B falls in the same sets (N a multiple of 1024)."""
    def tiles(m, k, n, density):
        p = default_params(m, k, n, density, isa="avx2")
        return p["k_block"], p["n_tile"]

    assert tiles(1024, 1024, 1024, 0.3) == (64, 64)
    assert tiles(2368, 304, 1024, 0.1) == (128, 64)
    assert tiles(512, 768, 2048, 0.2) == (64, 64)
    assert tiles(1024, 512, 512, 0.3)[1] == 64        # rows 2 KiB apart
    assert tiles(1024, 512, 512, 0.2)[1] == 0
    assert tiles(768, 512, 768, 0.3)[1] == 64 and tiles(768, 512, 768, 0.2)[1] == 0
    assert tiles(1024, 1024, 1008, 0.3) == (64, 0)   # rows one line further each
    assert tiles(64, 147, 12544, 0.3)[1] == 0        # 19 uses a row of B: not copied
    assert tiles(1024, 1024, 1024, 0.05)[1] == 0     # below the K-block densities


def test_avx2_ragged_rows_take_one_8_vector_tile():
    """AVX2, N of 5-7 vectors with a ragged last one: one 8-vector tile over the row
    from sparsity 0.9 on, or at any sparsity while B fits 128 KiB; the other blocking is
    unchanged."""
    from kernels_c.spmm import _blocking

    for m, k, n in ((512, 4608, 49), (2048, 512, 49), (64, 576, 49), (2048, 512, 33)):
        for density in (0.1, 0.05, 0.02):
            p = default_params(m, k, n, density, isa="avx2")
            assert p["reg_vectors"] == 8, (m, k, n, density)
            assert {**p, "reg_vectors": 4} == _blocking("avx2", m, k, n, density, None)
        small_b = 4 * k * n <= 128 * 1024
        for density in (0.2, 0.5, 0.7):
            p = default_params(m, k, n, density, isa="avx2")
            assert p["reg_vectors"] == (8 if small_b else 4), (m, k, n, density)
    for n in (56, 64, 32, 65, 196):  # full last vector, one 4-vector tile, wider N
        assert default_params(2048, 512, n, 0.1, isa="avx2")["reg_vectors"] == 4
    assert default_params(2048, 512, 49, 0.1, isa="portable")["reg_vectors"] == 4


def test_avx2_wide_k_blocks_hold_12_nonzeros_per_segment():
    """AVX2, 4-vector tiles: where a K block of ~16 nonzeros per segment would hold more
    than 256 KiB of B (all N columns), half as many rows (>= 64), if a segment keeps 12."""
    from kernels_c.spmm import _blocking

    def k_block(m, k, n, density):
        return default_params(m, k, n, density, isa="avx2")["k_block"]

    assert k_block(64, 576, 3136, 0.1) == 128  # 256 rows: 3.1 MiB of B
    assert k_block(64, 576, 3136, 0.2) == 64
    assert k_block(4096, 1024, 512, 0.1) == 128  # 512 KiB
    assert k_block(4096, 1024, 512, 0.2) == 128  # 256 KiB: not beyond
    assert k_block(1024, 1024, 256, 0.1) == 256  # 256 KiB
    assert k_block(64, 576, 3136, 0.5) == 64  # never below 64 rows
    assert _blocking("avx512", 4096, 1024, 512, 0.1, None)["k_block"] != 128


def test_avx2_k_blocks_b_beyond_the_l2_at_high_sparsity():
    """AVX2, B over 1 MiB read in place, below the K-block densities: where no slice of
    B within 512 KiB gives 12 nonzeros per row segment, K blocks of ~10 (a power of two)
    down to density 0.03, or with B beyond 8 MiB; otherwise B is streamed, as on AVX-512."""
    from kernels_c.spmm import _blocking

    def blocks(m, k, n, density):
        p = default_params(m, k, n, density, isa="avx2")
        return p["k_block"], p["prefetch"]

    assert blocks(384, 2304, 1352, 0.08) == (128, 0)
    assert blocks(384, 2304, 1352, 0.05) == (256, 0)
    assert blocks(384, 2304, 1352, 0.02) == (512, 0)  # B 12 MiB
    assert blocks(2048, 1024, 1000, 0.05) == (256, 0)
    assert default_params(2048, 1024, 1000, 0.05, isa="avx2")["row_block"] == 1048
    assert blocks(2048, 1024, 1000, 0.02) == (0, 16)  # B 4 MiB: streamed
    assert blocks(64, 576, 3136, 0.02) == (0, 16)  # 7 MiB
    assert _blocking("avx512", 2048, 1024, 1000, 0.05, None)["k_block"] == 0
    assert blocks(4096, 4096, 128, 0.02) == (1024, 0)  # the 512 KiB slice holds 20
    assert blocks(256, 2304, 196, 0.05) == (512, 0)  # ragged N: copied B, K blocked anyway
    assert blocks(1024, 1024, 128, 0.05) == (0, 0)  # B within 1 MiB


def test_copied_b_k_blocked_below_the_k_block_densities():
    """N not a multiple of the vector width: B is copied on every call (more than 512 KiB
    of it, rows used >= 4 times), so below the K-block densities it is K blocked anyway, in
    one block of rows (the copy then goes slice by slice), segments of >= 16 nonzeros."""
    def tiles(m, k, n, density, isa="avx512"):
        p = default_params(m, k, n, density, isa=isa)
        return p["k_block"], p["row_block"], p["n_tile"]

    assert tiles(512, 4608, 49, 0.05, isa="avx2") == (512, 512, 0)
    assert tiles(512, 4608, 48, 0.05, isa="avx2") == (0, 32, 0)  # a vector multiple
    assert tiles(512, 4608, 49, 0.005, isa="avx2") == (0, 32, 0)  # rows of B used 2.6 times
    assert tiles(512, 1024, 100, 0.05, isa="avx2") == (0, 32, 0)  # 400 KiB of B
    assert tiles(65536, 4608, 49, 0.05, isa="avx2")[0] == 0  # C beyond one block of rows
    if "avx512" in kernels_c._isa.supported_levels():
        assert tiles(384, 2304, 1352, 0.07) == (256, 384, 128)  # 8-vector tiles: N tiles
        assert tiles(384, 2304, 1352, 0.02) == (1024, 384, 128)
        assert tiles(256, 2304, 196, 0.05) == (512, 256, 0)  # B > 1 MiB: its own K blocks


def test_wide_default_tiles():
    if "avx512" not in kernels_c._isa.supported_levels():
        pytest.skip("the rule is for AVX-512's 32 vector registers")

    def tiles(m, k, n, density, isa="avx512"):
        p = default_params(m, k, n, density, isa=isa)
        return p["reg_vectors"], p["k_block"], p["n_tile"]

    assert tiles(384, 2304, 1352, 0.45) == (8, 64, 128)  # 64 x 1352 of B > 64 KiB: N tiles
    assert tiles(1024, 1024, 256, 0.45) == (8, 64, 0)    # the K block of all N fits
    assert tiles(1024, 1024, 512, 0.45) == (8, 64, 0)    # N % 512 == 0: tiles alias in L1
    assert tiles(256, 1024, 768, 0.45) == (8, 64, 128)   # rows 3 KiB apart: half the sets
    assert tiles(64, 147, 12544, 0.5) == (8, 64, 128)    # 1 KiB apart (modulo 4 KiB)
    assert tiles(4096, 4096, 128, 0.45) == (4, 128, 0)   # N = 128 keeps 4-vector tiles
    assert tiles(384, 2304, 1352, 0.1) == (8, 256, 128)  # N tiles: K blocks to 0.08
    assert tiles(64, 576, 3136, 0.1) == (8, 0, 128)      # 128 KiB slices, 288 KiB panel
    assert tiles(256, 1024, 784, 0.1) == (8, 256, 128)   # a 512 KiB panel keeps K blocks
    assert tiles(64, 576, 3136, 0.2) == (8, 128, 128)    # 64 KiB slices keep K blocks
    assert tiles(64, 576, 3136, 0.05) == (8, 0, 128)     # not K blocked: N tiles
    assert tiles(64, 576, 3136, 0.02) == (8, 0, 128)     # rows of 12: N tiles even so
    assert tiles(64, 1152, 3136, 0.05) == (8, 0, 128)    # a 576 KiB panel: N tiles too
    assert tiles(384, 2304, 1352, 0.05, isa="avx2") == (4, 0, 0)  # too sparse to K block
    assert tiles(256, 512, 2048, 0.05) == (8, 0, 256)    # N % 512 == 0: L2 panels
    assert tiles(256, 512, 2048, 0.02) == (8, 0, 0)      # ... for rows of >= 24 only
    assert tiles(1024, 1024, 512, 0.2) == (4, 128, 0)    # 8 x 128 rows would leave L1
    assert tiles(1024, 1024, 512, 0.1) == (8, 256, 0)    # 8-vector tiles: to 0.08 too
    # sparser: K blocks only for B beyond the L2, in slices of 512 KiB of B that give row
    # segments of >= 12 nonzeros
    assert tiles(1024, 1024, 512, 0.05)[:2] == (8, 256)  # 2 MiB of B, 12.8 per segment
    assert tiles(1024, 1024, 512, 0.04)[:2] == (8, 0)    # 10.2 per segment
    assert tiles(4096, 4096, 128, 0.05) == (4, 1024, 0)  # 2 MiB of B
    assert tiles(2048, 2048, 128, 0.05) == (4, 0, 0)     # 1 MiB of B: from the L2
    assert tiles(384, 2304, 1352, 0.45, isa="avx2") == (4, 64, 64)  # 16 registers
    assert tiles(1024, 256, 196, 0.5) == (8, 32, 0)      # B in L2, dense enough to block
    #                                                    (by phase: 16 nonzeros per segment)
    assert tiles(1024, 256, 196, 0.2) == (8, 0, 128)     # B in L2: 128 KiB panels
    assert tiles(256, 64, 3136, 0.5) == (8, 0, 128)      # K within one block: 32 KiB panels
    assert tiles(256, 64, 3136, 0.05) == (8, 0, 128)     # sparse, short rows: still
    assert tiles(512, 512, 1024, 0.2)[2] == 0            # aliasing N: no small panels
    for level in ("portable", "avx2", "avx512"):
        p = default_params(384, 2304, 1352, 0.45, isa=level)
        assert p["n_tile"] % VECTOR_WIDTH[level] == 0


@pytest.mark.parametrize("bad", [0, -3, 2.5, "many", True])
def test_expected_calls_must_be_a_positive_int(bad):
    a = _random_csr(np.random.default_rng(0), 8, 8, 0.5)
    with pytest.raises(ValueError, match="expected_calls"):
        plan_spmm(a, np.ones((8, 4), np.float32), expected_calls=bad)


def test_reference_ignores_the_k_block_layout():
    rng = np.random.default_rng(9)
    a = _random_csr(rng, 300, 4096, 0.3)
    b = rng.standard_normal((4096, 8), dtype=np.float32)
    expected = (a.astype(np.float64) @ b).astype(np.float32)
    np.testing.assert_allclose(spmm_reference(a, b), expected, rtol=1e-4, atol=1e-3)


def test_k_blocking_of_unsorted_rows_leaves_the_callers_matrix_alone(isa_path):
    rng = np.random.default_rng(8)
    a = _random_csr(rng, 30, 200, 0.2)
    perm = a.indices.copy()
    for i in range(a.shape[0]):  # reverse each row's column order
        s, e = a.indptr[i], a.indptr[i + 1]
        a.indices[s:e], a.data[s:e] = a.indices[s:e][::-1].copy(), a.data[s:e][::-1].copy()
    a.has_sorted_indices = False
    before = a.indices.copy()
    _check(a, rng.standard_normal((200, 40), dtype=np.float32), isa=isa_path, k_block=32)
    np.testing.assert_array_equal(a.indices, before)  # the caller's matrix is untouched
    assert not np.array_equal(perm, before)


@pytest.mark.parametrize("k_block", [32, 48])  # a shift and a division
@pytest.mark.parametrize("n", [8, 40])  # rows visited sorted by length, and in order
def test_k_blocks_of_shuffled_rows(isa_path, k_block, n):
    """Rows whose columns alternate between K blocks: A's regrouping copies each run of
    one block's nonzeros in turn, keeping their order within the segment."""
    rng = np.random.default_rng(9)
    a = _random_csr(rng, 50, 300, 0.3)
    for i in range(a.shape[0]):
        s, e = a.indptr[i], a.indptr[i + 1]
        perm = rng.permutation(e - s)
        a.indices[s:e], a.data[s:e] = a.indices[s:e][perm].copy(), a.data[s:e][perm].copy()
    a.has_sorted_indices = False
    b = rng.standard_normal((300, n), dtype=np.float32)
    _check(a, b, isa=isa_path, k_block=k_block)
    # a plan for many calls also visits the rows sorted by segment length (narrow N)
    plan = plan_spmm(a, b, isa=isa_path, k_block=k_block, threads=2)
    expected = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)
    np.testing.assert_allclose(plan.run(), expected, rtol=1e-4, atol=1e-4)


def test_accumulator_variant_compiled_on_demand(isa_path, tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELS_C_CACHE", str(tmp_path))
    kernels_c._loader.load.cache_clear()
    rng = np.random.default_rng(2)
    a = _random_csr(rng, 40, 40, 0.2)
    b = rng.standard_normal((40, 70), dtype=np.float32)
    _check(a, b, isa=isa_path, acc_sets=1)
    _check(a, b, isa=isa_path, acc_sets=1, prefetch=8, k_block=16)
    assert len(list(tmp_path.glob("_spmm_v*"))) == 1, "variant was not cached"
    kernels_c._loader.load.cache_clear()


@pytest.mark.parametrize(
    ("m", "k", "n"), [(1, 1, 1), (1, 50, 17), (50, 1, 17), (13, 7, 1), (3, 3, 3)]
)
def test_degenerate_shapes(isa_path, m, k, n):
    rng = np.random.default_rng(m * 100 + k)
    a = _random_csr(rng, m, k, 0.5)
    b = rng.standard_normal((k, n), dtype=np.float32)
    _check(a, b, isa=isa_path)


def test_empty_rows_zero_matrix_single_nonzero(isa_path):
    rng = np.random.default_rng(3)
    b = rng.standard_normal((20, 19), dtype=np.float32)
    zero = sp.csr_array((10, 20), dtype=np.float32)
    _check(zero, b, isa=isa_path, threads=2)
    one = sp.csr_array(([2.5], ([7], [11])), shape=(10, 20), dtype=np.float32)
    _check(one, b, isa=isa_path, threads=2)
    dense = rng.standard_normal((10, 20)).astype(np.float32)
    dense[::2] = 0  # every other row empty
    _check(sp.csr_array(dense), b, isa=isa_path)


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.uint8, np.float64])
def test_allocated_outputs_start_on_a_cache_line(dtype):
    """Outputs the kernels allocate are 64-byte aligned (numpy guarantees 16)."""
    from kernels_c._validate import check_out

    for shape in [(3, 5), (0, 7), (2, 3, 4)]:
        out = check_out(None, shape, dtype, ())
        assert out.shape == shape and out.dtype == dtype and out.flags.c_contiguous
        assert out.flags.writeable and (out.size == 0 or out.ctypes.data % 64 == 0)
    rng = np.random.default_rng(2)
    assert plan_spmm(_random_csr(rng, 9, 12, 0.3), np.ones((12, 20), np.float32)
                     ).out.ctypes.data % 64 == 0


def test_unaligned_buffers(isa_path):
    rng = np.random.default_rng(4)
    a = _random_csr(rng, 30, 40, 0.3)
    raw = np.empty(40 * 35 + 1, dtype=np.float32)
    b = raw[1:].reshape(40, 35)  # 4-byte offset: not 16/32/64-byte aligned
    b[...] = rng.standard_normal((40, 35))
    assert b.ctypes.data % 64 != 0
    raw_out = np.empty(30 * 35 + 1, dtype=np.float32)
    out = raw_out[1:].reshape(30, 35)
    ref = a @ b
    np.testing.assert_allclose(kernels_c.spmm(a, b, out=out, isa=isa_path), ref, rtol=1e-4,
                               atol=1e-4)


@pytest.mark.parametrize("extra", [{}, {"k_block": 32}, {"n_tile": 64, "reg_vectors": 1},
                                   {"reg_vectors": 8}])
def test_every_misalignment_of_b_is_peeled_correctly(isa_path, extra):
    """B rows misaligned by 0..15 floats: the first columns run as a masked tile so the
    register tiles load aligned (plan.args.peel); results must not depend on it."""
    rng = np.random.default_rng(11)
    a = _random_csr(rng, 23, 70, 0.4)
    n = 160
    raw = np.empty(70 * n + 64, dtype=np.float32)
    start = (-raw.ctypes.data % 64) // 4
    peels, tile = set(), 0
    for offset in range(16):
        b = raw[start + offset:start + offset + 70 * n].reshape(70, n)
        b[...] = rng.standard_normal((70, n))
        _check(a, b, isa=isa_path, **extra)
        plan = plan_spmm(a, b, isa=isa_path, **extra)
        peels.add(plan.args.peel)
        tile = plan.params["reg_vectors"] * VECTOR_WIDTH[plan.isa]
    if isa_path != "portable" and n >= 2 * tile:
        assert len(peels) > 1   # the misaligned offsets were peeled


@pytest.mark.parametrize("threads", [1, 2])
def test_misaligned_b_copied_instead_of_peeled_when_rows_of_b_are_reused(isa_path, threads):
    """N a multiple of the vector width: a misaligned B whose rows each serve >= 48
    nonzeros is copied to aligned rows (no peel); an aligned B is read in place."""
    rng = np.random.default_rng(5)
    a = _random_csr(rng, 200, 30, 0.5)
    assert a.nnz >= 48 * 30
    n = 64
    raw = aligned_empty(30 * n + 16)
    for offset in (0, 1, 4, 8):
        b = raw[offset:offset + 30 * n].reshape(30, n)
        b[...] = rng.standard_normal((30, n))
        _check(a, b, isa=isa_path, threads=threads)
        plan = plan_spmm(a, b, isa=isa_path, threads=threads)
        first = plan.run().copy()
        b *= 2.0
        np.testing.assert_allclose(plan.run(), 2.0 * first, rtol=1e-5, atol=1e-5)
        vw = VECTOR_WIDTH[plan.isa]
        expect = plan.isa != "portable" and offset % vw != 0
        assert (plan.args.b_pack != plan.module.ffi.NULL) == expect
        assert plan.args.peel == 0 or not expect


@pytest.mark.parametrize("n,density,copied", [(32, 0.3, True), (32, 0.05, False),
                                               (192, 0.3, False)])
def test_misaligned_b_below_two_register_tiles_copied_from_4_uses_else_peeled(
        isa_path, n, density, copied):
    """N a multiple of the vector width but below two register tiles and 8 vectors, B
    misaligned: copied to aligned rows (whole or slice by slice) when its rows serve >= 4
    (and < 48) nonzeros each, else peeled; from 8 vectors of N (N = 192) peeled; never read
    misaligned (1.6-2.2x slower at sparsity 0.9-0.95, docs/spmm.md)."""
    rng = np.random.default_rng(7)
    a = _random_csr(rng, 40, 200, density)
    assert (a.nnz >= 4 * 200) == (density > 0.1) and a.nnz < 48 * 200  # uses per row of B
    raw = aligned_empty(200 * n + 16)
    for offset in (0, 4):
        b = raw[offset:offset + 200 * n].reshape(200, n)
        b[...] = rng.standard_normal((200, n))
        _check(a, b, isa=isa_path)
        plan = plan_spmm(a, b, isa=isa_path)
        if plan.isa == "portable":
            continue
        copy = plan.args.b_pack != plan.module.ffi.NULL or bool(plan.args.slice_b)
        assert copy == (offset > 0 and copied)
        vw = VECTOR_WIDTH[plan.isa]
        assert plan.args.peel == (0 if offset == 0 or copied else vw - offset)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [100, 257])
def test_k_blocks_under_n_tiles_read_a_copied_slice_of_b(isa_path, threads, n):
    """K blocks under N tiles, slices of >= 64 KiB, rows of B serving >= 32 nonzeros: each
    thread copies the block's slice of its tile (plan.args.slice_b), A's indices become
    block-relative; any offset of B, the last tile and K block partial, a changed B seen
    on the next run."""
    rng = np.random.default_rng(n)
    a = _random_csr(rng, 90, 600, 0.5)
    raw = aligned_empty(600 * n + 16)
    for offset in (0, 3):
        b = raw[offset:offset + 600 * n].reshape(600, n)
        b[...] = rng.standard_normal((600, n))
        vw = VECTOR_WIDTH.get(isa_path, 16)
        n_tile = 64 if vw == 16 else 32
        plan = plan_spmm(a, b, isa=isa_path, threads=threads, k_block=16384 // n_tile,
                         n_tile=n_tile, reg_vectors=2, row_block=40)
        ref = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)
        np.testing.assert_allclose(plan.run(), ref, rtol=1e-4, atol=1e-3)
        b *= -1.0
        np.testing.assert_allclose(plan.run(), -ref, rtol=1e-4, atol=1e-3)
        assert plan.args.slice_b == (isa_path != "portable")
        plan.args.threads = 3 - threads  # scratch is per thread of the team that runs
        np.testing.assert_allclose(plan.run(), -ref, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("n", [512, 528])
def test_l1_sized_slices_are_copied_where_rows_of_b_alias_in_l1(isa_path, n):
    """K blocks of 64 rows under 64-column N tiles (16 KiB slices, L1-sized) read B in
    place, unless its rows, a multiple of 2 KiB apart (N = 512), put more lines into an L1
    set than it has ways: then each thread copies the slices, as it does larger ones."""
    rng = np.random.default_rng(n)
    a = _random_csr(rng, 96, 256, 0.5)
    b = rng.standard_normal((256, n)).astype(np.float32)
    plan = plan_spmm(a, b, isa=isa_path, k_block=64, n_tile=64, reg_vectors=2, row_block=48)
    ref = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)
    np.testing.assert_allclose(plan.run(), ref, rtol=1e-4, atol=1e-3)
    assert plan.args.slice_b == (isa_path != "portable" and n == 512)


def test_slice_overflow_counts_lines_per_l1_set():
    """64-byte lines, 64 sets, 8 ways: 4 KiB apart every row's lines share the same sets."""
    from kernels_c.spmm import _slice_overflows_l1

    assert not _slice_overflows_l1(8, 64, 1024)      # 8 rows x 4 lines in 4 sets: full
    assert _slice_overflows_l1(9, 64, 1024)
    assert _slice_overflows_l1(64, 64, 512) and _slice_overflows_l1(64, 64, 768)
    assert not _slice_overflows_l1(64, 64, 1040)     # each row one set further
    assert not _slice_overflows_l1(64, 64, 960) and not _slice_overflows_l1(64, 64, 3136)
    assert _slice_overflows_l1(16, 8, 1024)           # a line a row, 16 in one set


@pytest.mark.parametrize("n", [20, 49, 100, 196])
@pytest.mark.parametrize("planned,run", [(1, 1), (2, 2), (2, 1), (1, 2)])
def test_k_blocks_in_one_row_block_slice_b_instead_of_packing_it(isa_path, n, planned, run,
                                                                 unphased):
    """K blocks and one block of rows of C, B's rows misaligned (N not a multiple of the
    vector width): B is copied slice by slice (plan.args.slice_b), not packed whole, and
    with register tiles of up to 4 vectors the rows are visited sorted by segment length
    (plan.args.row_order); right for the thread count planned and for another, and a
    changed B is seen on the next run."""
    rng = np.random.default_rng(n)
    dense = _random_csr(rng, 70, 400, 0.3).toarray()
    dense[30:] *= rng.random((40, 400)) < 0.2  # rows of unequal lengths for the threads
    a = sp.csr_array(dense)
    b = rng.standard_normal((400, n), dtype=np.float32)
    for reg_vectors in (4, 8):
        plan = plan_spmm(a, b, isa=isa_path, threads=planned, k_block=64, row_block=70,
                         reg_vectors=reg_vectors)
        plan.args.threads = run
        ref = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)
        np.testing.assert_allclose(plan.run(), ref, rtol=1e-4, atol=1e-3)
        b *= -1.0
        np.testing.assert_allclose(plan.run(), -ref, rtol=1e-4, atol=1e-3)
        vw = VECTOR_WIDTH[plan.isa]
        wide = plan.isa != "portable" and n > vw
        assert plan.args.b_pack == plan.module.ffi.NULL
        assert plan.args.slice_b == (wide and n % vw != 0 and n >= 2 * vw)
        assert (plan.args.row_order != plan.module.ffi.NULL) == (wide and reg_vectors == 4)


@pytest.mark.parametrize("n,reg_vectors", [(17, 4), (33, 4), (49, 4), (65, 8), (145, 8)])
@pytest.mark.parametrize("threads", [1, 2])
def test_sliced_last_column_apart_of_the_register_tiles(isa_path, n, reg_vectors, threads,
                                                        unphased):
    """A last column that would take a masked vector of its own (N = 1 modulo the vector
    width) is kept apart in the K block's slice and read by a gathered dot product on
    AVX-512: segments of 0-40 nonzeros (full gathers, a masked rest, none), summed over K
    blocks, NaN and Inf in that column of B propagated to that column of C alone."""
    rng = np.random.default_rng(n)
    k, k_block, lengths = 256, 64, (0, 1, 15, 16, 17, 32, 40, 7)
    rows = []
    for length in lengths:  # `length` nonzeros of the row in every K block
        row = np.zeros(k, dtype=np.float32)
        for start in range(0, k, k_block):
            cols = start + rng.choice(k_block, size=length, replace=False)
            row[cols] = rng.standard_normal(length)
        rows.append(row)
    a = sp.csr_array(np.vstack(rows * 3))
    b = rng.standard_normal((k, n), dtype=np.float32)
    plan = plan_spmm(a, b, isa=isa_path, threads=threads, k_block=k_block,
                     row_block=a.shape[0], n_tile=128, reg_vectors=reg_vectors)
    ref = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)
    np.testing.assert_allclose(plan.run(), ref, rtol=1e-4, atol=1e-3)
    vw = VECTOR_WIDTH[plan.isa]
    assert plan.args.slice_b == (plan.isa != "portable" and n >= 2 * vw)  # (_pack_ld)
    assert plan.args.column_apart == (plan.isa == "avx512" and plan.args.slice_b)
    # a NaN under row 2's nonzeros (15 per block), an Inf under row 3's (16), not both
    nan_at = np.setdiff1d(a[[2]].indices, a[[3]].indices)[0]
    inf_at = np.setdiff1d(a[[3]].indices, a[[2]].indices)[-1]
    b[nan_at, -1], b[inf_at, -1] = np.nan, np.inf
    got = plan.run()
    uses = a.toarray()[:, [nan_at, inf_at]] != 0
    np.testing.assert_array_equal(np.isnan(got[:, -1]), uses[:, 0])
    np.testing.assert_array_equal(np.isinf(got[:, -1]), uses[:, 1] & ~uses[:, 0])
    np.testing.assert_allclose(got[:, :-1], ref[:, :-1], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("n", [17, 49, 100, 196])
@pytest.mark.parametrize("extra", [{}, {"k_block": 32}, {"n_tile": 48, "reg_vectors": 1}])
@pytest.mark.parametrize("threads", [1, 2])
def test_b_copied_to_aligned_rows_when_n_is_not_a_vector_multiple(isa_path, n, extra,
                                                                  threads, unphased):
    """N not a multiple of the vector width: each run first copies B into aligned rows
    (plan.args.b_pack, or slice by slice with K blocks in one block of rows) and reads that
    copy; any offset of B, and a changed B is seen."""
    rng = np.random.default_rng(n)
    a = _random_csr(rng, 41, 70, 0.4)
    raw = np.empty(70 * n + 16, dtype=np.float32)
    for offset in (0, 1, 5):
        b = raw[offset:offset + 70 * n].reshape(70, n)
        b[...] = rng.standard_normal((70, n))
        _check(a, b, isa=isa_path, threads=threads, **extra)
        plan = plan_spmm(a, b, isa=isa_path, threads=threads, **extra)
        first = plan.run().copy()
        b *= 2.0  # the plan reads B anew on every run: so must the copy
        np.testing.assert_allclose(plan.run(), 2.0 * first, rtol=1e-5, atol=1e-5)
        vw = VECTOR_WIDTH[plan.isa]
        expect = plan.isa != "portable" and n % vw != 0 and n >= 2 * vw
        sliced = expect and plan.params["k_block"] > 0 and plan.params["row_block"] >= 41
        assert plan.args.slice_b == sliced  # (the copy K block by K block: tested above)
        assert (plan.args.b_pack != plan.module.ffi.NULL) == (expect and not sliced)


@pytest.mark.parametrize("n", [36, 44, 68, 100, 196, 250])
@pytest.mark.parametrize("threads", [1, 2])
def test_phased_k_blocks_read_b_in_place(isa_path, n, threads):
    """Where B would be copied for K blocks (N not a multiple of the vector width), the K
    blocks take B's rows of one phase each and read them in place (plan.args.phase_period):
    any offset of B, register tiles of 2-8 vectors, one and several blocks of rows, run
    with another thread count, a changed B seen; every output written, and NaN / Inf in
    the lanes a shifted tile masks (the row before, the column after) stay out of C."""
    rng = np.random.default_rng(n)
    k = 300
    dense = _random_csr(rng, 70, k, 0.3).toarray()
    dense[30:] *= rng.random((40, k)) < 0.2  # rows of unequal lengths
    dense[[3, 50]] = 0.0  # empty rows
    a = sp.csr_array(dense)
    raw = aligned_empty(k * n + 16)
    for offset, reg_vectors, row_block in itertools.product(
            (0, 1, 2, 5), (2, 4, 8), (70, 16)):
        b = raw[offset:offset + k * n].reshape(k, n)
        b[...] = rng.standard_normal((k, n))
        plan = plan_spmm(a, b, isa=isa_path, threads=threads, k_block=32,
                         row_block=row_block, reg_vectors=reg_vectors, n_tile=0)
        level = plan.isa
        vw = VECTOR_WIDTH[level]
        apart = level == "avx512" and n % vw == 1
        expect = (level != "portable" and n % vw != 0 and 4 * vw < n < 16 * vw
                  and not apart)
        assert bool(plan.args.phase_period) == expect
        if not expect:
            continue
        assert plan.args.phase_period == vw // np.gcd(n, vw)
        assert plan.args.b_pack == plan.module.ffi.NULL and not plan.args.slice_b
        ref = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)
        plan.out[...] = SENTINEL
        np.testing.assert_allclose(plan.run(), ref, rtol=1e-4, atol=1e-3)
        plan.args.threads = 3 - threads
        b *= -1.0
        np.testing.assert_allclose(plan.run(), -ref, rtol=1e-4, atol=1e-3)
        plan.args.threads = threads
        used = a[[7]].indices  # row 7 uses rows `used` of B
        inf_row = used[1] + 1 if used[1] + 1 < k else used[1] - 1
        b[used[0], -1] = np.nan  # in the lanes before row used[0] + 1's first column
        b[inf_row, 0] = np.inf  # in the lanes after row inf_row - 1's last column
        got = plan.run()
        uses = a.toarray() != 0
        assert np.isnan(got[7, -1])
        np.testing.assert_array_equal(np.isnan(got[:, -1]), uses[:, used[0]])
        np.testing.assert_array_equal(np.isinf(got[:, 0]), uses[:, inf_row])
        assert np.isfinite(got[:, 1:-1]).all()
        b[...] = rng.standard_normal((k, n))


def test_phased_k_blocks_default_to_one_n_tile():
    """The plans that read B by phase take one N tile by default, and under 8-vector tiles
    K blocks of ~16 nonzeros per row segment; N = 1352 keeps its 128-column sliced tiles,
    N = 100 (4-vector tiles) its K blocks."""
    if "avx512" not in kernels_c._isa.supported_levels():
        pytest.skip("the rule is for AVX-512's tiles")

    def tiles(m, k, n, density):
        p = default_params(m, k, n, density, isa="avx512")
        return p["reg_vectors"], p["k_block"], p["n_tile"]

    assert tiles(256, 2304, 196, 0.1) == (8, 144, 0)  # DLMC group3: 256 and 128 if copied
    assert tiles(256, 2304, 196, 0.2) == (8, 83, 0)   # 7 blocks of 83 rows per phase
    assert tiles(384, 2304, 1352, 0.1) == (8, 256, 128)
    assert tiles(512, 1152, 100, 0.1) == (4, 256, 0)
    a = _random_csr(np.random.default_rng(0), 256, 2304, 0.1)
    b = aligned_empty(2304 * 196).reshape(2304, 196)
    assert plan_spmm(a, b, isa="avx512").args.phase_period == 4


@pytest.mark.parametrize("n", [2, 4, 5, 8, 13, 16])
@pytest.mark.parametrize("extra", [{}, {"k_block": 32}])
def test_narrow_b_copied_to_aligned_rows(isa_path, n, extra):
    """One vector per row of B (N <= the vector width): rows over 16 bytes are read from
    a copy padded and aligned to that vector unless B already is."""
    rng = np.random.default_rng(n)
    a = _random_csr(rng, 41, 70, 0.4)
    raw = aligned_empty(70 * 16 + 16)
    for offset in (0, 1, 4, 8):
        b = raw[offset:offset + 70 * n].reshape(70, n)
        b[...] = rng.standard_normal((70, n))
        _check(a, b, isa=isa_path, **extra)
        plan = plan_spmm(a, b, isa=isa_path, **extra)
        if n > VECTOR_WIDTH[plan.isa]:
            continue  # (the wide rule, tested above)
        row = 8 if n <= 8 else 16
        expect = plan.isa != "portable" and n > 4 and (n != row or offset % row != 0)
        assert (plan.args.b_pack != plan.module.ffi.NULL) == expect


def test_nan_inf_propagate_through_stored_entries(isa_path):
    a = sp.csr_array(np.array([[1, 0, 0], [0, 2, 0], [0, 0, 0], [0, 0, 1]], np.float32))
    a.data[2] = np.inf  # row 3, column 2
    b = np.ones((3, 20), np.float32)
    b[1, 5] = np.nan
    got = kernels_c.spmm(a, b, isa=isa_path)
    assert np.isnan(got[1, 5]) and np.isfinite(got[1, :5]).all()
    assert np.isfinite(got[0]).all()  # row 0 never touches b[1]
    assert np.isposinf(got[3]).all()
    assert (got[2] == 0).all()


def test_duplicate_and_unsorted_indices(isa_path):
    indptr = np.array([0, 3, 3], np.int32)
    indices = np.array([2, 0, 2], np.int32)
    a = sp.csr_array((np.array([1, 2, 3], np.float32), indices, indptr), shape=(2, 4))
    b = np.arange(4 * 18, dtype=np.float32).reshape(4, 18)
    expected = 2 * b[0] + 4 * b[2]
    np.testing.assert_allclose(kernels_c.spmm(a, b, isa=isa_path)[0], expected)


def test_reference_kernel_matches_scipy():
    rng = np.random.default_rng(5)
    a = _random_csr(rng, 20, 30, 0.2)
    b = rng.standard_normal((30, 9), dtype=np.float32)
    np.testing.assert_allclose(spmm_reference(a, b), a @ b, rtol=1e-5, atol=1e-5)


def test_int64_indices_are_narrowed_without_changing_result():
    rng = np.random.default_rng(6)
    a = _random_csr(rng, 20, 30, 0.2)
    a64 = sp.csr_array((a.data, a.indices.astype(np.int64), a.indptr.astype(np.int64)),
                       shape=a.shape)
    b = rng.standard_normal((30, 9), dtype=np.float32)
    np.testing.assert_allclose(kernels_c.spmm(a64, b), a @ b, rtol=1e-5, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 40), k=st.integers(1, 40), n=st.integers(1, 80),
    density=st.floats(0.0, 1.0), threads=st.sampled_from([1, 2]),
    reg=st.sampled_from(PARAMS["reg_vectors"]), seed=st.integers(0, 2**16),
)
def test_hypothesis_random(m, k, n, density, threads, reg, seed):
    rng = np.random.default_rng(seed)
    a = _random_csr(rng, m, k, density)
    b = rng.standard_normal((k, n), dtype=np.float32)
    for path in kernels_c._isa.supported_levels():
        _check(a, b, isa=path, threads=threads, reg_vectors=reg)


@settings(max_examples=200, deadline=None)
@given(
    m=st.integers(1, 60), k=st.integers(1, 300), n=st.integers(1, 300),
    density=st.floats(0.0, 1.0), threads=st.sampled_from([1, 2]),
    reg=st.sampled_from(PARAMS["reg_vectors"]), tiles=st.integers(0, 3),
    k_block=st.sampled_from([0, 8, 32, 256]), row_block=st.integers(1, 64),
    prefetch=st.sampled_from(PARAMS["prefetch"]), offset=st.integers(0, 15),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_random_blocking(m, k, n, density, threads, reg, tiles, k_block,
                                    row_block, prefetch, offset, seed):
    """Every runtime parameter at random, B at any offset from a cache line (peel, copy or
    neither), a prepared plan run twice: each ISA path matches the reference (the narrow
    and wide segment loops, K blocks with and without sorted rows, N tiles, tails)."""
    rng = np.random.default_rng(seed)
    a = _random_csr(rng, m, k, density)
    raw = aligned_empty(k * n + 16)
    b = raw[offset:offset + k * n].reshape(k, n)
    b[...] = rng.standard_normal((k, n))
    ref = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    for path in (p for p in kernels_c._isa.supported_levels() if p in VECTOR_WIDTH):
        n_tile = tiles * VECTOR_WIDTH[path] * reg
        plan = plan_spmm(a, b, isa=path, threads=threads, reg_vectors=reg, n_tile=n_tile,
                         k_block=k_block, row_block=row_block, prefetch=prefetch)
        for _ in range(2):
            np.testing.assert_allclose(plan.run(), ref, rtol=1e-4, atol=1e-5 * scale)


# ---------------------------------------------------------------- bad input


def _csr(data, indices, indptr, shape):
    # bypass scipy's own checks so that malformed structure reaches our validation
    a = sp.csr_array((3, 3), dtype=np.float32)
    a.data, a.indices, a.indptr = data, indices, indptr
    a._shape = shape
    return a


GOOD_DATA = np.ones(3, np.float32)


@pytest.mark.parametrize(
    ("indices", "indptr", "message"),
    [
        (np.array([0, 1, 3], np.int32), np.array([0, 1, 2, 3], np.int32), r"\[0, K=3\)"),
        (np.array([0, -1, 2], np.int32), np.array([0, 1, 2, 3], np.int32), r"\[0, K=3\)"),
        (np.array([0, 1, 2], np.int32), np.array([0, 2, 1, 3], np.int32), "non-decreasing"),
        (np.array([0, 1, 2], np.int32), np.array([0, 1, 2, 2], np.int32), "must equal"),
        (np.array([0, 1, 2], np.int32), np.array([1, 1, 2, 3], np.int32), r"indptr\[0\]"),
        (np.array([0, 1, 2], np.int32), np.array([0, 1, 3], np.int32), "M \\+ 1"),
        (np.array([0, 1, 2], np.int64) + 2**40, np.array([0, 1, 2, 3], np.int32), "int32"),
    ],
)
def test_malformed_csr_raises_before_c(indices, indptr, message):
    a = _csr(GOOD_DATA, indices, indptr, (3, 3))
    with pytest.raises(ValueError, match=message):
        kernels_c.spmm(a, np.ones((3, 4), np.float32))


def test_wrong_types_and_shapes():
    a = sp.csr_array(np.eye(3, dtype=np.float32))
    b = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match="float32"):
        kernels_c.spmm(a.astype(np.float64), b)
    with pytest.raises(TypeError, match="dtype float32"):
        kernels_c.spmm(a, b.astype(np.float64))
    with pytest.raises(TypeError, match="CSR"):
        kernels_c.spmm(a.tocoo(), b)
    with pytest.raises(TypeError, match="CSR"):
        kernels_c.spmm(np.eye(3, dtype=np.float32), b)
    with pytest.raises(ValueError, match="shape mismatch"):
        kernels_c.spmm(a, np.ones((4, 4), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels_c.spmm(a, np.ones((4, 3), np.float32).T)
    with pytest.raises(ValueError, match="2-D"):
        kernels_c.spmm(a, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="out must have shape"):
        kernels_c.spmm(a, b, out=np.empty((3, 5), np.float32))
    with pytest.raises(ValueError, match="overlap"):
        kernels_c.spmm(a, b, out=b[:3])
    with pytest.raises(ValueError, match="threads"):
        kernels_c.spmm(a, b, threads=0)
    with pytest.raises(ValueError, match="reg_vectors"):
        kernels_c.spmm(a, b, reg_vectors=3)
    with pytest.raises(ValueError, match="unknown spmm parameter"):
        kernels_c.spmm(a, b, tile=3)
    with pytest.raises(ValueError, match="unknown ISA"):
        kernels_c.spmm(a, b, isa="sse9")
