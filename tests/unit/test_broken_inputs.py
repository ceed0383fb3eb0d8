"""Broken inputs, one per kind: the exact one-line error the CLI prints, exit code 2, no traceback.

Models are built with mcuflow's writer, then broken in their bytes or, through the flatbuffer
object API, in their structure (indices, shapes, scales, operators) as no writer would.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import pytest
import tflite
from numpy.lib import format as npy_format
from onnx import helper as onnx_helper
from onnx import numpy_helper

from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from tests.fuzz.flat import ModelT, opcode_index, operators_of, pack, subgraph, tensor, unpack
from tests.fuzz.onnx_seeds import onnx_seeds
from tests.support import run_cli

OP = tflite.BuiltinOperator
HINT = (" (hint: re-export the model with the TFLite converter, or check that the file was "
        "copied whole)")
OPS_HINT = " (hint: run `mcuflow ops` to list the operators and types mcuflow supports)"
TFLITE_HINT = " (hint: pass a .tflite file produced by the TFLite converter)"
NPY_HINT = " (hint: save the input array with numpy.save)"


@cache
def base_model() -> bytes:
    """A valid int8 model: CONV_2D, MAX_POOL_2D, PAD, CONCATENATION, RESHAPE, FC, SOFTMAX.

    Tensors: 0 input_1, 1 weights_2, 2 bias_3, 3 conv_2d_4, 4 max_pool_2d_5, 5 pad_6,
    6 concatenation_7, 7 reshape_8, 8 weights_9, 9 bias_10, 10 fully_connected_11,
    11 softmax_12, 12 pad_6/paddings, 13 reshape_8/shape.
    """
    b = GraphBuilder("base", seed=5)
    x = b.input((1, 8, 8, 3), 0.05, 0)
    y = b.conv2d(x, 4, (3, 3), padding=Padding.SAME, activation=Activation.RELU)
    y = b.max_pool2d(y, 2, 2)
    y = b.pad(y, ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = b.concatenation([y, y], axis=3)
    y = b.fully_connected(b.reshape(y, (1, -1)), 4)
    return write_tflite(b.output(b.softmax(y)).build())


def edited(edit: Callable[[ModelT], object]) -> Callable[[], bytes]:
    """The base model with `edit` applied to its object tree."""

    def make() -> bytes:
        model = unpack(base_model())
        edit(model)
        return pack(model)

    return make


def assign(path: str, value: object) -> Callable[[ModelT], None]:
    """An edit setting a dotted attribute path (from `tensor:<name>`, `op:<CODE>`, ...)."""

    def edit(model: ModelT) -> None:
        head, *rest = path.split(".")
        kind, _, key = head.partition(":")
        target: object = (
            tensor(model, key) if kind == "tensor"
            else operators_of(model, getattr(OP, key))[0] if kind == "op"
            else subgraph(model) if kind == "subgraph" else model
        )
        for attr in rest[:-1]:
            target = getattr(target, attr)
        setattr(target, rest[-1], value)

    return edit


def scale(value: float) -> Callable[[ModelT], None]:
    """An edit giving every channel of the first conv's weights the given scale."""
    return assign("tensor:weights_2.quantization.scale", [value] * 4)


def _truncated(size: int) -> Callable[[], bytes]:
    return lambda: base_model()[:size]


def _renamed_conv_output(model: ModelT) -> None:
    conv = tensor(model, "conv_2d_4")
    conv.name, conv.shape = b"conv\nout", [1, 8, 8, 5]


def _three_channels(model: ModelT) -> None:
    quant = tensor(model, "weights_2").quantization
    quant.scale, quant.zeroPoint = [0.01, 0.02, 0.03], [0, 0, 0]


def _two_op_cycle(model: ModelT) -> None:
    pool, pad = operators_of(model, OP.MAX_POOL_2D)[0], operators_of(model, OP.PAD)[0]
    pool.inputs = [5]
    pad.inputs = [4, 12]


def _produced_twice(model: ModelT) -> None:
    operators_of(model, OP.PAD)[0].outputs = [4]


def _zero_operators(model: ModelT) -> None:
    subgraph(model).operators = []


def _identity(model: ModelT) -> None:
    subgraph(model).operators, subgraph(model).outputs = [], [0]


def _drop_softmax(model: ModelT) -> None:
    subgraph(model).operators = subgraph(model).operators[:-1]


def _softmax_to_exp(model: ModelT) -> None:
    code = model.operatorCodes[opcode_index(model, OP.SOFTMAX)]
    code.builtinCode = code.deprecatedBuiltinCode = OP.EXP


def _negative_padding(model: ModelT) -> None:
    paddings = np.asarray([[0, 0], [-1, 1], [1, 1], [0, 0]], "<i4")
    model.buffers[tensor(model, "pad_6/paddings").buffer].data = paddings.view(np.uint8).ravel()


def _long_data(model: ModelT) -> None:
    model.buffers[1].data = np.zeros(109, np.uint8)


def _random_bytes() -> bytes:
    return np.random.default_rng(6).integers(0, 256, 4000, dtype=np.uint8).tobytes()


def _onnx_bytes() -> bytes:
    """The first bytes of an ONNX ModelProto (ir_version, producer_name, ...)."""
    return b"\x08\x07\x12\x07pytorch\x1a\x052.1.0" + bytes(200)


def _zip_bytes() -> bytes:
    return b"PK\x03\x04" + bytes(300)


def _png_bytes() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@dataclass(frozen=True)
class Case:
    """A broken model file and the exact line `mcuflow analyze` prints for it."""

    make: Callable[[], bytes]
    message: str


MODEL_CASES: dict[str, Case] = {
    "empty": Case(
        lambda: b"",
        "{m} is empty (0 bytes)" + HINT,
    ),
    "truncated-header": Case(
        _truncated(7),
        "{m} is truncated: 7 bytes cannot hold a TFLite header" + HINT,
    ),
    "truncated-root": Case(
        _truncated(40),
        "{m} is truncated or corrupt: a flatbuffer read fell outside the 40-byte file "
        "(unpack_from requires a buffer of at least 244 bytes for unpacking 2 bytes at offset "
        "242 (actual buffer size is 40))" + HINT,
    ),
    "truncated-tables": Case(
        _truncated(1000),
        "{m} is truncated or corrupt: a flatbuffer read fell outside the 1000-byte file "
        "(unpack_from requires a buffer of at least 3592 bytes for unpacking 4 bytes at offset "
        "3588 (actual buffer size is 1000))" + HINT,
    ),
    "truncated-half": Case(
        lambda: base_model()[: len(base_model()) // 2],
        "{m} is truncated or corrupt: a flatbuffer read fell outside the 1848-byte file "
        "(unpack_from requires a buffer of at least 3592 bytes for unpacking 4 bytes at offset "
        "3588 (actual buffer size is 1848))" + HINT,
    ),
    "truncated-last-byte": Case(
        lambda: base_model()[:-1],
        "{m} is truncated or corrupt: a flatbuffer read fell outside the 3695-byte file "
        "(unpack_from requires a buffer of at least 3696 bytes for unpacking 4 bytes at offset "
        "3692 (actual buffer size is 3695))" + HINT,
    ),
    "bad-identifier": Case(
        lambda: base_model()[:4] + b"TFL2" + base_model()[8:],
        "{m} is not a TFLite model: its file identifier is b'TFL2', not b'TFL3'" + TFLITE_HINT,
    ),
    "random-bytes": Case(
        _random_bytes,
        "{m} is not a TFLite model: its file identifier is b'\\x91#\\xc5\\x89', not b'TFL3'"
        + TFLITE_HINT,
    ),
    "png": Case(
        _png_bytes,
        "{m} is not a TFLite model: its file identifier is b'\\r\\n\\x1a\\n', not b'TFL3' (it "
        "looks like a PNG image)" + TFLITE_HINT,
    ),
    "onnx": Case(
        _onnx_bytes,
        "{m} is not a TFLite model: its file identifier is b'pyto', not b'TFL3' (it looks like "
        "an ONNX model: read it with the ONNX frontend)" + TFLITE_HINT,
    ),
    "zip": Case(
        _zip_bytes,
        "{m} is not a TFLite model: its file identifier is b'\\x00\\x00\\x00\\x00', not "
        "b'TFL3' (it looks like a ZIP archive (a Keras .keras file?))" + TFLITE_HINT,
    ),
    "schema-version": Case(
        edited(assign("model.version", 2)),
        "{m} has TFLite schema version 2; mcuflow reads version 3 (hint: convert the model "
        "with a current TFLite converter)",
    ),
    "no-subgraph": Case(
        edited(assign("model.subgraphs", [])),
        "{m} has no subgraph" + HINT,
    ),
    "zero-operators": Case(
        edited(_zero_operators),
        "{m} has no operators: there is nothing to compute" + HINT,
    ),
    "buffer-index": Case(
        edited(assign("tensor:weights_2.buffer", 99)),
        "{m}: tensor 'weights_2' refers to buffer 99 but the model has 7" + HINT,
    ),
    "opcode-index": Case(
        edited(assign("op:PAD.opcodeIndex", 42)),
        "{m}: op 2 refers to operator code 42 but the model has 7" + HINT,
    ),
    "tensor-index": Case(
        edited(assign("op:PAD.inputs", [4, 77])),
        "{m}: op 2 (PAD) refers to tensor 77 but the subgraph has 14" + HINT,
    ),
    "graph-input-index": Case(
        edited(assign("subgraph:.inputs", [-3])),
        "{m}: graph input refers to tensor -3 but the subgraph has 14" + HINT,
    ),
    "negative-dimension": Case(
        edited(assign("tensor:conv_2d_4.shape", [1, -8, 8, 4])),
        "{m}: tensor 'conv_2d_4' has a negative dimension in its shape (1, -8, 8, 4)" + HINT,
    ),
    "huge-dimension": Case(
        edited(assign("tensor:conv_2d_4.shape", [1, 2**31 - 1, 8, 4])),
        "{m}: tensor 'conv_2d_4' of shape (1, 2147483647, 8, 4) would take 68719476704 bytes, "
        "an absurd size (the limit is 2147483648)" + HINT,
    ),
    "huge-constant": Case(
        edited(assign("tensor:weights_9.shape", [1 << 16, 1 << 16])),
        "{m}: tensor 'weights_9' of shape (65536, 65536) would take 4294967296 bytes, an "
        "absurd size (the limit is 2147483648)" + HINT,
    ),
    "shape-exceeds-file": Case(
        edited(assign("tensor:weights_9.shape", [4, 288, 100])),
        "{m}: tensor 'weights_9' has 1152 bytes of data, but its shape (4, 288, 100) of INT8 "
        "needs 115200" + HINT,
    ),
    "data-length": Case(
        edited(_long_data),
        "{m}: tensor 'weights_2' has 109 bytes of data, but its shape (4, 3, 3, 3) of INT8 "
        "needs 108" + HINT,
    ),
    "zero-scale": Case(
        edited(scale(0.0)),
        "{m}: tensor 'weights_2' has quantisation scale 0; scales must lie between 5.42e-20 "
        "and 2.15e+09" + HINT,
    ),
    "nan-scale": Case(
        edited(scale(math.nan)),
        "{m}: tensor 'weights_2' has a non-finite scale" + HINT,
    ),
    "infinite-scale": Case(
        edited(scale(math.inf)),
        "{m}: tensor 'weights_2' has a non-finite scale" + HINT,
    ),
    "negative-scale": Case(
        edited(scale(-0.02)),
        "{m}: tensor 'weights_2' has quantisation scale -0.02; scales must lie between "
        "5.42e-20 and 2.15e+09" + HINT,
    ),
    "tiny-scale": Case(
        edited(scale(1e-30)),
        "{m}: tensor 'weights_2' has quantisation scale 1e-30; scales must lie between "
        "5.42e-20 and 2.15e+09" + HINT,
    ),
    "channel-count": Case(
        edited(_three_channels),
        "{m}: tensor 'weights_2' of shape (4, 3, 3, 3) has 3 per-channel scales along "
        "dimension 0" + HINT,
    ),
    "zero-point-count": Case(
        edited(assign("tensor:weights_2.quantization.zeroPoint", [0, 0])),
        "{m}: tensor 'weights_2' has 4 quantisation scales but 2 zero points" + HINT,
    ),
    "channel-axis": Case(
        edited(assign("tensor:weights_2.quantization.quantizedDimension", 7)),
        "{m}: tensor 'weights_2' of shape (4, 3, 3, 3) has 4 per-channel scales along "
        "dimension 7" + HINT,
    ),
    "zero-point-range": Case(
        edited(assign("tensor:conv_2d_4.quantization.zeroPoint", [200])),
        "{m}: tensor 'conv_2d_4' has zero point 200, outside the int8 range [-128, 127]" + HINT,
    ),
    "own-output": Case(
        edited(assign("op:PAD.inputs", [5, 12])),
        "{m} is inconsistent: op 2 (PAD 'pad_6') reads tensor 'pad_6' before any op produces "
        "it (not topological)" + HINT,
    ),
    "two-op-cycle": Case(
        edited(_two_op_cycle),
        "{m} is inconsistent: op 1 (MAX_POOL_2D 'max_pool_2d_5') reads tensor 'pad_6' before "
        "any op produces it (not topological)" + HINT,
    ),
    "produced-twice": Case(
        edited(_produced_twice),
        "{m} is inconsistent: op 2 (PAD 'max_pool_2d_5') writes tensor 'max_pool_2d_5', which "
        "is already a constant, an input or the output of an earlier op" + HINT,
    ),
    "output-is-constant": Case(
        edited(assign("subgraph:.outputs", [13])),
        "{m} is inconsistent: graph output 'reshape_8/shape' is a constant, not computed" + HINT,
    ),
    "output-never-produced": Case(
        edited(_drop_softmax),
        "{m} is inconsistent: graph output 'softmax_12' is neither produced nor an input" + HINT,
    ),
    "huge-activation": Case(
        edited(assign("tensor:conv_2d_4.shape", [1, 4096, 4096, 8])),
        "{m}: tensor 'conv_2d_4' of shape (1, 4096, 4096, 8) would take 134217728 bytes of "
        "RAM, more than any board has (the limit is 67108864)" + HINT,
    ),
    "unsupported-operator": Case(
        edited(_softmax_to_exp),
        "{m} uses 1 unsupported operator(s): EXP (x1)" + OPS_HINT,
    ),
    "unsupported-type": Case(
        edited(assign("tensor:reshape_8.type", 1)),
        "{m} uses tensors of unsupported type(s): FLOAT16 (x1)" + OPS_HINT,
    ),
    "zero-operators-identity": Case(
        edited(_identity),
        "{m} has no operators: there is nothing to compute" + HINT,
    ),
    "missing-inputs": Case(
        edited(assign("op:CONV_2D.inputs", [0])),
        "{m}: op 0 (CONV_2D) has inputs [0]; expected 2 to 3 tensors" + HINT,
    ),
    "filter-depth": Case(
        edited(assign("tensor:input_1.shape", [1, 8, 8, 5])),
        "{m} is inconsistent: op 0 (CONV_2D 'conv_2d_4'): CONV_2D 'conv_2d_4': the filter's "
        "depth 3 differs from the input's 5 channels" + HINT,
    ),
    "reshape-count": Case(
        edited(assign("tensor:reshape_8.shape", [1, 300])),
        "{m} is inconsistent: op 4 (RESHAPE 'reshape_8') output 'reshape_8' has shape (1, "
        "300), but its inputs give (1, 288)" + HINT,
    ),
    "stride-zero": Case(
        edited(assign("op:CONV_2D.builtinOptions.strideH", 0)),
        "{m}: op 0 (CONV_2D) has stride_h 0; it must be at least 1" + HINT,
    ),
    "dilation-zero": Case(
        edited(assign("op:CONV_2D.builtinOptions.dilationWFactor", 0)),
        "{m}: op 0 (CONV_2D) has dilation_w 0; it must be at least 1" + HINT,
    ),
    "huge-dilation": Case(
        edited(assign("op:CONV_2D.builtinOptions.dilationHFactor", 1 << 30)),
        "{m}: op 0 (CONV_2D) has a 3x3 window spanning 2147483649x3 input positions: its "
        "padded input of 70866960681 values exceeds the RAM of any board" + HINT,
    ),
    "pool-filter-zero": Case(
        edited(assign("op:MAX_POOL_2D.builtinOptions.filterWidth", 0)),
        "{m}: op 1 (MAX_POOL_2D) has filter_width 0; it must be at least 1" + HINT,
    ),
    "negative-padding": Case(
        edited(_negative_padding),
        "{m}: op 2 (PAD) has paddings [[0, 0], [-1, 1], [1, 1], [0, 0]]; expected non-negative "
        "[rank, 2]" + HINT,
    ),
    "concat-axis": Case(
        edited(assign("op:CONCATENATION.builtinOptions.axis", 4)),
        "{m}: op 3 (CONCATENATION) has axis 4, out of range for rank 4" + HINT,
    ),
    "softmax-beta": Case(
        edited(assign("op:SOFTMAX.builtinOptions.beta", math.nan)),
        "{m}: op 6 (SOFTMAX) has beta nan; it must be a positive finite number" + HINT,
    ),
    "activation-code": Case(
        edited(assign("op:CONV_2D.builtinOptions.fusedActivationFunction", 9)),
        "{m}: op 0 (CONV_2D) uses the fused activation code 9" + OPS_HINT,
    ),
    "padding-code": Case(
        edited(assign("op:CONV_2D.builtinOptions.padding", 5)),
        "{m}: op 0 (CONV_2D) has unknown padding code 5" + HINT,
    ),
    "options-type": Case(
        edited(assign("op:CONV_2D.builtinOptionsType", 0)),
        "{m}: op 0 (CONV_2D) has no Conv2DOptions" + HINT,
    ),
    "control-characters-in-name": Case(
        edited(_renamed_conv_output),
        "{m} is inconsistent: op 0 (CONV_2D 'conv\\nout') output 'conv\\nout' has shape (1, 8, "
        "8, 5), but its inputs give (1, 8, 8, 4)" + HINT,
    ),
}


ONNX_HINT = (" (hint: re-export the model with torch.onnx.export, or check that the file was "
             "copied whole)")
ONNX_SHAPE = (1, 3, 8, 8)


def onnx_edited(edit: Callable[[onnx.ModelProto], object]) -> Callable[[], bytes]:
    """The conv_bn ONNX seed (Conv, BN, Relu, MaxPool, Flatten, Gemm, Softmax) after `edit`."""

    def make() -> bytes:
        model = onnx.load_from_string(onnx_seeds()["conv_bn"])
        edit(model)
        return model.SerializeToString()

    return make


def _initializer(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(t for t in model.graph.initializer if t.name == f"conv_bn.{name}")


def _node(model: onnx.ModelProto, op_type: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.op_type == op_type)


def _set_attribute(op_type: str, name: str, value: object) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        node = _node(model, op_type)
        kept = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        node.attribute.extend([*kept, onnx_helper.make_attribute(name, value)])

    return edit


def _scale_initializer(name: str, factor: float, size: int | None = None
                       ) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        tensor = _initializer(model, name)
        values = numpy_helper.to_array(tensor).astype(np.float32) * np.float32(factor)
        values = values if size is None else np.resize(values, size)
        tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))

    return edit


def _onnx_nan_weight(model: onnx.ModelProto) -> None:
    tensor = _initializer(model, "c0")
    values = numpy_helper.to_array(tensor).copy()
    values.flat[5] = np.nan
    tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))


def _onnx_huge_input(model: onnx.ModelProto) -> None:
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 1 << 40


def _onnx_int_input(model: onnx.ModelProto) -> None:
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.INT64


def _onnx_missing_initializer(model: onnx.ModelProto) -> None:
    model.graph.initializer.remove(_initializer(model, "c6"))


def _onnx_cycle(model: onnx.ModelProto) -> None:
    _node(model, "Relu").input[0] = _node(model, "MaxPool").output[0]


def _onnx_leaky_nan(model: onnx.ModelProto) -> None:
    _node(model, "Relu").op_type = "LeakyRelu"
    _set_attribute("LeakyRelu", "alpha", math.nan)(model)


def _onnx_unsupported(model: onnx.ModelProto) -> None:
    _node(model, "Relu").op_type = "Erf"


ONNX_CASES: dict[str, Case] = {
    "onnx-nan-weight": Case(
        onnx_edited(_onnx_nan_weight),
        "{m}: constant '/conv_0/out/weights' holds 1 NaN or infinite value(s), from the model's "
        "initialisers and attributes" + ONNX_HINT,
    ),
    "onnx-bias-size": Case(
        onnx_edited(_scale_initializer("c1", 1.0, 5)),
        "{m}: Conv '/Conv_0' has a bias of 5 values for 4 output channels" + ONNX_HINT,
    ),
    "onnx-huge-input": Case(
        onnx_edited(_onnx_huge_input),
        "{m}: input 'input' of shape (1, 3, 1099511627776, 8) would take 105553116266496 bytes "
        "of RAM as float32, more than any board has (the limit is 67108864)" + ONNX_HINT,
    ),
    "onnx-int-input": Case(
        onnx_edited(_onnx_int_input),
        "{m}: input 'input' has element type INT64; mcuflow imports float models (hint: export "
        "the float model (quantise it with `mcuflow quantize`))",
    ),
    "onnx-negative-pads": Case(
        onnx_edited(_set_attribute("Conv", "pads", [-1, 1, 1, 1])),
        "{m}: Conv '/Conv_0' has invalid kernel (3, 3), strides (1, 1), dilations (1, 1) or pads "
        "(-1, 1, 1, 1)" + ONNX_HINT,
    ),
    "onnx-zero-stride": Case(
        onnx_edited(_set_attribute("MaxPool", "strides", [0, 2])),
        "{m}: MaxPool '/MaxPool_3' has invalid kernel (2, 2), strides (0, 2), dilations (1, 1) "
        "or pads (0, 0, 0, 0)" + ONNX_HINT,
    ),
    "onnx-huge-stride": Case(
        onnx_edited(_set_attribute("MaxPool", "strides", [1 << 40, 2])),
        "{m}: MaxPool '/MaxPool_3' has invalid kernel (2, 2), strides (1099511627776, 2), "
        "dilations (1, 1) or pads (0, 0, 0, 0)" + ONNX_HINT,
    ),
    "onnx-missing-initializer": Case(
        onnx_edited(_onnx_missing_initializer),
        "{m}: node 5 (Gemm '/Gemm_5') reads 'conv_bn.c6', which nothing produces before it"
        + ONNX_HINT,
    ),
    "onnx-cycle": Case(
        onnx_edited(_onnx_cycle),
        "{m}: node 2 (Relu '/Relu_2') reads '/maxpool_3/out', which nothing produces before it"
        + ONNX_HINT,
    ),
    "onnx-leaky-relu-nan": Case(
        onnx_edited(_onnx_leaky_nan),
        "{m}: LeakyRelu '/Relu_2' has alpha nan" + ONNX_HINT,
    ),
    "onnx-unsupported-op": Case(
        onnx_edited(_onnx_unsupported),
        "{m} uses 1 unsupported operator(s): Erf (x1) (hint: run `mcuflow ops` for what mcuflow "
        "supports; re-export without those ops)",
    ),
    "onnx-scale-out-of-range": Case(
        onnx_edited(_scale_initializer("c6", 1e37)),
        "tensor '/gemm_5/out' would need quantisation scale 1.25133e+36; scales must lie between "
        "5.42e-20 and 2.15e+09 (hint: the float model's values or weights span a range int8 "
        "cannot represent)",
    ),
    "onnx-calibration-overflow": Case(
        onnx_edited(_scale_initializer("c6", 1e38)),
        "tensor '/gemm_5/out' reached NaN, infinity or a range wider than float32 during "
        "calibration (2 tensor(s) did): the float model overflows float32 (hint: check the "
        "model's weights and the calibration data's scale)",
    ),
}


@dataclass(frozen=True)
class Invocation:
    """CLI arguments (with files written to a directory) and the exact line it prints."""

    args: Callable[[Path], list[str]]
    message: str


def _model_file(directory: Path, data: bytes | None = None) -> str:
    path = directory / "model.tflite"
    path.write_bytes(base_model() if data is None else data)
    return str(path)


def _npy(directory: Path, value: np.ndarray | bytes) -> str:
    path = directory / "input.npy"
    if isinstance(value, bytes):
        path.write_bytes(value)
    else:
        np.save(path, value)
    return str(path)


def _truncated_npy(directory: Path) -> str:
    path = Path(_npy(directory, np.zeros((1, 8, 8, 3), np.int8)))
    path.write_bytes(path.read_bytes()[:-10])
    return str(path)


def _huge_npy(directory: Path) -> str:
    """A .npy header declaring a 1 TiB array, followed by 100 bytes."""
    path = directory / "input.npy"
    with path.open("wb") as file:
        npy_format.write_array_header_1_0(
            file, {"descr": "|i1", "fortran_order": False, "shape": (1 << 40,)})
        file.write(bytes(100))
    return str(path)


def _npz(directory: Path) -> str:
    path = directory / "input.npz"
    np.savez(path, a=np.zeros(3), b=np.ones(3))
    return str(path)


def _board_file(directory: Path, text: str) -> str:
    path = directory / "boards.toml"
    path.write_text(text)
    return str(path)


_BOARD = """
[boards.tiny]
name = "Tiny"
"""

OTHER_CASES: dict[str, Invocation] = {
    "missing-model": Invocation(
        lambda d: ["analyze", str(d / "nope.tflite")],
        "no such model file: {d}/nope.tflite (hint: check the path)",
    ),
    "directory-as-model": Invocation(
        lambda d: ["analyze", str(d)],
        "'{d}' is a directory, not a model file (hint: pass the .tflite or .onnx file; a "
        "directory written by `mcuflow compile` keeps its model as model.tflite)",
    ),
    "unknown-board": Invocation(
        lambda d: ["analyze", _model_file(d), "--board", "nucleo-f76"],
        "unknown board 'nucleo-f76' (hint: did you mean nucleo-f767zi, nucleo-f746zg, "
        "nucleo-f207zg? `mcuflow boards` lists the known boards)",
    ),
    "board-file-not-toml": Invocation(
        lambda d: ["analyze", _model_file(d), "--board-file", _board_file(d, "[boards\n")],
        "board file {d}/boards.toml is not valid TOML: Expected ']' at the end of a table "
        "declaration (at line 1, column 8) (hint: see the packaged boards.toml "
        "(src/mcuflow/hw/boards.toml) for the schema)",
    ),
    "board-file-missing-field": Invocation(
        lambda d: ["analyze", _model_file(d), "--board", "tiny", "--board-file",
                   _board_file(d, _BOARD)],
        "board file {d}/boards.toml, board 'tiny': missing fields 'mcu', 'core', 'fpu', 'dsp', "
        "'clock_hz', 'sram_bytes', 'sram_total_bytes', 'flash_bytes', 'flash_wait_states', "
        "'tiers' (hint: energy and source fields may be left out; see the packaged boards.toml "
        "(src/mcuflow/hw/boards.toml) for the schema)",
    ),
    "board-file-missing": Invocation(
        lambda d: ["boards", "--board-file", str(d / "nope.toml")],
        "cannot read board file {d}/nope.toml: No such file or directory (hint: check the path)",
    ),
    "input-wrong-shape": Invocation(
        lambda d: ["run", _model_file(d), "--input", _npy(d, np.zeros((1, 8, 8, 4), np.int8))],
        "input 'input_1' is shape (1, 8, 8, 4) int8, expected shape (1, 8, 8, 3) int8 (hint: "
        "convert the input to the model's shape and dtype)",
    ),
    "input-wrong-dtype": Invocation(
        lambda d: ["run", _model_file(d), "--input", _npy(d, np.zeros((1, 8, 8, 3)))],
        "input 'input_1' is shape (1, 8, 8, 3) float64, expected shape (1, 8, 8, 3) int8 "
        "(hint: convert the input to the model's shape and dtype)",
    ),
    "input-not-npy": Invocation(
        lambda d: ["run", _model_file(d), "--input", _npy(d, b"1,2,3\n")],
        "input {d}/input.npy is not a .npy file" + NPY_HINT,
    ),
    "input-missing": Invocation(
        lambda d: ["run", _model_file(d), "--input", str(d / "nope.npy")],
        "cannot read input {d}/nope.npy: No such file or directory" + NPY_HINT,
    ),
    "input-pickled-objects": Invocation(
        lambda d: ["run", _model_file(d), "--input",
                   _npy(d, np.array([{"x": 1}], dtype=object))],
        "cannot read input {d}/input.npy: Object arrays cannot be loaded when "
        "allow_pickle=False" + NPY_HINT,
    ),
    "input-truncated": Invocation(
        lambda d: ["run", _model_file(d), "--input", _truncated_npy(d)],
        "input {d}/input.npy declares an array of shape (1, 8, 8, 3) (192 bytes) but holds 182 "
        "bytes" + NPY_HINT,
    ),
    "input-huge-header": Invocation(
        lambda d: ["run", _model_file(d), "--input", _huge_npy(d)],
        "input {d}/input.npy declares an array of shape (1099511627776,) (1099511627776 bytes) "
        "but holds 100 bytes" + NPY_HINT,
    ),
    "input-two-arrays": Invocation(
        lambda d: ["run", _model_file(d), "--input", _npz(d)],
        "input {d}/input.npz is not a .npy file" + NPY_HINT,
    ),
}


def assert_one_line(code: int, err: str, expected: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    assert err == f"mcuflow: error: {expected}\n"


@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_broken_model(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = MODEL_CASES[name]
    model = _model_file(tmp_path, case.make())
    code, err = run_cli(capsys, ["analyze", model])
    assert_one_line(code, err, case.message.replace("{m}", f"'{model}'"))


@pytest.mark.parametrize("name", sorted(ONNX_CASES))
def test_broken_onnx_model(name: str, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """A float ONNX model is analysed through `--calibration`, as a user would."""
    case = ONNX_CASES[name]
    model = tmp_path / "model.onnx"
    model.write_bytes(case.make())
    calibration = tmp_path / "cal.npy"
    np.save(calibration, np.random.default_rng(3).standard_normal((4, *ONNX_SHAPE[1:]),
                                                                  np.float32))
    code, err = run_cli(capsys, ["analyze", str(model), "--calibration", str(calibration)])
    assert_one_line(code, err, case.message.replace("{m}", f"'{model}'"))


def test_onnx_base_model_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(onnx_edited(lambda model: None)())
    np.save(tmp_path / "cal.npy", np.zeros((2, *ONNX_SHAPE[1:]), np.float32))
    args = ["analyze", str(model), "--calibration", str(tmp_path / "cal.npy"), "--json"]
    assert run_cli(capsys, args)[0] == 0


@pytest.mark.parametrize("name", sorted(OTHER_CASES))
def test_broken_invocation(name: str, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    case = OTHER_CASES[name]
    code, err = run_cli(capsys, case.args(tmp_path))
    assert_one_line(code, err, case.message.replace("{d}", str(tmp_path)))


def test_there_are_at_least_30_kinds() -> None:
    assert len(MODEL_CASES) + len(OTHER_CASES) + len(ONNX_CASES) >= 30


def test_base_model_is_valid(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Every broken model is one edit away from this one, which analyses fine."""
    code, err = run_cli(capsys, ["analyze", _model_file(tmp_path), "--json"])
    assert (code, err) == (0, "")
    repacked = _model_file(tmp_path, pack(unpack(base_model())))
    assert run_cli(capsys, ["analyze", repacked]) == (0, "")


@pytest.mark.parametrize("debug", [False, True])
def test_traceback_only_in_debug_mode(tmp_path: Path, debug: bool) -> None:
    model = _model_file(tmp_path, MODEL_CASES["zero-scale"].make())
    env = {key: value for key, value in os.environ.items() if key != "MCUFLOW_DEBUG"}
    if debug:
        env["MCUFLOW_DEBUG"] = "1"
    done = subprocess.run([sys.executable, "-m", "mcuflow", "analyze", model], env=env,
                          capture_output=True, text=True, timeout=120)
    line = "mcuflow: error: " + MODEL_CASES["zero-scale"].message.replace("{m}", f"'{model}'")
    assert done.returncode == 2
    assert done.stderr.endswith(line + "\n")
    assert ("Traceback (most recent call last)" in done.stderr) is debug
    assert (done.stderr == line + "\n") is not debug
