"""FULLY_CONNECTED reference kernels: int8 (per-tensor or per-channel, LiteRT to the bit), float32.

LiteRT's reference kernel requantises in double precision (`round(double(acc) * scale)`), not
with MultiplyByQuantizedMultiplier; FullyConnectedParams documents this and the kernel follows it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mcuflow.ir.constraints import UncheckedModelError
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import FullyConnectedAttrs, OpKind
from mcuflow.quant.fixedpoint import activation_range
from mcuflow.ref.common import (
    Accumulators,
    apply_activation,
    check_accumulator_bounds,
    exact_float_dtype,
    float_bias,
    quant_of,
    require_constant,
    require_int8,
)
from mcuflow.ref.int16x8 import prepare_weighted_s16
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel


@dataclass(frozen=True)
class FullyConnectedParams:
    """Constants of FULLY_CONNECTED.

    LiteRT's reference kernel (since April 2025) requantises in double precision:
    `out = round(double(acc) * scales[c])`, `scales[c] = double(in) * double(w[c]) / double(out)`,
    so `scales` holds those doubles, one per output channel (a per-tensor scale is repeated).
    """

    input_offset: int
    weights_offset: int
    output_offset: int
    scales: tuple[float, ...]
    act_min: int
    act_max: int


def prepare_fully_connected(
    x: Tensor, weights: Tensor, out: Tensor, attrs: FullyConnectedAttrs
) -> FullyConnectedParams:
    """fully_connected.cc Prepare plus the reference kernel's double-precision scales."""
    in_q, w_q, out_q = quant_of(x), quant_of(weights), quant_of(out)
    units = weights.shape[0]
    if w_q.is_per_channel and len(w_q.scale) != units:
        raise UncheckedModelError(
            f"tensor '{weights.name}' has {len(w_q.scale)} scales for {units} output units")
    weight_scales = w_q.scale if w_q.is_per_channel else w_q.scale[:1] * units
    clamp = activation_range(attrs.activation, out_q.scale0, out_q.zero_point0)
    return FullyConnectedParams(
        input_offset=-in_q.zero_point0,
        weights_offset=0 if w_q.is_per_channel else -w_q.zero_point0,
        output_offset=out_q.zero_point0,
        scales=tuple(in_q.scale0 * scale / out_q.scale0 for scale in weight_scales),
        act_min=clamp.min,
        act_max=clamp.max,
    )


def scale_and_round_thresholds(output_offset: int, act_min: int, act_max: int) -> np.ndarray:
    """Sorted doubles t with clamp(round(p) + output_offset) = act_min + #{t <= p} for every p.

    `round` is C's (halves away from zero): round(p) >= n exactly when p >= n - 0.5 for n > 0
    and p > n - 0.5 for n <= 0, so one searchsorted replaces scale_and_round_array's rounding,
    offset and clamp passes.
    """
    levels = np.arange(act_min + 1, act_max + 1, dtype=np.float64) - output_offset
    halves = levels - 0.5
    return np.where(levels > 0, halves, np.nextafter(halves, np.inf))


def accumulator_thresholds(thresholds: np.ndarray, scale: float, reach: int) -> np.ndarray:
    """For each double t, the smallest integer acc in [-reach, reach + 1] with acc * scale >= t.

    The double product is non-decreasing in acc (scale > 0), so for every |acc| <= reach,
    #{t <= double(acc) * scale} = #{a <= acc}: the scaling pass folds into the thresholds.
    """
    def reaches(acc: np.ndarray) -> np.ndarray:
        return np.multiply(acc, scale, dtype=np.float64) >= thresholds

    with np.errstate(over="ignore", invalid="ignore"):
        guess = np.nan_to_num(np.ceil(thresholds / scale), nan=0.0)
    acc = np.clip(guess, -reach, reach + 1).astype(np.int64)
    while (lower := (acc > -reach) & reaches(acc - 1)).any():
        acc -= lower
    while (higher := (acc <= reach) & ~reaches(acc)).any():
        acc += higher
    return acc


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
    if x.dtype is DType.INT16:
        return prepare_weighted_s16(graph, op)
    require_int8(op, x, weights, out)
    bias = require_constant(op, graph.tensor(op.inputs[2])) if len(op.inputs) > 2 else None
    params = prepare_fully_connected(x, weights, out, op.attrs)
    kernel = FullyConnectedKernel(x.shape, require_constant(op, weights), bias, op.attrs, params,
                                  op.name)
    return kernel.step


@float_kernel(OpKind.FULLY_CONNECTED)
def _fully_connected_float(graph: Graph, op: Operator, inputs: list[np.ndarray]
                           ) -> list[np.ndarray]:
    attrs: FullyConnectedAttrs = op.attrs
    weights = inputs[1].astype(np.float32)
    x = inputs[0].reshape(-1, weights.shape[1])
    out = (x @ weights.T + float_bias(inputs, weights.shape[0])).astype(np.float32)
    out = out.reshape(graph.tensor(op.outputs[0]).shape)
    return [apply_activation(out, attrs.activation)]
