"""TFLite flatbuffers as mutable objects (LiteRT's generated object API): unpack, edit, pack."""

from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

ModelT = schema.ModelT


def unpack(data: bytes) -> schema.ModelT:
    """The object tree of a well-formed .tflite file."""
    return schema.ModelT.InitFromPackedBuf(bytearray(data), 0)


def pack(model: schema.ModelT) -> bytes:
    """Serialise an object tree as a .tflite file (identifier TFL3), whatever it holds."""
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def subgraph(model: schema.ModelT) -> schema.SubGraphT:
    """Subgraph 0, the one mcuflow reads."""
    return model.subgraphs[0]


def tensor_index(model: schema.ModelT, name: str) -> int:
    """Index of the tensor called `name` in subgraph 0."""
    names = [_text(t.name) for t in subgraph(model).tensors]
    return names.index(name)


def tensor(model: schema.ModelT, name: str) -> schema.TensorT:
    """The tensor called `name` in subgraph 0."""
    return subgraph(model).tensors[tensor_index(model, name)]


def opcode_index(model: schema.ModelT, builtin: int) -> int:
    """Index of the operator code of builtin operator `builtin`."""
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    return codes.index(builtin)


def operators_of(model: schema.ModelT, builtin: int) -> list[schema.OperatorT]:
    """The operators of subgraph 0 whose operator code is `builtin`."""
    index = opcode_index(model, builtin)
    return [op for op in subgraph(model).operators if op.opcodeIndex == index]


def _text(raw: bytes | str | None) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw or ""


def raw_tensor(
    name: str, shape: tuple[int, ...], type_code: int, buffer: int = 0,
    quant: tuple[list[float], list[int], int] | None = None,
) -> schema.TensorT:
    """A TensorT; `quant` is (scales, zero points, quantized dimension)."""
    result = schema.TensorT()
    result.name, result.shape, result.type, result.buffer = name, list(shape), type_code, buffer
    if quant is not None:
        params = schema.QuantizationParametersT()
        params.scale, params.zeroPoint, params.quantizedDimension = quant
        result.quantization = params
    return result


def raw_operator(
    opcode: int, inputs: list[int], outputs: list[int],
    options: tuple[int, object] | None = None,
) -> schema.OperatorT:
    """An OperatorT; `options` is (BuiltinOptions type, options object)."""
    result = schema.OperatorT()
    result.opcodeIndex, result.inputs, result.outputs = opcode, inputs, outputs
    if options is not None:
        result.builtinOptionsType, result.builtinOptions = options
    return result


def raw_model(
    tensors: list[schema.TensorT], operators: list[schema.OperatorT], codes: list[int],
    ends: tuple[list[int], list[int]], buffers: list[bytes | None],
) -> bytes:
    """A .tflite file of one subgraph, built verbatim: nothing is checked or completed.

    `codes` are the builtin codes of the operator-code table; `ends` the graph's (inputs,
    outputs); `buffers` the data of the buffer table (buffer 0 should be None, as TFLite has it).
    """
    model = schema.ModelT()
    model.version = 3
    model.operatorCodes = []
    for code in codes:
        entry = schema.OperatorCodeT()
        entry.builtinCode, entry.deprecatedBuiltinCode, entry.version = code, min(code, 127), 1
        model.operatorCodes.append(entry)
    graph = schema.SubGraphT()
    graph.tensors, graph.operators = tensors, operators
    graph.inputs, graph.outputs = ends
    model.subgraphs = [graph]
    model.buffers = []
    for data in buffers:
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(data, np.uint8) if data is not None else None
        model.buffers.append(buffer)
    return pack(model)
