"""CSR sparse x dense GEMM (``spmm``) and its prepared form for repeated timing."""

from __future__ import annotations

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
#: B is copied to aligned rows (N not a multiple of the vector width) from this many
#: nonzeros per row of B on (the copy costs about one read and one write of B)
_MIN_USES_TO_PACK = 4
#: below this density K blocking loses to streaming B from L2 with software prefetch
_MIN_K_BLOCK_DENSITY = 0.15
#: K blocks grow while their slice of B (k_block x N fp32) stays within this: fewer
#: segments per row and C-tile reloads, and a sparsely touched block this size still hits
#: L1/L2 (measured on Zen 5 at sparsity 0.55-0.7: 1.0-1.3x over 64-row blocks, 128 KiB
#: worse; docs/spmm.md)
_B_BLOCK_BYTES = 64 * 1024


def default_params(m: int, k: int, n: int, density: float = 1.0,
                   isa: str | None = None) -> dict[str, int]:
    """Default blocking for a problem (density = nnz / (M K)), chosen from measurements on
    an AVX-512 machine (benchmarks/bench_spmm.py, docs/spmm.md).

    Register tiles of 4 vectors (a narrower N is one masked tile). When B (K x N fp32) fits
    half of a 1 MiB L2, or N fits one vector, no further blocking. Otherwise, down to a
    density of 0.15, K blocks of at least 16 / density rows of B (so that a row segment
    holds ~16 nonzeros), doubled while the block of B stays within 64 KiB, are swept by
    blocks of 64 rows of C (32 when N > 2048), reusing B's block across those rows;
    sparser matrices stream B from L2/L3 with B rows prefetched 16 nonzeros ahead.
    """
    level, _ = _isa.resolve(isa, IMPLEMENTED)
    vw = VECTOR_WIDTH[level]
    params = {"reg_vectors": 4, "n_tile": 0, "k_block": 0, "row_block": 32, "prefetch": 0,
              **COMPILED_DEFAULTS}
    if 4 * k * n <= _L2_TILE_BYTES or n <= vw or level == "portable":
        return params
    if density < _MIN_K_BLOCK_DENSITY:
        params["prefetch"] = 16
        return params
    k_block = 64
    while k_block < 1024 and density * k_block < _NNZ_PER_SEGMENT:
        k_block *= 2
    while 2 * k_block < k and 2 * k_block * n * 4 <= _B_BLOCK_BYTES:
        k_block *= 2
    if k_block < k:
        params["k_block"] = k_block
        # more rows of C per K block reuse B's block more often; 64 while those rows of C
        # fit the L2 budget (measured 1.02-1.11x over 32 on 7 of 8 shapes, docs/spmm.md)
        params["row_block"] = 64 if 64 * n * 4 <= _L2_TILE_BYTES else 32
        return params
    width = 4 * vw
    cols = max(width, (_L2_TILE_BYTES // max(4 * k, 1)) // width * width)
    params["n_tile"] = 0 if cols >= n else int(cols)
    return params


def _k_block_offsets(indptr: np.ndarray, indices: np.ndarray, m: int, k: int,
                     k_block: int) -> tuple[np.ndarray, int]:
    """kptr (M, n_kblocks + 1), int32: start of each K block within each (sorted) row."""
    n_kblocks = max(1, -(-k // k_block))
    rows = np.repeat(np.arange(m, dtype=np.int64), np.diff(indptr))
    counts = np.bincount(rows * n_kblocks + indices // k_block,
                         minlength=m * n_kblocks).reshape(m, n_kblocks)
    kptr = np.empty((m, n_kblocks + 1), dtype=np.int32)
    kptr[:, 0] = indptr[:-1]
    np.cumsum(counts, axis=1, out=kptr[:, 1:])
    kptr[:, 1:] += indptr[:-1, None]
    return kptr, n_kblocks


def _alignment_peel(b: np.ndarray, level: str, reg_vectors: int) -> int:
    """Columns to handle before the first register tile so that the tiles load B at
    vector-aligned addresses. numpy aligns large arrays to 16 bytes only, and a 64-byte load
    that crosses a cache line costs two: misaligned B made the kernel 1.2-1.5x slower at
    N = 128-256 (docs/spmm.md). The peeled columns cost one more pass over each row's
    nonzeros, so only from two register tiles of N on; 0 when the rows of B are not all
    misaligned alike (N not a multiple of the vector width)."""
    vw = VECTOR_WIDTH[level]
    n = b.shape[1]
    if level == "portable" or n % vw or n < 2 * reg_vectors * vw:
        return 0
    return int((-b.ctypes.data % (4 * vw)) // 4)


def _packed_b(k: int, n: int, nnz: int, level: str) -> np.ndarray | None:
    """An aligned K x ceil(N / 16) * 16 buffer the kernel copies B into on each call, or
    None. When N is not a multiple of the vector width, B's rows start at varying offsets
    from a cache line and no peel aligns them all; with aligned rows the same problem ran
    1.04-1.3x faster (N = 196 and 1352, docs/spmm.md). The copy reads and writes B once, so
    only when each row of B is used at least 4 times on average."""
    vw = VECTOR_WIDTH[level]
    if level == "portable" or n % vw == 0 or n < 2 * vw or nnz < _MIN_USES_TO_PACK * k:
        return None
    ld = -(-n // 16) * 16
    return aligned_empty(k * ld).reshape(k, ld)


def _rows_sorted(indptr: np.ndarray, indices: np.ndarray) -> bool:
    if indices.size < 2:
        return True
    step_ok = np.diff(indices) >= 0
    starts = indptr[1:-1]
    step_ok[starts[(starts > 0) & (starts < indices.size)] - 1] = True  # row boundaries
    return bool(step_ok.all())


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
              isa: str | None = None, **params: int) -> SpmmPlan:
    """Validate operands and build the C call for ``out = a @ b`` (see :func:`spmm`)."""
    indptr, indices, data, (m, k) = check_csr(a, np.float32)
    b = check_dense(b, np.float32, "b")
    if b.shape[0] != k:
        raise ValueError(f"shape mismatch: a is {m} x {k} but b is {b.shape[0]} x {b.shape[1]}"
                         f" (b must have K = {k} rows)")
    n = int(b.shape[1])
    threads = check_threads(threads)
    level, isa_id = _isa.resolve(isa, IMPLEMENTED)
    density = indices.shape[0] / max(1, m * k)
    full = default_params(m, k, n, density, level)
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
    args.peel = _alignment_peel(b, level, full["reg_vectors"])
    keep = [indptr, indices, data, b, out]
    pack = _packed_b(k, n, indices.shape[0], level)
    if pack is not None:
        args.b_pack = ffi.from_buffer("float[]", pack)
        args.ld_pack = pack.shape[1]
        keep.append(pack)
    if full["k_block"] and level != "portable" and n > 1:
        if not _rows_sorted(indptr, indices):
            # K blocking needs the nonzeros of each row grouped by column: sort a copy once
            order = np.lexsort((indices, np.repeat(np.arange(m), np.diff(indptr))))
            indices, data = indices[order], data[order]
            args.indices = ffi.from_buffer("int32_t[]", indices)
            args.data = ffi.from_buffer("float[]", data)
        kptr, n_kblocks = _k_block_offsets(indptr, indices, m, k, full["k_block"])
        args.kptr = ffi.from_buffer("int32_t[]", kptr)
        args.n_kblocks = n_kblocks
        keep += [indices, data, kptr]
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
        ``k_block`` (0 = off, else rows of B per L1-resident block; needs column indices
        sorted within rows, sorted in a copy at plan time if they are not), ``row_block``
        (>= 1), ``prefetch`` (0, 8, 16 nonzeros ahead), and the compile-time ``acc_sets``
        (1, 2; compiled on demand when it differs from the installed build). Defaults:
        :func:`default_params`.

    Returns
    -------
    ndarray (M, N), float32. NaN/Inf in stored entries or in the rows of ``b`` they touch
    propagate as in any dense product; implicit zeros contribute nothing.
    """
    return plan_spmm(a, b, threads=threads, out=out, isa=isa, **params).run()


def spmm_reference(a: Any, b: np.ndarray) -> np.ndarray:
    """Naive C reference (double accumulation), validated like :func:`spmm`."""
    plan = plan_spmm(a, b)
    if plan.module.lib.spmm_csr_f32_ref(plan.args) != 0:
        raise RuntimeError("spmm_csr_f32_ref failed")
    return plan.out
