"""A small U-Net-style segmentation network, as an int8 graph and as a float ONNX model.

Encoder: 3x3 convolutions, two with stride 2. Decoder: a stride-2 TRANSPOSE_CONV (ONNX
ConvTranspose) and a nearest-neighbour upsampling (RESIZE_NEAREST_NEIGHBOR, ONNX Resize), each
concatenated with the encoder's skip connection, then 3x3 convolutions and a 1x1 convolution to
per-pixel class logits.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.ops import OpKind, ResizeNearestNeighborAttrs, TileAttrs

SIZE = 16
CHANNELS = 3
CLASSES = 4
WIDTHS = (8, 16, 24)
"""Channels of the encoder's three stages."""


def unet_graph(seed: int = 0) -> Graph:
    """The int8 U-Net from GraphBuilder: (1, SIZE, SIZE, CHANNELS) to (1, SIZE, SIZE, CLASSES)."""
    b = GraphBuilder("unet", seed)
    x = b.input((1, SIZE, SIZE, CHANNELS), 0.02, -3)
    relu = Activation.RELU
    e1 = b.conv2d(x, WIDTHS[0], (3, 3), activation=relu)
    e2 = b.conv2d(e1, WIDTHS[1], (3, 3), stride=2, activation=relu)
    bottom = b.conv2d(e2, WIDTHS[2], (3, 3), stride=2, activation=relu)
    up2 = b.transpose_conv(bottom, WIDTHS[1], (3, 3), 2, Padding.SAME, relu)
    b.graph.tensors[up2].quant = b.quant(e2)  # one quantisation for the concatenation
    d2 = b.conv2d(b.concatenation([up2, e2]), WIDTHS[1], (3, 3), activation=relu)
    b.graph.tensors[d2].quant = b.quant(e1)
    up1 = b.op(OpKind.RESIZE_NEAREST_NEIGHBOR, [d2],
               ResizeNearestNeighborAttrs((SIZE, SIZE)), b.quant(d2))
    d1 = b.conv2d(b.concatenation([up1, e1]), WIDTHS[0], (3, 3), activation=relu)
    return b.output(b.conv2d(d1, CLASSES, (1, 1))).build()


def unet_int16x8_graph(seed: int = 0) -> Graph:
    """The U-Net in LiteRT's int16x8 scheme: (1, SIZE, SIZE, CHANNELS) float32 to class scores.

    QUANTIZE to int16, 3x3 convolutions (two with stride 2); the decoder upsamples twice by
    nearest neighbour, once as TILE between RESHAPEs (each pixel repeated 2x2), once as
    RESIZE_NEAREST_NEIGHBOR, each CONCATENATION with the encoder's skip connection, then 3x3
    convolutions, a 1x1 convolution and DEQUANTIZE.
    """
    b = GraphBuilder("unet_int16x8", seed)
    x = b.input((1, SIZE, SIZE, CHANNELS), dtype=DType.FLOAT32)
    q = b.quantize(x, 4.0 / 32768.0, 0, DType.INT16)
    relu = Activation.RELU
    e1 = b.conv2d(q, WIDTHS[0], (3, 3), activation=relu)
    e2 = b.conv2d(e1, WIDTHS[1], (3, 3), stride=2, activation=relu)
    bottom = b.conv2d(e2, WIDTHS[1], (3, 3), stride=2, activation=relu)
    b.graph.tensors[bottom].quant = b.quant(e2)  # one quantisation for the concatenation
    half, quarter = SIZE // 2, SIZE // 4
    blocks = b.reshape(bottom, (quarter, 1, quarter, 1, WIDTHS[1]))
    tiled = b.op(OpKind.TILE, [blocks], TileAttrs((1, 2, 1, 2, 1)), b.quant(bottom),
                 DType.INT16)
    up2 = b.reshape(tiled, (1, half, half, WIDTHS[1]))
    d2 = b.conv2d(b.concatenation([up2, e2]), WIDTHS[1], (3, 3), activation=relu)
    b.graph.tensors[d2].quant = b.quant(e1)
    up1 = b.op(OpKind.RESIZE_NEAREST_NEIGHBOR, [d2], ResizeNearestNeighborAttrs((SIZE, SIZE)),
               b.quant(d2), DType.INT16)
    d1 = b.conv2d(b.concatenation([up1, e1]), WIDTHS[0], (3, 3), activation=relu)
    return b.output(b.dequantize(b.conv2d(d1, CLASSES, (1, 1)))).build()


def images(count: int, seed: int) -> np.ndarray:
    """Smooth random NCHW images: blobs of a few colours, like segmentation inputs."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1.0, 1.0, (count, CHANNELS, SIZE // 4, SIZE // 4))
    images = coarse.repeat(4, axis=2).repeat(4, axis=3)
    return (images + 0.1 * rng.standard_normal(images.shape)).astype(np.float32)


class _OnnxNet:
    """Nodes and initialisers of a float ONNX graph under construction."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, data: np.ndarray) -> str:
        name = f"c{len(self.initializers)}"
        self.initializers.append(numpy_helper.from_array(data, name))
        return name

    def weights(self, *shape: int) -> str:
        fan_in = int(np.prod(shape[1:]))
        return self.const((self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(
            np.float32))

    def bias(self, channels: int) -> str:
        return self.const((self.rng.standard_normal(channels) * 0.1).astype(np.float32))

    def node(self, op_type: str, *inputs: str, **attrs: object) -> str:
        name = f"t{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=f"n{name}",
                                           **attrs))
        return name

    def conv_relu(self, x: str, in_c: int, out_c: int, stride: int = 1) -> str:
        y = self.node("Conv", x, self.weights(out_c, in_c, 3, 3), self.bias(out_c),
                      pads=[1, 1, 1, 1], strides=[stride, stride])
        return self.node("Relu", y)


def unet_onnx(seed: int = 0) -> bytes:
    """The same network as a float ONNX model (NCHW), as PyTorch exports it.

    ConvTranspose(kernel 3, stride 2, pads 1, output_padding 1) and Resize(nearest, asymmetric,
    floor) upsample; Concat joins the skip connections on channels.
    """
    net = _OnnxNet(seed)
    e1 = net.conv_relu("x", CHANNELS, WIDTHS[0])
    e2 = net.conv_relu(e1, WIDTHS[0], WIDTHS[1], 2)
    bottom = net.conv_relu(e2, WIDTHS[1], WIDTHS[2], 2)
    up2 = net.node("Relu", net.node(
        "ConvTranspose", bottom, net.weights(WIDTHS[2], WIDTHS[1], 3, 3), net.bias(WIDTHS[1]),
        strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]))
    d2 = net.conv_relu(net.node("Concat", up2, e2, axis=1), 2 * WIDTHS[1], WIDTHS[1])
    scales = net.const(np.array([1.0, 1.0, 2.0, 2.0], np.float32))
    up1 = net.node("Resize", d2, "", scales, mode="nearest",
                   coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    d1 = net.conv_relu(net.node("Concat", up1, e1, axis=1), WIDTHS[1] + WIDTHS[0], WIDTHS[0])
    logits = net.node("Conv", d1, net.weights(CLASSES, WIDTHS[0], 1, 1), net.bias(CLASSES))
    graph = helper.make_graph(
        net.nodes, "unet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CHANNELS, SIZE, SIZE])],
        [helper.make_tensor_value_info(logits, TensorProto.FLOAT, [1, CLASSES, SIZE, SIZE])],
        net.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()
