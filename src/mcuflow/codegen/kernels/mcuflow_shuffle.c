/* Data movement by index: strided copies (TRANSPOSE, REVERSE_V2, STRIDED_SLICE with steps) and GATHER. */
#include <stddef.h>
#include <string.h>

#include "mcuflow_common.h"

/* mcuflow:interface */

/* A strided read over up to MCUFLOW_MAX_RANK dims, outermost first: output element
 * (i0, i1, ...) written in order is input[sum(i_d * steps[d])], steps in elements, possibly
 * negative (the input pointer is the first element read). Elements are `element_bytes` wide:
 * 1 (int8) or 2 (int16). */
typedef struct {
    int32_t rank;
    int32_t dims[MCUFLOW_MAX_RANK];
    int32_t steps[MCUFLOW_MAX_RANK];
    int32_t element_bytes;
} mcuflow_strided_t;

/* The stored int8 or int16 values are copied (input and output share one quantisation); the
 * output must not overlap the input. */
void mcuflow_strided_copy_s8(const mcuflow_strided_t *s, const int8_t *input, int8_t *output);

/* GATHER along one axis: for each of `outer` blocks, the `inner` bytes of slice indices[k] of
 * the `axis_size` slices, k = 0 .. count - 1 (indices checked when the code was generated). */
void mcuflow_gather_s8(int32_t outer, int32_t axis_size, int32_t count, int32_t inner,
                       const int32_t *indices, const int8_t *input, int8_t *output);

/* mcuflow:end-interface */

/* One run of `n` int16 elements `step` apart. */
static void strided_run_s16(const int8_t *from, ptrdiff_t step, int32_t n, int8_t *output)
{
    const int16_t *source = (const int16_t *)(const void *)from;
    int16_t *target = (int16_t *)(void *)output;
    for (int32_t i = 0; i < n; ++i) {
        target[i] = source[(ptrdiff_t)i * step];
    }
}

void mcuflow_strided_copy_s8(const mcuflow_strided_t *s, const int8_t *input, int8_t *output)
{
    const int32_t last = s->rank - 1;
    const int32_t n = s->dims[last];
    const ptrdiff_t step = (ptrdiff_t)s->steps[last];
    const ptrdiff_t width = (ptrdiff_t)s->element_bytes;
    int32_t index[MCUFLOW_MAX_RANK] = {0};
    int32_t runs = 1;
    for (int32_t d = 0; d < last; ++d) {
        runs *= s->dims[d];
    }
    for (int32_t r = 0; r < runs; ++r) {
        const int8_t *from = input;
        for (int32_t d = 0; d < last; ++d) {
            from += (ptrdiff_t)index[d] * (ptrdiff_t)s->steps[d] * width;
        }
        if (step == 1) {
            memcpy(output, from, (size_t)n * (size_t)width);
        } else if (width == 2) {
            strided_run_s16(from, step, n, output);
        } else {
            for (int32_t i = 0; i < n; ++i) {
                output[i] = from[(ptrdiff_t)i * step];
            }
        }
        output += (ptrdiff_t)n * width;
        for (int32_t d = last - 1; d >= 0; --d) {
            if (++index[d] < s->dims[d]) {
                break;
            }
            index[d] = 0;
        }
    }
}

void mcuflow_gather_s8(int32_t outer, int32_t axis_size, int32_t count, int32_t inner,
                       const int32_t *indices, const int8_t *input, int8_t *output)
{
    const size_t row = (size_t)inner;
    for (int32_t o = 0; o < outer; ++o) {
        const int8_t *block = input + (size_t)o * (size_t)axis_size * row;
        for (int32_t k = 0; k < count; ++k) {
            memcpy(output, block + (size_t)indices[k] * row, row);
            output += row;
        }
    }
}
