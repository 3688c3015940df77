#ifndef VQVAE_JPEG_SHIM_H
#define VQVAE_JPEG_SHIM_H
// JPEG decoding and encoding through libjpeg without setjmp in the caller: every function catches
// libjpeg's errors in C (an error manager whose error_exit longjmps back into the same function)
// and returns 0 with a message instead of exiting the process or unwinding through Swift.
#include <stddef.h>

/// A JPEG file opened for reading, its header parsed.
typedef struct CJPEG_reader CJPEG_reader;

/// Opens `path` and reads its header. Returns NULL on failure with the reason in `message`
/// (`message_size` bytes, NUL-terminated).
CJPEG_reader *CJPEG_open(const char *path, char *message, size_t message_size);
/// The image's width and height in pixels.
int CJPEG_width(const CJPEG_reader *reader);
int CJPEG_height(const CJPEG_reader *reader);
/// Channels of the decoded pixels: 1 for a grayscale file, 3 (RGB) for every colour file
/// (YCbCr, RGB, and CMYK/YCCK, which are converted to RGB).
int CJPEG_channels(const CJPEG_reader *reader);
/// Decodes the pixels into `buffer` (`height` rows of `width * channels` bytes, top row first).
/// A `buffer_size` smaller than that is refused. Data that libjpeg reports as corrupt or
/// truncated (it would otherwise fill the rest with gray and warn) is an error too. Returns
/// non-zero on success, 0 with the reason in `message`. Call at most once.
int CJPEG_decode(CJPEG_reader *reader, unsigned char *buffer, size_t buffer_size, char *message, size_t message_size);
/// Frees the reader and closes its file.
void CJPEG_close(CJPEG_reader *reader);

/// Encodes `height` rows of `width * channels` bytes (`channels` 1 gray or 3 RGB) as a baseline
/// JPEG of `quality` (1...100) in memory; colour is stored at full resolution (4:4:4) from quality
/// 90 up and halved both ways (4:2:0) below. On success returns non-zero and sets `*output` to a
/// buffer of `*output_size` bytes that the caller releases with `CJPEG_free`; on failure returns 0
/// with the reason in `message`.
int CJPEG_encode(const unsigned char *pixels, int width, int height, int channels, int quality,
                 unsigned char **output, size_t *output_size, char *message, size_t message_size);
/// Releases a buffer from `CJPEG_encode`.
void CJPEG_free(void *buffer);

#endif
