"""Op registry: how each op builds its inputs, lists its kernels, makes timed calls,
checks results and counts work.

An :class:`Op` subclass is the only thing a new op needs (``register_op(MyOp())``):

- ``shape_fields``: the shape columns it uses (see the store's shape columns);
- ``kernels``: kernel name -> :class:`KernelSpec` (whether its work depends on sparsity,
  its tunable parameter grid, and whether it is available on this install);
- ``shape_from_layer(layer)``: its shape for a layer of a named set, or None;
- ``make_inputs(problem)``: seeded operands for one shape/sparsity/pattern;
- ``prepare(kernel, inputs, params, threads, isa)``: a :class:`Prepared` call (a kernels_c
  plan timed in C, or a Python callable), with the work it does in ``flops``;
- ``reference(inputs)`` (float64) and ``check(out, ref, inputs)`` (None = correct).

Dense baselines are kernels of the op they are a baseline for (``gemm_blas_f32`` under
``spmm``, ``conv_im2col_blas_f32`` under ``conv2d``); their work ignores sparsity, so a
sweep measures them once per shape, recorded with ``pattern="dense"``, ``sparsity=0``.

Patterns: ``dense``; ``random`` (uniformly placed nonzeros, exact count); ``block<R>x<C>``
(R x C blocks of nonzeros, block grid filled at the asked density); ``real`` (a matrix file,
values standard normal from the seed when the file has none).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from .shapes import Layer, load_matrix

__all__ = ["OPS", "KernelSpec", "Op", "Prepared", "Problem", "get_op", "make_sparse",
           "parse_pattern", "register_op"]

_BLOCK = re.compile(r"block(\d+)x(\d+)")


def parse_pattern(pattern: str) -> tuple[str, int, int]:
    """("dense" | "random" | "block" | "real", R, C) of a pattern name."""
    if pattern in ("dense", "random", "real"):
        return pattern, 1, 1
    m = _BLOCK.fullmatch(pattern)
    if m and int(m.group(1)) >= 1 and int(m.group(2)) >= 1:
        return "block", int(m.group(1)), int(m.group(2))
    raise ValueError(f"pattern {pattern!r} unknown; allowed: dense, random, block<R>x<C> "
                     f"(e.g. block4x1), real")


def make_sparse(shape: tuple[int, int], sparsity: float, pattern: str,
                rng: np.random.Generator) -> sp.csr_array:
    """A float32 CSR matrix (int32 indices, sorted) with standard normal nonzeros.

    Parameters
    ----------
    shape : (M, K)
    sparsity : fraction of zeros asked for, in [0, 1)
    pattern : "dense", "random" or "block<R>x<C>"
    rng : numpy Generator (the only source of randomness)
    """
    kind, br, bc = parse_pattern(pattern)
    m, k = shape
    if kind == "dense" or sparsity <= 0:
        dense = rng.standard_normal((m, k), dtype=np.float32)
        mat = sp.csr_array(dense)
    elif kind == "random":
        nnz = round((1 - sparsity) * m * k)
        flat = rng.choice(m * k, size=nnz, replace=False) if nnz else np.zeros(0, np.int64)
        rows, cols = np.divmod(np.sort(flat), k)
        data = rng.standard_normal(nnz, dtype=np.float32)
        mat = sp.csr_array((data, (rows, cols)), shape=(m, k))
    elif kind == "block":
        gm, gk = -(-m // br), -(-k // bc)
        nblocks = round((1 - sparsity) * gm * gk)
        picked = rng.choice(gm * gk, size=nblocks, replace=False)
        grid = np.zeros(gm * gk, dtype=bool)
        grid[picked] = True
        mask = np.kron(grid.reshape(gm, gk), np.ones((br, bc), dtype=bool))[:m, :k]
        rows, cols = np.nonzero(mask)
        data = rng.standard_normal(rows.size, dtype=np.float32)
        mat = sp.csr_array((data, (rows, cols)), shape=(m, k))
    else:
        raise ValueError("pattern 'real' needs a matrix file, not a generated matrix")
    mat = sp.csr_array(mat, dtype=np.float32)
    mat.sort_indices()
    mat.indptr = mat.indptr.astype(np.int32)
    mat.indices = mat.indices.astype(np.int32)
    return mat


@dataclass(frozen=True)
class Problem:
    """What one set of inputs is made from (kernels and params are chosen separately)."""

    op: str
    shape: tuple[tuple[str, int], ...]  # sorted (field, value) pairs
    sparsity: float = 0.0
    pattern: str = "dense"
    matrix: str = ""
    layer: str = ""
    seed: int = 0

    @property
    def dims(self) -> dict[str, int]:
        return dict(self.shape)


@dataclass(frozen=True)
class KernelSpec:
    """A kernel of an op: does its work depend on sparsity, what can be tuned."""

    sparse: bool
    params: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    peer: bool = False  # a Python-level library call rather than our C kernel
    #: kernels_c modules whose code it runs: a change to them makes its stored
    #: measurements stale (kernels_c._loader.source_digest)
    sources: tuple[str, ...] = ()


@dataclass
class Prepared:
    """One ready-to-time kernel call.

    ``target`` is a kernels_c plan (timed in C) or a zero-argument callable; ``output()``
    returns the result array after ``run()``; ``context()`` wraps timing (BLAS threads).
    """

    target: Any
    run: Callable[[], Any]
    output: Callable[[], np.ndarray]
    isa: str
    params: dict[str, Any]
    flops: float
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    columns: dict[str, Any] = field(default_factory=dict)  # e.g. bits, group_size


def _blas_threads(threads: int) -> Callable[[], contextlib.AbstractContextManager]:
    from threadpoolctl import threadpool_limits

    return lambda: threadpool_limits(limits=threads, user_api="blas")


def _torch_threads(threads: int) -> Callable[[], contextlib.AbstractContextManager]:
    @contextlib.contextmanager
    def limit() -> Any:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)
    return limit


def _mkl_threads(threads: int) -> Callable[[], contextlib.AbstractContextManager]:
    @contextlib.contextmanager
    def limit() -> Any:
        import sparse_dot_mkl

        before = sparse_dot_mkl.mkl_set_num_threads_local(threads)
        try:
            yield
        finally:
            sparse_dot_mkl.mkl_set_num_threads_local(before)
    return limit


@functools.cache
def fbgemm_saturates() -> bool:
    """Whether PyTorch's FBGEMM sums u8 x s8 products in pairs with int16 saturation on this
    CPU (torch with the fbgemm engine must import).

    Its AVX2 and AVX-512 kernels without VNNI multiply with ``vpmaddubsw``, which adds two
    adjacent products into a saturated int16: 255 * 127 * 2 = 64770 becomes 32767. With
    VNNI (``vpdpbusd``) the int32 sums are exact. PyTorch quantizes activations to 7 bits on
    x86 (``reduce_range``) for this reason; 127 * 128 * 2 fits. Probed, not inferred from
    CPUID: which kernel FBGEMM picks is its own business.
    """
    import torch

    torch.backends.quantized.engine = "fbgemm"
    with warnings.catch_warnings():  # quantized tensor creation is deprecated in torch
        warnings.simplefilter("ignore", UserWarning)
        x = torch._make_per_tensor_quantized_tensor(
            torch.full((1, 8), 255, dtype=torch.uint8), 1.0, 0)
        w = torch._make_per_tensor_quantized_tensor(
            torch.full((8, 8), 127, dtype=torch.int8), 1.0, 0)
        y = torch.ops.quantized.linear(x, torch.ops.quantized.linear_prepack(w, None),
                                       1024.0, 0)
    return int(y.int_repr()[0, 0]) != round(255 * 127 * 8 / 1024.0)


def _peer_missing(module: str) -> str | None:
    """None when peer library ``module`` imports, else why not (peers are optional:
    ``pip install -e '.[peers]'``)."""
    import importlib
    import os
    import sys

    if module == "sparse_dot_mkl" and not os.environ.get("MKL_RT"):
        # pip's mkl puts libmkl_rt.so.N in the environment's lib/, which the loader does
        # not search: point sparse_dot_mkl at it (as shared/reference/peers.md notes)
        found = sorted(Path(sys.prefix, "lib").glob("libmkl_rt.so*"))
        if found:
            os.environ["MKL_RT"] = str(found[0])
    try:
        importlib.import_module(module)
    except Exception as exc:  # ImportError, or OSError from a missing shared library
        return f"peer {module} unavailable ({type(exc).__name__}: {str(exc)[:120]})"
    return None


def _close_enough(out: np.ndarray, ref: np.ndarray, scale: np.ndarray, terms: int,
                  eps: float = float(np.finfo(np.float32).eps)) -> str | None:
    """None when |out - ref| <= tol * scale elementwise; else a short reason.

    ``scale`` is |A| |B| (the sum of absolute products), ``terms`` the longest sum: fp32
    summation in any order errs by at most about ``terms * eps`` of it; 4x margin, and
    at least 1e-5 so short sums are not held to the last bit.
    """
    if out.shape != ref.shape:
        return f"output shape {out.shape} != reference {ref.shape}"
    if not np.all(np.isfinite(out)):
        return f"{int(np.size(out) - np.isfinite(out).sum())} non-finite outputs"
    tol = max(1e-5, 4 * terms * eps)
    err = np.abs(out.astype(np.float64) - ref)
    bad = err > tol * scale + 1e-30
    if bad.any():
        i = np.unravel_index(int(np.argmax(err - tol * scale)), err.shape)
        return (f"{int(bad.sum())} of {bad.size} outputs off; worst at {tuple(map(int, i))}: "
                f"{float(out[i]):.6g} vs reference {float(ref[i]):.6g}")
    return None


#: spmm peer kernel -> the optional module it needs
_SPMM_PEER_MODULES = {"torch_csr": "torch", "mkl_csr": "sparse_dot_mkl"}

class Op:
    """Base class of ops; see the module docstring for what a subclass provides."""

    name: ClassVar[str]
    shape_fields: ClassVar[tuple[str, ...]]
    kernels: ClassVar[dict[str, KernelSpec]]

    def available(self, kernel: str) -> str | None:
        """None when ``kernel`` can run on this install, else why not."""
        return None

    def source_digest(self, kernel: str) -> str | None:
        """Digest of the kernels_c code ``kernel`` runs (None for peers and where kernels_c
        is not importable): what a stored measurement of it was taken with."""
        sources = self.kernels[kernel].sources
        if not sources:
            return None
        try:
            from kernels_c._loader import source_digest
        except ImportError:
            return None
        return source_digest(*sources)

    def shape_from_layer(self, layer: Layer) -> dict[str, int] | None:
        return None

    def make_inputs(self, problem: Problem) -> dict[str, Any]:
        raise NotImplementedError

    def prepare(self, kernel: str, inputs: dict[str, Any], params: dict[str, Any],
                threads: int, isa: str | None) -> Prepared:
        raise NotImplementedError

    def reference(self, inputs: dict[str, Any]) -> Any:
        raise NotImplementedError

    def check(self, out: np.ndarray, ref: Any, inputs: dict[str, Any],
              kernel: str = "") -> str | None:
        raise NotImplementedError

    def describe(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Store columns that depend on the inputs: density, nnz (and shape fixes)."""
        return {}

    def param_grid(self, kernel: str, grid: dict[str, list[Any]] | None
                   ) -> list[dict[str, Any]]:
        """Parameter combinations to measure: the cross product of ``grid`` (validated
        against the kernel's ``params``), or ``[{}]`` (the kernel's defaults)."""
        if not grid:
            return [{}]
        allowed = self.kernels[kernel].params
        for name, values in grid.items():
            if name not in allowed:
                raise ValueError(f"{self.name}.{kernel} has no parameter {name!r}; "
                                 f"tunable: {', '.join(allowed) or 'none'}")
            bad = [v for v in values if v not in allowed[name]]
            if bad:
                raise ValueError(f"{self.name}.{kernel} parameter {name}: values {bad} "
                                 f"not allowed; allowed: {list(allowed[name])}")
        names = sorted(grid)
        return [dict(zip(names, combo, strict=True)) for combo in
                itertools.product(*(grid[n] for n in names))]


def _plan_output(plan: Any) -> Callable[[], np.ndarray]:
    return lambda: plan.out


class SpmmOp(Op):
    """Sparse (M x K, CSR fp32) x dense (K x N) -> (M x N); dense GEMM as the baseline."""

    name = "spmm"
    shape_fields = ("m", "k", "n")

    @classmethod
    def _kernels(cls) -> dict[str, KernelSpec]:
        from kernels_c.spmm import PARAMS

        return {
            "spmm_csr_f32": KernelSpec(True, dict(PARAMS), sources=("spmm",)),
            "gemm_blas_f32": KernelSpec(False, sources=("dense",)),
            "scipy_csr": KernelSpec(True, peer=True),
            "torch_csr": KernelSpec(True, peer=True),
            "mkl_csr": KernelSpec(True, peer=True),
        }

    kernels = property(lambda self: self._kernels())  # type: ignore[assignment]

    def available(self, kernel: str) -> str | None:
        module = _SPMM_PEER_MODULES.get(kernel)
        return _peer_missing(module) if module else None

    def shape_from_layer(self, layer: Layer) -> dict[str, int] | None:
        if layer.kind == "conv" and layer.dims["groups"] != 1:
            return None
        m, k, n = layer.gemm
        return {"m": m, "k": k, "n": n}

    def make_inputs(self, problem: Problem) -> dict[str, Any]:
        d = problem.dims
        rng = np.random.default_rng(problem.seed)
        if problem.pattern == "real":
            a = load_matrix(problem.matrix, seed=problem.seed)
        else:
            a = make_sparse((d["m"], d["k"]), problem.sparsity, problem.pattern, rng)
        b = rng.standard_normal((a.shape[1], d["n"]), dtype=np.float32)
        return {"a": a, "b": b}

    def describe(self, inputs: dict[str, Any]) -> dict[str, Any]:
        a, b = inputs["a"], inputs["b"]
        m, k = a.shape
        return {"m": m, "k": k, "n": b.shape[1], "nnz": int(a.nnz),
                "density": a.nnz / max(1, m * k)}

    def prepare(self, kernel: str, inputs: dict[str, Any], params: dict[str, Any],
                threads: int, isa: str | None) -> Prepared:
        a, b = inputs["a"], inputs["b"]
        m, k = a.shape
        n = b.shape[1]
        if kernel == "spmm_csr_f32":
            from kernels_c.spmm import plan_spmm

            plan = plan_spmm(a, b, threads=threads, isa=isa, **params)
            return Prepared(plan, plan.run, _plan_output(plan), plan.isa, dict(plan.params),
                            2.0 * a.nnz * n)
        if kernel == "gemm_blas_f32":
            dense = np.ascontiguousarray(a.toarray())
            flops = 2.0 * m * n * k
            try:
                from kernels_c import plan_gemm
            except ImportError:  # older kernels_c: numpy's BLAS, timed from Python
                out = np.empty((m, n), np.float32)

                def run() -> np.ndarray:
                    return np.matmul(dense, b, out=out)
                return Prepared(run, run, lambda: out, "blas", {}, flops,
                                _blas_threads(threads))
            plan = plan_gemm(dense, b, threads=threads)
            return Prepared(plan, plan.run, _plan_output(plan), "blas", {}, flops,
                            _blas_threads(threads))
        if kernel == "scipy_csr":
            result: list[np.ndarray] = []

            def run_scipy() -> None:
                result[:] = [a @ b]
            return Prepared(run_scipy, run_scipy, lambda: result[0], "scipy", {},
                            2.0 * a.nnz * n)
        if kernel == "torch_csr":
            import torch

            with warnings.catch_warnings():  # "beta state" / invariant-check notices
                warnings.simplefilter("ignore", UserWarning)
                ta = torch.sparse_csr_tensor(torch.from_numpy(a.indptr.astype(np.int64)),
                                             torch.from_numpy(a.indices.astype(np.int64)),
                                             torch.from_numpy(a.data), size=(m, k))
            tb = torch.from_numpy(b)
            held: list[Any] = []

            def run_torch() -> None:
                held[:] = [ta @ tb]
            return Prepared(run_torch, run_torch, lambda: held[0].numpy(), "torch", {},
                            2.0 * a.nnz * n, _torch_threads(threads))
        if kernel == "mkl_csr":
            from sparse_dot_mkl import dot_product_mkl

            a_mat = sp.csr_matrix(a)
            got: list[np.ndarray] = []

            def run_mkl() -> None:
                got[:] = [dot_product_mkl(a_mat, b)]
            return Prepared(run_mkl, run_mkl, lambda: got[0], "mkl", {}, 2.0 * a.nnz * n,
                            _mkl_threads(threads))
        raise ValueError(f"spmm has no kernel {kernel!r}; known: {sorted(self.kernels)}")

    def reference(self, inputs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
        a64 = sp.csr_array(inputs["a"], dtype=np.float64)
        b64 = inputs["b"].astype(np.float64)
        ref = a64 @ b64
        scale = abs(a64) @ np.abs(b64)
        terms = int(np.diff(inputs["a"].indptr).max(initial=1))
        return ref, scale, terms

    def check(self, out: np.ndarray, ref: Any, inputs: dict[str, Any],
              kernel: str = "") -> str | None:
        value, scale, terms = ref
        # the dense baseline sums all K products (zeros included)
        return _close_enough(np.asarray(out), value, scale, max(terms, inputs["a"].shape[1]))


def _conv_ref(x: np.ndarray, w: np.ndarray, stride: int, padding: int, groups: int
              ) -> np.ndarray:
    """float64 direct convolution through im2col views (NCHW, weights O x C/g x R x S)."""
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    o, cg, r, s = w.shape
    win = np.lib.stride_tricks.sliding_window_view(x, (r, s), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]  # N, C, Ho, Wo, R, S
    og = o // groups
    outs = []
    for g in range(groups):
        wg = w[g * og:(g + 1) * og].astype(np.float64)
        xg = win[:, g * cg:(g + 1) * cg]
        outs.append(np.einsum("nchwrs,ocrs->nohw", xg, wg, optimize=True))
    return np.concatenate(outs, axis=1)


class Conv2dOp(Op):
    """2-D convolution, NCHW fp32: direct sparse kernel vs im2col + BLAS."""

    name = "conv2d"
    shape_fields = ("c", "h", "w", "o", "r", "s", "stride", "padding", "batch", "groups")

    @classmethod
    def _kernels(cls) -> dict[str, KernelSpec]:
        try:
            from kernels_c.conv import PARAMS
        except ImportError:
            PARAMS = {}
        return {"conv_direct_sparse_f32": KernelSpec(True, dict(PARAMS), sources=("conv",)),
                "conv_im2col_blas_f32": KernelSpec(False, sources=("conv",))}

    kernels = property(lambda self: self._kernels())  # type: ignore[assignment]

    def available(self, kernel: str) -> str | None:
        try:
            import kernels_c.conv  # noqa: F401
        except ImportError as exc:
            return f"kernels_c has no conv kernels ({exc})"
        return None

    def shape_from_layer(self, layer: Layer) -> dict[str, int] | None:
        return dict(layer.dims) if layer.kind == "conv" else None

    def make_inputs(self, problem: Problem) -> dict[str, Any]:
        d = problem.dims
        rng = np.random.default_rng(problem.seed)
        cg = d["c"] // d["groups"]
        if problem.pattern == "real":
            raise ValueError("conv2d takes generated weights only (pattern 'real' is spmm's)")
        w2 = make_sparse((d["o"], cg * d["r"] * d["s"]), problem.sparsity, problem.pattern,
                         rng)
        weight = np.ascontiguousarray(w2.toarray().reshape(d["o"], cg, d["r"], d["s"]))
        x = rng.standard_normal((d["batch"], d["c"], d["h"], d["w"]), dtype=np.float32)
        return {"weight": weight, "csr": w2, "x": x, **d}

    def describe(self, inputs: dict[str, Any]) -> dict[str, Any]:
        w2 = inputs["csr"]
        return {"nnz": int(w2.nnz), "density": w2.nnz / max(1, w2.shape[0] * w2.shape[1])}

    def _out_hw(self, d: dict[str, Any]) -> tuple[int, int]:
        ho = (d["h"] + 2 * d["padding"] - d["r"]) // d["stride"] + 1
        wo = (d["w"] + 2 * d["padding"] - d["s"]) // d["stride"] + 1
        return ho, wo

    def prepare(self, kernel: str, inputs: dict[str, Any], params: dict[str, Any],
                threads: int, isa: str | None) -> Prepared:
        import kernels_c.conv as kc

        d = inputs
        ho, wo = self._out_hw(d)
        per_mac = 2.0 * d["batch"] * ho * wo
        if kernel == "conv_direct_sparse_f32":
            conv = kc.SparseConv2d(d["csr"], input_shape=(d["c"], d["h"], d["w"]),
                                   stride=d["stride"], padding=d["padding"],
                                   groups=d["groups"], kernel_size=(d["r"], d["s"]),
                                   isa=isa, **params)
            plan = conv.plan(d["x"], threads=threads)
            return Prepared(plan, plan.run, _plan_output(plan), plan.isa, dict(plan.params),
                            per_mac * conv.nnz)
        if kernel == "conv_im2col_blas_f32":
            plan = kc.plan_conv2d_im2col(d["x"], d["weight"], stride=d["stride"],
                                         padding=d["padding"], groups=d["groups"],
                                         threads=threads)
            return Prepared(plan, plan.run, _plan_output(plan), "blas", {},
                            per_mac * d["weight"].size, _blas_threads(threads))
        raise ValueError(f"conv2d has no kernel {kernel!r}; known: {sorted(self.kernels)}")

    def reference(self, inputs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
        d = inputs
        ref = _conv_ref(d["x"], d["weight"], d["stride"], d["padding"], d["groups"])
        scale = _conv_ref(np.abs(d["x"]), np.abs(d["weight"]), d["stride"], d["padding"],
                          d["groups"])
        return ref, scale, int(np.prod(d["weight"].shape[1:]))

    def check(self, out: np.ndarray, ref: Any, inputs: dict[str, Any],
              kernel: str = "") -> str | None:
        value, scale, terms = ref
        return _close_enough(np.asarray(out), value, scale, terms)


class QgemmOp(Op):
    """Quantized GEMM, FBGEMM's convention: activations (M x K, uint8) times weights
    (N x K: int8, or int4 per group) -> (M x N, fp32); fp32 BLAS GEMM as the baseline.

    Operands are dense (sparsity does not apply); ``bits`` and ``group_size`` columns say
    which weight format a kernel used.
    """

    name = "qgemm"
    shape_fields = ("m", "n", "k")
    _BITS: ClassVar[dict[str, int]] = {"gemm_u8s8_acc32": 8, "gemm_s4s8_acc32": 4}

    @classmethod
    def _kernels(cls) -> dict[str, KernelSpec]:
        try:
            from kernels_c.quant import GROUP_SIZES, PARAMS
        except ImportError:
            PARAMS, GROUP_SIZES = {}, ()
        return {"gemm_u8s8_acc32": KernelSpec(False, dict(PARAMS), sources=("qgemm",)),
                "gemm_s4s8_acc32": KernelSpec(False, {**PARAMS, "group_size": GROUP_SIZES},
                                              sources=("qgemm",)),
                "gemm_blas_f32": KernelSpec(False, sources=("dense",)),
                "torch_fbgemm_u8s8": KernelSpec(False, peer=True)}

    kernels = property(lambda self: self._kernels())  # type: ignore[assignment]

    def available(self, kernel: str) -> str | None:
        if kernel == "torch_fbgemm_u8s8":
            missing = _peer_missing("torch")
            if missing:
                return missing
            import torch

            if "fbgemm" not in torch.backends.quantized.supported_engines:
                return "torch was built without the fbgemm quantized engine"
            return None
        try:
            import kernels_c.quant  # noqa: F401
        except ImportError as exc:
            return f"kernels_c has no quantized GEMM ({exc})"
        return None

    def shape_from_layer(self, layer: Layer) -> dict[str, int] | None:
        if layer.kind == "conv" and layer.dims["groups"] != 1:
            return None
        out, inp, tokens = layer.gemm
        return {"m": tokens, "n": out, "k": inp}

    def make_inputs(self, problem: Problem) -> dict[str, Any]:
        from kernels_c.quant import choose_qparams, quantize

        d = problem.dims
        rng = np.random.default_rng(problem.seed)
        # post-ReLU-like activations (non-negative), normal weights
        x = np.abs(rng.standard_normal((d["m"], d["k"]), dtype=np.float32))
        w = rng.standard_normal((d["n"], d["k"]), dtype=np.float32)
        xs, xz = choose_qparams(x)
        return {"x": x, "w": w, "wt": np.ascontiguousarray(w.T), "xq": quantize(x, xs, xz),
                "x_scale": xs, "x_zero_point": xz, "weights": {}, "refs": {}}

    def describe(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"nnz": int(inputs["w"].size), "density": 1.0}

    @staticmethod
    def _weights(inputs: dict[str, Any], bits: int, group_size: int) -> Any:
        from kernels_c.quant import QuantizedWeight

        key = (bits, group_size)
        if key not in inputs["weights"]:  # quantize + prepack once, outside the timing
            inputs["weights"][key] = QuantizedWeight.from_float(
                inputs["w"], bits=bits, **({"group_size": group_size} if bits == 4 else {}))
        return inputs["weights"][key]

    def prepare(self, kernel: str, inputs: dict[str, Any], params: dict[str, Any],
                threads: int, isa: str | None) -> Prepared:
        m, k = inputs["x"].shape
        n = inputs["w"].shape[0]
        flops = 2.0 * m * n * k
        if kernel == "gemm_blas_f32":
            from kernels_c import plan_gemm

            plan = plan_gemm(inputs["x"], inputs["wt"], threads=threads)
            return Prepared(plan, plan.run, _plan_output(plan), "blas", {}, flops,
                            _blas_threads(threads))
        if kernel == "torch_fbgemm_u8s8":
            return self._prepare_torch(inputs, threads, flops)
        if kernel not in self._BITS:
            raise ValueError(f"qgemm has no kernel {kernel!r}; known: {sorted(self.kernels)}")
        from kernels_c.quant import plan_qgemm

        bits = self._BITS[kernel]
        params = dict(params)
        group = int(params.pop("group_size", 64)) if bits == 4 else 0
        qw = self._weights(inputs, bits, group)
        inputs["last_weights"] = (bits, group)
        plan = plan_qgemm(inputs["xq"], inputs["x_scale"], inputs["x_zero_point"], qw,
                          threads=threads, isa=isa, **params)
        full = dict(plan.params)
        if bits == 4:
            full["group_size"] = group
        columns = {"bits": bits, **({"group_size": group} if bits == 4 else {})}
        return Prepared(plan, plan.run, _plan_output(plan), plan.isa, full, flops,
                        columns=columns)

    def _prepare_torch(self, inputs: dict[str, Any], threads: int, flops: float) -> Prepared:
        """FBGEMM through PyTorch, static quantization, weights prepacked once, uint8 out
        (``torch.ops.quantized.linear``, as in shared/reference/peers.md). Activations 7-bit
        where FBGEMM would saturate on 8 (:func:`fbgemm_saturates`): times do not depend on
        the values, and its results are checked against its own inputs."""
        import torch

        from kernels_c.quant import choose_qparams, quantize

        torch.backends.quantized.engine = "fbgemm"
        qw = self._weights(inputs, 8, 0)  # same int8 per-channel weights as ours
        inputs["last_weights"] = (8, 0)
        if fbgemm_saturates():  # 7-bit activations, as PyTorch quantizes them on x86
            xs, xz = choose_qparams(inputs["x"], reduce_range=True)
            inputs["torch_x"] = (quantize(inputs["x"], xs, xz), xs, xz)
        else:
            inputs["torch_x"] = (inputs["xq"], inputs["x_scale"], inputs["x_zero_point"])
        xq_np, xs, xz = inputs["torch_x"]
        with warnings.catch_warnings():  # quantized tensor creation is deprecated in torch
            warnings.simplefilter("ignore", UserWarning)
            xq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(xq_np), xs, xz)
            wq = torch.quantize_per_channel(
                torch.from_numpy(inputs["w"]), torch.from_numpy(qw.scales.astype(np.float64)),
                torch.zeros(qw.shape[0], dtype=torch.long), 0, torch.qint8)
            packed = torch.ops.quantized.linear_prepack(wq, None)
        # output range from the float product: the uint8 output keeps 8 bits of it
        y = inputs["x"] @ inputs["wt"]
        lo, hi = min(float(y.min(initial=0.0)), 0.0), max(float(y.max(initial=0.0)), 0.0)
        out_scale = max((hi - lo) / 255.0, 1e-8)
        out_zp = int(min(max(round(-lo / out_scale), 0), 255))
        inputs["out_scale"] = out_scale
        held: list[Any] = []

        def run() -> None:
            held[:] = [torch.ops.quantized.linear(xq, packed, out_scale, out_zp)]
        return Prepared(run, run, lambda: held[0].dequantize().numpy(), "fbgemm", {}, flops,
                        _torch_threads(threads), {"bits": 8})

    def reference(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return inputs["refs"]  # filled per weight format by check()

    def check(self, out: np.ndarray, ref: Any, inputs: dict[str, Any],
              kernel: str = "") -> str | None:
        if kernel == "gemm_blas_f32":
            a, b = inputs["x"].astype(np.float64), inputs["wt"].astype(np.float64)
            terms = a.shape[1]
            key: tuple = ("f32",)
        else:
            bits, group = inputs["last_weights"]  # what the checked plan was built from
            qw = self._weights(inputs, bits, group)
            xq, xs, xz = (inputs["torch_x"] if kernel == "torch_fbgemm_u8s8"
                          else (inputs["xq"], inputs["x_scale"], inputs["x_zero_point"]))
            a = (xq.astype(np.float64) - xz) * xs
            b = qw.dequantize().astype(np.float64).T
            # exact int32 sums; rounding only in the fp32 scaling (and int4 group sums)
            terms = 1 if bits == 8 else -(-a.shape[1] // max(group, 1))
            key = (bits, group, xs)  # the activations: torch's may be 7-bit
        if key not in ref:
            ref.clear()  # one entry at a time: large shapes have large references
            ref[key] = (a @ b, np.abs(a) @ np.abs(b))
        value, scale = ref[key]
        if kernel == "torch_fbgemm_u8s8":
            # uint8 output: rounding to the step, ties and the range's clamp at the edges
            # (the range comes from the float product) move a value by at most one step
            out = np.asarray(out, dtype=np.float64)
            step = inputs["out_scale"]
            bad = np.abs(out - value) > step * (1 + 1e-6) + 1e-4 * scale
            if bad.any():
                return f"{int(bad.sum())} of {bad.size} uint8 outputs off by more than a step"
            return None
        return _close_enough(np.asarray(out), value, scale, max(terms, 4))


#: op name -> op (``register_op`` adds more)
OPS: dict[str, Op] = {}


def register_op(op: Op) -> Op:
    """Add (or replace) an op in the registry; returns it."""
    OPS[op.name] = op
    return op


def get_op(name: str) -> Op:
    if name not in OPS:
        raise ValueError(f"unknown op {name!r}; known: {', '.join(sorted(OPS))}")
    return OPS[name]


register_op(SpmmOp())
register_op(Conv2dOp())
register_op(QgemmOp())

