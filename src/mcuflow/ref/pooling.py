"""AVERAGE_POOL_2D and MAX_POOL_2D: int8 and int16 kernels (LiteRT's integer pools), float32."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuflow.ir.enums import along
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import OpKind, Pool2DAttrs
from mcuflow.ir.shapes import conv_output_size, conv_padding
from mcuflow.quant.fixedpoint import activation_range
from mcuflow.ref.common import (
    Geometry,
    WindowedInput,
    apply_activation,
    output_hw,
    padded_windows,
    quant_of,
    require_int8,
)
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel

_INT8 = np.dtype(np.int8)


@dataclass(frozen=True)
class PoolParams:
    """Constants of AVERAGE_POOL_2D and MAX_POOL_2D (padding before the first element, clamp)."""

    pad_h: int
    pad_w: int
    act_min: int
    act_max: int


def prepare_pool(x: Tensor, out: Tensor, attrs: Pool2DAttrs) -> PoolParams:
    """pooling.cc Prepare: ComputePaddingHeightWidth (no dilation) and the activation range."""
    out_q = quant_of(out)
    limits = np.iinfo(out.dtype.numpy)
    clamp = activation_range(attrs.activation, out_q.scale0, out_q.zero_point0, int(limits.min),
                             int(limits.max))
    return PoolParams(
        pad_h=conv_padding(x.shape[1], attrs.filter_h, attrs.stride_h, 1, out.shape[1],
                           along(attrs.padding, 0)),
        pad_w=conv_padding(x.shape[2], attrs.filter_w, attrs.stride_w, 1, out.shape[2],
                           along(attrs.padding, 1)),
        act_min=clamp.min,
        act_max=clamp.max,
    )


def _windowed_input(input_shape: tuple[int, ...], attrs: Pool2DAttrs, params: PoolParams,
                    fill: int, dtype: np.dtype) -> WindowedInput:
    """The pool's input buffer (int8 or int16), padded taps holding `fill`."""
    in_hw, kernel = (input_shape[1], input_shape[2]), (attrs.filter_h, attrs.filter_w)
    strides = (attrs.stride_h, attrs.stride_w)
    out_hw = tuple(conv_output_size(in_hw[axis], kernel[axis], strides[axis], 1,
                                    along(attrs.padding, axis)) for axis in (0, 1))
    geometry = Geometry(in_hw, out_hw, kernel, strides, (1, 1), (params.pad_h, params.pad_w))
    return WindowedInput(input_shape, geometry, fill, dtype)


class AveragePool2DKernel:
    """AVERAGE_POOL_2D: the sum over the valid taps divided by their count.

    The division rounds half away from zero with C integer division, as LiteRT does; the result
    is clamped to the activation range.
    """

    def __init__(self, input_shape: tuple[int, ...], attrs: Pool2DAttrs,
                 params: PoolParams, dtype: np.dtype = _INT8) -> None:
        self._input = _windowed_input(input_shape, attrs, params, 0, dtype)
        self._clamp = (params.act_min, params.act_max)
        self._dtype = dtype
        self._count = self._window_sum(np.ones(input_shape, dtype))
        self._half = self._count // 2

    def _window_sum(self, x: np.ndarray) -> np.ndarray:
        return self._input.load(x).sum(axis=(3, 4), dtype=np.int32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The int8 output of input `x`."""
        acc = self._window_sum(x)
        up = (acc + self._half) // self._count
        down = -((self._half - acc) // self._count)
        return np.clip(np.where(acc > 0, up, down), *self._clamp).astype(self._dtype)


class MaxPool2DKernel:
    """MAX_POOL_2D: the window maximum over valid taps, clamped to the activation range."""

    def __init__(self, input_shape: tuple[int, ...], attrs: Pool2DAttrs,
                 params: PoolParams, dtype: np.dtype = _INT8) -> None:
        self._input = _windowed_input(input_shape, attrs, params, int(np.iinfo(dtype).min),
                                      dtype)
        self._clamp = (params.act_min, params.act_max)
        self._dtype = dtype

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The output of input `x`, of its type."""
        return np.clip(self._input.load(x).max(axis=(3, 4)), *self._clamp).astype(self._dtype)


def average_pool2d(x: np.ndarray, attrs: Pool2DAttrs, params: PoolParams) -> np.ndarray:
    """int8 AVERAGE_POOL_2D of x [N,H,W,C]."""
    return AveragePool2DKernel(x.shape, attrs, params)(x)


def max_pool2d(x: np.ndarray, attrs: Pool2DAttrs, params: PoolParams) -> np.ndarray:
    """int8 MAX_POOL_2D of x [N,H,W,C]."""
    return MaxPool2DKernel(x.shape, attrs, params)(x)


@prepared_kernel(OpKind.AVERAGE_POOL_2D, OpKind.MAX_POOL_2D)
def prepare_pool2d(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare a graph's AVERAGE_POOL_2D or MAX_POOL_2D."""
    x, out = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    if x.dtype is not DType.INT16:
        require_int8(op, x, out)
    kind = AveragePool2DKernel if op.kind is OpKind.AVERAGE_POOL_2D else MaxPool2DKernel
    kernel = kind(x.shape, op.attrs, prepare_pool(x, out, op.attrs), x.dtype.numpy)
    return lambda inputs: [kernel(inputs[0])]


def _pool_windows(graph: Graph, op: Operator, x: np.ndarray, fill: float) -> np.ndarray:
    attrs: Pool2DAttrs = op.attrs
    return padded_windows(x, (attrs.filter_h, attrs.filter_w), (attrs.stride_h, attrs.stride_w),
                          (1, 1), output_hw(graph, op), fill)


@float_kernel(OpKind.AVERAGE_POOL_2D)
def _average_pool_float(graph: Graph, op: Operator, inputs: list[np.ndarray]
                        ) -> list[np.ndarray]:
    """Average over the valid taps only (padding is not counted), as TFLite does."""
    sums = _pool_windows(graph, op, inputs[0], 0.0).sum(axis=(3, 4), dtype=np.float64)
    ones = np.ones((1, *inputs[0].shape[1:3], 1), np.float32)
    counts = _pool_windows(graph, op, ones, 0.0).sum(axis=(3, 4))
    return [apply_activation((sums / counts).astype(np.float32), op.attrs.activation)]


@float_kernel(OpKind.MAX_POOL_2D)
def _max_pool_float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    out = _pool_windows(graph, op, inputs[0], -np.inf).max(axis=(3, 4))
    return [apply_activation(out.astype(np.float32), op.attrs.activation)]
