/* REDUCE_MAX / REDUCE_MIN and ARG_MAX / ARG_MIN int8 kernels (LiteRT's reduce.cc and
 * reference_ops::ArgMinMax, bit-exact: stored values are compared, nothing is requantised). */
#include "mcuflow_common.h"

#include <string.h>

/* mcuflow:interface */

/* REDUCE_MAX (`maximum` nonzero) or REDUCE_MIN over some dims of an int8 tensor (up to
 * MCUFLOW_MAX_RANK dims, adjacent dims merged when alike). Input and output share one
 * quantisation; the output holds the kept dims in order. */
typedef struct {
    int32_t rank;
    int32_t dims[MCUFLOW_MAX_RANK];
    int32_t reduced[MCUFLOW_MAX_RANK]; /* nonzero on the reduced dims */
} mcuflow_reduce_t;

void mcuflow_reduce_extreme_s8(const mcuflow_reduce_t *p, int32_t maximum, const int8_t *input,
                               int8_t *output);

/* ARG_MAX (`maximum` nonzero) or ARG_MIN of an int8 input seen as [outer, axis, inner]: for each
 * (outer, inner) the index along axis of the first largest (smallest) value, written to
 * `output` [outer, inner] as int64 when `index_bytes` is 8, else int32 (bytes, which need not
 * be aligned). */
void mcuflow_arg_extreme_s8(int32_t outer, int32_t axis, int32_t inner, int32_t maximum,
                            int32_t index_bytes, const int8_t *input, uint8_t *output);

/* mcuflow:end-interface */

/* Step the odometer `index` over the dims listed in `axes`; returns 0 when it wraps around. */
static int mcuflow_reduce_step(int32_t *index, const int32_t *axes, int32_t count,
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

void mcuflow_reduce_extreme_s8(const mcuflow_reduce_t *p, int32_t maximum, const int8_t *input,
                               int8_t *output)
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
        int8_t best = maximum ? (int8_t)-128 : (int8_t)127;
        do {
            size_t offset = 0;
            for (int32_t d = 0; d < p->rank; ++d) {
                offset += (size_t)index[d] * stride[d];
            }
            const int8_t value = input[offset];
            if (maximum ? value > best : value < best) {
                best = value;
            }
        } while (mcuflow_reduce_step(index, reduced, n_reduced, p->dims));
        output[o++] = best;
    } while (mcuflow_reduce_step(index, kept, n_kept, p->dims));
}

void mcuflow_arg_extreme_s8(int32_t outer, int32_t axis, int32_t inner, int32_t maximum,
                            int32_t index_bytes, const int8_t *input, uint8_t *output)
{
    uint8_t *next = output;
    for (int32_t o = 0; o < outer; ++o) {
        const int8_t *block = input + (size_t)o * (size_t)axis * (size_t)inner;
        for (int32_t i = 0; i < inner; ++i) {
            int8_t best = block[i];
            int32_t found = 0;
            for (int32_t a = 1; a < axis; ++a) {
                const int8_t value = block[(size_t)a * (size_t)inner + (size_t)i];
                if (maximum ? value > best : value < best) {
                    best = value;
                    found = a;
                }
            }
            if (index_bytes == 8) {
                const int64_t wide = found;
                memcpy(next, &wide, sizeof(wide));
                next += sizeof(wide);
            } else {
                memcpy(next, &found, sizeof(found));
                next += sizeof(found);
            }
        }
    }
}
