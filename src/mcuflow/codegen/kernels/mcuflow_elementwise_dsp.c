/* ADD and SUB int8 kernels for cores with the DSP extension (TFLite bit-exact): two table
 * look-ups and one multiply-accumulate per element instead of three double roundings. */
#include "mcuflow_dsp.h"

/* One innermost row (an mcuflow_broadcast_row_fn over mcuflow_dsp_add_t), then the fused
 * activation's clamp when it is narrower than int8. */
static void mcuflow_add_row(const void *params, const int8_t *a, int32_t step_a,
                            const int8_t *b, int32_t step_b, int8_t *out, int32_t n)
{
    const mcuflow_dsp_add_t *p = (const mcuflow_dsp_add_t *)params;
    const int32_t *t1 = p->table1 + 128;
    const int32_t *t2 = p->table2 + 128;
    const int32_t multiplier = p->rq[0], shift = p->rq[1], negative = p->negative;
    const uint32_t low = (uint32_t)p->rq[2], high = (uint32_t)p->rq[3];
    int8_t *const row = out;
    int8_t *end = out + n;
    if (step_a == 1 && step_b == 1) {
        for (; out < end; ++out) {
            const int32_t sum = t1[*a++] + t2[*b++];
            *out = (int8_t)mcuflow_dsp_requant_words(sum, multiplier, low, high, shift, negative);
        }
    } else {
        for (; out < end; ++out, a += step_a, b += step_b) {
            const int32_t sum = t1[*a] + t2[*b];
            *out = (int8_t)mcuflow_dsp_requant_words(sum, multiplier, low, high, shift, negative);
        }
    }
    if (p->act_min != -128 || p->act_max != 127) {
        mcuflow_clamp_bytes(row, n, p->act_min, p->act_max);
    }
}

void mcuflow_add_dsp_s8(const mcuflow_dsp_add_t *p, const mcuflow_broadcast_t *b,
                        const int8_t *input1, const int8_t *input2, int8_t *output)
{
    mcuflow_broadcast_s8(b, mcuflow_add_row, p, input1, input2, output);
}
