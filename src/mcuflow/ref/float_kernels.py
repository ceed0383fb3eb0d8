"""Float32 reference kernels (TFLite float semantics, NHWC) and `run_float` for float graphs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from mcuflow.errors import McuflowError, UnsupportedModelError
from mcuflow.ir.graph import DType, Graph, Operator
from mcuflow.ir.ops import (
    Activation,
    ConcatenationAttrs,
    Conv2DAttrs,
    DepthwiseConv2DAttrs,
    FullyConnectedAttrs,
    LeakyReluAttrs,
    MeanAttrs,
    OpKind,
    PadAttrs,
    Pool2DAttrs,
    SoftmaxAttrs,
)
from mcuflow.ir.registry import OpTable
from mcuflow.ref.interpreter import RunResult
from mcuflow.ref.registry import KernelFn

FLOAT_KERNELS: OpTable[KernelFn] = OpTable("float kernel", complete=False)
"""One float32 kernel per OpKind that appears in float models (all but QUANTIZE, DEQUANTIZE)."""

_F32 = np.float32


float_kernel = FLOAT_KERNELS.register


def apply_activation(x: np.ndarray, activation: Activation) -> np.ndarray:
    """A fused activation applied to float values."""
    bounds = {
        Activation.NONE: None,
        Activation.RELU: (0.0, None),
        Activation.RELU6: (0.0, 6.0),
        Activation.RELU_N1_TO_1: (-1.0, 1.0),
    }[activation]
    return x if bounds is None else np.clip(x, *bounds).astype(_F32, copy=False)


def padded_windows(
    x: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int],
    dilations: tuple[int, int], out_hw: tuple[int, int], fill: float,
) -> np.ndarray:
    """[N, OH, OW, KH, KW, C] windows of NHWC `x`, padded with `fill` as TFLite's SAME does."""
    pads = []
    for axis in range(2):
        effective = (kernel[axis] - 1) * dilations[axis] + 1
        total = max((out_hw[axis] - 1) * strides[axis] + effective - x.shape[1 + axis], 0)
        pads.append((total // 2, total - total // 2))
    padded = np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=fill)
    spans = [(kernel[a] - 1) * dilations[a] + 1 for a in range(2)]
    windows = np.lib.stride_tricks.sliding_window_view(padded, spans, axis=(1, 2))
    windows = windows[:, ::strides[0], ::strides[1], :, ::dilations[0], ::dilations[1]]
    windows = windows[:, : out_hw[0], : out_hw[1]]
    return np.moveaxis(windows, 3, 5)


def _out_hw(graph: Graph, op: Operator) -> tuple[int, int]:
    shape = graph.tensor(op.outputs[0]).shape
    return shape[1], shape[2]


def _bias(inputs: list[np.ndarray], channels: int) -> np.ndarray:
    return inputs[2].astype(_F32) if len(inputs) > 2 else np.zeros(channels, _F32)


@float_kernel(OpKind.CONV_2D)
def _conv2d(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    attrs: Conv2DAttrs = op.attrs
    x, weights = inputs[0], inputs[1]
    out_c, kh, kw, in_c = weights.shape
    windows = padded_windows(x, (kh, kw), (attrs.stride_h, attrs.stride_w),
                             (attrs.dilation_h, attrs.dilation_w), _out_hw(graph, op), 0.0)
    columns = windows.reshape(*windows.shape[:3], kh * kw * in_c)
    out = columns @ weights.reshape(out_c, -1).T.astype(_F32) + _bias(inputs, out_c)
    return [apply_activation(out.astype(_F32), attrs.activation)]


@float_kernel(OpKind.DEPTHWISE_CONV_2D)
def _depthwise(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    attrs: DepthwiseConv2DAttrs = op.attrs
    x, weights = inputs[0], inputs[1]
    _, kh, kw, out_c = weights.shape
    if attrs.depth_multiplier > 1:
        x = np.repeat(x, attrs.depth_multiplier, axis=3)
    windows = padded_windows(x, (kh, kw), (attrs.stride_h, attrs.stride_w),
                             (attrs.dilation_h, attrs.dilation_w), _out_hw(graph, op), 0.0)
    out = np.einsum("nhwijc,ijc->nhwc", windows, weights[0].astype(_F32), dtype=_F32)
    return [apply_activation(out + _bias(inputs, out_c), attrs.activation)]


@float_kernel(OpKind.FULLY_CONNECTED)
def _fully_connected(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    attrs: FullyConnectedAttrs = op.attrs
    weights = inputs[1].astype(_F32)
    x = inputs[0].reshape(-1, weights.shape[1])
    out = (x @ weights.T + _bias(inputs, weights.shape[0])).astype(_F32)
    out = out.reshape(graph.tensor(op.outputs[0]).shape)
    return [apply_activation(out, attrs.activation)]


_BINARY = {OpKind.ADD: np.add, OpKind.SUB: np.subtract, OpKind.MUL: np.multiply}


@float_kernel(OpKind.ADD, OpKind.SUB, OpKind.MUL)
def _elementwise(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    out = _BINARY[op.kind](inputs[0].astype(_F32), inputs[1].astype(_F32))
    return [apply_activation(out, op.attrs.activation)]


def _pool_windows(graph: Graph, op: Operator, x: np.ndarray, fill: float) -> np.ndarray:
    attrs: Pool2DAttrs = op.attrs
    return padded_windows(x, (attrs.filter_h, attrs.filter_w), (attrs.stride_h, attrs.stride_w),
                          (1, 1), _out_hw(graph, op), fill)


@float_kernel(OpKind.AVERAGE_POOL_2D)
def _average_pool(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Average over the valid taps only (padding is not counted), as TFLite does."""
    sums = _pool_windows(graph, op, inputs[0], 0.0).sum(axis=(3, 4), dtype=np.float64)
    ones = np.ones((1, *inputs[0].shape[1:3], 1), _F32)
    counts = _pool_windows(graph, op, ones, 0.0).sum(axis=(3, 4))
    return [apply_activation((sums / counts).astype(_F32), op.attrs.activation)]


@float_kernel(OpKind.MAX_POOL_2D)
def _max_pool(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    out = _pool_windows(graph, op, inputs[0], -np.inf).max(axis=(3, 4))
    return [apply_activation(out.astype(_F32), op.attrs.activation)]


@float_kernel(OpKind.MEAN)
def _mean(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    attrs: MeanAttrs = op.attrs
    out = inputs[0].mean(axis=attrs.axes, keepdims=attrs.keep_dims, dtype=np.float64)
    return [np.asarray(out, _F32).reshape(graph.tensor(op.outputs[0]).shape)]


@float_kernel(OpKind.RESHAPE, OpKind.SQUEEZE)
def _reshape(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [inputs[0].reshape(graph.tensor(op.outputs[0]).shape)]


@float_kernel(OpKind.SOFTMAX)
def _softmax(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    attrs: SoftmaxAttrs = op.attrs
    logits = inputs[0].astype(np.float64) * attrs.beta
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return [(exp / exp.sum(axis=-1, keepdims=True)).astype(_F32)]


@float_kernel(OpKind.PAD)
def _pad(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    attrs: PadAttrs = op.attrs
    return [np.pad(inputs[0], attrs.paddings)]


@float_kernel(OpKind.CONCATENATION)
def _concatenation(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    attrs: ConcatenationAttrs = op.attrs
    out = np.concatenate([x.astype(_F32) for x in inputs], axis=attrs.axis)
    return [apply_activation(out, attrs.activation)]


def _unary(function: Callable[[np.ndarray], np.ndarray]) -> KernelFn:
    def kernel(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(function(inputs[0].astype(np.float64)), _F32)]

    return kernel


FLOAT_KERNELS[OpKind.LOGISTIC] = _unary(lambda x: 0.5 * (1.0 + np.tanh(0.5 * x)))
FLOAT_KERNELS[OpKind.TANH] = _unary(np.tanh)
FLOAT_KERNELS[OpKind.HARD_SWISH] = _unary(lambda x: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0)
FLOAT_KERNELS[OpKind.RELU] = _unary(lambda x: np.maximum(x, 0.0))
FLOAT_KERNELS[OpKind.RELU6] = _unary(lambda x: np.clip(x, 0.0, 6.0))


@float_kernel(OpKind.LEAKY_RELU)
def _leaky_relu(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    attrs: LeakyReluAttrs = op.attrs
    x = inputs[0]
    return [np.where(x >= 0, x, x * _F32(attrs.alpha)).astype(_F32)]


def run_float(
    graph: Graph, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray],
    keep_intermediates: bool = False,
) -> RunResult:
    """Run a float32 graph op by op; inputs in graph input order or keyed by name.

    Quantised constants (the int8 weights of hybrid models) must have been dequantised first by
    the passes pipeline (`passes.fold_constants`).
    """
    values = {name: t.data for name, t in graph.tensors.items() if t.is_constant}
    quantised = [name for name, t in graph.tensors.items() if t.is_constant and t.quant]
    if quantised:
        raise UnsupportedModelError(
            f"float graph '{graph.name}' holds quantised constants {quantised[:3]}",
            "run mcuflow.passes.pipeline.run_passes first: it dequantises hybrid weights")
    values.update(_bind(graph, inputs))
    for op in graph.operators:
        kernel = FLOAT_KERNELS.get(op.kind)
        if kernel is None or any(graph.tensor(n).dtype is not DType.FLOAT32 for n in op.outputs):
            raise UnsupportedModelError(
                f"{op.kind.value} '{op.name}' has no float32 reference kernel",
                "run_float executes float32 graphs; run quantised graphs with ref.interpreter")
        outputs = kernel(graph, op, [values[name] for name in op.inputs])
        values.update(zip(op.outputs, outputs, strict=True))
    outputs = [values[name] for name in graph.outputs]
    return RunResult(outputs, values if keep_intermediates else {})


def _bind(graph: Graph, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray]
          ) -> dict[str, np.ndarray]:
    names = graph.inputs
    arrays = [inputs.get(name) for name in names] if isinstance(inputs, Mapping) else list(inputs)
    if len(arrays) != len(names) or (isinstance(inputs, Mapping) and set(inputs) != set(names)):
        raise McuflowError(f"the inputs do not match the graph inputs {names}",
                           "pass one float32 array per graph input")
    for name, value in zip(names, arrays, strict=True):
        shape = graph.tensor(name).shape
        if not isinstance(value, np.ndarray) or value.shape != shape:
            got = value.shape if isinstance(value, np.ndarray) else type(value).__name__
            raise McuflowError(f"input '{name}' is {got}, expected shape {shape}",
                               "convert the input to the model's shape")
    return {name: value.astype(_F32, copy=False) for name, value in zip(names, arrays,
                                                                          strict=True)}
