/* SVDF int8 kernel for the Arm DSP extension (LiteRT's reference_ops::EvalIntegerSVDF, bit-exact).
 *
 * The feature matmul is FULLY_CONNECTED's matrix-vector product (mcuflow_dsp_matvec_s32, four
 * filters per pass). The state is not moved by memmove: each filter's values are shifted one
 * slot towards the oldest by the time dot product itself, which loads them two at a time,
 * stores them one slot lower and multiplies them with SMLAD. Every sum wraps as LiteRT's int32
 * arithmetic does; each requantisation is a one-multiply formula the generator proved exact on
 * every reachable sum, or TFLite's MultiplyByQuantizedMultiplier. */
#include "mcuflow_dsp.h"

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

/* A unit's sum requantised by `q` to int8 (TFLite's path adds the output offset). */
static inline int8_t mcuflow_svdf_output(int32_t sum, const mcuflow_dsp_svdf_rq_t *q,
                                         int32_t output_offset)
{
    if (q->fast) {
        return (int8_t)mcuflow_ssat8(mcuflow_svdf_fast(sum, q));
    }
    return (int8_t)mcuflow_clamp(mcuflow_requantize(sum, q->multiplier, q->shift) +
                                     output_offset,
                                 -128, 127);
}

#if MCUFLOW_DSP_ASM
/* One filter: its state values at `*s` shift one slot towards the oldest (`pairs` pairs,
 * each loaded from one slot up, stored back and multiplied with its time weights), then the
 * last old value with `fresh` (`joined`: an even memory) or `fresh` alone enters the last
 * slot; returns the dot product of the new state with the time weights at `*w`. Both pointers
 * end at the next filter. The LDR and STR of a pair may be unaligned. */
MCUFLOW_INLINE int32_t mcuflow_svdf_filter(int16_t **s, const int16_t **w, int32_t pairs,
                                           int joined, int32_t fresh)
{
    int16_t *sp = *s;
    const int16_t *wp = *w;
    int32_t dot = 0, n = pairs;
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
                                           int joined, int32_t fresh)
{
    int16_t *at = *s;
    const int16_t *weights = *w;
    int32_t dot = 0;
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

/* The state shift, time dot products and outputs of one batch (`fresh`: its filters' new
 * state values); `joined` is a constant of each instance. */
MCUFLOW_INLINE void mcuflow_svdf_units(const mcuflow_dsp_svdf_t *p, int32_t units,
                                       const int32_t *fresh, int16_t *state, int8_t *output,
                                       int joined)
{
    const int16_t *w = p->weights_time;
    const int32_t *bias = p->bias;
    const int32_t rank = p->rank, pairs = (p->memory - 1) >> 1;
    for (int32_t u = 0; u < units; ++u) {
        uint32_t sum = bias != NULL ? (uint32_t)bias[u] : 0u;
        for (int32_t r = 0; r < rank; ++r) {
            sum += (uint32_t)mcuflow_svdf_filter(&state, &w, pairs, joined, *fresh++);
        }
        output[u] = mcuflow_svdf_output((int32_t)sum, &p->time, p->output_offset);
    }
}

/* mcuflow_svdf_units of an even memory: the last old value pairs with the new one. */
static void mcuflow_svdf_units_even(const mcuflow_dsp_svdf_t *p, int32_t units,
                                    const int32_t *fresh, int16_t *state, int8_t *output)
{
    mcuflow_svdf_units(p, units, fresh, state, output, 1);
}

/* mcuflow_svdf_units of an odd memory: the new value alone. */
static void mcuflow_svdf_units_odd(const mcuflow_dsp_svdf_t *p, int32_t units,
                                   const int32_t *fresh, int16_t *state, int8_t *output)
{
    mcuflow_svdf_units(p, units, fresh, state, output, 0);
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
        int8_t *out = output + (size_t)b * (size_t)units;
        if (p->memory & 1) {
            mcuflow_svdf_units_odd(p, units, sums, batch_state, out);
        } else {
            mcuflow_svdf_units_even(p, units, sums, batch_state, out);
        }
    }
}
