/* Machine micro-benchmarks (see cdef/bench.h for what each one counts).
 *
 * The peak loops are inline asm on x86 so that the instructions executed are exactly the
 * instructions counted: no compiler can fold, hoist or vectorize them differently. The
 * accumulators stay in registers (asm operands) and the loop-invariant operands are opaque
 * to the compiler. Stream loops are C intrinsics with a compiler barrier between passes, so
 * no pass can be skipped or merged with the next.
 */
#ifdef __linux__
#define _GNU_SOURCE
#include <sched.h>
#include <sys/resource.h>
#endif
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "kc_common.h"
#include "bench.h"

#if KC_X86
#include <cpuid.h>
#endif

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static int thread_count(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/* Pinning (see bench.h). pin_begin saves the calling thread's mask into *saved and returns
 * 1 if it changed it; pin_end restores it. */
#ifdef __linux__
typedef cpu_set_t kc_mask;
static int pin_begin(int pin, int t, kc_mask *saved) {
    if (!pin || sched_getaffinity(0, sizeof *saved, saved) != 0) return 0;
    int allowed = CPU_COUNT(saved);
    if (allowed < 1) return 0;
    int want = t % allowed, seen = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (!CPU_ISSET(cpu, saved)) continue;
        if (seen++ == want) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            return sched_setaffinity(0, sizeof one, &one) == 0;
        }
    }
    return 0;
}
static void pin_end(int pinned, kc_mask *saved) {
    if (pinned) sched_setaffinity(0, sizeof *saved, saved);
}
#else
typedef int kc_mask;
static int pin_begin(int pin, int t, kc_mask *saved) { (void)pin, (void)t, (void)saved; return 0; }
static void pin_end(int pinned, kc_mask *saved) { (void)pinned, (void)saved; }
#endif

/* Involuntary context switches of the calling thread so far (Linux; 0 elsewhere): a
 * thread whose count grows across the timed region was preempted by another process. */
#ifdef __linux__
static long preemptions(void) {
    struct rusage u;
    return getrusage(RUSAGE_THREAD, &u) == 0 ? u.ru_nivcsw : 0;
}
#else
static long preemptions(void) { return 0; }
#endif

/* Start/stop barriers around the timed region; thread 0 reads the clock. */
#define TIMED_REGION_BEGIN(t0)                                                               \
    _Pragma("omp barrier") if (thread_id() == 0) t0 = now_s();                               \
    _Pragma("omp barrier")
#define TIMED_REGION_END(t1)                                                                 \
    _Pragma("omp barrier") if (thread_id() == 0) t1 = now_s();

/* A compiler barrier that makes a vector variable opaque (its value unknown afterwards). */
#if KC_X86
#define OPAQUE(x) __asm__ volatile("" : "+x"(x))
#elif defined(__aarch64__)
#define OPAQUE(x) __asm__ volatile("" : "+w"(x))
#else
#define OPAQUE(x) __asm__ volatile("" : : "g"(&(x)) : "memory")
#endif

/* ================================================================= fp32 peak */
/* Lane sums in double: each lane is an exact integer, their float sum would not be. The
 * lanes are read with memcpy (vector arrays must not be read through float/int pointers). */
static double sum_f32(const void *x, int n) {
    double s = 0.0;
    for (int i = 0; i < n; ++i) {
        float v;
        memcpy(&v, (const char *)x + sizeof v * (size_t)i, sizeof v);
        s += v;
    }
    return s;
}
static double sum_i32(const void *x, int n) {
    double s = 0.0;
    for (int i = 0; i < n; ++i) {
        int32_t v;
        memcpy(&v, (const char *)x + sizeof v * (size_t)i, sizeof v);
        s += v;
    }
    return s;
}

typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

/* Portable: 12 chains of 4-lane a = a * m + c (baseline x86-64 has no FMA: mulps + addps;
 * where the compiler contracts to an FMA the FLOP count is the same). */
#define PORT_CHAINS 12
/* The timed part shared by both peak benchmarks: every thread (pinned if asked) runs
 * `loop`; ops = threads x iters x chains x ops per instruction. */
static int run_peak(bench_peak_args *a, double (*loop)(int64_t), int chains, int lanes,
                    int ops_per_instr) {
    double t0 = 0.0, t1 = 0.0, sum = 0.0;
    int ran = 1, disturbed = 0;
    const int64_t iters = a->iters;
#pragma omp parallel num_threads(a->threads) reduction(+ : sum, disturbed)
    {
        if (thread_id() == 0) ran = thread_count();
        kc_mask saved;
        int pinned = pin_begin(a->pin, thread_id(), &saved);
        const long cs0 = preemptions();
        TIMED_REGION_BEGIN(t0)
        const double own0 = now_s();
        sum += loop(iters);
        const double own = now_s() - own0;
        if (a->thread_seconds && thread_id() < a->threads) a->thread_seconds[thread_id()] = own;
        TIMED_REGION_END(t1)
        disturbed += preemptions() > cs0;
        pin_end(pinned, &saved);
    }
    a->threads_run = ran;
    a->disturbed = disturbed;
    a->chains = chains;
    a->lanes = lanes;
    a->ops = (int64_t)ran * iters * chains * ops_per_instr;
    a->checksum = sum;
    a->seconds = t1 - t0;
    return KC_OK;
}

static double peak_f32_portable(int64_t iters) {
    v4f one = {1.0f, 1.0f, 1.0f, 1.0f};
    v4f m = one, c = one;
    OPAQUE(m);
    OPAQUE(c);
    v4f a[PORT_CHAINS];
    for (int k = 0; k < PORT_CHAINS; ++k) a[k] = one - one;
    v4f a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3], a4 = a[4], a5 = a[5], a6 = a[6],
        a7 = a[7], a8 = a[8], a9 = a[9], a10 = a[10], a11 = a[11];
    for (int64_t i = 0; i < iters; ++i) {
        a0 = a0 * m + c; a1 = a1 * m + c; a2 = a2 * m + c; a3 = a3 * m + c;
        a4 = a4 * m + c; a5 = a5 * m + c; a6 = a6 * m + c; a7 = a7 * m + c;
        a8 = a8 * m + c; a9 = a9 * m + c; a10 = a10 * m + c; a11 = a11 * m + c;
        OPAQUE(a0); OPAQUE(a1); OPAQUE(a2); OPAQUE(a3); OPAQUE(a4); OPAQUE(a5);
        OPAQUE(a6); OPAQUE(a7); OPAQUE(a8); OPAQUE(a9); OPAQUE(a10); OPAQUE(a11);
    }
    v4f acc[PORT_CHAINS] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11};
    return sum_f32(acc, 4 * PORT_CHAINS);
}

#if KC_X86
#define FMA8_ASM(I, b0, b1, b2, b3, b4, b5, b6, b7, m, c, CONS)                              \
    __asm__ volatile(I " %8, %9, %0\n\t" I " %8, %9, %1\n\t" I " %8, %9, %2\n\t"             \
                     I " %8, %9, %3\n\t" I " %8, %9, %4\n\t" I " %8, %9, %5\n\t"             \
                     I " %8, %9, %6\n\t" I " %8, %9, %7\n\t"                                 \
                     : "+" CONS(b0), "+" CONS(b1), "+" CONS(b2), "+" CONS(b3),               \
                       "+" CONS(b4), "+" CONS(b5), "+" CONS(b6), "+" CONS(b7)                \
                     : CONS(m), CONS(c))
#define FMA4_ASM(I, b0, b1, b2, b3, m, c, CONS)                                              \
    __asm__ volatile(I " %4, %5, %0\n\t" I " %4, %5, %1\n\t" I " %4, %5, %2\n\t"             \
                     I " %4, %5, %3\n\t"                                                     \
                     : "+" CONS(b0), "+" CONS(b1), "+" CONS(b2), "+" CONS(b3)                \
                     : CONS(m), CONS(c))

/* AVX-512F: 16 chains (2 FMA pipes x 4-cycle latency needs 8; 16 leaves margin). */
KC_TARGET_AVX512 static double peak_f32_avx512(int64_t iters) {
    __m512 m = _mm512_set1_ps(1.0f), c = _mm512_set1_ps(1.0f);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
           a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0, a12 = a0, a13 = a0, a14 = a0,
           a15 = a0;
    for (int64_t i = 0; i < iters; ++i) {
        FMA8_ASM("vfmadd231ps", a0, a1, a2, a3, a4, a5, a6, a7, m, c, "v");
        FMA8_ASM("vfmadd231ps", a8, a9, a10, a11, a12, a13, a14, a15, m, c, "v");
    }
    __m512 acc[16] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15};
    return sum_f32(acc, 16 * 16);
}

/* AVX2+FMA: 12 chains + 2 operands fit the 16 VEX registers (Haswell: 2 pipes x 5 cycles
 * needs 10). */
KC_TARGET_AVX2 static double peak_f32_avx2(int64_t iters) {
    __m256 m = _mm256_set1_ps(1.0f), c = _mm256_set1_ps(1.0f);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
           a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
    for (int64_t i = 0; i < iters; ++i) {
        FMA8_ASM("vfmadd231ps", a0, a1, a2, a3, a4, a5, a6, a7, m, c, "x");
        FMA4_ASM("vfmadd231ps", a8, a9, a10, a11, m, c, "x");
    }
    __m256 acc[12] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11};
    return sum_f32(acc, 12 * 8);
}
#endif

int bench_peak_f32(void *args) {
    bench_peak_args *a = (bench_peak_args *)args;
    int chains, lanes, flop_per_instr;
    double (*loop)(int64_t);
    switch (a->isa) {
        case KC_ISA_PORTABLE:
            loop = peak_f32_portable, chains = PORT_CHAINS, lanes = 4, flop_per_instr = 8;
            break;
#if KC_X86
        case KC_ISA_AVX2:
            loop = peak_f32_avx2, chains = 12, lanes = 8, flop_per_instr = 16;
            break;
        case KC_ISA_AVX512:
        case KC_ISA_AVX512_VNNI:
            loop = peak_f32_avx512, chains = 16, lanes = 16, flop_per_instr = 32;
            break;
#endif
        default:
            return KC_ERR_ISA;
    }
    return run_peak(a, loop, chains, lanes, flop_per_instr);
}

/* ================================================================= int8 peak */
/* Portable: SSE2 pmaddwd (8 int16 products summed in pairs into 4 int32) + paddd on x86,
 * a 4-lane int32 multiply-add elsewhere. u = v = 1: each lane grows by 2 (x86) or 1. */
static double peak_u8s8_portable(int64_t iters) {
#if KC_X86
    __m128i u = _mm_set1_epi16(1), v = _mm_set1_epi16(1);
    OPAQUE(u);
    OPAQUE(v);
    __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
            a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
#define PM(x) x = _mm_add_epi32(x, _mm_madd_epi16(u, v))
    for (int64_t i = 0; i < iters; ++i) {
        /* u is re-made opaque each iteration so the product is recomputed per chain. */
        OPAQUE(u);
        PM(a0); OPAQUE(u); PM(a1); OPAQUE(u); PM(a2); OPAQUE(u); PM(a3); OPAQUE(u);
        PM(a4); OPAQUE(u); PM(a5); OPAQUE(u); PM(a6); OPAQUE(u); PM(a7); OPAQUE(u);
        PM(a8); OPAQUE(u); PM(a9); OPAQUE(u); PM(a10); OPAQUE(u); PM(a11);
        OPAQUE(a0); OPAQUE(a1); OPAQUE(a2); OPAQUE(a3); OPAQUE(a4); OPAQUE(a5);
        OPAQUE(a6); OPAQUE(a7); OPAQUE(a8); OPAQUE(a9); OPAQUE(a10); OPAQUE(a11);
    }
#undef PM
    __m128i acc[12] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11};
    return sum_i32(acc, 12 * 4);
#else
    v4i u = {1, 1, 1, 1}, v = u;
    OPAQUE(u);
    OPAQUE(v);
    v4i a0 = u - u, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0,
        a9 = a0, a10 = a0, a11 = a0;
    for (int64_t i = 0; i < iters; ++i) {
        a0 += u * v; a1 += u * v; a2 += u * v; a3 += u * v; a4 += u * v; a5 += u * v;
        a6 += u * v; a7 += u * v; a8 += u * v; a9 += u * v; a10 += u * v; a11 += u * v;
        OPAQUE(a0); OPAQUE(a1); OPAQUE(a2); OPAQUE(a3); OPAQUE(a4); OPAQUE(a5);
        OPAQUE(a6); OPAQUE(a7); OPAQUE(a8); OPAQUE(a9); OPAQUE(a10); OPAQUE(a11);
    }
    v4i acc[12] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11};
    return sum_i32(acc, 12 * 4);
#endif
}

#if KC_X86
/* AVX-512 VNNI: 16 chains of vpdpbusd (u8 x s8, 4 products summed into each int32 lane). */
KC_TARGET_AVX512_VNNI static double peak_u8s8_vnni(int64_t iters) {
    __m512i u = _mm512_set1_epi8(1), v = _mm512_set1_epi8(1);
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
            a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0, a12 = a0, a13 = a0, a14 = a0,
            a15 = a0;
    for (int64_t i = 0; i < iters; ++i) {
        FMA8_ASM("vpdpbusd", a0, a1, a2, a3, a4, a5, a6, a7, u, v, "v");
        FMA8_ASM("vpdpbusd", a8, a9, a10, a11, a12, a13, a14, a15, u, v, "v");
    }
    __m512i acc[16] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15};
    return sum_i32(acc, 16 * 16);
}

/* AVX2: the pre-VNNI int8 idiom (FBGEMM, oneDNN): vpmaddubsw (u8 x s8 -> pairs summed into
 * saturating int16), vpmaddwd with ones (-> int32), vpaddd into the accumulator. 8 chains,
 * 4 rotating temporaries, 3 operands: 15 of the 16 VEX registers. */
#define U8S8_STEP(A, T)                                                                      \
    "vpmaddubsw %[v], %[u], %[" T "]\n\t"                                                    \
    "vpmaddwd %[one], %[" T "], %[" T "]\n\t"                                                \
    "vpaddd %[" T "], %[" A "], %[" A "]\n\t"
KC_TARGET_AVX2 static double peak_u8s8_avx2(int64_t iters) {
    __m256i u = _mm256_set1_epi8(1), v = _mm256_set1_epi8(1), one = _mm256_set1_epi16(1);
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
            a7 = a0;
    __m256i t0, t1, t2, t3;
    for (int64_t i = 0; i < iters; ++i) {
        __asm__ volatile(U8S8_STEP("a0", "t0") U8S8_STEP("a1", "t1") U8S8_STEP("a2", "t2")
                         U8S8_STEP("a3", "t3") U8S8_STEP("a4", "t0") U8S8_STEP("a5", "t1")
                         U8S8_STEP("a6", "t2") U8S8_STEP("a7", "t3")
                         : [a0] "+x"(a0), [a1] "+x"(a1), [a2] "+x"(a2), [a3] "+x"(a3),
                           [a4] "+x"(a4), [a5] "+x"(a5), [a6] "+x"(a6), [a7] "+x"(a7),
                           [t0] "=&x"(t0), [t1] "=&x"(t1), [t2] "=&x"(t2), [t3] "=&x"(t3)
                         : [u] "x"(u), [v] "x"(v), [one] "x"(one));
    }
    __m256i acc[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
    return sum_i32(acc, 8 * 8);
}
#undef U8S8_STEP
#endif

int bench_peak_u8s8(void *args) {
    bench_peak_args *a = (bench_peak_args *)args;
    int chains, lanes, op_per_instr;
    double (*loop)(int64_t);
    switch (a->isa) {
        case KC_ISA_PORTABLE:
            loop = peak_u8s8_portable, chains = 12, lanes = 4;
            op_per_instr = KC_X86 ? 16 : 8;
            break;
#if KC_X86
        case KC_ISA_AVX2:
        case KC_ISA_AVX512: /* AVX512F alone has no byte multiply: the avx2 code runs */
            loop = peak_u8s8_avx2, chains = 8, lanes = 8, op_per_instr = 64;
            break;
        case KC_ISA_AVX512_VNNI:
            loop = peak_u8s8_vnni, chains = 16, lanes = 16, op_per_instr = 128;
            break;
#endif
        default:
            return KC_ERR_ISA;
    }
    return run_peak(a, loop, chains, lanes, op_per_instr);
}

/* ================================================================= streams */
/* Thread t of nt sweeps elements [lo, hi); boundaries are multiples of 16 elements (64 B). */
static void chunk(int64_t n, int t, int nt, int64_t *lo, int64_t *hi) {
    int64_t blocks = (n + 15) / 16;
    *lo = KC_MIN(n, blocks * t / nt * 16);
    *hi = KC_MIN(n, blocks * (t + 1) / nt * 16);
}

/* The accumulators live across passes (no reduction per pass, which would cost as much as
 * the loads for L1-sized chunks); the memory clobber makes every pass load again. */
#define PASS_BARRIER() __asm__ volatile("" : : : "memory")

static double read_portable(const float *restrict b, int64_t n, int64_t passes) {
    v4f acc[8];
    for (int k = 0; k < 8; ++k) acc[k] = (v4f){0.0f, 0.0f, 0.0f, 0.0f};
    double tail = 0.0;
    for (int64_t p = 0; p < passes; ++p) {
        int64_t i = 0;
        for (; i + 32 <= n; i += 32) {
            for (int k = 0; k < 8; ++k) {
                v4f x;
                memcpy(&x, b + i + 4 * k, sizeof x);
                acc[k] += x;
            }
        }
        for (; i < n; ++i) tail += b[i];
        PASS_BARRIER();
    }
    v4f s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    return tail + s[0] + s[1] + s[2] + s[3];
}

static void triad_portable(float *restrict a, const float *restrict b, const float *restrict c,
                           float s, int64_t n, int64_t passes) {
    for (int64_t p = 0; p < passes; ++p) {
        for (int64_t i = 0; i < n; ++i) a[i] = b[i] + s * c[i];
        PASS_BARRIER();
    }
}

#if KC_X86
KC_TARGET_AVX512 static double read_avx512(const float *restrict b, int64_t n,
                                           int64_t passes) {
    __m512 acc[8];
    for (int k = 0; k < 8; ++k) acc[k] = _mm512_setzero_ps();
    for (int64_t p = 0; p < passes; ++p) {
        int64_t i = 0;
        for (; i + 128 <= n; i += 128)
            for (int k = 0; k < 8; ++k)
                acc[k] = _mm512_add_ps(acc[k], _mm512_loadu_ps(b + i + 16 * k));
        for (; i + 16 <= n; i += 16) acc[0] = _mm512_add_ps(acc[0], _mm512_loadu_ps(b + i));
        if (i < n) {
            __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
            acc[1] = _mm512_add_ps(acc[1], _mm512_maskz_loadu_ps(m, b + i));
        }
        PASS_BARRIER();
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]),
                                           _mm512_add_ps(acc[2], acc[3])),
                             _mm512_add_ps(_mm512_add_ps(acc[4], acc[5]),
                                           _mm512_add_ps(acc[6], acc[7])));
    float lanes[16];
    _mm512_storeu_ps(lanes, s);
    double sum = 0.0;
    for (int l = 0; l < 16; ++l) sum += lanes[l];
    return sum;
}

KC_TARGET_AVX512 static void triad_avx512(float *restrict a, const float *restrict b,
                                          const float *restrict c, float s, int64_t n,
                                          int64_t passes) {
    const __m512 vs = _mm512_set1_ps(s);
    for (int64_t p = 0; p < passes; ++p) {
        int64_t i = 0;
        for (; i + 64 <= n; i += 64)
            for (int k = 0; k < 4; ++k)
                _mm512_storeu_ps(a + i + 16 * k,
                                 _mm512_fmadd_ps(vs, _mm512_loadu_ps(c + i + 16 * k),
                                                 _mm512_loadu_ps(b + i + 16 * k)));
        for (; i < n; i += 16) {
            __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
            _mm512_mask_storeu_ps(a + i, m,
                                  _mm512_fmadd_ps(vs, _mm512_maskz_loadu_ps(m, c + i),
                                                  _mm512_maskz_loadu_ps(m, b + i)));
        }
        PASS_BARRIER();
    }
}

KC_TARGET_AVX2 static double read_avx2(const float *restrict b, int64_t n, int64_t passes) {
    __m256 acc[8];
    for (int k = 0; k < 8; ++k) acc[k] = _mm256_setzero_ps();
    double tail = 0.0;
    for (int64_t p = 0; p < passes; ++p) {
        int64_t i = 0;
        for (; i + 64 <= n; i += 64)
            for (int k = 0; k < 8; ++k)
                acc[k] = _mm256_add_ps(acc[k], _mm256_loadu_ps(b + i + 8 * k));
        for (; i + 8 <= n; i += 8) acc[0] = _mm256_add_ps(acc[0], _mm256_loadu_ps(b + i));
        for (; i < n; ++i) tail += b[i];
        PASS_BARRIER();
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]),
                                           _mm256_add_ps(acc[2], acc[3])),
                             _mm256_add_ps(_mm256_add_ps(acc[4], acc[5]),
                                           _mm256_add_ps(acc[6], acc[7])));
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    double sum = tail;
    for (int l = 0; l < 8; ++l) sum += lanes[l];
    return sum;
}

KC_TARGET_AVX2 static void triad_avx2(float *restrict a, const float *restrict b,
                                      const float *restrict c, float s, int64_t n,
                                      int64_t passes) {
    const __m256 vs = _mm256_set1_ps(s);
    for (int64_t p = 0; p < passes; ++p) {
        int64_t i = 0;
        for (; i + 32 <= n; i += 32)
            for (int k = 0; k < 4; ++k)
                _mm256_storeu_ps(a + i + 8 * k,
                                 _mm256_fmadd_ps(vs, _mm256_loadu_ps(c + i + 8 * k),
                                                 _mm256_loadu_ps(b + i + 8 * k)));
        for (; i < n; ++i) a[i] = b[i] + s * c[i];
        PASS_BARRIER();
    }
}
#endif

typedef double (*read_fn)(const float *, int64_t, int64_t);
typedef void (*triad_fn)(float *, const float *, const float *, float, int64_t, int64_t);

static int stream_run(bench_stream_args *a, read_fn rd, triad_fn tr) {
    double t0 = 0.0, t1 = 0.0, sum = 0.0;
    int ran = 1, disturbed = 0;
    const int64_t n = a->n, passes = a->passes;
#pragma omp parallel num_threads(a->threads) reduction(+ : sum, disturbed)
    {
        const int t = thread_id(), nt = thread_count();
        if (t == 0) ran = nt;
        int64_t lo, hi;
        chunk(n, t, nt, &lo, &hi);
        kc_mask saved;
        int pinned = pin_begin(a->pin, t, &saved);
        const long cs0 = preemptions();
        TIMED_REGION_BEGIN(t0)
        if (hi > lo) {
            if (rd) sum += rd(a->b + lo, hi - lo, passes);
            else tr(a->a + lo, a->b + lo, a->c + lo, a->scalar, hi - lo, passes);
        }
        TIMED_REGION_END(t1)
        disturbed += preemptions() > cs0;
        pin_end(pinned, &saved);
    }
    a->threads_run = ran;
    a->disturbed = disturbed;
    a->bytes = (rd ? 4 : 12) * n * passes;
    a->checksum = sum;
    a->seconds = t1 - t0;
    return KC_OK;
}

int bench_read_f32(void *args) {
    bench_stream_args *a = (bench_stream_args *)args;
    switch (a->isa) {
        case KC_ISA_PORTABLE: return stream_run(a, read_portable, NULL);
#if KC_X86
        case KC_ISA_AVX2: return stream_run(a, read_avx2, NULL);
        case KC_ISA_AVX512:
        case KC_ISA_AVX512_VNNI: return stream_run(a, read_avx512, NULL);
#endif
        default: return KC_ERR_ISA;
    }
}

int bench_triad_f32(void *args) {
    bench_stream_args *a = (bench_stream_args *)args;
    switch (a->isa) {
        case KC_ISA_PORTABLE: return stream_run(a, NULL, triad_portable);
#if KC_X86
        case KC_ISA_AVX2: return stream_run(a, NULL, triad_avx2);
        case KC_ISA_AVX512:
        case KC_ISA_AVX512_VNNI: return stream_run(a, NULL, triad_avx512);
#endif
        default: return KC_ERR_ISA;
    }
}

/* ================================================================= clock */
static uint64_t add_chain(int64_t iters) {
    uint64_t x = 0, one = 1;
#if KC_X86
    __asm__ volatile("" : "+r"(one));
    for (int64_t i = 0; i < iters; ++i)
        __asm__ volatile(".rept 64\n\tadd %1, %0\n\t.endr" : "+r"(x) : "r"(one));
#elif defined(__aarch64__)
    __asm__ volatile("" : "+r"(one));
    for (int64_t i = 0; i < iters; ++i)
        __asm__ volatile(".rept 64\n\tadd %0, %0, %1\n\t.endr" : "+r"(x) : "r"(one));
#else
    volatile uint64_t step = one;
    for (int64_t i = 0; i < iters * 64; ++i) x += step;
#endif
    return x;
}

int bench_clock(void *args) {
    bench_clock_args *a = (bench_clock_args *)args;
    int ran = 1;
    uint64_t sum = 0;
    const int64_t iters = a->iters;
#pragma omp parallel num_threads(a->threads) reduction(+ : sum)
    {
        const int t = thread_id();
        if (t == 0) ran = thread_count();
        kc_mask saved;
        int pinned = pin_begin(a->pin, t, &saved);
#pragma omp barrier
        double t0 = now_s();
        sum += add_chain(iters);
        double t1 = now_s();
        if (t < a->threads) a->seconds[t] = t1 - t0;
        pin_end(pinned, &saved);
    }
    a->threads_run = ran;
    a->adds_per_iter = 64;
    a->checksum = sum;
    return KC_OK;
}

int bench_cpu_signature(int *family, int *model, int *stepping) {
    *family = *model = *stepping = 0;
#if KC_X86
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return KC_ERR_ISA;
    unsigned base_family = (eax >> 8) & 0xf, base_model = (eax >> 4) & 0xf;
    *stepping = (int)(eax & 0xf);
    *family = (int)base_family + (base_family == 0xf ? (int)((eax >> 20) & 0xff) : 0);
    *model = (int)base_model;
    if (base_family == 0x6 || base_family == 0xf) *model += (int)(((eax >> 16) & 0xf) << 4);
    return KC_OK;
#else
    return KC_ERR_ISA;
#endif
}

int bench_cpuid_caches(int64_t *bytes, int *shared, int n_levels) {
    for (int i = 0; i < n_levels; ++i) bytes[i] = 0, shared[i] = 0;
#if KC_X86
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0, leaf = 4, max_leaf = 0;
    if (!__get_cpuid(0, &max_leaf, &ebx, &ecx, &edx)) return KC_ERR_ISA;
    char vendor[13];
    memcpy(vendor, &ebx, 4);
    memcpy(vendor + 4, &edx, 4);
    memcpy(vendor + 8, &ecx, 4);
    vendor[12] = 0;
    if (strcmp(vendor, "AuthenticAMD") == 0) {
        unsigned ext = 0;
        __get_cpuid(0x80000000, &ext, &ebx, &ecx, &edx);
        if (ext < 0x8000001D) return KC_ERR_ISA;
        __get_cpuid(0x80000001, &eax, &ebx, &ecx, &edx);
        if (!((ecx >> 22) & 1)) return KC_ERR_ISA; /* TOPOEXT: leaf 0x8000001D valid */
        leaf = 0x8000001D;
    } else if (max_leaf < 4) {
        return KC_ERR_ISA;
    }
    for (unsigned sub = 0; sub < 16; ++sub) {
        __cpuid_count(leaf, sub, eax, ebx, ecx, edx);
        unsigned type = eax & 0x1f, level = (eax >> 5) & 0x7;
        if (type == 0) break;
        if (type == 2 || (int)level >= n_levels) continue; /* instruction cache */
        int64_t ways = ((ebx >> 22) & 0x3ff) + 1, parts = ((ebx >> 12) & 0x3ff) + 1;
        int64_t line = (ebx & 0xfff) + 1, sets = (int64_t)ecx + 1;
        bytes[level] = ways * parts * line * sets;
        shared[level] = (int)((eax >> 14) & 0xfff) + 1;
    }
    return KC_OK;
#else
    return KC_ERR_ISA;
#endif
}
