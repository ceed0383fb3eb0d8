/* TRANSPOSE_CONV int8 kernel (LiteRT reference_integer_ops::TransposeConv, bit-exact). */
#include "mcuflow_common.h"

/* mcuflow:interface */

/* TRANSPOSE_CONV gathered per output pixel: output (y, x) sums (input + input_offset) * filter
 * over every input pixel (iy, ix) and tap (ky, kx) with y = iy * stride_h + ky - pad_top and
 * x = ix * stride_w + kx - pad_left, the int32 sums LiteRT scatters, with no scratch. `g->k_h`,
 * `g->k_w` are the filter's [O, KH, KW, C] size; dilations are unused. `q->bias` is the plain
 * bias (zeros when the layer has none). The output must not overlap the input. */
void mcuflow_transpose_conv_s8(const mcuflow_window_t *g, const mcuflow_requant_t *q,
                               const int8_t *input, const int8_t *filter, int8_t *output);

/* mcuflow:end-interface */

/* sum over `n` channels of (x + offset) * w. */
static inline int32_t mcuflow_tconv_dot(const int8_t *x, const int8_t *w, int32_t n,
                                        int32_t offset)
{
    int32_t acc = 0;
    for (int32_t c = 0; c < n; ++c) {
        acc += ((int32_t)x[c] + offset) * (int32_t)w[c];
    }
    return acc;
}

void mcuflow_transpose_conv_s8(const mcuflow_window_t *g, const mcuflow_requant_t *q,
                               const int8_t *input, const int8_t *filter, int8_t *output)
{
    const size_t depth = (size_t)g->in_c;
    const size_t in_row = (size_t)g->in_w * depth;
    const size_t filter_row = (size_t)g->k_w * depth;
    const size_t filter_channel = (size_t)g->k_h * filter_row;
    for (int32_t b = 0; b < g->batches; ++b) {
        const int8_t *image = input + (size_t)b * (size_t)g->in_h * in_row;
        for (int32_t y = 0; y < g->out_h; ++y) {
            const mcuflow_tconv_axis_t v =
                mcuflow_tconv_taps(y, g->pad_top, g->stride_h, g->k_h, g->in_h);
            for (int32_t x = 0; x < g->out_w; ++x) {
                const mcuflow_tconv_axis_t h =
                    mcuflow_tconv_taps(x, g->pad_left, g->stride_w, g->k_w, g->in_w);
                int8_t *out = output + (size_t)b * (size_t)g->out_batch_step +
                              (size_t)y * (size_t)g->out_row_step +
                              (size_t)x * (size_t)g->out_pixel_step;
                for (int32_t o = 0; o < g->out_c; ++o) {
                    int32_t acc = q->bias[o];
                    const int8_t *channel = filter + (size_t)o * filter_channel;
                    for (int32_t i = 0; i < v.count; ++i) {
                        const int8_t *in = image + (size_t)(v.index - i) * in_row;
                        const int8_t *taps =
                            channel + (size_t)(v.first + i * g->stride_h) * filter_row;
                        for (int32_t j = 0; j < h.count; ++j) {
                            acc += mcuflow_tconv_dot(
                                in + (size_t)(h.index - j) * depth,
                                taps + (size_t)(h.first + j * g->stride_w) * depth, g->in_c,
                                g->input_offset);
                        }
                    }
                    acc = mcuflow_requantize(acc, q->multiplier[o], q->shift[o]);
                    out[o] = (int8_t)mcuflow_clamp(acc + q->output_offset, q->act_min,
                                                   q->act_max);
                }
            }
        }
    }
}
