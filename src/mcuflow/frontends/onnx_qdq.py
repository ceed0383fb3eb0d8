"""QuantizeLinear/DequantizeLinear in ONNX models: the model's own int8 parameters, recorded.

A QDQ model (ONNX Runtime's `quantize_static`, PyTorch QAT or PT2E exports) is read as its float
graph with every Q -> DQ pair on an activation taken out, and every DequantizeLinear of a
constant folded. What the pairs said is kept on the IR tensors (`Tensor.quant` of a float32
tensor): an activation's scale and zero point, and a weight's per-tensor or per-output-channel
scales. `quant.qdq` turns that graph into the int8 graph with exactly those parameters.
uint8 parameters become int8 ones: the same scale, the zero point less 128. int16 ones (ONNX
Runtime's QInt16 activations, zero point 0) make the graph LiteRT's int16x8 scheme. A uint8 (or
int8) graph input read by DequantizeLinear, or a graph output written by QuantizeLinear, is the
model's raw integer I/O: `ModelTypes` (frontends.model_types) records it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import onnx

from mcuflow.errors import ModelFormatError, UnsupportedModelError
from mcuflow.frontends.model_types import ModelTypes
from mcuflow.ir.constraints import WEIGHT_AXIS
from mcuflow.ir.graph import DType, Graph, Operator
from mcuflow.ir.quantization import MAX_SCALE, MIN_SCALE, QuantParams

if TYPE_CHECKING:
    from mcuflow.frontends.onnx_reader import _Importer

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_LAYOUT_FOLDS = frozenset({"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
"""Folded ops that move a dequantised constant's values without changing them."""
_UINT8_SHIFT = 128
_HINT = "re-export the model, or check that the file was copied whole"


@dataclass(frozen=True)
class _Dequantized:
    """The parameters a DequantizeLinear gave a constant: per tensor, or along `axis`."""

    scales: np.ndarray
    zero_points: np.ndarray
    axis: int | None


_ACTIVATION_TYPES = {np.dtype(np.int8): DType.INT8, np.dtype(np.uint8): DType.INT8,
                     np.dtype(np.int16): DType.INT16}
"""The quantised types of Q/DQ activations -> the IR activations they make."""


@dataclass
class ModelQuant:
    """What the model's Q/DQ nodes said, gathered while its graph is read."""

    kept: dict[str, QuantParams] = field(default_factory=dict)
    """IR activation tensor -> the int8 parameters the model quantises it with."""
    quantized: dict[str, QuantParams] = field(default_factory=dict)
    """ONNX value written by a QuantizeLinear of an activation -> its parameters."""
    dequantized: dict[str, _Dequantized] = field(default_factory=dict)
    """ONNX constant written by a DequantizeLinear (or moved by a layout fold) -> its parameters."""
    activation_types: set[DType] = field(default_factory=set)
    """The IR types the model's QuantizeLinear nodes quantise activations to."""
    raw_inputs: dict[str, DType] = field(default_factory=dict)
    """Graph input the model takes as integer codes (DequantizeLinear reads it) -> its type."""
    written: dict[str, DType] = field(default_factory=dict)
    """ONNX value written by a QuantizeLinear -> its integer type (for raw graph outputs)."""
    uint8_io: set[str] = field(default_factory=set)
    """IR graph inputs and outputs that are uint8 in the model."""

    def types(self, label: str) -> ModelTypes:
        """The model's activation type and uint8 I/O; mixed int8 and int16 are refused."""
        if len(self.activation_types) > 1:
            raise UnsupportedModelError(
                f"{label} quantises some activations to int8 and others to int16",
                "quantise every activation to one type (LiteRT's int16x8 scheme is all int16)")
        activations = next(iter(self.activation_types), DType.INT8)
        if activations is DType.INT16 and self.uint8_io:
            raise UnsupportedModelError(f"{label} has int16 activations and uint8 inputs or "
                                        "outputs", "uint8 model I/O is for int8 models")
        return ModelTypes(activations, frozenset(self.uint8_io))

    def folded(self, node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> None:
        """Note a folded DequantizeLinear of a constant, or a layout op that moves one."""
        if node.op_type == "DequantizeLinear":
            scales, zero_points = _scale_and_zero_point(node, constants)
            rank = constants[node.input[0]].ndim
            axis = None if scales.size == 1 else _axis(node) % max(rank, 1)
            self.dequantized[node.output[0]] = _Dequantized(
                scales.reshape(-1), _as_int8(zero_points.reshape(-1)), axis)
        elif node.op_type in _LAYOUT_FOLDS and node.input[0] in self.dequantized:
            self.dequantized[node.output[0]] = self.dequantized[node.input[0]]

    def attach(self, graph: Graph, node: onnx.NodeProto, ops: list[Operator]) -> None:
        """Give the weights of weighted ops converted from `node` the model's scales.

        Per-axis scales are kept when there is one per output channel; anything else is left
        to the quantiser, which then chooses its own (and its report says so).
        """
        if len(node.input) < 2 or node.input[1] not in self.dequantized:
            return
        source = self.dequantized[node.input[1]]
        for op in ops:
            if op.kind not in WEIGHT_AXIS:
                continue
            weights = graph.tensors[op.inputs[1]]
            axis = WEIGHT_AXIS[op.kind]
            if source.axis is None:
                quant = QuantParams.per_tensor(float(source.scales[0]),
                                               int(source.zero_points[0]))
            elif len(source.scales) == weights.shape[axis]:
                quant = QuantParams.per_channel(source.scales, source.zero_points, axis)
            else:
                continue
            graph.tensors[weights.name] = replace(weights, quant=quant)

    def apply(self, graph: Graph) -> None:
        """Put the activations' kept parameters on the graph's tensors."""
        for name, quant in self.kept.items():
            if name in graph.tensors:
                graph.tensors[name] = replace(graph.tensors[name], quant=quant)


def quantize_linear(imp: _Importer, node: onnx.NodeProto) -> None:
    """QuantizeLinear of an activation: the value stays; its int8 parameters are kept."""
    x = imp.act(node)
    quant = _activation_params(imp, node)
    known = imp.model_quant.kept.get(x.name)
    if known is not None and known != quant:
        raise imp.unsupported(node, f"quantises '{x.name}' a second time with other "
                              "parameters; mcuflow keeps one scale per tensor")
    imp.model_quant.kept[x.name] = quant
    imp.model_quant.quantized[node.output[0]] = quant
    dtype = _quantized_type(node, imp.const(node, 2, "zero point"))
    imp.model_quant.activation_types.add(_ACTIVATION_TYPES[dtype])
    imp.model_quant.written[node.output[0]] = DType(dtype.name)
    imp.set(node, x)


def dequantize_linear(imp: _Importer, node: onnx.NodeProto) -> None:
    """DequantizeLinear of a quantised activation: the value it came from."""
    x = imp.act(node)
    source = imp.model_quant.quantized.get(node.input[0])
    if source is None and node.input[0] in imp.model_quant.raw_inputs:
        source = _raw_input(imp, node, x.name)
    if source is None:
        raise imp.unsupported(node, "dequantises a computed tensor that no QuantizeLinear "
                              "wrote; mcuflow reads int8 activations only from Q -> DQ pairs")
    if _activation_params(imp, node) != source:
        raise imp.unsupported(node, "dequantises with other parameters than its "
                              "QuantizeLinear used; requantise in the model instead")
    imp.set(node, x)


def _raw_input(imp: _Importer, node: onnx.NodeProto, name: str) -> QuantParams:
    """The parameters of a graph input of integer codes, from the DequantizeLinear reading it."""
    quant = _activation_params(imp, node)
    wanted = imp.model_quant.raw_inputs[node.input[0]]
    if DType(_quantized_type(node, imp.const(node, 2, "zero point")).name) is not wanted:
        raise imp.unsupported(node, f"dequantises the {wanted.value} input '{name}' as another "
                              "type; give the zero point the input's type")
    imp.model_quant.kept[name] = quant
    imp.model_quant.quantized[node.input[0]] = quant
    imp.model_quant.activation_types.add(_ACTIVATION_TYPES[wanted.numpy])
    return quant


def _activation_params(imp: _Importer, node: onnx.NodeProto) -> QuantParams:
    """The node's per-tensor int8 (uint8 moved to int8) or int16 parameters; others refused."""
    scale = imp.const(node, 1, "scale")
    zero_point = imp.const(node, 2, "zero point")
    if scale is None:
        raise ModelFormatError(f"{imp.label}: {node.op_type} '{node.name}' has no scale", _HINT)
    if scale.size != 1:
        raise imp.unsupported(node, f"quantises an activation per axis ({scale.size} scales); "
                              "mcuflow's int8 activations have one scale per tensor")
    dtype = _quantized_type(node, zero_point)
    if dtype not in _ACTIVATION_TYPES:
        raise imp.unsupported(node, f"quantises an activation to {dtype.name}; mcuflow runs "
                              "int8 activations (uint8 is moved to int8) or int16 ones")
    if dtype == np.int16 and zero_point is not None and zero_point.reshape(-1)[0] != 0:
        raise imp.unsupported(node, f"quantises an activation to int16 with zero point "
                              f"{int(zero_point.reshape(-1)[0])}; LiteRT's int16 activations "
                              "are symmetric (zero point 0)")
    value = float(np.float32(scale.reshape(-1)[0]))
    if not MIN_SCALE <= value <= MAX_SCALE:
        raise ModelFormatError(f"{imp.label}: {node.op_type} '{node.name}' has the scale "
                               f"{value:.6g}, outside [{MIN_SCALE:.3g}, {MAX_SCALE:.3g}]", _HINT)
    point = 0 if zero_point is None else int(zero_point.reshape(-1)[0])
    return QuantParams.per_tensor(value, point - _UINT8_SHIFT if dtype == np.uint8 else point)


def _quantized_type(node: onnx.NodeProto, zero_point: np.ndarray | None) -> np.dtype:
    """The integer type of the quantised side: the zero point's, else `output_dtype`, else uint8."""
    if zero_point is not None:
        return zero_point.dtype
    for attribute in node.attribute:
        if attribute.name == "output_dtype" and attribute.i:
            return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(attribute.i))
    return np.dtype(np.uint8)


def _scale_and_zero_point(node: onnx.NodeProto, constants: dict[str, np.ndarray]
                          ) -> tuple[np.ndarray, np.ndarray]:
    scales = np.asarray(constants[node.input[1]], np.float32)
    if len(node.input) > 2 and node.input[2]:
        return scales, np.asarray(constants[node.input[2]])
    return scales, np.zeros(scales.shape, np.uint8 if constants[node.input[0]].dtype == np.uint8
                            else np.int8)


def _as_int8(zero_points: np.ndarray) -> np.ndarray:
    """Zero points in int8 terms (uint8 ones less 128); int32 (bias) ones as they are."""
    shifted = zero_points.astype(np.int64)
    return shifted - _UINT8_SHIFT if zero_points.dtype == np.uint8 else shifted


def _axis(node: onnx.NodeProto) -> int:
    for attribute in node.attribute:
        if attribute.name == "axis":
            return int(attribute.i)
    return 1
