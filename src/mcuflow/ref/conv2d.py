"""CONV_2D reference kernel: int8, per-tensor or per-channel, LiteRT's ConvPerChannel to the bit."""

from __future__ import annotations

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import Conv2DAttrs, DepthwiseConv2DAttrs, OpKind
from mcuflow.ir.shapes import conv_output_size
from mcuflow.quant.fixedpoint import ConvParams, prepare_conv
from mcuflow.ref.common import (
    Accumulators,
    Geometry,
    WindowedInput,
    conv_requantizer,
    require_constant,
    require_int8,
)
from mcuflow.ref.registry import PreparedFn, prepared_kernel


def conv_geometry(
    input_shape: tuple[int, ...], kernel_hw: tuple[int, int],
    attrs: Conv2DAttrs | DepthwiseConv2DAttrs, params: ConvParams,
) -> Geometry:
    """The window geometry of a CONV_2D or DEPTHWISE_CONV_2D over `input_shape`."""
    in_hw = (input_shape[1], input_shape[2])
    strides, dilations = (attrs.stride_h, attrs.stride_w), (attrs.dilation_h, attrs.dilation_w)
    out_hw = (conv_output_size(in_hw[0], kernel_hw[0], strides[0], dilations[0], attrs.padding),
              conv_output_size(in_hw[1], kernel_hw[1], strides[1], dilations[1], attrs.padding))
    return Geometry(in_hw, out_hw, kernel_hw, strides, dilations, (params.pad_h, params.pad_w))


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
    require_int8(op, x, weights, out)
    bias = require_constant(op, graph.tensor(op.inputs[2])) if len(op.inputs) > 2 else None
    kernel = Conv2DKernel(x.shape, require_constant(op, weights), bias, op.attrs,
                          prepare_conv(x, weights, out, op.attrs), op.name)
    return lambda inputs: [kernel(inputs[0])]
