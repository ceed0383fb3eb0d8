/* MAXIMUM and MINIMUM int8 kernels (TFLite reference MaximumMinimumBroadcastSlow, bit-exact). */
#include "mcuflow_common.h"

/* mcuflow:interface */

/* Element-wise maximum (`maximum` nonzero) or minimum of the stored int8 values, broadcast over
 * `b`; no requantisation (both inputs share the output's quantisation). The output may alias an
 * input that steps by 1 in every dim: each element is read before it is written. */
void mcuflow_maximum_minimum_s8(const mcuflow_broadcast_t *b, int32_t maximum,
                                const int8_t *input1, const int8_t *input2, int8_t *output);

/* mcuflow:end-interface */

static void mcuflow_maximum_row(const int8_t *x, int32_t step_x, const int8_t *y, int32_t step_y,
                                int8_t *out, int32_t n)
{
    for (int32_t i = 0; i < n; ++i, x += step_x, y += step_y) {
        out[i] = *x > *y ? *x : *y;
    }
}

static void mcuflow_minimum_row(const int8_t *x, int32_t step_x, const int8_t *y, int32_t step_y,
                                int8_t *out, int32_t n)
{
    for (int32_t i = 0; i < n; ++i, x += step_x, y += step_y) {
        out[i] = *x < *y ? *x : *y;
    }
}

void mcuflow_maximum_minimum_s8(const mcuflow_broadcast_t *b, int32_t maximum,
                                const int8_t *input1, const int8_t *input2, int8_t *output)
{
    const int32_t last = b->rank - 1;
    const int32_t n = b->dims[last];
    const int32_t rows = mcuflow_broadcast_rows(b);
    int32_t index[MCUFLOW_MAX_RANK] = {0};
    for (int32_t r = 0; r < rows; ++r, mcuflow_broadcast_next(b, index)) {
        size_t o1, o2;
        mcuflow_broadcast_offsets(b, index, &o1, &o2);
        const int8_t *x = input1 + o1, *y = input2 + o2;
        int8_t *out = output + (size_t)r * (size_t)n;
        if (maximum) {
            mcuflow_maximum_row(x, b->stride1[last], y, b->stride2[last], out, n);
        } else {
            mcuflow_minimum_row(x, b->stride1[last], y, b->stride2[last], out, n);
        }
    }
}
