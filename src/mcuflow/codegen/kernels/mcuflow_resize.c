/* RESIZE_NEAREST_NEIGHBOR int8 kernel (TFLite reference ResizeNearestNeighbor, bit-exact). */
#include <string.h>

#include "mcuflow_common.h"

/* mcuflow:interface */

/* RESIZE_NEAREST_NEIGHBOR of `batches` NHWC images: output pixel (y, x) copies the `channels`
 * values of input pixel (rows[y], cols[x]). The tables hold LiteRT's GetNearestNeighbor of every
 * output row and column, computed when the code is generated. */
typedef struct {
    int32_t batches;
    int32_t in_h;
    int32_t in_w;
    int32_t channels;
    int32_t out_h;
    int32_t out_w;
    const int32_t *rows;
    const int32_t *cols;
} mcuflow_resize_t;

/* The stored int8 values are copied, no requantisation (input and output share it); the output
 * must not overlap the input. */
void mcuflow_resize_nearest_s8(const mcuflow_resize_t *r, const int8_t *input, int8_t *output);

/* mcuflow:end-interface */

void mcuflow_resize_nearest_s8(const mcuflow_resize_t *r, const int8_t *input, int8_t *output)
{
    const size_t depth = (size_t)r->channels;
    const size_t in_row = (size_t)r->in_w * depth;
    const size_t out_row = (size_t)r->out_w * depth;
    for (int32_t b = 0; b < r->batches; ++b) {
        const int8_t *image = input + (size_t)b * (size_t)r->in_h * in_row;
        for (int32_t y = 0; y < r->out_h; ++y) {
            if (y > 0 && r->rows[y] == r->rows[y - 1]) {
                /* The same source row as the row above: copy the output row just written. */
                memcpy(output, output - out_row, out_row);
            } else {
                const int8_t *source = image + (size_t)r->rows[y] * in_row;
                if (depth == 1) {
                    for (int32_t x = 0; x < r->out_w; ++x) {
                        output[x] = source[r->cols[x]];
                    }
                } else {
                    int8_t *target = output;
                    for (int32_t x = 0; x < r->out_w; ++x, target += depth) {
                        memcpy(target, source + (size_t)r->cols[x] * depth, depth);
                    }
                }
            }
            output += out_row;
        }
    }
}
