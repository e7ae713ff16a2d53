"""A small synthetic results store and host profile for the report tests and benchmark.

Timings follow a simple roofline (so sweet spots and choice maps have a shape), with a
hostile machine name and layer name: the report must print them escaped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

HOSTILE_MACHINE = '<script>alert("machine")</script>box&co'
HOSTILE_LAYER = '<img src=x onerror=alert(1)>conv1'
FINGERPRINT = "fixture0fingerprint"
SPARSITIES = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
SPMM_SHAPES = ((256, 64, 256), (512, 128, 512), (1024, 64, 2048), (2048, 256, 1024))
CONV_SHAPES = ((64, 28, 28, 64, 3, 3), (128, 14, 14, 128, 3, 3))
QGEMM_SHAPES = ((256, 256, 256), (1024, 128, 1024))


def host_profile(fingerprint: str = FINGERPRINT) -> dict[str, Any]:
    """A host profile in the ``perfmodel characterize`` format (2 cores, AVX-512)."""
    caches = {"l1d_bytes": 48 * 1024, "l2_bytes": 2 << 20, "l3_bytes": 32 << 20,
              "l1d_shared_cpus": 1, "l2_shared_cpus": 1, "l3_shared_cpus": 2,
              "source": "fixture"}
    bw: dict[str, list[dict[str, Any]]] = {"read": [], "triad": []}
    plateau = {"L1": 180e9, "L2": 70e9, "L3": 30e9, "DRAM": 12e9}
    for t in (1, 2):
        for size in (16 << 10, 32 << 10, 256 << 10, 1 << 20, 8 << 20, 24 << 20, 128 << 20,
                     256 << 20):
            lv = ("L1" if size <= 36 << 10 else "L2" if size <= 1.5 * 2**20 * t
                  else "L3" if size <= 24 << 20 else "DRAM")
            v = plateau[lv] * (t if lv != "DRAM" else 1.2 ** (t - 1))
            for kind, f in (("read", 1.0), ("triad", 0.8)):
                bw[kind].append({"bytes": size, "threads": t, "median_bytes_per_s": v * f,
                                 "iqr_bytes_per_s": v * 0.02})
    peaks = {"fp32": {"avx512_vnni": {str(t): {"median_flops": 95e9 * t, "iqr_flops": 1e9,
                                                "max_flops": 97e9 * t} for t in (1, 2)}},
             "int8": {"avx512_vnni": {str(t): {"median_ops": 380e9 * t, "iqr_ops": 4e9,
                                               "max_ops": 390e9 * t} for t in (1, 2)}}}
    levels = {k: {str(t): {lv: v * (0.8 if k == "triad" else 1.0) * (t if lv != "DRAM" else 1)
                           for lv, v in plateau.items()} for t in (1, 2)}
              for k in ("read", "triad")}
    return {
        "schema_version": 1, "fingerprint": fingerprint, "created": "2026-11-26T08:00:00Z",
        "cpu": {"brand": "Fixture CPU <b>9000</b>", "vendor": "GenuineIntel", "cores": 2,
                "isa_path": "avx512_vnni", "flags": {"avx512f": True}},
        "caches": caches, "peaks": peaks,
        "bandwidth": bw,
        "levels": levels,
        "theoretical": {"clock_hz": 3.0e9, "clock_hz_all": 2.9e9, "fp32_flops_per_cycle": 32,
                        "int8_ops_per_cycle": 128,
                        "peak": {"fp32": {"1": 96e9, "2": 192e9},
                                 "int8": {"1": 384e9, "2": 768e9}}},
    }


def write_host_profile(home: Path, fingerprint: str = FINGERPRINT) -> Path:
    path = Path(home) / "host.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(host_profile(fingerprint)))
    return path


def _row(op: str, kernel: str, seconds: float, flops: float, key: str, rng, **shape: Any
         ) -> tuple[dict[str, Any], np.ndarray]:
    samples = seconds * (1 + 0.01 * rng.standard_normal(7))
    noisy = bool(rng.random() < 0.05)
    row = {"point_key": key, "sweep": "fixture", "op": op, "kernel": kernel,
           "isa": "avx512_vnni", "threads": shape.pop("threads", 1),
           "params": shape.pop("params", {}), "layer": shape.pop("layer", ""),
           "pattern": shape.pop("pattern", "random"), "status": "ok",
           "median_s": float(np.median(samples)), "min_s": float(samples.min()),
           "mean_s": float(samples.mean()), "iqr_s": float(np.subtract(
               *np.percentile(samples, [75, 25]))), "rel_ci": 0.05 if noisy else 0.01,
           "n_samples": len(samples), "converged": not noisy, "noisy": noisy,
           "flops": flops, "gflops": flops / seconds / 1e9, "loadavg": 1.5,
           "versions": {"python": "3.11", "numpy": "1.26"},
           "timestamp": "2026-11-26T08:30:00Z", **shape}
    return row, samples


def fixture_rows(repeat: int = 1, seed: int = 0) -> list[tuple[dict[str, Any], np.ndarray]]:
    """Synthetic measurement rows; ``repeat`` > 1 adds thread/parameter variants."""
    rng = np.random.default_rng(seed)
    out = []
    n = 0

    def key() -> str:
        nonlocal n
        n += 1
        return f"p{n:07d}"

    for rep in range(repeat):
        threads = 1 + rep % 2
        params = {"rep": rep}
        for m, nn, k in SPMM_SHAPES:
            dense_f = 2.0 * m * nn * k
            t_dense = dense_f / (80e9 * threads) + 2e-6
            out.append(_row("spmm", "gemm_blas_f32", t_dense, dense_f, key(), rng, m=m, n=nn,
                            k=k, sparsity=0.0, density=1.0, nnz=m * k, pattern="dense",
                            threads=threads, params=params))
            for sp in SPARSITIES[1:]:
                nnz = int(m * k * (1 - sp))
                t = 2.0 * nnz * nn / (30e9 * threads) + nnz * 8 / 40e9 + 3e-6
                layer = HOSTILE_LAYER if (m, sp) == (256, 0.9) else ""
                out.append(_row("spmm", "spmm_csr_f32", t, 2.0 * nnz * nn, key(), rng, m=m,
                                n=nn, k=k, sparsity=sp, density=1 - sp, nnz=nnz,
                                layer=layer, threads=threads, params=params))
                out.append(_row("spmm", "scipy_csr", t * 2.5, 2.0 * nnz * nn, key(), rng,
                                m=m, n=nn, k=k, sparsity=sp, density=1 - sp, nnz=nnz,
                                threads=threads, params=params))
        for c, h, w, o, r, s in CONV_SHAPES:
            p = h - r + 1
            f = 2.0 * o * c * r * s * p * p
            out.append(_row("conv2d", "conv_im2col_blas_f32", f / 60e9, f, key(), rng, c=c, h=h,
                            w=w, o=o, r=r, s=s, stride=1, padding=0, batch=1, sparsity=0.0,
                            density=1.0, nnz=o * c * r * s, pattern="dense",
                            threads=threads, params=params))
            for sp in SPARSITIES[2:]:
                nnz = int(o * c * r * s * (1 - sp))
                out.append(_row("conv2d", "conv_direct_sparse_f32",
                                2.0 * nnz * p * p / 25e9 + 4e-6, 2.0 * nnz * p * p, key(),
                                rng, c=c, h=h, w=w, o=o, r=r, s=s, stride=1, padding=0,
                                batch=1, sparsity=sp, density=1 - sp, nnz=nnz,
                                threads=threads, params=params))
        for m, nn, k in QGEMM_SHAPES:
            f = 2.0 * m * nn * k
            for kernel, rate, bits in (("gemm_blas_f32", 80e9, None),
                                       ("gemm_u8s8_acc32", 250e9, 8),
                                       ("gemm_s4s8_acc32", 160e9, 4),
                                       ("torch_qlinear_int8", 200e9, 8)):
                out.append(_row("qgemm", kernel, f / rate + 2e-6, f, key(), rng, m=m, n=nn,
                                k=k, bits=bits, sparsity=0.0, density=1.0, nnz=m * k,
                                pattern="dense", threads=threads, params=params))
    return out


def make_fixture_store(path: Path, *, repeat: int = 1, fingerprint: str = FINGERPRINT,
                       failed: bool = True) -> Path:
    """Write the synthetic store to ``path`` (SQLite) and return it."""
    from perfmodel.store import open_store

    with open_store(path) as st:
        mid = st.machine_id(fingerprint, HOSTILE_MACHINE, {"cpu": {"brand": "fixture"}})
        run = st.start_run(mid, "fixture", spec={"preset": "fixture", "note": "<b>spec</b>"},
                           versions={"python": "3.11"})
        rows = fixture_rows(repeat)
        for row, samples in rows:
            st.add_measurement(run, mid, row, samples)
        if failed:
            row, _ = _row("spmm", "spmm_csr_f32", 1e-3, 1.0, "failed-1", np.random.default_rng(1),
                          m=7, n=3, k=13, sparsity=0.5)
            row.update(status="runtime_failed", error="<script>bad()</script> wrong answer",
                       median_s=None, min_s=None, mean_s=None)
            st.add_measurement(run, mid, row, [])
        st.finish_run(run)
        st.record_tuned({"op": "spmm", "m": 512, "n": 128, "k": 512, "sparsity": 0.9},
                        "spmm_csr_f32", {"acc_sets": 2}, 1.2e-4, "study-<i>x</i>",
                        fingerprint=fingerprint)
    return Path(path)
