"""AVERAGE_POOL_2D and MAX_POOL_2D reference kernels: int8, LiteRT's integer pools to the bit."""

from __future__ import annotations

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind, Pool2DAttrs
from mcuflow.ir.shapes import conv_output_size
from mcuflow.quant.fixedpoint import PoolParams, prepare_pool
from mcuflow.ref.common import Geometry, WindowedInput, require_int8
from mcuflow.ref.registry import PreparedFn, prepared_kernel


def _windowed_input(input_shape: tuple[int, ...], attrs: Pool2DAttrs, params: PoolParams,
                    fill: int) -> WindowedInput:
    """The pool's int8 input buffer, padded taps holding `fill`."""
    in_hw, kernel = (input_shape[1], input_shape[2]), (attrs.filter_h, attrs.filter_w)
    strides = (attrs.stride_h, attrs.stride_w)
    out_hw = (conv_output_size(in_hw[0], kernel[0], strides[0], 1, attrs.padding),
              conv_output_size(in_hw[1], kernel[1], strides[1], 1, attrs.padding))
    geometry = Geometry(in_hw, out_hw, kernel, strides, (1, 1), (params.pad_h, params.pad_w))
    return WindowedInput(input_shape, geometry, fill, np.dtype(np.int8))


class AveragePool2DKernel:
    """AVERAGE_POOL_2D: the sum over the valid taps divided by their count.

    The division rounds half away from zero with C integer division, as LiteRT does; the result
    is clamped to the activation range.
    """

    def __init__(self, input_shape: tuple[int, ...], attrs: Pool2DAttrs,
                 params: PoolParams) -> None:
        self._input = _windowed_input(input_shape, attrs, params, 0)
        self._clamp = (params.act_min, params.act_max)
        self._count = self._window_sum(np.ones(input_shape, np.int8))
        self._half = self._count // 2

    def _window_sum(self, x: np.ndarray) -> np.ndarray:
        return self._input.load(x).sum(axis=(3, 4), dtype=np.int32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The int8 output of input `x`."""
        acc = self._window_sum(x)
        up = (acc + self._half) // self._count
        down = -((self._half - acc) // self._count)
        return np.clip(np.where(acc > 0, up, down), *self._clamp).astype(np.int8)


class MaxPool2DKernel:
    """MAX_POOL_2D: the window maximum over valid taps, clamped to the activation range."""

    def __init__(self, input_shape: tuple[int, ...], attrs: Pool2DAttrs,
                 params: PoolParams) -> None:
        self._input = _windowed_input(input_shape, attrs, params, -128)
        self._clamp = (params.act_min, params.act_max)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The int8 output of input `x`."""
        return np.clip(self._input.load(x).max(axis=(3, 4)), *self._clamp).astype(np.int8)


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
    require_int8(op, x, out)
    kind = AveragePool2DKernel if op.kind is OpKind.AVERAGE_POOL_2D else MaxPool2DKernel
    kernel = kind(x.shape, op.attrs, prepare_pool(x, out, op.attrs))
    return lambda inputs: [kernel(inputs[0])]
