"""Hostile 10 MB files: forged counts and tables that share bytes, built byte by byte.

A flatbuffer vector of tables holds offsets, so millions of entries can point at one table, and
many tables at one vector or buffer: a small file then claims an enormous model. Each builder
returns a file of about SIZE bytes.
"""

from __future__ import annotations

from collections.abc import Callable

import flatbuffers
import numpy as np
import tflite

from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder

SIZE = 10 << 20
TT = tflite.TensorType
Builder = flatbuffers.Builder


def _aliased(builder: Builder, table: int, count: int) -> int:
    """A vector of `count` offsets that all point at `table`."""
    builder.StartVector(4, count, 4)
    base = builder.Offset()
    steps = np.arange(count, 0, -1, dtype=np.int64)
    builder.head -= 4 * count
    offsets = (base + 4 * steps - table).astype("<u4")
    builder.Bytes[builder.head : builder.head + 4 * count] = offsets.tobytes()
    return builder.EndVector()


def _tables(builder: Builder, tables: list[int]) -> int:
    builder.StartVector(4, len(tables), 4)
    for table in reversed(tables):
        builder.PrependUOffsetTRelative(table)
    return builder.EndVector()


def _numbers(builder: Builder, values: np.ndarray) -> int:
    return builder.CreateNumpyVector(values)


def _tensor(builder: Builder, shape: list[int], buffer: int = 0, quant: int | None = None) -> int:
    shape_vector = _numbers(builder, np.asarray(shape, "<i4"))
    name = builder.CreateString("t")
    tflite.TensorStart(builder)
    tflite.TensorAddShape(builder, shape_vector)
    tflite.TensorAddType(builder, TT.INT8)
    tflite.TensorAddBuffer(builder, buffer)
    tflite.TensorAddName(builder, name)
    if quant is not None:
        tflite.TensorAddQuantization(builder, quant)
    return tflite.TensorEnd(builder)


def _operator(builder: Builder, inputs: np.ndarray) -> int:
    input_vector = _numbers(builder, inputs.astype("<i4"))
    output_vector = _numbers(builder, np.asarray([1], "<i4"))
    tflite.OperatorStart(builder)
    tflite.OperatorAddOpcodeIndex(builder, 0)
    tflite.OperatorAddInputs(builder, input_vector)
    tflite.OperatorAddOutputs(builder, output_vector)
    return tflite.OperatorEnd(builder)


def _buffer(builder: Builder, size: int) -> int:
    data = builder.CreateNumpyVector(np.ones(size, np.uint8)) if size else None
    tflite.BufferStart(builder)
    if data is not None:
        tflite.BufferAddData(builder, data)
    return tflite.BufferEnd(builder)


def _model(builder: Builder, tensors: int, operators: int, buffers: list[int]) -> bytes:
    """Finish a one-subgraph model of RELU operators with graph input 0 and output 1."""
    ends = [_numbers(builder, np.asarray([i], "<i4")) for i in (0, 1)]
    tflite.SubGraphStart(builder)
    tflite.SubGraphAddTensors(builder, tensors)
    tflite.SubGraphAddInputs(builder, ends[0])
    tflite.SubGraphAddOutputs(builder, ends[1])
    tflite.SubGraphAddOperators(builder, operators)
    subgraph = tflite.SubGraphEnd(builder)
    tflite.OperatorCodeStart(builder)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(builder, tflite.BuiltinOperator.RELU)
    tflite.OperatorCodeAddBuiltinCode(builder, tflite.BuiltinOperator.RELU)
    opcodes = _tables(builder, [tflite.OperatorCodeEnd(builder)])
    subgraphs = _tables(builder, [subgraph])
    buffer_vector = _tables(builder, buffers)
    tflite.ModelStart(builder)
    tflite.ModelAddVersion(builder, 3)
    tflite.ModelAddOperatorCodes(builder, opcodes)
    tflite.ModelAddSubgraphs(builder, subgraphs)
    tflite.ModelAddBuffers(builder, buffer_vector)
    builder.Finish(tflite.ModelEnd(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _relu(builder: Builder, count: int = 1) -> int:
    return _tables(builder, [_operator(builder, np.zeros(1))] * count)


def aliased_tensors() -> bytes:
    """2.6 million tensor entries, all the same table."""
    builder = Builder(SIZE + 4096)
    table = _tensor(builder, [1, 4])
    return _model(builder, _aliased(builder, table, SIZE // 4), _relu(builder),
                  [_buffer(builder, 0)])


def aliased_quantisation() -> bytes:
    """16,384 tensors sharing one table with 2.5 million per-channel scales."""
    builder = Builder(SIZE + 4096)
    count = SIZE // 4 - 16384
    scales = builder.CreateNumpyVector(np.full(count, 0.5, "<f4"))
    tflite.QuantizationParametersStart(builder)
    tflite.QuantizationParametersAddScale(builder, scales)
    quant = tflite.QuantizationParametersEnd(builder)
    table = _tensor(builder, [1, count], quant=quant)
    return _model(builder, _aliased(builder, table, 16384), _relu(builder),
                  [_buffer(builder, 0)])


def huge_operator() -> bytes:
    """One operator with 2.6 million inputs."""
    builder = Builder(SIZE + 4096)
    op = _operator(builder, np.zeros(SIZE // 4 - 1024))
    tensors = _tables(builder, [_tensor(builder, [1, 4]), _tensor(builder, [1, 4])])
    return _model(builder, tensors, _tables(builder, [op]), [_buffer(builder, 0)])


def aliased_operands() -> bytes:
    """8,192 operators sharing one table of 65,535 inputs, beside a 10 MB buffer."""
    builder = Builder(SIZE + 4096)
    buffers = [_buffer(builder, 0), _buffer(builder, SIZE - 300_000)]
    op = _operator(builder, np.zeros((1 << 16) - 1))
    tensors = _tables(builder, [_tensor(builder, [1, 4]), _tensor(builder, [1, 4])])
    return _model(builder, tensors, _aliased(builder, op, 8192), buffers)


def shared_buffer() -> bytes:
    """16,000 constant tensors of 10 MB each, all reading the one 10 MB buffer."""
    builder = Builder(SIZE + 4096)
    buffers = [_buffer(builder, 0), _buffer(builder, SIZE - 4096)]
    first = _tensor(builder, [1, 4])
    constant = _tensor(builder, [SIZE - 4096], buffer=1)
    tensors = _tables(builder, [first, _tensor(builder, [1, 4])] + [constant] * 16000)
    return _model(builder, tensors, _relu(builder), buffers)


def random_bytes() -> bytes:
    """10 MB of random bytes behind a TFLite file identifier."""
    data = bytearray(np.random.default_rng(10).integers(0, 256, SIZE, dtype=np.uint8).tobytes())
    data[4:8] = b"TFL3"
    return bytes(data)


def big_weights() -> bytes:
    """A well-formed int8 model: the input plus one 10 MB constant (it fits no board)."""
    builder = GraphBuilder("big", seed=1)
    x = builder.input((1, SIZE - 4096))
    return write_tflite(builder.output(builder.add(x, builder.constant_int8((1, SIZE - 4096))))
                        .build())


HOSTILE: dict[str, Callable[[], bytes]] = {
    "aliased-tensors": aliased_tensors,
    "aliased-quantisation": aliased_quantisation,
    "huge-operator": huge_operator,
    "aliased-operands": aliased_operands,
    "shared-buffer": shared_buffer,
    "random-bytes": random_bytes,
    "big-weights": big_weights,
}
