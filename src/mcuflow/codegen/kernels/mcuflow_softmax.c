/* SOFTMAX, LOG_SOFTMAX and L2_NORMALIZATION int8 kernels: TFLite's reference gemmlowp
 * fixed-point arithmetic, bit-exact. */
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

/* LOG_SOFTMAX along the last axis (TFLite reference_integer_ops::LogSoftmax) into int8 with
 * scale 16/256 and zero point 127. `exp_table` is SOFTMAX's with beta 1; the input rescaling
 * (Q5.26, shift > 0) and its inverse (shift <= 0) are TFLite's MultiplyByQuantizedMultiplier
 * constants. */
typedef struct {
    int32_t rows, depth;
    int32_t diff_min;
    int32_t input_multiplier, input_shift;
    int32_t reverse_multiplier, reverse_shift;
    const int32_t *exp_table;
} mcuflow_log_softmax_t;

void mcuflow_log_softmax_s8(const mcuflow_log_softmax_t *p, const int8_t *input, int8_t *output);

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

/* ---- LOG_SOFTMAX ----------------------------------------------------------------------- */

#define MCUFLOW_LOG_INPUT_INTEGER_BITS MCUFLOW_ACCUMULATION_INTEGER_BITS
#define MCUFLOW_LOG_OUTPUT_INTEGER_BITS 5
#define MCUFLOW_LOG_ACCUM_INTEGER_BITS (MCUFLOW_LOG_OUTPUT_INTEGER_BITS + 1)

/* gemmlowp SaturatingRoundingMultiplyByPOT with a runtime exponent in (-31, 31). */
static int32_t mcuflow_multiply_by_pot(int32_t x, int32_t exponent)
{
    if (exponent > 0) {
        return mcuflow_saturating_shift_left(x, exponent);
    }
    return exponent < 0 ? mcuflow_rdbpot(x, -exponent) : x;
}

/* int32 addition saturated (TFLite SaturatingAddNonGemmlowp). */
static int32_t mcuflow_saturating_add(int32_t a, int32_t b)
{
    const int64_t sum = (int64_t)a + (int64_t)b;
    return sum > INT32_MAX ? INT32_MAX : (sum < INT32_MIN ? INT32_MIN : (int32_t)sum);
}

/* int32 addition wrapping around, as the fixed-point additions of the C++ do. */
static int32_t mcuflow_wrapping_add(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

/* TFLite log_x_for_x_greater_than_or_equal_to_1_impl<5, 12>: the Q5.26 log of a positive Q12.19
 * value (its power of two, then a rational approximation of the log of the mantissa). */
static int32_t mcuflow_log_q12_to_q5(int32_t x)
{
    const int32_t shifted_quarter = mcuflow_rdbpot(536870912, MCUFLOW_LOG_ACCUM_INTEGER_BITS);
    const int32_t sqrt_half = 1518500250, sqrt_sqrt_half = 1805811301;
    const int32_t headroom_a = mcuflow_leading_zeros((uint32_t)x);
    const int32_t r_a = mcuflow_multiply_by_pot(
        mcuflow_srdhm(mcuflow_multiply_by_pot(x, headroom_a - 1), sqrt_half), 1);
    const int32_t pow_2_a = mcuflow_saturating_add(
        mcuflow_multiply_by_pot(MCUFLOW_LOG_INPUT_INTEGER_BITS - headroom_a,
                                31 - MCUFLOW_LOG_ACCUM_INTEGER_BITS),
        shifted_quarter);
    const int32_t headroom_b = mcuflow_leading_zeros((uint32_t)mcuflow_srdhm(x, sqrt_half)) - 1;
    const int32_t r_b = mcuflow_multiply_by_pot(x, headroom_b);
    const int32_t pow_2_b = mcuflow_saturating_add(
        mcuflow_multiply_by_pot(MCUFLOW_LOG_INPUT_INTEGER_BITS - headroom_b,
                                31 - MCUFLOW_LOG_ACCUM_INTEGER_BITS),
        -shifted_quarter);
    const int32_t r = r_a < r_b ? r_a : r_b;
    const int32_t pow_2 = pow_2_a > pow_2_b ? pow_2_a : pow_2_b;
    const int32_t p = mcuflow_rounding_half_sum(r, sqrt_sqrt_half);
    const int32_t half_q = mcuflow_wrapping_add(r, -sqrt_sqrt_half);
    const int32_t q = mcuflow_wrapping_add(half_q, half_q);
    const int32_t square = mcuflow_srdhm(q, q);
    const int32_t num = mcuflow_wrapping_add(
        mcuflow_srdhm(q, r), mcuflow_srdhm(mcuflow_srdhm(q, square), 117049297));
    const int32_t inner = mcuflow_wrapping_add(mcuflow_wrapping_add(1057819769, q),
                                               mcuflow_srdhm(127690142, square));
    const int32_t denominator_minus_one =
        mcuflow_wrapping_add(mcuflow_srdhm(p, inner), mcuflow_srdhm(638450708, q));
    const int32_t reciprocal = mcuflow_one_over_one_plus_x(denominator_minus_one);
    const int32_t num_scaled = mcuflow_rdbpot(num, MCUFLOW_LOG_ACCUM_INTEGER_BITS);
    const int32_t total = mcuflow_wrapping_add(mcuflow_srdhm(pow_2, 1488522236),
                                               mcuflow_srdhm(num_scaled, reciprocal));
    return mcuflow_multiply_by_pot(total,
                                   MCUFLOW_LOG_ACCUM_INTEGER_BITS - MCUFLOW_LOG_OUTPUT_INTEGER_BITS);
}

#define MCUFLOW_LOG_SOFTMAX_SHIFT 22 /* 31 - 5 input integer bits - 4 output integer bits */

static void mcuflow_log_softmax_row(const mcuflow_log_softmax_t *p, const int8_t *in, int8_t *out)
{
    int32_t max = INT8_MIN;
    for (int32_t c = 0; c < p->depth; ++c) {
        max = in[c] > max ? in[c] : max;
    }
    int32_t sum = 0;
    for (int32_t c = 0; c < p->depth; ++c) {
        const int32_t diff = in[c] - max;
        if (diff >= p->diff_min) {
            sum = mcuflow_wrapping_add(
                sum, mcuflow_rdbpot(p->exp_table[-diff], MCUFLOW_ACCUMULATION_INTEGER_BITS));
        }
    }
    const int32_t log_sum = mcuflow_log_q12_to_q5(sum);
    const int32_t limit = mcuflow_requantize(mcuflow_wrapping_add(log_sum, INT32_MIN),
                                             p->reverse_multiplier, p->reverse_shift);
    const int32_t adjusted = p->diff_min - 1 > limit ? p->diff_min - 1 : limit;
    for (int32_t c = 0; c < p->depth; ++c) {
        const int32_t diff = in[c] - max;
        int32_t value = INT8_MIN;
        if (diff > adjusted) {
            const int32_t rescaled = mcuflow_requantize(diff, p->input_multiplier, p->input_shift);
            value = mcuflow_clamp(
                mcuflow_rdbpot(rescaled - log_sum, MCUFLOW_LOG_SOFTMAX_SHIFT) + 127, INT8_MIN,
                INT8_MAX);
        }
        out[c] = (int8_t)value;
    }
}

void mcuflow_log_softmax_s8(const mcuflow_log_softmax_t *p, const int8_t *input, int8_t *output)
{
    for (int32_t r = 0; r < p->rows; ++r) {
        mcuflow_log_softmax_row(p, input + (size_t)r * (size_t)p->depth,
                                output + (size_t)r * (size_t)p->depth);
    }
}
