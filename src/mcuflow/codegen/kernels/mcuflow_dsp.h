/* mcuflow Arm DSP-extension kernels (Cortex-M4/M7/M33): parameter structs and the intrinsics.
 *
 * With __ARM_FEATURE_DSP the intrinsics are ACLE's (<arm_acle.h>); elsewhere they are exact C
 * emulations, so the same kernels run bit-exact on any host (used to test them under the
 * sanitizers). The generator packs the weights, folds the input offset into the bias and
 * computes every requantisation constant; the kernels only evaluate.
 *
 * Requantisation. Every int8 output is y = ssat8((t >> 32) >> shift) (then clamped to
 * [act_min, act_max] when that is narrower), where t is the 64-bit value
 * acc * multiplier + addend (+ negative when acc < 0). The generator proves, on every reachable
 * accumulator, that this equals TFLite's requantisation plus output offset (see
 * mcuflow/codegen/dsp.py): one multiply-accumulate instead of TFLite's double rounding.
 */
#ifndef MCUFLOW_DSP_H
#define MCUFLOW_DSP_H

#include <math.h>
#include <string.h>

#include "mcuflow_common.h"

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

/* The hottest loops have GNU assembly versions for Thumb-2 cores with the DSP extension (the
 * compilers schedule their loads poorly); elsewhere the C code computes the same thing. */
#if defined(__ARM_FEATURE_DSP) && defined(__thumb2__) && \
    (defined(__GNUC__) || defined(__clang__))
#define MCUFLOW_DSP_ASM 1
#else
#define MCUFLOW_DSP_ASM 0
#endif

/* Functions of the inner loops, inlined even where the compiler judges them large. */
#if defined(__GNUC__) || defined(__clang__)
#define MCUFLOW_INLINE static inline __attribute__((always_inline))
#else
#define MCUFLOW_INLINE static inline
#endif

/* Defines NAME(w, x, fours, acc): `fours` (> 0) times four groups, GROUP(w, x, acc) each, the
 * loop scaffolding shared by the int8 and int16 CONV_2D pixel pairs (fours2) and FULLY_CONNECTED
 * channel quads (fours4). With MCUFLOW_DSP_ASM the loop is one assembly block of four GROUP_ASM
 * (the asm twin of GROUP; accumulators acc[0..3] in operands s0..s3, pointers in w and x); a
 * macro since an asm template must be a string literal. Elsewhere GROUP itself, four times a
 * round. */
#if MCUFLOW_DSP_ASM
#define MCUFLOW_DSP_FOURS(NAME, GROUP_ASM, GROUP)                                               \
    MCUFLOW_INLINE void NAME(const mcuflow_word_t **w, const mcuflow_word_t **x, int32_t fours, \
                             int32_t *acc)                                                      \
    {                                                                                           \
        const mcuflow_word_t *wp = *w, *xp = *x;                                                \
        int32_t s0 = acc[0], s1 = acc[1], s2 = acc[2], s3 = acc[3];                             \
        __asm__ volatile("1:\n\t" GROUP_ASM GROUP_ASM GROUP_ASM GROUP_ASM                       \
                         "subs %[n], %[n], #1\n\t"                                              \
                         "bne 1b\n\t"                                                           \
                         : [s0] "+r"(s0), [s1] "+r"(s1), [s2] "+r"(s2), [s3] "+r"(s3),          \
                           [w] "+r"(wp), [x] "+r"(xp), [n] "+r"(fours)                          \
                         :                                                                      \
                         : "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory");              \
        acc[0] = s0;                                                                            \
        acc[1] = s1;                                                                            \
        acc[2] = s2;                                                                            \
        acc[3] = s3;                                                                            \
        *w = wp;                                                                                \
        *x = xp;                                                                                \
    }
#else
#define MCUFLOW_DSP_FOURS(NAME, GROUP_ASM, GROUP)                                               \
    MCUFLOW_INLINE void NAME(const mcuflow_word_t **w, const mcuflow_word_t **x, int32_t fours, \
                             int32_t *acc)                                                      \
    {                                                                                           \
        for (; fours > 0; --fours) {                                                            \
            GROUP(w, x, acc);                                                                   \
            GROUP(w, x, acc);                                                                   \
            GROUP(w, x, acc);                                                                   \
            GROUP(w, x, acc);                                                                   \
        }                                                                                       \
    }
#endif

/* Scratch words may also be written as halfwords: accesses through these types alias. */
#if defined(__GNUC__) || defined(__clang__)
typedef uint32_t mcuflow_word_t __attribute__((may_alias));
typedef uint16_t mcuflow_half_t __attribute__((may_alias));
#else
typedef uint32_t mcuflow_word_t;
typedef uint16_t mcuflow_half_t;
#endif

/* ---- the DSP instructions used (int16x2 lanes: bits 0-15 low, 16-31 high) ----------------- */

#if defined(__ARM_FEATURE_DSP)

/* Sign-extend bytes 0 and 2 into the two halfwords. */
static inline uint32_t mcuflow_sxtb16(uint32_t x)
{
    return (uint32_t)__sxtb16((int32_t)x);
}

/* Sign-extend bytes 1 and 3 (SXTB16 with its built-in rotation). */
static inline uint32_t mcuflow_sxtb16_ror8(uint32_t x)
{
#if defined(__GNUC__) || defined(__clang__)
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
#else
    return (uint32_t)__sxtb16((int32_t)__ror(x, 8));
#endif
}

/* acc + lo(a) * lo(b) + hi(a) * hi(b), wrapping. */
static inline int32_t mcuflow_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlad((int32_t)a, (int32_t)b, acc);
}

/* acc + lo(a) * lo(b). */
static inline int32_t mcuflow_smlabb(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlabb((int32_t)a, (int32_t)b, acc);
}

/* Sign-extend bytes 0 and 2 of x and add them to the halfwords of a. */
static inline uint32_t mcuflow_sxtab16(uint32_t a, uint32_t x)
{
    return (uint32_t)__sxtab16((int32_t)a, (int32_t)x);
}

/* Bytes 1 and 3 of x, sign-extended, added to the halfwords of a. */
static inline uint32_t mcuflow_sxtab16_ror8(uint32_t a, uint32_t x)
{
#if defined(__GNUC__) || defined(__clang__)
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
#else
    return (uint32_t)__sxtab16((int32_t)a, (int32_t)__ror(x, 8));
#endif
}

/* acc + hi(a) * hi(b). */
static inline int32_t mcuflow_smlatt(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlatt((int32_t)a, (int32_t)b, acc);
}

/* acc + lo(a) * hi(b). */
static inline int32_t mcuflow_smlabt(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlabt((int32_t)a, (int32_t)b, acc);
}

/* acc + hi(a) * lo(b). */
static inline int32_t mcuflow_smlatb(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlatb((int32_t)a, (int32_t)b, acc);
}

/* x saturated to [-128, 127]. */
static inline int32_t mcuflow_ssat8(int32_t x)
{
    return __ssat(x, 8);
}

/* a + b saturated to int32. */
static inline int32_t mcuflow_qadd(int32_t a, int32_t b)
{
    return __qadd(a, b);
}

/* Each signed byte lane of x clamped to the lanes of [lo4, hi4]: SSUB8 sets a lane's GE bit
 * where its first operand's lane is not below the second's, SEL picks lane by lane by it. */
static inline uint32_t mcuflow_clamp4(uint32_t x, uint32_t lo4, uint32_t hi4)
{
#if defined(__GNUC__) || defined(__clang__)
    uint32_t t;
    __asm__("ssub8 %[t], %[x], %[lo]\n\t"
            "sel %[x], %[x], %[lo]\n\t"
            "ssub8 %[t], %[x], %[hi]\n\t"
            "sel %[x], %[hi], %[x]"
            : [x] "+r"(x), [t] "=&r"(t)
            : [lo] "r"(lo4), [hi] "r"(hi4)
            : "cc");
    return x;
#else
    (void)__ssub8((int32_t)x, (int32_t)lo4);
    x = (uint32_t)__sel((int32_t)x, (int32_t)lo4);
    (void)__ssub8((int32_t)x, (int32_t)hi4);
    return (uint32_t)__sel((int32_t)hi4, (int32_t)x);
#endif
}

#else /* exact emulations */

static inline int32_t mcuflow_lo16(uint32_t x)
{
    return (int32_t)(int16_t)(uint16_t)(x & 0xFFFFu);
}

static inline int32_t mcuflow_hi16(uint32_t x)
{
    return (int32_t)(int16_t)(uint16_t)(x >> 16);
}

/* Two's-complement wrap of a 64-bit sum to 32 bits, as the hardware does. */
static inline int32_t mcuflow_wrap32(int64_t x)
{
    const uint32_t bits = (uint32_t)((uint64_t)x & 0xFFFFFFFFu);
    return bits <= 0x7FFFFFFFu ? (int32_t)bits : (int32_t)(bits - 0x80000000u) - 0x7FFFFFFF - 1;
}

static inline uint32_t mcuflow_sxtb16(uint32_t x)
{
    const uint32_t lo = (uint32_t)(uint16_t)(int16_t)(int8_t)(uint8_t)(x & 0xFFu);
    const uint32_t hi = (uint32_t)(uint16_t)(int16_t)(int8_t)(uint8_t)((x >> 16) & 0xFFu);
    return lo | (hi << 16);
}

static inline uint32_t mcuflow_sxtb16_ror8(uint32_t x)
{
    return mcuflow_sxtb16((x >> 8) | (x << 24));
}

static inline int32_t mcuflow_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    return mcuflow_wrap32((int64_t)acc + (int64_t)(mcuflow_lo16(a) * mcuflow_lo16(b)) +
                          (int64_t)(mcuflow_hi16(a) * mcuflow_hi16(b)));
}

static inline int32_t mcuflow_smlabb(uint32_t a, uint32_t b, int32_t acc)
{
    return mcuflow_wrap32((int64_t)acc + (int64_t)(mcuflow_lo16(a) * mcuflow_lo16(b)));
}

static inline uint32_t mcuflow_sxtab16(uint32_t a, uint32_t x)
{
    const uint32_t e = mcuflow_sxtb16(x);
    const uint32_t lo = (a + e) & 0xFFFFu;
    const uint32_t hi = ((a >> 16) + (e >> 16)) & 0xFFFFu;
    return lo | (hi << 16);
}

static inline uint32_t mcuflow_sxtab16_ror8(uint32_t a, uint32_t x)
{
    return mcuflow_sxtab16(a, (x >> 8) | (x << 24));
}

static inline int32_t mcuflow_smlatt(uint32_t a, uint32_t b, int32_t acc)
{
    return mcuflow_wrap32((int64_t)acc + (int64_t)(mcuflow_hi16(a) * mcuflow_hi16(b)));
}

static inline int32_t mcuflow_smlabt(uint32_t a, uint32_t b, int32_t acc)
{
    return mcuflow_wrap32((int64_t)acc + (int64_t)(mcuflow_lo16(a) * mcuflow_hi16(b)));
}

static inline int32_t mcuflow_smlatb(uint32_t a, uint32_t b, int32_t acc)
{
    return mcuflow_wrap32((int64_t)acc + (int64_t)(mcuflow_hi16(a) * mcuflow_lo16(b)));
}

static inline int32_t mcuflow_ssat8(int32_t x)
{
    return x < -128 ? -128 : (x > 127 ? 127 : x);
}

static inline int32_t mcuflow_qadd(int32_t a, int32_t b)
{
    const int64_t sum = (int64_t)a + (int64_t)b;
    return sum > INT32_MAX ? INT32_MAX : (sum < INT32_MIN ? INT32_MIN : (int32_t)sum);
}

static inline uint32_t mcuflow_clamp4(uint32_t x, uint32_t lo4, uint32_t hi4)
{
    uint32_t result = 0;
    for (uint32_t lane = 0; lane < 32; lane += 8) {
        const int32_t value = (int8_t)(uint8_t)(x >> lane);
        const int32_t lo = (int8_t)(uint8_t)(lo4 >> lane);
        const int32_t hi = (int8_t)(uint8_t)(hi4 >> lane);
        result |= (uint32_t)(uint8_t)mcuflow_clamp(value, lo, hi) << lane;
    }
    return result;
}

#endif /* __ARM_FEATURE_DSP */

/* Two consecutive words of 8-byte aligned data, advancing the pointer by `STEP` bytes (one
 * LDRD with post-increment; STEP is 8 or 4). */
#if defined(__ARM_FEATURE_DSP) && (defined(__GNUC__) || defined(__clang__))
#define MCUFLOW_LOAD2_STEP(p, a, b, STEP)                                                       \
    __asm__ volatile("ldrd %0, %1, [%2], #" #STEP : "=r"(a), "=r"(b), "+r"(p) : : "memory")
#else
#define MCUFLOW_LOAD2_STEP(p, a, b, STEP)                                                       \
    do {                                                                                        \
        (a) = (p)[0];                                                                           \
        (b) = (p)[1];                                                                           \
        (p) += (STEP) / 4;                                                                      \
    } while (0)
#endif

/* Two consecutive words at byte offset `OFFSET` (a multiple of 4 below 1024) of 8-byte aligned
 * data (one LDRD). */
#if defined(__ARM_FEATURE_DSP) && (defined(__GNUC__) || defined(__clang__))
#define MCUFLOW_LOAD2_AT(p, a, b, OFFSET)                                                       \
    __asm__("ldrd %0, %1, [%2, #" #OFFSET "]" : "=r"(a), "=r"(b) : "r"(p), "m"(*(p)))
#else
#define MCUFLOW_LOAD2_AT(p, a, b, OFFSET)                                                       \
    do {                                                                                        \
        (a) = (uint32_t)(p)[(OFFSET) / 4];                                                      \
        (b) = (uint32_t)(p)[(OFFSET) / 4 + 1];                                                  \
    } while (0)
#endif

static inline void mcuflow_load2(const mcuflow_word_t **p, uint32_t *a, uint32_t *b)
{
    const mcuflow_word_t *q = *p;
    uint32_t x, y;
    MCUFLOW_LOAD2_STEP(q, x, y, 8);
    *a = x;
    *b = y;
    *p = q;
}

/* Four bytes from any address (an unaligned LDR on Cortex-M4/M7/M33). */
static inline uint32_t mcuflow_read_u32(const int8_t *p)
{
    uint32_t x;
    memcpy(&x, p, sizeof x);
    return x;
}

/* Clamp `n` int8 values in place to a fused activation [lo, hi], four per step. */
static inline void mcuflow_clamp_bytes(int8_t *p, int32_t n, int32_t lo, int32_t hi)
{
    const uint32_t lo4 = 0x01010101u * (uint32_t)(uint8_t)lo;
    const uint32_t hi4 = 0x01010101u * (uint32_t)(uint8_t)hi;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint32_t x = mcuflow_clamp4(mcuflow_read_u32(p + i), lo4, hi4);
        memcpy(p + i, &x, sizeof x);
    }
    for (; i < n; ++i) {
        p[i] = (int8_t)mcuflow_clamp(p[i], lo, hi);
    }
}

/* int16 `value` in both halfwords. */
static inline uint32_t mcuflow_pair16(int32_t value)
{
    const uint32_t half = (uint32_t)(uint16_t)(int16_t)value;
    return half | (half << 16);
}

/* (b - a) >> 8 of two accumulators that wrapped in 32 bits: exact while |b - a| < 2^31. */
static inline int32_t mcuflow_wrapped_diff_8(int32_t b, int32_t a)
{
    const uint32_t bits = (uint32_t)b - (uint32_t)a;
    const int32_t diff =
        bits <= 0x7FFFFFFFu ? (int32_t)bits : (int32_t)(bits - 0x80000000u) - 0x7FFFFFFF - 1;
    return diff >> 8;
}

/* ---- requantisation -------------------------------------------------------------------- */

/* Per output channel, four words: multiplier, shift (>= 0), addend low word, addend high word. */
#define MCUFLOW_DSP_RQ_WORDS 4

/* `x`, with its value range hidden from the optimiser (GCC then keeps a 32 x 32 -> 64 multiply
 * of it a single SMLAL). */
static inline int32_t mcuflow_opaque(int32_t x)
{
#if defined(__ARM_FEATURE_DSP) && (defined(__GNUC__) || defined(__clang__))
    __asm__("" : "+r"(x));
#endif
    return x;
}

/* The int8 output of accumulator `acc`: `multiplier`, `shift` and the addend words `low` and
 * `high` of its channel, the layer's `negative` (before the clamp). */
static inline int32_t mcuflow_dsp_requant_words(int32_t acc, int32_t multiplier, uint32_t low,
                                                uint32_t high, int32_t shift, int32_t negative)
{
    uint64_t t = ((uint64_t)high << 32) | low;
    t += (uint64_t)((int64_t)acc * multiplier);
    t += (uint64_t)((int64_t)mcuflow_opaque((int32_t)((uint32_t)acc >> 31)) * negative);
    return mcuflow_ssat8((int32_t)(uint32_t)(t >> 32) >> shift);
}

/* mcuflow_dsp_requant_words with the addend words at `addend` ([0] low, [1] high). */
static inline int32_t mcuflow_dsp_requant(int32_t acc, int32_t multiplier, const int32_t *addend,
                                          int32_t shift, int32_t negative)
{
    return mcuflow_dsp_requant_words(acc, multiplier, (uint32_t)addend[0], (uint32_t)addend[1],
                                     shift, negative);
}

/* The general requantisation, for layers whose one-multiply constants cannot be proven exact
 * (any scale: multipliers above 1/2 included). The accumulation is the same; only the words
 * per output channel and the code that turns an accumulator into an int8 differ. */
#define MCUFLOW_DSP_RQ_FAST 0    /* the one-multiply formula above */
#define MCUFLOW_DSP_RQ_EXACT 1   /* TFLite's arithmetic itself, see mcuflow_dsp_exact */
#define MCUFLOW_DSP_RQ_CLAMPED 2 /* FULLY_CONNECTED: the formula on a clamped accumulator */
#define MCUFLOW_DSP_RQ_SCALED 3  /* FULLY_CONNECTED: LiteRT's double-precision round */

/* MCUFLOW_DSP_RQ_EXACT words per output channel (MCUFLOW_DSP_RQ_WORDS of them): TFLite's
 * multiplier, its left shift max(shift, 0), its right shift max(-shift, 0), the output offset.
 * Returns MultiplyByQuantizedMultiplier(acc, multiplier, shift) + offset saturated to int8,
 * for every int32 accumulator: the left shift wraps as TFLite's does,
 * SaturatingRoundingDoublingHighMul is floor((x * multiplier + 2^30) / 2^31) (the multiplier is
 * never INT32_MIN) and RoundingDivideByPOT rounds half away from zero. */
MCUFLOW_INLINE int32_t mcuflow_dsp_exact(int32_t acc, const int32_t *e)
{
    const int32_t x = (int32_t)((uint32_t)acc << e[1]);
    const int64_t t = (int64_t)x * e[0] + ((int64_t)1 << 30);
    const int32_t high = (int32_t)(t >> 31);
    const int32_t right = e[2];
    const int32_t mask = (int32_t)(((uint32_t)1 << right) - 1u);
    const int32_t threshold = (mask >> 1) + (int32_t)((uint32_t)high >> 31);
    const int32_t y = (high >> right) + ((high & mask) > threshold ? 1 : 0);
    return mcuflow_ssat8(mcuflow_qadd(y, e[3]));
}

/* MCUFLOW_DSP_RQ_CLAMPED words per output channel: the one-multiply words (multiplier, shift,
 * addend low, addend high), then lo, hi, a left shift and the channel's negative term. The
 * accumulator is first clamped to [lo, hi]: below lo (above hi) every accumulator gives the
 * activation's minimum (maximum), and on the short range left the formula of the accumulator
 * shifted left (multipliers above 1/2 need more than 31 bits) is exact. */
#define MCUFLOW_DSP_CLAMPED_WORDS 8

MCUFLOW_INLINE int32_t mcuflow_dsp_clamped(int32_t acc, const int32_t *c)
{
    int32_t a = acc < c[4] ? c[4] : acc;
    a = a > c[5] ? c[5] : a;
    return mcuflow_dsp_requant_words((int32_t)((uint32_t)a << c[6]), c[0], (uint32_t)c[2],
                                     (uint32_t)c[3], c[1], c[7]);
}

/* MCUFLOW_DSP_RQ_SCALED: LiteRT's FULLY_CONNECTED requantisation round(double(acc) * scale),
 * saturated far outside int8. The generated model passes this function in
 * mcuflow_dsp_requant_t.scaled, so that only models that need it link double arithmetic
 * (software on single-precision FPUs). */
static inline int32_t mcuflow_dsp_round_scaled(int32_t acc, double scale)
{
    const double scaled = round((double)acc * scale);
    return scaled > 65536.0 ? 65536 : (scaled < -65536.0 ? -65536 : (int32_t)scaled);
}

typedef int32_t (*mcuflow_dsp_scaled_fn)(int32_t acc, double scale);

/* Requantisation of a layer: constants per output channel and the common terms. */
typedef struct {
    const int32_t *bias; /* int32 per output channel, input offset times weight sum folded in */
    const int32_t *rq;   /* words per output channel: MCUFLOW_DSP_RQ_WORDS (FAST, EXACT) or
                            MCUFLOW_DSP_CLAMPED_WORDS (CLAMPED); unused by SCALED */
    int32_t negative;    /* FAST: added to t when the accumulator is negative ... */
    const int32_t *negatives; /* ... or NULL; FULLY_CONNECTED: one such term per channel */
    int32_t act_min;     /* clamp of a fused activation narrower than int8 ... */
    int32_t act_max;     /* ... (act_min = -128 and act_max = 127 when none) */
    int32_t mode;        /* MCUFLOW_DSP_RQ_*; FAST when not given */
    const double *scales; /* SCALED: scaled(acc, scale) per output channel ... */
    int32_t output_offset; /* ... plus the output zero point ... */
    mcuflow_dsp_scaled_fn scaled; /* ... with mcuflow_dsp_round_scaled */
} mcuflow_dsp_requant_t;

/* ---- convolutions and fully connected -------------------------------------------------- */

/* Weights of a matrix product, output channels taken in pairs (a, b). For every 4 columns a pair
 * has two words whose int16 lanes hold a + 256 * b for two columns (b's bytes stored minus the
 * borrow of a negative a): SMLAD with them accumulates A + 256 B, SMLAD with their sign-extended
 * low bytes A alone, so one load and one SXTB16 feed four MACs. B is extracted every
 * `chunk_groups` groups, before 256 B can wrap. Column lanes follow the gathered inputs:
 * (c0, c2), (c1, c3) in SXTB16 order, (c0, c1), (c2, c3) in natural order. */
typedef struct {
    const uint32_t *weights; /* CONV_2D: pair after pair; FULLY_CONNECTED: two pairs per group */
    int32_t rows;            /* output channels */
    int32_t depth;           /* columns K (kernel_h * kernel_w * in_c for CONV_2D) */
    int32_t groups;          /* ceil(K / 4) */
    int32_t chunk_groups;    /* groups between extractions of B */
    int32_t gather;          /* CONV_2D columns: one of MCUFLOW_DSP_GATHER_* */
} mcuflow_dsp_matrix_t;

#define MCUFLOW_DSP_GATHER_VALUES 0 /* natural column order, value by value */
#define MCUFLOW_DSP_GATHER_WORDS 1  /* SXTB16 order, four channels per load (in_c % 4 == 0) */
#define MCUFLOW_DSP_GATHER_PADDED 2 /* SXTB16 order, in_c + 1 per tap (in_c % 4 == 3): the
                                       extra channel's weights are zero */
#define MCUFLOW_DSP_GATHER_ROWS 3   /* SXTB16 order, four columns per load along each window
                                       row (dilation_w 1), each row's columns rounded up
                                       to a multiple of 4 with zero weights */

/* CONV_2D (any kernel, stride, dilation, padding; batches). `columns` is 8-byte aligned scratch
 * of 4 * groups words: the int16 im2col of two output pixels, word 2 j + s holding columns 2 j
 * and 2 j + 1 of pixel s. Output pixels are finished two at a time in raster order after both
 * receptive fields were gathered, so the output may overlap the input as for the portable
 * kernel. Requantisation modes FAST and EXACT. */
void mcuflow_conv2d_dsp_s8(const mcuflow_window_t *g, const mcuflow_dsp_matrix_t *m,
                           const mcuflow_dsp_requant_t *q, const int8_t *input, int8_t *output,
                           mcuflow_word_t *columns);

/* DEPTHWISE_CONV_2D of few input channels, any depth multiplier: mcuflow_conv2d_dsp_s8 on its
 * weights widened to CONV_2D's (zero outside each output channel's input channel). */
void mcuflow_dwconv_dense_dsp_s8(const mcuflow_window_t *g, const mcuflow_dsp_matrix_t *m,
                                 const mcuflow_dsp_requant_t *q, const int8_t *input,
                                 int8_t *output, mcuflow_word_t *columns);

/* FULLY_CONNECTED of `batches` rows. `row` is 8-byte aligned scratch of 2 * groups words (one
 * input row as int16). Weights: groups of two pairs, rows padded to a multiple of 4. With
 * per-channel scales the negative term may differ per channel (`q->negatives`, padded like
 * the bias). Requantisation modes FAST, CLAMPED and SCALED. */
void mcuflow_fully_connected_dsp_s8(int32_t batches, const mcuflow_dsp_matrix_t *m,
                                    const mcuflow_dsp_requant_t *q, const int8_t *input,
                                    int8_t *output, mcuflow_word_t *row);

/* A FULLY_CONNECTED layer small enough to keep the whole input row (depth <= 8: _short) or
 * every accumulator (1 to MCUFLOW_DSP_FEW_UNITS units, depth a multiple of 4: _few) in
 * registers, requantisation FAST. Weights are int16 pairs in SXTB16 order, for each group of 4
 * columns (c0, c2) then (c1, c3). Each unit's requantisation is its tail of
 * MCUFLOW_DSP_TAIL_WORDS words: addend low, addend high, multiplier, shift, negative term.
 * _short records, MCUFLOW_DSP_SHORT_WORDS per unit: the bias, 4 weight words (8 columns, zero
 * past the depth), the tail. _few records: the units' biases, then per group of 4 columns each
 * unit's 2 weight words, then the units' tails. */
#define MCUFLOW_DSP_TAIL_WORDS 5
#define MCUFLOW_DSP_SHORT_WORDS (5 + MCUFLOW_DSP_TAIL_WORDS)
#define MCUFLOW_DSP_SHORT_DEPTH 8
#define MCUFLOW_DSP_FEW_UNITS 4
/* Bytes of _few's code per group of 4 columns of `units` units (its Duff's device entry). */
#define MCUFLOW_DSP_FEW_BYTES(units) (4 * (4 + 2 * (units) + ((units) == 4)))
#define MCUFLOW_DSP_FEW_ROWS (2 * MCUFLOW_DSP_FEW_UNITS) /* row by row, then the clamps */

typedef struct {
    const int32_t *records;
    int32_t blocks;  /* _few: blocks of eight groups, the first one entered part-way ... */
    int32_t entry;   /* ... this many bytes of code in (MCUFLOW_DSP_FEW_BYTES per group skipped),
                        plus the Thumb bit */
    int32_t routine; /* _few: the routine of the whole layer: rows - 1 + MCUFLOW_DSP_FEW_UNITS *
                        ties for one row left as computed, MCUFLOW_DSP_FEW_ROWS otherwise */
    int32_t rows;    /* output units */
    int32_t depth;   /* columns */
    int32_t batches; /* input rows */
    int32_t ties;    /* 1 when some unit's negative term is not 0, else 0 */
    int32_t narrow;  /* nonzero: outputs clamped to a fused activation [act_min, act_max] */
    int32_t act_min;
    int32_t act_max;
} mcuflow_dsp_fc_small_t;

/* FULLY_CONNECTED of depth <= MCUFLOW_DSP_SHORT_DEPTH, unit by unit. */
void mcuflow_fully_connected_short_dsp_s8(const mcuflow_dsp_fc_small_t *f, const int8_t *input,
                                          int8_t *output);

/* FULLY_CONNECTED of at most MCUFLOW_DSP_FEW_UNITS units, depth a multiple of 4: all units at
 * once, group by group. */
void mcuflow_fully_connected_few_dsp_s8(const mcuflow_dsp_fc_small_t *f, const int8_t *input,
                                        int8_t *output);

/* ---- depthwise -------------------------------------------------------------------------- */

/* 3x3 DEPTHWISE_CONV_2D, depth multiplier 1, dilation 1, stride 1 or 2 along the lines.
 * Channel by channel: the padded input plane of channel c is gathered as int16 into `plane`
 * (8-byte aligned scratch, plane_rows * plane_columns halfwords), then output channel c is
 * computed from it line by line and written, so the output may start at the input (TinyEngine's
 * in-place depthwise). Lines are the output's rows, or its columns (all fields "across" and
 * "along" swapped, the taps transposed) when that is cheaper. `channels` holds
 * MCUFLOW_DSP_DW_WORDS int32 per channel: for each kernel row the int16 pairs (2 w0, 2 w1) and
 * (2 w1, 2 w2) (doubled weights), then the requantisation words of the doubled accumulator
 * (multiplier, shift, addend low, addend high), then the doubled bias twice. */
#define MCUFLOW_DSP_DW_WORDS 12

typedef struct {
    const int32_t *channels;
    int32_t batches, depth;                /* images, channels */
    int32_t in_across, in_along;           /* input lines, values per line */
    int32_t in_across_step, in_along_step; /* int8 elements between lines, between values */
    int32_t in_batch_step;
    int32_t pad_across, pad_along;         /* implicit padding before the first line / value */
    int32_t stride_across, stride_along;   /* stride_along is 1 or 2 */
    int32_t out_across, out_along;
    int32_t out_across_step, out_along_step, out_batch_step;
    int32_t plane_rows, plane_columns; /* plane_columns even, >= pad_along + in_along and
                                          >= stride_along * (out_along rounded up to even) + 2 */
    int32_t pad_value;                 /* the input zero point */
    int32_t act_min, act_max;          /* clamp of a fused activation narrower than int8 */
    int32_t ties;                      /* nonzero: the requantisation's sign correction */
    int32_t exact; /* nonzero: the requantisation words are MCUFLOW_DSP_RQ_EXACT's (of the
                      accumulator, not doubled) */
} mcuflow_dsp_dw_t;

void mcuflow_dwconv_3x3_dsp_s8(const mcuflow_dsp_dw_t *d, const int8_t *input, int8_t *output,
                               mcuflow_half_t *plane);

/* DEPTHWISE_CONV_2D (any kernel, stride, dilation and padding; depth multiplier 1) pixel after
 * pixel in raster order, all channels of a pixel before the next (so it runs in place with
 * OVERLAP), without scratch. Four channels at a time: one input load, two SXTAB16 (adding the
 * input offset) and four 16-bit MACs per tap. `groups` holds one record of
 * MCUFLOW_DSP_DWP_WORDS(taps) int32 per group of 4 channels (padded with zeros), walked by one
 * pointer: the doubled bias of the 4 channels (input offset not folded: taps in the padding add
 * nothing), per tap (row-major) the int16 pairs (2 w_c0, 2 w_c2) and (2 w_c1, 2 w_c3), then the
 * requantisation words of the doubled accumulator, MCUFLOW_DSP_RQ_WORDS per channel. 3x3
 * windows at the input's edge read their taps in the padding from `pads`: the input zero point
 * in_c times (rounded up to a multiple of 4), which adds nothing either. */
#define MCUFLOW_DSP_DWP_WORDS(taps) (4 + 2 * (taps) + 4 * MCUFLOW_DSP_RQ_WORDS)

typedef struct {
    const int32_t *groups;
    const int8_t *pads;
    int32_t act_min, act_max;
    int32_t ties; /* nonzero: the requantisation's sign correction (negative term -2^31) */
    int32_t exact; /* nonzero: the records hold MCUFLOW_DSP_RQ_EXACT words (accumulator not
                      doubled) */
    /* Edge classes (9 taps, in_c % 4 == 0, not exact; NULL `edges`: none). The output rows and
     * columns whose windows have the same taps inside the input share a class (0: all inside);
     * class k = row class * column_count + column class has its own records (`edges`, in_c / 4
     * records per class), the same with zero weights at the taps outside, and its entry of
     * MCUFLOW_DSP_DWP_CLASS_WORDS in `edge_taps`: the first tap inside (ky, kx), then the tap
     * offsets of mcuflow_dwp_run_t from that tap (taps outside read it). Every pixel then runs
     * the inside pixels' assembly, a row's pixels of one class in one pass. */
    const int32_t *edges;
    const int32_t *edge_taps;
    const int8_t *row_classes;    /* per output row */
    const int8_t *column_classes; /* per output column */
    int32_t column_count;
} mcuflow_dsp_dw_pixels_t;
#define MCUFLOW_DSP_DWP_CLASS_WORDS 11

void mcuflow_dwconv_dsp_s8(const mcuflow_window_t *g, const mcuflow_dsp_dw_pixels_t *d,
                           const int8_t *input, int8_t *output);

/* ---- element-wise ----------------------------------------------------------------------- */

/* ADD and SUB: TFLite rescales each input, x -> MBQM((x + offset) << 20, m, s), an exact
 * function of the int8 value the generator tabulates (256 int32 per input, SUB's second table
 * negated); the sum is then requantised with the one-multiply formula. */
typedef struct {
    const int32_t *table1, *table2; /* indexed by x + 128 */
    int32_t rq[MCUFLOW_DSP_RQ_WORDS]; /* multiplier, shift, addend low, addend high */
    int32_t negative;
    int32_t act_min, act_max;
} mcuflow_dsp_add_t;

void mcuflow_add_dsp_s8(const mcuflow_dsp_add_t *p, const mcuflow_broadcast_t *b,
                        const int8_t *input1, const int8_t *input2, int8_t *output);

/* ---- transpose convolution -------------------------------------------------------------- */

/* Channels of one tap's int16 column in the scratch of mcuflow_transpose_conv_dsp_s8: the input
 * channels rounded up to a multiple of 4 (hw.kernels sizes the scratch with it). */
#define MCUFLOW_DSP_TCONV_COLUMN(channels) (((channels) + 3) / 4 * 4)

/* TRANSPOSE_CONV as mcuflow_transpose_conv_s8 computes it, two MACs per SMLAD: per output pixel
 * the (input + input_offset) of every input pixel reaching it is widened once into `columns`
 * (word-aligned scratch of MCUFLOW_DSP_TCONV_COLUMN(in_c) halfwords per reaching tap), then
 * each output channel sums them against its filter taps. `q->bias` is the plain bias. */
void mcuflow_transpose_conv_dsp_s8(const mcuflow_window_t *g, const mcuflow_requant_t *q,
                                   const int8_t *input, const int8_t *filter, int8_t *output,
                                   int8_t *columns);

/* ---- int16x8 depthwise convolution ------------------------------------------------------ */

/* How mcuflow_dwconv_s16_dsp pairs outputs: 3x3 at stride 1 (row weights (w0, w1), (w1, w2)),
 * any size at stride 1 (per plane word the pair (U_i, V_i)), any size at stride 2 (U_i) and
 * 3x3 at stride 2 (the same weights as MCUFLOW_DWS16_S2). */
#define MCUFLOW_DWS16_3X3 0
#define MCUFLOW_DWS16_S1 1
#define MCUFLOW_DWS16_S2 2
#define MCUFLOW_DWS16_3X3_S2 3

/* DEPTHWISE_CONV_2D of int16 input, int8 weights, depth multiplier 1, no dilation, stride 1 or
 * 2 along the width. Per channel a record of `record_words` int32: the 64-bit addend (bias
 * folded in) as low and high words, the multiplier, the shift, act_min, act_max, then
 * `row_words` weight words per kernel row as int16 pairs. The plane (scratch, word-aligned, `plane_rows` x
 * `plane_columns` halfwords, columns even) holds `copy_rows` x `copy_columns` input values at
 * (pad_top, pad_left), zeros elsewhere. */
typedef struct {
    const int32_t *channels;
    int32_t record_words;
    int32_t form; /* MCUFLOW_DWS16_* */
    int32_t row_words;
    int32_t plane_rows, plane_columns;
    int32_t copy_rows, copy_columns;
    int32_t act_min, act_max;
} mcuflow_dsp_dw_s16_t;

void mcuflow_dwconv_s16_dsp(const mcuflow_window_t *g, const mcuflow_dsp_dw_s16_t *d,
                            const int16_t *input, int16_t *output, mcuflow_half_t *plane);

/* ---- int16x8 convolutions and fully connected (mcuflow_s16_dsp.c) ---------------------- */

/* LiteRT's int16x8 CONV_2D and FULLY_CONNECTED: int16 activations (zero point 0), int8 weights
 * stored as int16 pairs, int64 bias. The generator proves that every dot product of the layer
 * (any int16 input, bias aside) fits in int32, so the kernels accumulate with SMLAD (wrapping
 * partial sums end exact), or else that every chunk of `chunk_groups` groups does. Weights: per pair of
 * output channels (CONV_2D) or quad of units (FULLY_CONNECTED), per group of 4 columns, each
 * channel's words (c0, c1) and (c2, c3); channels and columns padded with zero weights.
 *
 * CONV_2D requantises with MCUFLOW_S16_DSP_RQ_WORDS words per channel (multiplier M, shift S,
 * addend low and high): t = acc * M + addend is LiteRT's int64 MultiplyByQuantizedMultiplier
 * of acc + bias before its final shift, scaled so that the shift is 32 when `wide` is 0 (the
 * result is t's high word; S unused), else shifted right by S. FULLY_CONNECTED requantises
 * with LiteRT's round(double(acc + bias) * scale) (`bias`, `scales`), decided in integers when
 * `rq` holds MCUFLOW_S16_DSP_FC_WORDS words per unit (multiplier M, r, addend low and high, E,
 * span): t = acc * M + addend is (acc + bias + 1/2) * 2^(32 + r) up to an error the generator
 * bounds, so t >> (32 + r) is the result unless the top 32 bits f of t's fraction are within E
 * of an integer (f - E > span, unsigned); only then the double-precision round runs. */
#define MCUFLOW_S16_DSP_RQ_WORDS 4
#define MCUFLOW_S16_DSP_FC_WORDS 6

typedef struct {
    const uint32_t *weights;
    const int32_t *rq;    /* words per channel: MCUFLOW_S16_DSP_RQ_WORDS (CONV_2D) or
                             MCUFLOW_S16_DSP_FC_WORDS (FULLY_CONNECTED), or NULL */
    const int64_t *bias;  /* FULLY_CONNECTED: int64 per unit, or NULL */
    const double *scales; /* FULLY_CONNECTED: per unit, or NULL */
    int32_t rows;         /* output channels (units) */
    int32_t groups;       /* groups of 4 columns */
    int32_t row_words;    /* CONV_2D: column pairs per window row: k_w * in_c (dilation_w 1),
                             else k_w taps of in_c, each rounded up to even, halved */
    int32_t depth;        /* FULLY_CONNECTED: columns */
    int32_t wide;         /* CONV_2D: the requantisation shifts t right by S */
    int32_t chunk_groups; /* > 0: the dot products may leave int32; every chunk of this many
                             groups is summed in int32 and added to an int64 accumulator
                             (CONV_2D words `wide`, FULLY_CONNECTED in double precision) */
    int32_t act_min, act_max;
} mcuflow_s16_dsp_t;

/* CONV_2D (any kernel, stride, dilation, padding; batches), two output pixels at a time over
 * an int16 im2col: `columns` is 8-byte aligned scratch of 4 * groups words, word 2 j + s
 * holding columns 2 j and 2 j + 1 of pixel s. */
void mcuflow_conv2d_s16_dsp(const mcuflow_window_t *g, const mcuflow_s16_dsp_t *p,
                            const int16_t *input, int16_t *output, mcuflow_word_t *columns);

/* FULLY_CONNECTED of `batches` rows, four units at a time. `row` is 8-byte aligned scratch of
 * 2 * groups words (one input row, zero padded). */
void mcuflow_fully_connected_s16_dsp(int32_t batches, const mcuflow_s16_dsp_t *p,
                                     const int16_t *input, int16_t *output, mcuflow_word_t *row);

/* TRANSPOSE_CONV as one stride-1 CONV_2D per output phase (mcuflow.hw.tconv_phases): the
 * outputs (r + s_h j, c + s_w k) of each residue pair are an ordinary convolution of the input
 * with the filter taps reaching them, flipped, so no product by an inserted zero is computed.
 * The layer is a chain of phases, each run by mcuflow_conv2d_dsp_s8 with its own window (output
 * steps multiplied by the strides), packed weights and requantisation (bias + input offset
 * times its weight sums); `columns` is that kernel's scratch for the phase of most columns. */
typedef struct mcuflow_dsp_tconv_phase {
    mcuflow_window_t g;
    mcuflow_dsp_matrix_t m;
    mcuflow_dsp_requant_t q;
    int32_t out_offset; /* output elements before the phase's first pixel */
    const struct mcuflow_dsp_tconv_phase *next; /* NULL after the last phase */
} mcuflow_dsp_tconv_phase_t;

void mcuflow_transpose_conv_phases_dsp_s8(const mcuflow_dsp_tconv_phase_t *phase,
                                          const int8_t *input, int8_t *output,
                                          mcuflow_word_t *columns);

/* ---- SVDF ------------------------------------------------------------------------------- */

/* One requantisation of mcuflow_svdf_dsp_s8. When `fast`, the one-multiply words (multiplier,
 * shift, addend low, addend high; `negative` added when the sum is negative), proven by the
 * generator on every reachable sum, output offset included; else TFLite's
 * MultiplyByQuantizedMultiplier(sum, multiplier, shift) plus the output offset. */
typedef struct {
    int32_t fast;
    int32_t rq[MCUFLOW_DSP_RQ_WORDS];
    int32_t negative;
    int32_t multiplier;
    int32_t shift;
} mcuflow_dsp_svdf_rq_t;

/* SVDF int8 with int16 state (LiteRT's EvalIntegerSVDF, bit-exact). The feature matmul is
 * mcuflow_dsp_matvec_s32 over `matrix` (rows = filters), its bias the input offset times each
 * filter's weight sum; each sum is requantised by `feature` and saturated to int16. The state
 * [batches, filters, memory] is then shifted one slot towards the oldest, filter by filter, by
 * the time dot product that reads it (two int16 values per load and SMLAD), the new value
 * entering each filter's last slot; the `rank` dot products of a unit plus its bias are
 * requantised by `time` and saturated to int8. The state after an invocation is
 * LiteRT's. `scratch` is 8-byte aligned: one gathered input row (2 * groups words), then one
 * int32 per filter rounded up to a multiple of 4. */
typedef struct {
    const mcuflow_dsp_matrix_t *matrix;
    const int32_t *feature_bias; /* the input offset times each row's weight sum, padded */
    const int16_t *weights_time; /* [filters, memory] */
    const int32_t *bias;         /* [filters / rank] (zeros when the layer has none) */
    int32_t batches;
    int32_t memory;
    int32_t rank;
    int32_t output_offset;       /* added by the exact `time` requantisation */
    mcuflow_dsp_svdf_rq_t feature;
    mcuflow_dsp_svdf_rq_t time;
} mcuflow_dsp_svdf_t;

void mcuflow_svdf_dsp_s8(const mcuflow_dsp_svdf_t *p, const int8_t *input, int16_t *state,
                         int8_t *output, mcuflow_word_t *scratch);

/* ---- UNIDIRECTIONAL_SEQUENCE_LSTM (integer 8x8_16) ------------------------------------- */

/* MultiplyByQuantizedMultiplier of an accumulator whose shifted value stays inside int32,
 * exactly: y = (SMMLAR(acc << left, multiplier, round) + (negative & (acc >> 31))) >> right.
 * With TFLite's right shift r >= 1: left 1, round 2^(r-1), negative -1, right r; with a left
 * shift s >= 0: left s + 1, round 0, negative 0, right 0. */
typedef struct {
    int32_t left, multiplier, round, negative, right;
} mcuflow_dsp_lstm_rq_t;

/* Entries of the gates' exp tables: gemmlowp's exp of -(i + 1) for i below 2^this. */
#define MCUFLOW_DSP_LSTM_EXP_BITS 11
#define MCUFLOW_DSP_LSTM_RECIPROCAL_BYTES 16384

/* gemmlowp's exp in Q(bits + 1) of the cell state's tanh, Q(bits): exp of -(i + 1) for i below
 * 2^table_bits (11, or 12 for bits 0), the barrel shifter's multipliers of bits 11 .. 14 of i,
 * the mask of those bits that take a step (bit 11 is in the table for bits 0; past gemmlowp's
 * last step the result is flushed anyway), and the smallest i whose exp is flushed to 0 (32768:
 * none). */
typedef struct {
    const int16_t *table;
    int32_t table_bits;
    int32_t barrel[4];
    int32_t steps;
    int32_t zero;
} mcuflow_dsp_lstm_cell_t;

/* One integer LSTM layer (mcuflow_lstm_s8's arithmetic): the four gates' rows stacked (input,
 * forget, cell, output) in two packed matrices (input weights as CONV_2D's channel pairs,
 * recurrent weights as FULLY_CONNECTED's quads), their zero points folded into the biases.
 * Each exp table holds gemmlowp's exp_on_negative_values of -(i + 1) (sigmoid's in Q3.12, the
 * gate tanh's in Q4.11, the cell tanh's in Q(cell bits + 1)), the later steps of its barrel
 * shifter left to the kernel. */
typedef struct {
    int32_t batch, time, features, units;
    int32_t time_major;
    mcuflow_dsp_matrix_t input;     /* [4 units, features] in pairs (mcuflow_dsp_matmul2_s8) */
    mcuflow_dsp_matrix_t recurrent; /* [4 units, units] in quads (mcuflow_dsp_matvec_s8) */
    const int32_t *input_bias, *recurrent_bias;
    mcuflow_dsp_lstm_rq_t input_rq[4], recurrent_rq[4]; /* to Q3.12 */
    mcuflow_dsp_lstm_rq_t hidden_rq;                    /* o * tanh(c) to int8 */
    int32_t right_shifts; /* nonzero: every gate's rq has a right shift >= 1 */
    const int16_t *sigmoid_exp, *tanh_exp; /* 2^MCUFLOW_DSP_LSTM_EXP_BITS entries each */
    mcuflow_dsp_lstm_cell_t cell_tanh;
    const int8_t *reciprocal; /* MCUFLOW_DSP_LSTM_RECIPROCAL_BYTES: gemmlowp's 2 / (1 + e)
                                 minus 2^28 / hd, hd = (e + 32768) >> 1, by hd - 16384 */
    int32_t cell_shift; /* input gate x cell gate to the cell state: 30 + log2 of its scale */
    int32_t hidden_zero_point;
    int32_t cell_clip; /* 0: none */
} mcuflow_dsp_lstm_t;

/* Scratch words of mcuflow_lstm_dsp_s8: two gathered input rows (or one output state), then
 * 12 * units accumulators. */
#define MCUFLOW_DSP_LSTM_SCRATCH_WORDS(input_groups, recurrent_groups, units)                    \
    ((4 * (input_groups) > 2 * (recurrent_groups) ? 4 * (input_groups)                          \
                                                   : 2 * (recurrent_groups)) + 12 * (units))

/* The whole sequence, as mcuflow_lstm_s8 (the same states), the input products of two steps at
 * a time; `scratch` 8-byte aligned, MCUFLOW_DSP_LSTM_SCRATCH_WORDS words. */
void mcuflow_lstm_dsp_s8(const mcuflow_dsp_lstm_t *p, const int8_t *input, int8_t *output,
                         int8_t *output_state, int16_t *cell_state, mcuflow_word_t *scratch);

#endif /* MCUFLOW_DSP_H */
