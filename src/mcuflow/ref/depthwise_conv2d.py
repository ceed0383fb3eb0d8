"""DEPTHWISE_CONV_2D reference kernels: int8 per-channel with depth multiplier (LiteRT), float32."""

from __future__ import annotations

import numpy as np

from mcuflow.ir.graph import DType, Graph, Operator
from mcuflow.ir.ops import DepthwiseConv2DAttrs, OpKind
from mcuflow.ref.common import (
    Accumulators,
    WindowedInput,
    apply_activation,
    float_bias,
    output_hw,
    padded_windows,
    require_constant,
    require_int8,
)
from mcuflow.ref.conv2d import ConvParams, conv_geometry, conv_requantizer, prepare_conv
from mcuflow.ref.int16x8 import prepare_weighted_s16
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel

# Below this many outputs one einsum beats a multiply-add pass per filter tap.
_EINSUM_OUTPUTS = 8192
_TILED_TAP_ELEMENTS = 1 << 21


class DepthwiseConv2DKernel:
    """DEPTHWISE_CONV_2D prepared for one input shape: exact float sums over the filter taps.

    Output channel `c * M + m` reads input channel `c`, so the buffer repeats each input channel
    M times; padded taps hold the input zero point and add nothing.
    """

    def __init__(
        self, input_shape: tuple[int, ...], weights: np.ndarray, bias: np.ndarray | None,
        attrs: DepthwiseConv2DAttrs, params: ConvParams, name: str = "",
    ) -> None:
        _, kh, kw, out_c = weights.shape
        geometry = conv_geometry(input_shape, (kh, kw), attrs, params)
        taps = weights.astype(np.int64).reshape(kh, kw, out_c)
        facts = Accumulators.of(taps.reshape(-1, out_c).T, bias, params.input_offset)
        self._input = WindowedInput(input_shape, geometry, -params.input_offset, facts.dtype,
                                    attrs.depth_multiplier)
        self._acc = np.empty((input_shape[0], *geometry.out_hw, out_c), facts.dtype)
        self._taps = taps.astype(facts.dtype)
        self._product: np.ndarray | None = None
        if self._acc.size >= _EINSUM_OUTPUTS:
            # Each tap tiled to the output shape (or to one output row when that would be large):
            # numpy multiplies same-shape arrays several times faster than it broadcasts a short
            # channel vector.
            full = self._acc.size * kh * kw <= _TILED_TAP_ELEMENTS
            tile = self._acc.shape if full else self._acc.shape[2:]
            self._taps = np.stack([np.broadcast_to(tap, tile)
                                   for tap in self._taps.reshape(-1, out_c)])
            self._product = np.empty_like(self._acc)
        self._requantize = conv_requantizer(name, params, facts, self._acc.shape)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The int8 output of input `x`."""
        windows = self._input.load(x)
        if self._product is None:
            np.einsum("nhwijc,ijc->nhwc", windows, self._taps, out=self._acc)
        else:
            self._accumulate_taps(windows, self._product)
        return self._requantize(self._acc)

    def _accumulate_taps(self, windows: np.ndarray, product: np.ndarray) -> None:
        """acc = sum over taps of window * tap, one same-shape multiply-add per tap."""
        kernel_w = windows.shape[4]
        for index, tap in enumerate(self._taps):
            window = windows[:, :, :, index // kernel_w, index % kernel_w, :]
            np.multiply(window, tap, out=product if index else self._acc)
            if index:
                self._acc += product


def depthwise_conv2d(
    x: np.ndarray, weights: np.ndarray, bias: np.ndarray | None, attrs: DepthwiseConv2DAttrs,
    params: ConvParams,
) -> np.ndarray:
    """int8 DEPTHWISE_CONV_2D of x [N,H,W,C] with weights [1,KH,KW,C*M], optional bias [C*M]."""
    return DepthwiseConv2DKernel(x.shape, weights, bias, attrs, params)(x)


@prepared_kernel(OpKind.DEPTHWISE_CONV_2D)
def prepare_depthwise_conv2d(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare a graph's DEPTHWISE_CONV_2D: constants from its tensors, then the run function."""
    x, weights, out = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]), graph.tensor(
        op.outputs[0])
    if x.dtype is DType.INT16:
        return prepare_weighted_s16(graph, op)
    require_int8(op, x, weights, out)
    bias = require_constant(op, graph.tensor(op.inputs[2])) if len(op.inputs) > 2 else None
    kernel = DepthwiseConv2DKernel(x.shape, require_constant(op, weights), bias, op.attrs,
                                   prepare_conv(x, weights, out, op.attrs), op.name)
    return lambda inputs: [kernel(inputs[0])]


@float_kernel(OpKind.DEPTHWISE_CONV_2D)
def _depthwise_float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    attrs: DepthwiseConv2DAttrs = op.attrs
    x, weights = inputs[0], inputs[1]
    _, kh, kw, out_c = weights.shape
    if attrs.depth_multiplier > 1:
        x = np.repeat(x, attrs.depth_multiplier, axis=3)
    windows = padded_windows(x, (kh, kw), (attrs.stride_h, attrs.stride_w),
                             (attrs.dilation_h, attrs.dilation_w), output_hw(graph, op), 0.0)
    out = np.einsum("nhwijc,ijc->nhwc", windows, weights[0].astype(np.float32), dtype=np.float32)
    return [apply_activation(out + float_bias(inputs, out_c), attrs.activation)]
