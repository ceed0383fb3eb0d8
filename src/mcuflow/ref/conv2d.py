"""CONV_2D: Prepare (shared with DEPTHWISE_CONV_2D), LiteRT's int8 ConvPerChannel, float32."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuflow.ir.constraints import UncheckedModelError
from mcuflow.ir.enums import along
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import Conv2DAttrs, DepthwiseConv2DAttrs, OpKind
from mcuflow.ir.shapes import conv_output_size, conv_padding
from mcuflow.quant.fixedpoint import (
    activation_range,
    multiply_by_quantized_multiplier_array,
    per_channel_multipliers,
)
from mcuflow.ref.common import (
    Accumulators,
    Geometry,
    Requantizer,
    WindowedInput,
    apply_activation,
    check_accumulator_bounds,
    float_bias,
    output_hw,
    padded_windows,
    quant_of,
    require_constant,
    require_int8,
)
from mcuflow.ref.int16x8 import prepare_weighted_s16
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel


@dataclass(frozen=True)
class ConvParams:
    """Constants of CONV_2D and DEPTHWISE_CONV_2D (TFLite ConvParams + per-channel arrays).

    `pad_h` and `pad_w` are the implicit zero rows and columns before the first input element
    (TFLite ComputePaddingHeightWidth; the extra odd padding goes after the last element).
    """

    input_offset: int
    output_offset: int
    multipliers: tuple[int, ...]
    shifts: tuple[int, ...]
    act_min: int
    act_max: int
    pad_h: int
    pad_w: int


def prepare_conv(
    x: Tensor, weights: Tensor, out: Tensor, attrs: Conv2DAttrs | DepthwiseConv2DAttrs
) -> ConvParams:
    """conv.cc / depthwise_conv.cc Prepare: per-channel multipliers, activation range, padding."""
    in_q, w_q, out_q = quant_of(x), quant_of(weights), quant_of(out)
    channels = out.shape[3]
    if w_q.is_per_channel and len(w_q.scale) != channels:
        raise UncheckedModelError(
            f"tensor '{weights.name}' has {len(w_q.scale)} scales for {channels} output channels")
    scaled = per_channel_multipliers(in_q.scale0, w_q.scale, out_q.scale0, channels)
    clamp = activation_range(attrs.activation, out_q.scale0, out_q.zero_point0)
    (_, height, width, _), (kernel_h, kernel_w) = x.shape, weights.shape[1:3]
    return ConvParams(
        input_offset=-in_q.zero_point0,
        output_offset=out_q.zero_point0,
        multipliers=scaled.multipliers,
        shifts=scaled.shifts,
        act_min=clamp.min,
        act_max=clamp.max,
        pad_h=conv_padding(height, kernel_h, attrs.stride_h, attrs.dilation_h, out.shape[1],
                           along(attrs.padding, 0)),
        pad_w=conv_padding(width, kernel_w, attrs.stride_w, attrs.dilation_w, out.shape[2],
                           along(attrs.padding, 1)),
    )


def conv_geometry(
    input_shape: tuple[int, ...], kernel_hw: tuple[int, int],
    attrs: Conv2DAttrs | DepthwiseConv2DAttrs, params: ConvParams,
) -> Geometry:
    """The window geometry of a CONV_2D or DEPTHWISE_CONV_2D over `input_shape`."""
    in_hw = (input_shape[1], input_shape[2])
    strides, dilations = (attrs.stride_h, attrs.stride_w), (attrs.dilation_h, attrs.dilation_w)
    out_hw = tuple(conv_output_size(in_hw[axis], kernel_hw[axis], strides[axis], dilations[axis],
                                    along(attrs.padding, axis)) for axis in (0, 1))
    return Geometry(in_hw, out_hw, kernel_hw, strides, dilations, (params.pad_h, params.pad_w))


def conv_requantizer(
    op_name: str, params: ConvParams, facts: Accumulators, shape: tuple[int, ...]
) -> Requantizer:
    """Requantizer of CONV_2D / DEPTHWISE_CONV_2D: MultiplyByQuantizedMultiplier per channel."""
    multipliers = np.asarray(params.multipliers, dtype=np.int64)[:, None]
    shifts = np.asarray(params.shifts, dtype=np.int64)
    check_accumulator_bounds(op_name, facts.bounds, shifts)

    def requantize(acc: np.ndarray) -> np.ndarray:
        scaled = multiply_by_quantized_multiplier_array(acc, multipliers, shifts[:, None])
        return scaled + params.output_offset

    scales = multipliers * np.exp2(shifts[:, None] - 31.0)
    levels = np.arange(params.act_min + 1, params.act_max + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        guess = np.ceil((levels - 0.5 - params.output_offset) / scales)
    return Requantizer(requantize, facts, params.act_min, params.act_max, shape, guess)


class Conv2DKernel:
    """CONV_2D prepared for one input shape: im2col and one exact float matrix product.

    Padded taps hold the input zero point, so they add nothing, as TFLite's skipped taps do.
    """

    def __init__(
        self, input_shape: tuple[int, ...], weights: np.ndarray, bias: np.ndarray | None,
        attrs: Conv2DAttrs, params: ConvParams, name: str = "",
    ) -> None:
        out_c, kh, kw, in_c = weights.shape
        geometry = conv_geometry(input_shape, (kh, kw), attrs, params)
        flat = weights.astype(np.int64).reshape(out_c, -1)
        facts = Accumulators.of(flat, bias, params.input_offset)
        self._matrix = np.ascontiguousarray(flat.T.astype(facts.dtype))
        self._input = WindowedInput(input_shape, geometry, -params.input_offset, facts.dtype)
        self._out_shape = (input_shape[0], *geometry.out_hw, out_c)
        rows = input_shape[0] * geometry.out_hw[0] * geometry.out_hw[1]
        pointwise = (kh, kw) == (1, 1) and geometry.strides == (1, 1) and geometry.pads() == (
            (0, 0), (0, 0))
        self._im2col = None if pointwise else np.empty((rows, kh * kw * in_c), facts.dtype)
        self._columns = self._input.buffer.reshape(rows, in_c) if pointwise else self._im2col
        self._acc = np.empty((rows, out_c), facts.dtype)
        self._requantize = conv_requantizer(name, params, facts, self._acc.shape)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The int8 output of input `x`."""
        windows = self._input.load(x)
        if self._im2col is not None:
            np.copyto(self._im2col.reshape(windows.shape), windows)
        np.matmul(self._columns, self._matrix, out=self._acc)
        return self._requantize(self._acc).reshape(self._out_shape)


def conv2d(
    x: np.ndarray, weights: np.ndarray, bias: np.ndarray | None, attrs: Conv2DAttrs,
    params: ConvParams,
) -> np.ndarray:
    """int8 CONV_2D of x [N,H,W,C] with weights [O,KH,KW,C] and optional int32 bias [O]."""
    return Conv2DKernel(x.shape, weights, bias, attrs, params)(x)


@prepared_kernel(OpKind.CONV_2D)
def prepare_conv2d(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare a graph's CONV_2D: constants from its tensors, then the per-inference function."""
    x, weights, out = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]), graph.tensor(
        op.outputs[0])
    if x.dtype is DType.INT16:
        return prepare_weighted_s16(graph, op)
    require_int8(op, x, weights, out)
    bias = require_constant(op, graph.tensor(op.inputs[2])) if len(op.inputs) > 2 else None
    kernel = Conv2DKernel(x.shape, require_constant(op, weights), bias, op.attrs,
                          prepare_conv(x, weights, out, op.attrs), op.name)
    return lambda inputs: [kernel(inputs[0])]


@float_kernel(OpKind.CONV_2D)
def _conv2d_float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    attrs: Conv2DAttrs = op.attrs
    x, weights = inputs[0], inputs[1]
    out_c, kh, kw, in_c = weights.shape
    windows = padded_windows(x, (kh, kw), (attrs.stride_h, attrs.stride_w),
                             (attrs.dilation_h, attrs.dilation_w), output_hw(graph, op), 0.0)
    columns = windows.reshape(*windows.shape[:3], kh * kw * in_c)
    out = columns @ weights.reshape(out_c, -1).T.astype(np.float32) + float_bias(inputs, out_c)
    return [apply_activation(out.astype(np.float32), attrs.activation)]
