/* UNIDIRECTIONAL_SEQUENCE_LSTM (LiteRT's integer 8x8_16) for the Arm DSP extension, bit-exact
 * with mcuflow_lstm_s8.
 *
 * Per step the gates' two matrix products run as FULLY_CONNECTED does (mcuflow_dsp_matvec_s8:
 * four stacked gate rows per pass, SMLAD on packed weights), each accumulator is requantised by
 * one SMMLAR (mcuflow_dsp_lstm_rq_t, exact while the shifted accumulator stays inside int32, which
 * the generator checks), and gemmlowp's int16 sigmoid and tanh are evaluated with their own
 * arithmetic but fewer instructions: exp on [-1/4, 0) read from a table the generator computes
 * with gemmlowp's series, the barrel shifter and Newton-Raphson steps as multiply-adds whose
 * operands provably stay inside int16 (tests/codegen/test_lstm_dsp.py compares them with
 * mcuflow.quant.fixedpoint on every int16 input).
 */
#include "mcuflow_dsp.h"

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

/* gemmlowp's exp_on_negative_values of -n (1 <= n <= 32768) in Q(bits), as Q0.15. The series
 * comes from `quarter`; every SaturatingRoundingDoublingHighMul has a result in [0, 32767] and
 * a constant in (0, 32768): (r * m + 2^14) >> 15. */
MCUFLOW_INLINE int32_t mcuflow_lstm_exp(int32_t n, int32_t bits, const int16_t *quarter,
                                        int32_t quarter_bits)
{
    static const int32_t barrel[7] = {25520, 19875, 12055, 4435, 600, 11, 0};
    const int32_t fraction = 13 - bits; /* log2 of one quarter */
    const int32_t low = -n & ((1 << fraction) - 1);
    const int32_t remainder = low - (1 << fraction) + n;
    const int32_t taps = bits + 2 < 7 ? bits + 2 : 7;
    int32_t r = quarter[low << (bits - quarter_bits)];
    for (int32_t k = 0; k < taps; ++k) {
        if (remainder & (1 << (fraction + k))) {
            r = (r * barrel[k] + (1 << 14)) >> 15;
        }
    }
    if (bits > 5 && n > (1 << (20 - bits))) {
        r = 0;
    }
    return r;
}

/* gemmlowp's Newton-Raphson 2 / (1 + e) in Q2.13 for e in [0, 32767]: half the denominator in
 * [16384, 32767], every iterate in [8190, 16384], 8192 - hd * x by one MLS. */
MCUFLOW_INLINE int32_t mcuflow_lstm_reciprocal(int32_t e)
{
    const int32_t hd = (e + 32768) >> 1;
    int32_t x = 23130 + ((hd * -15420 + (1 << 14)) >> 15);
    for (int32_t i = 0; i < 3; ++i) {
        const int32_t d = ((1 << 28) + (1 << 14) - 1 - hd * x) >> 15;
        x += ((x * d + (1 << 14)) >> 15) * 4;
    }
    return x;
}

/* gemmlowp logistic of a Q3.12 int16, in Q0.15. */
MCUFLOW_INLINE int32_t mcuflow_lstm_sigmoid(int32_t a, const int16_t *quarter, int32_t quarter_bits)
{
    const int32_t n = a < 0 ? -a : a;
    if (n == 0) {
        return 1 << 14;
    }
    const int32_t x = mcuflow_lstm_reciprocal(mcuflow_lstm_exp(n, 3, quarter, quarter_bits));
    const int32_t positive = mcuflow_lstm_ssat16(2 * x);
    return a > 0 ? positive : INT16_MAX - positive;
}

/* gemmlowp tanh of a Q(bits) int16 (bits 0 .. 6), in Q0.15. */
MCUFLOW_INLINE int32_t mcuflow_lstm_tanh(int32_t a, int32_t bits, const int16_t *quarter,
                                         int32_t quarter_bits)
{
    const int32_t n = a < 0 ? -a : a;
    if (n == 0) {
        return 0;
    }
    const int32_t x = mcuflow_lstm_reciprocal(mcuflow_lstm_exp(n, bits + 1, quarter, quarter_bits));
    const int32_t t = mcuflow_lstm_ssat16(4 * (x - (1 << 13)));
    return a < 0 ? -t : t;
}

/* One gate's rows: both products requantised and added with int16 saturation, then the gate's
 * activation (`tanh` a constant of each instance), in place of the input accumulators. */
MCUFLOW_INLINE void mcuflow_lstm_gate(const mcuflow_dsp_lstm_t *p, int32_t g, int32_t *ax,
                                      const int32_t *ah, int tanh)
{
    const mcuflow_dsp_lstm_rq_t qx = p->input_rq[g], qh = p->recurrent_rq[g];
    const int16_t *quarter = p->quarter;
    const int32_t quarter_bits = p->quarter_bits;
    for (int32_t r = 0; r < p->units; ++r) {
        int32_t v = mcuflow_lstm_ssat16(
            mcuflow_lstm_rq(ax[r], qx.left, qx.multiplier, qx.round, qx.negative, qx.right));
        v = mcuflow_lstm_ssat16(
            v + mcuflow_lstm_rq(ah[r], qh.left, qh.multiplier, qh.round, qh.negative, qh.right));
        ax[r] = tanh ? mcuflow_lstm_tanh(v, 3, quarter, quarter_bits)
                     : mcuflow_lstm_sigmoid(v, quarter, quarter_bits);
    }
}

static void mcuflow_lstm_sigmoid_gate(const mcuflow_dsp_lstm_t *p, int32_t g, int32_t *ax,
                                      const int32_t *ah)
{
    mcuflow_lstm_gate(p, g, ax, ah, 0);
}

static void mcuflow_lstm_tanh_gate(const mcuflow_dsp_lstm_t *p, int32_t g, int32_t *ax,
                                   const int32_t *ah)
{
    mcuflow_lstm_gate(p, g, ax, ah, 1);
}

/* (x + 2^(e-1) - [x < 0]) >> e: RoundingDivideByPOT. */
static inline int32_t mcuflow_lstm_rdbpot(int32_t x, int32_t e)
{
    return (x + (1 << (e - 1)) + (x >> 31)) >> e;
}

/* The cell update and the new output state of one batch row from its gates (input, forget,
 * cell, output, `units` each). The products of two Q0.15 gates (or a gate and the cell) divided
 * by at least 2^15 stay inside int16: no wrap. */
static void mcuflow_lstm_update(const mcuflow_dsp_lstm_t *p, const int32_t *gates, int16_t *cell,
                                int8_t *h)
{
    const int32_t units = p->units, shift = p->cell_shift, clip = p->cell_clip;
    const int32_t bits = p->cell_bits, quarter_bits = p->quarter_bits, zero = p->hidden_zero_point;
    const int16_t *quarter = p->quarter;
    const mcuflow_dsp_lstm_rq_t q = p->hidden_rq;
    for (int32_t r = 0; r < units; ++r) {
        const int32_t kept = mcuflow_lstm_rdbpot(gates[units + r] * cell[r], 15);
        const int32_t added = mcuflow_lstm_rdbpot(gates[r] * gates[2 * units + r], shift);
        int32_t c = mcuflow_lstm_ssat16(kept + added);
        if (clip > 0) {
            c = mcuflow_clamp(c, -clip, clip);
        }
        cell[r] = (int16_t)c;
        const int32_t product = gates[3 * units + r] * mcuflow_lstm_tanh(c, bits, quarter,
                                                                          quarter_bits);
        const int32_t hidden = mcuflow_lstm_rq(product, q.left, q.multiplier, q.round,
                                               q.negative, q.right);
        h[r] = (int8_t)mcuflow_ssat8(hidden + zero);
    }
}

void mcuflow_lstm_dsp_s8(const mcuflow_dsp_lstm_t *p, const int8_t *input, int8_t *output,
                         int8_t *output_state, int16_t *cell_state, mcuflow_word_t *scratch)
{
    const int32_t units = p->units;
    const int32_t groups =
        p->input.groups > p->recurrent.groups ? p->input.groups : p->recurrent.groups;
    int32_t *ax = (int32_t *)(scratch + 2 * groups);
    int32_t *ah = ax + MCUFLOW_LSTM_DSP_GATES * units;
    for (int32_t t = 0; t < p->time; ++t) {
        for (int32_t b = 0; b < p->batch; ++b) {
            const int32_t step = p->time_major ? t * p->batch + b : b * p->time + t;
            int8_t *h = output_state + b * units;
            mcuflow_dsp_matvec_s8(&p->input, p->input_bias, input + step * p->features, scratch,
                                  ax);
            mcuflow_dsp_matvec_s8(&p->recurrent, p->recurrent_bias, h, scratch, ah);
            mcuflow_lstm_sigmoid_gate(p, 0, ax, ah);
            mcuflow_lstm_sigmoid_gate(p, 1, ax + units, ah + units);
            mcuflow_lstm_tanh_gate(p, 2, ax + 2 * units, ah + 2 * units);
            mcuflow_lstm_sigmoid_gate(p, 3, ax + 3 * units, ah + 3 * units);
            mcuflow_lstm_update(p, ax, cell_state + b * units, h);
            memcpy(output + step * units, h, (size_t)units);
        }
    }
}
