/* mcuflow kernels: what several kernel files share (macros, fixed-point helpers, structs).
 *
 * Each kernel file declares its own parameter structs and prototypes in its interface block;
 * the generated mcuflow_kernels.h gathers the blocks of the kernels a project ships.
 *
 * Every requantisation constant (multipliers, shifts, offsets, clamps, tables) is computed by
 * mcuflow on the host with TFLite's arithmetic and arrives here as a constant: the kernels only
 * evaluate. C99, no dynamic memory, no variable-length arrays.
 */
#ifndef MCUFLOW_COMMON_H
#define MCUFLOW_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define MCUFLOW_ALIGNED(n) __attribute__((aligned(n)))
#else
#define MCUFLOW_ALIGNED(n)
#endif

/* Bare-metal Arm builds keep the arena and the weights in input sections of their own, which
 * the generated linker script sends to the regions chosen with --arena-section and
 * --weights-section (by default they join .bss and .rodata like any other data), and the
 * spill area of activations spilled to external RAM in one the script sends to that RAM. */
#if defined(__arm__) && defined(__ELF__) && !defined(__linux__)
#define MCUFLOW_ARENA_PLACE __attribute__((section(".bss.mcuflow_arena")))
#define MCUFLOW_WEIGHTS_PLACE __attribute__((section(".rodata.mcuflow_weights")))
#define MCUFLOW_SPILL_PLACE __attribute__((section(".bss.mcuflow_spill")))
#else
#define MCUFLOW_ARENA_PLACE
#define MCUFLOW_WEIGHTS_PLACE
#define MCUFLOW_SPILL_PLACE
#endif

/* Most dimensions a shape struct holds (broadcast, MEAN, PAD, SLICE): mcuflow.ir.ops.MAX_RANK,
 * which refuses higher ranks before code generation (tests/codegen/test_max_rank.py checks the
 * two agree). */
#define MCUFLOW_MAX_RANK 5

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

/* ---- parameter structs of several kernel files ------------------------------------------ */

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

/* Broadcast iteration space: up to MCUFLOW_MAX_RANK dims, outermost first; strides are 0 on
 * broadcast dims. The innermost dim has stride 0 or 1 in each input. */
typedef struct {
    int32_t rank;
    int32_t dims[MCUFLOW_MAX_RANK];
    int32_t stride1[MCUFLOW_MAX_RANK];
    int32_t stride2[MCUFLOW_MAX_RANK];
} mcuflow_broadcast_t;

/* Advances `index` (one index per dim but the innermost) to the next row of `b`, the last dim
 * but the innermost fastest. */
static inline void mcuflow_broadcast_next(const mcuflow_broadcast_t *b, int32_t *index)
{
    for (int32_t d = b->rank - 2; d >= 0; --d) {
        if (++index[d] < b->dims[d]) {
            return;
        }
        index[d] = 0;
    }
}

/* One innermost row of a broadcast kernel: `n` outputs from `x` and `y`, each stepping by 0
 * (broadcast) or 1. `params` is the kernel's own parameters. The output may alias an input that
 * steps by 1: the row must read each element before it writes it. */
typedef void (*mcuflow_broadcast_row_fn)(const void *params, const int8_t *x, int32_t step_x,
                                         const int8_t *y, int32_t step_y, int8_t *out, int32_t n);

/* The broadcast walker of every two-input element-wise kernel: calls `row` on each innermost row
 * of `b` in order, the output written densely row after row. Each kernel calls it once with a
 * constant `row`, so the compiler inlines both. */
static inline void mcuflow_broadcast_s8(const mcuflow_broadcast_t *b, mcuflow_broadcast_row_fn row,
                                        const void *params, const int8_t *input1,
                                        const int8_t *input2, int8_t *output)
{
    const int32_t last = b->rank - 1;
    const int32_t n = b->dims[last];
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
        row(params, input1 + o1, b->stride1[last], input2 + o2, b->stride2[last],
            output + (size_t)r * (size_t)n, n);
    }
}

/* ---- TRANSPOSE_CONV (mcuflow_tconv.c, mcuflow_tconv_dsp.c) ---------------------------- */

/* The taps along one axis reaching output index `o` (padded by `pad`): `count` taps
 * first + j * stride reading input indices `index` - j, with 0 <= index - j < size and
 * first + j * stride < kernel. */
typedef struct {
    int32_t first, count, index;
} mcuflow_tconv_axis_t;

static inline mcuflow_tconv_axis_t mcuflow_tconv_taps(int32_t o, int32_t pad, int32_t stride,
                                                      int32_t kernel, int32_t size)
{
    const int32_t reach = o + pad;
    int32_t t = reach % stride;
    const int32_t lowest = reach - (size - 1) * stride; /* the tap of the last input index */
    if (t < lowest) {
        t = lowest;
    }
    const int32_t last = reach < kernel - 1 ? reach : kernel - 1;
    mcuflow_tconv_axis_t axis = {t, t > last ? 0 : (last - t) / stride + 1, (reach - t) / stride};
    return axis;
}

#endif /* MCUFLOW_COMMON_H */
