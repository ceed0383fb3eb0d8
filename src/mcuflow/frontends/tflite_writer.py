"""Write an IR Graph as a TFLite flatbuffer (schema version 3) that LiteRT and TFLM can run."""

from __future__ import annotations

from dataclasses import dataclass, field

import flatbuffers
import numpy as np
import tflite

from mcuflow.frontends.tflite_ops import BIAS_INDEX, NO_TENSOR, TFLITE_OPS, HeldTensor
from mcuflow.frontends.tflite_schema import (
    FILE_IDENTIFIER,
    PLACEHOLDER_FOR_GREATER_OP_CODES,
    SCHEMA_VERSION,
    TENSOR_TYPE_OF_DTYPE,
)
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import OpKind
from mcuflow.ir.quantization import QuantParams
from mcuflow.ir.verify import GraphInvariantError

BUFFER_ALIGNMENT = 16

Builder = flatbuffers.Builder


def write_tflite(graph: Graph) -> bytes:
    """Serialise `graph` as a .tflite flatbuffer (identifier TFL3, schema version 3).

    Attribute-held constant inputs (RESHAPE shape, PAD paddings, MEAN axes) are materialised as
    int32 constant tensors. A missing bias is written as the optional index -1, or as a zero
    constant where LiteRT requires one (convolutions), as the op's TfliteOp record says.
    """
    layout = _Layout.of(graph)
    builder = flatbuffers.Builder(1024 + sum(t.nbytes for t in layout.tensors))
    buffers = [_buffer(builder, None)]
    tensors = []
    for tensor in layout.tensors:
        buffer_index = 0
        if tensor.is_constant:
            buffers.append(_buffer(builder, tensor))
            buffer_index = len(buffers) - 1
        tensors.append(_tensor(builder, tensor, buffer_index))
    operators = [_operator(builder, layout, op) for op in layout.ops]
    subgraph = _subgraph(builder, graph, layout, tensors, operators)
    opcodes = [_operator_code(builder, kind) for kind in layout.kinds]
    model = _model(builder, opcodes, subgraph, buffers, graph.name)
    builder.Finish(model, file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


@dataclass
class _FlatOp:
    """An operator as written: tensor indices (with -1 for absent optional inputs)."""

    source: Operator
    inputs: list[int]
    outputs: list[int]
    intermediates: list[int] = field(default_factory=list)


@dataclass
class _Layout:
    """The tensor table (graph tensors then materialised attribute tensors) and the op list."""

    tensors: list[Tensor] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    ops: list[_FlatOp] = field(default_factory=list)
    kinds: list[OpKind] = field(default_factory=list)

    @classmethod
    def of(cls, graph: Graph) -> _Layout:
        """Lay out every tensor of `graph` and every operator's flat input/output indices."""
        layout = cls()
        for tensor in graph.tensors.values():
            layout.add(tensor)
        for op in graph.operators:
            inputs = [layout.lookup(name, op) for name in op.inputs]
            extra = layout.extra_inputs(op)
            inputs = extra + inputs if TFLITE_OPS[op.kind].constants_first else inputs + extra
            if TFLITE_OPS[op.kind].arrange is not None:
                inputs = TFLITE_OPS[op.kind].arrange(inputs)
            inputs = _absent_optional(op, inputs)
            outputs = [layout.lookup(name, op) for name in op.outputs]
            layout.ops.append(_FlatOp(op, inputs, outputs, layout.intermediates(op)))
            if op.kind not in layout.kinds:
                layout.kinds.append(op.kind)
        return layout

    def add(self, tensor: Tensor) -> int:
        """Append `tensor` and return its index."""
        self.index[tensor.name] = len(self.tensors)
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def lookup(self, name: str, op: Operator) -> int:
        """Index of tensor `name`, read or written by `op`."""
        if name not in self.index:
            raise GraphInvariantError(
                f"op {op.name or op.kind.value!r} refers to tensor {name!r}, which the graph lacks",
                "run mcuflow.ir.verify.verify_graph on the graph before writing it",
            )
        return self.index[name]

    def intermediates(self, op: Operator) -> list[int]:
        """New tensors for the intermediates `op`'s TFLite form records (LSTM), else none."""
        form = TFLITE_OPS[op.kind].intermediates
        return [] if form is None else [self.held(op, held) for held in form(op.attrs)]

    def held(self, op: Operator, held: HeldTensor) -> int:
        """A new scalar tensor for `held`."""
        name = self.unique_name(f"{op.outputs[0]}/{held.suffix}")
        return self.add(Tensor(name, (), held.dtype, held.quant))

    def extra_inputs(self, op: Operator) -> list[int]:
        """Inputs TFLite expects beyond the IR's: attribute constants or the omitted bias."""
        form = TFLITE_OPS[op.kind]
        indices = []
        if form.bias is not None and len(op.inputs) == BIAS_INDEX:
            if form.bias.zeros_axis is None:
                indices.append(NO_TENSOR)
            else:
                indices.append(self.add(self.zero_bias(op, form.bias.zeros_axis)))
        if form.constant_inputs is None:
            return indices
        for suffix, values in form.constant_inputs(op.attrs):
            name = self.unique_name(f"{op.outputs[0]}/{suffix}")
            indices.append(self.add(Tensor(name, values.shape, DType.INT32, data=values)))
        return indices

    def zero_bias(self, op: Operator, channel_axis: int) -> Tensor:
        """An all-zero bias for a convolution the IR holds without one."""
        x, weights = (self.tensors[self.index[name]] for name in op.inputs)
        channels = weights.shape[channel_axis]
        name = self.unique_name(f"{op.outputs[0]}/bias")
        if x.quant is None or weights.quant is None:
            return Tensor(name, (channels,), x.dtype, data=np.zeros(channels, x.dtype.numpy))
        dtype = DType.INT64 if x.dtype is DType.INT16 else DType.INT32
        scales = np.broadcast_to(np.asarray(weights.quant.scale, np.float64), (channels,))
        quant = QuantParams.per_channel(scales * x.quant.scale0, np.zeros(channels, np.int64), 0)
        return Tensor(name, (channels,), dtype, quant, np.zeros(channels, dtype.numpy))

    def unique_name(self, base: str) -> str:
        """`base`, or `base_<n>` with the first n that is not yet a tensor name."""
        name, n = base, 0
        while name in self.index:
            n += 1
            name = f"{base}_{n}"
        return name


def _absent_optional(op: Operator, inputs: list[int]) -> list[int]:
    """`inputs` with -1 at the op's optional operand positions the IR omits (SVDF's bias)."""
    form = TFLITE_OPS[op.kind]
    for position in form.optional:
        if len(inputs) < form.operands[1]:
            inputs = [*inputs[:position], NO_TENSOR, *inputs[position:]]
    return inputs


def _numpy_vector(builder: Builder, values: object, dtype: str) -> int:
    """A flatbuffer vector of scalars of numpy `dtype` (little-endian)."""
    return builder.CreateNumpyVector(np.asarray(values, dtype=dtype).reshape(-1))


def _aligned_bytes(builder: Builder, data: bytes) -> int:
    """A [ubyte] vector whose payload starts on a BUFFER_ALIGNMENT boundary (schema force_align)."""
    builder.StartVector(1, len(data), BUFFER_ALIGNMENT)
    builder.head = builder.head - len(data)
    builder.Bytes[builder.head : builder.head + len(data)] = data
    return builder.EndVector()


def _buffer(builder: Builder, tensor: Tensor | None) -> int:
    """A Buffer table holding a constant's data (little-endian, of its dtype), or the empty one."""
    payload = None
    if tensor is not None and tensor.data is not None:
        little = np.ascontiguousarray(tensor.data, dtype=tensor.dtype.numpy.newbyteorder("<"))
        payload = _aligned_bytes(builder, little.tobytes())
    tflite.BufferStart(builder)
    if payload is not None:
        tflite.BufferAddData(builder, payload)
    return tflite.BufferEnd(builder)


def _quantization(builder: Builder, quant: QuantParams) -> int:
    """A QuantizationParameters table (per-tensor or per-channel along `quant.axis`)."""
    scale = _numpy_vector(builder, quant.scale, "<f4")
    zero_point = _numpy_vector(builder, quant.zero_point, "<i8")
    tflite.QuantizationParametersStart(builder)
    tflite.QuantizationParametersAddScale(builder, scale)
    tflite.QuantizationParametersAddZeroPoint(builder, zero_point)
    tflite.QuantizationParametersAddQuantizedDimension(builder, quant.axis)
    return tflite.QuantizationParametersEnd(builder)


def _tensor(builder: Builder, tensor: Tensor, buffer_index: int) -> int:
    """A Tensor table (is_variable for a state LiteRT keeps across invocations)."""
    name = builder.CreateString(tensor.name)
    shape = _numpy_vector(builder, tensor.shape, "<i4")
    quant = _quantization(builder, tensor.quant) if tensor.quant is not None else None
    tflite.TensorStart(builder)
    tflite.TensorAddShape(builder, shape)
    tflite.TensorAddType(builder, TENSOR_TYPE_OF_DTYPE[tensor.dtype])
    tflite.TensorAddBuffer(builder, buffer_index)
    tflite.TensorAddName(builder, name)
    if quant is not None:
        tflite.TensorAddQuantization(builder, quant)
    tflite.TensorAddHasRank(builder, True)
    if tensor.variable:
        tflite.TensorAddIsVariable(builder, True)
    return tflite.TensorEnd(builder)


def _operator(builder: Builder, layout: _Layout, flat: _FlatOp) -> int:
    """An Operator table with its builtin options."""
    op = flat.source
    inputs = _numpy_vector(builder, flat.inputs, "<i4")
    outputs = _numpy_vector(builder, flat.outputs, "<i4")
    intermediates = _numpy_vector(builder, flat.intermediates, "<i4") if flat.intermediates \
        else None
    write_options = TFLITE_OPS[op.kind].write
    options = write_options(builder, op.attrs) if write_options is not None else None
    tflite.OperatorStart(builder)
    tflite.OperatorAddOpcodeIndex(builder, layout.kinds.index(op.kind))
    tflite.OperatorAddInputs(builder, inputs)
    tflite.OperatorAddOutputs(builder, outputs)
    if intermediates is not None:
        tflite.OperatorAddIntermediates(builder, intermediates)
    if options is not None:
        tflite.OperatorAddBuiltinOptionsType(builder, options[0])
        tflite.OperatorAddBuiltinOptions(builder, options[1])
    return tflite.OperatorEnd(builder)


def _table_vector(builder: Builder, offsets: list[int]) -> int:
    """A vector of table offsets."""
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _subgraph(
    builder: Builder, graph: Graph, layout: _Layout, tensors: list[int], operators: list[int]
) -> int:
    """The SubGraph table."""
    tensor_vector = _table_vector(builder, tensors)
    inputs = _numpy_vector(builder, [layout.index[n] for n in graph.inputs], "<i4")
    outputs = _numpy_vector(builder, [layout.index[n] for n in graph.outputs], "<i4")
    operator_vector = _table_vector(builder, operators)
    name = builder.CreateString(graph.name)
    tflite.SubGraphStart(builder)
    tflite.SubGraphAddTensors(builder, tensor_vector)
    tflite.SubGraphAddInputs(builder, inputs)
    tflite.SubGraphAddOutputs(builder, outputs)
    tflite.SubGraphAddOperators(builder, operator_vector)
    tflite.SubGraphAddName(builder, name)
    return tflite.SubGraphEnd(builder)


def _operator_code(builder: Builder, kind: OpKind) -> int:
    """An OperatorCode with both the deprecated byte code and the extended code."""
    code, version = TFLITE_OPS[kind].builtin, TFLITE_OPS[kind].version
    tflite.OperatorCodeStart(builder)
    deprecated = min(code, PLACEHOLDER_FOR_GREATER_OP_CODES)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(builder, deprecated)
    tflite.OperatorCodeAddBuiltinCode(builder, code)
    tflite.OperatorCodeAddVersion(builder, version)
    return tflite.OperatorCodeEnd(builder)


def _model(
    builder: Builder, opcodes: list[int], subgraph: int, buffers: list[int], name: str
) -> int:
    """The root Model table."""
    opcode_vector = _table_vector(builder, opcodes)
    subgraph_vector = _table_vector(builder, [subgraph])
    buffer_vector = _table_vector(builder, buffers)
    description = builder.CreateString(f"mcuflow: {name}")
    tflite.ModelStart(builder)
    tflite.ModelAddVersion(builder, SCHEMA_VERSION)
    tflite.ModelAddOperatorCodes(builder, opcode_vector)
    tflite.ModelAddSubgraphs(builder, subgraph_vector)
    tflite.ModelAddDescription(builder, description)
    tflite.ModelAddBuffers(builder, buffer_vector)
    return tflite.ModelEnd(builder)
