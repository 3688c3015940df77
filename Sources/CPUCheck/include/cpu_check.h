#ifndef VQVAE_CPU_CHECK_H
#define VQVAE_CPU_CHECK_H

/// The instruction-set extensions this build was compiled for (the compiler's target), as a
/// space-separated list such as "avx avx2 fma" ("" for a baseline build).
const char *vqvae_cpu_required_features(void);

/// The extensions of `vqvae_cpu_required_features` that this CPU lacks ("" when it has them all).
const char *vqvae_cpu_missing_features(void);

#endif
