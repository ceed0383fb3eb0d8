/* DEPTH_TO_SPACE and SPACE_TO_DEPTH int8 kernels (TFLite reference, bit-exact: copies). */
#include <string.h>

#include "mcuflow_common.h"

/* mcuflow:interface */

/* `batches` NHWC images of the *larger spatial* side `space_h` x `space_w` x `space_c` (the
 * output of DEPTH_TO_SPACE, the input of SPACE_TO_DEPTH) and `block` (the block size).
 * `phase_h`, `phase_w` (DEPTH_TO_SPACE only, below `block`): the output is a window of the
 * whole output starting that many rows and columns into the blocks of the input's first row
 * and column (a patch stage); 0 for a whole op. */
typedef struct {
    int32_t batches;
    int32_t space_h;
    int32_t space_w;
    int32_t space_c;
    int32_t block;
    int32_t phase_h;
    int32_t phase_w;
} mcuflow_depth_space_t;

/* DEPTH_TO_SPACE: output (h*b + i - phase_h, w*b + j - phase_w, c) = input (h, w,
 * (i*b + j) * C + c); a copy of up to b*C values per run of output pixels in one block, written
 * in order. The output must not overlap the input. */
void mcuflow_depth_to_space_s8(const mcuflow_depth_space_t *s, const int8_t *input,
                               int8_t *output);

/* SPACE_TO_DEPTH: the inverse; a copy of C values per input pixel, the output written in
 * order. The output must not overlap the input. */
void mcuflow_space_to_depth_s8(const mcuflow_depth_space_t *s, const int8_t *input,
                               int8_t *output);

/* mcuflow:end-interface */

void mcuflow_depth_to_space_s8(const mcuflow_depth_space_t *s, const int8_t *input,
                               int8_t *output)
{
    const size_t depth = (size_t)s->space_c;
    const int32_t block = s->block;
    const int32_t in_h = (s->phase_h + s->space_h + block - 1) / block;
    const int32_t in_w = (s->phase_w + s->space_w + block - 1) / block;
    const size_t in_pixel = depth * (size_t)block * (size_t)block;
    for (int32_t b = 0; b < s->batches; ++b) {
        for (int32_t y = s->phase_h; y < s->phase_h + s->space_h; ++y) {
            const int8_t *row = input + ((size_t)b * (size_t)in_h + (size_t)(y / block))
                                            * (size_t)in_w * in_pixel
                                + (size_t)(y % block) * (size_t)block * depth;
            int32_t x = s->phase_w;
            while (x < s->phase_w + s->space_w) {
                const int32_t j = x % block;
                int32_t run = block - j;
                if (run > s->phase_w + s->space_w - x) {
                    run = s->phase_w + s->space_w - x;
                }
                memcpy(output, row + (size_t)(x / block) * in_pixel + (size_t)j * depth,
                       (size_t)run * depth);
                output += (size_t)run * depth;
                x += run;
            }
        }
    }
}

void mcuflow_space_to_depth_s8(const mcuflow_depth_space_t *s, const int8_t *input,
                               int8_t *output)
{
    const size_t depth = (size_t)s->space_c;
    const int32_t block = s->block;
    const int32_t out_h = s->space_h / block;
    const int32_t out_w = s->space_w / block;
    const size_t in_row = (size_t)s->space_w * depth;
    for (int32_t b = 0; b < s->batches; ++b) {
        for (int32_t h = 0; h < out_h; ++h) {
            const int8_t *rows = input + ((size_t)b * (size_t)s->space_h
                                          + (size_t)h * (size_t)block) * in_row;
            for (int32_t w = 0; w < out_w; ++w) {
                for (int32_t i = 0; i < block; ++i) {
                    memcpy(output, rows + (size_t)i * in_row + (size_t)w * (size_t)block * depth,
                           (size_t)block * depth);
                    output += (size_t)block * depth;
                }
            }
        }
    }
}
