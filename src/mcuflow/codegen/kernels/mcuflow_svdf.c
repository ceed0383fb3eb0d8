/* SVDF int8 kernel (LiteRT's reference_ops::EvalIntegerSVDF, bit-exact): the int16 state kept
 * across invocations shifts left by one, a feature matmul fills each filter's newest slot, a
 * time matmul runs over the state, then a sum over each unit's `rank` filters, bias and
 * requantisation to int8. */
#include "mcuflow_common.h"

#include <string.h>

/* mcuflow:interface */

/* One SVDF layer. weights_feature [filters, input_size] int8, weights_time [filters, memory]
 * int16, bias [units] int32 or NULL (units = filters / rank). The feature dot product of a
 * filter is scaled by (feature_multiplier, feature_shift) and saturated to int16; a unit's sum
 * by (time_multiplier, time_shift), then offset by output_offset and clamped to int8. */
typedef struct {
    int32_t batches;
    int32_t input_size;
    int32_t filters;
    int32_t memory;
    int32_t rank;
    int32_t input_offset; /* minus the input zero point */
    int32_t output_offset;
    int32_t feature_multiplier;
    int32_t feature_shift;
    int32_t time_multiplier;
    int32_t time_shift;
    const int8_t *weights_feature;
    const int16_t *weights_time;
    const int32_t *bias;
} mcuflow_svdf_t;

/* One invocation: reads `input` [batches, input_size], updates `state` [batches, filters,
 * memory] (int16, zero at the start, kept between invocations: a filter's newest value is its
 * last slot, its oldest the first) and writes `output` [batches, filters / rank]. */
void mcuflow_svdf_s8(const mcuflow_svdf_t *p, const int8_t *input, int16_t *state,
                     int8_t *output);

/* mcuflow:end-interface */

void mcuflow_svdf_s8(const mcuflow_svdf_t *p, const int8_t *input, int16_t *state,
                     int8_t *output)
{
    const int32_t units = p->filters / p->rank;
    const size_t slots = (size_t)p->batches * (size_t)p->filters * (size_t)p->memory;
    /* Shift every filter's values one slot towards the oldest; each last slot, which takes the
     * next filter's first value, is overwritten below. */
    memmove(state, state + 1, (slots - 1u) * sizeof(int16_t));
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *x = input + (size_t)b * (size_t)p->input_size;
        int16_t *filter_state = state + (size_t)b * (size_t)p->filters * (size_t)p->memory;
        const int8_t *row = p->weights_feature;
        for (int32_t f = 0; f < p->filters; ++f) {
            uint32_t dot = 0u; /* int32 arithmetic that wraps like LiteRT's accumulator */
            for (int32_t i = 0; i < p->input_size; ++i) {
                dot += (uint32_t)((int32_t)row[i] * ((int32_t)x[i] + p->input_offset));
            }
            row += p->input_size;
            const int32_t scaled = mcuflow_requantize((int32_t)dot, p->feature_multiplier,
                                                      p->feature_shift);
            filter_state[(size_t)f * (size_t)p->memory + (size_t)p->memory - 1u] =
                (int16_t)mcuflow_clamp(scaled, INT16_MIN, INT16_MAX);
        }
        const int16_t *s = filter_state;
        const int16_t *w = p->weights_time;
        for (int32_t u = 0; u < units; ++u) {
            uint32_t sum = p->bias != NULL ? (uint32_t)p->bias[u] : 0u;
            for (int32_t r = 0; r < p->rank; ++r) {
                uint32_t dot = 0u;
                for (int32_t m = 0; m < p->memory; ++m) {
                    dot += (uint32_t)((int32_t)s[m] * (int32_t)w[m]);
                }
                sum += dot;
                s += p->memory;
                w += p->memory;
            }
            const int32_t scaled = mcuflow_requantize((int32_t)sum, p->time_multiplier,
                                                      p->time_shift);
            output[(size_t)b * (size_t)units + (size_t)u] =
                (int8_t)mcuflow_clamp(scaled + p->output_offset, -128, 127);
        }
    }
}
