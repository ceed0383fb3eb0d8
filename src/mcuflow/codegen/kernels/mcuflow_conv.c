/* CONV_2D and FULLY_CONNECTED int8 kernels (TFLite reference semantics, bit-exact). */
#include <math.h>

#include "mcuflow_common.h"

/* mcuflow:interface */

/* General CONV_2D; `patch` is scratch of k_h * k_w * in_c bytes (im2col of one pixel).
 * `q->bias` has the input offset folded in: bias + input_offset * sum(filter[o]). */
void mcuflow_conv2d_s8(const mcuflow_window_t *g, const mcuflow_requant_t *q, const int8_t *input,
                       const int8_t *filter, int8_t *output, int8_t *patch);

/* 1x1 CONV_2D (any stride, never padded): a matrix product; input offset folded into bias. */
void mcuflow_conv2d_1x1_s8(const mcuflow_window_t *g, const mcuflow_requant_t *q,
                           const int8_t *input, const int8_t *filter, int8_t *output);

/* FULLY_CONNECTED: rows x depth input, units x depth weights; input offset folded into bias. */
void mcuflow_fully_connected_s8(int32_t rows, int32_t depth, int32_t units,
                                const mcuflow_requant_t *q, const int8_t *input,
                                const int8_t *weights, int8_t *output);

/* mcuflow:end-interface */

/* round(acc * scale) in double precision, saturated far outside int8 before the conversion. */
static int32_t mcuflow_scale_round(int32_t acc, double scale)
{
    const double scaled = round((double)acc * scale);
    return scaled > 65536.0 ? 65536 : (scaled < -65536.0 ? -65536 : (int32_t)scaled);
}

/* Requantise one accumulator of output channel `o`. */
static inline int8_t mcuflow_conv_out(const mcuflow_requant_t *q, int32_t acc, int32_t o)
{
    if (q->scale != NULL) {
        acc = mcuflow_scale_round(acc, q->scale[o]);
    } else {
        acc = mcuflow_requantize(acc, q->multiplier[o], q->shift[o]);
    }
    return (int8_t)mcuflow_clamp(acc + q->output_offset, q->act_min, q->act_max);
}

/* Dot product of `n` int8 pairs. Fixed blocks of 16 let compilers vectorise them at -O2 on
 * hosts and fully unroll them on microcontrollers. */
static inline int32_t mcuflow_dot_s8(const int8_t *x, const int8_t *w, int32_t n)
{
    int32_t acc = 0;
    int32_t k = 0;
    for (; k + 64 <= n; k += 64) {
        int32_t block = 0;
        for (int32_t j = 0; j < 64; ++j) {
            block += (int32_t)x[k + j] * (int32_t)w[k + j];
        }
        acc += block;
    }
    for (; k + 16 <= n; k += 16) {
        int32_t block = 0;
        for (int32_t j = 0; j < 16; ++j) {
            block += (int32_t)x[k + j] * (int32_t)w[k + j];
        }
        acc += block;
    }
    for (; k < n; ++k) {
        acc += (int32_t)x[k] * (int32_t)w[k];
    }
    return acc;
}

/* One input vector against `units` weight rows, results to `out`. */
static void mcuflow_vector_by_rows(const mcuflow_requant_t *q, const int8_t *x, int32_t depth,
                                   const int8_t *weights, int32_t units, int8_t *out)
{
    for (int32_t o = 0; o < units; ++o) {
        const int32_t acc = q->bias[o] + mcuflow_dot_s8(x, weights + (size_t)o * (size_t)depth,
                                                        depth);
        out[o] = mcuflow_conv_out(q, acc, o);
    }
}

/* Output pointer of pixel (b, y, x). */
static inline int8_t *mcuflow_out_pixel(const mcuflow_window_t *g, int8_t *output, int32_t b,
                                        int32_t y, int32_t x)
{
    return output + (size_t)b * (size_t)g->out_batch_step + (size_t)y * (size_t)g->out_row_step +
           (size_t)x * (size_t)g->out_pixel_step;
}

/* Input pixel read by output pixel number `p` of image `b` of a 1x1 convolution. */
static inline const int8_t *mcuflow_1x1_in(const mcuflow_window_t *g, const int8_t *input,
                                           int32_t b, int32_t p)
{
    const int32_t y = (p / g->out_w) * g->stride_h;
    const int32_t x = (p % g->out_w) * g->stride_w;
    return input + (((size_t)b * (size_t)g->in_h + (size_t)y) * (size_t)g->in_w + (size_t)x) *
                       (size_t)g->in_c;
}

void mcuflow_conv2d_1x1_s8(const mcuflow_window_t *g, const mcuflow_requant_t *q,
                           const int8_t *input, const int8_t *filter, int8_t *output)
{
    const int32_t pixels = g->out_h * g->out_w;
    for (int32_t b = 0; b < g->batches; ++b) {
        for (int32_t p = 0; p < pixels; ++p) {
            mcuflow_vector_by_rows(q, mcuflow_1x1_in(g, input, b, p), g->in_c, filter, g->out_c,
                                   mcuflow_out_pixel(g, output, b, p / g->out_w, p % g->out_w));
        }
    }
}

/* im2col of output pixel (b, oy, ox): the receptive field, padded with the input zero point. */
static void mcuflow_gather_patch(const mcuflow_window_t *g, const int8_t *input, int32_t b,
                                 int32_t oy, int32_t ox, int8_t *patch)
{
    const int8_t pad = (int8_t)(-g->input_offset);
    const int32_t y0 = oy * g->stride_h - g->pad_top;
    const int32_t x0 = ox * g->stride_w - g->pad_left;
    for (int32_t ky = 0; ky < g->k_h; ++ky) {
        const int32_t y = y0 + ky * g->dilation_h;
        for (int32_t kx = 0; kx < g->k_w; ++kx) {
            const int32_t x = x0 + kx * g->dilation_w;
            int8_t *dst = patch + (size_t)(ky * g->k_w + kx) * (size_t)g->in_c;
            if (y < 0 || y >= g->in_h || x < 0 || x >= g->in_w) {
                for (int32_t c = 0; c < g->in_c; ++c) {
                    dst[c] = pad;
                }
            } else {
                const int8_t *src =
                    input + (((size_t)b * (size_t)g->in_h + (size_t)y) * (size_t)g->in_w +
                             (size_t)x) * (size_t)g->in_c;
                for (int32_t c = 0; c < g->in_c; ++c) {
                    dst[c] = src[c];
                }
            }
        }
    }
}

void mcuflow_conv2d_s8(const mcuflow_window_t *g, const mcuflow_requant_t *q, const int8_t *input,
                       const int8_t *filter, int8_t *output, int8_t *patch)
{
    const int32_t depth = g->k_h * g->k_w * g->in_c;
    for (int32_t b = 0; b < g->batches; ++b) {
        for (int32_t oy = 0; oy < g->out_h; ++oy) {
            for (int32_t ox = 0; ox < g->out_w; ++ox) {
                mcuflow_gather_patch(g, input, b, oy, ox, patch);
                mcuflow_vector_by_rows(q, patch, depth, filter, g->out_c,
                                       mcuflow_out_pixel(g, output, b, oy, ox));
            }
        }
    }
}

void mcuflow_fully_connected_s8(int32_t rows, int32_t depth, int32_t units,
                                const mcuflow_requant_t *q, const int8_t *input,
                                const int8_t *weights, int8_t *output)
{
    for (int32_t r = 0; r < rows; ++r) {
        mcuflow_vector_by_rows(q, input + (size_t)r * (size_t)depth, depth, weights, units,
                               output + (size_t)r * (size_t)units);
    }
}
