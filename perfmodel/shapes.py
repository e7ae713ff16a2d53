"""Named layer sets (AlexNet, ResNet-50, BERT-base, FBGEMM's GEMM benchmark shapes) and
loading of real sparse matrices (``.smtx``, Matrix Market ``.mtx``, scipy ``.npz``).

A :class:`Layer` is either a convolution (``kind="conv"``: c, h, w, o, r, s, stride,
padding, groups) or a linear layer / GEMM (``kind="linear"``: ``out`` x ``in`` weights
applied to ``tokens`` activation rows). Each op maps a layer to its own shape (see
:mod:`perfmodel.ops`): spmm multiplies the sparse weights (out x in, or O x C R S for a
convolution) by a dense (in x tokens) operand, qgemm uses FBGEMM's (M = tokens, N = out,
K = in), conv2d takes convolutions as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = ["LAYER_SETS", "Layer", "MatrixSource", "layer_set", "load_matrix",
           "matrix_sources"]

MATRIX_SUFFIXES = (".smtx", ".mtx", ".npz")


@dataclass(frozen=True)
class Layer:
    """One layer of a named network; ``dims`` holds the shape fields of its kind."""

    name: str
    kind: str  # "conv" | "linear"
    dims: dict[str, int] = field(hash=False)

    @property
    def gemm(self) -> tuple[int, int, int]:
        """(out, in, tokens) of the layer as a weight x activation GEMM (im2col view)."""
        d = self.dims
        if self.kind == "linear":
            return d["out"], d["in"], d["tokens"]
        ho = (d["h"] + 2 * d["padding"] - d["r"]) // d["stride"] + 1
        wo = (d["w"] + 2 * d["padding"] - d["s"]) // d["stride"] + 1
        return d["o"], d["c"] // d["groups"] * d["r"] * d["s"], ho * wo * d["batch"]


def _conv(name: str, c: int, hw: int, o: int, k: int, stride: int = 1, padding: int = 0,
          groups: int = 1) -> Layer:
    return Layer(name, "conv", dict(c=c, h=hw, w=hw, o=o, r=k, s=k, stride=stride,
                                    padding=padding, groups=groups, batch=1))


def _linear(name: str, out: int, inp: int, tokens: int) -> Layer:
    return Layer(name, "linear", {"out": out, "in": inp, "tokens": tokens})


# torchvision AlexNet at 224 x 224 (single-tower, no groups), FC layers at batch 32
_ALEXNET = (
    _conv("conv1", 3, 224, 64, 11, 4, 2), _conv("conv2", 64, 27, 192, 5, 1, 2),
    _conv("conv3", 192, 13, 384, 3, 1, 1), _conv("conv4", 384, 13, 256, 3, 1, 1),
    _conv("conv5", 256, 13, 256, 3, 1, 1),
    _linear("fc6", 4096, 9216, 32), _linear("fc7", 4096, 4096, 32),
    _linear("fc8", 1000, 4096, 32),
)

# ResNet-50 v1.5 at 224 x 224, batch 1: every distinct convolution shape, and the classifier
_RESNET50 = (
    _conv("conv1", 3, 224, 64, 7, 2, 3),
    _conv("layer1.conv1_first", 64, 56, 64, 1), _conv("layer1.conv2", 64, 56, 64, 3, 1, 1),
    _conv("layer1.conv3", 64, 56, 256, 1), _conv("layer1.conv1", 256, 56, 64, 1),
    _conv("layer2.conv1_first", 256, 56, 128, 1),
    _conv("layer2.conv2_first", 128, 56, 128, 3, 2, 1),
    _conv("layer2.downsample", 256, 56, 512, 1, 2),
    _conv("layer2.conv3", 128, 28, 512, 1), _conv("layer2.conv1", 512, 28, 128, 1),
    _conv("layer2.conv2", 128, 28, 128, 3, 1, 1),
    _conv("layer3.conv1_first", 512, 28, 256, 1),
    _conv("layer3.conv2_first", 256, 28, 256, 3, 2, 1),
    _conv("layer3.downsample", 512, 28, 1024, 1, 2),
    _conv("layer3.conv3", 256, 14, 1024, 1), _conv("layer3.conv1", 1024, 14, 256, 1),
    _conv("layer3.conv2", 256, 14, 256, 3, 1, 1),
    _conv("layer4.conv1_first", 1024, 14, 512, 1),
    _conv("layer4.conv2_first", 512, 14, 512, 3, 2, 1),
    _conv("layer4.downsample", 1024, 14, 2048, 1, 2),
    _conv("layer4.conv3", 512, 7, 2048, 1), _conv("layer4.conv1", 2048, 7, 512, 1),
    _conv("layer4.conv2", 512, 7, 512, 3, 1, 1),
    _linear("fc", 1000, 2048, 1),
)

# BERT-base encoder layer, sequence length 128, batch 1 (fused QKV projection)
_BERT_BASE = (
    _linear("attention.qkv", 2304, 768, 128), _linear("attention.output", 768, 768, 128),
    _linear("intermediate", 3072, 768, 128), _linear("output", 768, 3072, 128),
)

# FBGEMM's GEMM benchmark shapes (M, N, K) = (tokens, out, in); see shared/reference/peers.md
_FBGEMM_MNK = ((1, 128, 512), (1, 1024, 256), (1, 2048, 512), (1, 4096, 1024),
               (6, 256, 1024), (6, 4096, 2048), (20, 4096, 1024), (102, 1024, 512),
               (102, 2323, 256), (1, 800, 3200), (16, 256, 1500), (64, 800, 320),
               (64, 768, 512), (256, 512, 256), (1024, 1024, 1024),
               (25088, 64, 576), (6272, 128, 1152), (1568, 256, 2304), (392, 512, 4608))
_FBGEMM = tuple(_linear(f"gemm_{m}x{n}x{k}", n, k, m) for m, n, k in _FBGEMM_MNK)

#: name -> layers; names are what a sweep spec's ``layers`` field accepts
LAYER_SETS: dict[str, tuple[Layer, ...]] = {
    "alexnet": _ALEXNET,
    "resnet50": _RESNET50,
    "bert-base": _BERT_BASE,
    "fbgemm": _FBGEMM,
}


def layer_set(name: str) -> tuple[Layer, ...]:
    """Layers of a named set (case-insensitive; ``resnet-50``/``bert_base`` also work)."""
    key = name.lower().replace("_", "-")
    key = {"resnet-50": "resnet50", "bertbase": "bert-base", "bert": "bert-base"}.get(key, key)
    if key not in LAYER_SETS:
        raise ValueError(f"unknown layer set {name!r}; known: {', '.join(LAYER_SETS)}")
    return LAYER_SETS[key]


@dataclass(frozen=True)
class MatrixSource:
    """A real sparse matrix file and what is known about the layer it came from."""

    path: Path
    m: int
    k: int
    nnz: int
    n_hint: int | None  # dense operand width (e.g. DLMC's batch sizes file), if known
    sparsity_label: float | None  # from a folder named like "0.8", if any

    @property
    def layer(self) -> str:
        return self.path.stem


def _smtx_header(path: Path) -> tuple[int, int, int]:
    with open(path) as fh:
        first = fh.readline()
    try:
        m, k, nnz = (int(v) for v in first.replace(",", " ").split())
    except ValueError as exc:
        raise ValueError(f"{path}: first line must be 'M, K, nnz', got {first[:60]!r}") from exc
    return m, k, nnz


def _hints(folder: Path) -> dict[str, int]:
    """Layer name -> N from a ``*_batchsizes.txt`` in the folder or up to 3 levels above."""
    for parent in [folder, *list(folder.parents)[:3]]:
        for path in sorted(parent.glob("*_batchsizes.txt")):
            out = {}
            for line in path.read_text().splitlines():
                name, _, n = line.partition(",")
                if n.strip().isdigit():
                    out[name.strip()] = int(n)
            return out
    return {}


def matrix_sources(path: str | Path, limit: int | None = None) -> list[MatrixSource]:
    """Matrices in a file or folder (recursively), sorted by path.

    Raises
    ------
    FileNotFoundError when ``path`` does not exist or holds no matrix file.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"matrix file or folder {path} does not exist")
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.suffix.lower() in MATRIX_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no {'/'.join(MATRIX_SUFFIXES)} matrices in {path}")
    if path.is_file() and path.suffix.lower() not in MATRIX_SUFFIXES:
        raise ValueError(f"{path}: unknown matrix format {path.suffix!r}; use "
                         f"{', '.join(MATRIX_SUFFIXES)}")
    hints_by_dir: dict[Path, dict[str, int]] = {}
    out = []
    for f in files[:limit] if limit else files:
        hints = hints_by_dir.setdefault(f.parent, _hints(f.parent))
        if f.suffix.lower() == ".smtx":
            m, k, nnz = _smtx_header(f)
        else:
            mat = load_matrix(f)
            (m, k), nnz = mat.shape, mat.nnz
        label = None
        if re.fullmatch(r"0?\.\d+", f.parent.name):
            label = float(f.parent.name)
        out.append(MatrixSource(f, m, k, nnz, hints.get(f.stem), label))
    return out


def load_matrix(path: str | Path, seed: int = 0) -> sp.csr_array:
    """A sparse matrix as float32 CSR (M, K) with int32 indices.

    ``.smtx`` (DLMC: "M, K, nnz" then indptr then column indices) and pattern-only
    Matrix Market files carry no values: they are filled with standard normal values from
    ``numpy.random.default_rng(seed)``, so equal seeds give equal matrices.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    rng = np.random.default_rng(seed)
    if suffix == ".smtx":
        with open(path) as fh:
            m, k, nnz = _smtx_header(path)
            fh.readline()
            indptr = np.array(fh.readline().split(), dtype=np.int64)
            indices = np.array(fh.readline().split(), dtype=np.int64)
        if indptr.size != m + 1 or indices.size != nnz or (nnz and indices.max() >= k):
            raise ValueError(f"{path}: inconsistent .smtx (M={m}, K={k}, nnz={nnz}, "
                             f"{indptr.size} offsets, {indices.size} indices)")
        data = rng.standard_normal(nnz).astype(np.float32)
        mat = sp.csr_array((data, indices, indptr), shape=(m, k))
    elif suffix == ".mtx":
        import scipy.io

        raw = scipy.io.mmread(path)
        mat = sp.csr_array(raw)
        with open(path) as fh:
            if "pattern" in fh.readline().lower():
                mat.data = rng.standard_normal(mat.nnz)
    elif suffix == ".npz":
        mat = sp.csr_array(sp.load_npz(path))
    else:
        raise ValueError(f"{path}: unknown matrix format {suffix!r}; use "
                         f"{', '.join(MATRIX_SUFFIXES)}")
    mat = sp.csr_array(mat, dtype=np.float32)
    mat.sort_indices()
    mat.indptr = mat.indptr.astype(np.int32)
    mat.indices = mat.indices.astype(np.int32)
    return mat

