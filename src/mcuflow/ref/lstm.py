"""UNIDIRECTIONAL_SEQUENCE_LSTM reference kernel: LiteRT's fully-integer "8x8_16" LSTM to the bit.

Prepare follows unidirectional_sequence_lstm.cc PopulateQuantizedLstmParams8x8_16 (effective
scales in float32, gates in Q3.12 without layer norm) and PopulatePrecomputedZPTimesWeightsWith
Bias; a run follows lstm_eval.cc EvalInteger8x8_16 step by step: per gate two int8 matrix
products each requantised to int16 and accumulated with saturation (MatrixBatchVectorMultiply
Accumulate), gemmlowp sigmoid / tanh on int16, the cell update by CwiseMul / CwiseAdd /
CwiseClipping, the output o * tanh(c) requantised to int8. The output and cell states are the
op's variable input tensors (ir.ops.LSTM_OUTPUT_STATE, LSTM_CELL_STATE), updated in place: they
persist across invocations, as SVDF's state does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import (
    LSTM_CELL_STATE,
    LSTM_GATES,
    LSTM_OUTPUT_STATE,
    LstmAttrs,
    OpKind,
    lstm_dims,
)
from mcuflow.ir.quantization import INT16_MAX, INT16_MIN
from mcuflow.quant.fixedpoint import (
    QuantizedMultiplier,
    logistic_int16,
    multiply_by_quantized_multiplier_array,
    quantize_multiplier,
    rounding_divide_by_pot_array,
    tanh_int16,
    wrap_int16_array,
)
from mcuflow.ref.common import quant_of, require_int8
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel

GATE_SCALE = 2.0**-12
"""The gates' matrix products are requantised to Q3.12 (no layer norm)."""
SIGMOID_BITS = 3
"""ApplySigmoid reads its int16 input as Q3.12."""


@dataclass(frozen=True)
class LstmParams:
    """Constants of an integer LSTM, gates in the order input, forget, cell, output.

    `input_bias` [4, units] is each gate's bias minus the input zero point times the row sums of
    its input weights, `recurrent_bias` minus the output-state zero point times those of its
    recurrent weights; the multipliers requantise the two products to Q3.12 (the recurrent one
    with the output state's scale, as LiteRT: a converter may quantise the output state, the
    hidden intermediate and the output three ways, and the raw hidden values are written to all
    of them). `cell_exponent` is
    log2 of the cell state's scale; `hidden` requantises o * tanh(c) (Q0.15 x Q0.15) to int8 and
    `hidden_zero_point` is added after it; `cell_clip` is 0 when absent (proj_clip is refused).
    `output_zero_point` is the output state's (LiteRT starts it there: ResetVariableTensor).
    """

    batch: int
    time: int
    features: int
    units: int
    time_major: bool
    input_bias: np.ndarray
    recurrent_bias: np.ndarray
    input_multipliers: tuple[QuantizedMultiplier, ...]
    recurrent_multipliers: tuple[QuantizedMultiplier, ...]
    cell_exponent: int
    hidden: QuantizedMultiplier
    hidden_zero_point: int
    cell_clip: int
    output_zero_point: int


def _effective(weight_scale: float, scale: float) -> QuantizedMultiplier:
    """weight scale x input scale / 2**-12, computed in float32 as LiteRT does."""
    return quantize_multiplier(float(np.float32(weight_scale) * np.float32(scale)
                                     / np.float32(GATE_SCALE)))


def _clip(clip: float, scale: float, bound: int) -> int:
    """static_cast<intN>(min(max(clip / scale, -bound - 1), bound)) in float32, or 0."""
    if clip <= 0.0:
        return 0
    return int(np.clip(np.float32(clip) / np.float32(scale), -bound - 1, bound))


def prepare_lstm(graph: Graph, op: Operator) -> LstmParams:
    """PopulateQuantizedLstmParams8x8_16 and the zero-point-folded biases."""
    attrs: LstmAttrs = op.attrs
    batch, time, features, units = lstm_dims(graph, op)
    x_q = quant_of(graph.tensor(op.inputs[0]))
    state_q = quant_of(graph.tensor(op.inputs[LSTM_OUTPUT_STATE]))
    cell_scale = quant_of(graph.tensor(op.inputs[LSTM_CELL_STATE])).scale0
    tensors = [graph.tensor(name) for name in op.inputs[1:LSTM_OUTPUT_STATE]]
    weights = [t.data.astype(np.int64) for t in tensors[:2 * LSTM_GATES]]
    biases = np.stack([t.data.astype(np.int64) for t in tensors[2 * LSTM_GATES:]])
    rows = np.stack([w.sum(axis=1) for w in weights])
    scales = [quant_of(t).scale0 for t in tensors[:2 * LSTM_GATES]]
    hidden_scale = float(np.float32(2.0**-15 / attrs.hidden.scale0 * 2.0**-15))
    return LstmParams(
        batch, time, features, units, attrs.time_major,
        input_bias=biases - x_q.zero_point0 * rows[:LSTM_GATES],
        recurrent_bias=-state_q.zero_point0 * rows[LSTM_GATES:],
        input_multipliers=tuple(_effective(s, x_q.scale0) for s in scales[:LSTM_GATES]),
        recurrent_multipliers=tuple(_effective(s, state_q.scale0) for s in scales[LSTM_GATES:]),
        cell_exponent=round(float(np.log2(cell_scale))),
        hidden=quantize_multiplier(hidden_scale),
        hidden_zero_point=attrs.hidden.zero_point0,
        cell_clip=_clip(attrs.cell_clip, cell_scale, INT16_MAX),
        output_zero_point=state_q.zero_point0,
    )


def _accumulate(gate: np.ndarray, x: np.ndarray, weights: np.ndarray, bias: np.ndarray,
                multiplier: QuantizedMultiplier) -> np.ndarray:
    """MatrixBatchVectorMultiplyAccumulate: gate + requantised (bias + x @ w.T), int16 saturated."""
    acc = multiply_by_quantized_multiplier_array(
        bias + x @ weights.T, multiplier.multiplier, multiplier.shift)
    return np.clip(acc + gate, INT16_MIN, INT16_MAX)


def _cwise_mul(a: np.ndarray, b: np.ndarray, shift: int) -> np.ndarray:
    """tensor_utils CwiseMul to int16: RoundingDivideByPOT(a * b, shift), cast to int16."""
    return wrap_int16_array(rounding_divide_by_pot_array(a * b, shift))


def lstm_step(p: LstmParams, x: np.ndarray, weights: list[np.ndarray], output_state: np.ndarray,
              cell_state: np.ndarray) -> np.ndarray:
    """One time step (LstmStepInteger8x8_16) for x [batch, features]; the new output state.

    `output_state` (int8) and `cell_state` (int16), [batch, units], are updated in place.
    """
    output, cell = output_state.astype(np.int64), cell_state.astype(np.int64)
    gates = []
    for g in range(LSTM_GATES):
        gate = _accumulate(np.zeros_like(cell), x, weights[g], p.input_bias[g],
                           p.input_multipliers[g])
        gate = _accumulate(gate, output, weights[LSTM_GATES + g], p.recurrent_bias[g],
                           p.recurrent_multipliers[g])
        gates.append(tanh_int16(gate, SIGMOID_BITS) if g == 2
                     else logistic_int16(gate, SIGMOID_BITS))
    input_gate, forget_gate, cell_gate, output_gate = gates
    kept = _cwise_mul(forget_gate, cell, 15)
    added = _cwise_mul(input_gate, cell_gate, 30 + p.cell_exponent)
    cell = np.clip(kept + added, INT16_MIN, INT16_MAX)
    if p.cell_clip > 0:
        cell = np.clip(cell, -p.cell_clip, p.cell_clip)
    hidden = multiply_by_quantized_multiplier_array(
        output_gate * tanh_int16(cell, 15 + p.cell_exponent), p.hidden.multiplier,
        p.hidden.shift)
    cell_state[...] = cell
    output_state[...] = np.clip(hidden + p.hidden_zero_point, -128, 127)
    return output_state.copy()


def lstm_int8(p: LstmParams, x: np.ndarray, weights: list[np.ndarray],
              output_state: np.ndarray, cell_state: np.ndarray) -> np.ndarray:
    """The whole sequence; the output [batch, time, units] (time-major: [time, batch, ...]).

    The states are updated in place, step by step.
    """
    sequence = x.astype(np.int64)
    if not p.time_major:
        sequence = sequence.transpose(1, 0, 2)
    steps = np.stack([lstm_step(p, frame, weights, output_state, cell_state)
                      for frame in sequence])
    return np.ascontiguousarray(steps if p.time_major else steps.transpose(1, 0, 2))


@prepared_kernel(OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM)
def prepare_lstm_kernel(graph: Graph, op: Operator) -> PreparedFn:
    """Prepare an integer LSTM; the run function updates its two state inputs in place."""
    require_int8(op, graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0]))
    params = prepare_lstm(graph, op)
    weights = [graph.tensor(name).data.astype(np.int64)
               for name in op.inputs[1:1 + 2 * LSTM_GATES]]
    return lambda inputs: [lstm_int8(params, inputs[0], weights, inputs[LSTM_OUTPUT_STATE],
                                     inputs[LSTM_CELL_STATE])]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


@float_kernel(OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM)
def _lstm_float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The float LSTM (TANH, no CIFG, peephole or projection); its states updated in place."""
    attrs: LstmAttrs = op.attrs
    x, weights = inputs[0], inputs[1:1 + 2 * LSTM_GATES]
    biases = inputs[1 + 2 * LSTM_GATES:LSTM_OUTPUT_STATE]
    sequence = x if attrs.time_major else x.transpose(1, 0, 2)
    h, c = inputs[LSTM_OUTPUT_STATE], inputs[LSTM_CELL_STATE]
    steps = []
    for frame in sequence:
        pre = [frame @ weights[g].T + h @ weights[LSTM_GATES + g].T + biases[g]
               for g in range(LSTM_GATES)]
        c = _sigmoid(pre[1]) * c + _sigmoid(pre[0]) * np.tanh(pre[2])
        if attrs.cell_clip > 0:
            c = np.clip(c, -attrs.cell_clip, attrs.cell_clip)
        h = (_sigmoid(pre[3]) * np.tanh(c)).astype(np.float32)
        steps.append(h)
    inputs[LSTM_OUTPUT_STATE][...], inputs[LSTM_CELL_STATE][...] = h, c
    out = np.stack(steps)
    return [np.ascontiguousarray(out if attrs.time_major else out.transpose(1, 0, 2))]
