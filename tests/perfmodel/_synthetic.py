"""A small synthetic results table following the results-store contract (CONTRACTS.md).

Times come from a hidden "machine": a roofline with fixed factors, a parameter effect for
the sparse kernel and multiplicative noise, so models have something learnable.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

COLUMNS = ("measurement_id run_id machine_id machine fingerprint sweep op kernel isa threads "
           "params m n k c h w o r s stride padding batch groups bits group_size layer "
           "matrix sparsity density nnz pattern cache status error median_s min_s mean_s "
           "iqr_s ci_low_s ci_high_s rel_ci n_samples converged noisy flops gflops loadavg "
           "versions timestamp").split()

F = 100e9          # hidden dense FLOP/s
BW = 20e9          # hidden bytes/s
ALPHA = 2.5        # hidden sparse overhead
PARAM_EFFECT = {1: 1.6, 2: 1.2, 4: 1.0, 8: 1.1}   # reg_vectors → slowdown


def hidden_time(kernel: str, m: int, n: int, k: int, density: float, reg: int = 4) -> float:
    if kernel == "gemm_blas_f32":
        return max(2 * m * n * k / F, (m * k + k * n + m * n) * 4 / BW) + 2e-6
    nnz = density * m * k
    return (max(ALPHA * 2 * nnz * n / F, (nnz * 8 + (k + 2 * m) * n * 4) / BW)
            * PARAM_EFFECT[reg] * (1 + 0.3 * (n < 64)) + 1e-6)


def make_results(seed: int = 0, shapes=None, sparsities=(0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9,
                                                          0.95), noise: float = 0.03,
                 fingerprint: str = "synthetic") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    shapes = shapes or [(256, 64, 256), (512, 128, 512), (1024, 256, 512), (128, 32, 1024),
                        (768, 128, 768), (2048, 64, 256), (384, 512, 384), (64, 256, 2048)]
    rows = []
    for m, n, k in shapes:
        dense_t = hidden_time("gemm_blas_f32", m, n, k, 1.0)
        for sp in sparsities:
            density = 1.0 - sp
            configs = [("gemm_blas_f32", {})] + [
                ("spmm_csr_f32", {"reg_vectors": r, "n_tile": 0, "k_block": 0,
                                  "row_block": 32, "acc_sets": 2}) for r in (1, 2, 4, 8)]
            for kernel, params in configs:
                if kernel == "gemm_blas_f32" and sp != sparsities[0]:
                    continue   # dense baselines: once per shape, sparsity 0 (ops.py)
                if kernel == "gemm_blas_f32":
                    t = dense_t
                else:
                    t = hidden_time(kernel, m, n, k, density, params["reg_vectors"])
                t *= float(np.exp(rng.normal(0.0, noise)))
                rows.append({
                    "measurement_id": len(rows) + 1, "run_id": 1, "machine_id": 1,
                    "machine": "synthetic", "fingerprint": fingerprint, "sweep": "test",
                    "op": "spmm", "kernel": kernel, "isa": "avx512", "threads": 1,
                    "params": json.dumps(params, sort_keys=True),
                    "m": m, "n": n, "k": k,
                    "sparsity": 0.0 if kernel == "gemm_blas_f32" else sp,
                    "density": 1.0 if kernel == "gemm_blas_f32" else density,
                    "nnz": m * k if kernel == "gemm_blas_f32" else round(density * m * k),
                    "pattern": "dense" if kernel == "gemm_blas_f32" else "random",
                    "cache": "warm",
                    "status": "ok", "error": "", "median_s": t, "min_s": t * 0.98,
                    "mean_s": t * 1.01, "iqr_s": t * 0.02, "ci_low_s": t * 0.99,
                    "ci_high_s": t * 1.01, "rel_ci": 0.01, "n_samples": 10,
                    "converged": True, "noisy": False, "flops": 2 * m * n * k,
                    "gflops": 2 * m * n * k / t / 1e9, "loadavg": 0.5, "versions": "{}",
                    "timestamp": "2026-11-26T00:00:00Z", "layer": "", "matrix": "",
                })
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df:
            df[col] = np.nan
    return df[COLUMNS]
