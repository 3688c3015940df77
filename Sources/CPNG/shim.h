#ifndef VQVAE_CPNG_SHIM_H
#define VQVAE_CPNG_SHIM_H
// libpng's classic API reports errors with setjmp/longjmp, which must never unwind through Swift
// frames. Everything here uses libpng's simplified API (png_image_*), which catches its own errors
// and returns a status with a message in `png_image.message`; the functions below wrap the macros
// and struct set-up Swift cannot express, and never longjmp into the caller.
#include <png.h>
#include <stdlib.h>
#include <string.h>

/// PNG_FORMAT_FLAG_ALPHA
static inline png_uint_32 CPNG_FORMAT_FLAG_ALPHA(void) { return PNG_FORMAT_FLAG_ALPHA; }
/// PNG_FORMAT_FLAG_COLOR
static inline png_uint_32 CPNG_FORMAT_FLAG_COLOR(void) { return PNG_FORMAT_FLAG_COLOR; }
/// PNG_FORMAT_FLAG_LINEAR (set in a file's format when its samples are 16-bit)
static inline png_uint_32 CPNG_FORMAT_FLAG_LINEAR(void) { return PNG_FORMAT_FLAG_LINEAR; }
/// PNG_FORMAT_FLAG_COLORMAP
static inline png_uint_32 CPNG_FORMAT_FLAG_COLORMAP(void) { return PNG_FORMAT_FLAG_COLORMAP; }
/// PNG_FORMAT_GRAY (8-bit)
static inline png_uint_32 CPNG_FORMAT_GRAY(void) { return PNG_FORMAT_GRAY; }
/// PNG_FORMAT_GA (8-bit gray, then alpha)
static inline png_uint_32 CPNG_FORMAT_GA(void) { return PNG_FORMAT_GA; }
/// PNG_FORMAT_RGB (8-bit)
static inline png_uint_32 CPNG_FORMAT_RGB(void) { return PNG_FORMAT_RGB; }
/// PNG_FORMAT_RGBA (8-bit, alpha last, colour not premultiplied)
static inline png_uint_32 CPNG_FORMAT_RGBA(void) { return PNG_FORMAT_RGBA; }

/// Zeroes `image`, sets `version` to PNG_IMAGE_VERSION and reads the header of `path` into
/// `image->width`, `height` and `format`. It then sets PNG_IMAGE_FLAG_16BIT_sRGB, so that 16-bit
/// samples of a file without gAMA/sRGB chunks are taken as already sRGB-encoded (as other image
/// libraries read them) rather than as linear light. Returns non-zero on success; on failure
/// `image->message` says why and nothing needs freeing.
static inline int CPNG_begin_read(png_imagep image, const char *path) {
    memset(image, 0, sizeof *image);
    image->version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(image, path)) return 0;
    image->flags |= PNG_IMAGE_FLAG_16BIT_sRGB;
    return 1;
}

/// Decodes the pixels of an image opened by CPNG_begin_read into `buffer`, as 8-bit samples in
/// `format` (one of CPNG_FORMAT_GRAY/GA/RGB/RGBA), top row first, rows `row_stride` bytes apart.
/// `buffer_size` must be at least `row_stride * image->height`; a smaller buffer is refused. Frees
/// libpng's state in every case. Returns non-zero on success; on failure `image->message` says why.
static inline int CPNG_finish_read(png_imagep image, png_uint_32 format, void *buffer,
                                   size_t buffer_size, png_int_32 row_stride) {
    image->format = format;
    if (row_stride <= 0 || (size_t)row_stride < PNG_IMAGE_ROW_STRIDE(*image)
        || buffer_size / (size_t)row_stride < image->height) {
        png_image_free(image);
        strncpy(image->message, "buffer too small for the image", sizeof image->message - 1);
        image->message[sizeof image->message - 1] = 0;
        return 0;
    }
    int ok = png_image_finish_read(image, NULL, buffer, row_stride, NULL);
    png_image_free(image);
    return ok;
}

/// Encodes `height` rows of `width` 8-bit pixels in `format` (CPNG_FORMAT_GRAY, GA, RGB or RGBA)
/// from `buffer`, rows `row_stride` bytes apart, as a PNG file in memory. On success returns
/// non-zero and sets `*output` to a buffer of `*output_size` bytes that the caller releases with
/// free(); on failure returns 0 and `image` (scratch space) holds libpng's message.
static inline int CPNG_write_to_memory(png_imagep image, png_uint_32 width, png_uint_32 height, png_uint_32 format,
                                       const void *buffer, png_int_32 row_stride, void **output, size_t *output_size) {
    memset(image, 0, sizeof *image);
    image->version = PNG_IMAGE_VERSION;
    image->width = width;
    image->height = height;
    image->format = format;
    png_alloc_size_t size = 0;
    *output = NULL;
    *output_size = 0;
    if (!png_image_write_to_memory(image, NULL, &size, 0, buffer, row_stride, NULL)) {
        png_image_free(image);
        return 0;
    }
    void *memory = malloc(size ? size : 1);
    if (!memory) {
        png_image_free(image);
        strncpy(image->message, "out of memory", sizeof image->message - 1);
        return 0;
    }
    int ok = png_image_write_to_memory(image, memory, &size, 0, buffer, row_stride, NULL);
    png_image_free(image);
    if (!ok) { free(memory); return 0; }
    *output = memory;
    *output_size = size;
    return 1;
}

/// PNG_IMAGE_FAILED(*image): non-zero when libpng reported an error (not merely a warning).
static inline int CPNG_failed(const png_image *image) { return PNG_IMAGE_FAILED(*image); }

/// libpng's last error or warning message for `image` (NUL-terminated, at most 63 characters).
static inline const char *CPNG_message(const png_image *image) { return image->message; }

#endif
