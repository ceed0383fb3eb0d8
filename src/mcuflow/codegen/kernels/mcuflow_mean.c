/* MEAN int8 kernel (TFLite reference QuantizedMeanOrSum, bit-exact). */
#include "mcuflow_common.h"

/* mcuflow:interface */

/* MEAN over any axes of an int8 tensor (up to MCUFLOW_MAX_RANK dims, adjacent dims merged when
 * alike): out = clamp(requantize(sum - input_zero_point * count) + output_zero_point, -128, 127). */
typedef struct {
    int32_t rank;
    int32_t dims[MCUFLOW_MAX_RANK];
    int32_t reduced[MCUFLOW_MAX_RANK]; /* nonzero on the reduced dims */
    int32_t input_zero_point, output_zero_point;
    int32_t multiplier, shift, count;
} mcuflow_mean_t;

void mcuflow_mean_s8(const mcuflow_mean_t *p, const int8_t *input, int8_t *output);

/* MEAN of an int16 tensor (LiteRT's int16x8 scheme, zero points 0), clamped to int16. */
void mcuflow_mean_s16(const mcuflow_mean_t *p, const int16_t *input, int16_t *output);

/* mcuflow:end-interface */

/* Advance the odometer `index` over the dims listed in `axes`; returns 0 when it wraps. */
static int mcuflow_odometer(int32_t *index, const int32_t *axes, int32_t count,
                            const int32_t *dims)
{
    for (int32_t j = count - 1; j >= 0; --j) {
        if (++index[axes[j]] < dims[axes[j]]) {
            return 1;
        }
        index[axes[j]] = 0;
    }
    return 0;
}

static size_t mcuflow_offset(const int32_t *index, const size_t *stride, int32_t rank)
{
    size_t offset = 0;
    for (int32_t d = 0; d < rank; ++d) {
        offset += (size_t)index[d] * stride[d];
    }
    return offset;
}

void mcuflow_mean_s8(const mcuflow_mean_t *p, const int8_t *input, int8_t *output)
{
    size_t stride[MCUFLOW_MAX_RANK];
    int32_t kept[MCUFLOW_MAX_RANK], reduced[MCUFLOW_MAX_RANK], n_kept = 0, n_reduced = 0;
    int32_t index[MCUFLOW_MAX_RANK] = {0};
    size_t total = 1;
    for (int32_t d = p->rank - 1; d >= 0; --d) {
        stride[d] = total;
        total *= (size_t)p->dims[d];
    }
    for (int32_t d = 0; d < p->rank; ++d) {
        if (p->reduced[d]) {
            reduced[n_reduced++] = d;
        } else {
            kept[n_kept++] = d;
        }
    }
    size_t o = 0;
    do {
        int32_t sum = 0;
        do {
            sum += input[mcuflow_offset(index, stride, p->rank)];
        } while (mcuflow_odometer(index, reduced, n_reduced, p->dims));
        const int32_t centred = sum - p->input_zero_point * p->count;
        const int32_t scaled = mcuflow_requantize(centred, p->multiplier, p->shift);
        output[o++] = (int8_t)mcuflow_clamp(scaled + p->output_zero_point, -128, 127);
    } while (mcuflow_odometer(index, kept, n_kept, p->dims));
}

void mcuflow_mean_s16(const mcuflow_mean_t *p, const int16_t *input, int16_t *output)
{
    size_t stride[MCUFLOW_MAX_RANK];
    int32_t kept[MCUFLOW_MAX_RANK], reduced[MCUFLOW_MAX_RANK], n_kept = 0, n_reduced = 0;
    int32_t index[MCUFLOW_MAX_RANK] = {0};
    size_t total = 1;
    for (int32_t d = p->rank - 1; d >= 0; --d) {
        stride[d] = total;
        total *= (size_t)p->dims[d];
    }
    for (int32_t d = 0; d < p->rank; ++d) {
        if (p->reduced[d]) {
            reduced[n_reduced++] = d;
        } else {
            kept[n_kept++] = d;
        }
    }
    size_t o = 0;
    do {
        int32_t sum = 0;
        do {
            sum += input[mcuflow_offset(index, stride, p->rank)];
        } while (mcuflow_odometer(index, reduced, n_reduced, p->dims));
        const int32_t scaled = mcuflow_requantize(sum, p->multiplier, p->shift);
        output[o++] = (int16_t)mcuflow_clamp(scaled, INT16_MIN, INT16_MAX);
    } while (mcuflow_odometer(index, kept, n_kept, p->dims));
}
