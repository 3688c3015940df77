// Refuses, before main, to run a build on a CPU that lacks an instruction-set extension the build
// was compiled for: one line naming the missing extensions and exit status 1, instead of an
// illegal-instruction crash somewhere in the first vector loop.
//
// This file is compiled with the same target CPU as the Swift code, so the compiler's feature
// macros name exactly what the build may use. The checking functions themselves are compiled for
// the baseline of the architecture, so they run on any CPU of it.
#include "cpu_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__aarch64__)
#if defined(__x86_64__)
#define BASELINE __attribute__((target("arch=x86-64")))
#define CLUSTER_HINT "VQVAE_TARGET_CPU=haswell (any x86-64 with AVX2) or generic (any x86-64)"
#else
#include <sys/auxv.h>
#define BASELINE __attribute__((target("arch=armv8-a")))
#define CLUSTER_HINT "VQVAE_TARGET_CPU=generic (any aarch64)"
#endif

struct feature {
    const char *name;
    int compiled;
};

static const struct feature features[] = {
#if defined(__x86_64__)
#ifdef __AVX__
    {"avx", 1},
#endif
#ifdef __AVX2__
    {"avx2", 1},
#endif
#ifdef __FMA__
    {"fma", 1},
#endif
#ifdef __F16C__
    {"f16c", 1},
#endif
#ifdef __BMI2__
    {"bmi2", 1},
#endif
#ifdef __AVX512F__
    {"avx512f", 1},
#endif
#ifdef __AVX512BW__
    {"avx512bw", 1},
#endif
#ifdef __AVX512DQ__
    {"avx512dq", 1},
#endif
#ifdef __AVX512VL__
    {"avx512vl", 1},
#endif
#else
// The extensions beyond the baseline that -mcpu may let the compiler use, by their names in
// /proc/cpuinfo.
#ifdef __ARM_FEATURE_FP16_VECTOR_ARITHMETIC
    {"asimdhp", 1},
#endif
#ifdef __ARM_FEATURE_DOTPROD
    {"asimddp", 1},
#endif
#ifdef __ARM_FEATURE_SVE
    {"sve", 1},
#endif
#ifdef __ARM_FEATURE_SVE2
    {"sve2", 1},
#endif
#ifdef __ARM_FEATURE_BF16
    {"bf16", 1},
#endif
#ifdef __ARM_FEATURE_MATMUL_INT8
    {"i8mm", 1},
#endif
#endif
    {"", 0},
};

static char required[256];
static char missing[256];

BASELINE static int supports(const char *name) {
#if defined(__x86_64__)
    // __builtin_cpu_supports needs a literal argument.
    if (!strcmp(name, "avx")) return __builtin_cpu_supports("avx");
    if (!strcmp(name, "avx2")) return __builtin_cpu_supports("avx2");
    if (!strcmp(name, "fma")) return __builtin_cpu_supports("fma");
    if (!strcmp(name, "f16c")) return __builtin_cpu_supports("f16c");
    if (!strcmp(name, "bmi2")) return __builtin_cpu_supports("bmi2");
    if (!strcmp(name, "avx512f")) return __builtin_cpu_supports("avx512f");
    if (!strcmp(name, "avx512bw")) return __builtin_cpu_supports("avx512bw");
    if (!strcmp(name, "avx512dq")) return __builtin_cpu_supports("avx512dq");
    if (!strcmp(name, "avx512vl")) return __builtin_cpu_supports("avx512vl");
#else
    // The kernel's hardware-capability bits (asm/hwcap.h).
    unsigned long hwcap = getauxval(AT_HWCAP), hwcap2 = getauxval(AT_HWCAP2);
    if (!strcmp(name, "asimdhp")) return (hwcap >> 10) & 1;
    if (!strcmp(name, "asimddp")) return (hwcap >> 20) & 1;
    if (!strcmp(name, "sve")) return (hwcap >> 22) & 1;
    if (!strcmp(name, "sve2")) return (hwcap2 >> 1) & 1;
    if (!strcmp(name, "bf16")) return (hwcap2 >> 14) & 1;
    if (!strcmp(name, "i8mm")) return (hwcap2 >> 13) & 1;
#endif
    return 1;
}

BASELINE static void append(char *list, const char *name) {
    if (list[0]) strncat(list, " ", 255 - strlen(list));
    strncat(list, name, 255 - strlen(list));
}

BASELINE const char *vqvae_cpu_required_features(void) {
    required[0] = 0;
    for (const struct feature *f = features; f->compiled; f++) append(required, f->name);
    return required;
}

BASELINE const char *vqvae_cpu_missing_features(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
#endif
    missing[0] = 0;
    for (const struct feature *f = features; f->compiled; f++) {
        if (!supports(f->name)) append(missing, f->name);
    }
    return missing;
}

BASELINE __attribute__((constructor)) static void vqvae_cpu_check(void) {
    const char *absent = vqvae_cpu_missing_features();
    if (!absent[0]) return;
    fprintf(stderr,
            "error: this vqvae was built for a CPU with %s, but this CPU lacks %s; rebuild it on this "
            "machine (swift build -c release), or with " CLUSTER_HINT " for clusters whose nodes differ\n",
            vqvae_cpu_required_features(), absent);
    exit(1);
}
#else
const char *vqvae_cpu_required_features(void) { return ""; }
const char *vqvae_cpu_missing_features(void) { return ""; }
#endif
