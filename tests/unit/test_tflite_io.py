"""TFLite reader and writer: LiteRT runs what we write, and read+write loses nothing."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import flatbuffers
import numpy as np
import pytest
import tflite

from mcuflow.errors import McuflowError, ModelFormatError, UnsupportedModelError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import (
    Conv2DAttrs,
    DepthwiseConv2DAttrs,
    FullyConnectedAttrs,
    MeanAttrs,
    NoAttrs,
    OpKind,
    SliceAttrs,
    SoftmaxAttrs,
    infer_output_shapes,
)
from mcuflow.ir.verify import verify_graph
from tests.codegen import cases as codegen_cases
from tests.support import (
    FLOAT_MODELS,
    INT8_MODELS,
    SHARED_MODELS,
    litert_interpreter,
    litert_invoke,
    random_input,
)

TT = tflite.TensorType
OP = tflite.BuiltinOperator


# --------------------------------------------------------------------------- helpers


def structure(graph: Graph) -> tuple:
    """Everything a graph holds, in a comparable form (constant data as bytes)."""
    tensors = {
        name: (
            t.shape,
            t.dtype,
            t.quant,
            None if t.data is None else (t.data.dtype.str, t.data.tobytes()),
        )
        for name, t in graph.tensors.items()
    }
    ops = [(op.kind, op.inputs, op.outputs, op.attrs, op.name) for op in graph.operators]
    return tuple(graph.inputs), tuple(graph.outputs), ops, tensors


def random_inputs(model: bytes, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    details = litert_interpreter(model).get_input_details()
    return [random_input(tuple(d["shape"]), d["dtype"], rng) for d in details]


def assert_same_outputs(first: bytes, second: bytes, seeds: range = range(2)) -> None:
    for seed in seeds:
        inputs = random_inputs(first, seed)
        for a, b in zip(litert_invoke(first, inputs), litert_invoke(second, inputs), strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- graphs per OpKind


def _conv(b: GraphBuilder) -> None:
    x = b.input((1, 9, 9, 3), 0.04, 3)
    y = b.conv2d(x, 4, (3, 3), stride=2, padding=Padding.SAME, activation=Activation.RELU6)
    b.output(b.conv2d(y, 5, (2, 2), dilation=2, padding=Padding.VALID, bias=False))


def _depthwise(b: GraphBuilder) -> None:
    x = b.input((1, 8, 8, 3))
    y = b.depthwise_conv2d(x, (3, 3), depth_multiplier=2, padding=Padding.VALID)
    b.output(b.depthwise_conv2d(y, (3, 3), stride=2, bias=False, activation=Activation.RELU))


def _fully_connected(b: GraphBuilder) -> None:
    x = b.input((2, 3, 6))
    y = b.fully_connected(x, 5, keep_num_dims=True, per_channel=True)
    b.output(b.fully_connected(b.reshape(y, (-1, 5)), 4, bias=False, activation=Activation.RELU))


def _elementwise(b: GraphBuilder) -> None:
    x = b.input((1, 4, 4, 3))
    c = b.constant_int8((1, 1, 1, 3))
    y = b.mul(b.sub(b.add(x, c, Activation.RELU), x), c)
    y = b.op(OpKind.MAXIMUM, [y, c], NoAttrs(), b.quant(y))
    b.output(b.op(OpKind.MINIMUM, [x, y], NoAttrs(), b.quant(x)))


def _pools(b: GraphBuilder) -> None:
    x = b.input((1, 8, 8, 2))
    y = b.average_pool2d(x, 3, 2, Padding.SAME)
    b.output(b.max_pool2d(y, 2, 1, Padding.VALID, Activation.RELU6))


def _mean_squeeze(b: GraphBuilder) -> None:
    x = b.input((1, 5, 5, 4))
    y = b.mean(x, (1, 2), keep_dims=True, quant=None)
    b.output(b.squeeze(y, (1, 2)), b.mean(x, (3,)))


def _softmax(b: GraphBuilder) -> None:
    x = b.input((1, 10), 0.1, -5)
    b.output(b.softmax(x, beta=0.5))


def _pad_concat(b: GraphBuilder) -> None:
    x = b.input((1, 4, 4, 2))
    y = b.pad(x, ((0, 0), (1, 2), (2, 1), (0, 0)))
    z = b.pad(x, ((0, 0), (0, 3), (3, 0), (0, 0)))
    joined = b.concatenation([y, z], axis=-1)
    b.output(b.op(OpKind.SLICE, [joined], SliceAttrs((0, 1, 2, 1), (1, 5, 4, 3)), b.quant(x)))


def _activations(b: GraphBuilder) -> None:
    x = b.input((1, 16), 0.08, 7)
    outputs = [b.logistic(x), b.tanh(x), b.hard_swish(x), b.relu(x), b.relu6(x)]
    b.output(*outputs, b.leaky_relu(x, 0.25))


def _quantize(b: GraphBuilder) -> None:
    x = b.input((1, 12), dtype=DType.FLOAT32)
    q = b.quantize(x, 0.03, -4)
    r = b.quantize(q, 0.05, 10)
    b.output(r, b.dequantize(r))


def _float_graph() -> Graph:
    """A float32 graph: conv, depthwise without bias, mean, FC without bias, softmax."""
    rng = np.random.default_rng(3)
    graph = Graph("float_model")

    def add(name: str, shape: tuple[int, ...], data: bool = False) -> str:
        values = rng.standard_normal(shape).astype(np.float32) if data else None
        graph.add_tensor(Tensor(name, shape, DType.FLOAT32, data=values))
        return name

    def op(kind: OpKind, inputs: list[str], attrs: object, out: str) -> str:
        operator = Operator(kind, tuple(inputs), (out,), attrs, out)
        add(out, infer_output_shapes(graph, operator)[0])
        graph.operators.append(operator)
        return out

    x = add("x", (1, 8, 8, 3))
    graph.inputs.append(x)
    y = op(OpKind.CONV_2D, [x, add("w", (4, 3, 3, 3), True), add("b", (4,), True)],
           Conv2DAttrs(padding=Padding.SAME, activation=Activation.RELU), "conv")
    y = op(OpKind.DEPTHWISE_CONV_2D, [y, add("dw", (1, 3, 3, 4), True)],
           DepthwiseConv2DAttrs(stride_h=2, stride_w=2), "dwconv")
    y = op(OpKind.MEAN, [y], MeanAttrs((1, 2)), "mean")
    y = op(OpKind.FULLY_CONNECTED, [y, add("fc_w", (6, 4), True)], FullyConnectedAttrs(), "fc")
    graph.outputs.append(op(OpKind.SOFTMAX, [y], SoftmaxAttrs(1.0), "probs"))
    return graph


def _built(make: Callable[[GraphBuilder], None]) -> Callable[[], Graph]:
    def build() -> Graph:
        builder = GraphBuilder(make.__name__.strip("_"), seed=7)
        make(builder)
        return builder.build()

    return build


CASES: dict[str, Callable[[], Graph]] = {
    "conv": _built(_conv),
    "depthwise": _built(_depthwise),
    "fully_connected": _built(_fully_connected),
    "elementwise": _built(_elementwise),
    "pools": _built(_pools),
    "mean_squeeze": _built(_mean_squeeze),
    "softmax": _built(_softmax),
    "pad_concat": _built(_pad_concat),
    "activations": _built(_activations),
    "quantize": _built(_quantize),
    "float": _float_graph,
    "reductions": codegen_cases.reductions,
    "resizes": codegen_cases.resizes,
    "bilinear_resizes": codegen_cases.bilinear_resizes,
    "tiles_and_blocks": codegen_cases.tiles_and_blocks,
    "data_movement": codegen_cases.data_movement,
    "arithmetic": codegen_cases.arithmetic,
    "transpose_convs": codegen_cases.transpose_convs,
    "batch_space": codegen_cases.batch_space,
    "uint8_edges": codegen_cases.uint8_edges,
    "svdf": codegen_cases.svdf,
    "lstms": codegen_cases.lstms,
    "shuffles": codegen_cases.shuffles,
}


def test_cases_cover_every_op_kind() -> None:
    covered = {op.kind for make in CASES.values() for op in make().operators}
    assert covered == set(OpKind)


@pytest.mark.parametrize("case", sorted(CASES))
def test_written_graph_runs_in_litert(case: str) -> None:
    graph = CASES[case]()
    verify_graph(graph)
    model = write_tflite(graph)
    outputs = litert_invoke(model, random_inputs(model))
    assert len(outputs) == len(graph.outputs)
    for value, name in zip(outputs, graph.outputs, strict=True):
        tensor = graph.tensors[name]
        assert value.shape == tensor.shape
        assert value.dtype == tensor.dtype.numpy


@pytest.mark.parametrize("case", sorted(CASES))
def test_reading_written_graph_loses_nothing(case: str) -> None:
    graph = CASES[case]()
    model = write_tflite(graph)
    again = read_tflite(model)
    assert [op.kind for op in again.operators] == [op.kind for op in graph.operators]
    assert again.inputs == graph.inputs and again.outputs == graph.outputs
    for name, tensor in graph.tensors.items():
        assert again.tensors[name].shape == tensor.shape
        assert again.tensors[name].quant == tensor.quant
        if tensor.data is not None:
            np.testing.assert_array_equal(again.tensors[name].data, tensor.data)
    rewritten = write_tflite(again)
    assert structure(read_tflite(rewritten)) == structure(again)
    assert_same_outputs(model, rewritten)


@pytest.mark.parametrize("case", sorted(CASES))
def test_reader_reads_back_what_the_writer_wrote(case: str) -> None:
    """Each op's TfliteOp record: its writer and its reader agree on code, attrs and inputs."""
    graph = CASES[case]()
    again = read_tflite(write_tflite(graph))
    for written, read in zip(graph.operators, again.operators, strict=True):
        assert (read.kind, read.attrs) == (written.kind, written.attrs)
        assert read.inputs[: len(written.inputs)] == written.inputs  # plus a written zero bias


def test_missing_biases() -> None:
    graph = CASES["conv"]()
    conv = graph.operators[1]
    assert len(conv.inputs) == 2
    again = read_tflite(write_tflite(graph))
    bias = again.tensors[again.operators[1].inputs[2]]
    assert bias.dtype is DType.INT32 and not bias.data.any()
    fc = read_tflite(write_tflite(CASES["fully_connected"]())).operators[-1]
    assert fc.kind is OpKind.FULLY_CONNECTED and len(fc.inputs) == 2


# --------------------------------------------------------------------------- shared models


@pytest.mark.parametrize("name", INT8_MODELS + FLOAT_MODELS)
def test_shared_model_round_trip(name: str) -> None:
    path = SHARED_MODELS / name
    graph = read_tflite(path)
    verify_graph(graph)
    assert graph.name == path.stem
    rewritten = write_tflite(graph)
    assert structure(read_tflite(rewritten)) == structure(graph)
    assert_same_outputs(path.read_bytes(), rewritten)


def test_shared_model_attributes() -> None:
    graph = read_tflite(SHARED_MODELS / "kws_ref_model.tflite")
    kinds = [op.kind for op in graph.operators]
    assert kinds.count(OpKind.DEPTHWISE_CONV_2D) == 4
    reshape = graph.operators[kinds.index(OpKind.RESHAPE)]
    assert reshape.attrs.new_shape == graph.tensors[reshape.outputs[0]].shape
    assert len(reshape.inputs) == 1
    weights = graph.tensors[graph.operators[0].inputs[1]]
    assert weights.dtype is DType.INT8 and weights.quant.is_per_channel
    assert weights.quant.axis == 0 and len(weights.quant.scale) == weights.shape[0]
    assert all(not t.is_constant or t.data.shape == t.shape for t in graph.tensors.values())


# --------------------------------------------------------------------------- raw flatbuffers


@dataclass
class RawT:
    """A tensor for `raw_model`: buffer None means 'a fresh buffer holding data, if any'."""

    name: str
    shape: tuple[int, ...]
    type: int = TT.FLOAT32
    data: bytes | None = None
    buffer: int | None = None
    quant: tuple[list[float], list[int], int] | None = None
    external: bool = False


Options = tuple[int, Callable[[flatbuffers.Builder], int]]


@dataclass
class RawO:
    """An operator for `raw_model`; `custom` names a custom op."""

    code: int
    inputs: list[int]
    outputs: list[int]
    options: Options | None = None
    custom: str = ""
    opcode_index: int | None = None


@dataclass
class RawModel:
    tensors: list[RawT]
    ops: list[RawO]
    inputs: list[int]
    outputs: list[int]
    version: int = 3
    subgraphs: int = 1
    extra_buffers: list[bytes] = field(default_factory=list)


def _vector(builder: flatbuffers.Builder, values: list, dtype: str) -> int:
    return builder.CreateNumpyVector(np.asarray(values, dtype=dtype))


def _tables(builder: flatbuffers.Builder, offsets: list[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _raw_buffer(
    builder: flatbuffers.Builder, payload: bytes | None, offset: int | None = None
) -> int:
    """A buffer holding `payload` inline, or pointing at `offset` outside the flatbuffer."""
    data = builder.CreateByteVector(payload) if payload and offset is None else None
    tflite.BufferStart(builder)
    if data is not None:
        tflite.BufferAddData(builder, data)
    if offset is not None:
        tflite.BufferAddOffset(builder, offset)
        tflite.BufferAddSize(builder, len(payload or b""))
    return tflite.BufferEnd(builder)


def _raw_tensor(builder: flatbuffers.Builder, t: RawT, buffer: int) -> int:
    name = builder.CreateString(t.name)
    shape = _vector(builder, list(t.shape), "<i4")
    quant = None
    if t.quant is not None:
        scale, zero = _vector(builder, t.quant[0], "<f4"), _vector(builder, t.quant[1], "<i8")
        tflite.QuantizationParametersStart(builder)
        tflite.QuantizationParametersAddScale(builder, scale)
        tflite.QuantizationParametersAddZeroPoint(builder, zero)
        tflite.QuantizationParametersAddQuantizedDimension(builder, t.quant[2])
        quant = tflite.QuantizationParametersEnd(builder)
    tflite.TensorStart(builder)
    tflite.TensorAddShape(builder, shape)
    tflite.TensorAddType(builder, t.type)
    tflite.TensorAddBuffer(builder, buffer)
    tflite.TensorAddName(builder, name)
    if quant is not None:
        tflite.TensorAddQuantization(builder, quant)
    return tflite.TensorEnd(builder)


def _raw_op(builder: flatbuffers.Builder, o: RawO, opcode: int) -> int:
    inputs, outputs = _vector(builder, o.inputs, "<i4"), _vector(builder, o.outputs, "<i4")
    options = (o.options[0], o.options[1](builder)) if o.options else None
    tflite.OperatorStart(builder)
    tflite.OperatorAddOpcodeIndex(builder, opcode)
    tflite.OperatorAddInputs(builder, inputs)
    tflite.OperatorAddOutputs(builder, outputs)
    if options is not None:
        tflite.OperatorAddBuiltinOptionsType(builder, options[0])
        tflite.OperatorAddBuiltinOptions(builder, options[1])
    return tflite.OperatorEnd(builder)


def _raw_opcode(builder: flatbuffers.Builder, code: int, custom: str) -> int:
    custom_code = builder.CreateString(custom) if custom else None
    tflite.OperatorCodeStart(builder)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(builder, min(code, 127))
    tflite.OperatorCodeAddBuiltinCode(builder, code)
    if custom_code is not None:
        tflite.OperatorCodeAddCustomCode(builder, custom_code)
    return tflite.OperatorCodeEnd(builder)


def raw_model(spec: RawModel) -> bytes:
    """A .tflite built verbatim from `spec`, including ops and indices mcuflow would never write.

    Data of `external` tensors is appended after the flatbuffer (the >2 GB layout): a first pass
    with placeholder offsets measures the flatbuffer, whose size the real offsets do not change.
    """
    flat = _raw_flatbuffer(spec, [2] * len(spec.tensors))
    start = -(-len(flat) // 16) * 16
    tail, offsets = b"", []
    for t in spec.tensors:
        offsets.append(start + len(tail))
        tail += (t.data or b"") if t.external else b""
    flat = _raw_flatbuffer(spec, offsets)
    return flat.ljust(start, b"\0") + tail if tail else flat


def _raw_flatbuffer(spec: RawModel, offsets: list[int]) -> bytes:
    builder = flatbuffers.Builder(1024)
    buffers = [_raw_buffer(builder, None)]
    tensors = []
    for t, offset in zip(spec.tensors, offsets, strict=True):
        index = t.buffer
        if index is None:
            index = 0
            if t.data is not None:
                buffers.append(_raw_buffer(builder, t.data, offset if t.external else None))
                index = len(buffers) - 1
        tensors.append(_raw_tensor(builder, t, index))
    buffers += [_raw_buffer(builder, extra) for extra in spec.extra_buffers]
    codes = list(dict.fromkeys((o.code, o.custom) for o in spec.ops))
    ops = [
        _raw_op(builder, o, codes.index((o.code, o.custom)) if o.opcode_index is None
                else o.opcode_index)
        for o in spec.ops
    ]
    tensor_vector, op_vector = _tables(builder, tensors), _tables(builder, ops)
    inputs, outputs = _vector(builder, spec.inputs, "<i4"), _vector(builder, spec.outputs, "<i4")
    tflite.SubGraphStart(builder)
    tflite.SubGraphAddTensors(builder, tensor_vector)
    tflite.SubGraphAddInputs(builder, inputs)
    tflite.SubGraphAddOutputs(builder, outputs)
    tflite.SubGraphAddOperators(builder, op_vector)
    subgraph = tflite.SubGraphEnd(builder)
    opcodes = _tables(builder, [_raw_opcode(builder, c, s) for c, s in codes])
    subgraphs = _tables(builder, [subgraph] * spec.subgraphs)
    buffer_vector = _tables(builder, buffers)
    tflite.ModelStart(builder)
    tflite.ModelAddVersion(builder, spec.version)
    tflite.ModelAddOperatorCodes(builder, opcodes)
    tflite.ModelAddSubgraphs(builder, subgraphs)
    tflite.ModelAddBuffers(builder, buffer_vector)
    builder.Finish(tflite.ModelEnd(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def i32(*values: int) -> bytes:
    return np.asarray(values, dtype="<i4").tobytes()


def _relu_model(**changes: object) -> RawModel:
    """x -[RELU]-> y, float32 (1, 4)."""
    spec = RawModel(
        [RawT("x", (1, 4)), RawT("y", (1, 4))], [RawO(OP.RELU, [0], [1])], [0], [1]
    )
    return dataclasses.replace(spec, **changes)


def _strided_slice_options(shrink: int) -> Options:
    def build(builder: flatbuffers.Builder) -> int:
        tflite.StridedSliceOptionsStart(builder)
        tflite.StridedSliceOptionsAddShrinkAxisMask(builder, shrink)
        return tflite.StridedSliceOptionsEnd(builder)

    return tflite.BuiltinOptions.StridedSliceOptions, build


def _pack_options(count: int) -> Options:
    def build(builder: flatbuffers.Builder) -> int:
        tflite.PackOptionsStart(builder)
        tflite.PackOptionsAddValuesCount(builder, count)
        return tflite.PackOptionsEnd(builder)

    return tflite.BuiltinOptions.PackOptions, build


def _empty_options(kind: int, start: Callable, end: Callable) -> Options:
    def build(builder: flatbuffers.Builder) -> int:
        start(builder)
        return end(builder)

    return kind, build


def _keras_flatten_model() -> bytes:
    """Keras-style flatten: RESHAPE(x, PACK(STRIDED_SLICE(SHAPE(x)), PROD(GATHER(SHAPE(x)))))."""
    tensors = [
        RawT("x", (1, 4, 4, 2)),                              # 0
        RawT("shape", (4,), TT.INT32),                        # 1
        RawT("begin", (1,), TT.INT32, i32(0)),                # 2
        RawT("end", (1,), TT.INT32, i32(1)),                  # 3
        RawT("strides", (1,), TT.INT32, i32(1)),              # 4
        RawT("batch", (), TT.INT32),                          # 5
        RawT("indices", (3,), TT.INT32, i32(1, 2, 3)),        # 6
        RawT("inner", (3,), TT.INT32),                        # 7
        RawT("axis0", (1,), TT.INT32, i32(0)),                # 8
        RawT("features", (), TT.INT32),                       # 9
        RawT("packed", (2,), TT.INT32),                       # 10
        RawT("y", (1, 32)),                                   # 11
        RawT("z", (1, 32)),                                   # 12
    ]
    reducer = _empty_options(tflite.BuiltinOptions.ReducerOptions, tflite.ReducerOptionsStart,
                             tflite.ReducerOptionsEnd)
    gather = _empty_options(tflite.BuiltinOptions.GatherOptions, tflite.GatherOptionsStart,
                            tflite.GatherOptionsEnd)
    def shape_options(builder: flatbuffers.Builder) -> int:
        tflite.ShapeOptionsStart(builder)
        tflite.ShapeOptionsAddOutType(builder, TT.INT32)
        return tflite.ShapeOptionsEnd(builder)

    ops = [
        RawO(OP.SHAPE, [0], [1], (tflite.BuiltinOptions.ShapeOptions, shape_options)),
        RawO(OP.STRIDED_SLICE, [1, 2, 3, 4], [5], _strided_slice_options(1)),
        RawO(OP.GATHER, [1, 6], [7], gather),
        RawO(OP.REDUCE_PROD, [7, 8], [9], reducer),
        RawO(OP.PACK, [5, 9], [10], _pack_options(2)),
        RawO(OP.RESHAPE, [0, 10], [11]),
        RawO(OP.RELU, [11], [12]),
    ]
    return raw_model(RawModel(tensors, ops, [0], [12]))


def test_shape_subgraph_is_folded() -> None:
    model = _keras_flatten_model()
    graph = read_tflite(model)
    assert [op.kind for op in graph.operators] == [OpKind.RESHAPE, OpKind.RELU]
    assert graph.operators[0].attrs.new_shape == (1, 32)
    assert set(graph.tensors) == {"x", "y", "z"}
    assert_same_outputs(model, write_tflite(graph))


def test_reshape_from_options_resolves_minus_one() -> None:
    def options(builder: flatbuffers.Builder) -> int:
        new_shape = _vector(builder, [-1, 8], "<i4")
        tflite.ReshapeOptionsStart(builder)
        tflite.ReshapeOptionsAddNewShape(builder, new_shape)
        return tflite.ReshapeOptionsEnd(builder)

    spec = RawModel(
        [RawT("x", (2, 2, 8)), RawT("y", (4, 8))],
        [RawO(OP.RESHAPE, [0], [1], (tflite.BuiltinOptions.ReshapeOptions, options))],
        [0], [1],
    )
    model = raw_model(spec)
    graph = read_tflite(model)
    assert graph.operators[0].attrs.new_shape == (4, 8)
    assert_same_outputs(model, write_tflite(graph))


def test_negative_axes_are_normalised() -> None:
    def concat(builder: flatbuffers.Builder) -> int:
        tflite.ConcatenationOptionsStart(builder)
        tflite.ConcatenationOptionsAddAxis(builder, -1)
        return tflite.ConcatenationOptionsEnd(builder)

    reducer = _empty_options(tflite.BuiltinOptions.ReducerOptions, tflite.ReducerOptionsStart,
                             tflite.ReducerOptionsEnd)
    spec = RawModel(
        [RawT("a", (1, 3, 2)), RawT("b", (1, 3, 4)), RawT("c", (1, 3, 6)),
         RawT("axes", (2,), TT.INT32, i32(-1, 1)), RawT("m", (1,))],
        [RawO(OP.CONCATENATION, [0, 1], [2], (tflite.BuiltinOptions.ConcatenationOptions, concat)),
         RawO(OP.MEAN, [2, 3], [4], reducer)],
        [0, 1], [4],
    )
    model = raw_model(spec)
    graph = read_tflite(model)
    assert graph.operators[0].attrs.axis == 2
    assert graph.operators[1].attrs == MeanAttrs((1, 2), False)
    assert_same_outputs(model, write_tflite(graph))


def _slice_model(begin: RawT, size: RawT) -> bytes:
    """x (1, 5, 4, 3) -[SLICE by tensors 1 and 2]-> y, float32."""
    y = RawT("y", (1, 3, 3, 2))
    return raw_model(RawModel([RawT("x", (1, 5, 4, 3)), begin, size, y],
                              [RawO(OP.SLICE, [0, 1, 2], [3])], [0], [3]))


def i64(*values: int) -> bytes:
    return np.asarray(values, dtype="<i8").tobytes()


def test_slice_reads_int64_begin_and_size_with_minus_one() -> None:
    model = _slice_model(RawT("begin", (4,), TT.INT64, i64(0, 1, 1, 0)),
                         RawT("size", (4,), TT.INT64, i64(-1, 3, -1, 2)))
    graph = read_tflite(model)
    assert graph.operators[0].attrs == SliceAttrs((0, 1, 1, 0), (1, 3, 3, 2))
    assert_same_outputs(model, write_tflite(graph))


@pytest.mark.parametrize(("begin", "size", "error", "message"), [
    (RawT("begin", (4,), TT.INT32), RawT("size", (4,), TT.INT32, i32(1, 3, 3, 2)),
     UnsupportedModelError, "takes its begin from a tensor computed at run time"),
    (RawT("begin", (4,), TT.INT32, i32(0, 1, 1, 0)), RawT("size", (4,), TT.INT32),
     UnsupportedModelError, "takes its size from a tensor computed at run time"),
    (RawT("begin", (4,), TT.INT32, i32(0, 3, 1, 0)), RawT("size", (4,), TT.INT32, i32(1, 3, 3, 2)),
     ModelFormatError, r"begin \[0, 3, 1, 0\] and size \[1, 3, 3, 2\], which do not lie inside"),
    (RawT("begin", (3,), TT.INT32, i32(0, 1, 1)), RawT("size", (4,), TT.INT32, i32(1, 3, 3, 2)),
     ModelFormatError, "for an input of rank 4"),
    (RawT("begin", (4,), TT.INT32, i32(0, 1, 1, 0)), RawT("size", (4,), TT.INT32, i32(1, 0, 3, 2)),
     UnsupportedModelError, "has an empty output"),
], ids=["computed-begin", "computed-size", "outside", "rank", "empty"])
def test_slice_refuses_what_it_cannot_fold(begin: RawT, size: RawT, error: type,
                                           message: str) -> None:
    with pytest.raises(error, match=message):
        read_tflite(_slice_model(begin, size))


def test_duplicate_and_empty_names_are_made_unique() -> None:
    spec = RawModel(
        [RawT("a", (1, 4)), RawT("a", (1, 4)), RawT("", (1, 4))],
        [RawO(OP.RELU, [0], [1]), RawO(OP.RELU6, [1], [2])],
        [0], [2],
    )
    graph = read_tflite(raw_model(spec))
    assert graph.inputs == ["a"] and graph.outputs == ["t2"]
    assert graph.operators[0].outputs == ("a_1",) and graph.operators[1].inputs == ("a_1",)


def test_unsupported_ops_are_listed_at_once() -> None:
    spec = RawModel(
        [RawT("x", (1, 4)), RawT("e", (1, 4)), RawT("f", (1, 4)), RawT("g", (1, 4)),
         RawT("h", (1, 4))],
        [RawO(OP.EXP, [0], [1]), RawO(OP.RELU, [1], [2]), RawO(OP.EXP, [2], [3]),
         RawO(OP.CUSTOM, [3], [4], custom="MyOp")],
        [0], [4],
    )
    with pytest.raises(UnsupportedModelError) as error:
        read_tflite(raw_model(spec))
    message = str(error.value)
    assert "3 unsupported operator(s)" in message
    assert "EXP (x2)" in message and "CUSTOM 'MyOp' (x1)" in message
    assert "RELU" not in message.split("hint")[0]
    assert "mcuflow ops" in error.value.hint


def test_unsupported_tensor_type_is_reported() -> None:
    spec = _relu_model(tensors=[RawT("x", (1, 4), TT.FLOAT16), RawT("y", (1, 4), TT.FLOAT16)])
    with pytest.raises(UnsupportedModelError, match="FLOAT16"):
        read_tflite(raw_model(spec))


# --------------------------------------------------------------------------- malformed files


def test_relu_model_helper_is_valid() -> None:
    model = raw_model(_relu_model())
    assert_same_outputs(model, write_tflite(read_tflite(model)))


@pytest.mark.parametrize(
    ("spec", "phrase"),
    [
        (_relu_model(tensors=[RawT("x", (1, 4), buffer=17), RawT("y", (1, 4))]),
         "tensor 'x' refers to buffer 17 but the model has 1"),
        (_relu_model(ops=[RawO(OP.RELU, [0], [5])]), "refers to tensor 5 but the subgraph has 2"),
        (_relu_model(outputs=[]), "has no outputs"),
        (_relu_model(ops=[RawO(OP.RELU, [0], [1], opcode_index=3)]),
         "refers to operator code 3 but the model has 1"),
        (_relu_model(tensors=[RawT("x", (1, -4)), RawT("y", (1, 4))]), "negative dimension"),
        (_relu_model(tensors=[RawT("x", (1 << 20, 1 << 20, 1 << 10)), RawT("y", (1, 4))]),
         "absurd"),
        (_relu_model(tensors=[RawT("x", (1, 4)), RawT("y", (1, 4)),
                              RawT("w", (1000, 1000), TT.INT8, b"\x01" * 10)]),
         "has 10 bytes of data, but its shape (1000, 1000) of INT8 needs 1000000"),
        (_relu_model(subgraphs=0), "has no subgraph"),
        (_relu_model(version=2), "schema version 2"),
        (_relu_model(inputs=[9]), "graph input refers to tensor 9"),
        (_relu_model(tensors=[RawT("x", (1, 4), type=99), RawT("y", (1, 4))]),
         "unknown type code 99"),
        (_relu_model(tensors=[RawT("x", (1, 4), quant=([0.1, 0.2], [0], 1)), RawT("y", (1, 4))]),
         "2 quantisation scales but 1 zero points"),
        (_relu_model(tensors=[RawT("x", (1, 4)), RawT("y", (1, 5))]), "inconsistent"),
    ],
)
def test_malformed_model_is_rejected(spec: RawModel, phrase: str) -> None:
    with pytest.raises(ModelFormatError) as error:
        read_tflite(raw_model(spec))
    assert phrase in str(error.value)
    assert error.value.hint


def _external_add_model(data: bytes) -> RawModel:
    """y = x + w, float32 (1, 4), with w stored after the flatbuffer (offset/size buffer)."""
    return RawModel(
        [RawT("x", (1, 4)), RawT("w", (1, 4), data=data, external=True), RawT("y", (1, 4))],
        [RawO(OP.ADD, [0, 1], [2])],
        [0], [2],
    )


def test_buffer_outside_flatbuffer() -> None:
    weights = np.asarray([[1.5, -2.0, 0.25, 8.0]], dtype="<f4")
    model = raw_model(_external_add_model(weights.tobytes()))
    graph = read_tflite(model)
    np.testing.assert_array_equal(graph.tensors["w"].data, weights)
    x = np.asarray([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    (expected,) = litert_invoke(model, [x])
    (ours,) = litert_invoke(write_tflite(graph), [x])
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(expected, x + weights)


def test_buffer_outside_truncated_file() -> None:
    model = raw_model(_external_add_model(b"\0" * 16))
    with pytest.raises(ModelFormatError, match="is truncated: buffer 1 spans"):
        read_tflite(model[:-8])


def test_huge_constant_is_rejected_before_allocation() -> None:
    # 2**31 elements of int8 backed by a 4-byte buffer: must fail on sizes, not on memory.
    spec = _relu_model(tensors=[RawT("x", (1, 4)), RawT("y", (1, 4)),
                                RawT("w", (1 << 16, 1 << 15), TT.INT8, b"\x00" * 4)])
    with pytest.raises(ModelFormatError, match="bytes of data"):
        read_tflite(raw_model(spec))


def _kws_bytes() -> bytes:
    return (SHARED_MODELS / "kws_ref_model.tflite").read_bytes()


def test_empty_file(tmp_path) -> None:
    path = tmp_path / "empty.tflite"
    path.write_bytes(b"")
    with pytest.raises(ModelFormatError, match="is empty"):
        read_tflite(path)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(ModelFormatError, match="cannot read model file"):
        read_tflite(tmp_path / "nope.tflite")


@pytest.mark.parametrize("length", [1, 7, 8, 64, 1000, 20000, 53935])
def test_truncated_file(length: int) -> None:
    with pytest.raises(ModelFormatError, match="truncated"):
        read_tflite(_kws_bytes()[:length])


def test_every_truncation_is_a_model_format_error() -> None:
    data = _kws_bytes()
    for length in range(0, len(data), 997):
        with pytest.raises(ModelFormatError):
            read_tflite(data[:length])


def test_wrong_identifier() -> None:
    data = bytearray(_kws_bytes())
    data[4:8] = b"TFL2"
    with pytest.raises(ModelFormatError, match="file identifier is b'TFL2'"):
        read_tflite(bytes(data))


def test_png_file(tmp_path) -> None:
    path = tmp_path / "cat.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(ModelFormatError, match="PNG image"):
        read_tflite(path)


def test_onnx_file(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    node = onnx.helper.make_node("Relu", ["x"], ["y"])
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([node], "g", [value("x", onnx.TensorProto.FLOAT, [1, 4])],
                                   [value("y", onnx.TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx.helper.make_model(graph).SerializeToString())
    with pytest.raises(ModelFormatError, match="ONNX"):
        read_tflite(path)
    with pytest.raises(ModelFormatError, match="ONNX"):
        read_tflite(path.read_bytes())


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=int(rng.integers(1, 5000)), dtype=np.uint8).tobytes()
    with pytest.raises(ModelFormatError):
        read_tflite(data)
    forged = data[:4].ljust(4, b"\0") + b"TFL3" + data[8:]
    with pytest.raises(McuflowError):
        read_tflite(forged)


def test_corrupted_offsets() -> None:
    data = bytearray(_kws_bytes())
    struct.pack_into("<I", data, 0, len(data) + 100)
    with pytest.raises(ModelFormatError, match="root table offset"):
        read_tflite(bytes(data))


def test_byte_flips_never_escape() -> None:
    """Corrupting a real model either still reads or raises an McuflowError; nothing else."""
    original = _kws_bytes()
    rng = np.random.default_rng(0)
    rejected = 0
    for _ in range(150):
        data = bytearray(original)
        for position in rng.integers(0, 4096, size=3):
            data[position] = int(rng.integers(0, 256))
        try:
            read_tflite(bytes(data))
        except McuflowError:
            rejected += 1
    assert 0 < rejected < 150

