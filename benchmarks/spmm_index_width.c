/* 32-bit against 16-bit column indices in the memory-bound spmm loops (docs/spmm.md, "Tried
 * and not kept"): the N = 1 (SpMV) and N = 8 loops of kernels_c/src/spmm.c, reduced, over
 * one random 4096 x 4096 CSR matrix stored with int32_t and with uint16_t indices (A streams
 * from DRAM); prints medians of 15 interleaved runs.
 *
 *   gcc -O3 -o /tmp/index_width benchmarks/spmm_index_width.c
 *   for d in 0.5 0.2 0.1 0.05; do /tmp/index_width $d; done
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define AHEAD 4096 /* prefetch distance along A's arrays, as SPMM_STREAM_AHEAD */
#define TARGET __attribute__((target("avx512f,avx2,fma")))

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define DEFINE_SPMV(NAME, IDX_T)                                                             \
    TARGET static void NAME(const int32_t *ip, const IDX_T *idx, const float *val,         \
                            const float *x, float *y, int m) {                               \
        float g[16] __attribute__((aligned(64)));                                            \
        for (int i = 0; i < m; i++) {                                                        \
            int64_t p = ip[i], e = ip[i + 1];                                                \
            __m512 acc = _mm512_setzero_ps();                                                \
            for (; p + 16 <= e; p += 16) {                                                   \
                _mm_prefetch((const char *)(idx + p + AHEAD), _MM_HINT_T0);                  \
                _mm_prefetch((const char *)(val + p + AHEAD), _MM_HINT_T0);                  \
                for (int q = 0; q < 16; q++) g[q] = x[idx[p + q]];                           \
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(val + p), _mm512_load_ps(g), acc);     \
            }                                                                                \
            float s = _mm512_reduce_add_ps(acc);                                             \
            for (; p < e; p++) s += val[p] * x[idx[p]];                                      \
            y[i] = s;                                                                        \
        }                                                                                    \
    }

#define FMA8(a, p) a = _mm256_fmadd_ps(_mm256_set1_ps(val[p]), _mm256_loadu_ps(b + 8 * idx[p]), a)
#define DEFINE_N8(NAME, IDX_T)                                                               \
    TARGET static void NAME(const int32_t *ip, const IDX_T *idx, const float *val,         \
                            const float *b, float *c, int m) {                               \
        for (int i = 0; i < m; i++) {                                                        \
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                      \
            int64_t p = ip[i], e = ip[i + 1];                                                \
            for (; p + 4 <= e; p += 4) {                                                     \
                if (!(p & 15)) {                                                             \
                    _mm_prefetch((const char *)(idx + p + AHEAD), _MM_HINT_T0);              \
                    _mm_prefetch((const char *)(val + p + AHEAD), _MM_HINT_T0);              \
                }                                                                            \
                FMA8(a0, p); FMA8(a1, p + 1); FMA8(a2, p + 2); FMA8(a3, p + 3);              \
            }                                                                                \
            for (; p < e; p++) FMA8(a0, p);                                                  \
            _mm256_storeu_ps(c + 8 * i, _mm256_add_ps(_mm256_add_ps(a0, a1),                 \
                                                      _mm256_add_ps(a2, a3)));               \
        }                                                                                    \
    }

DEFINE_SPMV(spmv_i32, int32_t)
DEFINE_SPMV(spmv_u16, uint16_t)
DEFINE_N8(n8_i32, int32_t)
DEFINE_N8(n8_u16, uint16_t)

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const int m = 4096, k = 4096, reps = 15;
    const double density = argc > 1 ? atof(argv[1]) : 0.1;
    const int64_t cap = (int64_t)(m * (double)k * density * 1.1) + 16;
    int32_t *ip = malloc(sizeof(int32_t) * (m + 1)), *i32 = malloc(sizeof(int32_t) * cap);
    uint16_t *i16 = malloc(sizeof(uint16_t) * cap);
    float *val = malloc(sizeof(float) * cap);
    float *x = aligned_alloc(64, sizeof(float) * 8 * k), *y = aligned_alloc(64, sizeof(float) * 8 * m);
    int64_t nnz = 0;
    srand(1);
    ip[0] = 0;
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < k && nnz < cap; j++)
            if (rand() < density * RAND_MAX) i32[nnz] = j, i16[nnz] = (uint16_t)j, val[nnz++] = 1.0f;
        ip[i + 1] = (int32_t)nnz;
    }
    for (int j = 0; j < 8 * k; j++) x[j] = 1.0f;
    double t[4][15];
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        spmv_i32(ip, i32, val, x, y, m);
        double t1 = now();
        spmv_u16(ip, i16, val, x, y, m);
        double t2 = now();
        n8_i32(ip, i32, val, x, y, m);
        double t3 = now();
        n8_u16(ip, i16, val, x, y, m);
        double t4 = now();
        t[0][r] = t1 - t0, t[1][r] = t2 - t1, t[2][r] = t3 - t2, t[3][r] = t4 - t3;
    }
    for (int v = 0; v < 4; v++) qsort(t[v], reps, sizeof(double), by_value);
    const int h = reps / 2;
    printf("density %.2f, %ld nonzeros: N=1 int32 %.3f ms, uint16 %.3f ms (%.2fx) | N=8 int32 "
           "%.3f ms, uint16 %.3f ms (%.2fx)\n", density, (long)nnz, t[0][h] * 1e3, t[1][h] * 1e3,
           t[0][h] / t[1][h], t[2][h] * 1e3, t[3][h] * 1e3, t[2][h] / t[3][h]);
    return 0;
}
