/* UNIDIRECTIONAL_SEQUENCE_LSTM, LiteRT's fully-integer "8x8_16" kernel (lstm_eval.cc
 * EvalInteger8x8_16), bit-exact: int8 gate products requantised to Q3.12 int16, gemmlowp int16
 * sigmoid and tanh, an int16 cell state, the int8 output o * tanh(c). */
#include "mcuflow_common.h"

/* mcuflow:interface */

/* One integer LSTM layer without CIFG, peephole, projection or layer norm. Gates in the order
 * input, forget, cell, output; every constant comes from mcuflow.ref.lstm.prepare_lstm. */
typedef struct {
    int32_t batch, time, features, units;
    int32_t time_major;                  /* input [time, batch, features], else [batch, ...] */
    const int8_t *input_weights[4];      /* [units, features] per gate */
    const int8_t *recurrent_weights[4];  /* [units, units] per gate */
    const int32_t *input_bias;           /* [4 * units]: bias - input zero point * row sums */
    const int32_t *recurrent_bias;       /* [4 * units]: - output zero point * row sums */
    int32_t input_multiplier[4], input_shift[4];         /* to Q3.12 */
    int32_t recurrent_multiplier[4], recurrent_shift[4]; /* to Q3.12 */
    int32_t cell_exponent;               /* log2 of the cell state's scale, -15 .. -9 */
    int32_t hidden_multiplier, hidden_shift, hidden_zero_point; /* o * tanh(c) to int8 */
    int32_t cell_clip;                   /* 0: none */
} mcuflow_lstm_t;

/* Runs the whole sequence. `output_state` [batch, units] int8 and `cell_state` [batch, units]
 * int16 carry over from one call to the next (TFLite variable tensors); `scratch` holds
 * 4 * units int16 gate values (aligned to 2 bytes). */
void mcuflow_lstm_s8(const mcuflow_lstm_t *p, const int8_t *input, int8_t *output,
                     int8_t *output_state, int16_t *cell_state, int16_t *scratch);

/* mcuflow:end-interface */

#define MCUFLOW_LSTM_GATES 4

/* int16 two's complement wrap of an int32 (what a C++ int16 add or cast does). */
static inline int32_t mcuflow_wrap16(int32_t x)
{
    return (int32_t)(int16_t)(uint16_t)(uint32_t)x;
}

/* gemmlowp SaturatingRoundingDoublingHighMul on int16. */
static inline int32_t mcuflow_srdhm16(int32_t a, int32_t b)
{
    if (a == INT16_MIN && b == INT16_MIN) {
        return INT16_MAX;
    }
    const int32_t ab = a * b;
    const int32_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
    return (ab + nudge) / (1 << 15);
}

/* gemmlowp SaturatingRoundingMultiplyByPOT<exponent> on int16, exponent >= 0. */
static inline int32_t mcuflow_mul_pot16(int32_t x, int32_t exponent)
{
    const int32_t threshold = (1 << (15 - exponent)) - 1;
    if (x > threshold) {
        return INT16_MAX;
    }
    return x < -threshold ? INT16_MIN : x * (1 << exponent);
}

/* exp on [-1/4, 0) of a Q0.15 value (the int16 constants are gemmlowp's int32 ones / 2^16). */
static int32_t mcuflow_exp_quarter16(int32_t a)
{
    const int32_t constant_term = 28918; /* exp(-1/8) */
    const int32_t x = mcuflow_wrap16(a + (1 << 12));
    const int32_t x2 = mcuflow_srdhm16(x, x);
    const int32_t x3 = mcuflow_srdhm16(x2, x);
    const int32_t x4 = mcuflow_srdhm16(x2, x2);
    const int32_t x4_over_4 = mcuflow_rdbpot(x4, 2);
    const int32_t third = mcuflow_srdhm16(mcuflow_wrap16(x4_over_4 + x3), 10923);
    const int32_t series = mcuflow_rdbpot(mcuflow_wrap16(third + x2), 1);
    const int32_t product = mcuflow_srdhm16(constant_term, mcuflow_wrap16(x + series));
    return mcuflow_clamp(constant_term + product, INT16_MIN, INT16_MAX);
}

/* gemmlowp exp_on_negative_values: exp(a) in Q0.15 for a <= 0 in Q(integer_bits). */
static int32_t mcuflow_exp_negative16(int32_t a, int32_t integer_bits)
{
    static const int32_t exponents[7] = {-2, -1, 0, 1, 2, 3, 4};
    static const int32_t multipliers[7] = {25520, 19875, 12055, 4435, 600, 11, 0};
    const int32_t fractional_bits = 15 - integer_bits;
    const int32_t one_quarter = 1 << (fractional_bits - 2);
    const int32_t a_mod = mcuflow_wrap16((a & (one_quarter - 1)) - one_quarter);
    int32_t result = mcuflow_exp_quarter16(mcuflow_mul_pot16(a_mod, integer_bits));
    const int32_t remainder = mcuflow_wrap16(a_mod - a);
    for (int32_t k = 0; k < 7; ++k) {
        if (integer_bits > exponents[k] &&
            (remainder & (1 << (fractional_bits + exponents[k]))) != 0) {
            result = mcuflow_srdhm16(result, multipliers[k]);
        }
    }
    if (integer_bits > 5 && a < -(1 << (20 - integer_bits))) {
        result = 0; /* below -32 */
    }
    return a == 0 ? INT16_MAX : result;
}

/* gemmlowp's Newton-Raphson 2 / (1 + a) in Q2.13 for a in [0, 1] (Q0.15). */
static int32_t mcuflow_reciprocal16(int32_t a)
{
    const int32_t sum = a + INT16_MAX;
    const int32_t half_denominator = (sum + (sum >= 0 ? 1 : -1)) / 2;
    int32_t x = mcuflow_wrap16(23130 + mcuflow_srdhm16(half_denominator, -15420));
    for (int32_t i = 0; i < 3; ++i) {
        const int32_t product = mcuflow_srdhm16(half_denominator, x);
        const int32_t correction = mcuflow_srdhm16(x, mcuflow_wrap16((1 << 13) - product));
        x = mcuflow_wrap16(x + mcuflow_mul_pot16(correction, 2));
    }
    return x;
}

/* gemmlowp logistic of a Q(integer_bits) int16, in Q0.15. */
static int32_t mcuflow_logistic16(int32_t a, int32_t integer_bits)
{
    if (a == 0) {
        return 1 << 14;
    }
    const int32_t absolute = a > 0 ? a : mcuflow_wrap16(-a);
    const int32_t exp = mcuflow_exp_negative16(mcuflow_wrap16(-absolute), integer_bits);
    const int32_t positive = mcuflow_mul_pot16(mcuflow_reciprocal16(exp), 1);
    return a > 0 ? positive : mcuflow_wrap16(INT16_MAX - positive);
}

/* gemmlowp tanh of a Q(integer_bits) int16, in Q0.15. */
static int32_t mcuflow_tanh16(int32_t a, int32_t integer_bits)
{
    if (a == 0) {
        return 0;
    }
    const int32_t nonpositive = a < 0 ? a : mcuflow_wrap16(-a);
    const int32_t exp = mcuflow_exp_negative16(nonpositive, integer_bits + 1);
    const int32_t t = mcuflow_mul_pot16(mcuflow_wrap16(mcuflow_reciprocal16(exp) - (1 << 13)), 2);
    return a < 0 ? mcuflow_wrap16(-t) : t;
}

static int32_t mcuflow_lstm_dot(const int8_t *x, const int8_t *w, int32_t n)
{
    int32_t acc = 0;
    for (int32_t k = 0; k < n; ++k) {
        acc += (int32_t)x[k] * (int32_t)w[k];
    }
    return acc;
}

/* The four gates of one batch row: both products requantised and added with int16 saturation
 * (MatrixBatchVectorMultiplyAccumulate), then sigmoid, or tanh for the cell gate. */
static void mcuflow_lstm_gates(const mcuflow_lstm_t *p, const int8_t *x, const int8_t *h,
                               int16_t *gates)
{
    const int32_t units = p->units;
    for (int32_t g = 0; g < MCUFLOW_LSTM_GATES; ++g) {
        for (int32_t r = 0; r < units; ++r) {
            const int32_t row = g * units + r;
            int32_t acc = p->input_bias[row] +
                          mcuflow_lstm_dot(x, p->input_weights[g] + r * p->features, p->features);
            int32_t v = mcuflow_clamp(
                mcuflow_requantize(acc, p->input_multiplier[g], p->input_shift[g]), INT16_MIN,
                INT16_MAX);
            acc = p->recurrent_bias[row] + mcuflow_lstm_dot(h, p->recurrent_weights[g] + r * units,
                                                            units);
            v = mcuflow_clamp(
                v + mcuflow_requantize(acc, p->recurrent_multiplier[g], p->recurrent_shift[g]),
                INT16_MIN, INT16_MAX);
            gates[row] = (int16_t)(g == 2 ? mcuflow_tanh16(v, 3) : mcuflow_logistic16(v, 3));
        }
    }
}

/* The cell update (CwiseMul, CwiseAdd, CwiseClipping) and the new output state of one row. */
static void mcuflow_lstm_update(const mcuflow_lstm_t *p, const int16_t *gates, int16_t *cell,
                                int8_t *h)
{
    const int32_t units = p->units;
    for (int32_t r = 0; r < units; ++r) {
        const int32_t input_gate = gates[r], forget_gate = gates[units + r];
        const int32_t cell_gate = gates[2 * units + r], output_gate = gates[3 * units + r];
        const int32_t kept = mcuflow_wrap16(mcuflow_rdbpot(forget_gate * cell[r], 15));
        const int32_t added =
            mcuflow_wrap16(mcuflow_rdbpot(input_gate * cell_gate, 30 + p->cell_exponent));
        int32_t c = mcuflow_clamp(kept + added, INT16_MIN, INT16_MAX);
        if (p->cell_clip > 0) {
            c = mcuflow_clamp(c, -p->cell_clip, p->cell_clip);
        }
        cell[r] = (int16_t)c;
        const int32_t hidden = mcuflow_requantize(
            output_gate * mcuflow_tanh16(c, 15 + p->cell_exponent), p->hidden_multiplier,
            p->hidden_shift);
        h[r] = (int8_t)mcuflow_clamp(hidden + p->hidden_zero_point, -128, 127);
    }
}

void mcuflow_lstm_s8(const mcuflow_lstm_t *p, const int8_t *input, int8_t *output,
                     int8_t *output_state, int16_t *cell_state, int16_t *scratch)
{
    for (int32_t t = 0; t < p->time; ++t) {
        for (int32_t b = 0; b < p->batch; ++b) {
            const int32_t step = p->time_major ? t * p->batch + b : b * p->time + t;
            int8_t *h = output_state + b * p->units;
            mcuflow_lstm_gates(p, input + step * p->features, h, scratch);
            mcuflow_lstm_update(p, scratch, cell_state + b * p->units, h);
            for (int32_t r = 0; r < p->units; ++r) {
                output[step * p->units + r] = h[r];
            }
        }
    }
}
