/* Table-driven element-wise kernels and float conversion at the model's edges. */
#include <math.h>
#include <string.h>

#include "mcuflow_common.h"

/* mcuflow:interface */

/* Any int8 -> int8 element-wise function as a 256-entry table indexed by (x + 128). */
void mcuflow_lookup_s8(const int8_t *table, const int8_t *input, int8_t *output, int32_t size);

/* int8 -> float32 (DEQUANTIZE) through a 256-entry table; output bytes may be unaligned. */
void mcuflow_lookup_f32(const float *table, const int8_t *input, uint8_t *output, int32_t size);

/* float32 -> int8 (QUANTIZE): zero_point + round(x / scale) in float, saturated; NaN -> zero
 * point. Input bytes may be unaligned. */
void mcuflow_quantize_f32(float scale, int32_t zero_point, const uint8_t *input, int8_t *output,
                          int32_t size);

/* mcuflow:end-interface */

void mcuflow_lookup_s8(const int8_t *table, const int8_t *input, int8_t *output, int32_t size)
{
    for (int32_t i = 0; i < size; ++i) {
        output[i] = table[(int32_t)input[i] + 128];
    }
}

void mcuflow_lookup_f32(const float *table, const int8_t *input, uint8_t *output, int32_t size)
{
    for (int32_t i = 0; i < size; ++i) {
        memcpy(output + (size_t)i * sizeof(float), &table[(int32_t)input[i] + 128],
               sizeof(float));
    }
}

void mcuflow_quantize_f32(float scale, int32_t zero_point, const uint8_t *input, int8_t *output,
                          int32_t size)
{
    for (int32_t i = 0; i < size; ++i) {
        float value;
        memcpy(&value, input + (size_t)i * sizeof(float), sizeof(float));
        float rounded = roundf(value / scale);
        /* Saturate before the conversion; NaN maps to the zero point. */
        if (isnan(rounded)) {
            rounded = 0.0f;
        } else if (rounded < -1024.0f) {
            rounded = -1024.0f;
        } else if (rounded > 1024.0f) {
            rounded = 1024.0f;
        }
        output[i] = (int8_t)mcuflow_clamp((int32_t)rounded + zero_point, -128, 127);
    }
}
