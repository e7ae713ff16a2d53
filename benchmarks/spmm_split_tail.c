/* The partial last vector of a row of B (docs/spmm.md, twelfth session): the register tile
 * of kernels_c/src/spmm.c, reduced, reading B either from rows padded to whole vectors
 * (what b_pack makes: N = 49 spans 4 cache lines) or from its full vectors in one array and
 * its last N mod 16 columns in a second, compact one (3 lines and a few bytes). Random CSR
 * of M x K at the given density; prints medians of 21 interleaved runs.
 *
 *   gcc -O3 -o /tmp/split_tail benchmarks/spmm_split_tail.c
 *   /tmp/split_tail 512 4608 49 0.1; /tmp/split_tail 256 2304 196 0.1
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define TARGET __attribute__((target("avx512f,avx2,fma")))

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* C[i, :] = sum over row i's nonzeros of val * B[idx, :]: NV - 1 full vectors from b (row
 * stride ldb), the last one masked from bt (row stride ldt); two accumulator sets. */
#define DEFINE_TILE(NAME, NV)                                                                \
    TARGET static void NAME(const int32_t *ip, const int32_t *idx, const float *val,       \
                            const float *b, int64_t ldb, const float *bt, int64_t ldt,       \
                            float *c, int64_t ldc, int m, __mmask16 tail) {                  \
        for (int i = 0; i < m; i++) {                                                        \
            __m512 a0[NV], a1[NV];                                                           \
            for (int v = 0; v < NV; v++) a0[v] = a1[v] = _mm512_setzero_ps();               \
            int32_t p = ip[i], e = ip[i + 1];                                                \
            for (; p + 1 < e; p += 2) {                                                      \
                const float *b0 = b + (int64_t)idx[p] * ldb, *b1 = b + (int64_t)idx[p + 1] * ldb; \
                const float *t0 = bt + (int64_t)idx[p] * ldt;                                \
                const float *t1 = bt + (int64_t)idx[p + 1] * ldt;                            \
                const __m512 w0 = _mm512_set1_ps(val[p]), w1 = _mm512_set1_ps(val[p + 1]);   \
                _Pragma("GCC unroll 16") for (int v = 0; v < NV - 1; v++) {                  \
                    a0[v] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(b0 + 16 * v), a0[v]);        \
                    a1[v] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(b1 + 16 * v), a1[v]);        \
                }                                                                            \
                a0[NV - 1] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(tail, t0), a0[NV - 1]); \
                a1[NV - 1] = _mm512_fmadd_ps(w1, _mm512_maskz_loadu_ps(tail, t1), a1[NV - 1]); \
            }                                                                                \
            for (; p < e; p++) {                                                             \
                const float *b0 = b + (int64_t)idx[p] * ldb, *t0 = bt + (int64_t)idx[p] * ldt; \
                const __m512 w0 = _mm512_set1_ps(val[p]);                                    \
                _Pragma("GCC unroll 16") for (int v = 0; v < NV - 1; v++)                    \
                    a0[v] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(b0 + 16 * v), a0[v]);        \
                a0[NV - 1] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(tail, t0), a0[NV - 1]); \
            }                                                                                \
            float *cr = c + (int64_t)i * ldc;                                                \
            _Pragma("GCC unroll 16") for (int v = 0; v < NV - 1; v++)                        \
                _mm512_storeu_ps(cr + 16 * v, _mm512_add_ps(a0[v], a1[v]));                  \
            _mm512_mask_storeu_ps(cr + 16 * (NV - 1), tail, _mm512_add_ps(a0[NV - 1], a1[NV - 1])); \
        }                                                                                    \
    }
DEFINE_TILE(tile4, 4)
DEFINE_TILE(tile13, 13)

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s M K N density (N = 49..64 or 193..208)\n", argv[0]);
        return 2;
    }
    const int m = atoi(argv[1]), k = atoi(argv[2]), n = atoi(argv[3]), reps = 21;
    const double density = atof(argv[4]);
    const int nv = (n + 15) / 16, r = n - 16 * (nv - 1);
    if (nv != 4 && nv != 13) {
        fprintf(stderr, "N must need 4 or 13 vectors\n");
        return 2;
    }
    const int64_t ld_padded = 16 * nv, ld_main = 16 * (nv - 1);
    const int64_t cap = (int64_t)(m * (double)k * density * 1.2) + 64;
    int32_t *ip = malloc(sizeof(int32_t) * (m + 1)), *idx = malloc(sizeof(int32_t) * cap);
    float *val = malloc(sizeof(float) * cap);
    int64_t nnz = 0;
    srand(1);
    ip[0] = 0;
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < k && nnz < cap; j++)
            if (rand() < density * RAND_MAX) idx[nnz] = j, val[nnz++] = 1.0f;
        ip[i + 1] = (int32_t)nnz;
    }
    float *padded = aligned_alloc(64, sizeof(float) * k * ld_padded);
    float *main_part = aligned_alloc(64, sizeof(float) * (k * ld_main + 64));
    float *tail_part = aligned_alloc(64, sizeof(float) * (k * r + 64));
    float *c = aligned_alloc(64, sizeof(float) * m * ld_padded);
    for (int64_t q = 0; q < k * ld_padded; q++) padded[q] = 1.0f;
    for (int64_t q = 0; q < k * ld_main; q++) main_part[q] = 1.0f;
    for (int64_t q = 0; q < k * r; q++) tail_part[q] = 1.0f;
    const __mmask16 tail = r == 16 ? (__mmask16)0xffff : (__mmask16)((1u << r) - 1u);
    double t[2][21];
    for (int rep = 0; rep < reps; rep++) {
        double t0 = now();
        if (nv == 4) tile4(ip, idx, val, padded, ld_padded, padded + 48, ld_padded, c, ld_padded, m, tail);
        else tile13(ip, idx, val, padded, ld_padded, padded + 192, ld_padded, c, ld_padded, m, tail);
        double t1 = now();
        if (nv == 4) tile4(ip, idx, val, main_part, ld_main, tail_part, r, c, ld_padded, m, tail);
        else tile13(ip, idx, val, main_part, ld_main, tail_part, r, c, ld_padded, m, tail);
        double t2 = now();
        t[0][rep] = t1 - t0, t[1][rep] = t2 - t1;
    }
    qsort(t[0], reps, sizeof(double), by_value);
    qsort(t[1], reps, sizeof(double), by_value);
    printf("%d x %d x %d, density %.2f, %ld nonzeros: padded rows %.3f ms, split tail %.3f ms "
           "(%.2fx)\n", m, k, n, density, (long)nnz, t[0][reps / 2] * 1e3, t[1][reps / 2] * 1e3,
           t[0][reps / 2] / t[1][reps / 2]);
    return 0;
}
