"""GraphBuilder: quantised int8 graphs with random weights for tests, benchmarks, the demo."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import (
    BatchSpaceAttrs,
    ConcatenationAttrs,
    Conv2DAttrs,
    DepthwiseConv2DAttrs,
    ElementwiseAttrs,
    ExpandDimsAttrs,
    FullyConnectedAttrs,
    LeakyReluAttrs,
    LstmAttrs,
    MeanAttrs,
    NoAttrs,
    OpAttrs,
    OpKind,
    PadAttrs,
    Pool2DAttrs,
    ReshapeAttrs,
    SoftmaxAttrs,
    SqueezeAttrs,
    SvdfAttrs,
    TransposeConvAttrs,
    infer_output_shapes,
)
from mcuflow.ir.quantization import QuantParams

# Uniform int8 values have a standard deviation of about 73; three of them span the int8 range.
_INT8_STD = 73.0
_INT16_STD = 18918.0  # the same for uniform int16 values


def _unit_gain_scale(depth: int) -> float:
    """The weight scale at which a layer of `depth` inputs keeps its input's real spread.

    Uniform int8 weights have a standard deviation of about _INT8_STD steps, so the sum of
    `depth` products grows by _INT8_STD * scale * sqrt(depth); scales around this value keep
    the real values of a deep random graph in a realistic range instead of growing layer by
    layer (the integer arithmetic of CONV_2D and FULLY_CONNECTED does not depend on it).
    """
    return 1.0 / (_INT8_STD * math.sqrt(depth))


class GraphBuilder:
    """Fluent construction of int8 graphs; every method returns the new output tensor's name."""

    def __init__(self, name: str = "model", seed: int = 0, accumulator_sigmas: float = 3.0
                 ) -> None:
        """A builder of graph `name` whose random values come from `seed`.

        `accumulator_sigmas`: how many standard deviations of a typical int8 accumulator the
        output range of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED spans. At 3 each layer's
        scale is 1.7x its input's; 128 / 73 keeps it (deep graphs, whose scales would grow past
        what TFLite files may hold).
        """
        self.graph = Graph(name)
        self.rng = np.random.default_rng(seed)
        self._counter = 0
        self._sigmas = accumulator_sigmas

    def _fresh(self, stem: str) -> str:
        self._counter += 1
        return f"{stem}_{self._counter}"

    def quant(self, name: str) -> QuantParams:
        """Quantisation parameters of tensor `name`."""
        quant = self.graph.tensors[name].quant
        assert quant is not None, f"tensor {name} is not quantised"
        return quant

    def input(
        self, shape: tuple[int, ...], scale: float = 0.05, zero_point: int = 0,
        dtype: DType = DType.INT8,
    ) -> str:
        """A graph input (float inputs get no quantisation parameters)."""
        quant = None if dtype is DType.FLOAT32 else QuantParams.per_tensor(scale, zero_point)
        name = self._fresh("input")
        self.graph.add_tensor(Tensor(name, tuple(shape), dtype, quant))
        self.graph.inputs.append(name)
        return name

    def output(self, *names: str) -> GraphBuilder:
        """Mark tensors as graph outputs."""
        self.graph.outputs.extend(names)
        return self

    def build(self) -> Graph:
        """The finished graph."""
        return self.graph

    def constant(self, stem: str, data: np.ndarray, quant: QuantParams | None) -> str:
        """A constant tensor holding `data`."""
        name = self._fresh(stem)
        dtype = DType(np.dtype(data.dtype).name)
        self.graph.add_tensor(Tensor(name, tuple(data.shape), dtype, quant, data))
        return name

    def op(
        self, kind: OpKind, inputs: list[str], attrs: OpAttrs, quant: QuantParams | None,
        dtype: DType = DType.INT8,
    ) -> str:
        """Append an operator of any kind; its output shape comes from shape inference."""
        name = self._fresh(kind.value.lower())
        operator = Operator(kind, tuple(inputs), (name,), attrs, name)
        shape = infer_output_shapes(self.graph, operator)[0]
        self.graph.add_tensor(Tensor(name, shape, dtype, quant))
        self.graph.operators.append(operator)
        return name

    def op_outputs(self, kind: OpKind, inputs: list[str], attrs: OpAttrs,
                   quant: QuantParams | None, dtype: DType = DType.INT8) -> list[str]:
        """Append an operator with as many outputs as shape inference gives (SPLIT)."""
        stem = self._fresh(kind.value.lower())
        probe = Operator(kind, tuple(inputs), (stem,), attrs, stem)
        shapes = infer_output_shapes(self.graph, probe)
        names = [f"{stem}_{k}" for k in range(len(shapes))]
        for name, shape in zip(names, shapes, strict=True):
            self.graph.add_tensor(Tensor(name, shape, dtype, quant))
        self.graph.operators.append(Operator(kind, tuple(inputs), tuple(names), attrs, stem))
        return names

    def _weights(
        self, shape: tuple[int, ...], axis: int, per_channel: bool
    ) -> tuple[str, QuantParams]:
        channels = shape[axis]
        data = self.rng.integers(-127, 128, size=shape, dtype=np.int8)
        unit = _unit_gain_scale(int(np.prod(shape)) // channels)
        if per_channel:
            scales = (self.rng.uniform(0.5, 1.5, size=channels) * unit).astype(np.float32)
            quant = QuantParams.per_channel(scales, np.zeros(channels, dtype=np.int64), axis)
        else:
            quant = QuantParams.per_tensor(float(self.rng.uniform(0.5, 1.5) * unit), 0)
        return self.constant("weights", data, quant), quant

    def _wide(self, x: str) -> bool:
        """True when activation `x` is int16 (LiteRT's int16x8 scheme: int64 bias, zero point 0)."""
        return self.graph.tensors[x].dtype is DType.INT16

    def _activation(self, x: str) -> DType:
        """The output type of a layer reading `x`: int16 after int16, else int8."""
        return DType.INT16 if self._wide(x) else DType.INT8

    def _bias(self, channels: int, input_scale: float, weights: QuantParams, depth: int,
              wide: bool = False) -> str:
        scales = np.asarray(weights.scale, dtype=np.float64) * input_scale
        if not weights.is_per_channel:
            scales = np.full(channels, scales[0])
        spread = (_INT16_STD if wide else _INT8_STD) * _INT8_STD * math.sqrt(depth)
        data = self.rng.integers(-int(spread), int(spread) + 1, size=channels).astype(
            np.int64 if wide else np.int32)
        quant = QuantParams.per_channel(scales, np.zeros(channels, dtype=np.int64), 0)
        return self.constant("bias", data, quant)

    def _accumulator_quant(self, x: str, weights: QuantParams, depth: int) -> QuantParams:
        """Output scale so that a typical accumulator spans about +-3 sigma of int8 (see __init__).

        After an int16 input: of int16, with zero point 0.
        """
        in_scale = self.quant(x).scale0
        w_scale = float(np.mean(weights.scale))
        if self._wide(x):
            sigma = _INT16_STD * _INT8_STD * math.sqrt(depth) * in_scale * w_scale
            return QuantParams.per_tensor(3.0 * sigma / 32768.0, 0)
        sigma = _INT8_STD * _INT8_STD * math.sqrt(depth) * in_scale * w_scale
        zero_point = int(self.rng.integers(-20, 21))
        return QuantParams.per_tensor(self._sigmas * sigma / 128.0, zero_point)

    def conv2d(
        self, x: str, out_channels: int, kernel: tuple[int, int] = (3, 3), stride: int = 1,
        dilation: int = 1, padding: Padding = Padding.SAME,
        activation: Activation = Activation.NONE, per_channel: bool = True, bias: bool = True,
    ) -> str:
        """CONV_2D with random int8 weights and int32 bias."""
        in_c = self.graph.tensors[x].shape[3]
        w, wq = self._weights((out_channels, *kernel, in_c), 0, per_channel)
        depth = kernel[0] * kernel[1] * in_c
        inputs = [x, w] + ([self._bias(out_channels, self.quant(x).scale0, wq, depth,
                                       self._wide(x))] if bias else [])
        attrs = Conv2DAttrs(stride, stride, dilation, dilation, padding, activation)
        return self.op(OpKind.CONV_2D, inputs, attrs, self._accumulator_quant(x, wq, depth),
                       self._activation(x))

    def depthwise_conv2d(
        self, x: str, kernel: tuple[int, int] = (3, 3), stride: int = 1, dilation: int = 1,
        depth_multiplier: int = 1, padding: Padding = Padding.SAME,
        activation: Activation = Activation.NONE, per_channel: bool = True, bias: bool = True,
    ) -> str:
        """DEPTHWISE_CONV_2D with random int8 weights and int32 bias."""
        out_c = self.graph.tensors[x].shape[3] * depth_multiplier
        w, wq = self._weights((1, *kernel, out_c), 3, per_channel)
        depth = kernel[0] * kernel[1]
        inputs = [x, w] + ([self._bias(out_c, self.quant(x).scale0, wq, depth, self._wide(x))]
                           if bias else [])
        attrs = DepthwiseConv2DAttrs(
            stride, stride, dilation, dilation, depth_multiplier, padding, activation
        )
        return self.op(OpKind.DEPTHWISE_CONV_2D, inputs, attrs,
                       self._accumulator_quant(x, wq, depth), self._activation(x))

    def fully_connected(
        self, x: str, units: int, activation: Activation = Activation.NONE,
        per_channel: bool = False, bias: bool = True, keep_num_dims: bool = False,
    ) -> str:
        """FULLY_CONNECTED with random int8 weights and int32 bias."""
        depth = self.graph.tensors[x].shape[-1]
        w, wq = self._weights((units, depth), 0, per_channel)
        inputs = [x, w] + ([self._bias(units, self.quant(x).scale0, wq, depth, self._wide(x))]
                           if bias else [])
        attrs = FullyConnectedAttrs(activation, keep_num_dims)
        return self.op(OpKind.FULLY_CONNECTED, inputs, attrs,
                       self._accumulator_quant(x, wq, depth), self._activation(x))

    def svdf(
        self, x: str, units: int, rank: int = 1, memory: int = 4,
        activation: Activation = Activation.RELU, bias: bool = True,
    ) -> str:
        """SVDF with random weights, int32 bias and a new variable int16 state.

        The state scale keeps a typical feature value near 1/8 of int16, the output scale a
        typical unit near 1/3 of int8.
        """
        batch, depth = self.graph.tensors[x].shape
        filters = units * rank
        feature, _ = self._weights((filters, depth), 0, per_channel=False)
        sigma = _INT8_STD * self.quant(x).scale0
        state_q = QuantParams.per_tensor(3.0 * sigma / 4096.0, 0)
        time_data = self.rng.integers(-32767, 32768, size=(filters, memory)).astype(np.int16)
        time_q = QuantParams.per_tensor(1.0 / (18918.0 * math.sqrt(memory)), 0)
        time = self.constant("weights_time", time_data, time_q)
        state = self._variable("state", (batch, memory * filters), DType.INT16, state_q)
        inputs = [x, feature, time]
        if bias:
            spread = int(4096 * 18918 * math.sqrt(memory) / 4)
            data = self.rng.integers(-spread, spread + 1, size=units).astype(np.int32)
            scale = float(np.float32(state_q.scale0) * np.float32(time_q.scale0))
            inputs.append(self.constant("bias", data, QuantParams.per_tensor(scale, 0)))
        out_q = QuantParams.per_tensor(3.0 * sigma * math.sqrt(rank) / 128.0,
                                       int(self.rng.integers(-20, 21)))
        return self.op(OpKind.SVDF, [*inputs, state], SvdfAttrs(rank, activation), out_q)

    def _elementwise(self, kind: OpKind, a: str, b: str, activation: Activation,
                     quant: QuantParams | None) -> str:
        wide = self._wide(a)
        if quant is None:
            sa, sb = self.quant(a).scale0, self.quant(b).scale0
            spread = _INT16_STD * 1.75 if wide else _INT8_STD * 3.0
            scale = sa * sb * spread if kind is OpKind.MUL else 2.0 * max(sa, sb)
            zero_point = 0 if wide else int(self.rng.integers(-10, 11))
            quant = QuantParams.per_tensor(scale, zero_point)
        return self.op(kind, [a, b], ElementwiseAttrs(activation), quant,
                       self._activation(a))

    def add(self, a: str, b: str, activation: Activation = Activation.NONE,
            quant: QuantParams | None = None) -> str:
        """ADD with broadcasting."""
        return self._elementwise(OpKind.ADD, a, b, activation, quant)

    def sub(self, a: str, b: str, activation: Activation = Activation.NONE,
            quant: QuantParams | None = None) -> str:
        """SUB with broadcasting."""
        return self._elementwise(OpKind.SUB, a, b, activation, quant)

    def mul(self, a: str, b: str, activation: Activation = Activation.NONE,
            quant: QuantParams | None = None) -> str:
        """MUL with broadcasting."""
        return self._elementwise(OpKind.MUL, a, b, activation, quant)

    def constant_int8(
        self, shape: tuple[int, ...], scale: float = 0.05, zero_point: int = 0
    ) -> str:
        """A random int8 constant tensor (e.g. the second operand of ADD)."""
        data = self.rng.integers(-128, 128, size=shape, dtype=np.int8)
        return self.constant("const", data, QuantParams.per_tensor(scale, zero_point))

    def _pool(self, kind: OpKind, x: str, size: int, stride: int, padding: Padding,
              activation: Activation) -> str:
        attrs = Pool2DAttrs(size, size, stride, stride, padding, activation)
        return self.op(kind, [x], attrs, self.quant(x), self._activation(x))

    def average_pool2d(self, x: str, size: int = 2, stride: int = 2,
                       padding: Padding = Padding.VALID,
                       activation: Activation = Activation.NONE) -> str:
        """AVERAGE_POOL_2D (input and output share quantisation, as TFLite requires)."""
        return self._pool(OpKind.AVERAGE_POOL_2D, x, size, stride, padding, activation)

    def max_pool2d(self, x: str, size: int = 2, stride: int = 2,
                   padding: Padding = Padding.VALID,
                   activation: Activation = Activation.NONE) -> str:
        """MAX_POOL_2D (input and output share quantisation)."""
        return self._pool(OpKind.MAX_POOL_2D, x, size, stride, padding, activation)

    def mean(self, x: str, axes: tuple[int, ...] = (1, 2), keep_dims: bool = False,
             quant: QuantParams | None = None) -> str:
        """MEAN over `axes`."""
        return self.op(OpKind.MEAN, [x], MeanAttrs(axes, keep_dims), quant or self.quant(x),
                       self._activation(x))

    def reshape(self, x: str, new_shape: tuple[int, ...]) -> str:
        """RESHAPE (a -1 entry is resolved here)."""
        size = self.graph.tensors[x].size
        known = int(np.prod([d for d in new_shape if d != -1], dtype=np.int64))
        resolved = tuple(size // known if d == -1 else d for d in new_shape)
        return self.op(OpKind.RESHAPE, [x], ReshapeAttrs(resolved), self.quant(x),
                       self._activation(x))

    def squeeze(self, x: str, axes: tuple[int, ...] = ()) -> str:
        """SQUEEZE."""
        return self.op(OpKind.SQUEEZE, [x], SqueezeAttrs(axes), self.quant(x),
                       self._activation(x))

    def expand_dims(self, x: str, axis: int) -> str:
        """EXPAND_DIMS: a size-1 axis at `axis` (non-negative) of the output."""
        return self.op(OpKind.EXPAND_DIMS, [x], ExpandDimsAttrs(axis), self.quant(x),
                       self._activation(x))

    def softmax(self, x: str, beta: float = 1.0) -> str:
        """SOFTMAX with TFLite's int8 output quantisation (1/256, -128; int16: 1/32768, 0)."""
        if self._wide(x):
            return self.op(OpKind.SOFTMAX, [x], SoftmaxAttrs(beta),
                           QuantParams.per_tensor(1.0 / 32768.0, 0), DType.INT16)
        return self.op(OpKind.SOFTMAX, [x], SoftmaxAttrs(beta),
                       QuantParams.per_tensor(1.0 / 256.0, -128))

    def pad(self, x: str, paddings: tuple[tuple[int, int], ...]) -> str:
        """PAD with the input's zero point."""
        return self.op(OpKind.PAD, [x], PadAttrs(paddings), self.quant(x), self._activation(x))

    def space_to_batch(self, x: str, block_shape: tuple[int, ...],
                       paddings: tuple[tuple[int, int], ...]) -> str:
        """SPACE_TO_BATCH_ND: pads with the zero point, moves blocks of pixels into the batch."""
        return self.op(OpKind.SPACE_TO_BATCH_ND, [x], BatchSpaceAttrs(block_shape, paddings),
                       self.quant(x))

    def batch_to_space(self, x: str, block_shape: tuple[int, ...],
                       crops: tuple[tuple[int, int], ...]) -> str:
        """BATCH_TO_SPACE_ND: SPACE_TO_BATCH_ND's inverse, then crops."""
        return self.op(OpKind.BATCH_TO_SPACE_ND, [x], BatchSpaceAttrs(block_shape, crops),
                       self.quant(x))

    def concatenation(self, inputs: list[str], axis: int = 3,
                      activation: Activation = Activation.NONE) -> str:
        """CONCATENATION; the output takes the first input's quantisation."""
        rank = len(self.graph.tensors[inputs[0]].shape)
        attrs = ConcatenationAttrs(axis % rank, activation)
        return self.op(OpKind.CONCATENATION, inputs, attrs, self.quant(inputs[0]),
                       self._activation(inputs[0]))

    def logistic(self, x: str) -> str:
        """LOGISTIC with TFLite's int8 output quantisation (1/256, -128; int16: 1/32768, 0)."""
        if self._wide(x):
            return self.op(OpKind.LOGISTIC, [x], NoAttrs(),
                           QuantParams.per_tensor(1.0 / 32768.0, 0), DType.INT16)
        return self.op(OpKind.LOGISTIC, [x], NoAttrs(), QuantParams.per_tensor(1.0 / 256.0, -128))

    def tanh(self, x: str) -> str:
        """TANH with TFLite's int8 output quantisation (1/128, 0; int16: 1/32768, 0)."""
        if self._wide(x):
            return self.op(OpKind.TANH, [x], NoAttrs(), QuantParams.per_tensor(1.0 / 32768.0, 0),
                           DType.INT16)
        return self.op(OpKind.TANH, [x], NoAttrs(), QuantParams.per_tensor(1.0 / 128.0, 0))

    def _unary(self, kind: OpKind, x: str, quant: QuantParams | None,
               attrs: OpAttrs | None = None) -> str:
        return self.op(kind, [x], attrs or NoAttrs(), quant or self.quant(x))

    def hard_swish(self, x: str, quant: QuantParams | None = None) -> str:
        """HARD_SWISH."""
        return self._unary(OpKind.HARD_SWISH, x, quant)

    def relu(self, x: str, quant: QuantParams | None = None) -> str:
        """RELU."""
        return self._unary(OpKind.RELU, x, quant)

    def relu6(self, x: str, quant: QuantParams | None = None) -> str:
        """RELU6."""
        return self._unary(OpKind.RELU6, x, quant)

    def leaky_relu(self, x: str, alpha: float = 0.2, quant: QuantParams | None = None) -> str:
        """LEAKY_RELU."""
        return self._unary(OpKind.LEAKY_RELU, x, quant, LeakyReluAttrs(alpha))

    def quantize(self, x: str, scale: float, zero_point: int, dtype: DType = DType.INT8) -> str:
        """QUANTIZE: float to int8 (int16 with `dtype`), or requantisation within a type."""
        return self.op(OpKind.QUANTIZE, [x], NoAttrs(), QuantParams.per_tensor(scale, zero_point),
                       dtype)

    def dequantize(self, x: str) -> str:
        """DEQUANTIZE: int8 to float32."""
        return self.op(OpKind.DEQUANTIZE, [x], NoAttrs(), None, DType.FLOAT32)

    def transpose_conv(
        self, x: str, out_channels: int, kernel: tuple[int, int] = (3, 3), stride: int = 2,
        padding: Padding = Padding.SAME, activation: Activation = Activation.NONE,
        per_channel: bool = True, bias: bool = True, output_hw: tuple[int, int] | None = None,
    ) -> str:
        """TRANSPOSE_CONV with random int8 weights and int32 bias.

        The output is `stride` times the input's height and width unless `output_hw` is given.
        """
        n, h, w, in_c = self.graph.tensors[x].shape
        w_name, wq = self._weights((out_channels, *kernel, in_c), 0, per_channel)
        depth = -(-kernel[0] // stride) * -(-kernel[1] // stride) * in_c
        inputs = [x, w_name] + ([self._bias(out_channels, self.quant(x).scale0, wq, depth)]
                                if bias else [])
        out_h, out_w = output_hw or (h * stride, w * stride)
        attrs = TransposeConvAttrs((n, out_h, out_w, out_channels), stride, stride, padding,
                                   activation)
        return self.op(OpKind.TRANSPOSE_CONV, inputs, attrs, self._accumulator_quant(x, wq, depth))

    def lstm(
        self, x: str, units: int, attrs: LstmAttrs | None = None,
        output: QuantParams | None = None, gain: float = 2.0, cell_exponent: int = -11,
    ) -> str:
        """UNIDIRECTIONAL_SEQUENCE_LSTM as the converter quantises it, with new variable states.

        Per-tensor symmetric int8 weights, int32 biases at input scale x weight scale; `gain` is
        the typical magnitude of a gate's pre-activation. The hidden intermediate and the int8
        output state are quantised as the output, the int16 cell state at scale
        2**`cell_exponent`, zero point 0.
        """
        attrs = attrs or LstmAttrs()
        features = self.graph.tensors[x].shape[-1]
        x_scale = self.quant(x).scale0
        out = output or QuantParams.per_tensor(float(self.rng.uniform(0.004, 0.009)),
                                               int(self.rng.integers(-10, 11)))
        inputs = [self._lstm_weights(units, depth, gain)
                  for depth in [features] * 4 + [units] * 4]
        for gate in range(4):
            scale = float(np.float32(x_scale) * np.float32(self.quant(inputs[gate]).scale0))
            data = self.rng.integers(-int(gain / scale), int(gain / scale) + 1, size=units)
            inputs.append(self.constant("bias", data.astype(np.int32),
                                        QuantParams.per_tensor(scale, 0)))
        shape = self.graph.tensors[x].shape
        batch = shape[1] if attrs.time_major else shape[0]
        inputs += [self._variable("output_state", (batch, units), DType.INT8, out),
                   self._variable("cell_state", (batch, units), DType.INT16,
                                  QuantParams.per_tensor(2.0**cell_exponent, 0))]
        return self.op(OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM, [x, *inputs],
                       replace(attrs, hidden=out), out)

    def _variable(self, stem: str, shape: tuple[int, ...], dtype: DType,
                  quant: QuantParams) -> str:
        """A new variable tensor (state kept across invocations)."""
        name = self._fresh(stem)
        self.graph.add_tensor(Tensor(name, shape, dtype, quant, variable=True))
        return name

    def _lstm_weights(self, units: int, depth: int, gain: float) -> str:
        data = self.rng.integers(-127, 128, size=(units, depth), dtype=np.int8)
        scale = gain / (_INT8_STD * _INT8_STD * math.sqrt(depth) * 0.01)
        return self.constant("weights", data, QuantParams.per_tensor(scale / 128.0, 0))
