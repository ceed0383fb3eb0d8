"""Read an ONNX model (as PyTorch exports it) into a float IR Graph: NHWC, TFLite weight layouts.

Every ONNX value is either a constant (a numpy array in ONNX's layout) or an activation held in
an IR tensor whose axes are a permutation of ONNX's: a 4-D NCHW value is stored NHWC, so a
layout-only Transpose just changes the permutation. Sub-graphs of constants (shape arithmetic,
Constant nodes) are folded with ONNX's own reference evaluator; the rest maps op by op onto
IR ops. A Flatten of NCHW data that feeds a Gemm/MatMul is absorbed by permuting the weights.

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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError, Message
from onnx import defs, helper, numpy_helper, shape_inference
from onnx.reference import ReferenceEvaluator

from mcuflow.errors import McuflowError, ModelFormatError, UnsupportedModelError
from mcuflow.frontends.files import read_bounded
from mcuflow.frontends.onnx_qdq import ModelQuant, dequantize_linear, quantize_linear
from mcuflow.frontends.tflite_reader import MAX_ACTIVATION_BYTES
from mcuflow.ir.enums import Padding
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import (
    OP_DEFS,
    ConcatenationAttrs,
    Conv2DAttrs,
    DepthwiseConv2DAttrs,
    ElementwiseAttrs,
    FullyConnectedAttrs,
    LeakyReluAttrs,
    MeanAttrs,
    NoAttrs,
    OpAttrs,
    OpKind,
    PadAttrs,
    Pool2DAttrs,
    ReshapeAttrs,
    SliceAttrs,
    SoftmaxAttrs,
    infer_output_shapes,
)
from mcuflow.ir.registry import Registry
from mcuflow.ir.verify import GraphInvariantError, verify_graph

MAX_MODEL_BYTES = 2 << 30
MAX_WINDOW = 1 << 16
"""No kernel size, stride, dilation or pad of a conv or pool exceeds this."""
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
NHWC = (0, 2, 3, 1)
CHANNELS_LAST_1D = (0, 2, 1)
"""How a 1-D signal N, C, T is stored: N, T, C (a row of an NHWC image)."""
_WINDOWED = ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")
_PASSING = ("QuantizeLinear", "DequantizeLinear", "Identity")
_HINT = "re-export the model with torch.onnx.export, or check that the file was copied whole"
_UNSUPPORTED_HINT = "run `mcuflow ops` for what mcuflow supports; re-export without those ops"
_FOLD_HINT = ("a model for a microcontroller computes no constant this large; export it with "
              "constant folding done (torch.onnx.export(..., do_constant_folding=True))")
_FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)


@dataclass(frozen=True)
class OnnxImport:
    """An imported ONNX model: the float graph and how its inputs/outputs are laid out.

    `input_perms[name]` maps an array in the ONNX model's layout to the IR's:
    `ir_array = onnx_array.transpose(perm)` (NCHW images become NHWC); likewise for outputs.
    """

    graph: Graph
    input_perms: dict[str, tuple[int, ...]]
    output_perms: dict[str, tuple[int, ...]]

    @property
    def model_quantized(self) -> bool:
        """True when the model's Q/DQ nodes gave tensors their int8 parameters (onnx_qdq)."""
        return any(tensor.quant is not None for tensor in self.graph.tensors.values())


@dataclass(frozen=True)
class _Act:
    """A computed value: IR tensor `name` holds the ONNX value of `shape` with axes permuted.

    Physical (IR) axis i holds logical (ONNX) axis perm[i]. `features`, for a flattened NCHW
    value, gives for each physical column the logical column it holds.
    """

    name: str
    shape: tuple[int, ...]
    perm: tuple[int, ...]
    features: np.ndarray | None = None

    @property
    def physical(self) -> tuple[int, ...]:
        """The IR tensor's shape."""
        return tuple(self.shape[p] for p in self.perm)


Value = _Act | np.ndarray


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
    return OnnxImport(importer.graph, importer.input_perms, importer.output_perms)


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


def _text(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value


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
        if tensor_type.elem_type not in _FLOAT_TYPES:
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
        """`value` stored with permutation `perm`: free, a RESHAPE, or an error."""
        if value.features is not None:
            raise self.unsupported(node, "reads a flattened NCHW tensor in a layout-sensitive way")
        if value.perm == perm:
            return value
        if not _free(value, perm):
            raise self.unsupported(node, f"needs a transpose of a {value.shape} tensor from "
                                   f"axis order {value.perm} to {perm}, which moves data")
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


def _free(value: _Act, perm: tuple[int, ...]) -> bool:
    """True when storing `value` with `perm` instead moves no data (only size-1 axes move)."""
    return [p for p in value.perm if value.shape[p] != 1] == [
        p for p in perm if value.shape[p] != 1]


def _logical(physical: tuple[int, ...], perm: tuple[int, ...]) -> tuple[int, ...]:
    shape = [0] * len(perm)
    for axis, logical in enumerate(perm):
        shape[logical] = physical[axis]
    return tuple(shape)


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


# --- converters -------------------------------------------------------------------------------

Converter = Callable[[_Importer, onnx.NodeProto], None]
_CONVERTERS: Registry[str, Converter] = Registry("converter")
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


converter = _CONVERTERS.register
"""Register a converter for ONNX op types."""


def _ints(value: object, count: int, default: int) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if value else (default,) * count


@dataclass(frozen=True)
class _Window:
    """Spatial geometry of a conv or pool: kernel, strides, dilations, ONNX pads."""

    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[int, int, int, int]
    ceil_mode: bool = False

    def effective(self, axis: int) -> int:
        """The kernel's span along spatial `axis`, dilation included."""
        return (self.kernel[axis] - 1) * self.dilations[axis] + 1

    def onnx_out(self, size: int, axis: int) -> int:
        """ONNX's output size along `axis`."""
        span = size + self.pads[axis] + self.pads[axis + 2] - self.effective(axis)
        stride = self.strides[axis]
        if not self.ceil_mode:
            return span // stride + 1
        out = -(-span // stride) + 1
        return out - 1 if (out - 1) * stride >= size + self.pads[axis] else out

    def tflite_padding(self, hw: tuple[int, int]) -> Padding | None:
        """SAME or VALID when TFLite's padding computes exactly what ONNX's pads do."""
        for padding in (Padding.VALID, Padding.SAME):
            if all(self._matches(padding, hw[axis], axis) for axis in range(2)):
                return padding
        return None

    def _matches(self, padding: Padding, size: int, axis: int) -> bool:
        stride, span = self.strides[axis], self.effective(axis)
        if padding is Padding.VALID:
            out, before = (size - span + stride) // stride, 0
        else:
            out = -(-size // stride)
            before = max((out - 1) * stride + span - size, 0) // 2
        return out == self.onnx_out(size, axis) and before == self.pads[axis]


def _window(imp: _Importer, node: onnx.NodeProto, x: _Act, kernel: tuple[int, ...]) -> _Window:
    attrs = imp.attrs(node)
    if len(kernel) != 2:
        raise imp.unsupported(node, f"is {len(kernel)}-D; only 2-D windows are supported")
    strides = _ints(attrs.get("strides"), 2, 1)
    dilations = _ints(attrs.get("dilations"), 2, 1)
    auto_pad = _text(attrs.get("auto_pad", "NOTSET"))
    pads = _ints(attrs.get("pads"), 4, 0)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = _same_pads(x.shape[2:], kernel, strides, dilations, auto_pad == "SAME_LOWER")
    elif auto_pad == "VALID":
        pads = (0, 0, 0, 0)
    if min(strides + dilations) < 1 or min(pads) < 0 or min(kernel) < 1 or max(
            strides + dilations + pads + kernel) > MAX_WINDOW:
        raise ModelFormatError(f"{imp.label}: {node.op_type} '{node.name}' has invalid "
                               f"kernel {kernel}, strides {strides}, dilations {dilations} or "
                               f"pads {pads}", _HINT)
    return _Window((kernel[0], kernel[1]), (strides[0], strides[1]),
                   (dilations[0], dilations[1]), (pads[0], pads[1], pads[2], pads[3]),
                   bool(attrs.get("ceil_mode", 0)))


def _same_pads(hw: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...],
               dilations: tuple[int, ...], lower: bool) -> tuple[int, int, int, int]:
    before, after = [], []
    for size, k, s, d in zip(hw, kernel, strides, dilations, strict=True):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small = total // 2
        before.append(total - small if lower else small)
        after.append(small if lower else total - small)
    return before[0], before[1], after[0], after[1]


def _spatial_input(imp: _Importer, node: onnx.NodeProto, window: _Window, x: _Act,
                   allow_zero_pad: bool, counts_pad: bool = False) -> tuple[_Act, Padding]:
    """The NHWC input and TFLite padding; ONNX pads TFLite cannot express become a PAD op.

    `counts_pad` marks an average pool that divides by the whole window, pads included, which
    TFLite's SAME (dividing by the valid taps) does not do: its pads always become a PAD op.
    """
    x = imp.to_layout(node, x, NHWC)
    padding = window.tflite_padding(x.shape[2:])
    if padding is Padding.VALID or padding is not None and not counts_pad:
        return x, padding
    if not allow_zero_pad or window.ceil_mode:
        raise imp.unsupported(node, f"has pads {window.pads} (ceil_mode {window.ceil_mode}) "
                              "that TFLite's SAME and VALID padding cannot express")
    top, left, bottom, right = window.pads
    paddings = ((0, 0), (top, bottom), (left, right), (0, 0))
    padded = imp.emit(OpKind.PAD, [x.name], PadAttrs(paddings), x, imp.fresh(f"{x.name}/pad"))
    return padded, Padding.VALID


def _one_d(convert: Converter) -> Converter:
    """A 2-D window converter that also takes 1-D signals (N, C, T) as one-row images."""

    def convert_either(imp: _Importer, node: onnx.NodeProto) -> None:
        x = imp.act(node)
        if len(x.shape) != 3:
            convert(imp, node)
            return
        lifted = _lifted(imp, node, x)
        convert(imp, lifted)
        row = imp.values[lifted.output[0]]
        n, c, _, t = row.shape
        imp.set(node, imp.emit(OpKind.RESHAPE, [row.name], ReshapeAttrs((n, t, c)), row,
                               node.output[0], (n, c, t), CHANNELS_LAST_1D))

    return convert_either


def _lifted(imp: _Importer, node: onnx.NodeProto, x: _Act) -> onnx.NodeProto:
    """`node` on (N, C, 1, T) images: 1-D attributes and weights gain a leading unit axis."""
    x = imp.to_layout(node, x, CHANNELS_LAST_1D)
    n, c, t = x.shape
    image = imp.emit(OpKind.RESHAPE, [x.name], ReshapeAttrs((n, 1, t, c)), x,
                     imp.fresh(f"{x.name}/row"), (n, c, 1, t), NHWC)
    lifted = onnx.NodeProto()
    lifted.CopyFrom(node)
    lifted.input[0] = _bind(imp, node.input[0], image)
    if len(node.input) > 1 and node.input[1]:
        weights = imp.const(node, 1, "weights")
        lifted.input[1] = _bind(imp, node.input[1], weights[:, :, None, :])
    lifted.output[0] = f"{node.output[0]}\0row"
    for attribute in lifted.attribute:
        if attribute.name in ("kernel_shape", "strides", "dilations"):
            attribute.ints[:] = [1, *attribute.ints]
        elif attribute.name == "pads":
            attribute.ints[:] = [0, attribute.ints[0], 0, attribute.ints[1]]
    return lifted


def _bind(imp: _Importer, name: str, value: Value) -> str:
    """`value` under a name no ONNX value has."""
    bound = f"{name}\0row"
    imp.values[bound] = value
    return bound


@converter("Conv")
@_one_d
def _conv(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.act(node)
    weights = imp.const(node, 1, "weights")
    bias = imp.const(node, 2, "bias")
    if weights is None or weights.ndim != 4 or len(x.shape) != 4:
        raise imp.unsupported(node, "is not a 2-D convolution with constant weights")
    out_c, group_depth, kh, kw = weights.shape
    group, in_c = int(imp.attrs(node).get("group", 1)), x.shape[1]
    window = _window(imp, node, x, (kh, kw))
    x, padding = _spatial_input(imp, node, window, x, allow_zero_pad=True)
    inputs = [x.name]
    if group == 1 and group_depth == in_c:
        inputs.append(imp.constant(f"{node.output[0]}/weights", weights.transpose(0, 2, 3, 1)))
        kind, attrs = OpKind.CONV_2D, Conv2DAttrs(
            window.strides[0], window.strides[1], window.dilations[0], window.dilations[1],
            padding)
    elif group == in_c and group_depth == 1 and out_c % in_c == 0:
        depthwise = weights.reshape(out_c, kh, kw).transpose(1, 2, 0)[None]
        inputs.append(imp.constant(f"{node.output[0]}/weights", depthwise))
        kind, attrs = OpKind.DEPTHWISE_CONV_2D, DepthwiseConv2DAttrs(
            window.strides[0], window.strides[1], window.dilations[0], window.dilations[1],
            out_c // in_c, padding)
    else:
        raise imp.unsupported(node, f"is a grouped convolution (group {group} of {in_c} "
                              "channels); only group 1 and depthwise are supported")
    if bias is not None:
        _check_bias(imp, node, bias, out_c)
        inputs.append(imp.constant(f"{node.output[0]}/bias", bias.reshape(-1)))
    imp.set(node, imp.emit(kind, inputs, attrs, x, node.output[0]))


def _check_bias(imp: _Importer, node: onnx.NodeProto, bias: np.ndarray, channels: int) -> None:
    if bias.size != channels:
        raise ModelFormatError(f"{imp.label}: {node.op_type} '{node.name}' has a bias of "
                               f"{bias.size} values for {channels} output channels", _HINT)


def _pool(imp: _Importer, node: onnx.NodeProto, kind: OpKind, window: _Window, x: _Act,
          allow_zero_pad: bool, counts_pad: bool = False) -> None:
    if window.dilations != (1, 1):
        raise imp.unsupported(node, "has dilations; TFLite pools have none")
    x, padding = _spatial_input(imp, node, window, x, allow_zero_pad, counts_pad)
    attrs = Pool2DAttrs(window.kernel[0], window.kernel[1], window.strides[0], window.strides[1],
                        padding)
    imp.set(node, imp.emit(kind, [x.name], attrs, x, node.output[0]))


@converter("MaxPool")
@_one_d
def _max_pool(imp: _Importer, node: onnx.NodeProto) -> None:
    """Explicit pads become zeros, exact only for non-negative input (after a RELU)."""
    x = imp.act(node)
    if len(node.output) > 1 and node.output[1] or len(x.shape) != 4:
        raise imp.unsupported(node, "must be a 2-D max pool without indices")
    window = _window(imp, node, x, _ints(imp.attrs(node).get("kernel_shape"), 0, 0))
    source = imp.graph.producer(x.name)
    non_negative = source is not None and imp.graph.operators[source].kind in (
        OpKind.RELU, OpKind.RELU6, OpKind.LOGISTIC)
    _pool(imp, node, OpKind.MAX_POOL_2D, window, x, non_negative)


@converter("AveragePool")
@_one_d
def _average_pool(imp: _Importer, node: onnx.NodeProto) -> None:
    """Explicit pads are exact as zeros only when ONNX counts them (count_include_pad=1)."""
    x = imp.act(node)
    if len(x.shape) != 4:
        raise imp.unsupported(node, "must be a 2-D pool")
    attrs = imp.attrs(node)
    window = _window(imp, node, x, _ints(attrs.get("kernel_shape"), 0, 0))
    counts_pad = bool(attrs.get("count_include_pad", 0))
    _pool(imp, node, OpKind.AVERAGE_POOL_2D, window, x, counts_pad, counts_pad)


@converter("GlobalAveragePool")
@_one_d
def _global_average_pool(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.to_layout(node, imp.act(node), NHWC)
    imp.set(node, imp.emit(OpKind.MEAN, [x.name], MeanAttrs((1, 2), True), x, node.output[0]))


@converter("GlobalMaxPool")
@_one_d
def _global_max_pool(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.to_layout(node, imp.act(node), NHWC)
    height, width = x.shape[2:]
    attrs = Pool2DAttrs(height, width, height, width, Padding.VALID)
    imp.set(node, imp.emit(OpKind.MAX_POOL_2D, [x.name], attrs, x, node.output[0]))


@converter("ReduceMean")
def _reduce_mean(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.act(node)
    attrs = imp.attrs(node)
    axes_input = imp.listed(node, 1, "axes")
    axes = attrs.get("axes") if axes_input is None else axes_input
    rank = len(x.shape)
    logical = sorted({int(a) % rank for a in axes}) if axes else list(range(rank))
    keep = bool(attrs.get("keepdims", 1))
    if x.features is not None:
        raise imp.unsupported(node, "reduces a flattened NCHW tensor")
    physical = tuple(sorted(x.perm.index(a) for a in logical))
    if keep:
        shape, perm = tuple(1 if i in logical else d for i, d in enumerate(x.shape)), x.perm
    else:
        remaining = [p for p in x.perm if p not in logical]
        perm = tuple(sorted(remaining).index(p) for p in remaining)
        shape = tuple(d for i, d in enumerate(x.shape) if i not in logical)
    imp.set(node, imp.emit(OpKind.MEAN, [x.name], MeanAttrs(physical, keep), x, node.output[0],
                           shape, perm))


def _unary(kind: OpKind, attrs_of: Callable[[dict[str, object]], OpAttrs] = lambda a: NoAttrs()
           ) -> Converter:
    def convert(imp: _Importer, node: onnx.NodeProto) -> None:
        x = imp.act(node)
        result = imp.emit(kind, [x.name], attrs_of(imp.attrs(node)), x, node.output[0])
        imp.set(node, replace(result, features=x.features))

    return convert


_CONVERTERS.update({
    "QuantizeLinear": quantize_linear,
    "DequantizeLinear": dequantize_linear,
    "Relu": _unary(OpKind.RELU),
    "Sigmoid": _unary(OpKind.LOGISTIC),
    "Tanh": _unary(OpKind.TANH),
    "HardSwish": _unary(OpKind.HARD_SWISH),
})


@converter("LeakyRelu")
def _leaky_relu(imp: _Importer, node: onnx.NodeProto) -> None:
    alpha = float(imp.attrs(node).get("alpha", 0.01))
    if not math.isfinite(alpha):
        raise ModelFormatError(f"{imp.label}: LeakyRelu '{node.name}' has alpha {alpha}", _HINT)
    _unary(OpKind.LEAKY_RELU, lambda a: LeakyReluAttrs(alpha))(imp, node)


@converter("Clip")
def _clip(imp: _Importer, node: onnx.NodeProto) -> None:
    attrs = imp.attrs(node)
    low, high = imp.const(node, 1, "minimum"), imp.const(node, 2, "maximum")
    low = float(attrs.get("min", -np.inf) if low is None else low.reshape(-1)[0])
    high = float(attrs.get("max", np.inf) if high is None else high.reshape(-1)[0])
    kinds = {(0.0, 6.0): OpKind.RELU6, (0.0, np.inf): OpKind.RELU}
    if (low, high) not in kinds:
        raise imp.unsupported(node, f"clips to [{low}, {high}]; only [0, 6] and [0, inf) map "
                              "onto TFLite ops")
    _unary(kinds[(low, high)])(imp, node)


@converter("HardSigmoid")
def _hard_sigmoid(imp: _Importer, node: onnx.NodeProto) -> None:
    """max(0, min(1, a*x + b)) = relu6(6a*x + 6b) / 6, as MUL, ADD, RELU6, MUL."""
    attrs = imp.attrs(node)
    alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    x = imp.act(node)
    base = node.output[0]
    steps = [(OpKind.MUL, 6.0 * alpha), (OpKind.ADD, 6.0 * beta), (OpKind.RELU6, None),
             (OpKind.MUL, 1.0 / 6.0)]
    for index, (kind, constant) in enumerate(steps):
        name = base if index == len(steps) - 1 else imp.fresh(f"{base}/step{index}")
        inputs = [x.name] + ([imp.operand(x, np.float32(constant))] if constant else [])
        attrs_of = ElementwiseAttrs() if constant else NoAttrs()
        x = replace(imp.emit(kind, inputs, attrs_of, x, name), features=x.features)
    imp.set(node, x)


@converter("Softmax")
def _softmax(imp: _Importer, node: onnx.NodeProto) -> None:
    """SOFTMAX normalises the IR's last axis, which must hold the ONNX axis."""
    x = imp.act(node)
    rank = len(x.shape)
    if rank == 0:
        raise imp.unsupported(node, "normalises a scalar")
    axis = int(imp.attrs(node).get("axis", -1 if imp.opset >= 13 else 1)) % rank
    if imp.opset < 13 and math.prod(x.shape[axis + 1:]) != 1:
        raise imp.unsupported(node, f"normalises axes {axis}.. of {x.shape} together (opset "
                              f"{imp.opset}); TFLite's SOFTMAX normalises one axis")
    if x.perm[-1] != axis:
        x = imp.to_layout(node, x, tuple(p for p in x.perm if p != axis) + (axis,))
    result = imp.emit(OpKind.SOFTMAX, [x.name], SoftmaxAttrs(1.0), x, node.output[0])
    imp.set(node, replace(result, features=x.features))


@converter("BatchNormalization")
def _batch_norm(imp: _Importer, node: onnx.NodeProto) -> None:
    """Inference batch-norm as a per-channel MUL then ADD (the fold_batchnorm pass folds them)."""
    x = imp.act(node)
    attrs = imp.attrs(node)
    if attrs.get("training_mode", 0) or len(node.output) > 1 and any(node.output[1:]):
        raise imp.unsupported(node, "is in training mode; export the model in eval() mode")
    gamma, beta, mean, var = (imp.const(node, i, "statistics") for i in range(1, 5))
    if any(v is None for v in (gamma, beta, mean, var)):
        raise imp.unsupported(node, "lacks its statistics")
    scale = gamma / np.sqrt(var.astype(np.float64) + float(attrs.get("epsilon", 1e-5)))
    shift = beta - mean * scale
    channel_shape = (1, -1) + (1,) * (len(x.shape) - 2)
    scaled = _binary_with_constant(imp, OpKind.MUL, x, scale.reshape(channel_shape), True,
                                   imp.fresh(f"{node.output[0]}/scale"))
    imp.set(node, _binary_with_constant(imp, OpKind.ADD, scaled, shift.reshape(channel_shape),
                                        True, node.output[0]))


def _binary_with_constant(imp: _Importer, kind: OpKind, x: _Act, data: np.ndarray,
                          act_first: bool, name: str) -> _Act:
    shape = tuple(int(d) for d in np.broadcast_shapes(x.shape, data.shape))
    if shape != x.shape:
        raise UnsupportedModelError(f"{imp.label}: a constant of shape {data.shape} broadcasts "
                                    f"'{x.name}' of shape {x.shape} to {shape}",
                                    _UNSUPPORTED_HINT)
    constant = imp.operand(x, data)
    inputs = [x.name, constant] if act_first else [constant, x.name]
    result = imp.emit(kind, inputs, OP_DEFS[kind].attrs(), x, name)
    return replace(result, features=x.features)


def _computed_pair(imp: _Importer, node: onnx.NodeProto, kind: OpKind, a: _Act, b: _Act
                   ) -> None:
    """A two-input element-wise op on two computed tensors, broadcast in one layout."""
    a, b = _common_layout(imp, node, a, b)
    shape = tuple(int(d) for d in np.broadcast_shapes(a.shape, b.shape))
    imp.set(node, imp.emit(kind, [a.name, b.name], OP_DEFS[kind].attrs(), a, node.output[0],
                           shape, features=a.features))


@converter("Add", "Sub", "Mul", "Div")
def _arithmetic(imp: _Importer, node: onnx.NodeProto) -> None:
    kinds = {"Add": OpKind.ADD, "Sub": OpKind.SUB, "Mul": OpKind.MUL, "Div": OpKind.MUL}
    kind = kinds[node.op_type]
    a, b = (imp.values[name] for name in node.input[:2])
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        act_first = isinstance(b, np.ndarray)
        x, data = (a, b) if act_first else (b, a)
        if node.op_type == "Div":
            if not act_first:
                raise imp.unsupported(node, "divides a constant by a computed tensor")
            data = 1.0 / data.astype(np.float64)
        imp.set(node, _binary_with_constant(imp, kind, x, data, act_first, node.output[0]))
        return
    if node.op_type == "Div":
        raise imp.unsupported(node, "divides two computed tensors")
    _computed_pair(imp, node, kind, a, b)


@converter("Max", "Min")
def _maximum_minimum(imp: _Importer, node: onnx.NodeProto) -> None:
    kind = OpKind.MAXIMUM if node.op_type == "Max" else OpKind.MINIMUM
    if len(node.input) != 2:
        raise imp.unsupported(node, f"takes {len(node.input)} operands; mcuflow takes two")
    a, b = (imp.values[name] for name in node.input)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        act_first = isinstance(b, np.ndarray)
        x, data = (a, b) if act_first else (b, a)
        imp.set(node, _binary_with_constant(imp, kind, x, data, act_first, node.output[0]))
        return
    _computed_pair(imp, node, kind, a, b)


def _common_layout(imp: _Importer, node: onnx.NodeProto, a: _Act, b: _Act) -> tuple[_Act, _Act]:
    """Both operands in one axis order (the one with more elements keeps its own)."""
    if len(a.shape) != len(b.shape):
        raise imp.unsupported(node, f"broadcasts operands of ranks {len(a.shape)} and "
                              f"{len(b.shape)}; give them equal ranks")
    if a.perm == b.perm and (a.features is None) == (b.features is None) and (
            a.features is None or np.array_equal(a.features, b.features)):
        return a, b
    if math.prod(a.shape) >= math.prod(b.shape):
        return a, imp.to_layout(node, b, a.perm)
    return imp.to_layout(node, a, b.perm), b


@converter("Gemm")
def _gemm(imp: _Importer, node: onnx.NodeProto) -> None:
    attrs = imp.attrs(node)
    x = imp.act(node)
    weights = imp.const(node, 1, "weights")
    if attrs.get("transA", 0) or weights is None or len(x.shape) != 2 or weights.ndim != 2:
        raise imp.unsupported(node, "must multiply a [N, K] tensor by constant weights")
    weights = (weights if attrs.get("transB", 0) else weights.T) * float(attrs.get("alpha", 1.0))
    bias = imp.const(node, 2, "bias")
    if bias is not None:
        bias = np.broadcast_to(bias * float(attrs.get("beta", 1.0)), (1, weights.shape[0]))
    _fully_connected(imp, node, x, weights, None if bias is None else bias[0])


@converter("MatMul")
def _matmul(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.act(node)
    weights = imp.const(node, 1, "second operand")
    if weights is None or weights.ndim != 2 or len(x.shape) < 2:
        raise imp.unsupported(node, "must multiply a computed tensor by a 2-D constant")
    _fully_connected(imp, node, x, weights.T, None)


def _fully_connected(imp: _Importer, node: onnx.NodeProto, x: _Act, weights: np.ndarray,
                     bias: np.ndarray | None) -> None:
    """FULLY_CONNECTED with weights [O, K]; a flattened NCHW input permutes the columns."""
    if x.features is not None:
        weights = weights[:, x.features]
    elif x.perm != tuple(range(len(x.shape))):
        x = imp.plain(x, node)
    inputs = [x.name, imp.constant(f"{node.output[0]}/weights", weights)]
    if bias is not None:
        inputs.append(imp.constant(f"{node.output[0]}/bias", bias))
    keep = len(x.shape) > 2
    shape = (*x.shape[:-1], weights.shape[0])
    result = imp.emit(OpKind.FULLY_CONNECTED, inputs, FullyConnectedAttrs(keep_num_dims=keep), x,
                      node.output[0], shape, tuple(range(len(shape))))
    imp.set(node, result)


@converter("Concat")
def _concat(imp: _Importer, node: onnx.NodeProto) -> None:
    values = [imp.values[name] for name in node.input]
    first = next(v for v in values if isinstance(v, _Act))
    axis = int(imp.attrs(node)["axis"]) % len(first.shape)
    if first.features is not None:
        raise imp.unsupported(node, "concatenates a flattened NCHW tensor")
    names = []
    for value in values:
        if isinstance(value, np.ndarray):
            names.append(imp.constant(f"{node.output[0]}/part", value.transpose(first.perm)))
        else:
            names.append(imp.to_layout(node, value, first.perm).name)
    shape = tuple(sum(v.shape[axis] for v in values) if i == axis else d
                  for i, d in enumerate(first.shape))
    attrs = ConcatenationAttrs(first.perm.index(axis))
    imp.set(node, imp.emit(OpKind.CONCATENATION, names, attrs, first, node.output[0], shape))


def _reshape_to(imp: _Importer, node: onnx.NodeProto, x: _Act, target: tuple[int, ...]) -> None:
    """RESHAPE in ONNX's order; flattening NCHW to [N, K] keeps NHWC order and notes `features`."""
    if x.features is not None and target == x.shape:
        imp.set(node, x)
        return
    identity = tuple(range(len(x.shape)))
    if not _free(x, identity) and len(target) == 2 and x.features is None and x.perm[0] == 0 and \
            target[0] == x.shape[0]:
        order = np.arange(target[1]).reshape(x.shape[1:]).transpose([p - 1 for p in x.perm[1:]])
        result = imp.emit(OpKind.RESHAPE, [x.name], ReshapeAttrs(target), x, node.output[0],
                          target, (0, 1), order.reshape(-1))
        imp.set(node, result)
        return
    x = imp.plain(x, node)
    perm = tuple(range(len(target)))
    imp.set(node, imp.emit(OpKind.RESHAPE, [x.name], ReshapeAttrs(target), x, node.output[0],
                           target, perm))


def _resolve_shape(imp: _Importer, node: onnx.NodeProto, x: _Act, target: list[int],
                   allow_zero: bool) -> tuple[int, ...]:
    shape = [x.shape[i] if d == 0 and not allow_zero and i < len(x.shape) else d
             for i, d in enumerate(target)]
    size = math.prod(x.shape)
    if shape.count(-1) == 1:
        known = math.prod(d for d in shape if d != -1)
        shape[shape.index(-1)] = size // known if known else 0
    if any(d < 0 for d in shape) or math.prod(shape) != size:
        raise ModelFormatError(f"{imp.label}: {node.op_type} '{node.name}' cannot reshape "
                               f"{x.shape} to {target}", _HINT)
    return tuple(shape)


@converter("Reshape")
def _reshape(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.act(node)
    target = imp.listed(node, 1, "shape")
    if target is None:
        raise imp.unsupported(node, "has no shape input")
    allow_zero = bool(imp.attrs(node).get("allowzero", 0))
    _reshape_to(imp, node, x, _resolve_shape(imp, node, x, target, allow_zero))


@converter("Flatten")
def _flatten(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.act(node)
    axis = int(imp.attrs(node).get("axis", 1)) % (len(x.shape) + 1)
    _reshape_to(imp, node, x, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))


@converter("Squeeze", "Unsqueeze")
def _squeeze(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.act(node)
    axes_input = imp.listed(node, 1, "axes")
    axes = imp.attrs(node).get("axes") if axes_input is None else axes_input
    if node.op_type == "Squeeze":
        rank = len(x.shape)
        dropped = {int(a) % rank for a in axes} if axes else {
            i for i, d in enumerate(x.shape) if d == 1}
        target = tuple(d for i, d in enumerate(x.shape) if i not in dropped)
        remaining = [i for i in range(rank) if i not in dropped]
        moved = {old: new for new, old in enumerate(remaining)}
    else:
        rank = len(x.shape) + len(axes)
        added = {int(a) % rank for a in axes}
        if len(added) != len(axes):
            raise ModelFormatError(f"{imp.label}: Unsqueeze '{node.name}' repeats an axis in "
                                   f"{[int(a) for a in axes]}", _HINT)
        dims = iter(x.shape)
        target = tuple(1 if i in added else next(dims) for i in range(rank))
        moved = dict(enumerate(i for i in range(rank) if i not in added))
    if not _unit_axes_only(imp, node, x, target, moved):
        _reshape_to(imp, node, x, target)


def _unit_axes_only(imp: _Importer, node: onnx.NodeProto, x: _Act, target: tuple[int, ...],
                    moved: dict[int, int]) -> bool:
    """Add or drop unit axes without moving data, into a channels-last layout when one fits.

    `moved` maps each of x's remaining logical axes to its axis in `target`. False when no
    layout keeps x's physical order of non-unit axes (then a plain RESHAPE is needed).
    """
    if x.features is not None:
        return False
    order = [moved[a] for a in x.perm if x.shape[a] != 1]
    rank = len(target)
    layouts = {4: (NHWC,), 3: (CHANNELS_LAST_1D,)}.get(rank, ()) + (tuple(range(rank)),)
    for perm in layouts:
        if [a for a in perm if target[a] != 1] == order:
            physical = tuple(target[p] for p in perm)
            imp.set(node, imp.emit(OpKind.RESHAPE, [x.name], ReshapeAttrs(physical), x,
                                   node.output[0], target, perm))
            return True
    return False


@converter("Transpose")
def _transpose(imp: _Importer, node: onnx.NodeProto) -> None:
    """A Transpose moves no data: it only renames which logical axis each IR axis holds."""
    x = imp.act(node)
    if x.features is not None:
        raise imp.unsupported(node, "transposes a flattened NCHW tensor")
    rank = len(x.shape)
    order = tuple(int(p) for p in imp.attrs(node).get("perm", range(rank - 1, -1, -1)))
    if sorted(order) != list(range(rank)):
        raise ModelFormatError(f"{imp.label}: Transpose '{node.name}' has perm {order}", _HINT)
    perm = tuple(order.index(p) for p in x.perm)
    imp.set(node, _Act(x.name, tuple(x.shape[p] for p in order), perm))


@converter("Pad")
def _pad(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.act(node)
    if x.features is not None:
        raise imp.unsupported(node, "pads a flattened NCHW tensor")
    attrs = imp.attrs(node)
    pads = imp.listed(node, 1, "pads")
    pads = list(attrs.get("pads", ())) if pads is None else pads
    value = imp.const(node, 2, "constant value")
    value = float(attrs.get("value", 0.0)) if value is None else float(value.reshape(-1)[0])
    rank = len(x.shape)
    if _text(attrs.get("mode", "constant")) != "constant" or value != 0.0 or len(pads) != 2 * rank \
            or min(pads) < 0 or len(node.input) > 3 and node.input[3]:
        raise imp.unsupported(node, "must pad every axis with zeros (constant mode, value 0)")
    logical = [(int(pads[i]), int(pads[i + rank])) for i in range(rank)]
    attrs_ir = PadAttrs(tuple(logical[p] for p in x.perm))
    shape = tuple(d + a + b for d, (a, b) in zip(x.shape, logical, strict=True))
    imp.set(node, imp.emit(OpKind.PAD, [x.name], attrs_ir, x, node.output[0], shape))


def _slice_bounds(imp: _Importer, node: onnx.NodeProto) -> tuple[list, list, list | None]:
    """Starts, ends and axes: inputs from opset 10 (steps must be 1), attributes before."""
    if imp.opset < 10:
        attrs = imp.attrs(node)
        starts, ends, axes = attrs.get("starts"), attrs.get("ends"), attrs.get("axes")
    else:
        starts, ends = imp.listed(node, 1, "starts"), imp.listed(node, 2, "ends")
        axes, steps = imp.listed(node, 3, "axes"), imp.listed(node, 4, "steps")
        if steps is not None and any(int(step) != 1 for step in steps):
            raise imp.unsupported(node, f"has steps {[int(v) for v in steps]}; mcuflow slices "
                                        "with steps of 1")
    if starts is None or ends is None or len(ends) != len(starts) or (
            axes is not None and len(axes) != len(starts)):
        raise ModelFormatError(f"{imp.label}: Slice '{node.name}' needs starts and ends (and "
                               "axes) of one length", _HINT)
    return list(starts), list(ends), axes


@converter("Slice")
def _slice(imp: _Importer, node: onnx.NodeProto) -> None:
    """SLICE; starts and ends are clamped to each axis, as ONNX defines them."""
    x = imp.act(node)
    if x.features is not None:
        raise imp.unsupported(node, "slices a flattened NCHW tensor")
    starts, ends, axes = _slice_bounds(imp, node)
    rank = len(x.shape)
    axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
    if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
        raise ModelFormatError(f"{imp.label}: Slice '{node.name}' has axes {axes} for rank "
                               f"{rank}", _HINT)
    begin, end = [0] * rank, list(x.shape)
    for start, stop, axis in zip(starts, ends, axes, strict=True):
        extent = x.shape[axis % rank]
        begin[axis % rank], end[axis % rank] = (
            min(max(int(v) + extent if v < 0 else int(v), 0), extent) for v in (start, stop))
    size = [stop - start for start, stop in zip(begin, end, strict=True)]
    if min(size) < 1:
        raise imp.unsupported(node, f"has an empty output (starts {starts}, ends {ends})")
    attrs = SliceAttrs(tuple(begin[p] for p in x.perm), tuple(size[p] for p in x.perm))
    imp.set(node, imp.emit(OpKind.SLICE, [x.name], attrs, x, node.output[0], tuple(size)))


@converter("Identity", "Dropout", "Cast")
def _identity(imp: _Importer, node: onnx.NodeProto) -> None:
    if node.op_type == "Cast" and imp.attrs(node).get("to") not in _FLOAT_TYPES:
        raise imp.unsupported(node, "casts a computed tensor to a non-float type")
    if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1]:
        raise imp.unsupported(node, "outputs its mask")
    imp.set(node, imp.act(node))
