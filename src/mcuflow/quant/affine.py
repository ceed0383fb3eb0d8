"""TFLite's int8 scheme: per-channel symmetric weights, asymmetric activations, int32 bias.

`quantize_graph` turns a float graph and calibrated ranges into the int8 graph that LiteRT
runs; `ParamRules` says how a scheme picks scales and zero points, so Q-format (power-of-two
scales) and later schemes reuse the same graph rewrite. The model's inputs and outputs become
int8 too: feed `round(x / scale) + zero_point` with the graph input's parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from mcuflow.errors import McuflowError, ModelFormatError, UnsupportedModelError
from mcuflow.ir.constraints import FIXED_OUTPUT, SHARED_QUANT, WEIGHT_AXIS, check_supported
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import (
    INDEX_TYPES,
    LSTM_CELL_STATE,
    LSTM_GATES,
    LSTM_OUTPUT_STATE,
    S16_UNIT_OUTPUT,
    NoAttrs,
    OpAttrs,
    OpKind,
    lstm_dims,
)
from mcuflow.ir.quantization import INT16_MAX, INT32_MAX, MAX_SCALE, MIN_SCALE, QuantParams
from mcuflow.ir.verify import verify_graph
from mcuflow.passes.common import unique_name
from mcuflow.quant.calibrate import Range
from mcuflow.quant.fixedpoint import round_half_away_array, tflite_round

QMIN, QMAX = -128, 127
WEIGHT_MAX = 127
"""Symmetric weights use [-127, 127], as TFLite's quantiser does."""
BIAS_HEADROOM = 0.5
"""A bias may use at most this fraction of the int32 range before its weights' scale grows."""
SAME_SCALE_RTOL = 1e-6
"""Scales this close are the same scale written by two tools that round differently."""
KEPT_CODE_TOLERANCE = 1e-3
"""A weight the model dequantised lies this close to an integer multiple of its scale."""



@dataclass(frozen=True)
class ParamRules:
    """How a scheme picks parameters: activations from a range, weight scales from |w|max."""

    name: str
    activation: Callable[[Range], QuantParams]
    weight_scales: Callable[[np.ndarray], np.ndarray]
    activation_dtype: DType = DType.INT8
    """int8, or int16 for LiteRT's int16x8 scheme (int8 weights, int64 biases)."""


def affine_activation(value_range: Range) -> QuantParams:
    """TFLite GetAsymmetricQuantizationParams for int8, in float32 as TFLite computes it.

    scale = (max - min) / 255 with the range widened to contain 0; the zero point is
    qmin - min / scale, clamped to [-128, 127] and rounded half away from zero.
    """
    low = np.float32(min(value_range.low, 0.0))
    high = np.float32(max(value_range.high, 0.0))
    with np.errstate(over="ignore"):  # an infinite scale is rejected by _check_scales
        scale = (high - low) / np.float32(QMAX - QMIN)
    if scale == 0.0:
        return QuantParams.per_tensor(1.0, 0)
    from_min = np.float32(QMIN) - low / scale
    zero_point = QMIN if from_min < QMIN else QMAX if from_min > QMAX else tflite_round(
        float(from_min))
    return QuantParams.per_tensor(float(scale), zero_point)


def symmetric_scales(max_abs: np.ndarray) -> np.ndarray:
    """TFLite's symmetric weight scales max|w| / 127 (1.0 for an all-zero channel)."""
    scales = np.asarray(max_abs, np.float32) / np.float32(WEIGHT_MAX)
    return np.where(scales > 0.0, scales, np.float32(1.0)).astype(np.float32)


AFFINE = ParamRules("affine", affine_activation, symmetric_scales)


def quantize_affine(graph: Graph, ranges: Mapping[str, Range], per_channel: bool = True) -> Graph:
    """The TFLite int8 graph of a float graph (`ranges` from calibration)."""
    return quantize_graph(graph, ranges, AFFINE, per_channel)


def quantize_graph(graph: Graph, ranges: Mapping[str, Range], rules: ParamRules,
                   per_channel: bool = True) -> Graph:
    """Quantise every tensor of float `graph` to int8 (bias int32) following `rules`.

    Activations take parameters from their calibrated range, except that tensors tied by
    SHARED_QUANT ops share one (their ranges joined) and FIXED_OUTPUT ops impose theirs.
    Weights are symmetric, per output channel when `per_channel`; biases are int32 with scale
    input_scale * weight_scale. An LSTM's variable states become int8 (the output state, as the
    output) and int16 (the cell state). The result is verified and checked against the int8
    constraints.
    """
    activations = _activation_params(graph, ranges, rules)
    result = Graph(graph.name, inputs=list(graph.inputs), outputs=list(graph.outputs))
    for name in graph.activations():
        tensor = graph.tensors[name]
        if tensor.dtype in INDEX_TYPES:  # ARG_MAX / ARG_MIN indices stay integers
            result.add_tensor(Tensor(name, tensor.shape, tensor.dtype))
            continue
        result.add_tensor(Tensor(name, tensor.shape, rules.activation_dtype, activations[name]))
    for op in graph.operators:
        for state in _lstm_states(graph, op, activations):
            result.add_tensor(state)
        inputs: list[str] = []
        for _ in op.inputs:
            inputs.append(_input(graph, result, op, inputs, activations, rules, per_channel))
        result.operators += _requantized(result, Operator(op.kind, tuple(inputs), op.outputs,
                                                          _attrs(op, activations), op.name))
    _check_scales(result)
    verify_graph(result)
    check_supported(result)
    return result


EVERY_INPUT_SHARED = frozenset({OpKind.CONCATENATION, OpKind.PACK})
"""SHARED_QUANT kinds whose every input (not only the first) shares the output's parameters;
every output of a multi-output kind (SPLIT) shares them too."""


def _requantized(graph: Graph, op: Operator) -> list[Operator]:
    """`op`, with QUANTIZE ops where the model's parameters break an int8 kernel's rule.

    An input of a SHARED_QUANT op quantised otherwise than the output is requantised first; an
    op whose output parameters are fixed writes them and is requantised to the model's. Graphs
    quantised from calibrated ranges never need either.
    """
    before: list[Operator] = []
    if op.kind in SHARED_QUANT:
        wanted = graph.tensors[op.outputs[0]].quant
        shared = len(op.inputs) if op.kind in EVERY_INPUT_SHARED else 1
        inputs = list(op.inputs)
        for index, name in enumerate(inputs[:shared]):
            if graph.tensors[name].quant != wanted and not graph.tensors[name].is_constant:
                inputs[index] = _requantize(graph, name, f"{name}/requantized", wanted, before)
        op.inputs = tuple(inputs)
    output = op.outputs[0]
    fixed = fixed_output(op.kind, graph.tensors[output].dtype)
    if fixed is None or graph.tensors[output].quant == fixed:
        return [*before, op]
    after: list[Operator] = []
    written = _requantize(graph, output, f"{output}/fixed", fixed, [])
    op.outputs = (written,)
    after.append(Operator(OpKind.QUANTIZE, (written,), (output,), NoAttrs(), output))
    return [*before, op, *after]


def _requantize(graph: Graph, source: str, base: str, quant: QuantParams,
                ops: list[Operator]) -> str:
    """A new tensor like `source` with parameters `quant`, appending its QUANTIZE to `ops`."""
    name = unique_name(graph, base)
    tensor = graph.tensors[source]
    graph.add_tensor(Tensor(name, tensor.shape, tensor.dtype, quant))
    ops.append(Operator(OpKind.QUANTIZE, (source,), (name,), NoAttrs(), name))
    return name


def _check_scales(graph: Graph) -> None:
    """Every scale lies in [MIN_SCALE, MAX_SCALE], as the TFLite reader requires of a file."""
    for name, tensor in graph.tensors.items():
        if tensor.quant is None or tensor.dtype in (DType.INT32, DType.INT64):
            continue
        scales = np.asarray(tensor.quant.scale)
        bad = scales[(scales < MIN_SCALE) | (scales > MAX_SCALE)]
        if bad.size:
            raise UnsupportedModelError(
                f"tensor '{name}' would need quantisation scale {float(bad[0]):.6g}; scales "
                f"must lie between {MIN_SCALE:.3g} and {MAX_SCALE:.3g}",
                "the float model's values or weights span a range int8 cannot represent")


def _activation_params(graph: Graph, ranges: Mapping[str, Range],
                       rules: ParamRules) -> dict[str, QuantParams]:
    """Parameters of every activation tensor, shared across SHARED_QUANT groups.

    A tensor the model itself quantised (a float tensor carrying `quant`, see
    frontends.onnx_qdq) keeps its parameters; the rest of its group takes them. An input the
    model quantised otherwise than a SHARED_QUANT op's output takes the output's when that op
    is its only reader and nothing the model clamps is lost (a concatenated branch, as TFLite's
    converter shares them); otherwise the two stay apart and quantize_graph requantises.
    """
    kept = _kept_activations(graph)
    groups = _Groups(_quantised_activations(graph))
    fixed: dict[str, QuantParams] = {}
    yielding: set[str] = set()
    for op in graph.operators:
        if op.kind in SHARED_QUANT:
            for extra in op.outputs[1:]:
                groups.union(extra, op.outputs[0])
            for name in op.inputs[: None if op.kind in EVERY_INPUT_SHARED else 1]:
                if graph.tensors[name].is_constant:
                    continue
                if _differ(kept, name, op.outputs[0]):
                    if not (_read_only_by(graph, name, op)
                            and _within(kept[op.outputs[0]], kept[name])):
                        continue
                    yielding.add(name)
                groups.union(name, op.outputs[0])
        if op.kind in FIXED_OUTPUT:
            fixed[op.outputs[0]] = fixed_output(op.kind, rules.activation_dtype)
    _check_ranges(graph, ranges, kept, groups)
    params: dict[str, QuantParams] = {}
    for members in groups.members().values():
        imposed = {fixed[name] for name in members if name in fixed}
        if len(imposed) > 1:
            raise UnsupportedModelError(
                f"tensors {sorted(members)} must share quantisation but two ops fix different "
                "output parameters for them", "insert an op between them in the float model")
        own = {name: kept[name] for name in members if name in kept and name not in yielding}
        model = list(own.values())
        if model:
            chosen = _near(model[0], imposed)
        elif imposed:
            chosen = imposed.pop()
        else:
            chosen = rules.activation(Range(min(ranges[n].low for n in members),
                                            max(ranges[n].high for n in members)))
        params.update({name: _near(own[name], imposed) if name in own else chosen
                       for name in members})
    return params


def _within(inner: QuantParams, outer: QuantParams) -> bool:
    """True when `inner` represents no real value `outer` clamps away (to half an LSB).

    A tensor may take other parameters only then: the model's own ones may be what clamps it
    (a ReLU folded into its QuantizeLinear's range).
    """
    margin = inner.scale0 / 2
    return (_real(inner, QMIN) >= _real(outer, QMIN) - margin
            and _real(inner, QMAX) <= _real(outer, QMAX) + margin)


def _real(quant: QuantParams, code: int) -> float:
    return quant.scale0 * (code - quant.zero_point0)


def _read_only_by(graph: Graph, name: str, reader: Operator) -> bool:
    """True when `reader` is the only op reading `name`, which is computed, not an output."""
    if name in graph.outputs or graph.producer(name) is None:
        return False
    return all(op is reader for op in graph.operators if name in op.inputs)


def _quantised_activations(graph: Graph) -> list[str]:
    """The activations that become int8: all but ARG_MAX's integer indices."""
    return [name for name in graph.activations() if graph.tensors[name].dtype not in INDEX_TYPES]


def _kept_activations(graph: Graph) -> dict[str, QuantParams]:
    """The activations' parameters the model file gave them."""
    return {name: graph.tensors[name].quant for name in graph.activations()
            if graph.tensors[name].quant is not None}


def _differ(kept: Mapping[str, QuantParams], a: str, b: str) -> bool:
    return a in kept and b in kept and kept[a] != kept[b]


def _near(quant: QuantParams, imposed: set[QuantParams]) -> QuantParams:
    """An op's imposed output parameters when the model's are the same up to float rounding."""
    for required in imposed:
        if required.zero_point == quant.zero_point and np.allclose(
                required.scale, quant.scale, rtol=SAME_SCALE_RTOL, atol=0.0):
            return required
    return quant


def _check_ranges(graph: Graph, ranges: Mapping[str, Range], kept: Mapping[str, QuantParams],
                  groups: _Groups) -> None:
    """Every group needs a calibrated range or the model's own parameters for some member."""
    decided = {groups.find(name) for name in kept}
    missing = [name for name in _quantised_activations(graph)
               if name not in ranges and groups.find(name) not in decided]
    if not missing:
        return
    if kept:
        writer = graph.producer(missing[0])
        op = "a graph input" if writer is None else (
            f"{graph.operators[writer].kind.value} '{graph.operators[writer].name}'")
        raise McuflowError(f"tensor '{missing[0]}' (written by {op}) has no quantisation "
                           f"parameters in the model ({len(missing)} such tensor(s))",
                           "quantise every activation in the model (Q -> DQ pairs, as ONNX "
                           "Runtime's quantize_static does), or pass --calibration DATA to "
                           "calibrate the ones it leaves in float")
    raise McuflowError(f"no calibration range for tensors {missing[:5]}",
                       "calibrate on the same float graph that is being quantised")


def fixed_output(kind: OpKind, dtype: DType) -> QuantParams | None:
    """The output parameters the kernel of `kind` imposes on its int8 or int16 output."""
    fixed = FIXED_OUTPUT.get(kind)
    return S16_UNIT_OUTPUT if fixed is not None and dtype is DType.INT16 else fixed


class _Groups:
    """Union-find over tensor names."""

    def __init__(self, names: list[str]) -> None:
        self._parent = {name: name for name in names}

    def find(self, name: str) -> str:
        while self._parent[name] != name:
            self._parent[name] = self._parent[self._parent[name]]
            name = self._parent[name]
        return name

    def union(self, a: str, b: str) -> None:
        self._parent[self.find(a)] = self.find(b)

    def members(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for name in self._parent:
            groups.setdefault(self.find(name), []).append(name)
        return groups


def _input(source: Graph, result: Graph, op: Operator, done: list[str],
           activations: Mapping[str, QuantParams], rules: ParamRules, per_channel: bool) -> str:
    """The name in `result` of the op's next input (the one after `done`).

    Activations keep theirs; constants are quantised for their role: weights, bias, or an
    operand quantised like an activation.
    """
    index = len(done)
    name = op.inputs[index]
    tensor = source.tensors[name]
    if not tensor.is_constant:
        return name
    if tensor.dtype is not DType.FLOAT32:
        raise UnsupportedModelError(f"constant '{name}' of {op.kind.value} '{op.name}' is "
                                    f"{tensor.dtype.value}, not float32",
                                    "quantise a float model (hybrid weights are dequantised by "
                                    "the passes pipeline)")
    if not np.isfinite(tensor.data).all():
        raise ModelFormatError(f"constant '{name}' of {op.kind.value} '{op.name}' holds NaN or "
                               "infinite values", "check the float model's weights")
    if op.kind is OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM:
        data, quant = _lstm_constant(source, result, op, done, activations, rules)
    elif op.kind in WEIGHT_AXIS and index == 1:
        data, quant = kept_weights(tensor) or quantize_weights(
            tensor.data, WEIGHT_AXIS[op.kind], per_channel, rules,
            _bias_floor(source, op, activations))
    elif op.kind in WEIGHT_AXIS and index == 2:
        data, quant = quantize_bias(tensor.data, activations[op.inputs[0]],
                                    result.tensors[done[1]].quant)
        if rules.activation_dtype is DType.INT16:
            data = quantize_bias64(tensor.data, quant)
    else:
        quant = activations.get(op.outputs[0]) if op.kind in SHARED_QUANT else None
        quant = quant or rules.activation(Range.including_zero(tensor.data.min(),
                                                               tensor.data.max()))
        data = quantize_values(tensor.data, quant, rules.activation_dtype)
    if op.kind in WEIGHT_AXIS and index == 1:
        shared = _same_weights(result, name, data, quant)
        if shared is not None:
            return shared
    return _add_constant(result, name, data, quant)


def _same_weights(graph: Graph, name: str, data: np.ndarray, quant: QuantParams) -> str | None:
    """The weights already quantised from constant `name` to exactly `data` and `quant`, if any.

    A layer applied at every step of an unrolled recurrence (an ONNX GRU) then stores one copy.
    """
    candidate, n = name, 0
    while candidate in graph.tensors:
        tensor = graph.tensors[candidate]
        if tensor.quant == quant and tensor.data is not None and tensor.data.dtype == data.dtype \
                and np.array_equal(tensor.data, data):
            return candidate
        n += 1
        candidate = f"{name}_{n}"
    return None


def _lstm_constant(source: Graph, result: Graph, op: Operator, done: list[str],
                   activations: Mapping[str, QuantParams], rules: ParamRules
                   ) -> tuple[np.ndarray, QuantParams]:
    """An LSTM constant as the converter's fully-integer LSTM stores it.

    Weights per-tensor symmetric int8, biases int32 at input scale x the gate's input-weight
    scale.
    """
    index = len(done)
    data = source.tensors[op.inputs[index]].data
    if index <= 2 * LSTM_GATES:
        return quantize_weights(data, 0, False, rules)
    weights = result.tensors[done[index - 2 * LSTM_GATES]].quant
    assert weights is not None
    return quantize_bias(data, activations[op.inputs[0]], weights)


CELL_EXPONENTS = (-15, -9)
"""The power-of-two cell-state scales LiteRT's integer LSTM takes (log2)."""


def lstm_cell_state(graph: Graph, op: Operator) -> QuantParams:
    """The int16 cell state's scale: the finest power of two that holds every cell value.

    A cell value grows by at most 1 a step (c = f c + i g, |f|, |i|, |g| <= 1), so the sequence
    length (or the cell clip) bounds it without calibration.
    """
    bound = float(lstm_dims(graph, op)[1])
    if op.attrs.cell_clip > 0:
        bound = min(bound, op.attrs.cell_clip)
    exponent = next((k for k in range(CELL_EXPONENTS[0], CELL_EXPONENTS[1])
                     if INT16_MAX * 2.0**k >= bound), CELL_EXPONENTS[1])
    return QuantParams.per_tensor(2.0**exponent, 0)


def _lstm_states(graph: Graph, op: Operator, activations: Mapping[str, QuantParams]
                 ) -> list[Tensor]:
    """An LSTM's variable tensors in the int8 graph (none for another op).

    The output state int8, quantised as the output; the cell state int16 at `lstm_cell_state`.
    """
    if op.kind is not OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM:
        return []
    output, cell = (graph.tensors[op.inputs[i]] for i in (LSTM_OUTPUT_STATE, LSTM_CELL_STATE))
    return [Tensor(output.name, output.shape, DType.INT8, activations[op.outputs[0]],
                   variable=True),
            Tensor(cell.name, cell.shape, DType.INT16, lstm_cell_state(graph, op),
                   variable=True)]


def _attrs(op: Operator, activations: Mapping[str, QuantParams]) -> OpAttrs:
    """The op's attributes in the int8 graph: an LSTM's hidden quantisation."""
    if op.kind is not OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM:
        return op.attrs
    return replace(op.attrs, hidden=activations[op.outputs[0]])


def _bias_floor(graph: Graph, op: Operator, activations: Mapping[str, QuantParams]
                ) -> np.ndarray | None:
    """Per channel, the least weight scale that keeps the int32 bias in range.

    That is |bias| / (input scale * BIAS_HEADROOM * INT32_MAX), as TFLite's
    AdjustWeightsForBiasScale does.
    """
    if len(op.inputs) < 3:
        return None
    bias = np.abs(graph.tensors[op.inputs[2]].data.astype(np.float64))
    return bias / (activations[op.inputs[0]].scale0 * BIAS_HEADROOM * INT32_MAX)


def kept_weights(tensor: Tensor) -> tuple[np.ndarray, QuantParams] | None:
    """The int8 codes of float weights the model dequantised with `tensor.quant`.

    None unless every weight is an integer multiple of its scale in [-128, 127] with zero point
    0 (TFLite's int8 weights are symmetric): then the quantiser chooses its own scales.
    """
    quant = tensor.quant
    if quant is None or any(quant.zero_point):
        return None
    shape = [1] * tensor.data.ndim
    if quant.is_per_channel:
        shape[quant.axis] = -1
    ratios = tensor.data.astype(np.float64) / np.asarray(quant.scale, np.float64).reshape(shape)
    codes = np.round(ratios)
    if ((np.abs(ratios - codes) > KEPT_CODE_TOLERANCE).any() or codes.min() < QMIN
            or codes.max() > QMAX):
        return None
    return codes.astype(np.int8), quant


def quantize_weights(weights: np.ndarray, axis: int, per_channel: bool, rules: ParamRules,
                     scale_floor: np.ndarray | None = None) -> tuple[np.ndarray, QuantParams]:
    """Symmetric int8 weights in [-127, 127]: one scale per slice along `axis`, or one in all."""
    moved = np.moveaxis(weights.astype(np.float64), axis, 0).reshape(weights.shape[axis], -1)
    max_abs = np.abs(moved).max(axis=1)
    if scale_floor is not None:
        max_abs = np.maximum(max_abs, scale_floor * WEIGHT_MAX)
    scales = rules.weight_scales(max_abs if per_channel else max_abs.max(keepdims=True))
    shape = [1] * weights.ndim
    shape[axis] = -1
    broadcast = scales.reshape(shape) if per_channel else scales[0]
    codes = round_half_away_array(weights / broadcast)
    codes = np.clip(codes, -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8)
    if per_channel:
        return codes, QuantParams.per_channel(scales, np.zeros(len(scales), np.int64), axis)
    return codes, QuantParams.per_tensor(float(scales[0]), 0)


def quantize_bias(bias: np.ndarray, input_quant: QuantParams, weight_quant: QuantParams
                  ) -> tuple[np.ndarray, QuantParams]:
    """int32 bias with per-channel scale input_scale * weight_scale[c] (float32 products)."""
    channels = bias.shape[0]
    weight_scales = np.broadcast_to(np.asarray(weight_quant.scale, np.float32), (channels,))
    scales = np.float32(input_quant.scale0) * weight_scales
    codes = np.clip(round_half_away_array(bias.astype(np.float64) / scales.astype(np.float64)),
                    -INT32_MAX - 1, INT32_MAX).astype(np.int32)
    return codes, QuantParams.per_channel(scales, np.zeros(channels, np.int64), 0)


def quantize_bias64(bias: np.ndarray, quant: QuantParams) -> np.ndarray:
    """int64 bias codes (the int16x8 scheme's) on the scales quantize_bias chose."""
    scales = np.asarray(quant.scale, np.float32).astype(np.float64)
    return round_half_away_array(bias.astype(np.float64) / scales).astype(np.int64)


def shifted_bias(codes: np.ndarray, quant: QuantParams, shift: np.ndarray) -> np.ndarray:
    """int32 bias codes for the real bias of `codes` minus `shift`, on the same scales.

    The codes stay within BIAS_HEADROOM of the int32 range, as quantize_weights' floor keeps
    the original ones, so the kernels' int32 accumulators keep their margin.
    """
    scales = np.broadcast_to(np.asarray(quant.scale, np.float64), codes.shape)
    limit = int(BIAS_HEADROOM * INT32_MAX)
    moved = codes.astype(np.int64) + round_half_away_array(-shift / scales).astype(np.int64)
    if codes.dtype == np.int64:  # int16x8's int64 bias: far from its range's ends
        return moved
    return np.clip(moved, -limit, limit).astype(np.int32)


def quantize_values(values: np.ndarray, quant: QuantParams, dtype: DType = DType.INT8
                    ) -> np.ndarray:
    """Per-tensor codes of float values: round(x / scale) + zero point, saturated.

    int8 codes, or `dtype`'s (int16, uint8).
    """
    codes = round_half_away_array(values.astype(np.float64) / quant.scale0) + quant.zero_point0
    limits = np.iinfo(dtype.numpy)
    return np.clip(codes, limits.min, limits.max).astype(dtype.numpy)


def _add_constant(graph: Graph, name: str, data: np.ndarray, quant: QuantParams) -> str:
    """Add a quantised constant (a second role of a shared float constant gets a new name)."""
    unique = unique_name(graph, name)
    graph.add_tensor(Tensor(unique, tuple(data.shape), DType(data.dtype.name), quant, data))
    return unique
