"""Write an IR Graph as a TFLite flatbuffer (schema version 3) that LiteRT and TFLM can run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import flatbuffers
import numpy as np
import tflite

from mcuflow.frontends.tflite_schema import (
    BUILTIN_OF_KIND,
    FILE_IDENTIFIER,
    FUSED_OF_ACTIVATION,
    PLACEHOLDER_FOR_GREATER_OP_CODES,
    SCHEMA_VERSION,
    TENSOR_TYPE_OF_DTYPE,
    TFLITE_OF_PADDING,
)
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import (
    ConcatenationAttrs,
    Conv2DAttrs,
    DepthwiseConv2DAttrs,
    ElementwiseAttrs,
    FullyConnectedAttrs,
    LeakyReluAttrs,
    MeanAttrs,
    OpAttrs,
    OpKind,
    PadAttrs,
    Pool2DAttrs,
    ReshapeAttrs,
    SoftmaxAttrs,
    SqueezeAttrs,
)
from mcuflow.ir.quantization import QuantParams
from mcuflow.ir.registry import OpTable
from mcuflow.ir.verify import GraphInvariantError

NO_TENSOR = -1
_ZERO_BIAS_KINDS = (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D)
BUFFER_ALIGNMENT = 16

Builder = flatbuffers.Builder
OptionsWriter = Callable[[Builder, OpAttrs], tuple[int, int]]


def write_tflite(graph: Graph) -> bytes:
    """Serialise `graph` as a .tflite flatbuffer (identifier TFL3, schema version 3).

    Attribute-held constant inputs (RESHAPE shape, PAD paddings, MEAN axes) are materialised as
    int32 constant tensors. A missing fully-connected bias is written as the optional index -1;
    LiteRT's convolutions require a bias, so a missing conv bias is written as a zero constant.
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
    opcodes = [_operator_code(builder, BUILTIN_OF_KIND[kind]) for kind in layout.kinds]
    model = _model(builder, opcodes, subgraph, buffers, graph.name)
    builder.Finish(model, file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


@dataclass
class _FlatOp:
    """An operator as written: tensor indices (with -1 for absent optional inputs)."""

    source: Operator
    inputs: list[int]
    outputs: list[int]


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
            inputs += layout.extra_inputs(op)
            outputs = [layout.lookup(name, op) for name in op.outputs]
            layout.ops.append(_FlatOp(op, inputs, outputs))
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

    def extra_inputs(self, op: Operator) -> list[int]:
        """Inputs TFLite expects beyond the IR's: attribute constants or the -1 optional bias."""
        if op.kind is OpKind.FULLY_CONNECTED and len(op.inputs) == 2:
            return [NO_TENSOR]
        if op.kind in _ZERO_BIAS_KINDS and len(op.inputs) == 2:
            return [self.add(self.zero_bias(op))]
        make = _ATTRIBUTE_INPUTS.get(op.kind)
        if make is None:
            return []
        suffix, values = make(op.attrs)
        name = self.unique_name(f"{op.outputs[0]}/{suffix}")
        tensor = Tensor(name, values.shape, DType.INT32, data=values)
        return [self.add(tensor)]

    def zero_bias(self, op: Operator) -> Tensor:
        """An all-zero bias for a convolution the IR holds without one."""
        x, weights = (self.tensors[self.index[name]] for name in op.inputs)
        channels = weights.shape[0] if op.kind is OpKind.CONV_2D else weights.shape[3]
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


def _int32(values: object) -> np.ndarray:
    """A little-endian int32 array."""
    return np.asarray(values, dtype="<i4")


_ATTRIBUTE_INPUTS: dict[OpKind, Callable[[OpAttrs], tuple[str, np.ndarray]]] = {
    OpKind.RESHAPE: lambda a: ("shape", _int32(a.new_shape)),
    OpKind.PAD: lambda a: ("paddings", _int32(a.paddings).reshape(len(a.paddings), 2)),
    OpKind.MEAN: lambda a: ("axes", _int32(a.axes)),
}


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
    """A Tensor table."""
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
    return tflite.TensorEnd(builder)


def _operator(builder: Builder, layout: _Layout, flat: _FlatOp) -> int:
    """An Operator table with its builtin options."""
    op = flat.source
    inputs = _numpy_vector(builder, flat.inputs, "<i4")
    outputs = _numpy_vector(builder, flat.outputs, "<i4")
    write_options = _OPTIONS_WRITERS.get(op.kind)
    options = write_options(builder, op.attrs) if write_options is not None else None
    tflite.OperatorStart(builder)
    tflite.OperatorAddOpcodeIndex(builder, layout.kinds.index(op.kind))
    tflite.OperatorAddInputs(builder, inputs)
    tflite.OperatorAddOutputs(builder, outputs)
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


def _operator_code(builder: Builder, code: int) -> int:
    """An OperatorCode with both the deprecated byte code and the extended code."""
    tflite.OperatorCodeStart(builder)
    deprecated = min(code, PLACEHOLDER_FOR_GREATER_OP_CODES)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(builder, deprecated)
    tflite.OperatorCodeAddBuiltinCode(builder, code)
    tflite.OperatorCodeAddVersion(builder, 1)
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


def _conv_options(builder: Builder, a: Conv2DAttrs) -> tuple[int, int]:
    tflite.Conv2DOptionsStart(builder)
    tflite.Conv2DOptionsAddPadding(builder, TFLITE_OF_PADDING[a.padding])
    tflite.Conv2DOptionsAddStrideW(builder, a.stride_w)
    tflite.Conv2DOptionsAddStrideH(builder, a.stride_h)
    tflite.Conv2DOptionsAddDilationWFactor(builder, a.dilation_w)
    tflite.Conv2DOptionsAddDilationHFactor(builder, a.dilation_h)
    tflite.Conv2DOptionsAddFusedActivationFunction(builder, FUSED_OF_ACTIVATION[a.activation])
    return tflite.BuiltinOptions.Conv2DOptions, tflite.Conv2DOptionsEnd(builder)


def _depthwise_options(builder: Builder, a: DepthwiseConv2DAttrs) -> tuple[int, int]:
    tflite.DepthwiseConv2DOptionsStart(builder)
    tflite.DepthwiseConv2DOptionsAddPadding(builder, TFLITE_OF_PADDING[a.padding])
    tflite.DepthwiseConv2DOptionsAddStrideW(builder, a.stride_w)
    tflite.DepthwiseConv2DOptionsAddStrideH(builder, a.stride_h)
    tflite.DepthwiseConv2DOptionsAddDepthMultiplier(builder, a.depth_multiplier)
    tflite.DepthwiseConv2DOptionsAddDilationWFactor(builder, a.dilation_w)
    tflite.DepthwiseConv2DOptionsAddDilationHFactor(builder, a.dilation_h)
    fused = FUSED_OF_ACTIVATION[a.activation]
    tflite.DepthwiseConv2DOptionsAddFusedActivationFunction(builder, fused)
    return tflite.BuiltinOptions.DepthwiseConv2DOptions, tflite.DepthwiseConv2DOptionsEnd(builder)


def _fully_connected_options(builder: Builder, a: FullyConnectedAttrs) -> tuple[int, int]:
    tflite.FullyConnectedOptionsStart(builder)
    fused = FUSED_OF_ACTIVATION[a.activation]
    tflite.FullyConnectedOptionsAddFusedActivationFunction(builder, fused)
    tflite.FullyConnectedOptionsAddKeepNumDims(builder, a.keep_num_dims)
    return tflite.BuiltinOptions.FullyConnectedOptions, tflite.FullyConnectedOptionsEnd(builder)


def _add_options(builder: Builder, a: ElementwiseAttrs) -> tuple[int, int]:
    tflite.AddOptionsStart(builder)
    tflite.AddOptionsAddFusedActivationFunction(builder, FUSED_OF_ACTIVATION[a.activation])
    return tflite.BuiltinOptions.AddOptions, tflite.AddOptionsEnd(builder)


def _sub_options(builder: Builder, a: ElementwiseAttrs) -> tuple[int, int]:
    tflite.SubOptionsStart(builder)
    tflite.SubOptionsAddFusedActivationFunction(builder, FUSED_OF_ACTIVATION[a.activation])
    return tflite.BuiltinOptions.SubOptions, tflite.SubOptionsEnd(builder)


def _mul_options(builder: Builder, a: ElementwiseAttrs) -> tuple[int, int]:
    tflite.MulOptionsStart(builder)
    tflite.MulOptionsAddFusedActivationFunction(builder, FUSED_OF_ACTIVATION[a.activation])
    return tflite.BuiltinOptions.MulOptions, tflite.MulOptionsEnd(builder)


def _pool_options(builder: Builder, a: Pool2DAttrs) -> tuple[int, int]:
    tflite.Pool2DOptionsStart(builder)
    tflite.Pool2DOptionsAddPadding(builder, TFLITE_OF_PADDING[a.padding])
    tflite.Pool2DOptionsAddStrideW(builder, a.stride_w)
    tflite.Pool2DOptionsAddStrideH(builder, a.stride_h)
    tflite.Pool2DOptionsAddFilterWidth(builder, a.filter_w)
    tflite.Pool2DOptionsAddFilterHeight(builder, a.filter_h)
    tflite.Pool2DOptionsAddFusedActivationFunction(builder, FUSED_OF_ACTIVATION[a.activation])
    return tflite.BuiltinOptions.Pool2DOptions, tflite.Pool2DOptionsEnd(builder)


def _reducer_options(builder: Builder, a: MeanAttrs) -> tuple[int, int]:
    tflite.ReducerOptionsStart(builder)
    tflite.ReducerOptionsAddKeepDims(builder, a.keep_dims)
    return tflite.BuiltinOptions.ReducerOptions, tflite.ReducerOptionsEnd(builder)


def _reshape_options(builder: Builder, a: ReshapeAttrs) -> tuple[int, int]:
    new_shape = _numpy_vector(builder, a.new_shape, "<i4")
    tflite.ReshapeOptionsStart(builder)
    tflite.ReshapeOptionsAddNewShape(builder, new_shape)
    return tflite.BuiltinOptions.ReshapeOptions, tflite.ReshapeOptionsEnd(builder)


def _squeeze_options(builder: Builder, a: SqueezeAttrs) -> tuple[int, int]:
    dims = _numpy_vector(builder, a.axes, "<i4")
    tflite.SqueezeOptionsStart(builder)
    tflite.SqueezeOptionsAddSqueezeDims(builder, dims)
    return tflite.BuiltinOptions.SqueezeOptions, tflite.SqueezeOptionsEnd(builder)


def _softmax_options(builder: Builder, a: SoftmaxAttrs) -> tuple[int, int]:
    tflite.SoftmaxOptionsStart(builder)
    tflite.SoftmaxOptionsAddBeta(builder, a.beta)
    return tflite.BuiltinOptions.SoftmaxOptions, tflite.SoftmaxOptionsEnd(builder)


def _pad_options(builder: Builder, _: PadAttrs) -> tuple[int, int]:
    tflite.PadOptionsStart(builder)
    return tflite.BuiltinOptions.PadOptions, tflite.PadOptionsEnd(builder)


def _concatenation_options(builder: Builder, a: ConcatenationAttrs) -> tuple[int, int]:
    tflite.ConcatenationOptionsStart(builder)
    tflite.ConcatenationOptionsAddAxis(builder, a.axis)
    fused = FUSED_OF_ACTIVATION[a.activation]
    tflite.ConcatenationOptionsAddFusedActivationFunction(builder, fused)
    return tflite.BuiltinOptions.ConcatenationOptions, tflite.ConcatenationOptionsEnd(builder)


def _leaky_relu_options(builder: Builder, a: LeakyReluAttrs) -> tuple[int, int]:
    tflite.LeakyReluOptionsStart(builder)
    tflite.LeakyReluOptionsAddAlpha(builder, a.alpha)
    return tflite.BuiltinOptions.LeakyReluOptions, tflite.LeakyReluOptionsEnd(builder)


def _hard_swish_options(builder: Builder, _: OpAttrs) -> tuple[int, int]:
    tflite.HardSwishOptionsStart(builder)
    return tflite.BuiltinOptions.HardSwishOptions, tflite.HardSwishOptionsEnd(builder)


def _quantize_options(builder: Builder, _: OpAttrs) -> tuple[int, int]:
    tflite.QuantizeOptionsStart(builder)
    return tflite.BuiltinOptions.QuantizeOptions, tflite.QuantizeOptionsEnd(builder)


def _dequantize_options(builder: Builder, _: OpAttrs) -> tuple[int, int]:
    tflite.DequantizeOptionsStart(builder)
    return tflite.BuiltinOptions.DequantizeOptions, tflite.DequantizeOptionsEnd(builder)


_OPTIONS_WRITERS: OpTable[OptionsWriter] = OpTable("TFLite options writer", complete=False,
                                                    entries={
    OpKind.CONV_2D: _conv_options,
    OpKind.DEPTHWISE_CONV_2D: _depthwise_options,
    OpKind.FULLY_CONNECTED: _fully_connected_options,
    OpKind.ADD: _add_options,
    OpKind.SUB: _sub_options,
    OpKind.MUL: _mul_options,
    OpKind.AVERAGE_POOL_2D: _pool_options,
    OpKind.MAX_POOL_2D: _pool_options,
    OpKind.MEAN: _reducer_options,
    OpKind.RESHAPE: _reshape_options,
    OpKind.SQUEEZE: _squeeze_options,
    OpKind.SOFTMAX: _softmax_options,
    OpKind.PAD: _pad_options,
    OpKind.CONCATENATION: _concatenation_options,
    OpKind.LEAKY_RELU: _leaky_relu_options,
    OpKind.HARD_SWISH: _hard_swish_options,
    OpKind.QUANTIZE: _quantize_options,
    OpKind.DEQUANTIZE: _dequantize_options,
})
"""Builtin options per op kind; kinds missing here (RELU, LOGISTIC, TANH...) take no options."""
