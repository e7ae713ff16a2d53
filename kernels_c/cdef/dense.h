/* Dense fp32 GEMM baseline through the system BLAS: C (M x N) = A (M x K) @ B (K x N), all
 * row-major with leading dimensions lda >= K, ldb >= N, ldc >= N (elements).
 *
 * `sgemm` is the address of a Fortran-ABI sgemm (every argument by pointer, column-major),
 * taken from scipy's cython_blas capsule in kernels_c/_blas.py, so the call is timed by the
 * same C loop as the sparse kernels. Row-major C = A B is computed as the column-major
 * product C^T = B^T A^T, which needs no transposition of the data. A product with one
 * column (N = 1) or one row (M = 1) calls `sgemv` instead, as numpy's matmul does: sgemm
 * packs A first, which made N = 1 3.2-3.6x slower than sgemv on 8-16 MiB matrices (L2-sized
 * ones ~20 % faster; OpenBLAS 0.3.31 on Zen 5, docs/models.md). BLAS threads are set by the
 * caller (threadpoolctl); the kernel itself is single-threaded.
 */
typedef struct {
    int64_t m, k, n;
    const float *a;
    int64_t lda;
    const float *b;
    int64_t ldb;
    float *c;
    int64_t ldc;
    uintptr_t sgemm;
    uintptr_t sgemv; /* Fortran-ABI sgemv, for N = 1 or M = 1 */
} gemm_blas_f32_args;

int gemm_blas_f32(void *args);
int gemm_f32_ref(void *args);
