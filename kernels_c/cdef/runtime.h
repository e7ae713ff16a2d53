/* Runtime support: CPU feature detection, the C timing loop and machine micro-benchmarks. */
typedef struct {
    int sse4_2, avx, avx2, fma, f16c, os_ymm;
    int avx512f, avx512cd, avx512er, avx512pf, avx512bw, avx512dq, avx512vl, avx512_vnni;
    int avx_vnni, os_zmm;
    int max_leaf;
    char vendor[16];
    char brand[64];
} kc_cpu_features;

typedef int (*kc_kernel_fn)(void *args);

int kc_detect_cpu(kc_cpu_features *out);
int64_t kc_now_ns(void);
int kc_noop(void *args);
int kc_time_calls(kc_kernel_fn fn, void *args, int warmup, int n, double *out_seconds,
                  char *flush, size_t flush_bytes);
