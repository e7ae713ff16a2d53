"""CSR sparse x dense GEMM (``spmm``) and its prepared form for repeated timing."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _isa
from ._loader import load_for
from ._memory import aligned_empty
from ._validate import check_csr, check_dense, check_out, check_threads

IMPLEMENTED = ("portable", "avx2", "avx512")
VECTOR_WIDTH = {"portable": 8, "avx2": 8, "avx512": 16}

#: Tunable parameters and their valid values (the tuner's search space reads this).
PARAMS: dict[str, tuple[int, ...]] = {
    "reg_vectors": (1, 2, 4, 8),      # SIMD vectors per register tile along N
    "n_tile": (0, 64, 128, 256, 512, 1024),  # columns per cache tile (any multiple of the
    #                                          vector width is valid); 0 = all of N
    "k_block": (0, 32, 64, 128, 256),  # rows of B per L1-resident K block; 0 = off
    "row_block": (8, 16, 32, 64, 128),  # rows of C per block when K blocking
    "prefetch": (0, 8, 16),           # software prefetch distance of B rows, in nonzeros
    "acc_sets": (1, 2),               # compile-time: accumulator sets (variant cache)
}
#: values compiled into the installed module; others are built on demand (variant cache)
COMPILED_DEFAULTS = {"acc_sets": 2}
_MACROS = {"acc_sets": "SPMM_ACC_SETS"}
_L2_TILE_BYTES = 512 * 1024
#: target nonzeros per (row, K block) segment: each segment reloads and stores a C tile
_NNZ_PER_SEGMENT = 16
#: ... but on AVX2 (4-vector tiles), where the K block of all N columns exceeds 256 KiB,
#: blocks of half the rows while a segment still holds 12 nonzeros: the slice of B that
#: the rows of C share stays nearer the (512 KiB) L2. Against the blocks of 16, on the
#: AMD EPYC (Zen 3) host at sparsity 0.8-0.9, nine shapes with N = 392-3136, K =
#: 576-4608: 0.98-1.54x with B in cache; 0.99-1.61x on five of them with every operand
#: from DRAM (bench_spmm_params.py --cold; docs/spmm.md, twenty-fifth session)
_WIDE_SLICE_BYTES = 256 * 1024
_WIDE_SLICE_NNZ_PER_SEGMENT = 12
#: B is copied to aligned rows (N not a multiple of the vector width) from this many
#: nonzeros per row of B on (the copy costs about one read and one write of B)
_MIN_USES_TO_PACK = 4
#: K blocks under N tiles read B from a per-thread copy of the block's slice (spmm.h),
#: contiguous rows instead of pieces one row of B apart, when the slice leaves L1 (>= 64
#: KiB) and each row of B serves this many nonzeros (the copy is one read and write of
#: the slice per N tile, K block and row block): 1.01-1.12x at sparsity 0.8-0.9 on four
#: shapes (384 x 2304 x 1352: 1.11-1.12x); 0.90-0.91x at 13 nonzeros per row of B (M =
#: 128), 0.94-0.96x with L1-sized slices (K blocks of 64 rows; docs/spmm.md)
_MIN_USES_TO_SLICE = 32
_MIN_SLICE_BYTES = 64 * 1024
#: ... and L1-sized slices whose rows, one row of B apart, would overflow a set of the L1
#: (64 sets of 64-byte lines, 4 KiB apart, this many ways: 8 on Zen 3, 12 on Intel's 48 KiB
#: L1s): rows of B a multiple of 4 KiB apart (N = 1024, 2048, ...) put a 64-row K block of a
#: 64-column N tile, 256 lines, into 4 sets, which hold 32 of them
_L1_SETS, _L1_WAYS = 64, 8
_SLICE_ALIASED_B = True
#: B that would be copied whole to aligned rows (_pack_ld) is copied K block by K block
#: instead, into per-thread slices that stay in L1/L2, when A is K blocked in one block of
#: rows of C (the slices then copy B once, as the whole copy does): 0.99-1.31x, median
#: 1.03, on 36 problems with N = 40-1352 at sparsity 0.7-0.95 (DLMC group3_1_1, 256 x 2304
#: x 196 at 0.9: 1.07-1.11x; docs/spmm.md, fifteenth session; bench_spmm_params.py's
#: slice=0 turns it off)
_SLICE_COPIED_B = True
#: ISA paths whose sliced K blocks keep a last column that alone would take a masked
#: vector apart, as a contiguous column read by a gathered dot product (spmm.h,
#: column_apart): on AVX-512, N = 49 (DLMC group4's shape) at sparsity 0.7-0.95
#: 0.99-1.18x, median 1.10; N = 33 1.00-1.08x. AVX2 has no gather
#: worth using (dot_avx2): its scalar dot product ran 0.83-0.91x at N = 49 there
#: (docs/spmm.md, sixteenth session; bench_spmm_params.py's apart=0 turns it off)
_COLUMN_APART_ISAS = ("avx512",)
#: Where B would be copied to aligned rows (N not a multiple of the vector width) and A is
#: K blocked, the K blocks instead take B's rows of one phase each -- rows that start the
#: same number of floats past a vector boundary, every P-th row (P = vector width /
#: gcd(N, vector width)) -- and read them in place at aligned addresses, the register
#: tiles shifted by that phase (spmm.h, phase_period): no copy of B. Against the copy
#: (sliced K blocks), 1 thread, AVX-512, sparsity 0.7-0.95: N = 100-228 1.00-1.25x (256 x
#: 2304 x 196 at 0.9: 1.13x, 0.95: 1.20x; 0.948 once, N = 228 at 0.8), N = 72 0.96-1.24x,
#: N = 40 0.84-1.09x; 2 threads N = 100-196 1.08-1.29x; AVX2 N = 100-196 1.05-1.16x, N =
#: 44 0.98-1.07x (docs/spmm.md, twentieth session). Above _MIN_PHASED_VECTORS vectors of
#: N and below _MAX_PHASED_VECTORS (one N tile: N tiles would shift a vector into the next
#: tile; 384 x 2304 x 1352 in one tile ran 0.83-1.01x against 128-column sliced tiles);
#: not where a last column is kept apart (_COLUMN_APART_ISAS): N = 49 ran 0.90-0.94x.
_PHASED_B_ISAS = ("avx512", "avx2")
_MIN_PHASED_VECTORS = 4
_MAX_PHASED_VECTORS = 16
#: N a multiple of the vector width with B misaligned: a peel aligns every row for one
#: more narrow pass over each row's nonzeros, the copy for one read and write of B. Copy
#: against peel (docs/spmm.md): 1.0-1.4x from 50 nonzeros per row of B on (N = 128-3136,
#: sparsity 0.5-0.95), 0.94x at 38 (384 x 2304 x 1024 at 0.9), 0.83-0.88x at 13 (DLMC
#: group1 at 0.8-0.9, M = 64). Below two register tiles of N no peel ran until the
#: eighteenth session and B was read misaligned (1.6-2.2x the time of an aligned B at
#: sparsity 0.9-0.95); there the copy is taken from _MIN_USES_TO_PACK uses, the peel below
#: that: against reading misaligned, 0.95-2.32x (one 0.75 reran at 1.07-1.10), median
#: 1.02, 25 of 60 problems >= 1.1x (N = 16-192, M = 64-1024, sparsity 0.5-0.95, 1 and 2
#: threads, AVX-512 and AVX2; docs/spmm.md)
_MIN_USES_TO_PACK_ALIGNED = 48
#: ... except from this many vectors of N on, where the peel's narrow pass is a small part
#: of a row's work: 8-vector tiles at N = 144-240 (one tile and a half), peel against copy
#: 0.95-1.84x, median 1.07, 1 thread; 1.03-1.74x at 2 threads (M = 64-256, sparsity
#: 0.5-0.95, eighteenth session)
_MIN_VECTORS_TO_PEEL = 8
#: below this density 4-vector tiles (N above two vectors) stream B instead of K blocking
#: it; from it on, also when B fits half the L2 (if B exceeds _B_BLOCK_BYTES). Blocks of
#: 256 rows (segments of >= 23 nonzeros) make part of B's block L1-resident; against
#: streaming B at density 0.09-0.22, on 16 shapes with K = 576-4608 and N = 24-128, 1
#: thread (docs/spmm.md, fourteenth session, Intel Xeon): 0.99-1.42x, median 1.13 (another
#: run: 0.95-0.98x on three with N = 40-100 at density 0.09-0.1); AVX2 alike (and at
#: 2 threads 1.0-1.5x). Zen 5 had measured K blocks below 0.15 as slower (first sessions).
_MIN_K_BLOCK_DENSITY = 0.09
#: ... for tiles of up to two vectors (N = 17-32 on AVX-512): 0.92-0.97x at density 0.09-0.12
#: with blocks of 512 rows, 1.1-1.3x at 0.18-0.22 (1.8x at N = 17)
_MIN_TWO_VECTOR_K_BLOCK_DENSITY = 0.15
#: 8-vector tiles fall back to 4 vectors where a K block's slice leaves L1 from this density on
_MIN_WIDE_FIT_DENSITY = 0.15
#: K blocks grow while their slice of B (k_block x N fp32) stays within this: fewer
#: segments per row and C-tile reloads, and a sparsely touched block this size still hits
#: L1/L2 (measured on Zen 5 at sparsity 0.55-0.7: 1.0-1.3x over 64-row blocks, 128 KiB
#: worse; docs/spmm.md)
_B_BLOCK_BYTES = 64 * 1024
#: rows of C swept per K block: as many as fit this. Each K block of B is then reused by
#: that many rows; C is re-read once per K block (from L2/L3). With A stored K block by K
#: block, 1024-4096 rows ran 1.00-1.15x faster than 64 on every shape measured
#: (docs/spmm.md), so the only limit is C falling out of the L3.
_C_BLOCK_BYTES = 4 * 1024 * 1024
#: narrow N (one vector per row of C): when B exceeds half the 48 KiB L1, K blocks start
#: with B's block at that size and double, up to _B_BLOCK_BYTES, while a row segment holds
#: fewer than 32 nonzeros (each segment reloads and stores its row of C); none if segments
#: stay below that. Measured 1.2-1.5x at N = 8 and 16, K = 4096, sparsity 0.5-0.9; with
#: rows visited sorted by length (plan_spmm) shorter segments cost less, and halving the
#: thresholds (from 128 / 64 nonzeros, B from 64 KiB) gave up to 1.3x more at N = 4 and 8;
#: with the row loops' cost per segment cut by a tenth (SPMM_LOCAL_ARGS), doubling only
#: below 32 instead of 64 gave 1.02-1.20x at N = 8, sparsity 0.95-0.97, 1.07-1.13x at N = 4,
#: 0.97-0.98, 1.09x at N = 16, 0.9 (docs/spmm.md).
_NARROW_B_BLOCK_BYTES = 32 * 1024
_NARROW_NNZ_PER_SEGMENT = 32
#: the plan-time regrouping of A for those blocks costs 5-8 narrow runs (8M nonzeros:
#: 20 ms against 2.7 ms per run), recovered at 1.2-1.5x after about this many calls
_NARROW_BLOCKING_MIN_CALLS = 20
#: narrow plans with K blocks (or rows ordered) whose rows of B span at most this many floats
#: read uint16 offsets of those rows from the block's first (spmm.h, indices16): A streams
#: from DRAM there, and 6 bytes per nonzero instead of 8 ran 1.02-1.23x (median 1.05) on 20
#: problems with N = 4-16, sparsity 0.5-0.98 (1.2x at 0.5, 1.03-1.05x at 0.9-0.98, where
#: rows' fixed costs weigh more); 2 threads 1.00-1.13x, AVX2 1.02-1.22x (docs/spmm.md,
#: fifteenth session). Offsets rather than column indices take the multiply by ldb out of
#: the loop: 1.04-1.06x at N = 8 and 1.11-1.23x at N = 4 with A from DRAM, 1.05-1.17x at
#: N = 8 with A in the L3, 0.96-1.04x at N = 16 (eighteenth session)
_MAX_INDEX16_BLOCK = 65536
#: AVX-512 (32 vector registers) above N = 128: register tiles of 8 vectors (16
#: accumulators with two sets). When the K block of all N columns exceeds _B_BLOCK_BYTES,
#: N tiles of _SPLIT_N_TILE columns (one such register tile) keep the block's slice in
#: L1/L2 across the rows of C; K blocking pays down to density 0.08 instead of 0.15 with
#: 8-vector tiles (1.05-1.6x at sparsity 0.88-0.92, K blocks of 256 rows); N tiles --
#: unless N is a multiple of 512: rows of B 2 KiB apart (or any multiple) map a K block's
#: 512-byte slices onto a quarter of the 64 sets of a 48 KiB 12-way L1 or fewer, and N
#: tiles lost (0.7-0.85x at N = 512 and 1024); half the sets (N = 12544: rows 49 KiB, 1 KiB
#: modulo 4 KiB, apart) still gained 2.3x at sparsity 0.5 (docs/spmm.md, ninth session).
#: Without N tiles, from density 0.15 on, an 8-vector tile needs its slice of the K block
#: within _TILE_SLICE_BYTES (64 rows), else 4-vector tiles. Against 4-vector tiles and no
#: N tiles (docs/spmm.md): 1.1-1.7x at N = 196-3136 and sparsity 0.5-0.9
#: (384 x 2304 x 1352: 0.68 -> 1.10 x dense at 0.55, 1.86 -> 2.35 at 0.9); at N = 128 (one
#: 8-vector tile per row, K blocks halved to fit it) 0.94-0.99x, so N = 128 keeps 4.
_TILE_SLICE_BYTES = 32 * 1024
_SPLIT_N_TILE = 128
_ALIASING_COLUMNS = 512
_MIN_SPLIT_K_BLOCK_DENSITY = 0.08
#: ... but where a K block's slice of an N tile leaves L1 anyway (>= 128 KiB: blocks of
#: 256 rows, density 0.08-0.125) and the tile's whole K panel stays below _L2_TILE_BYTES
#: (K < 1024), K blocks only add row segments, each reloading its C tile: without them
#: 1.04-1.08x at sparsity 0.9 on K = 576, N = 3136, M = 64-256 (DLMC group1's shape),
#: 0.99-1.00x on four other shapes with K = 256-768; at K = 1024 0.92-0.98x (docs/spmm.md)
_SLICE_BEYOND_L1_BYTES = 128 * 1024
#: B within _L2_TILE_BYTES (8-vector tiles; 4-vector tiles with B within _B_BLOCK_BYTES)
#: is K blocked too from this density on: a row segment then holds
#: >= 16 nonzeros of a 64-row block, and B's block in L1 beat B from L2 by 1.1-1.7x at
#: sparsity 0.5-0.7 (N = 128-320, K = 256-768); at 0.8 even, at 0.9 0.7-0.9x (docs/spmm.md)
_MIN_L2_K_BLOCK_DENSITY = 0.25
#: Sparser than the K-block densities, B beyond the L2 (1 MiB) is still K blocked, in
#: slices of B that fit half the L2 (_L2_TILE_BYTES), while a row segment averages 12
#: nonzeros: against B streamed from L3 with prefetch, 1.1-1.5x at sparsity 0.88-0.98 on
#: K = 2304-8192, N = 128-512; at 10 nonzeros per segment 0.9-1.2x (docs/spmm.md)
_L2_RESIDENT_B_BYTES = 1024 * 1024
_MIN_SPARSE_SEGMENT_NNZ = 12
#: ... and on AVX2 (4-vector tiles, N a multiple of 8), where no such slice holds 12
#: nonzeros per segment, K blocks of the fewest rows (a power of two, >= 64) whose
#: segments average 10, whatever their slice of B: down to density 0.03, or beyond 8 MiB
#: of B (about what Zen 3's second-level TLB maps in 4 KiB pages; a guess at the cause,
#: unverified without performance counters). Against B streamed with
#: prefetch on the AMD EPYC (Zen 3, 512 KiB L2) host: sparsity 0.92-0.95 1.1-4.7x on the
#: six shapes it changes of ten with N = 392-3136, K = 576-4608 (2048 x 1024 x 1000 at
#: 0.95: 0.92x); 0.98 2.0-3.3x with B of 12-14 MiB (384 x 2304 x 1352, 256 x 1152 x 3136),
#: 0.8-1.3x with B of 2-7 MiB, left streamed (docs/spmm.md, twenty-fifth session)
_MIN_AVX2_SPARSE_SEGMENT_NNZ = 10
_MIN_AVX2_SPARSE_K_BLOCK_DENSITY = 0.03
_AVX2_STREAMED_B_BYTES = 8 << 20
#: B streamed (not K blocked) is prefetched this many nonzeros ahead when the panel the
#: rows of C sweep (K x n_tile, or K x N) exceeds half of this machine's L2. Within it the
#: prefetches only cost: on the Intel Xeon host (2 MiB L2) this rule against always
#: prefetching gave 0.99-1.15x on five shapes at sparsity 0.9-0.98 (panels of 0.3-1 MiB);
#: without them 1.2 MiB panels ran 0.99-1.05x (docs/spmm.md, twelfth session); the first
#: session had set them on Zen 5 (1 MiB L2)
_STREAM_PREFETCH = 16
#: Not K blocked, with N a multiple of 512, 8-vector tiles take N tiles whose K panel fits
#: _L2_TILE_BYTES when rows average this many nonzeros (each N tile is one more pass over
#: A's rows; until the ninth session the rule for every N: 1.11-1.39x at sparsity
#: 0.92-0.95 on five shapes with K = 512-768, N = 1000-3136, docs/spmm.md)
_MIN_ROW_NNZ_FOR_SPARSE_N_TILES = 24
#: 8-vector tiles that take no K blocks take N tiles of 128 columns (unless N is a
#: multiple of 512) whatever the row length: all rows of C sweep one panel of B (K x 128)
#: instead of every row streaming all of B. Against all of B streamed, on 14 shapes with
#: N = 196-12544 (docs/spmm.md, ninth session): when K fits one block (K = 64), 2.1-2.5x
#: at sparsity 0.3-0.5, 1.5x at 0.7-0.8; sparser than the K-block densities, 1.1-1.4x at
#: 0.93-0.98 (K = 256-3072, panels up to 1.5 MiB); with B in L2 and the panel within
#: _SMALL_PANEL_BYTES (K <= 256) 1.1-1.3x at 0.8-0.98, beyond it even (K = 512-640)
_SMALL_PANEL_BYTES = 128 * 1024
#: AVX2 4-vector tiles from this density on (sparsity <= 0.62), where a 64-row K block of
#: all N columns exceeds _B_BLOCK_BYTES (N > 256): N tiles of _L1_N_TILE columns (two
#: register tiles) over K blocks of 64 rows, a 16 KiB slice of B that stays in a 32 KiB L1
#: while the rows of C sweep it, instead of the block of all N columns (0.1-0.8 MiB), which
#: shares the L2 with the rows of C streaming through it. Against that block, on five shapes
#: with N = 392-3136 (AMD EPYC Zen 3, 1 thread; docs/spmm.md, twenty-second session):
#: 1.06-1.51x at sparsity 0.4-0.5, 1.00-1.09x at 0.6, 0.92-1.01x at 0.65
_MIN_L1_N_TILE_DENSITY = 0.38
_L1_N_TILE = 64
#: ... and at any K-block density where the K block's slice of such a tile, rows one row of
#: B apart, would overflow a set of the L1 (_slice_overflows_l1: rows of B a multiple of
#: 2 KiB apart, N = 512, 1024, ...; the slices are then copied, plan_spmm): the register
#: tiles' pieces of the block of all N columns share those sets too, and the K blocks ran
#: at half the speed of their neighbours' (N = 1024 at sparsity 0.7: 19-21 GFLOP/s, N =
#: 1008 and 1040 37-41). Only where the slices are copied (rows of B serving
#: _MIN_USES_TO_SLICE nonzeros): read in place, the tiles gained nothing (M = 64, 112).
#: Sparser than _MIN_ALIASED_L1_N_TILE_DENSITY only where every row of B lies in the same
#: sets (N a multiple of _L1_PERIOD floats, 4 KiB): there 1.2-1.55x at sparsity 0.8-0.9,
#: elsewhere 0.9-1.1x (benchmarks/bench_spmm_aliased_slices.py; docs/spmm.md)
_ALIASED_L1_N_TILES = True
_MIN_ALIASED_L1_N_TILE_DENSITY = 0.25
_L1_PERIOD = 1024
#: AVX2, N of 5-7 vectors with a ragged last one (N = 33-63, not a multiple of 8), from
#: sparsity 0.9 on (density <= 0.105: sampled matrices fall either side of 0.1): one
#: 8-vector tile over the whole row instead of a 4-vector tile and a ragged rest.
#: bench_spmm_params.py --variant reg_vectors=8 on the AMD EPYC (Zen 3) host, sparsity 0.9:
#: N = 49 1.02-2.04x (four shapes), N = 33 / 41 1.25-1.94x; 0.95: 0.94-1.41x;
#: N = 56 / 64 0.95-1.16x (not taken); 0.5-0.8: 0.35-2.2x (docs/spmm.md, twenty-third session)
#: With one accumulator set in tiles of 5-8 vectors (spmm.c, twenty-fifth session), also at
#: any sparsity while B fits 128 KiB: 1.2-1.9x at 0.3-0.6 and 1.1-1.7x at 0.7-0.85 on six
#: shapes with K = 256-576, N = 33-49; with K = 1024-4608 0.6-1.35x at 0.6-0.85
_MAX_RAGGED_ROW_TILE_DENSITY = 0.105
_MAX_RAGGED_ROW_TILE_B_BYTES = 128 * 1024


def default_params(m: int, k: int, n: int, density: float = 1.0,
                   isa: str | None = None, expected_calls: int | None = None
                   ) -> dict[str, int]:
    """Default blocking for a problem (density = nnz / (M K)), chosen from measurements on
    an AVX-512 machine (benchmarks/bench_spmm.py, docs/spmm.md).

    Register tiles of 4 vectors (1 when N fits one vector: one masked tile; 8 on AVX-512
    above N = 128 when K blocks are at most 64 rows or absent). When N fits
    one vector (and N > 1) and B (K x N fp32) exceeds 32 KiB, K blocks that keep B's block
    in L1 (32 KiB, up to 64 KiB for row segments of ~64 nonzeros; none if segments stay
    below 32) are swept by blocks of rows of C. When B fits half of a 1 MiB L2 and the
    density is below 0.25, no further blocking (4-vector tiles: only when B fits 64 KiB or
    the density is below theirs, next). Otherwise, down to a density of 0.09 (0.15 for
    tiles of up to two vectors, 0.08 for 8-vector tiles), K blocks of at least 16 / density
    rows of B (so that a row segment holds ~16 nonzeros; on AVX2 12 where the block of
    all N columns would exceed 256 KiB), doubled while the block of B stays
    within 64 KiB (8-vector tiles: 64 rows; if that block of all N columns exceeds 64 KiB,
    N tiles of 128 columns, unless N is a multiple of 512, where they alias in L1; AVX2
    from density 0.38 on: N tiles of 64 columns over blocks of 64 rows), are
    swept by blocks of rows of C, reusing B's block across those rows;
    sparser matrices stream B from L2/L3 (B rows prefetched 16 nonzeros ahead when the
    panel of B the rows sweep exceeds half of this machine's L2, CPUID), unless
    B exceeds the 1 MiB L2: then K blocks whose slice of B fits 512 KiB, while a row
    segment averages 12 nonzeros (on AVX2 with N a multiple of 8, failing that, K blocks
    of ~10 nonzeros per segment from density 0.03 on or with B beyond 8 MiB); or, if B
    (over 512 KiB, N not a multiple of the vector width) is copied on every call anyway,
    K blocks of ~16 nonzeros per segment (up to 1024 rows) in one block of rows, where the
    copy goes slice by slice. Where K blocked
    plans read B by phase instead of copying it (N above 4 and below 16 vectors, not a
    multiple of one), one N tile, and under 8-vector tiles K blocks of ~16 nonzeros per
    row segment within a phase. If N is a multiple
    of 512, 8-vector tiles that stream B keep N tiles whose K panel fits 512 KiB when rows
    average 24 nonzeros. 8-vector N tiles whose K panel stays below 512 KiB take no K
    blocks of 256 rows or more.
    Wherever 8-vector tiles take no K blocks, N tiles of 128 columns (with B in L2: when
    the K panel of a tile fits 128 KiB; not when N is a multiple of 512: L1 set aliasing,
    as above). A block of rows of C is as many rows as fit 4 MiB (all rows, mostly).
    On AVX2, N of 5-7 vectors with a ragged last one takes one 8-vector tile from sparsity
    0.9 on, or at any sparsity while B fits 128 KiB (where no N tile splits the row).

    ``expected_calls`` is how often one plan will run (None: many, as when timing or
    serving a layer): narrow-N K blocks are skipped below 20 calls, since their plan-time
    copy of A costs about as much as 5-8 runs (MKL's ``mkl_sparse_set_mm_hint`` takes
    the same hint).
    """
    level, _ = _isa.resolve(isa, IMPLEMENTED)
    params = _blocking(level, m, k, n, density, expected_calls)
    vw = VECTOR_WIDTH[level]
    if (level == "avx2" and 4 * vw < n < 8 * vw and n % vw and params["reg_vectors"] == 4
            and (density <= _MAX_RAGGED_ROW_TILE_DENSITY
                 or 4 * k * n <= _MAX_RAGGED_ROW_TILE_B_BYTES)
            and (params["n_tile"] == 0 or params["n_tile"] >= n)):
        params["reg_vectors"] = 8
    return params


def _blocking(level: str, m: int, k: int, n: int, density: float,
              expected_calls: int | None) -> dict[str, int]:
    """default_params before the AVX2 ragged-row rule (its docstring has the rules)."""
    vw = VECTOR_WIDTH[level]
    # one register vector when N fits one (the narrow loop runs either way; 1 is the
    # canonical value, the one the tuner's space keeps)
    params = {"reg_vectors": 1 if n <= vw else 4, "n_tile": 0, "k_block": 0, "row_block": 32,
              "prefetch": 0, **COMPILED_DEFAULTS}
    if level == "portable" or n == 1:
        return params
    if n <= vw:
        if expected_calls is not None and expected_calls < _NARROW_BLOCKING_MIN_CALLS:
            return params
        k_block = _narrow_k_block(k, n, density)
        if k_block:
            params.update(k_block=k_block, row_block=_row_block(m, n))
        return params
    if level == "avx512" and n > 8 * vw:
        params["reg_vectors"] = 8
    wide = params["reg_vectors"] == 8
    n_tiles = wide and n % _ALIASING_COLUMNS != 0  # 128-column N tiles allowed
    if wide:
        min_density = _MIN_SPLIT_K_BLOCK_DENSITY
    else:
        min_density = _MIN_K_BLOCK_DENSITY if n > 2 * vw else _MIN_TWO_VECTOR_K_BLOCK_DENSITY
    b_bytes = 4 * k * n
    if b_bytes <= _L2_TILE_BYTES and density < _MIN_L2_K_BLOCK_DENSITY and (
            wide or density < min_density or b_bytes <= _B_BLOCK_BYTES):
        if n_tiles and 4 * k * _SPLIT_N_TILE <= _SMALL_PANEL_BYTES:
            params["n_tile"] = _SPLIT_N_TILE
        return params
    k_block = 64
    while k_block < 1024 and density * k_block < _NNZ_PER_SEGMENT:
        k_block *= 2
    if (level == "avx2" and not wide and density >= min_density and k_block > 64
            and k_block * n * 4 > _WIDE_SLICE_BYTES
            and density * (k_block // 2) >= _WIDE_SLICE_NNZ_PER_SEGMENT):
        k_block //= 2
    split_n = n_tiles and k_block * n * 4 > _B_BLOCK_BYTES
    if density < min_density:
        sparse_k_block = _sparse_k_block(level, k, n, density)
        if sparse_k_block:
            params.update(k_block=sparse_k_block, row_block=_row_block(m, n))
        elif (b_bytes > _L2_TILE_BYTES and n % vw and density * m >= _MIN_USES_TO_PACK
                and _row_block(m, n) >= m):
            # B is copied on every call either way (_pack_ld): in K blocks, slice by slice
            params.update(k_block=k_block, row_block=m,
                          n_tile=_SPLIT_N_TILE if n_tiles else 0)
            _read_b_by_phase(params, level, m, k, n, density)
        else:
            width = params["reg_vectors"] * vw
            if n_tiles:
                params["n_tile"] = _SPLIT_N_TILE
            elif (wide and density * k >= _MIN_ROW_NNZ_FOR_SPARSE_N_TILES
                    and 4 * k * width <= _L2_TILE_BYTES):
                params["n_tile"] = _l2_n_tile(k, n, width)
            panel = 4 * k * (params["n_tile"] or n)
            if panel > _l2_bytes() // 2:
                params["prefetch"] = _STREAM_PREFETCH
        return params
    if split_n:
        params["n_tile"] = _SPLIT_N_TILE
        if (k_block * _SPLIT_N_TILE * 4 >= _SLICE_BEYOND_L1_BYTES
                and 4 * k * _SPLIT_N_TILE < _L2_TILE_BYTES):
            return params  # no K blocks: the N tile's whole K panel stays in L2
    else:
        if wide and density >= _MIN_WIDE_FIT_DENSITY and k_block * 4 * 8 * vw > _TILE_SLICE_BYTES:
            params["reg_vectors"] = 4  # the 8-vector tile's slice would leave L1
        if (level == "avx2" and params["reg_vectors"] == 4 and k_block * n * 4 > _B_BLOCK_BYTES
                and (density >= _MIN_L1_N_TILE_DENSITY or (
                    _ALIASED_L1_N_TILES and density * m >= _MIN_USES_TO_SLICE
                    and (density >= _MIN_ALIASED_L1_N_TILE_DENSITY or n % _L1_PERIOD == 0)
                    and _slice_overflows_l1(k_block, _L1_N_TILE, n)))):
            params["n_tile"] = _L1_N_TILE
        elif params["reg_vectors"] == 4:
            while 2 * k_block < k and 2 * k_block * n * 4 <= _B_BLOCK_BYTES:
                k_block *= 2
    if k_block < k:
        params.update(k_block=k_block, row_block=_row_block(m, n))
        _read_b_by_phase(params, level, m, k, n, density)
        return params
    if n_tiles and params["reg_vectors"] == 8:
        params["n_tile"] = _SPLIT_N_TILE  # K within one block
    else:
        params["n_tile"] = _l2_n_tile(k, n, params["reg_vectors"] * vw)
    return params


def _phased_b(level: str, n: int, reg_vectors: int) -> bool:
    """Whether K blocks that B would be copied for (N not a multiple of the vector width)
    group B's rows by phase and read them in place instead (spmm.h, ``phase_period``),
    given one N tile."""
    vw = VECTOR_WIDTH[level]
    apart = level in _COLUMN_APART_ISAS and n % vw == 1 and reg_vectors in (4, 8)
    return (level in _PHASED_B_ISAS and n % vw != 0 and reg_vectors >= 2 and not apart
            and _MIN_PHASED_VECTORS * vw < n < _MAX_PHASED_VECTORS * vw)


def _phase_period(level: str, n: int) -> int:
    """P: the rows of B (N floats apart) start at P offsets from a vector boundary."""
    vw = VECTOR_WIDTH[level]
    return vw // math.gcd(n, vw)


def _read_b_by_phase(params: dict[str, int], level: str, m: int, k: int, n: int,
                     density: float) -> None:
    """Where plan_spmm will read B by phase instead of copying it: one N tile, and under
    8-vector tiles (a row of C is then one register tile, spmm.c row_tile_avx512) K blocks
    of about _NNZ_PER_SEGMENT / density rows, the nearest count of equal blocks per
    phase, against 64 rows doubled until they reach it: 1.02-1.14x at N = 196-228,
    sparsity 0.7-0.9, 0.98-1.04x at N = 136, at 0.95 and on 1024 x 256 x 196 (docs/spmm.md,
    twentieth session)."""
    if not (_phased_b(level, n, params["reg_vectors"]) and density * m >= _MIN_USES_TO_PACK):
        return
    params["n_tile"] = 0
    if params["reg_vectors"] == 8:
        rows = -(-k // _phase_period(level, n))  # rows of B per phase
        blocks = max(1, round(rows * density / _NNZ_PER_SEGMENT))
        params["k_block"] = min(1024, -(-rows // blocks))


def _l2_n_tile(k: int, n: int, width: int) -> int:
    """N tile (a multiple of the register tile's ``width`` columns) whose K x tile panel of
    B fits _L2_TILE_BYTES; 0 when all of N does."""
    cols = max(width, (_L2_TILE_BYTES // max(4 * k, 1)) // width * width)
    return 0 if cols >= n else int(cols)


def _narrow_k_block(k: int, n: int, density: float) -> int:
    """K block for a B of one vector per row, 0 for none (B fits half the L1)."""
    row_bytes = 4 * n
    if k * row_bytes <= _NARROW_B_BLOCK_BYTES:
        return 0
    k_block = _pow2_at_most(_NARROW_B_BLOCK_BYTES // row_bytes)
    while (density * k_block < _NARROW_NNZ_PER_SEGMENT
           and 2 * k_block * row_bytes <= _B_BLOCK_BYTES):
        k_block *= 2
    if k_block >= k or density * k_block < _NARROW_NNZ_PER_SEGMENT:
        return 0  # (e.g. N = 4 at sparsity 0.98: streaming B from L2 was 1.1x faster)
    return k_block


def _sparse_k_block(level: str, k: int, n: int, density: float) -> int:
    """K blocks below the K-block densities when B outgrows the L2: the largest power of
    two whose slice of B fits _L2_TILE_BYTES, if its row segments average 12 nonzeros;
    else on AVX2, where B is read in place (N a multiple of the vector width), the fewest
    rows that average 10 (from density 0.03, or B beyond 8 MiB); else 0 (B streamed with
    prefetch)."""
    if 4 * k * n <= _L2_RESIDENT_B_BYTES:
        return 0
    k_block = _pow2_at_most(_L2_TILE_BYTES // (4 * n))
    if k_block < k and density * k_block >= _MIN_SPARSE_SEGMENT_NNZ:
        return k_block
    if level != "avx2" or n % VECTOR_WIDTH[level] or (
            density < _MIN_AVX2_SPARSE_K_BLOCK_DENSITY and 4 * k * n <= _AVX2_STREAMED_B_BYTES):
        return 0
    k_block = 64
    while density * k_block < _MIN_AVX2_SPARSE_SEGMENT_NNZ and k_block < k:
        k_block *= 2
    return k_block if k_block < k else 0


@functools.lru_cache(maxsize=1)
def _l2_bytes() -> int:
    """This machine's L2 per core (CPUID; 1 MiB where it cannot be read)."""
    from .microbench import cpuid_caches

    try:
        caches = cpuid_caches()
    except (ImportError, RuntimeError):  # its module did not load or build: assume 1 MiB
        caches = None
    size = (caches or {}).get("l2_bytes", 0)
    return int(size) if size > 0 else 1 << 20


def _pow2_at_most(x: int) -> int:
    """The largest power of two <= x (1 for x < 2)."""
    return 1 << max(0, x.bit_length() - 1)


def _row_block(m: int, n: int) -> int:
    return max(1, min(m, _C_BLOCK_BYTES // (4 * n)))


def _k_block_layout(module: Any, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                    m: int, k: int, k_block: int, order_threads: int, period: int = 1
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray | None]:
    """A's nonzeros regrouped K block by K block (kernels_c/cdef/spmm.h), in C (O(nnz)).

    Returns ``kptr`` (n_kblocks * M + 1,) int32, the regrouped ``indices`` (nnz,) int32 and
    ``data`` (nnz,) float32, n_kblocks, and the row order (n_kblocks * M,) int32 that A is
    stored and visited in — with ``order_threads`` > 0, each of that many threads' rows
    sorted by segment length, else None (rows in order). Within a segment the nonzeros
    keep their order in the row, so the rows need not be sorted by column. With
    ``period`` P > 1 the blocks hold B's rows by phase (spmm.h, ``phase_period``): block b
    the rows [t0, t0 + k_block) of phase b // (n_kblocks / P), every P-th row of B.
    """
    per_phase = -(-k // period)  # rows of B per phase (all rows when period is 1)
    n_kblocks = max(1, period * -(-per_phase // k_block))
    ffi, lib = module.ffi, module.lib
    counts = np.empty(n_kblocks * m, dtype=np.int32)
    lib.spmm_count_k_blocks(ffi.from_buffer("int32_t[]", indptr),
                            ffi.from_buffer("int32_t[]", indices), m, k_block, n_kblocks,
                            period, ffi.from_buffer("int32_t[]", counts))
    order = position_of = None
    visited = counts
    if order_threads:
        bounds = np.empty(order_threads + 1, dtype=np.int64)
        lib.spmm_thread_rows(ffi.from_buffer("int32_t[]", indptr), m, order_threads,
                             ffi.from_buffer("int64_t[]", bounds))
        order = _row_order(counts.reshape(n_kblocks, m), bounds)
        visited = np.take_along_axis(counts.reshape(n_kblocks, m), order, axis=1).ravel()
        position_of = np.empty_like(order)
        np.put_along_axis(position_of, order, np.arange(m, dtype=np.int32)[None, :], axis=1)
        order, position_of = order.ravel(), position_of.ravel()
    kptr = np.zeros(n_kblocks * m + 1, dtype=np.int32)
    np.cumsum(visited, out=kptr[1:])
    packed_indices = np.empty_like(indices)
    packed_data = np.empty_like(data)
    status = lib.spmm_pack_k_blocks(
        ffi.from_buffer("int32_t[]", indptr), ffi.from_buffer("int32_t[]", indices),
        ffi.from_buffer("float[]", data), m, k_block, n_kblocks, period,
        ffi.NULL if position_of is None else ffi.from_buffer("int32_t[]", position_of),
        ffi.from_buffer("int32_t[]", kptr), ffi.from_buffer("int32_t[]", packed_indices),
        ffi.from_buffer("float[]", packed_data))
    if status != 0:
        raise MemoryError("spmm_pack_k_blocks: out of memory")
    return kptr, packed_indices, packed_data, n_kblocks, order


def _row_order(lengths: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Per K block (rows of ``lengths``, (n_kblocks, M) segment lengths), each thread's rows
    [bounds[t], bounds[t + 1]) sorted by length (stable); int32 (n_kblocks, M)."""
    n_kblocks, m = lengths.shape
    thread_of = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
    block_of = np.repeat(np.arange(n_kblocks), m)
    flat = np.lexsort((lengths.ravel(), np.tile(thread_of, n_kblocks), block_of))
    return (flat - block_of * m).astype(np.int32).reshape(n_kblocks, m)


def _slices_b(full: dict[str, int], level: str, m: int, k: int, n: int, nnz: int,
              pack_ld: int) -> bool:
    """Whether a plan with parameters ``full`` copies each K block's slice of B into
    per-thread scratch (spmm.h ``slice_b``; before plan_spmm's phase check, which may turn
    it off): under N tiles, slices of _MIN_SLICE_BYTES or whose rows would overflow an L1
    set, rows of B serving _MIN_USES_TO_SLICE nonzeros; or B that would be copied whole
    (``pack_ld``, :func:`_pack_ld`) in one block of rows."""
    if not (full["k_block"] and level != "portable" and n > VECTOR_WIDTH[level]):
        return False
    block, tile = full["k_block"], full["n_tile"]
    if 0 < tile < n and nnz >= _MIN_USES_TO_SLICE * k and (
            4 * block * tile >= _MIN_SLICE_BYTES
            or (_SLICE_ALIASED_B and _slice_overflows_l1(block, tile, pack_ld or n))):
        return True
    return _SLICE_COPIED_B and pack_ld > 0 and full["row_block"] >= m


@functools.lru_cache(maxsize=1024)
def _slice_overflows_l1(rows: int, cols: int, ld: int) -> bool:
    """Whether ``rows`` rows of ``cols`` floats, ``ld`` floats apart (the first on a cache
    line), hold more lines of some set of the L1 than it has ways (``_L1_SETS``,
    ``_L1_WAYS``; kept: plans and queries ask about the same few blockings)."""
    start = np.arange(rows, dtype=np.int64) * (4 * ld)
    first, last = start // 64, (start + 4 * cols - 1) // 64
    width = int((last - first).max()) + 1
    lines = first[:, None] + np.arange(width)
    lines = lines[lines <= last[:, None]]
    return int(np.bincount(lines % _L1_SETS, minlength=_L1_SETS).max()) > _L1_WAYS


def _alignment_peel(b: np.ndarray, level: str) -> int:
    """Columns to handle before the first register tile so that the tiles load B at
    vector-aligned addresses. numpy aligns large arrays to 16 bytes only, and a 64-byte load
    that crosses a cache line costs two: misaligned B made the kernel 1.2-1.5x slower at
    N = 128-256, 1.6-2.2x at N = 32-240 and sparsity 0.9-0.95 (docs/spmm.md). The peeled
    columns cost one more pass over each row's nonzeros, so below two register tiles and 8
    vectors of N B is copied to aligned rows instead wherever a row of B serves 4 nonzeros
    (:func:`_pack_ld`); 0 when the rows of B are not all misaligned alike (N not a multiple
    of the vector width). Not used when B is copied."""
    vw = VECTOR_WIDTH[level]
    n = b.shape[1]
    if level == "portable" or n % vw or n <= vw:
        return 0
    return int((-b.ctypes.data % (4 * vw)) // 4)


def _pack_ld(b: np.ndarray, nnz: int, level: str, reg_vectors: int) -> int:
    """Row length (floats) of an aligned copy of B the kernel reads instead of B, or 0.

    Wide N not a multiple of the vector width: B's rows start at varying offsets from a
    cache line and no peel aligns them all; with aligned rows (ld = N rounded up to 16)
    the same problem ran 1.04-1.3x faster (N = 196 and 1352, docs/spmm.md). A multiple of
    the vector width at a misaligned address: copied instead of peeled when each row of B
    serves at least 48 nonzeros (``_MIN_USES_TO_PACK_ALIGNED``); below two register tiles
    and 8 vectors, where the peel's extra pass weighs more (:func:`_alignment_peel`), from
    4 uses on (eighteenth session, docs/spmm.md). Narrow N
    (5-16 columns, one 256- or 512-bit vector per row of B): rows padded to that vector
    and aligned to it, else every other row of a 16-byte-aligned B (numpy's guarantee)
    splits a cache line; 0.76 -> 0.85 nonzeros per cycle at N = 8. The copy reads and
    writes B once, so only when each row of B is used at least 4 times on average."""
    k, n = b.shape
    vw = VECTOR_WIDTH[level]
    if level == "portable" or n == 1 or nnz < _MIN_USES_TO_PACK * k:
        return 0
    if n > vw:
        # a misaligned multiple of the vector width is copied from _MIN_USES_TO_PACK uses
        # on (checked above), unless the peel is preferred: then from _MIN_USES_TO_PACK_ALIGNED
        peel_preferred = n >= min(2 * reg_vectors, _MIN_VECTORS_TO_PEEL) * vw
        if n < 2 * vw or (n % vw == 0 and (b.ctypes.data % (4 * vw) == 0 or (
                peel_preferred and nnz < _MIN_USES_TO_PACK_ALIGNED * k))):
            return 0
        return -(-n // 16) * 16
    ld = 8 if n <= 8 else 16  # the 256-bit path's 8 lanes, else one 16-lane vector
    if n <= 4 or (n == ld and b.ctypes.data % (4 * ld) == 0):
        return 0  # rows within 16 bytes never split a line; or already aligned
    return ld


def _check_params(params: dict[str, Any], level: str) -> dict[str, int]:
    unknown = set(params) - set(PARAMS)
    if unknown:
        raise ValueError(f"unknown spmm parameter(s) {sorted(unknown)}; valid: {sorted(PARAMS)}")
    for name, value in params.items():
        if name in ("n_tile", "k_block", "row_block"):
            low = 1 if name == "row_block" else 0
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        elif value not in PARAMS[name]:
            raise ValueError(f"spmm parameter {name}={value!r} invalid; allowed: {PARAMS[name]}")
    if params.get("n_tile", 0) % VECTOR_WIDTH[level]:
        raise ValueError(f"n_tile must be a multiple of the {level} vector width "
                         f"{VECTOR_WIDTH[level]}")
    return {k: int(v) for k, v in params.items()}


@dataclass
class SpmmPlan:
    """A validated ``spmm`` call whose C argument block can be run or timed repeatedly.

    Holds references to every array the C struct points into, so they stay alive.
    """

    args: Any            # cffi ``spmm_csr_f32_args *``
    module: Any          # the cffi module (default build or a variant)
    out: np.ndarray
    isa: str
    params: dict[str, int]
    _keepalive: tuple

    @property
    def function(self) -> Any:
        """C entry point ``int f(void *args)``, for the C timing loop."""
        return self.module.lib.spmm_csr_f32

    def run(self) -> np.ndarray:
        if self.module.lib.spmm_csr_f32(self.args) != 0:
            raise RuntimeError(f"spmm_csr_f32 failed on path {self.isa}")
        return self.out


def plan_spmm(a: Any, b: np.ndarray, *, threads: int = 1, out: np.ndarray | None = None,
              isa: str | None = None, expected_calls: int | None = None,
              **params: int) -> SpmmPlan:
    """Validate operands and build the C call for ``out = a @ b`` (see :func:`spmm`).

    ``expected_calls``: how often the plan will run (None = many), for
    :func:`default_params` and for the copy of A with rows sorted by segment length that
    plans with one vector per row of C, or with K blocks under register tiles of up to 4
    vectors in one block of rows, make from 20 calls on (kernels_c/cdef/spmm.h,
    ``row_order``)."""
    indptr, indices, data, (m, k) = check_csr(a, np.float32)
    b = check_dense(b, np.float32, "b")
    if b.shape[0] != k:
        raise ValueError(f"shape mismatch: a is {m} x {k} but b is {b.shape[0]} x {b.shape[1]}"
                         f" (b must have K = {k} rows)")
    n = int(b.shape[1])
    threads = check_threads(threads)
    if expected_calls is not None and (isinstance(expected_calls, bool) or not isinstance(
            expected_calls, (int, np.integer)) or expected_calls < 1):
        raise ValueError(f"expected_calls must be a positive int or None, got "
                         f"{expected_calls!r}")
    level, isa_id = _isa.resolve(isa, IMPLEMENTED)
    density = indices.shape[0] / max(1, m * k)
    full = default_params(m, k, n, density, level, expected_calls)
    full.update(_check_params(params, level))
    out = check_out(out, (m, n), np.float32, (b, data))
    module = load_for("spmm", full, COMPILED_DEFAULTS, _MACROS)
    ffi = module.ffi
    args = ffi.new("spmm_csr_f32_args *")
    args.m, args.k, args.n = m, k, n
    args.indptr = ffi.from_buffer("int32_t[]", indptr)
    args.indices = ffi.from_buffer("int32_t[]", indices)
    args.data = ffi.from_buffer("float[]", data)
    args.b = ffi.from_buffer("float[]", b)
    args.ldb = n
    args.c = ffi.from_buffer("float[]", out)
    args.ldc = n
    args.threads = threads
    args.isa = isa_id
    args.reg_vectors = full["reg_vectors"]
    args.n_tile = full["n_tile"]
    args.k_block = full["k_block"]
    args.row_block = full["row_block"]
    args.prefetch = full["prefetch"]
    keep = [indptr, indices, data, b, out]
    k_blocked = bool(full["k_block"]) and level != "portable" and n > 1
    pack_ld = _pack_ld(b, indices.shape[0], level, full["reg_vectors"])
    one_row_block = full["row_block"] >= m
    sliced = _slices_b(full, level, m, k, n, indices.shape[0], pack_ld)
    phased = (k_blocked and pack_ld > 0 and _phased_b(level, n, full["reg_vectors"])
              and (full["n_tile"] == 0 or full["n_tile"] >= n) and b.ctypes.data % 4 == 0)
    if phased:
        sliced, pack_ld = False, 0
    pack = aligned_empty(k * pack_ld).reshape(k, pack_ld) if pack_ld and not sliced else None
    args.peel = 0 if pack is not None or sliced else _alignment_peel(b, level)
    if pack is not None:
        args.b_pack = ffi.from_buffer("float[]", pack)
        args.ld_pack = pack.shape[1]
        keep.append(pack)
    # One vector per row of C: a row costs a few dozen cycles, and rows of random lengths
    # end their loops at unpredictable trips (~45 cycles per row at N = 8). A copy of A with
    # each thread's rows sorted by segment length runs 1.05-1.38x faster (docs/spmm.md);
    # plan-time work again, so from _NARROW_BLOCKING_MIN_CALLS calls on. Likewise K blocks
    # under register tiles of up to 4 vectors in one block of rows: 0.99-1.18x, median
    # 1.04, on 23 problems with N = 40-128 (8-vector tiles: 0.97-1.07x, not ordered).
    narrow = n <= VECTOR_WIDTH[level]
    ordered = (level != "portable" and n > 1 and m > 1
               and (narrow or (k_blocked and full["reg_vectors"] <= 4 and one_row_block))
               and (expected_calls is None or expected_calls >= _NARROW_BLOCKING_MIN_CALLS))
    if k_blocked or ordered:
        block = full["k_block"] if k_blocked else k
        period = _phase_period(level, n) if phased else 1
        if phased:  # blocks of equal size within each phase's rows of B
            rows = -(-k // period)
            block = -(-rows // -(-rows // block))
            args.k_block = block
            args.phase_period = period
            args.phase_blocks = -(-rows // block)
        kptr, indices, data, n_kblocks, order = _k_block_layout(
            module, indptr, indices, data, m, k, block, threads if ordered else 0, period)
        b_ld = pack.shape[1] if pack is not None else n
        index16 = narrow and block * b_ld <= _MAX_INDEX16_BLOCK
        if sliced or index16:
            # column indices relative to their K block's first row of B
            starts = kptr[np.arange(n_kblocks + 1) * m]
            indices -= np.repeat(np.arange(n_kblocks, dtype=np.int32) * block,
                                 np.diff(starts))
            args.slice_b = int(sliced)
            args.column_apart = int(sliced and level in _COLUMN_APART_ISAS)
        if index16:  # the narrow loops read only these: no int32 copy is kept (spmm.h)
            indices = (indices * b_ld).astype(np.uint16)
            args.indices16 = ffi.from_buffer("uint16_t[]", indices)
            args.indices = ffi.NULL
        else:
            args.indices = ffi.from_buffer("int32_t[]", indices)
        args.data = ffi.from_buffer("float[]", data)
        args.kptr = ffi.from_buffer("int32_t[]", kptr)
        args.n_kblocks = n_kblocks
        keep += [indices, data, kptr]
        if order is not None:
            args.row_order = ffi.from_buffer("int32_t[]", order)
            args.order_threads = threads
            keep.append(order)
    return SpmmPlan(args, module, out, level, full, tuple(keep))


def spmm(a: Any, b: np.ndarray, *, threads: int = 1, out: np.ndarray | None = None,
         isa: str | None = None, **params: int) -> np.ndarray:
    """Sparse x dense matrix product ``a @ b``.

    Parameters
    ----------
    a : scipy.sparse CSR matrix or array (M, K), float32 data
        int32 ``indptr``/``indices`` are used without copying; wider integer indices are
        narrowed to int32 when they fit. Other value dtypes raise ``TypeError``.
    b : ndarray (K, N), float32, C-contiguous
    threads : int, OpenMP threads (rows are split by nonzero count).
    out : ndarray (M, N), float32, C-contiguous, optional; reused as the result.
    isa : str, optional; a path at or below :func:`kernels_c.isa` (default: that one).
    **params : blocking parameters, see ``PARAMS`` and kernels_c/cdef/spmm.h:
        ``reg_vectors`` (1, 2, 4, 8), ``n_tile`` (0 or a multiple of the vector width),
        ``k_block`` (0 = off, else rows of B per L1-resident block; A's nonzeros are then
        regrouped block by block in a copy at plan time), ``row_block``
        (>= 1), ``prefetch`` (0, 8, 16 nonzeros ahead), and the compile-time ``acc_sets``
        (1, 2; compiled on demand when it differs from the installed build). Defaults:
        :func:`default_params`.

    Returns
    -------
    ndarray (M, N), float32. NaN/Inf in stored entries or in the rows of ``b`` they touch
    propagate as in any dense product; implicit zeros contribute nothing.
    """
    return plan_spmm(a, b, threads=threads, out=out, isa=isa, expected_calls=1,
                     **params).run()


def spmm_reference(a: Any, b: np.ndarray) -> np.ndarray:
    """Naive C reference (double accumulation), validated like :func:`spmm`."""
    # the reference reads A's rows in CSR order: no K blocks, no plan-time row order
    plan = plan_spmm(a, b, k_block=0, expected_calls=1)
    if plan.module.lib.spmm_csr_f32_ref(plan.args) != 0:
        raise RuntimeError("spmm_csr_f32_ref failed")
    return plan.out
