/* Shared definitions for the kernels_c C sources.
 *
 * ISA dispatch: every kernel is compiled once per instruction-set path with GCC/Clang
 * function target attributes, so the translation unit itself stays at the x86-64 baseline
 * and a path's instructions only execute after the Python layer has checked, with CPUID,
 * that the CPU (and the OS, via XGETBV) supports every extension that path uses.
 */
#ifndef KC_COMMON_H
#define KC_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* KC_NO_X86 builds the portable code only, as on aarch64 (a test compiles every source so,
 * to prove that nothing x86-specific leaks out of the KC_X86 sections). */
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(KC_NO_X86)
#define KC_X86 1
#include <immintrin.h>
/* fp32 AVX-512 path: AVX512F only (Xeon Phi 7250 has F/CD/ER/PF but no BW/DQ/VL). */
#define KC_TARGET_AVX512 __attribute__((target("avx512f")))
/* int8 VNNI path: vpdpbusd needs AVX512_VNNI; byte shuffles need BW. */
#define KC_TARGET_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define KC_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define KC_X86 0
#endif

/* ISA path identifiers; must match kernels_c/_isa.py LEVELS. */
enum { KC_ISA_PORTABLE = 0, KC_ISA_AVX2 = 1, KC_ISA_AVX512 = 2, KC_ISA_AVX512_VNNI = 3 };

/* Return codes shared by all kernels. Inputs are validated in Python; these only signal
 * conditions that cannot be checked there (allocation failure, path not compiled in). */
enum { KC_OK = 0, KC_ERR_ISA = 1, KC_ERR_NOMEM = 2, KC_ERR_ARGS = 3 };

#define KC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KC_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
