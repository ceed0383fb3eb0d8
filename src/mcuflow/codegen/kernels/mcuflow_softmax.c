/* SOFTMAX and L2_NORMALIZATION int8 kernels: TFLite's reference gemmlowp fixed-point arithmetic,
 * bit-exact. */
#include "mcuflow_common.h"

/* mcuflow:interface */

/* SOFTMAX along the last axis (TFLite reference, gemmlowp fixed point). `exp_table[d]` is
 * exp_on_negative_values of the rescaled difference -d in Q0.31, for d = max - x in 0..255. */
typedef struct {
    int32_t rows, depth;
    int32_t diff_min;
    const int32_t *exp_table;
} mcuflow_softmax_t;

void mcuflow_softmax_s8(const mcuflow_softmax_t *p, const int8_t *input, int8_t *output);

/* L2_NORMALIZATION along the last axis (TFLite reference_integer_ops::L2Normalization): each of
 * `rows` rows of `depth` values, centred on the input zero point, times the inverse square root
 * of its sum of squares, into int8 with scale 1/128 and zero point 0. */
void mcuflow_l2_normalization_s8(int32_t rows, int32_t depth, int32_t input_zero_point,
                                 const int8_t *input, int8_t *output);

/* mcuflow:end-interface */

#define MCUFLOW_ACCUMULATION_INTEGER_BITS 12

/* gemmlowp SaturatingRoundingMultiplyByPOT for 0 < exponent < 31. */
static int32_t mcuflow_saturating_shift_left(int32_t x, int32_t exponent)
{
    const int32_t threshold = (int32_t)(((uint32_t)1 << (31 - exponent)) - 1u);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << exponent);
}

/* gemmlowp RoundingHalfSum. */
static int32_t mcuflow_rounding_half_sum(int32_t a, int32_t b)
{
    const int64_t sum = (int64_t)a + (int64_t)b;
    return (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1 (Newton-Raphson), Q0.31 in and out. */
static int32_t mcuflow_one_over_one_plus_x(int32_t a)
{
    const int32_t half_denominator = mcuflow_rounding_half_sum(a, INT32_MAX);
    int32_t x = 1515870810 + mcuflow_srdhm(half_denominator, -1010580540);
    for (int i = 0; i < 3; ++i) {
        const int32_t product = mcuflow_srdhm(half_denominator, x);
        const int32_t correction = mcuflow_srdhm(x, (1 << 29) - product);
        x = x + mcuflow_saturating_shift_left(correction, 2);
    }
    return mcuflow_saturating_shift_left(x, 1);
}

static int32_t mcuflow_leading_zeros(uint32_t x)
{
    int32_t n = 0;
    while (n < 32 && !(x & 0x80000000u)) {
        x <<= 1;
        ++n;
    }
    return n;
}

static void mcuflow_softmax_row(const mcuflow_softmax_t *p, const int8_t *in, int8_t *out)
{
    int32_t max = INT8_MIN;
    for (int32_t c = 0; c < p->depth; ++c) {
        max = in[c] > max ? in[c] : max;
    }
    int32_t sum = 0;
    for (int32_t c = 0; c < p->depth; ++c) {
        const int32_t diff = in[c] - max;
        if (diff >= p->diff_min) {
            sum += mcuflow_rdbpot(p->exp_table[-diff], MCUFLOW_ACCUMULATION_INTEGER_BITS);
        }
    }
    /* GetReciprocal of the Q12.19 sum. */
    const int32_t headroom_plus_one = mcuflow_leading_zeros((uint32_t)sum);
    const int32_t bits_over_unit = MCUFLOW_ACCUMULATION_INTEGER_BITS - headroom_plus_one;
    const int32_t shifted_sum_minus_one =
        (int32_t)(((uint32_t)sum << headroom_plus_one) - ((uint32_t)1 << 31));
    const int32_t scale = mcuflow_one_over_one_plus_x(shifted_sum_minus_one);
    for (int32_t c = 0; c < p->depth; ++c) {
        const int32_t diff = in[c] - max;
        int32_t value = INT8_MIN;
        if (diff >= p->diff_min) {
            const int32_t product = mcuflow_srdhm(scale, p->exp_table[-diff]);
            value = mcuflow_rdbpot(product, bits_over_unit + 31 - 8) + INT8_MIN;
        }
        out[c] = (int8_t)mcuflow_clamp(value, INT8_MIN, INT8_MAX);
    }
}

void mcuflow_softmax_s8(const mcuflow_softmax_t *p, const int8_t *input, int8_t *output)
{
    for (int32_t r = 0; r < p->rows; ++r) {
        mcuflow_softmax_row(p, input + (size_t)r * (size_t)p->depth,
                            output + (size_t)r * (size_t)p->depth);
    }
}

/* ---- L2_NORMALIZATION ------------------------------------------------------------------ */

/* TFLite GetInvSqrtQuantizedMultiplierExp with kReverseShift: 1 / sqrt(x) as a Q0.31
 * multiplier and a left shift (x <= 1 gives INT32_MAX, 0). */
static void mcuflow_inv_sqrt(int32_t x, int32_t *multiplier, int32_t *shift)
{
    if (x <= 1) {
        *multiplier = INT32_MAX;
        *shift = 0;
        return;
    }
    int32_t right = 11;
    while (x >= ((int32_t)1 << 29)) {
        x /= 4;
        ++right;
    }
    const int32_t pairs = (mcuflow_leading_zeros((uint32_t)x) - 1) / 2 - 1;
    right -= pairs;
    x = (int32_t)((uint32_t)x << (2 * pairs));
    const int32_t half_input = mcuflow_rdbpot(x >> 1, 1);
    const int32_t half_three = ((int32_t)1 << 28) + ((int32_t)1 << 27);
    int32_t estimate = (int32_t)1 << 28; /* 1 in Q3.28 */
    for (int i = 0; i < 5; ++i) {
        const int32_t cube = mcuflow_saturating_shift_left(
            mcuflow_srdhm(mcuflow_srdhm(estimate, estimate), estimate), 6);
        const int32_t step = mcuflow_srdhm(half_three, estimate) - mcuflow_srdhm(half_input, cube);
        estimate = mcuflow_saturating_shift_left(step, 3);
    }
    int32_t result = mcuflow_srdhm(estimate, 1518500250); /* times sqrt(2) / 2 */
    if (right < 0) {
        result = (int32_t)((uint32_t)result << -right);
        right = 0;
    }
    *multiplier = result;
    *shift = -right;
}

#define MCUFLOW_L2_OUTPUT_BITS 7

void mcuflow_l2_normalization_s8(int32_t rows, int32_t depth, int32_t input_zero_point,
                                 const int8_t *input, int8_t *output)
{
    for (int32_t r = 0; r < rows; ++r) {
        const int8_t *in = input + (size_t)r * (size_t)depth;
        int8_t *out = output + (size_t)r * (size_t)depth;
        int32_t squares = 0;
        for (int32_t c = 0; c < depth; ++c) {
            const int32_t centred = in[c] - input_zero_point;
            squares += centred * centred;
        }
        int32_t multiplier, shift;
        mcuflow_inv_sqrt(squares, &multiplier, &shift);
        for (int32_t c = 0; c < depth; ++c) {
            const int32_t scaled = mcuflow_requantize(in[c] - input_zero_point, multiplier,
                                                      shift + MCUFLOW_L2_OUTPUT_BITS);
            out[c] = (int8_t)mcuflow_clamp(scaled, INT8_MIN, INT8_MAX);
        }
    }
}
