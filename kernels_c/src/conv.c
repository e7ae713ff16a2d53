/* 2-D convolution, fp32: direct sparse (AVX-512F / AVX2+FMA / portable) and im2col + BLAS.
 * Layouts, the phase-split padded input and the offset formula are documented in
 * cdef/conv.h. */
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "kc_common.h"
#include "conv.h"

#define MAX_TILE_AVX512 24
#define MAX_TILE_AVX2 12
#define MAX_TILE_PORTABLE 12

int conv_max_tile_vectors(int isa) {
    if (isa >= KC_ISA_AVX512) return MAX_TILE_AVX512;
    if (isa == KC_ISA_AVX2) return MAX_TILE_AVX2;
    return MAX_TILE_PORTABLE;
}

/* One register tile: acc[0 : nv * VW) (+)= sum_p val[p] * x[off[p] : off[p] + nv * VW). */
typedef void (*tile_fn)(const int32_t *restrict off, const float *restrict val, int32_t len,
                        const float *restrict x, float *restrict acc, int accumulate, int nv);

/* ---------------------------------------------------------------- portable */
#define VW_PORTABLE 8
static void tile_portable(const int32_t *restrict off, const float *restrict val, int32_t len,
                          const float *restrict x, float *restrict acc, int accumulate,
                          int nv) {
    const int t = nv * VW_PORTABLE;
    float a[MAX_TILE_PORTABLE * VW_PORTABLE];
    for (int i = 0; i < t; ++i) a[i] = accumulate ? acc[i] : 0.0f;
    for (int32_t p = 0; p < len; ++p) {
        const float w = val[p];
        const float *restrict src = x + off[p];
        for (int i = 0; i < t; ++i) a[i] += w * src[i];
    }
    for (int i = 0; i < t; ++i) acc[i] = a[i];
}

#if KC_X86
/* NV accumulators stay in registers for the whole nonzero list. Short tiles (NV <= 4) use
 * two accumulator sets over alternate nonzeros so that the FMA latency (4 cycles, 2 FMA
 * ports) is hidden; long tiles have enough independent chains already. */
#define DEFINE_TILE(P, NV, TARGET, VEC, VW, ZERO, SET1, FMA, ADD, LOAD, STORE)                \
    TARGET static void tile_##P##_##NV(const int32_t *restrict off, const float *restrict val,\
                                       int32_t len, const float *restrict x,                 \
                                       float *restrict acc, int accumulate, int nv) {        \
        (void)nv;                                                                            \
        VEC a0[NV], a1[NV];                                                                  \
        _Pragma("GCC unroll 32") for (int v = 0; v < NV; ++v) {                              \
            a0[v] = accumulate ? LOAD(acc + VW * v) : ZERO();                                \
            a1[v] = ZERO();                                                                  \
        }                                                                                    \
        int32_t p = 0;                                                                       \
        if (NV <= 4) {                                                                       \
            for (; p + 1 < len; p += 2) {                                                    \
                const float *s0 = x + off[p], *s1 = x + off[p + 1];                          \
                const VEC w0 = SET1(val[p]), w1 = SET1(val[p + 1]);                          \
                _Pragma("GCC unroll 32") for (int v = 0; v < NV; ++v) {                      \
                    a0[v] = FMA(w0, LOAD(s0 + VW * v), a0[v]);                               \
                    a1[v] = FMA(w1, LOAD(s1 + VW * v), a1[v]);                               \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
        for (; p < len; ++p) {                                                               \
            const float *s0 = x + off[p];                                                    \
            const VEC w0 = SET1(val[p]);                                                     \
            _Pragma("GCC unroll 32") for (int v = 0; v < NV; ++v)                            \
                a0[v] = FMA(w0, LOAD(s0 + VW * v), a0[v]);                                   \
        }                                                                                    \
        _Pragma("GCC unroll 32") for (int v = 0; v < NV; ++v)                                \
            STORE(acc + VW * v, NV <= 4 ? ADD(a0[v], a1[v]) : a0[v]);                        \
    }

#define T512(NV)                                                                             \
    DEFINE_TILE(avx512, NV, KC_TARGET_AVX512, __m512, 16, _mm512_setzero_ps, _mm512_set1_ps, \
                _mm512_fmadd_ps, _mm512_add_ps, _mm512_loadu_ps, _mm512_storeu_ps)
#define T256(NV)                                                                             \
    DEFINE_TILE(avx2, NV, KC_TARGET_AVX2, __m256, 8, _mm256_setzero_ps, _mm256_set1_ps,      \
                _mm256_fmadd_ps, _mm256_add_ps, _mm256_loadu_ps, _mm256_storeu_ps)

T512(1) T512(2) T512(3) T512(4) T512(5) T512(6) T512(7) T512(8) T512(9) T512(10) T512(11)
T512(12) T512(13) T512(14) T512(15) T512(16) T512(17) T512(18) T512(19) T512(20) T512(21)
T512(22) T512(23) T512(24)
T256(1) T256(2) T256(3) T256(4) T256(5) T256(6) T256(7) T256(8) T256(9) T256(10) T256(11)
T256(12)

static const tile_fn TILES_AVX512[MAX_TILE_AVX512 + 1] = {
    NULL, tile_avx512_1, tile_avx512_2, tile_avx512_3, tile_avx512_4, tile_avx512_5,
    tile_avx512_6, tile_avx512_7, tile_avx512_8, tile_avx512_9, tile_avx512_10,
    tile_avx512_11, tile_avx512_12, tile_avx512_13, tile_avx512_14, tile_avx512_15,
    tile_avx512_16, tile_avx512_17, tile_avx512_18, tile_avx512_19, tile_avx512_20,
    tile_avx512_21, tile_avx512_22, tile_avx512_23, tile_avx512_24};
static const tile_fn TILES_AVX2[MAX_TILE_AVX2 + 1] = {
    NULL, tile_avx2_1, tile_avx2_2, tile_avx2_3, tile_avx2_4, tile_avx2_5, tile_avx2_6,
    tile_avx2_7, tile_avx2_8, tile_avx2_9, tile_avx2_10, tile_avx2_11, tile_avx2_12};
#endif /* KC_X86 */

#if KC_X86
/* d[j] = s[2 j + off] for j in [j_lo, j_hi) (stride-2 phase row), s has w elements. Masked
 * loads never touch elements outside the row. */
KC_TARGET_AVX512 static void deinterleave2_avx512(const float *s, int64_t w, int64_t off,
                                                  float *d, int64_t j_lo, int64_t j_hi) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    for (int64_t j = j_lo; j < j_hi; j += 16) {
        const int64_t b = 2 * j + off, avail = w - b, cnt = KC_MIN(16, j_hi - j);
        const __mmask16 m0 = avail >= 16 ? 0xffff : (__mmask16)((1u << avail) - 1u);
        const int64_t avail1 = avail - 16;
        const __mmask16 m1 = avail1 >= 16  ? 0xffff
                             : avail1 > 0 ? (__mmask16)((1u << avail1) - 1u)
                                          : 0;
        const __m512 lo = _mm512_maskz_loadu_ps(m0, s + b);
        const __m512 hi = m1 ? _mm512_maskz_loadu_ps(m1, s + b + 16) : _mm512_setzero_ps();
        _mm512_mask_storeu_ps(d + j, (__mmask16)((1u << cnt) - 1u),
                              _mm512_permutex2var_ps(lo, even, hi));
    }
}
#endif

/* Copy channel c of image n into its St*St zero-padded phase planes. */
static void pad_channel(const conv_direct_sparse_f32_args *a, float *xpad, int64_t n,
                        int64_t c) {
    const int64_t st = a->stride, pad = a->pad, h = a->h, w = a->w, hq = a->hq, wq = a->wq;
    const int64_t pstride = a->plane_stride;
    const float *src = a->x + (n * a->c + c) * h * w;
    float *base = xpad + c * st * st * pstride;
    for (int64_t pr = 0; pr < st; ++pr)
        for (int64_t ps = 0; ps < st; ++ps) {
            float *plane = base + (pr * st + ps) * pstride;
            memset(plane + hq * wq, 0, (size_t)(pstride - hq * wq) * sizeof(float));
            /* columns j with 0 <= st j + ps - pad < w */
            int64_t j_lo = pad > ps ? (pad - ps + st - 1) / st : 0;
            int64_t j_hi = (w + pad - ps + st - 1) / st;
            j_lo = KC_MIN(j_lo, wq);
            j_hi = KC_MAX(j_lo, KC_MIN(j_hi, wq));
            for (int64_t i = 0; i < hq; ++i) {
                float *d = plane + i * wq;
                const int64_t ys = st * i + pr - pad;
                if (ys < 0 || ys >= h) {
                    memset(d, 0, (size_t)wq * sizeof(float));
                    continue;
                }
                const float *s = src + ys * w;
                for (int64_t j = 0; j < j_lo; ++j) d[j] = 0.0f;
                if (st == 1) {
                    memcpy(d + j_lo, s + (j_lo - pad), (size_t)(j_hi - j_lo) * sizeof(float));
                } else {
#if KC_X86
                    if (st == 2 && a->isa >= KC_ISA_AVX512) {
                        deinterleave2_avx512(s, w, ps - pad, d, j_lo, j_hi);
                    } else
#endif
                        for (int64_t j = j_lo; j < j_hi; ++j) d[j] = s[st * j + ps - pad];
                }
                for (int64_t j = j_hi; j < wq; ++j) d[j] = 0.0f;
            }
        }
    /* Shifted copies d = 1 .. n_shift-1 of this channel, copy_d[i] = copy_0[i + d], made
     * while the channel is hot in L1. The last d elements of a channel in copy d would come
     * from the next channel; only discarded outputs read them, so they are zeroed. */
    const int64_t len = st * st * pstride;
    for (int64_t d = 1; d < a->n_shift && d < len; ++d) {
        memcpy(base + d * a->copy_stride, base + d, (size_t)(len - d) * sizeof(float));
        memset(base + d * a->copy_stride + len - d, 0, (size_t)d * sizeof(float));
    }
    for (int64_t d = KC_MAX(len, 1); d < a->n_shift; ++d)
        memset(base + d * a->copy_stride, 0, (size_t)len * sizeof(float));
}

/* One task: output channels [o0, o1) of image n. */
static void conv_task(const conv_direct_sparse_f32_args *a, tile_fn tile, int vw,
                      const float *xin, int64_t n, int64_t o0, int64_t o1, float *scr) {
    const int nv = a->tile_vectors;
    const int64_t t = (int64_t)nv * vw, pa = a->plane_alloc, ncb = a->n_cblocks;
    for (int64_t jt = 0; jt < pa; jt += t)
        for (int64_t cb = 0; cb < ncb; ++cb)
            for (int64_t o = o0; o < o1; ++o) {
                const int32_t *kp = a->kptr + o * (ncb + 1) + cb;
                const int32_t len = kp[1] - kp[0];
                if (cb > 0 && len == 0) continue;
                tile(a->offs + kp[0], a->vals + kp[0], len, xin + jt, scr + (o - o0) * pa + jt,
                     cb > 0, nv);
            }
    const int64_t ho = a->ho, wo = a->wo, wq = a->wq;
    for (int64_t o = o0; o < o1; ++o) {
        const float *pl = scr + (o - o0) * pa;
        float *dst = a->out + (n * a->o + o) * ho * wo;
        const float b = a->bias ? a->bias[o] : 0.0f;
        /* branch-free inner loops so that the compiler vectorizes them */
        if (a->relu) {
            for (int64_t y = 0; y < ho; ++y)
                for (int64_t x = 0; x < wo; ++x) {
                    const float v = pl[y * wq + x] + b;
                    dst[y * wo + x] = v < 0.0f ? 0.0f : v;
                }
        } else if (a->bias) {
            for (int64_t y = 0; y < ho; ++y)
                for (int64_t x = 0; x < wo; ++x) dst[y * wo + x] = pl[y * wq + x] + b;
        } else {
            for (int64_t y = 0; y < ho; ++y)
                memcpy(dst + y * wo, pl + y * wq, (size_t)wo * sizeof(float));
        }
    }
}

int conv_direct_sparse_f32(void *args) {
    const conv_direct_sparse_f32_args *a = (const conv_direct_sparse_f32_args *)args;
    if (a->tile_vectors < 1 || a->tile_vectors > conv_max_tile_vectors(a->isa) ||
        a->o_block < 1 || a->n_cblocks < 1)
        return KC_ERR_ARGS;
    tile_fn tile = tile_portable;
    int vw = VW_PORTABLE;
#if KC_X86
    if (a->isa >= KC_ISA_AVX512) {
        tile = TILES_AVX512[a->tile_vectors];
        vw = 16;
    } else if (a->isa == KC_ISA_AVX2) {
        tile = TILES_AVX2[a->tile_vectors];
        vw = 8;
    }
#else
    if (a->isa != KC_ISA_PORTABLE) return KC_ERR_ISA;
#endif
    if (a->plane_alloc % ((int64_t)a->tile_vectors * vw) || a->plane_stride < a->hq * a->wq)
        return KC_ERR_ARGS;
    const int64_t n_ob = (a->o + a->o_block - 1) / a->o_block;
    const int nt = a->threads > 0 ? a->threads : 1;
    const int per_thread = nt > 1 && a->n_xpad >= nt;
    for (int b = 0; b < (per_thread ? nt : 1); ++b)
        memset(a->xpad + b * a->xpad_len + a->img_stride, 0,
               (size_t)(a->xpad_len - a->img_stride) * sizeof(float));
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *scr = a->scratch + (int64_t)tid * a->o_block * a->plane_alloc;
        if (per_thread) {
            /* enough images for every thread: each pads whole images into its own buffer and
             * computes all their output channels, with no barrier in between */
            float *xpad = a->xpad + tid * a->xpad_len;
#pragma omp for schedule(dynamic, 1)
            for (int64_t n = 0; n < a->n; ++n) {
                for (int64_t c = 0; c < a->c; ++c) pad_channel(a, xpad, n, c);
                for (int64_t o0 = 0; o0 < a->o; o0 += a->o_block)
                    conv_task(a, tile, vw, xpad, n, o0, KC_MIN(o0 + a->o_block, a->o), scr);
            }
        } else {
            /* one image at a time: all threads pad it into the shared buffer, then share
             * its blocks of output channels */
            for (int64_t n = 0; n < a->n; ++n) {
#pragma omp for schedule(static)
                for (int64_t c = 0; c < a->c; ++c) pad_channel(a, a->xpad, n, c);
#pragma omp for schedule(dynamic, 1)
                for (int64_t ob = 0; ob < n_ob; ++ob) {
                    const int64_t o0 = ob * a->o_block;
                    conv_task(a, tile, vw, a->xpad, n, o0, KC_MIN(o0 + a->o_block, a->o), scr);
                }
            }
        }
    }
    return KC_OK;
}

/* ---------------------------------------------------------------- im2col + BLAS */
typedef void (*sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k, float *alpha,
                         float *a, int *lda, float *b, int *ldb, float *beta, float *c,
                         int *ldc);

/* Rows [k0, k1) of the im2col matrix of one image and group (rows = (c, r, s)). */
static void im2col_rows(const conv_im2col_blas_f32_args *a, const float *xg, int64_t k0,
                        int64_t k1) {
    const int64_t st = a->stride, pad = a->pad, h = a->h, w = a->w, ho = a->ho, wo = a->wo;
    for (int64_t k = k0; k < k1; ++k) {
        const int64_t c = k / (a->r * a->s), r = (k / a->s) % a->r, s = k % a->s;
        float *d = a->col + k * ho * wo;
        int64_t x_lo = pad > s ? (pad - s + st - 1) / st : 0;
        int64_t x_hi = (w + pad - s + st - 1) / st;
        x_lo = KC_MIN(x_lo, wo);
        x_hi = KC_MAX(x_lo, KC_MIN(x_hi, wo));
        for (int64_t y = 0; y < ho; ++y, d += wo) {
            const int64_t iy = y * st + r - pad;
            if (iy < 0 || iy >= h) {
                memset(d, 0, (size_t)wo * sizeof(float));
                continue;
            }
            const float *srow = xg + (c * h + iy) * w;
            for (int64_t x = 0; x < x_lo; ++x) d[x] = 0.0f;
            if (st == 1)
                memcpy(d + x_lo, srow + x_lo + s - pad, (size_t)(x_hi - x_lo) * sizeof(float));
            else
                for (int64_t x = x_lo; x < x_hi; ++x) d[x] = srow[x * st + s - pad];
            for (int64_t x = x_hi; x < wo; ++x) d[x] = 0.0f;
        }
    }
}

int conv_im2col_blas_f32(void *args) {
    const conv_im2col_blas_f32_args *a = (const conv_im2col_blas_f32_args *)args;
    sgemm_fn sgemm = (sgemm_fn)a->sgemm;
    if (!sgemm) return KC_ERR_ARGS;
    const int64_t cg = a->c / a->groups, og = a->o / a->groups;
    const int64_t kk = cg * a->r * a->s, p = a->ho * a->wo;
    const int direct = a->r == 1 && a->s == 1 && a->stride == 1 && a->pad == 0;
    for (int64_t n = 0; n < a->n; ++n)
        for (int64_t g = 0; g < a->groups; ++g) {
            const float *xg = a->x + (n * a->c + g * cg) * a->h * a->w;
            const float *bmat = xg;
            if (!direct) {
                /* serial: an OpenMP team spinning between regions would fight the BLAS
                 * threads for the cores */
                im2col_rows(a, xg, 0, kk);
                bmat = a->col;
            }
            /* row-major out_g (og x p) = W_g (og x kk) @ col (kk x p), i.e. column-major
             * out_g^T (p x og) = col^T (p x kk) @ W_g^T (kk x og) */
            char tn = 'N';
            int m_ = (int)p, n_ = (int)og, k_ = (int)kk, lda = (int)p, ldb = (int)kk,
                ldc = (int)p;
            float one = 1.0f, zero = 0.0f;
            sgemm(&tn, &tn, &m_, &n_, &k_, &one, (float *)bmat, &lda,
                  (float *)(a->weight + g * og * kk), &ldb, &zero,
                  a->out + (n * a->o + g * og) * p, &ldc);
        }
    if (a->bias || a->relu) {
        for (int64_t no = 0; no < a->n * a->o; ++no) {
            float *d = a->out + no * p;
            const float b = a->bias ? a->bias[no % a->o] : 0.0f;
            for (int64_t i = 0; i < p; ++i) {
                float v = d[i] + b;
                if (a->relu && v < 0.0f) v = 0.0f;
                d[i] = v;
            }
        }
    }
    return KC_OK;
}

int conv_f32_ref(void *args) {
    /* Naive reference: direct loops, no SIMD intrinsics, double accumulation. */
    const conv_im2col_blas_f32_args *a = (const conv_im2col_blas_f32_args *)args;
    const int64_t cg = a->c / a->groups, og = a->o / a->groups;
    for (int64_t n = 0; n < a->n; ++n)
        for (int64_t o = 0; o < a->o; ++o) {
            const int64_t g = o / og;
            for (int64_t y = 0; y < a->ho; ++y)
                for (int64_t x = 0; x < a->wo; ++x) {
                    double acc = a->bias ? a->bias[o] : 0.0;
                    for (int64_t c = 0; c < cg; ++c)
                        for (int64_t r = 0; r < a->r; ++r)
                            for (int64_t s = 0; s < a->s; ++s) {
                                const int64_t iy = y * a->stride + r - a->pad;
                                const int64_t ix = x * a->stride + s - a->pad;
                                if (iy < 0 || iy >= a->h || ix < 0 || ix >= a->w) continue;
                                acc += (double)a->weight[((o * cg + c) * a->r + r) * a->s + s] *
                                       a->x[((n * a->c + g * cg + c) * a->h + iy) * a->w + ix];
                            }
                    if (a->relu && acc < 0.0) acc = 0.0;
                    a->out[((n * a->o + o) * a->ho + y) * a->wo + x] = (float)acc;
                }
        }
    return KC_OK;
}

int64_t conv_block_lines(int64_t block, int64_t c, int64_t r, int64_t s, int64_t st,
                         int64_t wq, int64_t n_shift, const int64_t *plane_strides,
                         int64_t n_strides, int64_t read_floats, int64_t line_floats,
                         int64_t sets, int64_t ways, int64_t *counts, int64_t *lines) {
    if (block < 1 || r < 1 || s < 1 || st < 1 || read_floats < 1 || line_floats < 1 ||
        sets < 1)
        return 0;
    const int64_t copies = n_shift > 1 ? n_shift : 1;
    for (int64_t k = 0; k < n_strides; ++k) {
        const int64_t pstride = plane_strides[k];
        int64_t *count = counts + k * sets;
        memset(count, 0, (size_t)sets * sizeof(int64_t));
        int64_t total = 0, counted = -1, over = 0;   /* lines up to `counted` are counted */
        /* the offsets SparseConv2d gives a channel block's weights, in increasing order:
         * plane (copy d, channel, row phase, column phase), then place in the plane */
        for (int64_t d = 0; d < copies; ++d)
            for (int64_t ch = 0; ch < block; ++ch)
                for (int64_t pr = 0; pr < st; ++pr)
                    for (int64_t ps = 0; ps < st; ++ps) {
                        const int64_t plane = (d * c * st + ch * st + pr) * st + ps;
                        for (int64_t i = 0; pr + st * i < r; ++i)
                            for (int64_t j = 0; ps + st * j < s; ++j) {
                                if (copies > 1 && j != d) continue;   /* copy d: j = d */
                                const int64_t start =
                                    plane * pstride + i * wq + (copies > 1 ? 0 : j);
                                const int64_t last = (start + read_floats - 1) / line_floats;
                                for (int64_t l = KC_MAX(start / line_floats, counted + 1);
                                     l <= last; ++l) {
                                    count[l % sets] += 1;
                                    ++total;
                                }
                                counted = KC_MAX(counted, last);
                            }
                    }
        lines[k] = total;
        for (int64_t j = 0; j < sets; ++j) over += count[j] > ways;
        if (!over) return k + 1;
    }
    return n_strides;
}
