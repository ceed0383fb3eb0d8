/* int16x8 DEPTHWISE_CONV_2D for the Arm DSP extension (LiteRT bit-exact).
 *
 * Channel by channel: the zero-padded plane of one input channel is gathered from the NHWC
 * input (int16 zero point 0, so the padding is 0), then two outputs of a row share each word
 * of the plane, two taps per SMLAD against weight pairs packed at generation. The generator
 * proves that every partial sum stays inside int32 and folds the int64 bias into the
 * requantisation: y = (hi(C + acc * M)) >> s, one SMLAL, equal to LiteRT's
 * MultiplyByQuantizedMultiplier of the int64 acc + bias (see codegen/emit_dsp.py).
 */
#include "mcuflow_dsp.h"

/* The channel's record: addend low and high words, multiplier, shift, then the weight words. */
#define MCUFLOW_DWS16_HEADER 4

/* x saturated to int16. */
static inline int32_t mcuflow_dws16_ssat16(int32_t x)
{
#if defined(__ARM_FEATURE_DSP)
    return __ssat(x, 16);
#else
    return x < INT16_MIN ? INT16_MIN : (x > INT16_MAX ? INT16_MAX : x);
#endif
}

/* Requantise the int32 sum `acc` of a channel with record `k` to an int16 output. */
MCUFLOW_INLINE int32_t mcuflow_dws16_out(int32_t acc, const int32_t *k, int narrow,
                                         int32_t act_min, int32_t act_max)
{
    const int64_t addend = (int64_t)(((uint64_t)(uint32_t)k[1] << 32) | (uint32_t)k[0]);
    const int64_t t = addend + (int64_t)acc * k[2];
    const int32_t y = (int32_t)(t >> 32) >> k[3];
    return narrow ? mcuflow_clamp(y, act_min, act_max) : mcuflow_dws16_ssat16(y);
}

/* One output pair of kernel rows `rows` over the plane words `x` (rows `columns` words apart):
 * 3x3 stride 1, row weights (w0, w1), (w1, w2). p = x0 w0 + x1 w1 + x2 w2, q from x1. */
MCUFLOW_INLINE void mcuflow_dws16_pair_3x3(const mcuflow_word_t *x, size_t columns,
                                           const int32_t *w, int32_t *p, int32_t *q)
{
    int32_t a0 = 0, a1 = 0;
    for (int r = 0; r < 3; ++r, x += columns, w += 2) {
        uint32_t a, b, t0, t1;
        MCUFLOW_LOAD2_AT(x, a, b, 0);
        MCUFLOW_LOAD2_AT(w, t0, t1, 0);
        a0 = mcuflow_smlad(a, t0, a0);
        a0 = mcuflow_smlabt(b, t1, a0);
        a1 = mcuflow_smlatb(a, t0, a1);
        a1 = mcuflow_smlad(b, t1, a1);
    }
    *p = a0;
    *q = a1;
}

/* Stride 1, any width: per row `words` plane words, each against the pair (U_i, V_i):
 * U_i = (w[2i], w[2i+1]) for the first output, V_i = (w[2i-1], w[2i]) for the second. */
MCUFLOW_INLINE void mcuflow_dws16_pair_s1(const mcuflow_word_t *x, size_t columns,
                                          const int32_t *w, int32_t rows, int32_t words,
                                          int32_t *p, int32_t *q)
{
    int32_t a0 = 0, a1 = 0;
    for (int32_t r = 0; r < rows; ++r, x += columns) {
        for (int32_t i = 0; i < words; ++i, w += 2) {
            uint32_t u, v;
            MCUFLOW_LOAD2_AT(w, u, v, 0);
            const uint32_t a = x[i];
            a0 = mcuflow_smlad(a, u, a0);
            a1 = mcuflow_smlad(a, v, a1);
        }
    }
    *p = a0;
    *q = a1;
}

/* Stride 2: per row `words` pairs U_i; the second output reads one word further. */
MCUFLOW_INLINE void mcuflow_dws16_pair_s2(const mcuflow_word_t *x, size_t columns,
                                          const int32_t *w, int32_t rows, int32_t words,
                                          int32_t *p, int32_t *q)
{
    int32_t a0 = 0, a1 = 0;
    for (int32_t r = 0; r < rows; ++r, x += columns) {
        uint32_t a = x[0];
        for (int32_t i = 0; i < words; ++i) {
            const uint32_t u = (uint32_t)*w++;
            const uint32_t b = x[i + 1];
            a0 = mcuflow_smlad(a, u, a0);
            a1 = mcuflow_smlad(b, u, a1);
            a = b;
        }
    }
    *p = a0;
    *q = a1;
}

/* The sums of the output pair whose first output reads plane word `x` (`form` a constant). */
MCUFLOW_INLINE void mcuflow_dws16_pair(const mcuflow_dsp_dw_s16_t *d, int form, int32_t k_h,
                                       const mcuflow_word_t *x, size_t columns, const int32_t *w,
                                       int32_t *p, int32_t *q)
{
    if (form == MCUFLOW_DWS16_3X3) {
        mcuflow_dws16_pair_3x3(x, columns, w, p, q);
    } else if (form == MCUFLOW_DWS16_S1) {
        mcuflow_dws16_pair_s1(x, columns, w, k_h, d->row_words / 2, p, q);
    } else {
        mcuflow_dws16_pair_s2(x, columns, w, k_h, d->row_words, p, q);
    }
}

/* Every output of channel record `k` from its plane, into `out` (the channel's first output). */
MCUFLOW_INLINE void mcuflow_dws16_channel(const mcuflow_window_t *g,
                                          const mcuflow_dsp_dw_s16_t *d, const int32_t *k,
                                          const mcuflow_half_t *plane, int16_t *out, int form,
                                          int narrow)
{
    const size_t columns = (size_t)d->plane_columns / 2;
    const size_t down = (size_t)g->stride_h * columns;
    const size_t step = (size_t)g->out_pixel_step;
    const size_t advance = (size_t)g->stride_w; /* plane words from one pair to the next */
    const int32_t pairs = g->out_w / 2;
    const int32_t *w = k + MCUFLOW_DWS16_HEADER;
    const int32_t lo = d->act_min, hi = d->act_max;
    const mcuflow_word_t *top = (const mcuflow_word_t *)plane;
    for (int32_t oy = 0; oy < g->out_h; ++oy, top += down) {
        const mcuflow_word_t *x = top;
        int16_t *o = out + (size_t)oy * (size_t)g->out_row_step;
        for (int32_t m = 0; m < pairs; ++m, x += advance, o += 2 * step) {
            int32_t p, q;
            mcuflow_dws16_pair(d, form, g->k_h, x, columns, w, &p, &q);
            o[0] = (int16_t)mcuflow_dws16_out(p, k, narrow, lo, hi);
            o[step] = (int16_t)mcuflow_dws16_out(q, k, narrow, lo, hi);
        }
        if (g->out_w & 1) {
            int32_t p, q;
            mcuflow_dws16_pair(d, form, g->k_h, x, columns, w, &p, &q);
            o[0] = (int16_t)mcuflow_dws16_out(p, k, narrow, lo, hi);
        }
    }
}

/* The inside of the plane of channel `c` of one image (the padding is 0 from the call's start,
 * and every channel overwrites the same slots). */
static void mcuflow_dws16_gather(const mcuflow_window_t *g, const mcuflow_dsp_dw_s16_t *d,
                                 const int16_t *image, int32_t c, mcuflow_half_t *plane)
{
    const size_t step = (size_t)g->in_c;
    const size_t line = (size_t)g->in_w * step;
    const int16_t *src_row = image + (size_t)c;
    mcuflow_half_t *dst_row =
        plane + (size_t)g->pad_top * (size_t)d->plane_columns + (size_t)g->pad_left;
    for (int32_t y = 0; y < d->copy_rows; ++y, src_row += line, dst_row += d->plane_columns) {
        const int16_t *src = src_row;
        mcuflow_half_t *dst = dst_row;
        int32_t n = d->copy_columns;
        for (; n >= 4; n -= 4, src += 4 * step, dst += 4) {
            dst[0] = (uint16_t)src[0];
            dst[1] = (uint16_t)src[step];
            dst[2] = (uint16_t)src[2 * step];
            dst[3] = (uint16_t)src[3 * step];
        }
        for (; n > 0; --n, src += step) {
            *dst++ = (uint16_t)*src;
        }
    }
}

/* Every channel of one image with the pair routine `form` (a constant). */
MCUFLOW_INLINE void mcuflow_dws16_image(const mcuflow_window_t *g, const mcuflow_dsp_dw_s16_t *d,
                                        const int16_t *image, int16_t *out,
                                        mcuflow_half_t *plane, int form, int narrow)
{
    for (int32_t c = 0; c < g->in_c; ++c) {
        mcuflow_dws16_gather(g, d, image, c, plane);
        mcuflow_dws16_channel(g, d, d->channels + (size_t)c * (size_t)d->record_words, plane,
                              out + c, form, narrow);
    }
}

/* One image by the routine of its form, requantised to the full int16 range or `narrow`. */
static void mcuflow_dws16_full(const mcuflow_window_t *g, const mcuflow_dsp_dw_s16_t *d,
                               const int16_t *image, int16_t *out, mcuflow_half_t *plane)
{
    if (d->form == MCUFLOW_DWS16_3X3) {
        mcuflow_dws16_image(g, d, image, out, plane, MCUFLOW_DWS16_3X3, 0);
    } else if (d->form == MCUFLOW_DWS16_S1) {
        mcuflow_dws16_image(g, d, image, out, plane, MCUFLOW_DWS16_S1, 0);
    } else {
        mcuflow_dws16_image(g, d, image, out, plane, MCUFLOW_DWS16_S2, 0);
    }
}

static void mcuflow_dws16_narrow(const mcuflow_window_t *g, const mcuflow_dsp_dw_s16_t *d,
                                 const int16_t *image, int16_t *out, mcuflow_half_t *plane)
{
    if (d->form == MCUFLOW_DWS16_3X3) {
        mcuflow_dws16_image(g, d, image, out, plane, MCUFLOW_DWS16_3X3, 1);
    } else if (d->form == MCUFLOW_DWS16_S1) {
        mcuflow_dws16_image(g, d, image, out, plane, MCUFLOW_DWS16_S1, 1);
    } else {
        mcuflow_dws16_image(g, d, image, out, plane, MCUFLOW_DWS16_S2, 1);
    }
}

void mcuflow_dwconv_s16_dsp(const mcuflow_window_t *g, const mcuflow_dsp_dw_s16_t *d,
                            const int16_t *input, int16_t *output, mcuflow_half_t *plane)
{
    const int narrow = d->act_min != INT16_MIN || d->act_max != INT16_MAX;
    memset(plane, 0, (size_t)d->plane_rows * (size_t)d->plane_columns * sizeof *plane);
    for (int32_t b = 0; b < g->batches; ++b) {
        const int16_t *image = input + (size_t)b * (size_t)g->in_h * (size_t)g->in_w *
                                           (size_t)g->in_c;
        int16_t *out = output + (size_t)b * (size_t)g->out_batch_step;
        if (narrow) {
            mcuflow_dws16_narrow(g, d, image, out, plane);
        } else {
            mcuflow_dws16_full(g, d, image, out, plane);
        }
    }
}
