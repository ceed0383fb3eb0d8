/* ADD and SUB int8 kernels for cores with the DSP extension (TFLite bit-exact): two table
 * look-ups and one multiply-accumulate per element instead of three double roundings. */
#include "mcuflow_dsp.h"

/* One innermost row; each input steps by 0 (broadcast) or 1. The output may alias an input
 * that steps by 1: every element is read before it is written. */
static void mcuflow_add_row(const mcuflow_dsp_add_t *p, const int8_t *a, int32_t step_a,
                            const int8_t *b, int32_t step_b, int8_t *out, int32_t n)
{
    const int32_t *t1 = p->table1 + 128;
    const int32_t *t2 = p->table2 + 128;
    const int32_t multiplier = p->rq[0], shift = p->rq[1], negative = p->negative;
    const uint32_t low = (uint32_t)p->rq[2], high = (uint32_t)p->rq[3];
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
}

void mcuflow_add_dsp_s8(const mcuflow_dsp_add_t *p, const mcuflow_broadcast_t *b,
                        const int8_t *input1, const int8_t *input2, int8_t *output)
{
    const int32_t last = b->rank - 1;
    const int32_t n = b->dims[last];
    const int32_t rows = mcuflow_broadcast_rows(b);
    int32_t index[MCUFLOW_MAX_RANK] = {0};
    for (int32_t r = 0; r < rows; ++r, mcuflow_broadcast_next(b, index)) {
        size_t o1, o2;
        mcuflow_broadcast_offsets(b, index, &o1, &o2);
        int8_t *out = output + (size_t)r * (size_t)n;
        mcuflow_add_row(p, input1 + o1, b->stride1[last], input2 + o2, b->stride2[last], out, n);
        if (p->act_min != -128 || p->act_max != 127) {
            mcuflow_clamp_bytes(out, n, p->act_min, p->act_max);
        }
    }
}
