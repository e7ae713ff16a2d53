/* Dense fp32 GEMM through a BLAS sgemm function pointer (see cdef/dense.h). */
#include "kc_common.h"
#include "dense.h"

typedef void (*sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k, float *alpha,
                         float *a, int *lda, float *b, int *ldb, float *beta, float *c,
                         int *ldc);

typedef void (*sgemv_fn)(char *trans, int *m, int *n, float *alpha, float *a, int *lda,
                         float *x, int *incx, float *beta, float *y, int *incy);

/* One column of C (N = 1): c = A b, A row-major M x K is column-major K x M, so transposed.
 * One row (M = 1): c^T = B^T a^T, B row-major K x N is column-major N x K. */
static void gemv_blas_f32(const gemm_blas_f32_args *g, sgemv_fn sgemv) {
    float one = 1.0f, zero = 0.0f;
    if (g->n == 1) {
        char t = 'T';
        int rows = (int)g->k, cols = (int)g->m, lda = (int)g->lda, incx = (int)g->ldb,
            incy = (int)g->ldc;
        sgemv(&t, &rows, &cols, &one, (float *)g->a, &lda, (float *)g->b, &incx, &zero, g->c,
              &incy);
    } else {
        char t = 'N';
        int rows = (int)g->n, cols = (int)g->k, lda = (int)g->ldb, inc = 1;
        sgemv(&t, &rows, &cols, &one, (float *)g->b, &lda, (float *)g->a, &inc, &zero, g->c,
              &inc);
    }
}

int gemm_blas_f32(void *args) {
    const gemm_blas_f32_args *g = (const gemm_blas_f32_args *)args;
    sgemm_fn sgemm = (sgemm_fn)g->sgemm;
    if (!sgemm) return KC_ERR_ARGS;
    if (g->m == 0 || g->n == 0) return KC_OK;
    if (g->k == 0) { /* empty sum: BLAS argument checks reject ld < 1 */
        for (int64_t i = 0; i < g->m; ++i)
            for (int64_t j = 0; j < g->n; ++j) g->c[i * g->ldc + j] = 0.0f;
        return KC_OK;
    }
    if ((g->n == 1 || g->m == 1) && g->sgemv) {
        gemv_blas_f32(g, (sgemv_fn)g->sgemv);
        return KC_OK;
    }
    char tn = 'N';
    /* column-major C^T (n x m) = B^T (n x k) @ A^T (k x m) */
    int m_ = (int)g->n, n_ = (int)g->m, k_ = (int)g->k;
    int lda = (int)g->ldb, ldb = (int)g->lda, ldc = (int)g->ldc;
    float one = 1.0f, zero = 0.0f;
    if (lda < 1) lda = 1;
    if (ldb < 1) ldb = 1;
    if (ldc < 1) ldc = 1;
    sgemm(&tn, &tn, &m_, &n_, &k_, &one, (float *)g->b, &lda, (float *)g->a, &ldb, &zero,
          g->c, &ldc);
    return KC_OK;
}

int gemm_f32_ref(void *args) {
    /* Naive reference, double accumulation. */
    const gemm_blas_f32_args *g = (const gemm_blas_f32_args *)args;
    for (int64_t i = 0; i < g->m; ++i)
        for (int64_t j = 0; j < g->n; ++j) {
            double s = 0.0;
            for (int64_t p = 0; p < g->k; ++p)
                s += (double)g->a[i * g->lda + p] * g->b[p * g->ldb + j];
            g->c[i * g->ldc + j] = (float)s;
        }
    return KC_OK;
}
