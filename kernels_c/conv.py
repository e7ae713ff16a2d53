"""2-D convolution, fp32, NCHW: direct sparse convolution (:class:`SparseConv2d`) and the dense
im2col + BLAS baseline (:func:`conv2d_im2col`).

The sparse kernel follows Park et al., "Faster CNNs with Direct Sparse Convolutions and
Guided Pruning" (ICLR 2017): the weights are prepared once as CSR over output channels whose
column indices are offsets into the padded input, so each nonzero is one broadcast and a run
of FMAs against contiguous input; see kernels_c/cdef/conv.h for the layout.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _isa
from ._blas import blas_function, blas_threads
from ._loader import load
from ._memory import aligned_empty
from ._validate import check_csr, check_dense, check_out, check_threads

if TYPE_CHECKING:
    import scipy.sparse as sp

IMPLEMENTED = ("portable", "avx2", "avx512")
VECTOR_WIDTH = {"portable": 8, "avx2": 8, "avx512": 16}
#: register tile limit per path (accumulators held in the 32 zmm / 16 ymm registers)
MAX_TILE_VECTORS = {"portable": 12, "avx2": 12, "avx512": 24}

#: Tunable parameters and their valid values (the tuner's search space reads this).
PARAMS: dict[str, tuple[int, ...]] = {
    # SIMD vectors per register tile along the flattened output plane (avx2/portable: <= 12)
    "tile_vectors": tuple(range(1, 25)),
    # input channels (within a group) per channel block; 0 = one block (no blocking)
    "c_block": (0, 1, 2, 4, 8, 16, 32, 64, 128),
    # output channels per task (and per scratch block)
    "o_block": (1, 2, 4, 8, 16, 32, 64, 128),
    # 1: aligned SIMD loads (plane width rounded up to the vector width, one shifted input
    # copy per kernel column phase); 0: unaligned loads from a single padded copy
    "align": (0, 1),
    # 1: a 1x1, unpadded, ungrouped convolution runs as the CSR spmm kernel on each image
    # viewed as (C, H W) (no copy; strided: its subsampled pixels copied to a buffer first;
    # the blocking parameters above are then unused)
    "pointwise": (0, 1),
}
#: aligning rounds the plane width up to the vector width; skip it beyond this waste
_MAX_ALIGN_WASTE = 1.15
_MAX_SHIFTED_COPIES = 8
_L1_BUDGET_BYTES = 24 * 1024
_MIN_NNZ_PER_BLOCK = 16
_DEFAULT_TILE = {"portable": 8, "avx2": 12, "avx512": 24}
_INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class ConvGeometry:
    """Shapes of one convolution: input (C, H, W), weight (O, C/groups, R, S), output."""

    c: int
    h: int
    w: int
    o: int
    r: int
    s: int
    stride: int
    padding: int
    groups: int

    @property
    def ho(self) -> int:
        return (self.h + 2 * self.padding - self.r) // self.stride + 1

    @property
    def wo(self) -> int:
        return (self.w + 2 * self.padding - self.s) // self.stride + 1

    def flops(self, batch: int) -> int:
        """Dense FLOPs (2 per multiply-add) of a batch of ``batch`` images."""
        return 2 * batch * self.o * (self.c // self.groups) * self.r * self.s * self.ho * self.wo


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _geometry(input_shape: Any, o: int, cg: int, r: int, s: int, stride: Any, padding: Any,
              groups: Any) -> ConvGeometry:
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}")
    c, h, w = (_check_int(v, "input_shape entries", 1) for v in input_shape)
    stride = _check_int(stride, "stride", 1)
    padding = _check_int(padding, "padding", 0)
    groups = _check_int(groups, "groups", 1)
    if c % groups or o % groups:
        raise ValueError(f"groups={groups} must divide both the input channels C={c} and the "
                         f"output channels O={o}")
    if cg * groups != c:
        raise ValueError(f"channel mismatch: the weight has {cg} input channels per group "
                         f"(x {groups} groups = {cg * groups}) but input_shape has C={c}")
    geo = ConvGeometry(c, h, w, o, r, s, stride, padding, groups)
    if geo.ho < 1 or geo.wo < 1:
        raise ValueError(
            f"empty output: a {r}x{s} kernel with stride {stride} and padding {padding} on a "
            f"{h}x{w} input gives {geo.ho}x{geo.wo}; increase padding or use a smaller kernel")
    return geo


def _check_bias(bias: Any, o: int) -> np.ndarray | None:
    if bias is None:
        return None
    bias = check_dense(bias, np.float32, "bias", ndim=1)
    if bias.shape[0] != o:
        raise ValueError(f"bias must have shape ({o},) (one per output channel), got {bias.shape}")
    return bias


def _check_x(x: Any, geo: ConvGeometry) -> np.ndarray:
    x = check_dense(x, np.float32, "x", ndim=4)
    if tuple(x.shape[1:]) != (geo.c, geo.h, geo.w):
        raise ValueError(
            f"x has (C, H, W) = {tuple(x.shape[1:])} but the convolution was prepared for "
            f"input_shape {(geo.c, geo.h, geo.w)}; build a new SparseConv2d for this size")
    return x


def _weight_csr(weight: Any, kernel_size: Any, input_shape: Any,
                groups: Any) -> tuple[sp.csr_array, int, int, int, int]:
    """CSR (O, C/groups * R * S) with sorted, summed indices; plus O, C/groups, R, S."""
    import scipy.sparse as sp  # here: perfmodel's queries use this module's work counts

    if sp.issparse(weight):
        indptr, indices, data, (o, k) = check_csr(weight, np.float32, "weight")
        if kernel_size is None:
            if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
                raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}")
            g = _check_int(groups, "groups", 1)
            cg = int(input_shape[0]) // g
            rs = k // cg if cg else 0
            side = math.isqrt(rs)
            if cg == 0 or cg * rs != k or side * side != rs:
                raise ValueError(
                    f"cannot infer a square kernel from a CSR weight with {k} columns and "
                    f"C/groups = {cg}; pass kernel_size=(R, S)")
            r = s = side
        else:
            if not isinstance(kernel_size, (tuple, list)) or len(kernel_size) != 2:
                raise ValueError(f"kernel_size must be (R, S), got {kernel_size!r}")
            r, s = (_check_int(v, "kernel_size entries", 1) for v in kernel_size)
            if k % (r * s):
                raise ValueError(f"a CSR weight with {k} columns is not C/groups * R * S for "
                                 f"kernel_size {(r, s)}")
            cg = k // (r * s)
        csr = sp.csr_array((data, indices, indptr), shape=(o, k), copy=True)
        csr.sum_duplicates()
        csr.sort_indices()
        return csr, o, cg, r, s
    weight = check_dense(weight, np.float32, "weight", ndim=4)
    o, cg, r, s = (int(v) for v in weight.shape)
    if kernel_size is not None and tuple(kernel_size) != (r, s):
        raise ValueError(f"kernel_size {tuple(kernel_size)} disagrees with the weight's "
                         f"{(r, s)}")
    if min(o, cg, r, s) < 1:
        raise ValueError(f"weight must have nonzero dimensions, got shape {weight.shape}")
    return sp.csr_array(weight.reshape(o, cg * r * s)), o, cg, r, s


def _phase_dims(geo: ConvGeometry, align: int = 1) -> tuple[int, int]:
    """(hq, wq) of a phase plane; wq rounded up to a multiple of ``align``."""
    st = geo.stride
    wq = -(-(geo.w + 2 * geo.padding) // st)
    return -(-(geo.h + 2 * geo.padding) // st), -(-wq // align) * align


def _n_shift(geo: ConvGeometry, align: int) -> int:
    """Shifted input copies: one per kernel column phase s // stride when aligning."""
    return -(-geo.s // geo.stride) if align else 1


def default_params(geo: ConvGeometry, isa: str | None = None,
                   density: float = 1.0) -> dict[str, int]:
    """Default blocking for a convolution.

    Register tile: the flattened output plane (Ho rows of the phase-plane width, V vectors)
    is covered by tiles of nv <= 24 (avx512) / 12 (avx2) / 8 (portable) vectors minimizing
    ceil(V / nv) * (nv + 3), the per-nonzero cost of FMAs plus loop overhead. Channel
    block: as many input channels as keep the input one register tile reads (all kernel
    rows, phases and shifted copies) within 24 KiB (half of a 48 KiB L1, leaving room for
    the accumulator tiles and weights), but at least enough that an output channel has ~16
    expected nonzeros per block (``density`` = nnz / weight size): each block reloads and
    stores the register tile, which very sparse weights do not amortize. Output channels per
    task: 32 (at most O / 4), so each L1-resident input block is reused by many filters.
    Pointwise (1x1, unpadded, one group, any stride): the spmm kernel per image, measured
    faster than the direct kernel on every 1x1 ResNet-50 layer (docs/conv.md).
    """
    level, _ = _isa.resolve(isa, IMPLEMENTED)
    return _blocking(geo, level, density)


def _blocking(geo: ConvGeometry, level: str, density: float) -> dict[str, int]:
    """:func:`default_params` for a path of ``IMPLEMENTED`` (not checked against this CPU)."""
    vw = VECTOR_WIDTH[level]
    align = _default_align(geo, level)
    _, wq = _phase_dims(geo, vw if align else 1)
    nv = _default_tile(_plane_vectors(geo, level, align), level)
    st = geo.stride
    per_channel = 4 * st * st * (nv * vw + ((geo.r - 1) // st) * wq + (geo.s - 1) // st + 1)
    per_channel *= _n_shift(geo, align)
    cg = geo.c // geo.groups
    c_block = max(1, _L1_BUDGET_BYTES // per_channel,
                  math.ceil(_MIN_NNZ_PER_BLOCK / max(density * geo.r * geo.s, 1e-9)))
    return {"tile_vectors": nv, "c_block": 0 if c_block >= cg else int(c_block),
            "o_block": max(1, min(32, geo.o // 4)), "align": align,
            "pointwise": int(is_pointwise(geo))}


def direct_work(geo: ConvGeometry, level: str, nnz: float,
                params: dict[str, Any] | None = None) -> dict[str, float]:
    """What the direct kernel does for one image, counted in the units its time follows.

    - ``fma_slots``: nnz ceil(V / nv) (nv + 3): every (nonzero, register tile) pair costs
      the tile's nv vector FMAs plus ~3 loop instructions, V being the SIMD vectors of the
      flattened output plane (computed and discarded columns included);
    - ``tile_visits``: O ceil(V / nv) (channel blocks): register tiles loaded and stored;
    - ``copy_vectors``: SIMD vectors of the zero-padded, phase-split input copy.

    ``level`` is a path of ``IMPLEMENTED`` (any machine's, not checked against this CPU),
    ``nnz`` the weight's nonzeros, ``params`` the blocking (missing: the defaults for this
    density). The direct kernel only: pointwise layers run spmm instead (``pointwise``).
    On ResNet-50's 56 x 56 planes a nonzero costs ~1.3 vector FMA slots per 16 output
    pixels, on its 7 x 7 planes ~2.3.
    """
    if level not in IMPLEMENTED:
        raise ValueError(f"unknown ISA path {level!r}; valid: {', '.join(IMPLEMENTED)}")
    cg = geo.c // geo.groups
    density = nnz / max(geo.o * cg * geo.r * geo.s, 1)
    p = {**_blocking(geo, level, density), **_check_params(dict(params or {}), level)}
    vectors = _plane_vectors(geo, level, int(p["align"]))
    tiles = -(-vectors // int(p["tile_vectors"]))
    blocks = -(-cg // int(p["c_block"])) if p["c_block"] else 1
    hq, wq = _phase_dims(geo, VECTOR_WIDTH[level] if p["align"] else 1)
    copy = geo.c * geo.stride ** 2 * hq * wq * _n_shift(geo, int(p["align"]))
    return {"fma_slots": nnz * _tile_cost(vectors, int(p["tile_vectors"])),
            "tile_visits": float(geo.o * blocks * tiles),
            "copy_vectors": copy / VECTOR_WIDTH[level]}


#: x86 L1 data caches are indexed within a 4 KiB page: 64 sets of 64-byte lines, as many
#: ways as the cache has 4 KiB (8 in Zen 3's 32 KiB, 12 in Golden Cove's 48 KiB)
L1_SETS = 64
LINE_BYTES = 64


def input_set_overflow(geo: ConvGeometry, level: str, nnz: float,
                       params: dict[str, Any] | None = None, l1_bytes: int = 32 * 1024
                       ) -> float:
    """Fraction of the input lines one register tile reads that its L1 set cannot hold.

    For every input channel of its channel block and every kernel row and column, a
    register tile reads nv vectors of the padded input at that weight's offset
    (kernels_c/cdef/conv.h). Where the block's phase planes and shifted copies lie close
    to a multiple of 4 KiB apart, their lines fall into the same few of the L1's sets,
    and lines beyond the ways of their set evict each other while every output channel
    of a task reuses the block: the kernel ran 1.2-1.4x slower on such layers until
    :func:`_plane_stride` moved the planes apart (docs/conv.md). Returns sum over sets of
    max(0, lines - ways) / lines for the first tile of the kernel's layout with ``params``
    (missing: the defaults for this density) and a dense weight, on an L1 of ``l1_bytes``
    (ways = l1_bytes / 4 KiB). 0.0 for layers that run spmm (``pointwise``).
    """
    if level not in IMPLEMENTED:
        raise ValueError(f"unknown ISA path {level!r}; valid: {', '.join(IMPLEMENTED)}")
    geo = _checked(geo)
    density = nnz / max(geo.o * (geo.c // geo.groups) * geo.r * geo.s, 1)
    p = {**_blocking(geo, level, density), **_check_params(dict(params or {}), level)}
    if p["pointwise"] and is_pointwise(geo):
        return 0.0
    _, counts, lines = _layout(*tile_layout(geo, level, p))
    return float(_overflow(counts, lines, max(int(l1_bytes) // (L1_SETS * LINE_BYTES), 1)))


def tile_layout(geo: ConvGeometry, level: str, params: dict[str, Any]
                ) -> tuple[ConvGeometry, str, int, int, int]:
    """What decides where a register tile of the direct kernel reads its input, for
    complete blocking ``params`` (:func:`default_params` merged with the caller's):
    (geo, level, tile_vectors, input channels per block, align), align being 0 on the
    portable path whatever ``params`` says. :func:`_plane_stride` takes it."""
    cg = geo.c // geo.groups
    return (geo, level, int(params["tile_vectors"]), min(int(params["c_block"]) or cg, cg),
            int(bool(params["align"]) and level != "portable"))


def _checked(geo: ConvGeometry) -> ConvGeometry:
    """``geo`` after the checks SparseConv2d makes of a layer (ValueError / TypeError)."""
    for name in ("o", "r", "s"):
        _check_int(getattr(geo, name), name, 1)
    return _geometry((geo.c, geo.h, geo.w), geo.o, _check_int(geo.c, "c", 1)
                     // _check_int(geo.groups, "groups", 1), geo.r, geo.s, geo.stride,
                     geo.padding, geo.groups)


#: the L1 the padded input's layout avoids set conflicts in: 8 ways (32 KiB: Zen 3, Skylake;
#: Golden Cove's 48 KiB has 12, Zen 4's 32 KiB 8)
_LAYOUT_WAYS = 8
#: planes are moved apart by at most this many cache lines
_MAX_PLANE_GAP_LINES = 16


def _plane_stride(geo: ConvGeometry, level: str, nv: int, block: int, align: int) -> int:
    """Floats from one phase plane of the padded input to the next (``plane_stride``):
    hq wq plus the fewest whole cache lines (up to 16) after which the lines a register
    tile reads overflow no set of an 8-way L1 (:func:`input_set_overflow`), else the
    fewest with the least overflow. 32 x 32 planes 4 KiB apart put every line of a tile's
    block into a quarter of the sets."""
    return _layout(geo, level, nv, block, align)[0]


@functools.lru_cache(maxsize=4096)
def _layout(geo: ConvGeometry, level: str, nv: int, block: int, align: int
            ) -> tuple[int, np.ndarray, int]:
    """:func:`_plane_stride` and the lines of a register tile's block per L1 set and in
    all with it (kept: a shape's sparsities share it; read-only)."""
    hq, wq = _phase_dims(geo, VECTOR_WIDTH[level] if align else 1)
    strides = hq * wq + (LINE_BYTES // 4) * np.arange(_MAX_PLANE_GAP_LINES + 1)
    counts, lines = _lines_per_set(geo, level, nv, block, align, strides, _LAYOUT_WAYS)
    best = int(np.argmin(_overflow(counts, lines, _LAYOUT_WAYS)))   # first: fewest lines
    return int(strides[best]), counts[best], int(lines[best])


def _overflow(counts: np.ndarray, lines: Any, ways: int) -> Any:
    """Share of the lines beyond ``ways`` in their set (``counts``: lines per set, last
    axis)."""
    return np.maximum(counts - ways, 0).sum(axis=-1) / np.maximum(lines, 1)


def _lines_per_set(geo: ConvGeometry, level: str, nv: int, block: int, align: int,
                   planes: Any, stop_ways: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Distinct input lines one register tile's block reads, per L1 set ((len, 64)) and
    in all, for each distance of the phase planes in ``planes`` (floats, each at least
    hq wq) in turn, up to the first whose sets all hold at most ``stop_ways`` lines
    (default: every one). Every weight of the block's channels reads nv vectors at the
    offset SparseConv2d gives it; counted in C (``conv_block_lines``, conv.h)."""
    vw = VECTOR_WIDTH[level]
    planes = np.ascontiguousarray(np.atleast_1d(planes), dtype=np.int64)
    counts = np.empty((len(planes), L1_SETS), dtype=np.int64)
    lines = np.empty(len(planes), dtype=np.int64)
    module = load("conv")
    ffi = module.ffi
    done = module.lib.conv_block_lines(
        block, geo.c, geo.r, geo.s, geo.stride, _phase_dims(geo, vw if align else 1)[1],
        _n_shift(geo, align), ffi.from_buffer("int64_t[]", planes), len(planes), nv * vw,
        LINE_BYTES // 4, L1_SETS, stop_ways, ffi.from_buffer("int64_t[]", counts),
        ffi.from_buffer("int64_t[]", lines))
    return counts[:done], lines[:done]


def _default_align(geo: ConvGeometry, level: str) -> int:
    """Align (round the plane width up to the vector width) unless it wastes > 15 %."""
    vw, (_, wq) = VECTOR_WIDTH[level], _phase_dims(geo)
    return int(level != "portable" and -(-wq // vw) * vw <= _MAX_ALIGN_WASTE * wq
               and _n_shift(geo, 1) <= _MAX_SHIFTED_COPIES)


def _plane_vectors(geo: ConvGeometry, level: str, align: int) -> int:
    """SIMD vectors of the flattened output plane (Ho rows of the phase-plane width)."""
    vw = VECTOR_WIDTH[level]
    return -(-(geo.ho * _phase_dims(geo, vw if align else 1)[1]) // vw)


def _tile_cost(vectors: int, nv: int) -> int:
    """Instructions per nonzero over a plane of ``vectors`` in tiles of ``nv``: each (nonzero,
    tile) pair costs the tile's FMAs plus ~3 loop instructions (offset load, broadcast,
    branch)."""
    return -(-vectors // nv) * (nv + 3)


def _default_tile(vectors: int, level: str) -> int:
    """The register tile minimizing :func:`_tile_cost`, the larger one on ties."""
    best, best_cost = 1, _tile_cost(vectors, 1)
    for nv in range(2, min(_DEFAULT_TILE[level], vectors) + 1):
        cost = _tile_cost(vectors, nv)
        if cost <= best_cost:
            best, best_cost = nv, cost
    return best


def is_pointwise(geo: ConvGeometry) -> bool:
    """Whether the layer runs the spmm kernel by default (``pointwise``): 1x1, no padding,
    one group: out[n] = W (O x C) @ x[n] (C x H W), every stride-th pixel of x[n] when
    strided."""
    return (geo.r, geo.s, geo.padding, geo.groups) == (1, 1, 0, 1)


def check_params(geo: ConvGeometry, params: dict[str, Any], isa: str | None = None
                 ) -> dict[str, int]:
    """``params`` as ints, checked as :class:`SparseConv2d` checks them for layer ``geo``
    on the ISA path ``isa`` (None: this CPU's best): known names, value ranges,
    ``tile_vectors`` within the path's registers, and ``pointwise = 1`` only for a layer
    that :func:`is_pointwise` (the one rule the layer enters). Raises ValueError naming the
    first rule broken."""
    level, _ = _isa.resolve(isa, IMPLEMENTED)
    out = _check_params(dict(params), level)
    if out.get("pointwise") and not is_pointwise(geo):
        raise ValueError(f"pointwise=1 needs a 1x1 unpadded convolution with one group; "
                         f"this one is {geo.r}x{geo.s}, padding {geo.padding}, "
                         f"{geo.groups} groups")
    return out


def _check_params(params: dict[str, Any], level: str) -> dict[str, int]:
    unknown = set(params) - set(PARAMS)
    if unknown:
        raise ValueError(f"unknown conv parameter(s) {sorted(unknown)}; valid: {sorted(PARAMS)}")
    out = {}
    for name, value in params.items():
        low = 1 if name in ("tile_vectors", "o_block") else 0
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if name in ("align", "pointwise") and value not in PARAMS[name]:
            raise ValueError(f"{name} must be 0 or 1, got {value!r}")
        out[name] = int(value)
    top = MAX_TILE_VECTORS[level]
    if out.get("tile_vectors", 1) > top:
        raise ValueError(f"tile_vectors must be <= {top} on the {level} path, got "
                         f"{out['tile_vectors']}")
    return out


@dataclass
class ConvPlan:
    """A validated convolution call whose C argument block can be run or timed repeatedly.

    Holds references to every array the C struct points into. For ``isa == 'blas'`` plans
    (im2col + sgemm), time ``function`` inside ``with kernels_c._blas.blas_threads(threads)``.
    """

    args: Any
    module: Any
    out: np.ndarray
    isa: str
    params: dict[str, int]
    threads: int
    kernel: str
    _keepalive: tuple

    entry: str = ""      # C function when it is not named like the kernel

    @property
    def function(self) -> Any:
        """C entry point ``int f(void *args)``, for the C timing loop."""
        return getattr(self.module.lib, self.entry or self.kernel)

    def run(self) -> np.ndarray:
        if self.isa == "blas":
            with blas_threads(self.threads):
                rc = self.function(self.args)
        else:
            rc = self.function(self.args)
        if rc != 0:
            raise RuntimeError(f"{self.kernel} failed on path {self.isa} (code {rc})")
        return self.out


class SparseConv2d:
    """Direct sparse convolution with weights prepared once (Park et al., ICLR 2017).

    Parameters
    ----------
    weight : ndarray (O, C/groups, R, S), float32, C-contiguous (zeros are skipped), or a
        scipy.sparse CSR matrix/array (O, C/groups * R * S) with float32 data whose columns
        are ordered (c, r, s) like ``weight.reshape(O, -1)`` (explicit zeros are kept).
    input_shape : (C, H, W) of the images this convolution will be applied to.
    stride, padding : int, the same in both spatial dimensions (stride >= 1, padding >= 0).
    groups : int, dividing C and O (AlexNet conv2/4/5 use 2).
    bias : ndarray (O,), float32, optional; added in the epilogue.
    relu : bool; apply max(0, .) in the epilogue (NaN stays NaN).
    kernel_size : (R, S), only needed for a CSR weight whose kernel is not square.
    isa : str, optional; a path at or below :func:`kernels_c.isa`.
    **params : blocking, see ``PARAMS`` and kernels_c/cdef/conv.h: ``tile_vectors``
        (SIMD vectors per register tile, 1-24 on avx512, 1-12 otherwise), ``c_block``
        (input channels per L1 block, 0 = all), ``o_block`` (output channels per task),
        ``pointwise`` (1: a 1x1, unpadded, ungrouped convolution runs as the CSR spmm
        kernel on each image, ``out[i] = W @ x[i].reshape(C, H W)``, without copies at
        stride 1, on a subsampled copy otherwise; 1.0-2.65x faster than the direct kernel
        on all 15 of ResNet-50's such layers, docs/conv.md). Defaults:
        :func:`default_params`.
    """

    kernel = "conv_direct_sparse_f32"

    def __init__(self, weight: Any, *, input_shape: tuple[int, int, int], stride: int = 1,
                 padding: int = 0, groups: int = 1, bias: np.ndarray | None = None,
                 relu: bool = False, kernel_size: tuple[int, int] | None = None,
                 isa: str | None = None, **params: int) -> None:
        csr, o, cg, r, s = _weight_csr(weight, kernel_size, input_shape, groups)
        geo = _geometry(input_shape, o, cg, r, s, stride, padding, groups)
        self.geometry = geo
        self.bias = _check_bias(bias, o)
        self.relu = bool(relu)
        level, self._isa_id = _isa.resolve(isa, IMPLEMENTED)
        self.isa = level
        full = default_params(geo, level, csr.nnz / max(1, csr.shape[0] * csr.shape[1]))
        full.update(check_params(geo, params, level))
        full["o_block"] = min(full["o_block"], o)
        align = full["align"] and level != "portable"
        full["align"] = int(align)
        self.params = full
        self.csr = csr
        if full["pointwise"]:
            return  # the spmm plan made per call is all that path needs (_plan_pointwise)
        layout = tile_layout(geo, level, full)
        _, _, _, cb, _ = layout
        st, vw = geo.stride, VECTOR_WIDTH[level]
        self._hq, self._wq = _phase_dims(geo, vw if align else 1)
        plane = self._plane_stride = _plane_stride(*layout)
        self._n_shift = _n_shift(geo, align)
        self._copy_stride = geo.c * st * st * plane
        self._img_stride = self._n_shift * self._copy_stride
        tile = full["tile_vectors"] * vw
        self._plane_alloc = -(-(geo.ho * self._wq) // tile) * tile
        max_off = ((self._n_shift - 1) * self._copy_stride + (geo.c * st * st - 1) * plane
                   + ((r - 1) // st) * self._wq + (s - 1) // st)
        self._slack = max(0, max_off + self._plane_alloc - self._img_stride)
        if self._img_stride + self._slack > _INT32_MAX:
            raise ValueError(f"input {input_shape} is too large for int32 offsets")
        # column k = (c', r, s) of row o -> offset into the phase-split padded image
        rows = np.repeat(np.arange(o, dtype=np.int64), np.diff(csr.indptr))
        k = csr.indices.astype(np.int64)
        cin = (rows // (o // geo.groups)) * cg + k // (r * s)
        rr, ss = (k // s) % r, k % s
        offs = ((cin * st + rr % st) * st + ss % st) * plane + (rr // st) * self._wq + ss // st
        if self._n_shift > 1:  # column phase d = s // stride reads shifted copy d
            offs += (ss // st) * (self._copy_stride - 1)
        self._offs = np.ascontiguousarray(offs, dtype=np.int32)
        self._vals = np.ascontiguousarray(csr.data, dtype=np.float32)
        self._n_cblocks = -(-cg // cb)
        counts = np.bincount(rows * self._n_cblocks + (k // (r * s)) // cb,
                             minlength=o * self._n_cblocks).reshape(o, self._n_cblocks)
        kptr = np.empty((o, self._n_cblocks + 1), dtype=np.int32)
        kptr[:, 0] = csr.indptr[:-1]
        np.cumsum(counts, axis=1, out=kptr[:, 1:])
        kptr[:, 1:] += csr.indptr[:-1, None].astype(np.int32)
        self._kptr = kptr

    @property
    def nnz(self) -> int:
        """Stored weights."""
        return int(self.csr.nnz)

    @property
    def density(self) -> float:
        """Stored weights / dense weight size."""
        return self.nnz / max(1, self.csr.shape[0] * self.csr.shape[1])

    def output_shape(self, batch: int) -> tuple[int, int, int, int]:
        g = self.geometry
        return (int(batch), g.o, g.ho, g.wo)

    def plan(self, x: np.ndarray, *, threads: int = 1,
             out: np.ndarray | None = None) -> ConvPlan:
        """Validate ``x`` and build the C call (with its workspaces) for :meth:`conv`."""
        geo = self.geometry
        x = _check_x(x, geo)
        threads = check_threads(threads)
        n = int(x.shape[0])
        out = check_out(out, self.output_shape(n), np.float32, (x,))
        if self.params["pointwise"]:
            return self._plan_pointwise(x, threads, out)
        per_image = -(-(self._img_stride + self._slack) // 16) * 16  # keep 64-byte alignment
        n_xpad = threads if 1 < threads <= n else 1
        xpad = aligned_empty(n_xpad * per_image)
        scratch = np.empty(threads * self.params["o_block"] * self._plane_alloc, np.float32)
        module = load("conv")
        ffi = module.ffi
        a = ffi.new("conv_direct_sparse_f32_args *")
        a.n, a.c, a.h, a.w = n, geo.c, geo.h, geo.w
        a.o, a.r, a.s, a.ho, a.wo = geo.o, geo.r, geo.s, geo.ho, geo.wo
        a.stride, a.pad, a.groups = geo.stride, geo.padding, geo.groups
        a.hq, a.wq, a.plane_stride = self._hq, self._wq, self._plane_stride
        a.img_stride, a.xpad_len, a.plane_alloc = self._img_stride, per_image, self._plane_alloc
        a.n_xpad = n_xpad
        a.copy_stride, a.n_shift = self._copy_stride, self._n_shift
        a.x = ffi.from_buffer("float[]", x)
        a.xpad = ffi.from_buffer("float[]", xpad)
        a.scratch = ffi.from_buffer("float[]", scratch)
        a.kptr = ffi.from_buffer("int32_t[]", self._kptr)
        a.offs = ffi.from_buffer("int32_t[]", self._offs)
        a.vals = ffi.from_buffer("float[]", self._vals)
        a.bias = ffi.from_buffer("float[]", self.bias) if self.bias is not None else ffi.NULL
        a.relu = int(self.relu)
        a.out = ffi.from_buffer("float[]", out)
        a.threads, a.isa = threads, self._isa_id
        a.tile_vectors, a.o_block = self.params["tile_vectors"], self.params["o_block"]
        a.n_cblocks = self._n_cblocks
        keep = (x, xpad, scratch, self._kptr, self._offs, self._vals, self.bias, out)
        return ConvPlan(a, module, out, self.isa, dict(self.params), threads, self.kernel, keep)

    def _plan_pointwise(self, x: np.ndarray, threads: int, out: np.ndarray) -> ConvPlan:
        """One spmm argument block per image, W (O x C) @ x[i] (C x H W) into out[i]
        (O x H W), run by ``spmm_batch_f32`` with the bias / ReLU epilogue."""
        from .spmm import _alignment_peel, plan_spmm

        geo, n = self.geometry, int(x.shape[0])
        plane = geo.ho * geo.wo
        outs = out.reshape(n, geo.o, plane)
        if geo.stride == 1:
            xs = x.reshape(n, geo.c, plane)
        else:  # every image is subsampled into this buffer before its product
            xs = aligned_empty(geo.c * plane).reshape(1, geo.c, plane)
        first = plan_spmm(self.csr, xs[0], out=outs[0], threads=threads, isa=self.isa)
        ffi = first.module.ffi
        images = ffi.new("spmm_csr_f32_args[]", n)
        base = first.args[0]
        # B is copied or read through a peel that depends on its address: every image
        # gets its own peel (a copy of B, when there is one, is made on every call)
        repeel = base.b_pack == ffi.NULL and not base.slice_b and geo.stride == 1
        for i in range(n):
            images[i] = base
            images[i].c = base.c + i * geo.o * plane
            if geo.stride == 1:
                images[i].b = base.b + i * geo.c * plane
            if repeel:
                images[i].peel = _alignment_peel(xs[i], first.isa)
        args = ffi.new("spmm_batch_f32_args *")
        args.images, args.n_images = images, n
        args.bias = ffi.from_buffer("float[]", self.bias) if self.bias is not None else ffi.NULL
        args.relu = int(self.relu)
        if geo.stride > 1:
            args.stride, args.x = geo.stride, ffi.from_buffer("float[]", x)
            args.x_image, args.channels = geo.c * geo.h * geo.w, geo.c
            args.h, args.w, args.ho, args.wo = geo.h, geo.w, geo.ho, geo.wo
        keep = (first, images, x, xs, out, self.bias)
        return ConvPlan(args, first.module, out, first.isa, dict(self.params), threads,
                        self.kernel, keep, entry="spmm_batch_f32")

    def conv(self, x: np.ndarray, *, threads: int = 1,
             out: np.ndarray | None = None) -> np.ndarray:
        """Convolve a batch.

        Parameters
        ----------
        x : ndarray (N, C, H, W), float32, C-contiguous, (C, H, W) == ``input_shape``.
        threads : int, OpenMP threads: over images when the batch has at least one per
            thread, else over blocks of output channels, image by image.
        out : ndarray (N, O, Ho, Wo), float32, C-contiguous, optional; reused as the result.

        Returns
        -------
        ndarray (N, O, Ho, Wo), float32.
        """
        return self.plan(x, threads=threads, out=out).run()

    __call__ = conv


def plan_conv2d_im2col(x: np.ndarray, weight: np.ndarray, *, stride: int = 1, padding: int = 0,
                       groups: int = 1, bias: np.ndarray | None = None, relu: bool = False,
                       threads: int = 1, out: np.ndarray | None = None) -> ConvPlan:
    """Validate and build the im2col + BLAS sgemm call (see :func:`conv2d_im2col`)."""
    x = check_dense(x, np.float32, "x", ndim=4)
    weight = check_dense(weight, np.float32, "weight", ndim=4)
    o, cg, r, s = (int(v) for v in weight.shape)
    if min(o, cg, r, s) < 1:
        raise ValueError(f"weight must have nonzero dimensions, got shape {weight.shape}")
    geo = _geometry(tuple(int(v) for v in x.shape[1:]), o, cg, r, s, stride, padding, groups)
    bias = _check_bias(bias, o)
    threads = check_threads(threads)
    n = int(x.shape[0])
    out = check_out(out, (n, o, geo.ho, geo.wo), np.float32, (x, weight))
    kk, p = cg * r * s, geo.ho * geo.wo
    if max(kk, p, o) > _INT32_MAX or kk * p > 2**40:
        raise ValueError(f"convolution {geo} is too large for the 32-bit BLAS interface")
    direct = r == s == 1 and geo.stride == 1 and geo.padding == 0
    col = np.empty(0 if direct else kk * p, dtype=np.float32)
    module = load("conv")
    ffi = module.ffi
    a = ffi.new("conv_im2col_blas_f32_args *")
    a.n, a.c, a.h, a.w = n, geo.c, geo.h, geo.w
    a.o, a.r, a.s, a.ho, a.wo = o, r, s, geo.ho, geo.wo
    a.stride, a.pad, a.groups = geo.stride, geo.padding, geo.groups
    a.x = ffi.from_buffer("float[]", x)
    a.weight = ffi.from_buffer("float[]", weight)
    a.bias = ffi.from_buffer("float[]", bias) if bias is not None else ffi.NULL
    a.relu = int(bool(relu))
    a.col = ffi.from_buffer("float[]", col) if col.size else ffi.NULL
    a.out = ffi.from_buffer("float[]", out)
    a.threads = threads
    a.sgemm = blas_function("sgemm")
    return ConvPlan(a, module, out, "blas", {}, threads, "conv_im2col_blas_f32",
                    (x, weight, bias, col, out))


def conv2d_im2col(x: np.ndarray, weight: np.ndarray, *, stride: int = 1, padding: int = 0,
                  groups: int = 1, bias: np.ndarray | None = None, relu: bool = False,
                  threads: int = 1, out: np.ndarray | None = None) -> np.ndarray:
    """Dense convolution by im2col (C, OpenMP) and BLAS sgemm: the dense baseline.

    Parameters
    ----------
    x : ndarray (N, C, H, W), float32, C-contiguous.
    weight : ndarray (O, C/groups, R, S), float32, C-contiguous.
    stride, padding, groups, bias, relu : as for :class:`SparseConv2d`.
    threads : int, BLAS threads (threadpoolctl, restored after); the im2col is serial.
    out : ndarray (N, O, Ho, Wo), float32, C-contiguous, optional.

    Returns
    -------
    ndarray (N, O, Ho, Wo), float32. 1x1 stride-1 unpadded convolutions skip the im2col.
    """
    return plan_conv2d_im2col(x, weight, stride=stride, padding=padding, groups=groups,
                              bias=bias, relu=relu, threads=threads, out=out).run()


def conv2d_reference(x: np.ndarray, weight: np.ndarray, *, stride: int = 1, padding: int = 0,
                     groups: int = 1, bias: np.ndarray | None = None,
                     relu: bool = False) -> np.ndarray:
    """Naive C reference (direct loops, double accumulation), validated like the others."""
    plan = plan_conv2d_im2col(x, weight, stride=stride, padding=padding, groups=groups,
                              bias=bias, relu=relu)
    if plan.module.lib.conv_f32_ref(plan.args) != 0:
        raise RuntimeError("conv_f32_ref failed")
    return plan.out
