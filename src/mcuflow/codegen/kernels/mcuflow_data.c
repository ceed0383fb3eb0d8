/* Data movement kernels: strided row copies (RESHAPE, CONCATENATION, SLICE), PAD and SLICE. */
#include <string.h>

#include "mcuflow_common.h"

/* mcuflow:interface */

/* Copy `rows` rows of `row_bytes` between buffers with the given row steps (bytes). */
void mcuflow_copy_rows(const uint8_t *input, int32_t in_step, uint8_t *output, int32_t out_step,
                       int32_t rows, int32_t row_bytes);

/* PAD with `value` over up to MCUFLOW_MAX_RANK dims: out_dims = in_dims + before + after. */
typedef struct {
    int32_t rank;
    int32_t in_dims[MCUFLOW_MAX_RANK];
    int32_t before[MCUFLOW_MAX_RANK];
    int32_t out_dims[MCUFLOW_MAX_RANK];
} mcuflow_pad_t;

void mcuflow_pad_s8(const mcuflow_pad_t *p, int8_t value, const int8_t *input, int8_t *output);

/* SLICE over up to MCUFLOW_MAX_RANK dims: out_dims elements from begin of each of in_dims. */
typedef struct {
    int32_t rank;
    int32_t in_dims[MCUFLOW_MAX_RANK];
    int32_t begin[MCUFLOW_MAX_RANK];
    int32_t out_dims[MCUFLOW_MAX_RANK];
} mcuflow_slice_t;

void mcuflow_slice_s8(const mcuflow_slice_t *s, const int8_t *input, int8_t *output);

/* mcuflow:end-interface */

void mcuflow_copy_rows(const uint8_t *input, int32_t in_step, uint8_t *output, int32_t out_step,
                       int32_t rows, int32_t row_bytes)
{
    for (int32_t r = 0; r < rows; ++r) {
        memmove(output + (size_t)r * (size_t)out_step, input + (size_t)r * (size_t)in_step,
                (size_t)row_bytes);
    }
}

void mcuflow_pad_s8(const mcuflow_pad_t *p, int8_t value, const int8_t *input, int8_t *output)
{
    const int32_t last = p->rank - 1;
    size_t out_stride[MCUFLOW_MAX_RANK];
    size_t total = 1;
    for (int32_t d = last; d >= 0; --d) {
        out_stride[d] = total;
        total *= (size_t)p->out_dims[d];
    }
    memset(output, value, total);
    int32_t index[MCUFLOW_MAX_RANK] = {0};
    int32_t rows = 1;
    for (int32_t d = 0; d < last; ++d) {
        rows *= p->in_dims[d];
    }
    const int32_t n = p->in_dims[last];
    for (int32_t r = 0; r < rows; ++r) {
        size_t o = (size_t)p->before[last];
        for (int32_t d = 0; d < last; ++d) {
            o += (size_t)(index[d] + p->before[d]) * out_stride[d];
        }
        memcpy(output + o, input + (size_t)r * (size_t)n, (size_t)n);
        for (int32_t d = last - 1; d >= 0; --d) {
            if (++index[d] < p->in_dims[d]) {
                break;
            }
            index[d] = 0;
        }
    }
}

void mcuflow_slice_s8(const mcuflow_slice_t *s, const int8_t *input, int8_t *output)
{
    const int32_t last = s->rank - 1;
    size_t in_stride[MCUFLOW_MAX_RANK];
    size_t total = 1;
    for (int32_t d = last; d >= 0; --d) {
        in_stride[d] = total;
        total *= (size_t)s->in_dims[d];
    }
    int32_t index[MCUFLOW_MAX_RANK] = {0};
    int32_t runs = 1;
    for (int32_t d = 0; d < last; ++d) {
        runs *= s->out_dims[d];
    }
    const int32_t n = s->out_dims[last];
    for (int32_t r = 0; r < runs; ++r) {
        size_t o = (size_t)s->begin[last];
        for (int32_t d = 0; d < last; ++d) {
            o += (size_t)(index[d] + s->begin[d]) * in_stride[d];
        }
        memcpy(output + (size_t)r * (size_t)n, input + o, (size_t)n);
        for (int32_t d = last - 1; d >= 0; --d) {
            if (++index[d] < s->out_dims[d]) {
                break;
            }
            index[d] = 0;
        }
    }
}
