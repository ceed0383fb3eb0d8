"""IMU classifiers: a dilated 1-D CNN as TensorFlow's converter writes it; a float ONNX twin."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import MeanAttrs, OpKind
from mcuflow.toolchain.host import random_inputs

WINDOW, AXES, CLASSES = 128, 6, 5
"""128 samples of a 3-axis accelerometer and a 3-axis gyroscope; five activities."""


def _conv1d(b: GraphBuilder, x: str, channels: int, dilation: int, padding: Padding,
            depthwise: bool = False) -> str:
    """Keras Conv1D(kernel 3, dilation) as the converter writes it.

    EXPAND_DIMS, then for a dilation SPACE_TO_BATCH_ND, the undilated VALID CONV_2D,
    BATCH_TO_SPACE_ND, then SQUEEZE. The paddings and crops are TensorFlow's
    (with_space_to_batch): SAME's (k - 1) * d split before and after, then padding after up to
    a multiple of the block, cropped again after.
    """
    image = b.expand_dims(x, 1)
    length = b.graph.tensors[x].shape[1]
    if dilation == 1:
        y = _conv(b, image, channels, padding, depthwise)
    else:
        total = 2 * dilation if padding is Padding.SAME else 0
        before, after = total // 2, total - total // 2
        extra = -(length + total) % dilation
        spread = b.space_to_batch(image, (1, dilation), ((0, 0), (before, after + extra)))
        y = _conv(b, spread, channels, Padding.VALID, depthwise)
        y = b.batch_to_space(y, (1, dilation), ((0, 0), (0, extra)))
    return b.squeeze(y, (1,))


def _conv(b: GraphBuilder, x: str, channels: int, padding: Padding, depthwise: bool) -> str:
    if depthwise:
        multiplier = channels // b.graph.tensors[x].shape[3]
        return b.depthwise_conv2d(x, (1, 3), depth_multiplier=multiplier, padding=padding,
                                  activation=Activation.RELU)
    return b.conv2d(x, channels, (1, 3), padding=padding, activation=Activation.RELU)


def imu_dilated(seed: int = 7) -> Graph:
    """The int8 IMU classifier, input [1, 128, 6].

    Conv1D blocks dilated 1, 2 (depthwise), 4 (padded up to a multiple of the block and
    cropped) and 2, GlobalMaxPooling1D (REDUCE_MAX), Dense, Softmax.
    """
    b = GraphBuilder("imu_dilated", seed=seed)
    x = b.input((1, WINDOW, AXES), 0.04, 3)
    x = _conv1d(b, x, 8, 1, Padding.VALID)
    x = _conv1d(b, x, 16, 2, Padding.SAME, depthwise=True)
    x = _conv1d(b, x, 16, 4, Padding.SAME)
    x = _conv1d(b, x, 16, 2, Padding.VALID)
    pooled = b.op(OpKind.REDUCE_MAX, [x], MeanAttrs((1,), False), b.quant(x))
    return b.output(b.softmax(b.fully_connected(pooled, CLASSES))).build()


def imu_onnx(seed: int = 0) -> bytes:
    """The float twin as ONNX on N x C x T.

    Conv(k 3, dilations 1, 2, 4) + Relu, ReduceMax over time, Gemm, Softmax.
    """
    rng = np.random.default_rng(seed)
    nodes, weights, channels, name = [], [], AXES, "imu"
    for index, (out, dilation) in enumerate(((8, 1), (16, 2), (16, 4))):
        w = numpy_helper.from_array((rng.standard_normal((out, channels, 3)) / np.sqrt(
            3 * channels)).astype(np.float32), f"w{index}")
        bias = numpy_helper.from_array((0.1 * rng.standard_normal(out)).astype(np.float32),
                                       f"b{index}")
        weights += [w, bias]
        nodes += [helper.make_node("Conv", [name, w.name, bias.name], [f"c{index}"],
                                   kernel_shape=[3], dilations=[dilation],
                                   pads=[dilation, dilation]),
                  helper.make_node("Relu", [f"c{index}"], [f"r{index}"])]
        name, channels = f"r{index}", out
    dense = numpy_helper.from_array((rng.standard_normal((CLASSES, channels)) / 4).astype(
        np.float32), "dense")
    dense_bias = numpy_helper.from_array(np.zeros(CLASSES, np.float32), "dense_bias")
    nodes += [helper.make_node("ReduceMax", [name], ["pooled"], axes=[2], keepdims=0),
              helper.make_node("Gemm", ["pooled", "dense", "dense_bias"], ["logits"], transB=1),
              helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    graph = helper.make_graph(
        nodes, "imu", [helper.make_tensor_value_info("imu", TensorProto.FLOAT, [1, AXES, WINDOW])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, CLASSES])],
        [*weights, dense, dense_bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def imu_inputs(graph: Graph, runs: int) -> list[np.ndarray]:
    """`runs` random int8 windows per input, stacked."""
    return random_inputs(graph, runs, seed=11)
