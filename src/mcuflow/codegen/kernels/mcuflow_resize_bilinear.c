/* RESIZE_BILINEAR int8 kernel (TFLite reference ResizeBilinearInteger, bit-exact). */
#include "mcuflow_common.h"

/* mcuflow:interface */

/* RESIZE_BILINEAR of `batches` NHWC images. `rows` holds three int32 per output row: the lower
 * and upper source row and the upper row's weight in 1/1024 (LiteRT's 10-bit fixed point, may
 * be negative where both source rows are the first); `cols` the same per output column. The
 * tables are computed when the code is generated. */
typedef struct {
    int32_t batches;
    int32_t in_h;
    int32_t in_w;
    int32_t channels;
    int32_t out_h;
    int32_t out_w;
    const int32_t *rows;
    const int32_t *cols;
} mcuflow_resize_bilinear_t;

/* Each output value is the four source values times their weight products (2^-20), summed in
 * int32 (at most 128 * 2048 * 2048) and divided by 2^20 rounding half away from zero; input and
 * output share one quantisation. The output must not overlap the input. */
void mcuflow_resize_bilinear_s8(const mcuflow_resize_bilinear_t *r, const int8_t *input,
                                int8_t *output);

/* mcuflow:end-interface */

#define MCUFLOW_BILINEAR_ONE 1024
#define MCUFLOW_BILINEAR_HALF (1 << 19)
#define MCUFLOW_BILINEAR_DIVISOR (1 << 20)

void mcuflow_resize_bilinear_s8(const mcuflow_resize_bilinear_t *r, const int8_t *input,
                                int8_t *output)
{
    const size_t depth = (size_t)r->channels;
    const size_t in_row = (size_t)r->in_w * depth;
    for (int32_t b = 0; b < r->batches; ++b) {
        const int8_t *image = input + (size_t)b * (size_t)r->in_h * in_row;
        for (int32_t y = 0; y < r->out_h; ++y) {
            const int8_t *top = image + (size_t)r->rows[3 * y] * in_row;
            const int8_t *bottom = image + (size_t)r->rows[3 * y + 1] * in_row;
            const int32_t wy = r->rows[3 * y + 2];
            for (int32_t x = 0; x < r->out_w; ++x) {
                const size_t left = (size_t)r->cols[3 * x] * depth;
                const size_t right = (size_t)r->cols[3 * x + 1] * depth;
                const int32_t wx = r->cols[3 * x + 2];
                const int32_t w00 = (MCUFLOW_BILINEAR_ONE - wy) * (MCUFLOW_BILINEAR_ONE - wx);
                const int32_t w10 = wy * (MCUFLOW_BILINEAR_ONE - wx);
                const int32_t w01 = (MCUFLOW_BILINEAR_ONE - wy) * wx;
                const int32_t w11 = wy * wx;
                for (size_t c = 0; c < depth; ++c) {
                    const int32_t sum = top[left + c] * w00 + bottom[left + c] * w10
                                        + top[right + c] * w01 + bottom[right + c] * w11;
                    const int32_t rounded = sum > 0 ? sum + MCUFLOW_BILINEAR_HALF
                                                    : sum - MCUFLOW_BILINEAR_HALF;
                    *output++ = (int8_t)(rounded / MCUFLOW_BILINEAR_DIVISOR);
                }
            }
        }
    }
}
