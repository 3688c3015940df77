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

#if defined(__x86_64__)
#define BASELINE __attribute__((target("arch=x86-64")))

struct feature {
    const char *name;
    int compiled;
};

static const struct feature features[] = {
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
    {"", 0},
};

static char required[256];
static char missing[256];

BASELINE static int supports(const char *name) {
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
    __builtin_cpu_init();
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
            "machine (swift build -c release), or with VQVAE_TARGET_CPU=generic for clusters whose nodes differ\n",
            vqvae_cpu_required_features(), absent);
    exit(1);
}
#else
const char *vqvae_cpu_required_features(void) { return ""; }
const char *vqvae_cpu_missing_features(void) { return ""; }
#endif
