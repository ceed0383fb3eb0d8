/* ADD, SUB, MUL, SQUARED_DIFFERENCE and PRELU int8 kernels with broadcasting (TFLite reference
 * semantics, bit-exact). */
#include "mcuflow_common.h"

/* mcuflow:interface */

typedef enum {
    MCUFLOW_ADD = 0,
    MCUFLOW_SUB = 1,
    MCUFLOW_MUL = 2,
    MCUFLOW_SQUARED_DIFFERENCE = 3, /* ADD's input rescaling (left_shift 7), squared difference */
    MCUFLOW_PRELU = 4 /* x >= 0: input1 multiplier; else x * alpha: output multiplier */
} mcuflow_binary_op_t;

/* ADD / SUB / MUL / SQUARED_DIFFERENCE / PRELU parameters (TFLite ArithmeticParams for int8). */
typedef struct {
    mcuflow_binary_op_t op;
    int32_t input1_offset, input2_offset, output_offset;
    int32_t left_shift;                      /* ADD / SUB / SQUARED_DIFFERENCE */
    int32_t input1_multiplier, input1_shift; /* ADD / SUB / SQUARED_DIFFERENCE / PRELU */
    int32_t input2_multiplier, input2_shift; /* ADD / SUB / SQUARED_DIFFERENCE */
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
} mcuflow_binary_t;

void mcuflow_binary_s8(const mcuflow_binary_t *p, const mcuflow_broadcast_t *b,
                       const int8_t *input1, const int8_t *input2, int8_t *output);

/* mcuflow:end-interface */

static inline int8_t mcuflow_add_one(const mcuflow_binary_t *p, int32_t a, int32_t b, int32_t sign)
{
    const int32_t x1 = (a + p->input1_offset) * ((int32_t)1 << p->left_shift);
    const int32_t x2 = (b + p->input2_offset) * ((int32_t)1 << p->left_shift);
    const int32_t s1 = mcuflow_requantize(x1, p->input1_multiplier, p->input1_shift);
    const int32_t s2 = mcuflow_requantize(x2, p->input2_multiplier, p->input2_shift);
    const int32_t raw = mcuflow_requantize(s1 + sign * s2, p->output_multiplier, p->output_shift);
    return (int8_t)mcuflow_clamp(raw + p->output_offset, p->act_min, p->act_max);
}

static inline int8_t mcuflow_mul_one(const mcuflow_binary_t *p, int32_t a, int32_t b)
{
    const int32_t product = (a + p->input1_offset) * (b + p->input2_offset);
    const int32_t raw = mcuflow_requantize(product, p->output_multiplier, p->output_shift);
    return (int8_t)mcuflow_clamp(raw + p->output_offset, p->act_min, p->act_max);
}

/* SQUARED_DIFFERENCE (squared_difference.cc): both inputs rescaled as ADD's, the difference
 * squared, then requantised. */
static inline int8_t mcuflow_squared_difference_one(const mcuflow_binary_t *p, int32_t a, int32_t b)
{
    const int32_t x1 = (a + p->input1_offset) * ((int32_t)1 << p->left_shift);
    const int32_t x2 = (b + p->input2_offset) * ((int32_t)1 << p->left_shift);
    const int32_t diff = mcuflow_requantize(x1, p->input1_multiplier, p->input1_shift) -
                         mcuflow_requantize(x2, p->input2_multiplier, p->input2_shift);
    const int32_t raw = mcuflow_requantize(diff * diff, p->output_multiplier, p->output_shift);
    return (int8_t)mcuflow_clamp(raw + p->output_offset, p->act_min, p->act_max);
}

/* PRELU (reference_ops::BroadcastPrelu4DSlow): input 2 is alpha. */
static inline int8_t mcuflow_prelu_one(const mcuflow_binary_t *p, int32_t a, int32_t b)
{
    const int32_t x = a + p->input1_offset;
    const int32_t raw =
        x >= 0 ? mcuflow_requantize(x, p->input1_multiplier, p->input1_shift)
               : mcuflow_requantize(x * (b + p->input2_offset), p->output_multiplier,
                                    p->output_shift);
    return (int8_t)mcuflow_clamp(raw + p->output_offset, p->act_min, p->act_max);
}

/* One row of SQUARED_DIFFERENCE or PRELU (see mcuflow_binary_row). */
static void mcuflow_binary_more_row(const mcuflow_binary_t *p, const int8_t *a, int32_t step_a,
                                    const int8_t *b, int32_t step_b, int8_t *out, int32_t n)
{
    size_t ia = 0, ib = 0;
    if (p->op == MCUFLOW_PRELU) {
        for (int32_t i = 0; i < n; ++i, ia += (size_t)step_a, ib += (size_t)step_b) {
            out[i] = mcuflow_prelu_one(p, a[ia], b[ib]);
        }
    } else {
        for (int32_t i = 0; i < n; ++i, ia += (size_t)step_a, ib += (size_t)step_b) {
            out[i] = mcuflow_squared_difference_one(p, a[ia], b[ib]);
        }
    }
}

/* One innermost row (an mcuflow_broadcast_row_fn over mcuflow_binary_t). */
static void mcuflow_binary_row(const void *params, const int8_t *a, int32_t step_a,
                               const int8_t *b, int32_t step_b, int8_t *out, int32_t n)
{
    const mcuflow_binary_t *p = (const mcuflow_binary_t *)params;
    if (p->op == MCUFLOW_SQUARED_DIFFERENCE || p->op == MCUFLOW_PRELU) {
        mcuflow_binary_more_row(p, a, step_a, b, step_b, out, n);
        return;
    }
    size_t ia = 0, ib = 0;
    if (p->op == MCUFLOW_MUL) {
        for (int32_t i = 0; i < n; ++i, ia += (size_t)step_a, ib += (size_t)step_b) {
            out[i] = mcuflow_mul_one(p, a[ia], b[ib]);
        }
    } else {
        const int32_t sign = p->op == MCUFLOW_SUB ? -1 : 1;
        for (int32_t i = 0; i < n; ++i, ia += (size_t)step_a, ib += (size_t)step_b) {
            out[i] = mcuflow_add_one(p, a[ia], b[ib], sign);
        }
    }
}

void mcuflow_binary_s8(const mcuflow_binary_t *p, const mcuflow_broadcast_t *b,
                       const int8_t *input1, const int8_t *input2, int8_t *output)
{
    mcuflow_broadcast_s8(b, mcuflow_binary_row, p, input1, input2, output);
}
