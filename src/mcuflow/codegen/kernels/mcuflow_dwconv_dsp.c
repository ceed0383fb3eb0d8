/* 3x3 DEPTHWISE_CONV_2D int8 kernel for the Arm DSP extension (TFLite bit-exact).
 *
 * Channel by channel (TinyEngine's order): the padded input plane of one channel is gathered as
 * int16, then two neighbouring outputs of a row take, per kernel row, one or two plane loads,
 * one SMLAD and one SMLABT / SMLATB each, with the kernel row's doubled taps as int16 pairs
 * (w0, w1) and (w1, w2). Doubling makes the requantisation's sign correction one add.
 */
#include "mcuflow_dsp.h"

/* How the depthwise kernels requantise: the one-multiply formula without or with its sign
 * correction (`ties`), or TFLite's arithmetic (`exact`). */
#define MCUFLOW_DW_PLAIN 0
#define MCUFLOW_DW_TIES 1
#define MCUFLOW_DW_EXACT 2

static inline int mcuflow_dw_mode(int32_t ties, int32_t exact)
{
    return exact ? MCUFLOW_DW_EXACT : (ties ? MCUFLOW_DW_TIES : MCUFLOW_DW_PLAIN);
}

/* int8 output of the doubled accumulator `acc2` with multiplier `m`, shift `sh` and the addend
 * words at k[8], k[9]: with `ties` (MCUFLOW_DW_TIES), adding acc2 >> 31 to the high word
 * subtracts 2^32 from t exactly when the accumulator is negative (the layers whose negative
 * term is not 0); MCUFLOW_DW_EXACT requantises acc2 / 2 with the exact words at k[6]. */
MCUFLOW_INLINE int8_t mcuflow_dw_out(int32_t acc2, const int32_t *k, int32_t m, int32_t sh,
                                     int ties)
{
    if (ties == MCUFLOW_DW_EXACT) {
        return (int8_t)mcuflow_dsp_exact(acc2 >> 1, k + 6);
    }
    uint32_t low, high;
    MCUFLOW_LOAD2_AT(k, low, high, 32);
    const uint64_t t = (((uint64_t)high << 32) | low) + (uint64_t)((int64_t)acc2 * m);
    const int32_t top = (int32_t)(uint32_t)(t >> 32) + (ties ? (acc2 >> 31) : 0);
    return (int8_t)mcuflow_ssat8(top >> sh);
}

/* Requantise and store the pair (p, q); q only when `both`. */
MCUFLOW_INLINE void mcuflow_dw_store(int32_t p, int32_t q, const int32_t *k, int8_t *out,
                                     size_t step, int both, int ties)
{
    uint32_t m, sh;
    MCUFLOW_LOAD2_AT(k, m, sh, 24);
    out[0] = mcuflow_dw_out(p, k, (int32_t)m, (int32_t)sh, ties);
    if (both) {
        out[step] = mcuflow_dw_out(q, k, (int32_t)m, (int32_t)sh, ties);
    }
}

/* The low halfwords of a and b as (low, high): one PKHBT (GCC builds it from masks and
 * shifts). */
static inline uint32_t mcuflow_dw_halves(uint32_t a, uint32_t b)
{
#if MCUFLOW_DSP_ASM
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return (a & 0xFFFFu) | (b << 16);
#endif
}

/* The int16 value of input byte `x` as a word whose low halfword is the value. */
static inline uint32_t mcuflow_dw_value(int8_t x)
{
    return (uint32_t)(int32_t)x;
}

/* The padding of the plane: every slot set to the input zero point, once per call (a channel's
 * gather then overwrites every slot inside, so the padding serves all channels). */
static void mcuflow_dw_pads(const mcuflow_dsp_dw_t *d, mcuflow_half_t *plane)
{
    const uint32_t pads = mcuflow_pair16(d->pad_value);
    mcuflow_word_t *word = (mcuflow_word_t *)plane;
    mcuflow_word_t *const end = word + (size_t)d->plane_rows * (size_t)d->plane_columns / 2;
    while (word < end) {
        *word++ = pads;
    }
}

/* `values` input bytes (`step` apart from `src`) as int16 at `dst`, the first alone when `odd`
 * (dst not word-aligned), then two per word store, four per iteration. */
MCUFLOW_INLINE void mcuflow_dw_line(const int8_t *src, size_t step, mcuflow_half_t *dst,
                                    int32_t values, int odd)
{
    if (odd && values > 0) {
        *dst++ = (uint16_t)(int16_t)*src;
        src += step;
        --values;
    }
    const size_t twice = 2 * step;
    const int8_t *second = src + step;
    mcuflow_word_t *word = (mcuflow_word_t *)dst;
    for (; values >= 4; values -= 4, src += 2 * twice, second += 2 * twice, word += 2) {
        word[0] = mcuflow_dw_halves(mcuflow_dw_value(src[0]), mcuflow_dw_value(second[0]));
        word[1] = mcuflow_dw_halves(mcuflow_dw_value(src[twice]),
                                    mcuflow_dw_value(second[twice]));
    }
    if (values >= 2) {
        *word++ = mcuflow_dw_halves(mcuflow_dw_value(src[0]), mcuflow_dw_value(second[0]));
        src += twice;
        values -= 2;
    }
    if (values > 0) {
        *(mcuflow_half_t *)word = (uint16_t)(int16_t)*src;
    }
}

/* The inside of the padded plane of channel `c` of one image (its padding is already set, see
 * mcuflow_dw_pads): one input line per row (rows are word-aligned: plane_columns is even). */
static void mcuflow_dw_plane(const mcuflow_dsp_dw_t *d, const int8_t *image, int32_t c,
                             mcuflow_half_t *plane)
{
    const int32_t room = d->plane_rows - d->pad_across;
    const int32_t lines = d->in_across < room ? d->in_across : room;
    const size_t columns = (size_t)d->plane_columns;
    const size_t step = (size_t)d->in_along_step, line_step = (size_t)d->in_across_step;
    const int odd = d->pad_along & 1;
    const int8_t *src = image + (size_t)c;
    mcuflow_half_t *dst = plane + (size_t)d->pad_across * columns + (size_t)d->pad_along;
    for (int32_t y = 0; y < lines; ++y, src += line_step, dst += columns) {
        mcuflow_dw_line(src, step, dst, d->in_along, odd);
    }
}

/* Kernel row `OFFSET` / 8 of an output pair, column stride 1: plane words (x0, x1), (x2, x3). */
#define MCUFLOW_DW_ROW_S1(r, OFFSET)                                                            \
    do {                                                                                        \
        uint32_t a, b, t0, t1;                                                                  \
        MCUFLOW_LOAD2_STEP(r, a, b, 4);                                                         \
        MCUFLOW_LOAD2_AT(k, t0, t1, OFFSET);                                                    \
        p = mcuflow_smlad(a, t0, p);                                                            \
        p = mcuflow_smlabt(b, t1, p);                                                           \
        q = mcuflow_smlatb(a, t0, q);                                                           \
        q = mcuflow_smlad(b, t1, q);                                                            \
    } while (0)

/* Kernel row `OFFSET` / 8 of an output pair, column stride 2: (x0, x1), (x2, x3), (x4, x5). */
#define MCUFLOW_DW_ROW_S2(r, OFFSET)                                                            \
    do {                                                                                        \
        uint32_t a, b, t0, t1;                                                                  \
        MCUFLOW_LOAD2_STEP(r, a, b, 8);                                                         \
        MCUFLOW_LOAD2_AT(k, t0, t1, OFFSET);                                                    \
        p = mcuflow_smlad(a, t0, p);                                                            \
        p = mcuflow_smlabt(b, t1, p);                                                           \
        q = mcuflow_smlad(b, t0, q);                                                            \
        q = mcuflow_smlabt((r)[0], t1, q);                                                      \
    } while (0)

/* One output row, column stride 1: the pair at columns (ox, ox + 1) reads plane words
 * ox / 2 and ox / 2 + 1 of each kernel row. */
MCUFLOW_INLINE void mcuflow_dw_row_s1(const mcuflow_word_t *r0, size_t row_words,
                                      const int32_t *k, int8_t *out, size_t step, int32_t out_w,
                                      int ties)
{
    const mcuflow_word_t *r1 = r0 + row_words;
    const mcuflow_word_t *r2 = r1 + row_words;
    for (int32_t ox = 0; ox < out_w; ox += 2, out += 2 * step) {
        uint32_t p_bias, q_bias;
        MCUFLOW_LOAD2_AT(k, p_bias, q_bias, 40);
        int32_t p = (int32_t)p_bias, q = (int32_t)q_bias;
        MCUFLOW_DW_ROW_S1(r0, 0);
        MCUFLOW_DW_ROW_S1(r1, 8);
        MCUFLOW_DW_ROW_S1(r2, 16);
        mcuflow_dw_store(p, q, k, out, step, ox + 1 < out_w, ties);
    }
}

/* One output row, column stride 2: the pair reads plane words ox, ox + 1 and ox + 2. */
MCUFLOW_INLINE void mcuflow_dw_row_s2(const mcuflow_word_t *r0, size_t row_words,
                                      const int32_t *k, int8_t *out, size_t step, int32_t out_w,
                                      int ties)
{
    const mcuflow_word_t *r1 = r0 + row_words;
    const mcuflow_word_t *r2 = r1 + row_words;
    for (int32_t ox = 0; ox < out_w; ox += 2, out += 2 * step) {
        uint32_t p_bias, q_bias;
        MCUFLOW_LOAD2_AT(k, p_bias, q_bias, 40);
        int32_t p = (int32_t)p_bias, q = (int32_t)q_bias;
        MCUFLOW_DW_ROW_S2(r0, 0);
        MCUFLOW_DW_ROW_S2(r1, 8);
        MCUFLOW_DW_ROW_S2(r2, 16);
        mcuflow_dw_store(p, q, k, out, step, ox + 1 < out_w, ties);
    }
}

/* Output channel `c` of one image (written to `out`, strided) from its gathered plane. */
MCUFLOW_INLINE void mcuflow_dw_lines(const mcuflow_dsp_dw_t *d, const mcuflow_word_t *plane,
                                     const int32_t *k, int8_t *out, int ties)
{
    const size_t row_words = (size_t)d->plane_columns / 2;
    const size_t rows_step = (size_t)d->stride_across * row_words;
    const size_t step = (size_t)d->out_along_step;
    const size_t out_line = (size_t)d->out_across_step;
    const int32_t lines = d->out_across, along = d->out_along;
    if (d->stride_along == 1) {
        for (int32_t oy = 0; oy < lines; ++oy, plane += rows_step, out += out_line) {
            mcuflow_dw_row_s1(plane, row_words, k, out, step, along, ties);
        }
    } else {
        for (int32_t oy = 0; oy < lines; ++oy, plane += rows_step, out += out_line) {
            mcuflow_dw_row_s2(plane, row_words, k, out, step, along, ties);
        }
    }
}

static void mcuflow_dw_channel(const mcuflow_dsp_dw_t *d, const mcuflow_word_t *plane,
                               const int32_t *k, int8_t *out)
{
    const int mode = mcuflow_dw_mode(d->ties, d->exact);
    if (mode == MCUFLOW_DW_EXACT) {
        mcuflow_dw_lines(d, plane, k, out, MCUFLOW_DW_EXACT);
    } else if (mode == MCUFLOW_DW_TIES) {
        mcuflow_dw_lines(d, plane, k, out, MCUFLOW_DW_TIES);
    } else {
        mcuflow_dw_lines(d, plane, k, out, MCUFLOW_DW_PLAIN);
    }
}

/* Clamp every output of one image to a fused activation narrower than int8. */
static void mcuflow_dw_clamp(const mcuflow_dsp_dw_t *d, int8_t *out)
{
    for (int32_t line = 0; line < d->out_across; ++line) {
        for (int32_t i = 0; i < d->out_along; ++i) {
            int8_t *pixel = out + (size_t)line * (size_t)d->out_across_step +
                            (size_t)i * (size_t)d->out_along_step;
            mcuflow_clamp_bytes(pixel, d->depth, d->act_min, d->act_max);
        }
    }
}

void mcuflow_dwconv_3x3_dsp_s8(const mcuflow_dsp_dw_t *d, const int8_t *input, int8_t *output,
                               mcuflow_half_t *plane)
{
    const int narrow = d->act_min != -128 || d->act_max != 127;
    for (int32_t b = 0; b < d->batches; ++b) {
        const int8_t *image = input + (size_t)b * (size_t)d->in_batch_step;
        int8_t *out = output + (size_t)b * (size_t)d->out_batch_step;
        mcuflow_dw_pads(d, plane);
        for (int32_t c = 0; c < d->depth; ++c) {
            mcuflow_dw_plane(d, image, c, plane);
            mcuflow_dw_channel(d, (const mcuflow_word_t *)plane,
                               d->channels + (size_t)c * MCUFLOW_DSP_DW_WORDS, out + c);
        }
        if (narrow) {
            mcuflow_dw_clamp(d, out);
        }
    }
}

/* ---- pixel by pixel (runs with OVERLAP, needs no scratch) ------------------------------- */

/* The requantisation words of a group's record (mcuflow_dsp_dw_pixels_t). */
static inline const int32_t *mcuflow_dwp_rq(const int32_t *record, int32_t taps)
{
    return record + 4 + 2 * (size_t)taps;
}

/* The taps of a group's record. */
static inline const mcuflow_word_t *mcuflow_dwp_taps(const int32_t *record)
{
    return (const mcuflow_word_t *)(record + 4);
}

/* int8 output of the doubled accumulator `acc2` with the channel's words `rq` (`ties`: one of
 * MCUFLOW_DW_*, see mcuflow_dw_out). */
MCUFLOW_INLINE int8_t mcuflow_dwp_out(int32_t acc2, const int32_t *rq, int ties)
{
    if (ties == MCUFLOW_DW_EXACT) {
        return (int8_t)mcuflow_dsp_exact(acc2 >> 1, rq);
    }
    const uint64_t t = (((uint64_t)(uint32_t)rq[3] << 32) | (uint32_t)rq[2]) +
                       (uint64_t)((int64_t)acc2 * rq[0]);
    const int32_t top = (int32_t)(uint32_t)(t >> 32) + (ties ? (acc2 >> 31) : 0);
    return (int8_t)mcuflow_ssat8(top >> rq[1]);
}

/* Four channels in MCUFLOW_DW_EXACT (one copy, called from the inner loops). */
static void mcuflow_dwp_exact4(const int32_t *acc, const int32_t *rq, int8_t *out)
{
    for (int32_t j = 0; j < 4; ++j, rq += MCUFLOW_DSP_RQ_WORDS) {
        out[j] = (int8_t)mcuflow_dsp_exact(acc[j] >> 1, rq);
    }
}

/* The outputs of four channels (doubled accumulators, consecutive requantisation words),
 * `ties` MCUFLOW_DW_PLAIN or MCUFLOW_DW_TIES (MCUFLOW_DW_EXACT: mcuflow_dwp_exact4). In the
 * assembly t0, t1 hold the 64-bit sum, t2 the multiplier, t3 the shift; `p` points at the
 * requantisation words. */
#if MCUFLOW_DSP_ASM
#define MCUFLOW_DWP_OUT_ASM(ACC, R, O, TIES)                                                    \
    "ldrd %[t0], %[t1], [%[p], #" #R " + 8]\n\t"                                               \
    "ldrd %[t2], %[t3], [%[p], #" #R "]\n\t"                                                    \
    "smlal %[t0], %[t1], %[" ACC "], %[t2]\n\t" TIES                                            \
    "asr %[t1], %[t1], %[t3]\n\t"                                                               \
    "ssat %[t1], #8, %[t1]\n\t"                                                                 \
    "strb %[t1], [%[out], #" #O "]\n\t"
#define MCUFLOW_DWP_TIES_ASM(ACC) "add %[t1], %[t1], %[" ACC "], asr #31\n\t"

MCUFLOW_INLINE void mcuflow_dwp_out4(const int32_t *acc, const int32_t *rq, int8_t *out,
                                     int ties)
{
    uint32_t t0, t1, t2, t3;
    if (ties) {
        __asm__ volatile(
            MCUFLOW_DWP_OUT_ASM("a0", 0, 0, MCUFLOW_DWP_TIES_ASM("a0"))
                MCUFLOW_DWP_OUT_ASM("a1", 16, 1, MCUFLOW_DWP_TIES_ASM("a1"))
                    MCUFLOW_DWP_OUT_ASM("a2", 32, 2, MCUFLOW_DWP_TIES_ASM("a2"))
                        MCUFLOW_DWP_OUT_ASM("a3", 48, 3, MCUFLOW_DWP_TIES_ASM("a3"))
            : [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3)
            : [a0] "r"(acc[0]), [a1] "r"(acc[1]), [a2] "r"(acc[2]), [a3] "r"(acc[3]),
              [p] "r"(rq), [out] "r"(out)
            : "memory");
    } else {
        __asm__ volatile(MCUFLOW_DWP_OUT_ASM("a0", 0, 0, "") MCUFLOW_DWP_OUT_ASM("a1", 16, 1, "")
                             MCUFLOW_DWP_OUT_ASM("a2", 32, 2, "")
                                 MCUFLOW_DWP_OUT_ASM("a3", 48, 3, "")
                         : [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3)
                         : [a0] "r"(acc[0]), [a1] "r"(acc[1]), [a2] "r"(acc[2]),
                           [a3] "r"(acc[3]), [p] "r"(rq), [out] "r"(out)
                         : "memory");
    }
}
#else
MCUFLOW_INLINE void mcuflow_dwp_out4(const int32_t *acc, const int32_t *rq, int8_t *out,
                                     int ties)
{
    for (int32_t j = 0; j < 4; ++j) {
        out[j] = mcuflow_dwp_out(acc[j], rq + (size_t)j * MCUFLOW_DSP_RQ_WORDS, ties);
    }
}
#endif

/* The outputs of a group's four channels in `mode` (`exact`: a constant of the callers). */
MCUFLOW_INLINE void mcuflow_dwp_finish(const int32_t *acc, const int32_t *rq, int8_t *out,
                                       int mode, int exact)
{
    if (exact) {
        mcuflow_dwp_exact4(acc, rq, out);
    } else {
        mcuflow_dwp_out4(acc, rq, out, mode);
    }
}

/* Taps [lo, hi) of a window starting at `start` (stride `dilation`) inside [0, size). */
static void mcuflow_dwp_valid(int32_t start, int32_t dilation, int32_t kernel, int32_t size,
                              int32_t *lo, int32_t *hi)
{
    const int32_t first = start < 0 ? (-start + dilation - 1) / dilation : 0;
    const int32_t room = size - start;
    const int32_t last = room > 0 ? (room + dilation - 1) / dilation : 0;
    *lo = first;
    *hi = last < kernel ? last : kernel;
}

/* The window of one output pixel: its first input element and valid tap ranges. */
typedef struct {
    const int8_t *first; /* input pixel of tap (ky_lo, kx_lo), channel 0 */
    int32_t ky_lo, ky_hi, kx_lo, kx_hi;
} mcuflow_dwp_window_t;

/* One tap of channels c .. c + 3: input word at `src`, then the tap's weight pairs from `w`
 * (advanced). */
#define MCUFLOW_DWP_TAP(src, w)                                                                 \
    do {                                                                                        \
        const uint32_t x_ = mcuflow_read_u32(src);                                              \
        uint32_t w0_, w1_;                                                                      \
        MCUFLOW_LOAD2_STEP(w, w0_, w1_, 8);                                                     \
        const uint32_t even_ = mcuflow_sxtab16(offset, x_);                                     \
        const uint32_t odd_ = mcuflow_sxtab16_ror8(offset, x_);                                 \
        a0 = mcuflow_smlabb(even_, w0_, a0);                                                    \
        a2 = mcuflow_smlatt(even_, w0_, a2);                                                    \
        a1 = mcuflow_smlabb(odd_, w1_, a1);                                                     \
        a3 = mcuflow_smlatt(odd_, w1_, a3);                                                     \
    } while (0)

/* A run of output pixels of one row whose 3x3 windows lie inside the input, every full group
 * of 4 channels of each (mcuflow_dwp_run). */
typedef struct {
    int32_t taps[9];         /* byte offset of tap t (1 .. 8) from tap 0's input word + 4 */
    const int32_t *records;  /* the first group's record */
    const int32_t *last;     /* the last full group's record */
    int32_t base_step;       /* input bytes from the word after a pixel's last group to the
                                next pixel's tap 0 */
    int32_t out_step;        /* output bytes from after a pixel's last group to the next pixel */
    const int8_t *out_end;   /* the output pixel after the run */
} mcuflow_dwp_run_t;

#if MCUFLOW_DSP_ASM
/* Tap T (1 to 8) of a whole 3x3 window in assembly: offset load, unaligned input load, weight
 * pairs, two SXTAB16 and four 16-bit MACs (t0: the input word, then its even bytes; t1: its
 * odd bytes; t2, t3: the weight pairs from `p`, advanced). */
#define MCUFLOW_DWP_TAP_ASM(T)                                                                  \
    "ldr %[t0], [%[offsets], #" #T " * 4]\n\t"                                                  \
    "ldr %[t0], [%[base], %[t0]]\n\t" MCUFLOW_DWP_MACS_ASM

#define MCUFLOW_DWP_MACS_ASM                                                                    \
    "ldrd %[t2], %[t3], [%[p]], #8\n\t"                                                        \
    "sxtab16 %[t1], %[offset], %[t0], ror #8\n\t"                                               \
    "sxtab16 %[t0], %[offset], %[t0]\n\t"                                                       \
    "smlabb %[a0], %[t0], %[t2], %[a0]\n\t"                                                     \
    "smlatt %[a2], %[t0], %[t2], %[a2]\n\t"                                                     \
    "smlabb %[a1], %[t1], %[t3], %[a1]\n\t"                                                     \
    "smlatt %[a3], %[t1], %[t3], %[a3]\n\t"

/* The nine taps of a 3x3 window: tap 0 at `base` (then advanced 4), tap t at that + offsets[t]
 * (mcuflow_dwp_run_t's taps, at `offsets`). */
#define MCUFLOW_DWP_NINE_ASM                                                                    \
    "ldr %[t0], [%[base]], #4\n\t" MCUFLOW_DWP_MACS_ASM MCUFLOW_DWP_TAP_ASM(1)                  \
        MCUFLOW_DWP_TAP_ASM(2) MCUFLOW_DWP_TAP_ASM(3) MCUFLOW_DWP_TAP_ASM(4)                    \
            MCUFLOW_DWP_TAP_ASM(5) MCUFLOW_DWP_TAP_ASM(6) MCUFLOW_DWP_TAP_ASM(7)                \
                MCUFLOW_DWP_TAP_ASM(8)

/* The doubled accumulators `acc` of channels c .. c + 3 of a whole 3x3 window: the biases of
 * the group's `record` (one LDM into r0 .. r3), then its nine taps (tap 0 at `base`, the others
 * at the offsets `run_taps` of mcuflow_dwp_run_t). */
MCUFLOW_INLINE void mcuflow_dwp_nine(const int8_t *base, const int32_t *run_taps,
                                     const int32_t *record, uint32_t offset, int32_t *acc)
{
    register int32_t a0 __asm__("r0");
    register int32_t a1 __asm__("r1");
    register int32_t a2 __asm__("r2");
    register int32_t a3 __asm__("r3");
    uint32_t t0, t1, t2, t3;
    __asm__("ldm %[p]!, {%[a0], %[a1], %[a2], %[a3]}\n\t" MCUFLOW_DWP_NINE_ASM
            : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [t0] "=&r"(t0),
              [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3), [p] "+r"(record), [base] "+r"(base)
            : [offsets] "r"(run_taps), [offset] "r"(offset)
            : "memory");
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* The last channel of a group in the run's assembly: its words are the first of the four
 * (`p` then advances to the next record) and its byte the first (`out` advances 4). */
#define MCUFLOW_DWP_LAST_ASM(TIES)                                                              \
    "ldrd %[t0], %[t1], [%[p], #8]\n\t"                                                         \
    "ldrd %[t2], %[t3], [%[p]], #64\n\t"                                                       \
    "smlal %[t0], %[t1], %[a0], %[t2]\n\t" TIES                                                 \
    "asr %[t1], %[t1], %[t3]\n\t"                                                               \
    "ssat %[t1], #8, %[t1]\n\t"                                                                 \
    "strb %[t1], [%[out]], #4\n\t"

/* One pixel's groups, then the next pixel, until `out` reaches run->out_end. Per group: one
 * LDM of the 4 biases, the nine taps, the four outputs from the words that follow, the record
 * pointer ending at the next record. The group loop's test (is this record the last?) is made
 * first: no instruction of the body sets the flags. `offsets` is the run (its first words are
 * the taps' offsets), a0 .. a3 are r0 .. r3 in the order of the LDM. */
#define MCUFLOW_DWP_RUN_ASM(TIES)                                                               \
    "1:\n\t"                                                                                    \
    "ldr %[p], [%[offsets], %[records]]\n\t"                                                   \
    "2:\n\t"                                                                                    \
    "ldr %[t0], [%[offsets], %[last]]\n\t"                                                     \
    "cmp %[p], %[t0]\n\t"                                                                       \
    "ldm %[p]!, {%[a0], %[a1], %[a2], %[a3]}\n\t" MCUFLOW_DWP_NINE_ASM                         \
    MCUFLOW_DWP_OUT_ASM("a3", 48, 3, TIES("a3")) MCUFLOW_DWP_OUT_ASM("a2", 32, 2, TIES("a2"))   \
    MCUFLOW_DWP_OUT_ASM("a1", 16, 1, TIES("a1")) MCUFLOW_DWP_LAST_ASM(TIES("a0"))              \
    "bne 2b\n\t"                                                                                \
    "ldr %[t0], [%[offsets], %[base_step]]\n\t"                                                \
    "add %[base], %[base], %[t0]\n\t"                                                           \
    "ldr %[t0], [%[offsets], %[out_step]]\n\t"                                                 \
    "add %[out], %[out], %[t0]\n\t"                                                             \
    "ldr %[t0], [%[offsets], %[out_end]]\n\t"                                                  \
    "cmp %[out], %[t0]\n\t"                                                                     \
    "bne 1b\n\t"
#define MCUFLOW_DWP_NO_TIES_ASM(ACC) ""

static void mcuflow_dwp_run(const mcuflow_dwp_run_t *run, uint32_t offset, const int8_t *base,
                            int8_t *out, int ties)
{
    register int32_t a0 __asm__("r0");
    register int32_t a1 __asm__("r1");
    register int32_t a2 __asm__("r2");
    register int32_t a3 __asm__("r3");
    uint32_t t0, t1, t2, t3;
    const int32_t *p;
#define MCUFLOW_DWP_RUN_OPERANDS                                                                \
    : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [t0] "=&r"(t0),           \
      [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3), [p] "=&r"(p), [base] "+r"(base),          \
      [out] "+r"(out)                                                                           \
    : [offsets] "r"(run), [offset] "r"(offset),                                                 \
      [records] "i"(offsetof(mcuflow_dwp_run_t, records)),                                      \
      [last] "i"(offsetof(mcuflow_dwp_run_t, last)),                                            \
      [base_step] "i"(offsetof(mcuflow_dwp_run_t, base_step)),                                  \
      [out_step] "i"(offsetof(mcuflow_dwp_run_t, out_step)),                                    \
      [out_end] "i"(offsetof(mcuflow_dwp_run_t, out_end))                                       \
    : "cc", "memory"
    if (ties) {
        __asm__ volatile(MCUFLOW_DWP_RUN_ASM(MCUFLOW_DWP_TIES_ASM) MCUFLOW_DWP_RUN_OPERANDS);
    } else {
        __asm__ volatile(MCUFLOW_DWP_RUN_ASM(MCUFLOW_DWP_NO_TIES_ASM) MCUFLOW_DWP_RUN_OPERANDS);
    }
#undef MCUFLOW_DWP_RUN_OPERANDS
}
#else
static void mcuflow_dwp_run(const mcuflow_dwp_run_t *run, uint32_t offset, const int8_t *base,
                            int8_t *out, int ties)
{
    do {
        const int32_t *record = run->records, *group;
        do {
            group = record;
            int32_t a0 = record[0], a1 = record[1], a2 = record[2], a3 = record[3];
            const mcuflow_word_t *w = mcuflow_dwp_taps(record);
            MCUFLOW_DWP_TAP(base, w);
            base += 4;
            for (int32_t t = 1; t < 9; ++t) {
                MCUFLOW_DWP_TAP(base + run->taps[t], w);
            }
            const int32_t acc[4] = {a0, a1, a2, a3};
            mcuflow_dwp_out4(acc, mcuflow_dwp_rq(record, 9), out, ties);
            record += MCUFLOW_DSP_DWP_WORDS(9);
            out += 4;
        } while (group != run->last);
        base += run->base_step;
        out += run->out_step;
    } while (out != run->out_end);
}
#endif

/* The run of the layer's 3x3 windows (`offsets`: the byte offset of every tap), its out_end
 * left for each call; only for layers of at least 4 channels. */
static void mcuflow_dwp_run_init(const mcuflow_window_t *g, const mcuflow_dsp_dw_pixels_t *d,
                                 const int32_t *offsets, mcuflow_dwp_run_t *run)
{
    const int32_t full = g->in_c & ~3; /* the channels of the full groups */
    run->taps[0] = 0;
    for (int32_t t = 1; t < 9; ++t) {
        run->taps[t] = offsets[t] - 4;
    }
    run->records = d->groups;
    run->last = d->groups + (size_t)(full / 4 - 1) * MCUFLOW_DSP_DWP_WORDS(9);
    run->base_step = g->stride_w * g->in_c - full;
    run->out_step = g->out_pixel_step - full;
    run->out_end = NULL;
}

#if MCUFLOW_DSP_ASM
/* The full groups of one output pixel in MCUFLOW_DW_EXACT: tap 0 of group 0 at `base`, the
 * offsets of the other taps at `run_taps` (mcuflow_dwp_run_t's). */
static void mcuflow_dwp_exact_groups(const int32_t *record, int32_t full, const int32_t *run_taps,
                                     const int8_t *base, uint32_t offset, int8_t *out)
{
    for (int32_t c = 0; c < full; c += 4, record += MCUFLOW_DSP_DWP_WORDS(9)) {
        int32_t acc[4];
        mcuflow_dwp_nine(base + c, run_taps, record, offset, acc);
        mcuflow_dwp_exact4(acc, mcuflow_dwp_rq(record, 9), out + c);
    }
}
#endif

/* The full groups (`full` channels) of one output pixel whose tap 0 is at `base`, through
 * `run` (its out_end set here): the run's assembly (or its C twin, exact in every mode), in
 * MCUFLOW_DW_EXACT the nine taps' assembly group by group. */
MCUFLOW_INLINE void mcuflow_dwp_pixel9(mcuflow_dwp_run_t *run, int32_t full, const int8_t *base,
                                       int8_t *out, uint32_t offset, int mode)
{
#if MCUFLOW_DSP_ASM
    if (mode == MCUFLOW_DW_EXACT) {
        mcuflow_dwp_exact_groups(run->records, full, run->taps, base, offset, out);
        return;
    }
#endif
    run->out_end = out + full + run->out_step;
    mcuflow_dwp_run(run, offset, base, out, mode);
}

/* Channels c .. c + 3 of one output pixel whose window (not 3x3) lies inside the input:
 * `base` is its first tap at channel c, `offsets` the byte offset of every tap, `w` the
 * group's taps. */
MCUFLOW_INLINE void mcuflow_dwp_inside(const int8_t *base, const int32_t *offsets, int32_t taps,
                                       const mcuflow_word_t *w, uint32_t offset, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (int32_t t = 0; t < taps; ++t) {
        MCUFLOW_DWP_TAP(base + offsets[t], w);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* Channels c .. c + 3 of one output pixel at the input's edge: the valid taps only. */
static void mcuflow_dwp_edge(const mcuflow_window_t *g, const mcuflow_dwp_window_t *v,
                             const mcuflow_word_t *group, uint32_t offset, int32_t c,
                             int32_t *acc)
{
    const size_t row = (size_t)g->dilation_h * (size_t)g->in_w * (size_t)g->in_c;
    const size_t column = (size_t)g->dilation_w * (size_t)g->in_c;
    const int8_t *line = v->first + c;
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (int32_t ky = v->ky_lo; ky < v->ky_hi; ++ky, line += row) {
        const int8_t *src = line;
        const mcuflow_word_t *w = group + 2 * (size_t)(ky * g->k_w + v->kx_lo);
        for (int32_t kx = v->kx_lo; kx < v->kx_hi; ++kx, src += column) {
            MCUFLOW_DWP_TAP(src, w);
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* Weight of channel c (of a group's record) at tap t, doubled. */
static inline int32_t mcuflow_dwp_weight(const int32_t *record, int32_t t, int32_t c)
{
    const uint32_t pair = (uint32_t)record[4 + 2 * (size_t)t + (size_t)(c & 1)];
    return (int32_t)(int16_t)(uint16_t)((c & 2) != 0 ? pair >> 16 : pair & 0xFFFFu);
}

/* One of the last in_c % 4 channels of one output pixel (doubled accumulator), from the record
 * of its group. */
static int32_t mcuflow_dwp_tail(const mcuflow_window_t *g, const mcuflow_dwp_window_t *v,
                                const int32_t *record, int32_t c)
{
    const size_t row = (size_t)g->dilation_h * (size_t)g->in_w * (size_t)g->in_c;
    const size_t column = (size_t)g->dilation_w * (size_t)g->in_c;
    const int8_t *line = v->first + c;
    int32_t acc = record[c & 3];
    for (int32_t ky = v->ky_lo; ky < v->ky_hi; ++ky, line += row) {
        const int8_t *src = line;
        for (int32_t kx = v->kx_lo; kx < v->kx_hi; ++kx, src += column) {
            acc += mcuflow_dwp_weight(record, ky * g->k_w + kx, c) * (*src + g->input_offset);
        }
    }
    return acc;
}

/* The input pixel of every tap (row-major) of the window `v` (mcuflow_dwp_locate): taps
 * outside the input point at `pads`, the zero point in every channel, so that they add
 * (zero point + input offset) * w = 0, exactly what skipping them adds. */
static void mcuflow_dwp_tap_pointers(const mcuflow_window_t *g, const mcuflow_dwp_window_t *v,
                                     const int8_t *pads, const int8_t **taps)
{
    const size_t row = (size_t)g->dilation_h * (size_t)g->in_w * (size_t)g->in_c;
    const size_t column = (size_t)g->dilation_w * (size_t)g->in_c;
    for (int32_t t = 0; t < g->k_h * g->k_w; ++t) {
        taps[t] = pads;
    }
    const int8_t *line = v->first;
    for (int32_t ky = v->ky_lo; ky < v->ky_hi; ++ky, line += row) {
        const int8_t **tap = taps + ky * g->k_w;
        const int8_t *src = line;
        for (int32_t kx = v->kx_lo; kx < v->kx_hi; ++kx, src += column) {
            tap[kx] = src;
        }
    }
}

#if MCUFLOW_DSP_ASM
/* Every full group of one output pixel from its 3x3 tap pointers (mcuflow_dwp_tap_pointers),
 * in the assembly of the inside pixels through `edge` (a copy of the layer's run): tap t's
 * offset is its pointer's distance from tap 0's (a tap lies in the input or in `pads`; the
 * assembly adds the distance as a 32-bit integer, which C could not). */
MCUFLOW_INLINE void mcuflow_dwp_edge_groups(mcuflow_dwp_run_t *edge, int32_t full,
                                            const int8_t *const *taps, int8_t *out,
                                            uint32_t offset, int mode)
{
    const uint32_t after = (uint32_t)taps[0] + 4;
    for (int32_t t = 1; t < 9; ++t) {
        edge->taps[t] = (int32_t)((uint32_t)taps[t] - after);
    }
    mcuflow_dwp_pixel9(edge, full, taps[0], out, offset, mode);
}
#else
/* Channels c .. c + 3 of one output pixel from its tap pointers (mcuflow_dwp_tap_pointers). */
MCUFLOW_INLINE void mcuflow_dwp_at(const int8_t *const *taps, int32_t count, int32_t c,
                                   const mcuflow_word_t *w, uint32_t offset, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (int32_t t = 0; t < count; ++t) {
        MCUFLOW_DWP_TAP(taps[t] + c, w);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}
#endif

/* One of the last in_c % 4 channels of one output pixel from its tap pointers. */
static int32_t mcuflow_dwp_tail_at(const mcuflow_window_t *g, const int8_t *const *taps,
                                   const int32_t *record, int32_t c)
{
    const int32_t count = g->k_h * g->k_w;
    int32_t acc = record[c & 3];
    for (int32_t t = 0; t < count; ++t) {
        acc += mcuflow_dwp_weight(record, t, c) * (taps[t][c] + g->input_offset);
    }
    return acc;
}

/* Every channel of one output pixel whose 3x3 window crosses the input's edge, from its tap
 * pointers (`edge`: see mcuflow_dwp_edge_groups; `exact`: a constant of the two instances). */
MCUFLOW_INLINE void mcuflow_dwp_edge_body(const mcuflow_window_t *g,
                                          const mcuflow_dsp_dw_pixels_t *d,
                                          mcuflow_dwp_run_t *edge,
                                          const int8_t *const *taps, int8_t *out, int exact)
{
    const int32_t in_c = g->in_c, count = g->k_h * g->k_w, full = in_c & ~3;
    const size_t words = MCUFLOW_DSP_DWP_WORDS(count);
    const uint32_t offset = mcuflow_pair16(g->input_offset);
    const int32_t *record = d->groups + (size_t)(full / 4) * words;
    const int mode = exact ? MCUFLOW_DW_EXACT : mcuflow_dw_mode(d->ties, 0);
#if MCUFLOW_DSP_ASM
    if (full > 0) {
        mcuflow_dwp_edge_groups(edge, full, taps, out, offset, mode);
    }
#else
    (void)edge;
    const int32_t *group = d->groups;
    for (int32_t c = 0; c < full; c += 4, group += words) {
        int32_t acc[4] = {group[0], group[1], group[2], group[3]};
        mcuflow_dwp_at(taps, count, c, mcuflow_dwp_taps(group), offset, acc);
        mcuflow_dwp_finish(acc, mcuflow_dwp_rq(group, count), out + c, mode, exact);
    }
#endif
    for (int32_t c = full; c < in_c; ++c) {
        out[c] = mcuflow_dwp_out(mcuflow_dwp_tail_at(g, taps, record, c),
                                 mcuflow_dwp_rq(record, count) + (c & 3) * MCUFLOW_DSP_RQ_WORDS,
                                 mode);
    }
}

static void mcuflow_dwp_edge_run(const mcuflow_window_t *g, const mcuflow_dsp_dw_pixels_t *d,
                                 mcuflow_dwp_run_t *edge, const int8_t *const *taps,
                                 int8_t *out)
{
    if (d->exact) {
        mcuflow_dwp_edge_body(g, d, edge, taps, out, 1);
    } else {
        mcuflow_dwp_edge_body(g, d, edge, taps, out, 0);
    }
}

/* Byte offsets of the taps of a window inside the input, row-major, from its first tap. */
#define MCUFLOW_DWP_MAX_TAPS 25

/* The last in_c % 4 channels (from `c`) of one output pixel, window `v`, group record
 * `record`. */
static void mcuflow_dwp_tails(const mcuflow_window_t *g, const mcuflow_dwp_window_t *v,
                              const int32_t *record, int32_t c, int8_t *out, int mode)
{
    const int32_t *rq = mcuflow_dwp_rq(record, g->k_h * g->k_w);
    for (; c < g->in_c; ++c) {
        out[c] = mcuflow_dwp_out(mcuflow_dwp_tail(g, v, record, c),
                                 rq + (c & 3) * MCUFLOW_DSP_RQ_WORDS, mode);
    }
}

/* Every channel of one output pixel at the input's edge: the valid taps only (`exact`: a
 * constant of the two instances). */
MCUFLOW_INLINE void mcuflow_dwp_pixel_body(const mcuflow_window_t *g,
                                           const mcuflow_dsp_dw_pixels_t *d,
                                           const mcuflow_dwp_window_t *v, int8_t *out, int exact)
{
    const int32_t in_c = g->in_c, taps = g->k_h * g->k_w;
    const size_t words = MCUFLOW_DSP_DWP_WORDS(taps);
    const uint32_t offset = mcuflow_pair16(g->input_offset);
    const int32_t *record = d->groups;
    const int mode = exact ? MCUFLOW_DW_EXACT : mcuflow_dw_mode(d->ties, 0);
    int32_t c = 0;
    for (; c + 4 <= in_c; c += 4, record += words) {
        int32_t acc[4] = {record[0], record[1], record[2], record[3]};
        mcuflow_dwp_edge(g, v, mcuflow_dwp_taps(record), offset, c, acc);
        mcuflow_dwp_finish(acc, mcuflow_dwp_rq(record, taps), out + c, mode, exact);
    }
    mcuflow_dwp_tails(g, v, record, c, out, mode);
}

static void mcuflow_dwp_pixel(const mcuflow_window_t *g, const mcuflow_dsp_dw_pixels_t *d,
                              const mcuflow_dwp_window_t *v, int8_t *out)
{
    if (d->exact) {
        mcuflow_dwp_pixel_body(g, d, v, out, 1);
    } else {
        mcuflow_dwp_pixel_body(g, d, v, out, 0);
    }
}

/* Every channel of the output pixels [ox_lo, ox_hi) of a row whose windows lie inside the
 * input: `base` is the first tap of pixel ox_lo, `step` the bytes between neighbours' taps.
 * With 3x3 windows the full groups go through `run` (mcuflow_dwp_pixel9; outside
 * MCUFLOW_DW_EXACT with in_c % 4 == 0 the whole row in one call). `exact` is a constant of the
 * two instances. */
MCUFLOW_INLINE void mcuflow_dwp_inner_body(const mcuflow_window_t *g,
                                           const mcuflow_dsp_dw_pixels_t *d,
                                           const int32_t *offsets, mcuflow_dwp_run_t *run,
                                           const int8_t *base, size_t step, int8_t *out,
                                           int32_t count, int exact)
{
    const int32_t in_c = g->in_c, taps = g->k_h * g->k_w, full = in_c & ~3;
    const size_t words = MCUFLOW_DSP_DWP_WORDS(taps);
    const uint32_t offset = mcuflow_pair16(g->input_offset);
    const size_t out_step = (size_t)g->out_pixel_step;
    const int mode = exact ? MCUFLOW_DW_EXACT : mcuflow_dw_mode(d->ties, 0);
    const int nine = taps == 9 && full > 0;
    if (nine && !exact && full == in_c) {
        run->out_end = out + (size_t)count * out_step;
        mcuflow_dwp_run(run, offset, base, out, mode);
        return;
    }
    for (; count > 0; --count, base += step, out += out_step) {
        const int32_t *record = d->groups;
        int32_t c = 0;
        if (nine) {
            mcuflow_dwp_pixel9(run, full, base, out, offset, mode);
            c = full;
            record += (size_t)(full / 4) * words;
        }
        for (; c < full; c += 4, record += words) {
            int32_t acc[4] = {record[0], record[1], record[2], record[3]};
            mcuflow_dwp_inside(base + c, offsets, taps, mcuflow_dwp_taps(record), offset, acc);
            mcuflow_dwp_finish(acc, mcuflow_dwp_rq(record, taps), out + c, mode, exact);
        }
        if (c < in_c) {
            const mcuflow_dwp_window_t v = {base, 0, g->k_h, 0, g->k_w};
            mcuflow_dwp_tails(g, &v, record, c, out, mode);
        }
    }
}

static void mcuflow_dwp_inner_run(const mcuflow_window_t *g, const mcuflow_dsp_dw_pixels_t *d,
                                  const int32_t *offsets, mcuflow_dwp_run_t *run,
                                  const int8_t *base, size_t step, int8_t *out, int32_t count)
{
    if (d->exact) {
        mcuflow_dwp_inner_body(g, d, offsets, run, base, step, out, count, 1);
    } else {
        mcuflow_dwp_inner_body(g, d, offsets, run, base, step, out, count, 0);
    }
}

/* The window of output pixel `ox` of a row starting at input row `y0`. */
static void mcuflow_dwp_locate(const mcuflow_window_t *g, const int8_t *image, int32_t y0,
                               int32_t ox, mcuflow_dwp_window_t *v)
{
    const int32_t x0 = ox * g->stride_w - g->pad_left;
    mcuflow_dwp_valid(y0, g->dilation_h, g->k_h, g->in_h, &v->ky_lo, &v->ky_hi);
    mcuflow_dwp_valid(x0, g->dilation_w, g->k_w, g->in_w, &v->kx_lo, &v->kx_hi);
    const int32_t y = v->ky_hi > v->ky_lo ? y0 + v->ky_lo * g->dilation_h : 0;
    const int32_t x = v->kx_hi > v->kx_lo ? x0 + v->kx_lo * g->dilation_w : 0;
    v->first = image + ((size_t)y * (size_t)g->in_w + (size_t)x) * (size_t)g->in_c;
}

/* Output pixels [ox, ox + count) of one row (`row`, its first input row y0) of edge class
 * `k`, all of that class, through the inside pixels' assembly with the class's taps and
 * records (`edge`: a copy of the layer's run). */
static void mcuflow_dwp_class_run(const mcuflow_window_t *g, const mcuflow_dsp_dw_pixels_t *d,
                                  mcuflow_dwp_run_t *edge, int32_t k, const int8_t *image,
                                  int32_t y0, int32_t ox, int32_t count, int8_t *row)
{
    const int32_t *entry = d->edge_taps + (size_t)k * MCUFLOW_DSP_DWP_CLASS_WORDS;
    const size_t words = (size_t)(g->in_c / 4) * MCUFLOW_DSP_DWP_WORDS(9);
    memcpy(edge->taps, entry + 2, sizeof edge->taps);
    edge->records = d->edges + (size_t)k * words;
    edge->last = edge->records + words - MCUFLOW_DSP_DWP_WORDS(9);
    const int32_t y = y0 + entry[0] * g->dilation_h;
    const int32_t x = ox * g->stride_w - g->pad_left + entry[1] * g->dilation_w;
    const int8_t *base = image + ((size_t)y * (size_t)g->in_w + (size_t)x) * (size_t)g->in_c;
    int8_t *out = row + (size_t)ox * (size_t)g->out_pixel_step;
    edge->out_end = out + (size_t)count * (size_t)g->out_pixel_step;
    mcuflow_dwp_run(edge, mcuflow_pair16(g->input_offset), base, out,
                    mcuflow_dw_mode(d->ties, 0));
}

/* One output row by edge classes: the inside columns [lo, hi) in one pass, the others one by
 * one. */
static void mcuflow_dwp_class_row(const mcuflow_window_t *g, const mcuflow_dsp_dw_pixels_t *d,
                                  mcuflow_dwp_run_t *edge, const int8_t *image, int32_t oy,
                                  int32_t lo, int32_t hi, int8_t *row)
{
    const int32_t y0 = oy * g->stride_h - g->pad_top;
    const int32_t first = d->row_classes[oy] * d->column_count;
    for (int32_t ox = 0; ox < g->out_w; ++ox) {
        const int32_t count = ox == lo && hi > lo ? hi - lo : 1;
        mcuflow_dwp_class_run(g, d, edge, first + d->column_classes[ox], image, y0, ox, count,
                              row);
        ox += count - 1;
    }
}

/* Clamp one image's outputs to a fused activation narrower than int8. */
static void mcuflow_dwp_clamp_image(const mcuflow_window_t *g, const mcuflow_dsp_dw_pixels_t *d,
                                    int8_t *out)
{
    if (g->out_pixel_step == g->in_c && g->out_row_step == g->out_w * g->in_c) {
        mcuflow_clamp_bytes(out, g->out_h * g->out_row_step, d->act_min, d->act_max);
        return;
    }
    for (int32_t oy = 0; oy < g->out_h; ++oy) {
        for (int32_t ox = 0; ox < g->out_w; ++ox) {
            mcuflow_clamp_bytes(out + (size_t)oy * (size_t)g->out_row_step +
                                    (size_t)ox * (size_t)g->out_pixel_step,
                                g->in_c, d->act_min, d->act_max);
        }
    }
}

/* Every image by edge classes (mcuflow_dwp_class_row), each clamped when the activation is
 * narrow. */
static void mcuflow_dwp_classes(const mcuflow_window_t *g, const mcuflow_dsp_dw_pixels_t *d,
                                mcuflow_dwp_run_t *edge, const int8_t *input, int8_t *output,
                                int32_t lo, int32_t hi)
{
    const size_t image_bytes = (size_t)g->in_h * (size_t)g->in_w * (size_t)g->in_c;
    for (int32_t b = 0; b < g->batches; ++b) {
        const int8_t *image = input + (size_t)b * image_bytes;
        int8_t *plane = output + (size_t)b * (size_t)g->out_batch_step;
        for (int32_t oy = 0; oy < g->out_h; ++oy) {
            mcuflow_dwp_class_row(g, d, edge, image, oy, lo, hi,
                                  plane + (size_t)oy * (size_t)g->out_row_step);
        }
        if (d->act_min != -128 || d->act_max != 127) {
            mcuflow_dwp_clamp_image(g, d, plane);
        }
    }
}

void mcuflow_dwconv_dsp_s8(const mcuflow_window_t *g, const mcuflow_dsp_dw_pixels_t *d,
                           const int8_t *input, int8_t *output)
{
    int32_t offsets[MCUFLOW_DWP_MAX_TAPS];
    const int32_t taps = g->k_h * g->k_w;
    const int fast = taps <= MCUFLOW_DWP_MAX_TAPS;
    for (int32_t t = 0; fast && t < taps; ++t) {
        offsets[t] = ((t / g->k_w) * g->dilation_h * g->in_w + (t % g->k_w) * g->dilation_w) *
                     g->in_c;
    }
    mcuflow_dwp_run_t run, edge; /* the inside pixels' run, a copy for edge pixels */
    memset(&run, 0, sizeof run);
    if (taps == 9 && g->in_c >= 4) {
        mcuflow_dwp_run_init(g, d, offsets, &run);
    }
    edge = run;
    /* Output columns whose windows lie inside the input's columns: [inner_lo, inner_hi). */
    const int32_t span_w = (g->k_w - 1) * g->dilation_w;
    const int32_t inner_lo = (g->pad_left + g->stride_w - 1) / g->stride_w;
    const int32_t room = g->in_w - span_w + g->pad_left;
    const int32_t inner_hi = room > 0 ? (room - 1) / g->stride_w + 1 : 0;
    const int32_t lo = inner_lo < g->out_w ? inner_lo : g->out_w;
    const int32_t hi = inner_hi < lo ? lo : (inner_hi > g->out_w ? g->out_w : inner_hi);
    const size_t step = (size_t)g->stride_w * (size_t)g->in_c;
    if (d->edges != NULL) {
        mcuflow_dwp_classes(g, d, &edge, input, output, lo, hi);
        return;
    }
    for (int32_t b = 0; b < g->batches; ++b) {
        const int8_t *image =
            input + (size_t)b * (size_t)g->in_h * (size_t)g->in_w * (size_t)g->in_c;
        int8_t *plane = output + (size_t)b * (size_t)g->out_batch_step;
        for (int32_t oy = 0; oy < g->out_h; ++oy) {
            const int32_t y0 = oy * g->stride_h - g->pad_top;
            const int row_inside = y0 >= 0 && y0 + (g->k_h - 1) * g->dilation_h < g->in_h;
            int8_t *row = plane + (size_t)oy * (size_t)g->out_row_step;
            for (int32_t ox = 0; ox < g->out_w; ++ox) {
                if (fast && row_inside && ox == lo && hi > lo) {
                    const int8_t *base = image + ((size_t)y0 * (size_t)g->in_w +
                                                  (size_t)(lo * g->stride_w - g->pad_left)) *
                                                     (size_t)g->in_c;
                    mcuflow_dwp_inner_run(g, d, offsets, &run, base, step,
                                          row + (size_t)lo * (size_t)g->out_pixel_step,
                                          hi - lo);
                    ox = hi - 1;
                    continue;
                }
                int8_t *pixel = row + (size_t)ox * (size_t)g->out_pixel_step;
                mcuflow_dwp_window_t v;
                mcuflow_dwp_locate(g, image, y0, ox, &v);
                if (taps == 9) {
                    const int8_t *taps_at[9];
                    mcuflow_dwp_tap_pointers(g, &v, d->pads, taps_at);
                    mcuflow_dwp_edge_run(g, d, &edge, taps_at, pixel);
                } else {
                    mcuflow_dwp_pixel(g, d, &v, pixel);
                }
            }
        }
        if (d->act_min != -128 || d->act_max != 127) {
            mcuflow_dwp_clamp_image(g, d, plane);
        }
    }
}
