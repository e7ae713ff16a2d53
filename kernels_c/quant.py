"""Quantized GEMM (u8 activations x s8 / s4 weights, int32 accumulation) and quantization.

FBGEMM's split: :class:`QuantizedWeight` quantizes and prepacks weights once (packing is
timed apart from the GEMM), :func:`plan_qgemm` validates a call and builds the C argument
block, the C inner kernel computes register tiles and an output pipeline applies the
zero-point correction, bias, relu and requantization (kernels_c/cdef/qgemm.h documents the
layouts, blocking invariants and the exact output arithmetic).

Semantics (FBGEMM's ``ReQuantizeOutput``; see ../shared/reference/peers.md): with
activations ``A ~ s_a (A_q - z_a)`` (uint8) and weights ``B ~ s_b[j] (B_q - z_b[j])``
(int8, per output channel or per tensor)::

    raw[i, j] = sum_k (A_q[i, k] - z_a) (B_q[j, k] - z_b[j])          (exact int32)
    fp32 out  = raw * fl(s_a s_b[j]) + bias[j]
    uint8 out = clamp(rint((raw + bias[j] / fl(s_a s_b[j])) * fl(fl(s_a s_b[j]) / s_c)) + z_c,
                      relu ? z_c : 0, 255)

which is what ``torch.ops.quantized.linear`` (engine fbgemm) computes, bit for bit. int4
weights (``bits=4``) are symmetric, with one fp32 scale per output channel and group of
``group_size`` consecutive K values; group sums are exact int32, groups are summed in fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _isa
from ._loader import load_for
from ._validate import check_dense, check_out, check_threads

__all__ = ["QuantizedWeight", "dequantize", "plan_qgemm", "qgemm", "qgemm_dynamic",
           "quantize"]

IMPLEMENTED = ("portable", "avx2", "avx512_vnni")
#: packed layout per path: (NR columns per panel, KS consecutive k per column and step)
LAYOUT: dict[str, tuple[int, int]] = {"avx512_vnni": (64, 4), "avx2": (16, 2),
                                      "portable": (16, 1)}
#: register tile rows (mr) per path for int8 / int4 (see src/qgemm.c)
MR: dict[str, dict[int, int]] = {"avx512_vnni": {8: 6, 4: 6}, "avx2": {8: 6, 4: 2},
                                 "portable": {8: 4, 4: 4}}
GROUP_SIZES = (16, 32, 64, 128)
#: Tunable cache blocking (the tuner's search space): rows of A per block (rounded up to a
#: multiple of mr) and columns of B per block (a multiple of NR; 0 = all).
PARAMS: dict[str, tuple[int, ...]] = {
    "mc": (24, 48, 96, 192, 384, 768),
    "nc": (0, 64, 128, 256, 512, 1024),
    # compile-time (variant cache): software prefetch distance into packed B, bytes; 0 = off
    "pf_dist": (0, 2048, 4096, 8192, 16384),
}
#: values compiled into the installed module; others are built on demand (variant cache)
COMPILED_DEFAULTS = {"pf_dist": 8192}
_MACROS = {"pf_dist": "QG_PF_DIST"}
_L2_A_BYTES = 256 * 1024
INT32_MAX = 2**31 - 1
_OUT_INT32, _OUT_F32, _OUT_U8 = 0, 1, 2


def _pad_to(x: int, m: int) -> int:
    return -(-x // m) * m


def _as_float(value: Any, name: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or (positive and not v > 0):
        raise ValueError(f"{name} must be {'positive and ' if positive else ''}finite, got {v}")
    if positive and not np.float32(v) > 0:
        raise ValueError(f"{name} = {v} underflows float32")
    return v


def _as_int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return int(value)


@dataclass(frozen=True, eq=False)
class QuantizedWeight:
    """Quantized, prepacked weights of a linear layer (N_out x K).

    Build with :meth:`from_float` or :meth:`from_quantized`; do not call the constructor.

    Attributes
    ----------
    w_q : ndarray (N, K), int8 — quantized values ([-128, 127], or [-8, 7] for 4 bits).
    scales : ndarray, float32 — (N,) for 8 bits (equal entries when per tensor), or
        (N, ceil(K / group_size)) for 4 bits.
    zero_points : ndarray (N,), int32 — weight zero points (0 for 4 bits).
    bits : 8 or 4.
    group_size : int — K values per scale for 4 bits, 0 for 8 bits.
    per_channel : bool.
    col_offsets : ndarray (N,), int32 — ``sum_k w_q[j, k] - zero_points[j] * K`` (the
        activation zero-point correction).
    """

    w_q: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray
    bits: int
    group_size: int
    per_channel: bool
    col_offsets: np.ndarray
    abs_row_sum_max: int
    _packed: dict = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """(N_out, K)."""
        return (int(self.w_q.shape[0]), int(self.w_q.shape[1]))

    @classmethod
    def from_float(cls, w: np.ndarray, *, per_channel: bool = True, bits: int = 8,
                   group_size: int = 64, isa: str | None = None) -> QuantizedWeight:
        """Quantize float weights symmetrically and prepack them for ``isa``.

        Parameters
        ----------
        w : ndarray (N_out, K), float32, C-contiguous, finite.
        per_channel : bool — one scale per output channel (else one per tensor); 8 bits.
        bits : 8 (int8, scale = max|w| / 127) or 4 (int4 in [-8, 7], scale = max|w| / 7 per
            channel and group of ``group_size`` K values).
        group_size : 16, 32, 64 or 128 (4 bits only).
        isa : path to prepack for now (default :func:`kernels_c.isa`); other paths are
            packed on first use.
        """
        w = check_dense(w, np.float32, "w")
        if not np.isfinite(w).all():
            raise ValueError("w contains NaN or Inf")
        if bits == 8:
            if per_channel:
                amax = np.abs(w).max(axis=1, initial=0.0)
            else:
                amax = np.full(w.shape[0], np.abs(w).max(initial=0.0), dtype=np.float32)
            scales = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)
            w_q = np.clip(np.rint(w / scales[:, None]), -128, 127).astype(np.int8)
            return cls.from_quantized(w_q, scales, None, bits=8, isa=isa,
                                      _per_channel=per_channel)
        if bits == 4:
            _check_group(group_size)
            if not per_channel:
                raise ValueError("bits=4 always has per-channel, per-group scales; "
                                 "pass per_channel=True")
            n, k = w.shape
            ng = max(1, -(-k // group_size))
            wp = np.zeros((n, ng * group_size), dtype=np.float32)
            wp[:, :k] = w
            amax = np.abs(wp.reshape(n, ng, group_size)).max(axis=2)
            scales = np.where(amax > 0, amax / np.float32(7), np.float32(1)).astype(np.float32)
            full = np.repeat(scales, group_size, axis=1)[:, :k]
            w_q = np.clip(np.rint(w / full), -8, 7).astype(np.int8)
            return cls.from_quantized(w_q, scales, None, bits=4, group_size=group_size, isa=isa)
        raise ValueError(f"bits must be 8 or 4, got {bits!r}")

    @classmethod
    def from_quantized(cls, w_q: np.ndarray, scales: Any, zero_points: Any = None, *,
                       bits: int = 8, group_size: int | None = None, isa: str | None = None,
                       _per_channel: bool | None = None) -> QuantizedWeight:
        """Wrap already-quantized weights and prepack them.

        Parameters
        ----------
        w_q : ndarray (N_out, K), int8, C-contiguous; values in [-8, 7] when ``bits=4``.
        scales : float or array-like, positive finite — 8 bits: a scalar (per tensor) or
            (N,); 4 bits: (N, ceil(K / group_size)). Stored as float32.
        zero_points : int or array-like (N,) in [-128, 127] (8 bits), default 0; must be
            None or 0 for 4 bits (symmetric).
        bits : 8 or 4.
        group_size : 16, 32, 64 or 128, required for 4 bits.
        isa : path to prepack for now (default :func:`kernels_c.isa`).
        """
        w_q = check_dense(w_q, np.int8, "w_q")
        n, k = w_q.shape
        if n == 0 or k == 0:
            raise ValueError(f"w_q must have N >= 1 and K >= 1, got shape {w_q.shape}")
        s = np.asarray(scales, dtype=np.float64)
        if bits == 8:
            per_channel = s.ndim == 1 and s.shape[0] == n and (
                _per_channel if _per_channel is not None else True)
            if s.ndim == 0 or s.shape == (1,):
                s = np.full(n, float(s.reshape(-1)[0]))
                per_channel = bool(_per_channel) if _per_channel is not None else False
            if s.shape != (n,):
                raise ValueError(f"scales must be a scalar or shape ({n},) for N = {n}, "
                                 f"got shape {s.shape}")
            zp = np.zeros(n, dtype=np.int64) if zero_points is None else np.asarray(zero_points)
            if zp.ndim == 0 or zp.shape == (1,):
                zp = np.full(n, int(zp.reshape(-1)[0]))
            if zp.shape != (n,) or not np.issubdtype(zp.dtype, np.integer):
                raise ValueError(f"zero_points must be an int or int array of shape ({n},), "
                                 f"got {zp.dtype} {zp.shape}")
            if zp.min() < -128 or zp.max() > 127:
                raise ValueError("weight zero_points must lie in [-128, 127] (int8)")
            group = 0
        elif bits == 4:
            group = _check_group(group_size)
            ng = -(-k // group)
            if s.shape != (n, ng):
                raise ValueError(f"scales must have shape (N, ceil(K / group_size)) = "
                                 f"({n}, {ng}) for bits=4, got {s.shape}")
            if zero_points is not None and np.any(np.asarray(zero_points) != 0):
                raise ValueError("bits=4 weights are symmetric: zero_points must be None or 0")
            if w_q.min() < -8 or w_q.max() > 7:
                raise ValueError(f"bits=4 needs w_q in [-8, 7], got range "
                                 f"[{w_q.min()}, {w_q.max()}]")
            zp = np.zeros(n, dtype=np.int64)
            per_channel = True
        else:
            raise ValueError(f"bits must be 8 or 4, got {bits!r}")
        if not (np.isfinite(s).all() and (s > 0).all()):
            raise ValueError("scales must be positive and finite")
        s32 = s.astype(np.float32)
        if not (s32 > 0).all():
            raise ValueError("scales underflow float32")
        wide = w_q.astype(np.int64)
        col_off = wide.sum(axis=1) - zp * k
        abs_max = int(np.abs(wide - zp[:, None]).sum(axis=1).max()) if bits == 8 else 0
        qw = cls(w_q=w_q.copy(), scales=s32, zero_points=zp.astype(np.int32), bits=bits,
                 group_size=group, per_channel=bool(per_channel),
                 col_offsets=col_off.astype(np.int64), abs_row_sum_max=abs_max)
        qw.packed(isa)
        return qw

    def packed(self, isa: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Packed weights for a path (cached): (bytes, int4 group scales / 16 or None)."""
        level, _ = _isa.resolve(isa, IMPLEMENTED)
        if level not in self._packed:
            self._packed[level] = _pack(self, level)
        return self._packed[level]

    def dequantize(self) -> np.ndarray:
        """float32 (N_out, K): ``scales * (w_q - zero_points)``."""
        w = self.w_q.astype(np.float32)
        if self.bits == 8:
            return (w - self.zero_points[:, None]) * self.scales[:, None]
        return w * np.repeat(self.scales, self.group_size, axis=1)[:, : self.shape[1]]


def _check_group(group_size: Any) -> int:
    if group_size not in GROUP_SIZES or isinstance(group_size, bool):
        raise ValueError(f"group_size must be one of {GROUP_SIZES}, got {group_size!r}")
    return int(group_size)


def _pack(qw: QuantizedWeight, level: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Lay the weights out for ``level`` (see kernels_c/cdef/qgemm.h)."""
    nr, ks = LAYOUT[level]
    n, k = qw.shape
    n_pad = _pad_to(n, nr)
    k_pad = _pad_to(k, ks) if qw.bits == 8 else _pad_to(k, qw.group_size)
    w = np.zeros((n_pad, k_pad), dtype=np.int8)
    w[:n, :k] = qw.w_q
    if qw.bits == 8:
        packed = w.reshape(n_pad // nr, nr, k_pad // ks, ks).transpose(0, 2, 1, 3)
        return np.ascontiguousarray(packed).reshape(-1), None
    t = w.view(np.uint8).reshape(n_pad // nr, nr, k_pad // (2 * ks), 2, ks)
    t = t.transpose(0, 2, 3, 1, 4)  # (panel, step pair, lo/hi, column, ks)
    packed = (t[:, :, 0] & 0x0F) | (t[:, :, 1] << 4)
    ng = k_pad // qw.group_size
    gs = np.zeros((ng, n_pad), dtype=np.float32)
    gs[:, :n] = qw.scales.T / np.float32(16)
    return np.ascontiguousarray(packed).reshape(-1).view(np.int8), gs


@dataclass
class QgemmPlan:
    """A validated qgemm call whose C argument block can be run or timed repeatedly."""

    args: Any
    module: Any
    out: np.ndarray
    isa: str
    params: dict[str, int]
    bits: int
    _keepalive: tuple
    tile: tuple[int, int] = (0, 0)  # register tile (mr, nr) of the path

    @property
    def function(self) -> Any:
        """C entry point ``int f(void *args)``, for the C timing loop."""
        lib = self.module.lib
        return lib.gemm_u8s8_acc32 if self.bits == 8 else lib.gemm_s4s8_acc32

    def run(self) -> np.ndarray:
        rc = self.function(self.args)
        if rc != 0:
            raise RuntimeError(f"qgemm kernel failed with code {rc} on path {self.isa}")
        return self.out

    def run_reference(self) -> np.ndarray:
        """Naive C reference (``*_ref``) into ``out``, same pipeline."""
        lib = self.module.lib
        fn = lib.gemm_u8s8_acc32_ref if self.bits == 8 else lib.gemm_s4s8_acc32_ref
        if fn(self.args) != 0:
            raise RuntimeError("qgemm reference failed")
        return self.out


def default_params(m: int, n: int, k: int, isa: str | None = None) -> dict[str, int]:
    """Cache blocking: an A block of mc rows x K bytes within 256 KiB of L2, all columns."""
    level, _ = _isa.resolve(isa, IMPLEMENTED)
    mr = MR[level][8]
    mc = max(mr, (_L2_A_BYTES // max(k, 1)) // mr * mr)
    return {"mc": int(min(mc, _pad_to(max(m, 1), mr))), "nc": 0, **COMPILED_DEFAULTS}


def plan_qgemm(x: np.ndarray, x_scale: float, x_zero_point: int, qw: QuantizedWeight, *,
               bias: np.ndarray | None = None, out_scale: float | None = None,
               out_zero_point: int | None = None, relu: bool = False, threads: int = 1,
               out: np.ndarray | None = None, isa: str | None = None,
               out_dtype: Any = None, **params: int) -> QgemmPlan:
    """Validate a :func:`qgemm` call and build its C arguments (see :func:`qgemm`).

    ``out_dtype=np.int32`` (8-bit weights only) returns the exact int32 ``raw`` before the
    output pipeline (no bias, relu or scaling).
    """
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw must be a QuantizedWeight, got {type(qw).__name__}; build one "
                        "with QuantizedWeight.from_float(w)")
    x = check_dense(x, np.uint8, "x")
    n, k = qw.shape
    m = int(x.shape[0])
    if x.shape[1] != k:
        raise ValueError(f"shape mismatch: x is {x.shape[0]} x {x.shape[1]} but the weights "
                         f"are {n} x {k} (x must have K = {k} columns)")
    xs = _as_float(x_scale, "x_scale", positive=True)
    za = _as_int(x_zero_point, "x_zero_point", 0, 255)
    threads = check_threads(threads)
    level, isa_id = _isa.resolve(isa, IMPLEMENTED)
    if out_dtype is not None and np.dtype(out_dtype) == np.int32:
        if qw.bits != 8:
            raise ValueError("out_dtype=int32 needs 8-bit weights (int4 sums groups in fp32)")
        if bias is not None or out_scale is not None or relu:
            raise ValueError("out_dtype=int32 returns raw accumulators: no bias, out_scale "
                             "or relu")
        kind, odt = _OUT_INT32, np.int32
    elif out_dtype is not None:
        raise ValueError(f"out_dtype must be None or np.int32, got {out_dtype!r}")
    elif out_scale is None:
        if out_zero_point is not None:
            raise ValueError("out_zero_point given without out_scale (fp32 output has none)")
        kind, odt = _OUT_F32, np.float32
    else:
        kind, odt = _OUT_U8, np.uint8
    if bias is not None:
        bias = check_dense(bias, np.float32, "bias", ndim=1)
        if bias.shape[0] != n:
            raise ValueError(f"bias must have shape ({n},), got {bias.shape}")
        if not np.isfinite(bias).all():
            raise ValueError("bias contains NaN or Inf")
    if not isinstance(relu, (bool, np.bool_)):
        raise TypeError(f"relu must be a bool, got {type(relu).__name__}")
    unknown = set(params) - set(PARAMS)
    if unknown:
        raise ValueError(f"unknown qgemm parameter(s) {sorted(unknown)}; valid: {sorted(PARAMS)}")
    full = default_params(m, n, k, level)
    nr = LAYOUT[level][0]
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if name == "mc" and value < 1:
            raise ValueError("mc must be >= 1")
        if name == "pf_dist" and value not in PARAMS["pf_dist"]:
            raise ValueError(f"pf_dist must be one of {PARAMS['pf_dist']}, got {value}")
        if name == "nc" and value % nr:
            raise ValueError(f"nc must be 0 or a multiple of the {level} panel width {nr}, "
                             f"got {value}")
        full[name] = int(value)

    zb = qw.zero_points.astype(np.int64)
    if qw.bits == 8:
        # every int32 intermediate of the kernel and the pipeline stays below this bound
        bound = (255 * qw.abs_row_sum_max + za * int(np.abs(qw.col_offsets).max())
                 + int(np.abs(zb).max()) * 255 * k)
        if bound > INT32_MAX:
            raise ValueError(
                f"int32 accumulation could overflow: K = {k}, max_j sum_k |w - z_w| = "
                f"{qw.abs_row_sum_max}, x_zero_point = {za} give a bound of {bound} > 2^31 - 1;"
                " split K into chunks (FBGEMM has the same int32 limit)")
    out = check_out(out, (m, n), odt, (x,))
    packed, gscale = qw.packed(level)
    n_pad = _pad_to(n, nr)

    def col(values: np.ndarray, dtype: type) -> np.ndarray:
        arr = np.zeros(n_pad, dtype=dtype)
        arr[:n] = values
        return arr

    f32 = np.float32
    bias32 = bias if bias is not None else np.zeros(n, dtype=f32)
    cols: dict[str, np.ndarray] = {}
    if qw.bits == 8:
        ats = f32(xs) * qw.scales  # float32 product, as FBGEMM's act_times_w_scale
        cols["col_i32"] = col(za * qw.col_offsets, np.int32)
        cols["col_scale"] = col(ats, f32)
        cols["col_bias"] = col(bias32, f32)
        if kind == _OUT_U8:
            sc = _as_float(out_scale, "out_scale", positive=True)
            with np.errstate(over="ignore"):
                cols["col_mult"] = col(ats / f32(sc), f32)
                cols["col_biasq"] = col(bias32 / ats, f32)
            if not np.isfinite(cols["col_biasq"]).all():
                raise ValueError("bias / (x_scale * w_scale) overflows float32")
    else:
        ng = qw.scales.shape[1]
        kp = ng * qw.group_size
        wp = np.zeros((n, kp), dtype=np.int64)
        wp[:, :k] = qw.w_q
        sums = wp.reshape(n, ng, qw.group_size).sum(axis=2)
        cols["col_sub"] = col(za * (sums * qw.scales.astype(np.float64)).sum(axis=1), f32)
        cols["col_scale"] = col(np.full(n, xs), f32)
        cols["col_bias"] = col(bias32, f32)
        if kind == _OUT_U8:
            sc = _as_float(out_scale, "out_scale", positive=True)
            cols["col_mult"] = col(np.full(n, f32(1) / f32(sc)), f32)
    zc = 0 if out_zero_point is None else _as_int(out_zero_point, "out_zero_point", 0, 255)

    module = load_for("qgemm", full, COMPILED_DEFAULTS, _MACROS)
    ffi = module.ffi
    args = ffi.new("qgemm_args *")
    args.m, args.n, args.k = m, n, k
    args.a = ffi.from_buffer("uint8_t[]", x)
    args.lda = k
    args.b_packed = ffi.from_buffer("int8_t[]", packed)
    keep: list[Any] = [x, packed, out, qw]
    if gscale is not None:
        args.b_group_scale = ffi.from_buffer("float[]", gscale)
        ref_scale = np.ascontiguousarray(qw.scales)
        args.b_ref_scale = ffi.from_buffer("float[]", ref_scale)
        keep += [gscale, ref_scale]
    args.b_ref = ffi.from_buffer("int8_t[]", qw.w_q)
    args.bits = qw.bits
    args.group_size = qw.group_size
    args.n_pad = n_pad
    args.k_pad = _pad_to(k, LAYOUT[level][1]) if qw.bits == 8 else _pad_to(k, qw.group_size)
    args.a_zero_point = za
    if qw.bits == 8 and np.any(zb != 0):
        zb_arr = col(zb, np.int32)
        args.b_zero_point = ffi.from_buffer("int32_t[]", zb_arr)
        keep.append(zb_arr)
    ctype = {"col_i32": "int32_t[]"}
    for name, arr in cols.items():
        setattr(args, name, ffi.from_buffer(ctype.get(name, "float[]"), arr))
        keep.append(arr)
    args.out_zero_point = zc
    args.relu = int(bool(relu))
    args.out_kind = kind
    args.out = ffi.from_buffer(out)
    args.ldo = n
    args.threads = threads
    args.isa = isa_id
    args.blk.mc = full["mc"]
    args.blk.nc = full["nc"]
    args.blk.kc = 0
    # params holds only what plan_qgemm accepts back (a replayed config must validate);
    # the register tile is fixed per path and reported apart
    return QgemmPlan(args, module, out, level, full, qw.bits, tuple(keep),
                     tile=(MR[level][qw.bits], nr))


def qgemm(x: np.ndarray, x_scale: float, x_zero_point: int, qw: QuantizedWeight, *,
          bias: np.ndarray | None = None, out_scale: float | None = None,
          out_zero_point: int | None = None, relu: bool = False, threads: int = 1,
          out: np.ndarray | None = None, isa: str | None = None, **params: int) -> np.ndarray:
    """Quantized linear layer ``x @ w.T`` with FBGEMM semantics (module docstring).

    Parameters
    ----------
    x : ndarray (M, K), uint8, C-contiguous — quantized activations.
    x_scale : float > 0; x_zero_point : int in [0, 255].
    qw : QuantizedWeight (N_out, K), 8 or 4 bits, prepacked.
    bias : ndarray (N_out,), float32, optional — added in real units.
    out_scale, out_zero_point : requantize to uint8 when ``out_scale`` is given (zero point
        in [0, 255], default 0); otherwise return float32.
    relu : bool — clamp at zero (u8: at out_zero_point).
    threads : int, OpenMP threads. out : optional output array of the result's shape/dtype.
    isa : str, optional — a path at or below :func:`kernels_c.isa`.
    **params : cache blocking ``mc``, ``nc`` and the B prefetch distance ``pf_dist``
        (compiled on demand) — see ``PARAMS`` and cdef/qgemm.h.

    Returns
    -------
    ndarray (M, N_out): float32, or uint8 when ``out_scale`` is given.

    Raises
    ------
    ValueError when the int32 accumulator could overflow (8 bits: 255 * max_j sum_k |w_q|
    plus the zero-point terms must stay below 2^31; always true for K <= 65793 with zero
    zero points).
    """
    return plan_qgemm(x, x_scale, x_zero_point, qw, bias=bias, out_scale=out_scale,
                      out_zero_point=out_zero_point, relu=relu, threads=threads, out=out,
                      isa=isa, **params).run()


def choose_qparams(x: np.ndarray, *, reduce_range: bool = False) -> tuple[float, int]:
    """uint8 affine parameters covering [min(x, 0), max(x, 0)] (PyTorch's rule)."""
    qmax = 127 if reduce_range else 255
    lo = min(float(x.min(initial=0.0)), 0.0)
    hi = max(float(x.max(initial=0.0)), 0.0)
    scale = float(np.float32((hi - lo) / qmax))
    if scale == 0.0 or not math.isfinite(scale):
        scale = 0.1
    zp_min = 0 - lo / scale
    zp_max = qmax - hi / scale
    err_min = abs(0) - abs(lo / scale)
    err_max = abs(qmax) - abs(hi / scale)
    zp = zp_min if err_min < err_max else zp_max
    return scale, int(min(max(round(zp), 0), qmax))


def qgemm_dynamic(x: np.ndarray, qw: QuantizedWeight, *, bias: np.ndarray | None = None,
                  relu: bool = False, threads: int = 1, reduce_range: bool = False,
                  isa: str | None = None) -> np.ndarray:
    """Dynamic quantized linear: quantize float32 ``x`` per call (uint8, per tensor, range
    from its min/max), then :func:`qgemm` with float32 output (like ``linear_dynamic``).

    x : ndarray (M, K), float32, C-contiguous, finite. Returns float32 (M, N_out).
    """
    x = check_dense(x, np.float32, "x")
    if not np.isfinite(x).all():
        raise ValueError("x contains NaN or Inf")
    scale, zp = choose_qparams(x, reduce_range=reduce_range)
    xq = quantize(x, scale, zp, np.uint8)
    return qgemm(xq, scale, zp, qw, bias=bias, relu=relu, threads=threads, isa=isa)


_QRANGE = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127),
           np.dtype(np.int32): (-(2**31), 2**31 - 1)}


def _broadcast_param(p: Any, name: str, ndim: int, axis: int | None) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim == 0:
        return arr
    if axis is None or arr.ndim != 1:
        raise ValueError(f"{name} must be a scalar, or 1-D with axis= given, got shape "
                         f"{arr.shape}")
    shape = [1] * ndim
    shape[axis] = arr.shape[0]
    return arr.reshape(shape)


def quantize(x: np.ndarray, scale: Any, zero_point: Any, dtype: Any = np.uint8, *,
             rounding: str = "nearest", seed: int | None = None,
             axis: int | None = None) -> np.ndarray:
    """Affine quantization ``q = clamp(round(x / scale) + zero_point)``.

    Parameters
    ----------
    x : ndarray, float32 or float64, any shape, finite.
    scale : float > 0, or 1-D per-channel array along ``axis``.
    zero_point : int (or 1-D array along ``axis``) within the range of ``dtype``.
    dtype : np.uint8, np.int8 or np.int32.
    rounding : "nearest" (half to even) or "stochastic": ``floor(x / scale + u)`` with
        ``u ~ U[0, 1)``, so that ``E[q] = x / scale + zero_point`` inside the range
        (unbiased; Yang et al.).
    seed : int, optional — makes stochastic rounding reproducible.

    Returns
    -------
    ndarray of ``dtype`` with the shape of ``x``.
    """
    if not isinstance(x, np.ndarray) or x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be a float32 or float64 ndarray, got "
                        f"{getattr(x, 'dtype', type(x).__name__)}")
    dt = np.dtype(dtype)
    if dt not in _QRANGE:
        raise ValueError(f"dtype must be uint8, int8 or int32, got {dt}")
    if rounding not in ("nearest", "stochastic"):
        raise ValueError(f"rounding must be 'nearest' or 'stochastic', got {rounding!r}")
    if not np.isfinite(x).all():
        raise ValueError("x contains NaN or Inf")
    s = _broadcast_param(scale, "scale", x.ndim, axis)
    if not (np.isfinite(s).all() and (s > 0).all()):
        raise ValueError("scale must be positive and finite")
    zp = _broadcast_param(zero_point, "zero_point", x.ndim, axis)
    lo, hi = _QRANGE[dt]
    if (zp != np.round(zp)).any() or zp.min() < lo or zp.max() > hi:
        raise ValueError(f"zero_point must be integers in [{lo}, {hi}] for {dt}")
    v = x.astype(np.float64) / s
    if rounding == "nearest":
        r = np.rint(v)
    else:
        r = np.floor(v + np.random.default_rng(seed).random(x.shape))
    return np.clip(r + zp, lo, hi).astype(dt)


def dequantize(q: np.ndarray, scale: Any, zero_point: Any, *,
               axis: int | None = None) -> np.ndarray:
    """float32 ``(q - zero_point) * scale`` (q: integer ndarray; per-channel along axis)."""
    if not isinstance(q, np.ndarray) or not np.issubdtype(q.dtype, np.integer):
        raise TypeError(f"q must be an integer ndarray, got "
                        f"{getattr(q, 'dtype', type(q).__name__)}")
    s = _broadcast_param(scale, "scale", q.ndim, axis)
    zp = _broadcast_param(zero_point, "zero_point", q.ndim, axis)
    return ((q.astype(np.float64) - zp) * s).astype(np.float32)
