"""Seed models for the fuzzer: the shared MLPerf Tiny models and small graphs built here."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import tflite

from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import DType
from tests.fuzz.flat import raw_model, raw_operator, raw_tensor, schema

SHARED_MODELS = Path(__file__).resolve().parents[3] / "shared" / "models" / "mlperf_tiny"
TT = tflite.TensorType
OP = tflite.BuiltinOperator


def _convs(b: GraphBuilder) -> None:
    x = b.input((1, 6, 6, 2), 0.04, 3)
    y = b.conv2d(x, 3, (3, 3), stride=2, activation=Activation.RELU6)
    y = b.depthwise_conv2d(y, (3, 3), depth_multiplier=2, padding=Padding.VALID, bias=False)
    y = b.fully_connected(b.reshape(y, (1, -1)), 4, per_channel=True)
    b.output(b.softmax(y, beta=0.5))


def _elementwise(b: GraphBuilder) -> None:
    x = b.input((1, 3, 3, 2))
    c = b.constant_int8((1, 1, 1, 2))
    b.output(b.mul(b.sub(b.add(x, c, Activation.RELU), x), c))


def _pools(b: GraphBuilder) -> None:
    x = b.input((1, 6, 6, 2))
    y = b.average_pool2d(x, 3, 2, Padding.SAME)
    y = b.max_pool2d(y, 2, 1, Padding.VALID, Activation.RELU6)
    b.output(b.squeeze(b.mean(y, (1, 2), keep_dims=True), (1, 2)))


def _pad_concat(b: GraphBuilder) -> None:
    x = b.input((1, 3, 3, 2))
    y = b.pad(x, ((0, 0), (1, 2), (2, 1), (0, 0)))
    z = b.pad(x, ((0, 0), (0, 3), (3, 0), (0, 0)))
    b.output(b.concatenation([y, z], axis=-1))


def _activations(b: GraphBuilder) -> None:
    x = b.input((1, 8), 0.08, 7)
    b.output(b.logistic(x), b.tanh(x), b.hard_swish(b.relu(x)), b.leaky_relu(b.relu6(x), 0.25))


def _quantize(b: GraphBuilder) -> None:
    x = b.input((1, 6), dtype=DType.FLOAT32)
    r = b.quantize(b.quantize(x, 0.03, -4), 0.05, 10)
    b.output(b.dequantize(r))


_BUILT: dict[str, Callable[[GraphBuilder], None]] = {
    "convs": _convs,
    "elementwise": _elementwise,
    "pools": _pools,
    "pad_concat": _pad_concat,
    "activations": _activations,
    "quantize": _quantize,
}


def _i32(*values: int) -> bytes:
    return np.asarray(values, dtype="<i4").tobytes()


def keras_flatten_model() -> bytes:
    """int8 RESHAPE(x, PACK(STRIDED_SLICE(SHAPE(x)), -1)) then RELU: a shape subgraph to fold."""
    quant = ([0.05], [2], 0)
    tensors = [
        raw_tensor("x", (1, 3, 2, 2), TT.INT8, quant=quant),
        raw_tensor("shape", (4,), TT.INT32),
        raw_tensor("begin", (1,), TT.INT32, 1),
        raw_tensor("end", (1,), TT.INT32, 2),
        raw_tensor("strides", (1,), TT.INT32, 2),
        raw_tensor("batch", (), TT.INT32),
        raw_tensor("minus_one", (), TT.INT32, 4),
        raw_tensor("packed", (2,), TT.INT32),
        raw_tensor("flat", (1, 12), TT.INT8, quant=quant),
        raw_tensor("y", (1, 12), TT.INT8, quant=quant),
    ]
    slice_options = schema.StridedSliceOptionsT()
    slice_options.shrinkAxisMask = 1
    pack_options = schema.PackOptionsT()
    pack_options.valuesCount = 2
    ops = [
        raw_operator(0, [0], [1]),
        raw_operator(1, [1, 2, 3, 4], [5],
                     (schema.BuiltinOptions.StridedSliceOptions, slice_options)),
        raw_operator(2, [5, 6], [7], (schema.BuiltinOptions.PackOptions, pack_options)),
        raw_operator(3, [0, 7], [8]),
        raw_operator(4, [8], [9]),
    ]
    codes = [OP.SHAPE, OP.STRIDED_SLICE, OP.PACK, OP.RESHAPE, OP.RELU]
    buffers = [None, _i32(0), _i32(1), None, _i32(-1)]
    return raw_model(tensors, ops, codes, ([0], [9]), buffers)


@cache
def built_seeds() -> dict[str, bytes]:
    """Small int8 graphs covering every OpKind, written by mcuflow's own writer."""
    seeds = {}
    for name, make in _BUILT.items():
        builder = GraphBuilder(name, seed=11)
        make(builder)
        seeds[name] = write_tflite(builder.build())
    seeds["keras_flatten"] = keras_flatten_model()
    return seeds


@cache
def shared_seeds() -> dict[str, bytes]:
    """The shared MLPerf Tiny models (int8 and float), by file stem; empty when absent."""
    return {path.stem: path.read_bytes() for path in sorted(SHARED_MODELS.glob("*.tflite"))}


def all_seeds() -> dict[str, bytes]:
    """Every seed, small built graphs first."""
    return {**built_seeds(), **shared_seeds()}
