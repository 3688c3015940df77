#ifndef VQVAE_CJPEG_SHIM_H
#define VQVAE_CJPEG_SHIM_H
// libjpeg (libjpeg-turbo) for the JPEG reader and writer. Its default error handler calls exit(),
// and its recovery mechanism is setjmp/longjmp, which must never unwind through Swift frames, so
// Swift does not call libjpeg directly: CJPEGShim (a C target) wraps every call behind an error
// manager that longjmps only within its own C functions and returns an error code with libjpeg's
// message. This target brings the headers and the library (pkg-config `libjpeg`).
#include <stdio.h>
#include <jpeglib.h>

#endif
