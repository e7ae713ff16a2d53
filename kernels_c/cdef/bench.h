/* Machine micro-benchmarks: compute peaks, streaming bandwidth and a clock estimate.
 *
 * Every benchmark runs on `threads` OpenMP threads and reports the wall time between a start
 * and an end barrier (`seconds`), so OpenMP start-up is not part of the measurement. Inputs
 * are validated in Python (kernels_c/microbench.py); C trusts them.
 *
 * Peaks (bench_peak_f32, bench_peak_u8s8): each thread runs `iters` iterations of a loop
 * whose body is exactly `chains` independent vector instructions (inline asm on x86, so
 * the compiler can neither drop nor merge them):
 *   fp32 avx512  16 chains of vfmadd231ps zmm       (32 FLOP each)
 *   fp32 avx2    12 chains of vfmadd231ps ymm       (16 FLOP each)
 *   fp32 port.   12 chains of 4-lane a = a*m + c    ( 8 FLOP each; SSE mulps + addps)
 *   int8 vnni    16 chains of vpdpbusd zmm          (64 u8*s8 MAC = 128 OP each)
 *   int8 avx2     8 chains of vpmaddubsw + vpmaddwd + vpaddd ymm (32 MAC = 64 OP each)
 *   int8 port.   12 chains of pmaddwd + paddd xmm (SSE2, 8 int16 MAC = 16 OP each)
 * With the operands the C code uses (1.0 / 1), each accumulator lane grows by a fixed step
 * per iteration; `checksum` is the sum of every lane over all threads, so the caller can
 * check that every counted instruction executed. `ops` = threads * iters * chains * OP per
 * instruction. fp32 lanes are exact while iters <= 2^24.
 *
 * Streams (bench_read_f32, bench_triad_f32): the n elements are split into one contiguous
 * chunk per thread (boundaries on 16-element multiples); each thread sweeps its chunk
 * `passes` times. read: sum with 8 vector accumulators (checksum = sum over passes of the 
 * array sum; bytes = 4 n passes). triad: a = b + scalar * c (bytes = 12 n passes, no
 * write-allocate traffic counted, as STREAM/likwid do).
 *
 * Clock (bench_clock): each thread times `iters` iterations of 64 dependent integer adds
 * (1-cycle latency on every x86-64 core), seconds[t] per thread.
 *
 * pin != 0 (Linux): thread t runs on the t-th CPU of the process's affinity mask for the
 * duration of the call, and its previous mask is restored afterwards. Without it, a freshly
 * woken OpenMP thread can share its CPU with the master until the load balancer moves it,
 * and every barrier then costs a scheduler time slice.
 */
typedef struct {
    int isa;          /* KC_ISA_* path; fp32: portable/avx2/avx512, int8: portable/avx2/vnni */
    int threads;      /* OpenMP threads requested */
    int pin;          /* pin thread t to the t-th allowed CPU during the call */
    int64_t iters;    /* loop iterations per thread */
    int threads_run;  /* out: threads OpenMP actually ran */
    int chains;       /* out: independent accumulators (= instructions per iteration) */
    int lanes;        /* out: 32-bit lanes per accumulator */
    int64_t ops;      /* out: counted FLOP (fp32) or OP (int8; 1 MAC = 2 OP) */
    double checksum;  /* out: sum of every accumulator lane over all threads */
    double seconds;   /* out: wall time between start and end barriers */
    double *thread_seconds; /* out (optional, length threads): each thread's own loop time */
    int disturbed;    /* out: threads preempted (involuntary context switch) during the call */
} bench_peak_args;

typedef struct {
    int isa;          /* KC_ISA_* path: portable/avx2/avx512 (avx512_vnni runs avx512) */
    int threads;
    int pin;
    int64_t n;        /* elements in each array (all threads together) */
    int64_t passes;   /* sweeps over the arrays per call */
    float *a;         /* triad output (n); unused by read */
    const float *b;   /* read input / triad input (n) */
    const float *c;   /* triad input (n); unused by read */
    float scalar;     /* triad multiplier */
    int threads_run;  /* out */
    int64_t bytes;    /* out: bytes counted as moved */
    double checksum;  /* out: read: sum over passes of sum(b); triad: 0 */
    double seconds;   /* out */
    int disturbed;    /* out: threads preempted during the call (Linux; else 0) */
} bench_stream_args;

typedef struct {
    int threads;
    int pin;
    int64_t iters;     /* iterations of 64 dependent adds per thread */
    int threads_run;   /* out */
    int adds_per_iter; /* out: 64 */
    uint64_t checksum; /* out: sum over threads of the chain's final value */
    double *seconds;   /* out: per-thread seconds, length threads */
} bench_clock_args;

int bench_peak_f32(void *args);
int bench_peak_u8s8(void *args);
int bench_read_f32(void *args);
int bench_triad_f32(void *args);
int bench_clock(void *args);
int bench_cpu_signature(int *family, int *model, int *stepping);
/* Data/unified cache sizes in bytes (index 1, 2, 3 = L1d, L2, L3; 0 = absent) and the
 * number of logical CPUs sharing each, from CPUID leaf 4 (Intel) or 0x8000001D (AMD). */
int bench_cpuid_caches(int64_t *bytes, int *shared, int n_levels);
