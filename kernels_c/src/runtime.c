/* CPU feature detection (CPUID + XGETBV) and the timing loop used by the harness. */
#include <string.h>
#include <time.h>

#include "kc_common.h"
#include "runtime.h"

#if KC_X86
#include <cpuid.h>

static uint64_t read_xcr0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}
#endif

int kc_detect_cpu(kc_cpu_features *f) {
    memset(f, 0, sizeof(*f));
#if KC_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return 0;
    f->max_leaf = (int)a;
    memcpy(f->vendor, &b, 4);
    memcpy(f->vendor + 4, &d, 4);
    memcpy(f->vendor + 8, &c, 4);
    __get_cpuid(1, &a, &b, &c, &d);
    f->sse4_2 = (c >> 20) & 1;
    f->fma = (c >> 12) & 1;
    f->f16c = (c >> 29) & 1;
    int osxsave = (c >> 27) & 1;
    int avx_bit = (c >> 28) & 1;
    uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    f->os_ymm = (xcr0 & 0x6) == 0x6;         /* SSE + AVX state enabled */
    f->os_zmm = (xcr0 & 0xe6) == 0xe6;       /* + opmask, ZMM_Hi256, Hi16_ZMM */
    f->avx = avx_bit && f->os_ymm;
    if (!f->avx) f->fma = 0, f->f16c = 0;
    if (f->max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f->avx2 = f->avx && ((b >> 5) & 1);
        if (f->os_zmm) {
            f->avx512f = (b >> 16) & 1;
            f->avx512dq = (b >> 17) & 1;
            f->avx512pf = (b >> 26) & 1;
            f->avx512er = (b >> 27) & 1;
            f->avx512cd = (b >> 28) & 1;
            f->avx512bw = (b >> 30) & 1;
            f->avx512vl = (b >> 31) & 1;
            f->avx512_vnni = (c >> 11) & 1;
        }
        __cpuid_count(7, 1, a, b, c, d);
        f->avx_vnni = f->avx && ((a >> 4) & 1);
    }
    unsigned ext = 0;
    __get_cpuid(0x80000000, &ext, &b, &c, &d);
    if (ext >= 0x80000004) {
        unsigned *w = (unsigned *)f->brand;
        for (unsigned leaf = 0; leaf < 3; ++leaf)
            __get_cpuid(0x80000002 + leaf, &w[4 * leaf], &w[4 * leaf + 1], &w[4 * leaf + 2],
                        &w[4 * leaf + 3]);
        f->brand[63] = 0;
    }
#endif
    return 0;
}

int64_t kc_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int kc_noop(void *args) {
    /* The empty kernel the harness uses to measure its own per-call overhead. */
    __asm__ volatile("" : : "r"(args) : "memory");
    return 0;
}

static void flush_cache(char *buf, size_t bytes) {
    /* Writing a buffer larger than the last-level cache evicts the kernel's operands. */
    for (size_t i = 0; i < bytes; i += 64) buf[i] = (char)(buf[i] + 1);
    __asm__ volatile("" : : "r"(buf) : "memory");
}

int kc_time_calls(kc_kernel_fn fn, void *args, int warmup, int n, double *out_seconds,
                  char *flush, size_t flush_bytes) {
    for (int i = 0; i < warmup; ++i) {
        int rc = fn(args);
        if (rc) return rc;
    }
    for (int i = 0; i < n; ++i) {
        if (flush) flush_cache(flush, flush_bytes);
        int64_t t0 = kc_now_ns();
        int rc = fn(args);
        int64_t t1 = kc_now_ns();
        if (rc) return rc;
        out_seconds[i] = (double)(t1 - t0) * 1e-9;
    }
    return 0;
}
