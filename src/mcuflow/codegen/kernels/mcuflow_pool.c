/* AVERAGE_POOL_2D and MAX_POOL_2D int8 kernels (TFLite reference semantics, bit-exact). */
#include "mcuflow_common.h"

/* mcuflow:interface */

/* AVERAGE_POOL_2D; returns nonzero when a window holds no input element. */
int mcuflow_avg_pool_s8(const mcuflow_window_t *g, int32_t act_min, int32_t act_max,
                        const int8_t *input, int8_t *output);

void mcuflow_max_pool_s8(const mcuflow_window_t *g, int32_t act_min, int32_t act_max,
                         const int8_t *input, int8_t *output);

/* mcuflow:end-interface */

#define MCUFLOW_POOL_BLOCK 64

/* The in-bounds window [*y0, *y1) x [*x0, *x1) of output pixel (oy, ox), in input rows/cols. */
static void mcuflow_pool_window(const mcuflow_window_t *g, int32_t oy, int32_t ox, int32_t *y0,
                                int32_t *y1, int32_t *x0, int32_t *x1)
{
    const int32_t oy0 = oy * g->stride_h - g->pad_top;
    const int32_t ox0 = ox * g->stride_w - g->pad_left;
    *y0 = oy0 < 0 ? 0 : oy0;
    *x0 = ox0 < 0 ? 0 : ox0;
    *y1 = oy0 + g->k_h < g->in_h ? oy0 + g->k_h : g->in_h;
    *x1 = ox0 + g->k_w < g->in_w ? ox0 + g->k_w : g->in_w;
}

static inline const int8_t *mcuflow_pool_in(const mcuflow_window_t *g, const int8_t *input,
                                            int32_t b, int32_t y, int32_t x)
{
    return input + (((size_t)b * (size_t)g->in_h + (size_t)y) * (size_t)g->in_w + (size_t)x) *
                       (size_t)g->in_c;
}

static inline int8_t *mcuflow_pool_out(const mcuflow_window_t *g, int8_t *output, int32_t b,
                                       int32_t y, int32_t x)
{
    return output + (size_t)b * (size_t)g->out_batch_step + (size_t)y * (size_t)g->out_row_step +
           (size_t)x * (size_t)g->out_pixel_step;
}

int mcuflow_avg_pool_s8(const mcuflow_window_t *g, int32_t act_min, int32_t act_max,
                        const int8_t *input, int8_t *output)
{
    int32_t acc[MCUFLOW_POOL_BLOCK];
    for (int32_t b = 0; b < g->batches; ++b) {
        for (int32_t oy = 0; oy < g->out_h; ++oy) {
            for (int32_t ox = 0; ox < g->out_w; ++ox) {
                int32_t y0, y1, x0, x1;
                mcuflow_pool_window(g, oy, ox, &y0, &y1, &x0, &x1);
                const int32_t count = (y1 - y0) * (x1 - x0);
                if (y1 <= y0 || x1 <= x0) {
                    return 1;
                }
                int8_t *out = mcuflow_pool_out(g, output, b, oy, ox);
                for (int32_t c0 = 0; c0 < g->in_c; c0 += MCUFLOW_POOL_BLOCK) {
                    const int32_t rest = g->in_c - c0;
                    const int32_t n = rest < MCUFLOW_POOL_BLOCK ? rest : MCUFLOW_POOL_BLOCK;
                    for (int32_t j = 0; j < n; ++j) {
                        acc[j] = 0;
                    }
                    for (int32_t y = y0; y < y1; ++y) {
                        for (int32_t x = x0; x < x1; ++x) {
                            const int8_t *in = mcuflow_pool_in(g, input, b, y, x) + c0;
                            for (int32_t j = 0; j < n; ++j) {
                                acc[j] += in[j];
                            }
                        }
                    }
                    for (int32_t j = 0; j < n; ++j) {
                        const int32_t a = acc[j];
                        const int32_t avg = a > 0 ? (a + count / 2) / count
                                                  : (a - count / 2) / count;
                        out[c0 + j] = (int8_t)mcuflow_clamp(avg, act_min, act_max);
                    }
                }
            }
        }
    }
    return 0;
}

void mcuflow_max_pool_s8(const mcuflow_window_t *g, int32_t act_min, int32_t act_max,
                         const int8_t *input, int8_t *output)
{
    for (int32_t b = 0; b < g->batches; ++b) {
        for (int32_t oy = 0; oy < g->out_h; ++oy) {
            for (int32_t ox = 0; ox < g->out_w; ++ox) {
                int32_t y0, y1, x0, x1;
                mcuflow_pool_window(g, oy, ox, &y0, &y1, &x0, &x1);
                int8_t *out = mcuflow_pool_out(g, output, b, oy, ox);
                for (int32_t c = 0; c < g->in_c; ++c) {
                    out[c] = INT8_MIN;
                }
                for (int32_t y = y0; y < y1; ++y) {
                    for (int32_t x = x0; x < x1; ++x) {
                        const int8_t *in = mcuflow_pool_in(g, input, b, y, x);
                        for (int32_t c = 0; c < g->in_c; ++c) {
                            out[c] = in[c] > out[c] ? in[c] : out[c];
                        }
                    }
                }
                for (int32_t c = 0; c < g->in_c; ++c) {
                    out[c] = (int8_t)mcuflow_clamp(out[c], act_min, act_max);
                }
            }
        }
    }
}
