"""TRANSPOSE_CONV: Prepare, LiteRT's int8 reference_integer_ops::TransposeConv, float32."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuflow.ir.constraints import UncheckedModelError, constraint
from mcuflow.ir.graph import Graph, Operator, Tensor
from mcuflow.ir.ops import OpKind, TransposeConvAttrs, transpose_conv_pads
from mcuflow.quant.fixedpoint import (
    activation_range,
    multiply_by_quantized_multiplier_array,
    per_channel_multipliers,
)
from mcuflow.ref.common import (
    accumulator_bounds,
    apply_activation,
    check_accumulator_bounds,
    int32_accumulator,
    quant_of,
    require_constant,
    require_int8,
)
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel


@dataclass(frozen=True)
class TransposeConvParams:
    """Constants of TRANSPOSE_CONV: LiteRT's ConvParams and per-channel arrays.

    Output pixel (oy, ox) receives input pixel (iy, ix) through tap (ky, kx) when
    oy = iy * stride_h + ky - pad_h and ox = ix * stride_w + kx - pad_w.
    """

    input_offset: int
    output_offset: int
    multipliers: tuple[int, ...]
    shifts: tuple[int, ...]
    act_min: int
    act_max: int
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int


def prepare_transpose_conv(x: Tensor, weights: Tensor, out: Tensor,
                           attrs: TransposeConvAttrs) -> TransposeConvParams:
    """transpose_conv.cc Prepare: per-channel multipliers, activation range, padding."""
    in_q, w_q, out_q = quant_of(x), quant_of(weights), quant_of(out)
    channels, kernel_h, kernel_w, _ = weights.shape
    if w_q.is_per_channel and len(w_q.scale) != channels:
        raise UncheckedModelError(
            f"tensor '{weights.name}' has {len(w_q.scale)} scales for {channels} output channels")
    scaled = per_channel_multipliers(in_q.scale0, w_q.scale, out_q.scale0, channels)
    clamp = activation_range(attrs.activation, out_q.scale0, out_q.zero_point0)
    pad_h, pad_w = transpose_conv_pads(attrs, (kernel_h, kernel_w))
    return TransposeConvParams(
        input_offset=-in_q.zero_point0, output_offset=out_q.zero_point0,
        multipliers=scaled.multipliers, shifts=scaled.shifts, act_min=clamp.min,
        act_max=clamp.max, stride_h=attrs.stride_h, stride_w=attrs.stride_w,
        pad_h=pad_h, pad_w=pad_w)


def scatter_taps(x: np.ndarray, weights: np.ndarray, strides: tuple[int, int],
                 pads: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """sum over taps of x[n, iy, ix, :] . weights[o, ky, kx, :] landing on each output pixel.

    `x` and `weights` are float64 holding integers (then every sum is exact) or floats; the
    result is [N, OH, OW, O] of their dtype. Taps landing outside the output are dropped.
    """
    n, in_h, in_w, _ = x.shape
    out_c, kernel_h, kernel_w, _ = weights.shape
    canvas_h = max((in_h - 1) * strides[0] + kernel_h, pads[0] + out_hw[0])
    canvas_w = max((in_w - 1) * strides[1] + kernel_w, pads[1] + out_hw[1])
    canvas = np.zeros((n, canvas_h, canvas_w, out_c), x.dtype)
    for ky in range(kernel_h):
        for kx in range(kernel_w):
            rows = slice(ky, ky + (in_h - 1) * strides[0] + 1, strides[0])
            cols = slice(kx, kx + (in_w - 1) * strides[1] + 1, strides[1])
            canvas[:, rows, cols, :] += x @ weights[:, ky, kx, :].T
    return canvas[:, pads[0]:pads[0] + out_hw[0], pads[1]:pads[1] + out_hw[1], :]


def transpose_conv(x: np.ndarray, weights: np.ndarray, bias: np.ndarray | None,
                   params: TransposeConvParams, out_hw: tuple[int, int]) -> np.ndarray:
    """int8 TRANSPOSE_CONV of x [N,H,W,C] with weights [O,KH,KW,C] and optional int32 bias [O].

    As LiteRT: int32 sums of (x + input_offset) * w scattered over the output, plus bias, then
    MultiplyByQuantizedMultiplier per channel, the output offset and the activation clamp.
    """
    shifted = x.astype(np.float64) + params.input_offset
    acc = scatter_taps(shifted, weights.astype(np.float64), (params.stride_h, params.stride_w),
                       (params.pad_h, params.pad_w), out_hw).astype(np.int64)
    if bias is not None:
        acc += bias.astype(np.int64)
    scaled = multiply_by_quantized_multiplier_array(
        acc, np.asarray(params.multipliers, np.int64), np.asarray(params.shifts, np.int64))
    return np.clip(scaled + params.output_offset, params.act_min, params.act_max).astype(np.int8)


@constraint(OpKind.TRANSPOSE_CONV)
def transpose_conv_accumulator(graph: Graph, op: Operator) -> str | None:
    """The int32 accumulator must not overflow, as LiteRT assumes.

    In every output channel, the sum of absolute weights times the largest absolute input minus
    input zero point, plus the absolute bias, doubled per left shift of a requantisation
    multiplier above 1, must stay below 2**31. Reduce the layer's depth or its bias.
    """
    return int32_accumulator(graph, op)


@prepared_kernel(OpKind.TRANSPOSE_CONV)
def prepare_transpose_conv_kernel(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare a graph's TRANSPOSE_CONV: constants from its tensors, then the run function."""
    x, weights, out = (graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]),
                       graph.tensor(op.outputs[0]))
    require_int8(op, x, weights, out)
    bias = require_constant(op, graph.tensor(op.inputs[2])) if len(op.inputs) > 2 else None
    data = require_constant(op, weights)
    params = prepare_transpose_conv(x, weights, out, op.attrs)
    bounds = accumulator_bounds(data.reshape(len(data), -1), bias, params.input_offset)
    check_accumulator_bounds(op.name, bounds, np.asarray(params.shifts, np.int64))
    return lambda inputs: [transpose_conv(inputs[0], data, bias, params, op.attrs.window_hw)]


@float_kernel(OpKind.TRANSPOSE_CONV)
def _transpose_conv_float(graph: Graph, op: Operator, inputs: list[np.ndarray]
                          ) -> list[np.ndarray]:
    attrs: TransposeConvAttrs = op.attrs
    x, weights = inputs[0].astype(np.float32), inputs[1].astype(np.float32)
    _, kernel_h, kernel_w, _ = weights.shape
    pads = transpose_conv_pads(attrs, (kernel_h, kernel_w))
    out = scatter_taps(x, weights, (attrs.stride_h, attrs.stride_w), pads, attrs.window_hw)
    if len(inputs) > 2:
        out = out + inputs[2].astype(np.float32)
    return [apply_activation(out.astype(np.float32), attrs.activation)]
