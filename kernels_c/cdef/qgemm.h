/* Quantized GEMM: u8 activations x s8 (or s4) weights, int32 accumulation (FBGEMM's split).
 *
 *   out (M x N) = pipeline( A (M x K, u8, row-major, lda >= K) . B^T ),  B (N x K) weights.
 *
 * Kernels: gemm_u8s8_acc32 (int8 weights), gemm_s4s8_acc32 (int4 weights, two signed
 * nibbles per byte, one fp32 scale per group of `group_size` K values and column), each
 * with a naive `_ref` twin that reads the plain (N x K) int8 weights `b_ref`.
 *
 * Packed weight layouts (built in Python, kernels_c/quant.py; columns padded with zeros to
 * n_pad = a multiple of NR, K padded with zeros to a multiple of the K step or the group):
 *   avx512_vnni: [n_pad/64][k_pad/4][64 cols][4 k] bytes: one 64-byte vector = 16 columns x
 *                4 consecutive k, the operand order of vpdpbusd (u8 A quad broadcast).
 *   avx2:        [n_pad/16][k_pad/2][16 cols][2 k] bytes: 16 bytes = 8 columns x 2 k,
 *                sign-extended to 16 bit in registers (vpmovsxbw), multiplied with vpmaddwd
 *                against zero-extended A pairs: exact (2*255*128 < 2^31), no vpmaddubsw
 *                int16 saturation.
 *   portable:    [n_pad][k_pad] bytes (int8) or the int4 layout below with KS = 1.
 *   int4 (every path): the int8 layout of the path (K step KS = 4, 2 or 1) with pairs of
 *                consecutive K steps merged into one byte array: low nibble = step 2p, high
 *                nibble = step 2p+1, same column position. Kernels unpack in registers to
 *                16*w (w << 4 as a signed byte: exact for w in [-8, 7]); the group scales
 *                b_group_scale [k_pad/group_size][n_pad] hold scale/16 to compensate.
 *
 * Accumulation bound (checked in Python before any C runs): every partial sum is formed in
 * int32. int8: |sum_k A*B| <= 255 * max_j sum_k |B[j,k]| and the zero-point corrections
 * are added to it; Python refuses operands whose bound exceeds 2^31 - 1 (K <= 65793 always
 * passes for zero zero-points). int4: per group |sum| <= 255*128*group_size < 2^31 for any
 * K; groups are summed in fp32.
 *
 * Output pipeline (out_kind), per column j (arrays of n_pad entries, padded):
 *   int8 raw = acc - col_i32[j] - b_zero_point[j]*row_offsets[i]  (col_i32 = a_zp*col_off,
 *        col_off[j] = sum_k B[j,k] - b_zp[j]*K; b_zero_point NULL when all are zero)
 *   int4 raw = acc_f32 - col_sub[j]   (col_sub = a_zp * sum_g scale_g * sum_{k in g} B)
 *   QG_OUT_INT32 (int8 only): out = raw.
 *   QG_OUT_F32:  out = raw * col_scale[j] + col_bias[j], then max(0, .) if relu.
 *   QG_OUT_U8:   int8: f = (float)raw + col_biasq[j]; q = rint(f * col_mult[j]) + out_zp
 *                (FBGEMM ReQuantizeOutput: col_biasq = bias/(sa*sb), col_mult = sa*sb/sc);
 *                int4: q = rint((raw*col_scale + col_bias) * col_mult[j]) + out_zp;
 *                clamp to [relu ? out_zp : 0, 255]. Round half to even.
 *
 * Blocking (qgemm_blocking): mr x nr is the register tile (fixed per path and bits; the
 * kernel writes the values it used back into blk): avx512_vnni int8 6 x 64, int4 6 x 64
 * (tiles of 4-6 rows run as two 32-column halves), avx2 6 x 16 (int4 2 x 16), portable
 * 4 x 16. The rows of a block are split evenly over tiles. mc rows of A and nc columns of B per
 * cache block; the full K is one block (kc must be 0), so a B panel (K x nr bytes) is
 * reused from L1/L2 across the mc rows and an A block (mc x K) from L2 across the panels.
 * Invariants: mc >= 1 (rounded up to a multiple of mr), nc = 0 (all) or a multiple of nr.
 * Threads split the (M blocks x N blocks) grid; N blocks are narrowed when there are fewer
 * blocks than threads. Compile-time: QG_PF_DIST, bytes of software prefetch ahead in the
 * packed B stream (0 = off; default 8192; kernels_c.quant PARAMS["pf_dist"]).
 */
typedef struct {
    int mr;
    int nr;
    int64_t mc;
    int64_t nc;
    int64_t kc;
} qgemm_blocking;

typedef struct {
    int64_t m, n, k;
    const uint8_t *a;
    int64_t lda;
    const int8_t *b_packed;
    const float *b_group_scale;
    const int8_t *b_ref;
    const float *b_ref_scale;
    int bits;
    int group_size;
    int64_t n_pad;
    int64_t k_pad;
    int32_t a_zero_point;
    const int32_t *b_zero_point;
    const int32_t *col_i32;
    const float *col_sub;
    const float *col_scale;
    const float *col_bias;
    const float *col_mult;
    const float *col_biasq;
    int32_t out_zero_point;
    int relu;
    int out_kind;
    void *out;
    int64_t ldo;
    int threads;
    int isa;
    qgemm_blocking blk;
} qgemm_args;

enum { QG_OUT_INT32 = 0, QG_OUT_F32 = 1, QG_OUT_U8 = 2 };

int gemm_u8s8_acc32(void *args);
int gemm_u8s8_acc32_ref(void *args);
int gemm_s4s8_acc32(void *args);
int gemm_s4s8_acc32_ref(void *args);
