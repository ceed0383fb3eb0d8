"""FULLY_CONNECTED reference kernel: int8, per-tensor or per-channel, LiteRT's reference to the bit.

LiteRT's reference kernel requantises in double precision (`round(double(acc) * scale)`), not
with MultiplyByQuantizedMultiplier; FullyConnectedParams documents this and the kernel follows it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import FullyConnectedAttrs, OpKind
from mcuflow.quant.fixedpoint import (
    FullyConnectedParams,
    accumulator_thresholds,
    prepare_fully_connected,
    scale_and_round_thresholds,
)
from mcuflow.ref.common import (
    Accumulators,
    check_accumulator_bounds,
    exact_float_dtype,
    require_constant,
    require_int8,
)
from mcuflow.ref.registry import PreparedFn, prepared_kernel


class FullyConnectedKernel:
    """FULLY_CONNECTED prepared for one input shape.

    The input rows get a constant 1 column and the weights a matching row of per-unit offsets
    (bias + input offset * weight sum), so one exact float matrix product yields the true int32
    accumulators. LiteRT's reference kernel scales them by doubles and rounds, adds the output
    offset and clamps: one search among the rounding thresholds here. With a single scale the
    thresholds move to the accumulator domain and the scaling pass disappears too.
    """

    def __init__(
        self, input_shape: tuple[int, ...], weights: np.ndarray, bias: np.ndarray | None,
        attrs: FullyConnectedAttrs, params: FullyConnectedParams, name: str = "",
    ) -> None:
        units, depth = weights.shape
        matrix = weights.astype(np.int64) + params.weights_offset
        facts = Accumulators.of(matrix, bias, params.input_offset)
        check_accumulator_bounds(name, facts.bounds, np.zeros_like(facts.bounds))
        limit = int((facts.reach + np.abs(facts.offsets)).max(initial=0))  # |accumulator|
        dtype = exact_float_dtype(limit)
        self._matrix = np.vstack([matrix.T, facts.offsets[None, :]]).astype(dtype)
        rows = math.prod(input_shape) // depth
        buffer = np.ones((rows, depth + 1), dtype)
        # A single row multiplies as a vector: BLAS gemv, about twice as fast as a 1-row gemm.
        self._lhs = buffer[0] if rows == 1 else buffer
        self._load = _loader(buffer[:, :-1], input_shape)
        out_shape = (*input_shape[:-1], units) if attrs.keep_num_dims else (rows, units)
        self._acc = np.empty(out_shape, dtype)
        self._product = self._acc.reshape(self._lhs.shape[:-1] + (units,))  # a view, for np.dot
        thresholds = scale_and_round_thresholds(
            params.output_offset, params.act_min, params.act_max)
        self._scales: np.ndarray | None = None
        if len(set(params.scales)) == 1:
            self._thresholds = accumulator_thresholds(
                thresholds, params.scales[0], limit).astype(dtype)
        else:
            self._scales = np.asarray(params.scales, dtype=np.float64)
            self._scaled = np.empty(out_shape, np.float64)
            self._thresholds = thresholds
        self._levels = np.arange(params.act_min, params.act_max + 1).astype(np.int8)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The int8 output of input `x` [..., K]."""
        return self.step([x])[0]

    def step(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The prepared per-inference function: [x] in, [output] out."""
        self._load(inputs[0])
        np.dot(self._lhs, self._matrix, self._product)
        acc = self._acc
        if self._scales is not None:
            acc = np.multiply(acc, self._scales, out=self._scaled)
        return [self._levels[self._thresholds.searchsorted(acc, side="right")]]


def _loader(rows: np.ndarray, input_shape: tuple[int, ...]) -> Callable[[np.ndarray], None]:
    """Copies an input of `input_shape` into the float `rows` [rows, K] (a view, where one fits)."""
    try:
        return functools.partial(np.copyto, np.reshape(rows, input_shape, copy=False))
    except ValueError:  # several rows that do not split along the input's last axis
        return lambda x: np.copyto(rows, x.reshape(rows.shape))


def fully_connected(
    x: np.ndarray, weights: np.ndarray, bias: np.ndarray | None, attrs: FullyConnectedAttrs,
    params: FullyConnectedParams,
) -> np.ndarray:
    """int8 FULLY_CONNECTED of x [..., K] with weights [O, K] and optional int32 bias [O]."""
    return FullyConnectedKernel(x.shape, weights, bias, attrs, params)(x)


@prepared_kernel(OpKind.FULLY_CONNECTED)
def prepare_fully_connected_op(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare a graph's FULLY_CONNECTED: constants from its tensors, then the run function."""
    x, weights, out = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]), graph.tensor(
        op.outputs[0])
    require_int8(op, x, weights, out)
    bias = require_constant(op, graph.tensor(op.inputs[2])) if len(op.inputs) > 2 else None
    params = prepare_fully_connected(x, weights, out, op.attrs)
    kernel = FullyConnectedKernel(x.shape, require_constant(op, weights), bias, op.attrs, params,
                                  op.name)
    return kernel.step
