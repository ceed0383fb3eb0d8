"""Read a .tflite flatbuffer into an IR Graph, validating every index and size on the way.

Python flatbuffers has no verifier, so every count is checked against the file size before it is
used, every index against the table it points into, and every read that falls outside the file
is turned into a ModelFormatError. Nothing is allocated before its size has been checked.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tflite

from mcuflow.errors import ModelFormatError, UnsupportedModelError
from mcuflow.frontends.files import read_bounded
from mcuflow.frontends.shape_folding import fold_shape_ops
from mcuflow.frontends.tflite_checks import HINT, UNSUPPORTED_HINT, ints, op_error
from mcuflow.frontends.tflite_ops import BIAS_INDEX, KIND_OF_BUILTIN, TFLITE_OPS, Window
from mcuflow.frontends.tflite_schema import (
    DTYPE_OF_TENSOR_TYPE,
    FILE_IDENTIFIER,
    SCHEMA_VERSION,
    RawOp,
    RawSubgraph,
    RawTensor,
    builtin_name,
    tensor_type_name,
)
from mcuflow.ir.constraints import check_supported
from mcuflow.ir.graph import Graph, Operator, Tensor
from mcuflow.ir.ops import OP_DEFS, OpAttrs, OpKind
from mcuflow.ir.quantization import MAX_SCALE, MIN_SCALE, QuantParams
from mcuflow.ir.verify import GraphInvariantError, verify_graph

MAX_RANK = 8
MAX_MODEL_BYTES = 1 << 31
"""A flatbuffer's 32-bit offsets address at most 2 GiB: a larger file is not one model."""
MAX_TENSOR_BYTES = 1 << 31
MAX_ACTIVATION_BYTES = 64 << 20
"""No board has more RAM than this: a larger tensor computed at run time is an error."""
MAX_TENSORS, MAX_OPERATORS, MAX_OPERANDS = 1 << 14, 1 << 13, 1 << 16
"""Far more than any microcontroller model has; they bound the reader's work on forged counts."""
MAX_CHANNELS = 1 << 16
"""At most this many per-channel quantisation parameters per tensor."""

_TT = tflite.TensorType
# Byte sizes of the TensorTypes mcuflow cannot hold, to check their buffers all the same;
# None for types without a fixed size (their data is not checked).
_OTHER_ITEMSIZES: dict[int, int | None] = {
    _TT.FLOAT16: 2,
    _TT.BFLOAT16: 2,
    _TT.UINT16: 2,
    _TT.UINT32: 4,
    _TT.UINT64: 8,
    _TT.FLOAT64: 8,
    _TT.COMPLEX64: 8,
    _TT.COMPLEX128: 16,
    _TT.STRING: None,
    _TT.RESOURCE: None,
    _TT.VARIANT: None,
    _TT.INT4: None,
}

_OPTIONS_CLASS_NAMES = {
    value: name for name, value in vars(tflite.BuiltinOptions).items() if not name.startswith("_")
}


def load_int8_model(path: str | Path) -> Graph:
    """Read an int8 .tflite file and check that mcuflow supports every op in it."""
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"no such model file: {path}", hint="check the path")
    graph = read_tflite(path)
    check_supported(graph)
    return graph


def read_tflite(source: str | Path | bytes) -> Graph:
    """Read subgraph 0 of a TFLite model (a path or the file's bytes) into a verified Graph.

    Shape-only subgraphs are folded into constants; attribute inputs (RESHAPE shape, PAD
    paddings, MEAN axes) become attributes; tensors no remaining op uses are dropped. Raises
    ModelFormatError for a malformed file and one UnsupportedModelError listing every
    unsupported operator and tensor type.
    """
    data, label, path = _load(source)
    _check_header(data, label, path)
    with _corrupt_guard(label, len(data)):
        subgraph = _decode(data, label)
        fold_shape_ops(subgraph)
        _reject_unsupported(subgraph, label)
        graph = _to_graph(subgraph, (path.stem if path else "") or subgraph.name or "model", label)
    try:
        verify_graph(graph)
    except GraphInvariantError as error:
        raise ModelFormatError(f"{label} is inconsistent: {error.message}", HINT) from None
    return graph


def _load(source: str | Path | bytes) -> tuple[bytes, str, Path | None]:
    """The model's bytes, a label for messages, and the path (None for bytes)."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), "the model", None
    path = Path(source)
    data = read_bounded(path, f"model file '{path}'", "check the path and the file's permissions",
                        MAX_MODEL_BYTES, ModelFormatError)
    return data, f"'{path}'", path


_MAGIC_NAMES = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"PK\x03\x04": "a ZIP archive (a Keras .keras file?)",
    b"\x89HDF": "an HDF5 file (a Keras .h5 model?)",
    b"\x7fELF": "an ELF binary",
    b"\x1f\x8b": "a gzip archive",
    b"%PDF": "a PDF document",
}
_ONNX_SECOND_FIELDS = (0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A, 0x42)


def _guess_format(data: bytes, path: Path | None) -> str:
    """A phrase naming what a non-TFLite file looks like, or ''."""
    for magic, name in _MAGIC_NAMES.items():
        if data.startswith(magic):
            return f" (it looks like {name})"
    onnx_suffix = path is not None and path.suffix.lower() == ".onnx"
    if onnx_suffix or (data[0] == 0x08 and data[2] in _ONNX_SECOND_FIELDS):
        return " (it looks like an ONNX model: read it with the ONNX frontend)"
    return ""


def _check_header(data: bytes, label: str, path: Path | None) -> None:
    """Reject empty, tiny and foreign files before touching the flatbuffer."""
    if not data:
        raise ModelFormatError(f"{label} is empty (0 bytes)", HINT)
    if len(data) < 8:
        raise ModelFormatError(
            f"{label} is truncated: {len(data)} bytes cannot hold a TFLite header", HINT
        )
    identifier = data[4:8]
    if identifier != FILE_IDENTIFIER:
        raise ModelFormatError(
            f"{label} is not a TFLite model: its file identifier is {identifier!r}, not "
            f"b'TFL3'{_guess_format(data, path)}",
            "pass a .tflite file produced by the TFLite converter",
        )
    root = struct.unpack_from("<I", data, 0)[0]
    if root + 4 > len(data):
        raise ModelFormatError(
            f"{label} is truncated or corrupt: its root table offset {root} lies beyond the "
            f"{len(data)}-byte file",
            HINT,
        )


@contextmanager
def _corrupt_guard(label: str, size: int) -> Iterator[None]:
    """Turn out-of-bounds flatbuffer reads into a ModelFormatError."""
    try:
        yield
    except (struct.error, IndexError, ValueError, TypeError, OverflowError) as error:
        raise ModelFormatError(
            f"{label} is truncated or corrupt: a flatbuffer read fell outside the {size}-byte "
            f"file ({error})",
            HINT,
        ) from None


_MAX_TABLES = {"tensors": MAX_TENSORS, "operators": MAX_OPERATORS,
               "operator codes": MAX_OPERATORS}


def _table_count(count: int, data: bytes, label: str, what: str) -> int:
    """A vector length checked against the file size (each table offset takes 4 bytes)."""
    if count * 4 > len(data):
        raise ModelFormatError(
            f"{label} is truncated or corrupt: it claims {count} {what}, more than its "
            f"{len(data)} bytes can hold",
            HINT,
        )
    limit = _MAX_TABLES.get(what, count)
    if count > limit:
        raise ModelFormatError(
            f"{label} has {count} {what}; mcuflow reads at most {limit}",
            "no microcontroller model comes close: check that the file is the model you meant",
        )
    return count


@dataclass
class _Budget:
    """The work a file of `size` bytes may cause, unless its tables share bytes (none does).

    Every shape, quantisation and operand value takes at least 4 bytes of the file, and every
    constant at most its buffer's bytes (buffers may be shared, so twice the file is allowed):
    forged files that point many tables at the same bytes are stopped before they cost more.
    """

    size: int
    label: str
    values: int = 0
    constant_bytes: int = 0

    def spend_values(self, count: int) -> None:
        """Account `count` vector values about to be decoded."""
        self.values += count
        if self.values > self.size // 4:
            raise ModelFormatError(
                f"{self.label} is corrupt: its shapes, quantisation parameters and operands "
                f"hold more values than its {self.size} bytes can store",
                HINT,
            )

    def spend_constant(self, nbytes: int) -> None:
        """Account `nbytes` of constant data about to be decoded."""
        self.constant_bytes += nbytes
        if self.constant_bytes > 2 * self.size:
            raise ModelFormatError(
                f"{self.label} is corrupt: its constant tensors add up to more than twice its "
                f"{self.size} bytes",
                HINT,
            )


def _tensor_values(fb: tflite.Tensor) -> int:
    """The number of shape and quantisation values of a tensor table."""
    quant = fb.Quantization()
    return fb.ShapeLength() + (quant.ScaleLength() + quant.ZeroPointLength() if quant else 0)


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", errors="replace") if raw else ""


def _decode(data: bytes, label: str) -> RawSubgraph:
    """Decode and validate subgraph 0 with its tensors, constants and operators."""
    model = tflite.Model.GetRootAs(data, 0)
    version = model.Version()
    if version != SCHEMA_VERSION:
        raise ModelFormatError(
            f"{label} has TFLite schema version {version}; mcuflow reads version "
            f"{SCHEMA_VERSION}",
            "convert the model with a current TFLite converter",
        )
    if _table_count(model.SubgraphsLength(), data, label, "subgraphs") == 0:
        raise ModelFormatError(f"{label} has no subgraph", HINT)
    n_buffers = _table_count(model.BuffersLength(), data, label, "buffers")
    opcodes = [
        _opcode(model.OperatorCodes(i))
        for i in range(_table_count(model.OperatorCodesLength(), data, label, "operator codes"))
    ]
    fb_subgraph = model.Subgraphs(0)
    budget = _Budget(len(data), label)
    tensors = _decode_tensors(model, fb_subgraph, n_buffers, data, budget)
    _dedupe_names(tensors)
    ops = _decode_operators(fb_subgraph, opcodes, tensors, data, budget)
    budget.spend_values(fb_subgraph.InputsLength() + fb_subgraph.OutputsLength())
    inputs = _graph_ends(ints(fb_subgraph.InputsAsNumpy()), tensors, label, "input")
    outputs = _graph_ends(ints(fb_subgraph.OutputsAsNumpy()), tensors, label, "output")
    if not outputs:
        raise ModelFormatError(f"{label} has no outputs: a model's result must be a graph "
                               "output", HINT)
    return RawSubgraph(_text(fb_subgraph.Name()), tensors, ops, inputs, outputs)


def _decode_tensors(
    model: tflite.Model, fb_subgraph: tflite.SubGraph, n_buffers: int, data: bytes,
    budget: _Budget,
) -> list[RawTensor]:
    """Every tensor of the subgraph, its values and constant bytes paid from `budget`."""
    tensors = []
    for i in range(_table_count(fb_subgraph.TensorsLength(), data, budget.label, "tensors")):
        fb_tensor = fb_subgraph.Tensors(i)
        budget.spend_values(_tensor_values(fb_tensor))
        tensors.append(_tensor(model, fb_tensor, i, n_buffers, data, budget.label, budget))
    return tensors


def _decode_operators(
    fb_subgraph: tflite.SubGraph, opcodes: list[tuple[int, str]], tensors: list[RawTensor],
    data: bytes, budget: _Budget,
) -> list[RawOp]:
    """Every operator of the subgraph (at least one), its operands paid from `budget`."""
    label = budget.label
    n_ops = _table_count(fb_subgraph.OperatorsLength(), data, label, "operators")
    if n_ops == 0:
        raise ModelFormatError(f"{label} has no operators: there is nothing to compute", HINT)
    ops = []
    for i in range(n_ops):
        fb_op = fb_subgraph.Operators(i)
        operands = fb_op.InputsLength() + fb_op.OutputsLength()
        if operands > MAX_OPERANDS:
            raise ModelFormatError(
                f"{label}: op {i} has {operands} operands; mcuflow reads at most {MAX_OPERANDS}",
                HINT,
            )
        budget.spend_values(operands)
        ops.append(_operator(fb_op, i, opcodes, tensors, label))
    return ops


def _opcode(code: tflite.OperatorCode) -> tuple[int, str]:
    """(builtin code, display name); custom ops are named after their custom code.

    The version is read, though unused, so that a file cut inside it counts as truncated.
    """
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    code.Version()
    if builtin == tflite.BuiltinOperator.CUSTOM:
        return builtin, f"CUSTOM '{_text(code.CustomCode())}'"
    return builtin, builtin_name(builtin)


def _graph_ends(indices: list[int], tensors: list[RawTensor], label: str, what: str) -> list[int]:
    for index in indices:
        if not 0 <= index < len(tensors):
            raise ModelFormatError(
                f"{label}: graph {what} refers to tensor {index} but the subgraph has "
                f"{len(tensors)}",
                HINT,
            )
    return indices


def _dedupe_names(tensors: list[RawTensor]) -> None:
    """Give every tensor a unique name: `t<index>` for empty names, `_1`, `_2`... for repeats."""
    seen: set[str] = set()
    last_suffix: dict[str, int] = {}
    for tensor in tensors:
        base = tensor.name or f"t{tensor.index}"
        name, n = base, last_suffix.get(base, 0)
        while name in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name)
        last_suffix[base] = n
        tensor.name = name


def _tensor(
    model: tflite.Model,
    fb: tflite.Tensor,
    index: int,
    n_buffers: int,
    data: bytes,
    label: str,
    budget: _Budget,
) -> RawTensor:
    """Decode one tensor, its quantisation and (after size checks) its constant data."""
    name = _text(fb.Name())
    shown = name or f"t{index}"
    if fb.ShapeLength() > MAX_RANK:
        raise ModelFormatError(
            f"{label}: tensor '{shown}' has rank {fb.ShapeLength()}; at most {MAX_RANK} is "
            "supported",
            HINT,
        )
    shape = tuple(ints(fb.ShapeAsNumpy()))
    type_code = fb.Type()
    itemsize = _itemsize(type_code, shown, label)
    _check_shape(shape, itemsize or 1, shown, label)
    if fb.Sparsity() is not None:
        raise UnsupportedModelError(
            f"{label}: tensor '{shown}' is sparse; mcuflow needs dense tensors",
            "convert the model without sparsity (no tf.lite.Optimize.EXPERIMENTAL_SPARSITY)",
        )
    tensor = RawTensor(index, name, shape, type_code, variable=bool(fb.IsVariable()))
    tensor.quant = _quantization(fb.Quantization(), shape, shown, label)
    _check_zero_points(tensor, shown, label)
    buffer = fb.Buffer()
    if buffer >= n_buffers:
        raise ModelFormatError(
            f"{label}: tensor '{shown}' refers to buffer {buffer} but the model has {n_buffers}",
            HINT,
        )
    raw = _buffer_bytes(model, buffer, data, label)
    if raw.size and itemsize is not None and not tensor.variable:
        budget.spend_constant(raw.size)
        tensor.data = _constant(raw, tensor, itemsize, shown, label)
    elif (itemsize or 1) * math.prod(shape) > MAX_ACTIVATION_BYTES:
        raise ModelFormatError(
            f"{label}: tensor '{shown}' of shape {shape} would take "
            f"{(itemsize or 1) * math.prod(shape)} bytes of RAM, more than any board has "
            f"(the limit is {MAX_ACTIVATION_BYTES})",
            HINT,
        )
    return tensor


def _itemsize(type_code: int, name: str, label: str) -> int | None:
    """Bytes per element of a TensorType (None when elements have no fixed size)."""
    if type_code in DTYPE_OF_TENSOR_TYPE:
        return DTYPE_OF_TENSOR_TYPE[type_code].itemsize
    if type_code not in _OTHER_ITEMSIZES:
        raise ModelFormatError(
            f"{label}: tensor '{name}' has unknown type code {type_code}", HINT
        )
    return _OTHER_ITEMSIZES[type_code]


def _check_shape(shape: tuple[int, ...], itemsize: int, name: str, label: str) -> None:
    """Reject negative dimensions and tensors too big for any device."""
    if any(d < 0 for d in shape):
        raise ModelFormatError(
            f"{label}: tensor '{name}' has a negative dimension in its shape {shape}", HINT
        )
    nbytes = itemsize * math.prod(shape)
    if nbytes > MAX_TENSOR_BYTES:
        raise ModelFormatError(
            f"{label}: tensor '{name}' of shape {shape} would take {nbytes} bytes, an absurd "
            f"size (the limit is {MAX_TENSOR_BYTES})",
            HINT,
        )


def _buffer_bytes(model: tflite.Model, index: int, data: bytes, label: str) -> np.ndarray:
    """A uint8 view of buffer `index`: inline data, or the offset/size region of large models."""
    buffer = model.Buffers(index)
    offset, size = buffer.Offset(), buffer.Size()
    if offset > 1:
        if offset + size > len(data):
            raise ModelFormatError(
                f"{label} is truncated: buffer {index} spans bytes {offset}..{offset + size} "
                f"of a {len(data)}-byte file",
                HINT,
            )
        return np.frombuffer(data, dtype=np.uint8, count=size, offset=offset)
    raw = buffer.DataAsNumpy()
    return raw if isinstance(raw, np.ndarray) else np.empty(0, dtype=np.uint8)


def _constant(
    raw: np.ndarray, tensor: RawTensor, itemsize: int, name: str, label: str
) -> np.ndarray | None:
    """The tensor's data as a numpy array, after checking its byte length against its shape."""
    expected = itemsize * math.prod(tensor.shape)
    if raw.size != expected:
        raise ModelFormatError(
            f"{label}: tensor '{name}' has {raw.size} bytes of data, but its shape "
            f"{tensor.shape} of {tensor_type_name(tensor.type_code)} needs {expected}",
            HINT,
        )
    if tensor.dtype is None:
        return None
    little = raw.copy().view(tensor.dtype.numpy.newbyteorder("<"))
    return little.astype(tensor.dtype.numpy, copy=False).reshape(tensor.shape)


def _quantization(
    fb: tflite.QuantizationParameters | None, shape: tuple[int, ...], name: str, label: str
) -> QuantParams | None:
    """Per-tensor or per-channel parameters, or None when the tensor has no scales."""
    if fb is None:
        return None
    scales = fb.ScaleAsNumpy()
    if not isinstance(scales, np.ndarray) or scales.size == 0:
        return None
    if scales.size > MAX_CHANNELS:
        raise ModelFormatError(
            f"{label}: tensor '{name}' has {scales.size} quantisation scales; mcuflow reads at "
            f"most {MAX_CHANNELS} channels",
            HINT,
        )
    zero_points = ints(fb.ZeroPointAsNumpy()) or [0] * scales.size
    if len(zero_points) != scales.size:
        raise ModelFormatError(
            f"{label}: tensor '{name}' has {scales.size} quantisation scales but "
            f"{len(zero_points)} zero points",
            HINT,
        )
    if not np.all(np.isfinite(scales)):
        raise ModelFormatError(f"{label}: tensor '{name}' has a non-finite scale", HINT)
    out_of_range = scales[(scales < MIN_SCALE) | (scales > MAX_SCALE)]
    if out_of_range.size:
        raise ModelFormatError(
            f"{label}: tensor '{name}' has quantisation scale {float(out_of_range[0]):g}; scales "
            f"must lie between {MIN_SCALE:.3g} and {MAX_SCALE:.3g}",
            HINT,
        )
    axis = fb.QuantizedDimension()
    if scales.size > 1 and not (0 <= axis < len(shape) and shape[axis] == scales.size):
        raise ModelFormatError(
            f"{label}: tensor '{name}' of shape {shape} has {scales.size} per-channel scales "
            f"along dimension {axis}",
            HINT,
        )
    axis = axis if 0 <= axis < max(len(shape), 1) else 0
    return QuantParams(tuple(float(s) for s in scales), tuple(zero_points), axis)


def _check_zero_points(tensor: RawTensor, name: str, label: str) -> None:
    """Zero points must be values of the tensor's type (of int32 for 32-bit and other types)."""
    if tensor.quant is None:
        return
    dtype = tensor.dtype.numpy if tensor.dtype is not None else np.dtype(np.int32)
    if dtype.kind not in "iu" or dtype.itemsize > 2:
        dtype = np.dtype(np.int32)
    info = np.iinfo(dtype)
    for zero_point in tensor.quant.zero_point:
        if not info.min <= zero_point <= info.max:
            raise ModelFormatError(
                f"{label}: tensor '{name}' has zero point {zero_point}, outside the {dtype} "
                f"range [{info.min}, {info.max}]",
                HINT,
            )


def _operator(
    fb: tflite.Operator,
    index: int,
    opcodes: list[tuple[int, str]],
    tensors: list[RawTensor],
    label: str,
) -> RawOp:
    """Decode one operator; check its operator code and tensor indices."""
    opcode_index = fb.OpcodeIndex()
    if opcode_index >= len(opcodes):
        raise ModelFormatError(
            f"{label}: op {index} refers to operator code {opcode_index} but the model has "
            f"{len(opcodes)}",
            HINT,
        )
    code, name = opcodes[opcode_index]
    inputs = ints(fb.InputsAsNumpy())
    outputs = ints(fb.OutputsAsNumpy())
    intermediates = [] if fb.IntermediatesIsNone() else ints(fb.IntermediatesAsNumpy())
    for tensor in [t for t in inputs if t != -1] + outputs + intermediates:
        if not 0 <= tensor < len(tensors):
            raise ModelFormatError(
                f"{label}: op {index} ({name}) refers to tensor {tensor} but the subgraph has "
                f"{len(tensors)}",
                HINT,
            )
    return RawOp(index, code, name, inputs, outputs, _options(fb), intermediates)


def _options(fb: tflite.Operator) -> object | None:
    """The op's builtin options as the `tflite` package's typed table, or None."""
    class_name = _OPTIONS_CLASS_NAMES.get(fb.BuiltinOptionsType())
    table = fb.BuiltinOptions()
    options_class = getattr(tflite, class_name, None) if class_name else None
    if table is None or not isinstance(options_class, type):
        return None
    options = options_class()
    options.Init(table.Bytes, table.Pos)
    return options


def _reject_unsupported(subgraph: RawSubgraph, label: str) -> None:
    """One UnsupportedModelError naming every unsupported op and tensor type still present."""
    ops = Counter(op.name for op in subgraph.ops if op.code not in KIND_OF_BUILTIN)
    used = _used_tensors(subgraph)
    types = Counter(
        tensor_type_name(t.type_code)
        for t in subgraph.tensors
        if t.index in used and t.dtype is None
    )
    if not ops and not types:
        return
    parts = []
    if ops:
        listed = ", ".join(f"{name} (x{count})" for name, count in sorted(ops.items()))
        parts.append(f"{sum(ops.values())} unsupported operator(s): {listed}")
    if types:
        listed = ", ".join(f"{name} (x{count})" for name, count in sorted(types.items()))
        parts.append(f"tensors of unsupported type(s): {listed}")
    raise UnsupportedModelError(f"{label} uses " + "; and ".join(parts), UNSUPPORTED_HINT)


def _used_tensors(subgraph: RawSubgraph) -> set[int]:
    used = set(subgraph.inputs) | set(subgraph.outputs)
    for op in subgraph.ops:
        used.update(i for i in op.inputs if i >= 0)
        used.update(op.outputs)
    return used


def _to_graph(subgraph: RawSubgraph, name: str, label: str) -> Graph:
    """The IR graph: converted operators and only the tensors they (or the graph ends) use."""
    try:
        converted = [_convert(op, subgraph) for op in subgraph.ops]
    except (ModelFormatError, UnsupportedModelError) as error:
        raise type(error)(f"{label}: {error.message}", error.hint) from None
    used = set(subgraph.inputs) | set(subgraph.outputs)
    for (_, _, inputs), op in zip(converted, subgraph.ops, strict=True):
        used.update(inputs)
        used.update(op.outputs)
    graph = Graph(name)
    for tensor in subgraph.tensors:
        if tensor.index in used:
            graph.add_tensor(
                Tensor(tensor.name, tensor.shape, tensor.dtype, tensor.quant, tensor.data,
                       variable=tensor.variable)
            )
    names = [t.name for t in subgraph.tensors]
    for (kind, attrs, inputs), op in zip(converted, subgraph.ops, strict=True):
        outputs = tuple(names[i] for i in op.outputs)
        graph.operators.append(
            Operator(kind, tuple(names[i] for i in inputs), outputs, attrs, outputs[0])
        )
    graph.inputs = [names[i] for i in subgraph.inputs]
    graph.outputs = [names[i] for i in subgraph.outputs]
    return graph


def _convert(op: RawOp, subgraph: RawSubgraph) -> tuple[OpKind, OpAttrs, list[int]]:
    """(kind, typed attributes, IR input tensor indices) of a supported operator."""
    kind = KIND_OF_BUILTIN[op.code]
    form = TFLITE_OPS[kind]
    low, high = form.operands
    required = BIAS_INDEX if form.bias is not None else len(op.inputs)
    required = required if form.required is None else form.required
    absent = [k for k, i in enumerate(op.inputs[:required]) if i < 0 and k not in form.optional]
    if not low <= len(op.inputs) <= high or absent:
        raise op_error(op, f"has inputs {op.inputs}; expected {low} to {high} tensors")
    expected = OP_DEFS[kind].outputs
    if (len(op.outputs) != expected if expected else not op.outputs):
        raise op_error(op, f"has {len(op.outputs)} outputs; expected {expected or 'some'}")
    attrs, inputs = form.read(op, subgraph)
    if form.window is not None:
        _check_window(op, subgraph, form.window(attrs, op, subgraph))
    return kind, attrs, inputs


def _check_window(op: RawOp, subgraph: RawSubgraph, window: Window) -> None:
    """The input padded for the (dilated) window must fit in RAM: it grows with the window."""
    x = subgraph.tensors[op.inputs[0]].shape
    if len(x) != 4:
        return
    size = window.size
    extents = [(k - 1) * d + 1 for k, d in zip(size, window.dilations, strict=True)]
    padded = x[0] * (x[1] + extents[0]) * (x[2] + extents[1]) * x[3]
    if padded > MAX_ACTIVATION_BYTES:
        raise op_error(
            op, f"has a {size[0]}x{size[1]} window spanning {extents[0]}x{extents[1]} input "
            f"positions: its padded input of {padded} values exceeds the RAM of any board")
