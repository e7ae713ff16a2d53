"""Problem validation and normalization shared by the models, sweet spots and queries.

Constraints are data (``LIMITS``, ``SHAPE_KEYS``) so errors and tests come from one table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

#: op → (required shape keys, optional keys with defaults)
SHAPE_KEYS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "spmm": (("m", "n", "k", "sparsity"), {}),
    "gemm": (("m", "n", "k", "sparsity"), {}),
    "conv2d": (("c", "h", "w", "o", "r", "s", "sparsity"),
               {"stride": 1, "padding": 0, "batch": 1}),
    "qgemm": (("m", "n", "k"), {"bits": 8}),
}
OPS = tuple(SHAPE_KEYS)
#: ops with a sparsity to prune to (sweet spots, break-even sparsities)
SPARSE_OPS = ("spmm", "gemm", "conv2d")
#: inclusive integer ranges of every shape key
LIMITS: dict[str, tuple[int, int]] = {
    "m": (1, 1 << 20), "n": (1, 1 << 20), "k": (1, 1 << 20),
    "c": (1, 1 << 16), "o": (1, 1 << 16), "h": (1, 1 << 14), "w": (1, 1 << 14),
    "r": (1, 63), "s": (1, 63), "stride": (1, 16), "padding": (0, 63), "batch": (1, 4096),
}
BITS = (4, 8)

#: candidate kernels per op: (sparse or quantized choices, dense baselines)
CANDIDATES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "spmm": (("spmm_csr_f32",), ("gemm_blas_f32",)),
    "conv2d": (("conv_direct_sparse_f32",), ("conv_im2col_blas_f32",)),
    "qgemm": (("gemm_u8s8_acc32", "gemm_s4s8_acc32"), ("gemm_blas_f32",)),
}


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    low, high = LIMITS[name]
    if not low <= int(value) <= high:
        raise ValueError(f"{name}={value} out of range; valid: {low} <= {name} <= {high}")
    return int(value)


def normalize(op: str, shape: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a problem and add its GEMM view (m, n, k), density and nnz.

    ``gemm`` is an alias of ``spmm`` (A is m x k and sparse, B is k x n dense). A conv2d is
    viewed as the GEMM m = o, k = c r s, n = p q batch with p, q the output height, width.

    Raises
    ------
    ValueError
        Unknown op, missing or unknown keys, out-of-range values, sparsity outside [0, 1),
        or a kernel window larger than the padded input; messages list what is valid.
    """
    if op not in SHAPE_KEYS:
        raise ValueError(f"unknown op {op!r}; valid: {list(OPS)}")
    required, optional = SHAPE_KEYS[op]
    missing = [k for k in required if k not in shape]
    unknown = sorted(set(shape) - set(required) - set(optional))
    if missing or unknown:
        raise ValueError(f"{op} takes {list(required)} and optionally "
                         f"{list(optional)}; missing {missing}, unknown {unknown}")
    full = {**optional, **shape}
    out: dict[str, Any] = {"op": "spmm" if op == "gemm" else op}
    for key, value in full.items():
        if key == "sparsity":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    0.0 <= float(value) < 1.0):
                raise ValueError(f"sparsity must be a fraction of zeros in [0, 1), got "
                                 f"{value!r}")
            out["sparsity"] = float(value)
        elif key == "bits":
            if value not in BITS:
                raise ValueError(f"bits must be one of {BITS}, got {value!r}")
            out["bits"] = int(value)
        else:
            out[key] = _int(key, value)
    if op == "conv2d":
        p = (out["h"] + 2 * out["padding"] - out["r"]) // out["stride"] + 1
        q = (out["w"] + 2 * out["padding"] - out["s"]) // out["stride"] + 1
        if p < 1 or q < 1:
            raise ValueError(f"kernel {out['r']}x{out['s']} larger than the padded input "
                             f"{out['h'] + 2 * out['padding']}x{out['w'] + 2 * out['padding']}")
        out.update(p=p, q=q, m=out["o"], k=out["c"] * out["r"] * out["s"],
                   n=p * q * out["batch"])
    if op == "qgemm":
        out["sparsity"] = 0.0
    out["density"] = 1.0 - out["sparsity"]
    out["nnz"] = max(1, round(out["density"] * out["m"] * out["k"])) if out["sparsity"] else (
        out["m"] * out["k"])
    return out


def from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Problem dict from a results row (contract columns), without range checks."""
    def num(key: str, default: float = math.nan) -> float:
        v = row.get(key, default)
        try:
            v = float(v)
        except (TypeError, ValueError):
            return default
        return default if math.isnan(v) else v

    op = str(row.get("op", "spmm"))
    out: dict[str, Any] = {"op": "spmm" if op == "gemm" else op}
    if op == "conv2d":
        c, h, w, o = (int(num(k, 1)) for k in ("c", "h", "w", "o"))
        r, s = int(num("r", 1)), int(num("s", 1))
        stride, pad, batch = int(num("stride", 1)), int(num("padding", 0)), int(num("batch", 1))
        p = max(1, (h + 2 * pad - r) // stride + 1)
        q = max(1, (w + 2 * pad - s) // stride + 1)
        out.update(c=c, h=h, w=w, o=o, r=r, s=s, stride=stride, padding=pad, batch=batch,
                   p=p, q=q, m=o, k=c * r * s, n=p * q * batch)
    else:
        out.update(m=int(num("m", 1)), n=int(num("n", 1)), k=int(num("k", 1)))
        if op == "qgemm":
            out["bits"] = int(num("bits", 8))
    size = out["m"] * out["k"]
    density = num("density")
    if math.isnan(density):
        density = 1.0 - num("sparsity", 0.0)
    nnz = num("nnz")
    if math.isnan(nnz):
        nnz = max(1.0, density * size)
    out.update(sparsity=num("sparsity", 1.0 - density), density=density, nnz=nnz)
    return out


def params_dict(params: Any) -> Mapping[str, Any]:
    """A row's kernel parameters as a mapping: a dict as is, a JSON object string parsed;
    empty for anything else (missing, malformed)."""
    if isinstance(params, str):
        try:
            params = json.loads(params) if params else {}
        except ValueError:
            return {}
    return params if isinstance(params, Mapping) else {}
