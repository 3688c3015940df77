#include "jpeg_shim.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>

// libjpeg reports a fatal error through error_exit, which by default prints and calls exit(). Here
// error_exit keeps the message and longjmps to the setjmp of the shim function that made the
// libjpeg call, so no jump ever leaves C. Warnings that mean the pixels are damaged (truncated or
// corrupt entropy-coded data, after which libjpeg fills the rest with gray) are fatal too; other
// warnings (e.g. extraneous bytes before a marker) are ignored, and nothing is printed.
struct error_manager {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

static void on_error(j_common_ptr cinfo) {
    struct error_manager *manager = (struct error_manager *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, manager->message);
    longjmp(manager->jump, 1);
}

static int damages_pixels(int code) {
    return code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_HUFF_BAD_CODE
        || code == JWRN_ARITH_BAD_CODE || code == JWRN_MUST_RESYNC || code == JWRN_NOT_SEQUENTIAL;
}

static void on_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return;  // trace messages
    cinfo->err->num_warnings++;
    if (damages_pixels(cinfo->err->msg_code)) on_error(cinfo);
}

static void silent(j_common_ptr cinfo) { (void)cinfo; }

static void install(struct error_manager *manager) {
    jpeg_std_error(&manager->base);
    manager->base.error_exit = on_error;
    manager->base.emit_message = on_message;
    manager->base.output_message = silent;
    manager->message[0] = 0;
}

static void copy_message(char *message, size_t message_size, const char *text) {
    if (!message || message_size == 0) return;
    strncpy(message, text && text[0] ? text : "libjpeg reported no reason", message_size - 1);
    message[message_size - 1] = 0;
}

struct CJPEG_reader {
    struct jpeg_decompress_struct info;
    struct error_manager errors;
    FILE *file;
    int channels;
    int cmyk;
};

CJPEG_reader *CJPEG_open(const char *path, char *message, size_t message_size) {
    CJPEG_reader *reader = calloc(1, sizeof *reader);
    if (!reader) { copy_message(message, message_size, "out of memory"); return NULL; }
    reader->file = fopen(path, "rb");
    if (!reader->file) {
        copy_message(message, message_size, strerror(errno));
        free(reader);
        return NULL;
    }
    install(&reader->errors);
    reader->info.err = &reader->errors.base;
    if (setjmp(reader->errors.jump)) {
        copy_message(message, message_size, reader->errors.message);
        jpeg_destroy_decompress(&reader->info);
        fclose(reader->file);
        free(reader);
        return NULL;
    }
    jpeg_create_decompress(&reader->info);
    jpeg_stdio_src(&reader->info, reader->file);
    jpeg_read_header(&reader->info, TRUE);
    switch (reader->info.jpeg_color_space) {
    case JCS_GRAYSCALE:
        reader->info.out_color_space = JCS_GRAYSCALE;
        reader->channels = 1;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        reader->info.out_color_space = JCS_CMYK;
        reader->channels = 3;
        reader->cmyk = 1;
        break;
    default:
        reader->info.out_color_space = JCS_RGB;
        reader->channels = 3;
        break;
    }
    return reader;
}

int CJPEG_width(const CJPEG_reader *reader) { return (int)reader->info.image_width; }
int CJPEG_height(const CJPEG_reader *reader) { return (int)reader->info.image_height; }
int CJPEG_channels(const CJPEG_reader *reader) { return reader->channels; }

int CJPEG_decode(CJPEG_reader *reader, unsigned char *buffer, size_t buffer_size, char *message, size_t message_size) {
    size_t width = reader->info.image_width, height = reader->info.image_height;
    size_t stride = width * (size_t)reader->channels;
    if (width == 0 || height == 0 || buffer_size / stride < height) {
        copy_message(message, message_size, "buffer too small for the image");
        return 0;
    }
    // Volatile: changed between setjmp and a possible longjmp.
    unsigned char *volatile row = NULL;
    if (setjmp(reader->errors.jump)) {
        free(row);
        copy_message(message, message_size, reader->errors.message);
        return 0;
    }
    jpeg_start_decompress(&reader->info);
    if (reader->info.output_width != width || reader->info.output_height != height
        || reader->info.output_components != (reader->cmyk ? 4 : reader->channels)) {
        copy_message(message, message_size, "unexpected decoded size");
        jpeg_abort_decompress(&reader->info);
        return 0;
    }
    if (reader->cmyk) {
        row = malloc(width * 4);
        if (!row) { copy_message(message, message_size, "out of memory"); jpeg_abort_decompress(&reader->info); return 0; }
    }
    // Adobe's CMYK JPEGs store inverted values (255 = no ink); others store plain ink amounts.
    int inverted = reader->info.saw_Adobe_marker;
    while (reader->info.output_scanline < height) {
        unsigned char *target = buffer + (size_t)reader->info.output_scanline * stride;
        JSAMPROW rows[1] = { reader->cmyk ? row : target };
        if (jpeg_read_scanlines(&reader->info, rows, 1) != 1) {
            free(row);
            copy_message(message, message_size, "Premature end of JPEG file");
            jpeg_abort_decompress(&reader->info);
            return 0;
        }
        if (reader->cmyk) {
            for (size_t x = 0; x < width; x++) {
                unsigned k = inverted ? row[4 * x + 3] : 255u - row[4 * x + 3];
                for (int c = 0; c < 3; c++) {
                    unsigned v = inverted ? row[4 * x + c] : 255u - row[4 * x + c];
                    target[3 * x + c] = (unsigned char)((v * k + 127) / 255);
                }
            }
        }
    }
    jpeg_finish_decompress(&reader->info);
    free(row);
    return 1;
}

void CJPEG_close(CJPEG_reader *reader) {
    if (!reader) return;
    jpeg_destroy_decompress(&reader->info);
    fclose(reader->file);
    free(reader);
}

int CJPEG_encode(const unsigned char *pixels, int width, int height, int channels, int quality,
                 unsigned char **output, size_t *output_size, char *message, size_t message_size) {
    if (width <= 0 || height <= 0 || (channels != 1 && channels != 3) || quality < 1 || quality > 100) {
        copy_message(message, message_size, "a JPEG needs a gray or RGB image of at least 1x1 pixels and a quality of 1 to 100");
        return 0;
    }
    if (width > JPEG_MAX_DIMENSION || height > JPEG_MAX_DIMENSION) {
        copy_message(message, message_size, "JPEG files hold at most 65500 pixels per side");
        return 0;
    }
    struct jpeg_compress_struct info;
    struct error_manager errors;
    memset(&info, 0, sizeof info);
    // Volatile: libjpeg updates them while compressing, and the error path frees the buffer.
    unsigned char *volatile memory = NULL;
    volatile unsigned long size = 0;
    install(&errors);
    info.err = &errors.base;
    if (setjmp(errors.jump)) {
        copy_message(message, message_size, errors.message);
        jpeg_destroy_compress(&info);
        free(memory);
        return 0;
    }
    jpeg_create_compress(&info);
    jpeg_mem_dest(&info, (unsigned char **)&memory, (unsigned long *)&size);
    info.image_width = (JDIMENSION)width;
    info.image_height = (JDIMENSION)height;
    info.input_components = channels;
    info.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&info);
    jpeg_set_quality(&info, quality, TRUE);
    // From quality 90 up, colour keeps full resolution (4:4:4); below, it is halved both ways (4:2:0).
    if (channels == 3 && quality >= 90) info.comp_info[0].h_samp_factor = info.comp_info[0].v_samp_factor = 1;
    jpeg_start_compress(&info, TRUE);
    size_t stride = (size_t)width * (size_t)channels;
    while (info.next_scanline < info.image_height) {
        JSAMPROW rows[1] = { (JSAMPROW)(pixels + (size_t)info.next_scanline * stride) };
        jpeg_write_scanlines(&info, rows, 1);
    }
    jpeg_finish_compress(&info);
    jpeg_destroy_compress(&info);
    *output = memory;
    *output_size = size;
    return 1;
}

void CJPEG_free(void *buffer) { free(buffer); }
