/* spmm_csr_f32: C (M x N) = A (M x K, CSR, fp32 values, int32 indices) @ B (K x N, fp32).
 *
 * Operand roles and layout: A is the sparse operand (CSR rows = output rows); B and C are
 * dense, row-major with leading dimensions ldb >= N and ldc >= N (in elements). The kernel
 * vectorizes along N: each nonzero A[i,k] is broadcast and multiplied against a contiguous
 * slice of row k of B. Inputs are validated in Python (kernels_c/spmm.py); C trusts them.
 *
 * Blocking parameters (runtime):
 *   reg_vectors  SIMD vectors per register tile along N: 1, 2, 4 or 8.
 *   n_tile       columns of B per cache tile (a multiple of the vector width), 0 = N.
 *   k_block      rows of B per K block, 0 = no K blocking. With K blocking, `indices`/`data`
 *                hold A's nonzeros K block by K block (a copy made at plan time, like a
 *                packed weight: block 0 of every row, then block 1 of every row, ...) and
 *                `kptr` (n_kblocks x M + 1 offsets into them) delimits the segment of row i
 *                in block b: [kptr[b*M + i], kptr[b*M + i + 1]). A K block of B
 *                (k_block x n_tile) stays in L1 while row_block rows of C accumulate into
 *                it, and A is read in the order it is stored; C tiles are reloaded per K
 *                block. `indptr` still delimits whole rows (the N = 1 path ignores kptr).
 *                With row_order, kptr is indexed by position instead of row: block b's
 *                segment at position r is [kptr[b*M + r], kptr[b*M + r + 1]), of row
 *                row_order[b*M + r], and A is stored in that order.
 *   row_block    rows of C per block when K blocking (>= 1).
 *   prefetch     how many nonzeros ahead the B rows of a register tile are prefetched into
 *                L1 (0 = off); pays off when B streams from L2/L3 (no K blocking).
 *   peel         columns handled first, as one masked tile, at the start of every column
 *                range, so that the register tiles after it load B at vector-aligned
 *                addresses (set by the caller when every row of B has the same
 *                misalignment; 0 = none). A vector load that crosses a cache line costs two.
 *   b_pack       NULL, or a buffer of K x ld_pack floats (64-byte aligned; ld_pack >= N, a
 *                multiple of 8 when N <= 8 -- one 256-bit vector per row of B -- else of 16)
 *                that the call first copies B into, then reads B from: every row of B then
 *                starts on a cache line or vector. The caller sets it when B's rows would
 *                not, and often enough used to repay the copy (kernels_c/spmm.py _pack_ld):
 *                N not a multiple of the vector width, where no peel aligns every row; or a
 *                misaligned B whose rows serve many nonzeros, or whose N is too narrow for
 *                the peel's extra pass to pay; not where K blocks read B by phase
 *                (phase_period). peel must be 0 with it.
 *   row_order    NULL, or (only with kptr) the order to visit the rows of C in, per K
 *                block (n_kblocks x M entries): block b's list is, for each thread's rows
 *                [r0, r1) (spmm_thread_rows for order_threads threads), a permutation of
 *                them sorted by the length of their segments in block b, so that
 *                consecutive rows run the same number of loop trips and the loop exits are
 *                predicted (set by the caller for one vector per row of C, where a row costs
 *                a few dozen cycles, one K block of all K when B needs no blocking; and for
 *                K blocks under register tiles of up to 4 vectors). All rows then form one
 *                row block. Run with another thread count, each thread
 *                scans every position for its rows (correct, slower).
 *   order_threads  the thread count row_order was made for.
 *   slice_b      0, or 1 (with kptr, N > the vector width, no b_pack): before the segments
 *                of a K block, each thread copies that block's slice of its N tile (all of
 *                N when n_tile is 0 or >= N) into scratch the call allocates -- k_block
 *                rows of the tile's columns, rows the tile rounded up to 16 floats apart,
 *                64-byte aligned -- and the segments read B from it; the column indices of
 *                A's K-block copy are then relative to their block's first row.
 *   column_apart 0, or 1 (with slice_b): where a column range's last vector would hold
 *                one column alone (N = 1 modulo the vector width, more than one vector:
 *                N = 49 on AVX-512), under register tiles of 4 or 8 vectors, that column is
 *                copied into the slice scratch as a contiguous column of its own, after the
 *                other columns' rows, and each segment adds its dot product with that column
 *                to C instead of loading and multiplying a masked vector per nonzero.
 *   slice_buf    set by spmm_csr_f32 for each thread (callers leave it NULL).
 *   indices16    NULL, or (with kptr, one vector per row of C, k_block * ldb <= 65536, or
 *                k_block 0 with K * ldb <= 65536; ldb of B's copy when b_pack is set) the
 *                offsets (column index * ldb, in floats) of the rows of B that A's K-block
 *                copy reads from their block's first row, as uint16: the narrow loops read
 *                them instead of `indices`, which is then NULL (6 bytes per nonzero instead
 *                of 8, where A streams from DRAM; no multiply per nonzero).
 *   phase_period 0, or P > 1 (with kptr, N > the vector width VW, no b_pack, no slice_b,
 *                one column range of all N, reg_vectors >= 2; not on the portable path):
 *                B's rows start at P different offsets from a VW-float boundary (P = VW /
 *                gcd(ldb, VW)); row k has phase k mod P, offset (b + k ldb) mod VW floats.
 *                A's K blocks then hold the rows of one phase each: block b takes rows
 *                [t0, t0 + k_block) of phase b / phase_blocks (rows c, c + P, c + 2P, ...:
 *                t0 = (b mod phase_blocks) k_block), the column indices staying absolute
 *                (spmm_count_k_blocks / spmm_pack_k_blocks with period P). The kernel
 *                reads those rows of B in place at aligned addresses, the register tiles
 *                shifted left by the block's offset o (computed from b at run time, so any
 *                4-byte-aligned B serves), the lanes below o of the first vector masked in
 *                B and C: no copy of B. On AVX-512 a shifted row of 9-16 vectors is one
 *                register tile (one accumulator set) instead of reg_vectors-wide tiles.
 *   phase_blocks K blocks per phase (phase_period * phase_blocks = n_kblocks).
 * The portable path ignores k_block/row_block/prefetch/row_order.
 * Compile-time (variant cache): SPMM_ACC_SETS in {1, 2} independent accumulator sets per
 * register tile (2 halves the FMA dependency chain per accumulator).
 */
typedef struct {
    int64_t m, k, n;
    const int32_t *indptr;
    const int32_t *indices;
    const float *data;
    const float *b;
    int64_t ldb;
    float *c;
    int64_t ldc;
    int threads;
    int isa;
    int reg_vectors;
    int n_tile;
    int k_block;
    int row_block;
    int n_kblocks;
    const int32_t *kptr;
    int prefetch;
    int peel;
    float *b_pack;
    int64_t ld_pack;
    const int32_t *row_order;
    int order_threads;
    int slice_b;
    int column_apart;
    float *slice_buf;
    const uint16_t *indices16;
    int phase_period;
    int phase_blocks;
} spmm_csr_f32_args;

int spmm_csr_f32(void *args);
int spmm_csr_f32_ref(void *args);
/* spmm_batch_f32: n_images products, images[i] a complete spmm_csr_f32 argument block (the
 * same A, one B and C per image), each followed by the epilogue C[r, :] = C[r, :] + bias[r]
 * (bias NULL: none) and, with relu, max(0, .) (NaN stays NaN). A 1x1, stride-1, unpadded
 * convolution of a batch is this with B = image i viewed as (C, H W) and C = output i as
 * (O, H W), no copies (kernels_c/conv.py, "pointwise"). With stride > 1, before product i
 * its B (a channels x (ho wo) buffer the caller owns) is filled from image i of x (channels
 * x h x w, x_image floats apart): B[c, y wo + z] = x[c, stride y, stride z]. */
typedef struct {
    const spmm_csr_f32_args *images;
    int64_t n_images;
    const float *bias;
    int relu;
    int stride;
    const float *x;
    int64_t x_image, channels, h, w, ho, wo;
} spmm_batch_f32_args;
int spmm_batch_f32(void *args);
/* The K-block layout of A described at k_block above, made at plan time in two passes:
 * counts[b*m + i] = nonzeros of row i in K block b (n_kblocks * m entries); then, with kptr
 * the caller's prefix sum of those counts in visiting order (n_kblocks * m + 1 entries) and
 * position_of[b*m + i] the position of row i in block b's order (NULL: i), the nonzeros
 * scattered into packed_indices/packed_data (nnz each). Returns KC_ERR_NOMEM when out of
 * memory. With period P > 1 (phase_period), the K block of column c is
 * (c mod P) (n_kblocks / P) + (c / P) / k_block. */
int spmm_count_k_blocks(const int32_t *indptr, const int32_t *indices, int64_t m,
                        int32_t k_block, int32_t n_kblocks, int32_t period, int32_t *counts);
int spmm_pack_k_blocks(const int32_t *indptr, const int32_t *indices, const float *data,
                       int64_t m, int32_t k_block, int32_t n_kblocks, int32_t period,
                       const int32_t *position_of, const int32_t *kptr,
                       int32_t *packed_indices, float *packed_data);
int spmm_acc_sets(void);
/* Rows [bounds[t], bounds[t + 1]) of each of `threads` threads (threads + 1 entries): equal
 * shares of nonzeros plus one per row, as the kernel splits them. */
void spmm_thread_rows(const int32_t *indptr, int64_t m, int threads, int64_t *bounds);
