/* TRANSPOSE_CONV int8 kernel for cores with the DSP extension (LiteRT bit-exact): the input
 * pixels reaching an output pixel widened once to int16, then two MACs per SMLAD. */
#include "mcuflow_dsp.h"

/* `n` values of `x` plus `offset` as int16 at `out`: each group of four channels stored
 * (0, 2, 1, 3), the lane order SXTB16 gives a word of four filter bytes; the rest in order. */
static void mcuflow_tconv_widen(const int8_t *x, int32_t n, int32_t offset, mcuflow_half_t *out)
{
    int32_t c = 0;
    for (; c + 4 <= n; c += 4, out += 4) {
        out[0] = (mcuflow_half_t)(int16_t)(x[c] + offset);
        out[1] = (mcuflow_half_t)(int16_t)(x[c + 2] + offset);
        out[2] = (mcuflow_half_t)(int16_t)(x[c + 1] + offset);
        out[3] = (mcuflow_half_t)(int16_t)(x[c + 3] + offset);
    }
    for (; c < n; ++c) {
        *out++ = (mcuflow_half_t)(int16_t)(x[c] + offset);
    }
}

/* acc + the dot product of a widened column and `n` filter bytes. */
MCUFLOW_INLINE int32_t mcuflow_tconv_dot_dsp(const mcuflow_word_t *column, const int8_t *w,
                                             int32_t n, int32_t acc)
{
    int32_t c = 0;
    for (; c + 4 <= n; c += 4, w += 4, column += 2) {
        const uint32_t filter = mcuflow_read_u32(w);
        acc = mcuflow_smlad(mcuflow_sxtb16(filter), column[0], acc);
        acc = mcuflow_smlad(mcuflow_sxtb16_ror8(filter), column[1], acc);
    }
    const mcuflow_half_t *rest = (const mcuflow_half_t *)column;
    for (; c < n; ++c) {
        acc += (int32_t)(int16_t)*rest++ * (int32_t)*w++;
    }
    return acc;
}

void mcuflow_transpose_conv_dsp_s8(const mcuflow_window_t *g, const mcuflow_requant_t *q,
                                   const int8_t *input, const int8_t *filter, int8_t *output,
                                   int8_t *columns)
{
    const size_t depth = (size_t)g->in_c;
    const size_t in_row = (size_t)g->in_w * depth;
    const size_t filter_row = (size_t)g->k_w * depth;
    const size_t filter_channel = (size_t)g->k_h * filter_row;
    const size_t column = (size_t)MCUFLOW_DSP_TCONV_COLUMN(g->in_c);
    for (int32_t b = 0; b < g->batches; ++b) {
        const int8_t *image = input + (size_t)b * (size_t)g->in_h * in_row;
        for (int32_t y = 0; y < g->out_h; ++y) {
            const mcuflow_tconv_axis_t v =
                mcuflow_tconv_taps(y, g->pad_top, g->stride_h, g->k_h, g->in_h);
            for (int32_t x = 0; x < g->out_w; ++x) {
                const mcuflow_tconv_axis_t h =
                    mcuflow_tconv_taps(x, g->pad_left, g->stride_w, g->k_w, g->in_w);
                mcuflow_half_t *widened = (mcuflow_half_t *)(void *)columns;
                for (int32_t i = 0; i < v.count; ++i) {
                    const int8_t *in = image + (size_t)(v.index - i) * in_row;
                    for (int32_t j = 0; j < h.count; ++j, widened += column) {
                        mcuflow_tconv_widen(in + (size_t)(h.index - j) * depth, g->in_c,
                                            g->input_offset, widened);
                    }
                }
                int8_t *out = output + (size_t)b * (size_t)g->out_batch_step +
                              (size_t)y * (size_t)g->out_row_step +
                              (size_t)x * (size_t)g->out_pixel_step;
                for (int32_t o = 0; o < g->out_c; ++o) {
                    int32_t acc = q->bias[o];
                    const int8_t *channel = filter + (size_t)o * filter_channel;
                    const mcuflow_word_t *words = (const mcuflow_word_t *)(const void *)columns;
                    for (int32_t i = 0; i < v.count; ++i) {
                        const int8_t *taps =
                            channel + (size_t)(v.first + i * g->stride_h) * filter_row;
                        for (int32_t j = 0; j < h.count; ++j, words += column / 2) {
                            acc = mcuflow_tconv_dot_dsp(
                                words, taps + (size_t)(h.first + j * g->stride_w) * depth,
                                g->in_c, acc);
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
