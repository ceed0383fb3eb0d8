/* CONV_2D and FULLY_CONNECTED int8 kernels for the Arm DSP extension (TFLite bit-exact).
 *
 * Both are matrix products over int16 columns gathered once per output pixel (or input row)
 * and int8 weights packed by the generator in channel pairs (see mcuflow_dsp_matrix_t): per
 * group of 4 columns a pair needs one weight load, one SXTB16 per word and two SMLADs per pixel
 * for its eight MACs, and a CONV_2D computes two pixels at once (2 x 2 blocking). Small
 * FULLY_CONNECTED layers instead keep their input row or their accumulators in registers, over
 * int16 weights (see mcuflow_dsp_fc_small_t). The integer LSTM (at the end) runs its gates'
 * products through the same loops.
 */
#include "mcuflow_dsp.h"

/* True when the fused activation is narrower than int8 (requantisation saturates to int8). */
static inline int mcuflow_dsp_narrow(const mcuflow_dsp_requant_t *q)
{
    return q->act_min != -128 || q->act_max != 127;
}

/* Clamp `n` outputs to the fused activation. */
static void mcuflow_dsp_clamp(const mcuflow_dsp_requant_t *q, int8_t *out, int32_t n)
{
    mcuflow_clamp_bytes(out, n, q->act_min, q->act_max);
}

/* ---- CONV_2D ---------------------------------------------------------------------------- */

/* A loop over a layer's pixels kept out of line: compiled (its registers allocated) on its own,
 * it leaves the code of the general loops as it was. */
#if defined(__GNUC__) || defined(__clang__)
#define MCUFLOW_DSP_OUTLINE static __attribute__((noinline))
#else
#define MCUFLOW_DSP_OUTLINE static
#endif

/* ADR of a label of the same assembly block. The assembler resolves it against Align(PC, 4),
 * taking the section to start 4-aligned; `.balign 4` makes it so (at most a 16-bit NOP here),
 * or a function that -Os aligns to 2 only could land where the address is 2 bytes off. */
#define MCUFLOW_DSP_ADR(REG, LABEL) ".balign 4\n\tadr " REG ", " LABEL "\n\t"

/* One group of 4 columns of a pair over both pixels. The columns of the two pixels alternate
 * word by word (see mcuflow_conv2d_dsp_s8); `acc` holds a0, a1, c0, c1 (c: A + 256 B since the
 * last extraction). */
MCUFLOW_INLINE void mcuflow_dsp_group2(const mcuflow_word_t **w, const mcuflow_word_t **x,
                                       int32_t *acc)
{
    uint32_t w0, w1, x0, x1, y0, y1;
    mcuflow_load2(w, &w0, &w1);
    mcuflow_load2(x, &x0, &y0);
    mcuflow_load2(x, &x1, &y1);
    uint32_t s = mcuflow_sxtb16(w0);
    acc[0] = mcuflow_smlad(x0, s, acc[0]);
    acc[1] = mcuflow_smlad(y0, s, acc[1]);
    acc[2] = mcuflow_smlad(x0, w0, acc[2]);
    acc[3] = mcuflow_smlad(y0, w0, acc[3]);
    s = mcuflow_sxtb16(w1);
    acc[0] = mcuflow_smlad(x1, s, acc[0]);
    acc[1] = mcuflow_smlad(y1, s, acc[1]);
    acc[2] = mcuflow_smlad(x1, w1, acc[2]);
    acc[3] = mcuflow_smlad(y1, w1, acc[3]);
}

#if MCUFLOW_DSP_ASM
/* One group of mcuflow_dsp_group2 in assembly: LDM of the four column words (r8-r11), LDRD
 * of the pair's two weight words (r12, lr). */
#define MCUFLOW_DSP_GROUP2_ASM                                                                  \
    "ldmia %[x]!, {r8, r9, r10, r11}\n\t"                                                       \
    "ldrd r12, lr, [%[w]], #8\n\t"                                                             \
    "smlad %[s2], r8, r12, %[s2]\n\t"                                                           \
    "smlad %[s3], r9, r12, %[s3]\n\t"                                                           \
    "sxtb16 r12, r12\n\t"                                                                      \
    "smlad %[s0], r8, r12, %[s0]\n\t"                                                           \
    "smlad %[s1], r9, r12, %[s1]\n\t"                                                           \
    "smlad %[s2], r10, lr, %[s2]\n\t"                                                           \
    "smlad %[s3], r11, lr, %[s3]\n\t"                                                           \
    "sxtb16 lr, lr\n\t"                                                                        \
    "smlad %[s0], r10, lr, %[s0]\n\t"                                                           \
    "smlad %[s1], r11, lr, %[s1]\n\t"
#endif

/* `fours` times four groups of a pair over both pixels (`fours` > 0). */
MCUFLOW_DSP_FOURS(mcuflow_dsp_fours2, MCUFLOW_DSP_GROUP2_ASM, mcuflow_dsp_group2)

/* `n` groups of a pair over both pixels. */
MCUFLOW_INLINE void mcuflow_dsp_groups2(const mcuflow_word_t **w, const mcuflow_word_t **x,
                                        int32_t n, int32_t *acc)
{
    if (n >> 2) {
        mcuflow_dsp_fours2(w, x, n >> 2, acc);
    }
    for (int32_t left = n & 3; left > 0; --left) {
        mcuflow_dsp_group2(w, x, acc);
    }
}

/* Requantise and store one channel of both pixels (pixel 1 first, see mcuflow_dsp_channels);
 * `signed_ties` is false when the layer's negative term is 0 (then skipped). */
#if MCUFLOW_DSP_ASM
/* mcuflow_dsp_requant of `acc` into `out`, the channel's multiplier and shift already loaded;
 * the _D form adds the negative term. */
#define MCUFLOW_DSP_OUT_ASM(acc, out, D)                                                        \
    "ldrd %[lo], %[hi], [%[rq], #8]\n\t"                                                        \
    "smlal %[lo], %[hi], %[" acc "], %[m]\n\t" D                                                \
    "asr %[hi], %[hi], %[sh]\n\t"                                                               \
    "ssat %[hi], #8, %[hi]\n\t"                                                                 \
    "strb %[hi], [%[" out "]]\n\t"
#define MCUFLOW_DSP_NEGATIVE_ASM(acc)                                                           \
    "lsr %[n], %[" acc "], #31\n\t"                                                             \
    "smlal %[lo], %[hi], %[n], %[neg]\n\t"

MCUFLOW_INLINE void mcuflow_dsp_store2(int32_t acc0, int32_t acc1, const int32_t *rq,
                                       int32_t negative, int8_t *out0, int8_t *out1,
                                       int signed_ties)
{
    uint32_t m, sh, lo, hi, n;
    if (signed_ties) {
        __asm__ volatile("ldrd %[m], %[sh], [%[rq]]\n\t"
                         MCUFLOW_DSP_OUT_ASM("a1", "o1", MCUFLOW_DSP_NEGATIVE_ASM("a1"))
                             MCUFLOW_DSP_OUT_ASM("a0", "o0", MCUFLOW_DSP_NEGATIVE_ASM("a0"))
                         : [m] "=&r"(m), [sh] "=&r"(sh), [lo] "=&r"(lo), [hi] "=&r"(hi),
                           [n] "=&r"(n)
                         : [a0] "r"(acc0), [a1] "r"(acc1), [rq] "r"(rq), [neg] "r"(negative),
                           [o0] "r"(out0), [o1] "r"(out1)
                         : "memory");
    } else {
        __asm__ volatile("ldrd %[m], %[sh], [%[rq]]\n\t" MCUFLOW_DSP_OUT_ASM("a1", "o1", "")
                             MCUFLOW_DSP_OUT_ASM("a0", "o0", "")
                         : [m] "=&r"(m), [sh] "=&r"(sh), [lo] "=&r"(lo), [hi] "=&r"(hi)
                         : [a0] "r"(acc0), [a1] "r"(acc1), [rq] "r"(rq), [o0] "r"(out0),
                           [o1] "r"(out1)
                         : "memory");
    }
}
#else
MCUFLOW_INLINE void mcuflow_dsp_store2(int32_t acc0, int32_t acc1, const int32_t *rq,
                                       int32_t negative, int8_t *out0, int8_t *out1,
                                       int signed_ties)
{
    const int32_t multiplier = rq[0], shift = rq[1];
    const int32_t d = signed_ties ? negative : 0;
    *out1 = (int8_t)mcuflow_dsp_requant(acc1, multiplier, rq + 2, shift, d);
    *out0 = (int8_t)mcuflow_dsp_requant(acc0, multiplier, rq + 2, shift, d);
}
#endif

#if MCUFLOW_DSP_ASM
/* The registers the whole-loop assembly routines below use besides r0 (r7 they save and
 * restore themselves). */
#define MCUFLOW_DSP_LOOP_CLOBBERS                                                               \
    "r1", "r2", "r3", "r4", "r5", "r6", "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory"

/* Where a Duff's-device loop over `groups` groups of `bytes` bytes of code, in blocks of eight
 * groups, enters its first block: the bytes of the groups skipped, plus the Thumb bit its
 * `ldr pc` needs. */
static inline int32_t mcuflow_dsp_duff8_entry(int32_t groups, int32_t bytes)
{
    return ((8 - (groups & 7)) & 7) * bytes + 1;
}

/* The state of mcuflow_dsp_rows2 in assembly, pushed on the stack in this order (r1-r6, r8,
 * r9) below the caller's r7, which the loop borrows as its group counter. */
typedef struct {
    const int32_t *bias;
    int8_t *out0;
    int8_t *out1;
    const mcuflow_word_t *x;
    int32_t blocks; /* blocks of eight groups, the first one entered part-way */
    int32_t entry;  /* bytes of the first block skipped, plus the Thumb bit */
    const int32_t *rq_end;
    int32_t negative;
    const mcuflow_word_t *w; /* then loaded into r5 and r0 */
    const int32_t *rq;
} mcuflow_dsp_rows_state_t;

/* The multiplies of one group of a pair over both pixels: columns r8-r11, weights r12 and lr;
 * accumulators a0 r1, a1 r2, c0 r3, c1 r4. */
#define MCUFLOW_DSP_GROUP_MACS_ASM                                                             \
    "smlad r3, r8, r12, r3\n\t"                                                                \
    "smlad r4, r9, r12, r4\n\t"                                                                \
    "sxtb16 r12, r12\n\t"                                                                      \
    "smlad r1, r8, r12, r1\n\t"                                                                \
    "smlad r2, r9, r12, r2\n\t"                                                                \
    "smlad r3, r10, lr, r3\n\t"                                                                \
    "smlad r4, r11, lr, r4\n\t"                                                                \
    "sxtb16 lr, lr\n\t"                                                                        \
    "smlad r1, r10, lr, r1\n\t"                                                                \
    "smlad r2, r11, lr, r2\n\t"

/* One group of a pair over both pixels: a0 r1, a1 r2, c0 r3, c1 r4, weights r5, columns r6.
 * Every instruction is 32 bits wide: a group is MCUFLOW_DSP_GROUP_BYTES of code. */
#define MCUFLOW_DSP_GROUP_R_ASM                                                                 \
    "ldmia.w r6!, {r8, r9, r10, r11}\n\t"                                                       \
    "ldrd r12, lr, [r5], #8\n\t" MCUFLOW_DSP_GROUP_MACS_ASM
#define MCUFLOW_DSP_GROUP_BYTES 48

/* Requantise `ACC` with the channel's words (multiplier r8, shift r9, addend at r0 - 8,
 * negative r7 when TIES) into the byte at `OUT`, which moves on by one. */
#define MCUFLOW_DSP_STORE_R_ASM(ACC, OUT, TIES)                                                 \
    "ldrd r12, lr, [r0, #-8]\n\t"                                                              \
    "smlal r12, lr, " ACC ", r8\n\t" TIES                                                      \
    "asr lr, lr, r9\n\t"                                                                       \
    "ssat lr, #8, lr\n\t"                                                                      \
    "strb lr, [" OUT "], #1\n\t"
#define MCUFLOW_DSP_TIES_R_ASM(ACC) "lsr " ACC ", " ACC ", #31\n\tsmlal r12, lr, " ACC ", r7\n\t"

/* The whole loop over channel pairs (rq r0, weights r5); TIES is empty or loads the negative
 * term. The groups run as Duff's device: `ldr pc` enters the first block of eight part-way, so
 * that `blocks` passes cover every group with no loop for the rest. */
#define MCUFLOW_DSP_ROWS_ASM(LOAD_NEGATIVE, T1, T0, T3, T2)                                     \
    "push {r7}\n\t"                                                                            \
    "ldmia r0, {r1, r2, r3, r4, r5, r6, r8, r9}\n\t"                                           \
    MCUFLOW_DSP_ADR("r7", "2f")                                                                \
    "add r6, r6, r7\n\t"                                                                       \
    "push {r1, r2, r3, r4, r5, r6, r8, r9}\n\t"                                                \
    "ldrd r5, r0, [r0, #32]\n\t"                                                               \
    "1:\n\t"                                                                                   \
    "ldr r12, [sp, #0]\n\t"                                                                    \
    "ldr r1, [r12], #8\n\t"                                                                    \
    "str r12, [sp, #0]\n\t"                                                                    \
    "mov r2, r1\n\t"                                                                           \
    "mov r3, r1\n\t"                                                                           \
    "mov r4, r1\n\t"                                                                           \
    "ldr r6, [sp, #12]\n\t"                                                                    \
    "ldr r7, [sp, #16]\n\t"                                                                    \
    "ldr pc, [sp, #20]\n\t"                                                                    \
    "2:\n\t" MCUFLOW_DSP_GROUP_R_ASM MCUFLOW_DSP_GROUP_R_ASM MCUFLOW_DSP_GROUP_R_ASM            \
        MCUFLOW_DSP_GROUP_R_ASM MCUFLOW_DSP_GROUP_R_ASM MCUFLOW_DSP_GROUP_R_ASM                 \
            MCUFLOW_DSP_GROUP_R_ASM MCUFLOW_DSP_GROUP_R_ASM                                     \
    "subs r7, r7, #1\n\t"                                                                      \
    "bne 2b\n\t"                                                                               \
    "ldr r12, [sp, #0]\n\t"                                                                    \
    "ldr r12, [r12, #-4]\n\t"                                                                  \
    "sub r3, r3, r1\n\t"                                                                       \
    "add r3, r12, r3, asr #8\n\t"                                                              \
    "sub r4, r4, r2\n\t"                                                                       \
    "add r4, r12, r4, asr #8\n\t"                                                              \
    "ldrd r10, r11, [sp, #4]\n\t" LOAD_NEGATIVE                                                 \
    "ldrd r8, r9, [r0], #16\n\t"                                                               \
    MCUFLOW_DSP_STORE_R_ASM("r2", "r11", T1)                                                    \
    MCUFLOW_DSP_STORE_R_ASM("r1", "r10", T0)                                                    \
    "ldrd r8, r9, [r0], #16\n\t"                                                               \
    MCUFLOW_DSP_STORE_R_ASM("r4", "r11", T3)                                                    \
    MCUFLOW_DSP_STORE_R_ASM("r3", "r10", T2)                                                    \
    "strd r10, r11, [sp, #4]\n\t"                                                              \
    "ldr r12, [sp, #24]\n\t"                                                                   \
    "cmp r0, r12\n\t"                                                                          \
    "bne 1b\n\t"                                                                               \
    "add sp, sp, #32\n\t"                                                                      \
    "pop {r7}\n\t"

static void mcuflow_dsp_rows2(const mcuflow_word_t *w, const mcuflow_word_t *columns,
                              const int32_t *bias, const int32_t *rq, int8_t *out0,
                              int8_t *out1, int32_t pairs, int32_t groups, int32_t negative)
{
    mcuflow_dsp_rows_state_t state = {bias, out0, out1, columns, (groups + 7) >> 3,
                                      mcuflow_dsp_duff8_entry(groups, MCUFLOW_DSP_GROUP_BYTES),
                                      rq + (size_t)pairs * 2 * MCUFLOW_DSP_RQ_WORDS, negative,
                                      w, rq};
    register mcuflow_dsp_rows_state_t *r0 __asm__("r0") = &state;
    if (pairs <= 0) {
        return;
    }
    if (negative != 0) {
        __asm__ volatile(MCUFLOW_DSP_ROWS_ASM("ldr r7, [sp, #28]\n\t",
                                              MCUFLOW_DSP_TIES_R_ASM("r2"),
                                              MCUFLOW_DSP_TIES_R_ASM("r1"),
                                              MCUFLOW_DSP_TIES_R_ASM("r4"),
                                              MCUFLOW_DSP_TIES_R_ASM("r3"))
                         : "+r"(r0)
                         :
                         : MCUFLOW_DSP_LOOP_CLOBBERS);
    } else {
        __asm__ volatile(MCUFLOW_DSP_ROWS_ASM("", "", "", "", "")
                         : "+r"(r0)
                         :
                         : MCUFLOW_DSP_LOOP_CLOBBERS);
    }
}
#else
/* `pairs` channel pairs of both pixels when B never needs extracting before the end. */
MCUFLOW_INLINE void mcuflow_dsp_rows2_body(const mcuflow_word_t *w,
                                           const mcuflow_word_t *columns, const int32_t *bias,
                                           const int32_t *rq, int8_t *out0, int8_t *out1,
                                           int32_t pairs, int32_t groups, int32_t negative,
                                           int signed_ties)
{
    for (; pairs > 0; --pairs, bias += 2, rq += 2 * MCUFLOW_DSP_RQ_WORDS, out0 += 2, out1 += 2) {
        int32_t acc[4] = {bias[0], bias[0], bias[0], bias[0]};
        const mcuflow_word_t *x = columns;
        mcuflow_dsp_groups2(&w, &x, groups, acc);
        const int32_t b0 = bias[1] + mcuflow_wrapped_diff_8(acc[2], acc[0]);
        const int32_t b1 = bias[1] + mcuflow_wrapped_diff_8(acc[3], acc[1]);
        mcuflow_dsp_store2(acc[0], acc[1], rq, negative, out0, out1, signed_ties);
        mcuflow_dsp_store2(b0, b1, rq + MCUFLOW_DSP_RQ_WORDS, negative, out0 + 1, out1 + 1,
                           signed_ties);
    }
}

static void mcuflow_dsp_rows2(const mcuflow_word_t *w, const mcuflow_word_t *columns,
                              const int32_t *bias, const int32_t *rq, int8_t *out0,
                              int8_t *out1, int32_t pairs, int32_t groups, int32_t negative)
{
    if (negative != 0) {
        mcuflow_dsp_rows2_body(w, columns, bias, rq, out0, out1, pairs, groups, negative, 1);
    } else {
        mcuflow_dsp_rows2_body(w, columns, bias, rq, out0, out1, pairs, groups, 0, 0);
    }
}
#endif

/* Sums of one channel pair over both pixels, B extracted every chunk: `out` gets a0, a1, b0,
 * b1 (bias included). */
MCUFLOW_INLINE void mcuflow_dsp_pair2_chunked(const mcuflow_dsp_matrix_t *m,
                                              const mcuflow_word_t *w,
                                              const mcuflow_word_t *columns, const int32_t *bias,
                                              int32_t *out)
{
    int32_t acc[4] = {bias[0], bias[0], bias[0], bias[0]};
    int32_t b0 = bias[1], b1 = bias[1];
    const mcuflow_word_t *x = columns;
    for (int32_t left = m->groups; left > 0; left -= m->chunk_groups) {
        mcuflow_dsp_groups2(&w, &x, left < m->chunk_groups ? left : m->chunk_groups, acc);
        b0 += mcuflow_wrapped_diff_8(acc[2], acc[0]);
        b1 += mcuflow_wrapped_diff_8(acc[3], acc[1]);
        acc[2] = acc[0];
        acc[3] = acc[1];
    }
    out[0] = acc[0];
    out[1] = acc[1];
    out[2] = b0;
    out[3] = b1;
}

/* Columns [k, k + n) of one pixel's slot in natural order: int8 values from `src`, or `pad`
 * everywhere when `src` is NULL. Column k is halfword k % 2 of word 2 * (k / 2) of the slot. */
MCUFLOW_INLINE void mcuflow_dsp_run(mcuflow_half_t *slot, int32_t k, const int8_t *src,
                                    int32_t pad, int32_t n)
{
    mcuflow_half_t *half = slot + 4 * (k >> 1) + (k & 1);
    int32_t i = 0;
    if (k & 1) {
        half[0] = (uint16_t)(int16_t)(src != NULL ? src[0] : pad);
        half += 3;
        i = 1;
    }
    if (src == NULL) {
        const uint32_t both = mcuflow_pair16(pad);
        for (; i + 1 < n; i += 2, half += 4) {
            *(mcuflow_word_t *)half = both;
        }
    } else {
        for (; i + 1 < n; i += 2, half += 4) {
            *(mcuflow_word_t *)half = (uint32_t)(uint16_t)(int16_t)src[i] |
                                      ((uint32_t)(uint16_t)(int16_t)src[i + 1] << 16);
        }
    }
    if (i < n) {
        half[0] = (uint16_t)(int16_t)(src != NULL ? src[i] : pad);
    }
}

/* Receptive field of one pixel in natural column order (any in_c): one run per kernel row
 * inside the image, one per tap at its edges. */
static void mcuflow_dsp_gather_values(const mcuflow_window_t *g, const int8_t *image, int32_t y0,
                                      int32_t x0, mcuflow_half_t *slot)
{
    const int32_t pad = -g->input_offset;
    const int32_t in_c = g->in_c, in_w = g->in_w, in_h = g->in_h;
    const int32_t k_h = g->k_h, k_w = g->k_w, dh = g->dilation_h, dw = g->dilation_w;
    const int whole_rows = dw == 1 && x0 >= 0 && x0 + k_w - 1 < in_w;
    const size_t line = (size_t)in_w * (size_t)in_c;
    int32_t k = 0;
    for (int32_t ky = 0, y = y0; ky < k_h; ++ky, y += dh) {
        const int row_inside = y >= 0 && y < in_h;
        const int8_t *row = row_inside ? image + (size_t)y * line : image;
        if (row_inside && whole_rows) {
            mcuflow_dsp_run(slot, k, row + (size_t)x0 * (size_t)in_c, pad, k_w * in_c);
            k += k_w * in_c;
            continue;
        }
        for (int32_t kx = 0, x = x0; kx < k_w; ++kx, x += dw, k += in_c) {
            const int inside = row_inside && x >= 0 && x < in_w;
            mcuflow_dsp_run(slot, k, inside ? row + (size_t)x * (size_t)in_c : NULL, pad, in_c);
        }
    }
}

/* `words` words of int8 values converted to int16 pairs into every other slot word pair. */
MCUFLOW_INLINE mcuflow_word_t *mcuflow_dsp_copy_words(const int8_t *src, int32_t words,
                                                      mcuflow_word_t *slot)
{
    if (words == 1) {
        const uint32_t v = mcuflow_read_u32(src);
        slot[0] = mcuflow_sxtb16(v);
        slot[2] = mcuflow_sxtb16_ror8(v);
        return slot + 4;
    }
    for (; words > 0; --words, src += 4, slot += 4) {
        const uint32_t v = mcuflow_read_u32(src);
        slot[0] = mcuflow_sxtb16(v);
        slot[2] = mcuflow_sxtb16_ror8(v);
    }
    return slot;
}

MCUFLOW_INLINE mcuflow_word_t *mcuflow_dsp_fill_words(uint32_t pad, int32_t words,
                                                      mcuflow_word_t *slot)
{
    for (; words > 0; --words, slot += 4) {
        slot[0] = pad;
        slot[2] = pad;
    }
    return slot;
}

/* Receptive field of one pixel, four channels per load in SXTB16 order (in_c % 4 == 0). */
static void mcuflow_dsp_gather_words(const mcuflow_window_t *g, const int8_t *image, int32_t y0,
                                     int32_t x0, mcuflow_word_t *slot)
{
    const uint32_t pad = mcuflow_pair16(-g->input_offset);
    const int32_t in_c = g->in_c, in_w = g->in_w, in_h = g->in_h;
    const int32_t k_h = g->k_h, k_w = g->k_w, dh = g->dilation_h, dw = g->dilation_w;
    const int32_t words = in_c / 4;
    const int whole_rows = dw == 1 && x0 >= 0 && x0 + k_w - 1 < in_w;
    const size_t line = (size_t)in_w * (size_t)in_c;
    for (int32_t ky = 0, y = y0; ky < k_h; ++ky, y += dh) {
        if (y < 0 || y >= in_h) {
            slot = mcuflow_dsp_fill_words(pad, words * k_w, slot);
            continue;
        }
        const int8_t *row = image + (size_t)y * line;
        if (whole_rows) {
            slot = mcuflow_dsp_copy_words(row + (size_t)x0 * (size_t)in_c, words * k_w, slot);
            continue;
        }
        for (int32_t kx = 0, x = x0; kx < k_w; ++kx, x += dw) {
            slot = x >= 0 && x < in_w
                       ? mcuflow_dsp_copy_words(row + (size_t)x * (size_t)in_c, words, slot)
                       : mcuflow_dsp_fill_words(pad, words, slot);
        }
    }
}

/* An output pixel: its image, row and column, the offset of its window's first tap from the
 * input (outside the image when padded) and of the pixel from the output. */
typedef struct {
    int32_t b, oy, ox;
    ptrdiff_t in;
    size_t out;
} mcuflow_dsp_pixel_t;

/* Receptive field of one pixel, in_c + 1 channels per tap in SXTB16 order (in_c % 4 == 3); a
 * tap whose last word would read past `end` (the input's end) assembles that word bytewise. */
static void mcuflow_dsp_gather_padded(const mcuflow_window_t *g, const int8_t *image,
                                      int32_t y0, int32_t x0, mcuflow_word_t *slot,
                                      const int8_t *end)
{
    const uint32_t pad = mcuflow_pair16(-g->input_offset);
    const int32_t in_c = g->in_c, in_w = g->in_w, in_h = g->in_h;
    const int32_t k_h = g->k_h, k_w = g->k_w, dh = g->dilation_h, dw = g->dilation_w;
    const int32_t words = (in_c + 1) / 4;
    const size_t line = (size_t)in_w * (size_t)in_c;
    for (int32_t ky = 0, y = y0; ky < k_h; ++ky, y += dh) {
        if (y < 0 || y >= in_h) {
            slot = mcuflow_dsp_fill_words(pad, words * k_w, slot);
            continue;
        }
        const int8_t *row = image + (size_t)y * line;
        const int32_t x_last = x0 + (k_w - 1) * dw;
        if (x0 >= 0 && x_last < in_w && end - (row + (size_t)x_last * (size_t)in_c) > 4 * words) {
            const size_t step = (size_t)dw * (size_t)in_c;
            const int8_t *src = row + (size_t)x0 * (size_t)in_c;
            for (int32_t kx = 0; kx < k_w; ++kx, src += step) {
                slot = mcuflow_dsp_copy_words(src, words, slot);
            }
            continue;
        }
        for (int32_t kx = 0, x = x0; kx < k_w; ++kx, x += dw) {
            if (x < 0 || x >= in_w) {
                slot = mcuflow_dsp_fill_words(pad, words, slot);
                continue;
            }
            const int8_t *src = row + (size_t)x * (size_t)in_c;
            if (end - src > 4 * words) {
                slot = mcuflow_dsp_copy_words(src, words, slot);
                continue;
            }
            slot = mcuflow_dsp_copy_words(src, words - 1, slot);
            src += 4 * (words - 1);
            const uint32_t v = (uint32_t)(uint8_t)src[0] | ((uint32_t)(uint8_t)src[1] << 8) |
                               ((uint32_t)(uint8_t)src[2] << 16);
            slot[0] = mcuflow_sxtb16(v);
            slot[2] = mcuflow_sxtb16_ror8(v);
            slot += 4;
        }
    }
}

/* Receptive field of one pixel in SXTB16 order, whole window rows of k_w * in_c bytes (dilation_w
 * 1) word by word, rounded up to whole words (the bytes past the row meet zero weights); a word
 * with taps left or right of the image, or reading past the input row, is assembled byte by
 * byte with the input zero point (an int8) for the bytes outside. */
static void mcuflow_dsp_gather_rows(const mcuflow_window_t *g, const int8_t *image, int32_t y0,
                                    int32_t x0, mcuflow_word_t *slot, int32_t row_words)
{
    const uint32_t pad = mcuflow_pair16(-g->input_offset);
    const uint32_t pad_byte = (uint32_t)(uint8_t)(int8_t)(-g->input_offset);
    const int32_t in_c = g->in_c, in_w = g->in_w, in_h = g->in_h;
    const size_t line = (size_t)in_w * (size_t)in_c;
    const int whole = x0 >= 0 && x0 * in_c + 4 * row_words <= in_w * in_c;
    for (int32_t ky = 0, y = y0; ky < g->k_h; ++ky, y += g->dilation_h) {
        if (y < 0 || y >= in_h) {
            slot = mcuflow_dsp_fill_words(pad, row_words, slot);
            continue;
        }
        const int8_t *row = image + (size_t)y * line;
        if (whole) {
            slot = mcuflow_dsp_copy_words(row + (size_t)x0 * (size_t)in_c, row_words, slot);
            continue;
        }
        for (int32_t j = 0; j < row_words; ++j, slot += 4) {
            uint32_t v = 0;
            for (int32_t t = 0; t < 4; ++t) {
                const int32_t column = 4 * j + t, x = x0 + column / in_c;
                const uint32_t byte = x >= 0 && x < in_w
                                          ? (uint32_t)(uint8_t)row[(size_t)x * (size_t)in_c +
                                                                   (size_t)(column % in_c)]
                                          : pad_byte;
                v |= byte << (8 * t);
            }
            slot[0] = mcuflow_sxtb16(v);
            slot[2] = mcuflow_sxtb16_ror8(v);
        }
    }
}

/* What gathering a pixel's receptive field needs, computed once per layer. */
typedef struct {
    const mcuflow_window_t *g;
    int32_t mode;        /* MCUFLOW_DSP_GATHER_* */
    const int8_t *input; /* the input tensor and its end */
    const int8_t *end;
    size_t image_bytes;  /* bytes of one input image */
    size_t line;         /* bytes of one input row */
    size_t row_step;     /* bytes between the rows of a window */
    size_t tap_step;     /* bytes between the taps of a window row */
    int32_t span_h, span_w; /* extent of a window minus one */
    int32_t words;       /* words gathered per tap (WORDS, PADDED) */
    int32_t row_words;   /* words per window row when it is one contiguous run, else 0 */
    int32_t ox_lo, ox_hi, oy_lo, oy_hi; /* output pixels whose window lies inside the image */
    ptrdiff_t limit;     /* first-tap offsets below this read nothing past the input's end */
    ptrdiff_t in_start, in_x, in_row, in_image; /* pixel 0's offset, what the next pixel adds */
    size_t out_x, out_row, out_image;           /* the same for the output */
} mcuflow_dsp_gather_t;

/* The output positions o with 0 <= o * stride - pad and o * stride - pad + span < size, as
 * [*lo, *hi] (empty when *hi < *lo). */
static void mcuflow_dsp_inside_range(int32_t size, int32_t stride, int32_t pad, int32_t span,
                                     int32_t *lo, int32_t *hi)
{
    const int32_t top = size - span + pad - 1; /* largest o * stride allowed */
    *lo = (pad + stride - 1) / stride;
    *hi = top < 0 ? -1 : top / stride;
}

static void mcuflow_dsp_gather_setup(const mcuflow_window_t *g, int32_t mode,
                                     const int8_t *input, mcuflow_dsp_gather_t *s)
{
    s->g = g;
    s->mode = mode;
    s->input = input;
    s->image_bytes = (size_t)g->in_h * (size_t)g->in_w * (size_t)g->in_c;
    s->end = input + (size_t)g->batches * s->image_bytes;
    s->line = (size_t)g->in_w * (size_t)g->in_c;
    s->row_step = (size_t)g->dilation_h * s->line;
    s->tap_step = (size_t)g->dilation_w * (size_t)g->in_c;
    s->span_h = (g->k_h - 1) * g->dilation_h;
    s->span_w = (g->k_w - 1) * g->dilation_w;
    s->words = mode == MCUFLOW_DSP_GATHER_PADDED ? (g->in_c + 1) / 4 : g->in_c / 4;
    s->row_words = mode == MCUFLOW_DSP_GATHER_ROWS ? (g->k_w * g->in_c + 3) / 4
                   : s->tap_step == 4 * (size_t)s->words ? s->words * g->k_w
                                                          : 0;
    mcuflow_dsp_inside_range(g->in_w, g->stride_w, g->pad_left, s->span_w, &s->ox_lo, &s->ox_hi);
    mcuflow_dsp_inside_range(g->in_h, g->stride_h, g->pad_top, s->span_h, &s->oy_lo, &s->oy_hi);
    if (mode == MCUFLOW_DSP_GATHER_VALUES) { /* gathered value by value, never in whole words */
        s->oy_hi = -1;
    }
    /* A window's last word starts at its first tap + span_h * line + span_w * in_c and covers
     * in_c + over bytes (over: PADDED's word reads one byte past the tap, ROWS' last word of a
     * window row the bytes that round the row up to whole words; 0 for WORDS, whose rows and
     * taps are whole words, and VALUES, never gathered by words). */
    const int32_t over =
        mode == MCUFLOW_DSP_GATHER_PADDED ? 1 : -(g->k_w * g->in_c) & 3;
    s->limit = (ptrdiff_t)(s->end - input) - (ptrdiff_t)s->span_h * (ptrdiff_t)s->line -
               (ptrdiff_t)s->span_w * g->in_c - g->in_c - over + 1;
    /* Stepping to the next pixel adds in_x; ending a row also in_row, an image also in_image. */
    const ptrdiff_t in_y = (ptrdiff_t)g->stride_h * (ptrdiff_t)s->line;
    s->in_start = -(ptrdiff_t)g->pad_top * (ptrdiff_t)s->line - (ptrdiff_t)g->pad_left * g->in_c;
    s->in_x = (ptrdiff_t)g->stride_w * g->in_c;
    s->in_row = in_y - (ptrdiff_t)g->out_w * s->in_x;
    s->in_image = (ptrdiff_t)s->image_bytes - (ptrdiff_t)g->out_h * in_y;
    s->out_x = (size_t)g->out_pixel_step;
    s->out_row = (size_t)g->out_row_step - (size_t)g->out_w * s->out_x;
    s->out_image = (size_t)g->out_batch_step - (size_t)g->out_h * (size_t)g->out_row_step;
}

/* The first tap of output pixel `at`'s window when the window lies inside the input and its
 * words read nothing past the input's end (so whole words gather it), else NULL. */
MCUFLOW_INLINE const int8_t *mcuflow_dsp_inside(const mcuflow_dsp_gather_t *s,
                                                const mcuflow_dsp_pixel_t *at)
{
    if (at->oy < s->oy_lo || at->oy > s->oy_hi || at->ox < s->ox_lo || at->ox > s->ox_hi ||
        at->in >= s->limit) {
        return NULL;
    }
    return s->input + at->in;
}

#if MCUFLOW_DSP_ASM
/* `n` (> 0) words of two windows, `a`'s and `b`'s, at `step` bytes from each other into
 * consecutive slot word pairs: per word one load per window, four SXTB16 and one STM of the
 * slot words [a even columns, b even, a odd, b odd]. */
MCUFLOW_INLINE mcuflow_word_t *mcuflow_dsp_copy_pair(const int8_t *a, const int8_t *b,
                                                     int32_t n, int32_t step,
                                                     mcuflow_word_t *slot)
{
    int32_t at = 0;
    __asm__ volatile("1:\n\t"
                     "ldr r10, [%[a], %[at]]\n\t"
                     "ldr r11, [%[b], %[at]]\n\t"
                     "add %[at], %[at], %[step]\n\t"
                     "sxtb16 r8, r10\n\t"
                     "sxtb16 r9, r11\n\t"
                     "sxtb16 r10, r10, ror #8\n\t"
                     "sxtb16 r11, r11, ror #8\n\t"
                     "stmia %[s]!, {r8, r9, r10, r11}\n\t"
                     "subs %[n], %[n], #1\n\t"
                     "bne 1b\n\t"
                     : [s] "+r"(slot), [n] "+r"(n), [at] "+r"(at)
                     : [a] "r"(a), [b] "r"(b), [step] "r"(step)
                     : "r8", "r9", "r10", "r11", "cc", "memory");
    return slot;
}
#else
MCUFLOW_INLINE mcuflow_word_t *mcuflow_dsp_copy_pair(const int8_t *a, const int8_t *b,
                                                     int32_t n, int32_t step,
                                                     mcuflow_word_t *slot)
{
    for (; n > 0; --n, a += step, b += step, slot += 4) {
        const uint32_t u = mcuflow_read_u32(a), v = mcuflow_read_u32(b);
        slot[0] = mcuflow_sxtb16(u);
        slot[1] = mcuflow_sxtb16(v);
        slot[2] = mcuflow_sxtb16_ror8(u);
        slot[3] = mcuflow_sxtb16_ror8(v);
    }
    return slot;
}
#endif

#if MCUFLOW_DSP_ASM
/* One tap word of both windows: loads into r10 (a) and r11 (b), stored as one word pair. */
#define MCUFLOW_DSP_TAP_PAIR_ASM(A, B)                                                          \
    "ldr r10, " A "\n\t"                                                                        \
    "ldr r11, " B "\n\t"                                                                        \
    "sxtb16 r8, r10\n\t"                                                                       \
    "sxtb16 r9, r11\n\t"                                                                       \
    "sxtb16 r10, r10, ror #8\n\t"                                                              \
    "sxtb16 r11, r11, ror #8\n\t"                                                              \
    "stmia %[s]!, {r8, r9, r10, r11}\n\t"

/* `rows` (> 0) window rows of three one-word taps, `step` bytes apart, of two windows into
 * consecutive slot word pairs (as mcuflow_dsp_copy_pair), the rows `row_step` bytes apart. */
MCUFLOW_INLINE void mcuflow_dsp_copy_pair3(const int8_t *a, const int8_t *b, int32_t rows,
                                           int32_t step, int32_t row_step, mcuflow_word_t *slot)
{
    __asm__ volatile("1:\n\t" MCUFLOW_DSP_TAP_PAIR_ASM("[%[a]]", "[%[b]]")
                         MCUFLOW_DSP_TAP_PAIR_ASM("[%[a], %[step]]", "[%[b], %[step]]")
                             MCUFLOW_DSP_TAP_PAIR_ASM("[%[a], %[step], lsl #1]",
                                                      "[%[b], %[step], lsl #1]")
                     "add %[a], %[a], %[row]\n\t"
                     "add %[b], %[b], %[row]\n\t"
                     "subs %[n], %[n], #1\n\t"
                     "bne 1b\n\t"
                     : [s] "+r"(slot), [n] "+r"(rows), [a] "+r"(a), [b] "+r"(b)
                     : [step] "r"(step), [row] "r"(row_step)
                     : "r8", "r9", "r10", "r11", "cc", "memory");
}

/* mcuflow_dsp_copy_pair3 when b = a + 2 * step (stride 2 along a row): b's first tap is a's
 * last, loaded and extended once. Its words stay in r9 and r11 for the row's last STM. */
MCUFLOW_INLINE void mcuflow_dsp_copy_pair3_overlap(const int8_t *a, const int8_t *b,
                                                   int32_t rows, int32_t step, int32_t row_step,
                                                   mcuflow_word_t *slot)
{
    __asm__ volatile("1:\n\t"
                     "ldr r10, [%[a]]\n\t"
                     "ldr r11, [%[a], %[step], lsl #1]\n\t"
                     "sxtb16 r8, r10\n\t"
                     "sxtb16 r9, r11\n\t"
                     "sxtb16 r10, r10, ror #8\n\t"
                     "sxtb16 r11, r11, ror #8\n\t"
                     "stmia %[s]!, {r8, r9, r10, r11}\n\t"
                     "ldr r12, [%[a], %[step]]\n\t"
                     "ldr lr, [%[b], %[step]]\n\t"
                     "sxtb16 r8, r12\n\t"
                     "sxtb16 r10, lr\n\t"
                     "sxtb16 r12, r12, ror #8\n\t"
                     "sxtb16 lr, lr, ror #8\n\t"
                     "stmia %[s]!, {r8, r10, r12, lr}\n\t"
                     "ldr r12, [%[b], %[step], lsl #1]\n\t"
                     "sxtb16 r10, r12\n\t"
                     "sxtb16 r12, r12, ror #8\n\t"
                     "stmia %[s]!, {r9, r10, r11, r12}\n\t"
                     "add %[a], %[a], %[row]\n\t"
                     "add %[b], %[b], %[row]\n\t"
                     "subs %[n], %[n], #1\n\t"
                     "bne 1b\n\t"
                     : [s] "+r"(slot), [n] "+r"(rows), [a] "+r"(a), [b] "+r"(b)
                     : [step] "r"(step), [row] "r"(row_step)
                     : "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory");
}
#else
MCUFLOW_INLINE void mcuflow_dsp_copy_pair3(const int8_t *a, const int8_t *b, int32_t rows,
                                           int32_t step, int32_t row_step, mcuflow_word_t *slot)
{
    for (; rows > 0; --rows, a += row_step, b += row_step) {
        slot = mcuflow_dsp_copy_pair(a, b, 3, step, slot);
    }
}

/* The same words as mcuflow_dsp_copy_pair3 (the overlap only saves loads). */
MCUFLOW_INLINE void mcuflow_dsp_copy_pair3_overlap(const int8_t *a, const int8_t *b,
                                                   int32_t rows, int32_t step, int32_t row_step,
                                                   mcuflow_word_t *slot)
{
    mcuflow_dsp_copy_pair3(a, b, rows, step, row_step, slot);
}
#endif

/* Two windows inside the input (first taps `a` and `b`) in one pass, whole words: a
 * contiguous run per window row, or one word per tap (three taps a row in one block). */
MCUFLOW_INLINE void mcuflow_dsp_gather_pair(const mcuflow_dsp_gather_t *s, const int8_t *a,
                                           const int8_t *b, mcuflow_word_t *columns)
{
    const int32_t k_h = s->g->k_h, k_w = s->g->k_w;
    if (s->row_words == 0 && k_w == 3) {
        const int32_t step = (int32_t)s->tap_step, row = (int32_t)s->row_step;
        if (b - a == 2 * (ptrdiff_t)step) {
            mcuflow_dsp_copy_pair3_overlap(a, b, k_h, step, row, columns);
        } else {
            mcuflow_dsp_copy_pair3(a, b, k_h, step, row, columns);
        }
        return;
    }
    const int32_t n = s->row_words != 0 ? s->row_words : k_w;
    const int32_t step = s->row_words != 0 ? 4 : (int32_t)s->tap_step;
    for (int32_t ky = 0; ky < k_h; ++ky, a += s->row_step, b += s->row_step) {
        columns = mcuflow_dsp_copy_pair(a, b, n, step, columns);
    }
}

/* A window inside the input, whole words per tap from `first` (its first tap). */
static void mcuflow_dsp_gather_inside(const mcuflow_dsp_gather_t *s, const int8_t *first,
                                      mcuflow_word_t *slot)
{
    const int32_t k_h = s->g->k_h, k_w = s->g->k_w, words = s->words;
    if (s->row_words != 0) { /* the taps of a row are contiguous */
        for (int32_t ky = 0; ky < k_h; ++ky, first += s->row_step) {
            slot = mcuflow_dsp_copy_words(first, s->row_words, slot);
        }
        return;
    }
    for (int32_t ky = 0; ky < k_h; ++ky, first += s->row_step) {
        const int8_t *src = first;
        for (int32_t kx = 0; kx < k_w; ++kx, src += s->tap_step) {
            slot = mcuflow_dsp_copy_words(src, words, slot);
        }
    }
}

/* Gather output pixel `at` into slot 0 or 1. */
static void mcuflow_dsp_gather(const mcuflow_dsp_gather_t *s, const mcuflow_dsp_pixel_t *at,
                               mcuflow_word_t *columns, int32_t slot)
{
    const mcuflow_window_t *g = s->g;
    const int8_t *first = mcuflow_dsp_inside(s, at);
    if (first != NULL) {
        mcuflow_dsp_gather_inside(s, first, columns + slot);
        return;
    }
    const int8_t *image = s->input + (size_t)at->b * s->image_bytes;
    const int32_t y0 = at->oy * g->stride_h - g->pad_top;
    const int32_t x0 = at->ox * g->stride_w - g->pad_left;
    if (s->mode == MCUFLOW_DSP_GATHER_PADDED) {
        mcuflow_dsp_gather_padded(g, image, y0, x0, columns + slot, s->end);
    } else if (s->mode == MCUFLOW_DSP_GATHER_ROWS) {
        mcuflow_dsp_gather_rows(g, image, y0, x0, columns + slot, s->row_words);
    } else if (g->k_h == 1 && g->k_w == 1) { /* never padded: one contiguous pixel */
        const int8_t *src = image + (size_t)y0 * s->line + (size_t)x0 * (size_t)g->in_c;
        mcuflow_dsp_run((mcuflow_half_t *)(columns + slot), 0, src, 0, g->in_c);
    } else if (s->mode == MCUFLOW_DSP_GATHER_WORDS) {
        mcuflow_dsp_gather_words(g, image, y0, x0, columns + slot);
    } else {
        mcuflow_dsp_gather_values(g, image, y0, x0, (mcuflow_half_t *)(columns + slot));
    }
}

/* Both pixels of a step: in one pass when both windows lie inside the input. */
static void mcuflow_dsp_gather2(const mcuflow_dsp_gather_t *s, const mcuflow_dsp_pixel_t *first,
                                const mcuflow_dsp_pixel_t *second, mcuflow_word_t *columns)
{
    const int8_t *a = mcuflow_dsp_inside(s, first);
    const int8_t *b = a != NULL ? mcuflow_dsp_inside(s, second) : NULL;
    if (b != NULL && (s->row_words != 0 || s->words == 1)) {
        mcuflow_dsp_gather_pair(s, a, b, columns);
        return;
    }
    mcuflow_dsp_gather(s, first, columns, 0);
    mcuflow_dsp_gather(s, second, columns, 1);
}

/* The next output pixel in raster order. */
MCUFLOW_INLINE void mcuflow_dsp_next(const mcuflow_dsp_gather_t *s, mcuflow_dsp_pixel_t *at)
{
    at->in += s->in_x;
    at->out += s->out_x;
    if (++at->ox == s->g->out_w) {
        at->ox = 0;
        at->in += s->in_row;
        at->out += s->out_row;
        if (++at->oy == s->g->out_h) {
            at->oy = 0;
            ++at->b;
            at->in += s->in_image;
            at->out += s->out_image;
        }
    }
}

/* mcuflow_dsp_channels or mcuflow_dsp_channels_exact, chosen once per layer. */
typedef void (*mcuflow_dsp_channels_fn)(const mcuflow_dsp_matrix_t *m,
                                        const mcuflow_dsp_requant_t *q,
                                        const mcuflow_word_t *columns, int8_t *out0,
                                        int8_t *out1);

/* Every channel of the gathered pixels, requantised by TFLite's arithmetic (EXACT). */
static void mcuflow_dsp_channels_exact(const mcuflow_dsp_matrix_t *m,
                                       const mcuflow_dsp_requant_t *q,
                                       const mcuflow_word_t *columns, int8_t *out0,
                                       int8_t *out1)
{
    const mcuflow_word_t *w = (const mcuflow_word_t *)m->weights;
    const size_t pair_words = 2 * (size_t)m->groups;
    for (int32_t o = 0; o < m->rows; o += 2, w += pair_words) {
        int32_t acc[4];
        const int32_t *rq = q->rq + (size_t)o * MCUFLOW_DSP_RQ_WORDS;
        mcuflow_dsp_pair2_chunked(m, w, columns, q->bias + o, acc);
        out1[o] = (int8_t)mcuflow_dsp_exact(acc[1], rq);
        out0[o] = (int8_t)mcuflow_dsp_exact(acc[0], rq);
        if (o + 1 < m->rows) {
            rq += MCUFLOW_DSP_RQ_WORDS;
            out1[o + 1] = (int8_t)mcuflow_dsp_exact(acc[3], rq);
            out0[o + 1] = (int8_t)mcuflow_dsp_exact(acc[2], rq);
        }
    }
}

/* Every channel of the gathered pixels. Pixel 1 is written first, so that a lone last pixel
 * (out1 == out0) ends with its own values. */
static void mcuflow_dsp_channels(const mcuflow_dsp_matrix_t *m, const mcuflow_dsp_requant_t *q,
                                 const mcuflow_word_t *columns, int8_t *out0, int8_t *out1)
{
    const mcuflow_word_t *w = (const mcuflow_word_t *)m->weights;
    const size_t pair_words = 2 * (size_t)m->groups;
    const int32_t pairs = m->rows >> 1;
    int32_t o = 0;
    if (m->chunk_groups >= m->groups) {
        mcuflow_dsp_rows2(w, columns, q->bias, q->rq, out0, out1, pairs, m->groups, q->negative);
        o = 2 * pairs;
        w += (size_t)pairs * pair_words;
    }
    for (; o < m->rows; o += 2, w += pair_words) {
        int32_t acc[4];
        const int32_t *rq = q->rq + (size_t)o * MCUFLOW_DSP_RQ_WORDS;
        mcuflow_dsp_pair2_chunked(m, w, columns, q->bias + o, acc);
        mcuflow_dsp_store2(acc[0], acc[1], rq, q->negative, out0 + o, out1 + o, 1);
        if (o + 1 < m->rows) {
            mcuflow_dsp_store2(acc[2], acc[3], rq + MCUFLOW_DSP_RQ_WORDS, q->negative,
                               out0 + o + 1, out1 + o + 1, 1);
        }
    }
}

static mcuflow_dsp_channels_fn mcuflow_dsp_channels_of(const mcuflow_dsp_requant_t *q)
{
    return q->mode == MCUFLOW_DSP_RQ_EXACT ? mcuflow_dsp_channels_exact : mcuflow_dsp_channels;
}

/* ---- pointwise convolutions of up to 16 input channels ---------------------------------- */

/* At most this many groups (16 input channels) run through mcuflow_dsp_pointwise_small. */
#define MCUFLOW_DSP_SMALL_GROUPS 4

/* Pixel pairs of a pointwise layer: the input at `in` (pixel 1 `in_second` bytes further), the
 * output at `out` (pixel 1 `out_second` bytes further), both moving on by two pixels. */
typedef struct {
    const int8_t *in;
    int8_t *out;
    int32_t pairs;
    int32_t in_second;
    int32_t out_second;
} mcuflow_dsp_pixels_t;

#if MCUFLOW_DSP_ASM
/* The state of mcuflow_dsp_pointwise_small in assembly, pushed on the stack in this order (r1
 * to r12) above 64 bytes of columns. Group 0 of a pixel pair lies at sp, group j > 0 at
 * sp + 16 (4 - groups + j): the code of groups 1 to 3 reads fixed offsets and is entered
 * part-way (`entry`) for fewer groups. */
typedef struct {
    const int32_t *rq;       /* +64, then r0 */
    const mcuflow_word_t *w; /* +68, then r5 */
    const int32_t *bias;     /* +72, then r6 */
    int8_t *out;             /* +76, then r7 */
    const int32_t *rq_end;   /* +80 */
    int32_t out_second;      /* +84 */
    int32_t negative;        /* +88 */
    const int8_t *in;        /* +92 */
    int32_t in_second;       /* +96 */
    int32_t pairs;           /* +100 */
    int32_t rest;            /* +104: offset of group 1's columns (64 when there is none) */
    int32_t entry;           /* +108: bytes of group code skipped plus the Thumb bit, then the
                                address entered */
} mcuflow_dsp_small_state_t;

/* Group 0 of a pair over both pixels, its accumulators started from the bias (r1, moved on):
 * columns at sp, otherwise as MCUFLOW_DSP_GROUP_R_ASM. */
#define MCUFLOW_DSP_SMALL_FIRST_ASM                                                             \
    "ldr r1, [r6], #8\n\t"                                                                     \
    "ldmia.w sp, {r8, r9, r10, r11}\n\t"                                                        \
    "ldrd r12, lr, [r5], #8\n\t"                                                               \
    "smlad r3, r8, r12, r1\n\t"                                                                \
    "smlad r4, r9, r12, r1\n\t"                                                                \
    "sxtb16 r12, r12\n\t"                                                                      \
    "smlad r2, r9, r12, r1\n\t"                                                                \
    "smlad r1, r8, r12, r1\n\t"                                                                \
    "smlad r3, r10, lr, r3\n\t"                                                                \
    "smlad r4, r11, lr, r4\n\t"                                                                \
    "sxtb16 lr, lr\n\t"                                                                        \
    "smlad r1, r10, lr, r1\n\t"                                                                \
    "smlad r2, r11, lr, r2\n\t"

/* A later group, its columns at sp + AT (52 bytes of code: every instruction 32 bits wide). */
#define MCUFLOW_DSP_SMALL_GROUP_ASM(AT, AT8)                                                    \
    "ldrd r8, r9, [sp, #" AT "]\n\t"                                                           \
    "ldrd r10, r11, [sp, #" AT8 "]\n\t"                                                        \
    "ldrd r12, lr, [r5], #8\n\t" MCUFLOW_DSP_GROUP_MACS_ASM
#define MCUFLOW_DSP_SMALL_GROUP_BYTES 52

/* One word of both pixels (r7 and r7 + r8, r7 moving on) as a slot word pair in r1-r4. */
#define MCUFLOW_DSP_SMALL_WORD_ASM                                                              \
    "ldr r4, [r7, r8]\n\t"                                                                     \
    "ldr r3, [r7], #4\n\t"                                                                     \
    "sxtb16 r1, r3\n\t"                                                                        \
    "sxtb16 r2, r4\n\t"                                                                        \
    "sxtb16 r3, r3, ror #8\n\t"                                                                \
    "sxtb16 r4, r4, ror #8\n\t"

/* Requantise `ACC` into the byte at `OUT` (MCUFLOW_DSP_STORE_R_ASM's registers but the negative
 * term in r11). */
#define MCUFLOW_DSP_SMALL_STORE_ASM(ACC, OUT, TIES)                                             \
    "ldrd r12, lr, [r0, #-8]\n\t"                                                              \
    "smlal r12, lr, " ACC ", r8\n\t" TIES                                                      \
    "asr lr, lr, r9\n\t"                                                                       \
    "ssat lr, #8, lr\n\t"                                                                      \
    "strb lr, " OUT "\n\t"
#define MCUFLOW_DSP_SMALL_TIES_ASM(ACC)                                                         \
    "lsr " ACC ", " ACC ", #31\n\tsmlal r12, lr, " ACC ", r11\n\t"

/* The whole layer: per pixel pair the columns onto the stack, then per channel pair (rq r0,
 * weights r5, bias r6, output r7) the groups, the extraction of B and the four outputs, pixel 1
 * first at r7 + r10. LOAD puts out_second in r10 (and rq_end or the negative term in r11), END
 * compares r0 with rq_end. */
#define MCUFLOW_DSP_SMALL_ASM(LOAD, END, T1, T0, T3, T2)                                        \
    "push {r7}\n\t"                                                                            \
    "ldmia r0, {r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12}\n\t"                        \
    MCUFLOW_DSP_ADR("lr", "5f")                                                                \
    "add r12, r12, lr\n\t"                                                                     \
    "push {r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12}\n\t"                             \
    "sub sp, sp, #64\n\t"                                                                      \
    "1:\n\t"                                                                                   \
    "ldrd r7, r8, [sp, #92]\n\t" MCUFLOW_DSP_SMALL_WORD_ASM                                     \
    "stmia sp, {r1, r2, r3, r4}\n\t"                                                           \
    "ldr r12, [sp, #104]\n\t"                                                                  \
    "add r12, sp, r12\n\t"                                                                     \
    "add lr, sp, #64\n\t"                                                                      \
    "b 3f\n\t"                                                                                 \
    "2:\n\t" MCUFLOW_DSP_SMALL_WORD_ASM                                                         \
    "stmia r12!, {r1, r2, r3, r4}\n\t"                                                         \
    "3:\n\t"                                                                                   \
    "cmp r12, lr\n\t"                                                                          \
    "bne 2b\n\t"                                                                               \
    "add r7, r7, r8\n\t"                                                                       \
    "str r7, [sp, #92]\n\t"                                                                    \
    "add r12, sp, #64\n\t"                                                                     \
    "ldmia r12, {r0, r5, r6, r7}\n\t"                                                          \
    "4:\n\t" MCUFLOW_DSP_SMALL_FIRST_ASM                                                        \
    "ldr pc, [sp, #108]\n\t"                                                                   \
    "5:\n\t" MCUFLOW_DSP_SMALL_GROUP_ASM("16", "24") MCUFLOW_DSP_SMALL_GROUP_ASM("32", "40")    \
        MCUFLOW_DSP_SMALL_GROUP_ASM("48", "56")                                                 \
    "ldr r12, [r6, #-4]\n\t"                                                                   \
    "sub r3, r3, r1\n\t"                                                                       \
    "add r3, r12, r3, asr #8\n\t"                                                              \
    "sub r4, r4, r2\n\t"                                                                       \
    "add r4, r12, r4, asr #8\n\t" LOAD                                                          \
    "ldrd r8, r9, [r0], #16\n\t"                                                               \
    MCUFLOW_DSP_SMALL_STORE_ASM("r2", "[r7, r10]", T1)                                          \
    MCUFLOW_DSP_SMALL_STORE_ASM("r1", "[r7], #1", T0)                                           \
    "ldrd r8, r9, [r0], #16\n\t"                                                               \
    MCUFLOW_DSP_SMALL_STORE_ASM("r4", "[r7, r10]", T3)                                          \
    MCUFLOW_DSP_SMALL_STORE_ASM("r3", "[r7], #1", T2) END                                       \
    "bne 4b\n\t"                                                                               \
    "ldr r7, [sp, #76]\n\t"                                                                    \
    "add r7, r7, r10, lsl #1\n\t"                                                              \
    "str r7, [sp, #76]\n\t"                                                                    \
    "ldr r1, [sp, #100]\n\t"                                                                   \
    "subs r1, r1, #1\n\t"                                                                      \
    "str r1, [sp, #100]\n\t"                                                                   \
    "bne 1b\n\t"                                                                               \
    "add sp, sp, #112\n\t"                                                                     \
    "pop {r7}\n\t"

/* `p->pairs` (> 0) pixel pairs of a pointwise layer of `m->groups` <= 4 groups (in_c =
 * 4 groups), an even number of channels and B extracted once. */
static void mcuflow_dsp_pointwise_small(const mcuflow_dsp_matrix_t *m,
                                        const mcuflow_dsp_requant_t *q,
                                        const mcuflow_dsp_pixels_t *p, mcuflow_word_t *columns)
{
    const int32_t groups = m->groups;
    mcuflow_dsp_small_state_t state = {
        q->rq, (const mcuflow_word_t *)m->weights, q->bias, p->out,
        q->rq + (size_t)m->rows * MCUFLOW_DSP_RQ_WORDS, p->out_second, q->negative, p->in,
        p->in_second, p->pairs, 64 - 16 * (groups - 1),
        (MCUFLOW_DSP_SMALL_GROUPS - groups) * MCUFLOW_DSP_SMALL_GROUP_BYTES + 1};
    register mcuflow_dsp_small_state_t *r0 __asm__("r0") = &state;
    (void)columns;
    if (q->negative != 0) {
        __asm__ volatile(MCUFLOW_DSP_SMALL_ASM("ldrd r10, r11, [sp, #84]\n\t",
                                               "ldr r12, [sp, #80]\n\tcmp r0, r12\n\t",
                                               MCUFLOW_DSP_SMALL_TIES_ASM("r2"),
                                               MCUFLOW_DSP_SMALL_TIES_ASM("r1"),
                                               MCUFLOW_DSP_SMALL_TIES_ASM("r4"),
                                               MCUFLOW_DSP_SMALL_TIES_ASM("r3"))
                         : "+r"(r0)
                         :
                         : MCUFLOW_DSP_LOOP_CLOBBERS);
    } else {
        __asm__ volatile(MCUFLOW_DSP_SMALL_ASM("ldrd r11, r10, [sp, #80]\n\t", "cmp r0, r11\n\t",
                                               "", "", "", "")
                         : "+r"(r0)
                         :
                         : MCUFLOW_DSP_LOOP_CLOBBERS);
    }
}
#else
static void mcuflow_dsp_pointwise_small(const mcuflow_dsp_matrix_t *m,
                                        const mcuflow_dsp_requant_t *q,
                                        const mcuflow_dsp_pixels_t *p, mcuflow_word_t *columns)
{
    const int32_t groups = m->groups;
    const int8_t *in = p->in;
    int8_t *out = p->out;
    for (int32_t left = p->pairs; left > 0; --left) {
        mcuflow_dsp_copy_words(in, groups, columns);
        mcuflow_dsp_copy_words(in + p->in_second, groups, columns + 1);
        mcuflow_dsp_rows2((const mcuflow_word_t *)m->weights, columns, q->bias, q->rq, out,
                          out + p->out_second, m->rows >> 1, groups, q->negative);
        in += 2 * (size_t)(4 * groups);
        out += 2 * (size_t)p->out_second;
    }
}
#endif

/* True when mcuflow_dsp_pointwise_small computes the layer (requantisation FAST). */
static int mcuflow_dsp_small(const mcuflow_dsp_matrix_t *m, const mcuflow_dsp_requant_t *q)
{
    return m->groups <= MCUFLOW_DSP_SMALL_GROUPS && m->chunk_groups >= m->groups &&
           (m->rows & 1) == 0 && q->mode == MCUFLOW_DSP_RQ_FAST;
}

/* mcuflow_dsp_pointwise through mcuflow_dsp_pointwise_small: the pixel pairs, then a lone last
 * pixel as a pair of itself; the fused activation clamps the output at the end (in one pass
 * when it is dense, else pixel by pixel: a channel slice of a concatenation). */
MCUFLOW_DSP_OUTLINE void mcuflow_dsp_pointwise_pairs(const mcuflow_window_t *g,
                                                     const mcuflow_dsp_matrix_t *m,
                                                     const mcuflow_dsp_requant_t *q,
                                                     const int8_t *input, int8_t *output,
                                                     mcuflow_word_t *columns, int32_t pixels)
{
    const size_t step = (size_t)g->out_pixel_step;
    mcuflow_dsp_pixels_t p = {input, output, pixels >> 1, g->in_c, g->out_pixel_step};
    if (p.pairs > 0) {
        mcuflow_dsp_pointwise_small(m, q, &p, columns);
    }
    if (pixels & 1) {
        const size_t done = (size_t)pixels - 1;
        mcuflow_dsp_pixels_t last = {input + done * (size_t)g->in_c, output + done * step, 1, 0,
                                     0};
        mcuflow_dsp_pointwise_small(m, q, &last, columns);
    }
    if (!mcuflow_dsp_narrow(q)) {
        return;
    }
    if (step == (size_t)m->rows) {
        mcuflow_dsp_clamp(q, output, pixels * m->rows);
        return;
    }
    for (int32_t k = 0; k < pixels; ++k) {
        mcuflow_dsp_clamp(q, output + (size_t)k * step, m->rows);
    }
}

/* A 1x1 convolution with stride 1: pixel p reads input p and writes output p, so both move
 * by a constant step. */
static void mcuflow_dsp_pointwise(const mcuflow_window_t *g, const mcuflow_dsp_matrix_t *m,
                                  const mcuflow_dsp_requant_t *q, const int8_t *input,
                                  int8_t *output, mcuflow_word_t *columns, int32_t pixels)
{
    const int32_t words = g->in_c / 4, rows = m->rows;
    const int narrow = mcuflow_dsp_narrow(q);
    const mcuflow_dsp_channels_fn channels = mcuflow_dsp_channels_of(q);
    const size_t in_step = (size_t)g->in_c, out_step = (size_t)g->out_pixel_step;
    for (int32_t p = 0; p < pixels; p += 2, input += 2 * in_step, output += 2 * out_step) {
        const size_t second = p + 1 < pixels ? 1 : 0;
        mcuflow_dsp_copy_words(input, words, columns);
        mcuflow_dsp_copy_words(input + second * in_step, words, columns + 1);
        int8_t *out1 = output + second * out_step;
        channels(m, q, columns, output, out1);
        if (narrow) {
            mcuflow_dsp_clamp(q, out1, rows);
            mcuflow_dsp_clamp(q, output, rows);
        }
    }
}

/* Both pixels of a step in one output row, `first` and the pixel right of it: in one pass when
 * `pairs` (whole-word pair gathering applies) and both windows lie inside the input, which for
 * a window row inside the input is a column range and the input's end. */
static void mcuflow_dsp_gather_row_pair(const mcuflow_dsp_gather_t *s, int pairs,
                                        const mcuflow_dsp_pixel_t *first, mcuflow_word_t *columns)
{
    const ptrdiff_t next = first->in + s->in_x;
    if (pairs && first->ox >= s->ox_lo && first->ox < s->ox_hi && next < s->limit) {
        mcuflow_dsp_gather_pair(s, s->input + first->in, s->input + next, columns);
        return;
    }
    const mcuflow_dsp_pixel_t second = {first->b, first->oy, first->ox + 1, next, 0};
    mcuflow_dsp_gather(s, first, columns, 0);
    mcuflow_dsp_gather(s, &second, columns, 1);
}

/* mcuflow_conv2d_dsp_s8 of an even output width: pixel pairs never straddle output rows, so
 * rows are walked as such and a pair's pixels differ by one step along the row. */
static void mcuflow_dsp_conv_rows(const mcuflow_dsp_gather_t *s, const mcuflow_dsp_matrix_t *m,
                                  const mcuflow_dsp_requant_t *q, int8_t *output,
                                  mcuflow_word_t *columns)
{
    const mcuflow_window_t *g = s->g;
    const int narrow = mcuflow_dsp_narrow(q);
    const mcuflow_dsp_channels_fn channels = mcuflow_dsp_channels_of(q);
    const int whole = s->row_words != 0 || s->words == 1;
    mcuflow_dsp_pixel_t at = {0, 0, 0, s->in_start, 0};
    for (at.b = 0; at.b < g->batches; ++at.b, at.in += s->in_image, at.out += s->out_image) {
        for (at.oy = 0; at.oy < g->out_h; ++at.oy, at.in += s->in_row, at.out += s->out_row) {
            const int pairs = whole && at.oy >= s->oy_lo && at.oy <= s->oy_hi;
            for (at.ox = 0; at.ox < g->out_w; at.ox += 2) {
                mcuflow_dsp_gather_row_pair(s, pairs, &at, columns);
                int8_t *out0 = output + at.out;
                int8_t *out1 = out0 + s->out_x;
                channels(m, q, columns, out0, out1);
                if (narrow) {
                    mcuflow_dsp_clamp(q, out1, m->rows);
                    mcuflow_dsp_clamp(q, out0, m->rows);
                }
                at.in += 2 * s->in_x;
                at.out += 2 * s->out_x;
            }
        }
    }
}

void mcuflow_conv2d_dsp_s8(const mcuflow_window_t *g, const mcuflow_dsp_matrix_t *m,
                           const mcuflow_dsp_requant_t *q, const int8_t *input, int8_t *output,
                           mcuflow_word_t *columns)
{
    const int32_t pixels = g->batches * g->out_h * g->out_w;
    if (m->gather == MCUFLOW_DSP_GATHER_WORDS && g->k_h == 1 && g->k_w == 1 &&
        g->stride_h == 1 && g->stride_w == 1) {
        if (mcuflow_dsp_small(m, q)) {
            mcuflow_dsp_pointwise_pairs(g, m, q, input, output, columns, pixels);
        } else {
            mcuflow_dsp_pointwise(g, m, q, input, output, columns, pixels);
        }
        return;
    }
    const int narrow = mcuflow_dsp_narrow(q);
    const mcuflow_dsp_channels_fn channels = mcuflow_dsp_channels_of(q);
    mcuflow_dsp_gather_t gather;
    mcuflow_dsp_gather_setup(g, m->gather, input, &gather);
    if ((g->out_w & 1) == 0) {
        mcuflow_dsp_conv_rows(&gather, m, q, output, columns);
        return;
    }
    mcuflow_dsp_pixel_t first = {0, 0, 0, gather.in_start, 0};
    for (int32_t p = 0; p < pixels; p += 2) {
        mcuflow_dsp_pixel_t second = first;
        if (p + 1 < pixels) {
            mcuflow_dsp_next(&gather, &second);
        }
        mcuflow_dsp_gather2(&gather, &first, &second, columns);
        int8_t *out0 = output + first.out;
        int8_t *out1 = output + second.out;
        channels(m, q, columns, out0, out1);
        if (narrow) {
            mcuflow_dsp_clamp(q, out1, m->rows);
            mcuflow_dsp_clamp(q, out0, m->rows);
        }
        first = second;
        mcuflow_dsp_next(&gather, &first);
    }
}

/* ---- FULLY_CONNECTED -------------------------------------------------------------------- */

/* One input row as int16 in SXTB16 order; the last partial group value by value. */
static void mcuflow_dsp_gather_row(const int8_t *x, int32_t depth, mcuflow_word_t *row)
{
    int32_t k = 0;
    for (; k + 4 <= depth; k += 4, row += 2) {
        const uint32_t v = mcuflow_read_u32(x + k);
        row[0] = mcuflow_sxtb16(v);
        row[1] = mcuflow_sxtb16_ror8(v);
    }
    if (k < depth) {
        /* Columns c0..c3 of the group sit at halfwords 0, 2, 1, 3; missing ones read as 0. */
        static const uint8_t lane[4] = {0, 2, 1, 3};
        mcuflow_half_t *half = (mcuflow_half_t *)row;
        for (int32_t j = 0; j < 4; ++j) {
            half[lane[j]] = (uint16_t)(int16_t)(k + j < depth ? x[k + j] : 0);
        }
    }
}

/* One group of 4 columns of two channel pairs over one gathered row; `acc` holds a, c, a', c'. */
static inline void mcuflow_dsp_group4(const mcuflow_word_t **w, const mcuflow_word_t **x,
                                      int32_t *acc)
{
    uint32_t x0, x1, w0, w1;
    mcuflow_load2(x, &x0, &x1);
    mcuflow_load2(w, &w0, &w1);
    uint32_t s = mcuflow_sxtb16(w0);
    acc[0] = mcuflow_smlad(x0, s, acc[0]);
    acc[1] = mcuflow_smlad(x0, w0, acc[1]);
    s = mcuflow_sxtb16(w1);
    acc[0] = mcuflow_smlad(x1, s, acc[0]);
    acc[1] = mcuflow_smlad(x1, w1, acc[1]);
    mcuflow_load2(w, &w0, &w1);
    s = mcuflow_sxtb16(w0);
    acc[2] = mcuflow_smlad(x0, s, acc[2]);
    acc[3] = mcuflow_smlad(x0, w0, acc[3]);
    s = mcuflow_sxtb16(w1);
    acc[2] = mcuflow_smlad(x1, s, acc[2]);
    acc[3] = mcuflow_smlad(x1, w1, acc[3]);
}

#if MCUFLOW_DSP_ASM
/* One group of mcuflow_dsp_group4 in assembly: LDRD of the row's two words (r12, lr), LDM of
 * the two pairs' four weight words (r8-r11). */
#define MCUFLOW_DSP_GROUP4_ASM                                                                  \
    "ldrd r12, lr, [%[x]], #8\n\t"                                                             \
    "ldmia %[w]!, {r8, r9, r10, r11}\n\t"                                                       \
    "smlad %[s1], r12, r8, %[s1]\n\t"                                                           \
    "sxtb16 r8, r8\n\t"                                                                        \
    "smlad %[s0], r12, r8, %[s0]\n\t"                                                           \
    "smlad %[s1], lr, r9, %[s1]\n\t"                                                            \
    "sxtb16 r9, r9\n\t"                                                                        \
    "smlad %[s0], lr, r9, %[s0]\n\t"                                                            \
    "smlad %[s3], r12, r10, %[s3]\n\t"                                                          \
    "sxtb16 r10, r10\n\t"                                                                      \
    "smlad %[s2], r12, r10, %[s2]\n\t"                                                          \
    "smlad %[s3], lr, r11, %[s3]\n\t"                                                           \
    "sxtb16 r11, r11\n\t"                                                                      \
    "smlad %[s2], lr, r11, %[s2]\n\t"
#endif

/* `fours` times four groups of two channel pairs over one row (`fours` > 0). */
MCUFLOW_DSP_FOURS(mcuflow_dsp_fours4, MCUFLOW_DSP_GROUP4_ASM, mcuflow_dsp_group4)

/* Two channel pairs (a, b), (a', b') over one gathered row, B extracted every `chunk` groups;
 * `acc` holds the biases of a, b, a', b' and gets their sums. */
MCUFLOW_INLINE void mcuflow_dsp_quad(const mcuflow_word_t **w, const mcuflow_word_t *row,
                                     int32_t groups, int32_t chunk, int32_t *acc)
{
    int32_t sums[4] = {acc[0], acc[0], acc[2], acc[2]};
    const mcuflow_word_t *x = row;
    for (int32_t left = groups; left > 0; left -= chunk) {
        const int32_t n = left < chunk ? left : chunk;
        if (n >> 2) {
            mcuflow_dsp_fours4(w, &x, n >> 2, sums);
        }
        for (int32_t rest = n & 3; rest > 0; --rest) {
            mcuflow_dsp_group4(w, &x, sums);
        }
        acc[1] += mcuflow_wrapped_diff_8(sums[1], sums[0]);
        acc[3] += mcuflow_wrapped_diff_8(sums[3], sums[2]);
        sums[1] = sums[0];
        sums[3] = sums[2];
    }
    acc[0] = sums[0];
    acc[2] = sums[2];
}

/* How the outputs of a quad add the negative term: never, the layer's one (q->negative), or
 * each channel's own (q->negatives). */
#define MCUFLOW_DSP_TIES_NONE 0
#define MCUFLOW_DSP_TIES_LAYER 1
#define MCUFLOW_DSP_TIES_ROWS 2

/* Requantise and store `count` (1 to 4) outputs of a quad; output j adds the negative term
 * negs[j], or `negative` when `negs` is NULL. */
MCUFLOW_INLINE void mcuflow_dsp_store4(const int32_t *acc, const int32_t *rq, const int32_t *negs,
                                       int32_t negative, int8_t *out, int32_t count)
{
    for (int32_t j = 0; j < count; ++j, rq += MCUFLOW_DSP_RQ_WORDS) {
        const int32_t d = negs != NULL ? negs[j] : negative;
        out[j] = (int8_t)mcuflow_dsp_requant(acc[j], rq[0], rq + 2, rq[1], d);
    }
}

/* All four outputs of a quad; `ties` one of MCUFLOW_DSP_TIES_* (`negs` used by _ROWS only). */
#if MCUFLOW_DSP_ASM
#define MCUFLOW_DSP_QUAD_OUT_ASM(ACC, R, O, TIES)                                               \
    "ldrd %[lo], %[hi], [%[rq], #" #R " + 8]\n\t"                                              \
    "ldrd %[m], %[sh], [%[rq], #" #R "]\n\t"                                                    \
    "smlal %[lo], %[hi], %[" ACC "], %[m]\n\t" TIES                                             \
    "asr %[hi], %[hi], %[sh]\n\t"                                                               \
    "ssat %[hi], #8, %[hi]\n\t"                                                                 \
    "strb %[hi], [%[out], #" #O "]\n\t"
#define MCUFLOW_DSP_QUAD_TIES_ASM(ACC)                                                          \
    "lsr %[" ACC "], %[" ACC "], #31\n\tsmlal %[lo], %[hi], %[" ACC "], %[neg]\n\t"
/* The channel's own negative term, loaded into the multiplier's register (used by then). */
#define MCUFLOW_DSP_QUAD_ROW_ASM(ACC, O)                                                        \
    "ldr %[m], [%[negs], #" #O " * 4]\n\t"                                                      \
    "lsr %[" ACC "], %[" ACC "], #31\n\tsmlal %[lo], %[hi], %[" ACC "], %[m]\n\t"

MCUFLOW_INLINE void mcuflow_dsp_store_quad(int32_t *acc, const int32_t *rq, const int32_t *negs,
                                           int32_t negative, int8_t *out, int ties)
{
    uint32_t lo, hi, m, sh;
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    if (ties == MCUFLOW_DSP_TIES_ROWS) {
        __asm__ volatile(
            MCUFLOW_DSP_QUAD_OUT_ASM("a0", 0, 0, MCUFLOW_DSP_QUAD_ROW_ASM("a0", 0))
                MCUFLOW_DSP_QUAD_OUT_ASM("a1", 16, 1, MCUFLOW_DSP_QUAD_ROW_ASM("a1", 1))
                    MCUFLOW_DSP_QUAD_OUT_ASM("a2", 32, 2, MCUFLOW_DSP_QUAD_ROW_ASM("a2", 2))
                        MCUFLOW_DSP_QUAD_OUT_ASM("a3", 48, 3, MCUFLOW_DSP_QUAD_ROW_ASM("a3", 3))
            : [lo] "=&r"(lo), [hi] "=&r"(hi), [m] "=&r"(m), [sh] "=&r"(sh), [a0] "+r"(a0),
              [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3)
            : [rq] "r"(rq), [out] "r"(out), [negs] "r"(negs)
            : "memory");
    } else if (ties == MCUFLOW_DSP_TIES_LAYER) {
        __asm__ volatile(
            MCUFLOW_DSP_QUAD_OUT_ASM("a0", 0, 0, MCUFLOW_DSP_QUAD_TIES_ASM("a0"))
                MCUFLOW_DSP_QUAD_OUT_ASM("a1", 16, 1, MCUFLOW_DSP_QUAD_TIES_ASM("a1"))
                    MCUFLOW_DSP_QUAD_OUT_ASM("a2", 32, 2, MCUFLOW_DSP_QUAD_TIES_ASM("a2"))
                        MCUFLOW_DSP_QUAD_OUT_ASM("a3", 48, 3, MCUFLOW_DSP_QUAD_TIES_ASM("a3"))
            : [lo] "=&r"(lo), [hi] "=&r"(hi), [m] "=&r"(m), [sh] "=&r"(sh), [a0] "+r"(a0),
              [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3)
            : [rq] "r"(rq), [out] "r"(out), [neg] "r"(negative)
            : "memory");
    } else {
        __asm__ volatile(MCUFLOW_DSP_QUAD_OUT_ASM("a0", 0, 0, "")
                             MCUFLOW_DSP_QUAD_OUT_ASM("a1", 16, 1, "")
                                 MCUFLOW_DSP_QUAD_OUT_ASM("a2", 32, 2, "")
                                     MCUFLOW_DSP_QUAD_OUT_ASM("a3", 48, 3, "")
                         : [lo] "=&r"(lo), [hi] "=&r"(hi), [m] "=&r"(m), [sh] "=&r"(sh)
                         : [a0] "r"(a0), [a1] "r"(a1), [a2] "r"(a2), [a3] "r"(a3),
                           [rq] "r"(rq), [out] "r"(out)
                         : "memory");
    }
}
#else
MCUFLOW_INLINE void mcuflow_dsp_store_quad(int32_t *acc, const int32_t *rq, const int32_t *negs,
                                           int32_t negative, int8_t *out, int ties)
{
    mcuflow_dsp_store4(acc, rq, ties == MCUFLOW_DSP_TIES_ROWS ? negs : NULL,
                       ties == MCUFLOW_DSP_TIES_LAYER ? negative : 0, out, 4);
}
#endif

/* The full quads of one gathered input row; `negs` (per channel, for _ROWS) may be NULL. */
MCUFLOW_INLINE void mcuflow_dsp_quads(const mcuflow_word_t **w, const mcuflow_word_t *row,
                                      const int32_t *bias, const int32_t *rq, const int32_t *negs,
                                      int8_t *out, int32_t quads, int32_t groups, int32_t chunk,
                                      int32_t negative, int ties)
{
    for (; quads > 0; --quads, bias += 4, out += 4, rq += 4 * MCUFLOW_DSP_RQ_WORDS) {
        int32_t acc[4] = {bias[0], bias[1], bias[2], bias[3]};
        mcuflow_dsp_quad(w, row, groups, chunk, acc);
        mcuflow_dsp_store_quad(acc, rq, negs, negative, out, ties);
        if (ties == MCUFLOW_DSP_TIES_ROWS) {
            negs += 4;
        }
    }
}

#if MCUFLOW_DSP_ASM
/* The state of mcuflow_dsp_quads_whole in assembly, pushed on the stack in this order (r1-r6,
 * r8) below the caller's r7, which the loop borrows as its group counter. */
typedef struct {
    const int32_t *bias;
    int8_t *out;
    const mcuflow_word_t *row;
    int32_t blocks; /* blocks of eight groups, the first one entered part-way */
    int32_t entry;  /* bytes of the first block skipped, plus the Thumb bit */
    const int32_t *rq_end;
    int32_t negative;
    const mcuflow_word_t *w; /* then loaded into r5 and r0 */
    const int32_t *rq;
} mcuflow_dsp_quads_state_t;

/* One group of mcuflow_dsp_group4 with fixed registers: a r1, c r2, a' r3, c' r4, weights r5,
 * row r6. Every instruction is 32 bits wide: a group is MCUFLOW_DSP_GROUP4_BYTES of code. */
#define MCUFLOW_DSP_GROUP4_R_ASM                                                                \
    "ldrd r12, lr, [r6], #8\n\t"                                                               \
    "ldmia.w r5!, {r8, r9, r10, r11}\n\t"                                                       \
    "smlad r2, r12, r8, r2\n\t"                                                                \
    "sxtb16 r8, r8\n\t"                                                                        \
    "smlad r1, r12, r8, r1\n\t"                                                                \
    "smlad r2, lr, r9, r2\n\t"                                                                 \
    "sxtb16 r9, r9\n\t"                                                                        \
    "smlad r1, lr, r9, r1\n\t"                                                                 \
    "smlad r4, r12, r10, r4\n\t"                                                               \
    "sxtb16 r10, r10\n\t"                                                                      \
    "smlad r3, r12, r10, r3\n\t"                                                               \
    "smlad r4, lr, r11, r4\n\t"                                                                \
    "sxtb16 r11, r11\n\t"                                                                      \
    "smlad r3, lr, r11, r3\n\t"
#define MCUFLOW_DSP_GROUP4_BYTES 56

/* The whole loop over quads (rq r0, weights r5); TIES as for MCUFLOW_DSP_ROWS_ASM, the groups
 * as Duff's device the same way. */
#define MCUFLOW_DSP_QUADS_ASM(LOAD_NEGATIVE, T0, T1, T2, T3)                                    \
    "push {r7}\n\t"                                                                            \
    "ldmia r0, {r1, r2, r3, r4, r5, r6, r8}\n\t"                                               \
    MCUFLOW_DSP_ADR("r7", "2f")                                                                \
    "add r5, r5, r7\n\t"                                                                       \
    "push {r1, r2, r3, r4, r5, r6, r8}\n\t"                                                    \
    "ldrd r5, r0, [r0, #28]\n\t"                                                               \
    "1:\n\t"                                                                                   \
    "ldr r12, [sp, #0]\n\t"                                                                    \
    "ldr r1, [r12], #16\n\t"                                                                   \
    "ldr r3, [r12, #-8]\n\t"                                                                   \
    "str r12, [sp, #0]\n\t"                                                                    \
    "mov r2, r1\n\t"                                                                           \
    "mov r4, r3\n\t"                                                                           \
    "ldr r6, [sp, #8]\n\t"                                                                     \
    "ldr r7, [sp, #12]\n\t"                                                                    \
    "ldr pc, [sp, #16]\n\t"                                                                    \
    "2:\n\t" MCUFLOW_DSP_GROUP4_R_ASM MCUFLOW_DSP_GROUP4_R_ASM MCUFLOW_DSP_GROUP4_R_ASM         \
        MCUFLOW_DSP_GROUP4_R_ASM MCUFLOW_DSP_GROUP4_R_ASM MCUFLOW_DSP_GROUP4_R_ASM              \
            MCUFLOW_DSP_GROUP4_R_ASM MCUFLOW_DSP_GROUP4_R_ASM                                   \
    "subs r7, r7, #1\n\t"                                                                      \
    "bne 2b\n\t"                                                                               \
    "ldr r12, [sp, #0]\n\t"                                                                    \
    "ldr lr, [r12, #-12]\n\t"                                                                  \
    "ldr r12, [r12, #-4]\n\t"                                                                  \
    "sub r2, r2, r1\n\t"                                                                       \
    "add r2, lr, r2, asr #8\n\t"                                                               \
    "sub r4, r4, r3\n\t"                                                                       \
    "add r4, r12, r4, asr #8\n\t"                                                              \
    "ldr r10, [sp, #4]\n\t" LOAD_NEGATIVE                                                       \
    "ldrd r8, r9, [r0], #16\n\t" MCUFLOW_DSP_STORE_R_ASM("r1", "r10", T0)                       \
    "ldrd r8, r9, [r0], #16\n\t" MCUFLOW_DSP_STORE_R_ASM("r2", "r10", T1)                       \
    "ldrd r8, r9, [r0], #16\n\t" MCUFLOW_DSP_STORE_R_ASM("r3", "r10", T2)                       \
    "ldrd r8, r9, [r0], #16\n\t" MCUFLOW_DSP_STORE_R_ASM("r4", "r10", T3)                       \
    "str r10, [sp, #4]\n\t"                                                                    \
    "ldr r12, [sp, #20]\n\t"                                                                   \
    "cmp r0, r12\n\t"                                                                          \
    "bne 1b\n\t"                                                                               \
    "add sp, sp, #28\n\t"                                                                      \
    "pop {r7}\n\t"

/* mcuflow_dsp_quads when B needs no extraction before the end (chunk >= groups) and the
 * layer has one negative term (`ties` _LAYER or _NONE). */
static void mcuflow_dsp_quads_whole(const mcuflow_word_t **w, const mcuflow_word_t *row,
                                    const int32_t *bias, const int32_t *rq, int8_t *out,
                                    int32_t quads, int32_t groups, int32_t negative)
{
    mcuflow_dsp_quads_state_t state = {bias, out, row, (groups + 7) >> 3,
                                       mcuflow_dsp_duff8_entry(groups, MCUFLOW_DSP_GROUP4_BYTES),
                                       rq + (size_t)quads * 4 * MCUFLOW_DSP_RQ_WORDS, negative,
                                       *w, rq};
    register mcuflow_dsp_quads_state_t *r0 __asm__("r0") = &state;
    if (quads <= 0) {
        return;
    }
    *w += (size_t)quads * 4 * (size_t)groups;
    if (negative != 0) {
        __asm__ volatile(MCUFLOW_DSP_QUADS_ASM("ldr r7, [sp, #24]\n\t",
                                               MCUFLOW_DSP_TIES_R_ASM("r1"),
                                               MCUFLOW_DSP_TIES_R_ASM("r2"),
                                               MCUFLOW_DSP_TIES_R_ASM("r3"),
                                               MCUFLOW_DSP_TIES_R_ASM("r4"))
                         : "+r"(r0)
                         :
                         : MCUFLOW_DSP_LOOP_CLOBBERS);
    } else {
        __asm__ volatile(MCUFLOW_DSP_QUADS_ASM("", "", "", "", "")
                         : "+r"(r0)
                         :
                         : MCUFLOW_DSP_LOOP_CLOBBERS);
    }
}
#else
static void mcuflow_dsp_quads_whole(const mcuflow_word_t **w, const mcuflow_word_t *row,
                                    const int32_t *bias, const int32_t *rq, int8_t *out,
                                    int32_t quads, int32_t groups, int32_t negative)
{
    if (negative != 0) {
        mcuflow_dsp_quads(w, row, bias, rq, NULL, out, quads, groups, groups, negative,
                          MCUFLOW_DSP_TIES_LAYER);
    } else {
        mcuflow_dsp_quads(w, row, bias, rq, NULL, out, quads, groups, groups, 0,
                          MCUFLOW_DSP_TIES_NONE);
    }
}
#endif

/* Every output channel of one gathered input row, CLAMPED or SCALED (`clamped`, a constant of
 * the two instances). */
MCUFLOW_INLINE void mcuflow_dsp_fc_row_general(const mcuflow_dsp_matrix_t *m,
                                               const mcuflow_dsp_requant_t *q,
                                               const mcuflow_word_t *row, int8_t *out,
                                               int clamped)
{
    const mcuflow_word_t *w = (const mcuflow_word_t *)m->weights;
    const int32_t groups = m->groups, chunk = m->chunk_groups, rows = m->rows;
    for (int32_t o = 0; o < rows; o += 4) {
        int32_t acc[4] = {q->bias[o], q->bias[o + 1], q->bias[o + 2], q->bias[o + 3]};
        mcuflow_dsp_quad(&w, row, groups, chunk, acc);
        const int32_t count = rows - o < 4 ? rows - o : 4;
        for (int32_t j = 0; j < count; ++j) {
            const size_t c = (size_t)(o + j);
            out[c] = (int8_t)(clamped ? mcuflow_dsp_clamped(acc[j],
                                                            q->rq + c * MCUFLOW_DSP_CLAMPED_WORDS)
                                      : mcuflow_ssat8(q->scaled(acc[j], q->scales[c]) +
                                                      q->output_offset));
        }
    }
}

/* Every output channel of one gathered input row. */
static void mcuflow_dsp_fc_row(const mcuflow_dsp_matrix_t *m, const mcuflow_dsp_requant_t *q,
                               const mcuflow_word_t *row, int8_t *out)
{
    if (q->mode == MCUFLOW_DSP_RQ_CLAMPED) {
        mcuflow_dsp_fc_row_general(m, q, row, out, 1);
        return;
    }
    if (q->mode == MCUFLOW_DSP_RQ_SCALED) {
        mcuflow_dsp_fc_row_general(m, q, row, out, 0);
        return;
    }
    const mcuflow_word_t *w = (const mcuflow_word_t *)m->weights;
    const int32_t groups = m->groups, chunk = m->chunk_groups, negative = q->negative;
    const int32_t quads = m->rows >> 2;
    const int32_t *bias = q->bias + 4 * quads, *negs = q->negatives;
    const int32_t *rq = q->rq + (size_t)quads * 4 * MCUFLOW_DSP_RQ_WORDS;
    if (negs != NULL) {
        mcuflow_dsp_quads(&w, row, q->bias, q->rq, negs, out, quads, groups, chunk, 0,
                          MCUFLOW_DSP_TIES_ROWS);
    } else if (chunk >= groups) {
        mcuflow_dsp_quads_whole(&w, row, q->bias, q->rq, out, quads, groups, negative);
    } else if (negative != 0) {
        mcuflow_dsp_quads(&w, row, q->bias, q->rq, NULL, out, quads, groups, chunk, negative,
                          MCUFLOW_DSP_TIES_LAYER);
    } else {
        mcuflow_dsp_quads(&w, row, q->bias, q->rq, NULL, out, quads, groups, chunk, 0,
                          MCUFLOW_DSP_TIES_NONE);
    }
    out += 4 * quads;
    if (m->rows & 3) {
        int32_t acc[4] = {bias[0], bias[1], bias[2], bias[3]};
        mcuflow_dsp_quad(&w, row, groups, chunk, acc);
        mcuflow_dsp_store4(acc, rq, negs != NULL ? negs + 4 * quads : NULL, negative, out,
                           m->rows & 3);
    }
}

void mcuflow_fully_connected_dsp_s8(int32_t batches, const mcuflow_dsp_matrix_t *m,
                                    const mcuflow_dsp_requant_t *q, const int8_t *input,
                                    int8_t *output, mcuflow_word_t *row)
{
    for (int32_t r = 0; r < batches; ++r) {
        int8_t *out = output + (size_t)r * (size_t)m->rows;
        mcuflow_dsp_gather_row(input + (size_t)r * (size_t)m->depth, m->depth, row);
        mcuflow_dsp_fc_row(m, q, row, out);
        if (mcuflow_dsp_narrow(q)) {
            mcuflow_dsp_clamp(q, out, m->rows);
        }
    }
}

/* ---- FULLY_CONNECTED in registers: short rows, few units ------------------------------- */

/* Clamp one output row of a small layer to a fused activation narrower than int8. */
static void mcuflow_dsp_small_clamp(const mcuflow_dsp_fc_small_t *f, int8_t *out)
{
    if (f->narrow) {
        mcuflow_clamp_bytes(out, f->rows, f->act_min, f->act_max);
    }
}

typedef void (*mcuflow_dsp_small_fn)(const mcuflow_dsp_fc_small_t *f, const int8_t *x,
                                     int8_t *out);

/* Every input row through `row`, each clamped when the activation is narrow. */
MCUFLOW_DSP_OUTLINE void mcuflow_dsp_small_rows(const mcuflow_dsp_fc_small_t *f,
                                                const int8_t *input, int8_t *output,
                                                mcuflow_dsp_small_fn row)
{
    for (int32_t r = 0; r < f->batches; ++r, input += f->depth, output += f->rows) {
        row(f, input, output);
        mcuflow_dsp_small_clamp(f, output);
    }
}

#if MCUFLOW_DSP_ASM
/* The state of mcuflow_dsp_short_row in assembly, loaded in this order. */
typedef struct {
    int8_t *out;
    int8_t *end;
    mcuflow_word_t x[4]; /* the input row as int16, zero past the depth */
    const int32_t *records;
} mcuflow_dsp_short_state_t;

/* One unit (records r0, out r1): bias and weights r3-r7, the row r8-r11, the tail r4-r7, r12;
 * TIES adds the negative term of a negative accumulator. */
#define MCUFLOW_DSP_SHORT_UNIT_ASM(TIES)                                                        \
    "ldmia r0!, {r3, r4, r5, r6, r7}\n\t"                                                      \
    "smlad r3, r8, r4, r3\n\t"                                                                 \
    "smlad r3, r9, r5, r3\n\t"                                                                 \
    "smlad r3, r10, r6, r3\n\t"                                                                \
    "smlad r3, r11, r7, r3\n\t"                                                                \
    "ldmia r0!, {r4, r5, r6, r7, r12}\n\t"                                                     \
    "smlal r4, r5, r3, r6\n\t" TIES                                                            \
    "asr r5, r5, r7\n\t"                                                                       \
    "ssat r5, #8, r5\n\t"                                                                      \
    "strb r5, [r1], #1\n\t"
#define MCUFLOW_DSP_SHORT_TIES_ASM "lsr r3, r3, #31\n\tsmlal r4, r5, r3, r12\n\t"

/* Every unit, two per pass (an odd count enters at the second). */
#define MCUFLOW_DSP_SHORT_ASM(TIES)                                                             \
    "push {r7}\n\t"                                                                            \
    "ldmia r0, {r1, r2, r8, r9, r10, r11}\n\t"                                                 \
    "ldr r0, [r0, #24]\n\t"                                                                    \
    "sub r3, r2, r1\n\t"                                                                       \
    "tst r3, #1\n\t"                                                                           \
    "bne 2f\n"                                                                                 \
    "1:\n\t" MCUFLOW_DSP_SHORT_UNIT_ASM(TIES) "2:\n\t" MCUFLOW_DSP_SHORT_UNIT_ASM(TIES)        \
    "cmp r1, r2\n\t"                                                                           \
    "bne 1b\n\t"                                                                               \
    "pop {r7}\n\t"

/* Every unit of one input row of depth <= MCUFLOW_DSP_SHORT_DEPTH. */
static void mcuflow_dsp_short_row(const mcuflow_dsp_fc_small_t *f, const int8_t *x, int8_t *out)
{
    mcuflow_dsp_short_state_t state = {out, out + f->rows, {0, 0, 0, 0}, f->records};
    mcuflow_dsp_gather_row(x, f->depth, state.x);
    register mcuflow_dsp_short_state_t *r0 __asm__("r0") = &state;
    if (f->ties) {
        __asm__ volatile(MCUFLOW_DSP_SHORT_ASM(MCUFLOW_DSP_SHORT_TIES_ASM)
                         : "+r"(r0)
                         :
                         : MCUFLOW_DSP_LOOP_CLOBBERS);
    } else {
        __asm__ volatile(MCUFLOW_DSP_SHORT_ASM("")
                         : "+r"(r0)
                         :
                         : MCUFLOW_DSP_LOOP_CLOBBERS);
    }
}
#else
/* Requantise `acc` with its unit's tail (addend low, addend high, multiplier, shift, negative). */
MCUFLOW_INLINE int8_t mcuflow_dsp_tail(int32_t acc, const int32_t *t)
{
    return (int8_t)mcuflow_dsp_requant_words(acc, t[2], (uint32_t)t[0], (uint32_t)t[1], t[3],
                                             t[4]);
}

static void mcuflow_dsp_short_row(const mcuflow_dsp_fc_small_t *f, const int8_t *x, int8_t *out)
{
    mcuflow_word_t row[4] = {0, 0, 0, 0};
    mcuflow_dsp_gather_row(x, f->depth, row);
    const int32_t *r = f->records;
    for (int32_t u = 0; u < f->rows; ++u, r += MCUFLOW_DSP_SHORT_WORDS) {
        int32_t acc = r[0];
        for (int32_t k = 0; k < 4; ++k) {
            acc = mcuflow_smlad(row[k], (uint32_t)r[1 + k], acc);
        }
        out[u] = mcuflow_dsp_tail(acc, r + 5);
    }
}
#endif

void mcuflow_fully_connected_short_dsp_s8(const mcuflow_dsp_fc_small_t *f, const int8_t *input,
                                          int8_t *output)
{
    mcuflow_dsp_small_rows(f, input, output, mcuflow_dsp_short_row);
}

#if MCUFLOW_DSP_ASM
/* The next 4 columns (row r1) as int16: columns 0, 2 in r6, 1, 3 in r7. */
#define MCUFLOW_DSP_FEW_X_ASM                                                                   \
    "ldr.w r6, [r1], #4\n\t"                                                                   \
    "sxtb16 r7, r6, ror #8\n\t"                                                                \
    "sxtb16 r6, r6\n\t"
/* One unit's two weight words (W0, W1) into its accumulator ACC. */
#define MCUFLOW_DSP_FEW_MAC_ASM(ACC, W0, W1)                                                    \
    "smlad " ACC ", r6, " W0 ", " ACC "\n\t"                                                   \
    "smlad " ACC ", r7, " W1 ", " ACC "\n\t"

/* One group of 4 columns of every unit (records r0), accumulators r3, r4, r5, lr. Every
 * instruction is 32 bits wide: a group of U units is MCUFLOW_DSP_FEW_BYTES(U) of code. */
#define MCUFLOW_DSP_FEW1_ASM                                                                    \
    MCUFLOW_DSP_FEW_X_ASM "ldrd r8, r9, [r0], #8\n\t" MCUFLOW_DSP_FEW_MAC_ASM("r3", "r8", "r9")
#define MCUFLOW_DSP_FEW2_ASM                                                                    \
    MCUFLOW_DSP_FEW_X_ASM "ldmia.w r0!, {r8, r9, r10, r11}\n\t"                                 \
        MCUFLOW_DSP_FEW_MAC_ASM("r3", "r8", "r9") MCUFLOW_DSP_FEW_MAC_ASM("r4", "r10", "r11")
#define MCUFLOW_DSP_FEW3_ASM                                                                    \
    MCUFLOW_DSP_FEW_X_ASM "ldmia.w r0!, {r8, r9, r10, r11, r12, lr}\n\t"                        \
        MCUFLOW_DSP_FEW_MAC_ASM("r3", "r8", "r9") MCUFLOW_DSP_FEW_MAC_ASM("r4", "r10", "r11")  \
            MCUFLOW_DSP_FEW_MAC_ASM("r5", "r12", "lr")
#define MCUFLOW_DSP_FEW4_ASM                                                                    \
    MCUFLOW_DSP_FEW2_ASM "ldmia.w r0!, {r8, r9, r10, r11}\n\t"                                  \
        MCUFLOW_DSP_FEW_MAC_ASM("r5", "r8", "r9") MCUFLOW_DSP_FEW_MAC_ASM("lr", "r10", "r11")

/* The output O of accumulator ACC from its tail (records r0, out r1); TIES as below. */
#define MCUFLOW_DSP_FEW_TAIL_ASM(ACC, O, TIES)                                                  \
    "ldmia r0!, {r8, r9, r10, r11, r12}\n\t"                                                   \
    "smlal r8, r9, " ACC ", r10\n\t" TIES(ACC)                                                 \
    "asr r9, r9, r11\n\t"                                                                      \
    "ssat r9, #8, r9\n\t"                                                                      \
    "strb r9, [r1, #" #O "]\n\t"
#define MCUFLOW_DSP_FEW_TIES_ASM(ACC) "lsr " ACC ", " ACC ", #31\n\tsmlal r8, r9, " ACC ", r12\n\t"
#define MCUFLOW_DSP_FEW_NO_TIES_ASM(ACC) ""
#define MCUFLOW_DSP_FEW_TAILS1_ASM(T) MCUFLOW_DSP_FEW_TAIL_ASM("r3", 0, T)
#define MCUFLOW_DSP_FEW_TAILS2_ASM(T)                                                           \
    MCUFLOW_DSP_FEW_TAILS1_ASM(T) MCUFLOW_DSP_FEW_TAIL_ASM("r4", 1, T)
#define MCUFLOW_DSP_FEW_TAILS3_ASM(T)                                                           \
    MCUFLOW_DSP_FEW_TAILS2_ASM(T) MCUFLOW_DSP_FEW_TAIL_ASM("r5", 2, T)
#define MCUFLOW_DSP_FEW_TAILS4_ASM(T)                                                           \
    MCUFLOW_DSP_FEW_TAILS3_ASM(T) MCUFLOW_DSP_FEW_TAIL_ASM("lr", 3, T)

/* The whole row (layer r0, row r1, out r2): biases, groups as Duff's device in blocks of eight
 * (r2 counting them, entered at r6), tails. The entry is taken from the PC that the 16-bit ADD
 * reads, the address of label 2 two 16-bit instructions on, whatever the code's alignment (an
 * ADR's would depend on it). */
#define MCUFLOW_DSP_FEW_ASM(BIASES, GROUP, TAILS)                                               \
    "push {r2, r7}\n\t"                                                                        \
    "ldmia r0, {r0, r2, r6}\n\t" BIASES                                                        \
    "add r6, pc\n\t"                                                                           \
    "bx r6\n\t"                                                                                \
    "2:\n\t" GROUP GROUP GROUP GROUP GROUP GROUP GROUP GROUP                                   \
    "subs r2, r2, #1\n\t"                                                                      \
    "bne 2b\n\t"                                                                               \
    "pop {r1, r7}\n\t" TAILS

/* One input row of a layer of U units, without (_plain) or with (_ties) the negative terms: out
 * of line, so that the layer, the row and the output arrive in r0-r2. */
#define MCUFLOW_DSP_FEW_ROUTINE(NAME, U, BIASES, TIES)                                          \
    MCUFLOW_DSP_OUTLINE void NAME(const mcuflow_dsp_fc_small_t *f, const int8_t *x,            \
                                  int8_t *out)                                                 \
    {                                                                                          \
        register const mcuflow_dsp_fc_small_t *r0 __asm__("r0") = f;                           \
        register const int8_t *r1 __asm__("r1") = x;                                           \
        register int8_t *r2 __asm__("r2") = out;                                               \
        __asm__ volatile(MCUFLOW_DSP_FEW_ASM(BIASES, MCUFLOW_DSP_FEW##U##_ASM,                 \
                                             MCUFLOW_DSP_FEW_TAILS##U##_ASM(TIES))             \
                         : "+r"(r0), "+r"(r1), "+r"(r2)                                        \
                         :                                                                     \
                         : "r3", "r4", "r5", "r6", "r8", "r9", "r10", "r11", "r12", "lr",      \
                           "cc", "memory");                                                    \
    }
#define MCUFLOW_DSP_FEW_BIASES1 "ldr r3, [r0], #4\n\t"
#define MCUFLOW_DSP_FEW_BIASES2 "ldmia r0!, {r3, r4}\n\t"
#define MCUFLOW_DSP_FEW_BIASES3 "ldmia r0!, {r3, r4, r5}\n\t"
#define MCUFLOW_DSP_FEW_BIASES4 "ldmia r0!, {r3, r4, r5, lr}\n\t"
#define MCUFLOW_DSP_FEW_ROUTINES(U)                                                             \
    MCUFLOW_DSP_FEW_ROUTINE(mcuflow_dsp_few##U##_plain, U, MCUFLOW_DSP_FEW_BIASES##U,           \
                            MCUFLOW_DSP_FEW_NO_TIES_ASM)                                       \
    MCUFLOW_DSP_FEW_ROUTINE(mcuflow_dsp_few##U##_ties, U, MCUFLOW_DSP_FEW_BIASES##U,            \
                            MCUFLOW_DSP_FEW_TIES_ASM)

MCUFLOW_DSP_FEW_ROUTINES(1)
MCUFLOW_DSP_FEW_ROUTINES(2)
MCUFLOW_DSP_FEW_ROUTINES(3)
MCUFLOW_DSP_FEW_ROUTINES(4)

#define MCUFLOW_DSP_FEW_ROW_ROUTINES                                                            \
    mcuflow_dsp_few1_plain, mcuflow_dsp_few2_plain, mcuflow_dsp_few3_plain,                    \
        mcuflow_dsp_few4_plain, mcuflow_dsp_few1_ties, mcuflow_dsp_few2_ties,                  \
        mcuflow_dsp_few3_ties, mcuflow_dsp_few4_ties
#else
static void mcuflow_dsp_few_row(const mcuflow_dsp_fc_small_t *f, const int8_t *x, int8_t *out)
{
    const int32_t units = f->rows;
    int32_t acc[MCUFLOW_DSP_FEW_UNITS];
    const int32_t *r = f->records;
    for (int32_t u = 0; u < units; ++u) {
        acc[u] = *r++;
    }
    for (int32_t k = 0; k < f->depth; k += 4) {
        const uint32_t v = mcuflow_read_u32(x + k);
        const uint32_t even = mcuflow_sxtb16(v), odd = mcuflow_sxtb16_ror8(v);
        for (int32_t u = 0; u < units; ++u, r += 2) {
            acc[u] = mcuflow_smlad(even, (uint32_t)r[0], acc[u]);
            acc[u] = mcuflow_smlad(odd, (uint32_t)r[1], acc[u]);
        }
    }
    for (int32_t u = 0; u < units; ++u, r += MCUFLOW_DSP_TAIL_WORDS) {
        out[u] = mcuflow_dsp_tail(acc[u], r);
    }
}
#define MCUFLOW_DSP_FEW_ROW_ROUTINES                                                            \
    mcuflow_dsp_few_row, mcuflow_dsp_few_row, mcuflow_dsp_few_row, mcuflow_dsp_few_row,        \
        mcuflow_dsp_few_row, mcuflow_dsp_few_row, mcuflow_dsp_few_row, mcuflow_dsp_few_row
#endif

static void mcuflow_dsp_few_rows(const mcuflow_dsp_fc_small_t *f, const int8_t *input,
                                 int8_t *output);

/* The routines of whole layers by mcuflow_dsp_fc_small_t.routine: one row of U units without
 * and with negative terms, then mcuflow_dsp_few_rows. */
static const mcuflow_dsp_small_fn mcuflow_dsp_few_layers[MCUFLOW_DSP_FEW_ROWS + 1] = {
    MCUFLOW_DSP_FEW_ROW_ROUTINES, mcuflow_dsp_few_rows};

/* Every input row, each clamped when the activation is narrow. */
static void mcuflow_dsp_few_rows(const mcuflow_dsp_fc_small_t *f, const int8_t *input,
                                 int8_t *output)
{
    mcuflow_dsp_small_rows(f, input, output,
                           mcuflow_dsp_few_layers[f->rows - 1 + MCUFLOW_DSP_FEW_UNITS * f->ties]);
}

void mcuflow_fully_connected_few_dsp_s8(const mcuflow_dsp_fc_small_t *f, const int8_t *input,
                                        int8_t *output)
{
    mcuflow_dsp_few_layers[f->routine](f, input, output);
}

/* ---- SVDF ------------------------------------------------------------------------------- */

/* SVDF int8 with int16 state (LiteRT's reference_ops::EvalIntegerSVDF, bit-exact). The feature
 * matmul is FULLY_CONNECTED's matrix-vector code on its packed weights (mcuflow_dsp_matvec_s32
 * below, four filters per pass). The state is not moved by memmove: each filter's values are
 * shifted one slot towards the oldest by the time dot product itself, which loads them two at
 * a time, stores them one slot lower and multiplies them with SMLAD. Every sum wraps as
 * LiteRT's int32 arithmetic does; each requantisation is a one-multiply formula the generator
 * proved exact on every reachable sum, or TFLite's MultiplyByQuantizedMultiplier. */

/* x saturated to int16 (SSAT with the DSP extension). */
static inline int32_t mcuflow_svdf_ssat16(int32_t x)
{
#if defined(__ARM_FEATURE_DSP)
    return __ssat(x, 16);
#else
    return mcuflow_clamp(x, INT16_MIN, INT16_MAX);
#endif
}

/* The one-multiply formula of `q` (its `fast` words) on `sum`, before saturation. */
MCUFLOW_INLINE int32_t mcuflow_svdf_fast(int32_t sum, const mcuflow_dsp_svdf_rq_t *q)
{
    uint64_t t = ((uint64_t)(uint32_t)q->rq[3] << 32) | (uint32_t)q->rq[2];
    t += (uint64_t)((int64_t)sum * q->rq[0]);
    t += (uint64_t)((int64_t)mcuflow_opaque((int32_t)((uint32_t)sum >> 31)) * q->negative);
    return (int32_t)(uint32_t)(t >> 32) >> q->rq[1];
}

/* The `n` feature sums requantised to int16 in place (one loop per path, so that each keeps
 * its constants in registers). */
static void mcuflow_svdf_features(const mcuflow_dsp_svdf_rq_t *q, int32_t *sums, int32_t n)
{
    const mcuflow_dsp_svdf_rq_t c = *q;
    int32_t *const end = sums + n;
    if (c.fast) {
        for (; sums != end; ++sums) {
            *sums = mcuflow_svdf_ssat16(mcuflow_svdf_fast(*sums, &c));
        }
    } else {
        for (; sums != end; ++sums) {
            *sums = mcuflow_svdf_ssat16(mcuflow_requantize(*sums, c.multiplier, c.shift));
        }
    }
}

/* The `units` sums plus their bias requantised by `q` to int8 (TFLite's path adds the output
 * offset); one loop per path, so that each keeps its constants in registers. */
static void mcuflow_svdf_outputs(const mcuflow_dsp_svdf_rq_t *q, const int32_t *bias,
                                 int32_t output_offset, const int32_t *sums, int8_t *output,
                                 int32_t units)
{
    const mcuflow_dsp_svdf_rq_t c = *q;
    int8_t *const end = output + units;
    if (c.fast) {
        while (output != end) {
            const int32_t sum = (int32_t)((uint32_t)*sums++ + (uint32_t)*bias++);
            *output++ = (int8_t)mcuflow_ssat8(mcuflow_svdf_fast(sum, &c));
        }
    } else {
        while (output != end) {
            const int32_t sum = (int32_t)((uint32_t)*sums++ + (uint32_t)*bias++);
            *output++ = (int8_t)mcuflow_clamp(
                mcuflow_requantize(sum, c.multiplier, c.shift) + output_offset, -128, 127);
        }
    }
}

/* mcuflow_dsp_gather_row, eight values per step from a word-aligned input. */
static void mcuflow_svdf_gather(const int8_t *x, int32_t depth, mcuflow_word_t *row)
{
    int32_t eights = ((uintptr_t)x & 3u) == 0u ? depth >> 3 : 0;
    const int32_t k = eights * 8;
#if MCUFLOW_DSP_ASM
    const int8_t *xp = x;
    if (eights > 0) {
        __asm__ volatile("1:\n\t"
                         "ldrd r10, r11, [%[x]], #8\n\t"
                         "sxtb16 r8, r10\n\t"
                         "sxtb16 r9, r10, ror #8\n\t"
                         "sxtb16 r10, r11\n\t"
                         "sxtb16 r11, r11, ror #8\n\t"
                         "stmia %[r]!, {r8, r9, r10, r11}\n\t"
                         "subs %[n], %[n], #1\n\t"
                         "bne 1b\n\t"
                         : [x] "+r"(xp), [r] "+r"(row), [n] "+r"(eights)
                         :
                         : "r8", "r9", "r10", "r11", "cc", "memory");
    }
#else
    const mcuflow_word_t *words = (const mcuflow_word_t *)(const void *)x;
    for (; eights > 0; --eights, words += 2, row += 4) {
        const uint32_t a = words[0], b = words[1];
        row[0] = mcuflow_sxtb16(a);
        row[1] = mcuflow_sxtb16_ror8(a);
        row[2] = mcuflow_sxtb16(b);
        row[3] = mcuflow_sxtb16_ror8(b);
    }
#endif
    mcuflow_dsp_gather_row(x + k, depth - k, row);
}

#if MCUFLOW_DSP_ASM
/* One filter: its state values at `*s` shift one slot towards the oldest (`pairs` pairs,
 * each loaded from one slot up, stored back and multiplied with its time weights), then the
 * last old value with `fresh` (`joined`: an even memory) or `fresh` alone enters the last
 * slot; returns `dot` plus the dot product of the new state with the time weights at `*w`
 * (wrapping). Both pointers end at the next filter. The LDR and STR of a pair may be unaligned. */
MCUFLOW_INLINE int32_t mcuflow_svdf_filter(int16_t **s, const int16_t **w, int32_t pairs,
                                           int joined, int32_t fresh, int32_t dot)
{
    int16_t *sp = *s;
    const int16_t *wp = *w;
    int32_t n = pairs;
    uint32_t a, b;
    if (n > 0) {
        __asm__ volatile("1:\n\t"
                         "ldr %[a], [%[s], #2]\n\t"
                         "ldr %[b], [%[w]], #4\n\t"
                         "str %[a], [%[s]], #4\n\t"
                         "smlad %[dot], %[a], %[b], %[dot]\n\t"
                         "subs %[n], %[n], #1\n\t"
                         "bne 1b\n\t"
                         : [a] "=&r"(a), [b] "=&r"(b), [dot] "+r"(dot), [s] "+r"(sp),
                           [w] "+r"(wp), [n] "+r"(n)
                         :
                         : "cc", "memory");
    }
    if (joined) {
        __asm__ volatile("ldrh %[a], [%[s], #2]\n\t"
                         "pkhbt %[a], %[a], %[f], lsl #16\n\t"
                         "ldr %[b], [%[w]], #4\n\t"
                         "str %[a], [%[s]], #4\n\t"
                         "smlad %[dot], %[a], %[b], %[dot]\n\t"
                         : [a] "=&r"(a), [b] "=&r"(b), [dot] "+r"(dot), [s] "+r"(sp),
                           [w] "+r"(wp)
                         : [f] "r"(fresh)
                         : "memory");
    } else {
        __asm__ volatile("ldrh %[b], [%[w]], #2\n\t"
                         "strh %[f], [%[s]], #2\n\t"
                         "smlabb %[dot], %[f], %[b], %[dot]\n\t"
                         : [b] "=&r"(b), [dot] "+r"(dot), [s] "+r"(sp), [w] "+r"(wp)
                         : [f] "r"(fresh)
                         : "memory");
    }
    *s = sp;
    *w = wp;
    return dot;
}
#else
/* Two int16 values from any halfword address. */
static inline uint32_t mcuflow_svdf_load(const int16_t *p)
{
    uint32_t x;
    memcpy(&x, p, sizeof x);
    return x;
}

static inline void mcuflow_svdf_store(int16_t *p, uint32_t x)
{
    memcpy(p, &x, sizeof x);
}

/* One filter, as the assembly above computes it. */
MCUFLOW_INLINE int32_t mcuflow_svdf_filter(int16_t **s, const int16_t **w, int32_t pairs,
                                           int joined, int32_t fresh, int32_t dot)
{
    int16_t *at = *s;
    const int16_t *weights = *w;
    for (int32_t k = pairs; k > 0; --k, at += 2, weights += 2) {
        const uint32_t pair = mcuflow_svdf_load(at + 1);
        mcuflow_svdf_store(at, pair);
        dot = mcuflow_smlad(pair, mcuflow_svdf_load(weights), dot);
    }
    if (joined) {
        const uint32_t pair = (uint32_t)(uint16_t)at[1] | ((uint32_t)fresh << 16);
        mcuflow_svdf_store(at, pair);
        *s = at + 2;
        *w = weights + 2;
        return mcuflow_smlad(pair, mcuflow_svdf_load(weights), dot);
    }
    at[0] = (int16_t)fresh;
    *s = at + 1;
    *w = weights + 1;
    return mcuflow_smlabb((uint32_t)fresh, (uint32_t)(uint16_t)weights[0], dot);
}
#endif

/* The state shift and time dot products of one batch's `filters` filters: each unit's sum of
 * its `rank` filters' dot products replaces `sums[u]` (the filters' new state values, read
 * first); `joined` is a constant of each instance. */
MCUFLOW_INLINE void mcuflow_svdf_units(const mcuflow_dsp_svdf_t *p, int32_t filters,
                                       int32_t *sums, int16_t *state, int joined)
{
    const int16_t *w = p->weights_time;
    const int32_t *fresh = sums;
    const int32_t *const end = sums + filters;
    const int32_t rank = p->rank, pairs = (p->memory - 1) >> 1;
    int32_t sum = 0, left = rank;
    while (fresh != end) {
        sum = mcuflow_svdf_filter(&state, &w, pairs, joined, *fresh++, sum);
        if (--left == 0) {
            *sums++ = sum;
            sum = 0;
            left = rank;
        }
    }
}

/* mcuflow_svdf_units of an even memory: the last old value pairs with the new one. */
MCUFLOW_DSP_OUTLINE void mcuflow_svdf_units_even(const mcuflow_dsp_svdf_t *p, int32_t filters,
                                                 int32_t *sums, int16_t *state)
{
    mcuflow_svdf_units(p, filters, sums, state, 1);
}

/* mcuflow_svdf_units of an odd memory: the new value alone. */
MCUFLOW_DSP_OUTLINE void mcuflow_svdf_units_odd(const mcuflow_dsp_svdf_t *p, int32_t filters,
                                                int32_t *sums, int16_t *state)
{
    mcuflow_svdf_units(p, filters, sums, state, 0);
}

/* Two groups of mcuflow_dsp_group4. */
MCUFLOW_INLINE void mcuflow_svdf_group4x2(const mcuflow_word_t **w, const mcuflow_word_t **x,
                                          int32_t *acc)
{
    mcuflow_dsp_group4(w, x, acc);
    mcuflow_dsp_group4(w, x, acc);
}

/* `eights` (> 0) times eight groups of two channel pairs over one row: mcuflow_dsp_fours4 with
 * half the loop steps. */
MCUFLOW_DSP_FOURS(mcuflow_svdf_eights4, MCUFLOW_DSP_GROUP4_ASM MCUFLOW_DSP_GROUP4_ASM,
                  mcuflow_svdf_group4x2)

/* One quad of mcuflow_dsp_quad when B needs no extraction before the end, the sums kept in
 * registers: acc gets the sums of the quad's four channels from their biases. */
MCUFLOW_INLINE void mcuflow_svdf_quad(const mcuflow_word_t **w, const mcuflow_word_t *row,
                                      int32_t groups, const int32_t *bias, int32_t *acc)
{
    int32_t sums[4] = {bias[0], bias[0], bias[2], bias[2]};
    const mcuflow_word_t *x = row;
    if (groups >> 3) {
        mcuflow_svdf_eights4(w, &x, groups >> 3, sums);
    }
    if (groups & 4) {
        mcuflow_dsp_fours4(w, &x, 1, sums);
    }
    for (int32_t rest = groups & 3; rest > 0; --rest) {
        mcuflow_dsp_group4(w, &x, sums);
    }
    acc[0] = sums[0];
    acc[1] = (int32_t)((uint32_t)bias[1] + (uint32_t)mcuflow_wrapped_diff_8(sums[1], sums[0]));
    acc[2] = sums[2];
    acc[3] = (int32_t)((uint32_t)bias[3] + (uint32_t)mcuflow_wrapped_diff_8(sums[3], sums[2]));
}

/* The int32 accumulators bias[c] + sum_k w[c][k] * input[k] of every output channel c of `m`
 * (FULLY_CONNECTED's layout: groups of two channel pairs, rows padded to a multiple of 4) over
 * one int8 input row, gathered as int16 into `row`. `bias` and `acc` hold the rows rounded up
 * to a multiple of 4. The sums wrap as int32 arithmetic does, whatever their range. */
static void mcuflow_dsp_matvec_s32(const mcuflow_dsp_matrix_t *m, const int32_t *bias,
                                   const int8_t *input, mcuflow_word_t *row, int32_t *acc)
{
    const mcuflow_word_t *w = (const mcuflow_word_t *)m->weights;
    const int32_t groups = m->groups, chunk = m->chunk_groups;
    mcuflow_svdf_gather(input, m->depth, row);
    for (int32_t o = 0; o < m->rows; o += 4) {
        if (chunk >= groups) {
            mcuflow_svdf_quad(&w, row, groups, bias + o, acc + o);
        } else {
            acc[o] = bias[o];
            acc[o + 1] = bias[o + 1];
            acc[o + 2] = bias[o + 2];
            acc[o + 3] = bias[o + 3];
            mcuflow_dsp_quad(&w, row, groups, chunk, acc + o);
        }
    }
}

void mcuflow_svdf_dsp_s8(const mcuflow_dsp_svdf_t *p, const int8_t *input, int16_t *state,
                         int8_t *output, mcuflow_word_t *scratch)
{
    const mcuflow_dsp_matrix_t *m = p->matrix;
    const int32_t units = m->rows / p->rank;
    int32_t *sums = (int32_t *)(scratch + 2 * m->groups);
    for (int32_t b = 0; b < p->batches; ++b) {
        mcuflow_dsp_matvec_s32(m, p->feature_bias, input + (size_t)b * (size_t)m->depth, scratch,
                               sums);
        mcuflow_svdf_features(&p->feature, sums, m->rows);
        int16_t *batch_state = state + (size_t)b * (size_t)m->rows * (size_t)p->memory;
        if (p->memory & 1) {
            mcuflow_svdf_units_odd(p, m->rows, sums, batch_state);
        } else {
            mcuflow_svdf_units_even(p, m->rows, sums, batch_state);
        }
        mcuflow_svdf_outputs(&p->time, p->bias, p->output_offset, sums,
                             output + (size_t)b * (size_t)units, units);
    }
}

/* ---- matrix-vector products to int32 (the LSTM's gates) -------------------------------- */

#if MCUFLOW_DSP_ASM
/* The state of mcuflow_dsp_matvec_whole in assembly: the first five words pushed on the stack
 * in this order (r1-r4, r6) below the caller's r7, which the loop borrows as its group counter;
 * then the weights (r5) and the accumulators (r0). */
typedef struct {
    const int32_t *bias;
    const mcuflow_word_t *row;
    int32_t blocks; /* blocks of eight groups, the first one entered part-way */
    int32_t entry;  /* bytes of the first block skipped, plus the Thumb bit */
    const int32_t *acc_end;
    const mcuflow_word_t *w;
    int32_t *acc;
} mcuflow_dsp_matvec_state_t;

/* The whole loop over quads of mcuflow_dsp_quads_whole's assembly (the groups as its Duff's
 * device, MCUFLOW_DSP_GROUP4_R_ASM), each quad's four sums stored to the accumulators (r0). */
#define MCUFLOW_DSP_MATVEC_ASM                                                                  \
    "push {r7}\n\t"                                                                            \
    "ldmia r0, {r1, r2, r3, r4, r6}\n\t"                                                       \
    MCUFLOW_DSP_ADR("r7", "2f")                                                                \
    "add r4, r4, r7\n\t"                                                                       \
    "push {r1, r2, r3, r4, r6}\n\t"                                                            \
    "ldrd r5, r0, [r0, #20]\n\t"                                                               \
    "1:\n\t"                                                                                   \
    "ldr r12, [sp, #0]\n\t"                                                                    \
    "ldr r1, [r12], #16\n\t"                                                                   \
    "ldr r3, [r12, #-8]\n\t"                                                                   \
    "str r12, [sp, #0]\n\t"                                                                    \
    "mov r2, r1\n\t"                                                                           \
    "mov r4, r3\n\t"                                                                           \
    "ldr r6, [sp, #4]\n\t"                                                                     \
    "ldr r7, [sp, #8]\n\t"                                                                     \
    "ldr pc, [sp, #12]\n\t"                                                                    \
    "2:\n\t" MCUFLOW_DSP_GROUP4_R_ASM MCUFLOW_DSP_GROUP4_R_ASM MCUFLOW_DSP_GROUP4_R_ASM         \
        MCUFLOW_DSP_GROUP4_R_ASM MCUFLOW_DSP_GROUP4_R_ASM MCUFLOW_DSP_GROUP4_R_ASM              \
            MCUFLOW_DSP_GROUP4_R_ASM MCUFLOW_DSP_GROUP4_R_ASM                                   \
    "subs r7, r7, #1\n\t"                                                                      \
    "bne 2b\n\t"                                                                               \
    "ldr r12, [sp, #0]\n\t"                                                                    \
    "ldr lr, [r12, #-12]\n\t"                                                                  \
    "ldr r12, [r12, #-4]\n\t"                                                                  \
    "sub r2, r2, r1\n\t"                                                                       \
    "add r2, lr, r2, asr #8\n\t"                                                               \
    "sub r4, r4, r3\n\t"                                                                       \
    "add r4, r12, r4, asr #8\n\t"                                                              \
    "stmia r0!, {r1, r2, r3, r4}\n\t"                                                          \
    "ldr r12, [sp, #16]\n\t"                                                                   \
    "cmp r0, r12\n\t"                                                                          \
    "bne 1b\n\t"                                                                               \
    "add sp, sp, #20\n\t"                                                                      \
    "pop {r7}\n\t"

/* mcuflow_dsp_matvec_s8's quads when B needs no extraction before the end (chunk >= groups):
 * one assembly loop over every quad. */
static void mcuflow_dsp_matvec_whole(const mcuflow_word_t *w, const mcuflow_word_t *row,
                                     const int32_t *bias, int32_t *acc, int32_t quads,
                                     int32_t groups)
{
    mcuflow_dsp_matvec_state_t state = {bias, row, (groups + 7) >> 3,
                                        mcuflow_dsp_duff8_entry(groups, MCUFLOW_DSP_GROUP4_BYTES),
                                        acc + (size_t)quads * 4, w, acc};
    register mcuflow_dsp_matvec_state_t *r0 __asm__("r0") = &state;
    if (quads <= 0) {
        return;
    }
    __asm__ volatile(MCUFLOW_DSP_MATVEC_ASM : "+r"(r0) : : MCUFLOW_DSP_LOOP_CLOBBERS);
}
#else
/* mcuflow_dsp_matvec_whole of a depth that is a multiple of 16 (`fours` > 0 rounds of four
 * groups, no group left). */
static void mcuflow_dsp_matvec_fours(const mcuflow_word_t *w, const mcuflow_word_t *row,
                                     const int32_t *bias, int32_t *acc, int32_t quads,
                                     int32_t fours)
{
    for (; quads > 0; --quads, bias += 4, acc += 4) {
        int32_t sums[4] = {bias[0], bias[0], bias[2], bias[2]};
        const mcuflow_word_t *x = row;
        mcuflow_dsp_fours4(&w, &x, fours, sums);
        acc[0] = sums[0];
        acc[1] = bias[1] + mcuflow_wrapped_diff_8(sums[1], sums[0]);
        acc[2] = sums[2];
        acc[3] = bias[3] + mcuflow_wrapped_diff_8(sums[3], sums[2]);
    }
}

/* mcuflow_dsp_matvec_s8's quads when B needs no extraction before the end (chunk >= groups). */
static void mcuflow_dsp_matvec_whole(const mcuflow_word_t *w, const mcuflow_word_t *row,
                                     const int32_t *bias, int32_t *acc, int32_t quads,
                                     int32_t groups)
{
    const int32_t fours = groups >> 2, rest = groups & 3;
    if (fours > 0 && rest == 0) {
        mcuflow_dsp_matvec_fours(w, row, bias, acc, quads, fours);
        return;
    }
    for (; quads > 0; --quads, bias += 4, acc += 4) {
        int32_t sums[4] = {bias[0], bias[0], bias[2], bias[2]};
        const mcuflow_word_t *x = row;
        if (fours) {
            mcuflow_dsp_fours4(&w, &x, fours, sums);
        }
        for (int32_t left = rest; left > 0; --left) {
            mcuflow_dsp_group4(&w, &x, sums);
        }
        acc[0] = sums[0];
        acc[1] = bias[1] + mcuflow_wrapped_diff_8(sums[1], sums[0]);
        acc[2] = sums[2];
        acc[3] = bias[3] + mcuflow_wrapped_diff_8(sums[3], sums[2]);
    }
}

#endif

/* acc = bias + W x for every row of a FULLY_CONNECTED-packed matrix `m` (rows a multiple of 4)
 * over one int8 row `x`, gathered as int16 into `row` (8-byte aligned, 2 * groups words). */
static void mcuflow_dsp_matvec_s8(const mcuflow_dsp_matrix_t *m, const int32_t *bias,
                                  const int8_t *x, mcuflow_word_t *row, int32_t *acc)
{
    const mcuflow_word_t *w = (const mcuflow_word_t *)m->weights;
    mcuflow_dsp_gather_row(x, m->depth, row);
    if (m->chunk_groups >= m->groups) {
        mcuflow_dsp_matvec_whole(w, row, bias, acc, m->rows >> 2, m->groups);
        return;
    }
    for (int32_t o = 0; o < m->rows; o += 4) {
        acc[o] = bias[o];
        acc[o + 1] = bias[o + 1];
        acc[o + 2] = bias[o + 2];
        acc[o + 3] = bias[o + 3];
        mcuflow_dsp_quad(&w, row, m->groups, m->chunk_groups, acc + o);
    }
}

/* Columns [k, k + 4) of `x` (depth columns) as one word, zeros past the depth. */
MCUFLOW_INLINE uint32_t mcuflow_dsp_row_word(const int8_t *x, int32_t k, int32_t depth)
{
    if (k + 4 <= depth) {
        return mcuflow_read_u32(x + k);
    }
    uint32_t v = 0;
    for (int32_t j = 0; k + j < depth; ++j) {
        v |= (uint32_t)(uint8_t)x[k + j] << (8 * j);
    }
    return v;
}

#if MCUFLOW_DSP_ASM
/* The state of mcuflow_dsp_matmul2_whole in assembly: the first six words pushed on the stack
 * in this order (r1-r4, r6, r8) below the caller's r7, which the loop borrows as its group
 * counter; then the weights (r5) and the first row's accumulators (r0). */
typedef struct {
    const int32_t *bias;
    int32_t *acc1;
    const mcuflow_word_t *columns;
    int32_t blocks; /* blocks of eight groups, the first one entered part-way */
    int32_t entry;  /* bytes of the first block skipped, plus the Thumb bit */
    const int32_t *acc0_end;
    const mcuflow_word_t *w;
    int32_t *acc0;
} mcuflow_dsp_matmul2_state_t;

/* The whole loop over channel pairs of mcuflow_dsp_rows2's assembly (the groups as its Duff's
 * device, MCUFLOW_DSP_GROUP_R_ASM), each pair's sums stored to both rows' accumulators. */
#define MCUFLOW_DSP_MATMUL2_ASM                                                                 \
    "push {r7}\n\t"                                                                            \
    "ldmia r0, {r1, r2, r3, r4, r6, r8}\n\t"                                                   \
    MCUFLOW_DSP_ADR("r7", "2f")                                                                \
    "add r6, r6, r7\n\t"                                                                       \
    "push {r1, r2, r3, r4, r6, r8}\n\t"                                                        \
    "ldrd r5, r0, [r0, #24]\n\t"                                                               \
    "1:\n\t"                                                                                   \
    "ldr r12, [sp, #0]\n\t"                                                                    \
    "ldr r1, [r12], #8\n\t"                                                                    \
    "str r12, [sp, #0]\n\t"                                                                    \
    "mov r2, r1\n\t"                                                                           \
    "mov r3, r1\n\t"                                                                           \
    "mov r4, r1\n\t"                                                                           \
    "ldr r6, [sp, #8]\n\t"                                                                     \
    "ldr r7, [sp, #12]\n\t"                                                                    \
    "ldr pc, [sp, #16]\n\t"                                                                    \
    "2:\n\t" MCUFLOW_DSP_GROUP_R_ASM MCUFLOW_DSP_GROUP_R_ASM MCUFLOW_DSP_GROUP_R_ASM            \
        MCUFLOW_DSP_GROUP_R_ASM MCUFLOW_DSP_GROUP_R_ASM MCUFLOW_DSP_GROUP_R_ASM                 \
            MCUFLOW_DSP_GROUP_R_ASM MCUFLOW_DSP_GROUP_R_ASM                                     \
    "subs r7, r7, #1\n\t"                                                                      \
    "bne 2b\n\t"                                                                               \
    "ldr r12, [sp, #0]\n\t"                                                                    \
    "ldr r12, [r12, #-4]\n\t"                                                                  \
    "sub r3, r3, r1\n\t"                                                                       \
    "add r3, r12, r3, asr #8\n\t"                                                              \
    "sub r4, r4, r2\n\t"                                                                       \
    "add r4, r12, r4, asr #8\n\t"                                                              \
    "strd r1, r3, [r0], #8\n\t"                                                                \
    "ldr r12, [sp, #4]\n\t"                                                                    \
    "strd r2, r4, [r12], #8\n\t"                                                               \
    "str r12, [sp, #4]\n\t"                                                                    \
    "ldr r12, [sp, #20]\n\t"                                                                   \
    "cmp r0, r12\n\t"                                                                          \
    "bne 1b\n\t"                                                                               \
    "add sp, sp, #24\n\t"                                                                      \
    "pop {r7}\n\t"

/* mcuflow_dsp_matmul2_s8's channel pairs when B needs no extraction before the end: one
 * assembly loop over every pair. */
static void mcuflow_dsp_matmul2_whole(const mcuflow_word_t *w, const mcuflow_word_t *columns,
                                      const int32_t *bias, int32_t *acc0, int32_t *acc1,
                                      int32_t pairs, int32_t groups)
{
    mcuflow_dsp_matmul2_state_t state = {bias, acc1, columns, (groups + 7) >> 3,
                                         mcuflow_dsp_duff8_entry(groups, MCUFLOW_DSP_GROUP_BYTES),
                                         acc0 + (size_t)pairs * 2, w, acc0};
    register mcuflow_dsp_matmul2_state_t *r0 __asm__("r0") = &state;
    if (pairs <= 0) {
        return;
    }
    __asm__ volatile(MCUFLOW_DSP_MATMUL2_ASM : "+r"(r0) : : MCUFLOW_DSP_LOOP_CLOBBERS);
}
#else
/* mcuflow_dsp_matmul2_s8's channel pairs when B needs no extraction before the end. */
static void mcuflow_dsp_matmul2_whole(const mcuflow_word_t *w, const mcuflow_word_t *columns,
                                      const int32_t *bias, int32_t *acc0, int32_t *acc1,
                                      int32_t pairs, int32_t groups)
{
    for (; pairs > 0; --pairs, bias += 2, acc0 += 2, acc1 += 2) {
        int32_t sums[4] = {bias[0], bias[0], bias[0], bias[0]};
        const mcuflow_word_t *x = columns;
        mcuflow_dsp_groups2(&w, &x, groups, sums);
        acc0[0] = sums[0];
        acc1[0] = sums[1];
        acc0[1] = bias[1] + mcuflow_wrapped_diff_8(sums[2], sums[0]);
        acc1[1] = bias[1] + mcuflow_wrapped_diff_8(sums[3], sums[1]);
    }
}

#endif

/* acc0 = bias + W x0 and acc1 = bias + W x1 for two int8 rows of `m->depth` columns and a
 * CONV_2D-packed matrix (channel pairs, SXTB16 column order, rows even), 2 x 2 blocked: both
 * rows are gathered into `columns` (8-byte aligned, 4 * groups words) as CONV_2D's pixel pairs. */
static void mcuflow_dsp_matmul2_s8(const mcuflow_dsp_matrix_t *m, const int32_t *bias,
                                   const int8_t *x0, const int8_t *x1, mcuflow_word_t *columns,
                                   int32_t *acc0, int32_t *acc1)
{
    for (int32_t g = 0; g < m->groups; ++g) {
        const uint32_t v0 = mcuflow_dsp_row_word(x0, 4 * g, m->depth);
        const uint32_t v1 = mcuflow_dsp_row_word(x1, 4 * g, m->depth);
        columns[4 * g] = mcuflow_sxtb16(v0);
        columns[4 * g + 1] = mcuflow_sxtb16(v1);
        columns[4 * g + 2] = mcuflow_sxtb16_ror8(v0);
        columns[4 * g + 3] = mcuflow_sxtb16_ror8(v1);
    }
    const mcuflow_word_t *w = (const mcuflow_word_t *)m->weights;
    if (m->chunk_groups >= m->groups) {
        mcuflow_dsp_matmul2_whole(w, columns, bias, acc0, acc1, m->rows >> 1, m->groups);
        return;
    }
    for (int32_t o = 0; o < m->rows; o += 2, w += 2 * m->groups) {
        int32_t out[4];
        mcuflow_dsp_pair2_chunked(m, w, columns, bias + o, out);
        acc0[o] = out[0];
        acc1[o] = out[1];
        acc0[o + 1] = out[2];
        acc1[o + 1] = out[3];
    }
}

/* ---- UNIDIRECTIONAL_SEQUENCE_LSTM ------------------------------------------------------- */

/* UNIDIRECTIONAL_SEQUENCE_LSTM (LiteRT's integer 8x8_16), bit-exact with mcuflow_lstm_s8.
 *
 * Per step the gates' two matrix products run as FULLY_CONNECTED does (mcuflow_dsp_matvec_s8:
 * four stacked gate rows per pass, SMLAD on packed weights), each accumulator is requantised by
 * one SMMLAR (mcuflow_dsp_lstm_rq_t, exact while the shifted accumulator stays inside int32, which
 * the generator checks), and gemmlowp's int16 sigmoid and tanh are evaluated with their own
 * arithmetic but fewer instructions: exp on [-1/4, 0) read from a table the generator computes
 * with gemmlowp's arithmetic (the first barrel-shifter steps included, the others as SMLABBs),
 * and the Newton-Raphson reciprocal as one UDIV plus its offset from a byte table
 * (tests/codegen/test_lstm_dsp.py compares them with
 * mcuflow.quant.fixedpoint on every int16 input).
 */
#define MCUFLOW_LSTM_DSP_GATES 4

/* (a * b + (round << 32) + 2^31) >> 32: SMMLAR. */
static inline int32_t mcuflow_lstm_smmlar(int32_t a, int32_t b, int32_t round)
{
#if defined(__ARM_FEATURE_DSP) && (defined(__GNUC__) || defined(__clang__))
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(round));
    return r;
#else
    const int64_t t = (int64_t)a * b + (int64_t)round * ((int64_t)1 << 32) + ((int64_t)1 << 31);
    return (int32_t)(t >> 32);
#endif
}

/* x saturated to int16. */
static inline int32_t mcuflow_lstm_ssat16(int32_t x)
{
#if defined(__ARM_FEATURE_DSP)
    return __ssat(x, 16);
#else
    return x < INT16_MIN ? INT16_MIN : (x > INT16_MAX ? INT16_MAX : x);
#endif
}

MCUFLOW_INLINE int32_t mcuflow_lstm_rq(int32_t acc, int32_t left, int32_t multiplier,
                                       int32_t round, int32_t negative, int32_t right)
{
    const int32_t u = mcuflow_lstm_smmlar((int32_t)((uint32_t)acc << left), multiplier, round);
    return (u + (negative & (acc >> 31))) >> right;
}

/* gemmlowp's int16 SaturatingRoundingDoublingHighMul, (a * b + 2^14) >> 15 by one SMLABB, for
 * operands inside int16 that are not both -32768 (true of every call below). */
static inline int32_t mcuflow_lstm_mul16(int32_t a, int32_t b)
{
    return mcuflow_smlabb((uint32_t)a, (uint32_t)b, 1 << 14) >> 15;
}

/* The last four barrel-shifter steps of gemmlowp's exp (bits 11 to 14 of m1, `high` < 16,
 * lowest first, with constants M0 .. M3): one jump to the multiplies `high` needs. */
#define MCUFLOW_LSTM_STEPS(r, high, MUL, M0, M1, M2, M3)                                        \
    switch ((high) & 15) {                                                                      \
    case 0: break;                                                                              \
    case 1: (r) = MUL(r, M0); break;                                                            \
    case 2: (r) = MUL(r, M1); break;                                                            \
    case 3: (r) = MUL(r, M0); (r) = MUL(r, M1); break;                                          \
    case 4: (r) = MUL(r, M2); break;                                                            \
    case 5: (r) = MUL(r, M0); (r) = MUL(r, M2); break;                                          \
    case 6: (r) = MUL(r, M1); (r) = MUL(r, M2); break;                                          \
    case 7: (r) = MUL(r, M0); (r) = MUL(r, M1); (r) = MUL(r, M2); break;                        \
    case 8: (r) = MUL(r, M3); break;                                                            \
    case 9: (r) = MUL(r, M0); (r) = MUL(r, M3); break;                                          \
    case 10: (r) = MUL(r, M1); (r) = MUL(r, M3); break;                                         \
    case 11: (r) = MUL(r, M0); (r) = MUL(r, M1); (r) = MUL(r, M3); break;                       \
    case 12: (r) = MUL(r, M2); (r) = MUL(r, M3); break;                                         \
    case 13: (r) = MUL(r, M0); (r) = MUL(r, M2); (r) = MUL(r, M3); break;                       \
    case 14: (r) = MUL(r, M1); (r) = MUL(r, M2); (r) = MUL(r, M3); break;                       \
    case 15: (r) = MUL(r, M0); (r) = MUL(r, M1); (r) = MUL(r, M2); (r) = MUL(r, M3); break;     \
    default: break;                                                                             \
    }

/* gemmlowp's exp_on_negative_values of -(m1 + 1) in Q3.12 (sigmoid): the table holds the
 * steps below bit MCUFLOW_DSP_LSTM_EXP_BITS, the bits above it run the barrel shifter. */
MCUFLOW_INLINE int32_t mcuflow_lstm_sigmoid_exp(int32_t m1, const int16_t *table)
{
    int32_t r = table[m1 & ((1 << MCUFLOW_DSP_LSTM_EXP_BITS) - 1)];
    MCUFLOW_LSTM_STEPS(r, m1 >> MCUFLOW_DSP_LSTM_EXP_BITS, mcuflow_lstm_mul16, 19875, 12055,
                       4435, 600);
    return r;
}

/* The same in Q4.11 (the gates' tanh). */
MCUFLOW_INLINE int32_t mcuflow_lstm_tanh_exp(int32_t m1, const int16_t *table)
{
    int32_t r = table[m1 & ((1 << MCUFLOW_DSP_LSTM_EXP_BITS) - 1)];
    MCUFLOW_LSTM_STEPS(r, m1 >> MCUFLOW_DSP_LSTM_EXP_BITS, mcuflow_lstm_mul16, 12055, 4435, 600,
                       11);
    return r;
}

/* The same in Q(cell bits + 1) for the cell state's tanh (see mcuflow_dsp_lstm_cell_t): the
 * table's 2^table_bits entries (`mask` = 2^table_bits - 1), then the steps of bits 11 .. 14
 * that `c->steps` keeps. */
MCUFLOW_INLINE int32_t mcuflow_lstm_cell_exp(int32_t m1, const int16_t *table, int32_t mask,
                                             const mcuflow_dsp_lstm_cell_t *c)
{
    int32_t r = table[m1 & mask];
    MCUFLOW_LSTM_STEPS(r, (m1 >> MCUFLOW_DSP_LSTM_EXP_BITS) & c->steps, mcuflow_lstm_mul16,
                       c->barrel[0], c->barrel[1], c->barrel[2], c->barrel[3]);
    return m1 >= c->zero ? 0 : r;
}

/* gemmlowp's Newton-Raphson 2 / (1 + e) in Q2.13 for e in [0, 32767]. It depends on e through
 * hd = (e + 32768) >> 1 alone and lies within [-2, 3] of 2^28 / hd: the table holds its offset
 * from 2^28 / hd for j = e >> 1 = hd - 16384. */
MCUFLOW_INLINE int32_t mcuflow_lstm_reciprocal(int32_t e, const int8_t *table)
{
    const uint32_t j = (uint32_t)e >> 1;
    const uint32_t quotient = ((uint32_t)1 << 28) / (j + 16384u);
    return (int32_t)quotient + table[j];
}

/* gemmlowp logistic of a Q3.12 int16, in Q0.15. */
MCUFLOW_INLINE int32_t mcuflow_lstm_sigmoid(int32_t a, const int16_t *table,
                                             const int8_t *reciprocal)
{
    const int32_t n = a < 0 ? -a : a;
    if (n == 0) {
        return 1 << 14;
    }
    const int32_t e = mcuflow_lstm_sigmoid_exp(n - 1, table);
    const int32_t x = mcuflow_lstm_reciprocal(e, reciprocal);
    const int32_t positive = mcuflow_lstm_ssat16(2 * x);
    return a > 0 ? positive : INT16_MAX - positive;
}

/* Q0.15 tanh from 2 / (1 + exp(-2|a|)) in Q2.13 and the sign of a. */
MCUFLOW_INLINE int32_t mcuflow_lstm_tanh_of(int32_t a, int32_t x)
{
    const int32_t t = mcuflow_lstm_ssat16(4 * (x - (1 << 13)));
    return a < 0 ? -t : t;
}

/* gemmlowp tanh of a Q3.12 int16, in Q0.15. */
MCUFLOW_INLINE int32_t mcuflow_lstm_tanh(int32_t a, const int16_t *table,
                                          const int8_t *reciprocal)
{
    const int32_t n = a < 0 ? -a : a;
    if (n == 0) {
        return 0;
    }
    return mcuflow_lstm_tanh_of(
        a, mcuflow_lstm_reciprocal(mcuflow_lstm_tanh_exp(n - 1, table), reciprocal));
}

/* gemmlowp tanh of the cell state (Q(cell bits)), in Q0.15. */
MCUFLOW_INLINE int32_t mcuflow_lstm_cell_tanh(int32_t a, const int16_t *table, int32_t mask,
                                              const mcuflow_dsp_lstm_cell_t *c,
                                              const int8_t *reciprocal)
{
    const int32_t n = a < 0 ? -a : a;
    if (n == 0) {
        return 0;
    }
    const int32_t e = mcuflow_lstm_cell_exp(n - 1, table, mask, c);
    return mcuflow_lstm_tanh_of(a, mcuflow_lstm_reciprocal(e, reciprocal));
}

/* Q3.12 pre-activations of one gate's rows: both products requantised and added with int16
 * saturation, in place of the input accumulators. */
MCUFLOW_INLINE void mcuflow_lstm_preactivate(int32_t *ax, const int32_t *ah, int32_t units,
                                             mcuflow_dsp_lstm_rq_t qx, mcuflow_dsp_lstm_rq_t qh)
{
    for (int32_t r = 0; r < units; ++r) {
        const int32_t v = mcuflow_lstm_ssat16(
            mcuflow_lstm_rq(ax[r], qx.left, qx.multiplier, qx.round, qx.negative, qx.right));
        ax[r] = mcuflow_lstm_ssat16(
            v + mcuflow_lstm_rq(ah[r], qh.left, qh.multiplier, qh.round, qh.negative, qh.right));
    }
}

/* mcuflow_lstm_preactivate of gates whose requantisations all shift right (left 1, negative
 * -1): fewer live constants. */
static void mcuflow_lstm_preactivate_right(int32_t *ax, const int32_t *ah, int32_t units,
                                           const mcuflow_dsp_lstm_rq_t *qx,
                                           const mcuflow_dsp_lstm_rq_t *qh)
{
    const int32_t mx = qx->multiplier, rx = qx->round, sx = qx->right;
    const int32_t mh = qh->multiplier, rh = qh->round, sh = qh->right;
    int32_t r = 0;
    for (; r + 1 < units; r += 2) {
        const int32_t v0 = mcuflow_lstm_ssat16(mcuflow_lstm_rq(ax[r], 1, mx, rx, -1, sx));
        const int32_t v1 = mcuflow_lstm_ssat16(mcuflow_lstm_rq(ax[r + 1], 1, mx, rx, -1, sx));
        ax[r] = mcuflow_lstm_ssat16(v0 + mcuflow_lstm_rq(ah[r], 1, mh, rh, -1, sh));
        ax[r + 1] = mcuflow_lstm_ssat16(v1 + mcuflow_lstm_rq(ah[r + 1], 1, mh, rh, -1, sh));
    }
    if (r < units) {
        const int32_t v = mcuflow_lstm_ssat16(mcuflow_lstm_rq(ax[r], 1, mx, rx, -1, sx));
        ax[r] = mcuflow_lstm_ssat16(v + mcuflow_lstm_rq(ah[r], 1, mh, rh, -1, sh));
    }
}

static void mcuflow_lstm_preactivate_any(int32_t *ax, const int32_t *ah, int32_t units,
                                         const mcuflow_dsp_lstm_rq_t *qx,
                                         const mcuflow_dsp_lstm_rq_t *qh)
{
    mcuflow_lstm_preactivate(ax, ah, units, *qx, *qh);
}

/* The gates of one batch row, in place of the input accumulators: pre-activations, then
 * sigmoid (input, forget, output gates) or tanh (cell gate). */
static void mcuflow_lstm_gates(const mcuflow_dsp_lstm_t *p, int32_t *ax, const int32_t *ah)
{
    const int32_t units = p->units;
    for (int32_t g = 0; g < MCUFLOW_LSTM_DSP_GATES; ++g) {
        int32_t *rows = ax + g * units;
        if (p->right_shifts) {
            mcuflow_lstm_preactivate_right(rows, ah + g * units, units, &p->input_rq[g],
                                           &p->recurrent_rq[g]);
        } else {
            mcuflow_lstm_preactivate_any(rows, ah + g * units, units, &p->input_rq[g],
                                         &p->recurrent_rq[g]);
        }
    }
    const int16_t *sigmoid = p->sigmoid_exp, *tanh = p->tanh_exp;
    const int8_t *reciprocal = p->reciprocal;
    for (int32_t r = 0; r < 2 * units; r += 2) {
        ax[r] = mcuflow_lstm_sigmoid(ax[r], sigmoid, reciprocal);
        ax[r + 1] = mcuflow_lstm_sigmoid(ax[r + 1], sigmoid, reciprocal);
    }
    int32_t r = 2 * units;
    for (; r + 1 < 3 * units; r += 2) {
        ax[r] = mcuflow_lstm_tanh(ax[r], tanh, reciprocal);
        ax[r + 1] = mcuflow_lstm_tanh(ax[r + 1], tanh, reciprocal);
    }
    if (r < 3 * units) {
        ax[r] = mcuflow_lstm_tanh(ax[r], tanh, reciprocal);
    }
    for (r = 3 * units; r + 1 < 4 * units; r += 2) {
        ax[r] = mcuflow_lstm_sigmoid(ax[r], sigmoid, reciprocal);
        ax[r + 1] = mcuflow_lstm_sigmoid(ax[r + 1], sigmoid, reciprocal);
    }
    if (r < 4 * units) {
        ax[r] = mcuflow_lstm_sigmoid(ax[r], sigmoid, reciprocal);
    }
}

/* (x + 2^(e-1) - [x < 0]) >> e: RoundingDivideByPOT. */
static inline int32_t mcuflow_lstm_rdbpot(int32_t x, int32_t e)
{
    return (x + (1 << (e - 1)) + (x >> 31)) >> e;
}

/* The cell update and the new output state of one batch row from its gates (input, forget,
 * cell, output, `units` each; the cell gate is overwritten by the new cell state), the output
 * state also written to `out`. The products of two Q0.15 gates (or a gate and the cell) divided
 * by at least 2^15 stay inside int16: no wrap. */
static void mcuflow_lstm_update(const mcuflow_dsp_lstm_t *p, int32_t *gates, int16_t *cell,
                                int8_t *h, int8_t *out)
{
    const int32_t units = p->units, shift = p->cell_shift, clip = p->cell_clip;
    int32_t *cells = gates + 2 * units; /* the cell gate, replaced by the new cell state */
    for (int32_t r = 0; r < units; ++r) {
        const int32_t kept = mcuflow_lstm_rdbpot(gates[units + r] * cell[r], 15);
        const int32_t added = mcuflow_lstm_rdbpot(gates[r] * cells[r], shift);
        int32_t c = mcuflow_lstm_ssat16(kept + added);
        if (clip > 0) {
            c = mcuflow_clamp(c, -clip, clip);
        }
        cell[r] = (int16_t)c;
        cells[r] = c;
    }
    const int32_t zero = p->hidden_zero_point;
    /* a local copy, which the stores below cannot alias: not reloaded after each of them */
    const mcuflow_dsp_lstm_cell_t cell_tanh = p->cell_tanh, *tanh_of = &cell_tanh;
    const int16_t *table = tanh_of->table;
    const int32_t mask = (1 << tanh_of->table_bits) - 1;
    const int8_t *reciprocal = p->reciprocal;
    const mcuflow_dsp_lstm_rq_t q = p->hidden_rq;
    const int32_t *output_gate = gates + 3 * units;
    for (int32_t r = 0; r < units; ++r) {
        const int32_t tanh = mcuflow_lstm_cell_tanh(cells[r], table, mask, tanh_of, reciprocal);
        const int32_t hidden = mcuflow_lstm_rq(output_gate[r] * tanh, q.left, q.multiplier,
                                               q.round, q.negative, q.right);
        h[r] = out[r] = (int8_t)mcuflow_ssat8(hidden + zero);
    }
}

/* Step `s` of the sequence (time-major order of time and batch): its input row offset. */
static inline int32_t mcuflow_lstm_row(const mcuflow_dsp_lstm_t *p, int32_t s)
{
    const int32_t t = s / p->batch, b = s % p->batch;
    return p->time_major ? s : b * p->time + t;
}

/* One step of batch row `b` from its input accumulators `ax` (input row `row`). */
static void mcuflow_lstm_step(const mcuflow_dsp_lstm_t *p, int32_t b, int32_t row, int32_t *ax,
                              int32_t *ah, int8_t *output, int8_t *output_state,
                              int16_t *cell_state, mcuflow_word_t *scratch)
{
    const int32_t units = p->units;
    int8_t *h = output_state + b * units;
    mcuflow_dsp_matvec_s8(&p->recurrent, p->recurrent_bias, h, scratch, ah);
    mcuflow_lstm_gates(p, ax, ah);
    mcuflow_lstm_update(p, ax, cell_state + b * units, h, output + row * units);
}

void mcuflow_lstm_dsp_s8(const mcuflow_dsp_lstm_t *p, const int8_t *input, int8_t *output,
                         int8_t *output_state, int16_t *cell_state, mcuflow_word_t *scratch)
{
    const int32_t units = p->units, features = p->features, steps = p->time * p->batch;
    const int32_t words = 4 * p->input.groups > 2 * p->recurrent.groups
                              ? 4 * p->input.groups
                              : 2 * p->recurrent.groups;
    int32_t *ax0 = (int32_t *)(scratch + words);
    int32_t *ax1 = ax0 + MCUFLOW_LSTM_DSP_GATES * units;
    int32_t *ah = ax1 + MCUFLOW_LSTM_DSP_GATES * units;
    for (int32_t s = 0; s < steps; s += 2) {
        const int32_t row0 = mcuflow_lstm_row(p, s);
        const int32_t row1 = s + 1 < steps ? mcuflow_lstm_row(p, s + 1) : row0;
        mcuflow_dsp_matmul2_s8(&p->input, p->input_bias, input + row0 * features,
                               input + row1 * features, scratch, ax0, ax1);
        mcuflow_lstm_step(p, s % p->batch, row0, ax0, ah, output, output_state, cell_state,
                          scratch);
        if (s + 1 < steps) {
            mcuflow_lstm_step(p, (s + 1) % p->batch, row1, ax1, ah, output, output_state,
                              cell_state, scratch);
        }
    }
}
