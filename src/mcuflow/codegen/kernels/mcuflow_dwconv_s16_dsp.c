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

/* The channel's record: addend low and high words, multiplier, shift, act_min, act_max, then
 * the weight words. */
#define MCUFLOW_DWS16_HEADER 6

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
MCUFLOW_INLINE int16_t mcuflow_dws16_out(int32_t acc, const int32_t *k, int narrow)
{
    const int64_t addend = (int64_t)(((uint64_t)(uint32_t)k[1] << 32) | (uint32_t)k[0]);
    const int64_t t = addend + (int64_t)acc * k[2];
    const int32_t y = (int32_t)(t >> 32) >> k[3];
    return (int16_t)(narrow ? mcuflow_clamp(y, k[4], k[5]) : mcuflow_dws16_ssat16(y));
}

#if MCUFLOW_DSP_ASM

/* One kernel row of a 3x3 stride-1 pair: plane words (x0, x1), (x2, x3) from `x` (advanced one
 * word), row weights (w0, w1), (w1, w2) at byte OFFSET of the record. */
#define MCUFLOW_DWS16_ROW3(x, OFFSET, FIRST)                                                    \
    "ldrd %[a], %[b], [%[" x "]], #4\n\t"                                                      \
    "ldrd %[t0], %[t1], [%[k], #" #OFFSET "]\n\t" FIRST                                        \
    "smlabt %[p], %[b], %[t1], %[p]\n\t"                                                        \
    "smlad %[q], %[b], %[t1], %[q]\n\t"

#define MCUFLOW_DWS16_START3 "smuad %[p], %[a], %[t0]\n\tsmultb %[q], %[a], %[t0]\n\t"
#define MCUFLOW_DWS16_NEXT3 "smlad %[p], %[a], %[t0], %[p]\n\tsmlatb %[q], %[a], %[t0], %[q]\n\t"

MCUFLOW_INLINE void mcuflow_dws16_pair_3x3(const mcuflow_word_t **x0, const mcuflow_word_t **x1,
                                           const mcuflow_word_t **x2, const int32_t *k,
                                           int32_t *p, int32_t *q)
{
    uint32_t a, b, t0, t1;
    __asm__ volatile(MCUFLOW_DWS16_ROW3("x0", 24, MCUFLOW_DWS16_START3)
                         MCUFLOW_DWS16_ROW3("x1", 32, MCUFLOW_DWS16_NEXT3)
                             MCUFLOW_DWS16_ROW3("x2", 40, MCUFLOW_DWS16_NEXT3)
                     : [p] "=&r"(*p), [q] "=&r"(*q), [a] "=&r"(a), [b] "=&r"(b),
                       [t0] "=&r"(t0), [t1] "=&r"(t1), [x0] "+r"(*x0), [x1] "+r"(*x1),
                       [x2] "+r"(*x2)
                     : [k] "r"(k)
                     : "memory");
}

/* One kernel row of a 3x3 stride-2 pair: plane words (x0, x1), (x2, x3), (x4, x5) from `x`
 * (advanced two words), row weights (w0, w1), (w2, 0) at byte OFFSET. */
#define MCUFLOW_DWS16_ROW3S2(x, OFFSET, FIRST)                                                  \
    "ldrd %[a], %[b], [%[" x "]], #8\n\t"                                                      \
    "ldr %[c], [%[" x "]]\n\t"                                                                 \
    "ldrd %[t0], %[t1], [%[k], #" #OFFSET "]\n\t" FIRST                                        \
    "smlad %[p], %[b], %[t1], %[p]\n\t"                                                         \
    "smlad %[q], %[c], %[t1], %[q]\n\t"

#define MCUFLOW_DWS16_START3S2 "smuad %[p], %[a], %[t0]\n\tsmuad %[q], %[b], %[t0]\n\t"
#define MCUFLOW_DWS16_NEXT3S2 "smlad %[p], %[a], %[t0], %[p]\n\tsmlad %[q], %[b], %[t0], %[q]\n\t"

MCUFLOW_INLINE void mcuflow_dws16_pair_3x3_s2(const mcuflow_word_t **x0,
                                              const mcuflow_word_t **x1,
                                              const mcuflow_word_t **x2, const int32_t *k,
                                              int32_t *p, int32_t *q)
{
    uint32_t a, b, c, t0, t1;
    __asm__ volatile(MCUFLOW_DWS16_ROW3S2("x0", 24, MCUFLOW_DWS16_START3S2)
                         MCUFLOW_DWS16_ROW3S2("x1", 32, MCUFLOW_DWS16_NEXT3S2)
                             MCUFLOW_DWS16_ROW3S2("x2", 40, MCUFLOW_DWS16_NEXT3S2)
                     : [p] "=&r"(*p), [q] "=&r"(*q), [a] "=&r"(a), [b] "=&r"(b), [c] "=&r"(c),
                       [t0] "=&r"(t0), [t1] "=&r"(t1), [x0] "+r"(*x0), [x1] "+r"(*x1),
                       [x2] "+r"(*x2)
                     : [k] "r"(k)
                     : "memory");
}

/* Stride 1, any size: per kernel row `words` plane words from `x`, each against the pair
 * (U_i, V_i) (the weights from `w` to `end`); `skip` bytes from a row's last word read to the
 * next row's first. */
MCUFLOW_INLINE void mcuflow_dws16_pair_s1(const mcuflow_word_t *x, const int32_t *w,
                                          const int32_t *end, int32_t words, int32_t skip,
                                          int32_t *p, int32_t *q)
{
    uint32_t a, u, v;
    int32_t i;
    __asm__ volatile("movs %[p], #0\n\t"
                     "movs %[q], #0\n"
                     "1:\n\t"
                     "mov %[i], %[words]\n"
                     "2:\n\t"
                     "ldr %[a], [%[x]], #4\n\t"
                     "ldrd %[u], %[v], [%[w]], #8\n\t"
                     "smlad %[p], %[a], %[u], %[p]\n\t"
                     "smlad %[q], %[a], %[v], %[q]\n\t"
                     "subs %[i], %[i], #1\n\t"
                     "bne 2b\n\t"
                     "add %[x], %[x], %[skip]\n\t"
                     "cmp %[w], %[end]\n\t"
                     "bne 1b\n\t"
                     : [p] "=&r"(*p), [q] "=&r"(*q), [a] "=&r"(a), [u] "=&r"(u), [v] "=&r"(v),
                       [i] "=&r"(i), [x] "+r"(x), [w] "+r"(w)
                     : [end] "r"(end), [words] "r"(words), [skip] "r"(skip)
                     : "cc", "memory");
}

/* Stride 2, any size: per kernel row `words` weight pairs U_i from `w`; the first output reads
 * plane words 0 .. words - 1 from `x`, the second 1 .. words. */
MCUFLOW_INLINE void mcuflow_dws16_pair_s2(const mcuflow_word_t *x, const int32_t *w,
                                          const int32_t *end, int32_t words, int32_t skip,
                                          int32_t *p, int32_t *q)
{
    uint32_t a, b, u;
    int32_t i;
    __asm__ volatile("movs %[p], #0\n\t"
                     "movs %[q], #0\n"
                     "1:\n\t"
                     "mov %[i], %[words]\n\t"
                     "ldr %[a], [%[x]], #4\n"
                     "2:\n\t"
                     "ldr %[u], [%[w]], #4\n\t"
                     "ldr %[b], [%[x]], #4\n\t"
                     "smlad %[p], %[a], %[u], %[p]\n\t"
                     "smlad %[q], %[b], %[u], %[q]\n\t"
                     "mov %[a], %[b]\n\t"
                     "subs %[i], %[i], #1\n\t"
                     "bne 2b\n\t"
                     "add %[x], %[x], %[skip]\n\t"
                     "cmp %[w], %[end]\n\t"
                     "bne 1b\n\t"
                     : [p] "=&r"(*p), [q] "=&r"(*q), [a] "=&r"(a), [b] "=&r"(b), [u] "=&r"(u),
                       [i] "=&r"(i), [x] "+r"(x), [w] "+r"(w)
                     : [end] "r"(end), [words] "r"(words), [skip] "r"(skip)
                     : "cc", "memory");
}

/* Both outputs of a pair requantised: C + acc * M (SMLAL), high word >> s, then saturated to
 * int16 or, `narrow`, clamped to the record's act_min, act_max. */
#define MCUFLOW_DWS16_RQ                                                                        \
    "ldrd %[a], %[b], [%[k]]\n\t"                                                              \
    "ldrd %[t0], %[t1], [%[k], #8]\n\t"                                                        \
    "smlal %[a], %[b], %[p], %[t0]\n\t"                                                        \
    "ldrd %[a], %[p], [%[k]]\n\t"                                                              \
    "smlal %[a], %[p], %[q], %[t0]\n\t"                                                        \
    "asr %[b], %[b], %[t1]\n\t"                                                                \
    "asr %[p], %[p], %[t1]\n\t"

#define MCUFLOW_DWS16_CLAMP(y)                                                                  \
    "cmp %[" y "], %[t0]\n\t"                                                                  \
    "it lt\n\t"                                                                                \
    "movlt %[" y "], %[t0]\n\t"                                                                \
    "cmp %[" y "], %[t1]\n\t"                                                                  \
    "it gt\n\t"                                                                                \
    "movgt %[" y "], %[t1]\n\t"

MCUFLOW_INLINE void mcuflow_dws16_store2(int32_t p, int32_t q, const int32_t *k, int16_t *o,
                                         size_t step, int narrow)
{
    uint32_t a, b, t0, t1;
    const size_t bytes = 2 * step;
    if (narrow) {
        __asm__ volatile(MCUFLOW_DWS16_RQ "ldrd %[t0], %[t1], [%[k], #16]\n\t"
                             MCUFLOW_DWS16_CLAMP("b") MCUFLOW_DWS16_CLAMP("p")
                                 "strh %[b], [%[o]]\n\t"
                                 "strh %[p], [%[o], %[bytes]]\n\t"
                         : [p] "+&r"(p), [a] "=&r"(a), [b] "=&r"(b), [t0] "=&r"(t0),
                           [t1] "=&r"(t1)
                         : [q] "r"(q), [k] "r"(k), [o] "r"(o), [bytes] "r"(bytes)
                         : "cc", "memory");
    } else {
        __asm__ volatile(MCUFLOW_DWS16_RQ "ssat %[b], #16, %[b]\n\t"
                                          "ssat %[p], #16, %[p]\n\t"
                                          "strh %[b], [%[o]]\n\t"
                                          "strh %[p], [%[o], %[bytes]]\n\t"
                         : [p] "+&r"(p), [a] "=&r"(a), [b] "=&r"(b), [t0] "=&r"(t0),
                           [t1] "=&r"(t1)
                         : [q] "r"(q), [k] "r"(k), [o] "r"(o), [bytes] "r"(bytes)
                         : "cc", "memory");
    }
}

#else

MCUFLOW_INLINE void mcuflow_dws16_pair_3x3(const mcuflow_word_t **x0, const mcuflow_word_t **x1,
                                           const mcuflow_word_t **x2, const int32_t *k,
                                           int32_t *p, int32_t *q)
{
    const mcuflow_word_t *rows[3] = {*x0, *x1, *x2};
    const int32_t *w = k + MCUFLOW_DWS16_HEADER;
    int32_t a0 = 0, a1 = 0;
    for (int r = 0; r < 3; ++r, w += 2) {
        const uint32_t a = rows[r][0], b = rows[r][1];
        const uint32_t t0 = (uint32_t)w[0], t1 = (uint32_t)w[1];
        a0 = mcuflow_smlad(a, t0, a0);
        a0 = mcuflow_smlabt(b, t1, a0);
        a1 = mcuflow_smlatb(a, t0, a1);
        a1 = mcuflow_smlad(b, t1, a1);
    }
    ++*x0;
    ++*x1;
    ++*x2;
    *p = a0;
    *q = a1;
}

MCUFLOW_INLINE void mcuflow_dws16_pair_3x3_s2(const mcuflow_word_t **x0,
                                              const mcuflow_word_t **x1,
                                              const mcuflow_word_t **x2, const int32_t *k,
                                              int32_t *p, int32_t *q)
{
    const mcuflow_word_t *rows[3] = {*x0, *x1, *x2};
    const int32_t *w = k + MCUFLOW_DWS16_HEADER;
    int32_t a0 = 0, a1 = 0;
    for (int r = 0; r < 3; ++r, w += 2) {
        const uint32_t a = rows[r][0], b = rows[r][1], c = rows[r][2];
        a0 = mcuflow_smlad(b, (uint32_t)w[1], mcuflow_smlad(a, (uint32_t)w[0], a0));
        a1 = mcuflow_smlad(c, (uint32_t)w[1], mcuflow_smlad(b, (uint32_t)w[0], a1));
    }
    *x0 += 2;
    *x1 += 2;
    *x2 += 2;
    *p = a0;
    *q = a1;
}

MCUFLOW_INLINE void mcuflow_dws16_pair_s1(const mcuflow_word_t *x, const int32_t *w,
                                          const int32_t *end, int32_t words, int32_t skip,
                                          int32_t *p, int32_t *q)
{
    int32_t a0 = 0, a1 = 0;
    while (w != end) {
        for (int32_t i = 0; i < words; ++i, ++x, w += 2) {
            a0 = mcuflow_smlad(*x, (uint32_t)w[0], a0);
            a1 = mcuflow_smlad(*x, (uint32_t)w[1], a1);
        }
        x += skip / 4;
    }
    *p = a0;
    *q = a1;
}

MCUFLOW_INLINE void mcuflow_dws16_pair_s2(const mcuflow_word_t *x, const int32_t *w,
                                          const int32_t *end, int32_t words, int32_t skip,
                                          int32_t *p, int32_t *q)
{
    int32_t a0 = 0, a1 = 0;
    while (w != end) {
        for (int32_t i = 0; i < words; ++i, ++w) {
            a0 = mcuflow_smlad(x[i], (uint32_t)*w, a0);
            a1 = mcuflow_smlad(x[i + 1], (uint32_t)*w, a1);
        }
        x += words + 1 + skip / 4;
    }
    *p = a0;
    *q = a1;
}

MCUFLOW_INLINE void mcuflow_dws16_store2(int32_t p, int32_t q, const int32_t *k, int16_t *o,
                                         size_t step, int narrow)
{
    o[0] = mcuflow_dws16_out(p, k, narrow);
    o[step] = mcuflow_dws16_out(q, k, narrow);
}

#endif

/* How a channel's pairs read the plane and the record (from the kernel's constants). */
typedef struct {
    size_t columns;     /* plane words per row */
    int32_t words;      /* plane words per kernel row of the generic forms */
    int32_t skip;       /* bytes from one kernel row's last word read to the next row's first */
    int32_t weights;    /* weight words of the record */
} mcuflow_dws16_reads_t;

/* The sums of the output pair whose first output reads plane word `x` (rows `x`, `x1`, `x2`
 * of the 3x3 forms, advanced to the next pair) with `form` (a constant). */
MCUFLOW_INLINE void mcuflow_dws16_pair(const mcuflow_dws16_reads_t *r, int form,
                                       const mcuflow_word_t **x, const mcuflow_word_t **x1,
                                       const mcuflow_word_t **x2, const int32_t *k, int32_t *p,
                                       int32_t *q)
{
    const int32_t *w = k + MCUFLOW_DWS16_HEADER;
    if (form == MCUFLOW_DWS16_3X3) {
        mcuflow_dws16_pair_3x3(x, x1, x2, k, p, q);
    } else if (form == MCUFLOW_DWS16_3X3_S2) {
        mcuflow_dws16_pair_3x3_s2(x, x1, x2, k, p, q);
    } else if (form == MCUFLOW_DWS16_S1) {
        mcuflow_dws16_pair_s1(*x, w, w + r->weights, r->words, r->skip, p, q);
        *x += 1;
    } else {
        mcuflow_dws16_pair_s2(*x, w, w + r->weights, r->words, r->skip, p, q);
        *x += 2;
    }
}

/* Every output of channel record `k` from its plane, into `out` (the channel's first output). */
MCUFLOW_INLINE void mcuflow_dws16_channel(const mcuflow_window_t *g,
                                          const mcuflow_dws16_reads_t *r, const int32_t *k,
                                          const mcuflow_half_t *plane, int16_t *out, int form,
                                          int narrow)
{
    const size_t down = (size_t)g->stride_h * r->columns;
    const size_t step = (size_t)g->out_pixel_step;
    const int32_t pairs = g->out_w / 2;
    /* Plane words between the rows the 3x3 forms read through three pointers. */
    const size_t next = form == MCUFLOW_DWS16_3X3 || form == MCUFLOW_DWS16_3X3_S2 ? r->columns
                                                                                   : 0;
    for (int32_t oy = 0; oy < g->out_h; ++oy) {
        const mcuflow_word_t *x = (const mcuflow_word_t *)plane + (size_t)oy * down;
        const mcuflow_word_t *x1 = x + next, *x2 = x1 + next;
        int16_t *o = out + (size_t)oy * (size_t)g->out_row_step;
        for (int32_t m = 0; m < pairs; ++m, o += 2 * step) {
            int32_t p, q;
            mcuflow_dws16_pair(r, form, &x, &x1, &x2, k, &p, &q);
            mcuflow_dws16_store2(p, q, k, o, step, narrow);
        }
        if (g->out_w & 1) {
            int32_t p, q;
            mcuflow_dws16_pair(r, form, &x, &x1, &x2, k, &p, &q);
            o[0] = mcuflow_dws16_out(p, k, narrow);
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
    mcuflow_dws16_reads_t r;
    r.columns = (size_t)d->plane_columns / 2;
    r.words = form == MCUFLOW_DWS16_S2 ? d->row_words : d->row_words / 2;
    r.skip = (int32_t)(4 * (r.columns - (size_t)r.words - (form == MCUFLOW_DWS16_S2)));
    r.weights = g->k_h * d->row_words;
    for (int32_t c = 0; c < g->in_c; ++c) {
        mcuflow_dws16_gather(g, d, image, c, plane);
        mcuflow_dws16_channel(g, &r, d->channels + (size_t)c * (size_t)d->record_words, plane,
                              out + c, form, narrow);
    }
}

/* One image by the routine of its form, requantised to the full int16 range or `narrow`. */
MCUFLOW_INLINE void mcuflow_dws16_forms(const mcuflow_window_t *g, const mcuflow_dsp_dw_s16_t *d,
                                        const int16_t *image, int16_t *out,
                                        mcuflow_half_t *plane, int narrow)
{
    switch (d->form) {
    case MCUFLOW_DWS16_3X3:
        mcuflow_dws16_image(g, d, image, out, plane, MCUFLOW_DWS16_3X3, narrow);
        break;
    case MCUFLOW_DWS16_3X3_S2:
        mcuflow_dws16_image(g, d, image, out, plane, MCUFLOW_DWS16_3X3_S2, narrow);
        break;
    case MCUFLOW_DWS16_S1:
        mcuflow_dws16_image(g, d, image, out, plane, MCUFLOW_DWS16_S1, narrow);
        break;
    default:
        mcuflow_dws16_image(g, d, image, out, plane, MCUFLOW_DWS16_S2, narrow);
        break;
    }
}

static void mcuflow_dws16_full(const mcuflow_window_t *g, const mcuflow_dsp_dw_s16_t *d,
                               const int16_t *image, int16_t *out, mcuflow_half_t *plane)
{
    mcuflow_dws16_forms(g, d, image, out, plane, 0);
}

static void mcuflow_dws16_narrow(const mcuflow_window_t *g, const mcuflow_dsp_dw_s16_t *d,
                                 const int16_t *image, int16_t *out, mcuflow_half_t *plane)
{
    mcuflow_dws16_forms(g, d, image, out, plane, 1);
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
