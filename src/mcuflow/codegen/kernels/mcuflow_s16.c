/* LiteRT's int16x8 kernels: int16 activations (zero point 0), int8 weights, int64 bias
 * (reference_integer_ops ConvPerChannel, DepthwiseConvPerChannel, FullyConnected for int16),
 * and QUANTIZE / DEQUANTIZE between float32 and int16. */
#include <math.h>
#include <string.h>

#include "mcuflow_common.h"

/* mcuflow:interface */

/* Per-output-channel requantisation of an int64 accumulator to int16: the int64
 * MultiplyByQuantizedMultiplier (multiplier, shift) of CONV_2D and DEPTHWISE_CONV_2D or, when
 * `scale` is not NULL, FULLY_CONNECTED's double-precision round(acc * scale). */
typedef struct {
    const int64_t *bias;       /* int64 per output channel, or NULL */
    const int32_t *multiplier; /* Q31 mantissa per output channel */
    const int32_t *shift;      /* power-of-two exponent per output channel */
    const double *scale;       /* real multiplier per output channel, or NULL */
    int32_t act_min;
    int32_t act_max;
} mcuflow_requant_s16_t;

/* CONV_2D of int16 input (input_offset 0): a direct loop over the window, padded taps skipped. */
void mcuflow_conv2d_s16(const mcuflow_window_t *g, const mcuflow_requant_s16_t *q,
                        const int16_t *input, const int8_t *filter, int16_t *output);

/* DEPTHWISE_CONV_2D of int16 input, any kernel size and depth multiplier. */
void mcuflow_dwconv_s16(const mcuflow_window_t *g, int32_t depth_multiplier,
                        const mcuflow_requant_s16_t *q, const int16_t *input,
                        const int8_t *filter, int16_t *output);

/* FULLY_CONNECTED: rows x depth int16 input, units x depth int8 weights. */
void mcuflow_fully_connected_s16(int32_t rows, int32_t depth, int32_t units,
                                 const mcuflow_requant_s16_t *q, const int16_t *input,
                                 const int8_t *weights, int16_t *output);

/* float32 -> int16 (QUANTIZE, zero point 0): round(x / scale) in float, saturated; NaN -> 0.
 * Input bytes may be unaligned. */
void mcuflow_quantize_f32_s16(float scale, const uint8_t *input, int16_t *output, int32_t size);

/* QUANTIZE between int8 and int16 or within int16 (`input_bits`, `output_bits` 8 or 16):
 * MultiplyByQuantizedMultiplier of x - input_zero_point, plus output_zero_point, saturated. */
typedef struct {
    int32_t input_bits, input_zero_point;
    int32_t multiplier, shift;
    int32_t output_bits, output_zero_point;
} mcuflow_requantize_s16_t;

void mcuflow_requantize_s16(const mcuflow_requantize_s16_t *p, const void *input, void *output,
                            int32_t size);

/* int16 -> float32 (DEQUANTIZE): float(scale * x) in double; output bytes may be unaligned. */
void mcuflow_dequantize_s16(double scale, const int16_t *input, uint8_t *output, int32_t size);

/* ADD (LiteRT's general int16 path, left shift 15) and MUL of int16 tensors, zero points 0. */
typedef struct {
    int32_t op; /* MCUFLOW_S16_ADD or MCUFLOW_S16_MUL */
    int32_t left_shift;
    int32_t input1_multiplier, input1_shift;
    int32_t input2_multiplier, input2_shift;
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
} mcuflow_binary_s16_t;

#define MCUFLOW_S16_ADD 0
#define MCUFLOW_S16_MUL 1

/* Element-wise ADD or MUL with broadcasting (`b`, as mcuflow_broadcast_t describes). */
void mcuflow_binary_s16(const mcuflow_binary_s16_t *p, const mcuflow_broadcast_t *b,
                        const int16_t *input1, const int16_t *input2, int16_t *output);

/* AVERAGE_POOL_2D of int16 (LiteRT's rounding division by the valid taps); returns nonzero
 * when a window holds no input element. */
int mcuflow_avg_pool_s16(const mcuflow_window_t *g, int32_t act_min, int32_t act_max,
                         const int16_t *input, int16_t *output);

/* MAX_POOL_2D of int16 over the valid taps. */
void mcuflow_max_pool_s16(const mcuflow_window_t *g, int32_t act_min, int32_t act_max,
                          const int16_t *input, int16_t *output);

/* SOFTMAX of int16 along rows of `depth` (LiteRT's SoftmaxInt16): exp and 1/(1+x) from
 * 513-entry interpolated tables, output scale 1/32768. */
void mcuflow_softmax_s16(int32_t rows, int32_t depth, int32_t multiplier, int32_t left_shift,
                         const int16_t *exp_table, const int16_t *reciprocal_table,
                         const int16_t *input, int16_t *output);

/* LOGISTIC (`tanh` 0) or TANH (`tanh` 1) of int16 (reference_integer_ops' int16 Logistic /
 * Tanh): x * multiplier, rounded >> left_shift, then the 256-entry sigmoid table interpolated;
 * output scale 1/32768. */
void mcuflow_sigmoid_s16(int32_t tanh, int32_t multiplier, int32_t left_shift,
                         const uint16_t *table, const int16_t *input, int16_t *output,
                         int32_t size);

/* mcuflow:end-interface */

/* MultiplyByQuantizedMultiplier of an int64 accumulator: the Q31 multiplier rounded to Q15,
 * then one rounding right shift by 15 - shift (LiteRT's common.cc). */
static inline int32_t mcuflow_requantize_s64(int64_t acc, int32_t multiplier, int32_t shift)
{
    const int64_t reduced = multiplier < 0x7FFF0000 ? ((int64_t)multiplier + (1 << 15)) >> 16
                                                    : 0x7FFF;
    const int32_t total = 15 - shift;
    const int64_t round = (int64_t)1 << (total - 1);
    return (int32_t)((acc * reduced + round) >> total);
}

/* round(acc * scale) in double precision, saturated far outside int16 before the conversion. */
static int32_t mcuflow_scale_round_s16(int64_t acc, double scale)
{
    const double scaled = round((double)acc * scale);
    return scaled > 1048576.0 ? 1048576 : (scaled < -1048576.0 ? -1048576 : (int32_t)scaled);
}

/* Requantise the accumulator of output channel `o`. */
static inline int16_t mcuflow_out_s16(const mcuflow_requant_s16_t *q, int64_t acc, int32_t o)
{
    int32_t scaled;
    if (q->bias != NULL) {
        acc += q->bias[o];
    }
    if (q->scale != NULL) {
        scaled = mcuflow_scale_round_s16(acc, q->scale[o]);
    } else {
        scaled = mcuflow_requantize_s64(acc, q->multiplier[o], q->shift[o]);
    }
    return (int16_t)mcuflow_clamp(scaled, q->act_min, q->act_max);
}

void mcuflow_conv2d_s16(const mcuflow_window_t *g, const mcuflow_requant_s16_t *q,
                        const int16_t *input, const int8_t *filter, int16_t *output)
{
    for (int32_t b = 0; b < g->batches; ++b) {
        const int16_t *image = input + (size_t)b * (size_t)(g->in_h * g->in_w * g->in_c);
        for (int32_t oy = 0; oy < g->out_h; ++oy) {
            for (int32_t ox = 0; ox < g->out_w; ++ox) {
                int16_t *pixel = output + (size_t)b * (size_t)g->out_batch_step
                                 + (size_t)oy * (size_t)g->out_row_step
                                 + (size_t)ox * (size_t)g->out_pixel_step;
                const int32_t y0 = oy * g->stride_h - g->pad_top;
                const int32_t x0 = ox * g->stride_w - g->pad_left;
                for (int32_t o = 0; o < g->out_c; ++o) {
                    const int8_t *f = filter + (size_t)o * (size_t)(g->k_h * g->k_w * g->in_c);
                    int64_t acc = 0;
                    for (int32_t ky = 0; ky < g->k_h; ++ky) {
                        const int32_t y = y0 + ky * g->dilation_h;
                        if (y < 0 || y >= g->in_h) {
                            continue;
                        }
                        for (int32_t kx = 0; kx < g->k_w; ++kx) {
                            const int32_t x = x0 + kx * g->dilation_w;
                            if (x < 0 || x >= g->in_w) {
                                continue;
                            }
                            const int16_t *in = image + (size_t)(y * g->in_w + x) * (size_t)g->in_c;
                            const int8_t *w = f + (size_t)(ky * g->k_w + kx) * (size_t)g->in_c;
                            for (int32_t c = 0; c < g->in_c; ++c) {
                                acc += (int32_t)in[c] * (int32_t)w[c];
                            }
                        }
                    }
                    pixel[o] = mcuflow_out_s16(q, acc, o);
                }
            }
        }
    }
}

void mcuflow_dwconv_s16(const mcuflow_window_t *g, int32_t depth_multiplier,
                        const mcuflow_requant_s16_t *q, const int16_t *input,
                        const int8_t *filter, int16_t *output)
{
    for (int32_t b = 0; b < g->batches; ++b) {
        const int16_t *image = input + (size_t)b * (size_t)(g->in_h * g->in_w * g->in_c);
        for (int32_t oy = 0; oy < g->out_h; ++oy) {
            for (int32_t ox = 0; ox < g->out_w; ++ox) {
                int16_t *pixel = output + (size_t)b * (size_t)g->out_batch_step
                                 + (size_t)oy * (size_t)g->out_row_step
                                 + (size_t)ox * (size_t)g->out_pixel_step;
                const int32_t y0 = oy * g->stride_h - g->pad_top;
                const int32_t x0 = ox * g->stride_w - g->pad_left;
                for (int32_t o = 0; o < g->out_c; ++o) {
                    const int32_t c = o / depth_multiplier;
                    int64_t acc = 0;
                    for (int32_t ky = 0; ky < g->k_h; ++ky) {
                        const int32_t y = y0 + ky * g->dilation_h;
                        if (y < 0 || y >= g->in_h) {
                            continue;
                        }
                        for (int32_t kx = 0; kx < g->k_w; ++kx) {
                            const int32_t x = x0 + kx * g->dilation_w;
                            if (x < 0 || x >= g->in_w) {
                                continue;
                            }
                            const int32_t value = image[(size_t)(y * g->in_w + x) * (size_t)g->in_c
                                                        + (size_t)c];
                            const int32_t tap = filter[(size_t)(ky * g->k_w + kx) * (size_t)g->out_c
                                                       + (size_t)o];
                            acc += value * tap;
                        }
                    }
                    pixel[o] = mcuflow_out_s16(q, acc, o);
                }
            }
        }
    }
}

void mcuflow_fully_connected_s16(int32_t rows, int32_t depth, int32_t units,
                                 const mcuflow_requant_s16_t *q, const int16_t *input,
                                 const int8_t *weights, int16_t *output)
{
    for (int32_t r = 0; r < rows; ++r) {
        const int16_t *row = input + (size_t)r * (size_t)depth;
        for (int32_t u = 0; u < units; ++u) {
            const int8_t *w = weights + (size_t)u * (size_t)depth;
            int64_t acc = 0;
            for (int32_t k = 0; k < depth; ++k) {
                acc += (int32_t)row[k] * (int32_t)w[k];
            }
            output[(size_t)r * (size_t)units + (size_t)u] = mcuflow_out_s16(q, acc, u);
        }
    }
}

void mcuflow_quantize_f32_s16(float scale, const uint8_t *input, int16_t *output, int32_t size)
{
    for (int32_t i = 0; i < size; ++i) {
        float value;
        memcpy(&value, input + (size_t)i * sizeof(float), sizeof(float));
        float rounded = roundf(value / scale);
        /* Saturate before the conversion; NaN maps to the zero point. */
        if (isnan(rounded)) {
            rounded = 0.0f;
        } else if (rounded < -65536.0f) {
            rounded = -65536.0f;
        } else if (rounded > 65536.0f) {
            rounded = 65536.0f;
        }
        output[i] = (int16_t)mcuflow_clamp((int32_t)rounded, INT16_MIN, INT16_MAX);
    }
}

void mcuflow_requantize_s16(const mcuflow_requantize_s16_t *p, const void *input, void *output,
                            int32_t size)
{
    const int32_t lo = p->output_bits == 8 ? INT8_MIN : INT16_MIN;
    const int32_t hi = p->output_bits == 8 ? INT8_MAX : INT16_MAX;
    for (int32_t i = 0; i < size; ++i) {
        const int32_t x = p->input_bits == 8 ? ((const int8_t *)input)[i]
                                             : ((const int16_t *)input)[i];
        const int32_t y = mcuflow_clamp(
            mcuflow_requantize(x - p->input_zero_point, p->multiplier, p->shift)
                + p->output_zero_point, lo, hi);
        if (p->output_bits == 8) {
            ((int8_t *)output)[i] = (int8_t)y;
        } else {
            ((int16_t *)output)[i] = (int16_t)y;
        }
    }
}

void mcuflow_dequantize_s16(double scale, const int16_t *input, uint8_t *output, int32_t size)
{
    for (int32_t i = 0; i < size; ++i) {
        const float value = (float)(scale * (double)input[i]);
        memcpy(output + (size_t)i * sizeof(float), &value, sizeof(float));
    }
}

/* One output of ADD or MUL (add.cc general int16 path / mul.cc MulElementwise). */
static inline int16_t mcuflow_binary_one_s16(const mcuflow_binary_s16_t *p, int32_t x,
                                             int32_t y)
{
    int32_t raw;
    if (p->op == MCUFLOW_S16_MUL) {
        raw = mcuflow_requantize(x * y, p->output_multiplier, p->output_shift);
    } else {
        const int32_t a = mcuflow_requantize((int32_t)((uint32_t)x << p->left_shift),
                                             p->input1_multiplier, p->input1_shift);
        const int32_t c = mcuflow_requantize((int32_t)((uint32_t)y << p->left_shift),
                                             p->input2_multiplier, p->input2_shift);
        raw = mcuflow_requantize(a + c, p->output_multiplier, p->output_shift);
    }
    return (int16_t)mcuflow_clamp(raw, p->act_min, p->act_max);
}

void mcuflow_binary_s16(const mcuflow_binary_s16_t *p, const mcuflow_broadcast_t *b,
                        const int16_t *input1, const int16_t *input2, int16_t *output)
{
    const int32_t last = b->rank - 1;
    const int32_t n = b->dims[last];
    const int32_t step1 = b->stride1[last];
    const int32_t step2 = b->stride2[last];
    int32_t rows = 1;
    for (int32_t d = 0; d < last; ++d) {
        rows *= b->dims[d];
    }
    int32_t index[MCUFLOW_MAX_RANK] = {0};
    for (int32_t r = 0; r < rows; ++r, mcuflow_broadcast_next(b, index)) {
        size_t o1 = 0, o2 = 0;
        for (int32_t d = 0; d < last; ++d) {
            o1 += (size_t)index[d] * (size_t)b->stride1[d];
            o2 += (size_t)index[d] * (size_t)b->stride2[d];
        }
        int16_t *out = output + (size_t)r * (size_t)n;
        for (int32_t i = 0; i < n; ++i) {
            out[i] = mcuflow_binary_one_s16(p, input1[o1 + (size_t)(i * step1)],
                                            input2[o2 + (size_t)(i * step2)]);
        }
    }
}

/* One pool over every output pixel and channel: `average` selects AVERAGE_POOL_2D. */
static int mcuflow_pool_s16(const mcuflow_window_t *g, int32_t act_min, int32_t act_max,
                            const int16_t *input, int16_t *output, int average)
{
    for (int32_t b = 0; b < g->batches; ++b) {
        for (int32_t oy = 0; oy < g->out_h; ++oy) {
            const int32_t top = oy * g->stride_h - g->pad_top;
            const int32_t y0 = top < 0 ? 0 : top;
            const int32_t y1 = top + g->k_h < g->in_h ? top + g->k_h : g->in_h;
            for (int32_t ox = 0; ox < g->out_w; ++ox) {
                const int32_t left = ox * g->stride_w - g->pad_left;
                const int32_t x0 = left < 0 ? 0 : left;
                const int32_t x1 = left + g->k_w < g->in_w ? left + g->k_w : g->in_w;
                const int32_t count = (y1 - y0) * (x1 - x0);
                if (count <= 0) {
                    return 1;
                }
                int16_t *pixel = output + (size_t)b * (size_t)g->out_batch_step
                                 + (size_t)oy * (size_t)g->out_row_step
                                 + (size_t)ox * (size_t)g->out_pixel_step;
                for (int32_t c = 0; c < g->in_c; ++c) {
                    int32_t acc = average ? 0 : INT16_MIN;
                    for (int32_t y = y0; y < y1; ++y) {
                        for (int32_t x = x0; x < x1; ++x) {
                            const int32_t value = input[(((size_t)b * (size_t)g->in_h + (size_t)y)
                                                         * (size_t)g->in_w + (size_t)x)
                                                            * (size_t)g->in_c + (size_t)c];
                            acc = average ? acc + value : (value > acc ? value : acc);
                        }
                    }
                    if (average) {
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    pixel[c] = (int16_t)mcuflow_clamp(acc, act_min, act_max);
                }
            }
        }
    }
    return 0;
}

int mcuflow_avg_pool_s16(const mcuflow_window_t *g, int32_t act_min, int32_t act_max,
                         const int16_t *input, int16_t *output)
{
    return mcuflow_pool_s16(g, act_min, act_max, input, output, 1);
}

void mcuflow_max_pool_s16(const mcuflow_window_t *g, int32_t act_min, int32_t act_max,
                          const int16_t *input, int16_t *output)
{
    (void)mcuflow_pool_s16(g, act_min, act_max, input, output, 0);
}

/* LiteRT's int16 LUTLookup: the base value at 256 + (v >> 7) plus the interpolated slope. */
static inline int16_t mcuflow_lut_s16(int32_t value, const int16_t *table)
{
    const int32_t index = 256 + (value >> 7);
    const int32_t slope = (int16_t)(table[index + 1] - table[index]);
    return (int16_t)(table[index] + ((slope * (value & 0x7F) + 64) >> 7));
}

void mcuflow_softmax_s16(int32_t rows, int32_t depth, int32_t multiplier, int32_t left_shift,
                         const int16_t *exp_table, const int16_t *reciprocal_table,
                         const int16_t *input, int16_t *output)
{
    for (int32_t r = 0; r < rows; ++r) {
        const int16_t *x = input + (size_t)r * (size_t)depth;
        int16_t *y = output + (size_t)r * (size_t)depth;
        int32_t max_in_row = INT16_MIN;
        for (int32_t c = 0; c < depth; ++c) {
            max_in_row = x[c] > max_in_row ? x[c] : max_in_row;
        }
        /* The exps are kept in the output row (the input is read first at each element). */
        int32_t sum = 0;
        for (int32_t c = 0; c < depth; ++c) {
            const int32_t scaled = mcuflow_requantize(x[c] - max_in_row, multiplier, left_shift);
            y[c] = mcuflow_lut_s16(mcuflow_clamp(scaled + INT16_MAX, INT16_MIN, INT16_MAX),
                                   exp_table);
            sum += y[c];
        }
        int32_t headroom_plus_one = 0; /* CountLeadingZeros(sum); sum >= 32767 */
        while (((uint32_t)sum & (0x80000000u >> headroom_plus_one)) == 0u) {
            ++headroom_plus_one;
        }
        const int32_t shifted =
            (int32_t)((((int64_t)sum << (headroom_plus_one - 1)) + (1 << 13)) >> 14);
        const int32_t centred = mcuflow_clamp(shifted - ((1 << 15) + (1 << 16)), INT16_MIN,
                                              INT16_MAX);
        const int64_t reciprocal = mcuflow_lut_s16(centred, reciprocal_table);
        const int32_t right_shift = 31 - headroom_plus_one;
        const int64_t round = (int64_t)1 << (right_shift - 1);
        for (int32_t c = 0; c < depth; ++c) {
            const int32_t result = (int32_t)(((int64_t)y[c] * reciprocal + round) >> right_shift);
            y[c] = (int16_t)mcuflow_clamp(result, 0, INT16_MAX);
        }
    }
}

void mcuflow_sigmoid_s16(int32_t tanh, int32_t multiplier, int32_t left_shift,
                         const uint16_t *table, const int16_t *input, int16_t *output,
                         int32_t size)
{
    const int32_t round = left_shift > 0 ? (int32_t)1 << (left_shift - 1) : 0;
    const int32_t bits = tanh ? 8 : 9; /* fraction bits of the table index */
    for (int32_t i = 0; i < size; ++i) {
        const int32_t value = (input[i] * multiplier + round) >> left_shift;
        const uint32_t magnitude = (uint32_t)(value < 0 ? -value : value);
        const uint32_t index = magnitude >> bits;
        uint32_t result;
        if (index >= 255u) {
            result = tanh ? 0xFFFFu << 8 : 0x7FFFu << 10;
        } else {
            const uint32_t low = table[index];
            const uint32_t high = table[index + 1u];
            const uint32_t fraction = magnitude & ((1u << bits) - 1u);
            result = (low << bits) + fraction * (high - low);
        }
        if (tanh) {
            const int32_t signed_result = value >= 0
                ? (int32_t)result - (1 << 23) + (1 << 7)
                : -(int32_t)result + (1 << 23) + (1 << 7) - 1;
            output[i] = (int16_t)(signed_result >> 8);
        } else {
            result = value >= 0 ? result + (1u << 9) : (1u << 25) - result + (1u << 9) - 1u;
            output[i] = (int16_t)(result >> 10);
        }
    }
}
