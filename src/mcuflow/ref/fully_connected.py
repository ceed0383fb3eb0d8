"""FULLY_CONNECTED reference kernel: int8, per-tensor or per-channel, LiteRT's reference to the bit.

LiteRT's reference kernel requantises in double precision (`round(double(acc) * scale)`), not
with MultiplyByQuantizedMultiplier; FullyConnectedParams documents this and the kernel follows it.
"""

from __future__ import annotations

import math

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import FullyConnectedAttrs, OpKind
from mcuflow.quant.fixedpoint import (
    FullyConnectedParams,
    prepare_fully_connected,
    scale_and_round_array,
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
    accumulators, which are then requantised as LiteRT's reference kernel does.
    """

    def __init__(
        self, input_shape: tuple[int, ...], weights: np.ndarray, bias: np.ndarray | None,
        attrs: FullyConnectedAttrs, params: FullyConnectedParams, name: str = "",
    ) -> None:
        units, depth = weights.shape
        matrix = weights.astype(np.int64) + params.weights_offset
        facts = Accumulators.of(matrix, bias, params.input_offset)
        check_accumulator_bounds(name, facts.bounds, np.zeros_like(facts.bounds))
        dtype = exact_float_dtype(int((facts.reach + np.abs(facts.offsets)).max(initial=0)))
        self._matrix = np.vstack([matrix.T, facts.offsets[None, :]]).astype(dtype)
        rows = math.prod(input_shape) // depth
        self._rows = np.ones((rows, depth + 1), dtype)
        self._inputs = self._rows[:, :-1]
        # A single row multiplies as a vector: BLAS gemv, about twice as fast as a 1-row gemm.
        self._lhs = self._rows[0] if rows == 1 else self._rows
        self._scales = np.asarray(params.scales, dtype=np.float64)
        self._output_offset = params.output_offset
        self._clamp = (params.act_min, params.act_max)
        keep = attrs.keep_num_dims
        self._out_shape = (*input_shape[:-1], units) if keep else (rows, units)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The int8 output of input `x` [..., K]."""
        np.copyto(self._inputs, x.reshape(self._inputs.shape))
        out = scale_and_round_array(self._lhs @ self._matrix, self._scales)
        out += self._output_offset
        np.maximum(out, self._clamp[0], out=out)
        np.minimum(out, self._clamp[1], out=out)
        return out.astype(np.int8).reshape(self._out_shape)


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
    kernel = FullyConnectedKernel(x.shape, require_constant(op, weights), bias, op.attrs,
                                  prepare_fully_connected(x, weights, out, op.attrs), op.name)
    return lambda inputs: [kernel(inputs[0])]
