/* CSR sparse x dense GEMM, fp32, with AVX-512F / AVX2+FMA / portable paths. */
#include <stdlib.h>
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
/* The widest register tile (in vectors) that takes the second accumulator set: its 2 NV
 * accumulators, two broadcast values and a mask must fit the register file. AVX-512 (32
 * registers): 8. AVX2 (16): 4; with 5-7 vectors one set ran 1.0-1.4x faster at sparsity
 * 0.9-0.98 (N = 33-49, five shapes; AMD EPYC Zen 3, docs/spmm.md, twenty-fifth session). */
#define SPMM_TWO_SET_MAX_NV(VW) ((VW) == 8 ? 4 : 8)

/* How far ahead (in nonzeros: 2 KiB of values and of int32 indices, 1 KiB of uint16 ones)
 * the narrow-N and SpMV loops prefetch the CSR streams, which come from DRAM once A
 * outgrows the caches. On the Intel Xeon host, A from DRAM (4096 x 4096, sparsity
 * 0.5-0.98, 1 thread, interleaved with a 4096-ahead build: -D through the variant cache),
 * 512 ran 1.04-1.11x at N = 8, 1.01-1.06x at N = 1, 0.99-1.07x at N = 16, 1.03-1.07x at
 * N = 4, and 1.04-1.09x at N = 8 with A in the L3; 256 0.95-1.05x, 768 as 512
 * (eighteenth session, docs/spmm.md). On Zen 5 4096 had beaten 1024 (74 against 70 % of
 * the STREAM triad at N = 8); no prefetch at all ran 1.1x as fast while A sat in L3, but
 * 0.5-1x from DRAM. */
#ifndef SPMM_STREAM_AHEAD
#define SPMM_STREAM_AHEAD 512
#endif

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

void spmm_thread_rows(const int32_t *indptr, int64_t m, int threads, int64_t *bounds) {
    for (int t = 0; t < threads; ++t) row_range(indptr, m, t, threads, bounds + t, bounds + t + 1);
}

/* Floats between the rows of a slice of `cols` columns: cols rounded up to 16, so that
 * every row starts on a cache line. Rounded up to 32 (an even number of lines) ran
 * 0.88-1.00x at N = 40-49 (3-line rows padded to 4; docs/spmm.md, sixteenth session). */
static inline int64_t spmm_slice_row(int64_t cols) { return (cols + 15) / 16 * 16; }

/* Floats between the rows of a thread's slice scratch: that of the N tile (spmm.h,
 * slice_b). */
static inline int64_t spmm_slice_ld(const spmm_csr_f32_args *a) {
    return spmm_slice_row(a->n_tile > 0 && a->n_tile < a->n ? a->n_tile : a->n);
}

/* Floats of a thread's slice scratch: k_block rows of spmm_slice_ld, and room for a column
 * kept apart (spmm_copy_slice). A multiple of 16, so every thread's scratch starts on a
 * cache line. */
static inline size_t spmm_slice_floats(const spmm_csr_f32_args *a) {
    return (size_t)a->k_block * (size_t)(spmm_slice_ld(a) + 16);
}

/* ---------------------------------------------------------------- portable */
/* GCC/Clang generic vectors: SSE2 at the x86-64 baseline, NEON on aarch64, scalar code
 * elsewhere; no ISA intrinsics. A register tile of 8 x 4 columns per row, then 4-column
 * tiles, then scalar columns. */
typedef float kc_v4f __attribute__((vector_size(16)));

static inline kc_v4f load4(const float *p) {
    kc_v4f v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline void store4(float *p, kc_v4f v) { memcpy(p, &v, sizeof(v)); }

static void rows_portable(const spmm_csr_f32_args *a, int64_t r0, int64_t r1, int64_t p0,
                          int64_t p1, int64_t j0, int64_t j1) {
    (void)p0, (void)p1; /* (no K-block layout on this path) */
    const int32_t *restrict idx = a->indices;
    const float *restrict val = a->data;
    const int64_t ldb = a->ldb;
    for (int64_t i = r0; i < r1; ++i) {
        float *restrict crow = a->c + i * a->ldc;
        const int32_t p0 = a->indptr[i], p1 = a->indptr[i + 1];
        int64_t j = j0;
        for (; j + 32 <= j1; j += 32) {
            kc_v4f acc[8] = {{0}};
            for (int32_t p = p0; p < p1; ++p) {
                const kc_v4f w = {val[p], val[p], val[p], val[p]};
                const float *brow = a->b + (int64_t)idx[p] * ldb + j;
                for (int v = 0; v < 8; ++v) acc[v] += w * load4(brow + 4 * v);
            }
            for (int v = 0; v < 8; ++v) store4(crow + j + 4 * v, acc[v]);
        }
        for (; j + 4 <= j1; j += 4) {
            kc_v4f acc = {0};
            for (int32_t p = p0; p < p1; ++p) {
                const kc_v4f w = {val[p], val[p], val[p], val[p]};
                acc += w * load4(a->b + (int64_t)idx[p] * ldb + j);
            }
            store4(crow + j, acc);
        }
        for (; j < j1; ++j) {
            float s0 = 0.0f, s1 = 0.0f;
            int32_t p = p0;
            for (; p + 1 < p1; p += 2) {
                s0 += val[p] * a->b[(int64_t)idx[p] * ldb + j];
                s1 += val[p + 1] * a->b[(int64_t)idx[p + 1] * ldb + j];
            }
            if (p < p1) s0 += val[p] * a->b[(int64_t)idx[p] * ldb + j];
            crow[j] = s0 + s1;
        }
    }
}

#if KC_X86
/* The tile loops over its NV vectors must be unrolled so the accumulator arrays live in
 * registers: GCC 12 -O3 left them on the stack from NV = 5 on (reg_vectors = 8 ran at
 * 0.65x of 4). */
#define KC_UNROLL _Pragma("GCC unroll 16")

/* The last vector of a tile: under the mask `tail`, or (FULLTAIL) a plain load. GCC folds
 * an all-ones AVX-512 mask into a plain load, but not AVX2's vmaskmovps. */
#define LOAD_TAIL(FULLTAIL, LOAD, MLOAD, p) ((FULLTAIL) ? LOAD(p) : MLOAD((p), tail))

/* One register tile: NV vectors of VW columns of one output row, accumulated over the
 * nonzeros (idx, val, len) of one row (or one K block of it). The last vector is loaded and
 * stored under `tail` (the tilef_ functions, FULLTAIL: all lanes, unmasked); with HEAD (the
 * tileh_ functions), the first vector under `head` too (phased_rows_). With `accumulate`,
 * the tile starts from the current C values (K blocking) instead of zero. Inlined into
 * segment_: called once per row segment, the 8-vector tile ran 1.1-1.2x slower with K
 * blocks of 64-256 rows (384 x 2304 x 1280 at sparsity 0.9, segments of 6-26 nonzeros;
 * docs/spmm.md). */
#define DEFINE_TILE(NAME, NV, HEAD, FULLTAIL, TARGET, VEC, VW, ZERO, SET1, FMA, ADD, LOAD, \
                    STORE, MLOAD, MSTORE, MASK_T)                                            \
    TARGET static inline __attribute__((always_inline)) void NAME##_##NV(                  \
        const int32_t *restrict idx, const float *restrict val, int32_t len,                 \
        const float *restrict b, int64_t ldb, float *restrict c, MASK_T head, MASK_T tail,   \
        int accumulate, int pf) {                                                            \
        (void)head, (void)tail;                                                              \
        VEC acc0[NV], acc1[NV];                                                              \
        KC_UNROLL for (int v = 0; v < NV; ++v) acc0[v] = acc1[v] = ZERO();                   \
        if (accumulate) {                                                                    \
            KC_UNROLL for (int v = 0; v < NV - 1; ++v)                                       \
                acc0[v] = HEAD && v == 0 ? MLOAD(c, head) : LOAD(c + VW * v);                \
            acc0[NV - 1] = LOAD_TAIL(FULLTAIL, LOAD, MLOAD, c + VW * (NV - 1));              \
        }                                                                                    \
        int32_t p = 0;                                                                       \
        if (SPMM_ACC_SETS == 2 && NV <= SPMM_TWO_SET_MAX_NV(VW)) {                       \
            for (; p + 1 < len; p += 2) {                                                    \
                const float *b0 = b + (int64_t)idx[p] * ldb;                                 \
                const float *b1 = b + (int64_t)idx[p + 1] * ldb;                             \
                const VEC w0 = SET1(val[p]), w1 = SET1(val[p + 1]);                          \
                if (pf && p + pf + 1 < len) {                                                \
                    const float *f0 = b + (int64_t)idx[p + pf] * ldb;                        \
                    const float *f1 = b + (int64_t)idx[p + pf + 1] * ldb;                    \
                    KC_UNROLL for (int v = 0; v < NV; ++v) {                                 \
                        _mm_prefetch((const char *)(f0 + VW * v), _MM_HINT_T0);              \
                        _mm_prefetch((const char *)(f1 + VW * v), _MM_HINT_T0);              \
                    }                                                                        \
                }                                                                            \
                KC_UNROLL for (int v = 0; v < NV - 1; ++v) {                                 \
                    acc0[v] = FMA(w0, HEAD && v == 0 ? MLOAD(b0, head) : LOAD(b0 + VW * v),  \
                                  acc0[v]);                                                  \
                    acc1[v] = FMA(w1, HEAD && v == 0 ? MLOAD(b1, head) : LOAD(b1 + VW * v),  \
                                  acc1[v]);                                                  \
                }                                                                            \
                acc0[NV - 1] = FMA(w0, LOAD_TAIL(FULLTAIL, LOAD, MLOAD, b0 + VW * (NV - 1)), \
                                       acc0[NV - 1]);                                        \
                acc1[NV - 1] = FMA(w1, LOAD_TAIL(FULLTAIL, LOAD, MLOAD, b1 + VW * (NV - 1)), \
                                       acc1[NV - 1]);                                        \
            }                                                                                \
        }                                                                                    \
        for (; p < len; ++p) {                                                               \
            const float *b0 = b + (int64_t)idx[p] * ldb;                                     \
            const VEC w0 = SET1(val[p]);                                                     \
            KC_UNROLL for (int v = 0; v < NV - 1; ++v)                                       \
                acc0[v] = FMA(w0, HEAD && v == 0 ? MLOAD(b0, head) : LOAD(b0 + VW * v),      \
                              acc0[v]);                                                      \
            acc0[NV - 1] = FMA(w0, LOAD_TAIL(FULLTAIL, LOAD, MLOAD, b0 + VW * (NV - 1)),     \
                                   acc0[NV - 1]);                                            \
        }                                                                                    \
        KC_UNROLL for (int v = 0; v < NV - 1; ++v) {                                         \
            if (HEAD && v == 0) MSTORE(c, head, ADD(acc0[0], acc1[0]));                      \
            else STORE(c + VW * v, ADD(acc0[v], acc1[v]));                                   \
        }                                                                                    \
        if (FULLTAIL) STORE(c + VW * (NV - 1), ADD(acc0[NV - 1], acc1[NV - 1]));             \
        else MSTORE(c + VW * (NV - 1), tail, ADD(acc0[NV - 1], acc1[NV - 1]));               \
    }

/* A single-vector tile (N <= VW, or a 1-vector tail) has no register blocking to hide the
 * FMA latency, so it runs four independent accumulator chains over the nonzeros instead.
 * Four values at a time are loaded as one 128-bit quad, broadcast to every 128-bit lane
 * and splat by an in-lane permute: a scalar broadcast per nonzero would be a third load
 * per nonzero besides the index and the row of B, and loads are what limit this loop
 * (1.3-1.45x at N = 8 in a standalone test on Zen 5, docs/spmm.md); two quads per step
 * gave another 5 %. */
/* Four nonzeros from p on into the accumulators s0..s3, their values splat from quad w. */
#define NARROW_QUAD(FMA, SPLAT, MLOAD, w, p, t0, t1, t2, t3)                                 \
    t0 = FMA(SPLAT(w, 0x00), MLOAD(b + (int64_t)idx[(p)] * ldb, m), t0);                     \
    t1 = FMA(SPLAT(w, 0x55), MLOAD(b + (int64_t)idx[(p) + 1] * ldb, m), t1);                 \
    t2 = FMA(SPLAT(w, 0xaa), MLOAD(b + (int64_t)idx[(p) + 2] * ldb, m), t2);                 \
    t3 = FMA(SPLAT(w, 0xff), MLOAD(b + (int64_t)idx[(p) + 3] * ldb, m), t3);
#define DEFINE_NARROW(P, IDX_T, TARGET, VEC, ZERO, SET1, QUAD, SPLAT, FMA, ADD, MLOAD,     \
                      MSTORE, MASK_T)                                                        \
    TARGET static inline __attribute__((always_inline)) void narrow_##P(                   \
        const IDX_T *restrict idx, const float *restrict val, int32_t len,                   \
        const float *restrict b, int64_t ldb, float *restrict c, MASK_T m, int accumulate) { \
        VEC s0 = accumulate ? MLOAD(c, m) : ZERO(), s1 = ZERO(), s2 = ZERO(), s3 = ZERO();   \
        VEC s4 = ZERO(), s5 = ZERO(), s6 = ZERO(), s7 = ZERO();                              \
        int32_t p = 0;                                                                       \
        for (; p + 7 < len; p += 8) {                                                        \
            if (!(p & 15)) { /* a row of A streams from DRAM when N is this narrow */       \
                _mm_prefetch((const char *)(idx + p + SPMM_STREAM_AHEAD), _MM_HINT_T0);      \
                _mm_prefetch((const char *)(val + p + SPMM_STREAM_AHEAD), _MM_HINT_T0);      \
            }                                                                                \
            const VEC w = QUAD(val + p), x = QUAD(val + p + 4);                              \
            NARROW_QUAD(FMA, SPLAT, MLOAD, w, p, s0, s1, s2, s3)                             \
            NARROW_QUAD(FMA, SPLAT, MLOAD, x, p + 4, s4, s5, s6, s7)                         \
        }                                                                                    \
        if (p + 3 < len) {                                                                   \
            const VEC w = QUAD(val + p);                                                     \
            NARROW_QUAD(FMA, SPLAT, MLOAD, w, p, s0, s1, s2, s3)                             \
            p += 4;                                                                          \
        }                                                                                    \
        for (; p < len; ++p) s0 = FMA(SET1(val[p]), MLOAD(b + (int64_t)idx[p] * ldb, m), s0);\
        s0 = ADD(s0, s4), s1 = ADD(s1, s5), s2 = ADD(s2, s6), s3 = ADD(s3, s7);              \
        MSTORE(c, m, ADD(ADD(s0, s1), ADD(s2, s3)));                                         \
    }

/* The row loops read the argument block through a local copy: C is stored with intrinsics,
 * whose vector types may alias anything, so fields read through the caller's pointer were
 * reloaded (and spilled) after every row's store. Rows of N = 8 with 16 / 32 / 64 nonzeros:
 * 29 / 52 / 80 -> 24 / 44 / 72 cycles (docs/spmm.md). */
#define SPMM_LOCAL_ARGS(a_in, a)                                                             \
    const spmm_csr_f32_args a##_local = *(a_in), *a = &a##_local

/* Runs BODY for every row segment of the rows [r0, r1): nonzeros [s, s + len) of A's
 * arrays, row i, acc set for a later K block (added to C); BLOCK_START before the segments
 * of each K block kb of each block of rows (not run when A is not K blocked). A is stored
 * K block by K block
 * when a->kptr is set (spmm.h): the segment at position r of block kb is [kp[0], kp[1]),
 * of row r, or with a row order of row row_order[kb*M + r] -- visiting positions [p0, p1),
 * which hold the rows [r0, r1) when the order was made for this thread count (else all
 * positions, skipping other threads' rows); one block of rows then. */
#define SPMM_FOR_EACH_SEGMENT(a, r0, r1, p0, p1, BLOCK_START, BODY)                          \
    do {                                                                                     \
        if (!(a)->kptr) {                                                                    \
            for (int64_t i = (r0); i < (r1); ++i) {                                          \
                const int32_t s = (a)->indptr[i], len = (a)->indptr[i + 1] - s;              \
                const int acc = 0, kb __attribute__((unused)) = 0;                           \
                BODY;                                                                        \
            }                                                                                \
            break;                                                                           \
        }                                                                                    \
        const int64_t rb = (a)->row_order ? (a)->m : (a)->row_block;                         \
        for (int64_t ib = (r0); ib < (r1); ib += rb) {                                       \
            const int64_t ie = KC_MIN(ib + rb, (r1));                                        \
            const int64_t q0 = (a)->row_order ? (p0) : ib, q1 = (a)->row_order ? (p1) : ie;  \
            for (int kb = 0; kb < (a)->n_kblocks; ++kb) {                                    \
                BLOCK_START;                                                                 \
                const int32_t *order = (a)->row_order ? (a)->row_order + (int64_t)kb * (a)->m : 0; \
                for (int64_t r = q0; r < q1; ++r) {                                          \
                    const int64_t i = order ? order[r] : r;                                  \
                    if (order && (i < (r0) || i >= (r1))) continue;                          \
                    const int32_t *kp = (a)->kptr + (int64_t)kb * (a)->m + r;                \
                    if (kb > 0 && kp[1] == kp[0]) continue;                                  \
                    const int32_t s = kp[0], len = kp[1] - kp[0];                            \
                    const int acc = kb > 0;                                                  \
                    BODY;                                                                    \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    } while (0)

/* The rows of a column range without peel, for register tiles of NV vectors: the full
 * tiles inlined in the segment loop, the rest of the columns (one masked tile) by
 * segment_. Against a call of segment_ per row segment: 62-64 -> 68-69 GFLOP/s with K
 * blocks of 64 rows (384 x 2304 x 1280, sparsity 0.9, segments of 6 nonzeros), +4 % with
 * 128-256; 1.00-1.05x on bench_spmm_params' default shapes (docs/spmm.md). With
 * slice_of, a_in's B is the thread's slice scratch, refilled from slice_of's B (its columns
 * from slice_j0 on) at the start of each K block. */
#define DEFINE_WIDE_ROWS(P, NV, TARGET, VW, FULL, COLUMN_DOT)                                \
    TARGET static void wide_rows_##P##_##NV(const spmm_csr_f32_args *a_in, int64_t r0,       \
                                            int64_t r1, int64_t p0, int64_t p1, int64_t j0,  \
                                            int64_t j1, const spmm_csr_f32_args *slice_of,   \
                                            int64_t slice_j0, int apart) {                   \
        SPMM_LOCAL_ARGS(a_in, a);                                                            \
        const int64_t w = (int64_t)VW * NV, jt = j1 - apart;                                 \
        const float *column = a->b + (int64_t)a->k_block * a->ldb; /* when apart */          \
        const int pf = a->prefetch;                                                          \
        SPMM_FOR_EACH_SEGMENT(a, r0, r1, p0, p1,                                             \
                              if (slice_of) spmm_copy_slice(slice_of, kb, slice_j0, j1 - j0, \
                                                            a->ldb, apart),                  \
                              {                                                              \
            float *crow = a->c + i * a->ldc;                                                 \
            int64_t j = j0;                                                                  \
            for (; j + w <= jt; j += w)                                                      \
                tilef_##P##_##NV(a->indices + s, a->data + s, len, a->b + j, a->ldb,         \
                                 crow + j, FULL, FULL, acc, pf);                             \
            if (j < jt) segment_##P(a, s, len, crow, j, jt, acc);                            \
            if (apart) {                                                                     \
                const float d = COLUMN_DOT(a->indices + s, a->data + s, len, column);        \
                crow[jt] = acc ? crow[jt] + d : d;                                           \
            }                                                                                \
        });                                                                                  \
    }

/* Rows [kb*k_block, ...) of B's columns [j0, j0 + w) into this thread's slice scratch,
 * rows ld floats apart; with `apart`, the last of the w columns goes instead to a column of
 * its own after k_block such rows (where wide_rows_ reads it). */
static inline void spmm_copy_slice(const spmm_csr_f32_args *a, int kb, int64_t j0,
                                   int64_t w, int64_t ld, int apart) {
    const int64_t k0 = (int64_t)kb * a->k_block, k1 = KC_MIN(k0 + a->k_block, a->k);
    const int64_t rows = w - apart;
    float *column = a->slice_buf + (int64_t)a->k_block * ld;
    for (int64_t r = k0; r < k1; ++r) {
        const float *src = a->b + r * a->ldb + j0;
        memcpy(a->slice_buf + (r - k0) * ld, src, (size_t)rows * sizeof(float));
        if (apart) column[r - k0] = src[rows];
    }
}

/* All register tiles of columns [j0, j1) for one row segment, then the driver over the
 * segments. */
#define DEFINE_ROWS(P, TARGET, VW, MASK_T, FULL, TAILMASK, HEADMASK, DOT, COLUMN_DOT,      \
                    NARROW_REST, NARROW_ROWS, ROW_TILE)                                      \
    TARGET static inline void segment_##P(const spmm_csr_f32_args *a, int32_t s, int32_t len,\
                                          float *crow, int64_t j0, int64_t j1, int acc) {    \
        const int nv = a->reg_vectors, pf = a->prefetch;                                     \
        const int64_t w = (int64_t)VW * nv;                                                  \
        const int32_t *idx = a->indices + s;                                                 \
        const float *val = a->data + s;                                                      \
        int64_t j = j0;                                                                      \
        if (a->peel > 0 && j1 - j0 > a->peel) { /* then the tiles load B aligned */          \
            NARROW_REST(idx, val, len, a->b + j, a->ldb, crow + j, a->peel, acc);            \
            j += a->peel;                                                                    \
        }                                                                                    \
        for (; j + w <= j1; j += w) {                                                        \
            const float *bj = a->b + j;                                                      \
            switch (nv) {                                                                    \
                case 8:                                                                   \
                    tilef_##P##_8(idx, val, len, bj, a->ldb, crow + j, FULL, FULL, acc, pf);  \
                    break;                                                                   \
                case 4:                                                                   \
                    tilef_##P##_4(idx, val, len, bj, a->ldb, crow + j, FULL, FULL, acc, pf);  \
                    break;                                                                   \
                case 2:                                                                   \
                    tilef_##P##_2(idx, val, len, bj, a->ldb, crow + j, FULL, FULL, acc, pf);  \
                    break;                                                                   \
                default: narrow_##P##_full(idx, val, len, bj, a->ldb, crow + j, FULL, acc); break; \
            }                                                                                \
        }                                                                                    \
        if (j < j1) { /* one tile covers the rest: ceil(rest / VW) vectors, last one masked */ \
            const int64_t rest = j1 - j;                                                     \
            const MASK_T m = TAILMASK(rest - (int64_t)VW * ((rest - 1) / VW));               \
            const float *bj = a->b + j;                                                      \
            float *cj = crow + j;                                                            \
            switch ((rest + VW - 1) / VW) {                                                  \
                case 1: NARROW_REST(idx, val, len, bj, a->ldb, cj, rest, acc); break;        \
                case 2: tile_##P##_2(idx, val, len, bj, a->ldb, cj, FULL, m, acc, pf); break; \
                case 3: tile_##P##_3(idx, val, len, bj, a->ldb, cj, FULL, m, acc, pf); break; \
                case 4: tile_##P##_4(idx, val, len, bj, a->ldb, cj, FULL, m, acc, pf); break; \
                case 5: tile_##P##_5(idx, val, len, bj, a->ldb, cj, FULL, m, acc, pf); break; \
                case 6: tile_##P##_6(idx, val, len, bj, a->ldb, cj, FULL, m, acc, pf); break; \
                case 7: tile_##P##_7(idx, val, len, bj, a->ldb, cj, FULL, m, acc, pf); break; \
                default: tile_##P##_8(idx, val, len, bj, a->ldb, cj, FULL, m, acc, pf); break; \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    /* With phase_period, a K block's rows of B all start o floats past a vector boundary \
     * (spmm.h): they are read in place at aligned addresses, the tiles shifted o columns, \
     * the first vector's lanes below o masked (in B and in C). */                          \
    TARGET static void phased_rows_##P(const spmm_csr_f32_args *a_in, int64_t r0, int64_t r1,\
                                       int64_t p0, int64_t p1, int64_t j0, int64_t j1) {     \
        SPMM_LOCAL_ARGS(a_in, a);                                                            \
        spmm_csr_f32_args as = *a; /* B from o floats before its rows: for segment_ */     \
        as.peel = 0;                                                                         \
        const int64_t b_off = (int64_t)(((uintptr_t)a->b / sizeof(float)) % VW);            \
        const int nv = a->reg_vectors, pf = a->prefetch;                                     \
        const int64_t w = (int64_t)VW * nv;                                                  \
        int64_t o = 0;                                                                       \
        MASK_T head = FULL;                                                                  \
        SPMM_FOR_EACH_SEGMENT(a, r0, r1, p0, p1, {                                           \
            o = (b_off + (int64_t)(kb / a->phase_blocks) * a->ldb) % VW;                     \
            head = HEADMASK(o);                                                              \
            as.b = a->b - o;                                                                 \
        }, {                                                                                 \
            /* actual column y is shifted column y + o: [j0, j1) -> [j0 + o, j1 + o), from  \
             * the aligned j0 on with lanes [j0, j0 + o) left out */                         \
            float *cs = a->c + i * a->ldc - o;                                               \
            const int64_t ws = j1 + o;                                                       \
            int64_t j = j0;                                                                  \
            if (ROW_TILE(a->indices + s, a->data + s, len, as.b + j0, as.ldb, cs + j0, head, \
                         ws - j0, acc, pf))                                                  \
                continue; /* (the next segment) */                                          \
            if (o) { /* the head tile: >= 2 vectors, as j1 - j0 > VW (spmm.h) */            \
                const int32_t *idx = a->indices + s;                                         \
                const float *val = a->data + s;                                              \
                const float *bj = as.b + j0;                                                 \
                float *cj = cs + j0;                                                         \
                const int64_t ld = as.ldb; /* (no comma: a macro argument) */              \
                const int64_t hw = KC_MIN(w, ws - j0);                                       \
                const MASK_T m = TAILMASK(hw - (int64_t)VW * ((hw - 1) / VW));               \
                switch ((hw + VW - 1) / VW) {                                                \
                    case 2: tileh_##P##_2(idx, val, len, bj, ld, cj, head, m, acc, pf); break; \
                    case 3: tileh_##P##_3(idx, val, len, bj, ld, cj, head, m, acc, pf); break; \
                    case 4: tileh_##P##_4(idx, val, len, bj, ld, cj, head, m, acc, pf); break; \
                    case 5: tileh_##P##_5(idx, val, len, bj, ld, cj, head, m, acc, pf); break; \
                    case 6: tileh_##P##_6(idx, val, len, bj, ld, cj, head, m, acc, pf); break; \
                    case 7: tileh_##P##_7(idx, val, len, bj, ld, cj, head, m, acc, pf); break; \
                    default: tileh_##P##_8(idx, val, len, bj, ld, cj, head, m, acc, pf); break; \
                }                                                                            \
                j += hw;                                                                     \
            }                                                                                \
            if (j < ws) segment_##P(&as, s, len, cs, j, ws, acc);                            \
        });                                                                                  \
    }                                                                                        \
    DEFINE_WIDE_ROWS(P, 8, TARGET, VW, FULL, COLUMN_DOT)                                     \
    DEFINE_WIDE_ROWS(P, 4, TARGET, VW, FULL, COLUMN_DOT)                                     \
    /* With column_apart, under register tiles of 4 or 8 vectors, a last column that alone \
     * would take a masked vector (N = 49 = 3 x 16 + 1: a quarter of the loads and FMAs) is  \
     * kept apart in the slice, as a column of its own that COLUMN_DOT reads (spmm.h). */   \
    TARGET static void sliced_rows_##P(const spmm_csr_f32_args *a, int64_t r0, int64_t r1,  \
                                       int64_t p0, int64_t p1, int64_t j0, int64_t j1) {     \
        const int64_t w = j1 - j0;                                                           \
        const int wide = a->reg_vectors == 8 || a->reg_vectors == 4;                         \
        const int apart = a->column_apart && wide && w > VW && w % VW == 1;                  \
        /* a local copy, as SPMM_LOCAL_ARGS: B from the slice, C from column j0 on */      \
        spmm_csr_f32_args as = *a;                                                           \
        as.b = a->slice_buf, as.c = a->c + j0, as.peel = 0;                                  \
        as.ldb = apart ? spmm_slice_row(w - 1) : spmm_slice_ld(a);                           \
        switch (a->reg_vectors) {                                                            \
            case 8: wide_rows_##P##_8(&as, r0, r1, p0, p1, 0, w, a, j0, apart); return;      \
            case 4: wide_rows_##P##_4(&as, r0, r1, p0, p1, 0, w, a, j0, apart); return;      \
            default: break;                                                                  \
        }                                                                                    \
        SPMM_FOR_EACH_SEGMENT(&as, r0, r1, p0, p1, spmm_copy_slice(a, kb, j0, w, as.ldb, 0),  \
                              segment_##P(&as, s, len, as.c + i * as.ldc, 0, w, acc));       \
    }                                                                                        \
    TARGET static void rows_##P(const spmm_csr_f32_args *a, int64_t r0, int64_t r1,          \
                                int64_t p0, int64_t p1, int64_t j0, int64_t j1) {            \
        if (a->n == 1) {                                                                     \
            for (int64_t i = r0; i < r1; ++i) {                                              \
                const int32_t s = a->indptr[i];                                              \
                a->c[i * a->ldc] = DOT(a->indices + s, a->data + s, a->indptr[i + 1] - s,    \
                                       a->b, a->ldb);                                        \
            }                                                                                \
            return;                                                                          \
        }                                                                                    \
        if (a->phase_period > 1) {                                                           \
            phased_rows_##P(a, r0, r1, p0, p1, j0, j1);                                      \
            return;                                                                          \
        }                                                                                    \
        if (a->slice_buf) {                                                                  \
            sliced_rows_##P(a, r0, r1, p0, p1, j0, j1);                                      \
            return;                                                                          \
        }                                                                                    \
        const int64_t w = j1 - j0;                                                           \
        if (w <= VW && (a->peel <= 0 || w <= a->peel)) { /* one vector per row */           \
            NARROW_ROWS(a, r0, r1, p0, p1, j0, w);                                           \
            return;                                                                          \
        }                                                                                    \
        if (a->peel <= 0) {                                                                  \
            switch (a->reg_vectors) {                                                        \
                case 8: wide_rows_##P##_8(a, r0, r1, p0, p1, j0, j1, NULL, 0, 0); return;    \
                case 4: wide_rows_##P##_4(a, r0, r1, p0, p1, j0, j1, NULL, 0, 0); return;    \
                default: break;                                                              \
            }                                                                                \
        }                                                                                    \
        SPMM_LOCAL_ARGS(a, al);                                                              \
        SPMM_FOR_EACH_SEGMENT(al, r0, r1, p0, p1, (void)0,                                   \
                              segment_##P(al, s, len, al->c + i * al->ldc, j0, j1, acc));    \
    }

/* The rows of a narrow N (one vector per row) with the kernel chosen once per call, not
 * per segment: rows of a few dozen nonzeros cost ~20 cycles besides their nonzeros at
 * sparsity 0.9+, and the per-segment dispatch of segment_ was part of it (~10 of them left
 * with SPMM_LOCAL_ARGS). */
#define DEFINE_NARROW_ROWS(P, TARGET, KERNEL, MASK_T, MASK)                                  \
    TARGET static void narrow_rows_##P(const spmm_csr_f32_args *a_in, int64_t r0, int64_t r1, \
                                       int64_t p0, int64_t p1, int64_t j0, int64_t w) {      \
        SPMM_LOCAL_ARGS(a_in, a);                                                            \
        const float *b = a->b + j0;                                                          \
        const int64_t ldb = a->ldb;                                                          \
        const MASK_T m = MASK(w);                                                            \
        if (a->indices16) { /* offsets of B's rows from the K block's first: ldb 1 */       \
            SPMM_FOR_EACH_SEGMENT(a, r0, r1, p0, p1, (void)0,                                \
                                  KERNEL##_i16(a->indices16 + s, a->data + s, len,           \
                                               b + (int64_t)kb * a->k_block * ldb, 1,        \
                                               a->c + i * a->ldc + j0, m, acc));             \
            return;                                                                          \
        }                                                                                    \
        SPMM_FOR_EACH_SEGMENT(a, r0, r1, p0, p1, (void)0,                                    \
                              KERNEL(a->indices + s, a->data + s, len, b, ldb,               \
                                     a->c + i * a->ldc + j0, m, acc));                       \
    }

/* ---------------------------------------------------------------- AVX-512F */
#define MLOAD512(p, m) _mm512_maskz_loadu_ps((m), (p))
#define MSTORE512(p, m, v) _mm512_mask_storeu_ps((p), (m), (v))
#define TAIL512(rem) ((rem) >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (rem)) - 1u))
#define HEAD512(o) ((__mmask16)(0xffffu << (o)))
#define TILE512(NAME, HEAD, FULLTAIL, NV)                                                    \
    DEFINE_TILE(NAME, NV, HEAD, FULLTAIL, KC_TARGET_AVX512, __m512, 16, _mm512_setzero_ps,   \
                _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_loadu_ps,             \
                _mm512_storeu_ps, MLOAD512, MSTORE512, __mmask16)
#define TILES512(NV) TILE512(tile_avx512, 0, 0, NV) TILE512(tileh_avx512, 1, 0, NV)
TILES512(2)
TILES512(3)
TILES512(4)
TILES512(5)
TILES512(6)
TILES512(7)
TILES512(8)
TILE512(tilef_avx512, 0, 1, 2) /* (full tiles: wide_rows_, segment_) */
TILE512(tilef_avx512, 0, 1, 4)
TILE512(tilef_avx512, 0, 1, 8)
TILE512(tileh_avx512, 1, 0, 9) /* (row_tile_avx512) */
TILE512(tileh_avx512, 1, 0, 10)
TILE512(tileh_avx512, 1, 0, 11)
TILE512(tileh_avx512, 1, 0, 12)
TILE512(tileh_avx512, 1, 0, 13)
TILE512(tileh_avx512, 1, 0, 14)
TILE512(tileh_avx512, 1, 0, 15)
TILE512(tileh_avx512, 1, 0, 16)
#define QUAD512(p) _mm512_broadcast_f32x4(_mm_loadu_ps(p))
#define NARROW512(P, IDX_T)                                                                  \
    DEFINE_NARROW(P, IDX_T, KC_TARGET_AVX512, __m512, _mm512_setzero_ps, _mm512_set1_ps,     \
                  QUAD512, _mm512_permute_ps, _mm512_fmadd_ps, _mm512_add_ps, MLOAD512,      \
                  MSTORE512, __mmask16)
NARROW512(avx512, int32_t)
NARROW512(avx512_i16, uint16_t)
/* A full 16-column row needs no mask (a zero-masked load of B cannot be folded into the
 * FMA): 1.06-1.24x at N = 16 with A from DRAM, 1.07-1.31x with A in the L3 (4096 x 4096,
 * sparsity 0.5-0.98, 1 thread, Intel Xeon; docs/spmm.md). Splatting the values by
 * broadcast loads instead of the in-lane permute: 0.90-1.02x. */
#define LOAD512_NOMASK(p, m) _mm512_loadu_ps(p)
#define STORE512_NOMASK(p, m, v) _mm512_storeu_ps((p), (v))
#define NARROW512_FULL(P, IDX_T)                                                             \
    DEFINE_NARROW(P, IDX_T, KC_TARGET_AVX512, __m512, _mm512_setzero_ps, _mm512_set1_ps,     \
                  QUAD512, _mm512_permute_ps, _mm512_fmadd_ps, _mm512_add_ps,                \
                  LOAD512_NOMASK, STORE512_NOMASK, __mmask16)
NARROW512_FULL(avx512_full, int32_t)
NARROW512_FULL(avx512_full_i16, uint16_t)

/* N == 1 (SpMV): 16 nonzeros per vector FMA. The 16 elements of b are fetched with scalar
 * loads into a stack vector rather than vgatherdps: on Zen 5 the gather delivers 3.3
 * nonzeros/ns, scalar loads 4.5-5.0 while the matrix is cache-resident; from DRAM both
 * reach 3.3, and 3.9 with the idx/val streams prefetched ahead (docs/spmm.md). */
KC_TARGET_AVX512 static float dot_avx512(const int32_t *restrict idx, const float *restrict val,
                                         int32_t len, const float *restrict b, int64_t ldb) {
    __m512 acc = _mm512_setzero_ps();
    float g[16] __attribute__((aligned(64)));
    int64_t p = 0; /* an int32 p sign-extended p + q for every idx[p + q]: 1.1-1.2x */
    for (; p + 16 <= len; p += 16) {
        _mm_prefetch((const char *)(idx + p + SPMM_STREAM_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(val + p + SPMM_STREAM_AHEAD), _MM_HINT_T0);
        for (int q = 0; q < 16; ++q) g[q] = b[(int64_t)idx[p + q] * ldb];
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(val + p), _mm512_load_ps(g), acc);
    }
    float s = _mm512_reduce_add_ps(acc);
    for (; p < len; ++p) s += val[p] * b[(int64_t)idx[p] * ldb];
    return s;
}
/* The dot product of a row segment with a contiguous column (spmm_copy_slice's column
 * apart): 16 nonzeros per gather, the last ones under a mask -- segments of K blocks are a
 * few dozen nonzeros, where dot_avx512's scalar remainder would be a serial chain. */
KC_TARGET_AVX512 static inline float column_dot_avx512(const int32_t *restrict idx,
                                                       const float *restrict val, int32_t len,
                                                       const float *restrict column) {
    __m512 acc = _mm512_setzero_ps();
    int32_t p = 0;
    for (; p + 16 <= len; p += 16)
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(val + p),
                              _mm512_i32gather_ps(_mm512_loadu_si512(idx + p), column, 4), acc);
    if (p < len) {
        const __mmask16 m = (__mmask16)((1u << (len - p)) - 1u);
        const __m512 g = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m,
                                                  _mm512_maskz_loadu_epi32(m, idx + p),
                                                  column, 4);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, val + p), g, acc);
    }
    return _mm512_reduce_add_ps(acc);
}
/* A tail of at most 8 columns (all of B when N <= 8) runs on the 256-bit code: half-width
 * loads instead of half-masked 512-bit ones (1.1-1.3x in a standalone N = 8 test; Zen 4
 * splits zmm operations in two). Every AVX-512F CPU, Xeon Phi included, has AVX2 + FMA. */
KC_TARGET_AVX2 static void narrow_rest_avx2(const int32_t *restrict idx,
                                            const float *restrict val, int32_t len,
                                            const float *restrict b, int64_t ldb,
                                            float *restrict c, int64_t rest, int accumulate);
KC_TARGET_AVX512 static void narrow_rest_avx512(const int32_t *restrict idx,
                                                const float *restrict val, int32_t len,
                                                const float *restrict b, int64_t ldb,
                                                float *restrict c, int64_t rest,
                                                int accumulate) {
    if (rest <= 8) narrow_rest_avx2(idx, val, len, b, ldb, c, rest, accumulate);
    else if (rest == 16) narrow_avx512_full(idx, val, len, b, ldb, c, TAIL512(rest), accumulate);
    else narrow_avx512(idx, val, len, b, ldb, c, TAIL512(rest), accumulate);
}
KC_TARGET_AVX2 static void narrow_rows_avx2_any(const spmm_csr_f32_args *a, int64_t r0,
                                                int64_t r1, int64_t p0, int64_t p1,
                                                int64_t j0, int64_t w);
DEFINE_NARROW_ROWS(avx512, KC_TARGET_AVX512, narrow_avx512, __mmask16, TAIL512)
DEFINE_NARROW_ROWS(avx512_full, KC_TARGET_AVX512, narrow_avx512_full, __mmask16, TAIL512)
KC_TARGET_AVX512 static void narrow_rows_avx512_any(const spmm_csr_f32_args *a, int64_t r0,
                                                    int64_t r1, int64_t p0, int64_t p1,
                                                    int64_t j0, int64_t w) {
    if (w <= 8) narrow_rows_avx2_any(a, r0, r1, p0, p1, j0, w);
    else if (w == 16) narrow_rows_avx512_full(a, r0, r1, p0, p1, j0, w);
    else narrow_rows_avx512(a, r0, r1, p0, p1, j0, w);
}
/* Columns [0, width) of a shifted row of C, 9-16 vectors, as one register tile of one
 * accumulator set (the head mask on the first vector, the last vector masked): returns 0,
 * doing nothing, for other widths. */
KC_TARGET_AVX512 static inline int row_tile_avx512(const int32_t *restrict idx,
                                                   const float *restrict val, int32_t len,
                                                   const float *restrict b, int64_t ldb,
                                                   float *restrict c, __mmask16 head,
                                                   int64_t width, int acc, int pf) {
    const __mmask16 m = TAIL512(width - 16 * ((width - 1) / 16));
    switch ((width + 15) / 16) {
        case 9: tileh_avx512_9(idx, val, len, b, ldb, c, head, m, acc, pf); return 1;
        case 10: tileh_avx512_10(idx, val, len, b, ldb, c, head, m, acc, pf); return 1;
        case 11: tileh_avx512_11(idx, val, len, b, ldb, c, head, m, acc, pf); return 1;
        case 12: tileh_avx512_12(idx, val, len, b, ldb, c, head, m, acc, pf); return 1;
        case 13: tileh_avx512_13(idx, val, len, b, ldb, c, head, m, acc, pf); return 1;
        case 14: tileh_avx512_14(idx, val, len, b, ldb, c, head, m, acc, pf); return 1;
        case 15: tileh_avx512_15(idx, val, len, b, ldb, c, head, m, acc, pf); return 1;
        case 16: tileh_avx512_16(idx, val, len, b, ldb, c, head, m, acc, pf); return 1;
        default: return 0;
    }
}
DEFINE_ROWS(avx512, KC_TARGET_AVX512, 16, __mmask16, (__mmask16)0xffff, TAIL512, HEAD512,
            dot_avx512, column_dot_avx512, narrow_rest_avx512, narrow_rows_avx512_any,
            row_tile_avx512)

/* ---------------------------------------------------------------- AVX2 + FMA */
KC_TARGET_AVX2 static inline __m256i tail256(int64_t rem) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)KC_MIN(rem, 8)), lanes);
}
KC_TARGET_AVX2 static inline __m256i head256(int64_t o) { /* lanes >= o */
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(lanes, _mm256_set1_epi32((int)o - 1));
}
#define MLOAD256(p, m) _mm256_maskload_ps((p), (m))
#define MSTORE256(p, m, v) _mm256_maskstore_ps((p), (m), (v))
#define TILE256(NAME, HEAD, FULLTAIL, NV)                                                    \
    DEFINE_TILE(NAME, NV, HEAD, FULLTAIL, KC_TARGET_AVX2, __m256, 8, _mm256_setzero_ps,      \
                _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_loadu_ps,             \
                _mm256_storeu_ps, MLOAD256, MSTORE256, __m256i)
#define TILES256(NV) TILE256(tile_avx2, 0, 0, NV) TILE256(tileh_avx2, 1, 0, NV)
TILES256(2)
TILES256(3)
TILES256(4)
TILES256(5)
TILES256(6)
TILES256(7)
TILES256(8)
/* Full tiles unmasked: vmaskmovps cannot be folded into the FMA and its store form is
 * slow on AMD cores. Against masked full tiles 1.05-1.32x at sparsity 0.5-0.9 on four
 * shapes with N = 128-3136 (AMD EPYC Zen 3, docs/spmm.md, twenty-second session). */
TILE256(tilef_avx2, 0, 1, 2)
TILE256(tilef_avx2, 0, 1, 4)
TILE256(tilef_avx2, 0, 1, 8)
#define QUAD256(p) _mm256_broadcast_ps((const __m128 *)(p))
#define NARROW256(P, IDX_T, MLOAD, MSTORE)                                                   \
    DEFINE_NARROW(P, IDX_T, KC_TARGET_AVX2, __m256, _mm256_setzero_ps, _mm256_set1_ps,       \
                  QUAD256, _mm256_permute_ps, _mm256_fmadd_ps, _mm256_add_ps, MLOAD, MSTORE, \
                  __m256i)
NARROW256(avx2, int32_t, MLOAD256, MSTORE256)
NARROW256(avx2_i16, uint16_t, MLOAD256, MSTORE256)
/* A full 8-column row needs no mask: plain loads and stores. */
#define LOAD256_NOMASK(p, m) _mm256_loadu_ps(p)
#define STORE256_NOMASK(p, m, v) _mm256_storeu_ps((p), (v))
NARROW256(avx2_full, int32_t, LOAD256_NOMASK, STORE256_NOMASK)
NARROW256(avx2_full_i16, uint16_t, LOAD256_NOMASK, STORE256_NOMASK)

/* N == 1 on AVX2: as dot_avx512, 8 nonzeros per vector FMA, b's elements fetched with
 * scalar loads (AVX2 gathers are no faster on Haswell-class cores, and QEMU 7.2's
 * emulation of vgatherdps miscomputes), the idx/val streams prefetched ahead. */
KC_TARGET_AVX2 static float dot_avx2(const int32_t *restrict idx, const float *restrict val,
                                     int32_t len, const float *restrict b, int64_t ldb) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float g[16] __attribute__((aligned(32)));
    int64_t p = 0; /* as in dot_avx512 */
    for (; p + 16 <= len; p += 16) {
        _mm_prefetch((const char *)(idx + p + SPMM_STREAM_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(val + p + SPMM_STREAM_AHEAD), _MM_HINT_T0);
        for (int q = 0; q < 16; ++q) g[q] = b[(int64_t)idx[p + q] * ldb];
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(val + p), _mm256_load_ps(g), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(val + p + 8), _mm256_load_ps(g + 8), acc1);
    }
    acc0 = _mm256_add_ps(acc0, acc1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc0), _mm256_extractf128_ps(acc0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    float s = _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
    for (; p < len; ++p) s += val[p] * b[(int64_t)idx[p] * ldb];
    return s;
}
KC_TARGET_AVX2 static void narrow_rest_avx2(const int32_t *restrict idx,
                                            const float *restrict val, int32_t len,
                                            const float *restrict b, int64_t ldb,
                                            float *restrict c, int64_t rest, int accumulate) {
    if (rest == 8) narrow_avx2_full(idx, val, len, b, ldb, c, tail256(rest), accumulate);
    else narrow_avx2(idx, val, len, b, ldb, c, tail256(rest), accumulate);
}
DEFINE_NARROW_ROWS(avx2, KC_TARGET_AVX2, narrow_avx2, __m256i, tail256)
DEFINE_NARROW_ROWS(avx2_full, KC_TARGET_AVX2, narrow_avx2_full, __m256i, tail256)
KC_TARGET_AVX2 static void narrow_rows_avx2_any(const spmm_csr_f32_args *a, int64_t r0,
                                                int64_t r1, int64_t p0, int64_t p1,
                                                int64_t j0, int64_t w) {
    if (w == 8) narrow_rows_avx2_full(a, r0, r1, p0, p1, j0, w);
    else narrow_rows_avx2(a, r0, r1, p0, p1, j0, w);
}
/* (without gathers, as dot_avx2; plan_spmm sets no column apart on AVX2) */
#define COLUMN_DOT_AVX2(idx, val, len, column) dot_avx2((idx), (val), (len), (column), 1)
/* (16 registers: no row tiles beyond the register tiles) */
#define ROW_TILE_AVX2(idx, val, len, b, ldb, c, head, width, acc, pf) 0
DEFINE_ROWS(avx2, KC_TARGET_AVX2, 8, __m256i, _mm256_set1_epi32(-1), tail256, head256,
            dot_avx2, COLUMN_DOT_AVX2, narrow_rest_avx2, narrow_rows_avx2_any, ROW_TILE_AVX2)
#endif /* KC_X86 */

int spmm_csr_f32(void *args) {
    const spmm_csr_f32_args *in = (const spmm_csr_f32_args *)args;
    void (*rows)(const spmm_csr_f32_args *, int64_t, int64_t, int64_t, int64_t, int64_t,
                 int64_t) = rows_portable;
#if KC_X86
    if (in->isa >= KC_ISA_AVX512) rows = rows_avx512;
    else if (in->isa == KC_ISA_AVX2) rows = rows_avx2;
#else
    if (in->isa != KC_ISA_PORTABLE) return KC_ERR_ISA;
#endif
    spmm_csr_f32_args a = *in;
    if (in->b_pack) { /* B is read from its copy with cache-line-aligned rows (spmm.h) */
        a.b = in->b_pack;
        a.ldb = in->ld_pack;
    }
    const int64_t tile = a.n_tile > 0 ? a.n_tile : a.n;
    const int nt = a.threads > 0 ? a.threads : 1;
    /* one K block's slice of an N tile per thread of the team (at most nt threads) */
    const size_t slice_floats = a.slice_b ? spmm_slice_floats(&a) : 0;
    float *slices = NULL;
    if (slice_floats) {
        const size_t bytes = (slice_floats * (size_t)nt * sizeof(float) + 63) / 64 * 64;
        slices = aligned_alloc(64, bytes);
        if (!slices) return KC_ERR_NOMEM;
    }
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = 0, n_threads = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        n_threads = omp_get_num_threads();
#endif
        if (in->b_pack) {
            const int64_t k1 = in->k * (t + 1) / n_threads;
            for (int64_t r = in->k * t / n_threads; r < k1; ++r)
                memcpy(in->b_pack + r * in->ld_pack, in->b + r * in->ldb,
                       (size_t)in->n * sizeof(float));
#pragma omp barrier
        }
        spmm_csr_f32_args at = a; /* this thread's view: its slice scratch */
        at.slice_buf = slices ? slices + (size_t)t * slice_floats : NULL;
        int64_t r0, r1;
        row_range(a.indptr, a.m, t, n_threads, &r0, &r1);
        const int exact = !a.row_order || n_threads == a.order_threads;
        const int64_t p0 = exact ? r0 : 0, p1 = exact ? r1 : a.m;
        int64_t j0 = 0;
        if (at.peel > 0 && tile < at.n) {
            /* N tiles: the peeled columns once, as a column range of their own, then the
             * tiles from there on, all aligned -- instead of a peel (one more narrow pass)
             * and a masked last vector in every tile: DLMC group1_1_1 at 0.9 (N = 3136,
             * tiles of 128) with B 16-48 bytes off a cache line 60-78 -> 80-89 GFLOP/s */
            j0 = at.peel;
            at.peel = 0;
            rows(&at, r0, r1, p0, p1, 0, j0);
        }
        for (; j0 < at.n; j0 += tile)
            rows(&at, r0, r1, p0, p1, j0, KC_MIN(j0 + tile, at.n));
    }
    free(slices);
    return KC_OK;
}

/* Runs BODY for every run [p, q) of consecutive nonzeros of row i that fall in one K block
 * blk (a whole segment when the row's indices are sorted; any order is correct), with a
 * shift for the usual power-of-two k_block (a division costs ~4x). Counting and copying
 * runs instead of single nonzeros keeps a counter out of a store-to-load chain per
 * nonzero: plan_spmm of 4096 x 4096 x 128 at sparsity 0.9 (1.7 M nonzeros, 4 K blocks)
 * 2.9 -> 1.8-2.2 ms, at 0.5 (8.4 M, 32 K blocks) 27 -> 21 ms (docs/spmm.md). */
#define SPMM_FOR_EACH_RUN(BLOCK_OF, BODY)                                                     \
    for (int64_t i = 0; i < m; ++i)                                                          \
        for (int32_t p = indptr[i], end = indptr[i + 1], q; p < end; p = q) {                \
            const int64_t blk = BLOCK_OF(indices[p]);                                        \
            for (q = p + 1; q < end && BLOCK_OF(indices[q]) == blk; ++q) {                   \
            }                                                                                \
            BODY;                                                                            \
        }
#define SPMM_FOR_EACH_RUN_ANY_K_BLOCK(BODY)                                                  \
    do {                                                                                     \
        if (period > 1) {                                                                    \
            const int32_t blocks_per_phase = n_kblocks / period;                             \
            SPMM_FOR_EACH_RUN(SPMM_PHASED, BODY)                                             \
        } else if ((k_block & (k_block - 1)) == 0) {                                         \
            const int shift = __builtin_ctz((unsigned)k_block);                              \
            SPMM_FOR_EACH_RUN(SPMM_SHIFTED, BODY)                                            \
        } else {                                                                             \
            SPMM_FOR_EACH_RUN(SPMM_DIVIDED, BODY)                                            \
        }                                                                                    \
    } while (0)
#define SPMM_SHIFTED(col) ((col) >> shift)
#define SPMM_DIVIDED(col) ((col) / k_block)
#define SPMM_PHASED(col) ((col) % period * blocks_per_phase + (col) / period / k_block)

int spmm_count_k_blocks(const int32_t *indptr, const int32_t *indices, int64_t m,
                        int32_t k_block, int32_t n_kblocks, int32_t period, int32_t *counts) {
    memset(counts, 0, (size_t)n_kblocks * (size_t)m * sizeof(int32_t));
    SPMM_FOR_EACH_RUN_ANY_K_BLOCK(counts[blk * m + i] += q - p);
    return KC_OK;
}

int spmm_pack_k_blocks(const int32_t *indptr, const int32_t *indices, const float *data,
                       int64_t m, int32_t k_block, int32_t n_kblocks, int32_t period,
                       const int32_t *position_of, const int32_t *kptr,
                       int32_t *packed_indices, float *packed_data) {
    /* the scatter of a counting sort by (K block, position), stable within a segment */
    const int64_t n_segments = (int64_t)n_kblocks * m;
    int32_t *cursor = malloc((size_t)n_segments * sizeof(int32_t) + 1); /* never 0 bytes */
    if (!cursor) return KC_ERR_NOMEM;
    memcpy(cursor, kptr, (size_t)n_segments * sizeof(int32_t));
#define SPMM_SCATTER_RUN                                                                     \
    do {                                                                                     \
        int32_t *at = &cursor[position_of ? blk * m + position_of[blk * m + i] : blk * m + i]; \
        memcpy(packed_indices + *at, indices + p, (size_t)(q - p) * sizeof(int32_t));        \
        memcpy(packed_data + *at, data + p, (size_t)(q - p) * sizeof(float));                \
        *at += q - p;                                                                        \
    } while (0)
    SPMM_FOR_EACH_RUN_ANY_K_BLOCK(SPMM_SCATTER_RUN);
#undef SPMM_SCATTER_RUN
    free(cursor);
    return KC_OK;
}
#undef SPMM_FOR_EACH_RUN_ANY_K_BLOCK
#undef SPMM_FOR_EACH_RUN
#undef SPMM_SHIFTED
#undef SPMM_DIVIDED
#undef SPMM_PHASED

int spmm_batch_f32(void *args) {
    const spmm_batch_f32_args *in = (const spmm_batch_f32_args *)args;
    for (int64_t i = 0; i < in->n_images; ++i) {
        const spmm_csr_f32_args *a = in->images + i;
        if (in->stride > 1) { /* subsample image i into this product's B */
            const int64_t st = in->stride, plane = in->ho * in->wo;
            const float *img = in->x + i * in->x_image;
            float *dst = (float *)a->b;
            for (int64_t c = 0; c < in->channels; ++c)
                for (int64_t y = 0; y < in->ho; ++y) {
                    const float *src = img + (c * in->h + y * st) * in->w;
                    float *d = dst + c * plane + y * in->wo;
                    for (int64_t z = 0; z < in->wo; ++z) d[z] = src[z * st];
                }
        }
        const int rc = spmm_csr_f32((void *)a);
        if (rc != 0) return rc;
        if (!in->bias && !in->relu) continue;
        for (int64_t r = 0; r < a->m; ++r) {
            float *row = a->c + r * a->ldc;
            const float add = in->bias ? in->bias[r] : 0.0f;
            for (int64_t j = 0; j < a->n; ++j) {
                const float v = row[j] + add;
                row[j] = (in->relu && v < 0.0f) ? 0.0f : v;
            }
        }
    }
    return 0;
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
