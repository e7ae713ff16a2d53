/* CSR sparse x dense GEMM, fp32, with AVX-512F / AVX2+FMA / portable paths. */
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "kc_common.h"
#include "spmm.h"

#ifndef SPMM_ACC_SETS
#define SPMM_ACC_SETS 2
#endif
#if SPMM_ACC_SETS != 1 && SPMM_ACC_SETS != 2
#error "SPMM_ACC_SETS must be 1 or 2"
#endif

int spmm_acc_sets(void) { return SPMM_ACC_SETS; }

/* Rows [r0, r1) handled by thread t of nt: balance nonzeros plus one unit per row (a row
 * costs a store of N outputs even when empty). */
static void row_range(const int32_t *indptr, int64_t m, int t, int nt, int64_t *r0,
                      int64_t *r1) {
    int64_t total = (int64_t)indptr[m] + m;
    int64_t bounds[2];
    for (int e = 0; e < 2; ++e) {
        int64_t target = total * (t + e) / nt;
        int64_t lo = 0, hi = m;
        while (lo < hi) { /* first row r with indptr[r] + r >= target */
            int64_t mid = (lo + hi) / 2;
            if ((int64_t)indptr[mid] + mid < target) lo = mid + 1; else hi = mid;
        }
        bounds[e] = lo;
    }
    *r0 = bounds[0];
    *r1 = (t == nt - 1) ? m : bounds[1];
}

/* ---------------------------------------------------------------- portable */
static void rows_portable(const spmm_csr_f32_args *a, int64_t r0, int64_t r1, int64_t j0,
                          int64_t j1) {
    for (int64_t i = r0; i < r1; ++i) {
        float *restrict crow = a->c + i * a->ldc;
        for (int64_t j = j0; j < j1; ++j) crow[j] = 0.0f;
        for (int32_t p = a->indptr[i]; p < a->indptr[i + 1]; ++p) {
            const float v = a->data[p];
            const float *restrict brow = a->b + (int64_t)a->indices[p] * a->ldb;
            for (int64_t j = j0; j < j1; ++j) crow[j] += v * brow[j];
        }
    }
}

#if KC_X86
/* ---------------------------------------------------------------- AVX-512F */
/* One register tile: nv vectors of 16 columns starting at column j of one row. The last
 * vector is loaded and stored under `tail` (all ones for a full tile). */
#define DEFINE_TILE512(NV)                                                                   \
    KC_TARGET_AVX512 static void tile512_##NV(const int32_t *restrict idx,                   \
                                              const float *restrict val, int32_t len,        \
                                              const float *restrict b, int64_t ldb,          \
                                              float *restrict c, __mmask16 tail) {           \
        __m512 acc0[NV], acc1[NV];                                                           \
        for (int v = 0; v < NV; ++v) acc0[v] = acc1[v] = _mm512_setzero_ps();               \
        int32_t p = 0;                                                                       \
        if (SPMM_ACC_SETS == 2) {                                                            \
            for (; p + 1 < len; p += 2) {                                                    \
                const float *b0 = b + (int64_t)idx[p] * ldb;                                 \
                const float *b1 = b + (int64_t)idx[p + 1] * ldb;                             \
                const __m512 w0 = _mm512_set1_ps(val[p]), w1 = _mm512_set1_ps(val[p + 1]);   \
                for (int v = 0; v < NV - 1; ++v) {                                           \
                    acc0[v] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(b0 + 16 * v), acc0[v]);   \
                    acc1[v] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(b1 + 16 * v), acc1[v]);   \
                }                                                                            \
                acc0[NV - 1] = _mm512_fmadd_ps(                                              \
                    w0, _mm512_maskz_loadu_ps(tail, b0 + 16 * (NV - 1)), acc0[NV - 1]);      \
                acc1[NV - 1] = _mm512_fmadd_ps(                                              \
                    w1, _mm512_maskz_loadu_ps(tail, b1 + 16 * (NV - 1)), acc1[NV - 1]);      \
            }                                                                                \
        }                                                                                    \
        for (; p < len; ++p) {                                                               \
            const float *b0 = b + (int64_t)idx[p] * ldb;                                     \
            const __m512 w0 = _mm512_set1_ps(val[p]);                                        \
            for (int v = 0; v < NV - 1; ++v)                                                 \
                acc0[v] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(b0 + 16 * v), acc0[v]);       \
            acc0[NV - 1] = _mm512_fmadd_ps(                                                  \
                w0, _mm512_maskz_loadu_ps(tail, b0 + 16 * (NV - 1)), acc0[NV - 1]);          \
        }                                                                                    \
        for (int v = 0; v < NV - 1; ++v)                                                     \
            _mm512_storeu_ps(c + 16 * v, _mm512_add_ps(acc0[v], acc1[v]));                   \
        _mm512_mask_storeu_ps(c + 16 * (NV - 1), tail,                                       \
                              _mm512_add_ps(acc0[NV - 1], acc1[NV - 1]));                    \
    }
DEFINE_TILE512(1)
DEFINE_TILE512(2)
DEFINE_TILE512(4)
DEFINE_TILE512(8)

/* N == 1 (SpMV): vectorize along the nonzeros of a row with gathers. */
KC_TARGET_AVX512 static float dot512(const int32_t *restrict idx, const float *restrict val,
                                     int32_t len, const float *restrict b, int64_t ldb) {
    __m512 acc = _mm512_setzero_ps();
    const __m512i stride = _mm512_set1_epi32((int32_t)ldb);
    int32_t p = 0;
    for (; p + 16 <= len; p += 16) {
        __m512i ix = _mm512_mullo_epi32(_mm512_loadu_si512(idx + p), stride);
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(val + p), _mm512_i32gather_ps(ix, b, 4), acc);
    }
    if (p < len) {
        __mmask16 m = (__mmask16)((1u << (len - p)) - 1u);
        __m512i ix = _mm512_mullo_epi32(_mm512_maskz_loadu_epi32(m, idx + p), stride);
        __m512 g = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, ix, b, 4);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, val + p), g, acc);
    }
    return _mm512_reduce_add_ps(acc);
}

KC_TARGET_AVX512 static void rows_avx512(const spmm_csr_f32_args *a, int64_t r0, int64_t r1,
                                         int64_t j0, int64_t j1) {
    const int nv = a->reg_vectors;
    const int64_t w = 16 * (int64_t)nv;
    for (int64_t i = r0; i < r1; ++i) {
        const int32_t s = a->indptr[i], len = a->indptr[i + 1] - s;
        const int32_t *idx = a->indices + s;
        const float *val = a->data + s;
        float *crow = a->c + i * a->ldc;
        if (a->n == 1) {
            crow[0] = dot512(idx, val, len, a->b, a->ldb);
            continue;
        }
        int64_t j = j0;
        for (; j + w <= j1; j += w) {
            const float *bj = a->b + j;
            switch (nv) {
                case 8: tile512_8(idx, val, len, bj, a->ldb, crow + j, 0xffff); break;
                case 4: tile512_4(idx, val, len, bj, a->ldb, crow + j, 0xffff); break;
                case 2: tile512_2(idx, val, len, bj, a->ldb, crow + j, 0xffff); break;
                default: tile512_1(idx, val, len, bj, a->ldb, crow + j, 0xffff); break;
            }
        }
        for (; j < j1; j += 16) {
            int64_t rem = j1 - j;
            __mmask16 m = rem >= 16 ? 0xffff : (__mmask16)((1u << rem) - 1u);
            tile512_1(idx, val, len, a->b + j, a->ldb, crow + j, m);
        }
    }
}

/* ---------------------------------------------------------------- AVX2 + FMA */
KC_TARGET_AVX2 static inline __m256i mask256(int64_t rem) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)KC_MIN(rem, 8)), lanes);
}

#define DEFINE_TILE256(NV)                                                                   \
    KC_TARGET_AVX2 static void tile256_##NV(const int32_t *restrict idx,                     \
                                            const float *restrict val, int32_t len,          \
                                            const float *restrict b, int64_t ldb,            \
                                            float *restrict c, __m256i tail) {               \
        __m256 acc0[NV], acc1[NV];                                                           \
        for (int v = 0; v < NV; ++v) acc0[v] = acc1[v] = _mm256_setzero_ps();               \
        int32_t p = 0;                                                                       \
        if (SPMM_ACC_SETS == 2) {                                                            \
            for (; p + 1 < len; p += 2) {                                                    \
                const float *b0 = b + (int64_t)idx[p] * ldb;                                 \
                const float *b1 = b + (int64_t)idx[p + 1] * ldb;                             \
                const __m256 w0 = _mm256_set1_ps(val[p]), w1 = _mm256_set1_ps(val[p + 1]);   \
                for (int v = 0; v < NV - 1; ++v) {                                           \
                    acc0[v] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(b0 + 8 * v), acc0[v]);    \
                    acc1[v] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(b1 + 8 * v), acc1[v]);    \
                }                                                                            \
                acc0[NV - 1] = _mm256_fmadd_ps(                                              \
                    w0, _mm256_maskload_ps(b0 + 8 * (NV - 1), tail), acc0[NV - 1]);          \
                acc1[NV - 1] = _mm256_fmadd_ps(                                              \
                    w1, _mm256_maskload_ps(b1 + 8 * (NV - 1), tail), acc1[NV - 1]);          \
            }                                                                                \
        }                                                                                    \
        for (; p < len; ++p) {                                                               \
            const float *b0 = b + (int64_t)idx[p] * ldb;                                     \
            const __m256 w0 = _mm256_set1_ps(val[p]);                                        \
            for (int v = 0; v < NV - 1; ++v)                                                 \
                acc0[v] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(b0 + 8 * v), acc0[v]);        \
            acc0[NV - 1] = _mm256_fmadd_ps(                                                  \
                w0, _mm256_maskload_ps(b0 + 8 * (NV - 1), tail), acc0[NV - 1]);              \
        }                                                                                    \
        for (int v = 0; v < NV - 1; ++v)                                                     \
            _mm256_storeu_ps(c + 8 * v, _mm256_add_ps(acc0[v], acc1[v]));                    \
        _mm256_maskstore_ps(c + 8 * (NV - 1), tail, _mm256_add_ps(acc0[NV - 1], acc1[NV - 1])); \
    }
DEFINE_TILE256(1)
DEFINE_TILE256(2)
DEFINE_TILE256(4)
DEFINE_TILE256(8)

KC_TARGET_AVX2 static float dot256(const int32_t *restrict idx, const float *restrict val,
                                   int32_t len, const float *restrict b, int64_t ldb) {
    __m256 acc = _mm256_setzero_ps();
    const __m256i stride = _mm256_set1_epi32((int32_t)ldb);
    int32_t p = 0;
    for (; p + 8 <= len; p += 8) {
        __m256i ix = _mm256_mullo_epi32(_mm256_loadu_si256((const __m256i *)(idx + p)), stride);
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(val + p), _mm256_i32gather_ps(b, ix, 4), acc);
    }
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    float r = _mm_cvtss_f32(s);
    for (; p < len; ++p) r += val[p] * b[(int64_t)idx[p] * ldb];
    return r;
}

KC_TARGET_AVX2 static void rows_avx2(const spmm_csr_f32_args *a, int64_t r0, int64_t r1,
                                     int64_t j0, int64_t j1) {
    const int nv = a->reg_vectors;
    const int64_t w = 8 * (int64_t)nv;
    const __m256i full = _mm256_set1_epi32(-1);
    for (int64_t i = r0; i < r1; ++i) {
        const int32_t s = a->indptr[i], len = a->indptr[i + 1] - s;
        const int32_t *idx = a->indices + s;
        const float *val = a->data + s;
        float *crow = a->c + i * a->ldc;
        if (a->n == 1) {
            crow[0] = dot256(idx, val, len, a->b, a->ldb);
            continue;
        }
        int64_t j = j0;
        for (; j + w <= j1; j += w) {
            const float *bj = a->b + j;
            switch (nv) {
                case 8: tile256_8(idx, val, len, bj, a->ldb, crow + j, full); break;
                case 4: tile256_4(idx, val, len, bj, a->ldb, crow + j, full); break;
                case 2: tile256_2(idx, val, len, bj, a->ldb, crow + j, full); break;
                default: tile256_1(idx, val, len, bj, a->ldb, crow + j, full); break;
            }
        }
        for (; j < j1; j += 8) tile256_1(idx, val, len, a->b + j, a->ldb, crow + j, mask256(j1 - j));
    }
}
#endif /* KC_X86 */

int spmm_csr_f32(void *args) {
    const spmm_csr_f32_args *a = (const spmm_csr_f32_args *)args;
    void (*rows)(const spmm_csr_f32_args *, int64_t, int64_t, int64_t, int64_t) = rows_portable;
#if KC_X86
    if (a->isa >= KC_ISA_AVX512) rows = rows_avx512;
    else if (a->isa == KC_ISA_AVX2) rows = rows_avx2;
#else
    if (a->isa != KC_ISA_PORTABLE) return KC_ERR_ISA;
#endif
    const int64_t tile = a->n_tile > 0 ? a->n_tile : a->n;
    const int nt = a->threads > 0 ? a->threads : 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = 0, n_threads = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        n_threads = omp_get_num_threads();
#endif
        int64_t r0, r1;
        row_range(a->indptr, a->m, t, n_threads, &r0, &r1);
        for (int64_t j0 = 0; j0 < a->n; j0 += tile) rows(a, r0, r1, j0, KC_MIN(j0 + tile, a->n));
    }
    return KC_OK;
}

int spmm_csr_f32_ref(void *args) {
    /* Naive reference: no tiling, no SIMD intrinsics, double accumulation. */
    const spmm_csr_f32_args *a = (const spmm_csr_f32_args *)args;
    for (int64_t i = 0; i < a->m; ++i)
        for (int64_t j = 0; j < a->n; ++j) {
            double s = 0.0;
            for (int32_t p = a->indptr[i]; p < a->indptr[i + 1]; ++p)
                s += (double)a->data[p] * a->b[(int64_t)a->indices[p] * a->ldb + j];
            a->c[i * a->ldc + j] = (float)s;
        }
    return KC_OK;
}
