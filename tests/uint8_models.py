"""A uint8-I/O model as TensorFlow's converter writes it with inference_input_type=uint8."""

from __future__ import annotations

from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.ops import NoAttrs, OpKind
from mcuflow.ir.quantization import QuantParams


def to_uint8(b: GraphBuilder, x: str, scale: float, zero_point: int) -> str:
    """QUANTIZE of int8 `x` to a uint8 tensor."""
    return b.op(OpKind.QUANTIZE, [x], NoAttrs(), QuantParams.per_tensor(scale, zero_point),
                DType.UINT8)


def uint8_cnn(seed: int = 3) -> Graph:
    """uint8 image [1, 16, 16, 3] -> QUANTIZE -> small int8 CNN -> QUANTIZE -> uint8 outputs.

    The input QUANTIZE keeps the scale and moves the zero point by 128 (LiteRT's XOR fast
    path), as the converter writes it; the probabilities' too (softmax 1/256 at -128 -> 0). The
    logits go out at another scale and zero point (the general requantisation).
    """
    b = GraphBuilder("uint8_cnn", seed=seed)
    image = b.input((1, 16, 16, 3), 1.0 / 255.0, 128, dtype=DType.UINT8)
    x = b.quantize(image, 1.0 / 255.0, 0)
    x = b.conv2d(x, 8, (3, 3), stride=2, activation=Activation.RELU)
    x = b.depthwise_conv2d(x, (3, 3), activation=Activation.RELU6)
    x = b.max_pool2d(b.conv2d(x, 16, (1, 1), activation=Activation.RELU))
    logits = b.fully_connected(b.mean(x), 4)
    probabilities = b.softmax(logits)
    logits_quant = b.quant(logits)
    return b.output(to_uint8(b, probabilities, 1.0 / 256.0, 0),
                    to_uint8(b, logits, logits_quant.scale0 * 1.7,
                             logits_quant.zero_point0 + 100)).build()
