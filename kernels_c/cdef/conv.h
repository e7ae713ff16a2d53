/* 2-D convolution, fp32, NCHW: direct sparse (CSR weights) and dense im2col + BLAS sgemm.
 *
 * Shapes: x (N, C, H, W), weight (O, C/groups, R, S), out (N, O, Ho, Wo) with
 * Ho = (H + 2 pad - R) / stride + 1 and Wo likewise; all C-contiguous. Output channel o
 * reads input channels [g C/groups, (g + 1) C/groups) where g = o / (O/groups).
 * Inputs are validated in Python (kernels_c/conv.py); C trusts them.
 *
 * conv_direct_sparse_f32 (Park et al., ICLR 2017, "direct sparse convolution"):
 *   Each image is first copied into a buffer of `xpad` (n_xpad buffers of xpad_len floats:
 *   one image of img_stride floats + slack, 64-byte aligned) as a zero-padded, phase-split
 *   image:
 *   for stride St there are St*St phase planes per channel, plane (c, pr, ps) holding
 *   padded rows pr, pr+St, ... and columns ps, ps+St, ...; each plane is hq x wq with
 *   hq = ceil(Hp / St), wq >= ceil(Wp / St) (Hp = H + 2 pad), and starts plane_stride
 *   >= hq wq floats after the previous one (the zeroed gap keeps the planes a register
 *   tile reads out of the same L1 sets: kernels_c/conv.py, _plane_stride); the buffer
 *   ends with zeroed slack so that full register tiles
 *   never read past it. With n_shift = D > 1 an image holds D copies of its planes, copy d
 *   (at d * copy_stride) shifted left by d elements: copy_d[i] = copy_0[i + d]. With wq a
 *   multiple of the vector width and a 64-byte aligned xpad, a weight at kernel column s
 *   then reads copy (s / St), whose offset is a multiple of the vector width: every SIMD
 *   load is aligned instead of splitting cache lines (D = ceil(S / St), "align" parameter).
 *   Then input element xpad[c, St y + r, St x + s] of output (y, x) lies
 *   at  off(c, r, s) + y wq + x  with
 *       off(c, r, s) = ((c St + r % St) St + s % St) plane_stride + (r / St) wq + s / St
 *   (D > 1: copy_stride (s / St) + ((c St + r % St) St + s % St) plane_stride
 *   + (r / St) wq),
 *   so a run of consecutive outputs in the "flattened" index j = y wq + x reads a
 *   contiguous run of input for every weight: the inner loop broadcasts one weight and
 *   FMAs it against contiguous vectors (no gathers, no im2col). Columns x >= Wo of the
 *   flattened plane are computed and discarded.
 *   Weights: CSR over output channels; `offs` holds off(c, r, s) of each nonzero (c is the
 *   absolute input channel, so groups cost nothing), `vals` its value, nonzeros of each
 *   row sorted by channel. kptr[o * (n_cblocks + 1) + b] is the first nonzero of row o whose
 *   in-group channel is >= b * c_block (channel blocking: the input planes of one channel
 *   block stay in L1 while all output channels of a block accumulate them).
 *   Work: with n_xpad >= threads > 1 (batch >= threads) each thread takes whole images
 *   (dynamic schedule), padding them into its own buffer; otherwise images go one after the
 *   other, all threads pad it into buffer 0, then share its tasks (blocks of o_block output
 *   channels, dynamic schedule); a task accumulates its flattened output planes (plane_alloc floats
 *   each, a multiple of the register tile) in its thread's slice of `scratch`
 *   (threads * o_block * plane_alloc floats), register tile by register tile
 *   (tile_vectors SIMD vectors of the flattened plane), then writes the valid columns to
 *   out with the optional bias + ReLU epilogue.
 *
 * conv_im2col_blas_f32: per image and group, col ((C/groups) R S) x (Ho Wo) = im2col(x)
 *   (skipped for 1x1, stride 1, pad 0), out = weight @ col with the BLAS sgemm behind the
 *   `sgemm` function pointer (Fortran ABI, see kernels_c/_blas.py), then bias + ReLU.
 *   BLAS threads are set by the caller (threadpoolctl); the im2col is serial (an OpenMP
 *   team spinning between regions would compete with the BLAS threads for the cores).
 * conv_f32_ref: naive direct convolution, double accumulation, same args as im2col.
 */
typedef struct {
    int64_t n, c, h, w;
    int64_t o, r, s;
    int64_t ho, wo;
    int stride, pad, groups;
    int64_t hq, wq;
    int64_t plane_stride;
    int64_t img_stride;
    int64_t copy_stride;
    int n_shift;
    int64_t xpad_len;
    int n_xpad;
    int64_t plane_alloc;
    const float *x;
    float *xpad;
    float *scratch;
    const int32_t *kptr;
    const int32_t *offs;
    const float *vals;
    const float *bias;
    int relu;
    float *out;
    int threads;
    int isa;
    int tile_vectors;
    int o_block;
    int n_cblocks;
} conv_direct_sparse_f32_args;

typedef struct {
    int64_t n, c, h, w;
    int64_t o, r, s;
    int64_t ho, wo;
    int stride, pad, groups;
    const float *x;
    const float *weight;
    const float *bias;
    int relu;
    float *col;
    float *out;
    int threads;
    uintptr_t sgemm;
} conv_im2col_blas_f32_args;

int conv_direct_sparse_f32(void *args);
int conv_im2col_blas_f32(void *args);
int conv_f32_ref(void *args);
int conv_max_tile_vectors(int isa);
/* The distinct cache lines one register tile of read_floats floats reads from the input of
 * a block of `block` channels (of c; kernel r x s, stride st, plane width wq, n_shift
 * shifted copies: the layout above), per set (counts[k * sets + line % sets]) and in all
 * (lines[k]), for phase planes plane_strides[k] >= hq wq floats apart, k = 0, 1, ... up
 * to the first that leaves no set with more than `ways` lines; returns how many were
 * counted. kernels_c/conv.py (input_set_overflow, the plane stride) uses it. */
int64_t conv_block_lines(int64_t block, int64_t c, int64_t r, int64_t s, int64_t st,
                         int64_t wq, int64_t n_shift, const int64_t *plane_strides,
                         int64_t n_strides, int64_t read_floats, int64_t line_floats,
                         int64_t sets, int64_t ways, int64_t *counts, int64_t *lines);
