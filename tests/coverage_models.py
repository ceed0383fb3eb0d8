"""The models of the operator-coverage work (issue 17), built with the project's writer.

The issue's six: a 1-D conv IMU classifier with dilations, a U-Net with transpose convolutions
and upsampling, an LSTM keyword spotter, an SVDF keyword spotter, an int16x8 CNN and a uint8-I/O
CNN; and a bidirectional LSTM keyword spotter as TensorFlow's converter writes it. The tests
check each bit-exact against LiteRT on the host and QEMU; bench/cortexm.py --coverage measures
them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.ops import LSTM_OUTPUT_STATE, OpKind, ReverseAttrs, SliceAttrs
from mcuflow.ir.quantization import QuantParams
from tests.imu_models import imu_dilated
from tests.uint8_models import uint8_cnn
from tests.unet_models import unet_graph

LSTM_FRAMES, LSTM_FEATURES, LSTM_UNITS, LSTM_KEYWORDS = 49, 10, 32, 12
SVDF_FEATURES, SVDF_LABELS = 40, 4
INT16_INPUT_SHAPE = (1, 12, 12, 3)


def kws_lstm_graph() -> Graph:
    """The LSTM keyword spotter: 49 frames x 10 features -> LSTM(32) -> FULLY_CONNECTED.

    The last step is taken with SLICE + RESHAPE, as converters write it; SOFTMAX at the end.
    """
    b = GraphBuilder("kws_lstm", seed=49)
    x = b.input((1, LSTM_FRAMES, LSTM_FEATURES), 0.06, -11)
    sequence = b.lstm(x, LSTM_UNITS, gain=3.0)
    last = b.op(OpKind.SLICE, [sequence],
                SliceAttrs((0, LSTM_FRAMES - 1, 0), (1, 1, LSTM_UNITS)), b.quant(sequence))
    logits = b.fully_connected(b.reshape(last, (1, LSTM_UNITS)), LSTM_KEYWORDS)
    return b.output(b.softmax(logits)).build()


def bidirectional_kws_graph() -> Graph:
    """Keras' Bidirectional(LSTM) as TensorFlow's converter writes it.

    The backward LSTM reads the frames through REVERSE_V2 and its sequence is reversed back
    before CONCATENATION (both sequences quantised alike); as the converter quantises them, each
    LSTM's output state, hidden intermediate and output carry three different quantisations.
    """
    b = GraphBuilder("bidirectional_kws", seed=21)
    x = b.input((1, LSTM_FRAMES, LSTM_FEATURES), 0.06, -11)
    sequence = QuantParams.per_tensor(0.0065, -4)
    forward = _requantised_states(b, b.lstm(x, 12, output=sequence, gain=3.0))
    backward = _requantised_states(b, b.lstm(_reversed(b, x), 12, output=sequence, gain=3.0))
    both = b.concatenation([forward, _reversed(b, backward)], axis=2)
    last = b.op(OpKind.SLICE, [both], SliceAttrs((0, LSTM_FRAMES - 1, 0), (1, 1, 24)),
                b.quant(both))
    return b.output(b.fully_connected(b.reshape(last, (1, 24)), LSTM_KEYWORDS)).build()


def _reversed(b: GraphBuilder, sequence: str) -> str:
    return b.op(OpKind.REVERSE_V2, [sequence], ReverseAttrs((1,)), b.quant(sequence))


def _requantised_states(b: GraphBuilder, sequence: str) -> str:
    """Quantise the output state and hidden intermediate of `sequence`'s LSTM unlike it."""
    op = b.graph.operators[b.graph.producer(sequence)]
    out = b.quant(sequence)
    b.graph.tensors[op.inputs[LSTM_OUTPUT_STATE]].quant = QuantParams.per_tensor(
        out.scale0 * 0.97, out.zero_point0 + 3)
    b.graph.operators[b.graph.producer(sequence)] = replace(op, attrs=replace(
        op.attrs, hidden=QuantParams.per_tensor(out.scale0 * 1.4, out.zero_point0 - 5)))
    return sequence


def svdf_kws_model(activation: Activation = Activation.RELU) -> bytes:
    """The SVDF keyword spotter as .tflite bytes (random weights, fixed seed).

    40 features per frame -> SVDF -> SVDF -> FULLY_CONNECTED -> SOFTMAX.
    """
    b = GraphBuilder("svdf_kws", seed=40)
    frame = b.input((1, SVDF_FEATURES), 0.1, -128)
    first = b.svdf(frame, 32, rank=1, memory=10, activation=activation)
    second = b.svdf(first, 16, rank=2, memory=6, activation=activation)
    return write_tflite(b.output(b.softmax(b.fully_connected(second, SVDF_LABELS))).build())


def int16x8_cnn() -> Graph:
    """The int16x8 CNN, with random int8 weights and int64 biases at realistic scales."""
    b = GraphBuilder("int16x8_cnn", seed=5)
    x = b.input(INT16_INPUT_SHAPE, dtype=DType.FLOAT32)
    q = b.quantize(x, 4.0 / 32768.0, 0, DType.INT16)
    stem = b.conv2d(q, 8, (3, 3), stride=2, activation=Activation.RELU6)
    depthwise = b.depthwise_conv2d(stem, (3, 3), activation=Activation.RELU)
    pointwise = b.conv2d(depthwise, 8, (1, 1))
    residual = b.add(stem, pointwise, Activation.RELU)
    pooled = b.average_pool2d(residual, 6, 6, Padding.VALID)
    logits = b.fully_connected(b.reshape(pooled, (1, 8)), 10)
    return b.output(b.dequantize(b.softmax(logits, beta=0.05))).build()


COVERAGE_MODELS: dict[str, Callable[[], Graph]] = {
    "imu_dilated_conv1d": imu_dilated,
    "unet_transpose_conv": unet_graph,
    "kws_lstm": kws_lstm_graph,
    "kws_bidirectional_lstm": bidirectional_kws_graph,
    "kws_svdf": lambda: read_tflite(svdf_kws_model()),
    "cnn_int16x8": int16x8_cnn,
    "cnn_uint8_io": uint8_cnn,
}
"""Name -> the model's graph, as its .tflite reads back where the test builds it that way."""
