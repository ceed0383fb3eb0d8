/* mcuflow portable int8 kernels: parameter structs, fixed-point helpers and prototypes.
 *
 * Every requantisation constant (multipliers, shifts, offsets, clamps, tables) is computed by
 * mcuflow on the host with TFLite's arithmetic and arrives here as a constant: the kernels only
 * evaluate. C99, no dynamic memory, no variable-length arrays.
 */
#ifndef MCUFLOW_KERNELS_H
#define MCUFLOW_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define MCUFLOW_ALIGNED(n) __attribute__((aligned(n)))
#else
#define MCUFLOW_ALIGNED(n)
#endif

/* Bare-metal Arm builds keep the arena and the weights in input sections of their own, which
 * the generated linker script sends to the regions chosen with --arena-section and
 * --weights-section (by default they join .bss and .rodata like any other data). */
#if defined(__arm__) && defined(__ELF__) && !defined(__linux__)
#define MCUFLOW_ARENA_PLACE __attribute__((section(".bss.mcuflow_arena")))
#define MCUFLOW_WEIGHTS_PLACE __attribute__((section(".rodata.mcuflow_weights")))
#else
#define MCUFLOW_ARENA_PLACE
#define MCUFLOW_WEIGHTS_PLACE
#endif

/* C99 has no _Static_assert: a negative array size stops the build when `cond` is false. */
#define MCUFLOW_STATIC_ASSERT(cond, name) typedef char mcuflow_static_assert_##name[(cond) ? 1 : -1]

/* ---- gemmlowp / TFLite fixed-point arithmetic ------------------------------------------- */

static inline int32_t mcuflow_clamp(int32_t x, int32_t lo, int32_t hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* SaturatingRoundingDoublingHighMul: (a * b * 2) >> 32, rounded, saturated at INT32_MIN^2. */
static inline int32_t mcuflow_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* RoundingDivideByPOT: x / 2^exponent, rounding half away from zero; 0 <= exponent <= 31. */
static inline int32_t mcuflow_rdbpot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)(((uint32_t)1 << exponent) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier (TFLite reference, double rounding); shift in [-31, 30]. */
static inline int32_t mcuflow_requantize(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return mcuflow_rdbpot(mcuflow_srdhm((int32_t)((uint32_t)x << left), multiplier), right);
}

/* ---- convolutions and fully connected --------------------------------------------------- */

/* Per-output-channel requantisation: int32 accumulator -> int8, either TFLite's fixed-point
 * MultiplyByQuantizedMultiplier (multiplier, shift) or, when `scale` is not NULL, LiteRT's
 * double-precision round(acc * scale) of FULLY_CONNECTED. */
typedef struct {
    const int32_t *bias;       /* int32 per output channel, input offset folded in when noted */
    const int32_t *multiplier; /* Q31 mantissa per output channel */
    const int32_t *shift;      /* power-of-two exponent per output channel */
    const double *scale;       /* real multiplier per output channel, or NULL */
    int32_t output_offset;     /* output zero point */
    int32_t act_min;
    int32_t act_max;
} mcuflow_requant_t;

/* Geometry of a 2-D window operator over an NHWC tensor; the output may be strided. */
typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w;
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_top, pad_left;
    int32_t input_offset;   /* minus the input zero point */
    int32_t out_pixel_step; /* int8 elements between neighbouring output pixels (>= out_c) */
    int32_t out_row_step;   /* elements between output rows */
    int32_t out_batch_step; /* elements between output images */
} mcuflow_window_t;

/* Every window kernel finishes output pixels strictly one after another in raster order and,
 * while writing pixel p, reads only the receptive fields of pixels >= p: the planner may place
 * the output overlapping the input (InPlace.OVERLAP) below it. */

/* General CONV_2D; `patch` is scratch of k_h * k_w * in_c bytes (im2col of one pixel).
 * `q->bias` has the input offset folded in: bias + input_offset * sum(filter[o]). */
void mcuflow_conv2d_s8(const mcuflow_window_t *g, const mcuflow_requant_t *q, const int8_t *input,
                       const int8_t *filter, int8_t *output, int8_t *patch);

/* 1x1 CONV_2D (any stride, never padded): a matrix product; input offset folded into bias. */
void mcuflow_conv2d_1x1_s8(const mcuflow_window_t *g, const mcuflow_requant_t *q,
                           const int8_t *input, const int8_t *filter, int8_t *output);

/* DEPTHWISE_CONV_2D (any kernel, stride, dilation, depth multiplier); raw (unfolded) bias. */
void mcuflow_dwconv_s8(const mcuflow_window_t *g, int32_t depth_multiplier,
                       const mcuflow_requant_t *q, const int8_t *input, const int8_t *filter,
                       int8_t *output);

/* 3x3 DEPTHWISE_CONV_2D, depth multiplier 1, any stride and padding; raw bias. */
void mcuflow_dwconv_3x3_s8(const mcuflow_window_t *g, const mcuflow_requant_t *q,
                           const int8_t *input, const int8_t *filter, int8_t *output);

/* In-place DEPTHWISE_CONV_2D (TinyEngine): for each channel c, output channel c is computed
 * into `temp` (out_h * out_w bytes) from input channel c, then copied to the output, so the
 * output may start at the input's address. One image, depth multiplier 1, dense output. */
void mcuflow_dwconv_inplace_s8(const mcuflow_window_t *g, const mcuflow_requant_t *q,
                               const int8_t *input, const int8_t *filter, int8_t *output,
                               int8_t *temp);

/* FULLY_CONNECTED: rows x depth input, units x depth weights; input offset folded into bias. */
void mcuflow_fully_connected_s8(int32_t rows, int32_t depth, int32_t units,
                                const mcuflow_requant_t *q, const int8_t *input,
                                const int8_t *weights, int8_t *output);

/* ---- pooling and reductions ------------------------------------------------------------- */

/* AVERAGE_POOL_2D; returns nonzero when a window holds no input element. */
int mcuflow_avg_pool_s8(const mcuflow_window_t *g, int32_t act_min, int32_t act_max,
                        const int8_t *input, int8_t *output);

void mcuflow_max_pool_s8(const mcuflow_window_t *g, int32_t act_min, int32_t act_max,
                         const int8_t *input, int8_t *output);

/* MEAN over any axes of an int8 tensor of up to 5 dims (adjacent dims merged when alike):
 * out = clamp(requantize(sum - input_zero_point * count) + output_zero_point, -128, 127). */
typedef struct {
    int32_t rank;
    int32_t dims[5];
    int32_t reduced[5]; /* nonzero on the reduced dims */
    int32_t input_zero_point, output_zero_point;
    int32_t multiplier, shift, count;
} mcuflow_mean_t;

void mcuflow_mean_s8(const mcuflow_mean_t *p, const int8_t *input, int8_t *output);

/* SOFTMAX along the last axis (TFLite reference, gemmlowp fixed point). `exp_table[d]` is
 * exp_on_negative_values of the rescaled difference -d in Q0.31, for d = max - x in 0..255. */
typedef struct {
    int32_t rows, depth;
    int32_t diff_min;
    const int32_t *exp_table;
} mcuflow_softmax_t;

void mcuflow_softmax_s8(const mcuflow_softmax_t *p, const int8_t *input, int8_t *output);

/* ---- element-wise ------------------------------------------------------------------------ */

typedef enum { MCUFLOW_ADD = 0, MCUFLOW_SUB = 1, MCUFLOW_MUL = 2 } mcuflow_binary_op_t;

/* ADD / SUB / MUL parameters (TFLite ArithmeticParams for int8). */
typedef struct {
    mcuflow_binary_op_t op;
    int32_t input1_offset, input2_offset, output_offset;
    int32_t left_shift;                      /* ADD / SUB only */
    int32_t input1_multiplier, input1_shift; /* ADD / SUB only */
    int32_t input2_multiplier, input2_shift; /* ADD / SUB only */
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
} mcuflow_binary_t;

/* Broadcast iteration space: up to 5 dims, outermost first; strides are 0 on broadcast dims.
 * The innermost dim has stride 0 or 1 in each input. */
typedef struct {
    int32_t rank;
    int32_t dims[5];
    int32_t stride1[5];
    int32_t stride2[5];
} mcuflow_broadcast_t;

void mcuflow_binary_s8(const mcuflow_binary_t *p, const mcuflow_broadcast_t *b,
                       const int8_t *input1, const int8_t *input2, int8_t *output);

/* Any int8 -> int8 element-wise function as a 256-entry table indexed by (x + 128). */
void mcuflow_lookup_s8(const int8_t *table, const int8_t *input, int8_t *output, int32_t size);

/* int8 -> float32 (DEQUANTIZE) through a 256-entry table; output bytes may be unaligned. */
void mcuflow_lookup_f32(const float *table, const int8_t *input, uint8_t *output, int32_t size);

/* float32 -> int8 (QUANTIZE): zero_point + round(x / scale) in float, saturated; NaN -> zero
 * point. Input bytes may be unaligned. */
void mcuflow_quantize_f32(float scale, int32_t zero_point, const uint8_t *input, int8_t *output,
                          int32_t size);

/* ---- data movement ------------------------------------------------------------------------ */

/* Copy `rows` rows of `row_bytes` between buffers with the given row steps (bytes). */
void mcuflow_copy_rows(const uint8_t *input, int32_t in_step, uint8_t *output, int32_t out_step,
                       int32_t rows, int32_t row_bytes);

/* PAD with `value` over up to 5 dims: out_dims = in_dims + before + after. */
typedef struct {
    int32_t rank;
    int32_t in_dims[5];
    int32_t before[5];
    int32_t out_dims[5];
} mcuflow_pad_t;

void mcuflow_pad_s8(const mcuflow_pad_t *p, int8_t value, const int8_t *input, int8_t *output);

/* ---- codebook weights ---------------------------------------------------------------------- */

/* Weights stored as int8 centroids addressed by canonical Huffman codes (k-means + Huffman),
 * decoded into RAM right before the layer that reads them (mcuflow.quant.codebook). */
typedef struct {
    const uint8_t *stream;     /* the code of every element, first bit in bit 7 of byte 0 */
    int32_t stream_bytes;
    int32_t size;              /* elements to decode */
    int32_t lookup_bits;       /* the lookup table has 2^lookup_bits entries */
    const int16_t *lookup;     /* prefix -> (length << 8) | (value + 128); 0: a longer code */
    int32_t max_bits;          /* the longest code */
    const int32_t *long_codes; /* lengths lookup_bits+1..max_bits: (limit, base); or NULL */
    const int8_t *values;      /* centroids in canonical code order (long codes), or NULL */
} mcuflow_codebook_t;

void mcuflow_codebook_decode_s8(const mcuflow_codebook_t *cb, int8_t *output);

#endif /* MCUFLOW_KERNELS_H */
