/* Two layouts of the spmm operands measured against the kernel's own, in reduced copies of
 * the loops of kernels_c/src/spmm.c (docs/spmm.md, twelfth session: neither kept).
 *
 * index-width DENSITY: 32- against 16-bit column indices in the memory-bound loops, N = 1
 *   (SpMV) and N = 8, over one random 4096 x 4096 CSR matrix (A streams from DRAM).
 * split-tail M K N DENSITY: the register tile reading B from rows padded to whole vectors
 *   (what b_pack makes: N = 49 spans 4 cache lines) or from its full vectors in one array and
 *   its last N mod 16 columns in a second, compact one (3 lines and a few bytes); N must
 *   need 4 or 13 vectors (49..64, 193..208).
 * Both print medians of interleaved runs.
 *
 *   gcc -O3 -o /tmp/spmm_layouts benchmarks/spmm_layouts.c
 *   for d in 0.5 0.2 0.1 0.05; do /tmp/spmm_layouts index-width $d; done
 *   /tmp/spmm_layouts split-tail 512 4608 49 0.1; /tmp/spmm_layouts split-tail 256 2304 196 0.1
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TARGET __attribute__((target("avx512f,avx2,fma")))

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Random M x K CSR at `density` (values 1), at most cap nonzeros; returns the count. */
static int64_t random_csr(int m, int k, double density, int64_t cap, int32_t *ip, int32_t *idx,
                          uint16_t *idx16, float *val) {
    int64_t nnz = 0;
    srand(1);
    ip[0] = 0;
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < k && nnz < cap; j++)
            if (rand() < density * RAND_MAX) {
                idx[nnz] = j;
                if (idx16) idx16[nnz] = (uint16_t)j;
                val[nnz++] = 1.0f;
            }
        ip[i + 1] = (int32_t)nnz;
    }
    return nnz;
}

#define AHEAD 4096 /* prefetch distance along A's arrays, as SPMM_STREAM_AHEAD */
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

static int index_width(double density) {
    const int m = 4096, k = 4096, reps = 15;
    const int64_t cap = (int64_t)(m * (double)k * density * 1.1) + 16;
    int32_t *ip = malloc(sizeof(int32_t) * (m + 1)), *i32 = malloc(sizeof(int32_t) * cap);
    uint16_t *i16 = malloc(sizeof(uint16_t) * cap);
    float *val = malloc(sizeof(float) * cap);
    float *x = aligned_alloc(64, sizeof(float) * 8 * k), *y = aligned_alloc(64, sizeof(float) * 8 * m);
    const int64_t nnz = random_csr(m, k, density, cap, ip, i32, i16, val);
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

static int split_tail(int m, int k, int n, double density) {
    const int reps = 21;
    const int nv = (n + 15) / 16, r = n - 16 * (nv - 1);
    if (nv != 4 && nv != 13) {
        fprintf(stderr, "N must need 4 or 13 vectors\n");
        return 2;
    }
    const int64_t ld_padded = 16 * nv, ld_main = 16 * (nv - 1);
    const int64_t cap = (int64_t)(m * (double)k * density * 1.2) + 64;
    int32_t *ip = malloc(sizeof(int32_t) * (m + 1)), *idx = malloc(sizeof(int32_t) * cap);
    float *val = malloc(sizeof(float) * cap);
    const int64_t nnz = random_csr(m, k, density, cap, ip, idx, NULL, val);
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

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "index-width")) return index_width(atof(argv[2]));
    if (argc == 6 && !strcmp(argv[1], "split-tail"))
        return split_tail(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
    fprintf(stderr, "usage: %s index-width DENSITY | split-tail M K N DENSITY\n", argv[0]);
    return 2;
}
