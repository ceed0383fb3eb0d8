/* DEPTHWISE_CONV_2D int8 kernels (TFLite reference semantics, bit-exact). */
#include "mcuflow_common.h"

/* mcuflow:interface */

/* DEPTHWISE_CONV_2D (any kernel, stride, dilation, depth multiplier); raw (unfolded) bias. */
void mcuflow_dwconv_s8(const mcuflow_window_t *g, int32_t depth_multiplier,
                       const mcuflow_requant_t *q, const int8_t *input, const int8_t *filter,
                       int8_t *output);

/* 3x3 DEPTHWISE_CONV_2D, depth multiplier 1, any stride and padding; raw bias. */
void mcuflow_dwconv_3x3_s8(const mcuflow_window_t *g, const mcuflow_requant_t *q,
                           const int8_t *input, const int8_t *filter, int8_t *output);

/* In-place DEPTHWISE_CONV_2D (TinyEngine): for each channel c, output channel c is computed
 * into `temp` (out_h * out_w bytes) from input channel c, then copied to the output, so the
 * output may start at the input's address. One image, depth multiplier 1, dense output. */
void mcuflow_dwconv_inplace_s8(const mcuflow_window_t *g, const mcuflow_requant_t *q,
                               const int8_t *input, const int8_t *filter, int8_t *output,
                               int8_t *temp);

/* mcuflow:end-interface */

/* Channels accumulated together per output pixel (int32 accumulators on the stack). */
#define MCUFLOW_DW_BLOCK 64

static inline int8_t mcuflow_dw_out(const mcuflow_requant_t *q, int32_t acc, int32_t o)
{
    acc = mcuflow_requantize(acc, q->multiplier[o], q->shift[o]) + q->output_offset;
    return (int8_t)mcuflow_clamp(acc, q->act_min, q->act_max);
}

static inline int32_t mcuflow_dw_bias(const mcuflow_requant_t *q, int32_t o)
{
    return q->bias != NULL ? q->bias[o] : 0;
}

static inline const int8_t *mcuflow_dw_in_pixel(const mcuflow_window_t *g, const int8_t *input,
                                                int32_t b, int32_t y, int32_t x)
{
    return input + (((size_t)b * (size_t)g->in_h + (size_t)y) * (size_t)g->in_w + (size_t)x) *
                       (size_t)g->in_c;
}

static inline int8_t *mcuflow_dw_out_pixel(const mcuflow_window_t *g, int8_t *output, int32_t b,
                                           int32_t y, int32_t x)
{
    return output + (size_t)b * (size_t)g->out_batch_step + (size_t)y * (size_t)g->out_row_step +
           (size_t)x * (size_t)g->out_pixel_step;
}

/* Accumulate output channels [c0, c0 + n) of pixel (b, oy, ox) over every in-bounds tap. */
static void mcuflow_dw_block(const mcuflow_window_t *g, int32_t mult, const int8_t *input,
                             const int8_t *filter, int32_t b, int32_t oy, int32_t ox, int32_t c0,
                             int32_t n, int32_t *acc)
{
    const int32_t y0 = oy * g->stride_h - g->pad_top;
    const int32_t x0 = ox * g->stride_w - g->pad_left;
    const int32_t offset = g->input_offset;
    for (int32_t ky = 0; ky < g->k_h; ++ky) {
        const int32_t y = y0 + ky * g->dilation_h;
        if (y < 0 || y >= g->in_h) {
            continue;
        }
        for (int32_t kx = 0; kx < g->k_w; ++kx) {
            const int32_t x = x0 + kx * g->dilation_w;
            if (x < 0 || x >= g->in_w) {
                continue;
            }
            const int8_t *in = mcuflow_dw_in_pixel(g, input, b, y, x);
            const int8_t *w = filter + (size_t)(ky * g->k_w + kx) * (size_t)g->out_c + c0;
            if (mult == 1) {
                for (int32_t j = 0; j < n; ++j) {
                    acc[j] += (int32_t)w[j] * ((int32_t)in[c0 + j] + offset);
                }
            } else {
                for (int32_t j = 0; j < n; ++j) {
                    acc[j] += (int32_t)w[j] * ((int32_t)in[(c0 + j) / mult] + offset);
                }
            }
        }
    }
}

void mcuflow_dwconv_s8(const mcuflow_window_t *g, int32_t depth_multiplier,
                       const mcuflow_requant_t *q, const int8_t *input, const int8_t *filter,
                       int8_t *output)
{
    int32_t acc[MCUFLOW_DW_BLOCK];
    for (int32_t b = 0; b < g->batches; ++b) {
        for (int32_t oy = 0; oy < g->out_h; ++oy) {
            for (int32_t ox = 0; ox < g->out_w; ++ox) {
                int8_t *out = mcuflow_dw_out_pixel(g, output, b, oy, ox);
                for (int32_t c0 = 0; c0 < g->out_c; c0 += MCUFLOW_DW_BLOCK) {
                    const int32_t rest = g->out_c - c0;
                    const int32_t n = rest < MCUFLOW_DW_BLOCK ? rest : MCUFLOW_DW_BLOCK;
                    for (int32_t j = 0; j < n; ++j) {
                        acc[j] = mcuflow_dw_bias(q, c0 + j);
                    }
                    mcuflow_dw_block(g, depth_multiplier, input, filter, b, oy, ox, c0, n, acc);
                    for (int32_t j = 0; j < n; ++j) {
                        out[c0 + j] = mcuflow_dw_out(q, acc[j], c0 + j);
                    }
                }
            }
        }
    }
}

/* 3x3 interior pixel: all nine taps in bounds, unrolled over the taps. */
static void mcuflow_dw3x3_interior(const mcuflow_window_t *g, const int8_t *in, const int8_t *w,
                                   int32_t n, int32_t *acc)
{
    const size_t c = (size_t)g->in_c;
    const size_t dx = (size_t)g->dilation_w * c;
    const size_t dy = (size_t)g->dilation_h * (size_t)g->in_w * c;
    const int32_t off = g->input_offset;
    const int8_t *r0 = in;
    const int8_t *r1 = in + dy;
    const int8_t *r2 = in + 2 * dy;
    for (int32_t j = 0; j < n; ++j) {
        int32_t sum = 0;
        sum += (int32_t)w[j] * (r0[j] + off);
        sum += (int32_t)w[c + (size_t)j] * (r0[dx + (size_t)j] + off);
        sum += (int32_t)w[2 * c + (size_t)j] * (r0[2 * dx + (size_t)j] + off);
        sum += (int32_t)w[3 * c + (size_t)j] * (r1[j] + off);
        sum += (int32_t)w[4 * c + (size_t)j] * (r1[dx + (size_t)j] + off);
        sum += (int32_t)w[5 * c + (size_t)j] * (r1[2 * dx + (size_t)j] + off);
        sum += (int32_t)w[6 * c + (size_t)j] * (r2[j] + off);
        sum += (int32_t)w[7 * c + (size_t)j] * (r2[dx + (size_t)j] + off);
        sum += (int32_t)w[8 * c + (size_t)j] * (r2[2 * dx + (size_t)j] + off);
        acc[j] += sum;
    }
}

void mcuflow_dwconv_3x3_s8(const mcuflow_window_t *g, const mcuflow_requant_t *q,
                           const int8_t *input, const int8_t *filter, int8_t *output)
{
    int32_t acc[MCUFLOW_DW_BLOCK];
    const int32_t span_h = 2 * g->dilation_h;
    const int32_t span_w = 2 * g->dilation_w;
    for (int32_t b = 0; b < g->batches; ++b) {
        for (int32_t oy = 0; oy < g->out_h; ++oy) {
            const int32_t y = oy * g->stride_h - g->pad_top;
            const int inside_y = y >= 0 && y + span_h < g->in_h;
            for (int32_t ox = 0; ox < g->out_w; ++ox) {
                const int32_t x = ox * g->stride_w - g->pad_left;
                const int inside = inside_y && x >= 0 && x + span_w < g->in_w;
                int8_t *out = mcuflow_dw_out_pixel(g, output, b, oy, ox);
                for (int32_t c0 = 0; c0 < g->out_c; c0 += MCUFLOW_DW_BLOCK) {
                    const int32_t rest = g->out_c - c0;
                    const int32_t n = rest < MCUFLOW_DW_BLOCK ? rest : MCUFLOW_DW_BLOCK;
                    for (int32_t j = 0; j < n; ++j) {
                        acc[j] = mcuflow_dw_bias(q, c0 + j);
                    }
                    if (inside) {
                        mcuflow_dw3x3_interior(g, mcuflow_dw_in_pixel(g, input, b, y, x) + c0,
                                               filter + c0, n, acc);
                    } else {
                        mcuflow_dw_block(g, 1, input, filter, b, oy, ox, c0, n, acc);
                    }
                    for (int32_t j = 0; j < n; ++j) {
                        out[c0 + j] = mcuflow_dw_out(q, acc[j], c0 + j);
                    }
                }
            }
        }
    }
}

/* Filter taps cached in registers/stack by the in-place kernel (kernels up to 8x8). */
#define MCUFLOW_DW_MAX_TAPS 64

/* Taps [*lo, *hi) of a window starting at `start` (stride `dilation`) inside [0, size). */
static void mcuflow_dw_valid(int32_t start, int32_t dilation, int32_t kernel, int32_t size,
                             int32_t *lo, int32_t *hi)
{
    const int32_t first = start < 0 ? (-start + dilation - 1) / dilation : 0;
    const int32_t room = size - start;
    const int32_t last = room > 0 ? (room + dilation - 1) / dilation : 0;
    *lo = first;
    *hi = last < kernel ? last : kernel;
}

/* One output channel `c` into `temp` (out_h * out_w), reading input channel `c`. */
static void mcuflow_dw_channel(const mcuflow_window_t *g, const mcuflow_requant_t *q,
                               const int8_t *image, const int8_t *filter, int32_t c,
                               int8_t *temp)
{
    int32_t taps[MCUFLOW_DW_MAX_TAPS];
    const int32_t count = g->k_h * g->k_w;
    const int cached = count <= MCUFLOW_DW_MAX_TAPS;
    const size_t step = (size_t)g->in_c;
    int32_t folded = mcuflow_dw_bias(q, c);
    for (int32_t t = 0; cached && t < count; ++t) {
        taps[t] = filter[(size_t)t * (size_t)g->out_c + (size_t)c];
        folded += taps[t] * g->input_offset;
    }
    /* 3x3 undilated windows fully inside the input take an unrolled path (offset folded). */
    const int full3x3 = g->k_h == 3 && g->k_w == 3 && g->dilation_h == 1 && g->dilation_w == 1;
    for (int32_t oy = 0; oy < g->out_h; ++oy) {
        const int32_t y0 = oy * g->stride_h - g->pad_top;
        int32_t ky_lo, ky_hi;
        mcuflow_dw_valid(y0, g->dilation_h, g->k_h, g->in_h, &ky_lo, &ky_hi);
        for (int32_t ox = 0; ox < g->out_w; ++ox) {
            const int32_t x0 = ox * g->stride_w - g->pad_left;
            int32_t kx_lo, kx_hi;
            mcuflow_dw_valid(x0, g->dilation_w, g->k_w, g->in_w, &kx_lo, &kx_hi);
            if (full3x3 && ky_lo == 0 && ky_hi == 3 && kx_lo == 0 && kx_hi == 3) {
                const int8_t *r0 = image + ((size_t)y0 * (size_t)g->in_w + (size_t)x0) * step + c;
                const int8_t *r1 = r0 + (size_t)g->in_w * step;
                const int8_t *r2 = r1 + (size_t)g->in_w * step;
                const int32_t acc = folded + taps[0] * r0[0] + taps[1] * r0[step] +
                                    taps[2] * r0[2 * step] + taps[3] * r1[0] +
                                    taps[4] * r1[step] + taps[5] * r1[2 * step] +
                                    taps[6] * r2[0] + taps[7] * r2[step] + taps[8] * r2[2 * step];
                temp[oy * g->out_w + ox] = mcuflow_dw_out(q, acc, c);
                continue;
            }
            int32_t acc = mcuflow_dw_bias(q, c);
            for (int32_t ky = ky_lo; ky < ky_hi; ++ky) {
                const int32_t y = y0 + ky * g->dilation_h;
                const int32_t x = x0 + kx_lo * g->dilation_w;
                const int8_t *in = image + ((size_t)y * (size_t)g->in_w + (size_t)x) * step + c;
                for (int32_t kx = kx_lo; kx < kx_hi; ++kx, in += (size_t)g->dilation_w * step) {
                    const int32_t t = ky * g->k_w + kx;
                    const int32_t w = cached ? taps[t] : filter[(size_t)t * (size_t)g->out_c + c];
                    acc += w * (*in + g->input_offset);
                }
            }
            temp[oy * g->out_w + ox] = mcuflow_dw_out(q, acc, c);
        }
    }
}

void mcuflow_dwconv_inplace_s8(const mcuflow_window_t *g, const mcuflow_requant_t *q,
                               const int8_t *input, const int8_t *filter, int8_t *output,
                               int8_t *temp)
{
    const int32_t pixels = g->out_h * g->out_w;
    for (int32_t c = 0; c < g->in_c; ++c) {
        mcuflow_dw_channel(g, q, input, filter, c, temp);
        for (int32_t p = 0; p < pixels; ++p) {
            output[(size_t)p * (size_t)g->out_c + (size_t)c] = temp[p];
        }
    }
}
