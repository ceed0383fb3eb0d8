/* MAXIMUM and MINIMUM int8 kernels (TFLite reference MaximumMinimumBroadcastSlow, bit-exact). */
#include "mcuflow_common.h"

/* mcuflow:interface */

/* Element-wise maximum (`maximum` nonzero) or minimum of the stored int8 values, broadcast over
 * `b`; no requantisation (both inputs share the output's quantisation). The output may alias an
 * input that steps by 1 in every dim: each element is read before it is written. */
void mcuflow_maximum_minimum_s8(const mcuflow_broadcast_t *b, int32_t maximum,
                                const int8_t *input1, const int8_t *input2, int8_t *output);

/* mcuflow:end-interface */

/* One innermost row (an mcuflow_broadcast_row_fn; `params` points to the kernel's `maximum`). */
static void mcuflow_maximum_minimum_row(const void *params, const int8_t *x, int32_t step_x,
                                        const int8_t *y, int32_t step_y, int8_t *out, int32_t n)
{
    if (*(const int32_t *)params) {
        for (int32_t i = 0; i < n; ++i, x += step_x, y += step_y) {
            out[i] = *x > *y ? *x : *y;
        }
    } else {
        for (int32_t i = 0; i < n; ++i, x += step_x, y += step_y) {
            out[i] = *x < *y ? *x : *y;
        }
    }
}

void mcuflow_maximum_minimum_s8(const mcuflow_broadcast_t *b, int32_t maximum,
                                const int8_t *input1, const int8_t *input2, int8_t *output)
{
    mcuflow_broadcast_s8(b, mcuflow_maximum_minimum_row, &maximum, input1, input2, output);
}
