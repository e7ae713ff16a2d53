/* Quantized GEMM u8 x s8 (and u8 x s4) -> s32 with AVX-512 VNNI / AVX2 / portable paths.
 *
 * Structure (FBGEMM's split): weights are packed once in Python (layouts in cdef/qgemm.h);
 * here a driver walks cache blocks, an inner kernel ("ukr") computes one mr x nr register
 * tile over the whole K into a small L1-resident tile buffer, and the output pipeline turns
 * that tile into int32 / fp32 / u8 outputs (zero-point correction, bias, relu, requantize).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "kc_common.h"
#include "qgemm.h"

#define QG_MR_MAX 6
#define QG_NR_MAX 64
#define QG_G_MAX 128
/* Software prefetch distance into the packed B stream, in bytes (0 = off). B is one
 * contiguous stream per thread; at small M it arrives from DRAM, where the hardware
 * prefetcher stops at every 4 KiB page and page walks are not overlapped. */
#ifndef QG_PF_DIST
#define QG_PF_DIST 8192
#endif
#define QG_PF_B(P)                                                                           \
    do {                                                                                     \
        if (QG_PF_DIST) {                                                                    \
            _mm_prefetch((const char *)(P) + QG_PF_DIST, _MM_HINT_T0);                       \
            _mm_prefetch((const char *)(P) + QG_PF_DIST + 64, _MM_HINT_T0);                  \
            _mm_prefetch((const char *)(P) + QG_PF_DIST + 128, _MM_HINT_T0);                 \
            _mm_prefetch((const char *)(P) + QG_PF_DIST + 192, _MM_HINT_T0);                 \
        }                                                                                    \
    } while (0)

/* Register tiles per path: (mr, nr) for int8 and int4. */
#define VNNI8_MR 6
#define VNNI4_MR 6
#define VNNI_NR 64
#define AVX2_8_MR 6
#define AVX2_4_MR 2
#define AVX2_NR 16
#define PORT_MR 4
#define PORT_NR 16

/* One inner kernel: rows a[0..mr) (stride lda) x one packed panel b over K; int4 kernels
 * also take the panel's group scales gs[g * gs_stride + c]. Writes an mr x nr tile (ld nr)
 * of int32 (int8) or float (int4) to `tile`. */
typedef void (*qg_ukr)(const uint8_t *a, int64_t lda, int64_t k, const int8_t *b,
                       const float *gs, int64_t gs_stride, int group, void *tile);
/* Output pipeline for one tile: rows [i0, i0+mr), columns [j0, j0+ncols). */
typedef void (*qg_pipe)(const qgemm_args *a, const void *tile, int nr, int64_t i0, int mr,
                        int64_t j0, int ncols, const int32_t *rowoff);

static inline uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint16_t load_u16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* ------------------------------------------------------------ scalar output pipeline */
static inline float clamp_round_arg(float f) {
    /* keeps the float -> int conversion defined; anything beyond saturates to 0 or 255 */
    return f > 16777216.0f ? 16777216.0f : (f < -16777216.0f ? -16777216.0f : f);
}

static inline uint8_t requant_u8(float f, int32_t zp, int relu) {
    int32_t q = (int32_t)rintf(clamp_round_arg(f)) + zp;
    const int32_t lo = relu ? zp : 0;
    q = q < lo ? lo : q;
    return (uint8_t)(q > 255 ? 255 : q);
}

static inline void pipe_one8(const qgemm_args *a, int64_t i, int64_t j, int32_t acc,
                             int32_t rowsum) {
    int32_t raw = acc - a->col_i32[j];
    if (a->b_zero_point) raw -= a->b_zero_point[j] * rowsum;
    const int64_t o = i * a->ldo + j;
    if (a->out_kind == QG_OUT_INT32) {
        ((int32_t *)a->out)[o] = raw;
    } else if (a->out_kind == QG_OUT_F32) {
        float f = fmaf((float)raw, a->col_scale[j], a->col_bias[j]);
        ((float *)a->out)[o] = (a->relu && f < 0.0f) ? 0.0f : f;
    } else {
        float f = ((float)raw + a->col_biasq[j]) * a->col_mult[j];
        ((uint8_t *)a->out)[o] = requant_u8(f, a->out_zero_point, a->relu);
    }
}

static inline void pipe_one4(const qgemm_args *a, int64_t i, int64_t j, float acc) {
    float f = fmaf(acc - a->col_sub[j], a->col_scale[j], a->col_bias[j]);
    const int64_t o = i * a->ldo + j;
    if (a->out_kind == QG_OUT_U8) {
        ((uint8_t *)a->out)[o] = requant_u8(f * a->col_mult[j], a->out_zero_point, a->relu);
    } else {
        ((float *)a->out)[o] = (a->relu && f < 0.0f) ? 0.0f : f;
    }
}

static void pipe8_scalar(const qgemm_args *a, const void *tile, int nr, int64_t i0, int mr,
                         int64_t j0, int ncols, const int32_t *rowoff) {
    const int32_t *t = (const int32_t *)tile;
    for (int r = 0; r < mr; ++r)
        for (int c = 0; c < ncols; ++c)
            pipe_one8(a, i0 + r, j0 + c, t[r * nr + c], rowoff ? rowoff[i0 + r] : 0);
}

static void pipe4_scalar(const qgemm_args *a, const void *tile, int nr, int64_t i0, int mr,
                         int64_t j0, int ncols, const int32_t *rowoff) {
    (void)rowoff;
    const float *t = (const float *)tile;
    for (int r = 0; r < mr; ++r)
        for (int c = 0; c < ncols; ++c) pipe_one4(a, i0 + r, j0 + c, t[r * nr + c]);
}

/* ------------------------------------------------------------ portable kernels */
/* Layout [panel][k][16] (int8) or [panel][k/2][16] nibble pairs (int4). */
#define DEFINE_PORT8(MR)                                                                     \
    static void ukr_port8_##MR(const uint8_t *a, int64_t lda, int64_t k, const int8_t *b,    \
                               const float *gs, int64_t gss, int group, void *tile) {        \
        (void)gs; (void)gss; (void)group;                                                    \
        int32_t acc[MR][PORT_NR];                                                            \
        memset(acc, 0, sizeof acc);                                                          \
        for (int64_t kk = 0; kk < k; ++kk) {                                                 \
            const int8_t *bk = b + kk * PORT_NR;                                             \
            for (int r = 0; r < MR; ++r) {                                                   \
                const int32_t av = a[r * lda + kk];                                          \
                for (int c = 0; c < PORT_NR; ++c) acc[r][c] += av * (int32_t)bk[c];          \
            }                                                                                \
        }                                                                                    \
        memcpy(tile, acc, sizeof acc);                                                       \
    }
DEFINE_PORT8(1)
DEFINE_PORT8(2)
DEFINE_PORT8(3)
DEFINE_PORT8(4)

#define DEFINE_PORT4(MR)                                                                     \
    static void ukr_port4_##MR(const uint8_t *a, int64_t lda, int64_t k, const int8_t *b,    \
                               const float *gs, int64_t gss, int group, void *tile) {        \
        float facc[MR][PORT_NR];                                                             \
        int32_t acc[MR][PORT_NR];                                                            \
        for (int r = 0; r < MR; ++r)                                                         \
            for (int c = 0; c < PORT_NR; ++c) facc[r][c] = 0.0f;                             \
        for (int64_t k0 = 0, g = 0; k0 < k; k0 += group, ++g) {                              \
            const uint8_t *ap = a + k0;                                                      \
            const int64_t la = lda;                                                          \
            memset(acc, 0, sizeof acc);                                                      \
            const uint8_t *bp = (const uint8_t *)b + (k0 / 2) * PORT_NR;                     \
            for (int p = 0; p < group / 2; ++p, bp += PORT_NR) {                             \
                for (int r = 0; r < MR; ++r) {                                               \
                    const int32_t a0 = ap[r * la + 2 * p], a1 = ap[r * la + 2 * p + 1];      \
                    for (int c = 0; c < PORT_NR; ++c) {                                      \
                        const int32_t lo = (int8_t)(uint8_t)(bp[c] << 4);                    \
                        const int32_t hi = (int8_t)(uint8_t)(bp[c] & 0xF0);                  \
                        acc[r][c] += a0 * lo + a1 * hi;                                      \
                    }                                                                        \
                }                                                                            \
            }                                                                                \
            const float *s = gs + g * gss;                                                   \
            for (int r = 0; r < MR; ++r)                                                     \
                for (int c = 0; c < PORT_NR; ++c)                                            \
                    facc[r][c] = fmaf((float)acc[r][c], s[c], facc[r][c]);                   \
        }                                                                                    \
        memcpy(tile, facc, sizeof facc);                                                     \
    }
DEFINE_PORT4(1)
DEFINE_PORT4(2)
DEFINE_PORT4(3)
DEFINE_PORT4(4)

static const qg_ukr port8[] = {NULL, ukr_port8_1, ukr_port8_2, ukr_port8_3, ukr_port8_4};
static const qg_ukr port4[] = {NULL, ukr_port4_1, ukr_port4_2, ukr_port4_3, ukr_port4_4};

#if KC_X86
/* ------------------------------------------------------------ AVX-512 VNNI */
/* The kernels name every accumulator (no arrays of vectors: GCC keeps those in memory across
 * loops and spills every update). Rows above MR are dead code, removed at compile time. */
/* The empty asm pins the four B vectors in registers: otherwise GCC folds the loads into
 * every vpdpbusd of 1-3 row tiles and loads B once per row (2x slower at M = 3). */
#define V8_LOADB(P)                                                                          \
    b0 = _mm512_loadu_si512(P);                                                              \
    b1 = _mm512_loadu_si512((P) + 64);                                                       \
    b2 = _mm512_loadu_si512((P) + 128);                                                      \
    b3 = _mm512_loadu_si512((P) + 192);                                                      \
    __asm__("" : "+v"(b0), "+v"(b1), "+v"(b2), "+v"(b3))
#define V8_FMA(C, SRC)                                                                       \
    do {                                                                                     \
        const __m512i av_ = _mm512_set1_epi32((int32_t)(SRC));                               \
        C##0 = _mm512_dpbusd_epi32(C##0, av_, b0);                                           \
        C##1 = _mm512_dpbusd_epi32(C##1, av_, b1);                                           \
        C##2 = _mm512_dpbusd_epi32(C##2, av_, b2);                                           \
        C##3 = _mm512_dpbusd_epi32(C##3, av_, b3);                                           \
    } while (0)
#define V8_DECL(C) __m512i C##0 = _mm512_setzero_si512(), C##1 = C##0, C##2 = C##0, C##3 = C##0
#define V8_STORE(r, C)                                                                       \
    do {                                                                                     \
        _mm512_storeu_si512(tile + (r) * VNNI_NR, C##0);                                     \
        _mm512_storeu_si512(tile + (r) * VNNI_NR + 16, C##1);                                \
        _mm512_storeu_si512(tile + (r) * VNNI_NR + 32, C##2);                                \
        _mm512_storeu_si512(tile + (r) * VNNI_NR + 48, C##3);                                \
    } while (0)
#define V8_ALL_ROWS(SRC)                                                                     \
    do {                                                                                     \
        V8_FMA(c0, SRC(0));                                                                  \
        if (MR > 1) V8_FMA(c1, SRC(1));                                                      \
        if (MR > 2) V8_FMA(c2, SRC(2));                                                      \
        if (MR > 3) V8_FMA(c3, SRC(3));                                                      \
        if (MR > 4) V8_FMA(c4, SRC(4));                                                      \
        if (MR > 5) V8_FMA(c5, SRC(5));                                                      \
    } while (0)

/* int8: mr rows x 4 vectors of 16 columns; per K quad one 64-byte load per vector and one
 * broadcast A quad per row. Rows <= 2 use a second accumulator set (odd quads) so that
 * enough independent vpdpbusd chains hide its latency. */
KC_TARGET_AVX512_VNNI static inline __attribute__((always_inline)) void
vnni8_body(const int MR, const uint8_t *a, int64_t lda, int64_t k, const int8_t *b,
           int32_t *tile) {
    V8_DECL(c0); V8_DECL(c1); V8_DECL(c2); V8_DECL(c3); V8_DECL(c4); V8_DECL(c5);
    V8_DECL(d0); V8_DECL(d1);
    __m512i b0, b1, b2, b3;
    const int64_t nq = k / 4;
    int64_t q = 0;
#define SRC_Q(r) load_u32(a + (r) * lda + 4 * q)
#define SRC_Q1(r) load_u32(a + (r) * lda + 4 * q + 4)
    if (MR <= 2) {
        for (; q + 1 < nq; q += 2) {
            QG_PF_B(b + q * 256);
            QG_PF_B(b + q * 256 + 256);
            V8_LOADB(b + q * 256);
            V8_FMA(c0, SRC_Q(0));
            if (MR > 1) V8_FMA(c1, SRC_Q(1));
            V8_LOADB(b + q * 256 + 256);
            V8_FMA(d0, SRC_Q1(0));
            if (MR > 1) V8_FMA(d1, SRC_Q1(1));
        }
    }
    for (; q < nq; ++q) {
        if ((q & 15) == 0 && MR > 2) {
            /* A rows of the next register tile, one cache line ahead per row: a long A
             * (many rows, few panels) streams from memory, which the hardware prefetcher
             * does not follow across MR interleaved strided streams fast enough */
            for (int r = 0; r < MR; ++r)
                _mm_prefetch((const char *)(a + (MR + r) * lda + 4 * q), _MM_HINT_T0);
        }
        QG_PF_B(b + q * 256);
        V8_LOADB(b + q * 256);
        V8_ALL_ROWS(SRC_Q);
    }
#undef SRC_Q
#undef SRC_Q1
    if (MR <= 2) {
        c00 = _mm512_add_epi32(c00, d00); c01 = _mm512_add_epi32(c01, d01);
        c02 = _mm512_add_epi32(c02, d02); c03 = _mm512_add_epi32(c03, d03);
        c10 = _mm512_add_epi32(c10, d10); c11 = _mm512_add_epi32(c11, d11);
        c12 = _mm512_add_epi32(c12, d12); c13 = _mm512_add_epi32(c13, d13);
    }
    V8_STORE(0, c0);
    if (MR > 1) V8_STORE(1, c1);
    if (MR > 2) V8_STORE(2, c2);
    if (MR > 3) V8_STORE(3, c3);
    if (MR > 4) V8_STORE(4, c4);
    if (MR > 5) V8_STORE(5, c5);
}

#define DEFINE_VNNI8(MR)                                                                     \
    KC_TARGET_AVX512_VNNI static void ukr_vnni8_##MR(const uint8_t *a, int64_t lda,          \
                                                     int64_t k, const int8_t *b,             \
                                                     const float *gs, int64_t gss,           \
                                                     int group, void *tile) {                \
        (void)gs; (void)gss; (void)group;                                                    \
        vnni8_body(MR, a, lda, k, b, (int32_t *)tile);                                       \
    }
DEFINE_VNNI8(1)
DEFINE_VNNI8(2)
DEFINE_VNNI8(3)
DEFINE_VNNI8(4)
DEFINE_VNNI8(5)
DEFINE_VNNI8(6)
static const qg_ukr vnni8[] = {NULL, ukr_vnni8_1, ukr_vnni8_2, ukr_vnni8_3,
                               ukr_vnni8_4, ukr_vnni8_5, ukr_vnni8_6};

/* int4: one 64-byte load holds two K quads (low / high nibbles) of 16 columns; both are
 * unpacked to 16*w bytes (shift + mask) once per register tile and fed to vpdpbusd for up to
 * 4 rows. One row keeps low and high quads in separate accumulators (8 independent chains).
 * At the end of each group the int32 sums are scaled into fp32 accumulators kept in the
 * (L1-resident) tile. */
#define V4_UNPACK(v)                                                                         \
    const __m512i raw##v = _mm512_loadu_si512(bp + 64 * (v));                                \
    const __m512i wl##v = _mm512_and_si512(_mm512_slli_epi16(raw##v, 4), mask);              \
    const __m512i wh##v = _mm512_and_si512(raw##v, mask)
#define V4_ROW(r)                                                                            \
    do {                                                                                     \
        const __m512i x_ = _mm512_set1_epi32((int32_t)load_u32(ap + (r) * la + 8 * p));     \
        const __m512i y_ = _mm512_set1_epi32((int32_t)load_u32(ap + (r) * la + 8 * p + 4));  \
        l##r##0 = _mm512_dpbusd_epi32(l##r##0, x_, wl0);                                     \
        l##r##1 = _mm512_dpbusd_epi32(l##r##1, x_, wl1);                                     \
        l##r##2 = _mm512_dpbusd_epi32(l##r##2, x_, wl2);                                     \
        l##r##3 = _mm512_dpbusd_epi32(l##r##3, x_, wl3);                                     \
        if (MR == 1) {                                                                       \
            h00 = _mm512_dpbusd_epi32(h00, y_, wh0);                                         \
            h01 = _mm512_dpbusd_epi32(h01, y_, wh1);                                         \
            h02 = _mm512_dpbusd_epi32(h02, y_, wh2);                                         \
            h03 = _mm512_dpbusd_epi32(h03, y_, wh3);                                         \
        } else {                                                                             \
            l##r##0 = _mm512_dpbusd_epi32(l##r##0, y_, wh0);                                 \
            l##r##1 = _mm512_dpbusd_epi32(l##r##1, y_, wh1);                                 \
            l##r##2 = _mm512_dpbusd_epi32(l##r##2, y_, wh2);                                 \
            l##r##3 = _mm512_dpbusd_epi32(l##r##3, y_, wh3);                                 \
        }                                                                                    \
    } while (0)
#define V4_SCALE1(r, v, ACC)                                                                 \
    _mm512_storeu_ps(tile + (r) * VNNI_NR + 16 * (v),                                        \
                     _mm512_fmadd_ps(_mm512_cvtepi32_ps(ACC), _mm512_loadu_ps(s + 16 * (v)), \
                                     _mm512_loadu_ps(tile + (r) * VNNI_NR + 16 * (v))))
#define V4_SCALE(r)                                                                          \
    do {                                                                                     \
        V4_SCALE1(r, 0, l##r##0); V4_SCALE1(r, 1, l##r##1);                                  \
        V4_SCALE1(r, 2, l##r##2); V4_SCALE1(r, 3, l##r##3);                                  \
    } while (0)

KC_TARGET_AVX512_VNNI static inline __attribute__((always_inline)) void
vnni4_body(const int MR, const uint8_t *a, int64_t lda, int64_t k, const int8_t *b,
           const float *gs, int64_t gss, int group, float *tile) {
    const __m512i mask = _mm512_set1_epi8((char)0xF0);
    for (int r = 0; r < MR; ++r)
        for (int v = 0; v < 4; ++v) _mm512_storeu_ps(tile + r * VNNI_NR + 16 * v, _mm512_setzero_ps());
    for (int64_t k0 = 0, g = 0; k0 < k; k0 += group, ++g) {
        const uint8_t *ap = a + k0;
        const int64_t la = lda;
        V8_DECL(l0); V8_DECL(l1); V8_DECL(l2); V8_DECL(l3); V8_DECL(h0);
        const int8_t *bp = b + (k0 / 2) * VNNI_NR;
        for (int p = 0; p < group / 8; ++p, bp += 256) {
            QG_PF_B(bp);
            V4_UNPACK(0); V4_UNPACK(1); V4_UNPACK(2); V4_UNPACK(3);
            V4_ROW(0);
            if (MR > 1) V4_ROW(1);
            if (MR > 2) V4_ROW(2);
            if (MR > 3) V4_ROW(3);
        }
        const float *s = gs + g * gss;
        if (MR == 1) {
            l00 = _mm512_add_epi32(l00, h00); l01 = _mm512_add_epi32(l01, h01);
            l02 = _mm512_add_epi32(l02, h02); l03 = _mm512_add_epi32(l03, h03);
        }
        V4_SCALE(0);
        if (MR > 1) V4_SCALE(1);
        if (MR > 2) V4_SCALE(2);
        if (MR > 3) V4_SCALE(3);
    }
}

/* One micro-kernel per row count, dispatching the group size as a constant: the inner loop
 * then has a fixed trip count, which keeps GCC from copying every accumulator around each
 * iteration. BODY is vnni4_body (1-3 rows) or vnni4h_body (4-6 rows, half panels). */
#define DEFINE_VNNI4_UKR(MR, BODY)                                                           \
    KC_TARGET_AVX512_VNNI static void ukr_vnni4_##MR(const uint8_t *a, int64_t lda,          \
                                                     int64_t k, const int8_t *b,             \
                                                     const float *gs, int64_t gss,           \
                                                     int group, void *tile) {                \
        switch (group) {                                                                     \
            case 16: BODY(MR, a, lda, k, b, gs, gss, 16, (float *)tile); break;              \
            case 32: BODY(MR, a, lda, k, b, gs, gss, 32, (float *)tile); break;              \
            case 64: BODY(MR, a, lda, k, b, gs, gss, 64, (float *)tile); break;              \
            case 128: BODY(MR, a, lda, k, b, gs, gss, 128, (float *)tile); break;            \
            default: BODY(MR, a, lda, k, b, gs, gss, group, (float *)tile); break;           \
        }                                                                                    \
    }
DEFINE_VNNI4_UKR(1, vnni4_body)
DEFINE_VNNI4_UKR(2, vnni4_body)
DEFINE_VNNI4_UKR(3, vnni4_body)

/* int4, 4 to 6 rows: half a panel (2 vectors = 32 columns) at a time, so that 6 rows x 2
 * vectors of accumulators, the unpacked weights and two broadcasts fit the 32 registers;
 * each unpacked weight vector then feeds 2*MR vpdpbusd (vs 6 with 3 rows x 4 vectors). */
#define V4H_ROW(r)                                                                           \
    do {                                                                                     \
        const __m512i x_ = _mm512_set1_epi32((int32_t)load_u32(ap + (r) * lda + 8 * p));    \
        const __m512i y_ = _mm512_set1_epi32((int32_t)load_u32(ap + (r) * lda + 8 * p + 4)); \
        l##r##0 = _mm512_dpbusd_epi32(l##r##0, x_, wl0);                                     \
        l##r##1 = _mm512_dpbusd_epi32(l##r##1, x_, wl1);                                     \
        l##r##0 = _mm512_dpbusd_epi32(l##r##0, y_, wh0);                                     \
        l##r##1 = _mm512_dpbusd_epi32(l##r##1, y_, wh1);                                     \
    } while (0)
#define V4H_SCALE(r)                                                                         \
    do {                                                                                     \
        V4_SCALE1(r, h2, l##r##0);                                                           \
        V4_SCALE1(r, h2 + 1, l##r##1);                                                       \
    } while (0)

KC_TARGET_AVX512_VNNI static inline __attribute__((always_inline)) void
vnni4h_body(const int MR, const uint8_t *a, int64_t lda, int64_t k, const int8_t *b,
            const float *gs, int64_t gss, int group, float *tile) {
    const __m512i mask = _mm512_set1_epi8((char)0xF0);
    for (int r = 0; r < MR; ++r)
        for (int v = 0; v < 4; ++v) _mm512_storeu_ps(tile + r * VNNI_NR + 16 * v, _mm512_setzero_ps());
    for (int h2 = 0; h2 < 4; h2 += 2) {
        for (int64_t k0 = 0, g = 0; k0 < k; k0 += group, ++g) {
            const uint8_t *ap = a + k0;
            __m512i l00 = _mm512_setzero_si512(), l01 = l00, l10 = l00, l11 = l00, l20 = l00,
                    l21 = l00, l30 = l00, l31 = l00, l40 = l00, l41 = l00, l50 = l00, l51 = l00;
            const int8_t *bp = b + (k0 / 2) * VNNI_NR + 64 * h2;
            for (int p = 0; p < group / 8; ++p, bp += 256) {
                QG_PF_B(bp - 64 * h2);
                const __m512i raw0 = _mm512_loadu_si512(bp);
                const __m512i raw1 = _mm512_loadu_si512(bp + 64);
                const __m512i wl0 = _mm512_and_si512(_mm512_slli_epi16(raw0, 4), mask);
                const __m512i wh0 = _mm512_and_si512(raw0, mask);
                const __m512i wl1 = _mm512_and_si512(_mm512_slli_epi16(raw1, 4), mask);
                const __m512i wh1 = _mm512_and_si512(raw1, mask);
                V4H_ROW(0); V4H_ROW(1); V4H_ROW(2); V4H_ROW(3);
                if (MR > 4) V4H_ROW(4);
                if (MR > 5) V4H_ROW(5);
            }
            const float *s = gs + g * gss;
            V4H_SCALE(0); V4H_SCALE(1); V4H_SCALE(2); V4H_SCALE(3);
            if (MR > 4) V4H_SCALE(4);
            if (MR > 5) V4H_SCALE(5);
        }
    }
}

DEFINE_VNNI4_UKR(4, vnni4h_body)
DEFINE_VNNI4_UKR(5, vnni4h_body)
DEFINE_VNNI4_UKR(6, vnni4h_body)
static const qg_ukr vnni4[] = {NULL, ukr_vnni4_1, ukr_vnni4_2, ukr_vnni4_3,
                               ukr_vnni4_4, ukr_vnni4_5, ukr_vnni4_6};

/* Vectorized output pipelines, 16 columns at a time (masked tail). Same arithmetic as the
 * scalar pipeline (explicit FMA), so every path gives identical results. */
KC_TARGET_AVX512_VNNI static void pipe8_avx512(const qgemm_args *a, const void *tile, int nr,
                                               int64_t i0, int mr, int64_t j0, int ncols,
                                               const int32_t *rowoff) {
    const int32_t *t = (const int32_t *)tile;
    /* Only the upper float clamp is needed: below -2^31 vcvtps2dq returns INT_MIN, which
     * the max with `lo` clamps like any negative value; vpmovusdb saturates at 255. */
    const __m512 lim = _mm512_set1_ps(16777216.0f);
    const __m512i zp = _mm512_set1_epi32(a->out_zero_point);
    const __m512i lo = _mm512_set1_epi32(a->relu ? a->out_zero_point : 0);
    for (int c = 0; c < ncols; c += 16) {
        const int64_t j = j0 + c;
        const __mmask16 m = (ncols - c) >= 16 ? (__mmask16)0xFFFF
                                               : (__mmask16)((1u << (ncols - c)) - 1u);
        const __m512i ci = _mm512_loadu_si512(a->col_i32 + j);
        const __m512i zb = a->b_zero_point ? _mm512_loadu_si512(a->b_zero_point + j)
                                           : _mm512_setzero_si512();
        for (int r = 0; r < mr; ++r) {
            const int64_t i = i0 + r;
            __m512i raw = _mm512_sub_epi32(_mm512_loadu_si512(t + r * nr + c), ci);
            if (a->b_zero_point)
                raw = _mm512_sub_epi32(raw, _mm512_mullo_epi32(zb, _mm512_set1_epi32(rowoff[i])));
            if (a->out_kind == QG_OUT_INT32) {
                _mm512_mask_storeu_epi32((int32_t *)a->out + i * a->ldo + j, m, raw);
            } else if (a->out_kind == QG_OUT_F32) {
                __m512 f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(raw),
                                           _mm512_loadu_ps(a->col_scale + j),
                                           _mm512_loadu_ps(a->col_bias + j));
                if (a->relu) f = _mm512_max_ps(f, _mm512_setzero_ps());
                _mm512_mask_storeu_ps((float *)a->out + i * a->ldo + j, m, f);
            } else {
                __m512 f = _mm512_add_ps(_mm512_cvtepi32_ps(raw), _mm512_loadu_ps(a->col_biasq + j));
                f = _mm512_mul_ps(f, _mm512_loadu_ps(a->col_mult + j));
                f = _mm512_min_ps(f, lim);
                __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(f), zp);
                q = _mm512_max_epi32(q, lo);
                _mm_mask_storeu_epi8((uint8_t *)a->out + i * a->ldo + j, m,
                                     _mm512_cvtusepi32_epi8(q));
            }
        }
    }
}

KC_TARGET_AVX512_VNNI static void pipe4_avx512(const qgemm_args *a, const void *tile, int nr,
                                               int64_t i0, int mr, int64_t j0, int ncols,
                                               const int32_t *rowoff) {
    (void)rowoff;
    const float *t = (const float *)tile;
    /* Only the upper float clamp is needed: below -2^31 vcvtps2dq returns INT_MIN, which
     * the max with `lo` clamps like any negative value; vpmovusdb saturates at 255. */
    const __m512 lim = _mm512_set1_ps(16777216.0f);
    const __m512i zp = _mm512_set1_epi32(a->out_zero_point);
    const __m512i lo = _mm512_set1_epi32(a->relu ? a->out_zero_point : 0);
    for (int c = 0; c < ncols; c += 16) {
        const int64_t j = j0 + c;
        const __mmask16 m = (ncols - c) >= 16 ? (__mmask16)0xFFFF
                                               : (__mmask16)((1u << (ncols - c)) - 1u);
        for (int r = 0; r < mr; ++r) {
            const int64_t i = i0 + r;
            const __m512 x = _mm512_sub_ps(_mm512_loadu_ps(t + r * nr + c),
                                           _mm512_loadu_ps(a->col_sub + j));
            __m512 f = _mm512_fmadd_ps(x, _mm512_loadu_ps(a->col_scale + j),
                                       _mm512_loadu_ps(a->col_bias + j));
            if (a->out_kind == QG_OUT_U8) {
                f = _mm512_mul_ps(f, _mm512_loadu_ps(a->col_mult + j));
                f = _mm512_min_ps(f, lim);
                __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(f), zp);
                q = _mm512_max_epi32(q, lo);
                _mm_mask_storeu_epi8((uint8_t *)a->out + i * a->ldo + j, m,
                                     _mm512_cvtusepi32_epi8(q));
            } else {
                if (a->relu) f = _mm512_max_ps(f, _mm512_setzero_ps());
                _mm512_mask_storeu_ps((float *)a->out + i * a->ldo + j, m, f);
            }
        }
    }
}

/* ------------------------------------------------------------ AVX2 */
/* int8: mr rows x 2 vectors of 8 columns; per K pair the 16 weight bytes of a vector are
 * sign-extended to int16 and multiplied with the zero-extended A pair by vpmaddwd (exact:
 * |a0*b0 + a1*b1| <= 2*255*128 fits int32; vpmaddubsw would saturate int16). */
KC_TARGET_AVX2 static inline __m256i bcast_pair(const uint8_t *p) {
    return _mm256_cvtepu8_epi16(_mm_set1_epi16((short)load_u16(p)));
}

#define A8_FMA(C, r)                                                                         \
    do {                                                                                     \
        const __m256i av_ = bcast_pair(a + (r) * lda + 2 * s);                               \
        C##0 = _mm256_add_epi32(C##0, _mm256_madd_epi16(av_, b0));                           \
        C##1 = _mm256_add_epi32(C##1, _mm256_madd_epi16(av_, b1));                           \
    } while (0)
#define A8_DECL(C) __m256i C##0 = _mm256_setzero_si256(), C##1 = C##0
#define A8_STORE(C, r)                                                                       \
    do {                                                                                     \
        _mm256_storeu_si256((__m256i *)(tile + (r) * AVX2_NR), C##0);                        \
        _mm256_storeu_si256((__m256i *)(tile + (r) * AVX2_NR + 8), C##1);                    \
    } while (0)

KC_TARGET_AVX2 static inline __attribute__((always_inline)) void
avx2_8_body(const int MR, const uint8_t *a, int64_t lda, int64_t k, const int8_t *b,
            int32_t *tile) {
    A8_DECL(c0); A8_DECL(c1); A8_DECL(c2); A8_DECL(c3); A8_DECL(c4); A8_DECL(c5);
    const int64_t ns = k / 2;
    for (int64_t s = 0; s < ns; ++s) {
        const int8_t *bs = b + s * 32;
        const __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)bs));
        const __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(bs + 16)));
        A8_FMA(c0, 0);
        if (MR > 1) A8_FMA(c1, 1);
        if (MR > 2) A8_FMA(c2, 2);
        if (MR > 3) A8_FMA(c3, 3);
        if (MR > 4) A8_FMA(c4, 4);
        if (MR > 5) A8_FMA(c5, 5);
    }
    A8_STORE(c0, 0);
    if (MR > 1) A8_STORE(c1, 1);
    if (MR > 2) A8_STORE(c2, 2);
    if (MR > 3) A8_STORE(c3, 3);
    if (MR > 4) A8_STORE(c4, 4);
    if (MR > 5) A8_STORE(c5, 5);
}

#define DEFINE_AVX2_8(MR)                                                                    \
    KC_TARGET_AVX2 static void ukr_avx2_8_##MR(const uint8_t *a, int64_t lda, int64_t k,     \
                                               const int8_t *b, const float *gs,             \
                                               int64_t gss, int group, void *tile) {         \
        (void)gs; (void)gss; (void)group;                                                    \
        avx2_8_body(MR, a, lda, k, b, (int32_t *)tile);                                      \
    }
DEFINE_AVX2_8(1)
DEFINE_AVX2_8(2)
DEFINE_AVX2_8(3)
DEFINE_AVX2_8(4)
DEFINE_AVX2_8(5)
DEFINE_AVX2_8(6)
static const qg_ukr avx2_8[] = {NULL, ukr_avx2_8_1, ukr_avx2_8_2, ukr_avx2_8_3,
                                ukr_avx2_8_4, ukr_avx2_8_5, ukr_avx2_8_6};

KC_TARGET_AVX2 static inline __attribute__((always_inline)) void
avx2_4_body(const int MR, const uint8_t *a, int64_t lda, int64_t k, const int8_t *b,
            const float *gs, int64_t gss, int group, float *tile) {
    __m256 facc[AVX2_4_MR][2];
    const __m128i mask = _mm_set1_epi8((char)0xF0);
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MR; ++r) facc[r][0] = facc[r][1] = _mm256_setzero_ps();
    for (int64_t k0 = 0, g = 0; k0 < k; k0 += group, ++g) {
        const uint8_t *ap = a + k0;
        const int64_t la = lda;
        __m256i acc[AVX2_4_MR][2];
        _Pragma("GCC unroll 8")
        for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
        const int8_t *bp = b + (k0 / 2) * AVX2_NR;
        for (int p = 0; p < group / 4; ++p, bp += 32) {
            _Pragma("GCC unroll 8")
            for (int v = 0; v < 2; ++v) {
                const __m128i raw = _mm_loadu_si128((const __m128i *)(bp + 16 * v));
                const __m256i wl = _mm256_cvtepi8_epi16(_mm_and_si128(_mm_slli_epi16(raw, 4), mask));
                const __m256i wh = _mm256_cvtepi8_epi16(_mm_and_si128(raw, mask));
                _Pragma("GCC unroll 8")
                for (int r = 0; r < MR; ++r) {
                    const __m256i s = _mm256_add_epi32(
                        _mm256_madd_epi16(bcast_pair(ap + r * la + 4 * p), wl),
                        _mm256_madd_epi16(bcast_pair(ap + r * la + 4 * p + 2), wh));
                    acc[r][v] = _mm256_add_epi32(acc[r][v], s);
                }
            }
        }
        const float *s = gs + g * gss;
        _Pragma("GCC unroll 8")
        for (int v = 0; v < 2; ++v) {
            const __m256 sv = _mm256_loadu_ps(s + 8 * v);
            _Pragma("GCC unroll 8")
            for (int r = 0; r < MR; ++r)
                facc[r][v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][v]), sv, facc[r][v]);
        }
    }
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MR; ++r) {
        _mm256_storeu_ps(tile + r * AVX2_NR, facc[r][0]);
        _mm256_storeu_ps(tile + r * AVX2_NR + 8, facc[r][1]);
    }
}

#define DEFINE_AVX2_4(MR)                                                                    \
    KC_TARGET_AVX2 static void ukr_avx2_4_##MR(const uint8_t *a, int64_t lda, int64_t k,     \
                                               const int8_t *b, const float *gs,             \
                                               int64_t gss, int group, void *tile) {         \
        avx2_4_body(MR, a, lda, k, b, gs, gss, group, (float *)tile);                        \
    }
DEFINE_AVX2_4(1)
DEFINE_AVX2_4(2)
static const qg_ukr avx2_4[] = {NULL, ukr_avx2_4_1, ukr_avx2_4_2};

KC_TARGET_AVX2 static void pipe8_avx2(const qgemm_args *a, const void *tile, int nr,
                                      int64_t i0, int mr, int64_t j0, int ncols,
                                      const int32_t *rowoff) {
    const int32_t *t = (const int32_t *)tile;
    for (int c = 0; c + 8 <= ncols; c += 8) {
        const int64_t j = j0 + c;
        const __m256i ci = _mm256_loadu_si256((const __m256i *)(a->col_i32 + j));
        for (int r = 0; r < mr; ++r) {
            const int64_t i = i0 + r;
            __m256i raw = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(t + r * nr + c)), ci);
            if (a->b_zero_point)
                raw = _mm256_sub_epi32(raw, _mm256_mullo_epi32(
                    _mm256_loadu_si256((const __m256i *)(a->b_zero_point + j)),
                    _mm256_set1_epi32(rowoff[i])));
            if (a->out_kind == QG_OUT_INT32) {
                _mm256_storeu_si256((__m256i *)((int32_t *)a->out + i * a->ldo + j), raw);
            } else if (a->out_kind == QG_OUT_F32) {
                __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(raw), _mm256_loadu_ps(a->col_scale + j),
                                           _mm256_loadu_ps(a->col_bias + j));
                if (a->relu) f = _mm256_max_ps(f, _mm256_setzero_ps());
                _mm256_storeu_ps((float *)a->out + i * a->ldo + j, f);
            } else {
                int32_t tmp[8];
                _mm256_storeu_si256((__m256i *)tmp, raw);
                for (int e = 0; e < 8; ++e) {
                    float f = ((float)tmp[e] + a->col_biasq[j + e]) * a->col_mult[j + e];
                    ((uint8_t *)a->out)[i * a->ldo + j + e] =
                        requant_u8(f, a->out_zero_point, a->relu);
                }
            }
        }
    }
    const int done = ncols & ~7;
    if (done < ncols) {
        for (int r = 0; r < mr; ++r)
            for (int c = done; c < ncols; ++c)
                pipe_one8(a, i0 + r, j0 + c, t[r * nr + c], rowoff ? rowoff[i0 + r] : 0);
    }
}
#endif /* KC_X86 */

/* ------------------------------------------------------------ driver */
typedef struct {
    const qg_ukr *ukr;
    qg_pipe pipe;
    int mr, nr;
} qg_path;

static int pick_path(const qgemm_args *a, qg_path *p) {
    const int int4 = a->bits == 4;
#if KC_X86
    if (a->isa >= KC_ISA_AVX512_VNNI) {
        p->ukr = int4 ? vnni4 : vnni8;
        p->pipe = int4 ? pipe4_avx512 : pipe8_avx512;
        p->mr = int4 ? VNNI4_MR : VNNI8_MR;
        p->nr = VNNI_NR;
        return KC_OK;
    }
    if (a->isa >= KC_ISA_AVX2) { /* AVX512F-only CPUs take this path too (no BW/VNNI) */
        p->ukr = int4 ? avx2_4 : avx2_8;
        p->pipe = int4 ? pipe4_scalar : pipe8_avx2;
        p->mr = int4 ? AVX2_4_MR : AVX2_8_MR;
        p->nr = AVX2_NR;
        return KC_OK;
    }
#else
    if (a->isa != KC_ISA_PORTABLE) return KC_ERR_ISA;
#endif
    p->ukr = int4 ? port4 : port8;
    p->pipe = int4 ? pipe4_scalar : pipe8_scalar;
    p->mr = PORT_MR;
    p->nr = PORT_NR;
    return KC_OK;
}

static int qgemm_run(qgemm_args *a) {
    if (a->bits != 8 && a->bits != 4) return KC_ERR_ARGS;
    if (a->bits == 4 && (a->group_size < 8 || a->group_size > QG_G_MAX || a->group_size % 8))
        return KC_ERR_ARGS;
    if (a->bits == 4 && a->out_kind == QG_OUT_INT32) return KC_ERR_ARGS;
    qg_path path;
    int rc = pick_path(a, &path);
    if (rc) return rc;
    a->blk.mr = path.mr;
    a->blk.nr = path.nr;
    if (a->m == 0 || a->n == 0) return KC_OK;
    int32_t *rowoff = NULL;
    if (a->b_zero_point && a->bits == 8) {
        rowoff = (int32_t *)malloc(sizeof(int32_t) * (size_t)a->m);
        if (!rowoff) return KC_ERR_NOMEM;
        for (int64_t i = 0; i < a->m; ++i) {
            int32_t s = 0;
            for (int64_t kk = 0; kk < a->k; ++kk) s += a->a[i * a->lda + kk];
            rowoff[i] = s;
        }
    }
    const int mr = path.mr, nr = path.nr;
    int64_t mc = a->blk.mc > 0 ? a->blk.mc : a->m;
    mc = (mc + mr - 1) / mr * mr;
    const int64_t panels = (a->n + nr - 1) / nr;
    int64_t ncp = a->blk.nc > 0 ? KC_MAX(1, a->blk.nc / nr) : panels;
    const int64_t n_mb = (a->m + mc - 1) / mc;
    const int nt = a->threads > 0 ? a->threads : 1;
    int64_t n_nb = (panels + ncp - 1) / ncp;
    if (n_mb * n_nb < nt) { /* too few blocks for the threads: narrow the N blocks */
        const int64_t want = (nt + n_mb - 1) / n_mb;
        ncp = KC_MAX(1, (panels + want - 1) / want);
        n_nb = (panels + ncp - 1) / ncp;
    }
    const int64_t tasks = n_mb * n_nb;
    const int64_t panel_bytes = (a->bits == 8 ? a->k_pad : a->k_pad / 2) * nr;
    /* Kernels run over k_pad (a multiple of their K step); when K is not, each task copies
     * its rows of A once into a zero-padded block, so no kernel ever reads past K. */
    const int64_t kp = a->k_pad;
    const int pad = kp != a->k;
    int failed = 0;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1) reduction(| : failed)
    for (int64_t t = 0; t < tasks; ++t) {
        _Alignas(64) int32_t tile[QG_MR_MAX * QG_NR_MAX];
        const int64_t mb = t / n_nb, nb = t % n_nb;
        const int64_t i0 = mb * mc, i1 = KC_MIN(a->m, i0 + mc);
        const int64_t p0 = nb * ncp, p1 = KC_MIN(panels, p0 + ncp);
        const uint8_t *ablk = a->a + i0 * a->lda;
        int64_t lda = a->lda;
        uint8_t *abuf = NULL;
        if (pad) {
            abuf = (uint8_t *)calloc((size_t)(i1 - i0), (size_t)kp);
            if (!abuf) {
                failed = 1;
                continue;
            }
            for (int64_t i = i0; i < i1; ++i)
                memcpy(abuf + (i - i0) * kp, a->a + i * a->lda, (size_t)a->k);
            ablk = abuf;
            lda = kp;
        }
        for (int64_t p = p0; p < p1; ++p) {
            const int64_t j0 = p * nr;
            const int ncols = (int)KC_MIN((int64_t)nr, a->n - j0);
            const int8_t *bp = a->b_packed + p * panel_bytes;
            const float *gs = a->b_group_scale ? a->b_group_scale + j0 : NULL;
            /* rows split evenly over the fewest tiles (20 rows = 5+5+5+5, not 6+6+6+2) */
            const int64_t ntile = (i1 - i0 + mr - 1) / mr;
            const int64_t base = (i1 - i0) / ntile, extra = (i1 - i0) % ntile;
            for (int64_t ti = 0, i = i0; ti < ntile; ++ti) {
                const int rows = (int)(base + (ti < extra));
                path.ukr[rows](ablk + (i - i0) * lda, lda, kp, bp, gs, a->n_pad,
                               a->group_size, tile);
                path.pipe(a, tile, nr, i, rows, j0, ncols, rowoff);
                i += rows;
            }
        }
        free(abuf);
    }
    free(rowoff);
    return failed ? KC_ERR_NOMEM : KC_OK;
}

int gemm_u8s8_acc32(void *args) {
    qgemm_args *a = (qgemm_args *)args;
    if (a->bits != 8) return KC_ERR_ARGS;
    return qgemm_run(a);
}

int gemm_s4s8_acc32(void *args) {
    qgemm_args *a = (qgemm_args *)args;
    if (a->bits != 4) return KC_ERR_ARGS;
    return qgemm_run(a);
}

/* ------------------------------------------------------------ naive references */
int gemm_u8s8_acc32_ref(void *args) {
    const qgemm_args *a = (const qgemm_args *)args;
    if (a->bits != 8) return KC_ERR_ARGS;
    for (int64_t i = 0; i < a->m; ++i) {
        int32_t rowsum = 0;
        for (int64_t kk = 0; kk < a->k; ++kk) rowsum += a->a[i * a->lda + kk];
        for (int64_t j = 0; j < a->n; ++j) {
            int64_t s = 0;
            for (int64_t kk = 0; kk < a->k; ++kk)
                s += (int64_t)a->a[i * a->lda + kk] * a->b_ref[j * a->k + kk];
            pipe_one8(a, i, j, (int32_t)s, rowsum);
        }
    }
    return KC_OK;
}

int gemm_s4s8_acc32_ref(void *args) {
    const qgemm_args *a = (const qgemm_args *)args;
    if (a->bits != 4 || a->out_kind == QG_OUT_INT32) return KC_ERR_ARGS;
    const int64_t ng = (a->k + a->group_size - 1) / a->group_size;
    for (int64_t i = 0; i < a->m; ++i)
        for (int64_t j = 0; j < a->n; ++j) {
            float acc = 0.0f;
            for (int64_t g = 0; g < ng; ++g) {
                int32_t s = 0;
                const int64_t k1 = KC_MIN(a->k, (g + 1) * a->group_size);
                for (int64_t kk = g * a->group_size; kk < k1; ++kk)
                    s += (int32_t)a->a[i * a->lda + kk] * a->b_ref[j * a->k + kk];
                acc = fmaf((float)s, a->b_ref_scale[j * ng + g], acc);
            }
            pipe_one4(a, i, j, acc);
        }
    return KC_OK;
}
