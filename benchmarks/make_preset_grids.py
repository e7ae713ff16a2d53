"""Print the standard preset's shape-grid blocks (its last blocks).

    python benchmarks/make_preset_grids.py

The layer blocks give the learned model one dense baseline per layer shape and a handful
of convolutions per geometry, so a held-out layer's time came from a few neighbouring
layers (docs/models.md, thirteenth session). These shapes cover the ranges of the layers
instead: scrambled Sobol samples (scipy.stats.qmc) of log2 sizes in each regime -- dense
GEMMs (general, narrow N as in sparse x narrow dense products, narrow M as in qgemm's small
batches), 3 x 3 / 5 x 5 convolutions (stride 1 or 2) and sparse x dense GEMMs (our spmm
kernel had been measured on the layers' shapes only) -- within a work range per call;
every other GEMM shape is rounded to multiples of 16, the rest stay as sampled (BLAS edge
tiles).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import qmc

#: GEMM regime -> (count, (log2 lower, log2 upper) of m, n, k, flop per call range, op,
#: threads)
GEMMS = {
    "general": (48, ((5.0, 12.5), (5.0, 13.6), (6.0, 12.2)), (2e7, 5e9), "spmm", [1, 2]),
    "narrow n": (48, ((6.0, 13.0), (0.0, 5.0), (6.0, 13.0)), (0.0, 5e9), "spmm", [1]),
    "narrow m": (48, ((0.0, 5.0), (6.0, 13.0), (6.0, 13.0)), (0.0, 5e9), "qgemm", [1]),
}
#: convolutions: count, log2 ranges of c, o, output height = width, dense flop range
CONVS = (48, ((5.0, 9.5), (5.0, 9.5), (2.5, 5.9)), (5e7, 2e9))
CONV_SPARSITIES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9]
#: sparse x dense GEMMs (our kernel and the dense baseline, one thread): count, log2 ranges
#: of m, n, k (the layers' span: ResNet-50's 1 x 1 and im2col GEMMs, BERT-base's at 8 to
#: 1352 tokens), dense flop range per call
SPARSE_GEMMS = (48, ((6.0, 12.0), (3.0, 13.6), (6.0, 12.2)), (2e6, 2e9))
SPARSE_GEMM_SPARSITIES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9]


def _log2_samples(bounds, seed: int, extra_dims: int = 0):
    """Endless Sobol points: 2 ** (scaled log2 sizes), then the extra unit coordinates."""
    sampler = qmc.Sobol(d=len(bounds) + extra_dims, scramble=True, seed=seed)
    lo, hi = np.array(bounds).T
    while True:
        u = sampler.random(1)[0]
        yield (2.0 ** qmc.scale(u[None, :len(bounds)], lo, hi)[0]).tolist(), \
            u[len(bounds):].tolist()


def gemm_shapes(count: int, bounds, flop_range, seed: int) -> list[dict[str, int]]:
    shapes: list[dict[str, int]] = []
    samples = _log2_samples(bounds, seed)
    while len(shapes) < count:
        sizes, _ = next(samples)
        dims = [max(1, round(v)) for v in sizes]
        if len(shapes) % 2 == 0:
            dims = [d if d < 16 else 16 * max(1, round(d / 16)) for d in dims]
        m, n, k = dims
        shape = {"m": m, "k": k, "n": n}
        if flop_range[0] <= 2.0 * m * n * k <= flop_range[1] and shape not in shapes:
            shapes.append(shape)
    return shapes


def conv_shapes(count: int, bounds, flop_range, seed: int) -> list[dict[str, int]]:
    """c, o and the output size from the sample (every other c, o rounded to multiples of
    16); a 5 x 5 kernel for a quarter of them, stride 2 for a third (the input twice the
    output), padding r // 2."""
    shapes: list[dict[str, int]] = []
    samples = _log2_samples(bounds, seed, extra_dims=2)
    while len(shapes) < count:
        (c, o, pq), (u_r, u_stride) = next(samples)
        c, o, pq = (max(1, round(v)) for v in (c, o, pq))
        if len(shapes) % 2 == 0:
            c, o = (16 * max(1, round(v / 16)) for v in (c, o))
        r = 5 if u_r < 0.25 else 3
        stride = 2 if u_stride < 1 / 3 else 1
        shape = {"c": c, "h": pq * stride, "w": pq * stride, "o": o, "r": r, "s": r,
                 "stride": stride, "padding": r // 2}
        if flop_range[0] <= 2.0 * c * o * r * r * pq * pq <= flop_range[1] \
                and shape not in shapes:
            shapes.append(shape)
    return shapes


def _toml_shapes(shapes: list[dict[str, int]], per_line: int) -> str:
    cells = ["{" + ", ".join(f"{k} = {v}" for k, v in s.items()) + "}" for s in shapes]
    rows = [", ".join(cells[i:i + per_line]) for i in range(0, len(cells), per_line)]
    return "shapes = [" + ",\n          ".join(rows) + "]"


def main() -> None:
    for seed, (name, (count, bounds, flop_range, op, threads)) in enumerate(GEMMS.items()):
        shapes = gemm_shapes(count, bounds, flop_range, seed)
        flops = [2 * s["m"] * s["n"] * s["k"] for s in shapes]
        print(f"\n# {name} GEMMs: {count} shapes, {sum(flops) / 1e9:.1f} GFLOP, "
              f"{min(flops) / 1e6:.2g}-{max(flops) / 1e6:.4g} MFLOP per call")
        print(f'[[block]]\nop = "{op}"\nkernels = ["gemm_blas_f32"]')
        print(_toml_shapes(shapes, 3))
        if threads != [1]:
            print(f"threads = {threads}")
    count, bounds, flop_range = CONVS
    shapes = conv_shapes(count, bounds, flop_range, len(GEMMS))
    print(f"\n# convolutions: {count} shapes, 1 and 2 threads")
    print('[[block]]\nop = "conv2d"')
    print(_toml_shapes(shapes, 1))
    print(f"sparsities = {CONV_SPARSITIES}\nthreads = [1, 2]")
    count, bounds, flop_range = SPARSE_GEMMS
    shapes = gemm_shapes(count, bounds, flop_range, len(GEMMS) + 1)
    print(f"\n# sparse x dense GEMMs: {count} shapes, one thread")
    print('[[block]]\nop = "spmm"\nkernels = ["spmm_csr_f32", "gemm_blas_f32"]')
    print(_toml_shapes(shapes, 3))
    print(f"sparsities = {SPARSE_GEMM_SPARSITIES}")


if __name__ == "__main__":
    main()
