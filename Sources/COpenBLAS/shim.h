#ifndef VQVAE_COPENBLAS_SHIM_H
#define VQVAE_COPENBLAS_SHIM_H
#include <cblas.h>
// openblas_set_num_threads and openblas_get_config are declared by OpenBLAS's cblas.h.
#endif
