/* SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND int8 kernels (TFLite reference ops, bit-exact). */
#include <string.h>

#include "mcuflow_common.h"

/* mcuflow:interface */

/* The two tensors of either op, NHWC (a 3-D [N, W, C] tensor has a unit width and block_w 1):
 * the spatial one [batches, space_h, space_w, depth] and the batched one
 * [block_h * block_w * batches, batch_h, batch_w, depth]. Batch (sh * block_w + sw) * batches + b
 * of the batched tensor holds spatial pixels (y * block_h + sh - top, x * block_w + sw - left)
 * of batch b; `top` and `left` are SPACE_TO_BATCH_ND's padding before, BATCH_TO_SPACE_ND's crop
 * before. */
typedef struct {
    int32_t batches;
    int32_t space_h;
    int32_t space_w;
    int32_t batch_h;
    int32_t batch_w;
    int32_t block_h;
    int32_t block_w;
    int32_t top;
    int32_t left;
    int32_t depth;
} mcuflow_batch_space_t;

/* SPACE_TO_BATCH_ND: padded pixels get `pad_value` (the output zero point). The stored values
 * are copied, no requantisation; the output must not overlap the input. */
void mcuflow_space_to_batch_s8(const mcuflow_batch_space_t *p, int8_t pad_value,
                               const int8_t *input, int8_t *output);

/* BATCH_TO_SPACE_ND: cropped pixels are dropped. The output must not overlap the input. */
void mcuflow_batch_to_space_s8(const mcuflow_batch_space_t *p, const int8_t *input,
                               int8_t *output);

/* mcuflow:end-interface */

void mcuflow_space_to_batch_s8(const mcuflow_batch_space_t *p, int8_t pad_value,
                               const int8_t *input, int8_t *output)
{
    const size_t depth = (size_t)p->depth;
    const size_t out_row = (size_t)p->batch_w * depth;
    const int32_t out_batches = p->batches * p->block_h * p->block_w;
    for (int32_t ob = 0; ob < out_batches; ++ob) {
        const int32_t shift = ob / p->batches;
        const int32_t sh = shift / p->block_w;
        const int32_t sw = shift % p->block_w;
        const int8_t *image = input + (size_t)(ob % p->batches) * (size_t)p->space_h *
                                      (size_t)p->space_w * depth;
        for (int32_t y = 0; y < p->batch_h; ++y, output += out_row) {
            const int32_t in_y = y * p->block_h + sh - p->top;
            if (in_y < 0 || in_y >= p->space_h) {
                memset(output, pad_value, out_row);
                continue;
            }
            const int8_t *row = image + (size_t)in_y * (size_t)p->space_w * depth;
            int8_t *target = output;
            for (int32_t x = 0; x < p->batch_w; ++x, target += depth) {
                const int32_t in_x = x * p->block_w + sw - p->left;
                if (in_x < 0 || in_x >= p->space_w) {
                    memset(target, pad_value, depth);
                } else {
                    memcpy(target, row + (size_t)in_x * depth, depth);
                }
            }
        }
    }
}

void mcuflow_batch_to_space_s8(const mcuflow_batch_space_t *p, const int8_t *input,
                               int8_t *output)
{
    const size_t depth = (size_t)p->depth;
    const size_t in_row = (size_t)p->batch_w * depth;
    const int32_t in_batches = p->batches * p->block_h * p->block_w;
    for (int32_t ib = 0; ib < in_batches; ++ib) {
        const int32_t shift = ib / p->batches;
        const int32_t sh = shift / p->block_w;
        const int32_t sw = shift % p->block_w;
        int8_t *image = output + (size_t)(ib % p->batches) * (size_t)p->space_h *
                                 (size_t)p->space_w * depth;
        for (int32_t y = 0; y < p->batch_h; ++y, input += in_row) {
            const int32_t out_y = y * p->block_h + sh - p->top;
            if (out_y < 0 || out_y >= p->space_h) {
                continue;
            }
            int8_t *row = image + (size_t)out_y * (size_t)p->space_w * depth;
            const int8_t *source = input;
            for (int32_t x = 0; x < p->batch_w; ++x, source += depth) {
                const int32_t out_x = x * p->block_w + sw - p->left;
                if (out_x >= 0 && out_x < p->space_w) {
                    memcpy(row + (size_t)out_x * depth, source, depth);
                }
            }
        }
    }
}
