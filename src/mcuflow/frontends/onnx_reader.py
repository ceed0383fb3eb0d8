"""Read an ONNX model (as PyTorch exports it) into a float IR Graph: NHWC, TFLite weight layouts.

Every ONNX value is either a constant (a numpy array in ONNX's layout) or an activation held in
an IR tensor whose axes are a permutation of ONNX's: a 4-D NCHW value is stored NHWC, so a
layout-only Transpose just changes the permutation. Sub-graphs of constants (shape arithmetic,
Constant nodes) are folded with ONNX's own reference evaluator; the rest maps op by op onto
IR ops, by the converters in onnx_ops.py. A Flatten of NCHW data that feeds a Gemm/MatMul is
absorbed by permuting the weights.

A model file is hostile input. Nothing the model names is ever opened: a tensor anywhere in it
(initialisers, attributes, subgraphs, functions, training info) stored in an external file is
refused when the file is parsed. Folding is bounded: ONNX's shape inference tells each folded
value's size before it is computed, and MAX_FOLDED_BYTES, MAX_FOLDED_TOTAL_BYTES and
MAX_FOLDED_WORK cap memory and time; a constant subgraph nothing reads is not folded at all.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError, Message
from onnx import defs, helper, numpy_helper, shape_inference
from onnx.reference import ReferenceEvaluator

import mcuflow.frontends.onnx_gru  # noqa: F401  (registers the GRU converter)
from mcuflow.errors import McuflowError, ModelFormatError, UnsupportedModelError
from mcuflow.frontends.files import read_bounded
from mcuflow.frontends.model_types import ModelTypes
from mcuflow.frontends.onnx_layout import (
    _FLOAT_TYPES,
    _HINT,
    _UNSUPPORTED_HINT,
    CHANNELS_LAST_1D,
    NHWC,
    Value,
    _Act,
    _free,
    _logical,
)
from mcuflow.frontends.onnx_ops import _CONVERTERS
from mcuflow.frontends.onnx_ops import MAX_WINDOW as MAX_WINDOW  # re-exported: part of the API
from mcuflow.frontends.onnx_qdq import ModelQuant
from mcuflow.frontends.tflite_reader import MAX_ACTIVATION_BYTES
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import OpAttrs, OpKind, ReshapeAttrs, TransposeAttrs, infer_output_shapes
from mcuflow.ir.verify import GraphInvariantError, verify_graph

MAX_MODEL_BYTES = 2 << 30
MIN_OPSET = 7
MAX_FOLDED_BYTES = 64 << 20
"""No value folded at import (a node evaluated on constant inputs) holds more bytes than this.

Checked before evaluation on the size ONNX's shape inference gives, and again on the result.
A model for a microcontroller computes no constant this large; the limit keeps a file of a
kilobyte (ConstantOfShape of [25000, 25000], Tile, Range, Expand, an outer product...) from
making the import allocate gigabytes.
"""
MAX_FOLDED_TOTAL_BYTES = 256 << 20
"""All the values folded by one import together hold at most this many bytes."""
MAX_FOLDED_WORK = 1 << 24
"""An op outside _LINEAR_FOLDS (Conv, MaxPool, MatMul, Pad, Scatter...) is folded only when its
estimated steps (_WORK) stay within this: onnx.reference runs some of them in Python loops, one
step per output (MaxPool: 12 us each), and im2col-style ones allocate output times window."""
MAX_INFERENCE_DATA = 4096
"""Constant inputs of at most this many elements are shown to shape inference as data (shapes,
repeats, pads, sizes, Range bounds are small), so it knows the size of a result that depends on
their values."""
MAX_LISTED = 1024
"""A constant input listing axes, a shape or pads holds at most this many values, far more than
any tensor has axes: a longer one (a folded 32 MiB "shape") is refused before it becomes a
Python list and a message."""
MAX_SHOWN_CHARS = 80
"""A name or path from the model file is quoted in a message cut to this many characters."""
MAX_REASON_CHARS = 240
"""What onnx's shape inference or evaluator said is quoted in a message cut to this length."""
_WINDOWED = ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")
_PASSING = ("QuantizeLinear", "DequantizeLinear", "Identity")
_RAW_TYPES = {onnx.TensorProto.UINT8: DType.UINT8, onnx.TensorProto.INT8: DType.INT8,
              onnx.TensorProto.INT16: DType.INT16}
"""Integer graph-input types a QDQ model may dequantise (its raw codes)."""
_FOLD_HINT = ("a model for a microcontroller computes no constant this large; export it with "
              "constant folding done (torch.onnx.export(..., do_constant_folding=True))")


@dataclass(frozen=True)
class OnnxImport:
    """An imported ONNX model: the float graph and how its inputs/outputs are laid out.

    `input_perms[name]` maps an array in the ONNX model's layout to the IR's:
    `ir_array = onnx_array.transpose(perm)` (NCHW images become NHWC); likewise for outputs.
    """

    graph: Graph
    input_perms: dict[str, tuple[int, ...]]
    output_perms: dict[str, tuple[int, ...]]
    types: ModelTypes = ModelTypes()
    """A QDQ model's activation type and uint8 inputs and outputs (onnx_qdq)."""

    @property
    def model_quantized(self) -> bool:
        """True when the model's Q/DQ nodes gave tensors their int8 parameters (onnx_qdq)."""
        return any(tensor.quant is not None for tensor in self.graph.tensors.values())


def read_onnx(source: str | Path | bytes) -> Graph:
    """Read an ONNX model (a path or the file's bytes) into a verified float32 Graph."""
    return import_onnx(source).graph


def import_onnx(source: str | Path | bytes) -> OnnxImport:
    """Read an ONNX model and report the layout change of its inputs and outputs.

    Raises ModelFormatError for a file that is not a well-formed ONNX model and one
    UnsupportedModelError listing every unsupported operator.
    """
    data, label, stem = _load(source)
    model = _parse(data, label)
    importer = _Importer(model, label, stem)
    with _corrupt_guard(label), np.errstate(all="ignore"):
        importer.run()
    try:
        verify_graph(importer.graph)
    except GraphInvariantError as error:
        raise ModelFormatError(f"{label} is inconsistent: {error.message}", _HINT) from None
    return OnnxImport(importer.graph, importer.input_perms, importer.output_perms,
                      importer.model_quant.types(label))


def _load(source: str | Path | bytes) -> tuple[bytes, str, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), "the ONNX model", "model"
    path = Path(source)
    data = read_bounded(path, f"model file '{path}'", "check the path and the file's permissions",
                        MAX_MODEL_BYTES, ModelFormatError)
    return data, f"'{path}'", path.stem or "model"


def _parse(data: bytes, label: str) -> onnx.ModelProto:
    """Decode the protobuf and check it holds a graph with nodes and a default-domain opset."""
    if not data:
        raise ModelFormatError(f"{label} is empty (0 bytes)", _HINT)
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as error:
        raise ModelFormatError(f"{label} is not a valid ONNX protobuf ({error})", _HINT) from None
    if not model.HasField("graph") or not model.graph.node:
        raise ModelFormatError(f"{label} is not an ONNX model: it has no graph nodes", _HINT)
    opset = _default_opset(model)
    if opset < MIN_OPSET:
        raise UnsupportedModelError(f"{label} uses ONNX opset {opset}; mcuflow reads {MIN_OPSET}+",
                                    "re-export with a current opset (torch.onnx.export does)")
    _reject_external_data(model, label)
    return model


def _reject_external_data(model: onnx.ModelProto, label: str) -> None:
    """Refuse a tensor stored in another file, wherever it is in the model.

    onnx.reference and numpy_helper would read such a tensor from its `location`, resolved
    against the working directory, symlinks followed: any file would become weights. The walk
    covers every message (initialisers, sparse ones, node attributes, subgraphs of If/Loop/Scan,
    functions, training info) in file order with an explicit stack, as models may nest deeply;
    the first such tensor is named.
    """
    stack: list[tuple[Message, str, str, str]] = [(model, "tensor", "", "")]
    while stack:
        message, role, inner, outer = stack.pop()
        if isinstance(message, onnx.TensorProto):
            if message.data_location == onnx.TensorProto.EXTERNAL or message.external_data:
                raise _external(message, role, inner, outer, label)
            continue
        owner = _owner(message)
        inner, outer = owner or inner, outer or owner
        role = role if isinstance(message, onnx.SparseTensorProto) else "tensor"
        children = [(item, _ROLES.get(field.name, role), inner, outer)
                    for field, value in message.ListFields() if field.message_type is not None
                    for item in ([value] if isinstance(value, Message) else value)]
        stack.extend(reversed(children))


_ROLES = {"initializer": "initializer", "sparse_initializer": "sparse initializer",
          "sparse_tensor": "sparse tensor", "sparse_tensors": "sparse tensor"}
"""What a tensor under a field of this name is called in a message."""


def _owner(message: Message) -> str:
    """How a message that holds tensors is named in a message ('' for a graph or the model)."""
    if isinstance(message, onnx.NodeProto):
        return f"{_cut(message.op_type)} node {_shown(message.name)}"
    if isinstance(message, onnx.FunctionProto):
        return f"function {_shown(message.name)}"
    return "training info" if isinstance(message, onnx.TrainingInfoProto) else ""


def _external(tensor: onnx.TensorProto, role: str, inner: str, outer: str,
              label: str) -> UnsupportedModelError:
    where = f"{role} {_shown(tensor.name)}" + (f" of {inner}" if inner else "") + (
        f" in {outer}" if outer != inner else "")
    locations = [entry.value for entry in tensor.external_data if entry.key == "location"]
    named = f" ({_shown(locations[0])})" if locations else ""
    return UnsupportedModelError(
        f"{label}: {where} is stored in an external file{named}; mcuflow reads only the model "
        "file", "save the model with all tensors inside (onnx.save(..., "
        "save_as_external_data=False))")


def _cut(text: str | bytes, limit: int = MAX_SHOWN_CHARS) -> str:
    """`text` cut to `limit` characters (protobuf gives a string that is not UTF-8 as bytes)."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _shown(text: str | bytes) -> str:
    """`text` cut to MAX_SHOWN_CHARS characters and quoted as Python would (escapes shown)."""
    return repr(_cut(text))


def _default_opset(model: onnx.ModelProto) -> int:
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return max(versions) if versions else 0


@contextmanager
def _corrupt_guard(label: str) -> Iterator[None]:
    """Turn what a corrupt protobuf makes numpy or onnx raise into a ModelFormatError."""
    try:
        yield
    except McuflowError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
            MemoryError) as error:
        raise ModelFormatError(f"{label} is corrupt or inconsistent ({error})", _HINT) from None


def _planned(type_proto: onnx.TypeProto | None) -> tuple[tuple[int, ...], int] | None:
    """The shape and bytes of an inferred tensor type; None unless every dimension is known.

    An empty result counts the bytes of its non-zero dimensions: numpy may build it one axis
    at a time (np.tile of [1, 1] by (2**30, 0) first makes 2**30 values).
    """
    if type_proto is None or not type_proto.HasField("tensor_type"):
        return None
    tensor_type = type_proto.tensor_type
    dims = tensor_type.shape.dim
    if not tensor_type.HasField("shape") or not all(d.HasField("dim_value") and d.dim_value >= 0
                                                    for d in dims):
        return None
    shape = tuple(int(d.dim_value) for d in dims)
    return shape, _elements(shape) * _itemsize(tensor_type.elem_type)


def _elements(shape: tuple[int, ...]) -> int:
    """The elements of `shape`, an empty one counted by its non-zero dimensions."""
    return math.prod(d for d in shape if d)


def _itemsize(elem_type: int) -> int:
    """Bytes per element of an ONNX element type (8, the widest, when unknown)."""
    try:
        return helper.tensor_dtype_to_np_dtype(elem_type).itemsize
    except (KeyError, ValueError, TypeError):
        return 8


def _attributes(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class _Importer:
    """Converts the nodes of one ONNX graph, in order, into IR tensors and operators."""

    def __init__(self, model: onnx.ModelProto, label: str, name: str) -> None:
        self.model, self.label = model, label
        self.opset = _default_opset(model)
        self.graph = Graph(model.graph.name or name)
        self.values: dict[str, Value] = {}
        self.input_perms: dict[str, tuple[int, ...]] = {}
        self.output_perms: dict[str, tuple[int, ...]] = {}
        nodes = _fuse_hard_swish(list(model.graph.node), model.graph)
        self.positions = _live(nodes, model.graph)
        self.nodes = [nodes[position] for position in self.positions]
        self.folded_bytes = 0
        self.model_quant = ModelQuant()
        self.reserved = {name for node in nodes for name in node.output} | {
            value.name for value in model.graph.input}

    # --- driver -------------------------------------------------------------------------------

    def run(self) -> None:
        """Convert the whole graph: initializers, inputs, every node, then the outputs."""
        for initializer in self.model.graph.initializer:
            self.values[initializer.name] = self._initializer(initializer)
        for value_info in self.model.graph.input:
            if value_info.name not in self.values:
                self._graph_input(value_info)
        self._reject_unsupported()
        for position, node in zip(self.positions, self.nodes, strict=True):
            self._node(position, node)
        for value_info in self.model.graph.output:
            self._graph_output(value_info.name)
        self.model_quant.apply(self.graph)

    def _initializer(self, tensor: onnx.TensorProto) -> np.ndarray:
        expected = math.prod(tensor.dims)
        array = numpy_helper.to_array(tensor)
        if array.size != expected:
            raise ModelFormatError(f"{self.label}: initializer '{tensor.name}' holds {array.size} "
                                   f"values for dims {list(tensor.dims)}", _HINT)
        return array

    def _graph_input(self, value_info: onnx.ValueInfoProto) -> None:
        name = value_info.name
        tensor_type = value_info.type.tensor_type
        if tensor_type.elem_type in _RAW_TYPES and self._dequantized_only(name):
            self.model_quant.raw_inputs[name] = _RAW_TYPES[tensor_type.elem_type]
            if _RAW_TYPES[tensor_type.elem_type] is DType.UINT8:
                self.model_quant.uint8_io.add(name)
        elif tensor_type.elem_type not in _FLOAT_TYPES:
            raise UnsupportedModelError(
                f"{self.label}: input '{name}' has element type "
                f"{onnx.TensorProto.DataType.Name(tensor_type.elem_type)}; mcuflow imports "
                "float models", "export the float model (quantise it with `mcuflow quantize`)")
        shape = tuple(self._input_dim(name, axis, dim)
                      for axis, dim in enumerate(tensor_type.shape.dim))
        self.check_activation(f"input '{name}'", shape)
        if len(shape) == 4 and not self._feeds_transposes_only(name):
            perm = NHWC
        elif len(shape) == 3 and self._feeds_windows(name):
            perm = CHANNELS_LAST_1D
        else:
            perm = tuple(range(len(shape)))
        act = _Act(name, shape, perm)
        self.graph.add_tensor(Tensor(name, act.physical, DType.FLOAT32))
        self.graph.inputs.append(name)
        self.values[name] = act
        self.input_perms[name] = perm

    def _input_dim(self, name: str, axis: int, dim: onnx.TensorShapeProto.Dimension) -> int:
        if dim.HasField("dim_value") and dim.dim_value > 0:
            return int(dim.dim_value)
        if axis == 0:
            return 1
        raise UnsupportedModelError(
            f"{self.label}: input '{name}' has a dynamic dimension {axis} "
            f"('{dim.dim_param or '?'}')", "export the model with a fixed input shape")

    def _feeds_windows(self, name: str) -> bool:
        """True when `name` reaches a Conv or pool (through Q/DQ pairs): it is stored N, T, C."""
        readers = [node for node in self.nodes if name in node.input[:1]]
        return any(node.op_type in _WINDOWED or node.op_type in _PASSING
                   and self._feeds_windows(node.output[0]) for node in readers)

    def _dequantized_only(self, name: str) -> bool:
        """True when only DequantizeLinear nodes read `name` (the model's raw integer input)."""
        readers = [node for node in self.nodes if name in node.input]
        return bool(readers) and all(node.op_type == "DequantizeLinear" and node.input[0] == name
                                     for node in readers)

    def _feeds_transposes_only(self, name: str) -> bool:
        readers = [node for node in self.nodes if name in node.input]
        return bool(readers) and all(node.op_type == "Transpose" for node in readers)

    def _reject_unsupported(self) -> None:
        """One error listing every op that computes on activations and has no converter."""
        constant = {name for name, value in self.values.items() if isinstance(value, np.ndarray)}
        missing: Counter[str] = Counter()
        for node in self.nodes:
            standard = node.domain in ("", "ai.onnx")
            foldable = node.op_type in _SHAPE_OPS or node.op_type not in _NEVER_FOLD and all(
                not name or name in constant for name in node.input)
            if standard and foldable:
                constant.update(node.output)
            elif not standard or node.op_type not in _CONVERTERS:
                missing[node.op_type if standard else f"{node.domain}.{node.op_type}"] += 1
        if missing:
            listed = ", ".join(f"{name} (x{count})" for name, count in sorted(missing.items()))
            raise UnsupportedModelError(
                f"{self.label} uses {sum(missing.values())} unsupported operator(s): {listed}",
                _UNSUPPORTED_HINT)

    def _node(self, index: int, node: onnx.NodeProto) -> None:
        for name in node.input:
            if name and name not in self.values:
                raise ModelFormatError(f"{self.label}: node {index} ({node.op_type} "
                                       f"'{node.name}') reads '{name}', which nothing produces "
                                       "before it", _HINT)
        inputs = [self.values.get(name) if name else None for name in node.input]
        if node.op_type in _SHAPE_OPS or all(not isinstance(v, _Act) for v in inputs):
            self._fold(node, inputs)
        else:
            start = len(self.graph.operators)
            _CONVERTERS[node.op_type](self, node)
            self.model_quant.attach(self.graph, node, self.graph.operators[start:])

    def _fold(self, node: onnx.NodeProto, inputs: list[Value | None]) -> None:
        """Evaluate a node on constants (activations only lend their shape) with onnx.reference.

        Its results must fit the folding limits: checked before evaluation on the sizes shape
        inference gives (or the inputs bound), and again on what the evaluation returned.
        """
        feeds, constants = {}, {}
        for name, value in zip(node.input, inputs, strict=True):
            if name and isinstance(value, _Act):
                feeds[name] = np.broadcast_to(np.float32(0), value.shape)
            elif name:
                feeds[name] = constants[name] = value
        self._check_fold(node, feeds, constants)
        try:
            outputs = ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds)
        except Exception as error:  # the evaluator may raise anything on a corrupt model
            raise self._unevaluable(node, str(error)) from None
        results = [(name, np.asarray(value)) for name, value in zip(node.output, outputs,
                                                                     strict=False)]
        self._check_numbers(node, [value.dtype for _, value in results])
        for _, value in results:
            self._check_folded_size(node, value.shape, value.nbytes)
        for name, value in results:
            if name:
                self._check_folded_total(node, self.folded_bytes + value.nbytes)
                self.folded_bytes += value.nbytes
                self.values[name] = value
        self.model_quant.folded(node, constants)

    def _check_fold(self, node: onnx.NodeProto, feeds: dict[str, np.ndarray],
                    constants: dict[str, np.ndarray]) -> None:
        """Refuse, before evaluating it, a fold too large or too slow to compute."""
        self._check_numbers(node, [value.dtype for value in feeds.values()])
        planned = self._inferred(node, feeds, constants)
        if None in planned and node.op_type not in _SIZE_PRESERVING:
            raise ModelFormatError(f"{self._folding(node)} would make a constant whose size is "
                                   "not known before it is computed", _FOLD_HINT)
        known = [entry for entry in planned if entry is not None]
        for shape, nbytes in known:
            self._check_folded_size(node, shape, nbytes)
        self._check_folded_total(node, self.folded_bytes + sum(nbytes for _, nbytes in known))
        if node.op_type not in _LINEAR_FOLDS:
            sizes = [max(value.size, 1) for value in feeds.values()] or [1]
            output = max((_elements(shape) for shape, _ in known), default=1)
            work = _WORK.get(node.op_type, _quadratic_work)(sizes, output)
            if work > MAX_FOLDED_WORK:
                raise ModelFormatError(f"{self._folding(node)} would take about {work:,} steps, "
                                       f"over mcuflow's limit of {MAX_FOLDED_WORK:,}", _FOLD_HINT)

    def _inferred(self, node: onnx.NodeProto, feeds: dict[str, np.ndarray],
                  constants: dict[str, np.ndarray]) -> list[tuple[tuple[int, ...], int] | None]:
        """Each output's shape and bytes by ONNX's shape inference; None where it cannot tell.

        Small constant inputs are shown as data, so a result sized by their values is known too.
        """
        try:
            schema = defs.get_schema(node.op_type, self.opset)
        except (defs.SchemaError, TypeError):
            raise self._unevaluable(node, f"ONNX opset {self.opset} has no such operator"
                                    ) from None
        probe = onnx.NodeProto()
        probe.CopyFrom(node)
        probe.output[:] = [name or f"\0unused{i}" for i, name in enumerate(node.output)]
        try:
            types = {name: helper.make_tensor_type_proto(
                helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
                for name, value in feeds.items()}
            data = {name: numpy_helper.from_array(value, name) for name, value in constants.items()
                    if value.size <= MAX_INFERENCE_DATA}
            inferred = shape_inference.infer_node_outputs(
                schema, probe, types, data, opset_imports=[helper.make_opsetid("", self.opset)])
        except Exception as error:  # inference raises several types on an invalid node
            if node.op_type in _SIZE_PRESERVING:
                return [None] * len(node.output)
            raise self._unevaluable(node, str(error)) from None
        if any(t.tensor_type.elem_type == onnx.TensorProto.STRING for t in inferred.values()):
            raise self._strings(node)
        return [_planned(inferred.get(name)) for name in probe.output]

    def _check_numbers(self, node: onnx.NodeProto, dtypes: list[np.dtype]) -> None:
        """Strings are never folded: their memory is not their array's `nbytes`."""
        if any(dtype.kind in "OSU" for dtype in dtypes):
            raise self._strings(node)

    def _strings(self, node: onnx.NodeProto) -> UnsupportedModelError:
        return UnsupportedModelError(
            f"{self.label}: {_cut(node.op_type)} {_shown(node.name)} works on strings; "
            "mcuflow folds only numbers", "mcuflow compiles numeric models; export the model "
            "without its string processing")

    def _check_folded_size(self, node: onnx.NodeProto, shape: tuple[int, ...],
                           nbytes: int) -> None:
        if nbytes > MAX_FOLDED_BYTES:
            raise ModelFormatError(
                f"{self._folding(node)} would make a constant of shape {tuple(shape)} "
                f"({nbytes:,} bytes), over mcuflow's limit of {MAX_FOLDED_BYTES:,} bytes",
                _FOLD_HINT)

    def _check_folded_total(self, node: onnx.NodeProto, total: int) -> None:
        if total > MAX_FOLDED_TOTAL_BYTES:
            raise ModelFormatError(
                f"{self._folding(node)} would bring the constants folded from the model "
                f"to {total:,} bytes, over mcuflow's limit of {MAX_FOLDED_TOTAL_BYTES:,} bytes",
                _FOLD_HINT)

    def _folding(self, node: onnx.NodeProto) -> str:
        return f"{self.label}: folding {_cut(node.op_type)} {_shown(node.name)}"

    def _unevaluable(self, node: onnx.NodeProto, reason: str) -> ModelFormatError:
        return ModelFormatError(f"{self.label}: cannot evaluate {node.op_type} '{node.name}' on "
                                f"its constant inputs ({_cut(reason, MAX_REASON_CHARS)})", _HINT)

    def _graph_output(self, name: str) -> None:
        value = self.values.get(name)
        if not isinstance(value, _Act):
            raise UnsupportedModelError(f"{self.label}: output '{name}' is a constant or missing",
                                        "a model output must depend on the model's inputs")
        if value.features is not None:
            value = self.plain(value)
        if self.model_quant.written.get(name) is DType.UINT8:
            self.model_quant.uint8_io.add(value.name)
        self.graph.outputs.append(value.name)
        self.output_perms[value.name] = value.perm

    # --- helpers the converters use ------------------------------------------------------------

    def attrs(self, node: onnx.NodeProto) -> dict[str, object]:
        """The node's attributes by name."""
        return _attributes(node)

    def act(self, node: onnx.NodeProto, position: int = 0) -> _Act:
        """Input `position` of `node`, which must be computed from the model's inputs."""
        value = self.values[node.input[position]]
        if not isinstance(value, _Act):
            raise self.unsupported(node, f"input {position} must be computed, not constant")
        return value

    def const(self, node: onnx.NodeProto, position: int, what: str) -> np.ndarray | None:
        """Input `position` of `node` as a constant, None when absent; an error when computed."""
        if position >= len(node.input) or not node.input[position]:
            return None
        value = self.values[node.input[position]]
        if isinstance(value, _Act):
            raise self.unsupported(node, f"takes its {what} from a computed tensor")
        return value

    def listed(self, node: onnx.NodeProto, position: int, what: str) -> list | None:
        """Constant input `position` (axes, a shape, pads) as a list of at most MAX_LISTED values.

        None when absent; an error when computed or longer.
        """
        value = self.const(node, position, what)
        if value is not None and value.size > MAX_LISTED:
            raise ModelFormatError(f"{self.label}: {node.op_type} '{node.name}' takes "
                                   f"{value.size:,} values as its {what}; at most {MAX_LISTED} "
                                   "make sense", _HINT)
        return None if value is None else value.reshape(-1).tolist()

    def unsupported(self, node: onnx.NodeProto, message: str) -> UnsupportedModelError:
        """An error naming the node."""
        return UnsupportedModelError(f"{self.label}: {node.op_type} '{node.name}' {message}",
                                     _UNSUPPORTED_HINT)

    def fresh(self, base: str) -> str:
        """A tensor name not used by the graph or the ONNX model."""
        name, n = base, 0
        while name in self.graph.tensors or name in self.reserved:
            n += 1
            name = f"{base}_{n}"
        return name

    def constant(self, base: str, data: np.ndarray) -> str:
        """A new float32 constant tensor; NaN or infinity in it is an error."""
        name = self.fresh(base)
        data = np.ascontiguousarray(data, np.float32)
        bad = data.size - int(np.isfinite(data).sum())
        if bad:
            raise ModelFormatError(f"{self.label}: constant '{name}' holds {bad} NaN or infinite "
                                   "value(s), from the model's initialisers and attributes", _HINT)
        self.graph.add_tensor(Tensor(name, tuple(data.shape), DType.FLOAT32, data=data))
        return name

    def emit(self, kind: OpKind, inputs: list[str], attrs: OpAttrs, like: _Act, name: str,
             shape: tuple[int, ...] | None = None, perm: tuple[int, ...] | None = None,
             features: np.ndarray | None = None) -> _Act:
        """Append an IR op writing `name`; permutation and logical shape default to `like`'s."""
        name = name if name not in self.graph.tensors else self.fresh(name)
        op = Operator(kind, tuple(inputs), (name,), attrs, name)
        physical = infer_output_shapes(self.graph, op)[0]
        self.check_activation(f"{kind.value} output '{name}'", physical)
        self.graph.add_tensor(Tensor(name, physical, DType.FLOAT32))
        self.graph.operators.append(op)
        perm = like.perm if perm is None else perm
        shape = shape if shape is not None else _logical(physical, perm)
        return _Act(name, shape, perm, features)

    def check_activation(self, what: str, shape: tuple[int, ...]) -> None:
        """A computed tensor must hold values and fit the RAM of some board as float32."""
        if 0 in shape:
            raise ModelFormatError(f"{self.label}: {what} has the empty shape {shape}", _HINT)
        if 4 * math.prod(shape) > MAX_ACTIVATION_BYTES:
            raise ModelFormatError(
                f"{self.label}: {what} of shape {shape} would take {4 * math.prod(shape)} bytes "
                f"of RAM as float32, more than any board has (the limit is "
                f"{MAX_ACTIVATION_BYTES})", _HINT)

    def set(self, node: onnx.NodeProto, value: Value) -> None:
        """Bind the node's first output."""
        self.values[node.output[0]] = value

    def to_layout(self, node: onnx.NodeProto, value: _Act, perm: tuple[int, ...]) -> _Act:
        """`value` stored with permutation `perm`: free, a RESHAPE, or a TRANSPOSE."""
        if value.features is not None:
            raise self.unsupported(node, "reads a flattened NCHW tensor in a layout-sensitive way")
        if value.perm == perm:
            return value
        if not _free(value, perm):
            order = TransposeAttrs(tuple(value.perm.index(p) for p in perm))
            return self.emit(OpKind.TRANSPOSE, [value.name], order, value,
                             self.fresh(f"{value.name}/layout"), value.shape, perm)
        target = tuple(value.shape[p] for p in perm)
        return self.emit(OpKind.RESHAPE, [value.name], ReshapeAttrs(target), value,
                         self.fresh(f"{value.name}/layout"), value.shape, perm)

    def plain(self, value: _Act, node: onnx.NodeProto | None = None) -> _Act:
        """`value` in ONNX's own axis order."""
        return self.to_layout(node or _NO_NODE, value, tuple(range(len(value.shape))))

    def operand(self, like: _Act, data: np.ndarray) -> str:
        """A constant operand of an element-wise op on `like`, laid out as `like` is."""
        data = np.asarray(data, np.float32)
        if data.ndim == 0 or data.size == 1:
            return self.constant(f"{like.name}/scalar", data.reshape(1))
        rank = max(len(like.shape), data.ndim)
        if data.ndim < len(like.shape):
            data = data.reshape((1,) * (rank - data.ndim) + data.shape)
        if data.ndim > len(like.shape):
            raise ValueError(f"constant of shape {data.shape} widens {like.shape}")
        data = data.transpose(like.perm)
        if like.features is not None and data.shape[-1] > 1:
            data = data[..., like.features]
        return self.constant(f"{like.name}/operand", data)


_NO_NODE = onnx.NodeProto(op_type="(layout)", name="")


def _live(nodes: list[onnx.NodeProto], graph: onnx.GraphProto) -> list[int]:
    """Positions, in order, of the nodes computing on inputs and of all that they or outputs read.

    What is skipped is a constant subgraph nothing reads (a ConstantOfShape of [25000, 25000]
    feeding nothing): it is never folded. A node computing on activations is converted even
    when no output reads it, so its unsupported op or invalid attributes are reported as
    before: a model is judged the same whether or not its outputs use a branch, and converting
    costs no more than MAX_ACTIVATION_BYTES per tensor. A node whose subgraphs (If, Loop...)
    read a value keeps that value's producer.
    """
    computed = {value.name for value in graph.input} - {t.name for t in graph.initializer}
    roots = set()
    for position, node in enumerate(nodes):
        if node.op_type not in _SHAPE_OPS and computed.intersection(node.input):
            computed.update(node.output)
            roots.add(position)
    needed = {output.name for output in graph.output}
    live = []
    for position in reversed(range(len(nodes))):
        if position in roots or needed.intersection(nodes[position].output):
            live.append(position)
            needed.update(_reads(nodes[position]))
    return live[::-1]


def _reads(node: onnx.NodeProto) -> set[str]:
    """The names a node reads: its inputs and those of every node in its subgraphs."""
    names: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        names.update(current.input)
        for attribute in current.attribute:
            for graph in [attribute.g, *attribute.graphs]:
                stack.extend(graph.node)
    return names


def _fuse_hard_swish(nodes: list[onnx.NodeProto], graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Rewrite HardSigmoid(x) * x (how older opsets spell hard-swish) into one HardSwish."""
    uses = Counter(name for node in nodes for name in node.input)
    uses.update(output.name for output in graph.output)
    result = list(nodes)
    for sigmoid in nodes:
        attrs = _attributes(sigmoid)
        if sigmoid.op_type != "HardSigmoid" or uses[sigmoid.output[0]] != 1 or not math.isclose(
                attrs.get("alpha", 0.2), 1 / 6, rel_tol=1e-5) or attrs.get("beta", 0.5) != 0.5:
            continue
        for mul in nodes:
            pair = {sigmoid.output[0], sigmoid.input[0]}
            if mul.op_type == "Mul" and set(mul.input) == pair and len(mul.input) == 2:
                fused = helper.make_node("HardSwish", [sigmoid.input[0]], [mul.output[0]],
                                         name=mul.name)
                result[result.index(mul)] = fused
                result.remove(sigmoid)
    return result


_SHAPE_OPS = ("Shape", "Size")
_NEVER_FOLD = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                         "Multinomial", "If", "Loop", "Scan"})
_ELEMENTWISE = frozenset({
    "Abs", "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "BitwiseNot", "Cast", "CastLike",
    "Ceil", "Celu", "Clip", "Cos", "Cosh", "DequantizeLinear", "Dropout", "Elu", "Erf", "Exp",
    "Floor", "Gelu", "QuantizeLinear",
    "HardSigmoid", "HardSwish", "Identity", "IsInf", "IsNaN", "LeakyRelu", "Log", "Mish", "Neg",
    "Not", "Reciprocal", "Relu", "Round", "Selu", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh",
    "Softplus", "Softsign", "Sqrt", "Tan", "Tanh", "ThresholdedRelu"})
"""Ops whose output has its input's shape, computed value by value."""
_SIZE_PRESERVING = _ELEMENTWISE | frozenset({
    "ArgMax", "ArgMin", "Compress", "CumSum", "DepthToSpace", "EyeLike", "Flatten", "Hardmax",
    "LogSoftmax", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
    "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Reshape", "Shape",
    "Size", "Slice", "Softmax", "SpaceToDepth", "Split", "Squeeze", "Transpose", "Trilu",
    "Unsqueeze"})
"""Ops whose outputs hold no more elements than their inputs (a Cast may widen each to 8
bytes): folded even when shape inference cannot tell the result's shape, then checked after."""
_LINEAR_FOLDS = _SIZE_PRESERVING | frozenset({
    "Add", "And", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "Concat", "Constant",
    "ConstantOfShape", "Div", "Equal", "Expand", "Gather", "Greater", "GreaterOrEqual", "Less",
    "LessOrEqual", "Max", "Mean", "Min", "Mod", "Mul", "OneHot", "Or", "Pow", "PRelu", "Range",
    "Sub", "Sum", "Tile", "Where", "Xor"})
"""Ops onnx.reference computes with vectorised numpy, in time proportional to the elements they
read and write (bounded by MAX_FOLDED_BYTES); any other op's work must fit MAX_FOLDED_WORK."""
WorkEstimate = Callable[[list[int], int], int]


def _quadratic_work(inputs: list[int], output: int) -> int:
    """Each element of the largest tensor computed from at most all of the largest tensor.

    A MaxPool whose pads make 16M outputs from 1 input, a Conv whose window is its whole input,
    a MatMul (M*N outputs of K steps): quadratic in the largest of their element counts.
    """
    return max(*inputs, output) ** 2


_WORK: dict[str, WorkEstimate] = {
    "Einsum": lambda inputs, output: math.prod(inputs) * output,
    "Pad": lambda inputs, output: output * -(-output // inputs[0]),
}
"""Ops whose steps _quadratic_work does not bound well: an Einsum loops over every combination
of its inputs' indices; a reflecting Pad loops once per input length it adds."""
