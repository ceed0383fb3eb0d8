/* int16x8 CONV_2D and FULLY_CONNECTED for the Arm DSP extension (LiteRT bit-exact).
 *
 * int16 activations are already int16 pairs in a word and the generator stores the weights as
 * int16 pairs in the order the loops read them, so one SMLAD makes two MACs with no widening:
 * per group of 4 columns, CONV_2D loads a channel pair's four weight words (LDM) and both
 * pixels' columns (two LDRD) for 16 MACs (2 x 2 blocking); FULLY_CONNECTED loads the row's two
 * words once and four units' words (two LDM); a depth of at most 16 with integer
 * requantisation keeps the whole row in registers and packs the weights unit by unit.
 * Accumulators are int32 (proven wide enough by the generator, see mcuflow_s16_dsp_t).
 */
#include "mcuflow_dsp.h"

/* One group of a channel pair (a, b) over two pixels: acc holds a0, a1, b0, b1. */
MCUFLOW_INLINE void mcuflow_s16_group2(const mcuflow_word_t **w, const mcuflow_word_t **x,
                                       int32_t *acc)
{
    uint32_t a01, a23, b01, b23, x0, x1;
    mcuflow_load2(w, &a01, &a23);
    mcuflow_load2(w, &b01, &b23);
    mcuflow_load2(x, &x0, &x1);
    acc[0] = mcuflow_smlad(a01, x0, acc[0]);
    acc[1] = mcuflow_smlad(a01, x1, acc[1]);
    acc[2] = mcuflow_smlad(b01, x0, acc[2]);
    acc[3] = mcuflow_smlad(b01, x1, acc[3]);
    mcuflow_load2(x, &x0, &x1);
    acc[0] = mcuflow_smlad(a23, x0, acc[0]);
    acc[1] = mcuflow_smlad(a23, x1, acc[1]);
    acc[2] = mcuflow_smlad(b23, x0, acc[2]);
    acc[3] = mcuflow_smlad(b23, x1, acc[3]);
}

/* One group of four units over one row: acc holds the units' sums. */
MCUFLOW_INLINE void mcuflow_s16_group4(const mcuflow_word_t **w, const mcuflow_word_t **x,
                                       int32_t *acc)
{
    uint32_t x01, x23, p, q;
    mcuflow_load2(x, &x01, &x23);
    for (int32_t u = 0; u < 4; ++u) {
        mcuflow_load2(w, &p, &q);
        acc[u] = mcuflow_smlad(q, x23, mcuflow_smlad(p, x01, acc[u]));
    }
}

#if MCUFLOW_DSP_ASM
#define MCUFLOW_S16_GROUP2_ASM                                                                  \
    "ldmia %[w]!, {r8, r9, r10, r11}\n\t"                                                      \
    "ldrd r12, lr, [%[x]], #8\n\t"                                                             \
    "smlad %[s0], r8, r12, %[s0]\n\t"                                                           \
    "smlad %[s1], r8, lr, %[s1]\n\t"                                                            \
    "smlad %[s2], r10, r12, %[s2]\n\t"                                                          \
    "smlad %[s3], r10, lr, %[s3]\n\t"                                                           \
    "ldrd r12, lr, [%[x]], #8\n\t"                                                             \
    "smlad %[s0], r9, r12, %[s0]\n\t"                                                           \
    "smlad %[s1], r9, lr, %[s1]\n\t"                                                            \
    "smlad %[s2], r11, r12, %[s2]\n\t"                                                          \
    "smlad %[s3], r11, lr, %[s3]\n\t"
#define MCUFLOW_S16_GROUP4_ASM                                                                  \
    "ldrd r12, lr, [%[x]], #8\n\t"                                                             \
    "ldmia %[w]!, {r8, r9, r10, r11}\n\t"                                                      \
    "smlad %[s0], r8, r12, %[s0]\n\t"                                                           \
    "smlad %[s0], r9, lr, %[s0]\n\t"                                                            \
    "smlad %[s1], r10, r12, %[s1]\n\t"                                                          \
    "smlad %[s1], r11, lr, %[s1]\n\t"                                                           \
    "ldmia %[w]!, {r8, r9, r10, r11}\n\t"                                                      \
    "smlad %[s2], r8, r12, %[s2]\n\t"                                                           \
    "smlad %[s2], r9, lr, %[s2]\n\t"                                                            \
    "smlad %[s3], r10, r12, %[s3]\n\t"                                                          \
    "smlad %[s3], r11, lr, %[s3]\n\t"
#endif

MCUFLOW_DSP_FOURS(mcuflow_s16_fours2, MCUFLOW_S16_GROUP2_ASM, mcuflow_s16_group2)
MCUFLOW_DSP_FOURS(mcuflow_s16_fours4, MCUFLOW_S16_GROUP4_ASM, mcuflow_s16_group4)

/* All `groups` groups of a channel pair over two pixels (acc zeroed here). */
MCUFLOW_INLINE void mcuflow_s16_block2(const mcuflow_word_t **w, const mcuflow_word_t *x,
                                       int32_t groups, int32_t *acc)
{
    acc[0] = acc[1] = acc[2] = acc[3] = 0;
    if (groups >> 2) {
        mcuflow_s16_fours2(w, &x, groups >> 2, acc);
    }
    for (int32_t left = groups & 3; left > 0; --left) {
        mcuflow_s16_group2(w, &x, acc);
    }
}

/* All `groups` groups of four units over one row (acc zeroed here). */
MCUFLOW_INLINE void mcuflow_s16_block4(const mcuflow_word_t **w, const mcuflow_word_t *x,
                                       int32_t groups, int32_t *acc)
{
    acc[0] = acc[1] = acc[2] = acc[3] = 0;
    if (groups >> 2) {
        mcuflow_s16_fours4(w, &x, groups >> 2, acc);
    }
    for (int32_t left = groups & 3; left > 0; --left) {
        mcuflow_s16_group4(w, &x, acc);
    }
}

/* mcuflow_s16_block2 (`words` 4) or mcuflow_s16_block4 (`words` 2: column words per group)
 * chunk by chunk, each chunk's int32 sums added to the int64 `sum`. */
MCUFLOW_INLINE void mcuflow_s16_long(const mcuflow_word_t **w, const mcuflow_word_t *x,
                                     int32_t groups, int32_t chunk, int32_t words, int64_t *sum)
{
    int32_t acc[4];
    sum[0] = sum[1] = sum[2] = sum[3] = 0;
    for (int32_t done = 0; done < groups; done += chunk) {
        const int32_t n = groups - done < chunk ? groups - done : chunk;
        if (words == 4) {
            mcuflow_s16_block2(w, x + 4 * done, n, acc);
        } else {
            mcuflow_s16_block4(w, x + 2 * done, n, acc);
        }
        for (int32_t i = 0; i < 4; ++i) {
            sum[i] += acc[i];
        }
    }
}

/* ---- CONV_2D ---------------------------------------------------------------------------- */

/* The activation clamp of a CONV_2D layer: any [lo, hi], or the whole int16 range (SSAT), or
 * RELU's [0, 32767] (USAT). */
#define MCUFLOW_S16_CLAMP_ANY 0
#define MCUFLOW_S16_CLAMP_FULL 1
#define MCUFLOW_S16_CLAMP_RELU 2

#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SAT)
#define MCUFLOW_S16_SSAT16(x) __ssat((x), 16)
#define MCUFLOW_S16_USAT15(x) ((int32_t)__usat((x), 15))
#else
#define MCUFLOW_S16_SSAT16(x) mcuflow_clamp((x), INT16_MIN, INT16_MAX)
#define MCUFLOW_S16_USAT15(x) mcuflow_clamp((x), 0, INT16_MAX)
#endif

/* The requantised output of accumulator `acc` with its channel's words `rq`, clamped to
 * [lo, hi]; `wide` and `clamp` (MCUFLOW_S16_CLAMP_*) are the layer's, constants where this is
 * inlined. */
MCUFLOW_INLINE int16_t mcuflow_s16_conv_out(int32_t acc, const int32_t *rq, int32_t lo,
                                            int32_t hi, int wide, int clamp)
{
    const int64_t addend = (int64_t)(((uint64_t)(uint32_t)rq[3] << 32) | (uint32_t)rq[2]);
    const int64_t t = (int64_t)acc * rq[0] + addend;
    const int32_t y = wide ? (int32_t)(t >> rq[1]) : (int32_t)(t >> 32);
    if (clamp == MCUFLOW_S16_CLAMP_FULL) {
        return (int16_t)MCUFLOW_S16_SSAT16(y);
    }
    if (clamp == MCUFLOW_S16_CLAMP_RELU) {
        return (int16_t)MCUFLOW_S16_USAT15(y);
    }
    return (int16_t)(y < lo ? lo : (y > hi ? hi : y));
}

/* `words` zero words, every other one from `column`. */
static inline void mcuflow_s16_zeros(mcuflow_word_t *column, int32_t words)
{
    for (; words > 0; --words, column += 2) {
        *column = 0u;
    }
}

/* Two int16 values from any halfword alignment (an unaligned LDR on Cortex-M4/M7/M33). */
static inline uint32_t mcuflow_s16_pair(const int16_t *in)
{
    uint32_t pair;
    memcpy(&pair, in, sizeof pair);
    return pair;
}

/* `fours` (> 0) times four words from word-aligned `*src` into every other word from `*column`
 * (one LDM and four stores each in assembly), advancing both pointers. */
#if MCUFLOW_DSP_ASM
MCUFLOW_INLINE void mcuflow_s16_copy4(mcuflow_word_t **column, const mcuflow_word_t **src,
                                      int32_t fours)
{
    mcuflow_word_t *to = *column;
    const mcuflow_word_t *from = *src;
    __asm__ volatile("1:\n\t"
                     "ldmia %[from]!, {r8, r9, r10, r11}\n\t"
                     "str r8, [%[to]], #8\n\t"
                     "str r9, [%[to]], #8\n\t"
                     "str r10, [%[to]], #8\n\t"
                     "str r11, [%[to]], #8\n\t"
                     "subs %[n], %[n], #1\n\t"
                     "bne 1b\n\t"
                     : [to] "+r"(to), [from] "+r"(from), [n] "+r"(fours)
                     :
                     : "r8", "r9", "r10", "r11", "cc", "memory");
    *column = to;
    *src = from;
}
#else
MCUFLOW_INLINE void mcuflow_s16_copy4(mcuflow_word_t **column, const mcuflow_word_t **src,
                                      int32_t fours)
{
    mcuflow_word_t *to = *column;
    const mcuflow_word_t *from = *src;
    for (; fours > 0; --fours, to += 8, from += 4) {
        to[0] = from[0];
        to[2] = from[1];
        to[4] = from[2];
        to[6] = from[3];
    }
    *column = to;
    *src = from;
}
#endif

/* `n` int16 values from `in` as pairs into every other word from `column`, an odd last one
 * completed by a zero. Word-aligned inputs are read four words per load. */
static inline void mcuflow_s16_copy(mcuflow_word_t *column, const int16_t *in, int32_t n)
{
    int32_t words = n >> 1;
    if (((uintptr_t)in & 3u) == 0u && words >= 4) {
        const mcuflow_word_t *src = (const mcuflow_word_t *)(const void *)in;
        mcuflow_s16_copy4(&column, &src, words >> 2);
        words &= 3;
        in = (const int16_t *)(const void *)src;
    }
    for (; words > 0; --words, column += 2, in += 2) {
        *column = mcuflow_s16_pair(in);
    }
    if (n & 1) {
        *column = (uint16_t)in[0];
    }
}

/* One window row of dilation_w 1: its k_w * in_c values are contiguous in the input and in
 * the columns (`row_words` words, padded with a zero), one run inside the input. Across the
 * input's edge the values of taps outside are zeros: whole words outside [first, end), the
 * word holding an odd first value built with a zero low half, the rest copied as pairs. */
static void mcuflow_s16_gather_run(const mcuflow_window_t *g, int32_t row_words,
                                   const int16_t *line, int32_t x0, mcuflow_word_t *column)
{
    const int32_t left = x0 < 0 ? -x0 : 0;
    int32_t right = g->in_w - x0 < g->k_w ? g->in_w - x0 : g->k_w;
    if (left == 0 && right == g->k_w) {
        mcuflow_s16_copy(column, line + (size_t)x0 * (size_t)g->in_c, g->k_w * g->in_c);
        return;
    }
    right = right < left ? left : right;
    const int32_t first = left * g->in_c, end = right * g->in_c;
    const int32_t base = (x0 + left) * g->in_c - first; /* value i at line[base + i] */
    int32_t i = first;
    mcuflow_s16_zeros(column, first >> 1);
    if (i & 1) {
        column[i - 1] = i < end ? (uint32_t)(uint16_t)line[base + i] << 16 : 0u;
        ++i;
    }
    if (end > i) {
        mcuflow_s16_copy(column + i, line + base + i, end - i);
    }
    const int32_t done = (end > i ? end + 1 : i + 1) >> 1;
    mcuflow_s16_zeros(column + 2 * done, row_words - done);
}

/* One window row tap by tap (dilation_w > 1), each tap's in_c values padded to even. */
static void mcuflow_s16_gather_taps(const mcuflow_window_t *g, const int16_t *line, int32_t x0,
                                    mcuflow_word_t *column)
{
    const int32_t tap_words = (g->in_c + 1) >> 1;
    for (int32_t kx = 0; kx < g->k_w; ++kx, column += 2 * tap_words) {
        const int32_t x = x0 + kx * g->dilation_w;
        if (x < 0 || x >= g->in_w) {
            mcuflow_s16_zeros(column, tap_words);
        } else {
            mcuflow_s16_copy(column, line + (size_t)x * (size_t)g->in_c, g->in_c);
        }
    }
}

/* The int16 columns of output pixel `pixel` (raster order over batches, rows, columns) into
 * every other word from `column`, `row_words` per window row. */
static void mcuflow_s16_gather(const mcuflow_window_t *g, int32_t row_words,
                               const int16_t *input, int32_t pixel, mcuflow_word_t *column)
{
    const int32_t per_image = g->out_h * g->out_w;
    const int32_t b = pixel / per_image;
    const int32_t oy = (pixel - b * per_image) / g->out_w;
    const int32_t ox = pixel - b * per_image - oy * g->out_w;
    const int32_t line_values = g->in_w * g->in_c;
    const int16_t *image = input + (size_t)b * (size_t)(g->in_h * line_values);
    const int32_t y0 = oy * g->stride_h - g->pad_top;
    const int32_t x0 = ox * g->stride_w - g->pad_left;
    for (int32_t ky = 0; ky < g->k_h; ++ky, column += 2 * row_words) {
        const int32_t y = y0 + ky * g->dilation_h;
        if (y < 0 || y >= g->in_h) {
            mcuflow_s16_zeros(column, row_words);
        } else if (g->dilation_w == 1) {
            mcuflow_s16_gather_run(g, row_words, image + (size_t)y * (size_t)line_values, x0,
                                   column);
        } else {
            mcuflow_s16_gather_taps(g, image + (size_t)y * (size_t)line_values, x0, column);
        }
    }
}

/* Where output pixel `pixel` is written. */
static int16_t *mcuflow_s16_pixel(const mcuflow_window_t *g, int16_t *output, int32_t pixel)
{
    const int32_t per_image = g->out_h * g->out_w;
    const int32_t b = pixel / per_image;
    const int32_t oy = (pixel - b * per_image) / g->out_w;
    const int32_t ox = pixel - b * per_image - oy * g->out_w;
    return output + (size_t)b * (size_t)g->out_batch_step + (size_t)oy * (size_t)g->out_row_step
           + (size_t)ox * (size_t)g->out_pixel_step;
}

/* Every output channel of two gathered pixels, written to out0 and out1. */
MCUFLOW_INLINE void mcuflow_s16_channels(const mcuflow_s16_dsp_t *p,
                                         const mcuflow_word_t *columns, int16_t *out0,
                                         int16_t *out1, int wide, int clamp)
{
    const mcuflow_word_t *w = p->weights;
    const int32_t *rq = p->rq;
    const int32_t groups = p->groups, lo = p->act_min, hi = p->act_max;
    int32_t acc[4];
    for (int32_t pair = p->rows >> 1; pair > 0; --pair) {
        mcuflow_s16_block2(&w, columns, groups, acc);
        out1[0] = mcuflow_s16_conv_out(acc[1], rq, lo, hi, wide, clamp);
        out1[1] = mcuflow_s16_conv_out(acc[3], rq + MCUFLOW_S16_DSP_RQ_WORDS, lo, hi, wide,
                                       clamp);
        out0[0] = mcuflow_s16_conv_out(acc[0], rq, lo, hi, wide, clamp);
        out0[1] = mcuflow_s16_conv_out(acc[2], rq + MCUFLOW_S16_DSP_RQ_WORDS, lo, hi, wide,
                                       clamp);
        out0 += 2;
        out1 += 2;
        rq += 2 * MCUFLOW_S16_DSP_RQ_WORDS;
    }
    if (p->rows & 1) {
        mcuflow_s16_block2(&w, columns, groups, acc);
        out1[0] = mcuflow_s16_conv_out(acc[1], rq, lo, hi, wide, clamp);
        out0[0] = mcuflow_s16_conv_out(acc[0], rq, lo, hi, wide, clamp);
    }
}

/* The output of an int64 sum with its channel's `wide` words. */
static int16_t mcuflow_s16_conv_long_out(int64_t sum, const int32_t *rq, int32_t lo, int32_t hi)
{
    const int64_t addend = (int64_t)(((uint64_t)(uint32_t)rq[3] << 32) | (uint32_t)rq[2]);
    const int32_t y = (int32_t)((sum * rq[0] + addend) >> rq[1]);
    return (int16_t)(y < lo ? lo : (y > hi ? hi : y));
}

/* mcuflow_s16_channels for dot products that may leave int32 (`chunk_groups`). */
static void mcuflow_s16_channels_long(const mcuflow_s16_dsp_t *p, const mcuflow_word_t *columns,
                                      int16_t *out0, int16_t *out1)
{
    const mcuflow_word_t *w = p->weights;
    const int32_t lo = p->act_min, hi = p->act_max;
    int64_t sum[4];
    for (int32_t c = 0; c < p->rows; c += 2) {
        const int32_t *rq = p->rq + MCUFLOW_S16_DSP_RQ_WORDS * c;
        mcuflow_s16_long(&w, columns, p->groups, p->chunk_groups, 4, sum);
        out1[c] = mcuflow_s16_conv_long_out(sum[1], rq, lo, hi);
        out0[c] = mcuflow_s16_conv_long_out(sum[0], rq, lo, hi);
        if (c + 1 < p->rows) {
            out1[c + 1] = mcuflow_s16_conv_long_out(sum[3], rq + MCUFLOW_S16_DSP_RQ_WORDS, lo, hi);
            out0[c + 1] = mcuflow_s16_conv_long_out(sum[2], rq + MCUFLOW_S16_DSP_RQ_WORDS, lo, hi);
        }
    }
}

/* The whole layer, `wide` and `clamp` constants where inlined. */
MCUFLOW_INLINE void mcuflow_s16_conv(const mcuflow_window_t *g, const mcuflow_s16_dsp_t *p,
                                     const int16_t *input, int16_t *output,
                                     mcuflow_word_t *columns, int wide, int clamp)
{
    const int32_t pixels = g->batches * g->out_h * g->out_w;
    for (int32_t pixel = 0; pixel < pixels; pixel += 2) {
        const int32_t second = pixel + 1 < pixels ? pixel + 1 : pixel;
        mcuflow_s16_gather(g, p->row_words, input, pixel, columns);
        mcuflow_s16_gather(g, p->row_words, input, second, columns + 1);
        int16_t *out0 = mcuflow_s16_pixel(g, output, pixel);
        int16_t *out1 = mcuflow_s16_pixel(g, output, second);
        if (p->chunk_groups > 0) {
            mcuflow_s16_channels_long(p, columns, out0, out1);
        } else {
            mcuflow_s16_channels(p, columns, out0, out1, wide, clamp);
        }
    }
}

void mcuflow_conv2d_s16_dsp(const mcuflow_window_t *g, const mcuflow_s16_dsp_t *p,
                            const int16_t *input, int16_t *output, mcuflow_word_t *columns)
{
    if (p->wide || p->chunk_groups > 0) {
        mcuflow_s16_conv(g, p, input, output, columns, 1, MCUFLOW_S16_CLAMP_ANY);
    } else if (p->act_min == INT16_MIN && p->act_max == INT16_MAX) {
        mcuflow_s16_conv(g, p, input, output, columns, 0, MCUFLOW_S16_CLAMP_FULL);
    } else if (p->act_min == 0 && p->act_max == INT16_MAX) {
        mcuflow_s16_conv(g, p, input, output, columns, 0, MCUFLOW_S16_CLAMP_RELU);
    } else {
        mcuflow_s16_conv(g, p, input, output, columns, 0, MCUFLOW_S16_CLAMP_ANY);
    }
}

/* ---- FULLY_CONNECTED ---------------------------------------------------------------------- */

/* LiteRT's round(double(acc + bias) * scale) of unit `u`, saturated far outside int16, then
 * clamped to the activation. */
static int16_t mcuflow_s16_fc_scaled(const mcuflow_s16_dsp_t *p, int64_t acc, int32_t u)
{
    const int64_t sum = acc + (p->bias != NULL ? p->bias[u] : 0);
    const double scaled = round((double)sum * p->scales[u]);
    const int32_t y = scaled > 1048576.0 ? 1048576
                      : (scaled < -1048576.0 ? -1048576 : (int32_t)scaled);
    return (int16_t)mcuflow_clamp(y, p->act_min, p->act_max);
}

/* mcuflow_s16_fc_fixed from unit `u`'s words `r`; `full` (a constant): [lo, hi] is all of
 * int16, one SSAT. */
MCUFLOW_INLINE int16_t mcuflow_s16_fc_out(const mcuflow_s16_dsp_t *p, const int32_t *r,
                                          int32_t acc, int32_t u, int32_t lo, int32_t hi,
                                          int full)
{
    const int64_t addend = (int64_t)(((uint64_t)(uint32_t)r[3] << 32) | (uint32_t)r[2]);
    const int64_t t = (int64_t)acc * r[0] + addend;
    const int32_t high = (int32_t)(t >> 32);
    const uint32_t fraction = ((uint32_t)high << (32 - r[1])) | ((uint32_t)t >> r[1]);
    if (fraction - (uint32_t)r[4] > (uint32_t)r[5]) {
        return mcuflow_s16_fc_scaled(p, acc, u);
    }
    if (full) {
        return (int16_t)MCUFLOW_S16_SSAT16(high >> r[1]);
    }
    return (int16_t)mcuflow_clamp(high >> r[1], lo, hi);
}

/* The same output from the unit's words (MCUFLOW_S16_DSP_FC_WORDS), in integers unless the
 * fraction falls in the band around an integer where only the double product decides. */
MCUFLOW_INLINE int16_t mcuflow_s16_fc_fixed(const mcuflow_s16_dsp_t *p, int32_t acc, int32_t u,
                                            int32_t lo, int32_t hi)
{
    const int32_t *r = p->rq + MCUFLOW_S16_DSP_FC_WORDS * u;
    const int64_t addend = (int64_t)(((uint64_t)(uint32_t)r[3] << 32) | (uint32_t)r[2]);
    const int64_t t = (int64_t)acc * r[0] + addend;
    const int32_t high = (int32_t)(t >> 32);
    const uint32_t fraction = ((uint32_t)high << (32 - r[1])) | ((uint32_t)t >> r[1]);
    if (fraction - (uint32_t)r[4] > (uint32_t)r[5]) {
        return mcuflow_s16_fc_scaled(p, acc, u);
    }
    const int32_t y = high >> r[1];
    return (int16_t)(y < lo ? lo : (y > hi ? hi : y));
}

/* The input row `r` as int16 pairs, zero padded to whole groups. */
static void mcuflow_s16_row(const mcuflow_s16_dsp_t *p, const int16_t *input, int32_t r,
                            mcuflow_word_t *row)
{
    mcuflow_half_t *halves = (mcuflow_half_t *)row;
    memcpy(row, input + (size_t)r * (size_t)p->depth, (size_t)p->depth * sizeof(int16_t));
    for (int32_t k = p->depth; k < 4 * p->groups; ++k) {
        halves[k] = 0u;
    }
}

/* Word k of an input row of `depth` values as an int16 pair, zero past the row. */
MCUFLOW_INLINE uint32_t mcuflow_s16_row_word(const int16_t *in, int32_t depth, int32_t k)
{
    if (2 * k + 1 < depth) {
        return mcuflow_s16_pair(in + 2 * k);
    }
    return 2 * k < depth ? (uint32_t)(uint16_t)in[2 * k] : 0u;
}

/* The sum of the unit whose 2 * groups words (`groups` constant) start at `w`. */
MCUFLOW_INLINE int32_t mcuflow_s16_fc_dot(const mcuflow_word_t *w, const uint32_t *x,
                                          int32_t groups)
{
    int32_t acc = mcuflow_smlad(w[1], x[1], mcuflow_smlad(w[0], x[0], 0));
    if (groups > 1) {
        acc = mcuflow_smlad(w[3], x[3], mcuflow_smlad(w[2], x[2], acc));
    }
    if (groups > 2) {
        acc = mcuflow_smlad(w[5], x[5], mcuflow_smlad(w[4], x[4], acc));
    }
    if (groups > 3) {
        acc = mcuflow_smlad(w[7], x[7], mcuflow_smlad(w[6], x[6], acc));
    }
    return acc;
}

/* FULLY_CONNECTED of `groups` (a constant, at most 4) groups with integer requantisation,
 * weights packed unit by unit: the row stays in registers and each unit is one SMLAD chain. */
MCUFLOW_INLINE void mcuflow_s16_fc_small(int32_t batches, const mcuflow_s16_dsp_t *p,
                                         const int16_t *input, int16_t *output, int32_t groups,
                                         int full)
{
    const int32_t rows = p->rows, depth = p->depth, lo = p->act_min, hi = p->act_max;
    for (int32_t r = 0; r < batches; ++r, input += depth, output += rows) {
        uint32_t x[8] = {0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u};
        x[0] = mcuflow_s16_row_word(input, depth, 0);
        x[1] = mcuflow_s16_row_word(input, depth, 1);
        if (groups > 1) {
            x[2] = mcuflow_s16_row_word(input, depth, 2);
            x[3] = mcuflow_s16_row_word(input, depth, 3);
        }
        if (groups > 2) {
            x[4] = mcuflow_s16_row_word(input, depth, 4);
            x[5] = mcuflow_s16_row_word(input, depth, 5);
        }
        if (groups > 3) {
            x[6] = mcuflow_s16_row_word(input, depth, 6);
            x[7] = mcuflow_s16_row_word(input, depth, 7);
        }
        const mcuflow_word_t *w = p->weights;
        const int32_t *rq = p->rq;
        for (int32_t u = 0; u < rows; ++u, w += 2 * groups, rq += MCUFLOW_S16_DSP_FC_WORDS) {
            output[u] = mcuflow_s16_fc_out(p, rq, mcuflow_s16_fc_dot(w, x, groups), u, lo, hi,
                                           full);
        }
    }
}

/* Kept out of the general FULLY_CONNECTED so that its frame stays small. */
#if defined(__GNUC__) || defined(__clang__)
#define MCUFLOW_S16_APART static __attribute__((noinline))
#else
#define MCUFLOW_S16_APART static
#endif

/* mcuflow_s16_fc_small with the layer's groups as a constant. */
MCUFLOW_INLINE void mcuflow_s16_fc_groups(int32_t batches, const mcuflow_s16_dsp_t *p,
                                          const int16_t *input, int16_t *output, int full)
{
    if (p->groups == 1) {
        mcuflow_s16_fc_small(batches, p, input, output, 1, full);
    } else if (p->groups == 2) {
        mcuflow_s16_fc_small(batches, p, input, output, 2, full);
    } else if (p->groups == 3) {
        mcuflow_s16_fc_small(batches, p, input, output, 3, full);
    } else {
        mcuflow_s16_fc_small(batches, p, input, output, 4, full);
    }
}

/* mcuflow_s16_fc_groups with the clamp as a constant. */
MCUFLOW_S16_APART void mcuflow_s16_fc_apart(int32_t batches, const mcuflow_s16_dsp_t *p,
                                            const int16_t *input, int16_t *output)
{
    if (p->act_min == INT16_MIN && p->act_max == INT16_MAX) {
        mcuflow_s16_fc_groups(batches, p, input, output, 1);
    } else {
        mcuflow_s16_fc_groups(batches, p, input, output, 0);
    }
}

/* Layers of at most 4 groups with integer requantisation run mcuflow_s16_fc_small. */
void mcuflow_fully_connected_s16_dsp(int32_t batches, const mcuflow_s16_dsp_t *p,
                                     const int16_t *input, int16_t *output, mcuflow_word_t *row)
{
    if (p->rq != NULL && p->groups <= 4) {
        mcuflow_s16_fc_apart(batches, p, input, output);
        return;
    }
    const int32_t quads = (p->rows + 3) >> 2, groups = p->groups;
    const int32_t lo = p->act_min, hi = p->act_max;
    for (int32_t r = 0; r < batches; ++r) {
        mcuflow_s16_row(p, input, r, row);
        int16_t *out = output + (size_t)r * (size_t)p->rows;
        const mcuflow_word_t *w = p->weights;
        const int32_t *rq = p->rq;
        int32_t acc[4];
        int64_t sum[4];
        for (int32_t q = 0; q < quads; ++q, out += 4) {
            const int32_t units = p->rows - 4 * q < 4 ? p->rows - 4 * q : 4;
            if (p->chunk_groups > 0) {
                mcuflow_s16_long(&w, row, groups, p->chunk_groups, 2, sum);
                for (int32_t u = 0; u < units; ++u) {
                    out[u] = mcuflow_s16_fc_scaled(p, sum[u], 4 * q + u);
                }
                continue;
            }
            mcuflow_s16_block4(&w, row, groups, acc);
            for (int32_t u = 0; u < units; ++u) {
                out[u] = rq != NULL ? mcuflow_s16_fc_fixed(p, acc[u], 4 * q + u, lo, hi)
                                    : mcuflow_s16_fc_scaled(p, acc[u], 4 * q + u);
            }
        }
    }
}
