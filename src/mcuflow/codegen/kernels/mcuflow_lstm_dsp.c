/* UNIDIRECTIONAL_SEQUENCE_LSTM (LiteRT's integer 8x8_16) for the Arm DSP extension, bit-exact
 * with mcuflow_lstm_s8.
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

/* (r * m + 2^14) >> 15 for a multiplier up to 32768 (which leaves r as it is). */
static inline int32_t mcuflow_lstm_mul32(int32_t r, int32_t m)
{
    return (r * m + (1 << 14)) >> 15;
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

/* The same in Q(cell_bits + 1) for the cell state's tanh: `c->table` holds 2^c->table_bits
 * entries (2^12 for Q1, whose quarter is 2^12: its first multiplier is 32768, no step), the
 * multipliers of bits 11 .. 14 and the smallest m1 whose exp gemmlowp flushes to 0. */
MCUFLOW_INLINE int32_t mcuflow_lstm_cell_exp(int32_t m1, const mcuflow_dsp_lstm_cell_t *c)
{
    int32_t r = c->table[m1 & ((1 << c->table_bits) - 1)];
    MCUFLOW_LSTM_STEPS(r, m1 >> MCUFLOW_DSP_LSTM_EXP_BITS, mcuflow_lstm_mul32, c->barrel[0],
                       c->barrel[1], c->barrel[2], c->barrel[3]);
    return m1 >= c->zero ? 0 : r;
}

/* gemmlowp's Newton-Raphson 2 / (1 + e) in Q2.13 for e in [0, 32767]. It depends on e through
 * hd = (e + 32768) >> 1 alone and lies within [-2, 3] of 2^28 / hd: the table holds its offset
 * from 2^28 / hd - 2 for j = e >> 1 = hd - 16384. */
MCUFLOW_INLINE int32_t mcuflow_lstm_reciprocal(int32_t e, const uint8_t *table)
{
    const uint32_t j = (uint32_t)e >> 1;
    const uint32_t quotient = ((uint32_t)1 << 28) / (j + 16384u);
    return (int32_t)(quotient + table[j]) - 2;
}

/* gemmlowp logistic of a Q3.12 int16, in Q0.15. */
MCUFLOW_INLINE int32_t mcuflow_lstm_sigmoid(int32_t a, const int16_t *table,
                                             const uint8_t *reciprocal)
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
                                          const uint8_t *reciprocal)
{
    const int32_t n = a < 0 ? -a : a;
    if (n == 0) {
        return 0;
    }
    return mcuflow_lstm_tanh_of(
        a, mcuflow_lstm_reciprocal(mcuflow_lstm_tanh_exp(n - 1, table), reciprocal));
}

/* gemmlowp tanh of the cell state (Q(cell_bits)), in Q0.15. */
MCUFLOW_INLINE int32_t mcuflow_lstm_cell_tanh(int32_t a, const mcuflow_dsp_lstm_cell_t *c,
                                              const uint8_t *reciprocal)
{
    const int32_t n = a < 0 ? -a : a;
    if (n == 0) {
        return 0;
    }
    return mcuflow_lstm_tanh_of(a, mcuflow_lstm_reciprocal(mcuflow_lstm_cell_exp(n - 1, c),
                                                           reciprocal));
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
    for (int32_t r = 0; r < units; ++r) {
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
    const uint8_t *reciprocal = p->reciprocal;
    for (int32_t r = 0; r < 2 * units; ++r) {
        ax[r] = mcuflow_lstm_sigmoid(ax[r], sigmoid, reciprocal);
    }
    for (int32_t r = 2 * units; r < 3 * units; ++r) {
        ax[r] = mcuflow_lstm_tanh(ax[r], tanh, reciprocal);
    }
    for (int32_t r = 3 * units; r < 4 * units; ++r) {
        ax[r] = mcuflow_lstm_sigmoid(ax[r], sigmoid, reciprocal);
    }
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
    const int32_t zero = p->hidden_zero_point;
    const mcuflow_dsp_lstm_cell_t *tanh_of = &p->cell_tanh;
    const uint8_t *reciprocal = p->reciprocal;
    const mcuflow_dsp_lstm_rq_t q = p->hidden_rq;
    for (int32_t r = 0; r < units; ++r) {
        const int32_t kept = mcuflow_lstm_rdbpot(gates[units + r] * cell[r], 15);
        const int32_t added = mcuflow_lstm_rdbpot(gates[r] * gates[2 * units + r], shift);
        int32_t c = mcuflow_lstm_ssat16(kept + added);
        if (clip > 0) {
            c = mcuflow_clamp(c, -clip, clip);
        }
        cell[r] = (int16_t)c;
        const int32_t tanh = mcuflow_lstm_cell_tanh(c, tanh_of, reciprocal);
        const int32_t product = gates[3 * units + r] * tanh;
        const int32_t hidden = mcuflow_lstm_rq(product, q.left, q.multiplier, q.round,
                                               q.negative, q.right);
        h[r] = (int8_t)mcuflow_ssat8(hidden + zero);
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
    mcuflow_lstm_update(p, ax, cell_state + b * units, h);
    memcpy(output + row * units, h, (size_t)units);
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
