"""LiteRT's 16x8 kernels: int16 activations (zero point 0), int8 weights, int64 bias.

CONV_2D and DEPTHWISE_CONV_2D are reference_integer_ops' ConvPerChannel / DepthwiseConvPerChannel
for int16 input: an int64 accumulator requantised by the int64 MultiplyByQuantizedMultiplier
(the Q31 multiplier rounded to Q15). FULLY_CONNECTED requantises the int64 accumulator in double
precision, as LiteRT's int8 kernel does (`round(double(acc) * scale)`). The C kernels of
codegen/kernels/mcuflow_s16.c evaluate the same arithmetic with the constants computed here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mcuflow.ir.constraints import UncheckedModelError
from mcuflow.ir.enums import along
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import (
    Conv2DAttrs,
    DepthwiseConv2DAttrs,
    FullyConnectedAttrs,
    OpKind,
    SoftmaxAttrs,
)
from mcuflow.ir.quantization import INT16_MAX, INT16_MIN
from mcuflow.ir.shapes import conv_padding
from mcuflow.quant.fixedpoint import (
    activation_range,
    multiply_by_quantized_multiplier_array,
    multiply_by_quantized_multiplier_int64_array,
    per_channel_multipliers,
    quantize_multiplier,
    scale_and_round_array,
    tflite_round,
    wrap_int16_array,
)
from mcuflow.ref.common import Geometry, WindowedInput, quant_of, require_constant
from mcuflow.ref.registry import PreparedFn

WeightedAttrs = Conv2DAttrs | DepthwiseConv2DAttrs


@dataclass(frozen=True)
class ConvS16Params:
    """Constants of a 16x8 CONV_2D / DEPTHWISE_CONV_2D.

    Per-channel Q31 multipliers and shifts, the int16 activation range and the implicit padding
    before the first row and column.
    """

    multipliers: tuple[int, ...]
    shifts: tuple[int, ...]
    act_min: int
    act_max: int
    pad_h: int
    pad_w: int


@dataclass(frozen=True)
class FullyConnectedS16Params:
    """Constants of a 16x8 FULLY_CONNECTED: one double scale per unit, the int16 range."""

    scales: tuple[float, ...]
    act_min: int
    act_max: int


def require_int16x8(op: Operator, x: Tensor, weights: Tensor, out: Tensor) -> None:
    """Assert the 16x8 operand types, which the support constraints require."""
    if (x.dtype, weights.dtype, out.dtype) != (DType.INT16, DType.INT8, DType.INT16):
        raise UncheckedModelError(f"{op.kind.value} '{op.name}': not int16 x int8 -> int16")


def prepare_conv_s16(x: Tensor, weights: Tensor, out: Tensor, attrs: WeightedAttrs
                     ) -> ConvS16Params:
    """conv.cc / depthwise_conv.cc Prepare for kTfLiteInt16 input."""
    in_q, w_q, out_q = quant_of(x), quant_of(weights), quant_of(out)
    channels = out.shape[3]
    scaled = per_channel_multipliers(in_q.scale0, w_q.scale, out_q.scale0, channels)
    clamp = activation_range(attrs.activation, out_q.scale0, 0, INT16_MIN, INT16_MAX)
    (_, height, width, _), (kernel_h, kernel_w) = x.shape, weights.shape[1:3]
    return ConvS16Params(
        scaled.multipliers, scaled.shifts, clamp.min, clamp.max,
        conv_padding(height, kernel_h, attrs.stride_h, attrs.dilation_h, out.shape[1],
                     along(attrs.padding, 0)),
        conv_padding(width, kernel_w, attrs.stride_w, attrs.dilation_w, out.shape[2],
                     along(attrs.padding, 1)))


def prepare_fully_connected_s16(x: Tensor, weights: Tensor, out: Tensor,
                                attrs: FullyConnectedAttrs) -> FullyConnectedS16Params:
    """fully_connected.cc Prepare for int16 input: double(in) * double(w[c]) / double(out)."""
    in_q, w_q, out_q = quant_of(x), quant_of(weights), quant_of(out)
    units = weights.shape[0]
    weight_scales = w_q.scale if w_q.is_per_channel else w_q.scale[:1] * units
    clamp = activation_range(attrs.activation, out_q.scale0, 0, INT16_MIN, INT16_MAX)
    return FullyConnectedS16Params(
        tuple(in_q.scale0 * scale / out_q.scale0 for scale in weight_scales),
        clamp.min, clamp.max)


_EXACT = np.dtype(np.float64)
"""Products of int16 and int8 summed over fewer than 2**31 taps stay below 2**53: float64 sums
are exact, and BLAS computes them."""


def _windows(x: np.ndarray, kernel_hw: tuple[int, int], attrs: WeightedAttrs,
             params: ConvS16Params, out_hw: tuple[int, int], repeat: int = 1) -> np.ndarray:
    """[N, OH, OW, KH, KW, C] float64 windows of `x`; padded taps hold 0 (the zero point)."""
    geometry = Geometry((x.shape[1], x.shape[2]), out_hw, kernel_hw,
                        (attrs.stride_h, attrs.stride_w), (attrs.dilation_h, attrs.dilation_w),
                        (params.pad_h, params.pad_w))
    return WindowedInput(x.shape, geometry, 0, _EXACT, repeat).load(x)


def _requantize_conv(acc: np.ndarray, params: ConvS16Params) -> np.ndarray:
    scaled = multiply_by_quantized_multiplier_int64_array(
        acc, np.asarray(params.multipliers, np.int64), np.asarray(params.shifts, np.int64))
    return np.clip(scaled, params.act_min, params.act_max).astype(np.int16)


def _with_bias(acc: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    return acc if bias is None else acc + bias.astype(np.int64)


def conv2d_s16(x: np.ndarray, weights: np.ndarray, bias: np.ndarray | None,
               attrs: Conv2DAttrs, params: ConvS16Params, out_hw: tuple[int, int]) -> np.ndarray:
    """int16 CONV_2D of x [N,H,W,C] with int8 weights [O,KH,KW,C] and int64 bias [O]."""
    windows = _windows(x, weights.shape[1:3], attrs, params, out_hw)
    acc = np.tensordot(windows, weights.astype(_EXACT), axes=((3, 4, 5), (1, 2, 3)))
    return _requantize_conv(_with_bias(acc.astype(np.int64), bias), params)


def depthwise_conv2d_s16(x: np.ndarray, weights: np.ndarray, bias: np.ndarray | None,
                         attrs: DepthwiseConv2DAttrs, params: ConvS16Params,
                         out_hw: tuple[int, int]) -> np.ndarray:
    """int16 DEPTHWISE_CONV_2D of x [N,H,W,C] with weights [1,KH,KW,C*M], int64 bias [C*M]."""
    windows = _windows(x, weights.shape[1:3], attrs, params, out_hw, attrs.depth_multiplier)
    acc = np.einsum("nhwijc,ijc->nhwc", windows, weights[0].astype(_EXACT))
    return _requantize_conv(_with_bias(acc.astype(np.int64), bias), params)


def fully_connected_s16(x: np.ndarray, weights: np.ndarray, bias: np.ndarray | None,
                        params: FullyConnectedS16Params, out_shape: tuple[int, ...]
                        ) -> np.ndarray:
    """int16 FULLY_CONNECTED of x [..., K] with int8 weights [O, K] and int64 bias [O]."""
    rows = x.reshape(-1, weights.shape[1]).astype(_EXACT)
    acc = _with_bias((rows @ weights.T.astype(_EXACT)).astype(np.int64), bias)
    rounded = scale_and_round_array(acc, np.asarray(params.scales, np.float64))
    clamped = np.clip(rounded, params.act_min, params.act_max)
    return clamped.astype(np.int16).reshape(out_shape)


def _operands(graph: Graph, op: Operator) -> tuple[Tensor, np.ndarray, np.ndarray | None, Tensor]:
    x, weights, out = (graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]),
                       graph.tensor(op.outputs[0]))
    require_int16x8(op, x, weights, out)
    bias = require_constant(op, graph.tensor(op.inputs[2])) if len(op.inputs) > 2 else None
    return x, require_constant(op, weights), bias, out


def prepare_weighted_s16(graph: Graph, op: Operator) -> PreparedFn:
    """The per-inference function of a 16x8 CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED."""
    x, weights, bias, out = _operands(graph, op)
    if op.kind is OpKind.FULLY_CONNECTED:
        fc = prepare_fully_connected_s16(x, graph.tensor(op.inputs[1]), out, op.attrs)
        return lambda inputs: [fully_connected_s16(inputs[0], weights, bias, fc, out.shape)]
    params = prepare_conv_s16(x, graph.tensor(op.inputs[1]), out, op.attrs)
    run = conv2d_s16 if op.kind is OpKind.CONV_2D else depthwise_conv2d_s16
    out_hw = (out.shape[1], out.shape[2])
    return lambda inputs: [run(inputs[0], weights, bias, op.attrs, params, out_hw)]


# --- SOFTMAX (LiteRT's SoftmaxInt16: exp and 1/(1+x) from 513-entry interpolated tables) --------

LUT_S16_ENTRIES = 513
"""An int16 LUT: 512 base values and one more for the last slope (LiteRT's gen_lut)."""
SOFTMAX_S16_DIFF_RANGE = 10.0
"""SoftmaxInt16 maps input differences [-65535, 0] to [-10, 0] (exp(-10) is negligible)."""


def gen_lut_s16(func: Callable[[float], float], input_min: float, input_max: float
                ) -> np.ndarray:
    """LiteRT's gen_lut for int16 input and output over the output range [-1, 1].

    Each base value is func's sample (x 32768, rounded half away from zero) corrected by half
    the error of linear interpolation at the step's midpoint, clamped to int16; the last entry
    is func(input_max). Python's float arithmetic and math.exp are C's double ones.
    """
    steps = LUT_S16_ENTRIES - 1
    step = (input_max - input_min) / steps
    scale = 65536.0 / 2.0
    table = np.empty(LUT_S16_ENTRIES, np.int16)
    for i in range(steps):
        sample = tflite_round(func(input_min + i * step) * scale)
        interpolated = tflite_round((func(input_min + (i + 1) * step) * scale + sample) / 2)
        midpoint = tflite_round(func(input_min + i * step + step / 2) * scale)
        bias = tflite_round((interpolated - midpoint) / 2)
        table[i] = min(max(sample - bias, INT16_MIN), INT16_MAX)
    table[steps] = min(max(tflite_round(func(input_max) * scale), INT16_MIN), INT16_MAX)
    return table


def lut_lookup_s16(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """LiteRT's int16 LUTLookup: base at 256 + (v >> 7) plus the slope times v & 0x7f, rounded."""
    v = np.asarray(values, dtype=np.int64)
    index = 256 + (v >> 7)
    lut = table.astype(np.int64)
    slope = wrap_int16_array(lut[index + 1] - lut[index])
    return wrap_int16_array(lut[index] + ((slope * (v & 0x7F) + 64) >> 7))


@dataclass(frozen=True)
class SoftmaxS16Params:
    """Constants of int16 SOFTMAX: the input rescaling and the two tables."""

    input_multiplier: int
    input_left_shift: int
    exp_table: np.ndarray
    reciprocal_table: np.ndarray


def prepare_softmax_s16(x: Tensor, attrs: SoftmaxAttrs) -> SoftmaxS16Params:
    """activations.cc SoftmaxPrepare for int16: in scale x beta / (10 / 65535), the tables."""
    real = quant_of(x).scale0 * attrs.beta / (SOFTMAX_S16_DIFF_RANGE / 65535.0)
    scaled = quantize_multiplier(real)
    return SoftmaxS16Params(
        scaled.multiplier, scaled.shift,
        gen_lut_s16(math.exp, -SOFTMAX_S16_DIFF_RANGE, 0.0),
        gen_lut_s16(lambda value: 1.0 / (1.0 + value), 0.0, 1.0))


def softmax_s16(x: np.ndarray, params: SoftmaxS16Params) -> np.ndarray:
    """reference_ops::SoftmaxInt16 along the last axis."""
    v = np.asarray(x, dtype=np.int64)
    diff = v - v.max(axis=-1, keepdims=True)
    scaled = multiply_by_quantized_multiplier_array(diff, params.input_multiplier,
                                                    params.input_left_shift)
    exps = lut_lookup_s16(np.clip(scaled + INT16_MAX, INT16_MIN, INT16_MAX), params.exp_table)
    total = exps.sum(axis=-1, keepdims=True)
    headroom_plus_one = 32 - np.frexp(total)[1].astype(np.int64)  # CountLeadingZeros
    shifted = ((total << (headroom_plus_one - 1)) + (1 << 13)) >> 14
    centred = np.clip(shifted - ((1 << 15) + (1 << 16)), INT16_MIN, INT16_MAX)
    reciprocal = lut_lookup_s16(centred, params.reciprocal_table)
    right_shift = 31 - headroom_plus_one
    result = (exps * reciprocal + (np.int64(1) << (right_shift - 1))) >> right_shift
    return np.clip(result, 0, INT16_MAX).astype(np.int16)


# --- LOGISTIC and TANH (reference_integer_ops' int16 Logistic / Tanh) ---------------------------

SIGMOID_TABLE_S16 = np.array((
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149,
    40794, 41432, 42064, 42688, 43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369,
    47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409, 51865, 52311, 52745, 53169,
    53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433,
    57724, 58007, 58280, 58544, 58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370,
    60565, 60753, 60935, 61110, 61279, 61441, 61599, 61750, 61896, 62036, 62172, 62302,
    62428, 62549, 62666, 62778, 62886, 62990, 63090, 63186, 63279, 63368, 63454, 63536,
    63615, 63691, 63765, 63835, 63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308,
    64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786,
    64816, 64845, 64873, 64900, 64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079,
    65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208, 65221, 65234, 65246, 65258,
    65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360, 65367,
    65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433,
    65438, 65442, 65445, 65449, 65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474,
    65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491, 65493, 65495, 65497, 65498,
    65500, 65501, 65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513,
    65514, 65515, 65516, 65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522,
    65523, 65523, 65524, 65524, 65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528,
    65528, 65528, 65529, 65529, 65529, 65529, 65530, 65530, 65530, 65530, 65531, 65531,
    65531, 65531, 65531, 65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533,
    65533, 65533, 65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534,
    65534, 65534, 65534, 65535,
), np.int64)
"""LiteRT's (and CMSIS-NN's) sigmoid_table_uint16: sigmoid(i / 24) in 0.16 fixed point as those
libraries tabulate it (within one step of rounding; tanh(x) is 2 sigmoid(2x) - 1). The tests
compare every int16 input against LiteRT."""


@dataclass(frozen=True)
class SigmoidS16Params:
    """The input rescaling of int16 LOGISTIC / TANH: x * multiplier, rounded >> left_shift."""

    multiplier: int
    left_shift: int


def prepare_sigmoid_s16(x: Tensor, kind: OpKind) -> SigmoidS16Params:
    """activations.cc Sigmoid/TanhPrepare for int16, and the kernels' power-of-two case.

    A power-of-two input scale whose shift (12 + log2 scale) is 0 (LOGISTIC; 0 or 1 for TANH)
    multiplies by 3 << shift; any other scale by int(scale x 3 x 4096 x 2**shift) with the
    smallest shift taking it above 32767 / 2.
    """
    scale = quant_of(x).scale0
    mantissa, exponent = math.frexp(scale)
    shift = 12 + exponent - 1
    if mantissa == 0.5 and shift in ((0, 1) if kind is OpKind.TANH else (0,)):
        return SigmoidS16Params(3 << shift, 0)
    multiplier, shift = scale * 4096.0 * 3.0, 0
    while multiplier <= 32767.0 / 2.0 and shift <= 30:
        shift += 1
        multiplier *= 2.0
    return SigmoidS16Params(int(multiplier), shift)


def _rescaled_s16(x: np.ndarray, params: SigmoidS16Params) -> np.ndarray:
    rounding = (1 << (params.left_shift - 1)) if params.left_shift > 0 else 0
    return (np.asarray(x, np.int64) * params.multiplier + rounding) >> params.left_shift


def _sigmoid_interpolated(magnitude: np.ndarray, fraction_bits: int) -> np.ndarray:
    """The table interpolated at `magnitude` (its low `fraction_bits` the fraction), saturated."""
    index = magnitude >> fraction_bits
    inside = np.minimum(index, 254)
    low, high = SIGMOID_TABLE_S16[inside], SIGMOID_TABLE_S16[inside + 1]
    fraction = magnitude & ((1 << fraction_bits) - 1)
    return np.where(index >= 255, 0x7FFF << (fraction_bits + 1) if fraction_bits == 9
                    else 0xFFFF << fraction_bits, (low << fraction_bits) + fraction * (high - low))


def logistic_s16(x: np.ndarray, params: SigmoidS16Params) -> np.ndarray:
    """reference_integer_ops::Logistic for int16 (output scale 2**-15)."""
    value = _rescaled_s16(x, params)
    result = _sigmoid_interpolated(np.abs(value), 9)
    result = np.where(value >= 0, result + (1 << 9), (1 << 25) - result + (1 << 9) - 1)
    return wrap_int16_array(result >> 10).astype(np.int16)


def tanh_s16(x: np.ndarray, params: SigmoidS16Params) -> np.ndarray:
    """reference_integer_ops::Tanh for int16 (output scale 2**-15)."""
    value = _rescaled_s16(x, params)
    result = _sigmoid_interpolated(np.abs(value), 8)
    result = np.where(value >= 0, result - (1 << 23) + (1 << 7),
                      -result + (1 << 23) + (1 << 7) - 1)
    return wrap_int16_array(result >> 8).astype(np.int16)
