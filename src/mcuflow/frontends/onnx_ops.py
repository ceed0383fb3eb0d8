"""Every ONNX op type mcuflow converts: how one node becomes IR ops, registered by op type."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import onnx

from mcuflow.errors import ModelFormatError, UnsupportedModelError
from mcuflow.frontends.onnx_layout import (
    _FLOAT_TYPES,
    _HINT,
    _UNSUPPORTED_HINT,
    CHANNELS_LAST_1D,
    NHWC,
    Value,
    _Act,
    _free,
)
from mcuflow.frontends.onnx_qdq import dequantize_linear, quantize_linear
from mcuflow.ir.enums import Padding
from mcuflow.ir.graph import DType, Operator, Tensor
from mcuflow.ir.ops import (
    OP_DEFS,
    ArgAttrs,
    BlockAttrs,
    BroadcastToAttrs,
    ConcatenationAttrs,
    Conv2DAttrs,
    DepthwiseConv2DAttrs,
    ElementwiseAttrs,
    FullyConnectedAttrs,
    GatherAttrs,
    LeakyReluAttrs,
    LstmAttrs,
    MeanAttrs,
    NoAttrs,
    OpAttrs,
    OpKind,
    PadAttrs,
    Pool2DAttrs,
    ReshapeAttrs,
    ResizeBilinearAttrs,
    ResizeNearestNeighborAttrs,
    SliceAttrs,
    SoftmaxAttrs,
    SplitAttrs,
    StridedSliceAttrs,
    TileAttrs,
    TransposeConvAttrs,
    transpose_conv_pad,
    transpose_conv_windows,
)
from mcuflow.ir.registry import Registry
from mcuflow.ir.resize import nearest_indices

if TYPE_CHECKING:
    from mcuflow.frontends.onnx_reader import _Importer

MAX_WINDOW = 1 << 16
"""No kernel size, stride, dilation or pad of a conv or pool exceeds this."""

Converter = Callable[["_Importer", onnx.NodeProto], None]
_CONVERTERS: Registry[str, Converter] = Registry("converter")
converter = _CONVERTERS.register
"""Register a converter for ONNX op types."""


def _text(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value


def _ints(value: object, count: int, default: int) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if value else (default,) * count


@dataclass(frozen=True)
class _Window:
    """Spatial geometry of a conv or pool: kernel, strides, dilations, ONNX pads."""

    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[int, int, int, int]
    ceil_mode: bool = False

    def effective(self, axis: int) -> int:
        """The kernel's span along spatial `axis`, dilation included."""
        return (self.kernel[axis] - 1) * self.dilations[axis] + 1

    def onnx_out(self, size: int, axis: int) -> int:
        """ONNX's output size along `axis`."""
        span = size + self.pads[axis] + self.pads[axis + 2] - self.effective(axis)
        stride = self.strides[axis]
        if not self.ceil_mode:
            return span // stride + 1
        out = -(-span // stride) + 1
        return out - 1 if (out - 1) * stride >= size + self.pads[axis] else out

    def tflite_padding(self, hw: tuple[int, int]) -> Padding | None:
        """SAME or VALID when TFLite's padding computes exactly what ONNX's pads do."""
        for padding in (Padding.VALID, Padding.SAME):
            if all(self._matches(padding, hw[axis], axis) for axis in range(2)):
                return padding
        return None

    def _matches(self, padding: Padding, size: int, axis: int) -> bool:
        stride, span = self.strides[axis], self.effective(axis)
        if padding is Padding.VALID:
            out, before = (size - span + stride) // stride, 0
        else:
            out = -(-size // stride)
            before = max((out - 1) * stride + span - size, 0) // 2
        return out == self.onnx_out(size, axis) and before == self.pads[axis]


def _window(imp: _Importer, node: onnx.NodeProto, x: _Act, kernel: tuple[int, ...]) -> _Window:
    attrs = imp.attrs(node)
    if len(kernel) != 2:
        raise imp.unsupported(node, f"is {len(kernel)}-D; only 2-D windows are supported")
    strides = _ints(attrs.get("strides"), 2, 1)
    dilations = _ints(attrs.get("dilations"), 2, 1)
    auto_pad = _text(attrs.get("auto_pad", "NOTSET"))
    pads = _ints(attrs.get("pads"), 4, 0)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = _same_pads(x.shape[2:], kernel, strides, dilations, auto_pad == "SAME_LOWER")
    elif auto_pad == "VALID":
        pads = (0, 0, 0, 0)
    if min(strides + dilations) < 1 or min(pads) < 0 or min(kernel) < 1 or max(
            strides + dilations + pads + kernel) > MAX_WINDOW:
        raise ModelFormatError(f"{imp.label}: {node.op_type} '{node.name}' has invalid "
                               f"kernel {kernel}, strides {strides}, dilations {dilations} or "
                               f"pads {pads}", _HINT)
    return _Window((kernel[0], kernel[1]), (strides[0], strides[1]),
                   (dilations[0], dilations[1]), (pads[0], pads[1], pads[2], pads[3]),
                   bool(attrs.get("ceil_mode", 0)))


def _same_pads(hw: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...],
               dilations: tuple[int, ...], lower: bool) -> tuple[int, int, int, int]:
    before, after = [], []
    for size, k, s, d in zip(hw, kernel, strides, dilations, strict=True):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small = total // 2
        before.append(total - small if lower else small)
        after.append(small if lower else total - small)
    return before[0], before[1], after[0], after[1]


def _spatial_input(imp: _Importer, node: onnx.NodeProto, window: _Window, x: _Act,
                   allow_zero_pad: bool, counts_pad: bool = False) -> tuple[_Act, Padding]:
    """The NHWC input and TFLite padding; ONNX pads TFLite cannot express become a PAD op.

    `counts_pad` marks an average pool that divides by the whole window, pads included, which
    TFLite's SAME (dividing by the valid taps) does not do: its pads always become a PAD op.
    """
    x = imp.to_layout(node, x, NHWC)
    padding = window.tflite_padding(x.shape[2:])
    if padding is Padding.VALID or padding is not None and not counts_pad:
        return x, padding
    if not allow_zero_pad or window.ceil_mode:
        raise imp.unsupported(node, f"has pads {window.pads} (ceil_mode {window.ceil_mode}) "
                              "that TFLite's SAME and VALID padding cannot express")
    top, left, bottom, right = window.pads
    paddings = ((0, 0), (top, bottom), (left, right), (0, 0))
    padded = imp.emit(OpKind.PAD, [x.name], PadAttrs(paddings), x, imp.fresh(f"{x.name}/pad"))
    return padded, Padding.VALID


def _one_d(convert: Converter) -> Converter:
    """A 2-D window converter that also takes 1-D signals (N, C, T) as one-row images."""

    def convert_either(imp: _Importer, node: onnx.NodeProto) -> None:
        x = imp.act(node)
        if len(x.shape) != 3:
            convert(imp, node)
            return
        lifted = _lifted(imp, node, x)
        convert(imp, lifted)
        row = imp.values[lifted.output[0]]
        n, c, _, t = row.shape
        imp.set(node, imp.emit(OpKind.RESHAPE, [row.name], ReshapeAttrs((n, t, c)), row,
                               node.output[0], (n, c, t), CHANNELS_LAST_1D))

    return convert_either


def _lifted(imp: _Importer, node: onnx.NodeProto, x: _Act) -> onnx.NodeProto:
    """`node` on (N, C, 1, T) images: 1-D attributes and weights gain a leading unit axis."""
    x = imp.to_layout(node, x, CHANNELS_LAST_1D)
    n, c, t = x.shape
    image = imp.emit(OpKind.RESHAPE, [x.name], ReshapeAttrs((n, 1, t, c)), x,
                     imp.fresh(f"{x.name}/row"), (n, c, 1, t), NHWC)
    lifted = onnx.NodeProto()
    lifted.CopyFrom(node)
    lifted.input[0] = _bind(imp, node.input[0], image)
    if len(node.input) > 1 and node.input[1]:
        weights = imp.const(node, 1, "weights")
        lifted.input[1] = _bind(imp, node.input[1], weights[:, :, None, :])
    lifted.output[0] = f"{node.output[0]}\0row"
    for attribute in lifted.attribute:
        if attribute.name in ("kernel_shape", "strides", "dilations"):
            attribute.ints[:] = [1, *attribute.ints]
        elif attribute.name == "pads":
            attribute.ints[:] = [0, attribute.ints[0], 0, attribute.ints[1]]
    return lifted


def _bind(imp: _Importer, name: str, value: Value) -> str:
    """`value` under a name no ONNX value has."""
    bound = f"{name}\0row"
    imp.values[bound] = value
    return bound


@converter("Conv")
@_one_d
def _conv(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.act(node)
    weights = imp.const(node, 1, "weights")
    bias = imp.const(node, 2, "bias")
    if weights is None or weights.ndim != 4 or len(x.shape) != 4:
        raise imp.unsupported(node, "is not a 2-D convolution with constant weights")
    out_c, group_depth, kh, kw = weights.shape
    group, in_c = int(imp.attrs(node).get("group", 1)), x.shape[1]
    window = _window(imp, node, x, (kh, kw))
    x, padding = _spatial_input(imp, node, window, x, allow_zero_pad=True)
    inputs = [x.name]
    if group == 1 and group_depth == in_c:
        inputs.append(imp.constant(f"{node.output[0]}/weights", weights.transpose(0, 2, 3, 1)))
        kind, attrs = OpKind.CONV_2D, Conv2DAttrs(
            window.strides[0], window.strides[1], window.dilations[0], window.dilations[1],
            padding)
    elif group == in_c and group_depth == 1 and out_c % in_c == 0:
        depthwise = weights.reshape(out_c, kh, kw).transpose(1, 2, 0)[None]
        inputs.append(imp.constant(f"{node.output[0]}/weights", depthwise))
        kind, attrs = OpKind.DEPTHWISE_CONV_2D, DepthwiseConv2DAttrs(
            window.strides[0], window.strides[1], window.dilations[0], window.dilations[1],
            out_c // in_c, padding)
    else:
        raise imp.unsupported(node, f"is a grouped convolution (group {group} of {in_c} "
                              "channels); only group 1 and depthwise are supported")
    if bias is not None:
        _check_bias(imp, node, bias, out_c)
        inputs.append(imp.constant(f"{node.output[0]}/bias", bias.reshape(-1)))
    imp.set(node, imp.emit(kind, inputs, attrs, x, node.output[0]))


def _check_bias(imp: _Importer, node: onnx.NodeProto, bias: np.ndarray, channels: int) -> None:
    if bias.size != channels:
        raise ModelFormatError(f"{imp.label}: {node.op_type} '{node.name}' has a bias of "
                               f"{bias.size} values for {channels} output channels", _HINT)


def _pool(imp: _Importer, node: onnx.NodeProto, kind: OpKind, window: _Window, x: _Act,
          allow_zero_pad: bool, counts_pad: bool = False) -> None:
    if window.dilations != (1, 1):
        raise imp.unsupported(node, "has dilations; TFLite pools have none")
    x, padding = _spatial_input(imp, node, window, x, allow_zero_pad, counts_pad)
    attrs = Pool2DAttrs(window.kernel[0], window.kernel[1], window.strides[0], window.strides[1],
                        padding)
    imp.set(node, imp.emit(kind, [x.name], attrs, x, node.output[0]))


@converter("MaxPool")
@_one_d
def _max_pool(imp: _Importer, node: onnx.NodeProto) -> None:
    """Explicit pads become zeros, exact only for non-negative input (after a RELU)."""
    x = imp.act(node)
    if len(node.output) > 1 and node.output[1] or len(x.shape) != 4:
        raise imp.unsupported(node, "must be a 2-D max pool without indices")
    window = _window(imp, node, x, _ints(imp.attrs(node).get("kernel_shape"), 0, 0))
    source = imp.graph.producer(x.name)
    non_negative = source is not None and imp.graph.operators[source].kind in (
        OpKind.RELU, OpKind.RELU6, OpKind.LOGISTIC)
    _pool(imp, node, OpKind.MAX_POOL_2D, window, x, non_negative)


@converter("AveragePool")
@_one_d
def _average_pool(imp: _Importer, node: onnx.NodeProto) -> None:
    """Explicit pads are exact as zeros only when ONNX counts them (count_include_pad=1)."""
    x = imp.act(node)
    if len(x.shape) != 4:
        raise imp.unsupported(node, "must be a 2-D pool")
    attrs = imp.attrs(node)
    window = _window(imp, node, x, _ints(attrs.get("kernel_shape"), 0, 0))
    counts_pad = bool(attrs.get("count_include_pad", 0))
    _pool(imp, node, OpKind.AVERAGE_POOL_2D, window, x, counts_pad, counts_pad)


@converter("GlobalAveragePool")
@_one_d
def _global_average_pool(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.to_layout(node, imp.act(node), NHWC)
    imp.set(node, imp.emit(OpKind.MEAN, [x.name], MeanAttrs((1, 2), True), x, node.output[0]))


@converter("GlobalMaxPool")
@_one_d
def _global_max_pool(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.to_layout(node, imp.act(node), NHWC)
    height, width = x.shape[2:]
    attrs = Pool2DAttrs(height, width, height, width, Padding.VALID)
    imp.set(node, imp.emit(OpKind.MAX_POOL_2D, [x.name], attrs, x, node.output[0]))


_REDUCE_KINDS = {"ReduceMean": OpKind.MEAN, "ReduceMax": OpKind.REDUCE_MAX,
                 "ReduceMin": OpKind.REDUCE_MIN}


_REDUCE_KINDS["ReduceSum"] = OpKind.SUM


@converter(*_REDUCE_KINDS)
def _reduce_mean(imp: _Importer, node: onnx.NodeProto) -> None:
    """MEAN, REDUCE_MAX, REDUCE_MIN or SUM (no axes: all, or none with noop_with_empty_axes=1)."""
    x = imp.act(node)
    attrs = imp.attrs(node)
    axes_input = imp.listed(node, 1, "axes")
    axes = attrs.get("axes") if axes_input is None else axes_input
    rank = len(x.shape)
    noop = bool(attrs.get("noop_with_empty_axes", 0)) and not axes
    logical = [] if noop else sorted({int(a) % rank for a in axes}) if axes else list(
        range(rank))
    keep = bool(attrs.get("keepdims", 1))
    if x.features is not None:
        raise imp.unsupported(node, "reduces a flattened NCHW tensor")
    physical = tuple(sorted(x.perm.index(a) for a in logical))
    if keep:
        shape, perm = tuple(1 if i in logical else d for i, d in enumerate(x.shape)), x.perm
    else:
        remaining = [p for p in x.perm if p not in logical]
        perm = tuple(sorted(remaining).index(p) for p in remaining)
        shape = tuple(d for i, d in enumerate(x.shape) if i not in logical)
    imp.set(node, imp.emit(_REDUCE_KINDS[node.op_type], [x.name], MeanAttrs(physical, keep), x,
                           node.output[0], shape, perm))


@converter("ArgMax", "ArgMin")
def _arg_max_min(imp: _Importer, node: onnx.NodeProto) -> None:
    """ARG_MAX / ARG_MIN to int32 indices; keepdims=0 and select_last_index=0 only."""
    x = imp.act(node)
    attrs = imp.attrs(node)
    if x.features is not None:
        raise imp.unsupported(node, "reduces a flattened NCHW tensor")
    if attrs.get("select_last_index", 0):
        raise imp.unsupported(node, "has select_last_index=1; mcuflow, like TFLite, returns the "
                                    "first extreme index")
    if attrs.get("keepdims", 1):
        raise imp.unsupported(node, "has keepdims=1; mcuflow's ARG_MAX drops the axis, as "
                                    "TFLite's does: export it with keepdims=0 (torch.argmax's "
                                    "default keepdim=False)")
    rank = len(x.shape)
    axis = int(attrs.get("axis", 0))
    if not -rank <= axis < rank:
        raise imp.unsupported(node, f"has axis {axis}, out of range for rank {rank}")
    axis %= rank
    kind = OpKind.ARG_MAX if node.op_type == "ArgMax" else OpKind.ARG_MIN
    remaining = [p for p in x.perm if p != axis]
    perm = tuple(sorted(remaining).index(p) for p in remaining)
    shape = tuple(d for i, d in enumerate(x.shape) if i != axis)
    result = imp.emit(kind, [x.name], ArgAttrs(x.perm.index(axis)), x, node.output[0], shape,
                      perm)
    imp.graph.tensors[result.name].dtype = DType.INT32
    imp.set(node, result)


def _unary(kind: OpKind, attrs_of: Callable[[dict[str, object]], OpAttrs] = lambda a: NoAttrs()
           ) -> Converter:
    def convert(imp: _Importer, node: onnx.NodeProto) -> None:
        x = imp.act(node)
        result = imp.emit(kind, [x.name], attrs_of(imp.attrs(node)), x, node.output[0])
        imp.set(node, replace(result, features=x.features))

    return convert


_CONVERTERS.update({
    "QuantizeLinear": quantize_linear,
    "DequantizeLinear": dequantize_linear,
    "Relu": _unary(OpKind.RELU),
    "Sigmoid": _unary(OpKind.LOGISTIC),
    "Tanh": _unary(OpKind.TANH),
    "HardSwish": _unary(OpKind.HARD_SWISH),
    "Abs": _unary(OpKind.ABS),
})


@converter("LeakyRelu")
def _leaky_relu(imp: _Importer, node: onnx.NodeProto) -> None:
    alpha = float(imp.attrs(node).get("alpha", 0.01))
    if not math.isfinite(alpha):
        raise ModelFormatError(f"{imp.label}: LeakyRelu '{node.name}' has alpha {alpha}", _HINT)
    _unary(OpKind.LEAKY_RELU, lambda a: LeakyReluAttrs(alpha))(imp, node)


@converter("Clip")
def _clip(imp: _Importer, node: onnx.NodeProto) -> None:
    attrs = imp.attrs(node)
    low, high = imp.const(node, 1, "minimum"), imp.const(node, 2, "maximum")
    low = float(attrs.get("min", -np.inf) if low is None else low.reshape(-1)[0])
    high = float(attrs.get("max", np.inf) if high is None else high.reshape(-1)[0])
    kinds = {(0.0, 6.0): OpKind.RELU6, (0.0, np.inf): OpKind.RELU}
    if (low, high) not in kinds:
        raise imp.unsupported(node, f"clips to [{low}, {high}]; only [0, 6] and [0, inf) map "
                              "onto TFLite ops")
    _unary(kinds[(low, high)])(imp, node)


@converter("HardSigmoid")
def _hard_sigmoid(imp: _Importer, node: onnx.NodeProto) -> None:
    """max(0, min(1, a*x + b)) = relu6(6a*x + 6b) / 6, as MUL, ADD, RELU6, MUL."""
    attrs = imp.attrs(node)
    alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    x = imp.act(node)
    base = node.output[0]
    steps = [(OpKind.MUL, 6.0 * alpha), (OpKind.ADD, 6.0 * beta), (OpKind.RELU6, None),
             (OpKind.MUL, 1.0 / 6.0)]
    for index, (kind, constant) in enumerate(steps):
        name = base if index == len(steps) - 1 else imp.fresh(f"{base}/step{index}")
        inputs = [x.name] + ([imp.operand(x, np.float32(constant))] if constant else [])
        attrs_of = ElementwiseAttrs() if constant else NoAttrs()
        x = replace(imp.emit(kind, inputs, attrs_of, x, name), features=x.features)
    imp.set(node, x)


@converter("Softmax", "LogSoftmax")
def _softmax(imp: _Importer, node: onnx.NodeProto) -> None:
    """SOFTMAX (LOG_SOFTMAX) normalises the IR's last axis, which must hold the ONNX axis."""
    x = imp.act(node)
    rank = len(x.shape)
    if rank == 0:
        raise imp.unsupported(node, "normalises a scalar")
    axis = int(imp.attrs(node).get("axis", -1 if imp.opset >= 13 else 1)) % rank
    if imp.opset < 13 and math.prod(x.shape[axis + 1:]) != 1:
        raise imp.unsupported(node, f"normalises axes {axis}.. of {x.shape} together (opset "
                              f"{imp.opset}); TFLite's SOFTMAX normalises one axis")
    if x.perm[-1] != axis:
        x = imp.to_layout(node, x, tuple(p for p in x.perm if p != axis) + (axis,))
    kind, attrs = ((OpKind.SOFTMAX, SoftmaxAttrs(1.0)) if node.op_type == "Softmax" else
                   (OpKind.LOG_SOFTMAX, NoAttrs()))
    result = imp.emit(kind, [x.name], attrs, x, node.output[0])
    imp.set(node, replace(result, features=x.features))


@converter("LpNormalization")
def _lp_normalization(imp: _Importer, node: onnx.NodeProto) -> None:
    """L2_NORMALIZATION (p=2) of one axis, moved to the IR's last axis if it is not there."""
    x = imp.act(node)
    attrs = imp.attrs(node)
    if int(attrs.get("p", 2)) != 2:
        raise imp.unsupported(node, f"has p={attrs.get('p')}; only p=2 maps onto TFLite's "
                              "L2_NORMALIZATION")
    rank = len(x.shape)
    axis = int(attrs.get("axis", -1))
    if not -rank <= axis < rank:
        raise imp.unsupported(node, f"has axis {axis}, out of range for rank {rank}")
    if x.features is not None and axis % rank != len(x.perm) - 1:
        raise imp.unsupported(node, "normalises a flattened NCHW tensor across features")
    if x.perm[-1] != axis % rank:
        x = imp.to_layout(node, x, tuple(p for p in x.perm if p != axis % rank) + (axis % rank,))
    result = imp.emit(OpKind.L2_NORMALIZATION, [x.name], NoAttrs(), x, node.output[0])
    imp.set(node, replace(result, features=x.features))


@converter("PRelu")
def _prelu(imp: _Importer, node: onnx.NodeProto) -> None:
    """PRELU; a constant slope (e.g. one per NCHW channel) is laid out as the input is."""
    x, slope = (imp.values[name] for name in node.input[:2])
    if isinstance(x, np.ndarray):
        raise imp.unsupported(node, "has a constant input")
    if isinstance(slope, np.ndarray):
        imp.set(node, _binary_with_constant(imp, OpKind.PRELU, x, slope, True, node.output[0]))
        return
    _computed_pair(imp, node, OpKind.PRELU, x, slope)


@converter("BatchNormalization")
def _batch_norm(imp: _Importer, node: onnx.NodeProto) -> None:
    """Inference batch-norm as a per-channel MUL then ADD (the fold_batchnorm pass folds them)."""
    x = imp.act(node)
    attrs = imp.attrs(node)
    if attrs.get("training_mode", 0) or len(node.output) > 1 and any(node.output[1:]):
        raise imp.unsupported(node, "is in training mode; export the model in eval() mode")
    gamma, beta, mean, var = (imp.const(node, i, "statistics") for i in range(1, 5))
    if any(v is None for v in (gamma, beta, mean, var)):
        raise imp.unsupported(node, "lacks its statistics")
    scale = gamma / np.sqrt(var.astype(np.float64) + float(attrs.get("epsilon", 1e-5)))
    shift = beta - mean * scale
    channel_shape = (1, -1) + (1,) * (len(x.shape) - 2)
    scaled = _binary_with_constant(imp, OpKind.MUL, x, scale.reshape(channel_shape), True,
                                   imp.fresh(f"{node.output[0]}/scale"))
    imp.set(node, _binary_with_constant(imp, OpKind.ADD, scaled, shift.reshape(channel_shape),
                                        True, node.output[0]))


def _binary_with_constant(imp: _Importer, kind: OpKind, x: _Act, data: np.ndarray,
                          act_first: bool, name: str) -> _Act:
    shape = tuple(int(d) for d in np.broadcast_shapes(x.shape, data.shape))
    if shape != x.shape:
        raise UnsupportedModelError(f"{imp.label}: a constant of shape {data.shape} broadcasts "
                                    f"'{x.name}' of shape {x.shape} to {shape}",
                                    _UNSUPPORTED_HINT)
    constant = imp.operand(x, data)
    inputs = [x.name, constant] if act_first else [constant, x.name]
    result = imp.emit(kind, inputs, OP_DEFS[kind].attrs(), x, name)
    return replace(result, features=x.features)


def _computed_pair(imp: _Importer, node: onnx.NodeProto, kind: OpKind, a: _Act, b: _Act
                   ) -> None:
    """A two-input element-wise op on two computed tensors, broadcast in one layout."""
    a, b = _common_layout(imp, node, a, b)
    shape = tuple(int(d) for d in np.broadcast_shapes(a.shape, b.shape))
    imp.set(node, imp.emit(kind, [a.name, b.name], OP_DEFS[kind].attrs(), a, node.output[0],
                           shape, features=a.features))


@converter("Add", "Sub", "Mul", "Div")
def _arithmetic(imp: _Importer, node: onnx.NodeProto) -> None:
    kinds = {"Add": OpKind.ADD, "Sub": OpKind.SUB, "Mul": OpKind.MUL, "Div": OpKind.MUL}
    kind = kinds[node.op_type]
    a, b = (imp.values[name] for name in node.input[:2])
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        act_first = isinstance(b, np.ndarray)
        x, data = (a, b) if act_first else (b, a)
        if node.op_type == "Div":
            if not act_first:
                raise imp.unsupported(node, "divides a constant by a computed tensor")
            data = 1.0 / data.astype(np.float64)
        imp.set(node, _binary_with_constant(imp, kind, x, data, act_first, node.output[0]))
        return
    if node.op_type == "Div":
        raise imp.unsupported(node, "divides two computed tensors")
    _computed_pair(imp, node, kind, a, b)


@converter("Max", "Min")
def _maximum_minimum(imp: _Importer, node: onnx.NodeProto) -> None:
    kind = OpKind.MAXIMUM if node.op_type == "Max" else OpKind.MINIMUM
    if len(node.input) != 2:
        raise imp.unsupported(node, f"takes {len(node.input)} operands; mcuflow takes two")
    a, b = (imp.values[name] for name in node.input)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        act_first = isinstance(b, np.ndarray)
        x, data = (a, b) if act_first else (b, a)
        imp.set(node, _binary_with_constant(imp, kind, x, data, act_first, node.output[0]))
        return
    _computed_pair(imp, node, kind, a, b)


def _common_layout(imp: _Importer, node: onnx.NodeProto, a: _Act, b: _Act) -> tuple[_Act, _Act]:
    """Both operands in one axis order (the one with more elements keeps its own)."""
    if len(a.shape) != len(b.shape):
        raise imp.unsupported(node, f"broadcasts operands of ranks {len(a.shape)} and "
                              f"{len(b.shape)}; give them equal ranks")
    if a.perm == b.perm and (a.features is None) == (b.features is None) and (
            a.features is None or np.array_equal(a.features, b.features)):
        return a, b
    if math.prod(a.shape) >= math.prod(b.shape):
        return a, imp.to_layout(node, b, a.perm)
    return imp.to_layout(node, a, b.perm), b


@converter("Gemm")
def _gemm(imp: _Importer, node: onnx.NodeProto) -> None:
    attrs = imp.attrs(node)
    x = imp.act(node)
    weights = imp.const(node, 1, "weights")
    if attrs.get("transA", 0) or weights is None or len(x.shape) != 2 or weights.ndim != 2:
        raise imp.unsupported(node, "must multiply a [N, K] tensor by constant weights")
    weights = (weights if attrs.get("transB", 0) else weights.T) * float(attrs.get("alpha", 1.0))
    bias = imp.const(node, 2, "bias")
    if bias is not None:
        bias = np.broadcast_to(bias * float(attrs.get("beta", 1.0)), (1, weights.shape[0]))
    _fully_connected(imp, node, x, weights, None if bias is None else bias[0])


@converter("MatMul")
def _matmul(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.act(node)
    weights = imp.const(node, 1, "second operand")
    if weights is None or weights.ndim != 2 or len(x.shape) < 2:
        raise imp.unsupported(node, "must multiply a computed tensor by a 2-D constant")
    _fully_connected(imp, node, x, weights.T, None)


def _fully_connected(imp: _Importer, node: onnx.NodeProto, x: _Act, weights: np.ndarray,
                     bias: np.ndarray | None) -> None:
    """FULLY_CONNECTED with weights [O, K]; a flattened NCHW input permutes the columns."""
    if x.features is not None:
        weights = weights[:, x.features]
    elif x.perm != tuple(range(len(x.shape))):
        x = imp.plain(x, node)
    inputs = [x.name, imp.constant(f"{node.output[0]}/weights", weights)]
    if bias is not None:
        inputs.append(imp.constant(f"{node.output[0]}/bias", bias))
    keep = len(x.shape) > 2
    shape = (*x.shape[:-1], weights.shape[0])
    result = imp.emit(OpKind.FULLY_CONNECTED, inputs, FullyConnectedAttrs(keep_num_dims=keep), x,
                      node.output[0], shape, tuple(range(len(shape))))
    imp.set(node, result)


@converter("Concat")
def _concat(imp: _Importer, node: onnx.NodeProto) -> None:
    values = [imp.values[name] for name in node.input]
    first = next(v for v in values if isinstance(v, _Act))
    axis = int(imp.attrs(node)["axis"]) % len(first.shape)
    if first.features is not None:
        raise imp.unsupported(node, "concatenates a flattened NCHW tensor")
    names = []
    for value in values:
        if isinstance(value, np.ndarray):
            names.append(imp.constant(f"{node.output[0]}/part", value.transpose(first.perm)))
        else:
            names.append(imp.to_layout(node, value, first.perm).name)
    shape = tuple(sum(v.shape[axis] for v in values) if i == axis else d
                  for i, d in enumerate(first.shape))
    attrs = ConcatenationAttrs(first.perm.index(axis))
    imp.set(node, imp.emit(OpKind.CONCATENATION, names, attrs, first, node.output[0], shape))


def _reshape_to(imp: _Importer, node: onnx.NodeProto, x: _Act, target: tuple[int, ...]) -> None:
    """RESHAPE in ONNX's order; flattening NCHW to [N, K] keeps NHWC order and notes `features`."""
    if x.features is not None and target == x.shape:
        imp.set(node, x)
        return
    identity = tuple(range(len(x.shape)))
    if not _free(x, identity) and len(target) == 2 and x.features is None and x.perm[0] == 0 and \
            target[0] == x.shape[0]:
        order = np.arange(target[1]).reshape(x.shape[1:]).transpose([p - 1 for p in x.perm[1:]])
        result = imp.emit(OpKind.RESHAPE, [x.name], ReshapeAttrs(target), x, node.output[0],
                          target, (0, 1), order.reshape(-1))
        imp.set(node, result)
        return
    x = imp.plain(x, node)
    perm = tuple(range(len(target)))
    imp.set(node, imp.emit(OpKind.RESHAPE, [x.name], ReshapeAttrs(target), x, node.output[0],
                           target, perm))


def _resolve_shape(imp: _Importer, node: onnx.NodeProto, x: _Act, target: list[int],
                   allow_zero: bool) -> tuple[int, ...]:
    shape = [x.shape[i] if d == 0 and not allow_zero and i < len(x.shape) else d
             for i, d in enumerate(target)]
    size = math.prod(x.shape)
    if shape.count(-1) == 1:
        known = math.prod(d for d in shape if d != -1)
        shape[shape.index(-1)] = size // known if known else 0
    if any(d < 0 for d in shape) or math.prod(shape) != size:
        raise ModelFormatError(f"{imp.label}: {node.op_type} '{node.name}' cannot reshape "
                               f"{x.shape} to {target}", _HINT)
    return tuple(shape)


@converter("Reshape")
def _reshape(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.act(node)
    target = imp.listed(node, 1, "shape")
    if target is None:
        raise imp.unsupported(node, "has no shape input")
    allow_zero = bool(imp.attrs(node).get("allowzero", 0))
    _reshape_to(imp, node, x, _resolve_shape(imp, node, x, target, allow_zero))


@converter("Flatten")
def _flatten(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.act(node)
    axis = int(imp.attrs(node).get("axis", 1)) % (len(x.shape) + 1)
    _reshape_to(imp, node, x, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))


@converter("Squeeze", "Unsqueeze")
def _squeeze(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.act(node)
    axes_input = imp.listed(node, 1, "axes")
    axes = imp.attrs(node).get("axes") if axes_input is None else axes_input
    if node.op_type == "Squeeze":
        rank = len(x.shape)
        dropped = {int(a) % rank for a in axes} if axes else {
            i for i, d in enumerate(x.shape) if d == 1}
        target = tuple(d for i, d in enumerate(x.shape) if i not in dropped)
        remaining = [i for i in range(rank) if i not in dropped]
        moved = {old: new for new, old in enumerate(remaining)}
    else:
        rank = len(x.shape) + len(axes)
        added = {int(a) % rank for a in axes}
        if len(added) != len(axes):
            raise ModelFormatError(f"{imp.label}: Unsqueeze '{node.name}' repeats an axis in "
                                   f"{[int(a) for a in axes]}", _HINT)
        dims = iter(x.shape)
        target = tuple(1 if i in added else next(dims) for i in range(rank))
        moved = dict(enumerate(i for i in range(rank) if i not in added))
    if not _unit_axes_only(imp, node, x, target, moved):
        _reshape_to(imp, node, x, target)


def _unit_axes_only(imp: _Importer, node: onnx.NodeProto, x: _Act, target: tuple[int, ...],
                    moved: dict[int, int]) -> bool:
    """Add or drop unit axes without moving data, into a channels-last layout when one fits.

    `moved` maps each of x's remaining logical axes to its axis in `target`. False when no
    layout keeps x's physical order of non-unit axes (then a plain RESHAPE is needed).
    """
    if x.features is not None:
        return False
    order = [moved[a] for a in x.perm if x.shape[a] != 1]
    rank = len(target)
    layouts = {4: (NHWC,), 3: (CHANNELS_LAST_1D,)}.get(rank, ()) + (tuple(range(rank)),)
    for perm in layouts:
        if [a for a in perm if target[a] != 1] == order:
            physical = tuple(target[p] for p in perm)
            imp.set(node, imp.emit(OpKind.RESHAPE, [x.name], ReshapeAttrs(physical), x,
                                   node.output[0], target, perm))
            return True
    return False


@converter("Transpose")
def _transpose(imp: _Importer, node: onnx.NodeProto) -> None:
    """A Transpose moves no data: it only renames which logical axis each IR axis holds."""
    x = imp.act(node)
    if x.features is not None:
        raise imp.unsupported(node, "transposes a flattened NCHW tensor")
    rank = len(x.shape)
    order = tuple(int(p) for p in imp.attrs(node).get("perm", range(rank - 1, -1, -1)))
    if sorted(order) != list(range(rank)):
        raise ModelFormatError(f"{imp.label}: Transpose '{node.name}' has perm {order}", _HINT)
    perm = tuple(order.index(p) for p in x.perm)
    imp.set(node, _Act(x.name, tuple(x.shape[p] for p in order), perm))


@converter("Pad")
def _pad(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.act(node)
    if x.features is not None:
        raise imp.unsupported(node, "pads a flattened NCHW tensor")
    attrs = imp.attrs(node)
    pads = imp.listed(node, 1, "pads")
    pads = list(attrs.get("pads", ())) if pads is None else pads
    value = imp.const(node, 2, "constant value")
    value = float(attrs.get("value", 0.0)) if value is None else float(value.reshape(-1)[0])
    rank = len(x.shape)
    if _text(attrs.get("mode", "constant")) != "constant" or value != 0.0 or len(pads) != 2 * rank \
            or min(pads) < 0 or len(node.input) > 3 and node.input[3]:
        raise imp.unsupported(node, "must pad every axis with zeros (constant mode, value 0)")
    logical = [(int(pads[i]), int(pads[i + rank])) for i in range(rank)]
    attrs_ir = PadAttrs(tuple(logical[p] for p in x.perm))
    shape = tuple(d + a + b for d, (a, b) in zip(x.shape, logical, strict=True))
    imp.set(node, imp.emit(OpKind.PAD, [x.name], attrs_ir, x, node.output[0], shape))


def _slice_bounds(imp: _Importer, node: onnx.NodeProto
                  ) -> tuple[list, list, list | None, list[int]]:
    """Starts, ends, axes and steps: inputs from opset 10, attributes (steps of 1) before."""
    steps = None
    if imp.opset < 10:
        attrs = imp.attrs(node)
        starts, ends, axes = attrs.get("starts"), attrs.get("ends"), attrs.get("axes")
    else:
        starts, ends = imp.listed(node, 1, "starts"), imp.listed(node, 2, "ends")
        axes, steps = imp.listed(node, 3, "axes"), imp.listed(node, 4, "steps")
    if starts is None or ends is None or len(ends) != len(starts) or (
            axes is not None and len(axes) != len(starts)) or (
            steps is not None and (len(steps) != len(starts) or 0 in steps)):
        raise ModelFormatError(f"{imp.label}: Slice '{node.name}' needs starts and ends (and "
                               "axes, non-zero steps) of one length", _HINT)
    return list(starts), list(ends), axes, [int(v) for v in steps or [1] * len(starts)]


@converter("Slice")
def _slice(imp: _Importer, node: onnx.NodeProto) -> None:
    """SLICE; starts and ends are clamped to each axis, as ONNX defines them."""
    x = imp.act(node)
    if x.features is not None:
        raise imp.unsupported(node, "slices a flattened NCHW tensor")
    starts, ends, axes, steps = _slice_bounds(imp, node)
    rank = len(x.shape)
    axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
    if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
        raise ModelFormatError(f"{imp.label}: Slice '{node.name}' has axes {axes} for rank "
                               f"{rank}", _HINT)
    if any(step != 1 for step in steps):
        _stepped_slice(imp, node, x, list(zip(starts, ends, [a % rank for a in axes], steps,
                                              strict=True)))
        return
    begin, end = [0] * rank, list(x.shape)
    for start, stop, axis in zip(starts, ends, axes, strict=True):
        extent = x.shape[axis % rank]
        begin[axis % rank], end[axis % rank] = (
            min(max(int(v) + extent if v < 0 else int(v), 0), extent) for v in (start, stop))
    size = [stop - start for start, stop in zip(begin, end, strict=True)]
    if min(size) < 1:
        raise imp.unsupported(node, f"has an empty output (starts {starts}, ends {ends})")
    attrs = SliceAttrs(tuple(begin[p] for p in x.perm), tuple(size[p] for p in x.perm))
    imp.set(node, imp.emit(OpKind.SLICE, [x.name], attrs, x, node.output[0], tuple(size)))


_RESIZE_MODES = ((False, False), (False, True), (True, False))
"""TFLite's RESIZE_NEAREST_NEIGHBOR modes: (align_corners, half_pixel_centers)."""


def _onnx_nearest(in_size: int, out_size: int, scale: float, transform: str, rounding: str
                  ) -> np.ndarray | None:
    """The input index ONNX Runtime's nearest Resize picks for each output index along an axis.

    Its float32 arithmetic; None for a transformation mode or nearest mode it lacks.
    """
    f32 = np.float32
    x, s = np.arange(out_size, dtype=f32), f32(scale)
    half = f32(0.5)
    if transform == "asymmetric":
        original = x / s
    elif transform == "half_pixel":
        original = (x + half) / s - half
    elif transform == "pytorch_half_pixel":
        original = (x + half) / s - half if out_size > 1 else np.zeros(out_size, f32)
    elif transform == "tf_half_pixel_for_nn":
        original = (x + half) / s
    elif transform == "align_corners":
        original = (x * f32(in_size - 1) / f32(out_size - 1) if out_size > 1
                    else np.zeros(out_size, f32))
    else:
        return None
    floor = np.floor(original)
    if rounding == "floor":
        index = floor
    elif rounding == "ceil":
        index = np.ceil(original)
    elif rounding in ("round_prefer_floor", "round_prefer_ceil"):  # halves by the mode
        fraction = original - floor
        up = fraction > half if rounding == "round_prefer_floor" else fraction >= half
        index = floor + up
    elif rounding == "simple":  # Resize-10: truncated, rounded up when downsampling
        index = np.ceil(original) if s < 1 else np.trunc(original)
    else:
        return None
    return np.clip(index.astype(np.int64), 0, in_size - 1)


def _resize_targets(imp: _Importer, node: onnx.NodeProto, shape: tuple[int, ...]
                    ) -> tuple[list[int], list[float]]:
    """Output sizes and scales of every axis, as ONNX Runtime computes them.

    From sizes (scale out / in) or from scales (size the truncated float32 product).
    """
    attrs = imp.attrs(node)
    scales = imp.const(node, 1 if imp.opset < 11 else 2, "scales")
    sizes = None if imp.opset < 11 else imp.const(node, 3, "sizes")
    rank = len(shape)
    axes = [int(a) % rank for a in attrs.get("axes", range(rank))]
    given = sizes if sizes is not None and sizes.size else scales
    if given is None or given.size != len(axes):
        raise ModelFormatError(f"{imp.label}: Resize '{node.name}' needs {len(axes)} scales or "
                               "sizes", _HINT)
    out = list(shape)
    factors = [1.0] * rank
    if given is sizes:
        if _text(attrs.get("keep_aspect_ratio_policy", "stretch")) != "stretch":
            raise imp.unsupported(node, "keeps the aspect ratio; mcuflow resizes with "
                                        "keep_aspect_ratio_policy 'stretch'")
        for axis, size in zip(axes, sizes.reshape(-1).tolist(), strict=True):
            out[axis] = int(size)
            factors[axis] = float(np.float32(size) / np.float32(shape[axis]))
    else:
        for axis, scale in zip(axes, scales.reshape(-1).tolist(), strict=True):
            factors[axis] = float(np.float32(scale))
            out[axis] = int(np.float32(scale) * np.float32(shape[axis]))
    if min(out) < 1:
        raise ModelFormatError(f"{imp.label}: Resize '{node.name}' has the empty output "
                               f"{tuple(out)}", _HINT)
    return out, factors


@converter("Resize")
def _resize(imp: _Importer, node: onnx.NodeProto) -> None:
    """RESIZE_NEAREST_NEIGHBOR of a 4-D NCHW image over H and W.

    In the TFLite mode (asymmetric floor, half-pixel centers or aligned corners) that picks the
    same input pixels as ONNX Runtime, else refused.
    """
    x = imp.act(node)
    attrs = imp.attrs(node)
    mode = _text(attrs.get("mode", "nearest"))
    if mode == "linear":
        _resize_linear(imp, node, x)
        return
    if mode != "nearest":
        raise imp.unsupported(node, f"has mode '{mode}'; mcuflow resizes with mode 'nearest' or "
                                    "'linear'")
    if len(x.shape) != 4:
        raise imp.unsupported(node, f"resizes a {len(x.shape)}-D tensor; mcuflow resizes 4-D "
                                    "NCHW images")
    x = imp.to_layout(node, x, NHWC)
    out, factors = _resize_targets(imp, node, x.shape)
    if out[:2] != list(x.shape[:2]):
        raise imp.unsupported(node, f"resizes {tuple(x.shape)} to {tuple(out)}; mcuflow resizes "
                                    "the height and width only")
    old = imp.opset < 11
    transform = "asymmetric" if old else _text(attrs.get("coordinate_transformation_mode",
                                                         "half_pixel"))
    rounding = "simple" if old else _text(attrs.get("nearest_mode", "round_prefer_floor"))
    wanted = [_onnx_nearest(x.shape[axis], out[axis], factors[axis], transform, rounding)
              for axis in (2, 3)]
    for align, half in _RESIZE_MODES:
        if all(table is not None and np.array_equal(
                table, nearest_indices(x.shape[axis], out[axis], align, half))
               for axis, table in zip((2, 3), wanted, strict=True)):
            break
    else:
        raise imp.unsupported(
            node, f"with coordinate_transformation_mode '{transform}' and nearest_mode "
                  f"'{rounding}' picks input pixels no TFLite RESIZE_NEAREST_NEIGHBOR mode picks "
                  f"for {tuple(x.shape[2:])} to {tuple(out[2:])}; asymmetric with floor, "
                  "half_pixel or tf_half_pixel_for_nn with round_prefer_ceil, and align_corners "
                  "with round_prefer_ceil map for most sizes")
    resize = ResizeNearestNeighborAttrs((out[2], out[3]), align, half)
    imp.set(node, imp.emit(OpKind.RESIZE_NEAREST_NEIGHBOR, [x.name], resize, x,
                           node.output[0], tuple(out)))


_LINEAR_MODES = {"asymmetric": (False, False), "half_pixel": (False, True),
                 "pytorch_half_pixel": (False, True), "align_corners": (True, False)}
"""ONNX linear Resize's coordinate modes as TFLite's (align_corners, half_pixel_centers)."""


def _resize_linear(imp: _Importer, node: onnx.NodeProto, x: _Act) -> None:
    """RESIZE_BILINEAR of a 4-D NCHW image over H and W (Resize mode 'linear').

    half_pixel (and pytorch_half_pixel to more than one row and column), align_corners and
    asymmetric are TFLite's modes when the scale is the output size over the input size (as
    TFLite computes it); others refused.
    """
    attrs = imp.attrs(node)
    if len(x.shape) != 4:
        raise imp.unsupported(node, f"resizes a {len(x.shape)}-D tensor; mcuflow resizes 4-D "
                                    "NCHW images")
    if attrs.get("antialias", 0):
        raise imp.unsupported(node, "has antialias=1; TFLite's RESIZE_BILINEAR does not filter")
    x = imp.to_layout(node, x, NHWC)
    out, factors = _resize_targets(imp, node, x.shape)
    if out[:2] != list(x.shape[:2]):
        raise imp.unsupported(node, f"resizes {tuple(x.shape)} to {tuple(out)}; mcuflow resizes "
                                    "the height and width only")
    transform = "asymmetric" if imp.opset < 11 else _text(attrs.get(
        "coordinate_transformation_mode", "half_pixel"))
    if transform not in _LINEAR_MODES or (transform == "pytorch_half_pixel" and min(out[2:]) == 1):
        raise imp.unsupported(node, f"has coordinate_transformation_mode '{transform}' (to "
                                    f"{tuple(out[2:])}); TFLite's RESIZE_BILINEAR matches "
                                    "half_pixel, align_corners, asymmetric, and "
                                    "pytorch_half_pixel to more than one row and column")
    for axis in (2, 3):
        exact = np.float32(out[axis]) / np.float32(x.shape[axis])
        if transform != "align_corners" and np.float32(factors[axis]) != exact:
            raise imp.unsupported(node, f"scales axis {axis} by {factors[axis]:g} to "
                                        f"{out[axis]}; TFLite's RESIZE_BILINEAR scales by the "
                                        "output size over the input size")
    resize = ResizeBilinearAttrs((out[2], out[3]), *_LINEAR_MODES[transform])
    imp.set(node, imp.emit(OpKind.RESIZE_BILINEAR, [x.name], resize, x, node.output[0],
                           tuple(out)))


@converter("Tile")
def _tile(imp: _Importer, node: onnx.NodeProto) -> None:
    """TILE by constant repeats, one positive count per axis."""
    x = imp.act(node)
    if x.features is not None:
        raise imp.unsupported(node, "tiles a flattened NCHW tensor")
    repeats = imp.listed(node, 1, "repeats")
    if repeats is None or len(repeats) != len(x.shape) or min(repeats, default=1) < 1:
        raise imp.unsupported(node, f"has repeats {repeats}; mcuflow tiles by one positive "
                                    f"count per axis of its {len(x.shape)}-D input")
    shape = tuple(d * int(r) for d, r in zip(x.shape, repeats, strict=True))
    attrs = TileAttrs(tuple(int(repeats[p]) for p in x.perm))
    imp.set(node, imp.emit(OpKind.TILE, [x.name], attrs, x, node.output[0], shape))


@converter("Expand")
def _expand(imp: _Importer, node: onnx.NodeProto) -> None:
    """BROADCAST_TO of the input and a constant shape broadcast together (ONNX's rule)."""
    x = imp.act(node)
    shape = imp.listed(node, 1, "shape")
    if x.features is not None or shape is None:
        raise imp.unsupported(node, "expands a flattened NCHW tensor or to a computed shape")
    try:
        out = tuple(int(d) for d in np.broadcast_shapes(tuple(x.shape), tuple(shape)))
    except ValueError:
        raise imp.unsupported(node, f"cannot broadcast {tuple(x.shape)} to {tuple(shape)}"
                              ) from None
    if len(out) != len(x.shape) and x.perm != tuple(range(len(x.shape))):
        raise imp.unsupported(node, f"adds axes to a tensor stored as {x.perm}")
    if len(out) != len(x.shape):
        padded = (1,) * (len(out) - len(x.shape)) + tuple(x.shape)
        x = imp.emit(OpKind.RESHAPE, [x.name], ReshapeAttrs(padded), x,
                     imp.fresh(f"{x.name}/rank"), padded, tuple(range(len(out))))
    if out == tuple(x.shape):
        imp.set(node, x)
        return
    attrs = BroadcastToAttrs(tuple(out[p] for p in x.perm))
    imp.set(node, imp.emit(OpKind.BROADCAST_TO, [x.name], attrs, x, node.output[0], out))


@converter("DepthToSpace", "SpaceToDepth")
def _depth_space(imp: _Importer, node: onnx.NodeProto) -> None:
    """DEPTH_TO_SPACE and SPACE_TO_DEPTH of a 4-D NCHW image.

    DepthToSpace's mode DCR is TFLite's order; CRD only where it is the same (one output
    channel).
    """
    x = imp.act(node)
    attrs = imp.attrs(node)
    block = int(attrs.get("blocksize", 0))
    if len(x.shape) != 4 or block < 1:
        raise imp.unsupported(node, f"has blocksize {block} for a {len(x.shape)}-D tensor; "
                                    "mcuflow moves blocks of 4-D NCHW images")
    n, c, h, w = x.shape
    if node.op_type == "DepthToSpace":
        kind, shape = OpKind.DEPTH_TO_SPACE, (n, c // (block * block), h * block, w * block)
        mode = _text(attrs.get("mode", "DCR"))
        if c % (block * block):
            raise imp.unsupported(node, f"splits {c} channels into {block}x{block} blocks")
        if mode != "DCR" and not (mode == "CRD" and shape[1] == 1):
            raise imp.unsupported(node, f"has mode '{mode}' with {shape[1]} output channels; "
                                        "TFLite's DEPTH_TO_SPACE orders each block's channels "
                                        "as mode 'DCR' does (CRD agrees with one output channel "
                                        "only)")
    else:
        kind, shape = OpKind.SPACE_TO_DEPTH, (n, c * block * block, h // block, w // block)
        if h % block or w % block:
            raise imp.unsupported(node, f"splits a {h}x{w} image into {block}x{block} blocks")
    x = imp.to_layout(node, x, NHWC)
    imp.set(node, imp.emit(kind, [x.name], BlockAttrs(block), x, node.output[0], shape))


_ONNX_GATES = (0, 2, 3, 1)
"""Where ONNX's gate blocks (input, output, forget, cell) hold mcuflow's input, forget, cell and
output gates."""
_LSTM_ABSENT = {4: "sequence_lens", 5: "initial_h", 6: "initial_c", 7: "peepholes"}


def _lstm_refusal(imp: _Importer, node: onnx.NodeProto, hidden: int) -> str | None:
    """Why mcuflow cannot convert this LSTM node, or None."""
    attrs = imp.attrs(node)
    if _text(attrs.get("direction", "forward")) != "forward":
        return "runs backward or both ways; only forward LSTMs are supported"
    activations = [_text(a) for a in attrs.get("activations", [])]
    if activations and activations != ["Sigmoid", "Tanh", "Tanh"]:
        return f"uses activations {activations}; only Sigmoid, Tanh, Tanh are supported"
    if "clip" in attrs or attrs.get("input_forget", 0):
        return "clips its gates or couples input and forget gates (unsupported)"
    present = [what for position, what in _LSTM_ABSENT.items()
               if position < len(node.input) and node.input[position]]
    if present:
        return f"takes {', '.join(present)}; mcuflow's LSTM starts from zero states"
    return None if hidden > 0 else "has no hidden_size"


def _lstm_constants(imp: _Importer, node: onnx.NodeProto, hidden: int) -> list[np.ndarray]:
    """The 4 input weights, 4 recurrent weights and 4 biases, in mcuflow's gate order."""
    w, r = imp.const(node, 1, "input weights"), imp.const(node, 2, "recurrent weights")
    if w is None or r is None or w.ndim != 3 or r.shape != (1, 4 * hidden, hidden) or (
            w.shape[:2] != (1, 4 * hidden)):
        raise imp.unsupported(node, "needs constant weights W [1, 4H, I] and R [1, 4H, H]")
    b = imp.const(node, 3, "bias")
    b = np.zeros((1, 8 * hidden), np.float32) if b is None else b.reshape(1, -1)
    if b.shape != (1, 8 * hidden):
        raise imp.unsupported(node, f"has a bias of {b.size} values; expected {8 * hidden}")
    block = [slice(g * hidden, (g + 1) * hidden) for g in _ONNX_GATES]
    return ([w[0, s] for s in block] + [r[0, s] for s in block]
            + [b[0, s] + b[0, 4 * hidden:][s] for s in block])


def _lstm_state(imp: _Importer, base: str, shape: tuple[int, int]) -> str:
    """A new float32 variable tensor for a state of the LSTM (zero at the start)."""
    name = imp.fresh(base)
    imp.graph.add_tensor(Tensor(name, shape, DType.FLOAT32, variable=True))
    return name


@converter("LSTM")
def _lstm(imp: _Importer, node: onnx.NodeProto) -> None:
    """A forward LSTM as UNIDIRECTIONAL_SEQUENCE_LSTM; Y and Y_h by RESHAPE (and SLICE)."""
    hidden = int(imp.attrs(node).get("hidden_size", 0))
    refusal = _lstm_refusal(imp, node, hidden)
    if refusal is not None:
        raise imp.unsupported(node, refusal)
    x = imp.plain(imp.act(node), node)
    if len(x.shape) != 3:
        raise imp.unsupported(node, f"reads a rank-{len(x.shape)} input; expected 3")
    time_major = int(imp.attrs(node).get("layout", 0)) == 0
    inputs = [imp.constant(f"{node.output[0]}/lstm_{i}", data)
              for i, data in enumerate(_lstm_constants(imp, node, hidden))]
    seq, batch = (x.shape[0], x.shape[1]) if time_major else (x.shape[1], x.shape[0])
    inputs += [_lstm_state(imp, f"{node.output[0]}/{role}", (batch, hidden))
               for role in ("output_state", "cell_state")]
    plain3 = (seq, batch, hidden) if time_major else (batch, seq, hidden)
    out = imp.emit(OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM, [x.name, *inputs],
                   LstmAttrs(time_major=time_major), x, imp.fresh(f"{node.output[0]}/lstm"),
                   plain3, (0, 1, 2))
    y_shape = (seq, 1, batch, hidden) if time_major else (batch, seq, 1, hidden)
    imp.set(node, imp.emit(OpKind.RESHAPE, [out.name], ReshapeAttrs(y_shape), out,
                           node.output[0], y_shape, (0, 1, 2, 3)))
    if len(node.output) > 1 and node.output[1]:
        begin = (seq - 1, 0, 0) if time_major else (0, seq - 1, 0)
        size = (1, batch, hidden) if time_major else (batch, 1, hidden)
        last = imp.emit(OpKind.SLICE, [out.name], SliceAttrs(begin, size), out,
                        imp.fresh(f"{node.output[1]}/last"), size, (0, 1, 2))
        h_shape = (1, batch, hidden) if time_major else (batch, 1, hidden)
        imp.values[node.output[1]] = imp.emit(
            OpKind.RESHAPE, [last.name], ReshapeAttrs(h_shape), last, node.output[1], h_shape,
            (0, 1, 2))


@converter("Identity", "Dropout", "Cast")
def _identity(imp: _Importer, node: onnx.NodeProto) -> None:
    if node.op_type == "Cast" and imp.attrs(node).get("to") not in _FLOAT_TYPES:
        raise imp.unsupported(node, "casts a computed tensor to a non-float type")
    if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1]:
        raise imp.unsupported(node, "outputs its mask")
    imp.set(node, imp.act(node))


# --- ConvTranspose ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Transposed:
    """One axis of a ConvTranspose: sizes, ONNX's output size and its head padding (`before`)."""

    size: int
    kernel: int
    stride: int
    out: int
    before: int

    @property
    def full(self) -> int:
        """The output size of VALID TFLite (no padding, no output_padding)."""
        return (self.size - 1) * self.stride + self.kernel

    def matches(self, padding: Padding, out: int, before: int) -> bool:
        """True when a TFLite output of `out` with `padding` starts `before` rows early."""
        return (transpose_conv_windows(out, self.kernel, self.stride, padding) == self.size
                and transpose_conv_pad(out, self.kernel, self.stride, padding) == before)


def _transposed_axes(imp: _Importer, node: onnx.NodeProto, hw: tuple[int, ...],
                     kernel: tuple[int, int]) -> list[_Transposed]:
    """ONNX Runtime's output size and head padding of each axis (conv_transpose_attributes.h)."""
    attrs = imp.attrs(node)
    strides = _ints(attrs.get("strides"), 2, 1)
    extra = _ints(attrs.get("output_padding"), 2, 0)
    pads = _ints(attrs.get("pads"), 4, 0)
    shape = _ints(attrs.get("output_shape"), 2, -1)
    auto_pad = _text(attrs.get("auto_pad", "NOTSET"))
    if len(strides) != 2 or len(extra) != 2 or len(pads) != 4 or len(shape) != 2 or min(
            strides + kernel) < 1 or min(pads) < 0 or min(extra) < 0 or max(
            strides + pads + kernel) > MAX_WINDOW:
        raise ModelFormatError(f"{imp.label}: ConvTranspose '{node.name}' has invalid kernel "
                               f"{kernel}, strides {strides}, pads {pads}, output_padding "
                               f"{extra} or output_shape {shape}", _HINT)
    axes = []
    for axis in range(2):
        size, k, s = hw[axis], kernel[axis], strides[axis]
        reach = (size - 1) * s + extra[axis] + k
        if auto_pad in ("SAME_UPPER", "SAME_LOWER") or shape[axis] > 0:
            out = shape[axis] if shape[axis] > 0 else size * s
            total = max(reach - out, 0)
            before = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        elif auto_pad == "VALID":
            out, before = reach, 0
        else:
            out, before = reach - pads[axis] - pads[axis + 2], pads[axis]
        axes.append(_Transposed(size, k, s, out, before))
    return axes


def _tflite_transposed(axes: list[_Transposed]) -> tuple[Padding, tuple[int, int]] | None:
    """TFLite's padding and output size computing ONNX's output directly, else None."""
    for padding in (Padding.SAME, Padding.VALID):
        if all(a.matches(padding, a.out, a.before) for a in axes):
            return padding, (axes[0].out, axes[1].out)
    return None


@converter("ConvTranspose")
def _conv_transpose(imp: _Importer, node: onnx.NodeProto) -> None:
    """TRANSPOSE_CONV of group 1 without dilation.

    A head padding TFLite's SAME and VALID cannot express becomes a larger VALID output cropped
    by a SLICE.
    """
    x = imp.act(node)
    weights = imp.const(node, 1, "weights")
    bias = imp.const(node, 2, "bias")
    if weights is None or weights.ndim != 4 or len(x.shape) != 4:
        raise imp.unsupported(node, "is not a 2-D transposed convolution with constant weights")
    in_c, out_c, kh, kw = weights.shape
    attrs = imp.attrs(node)
    if int(attrs.get("group", 1)) != 1:
        raise imp.unsupported(node, f"is grouped (group {attrs.get('group', 1)}); TFLite's "
                                    "TRANSPOSE_CONV takes group 1")
    if in_c != x.shape[1]:
        raise ModelFormatError(f"{imp.label}: ConvTranspose '{node.name}' has weights for "
                               f"{in_c} input channels and an input of {x.shape[1]}", _HINT)
    if any(d != 1 for d in _ints(attrs.get("dilations"), 2, 1)):
        raise imp.unsupported(node, "has dilations; TFLite's TRANSPOSE_CONV has none")
    x = imp.to_layout(node, x, NHWC)
    axes = _transposed_axes(imp, node, x.shape[2:], (kh, kw))
    if min(a.out for a in axes) < 1:
        raise ModelFormatError(f"{imp.label}: ConvTranspose '{node.name}' has an empty output",
                               _HINT)
    direct = _tflite_transposed(axes)
    padding, out_hw = direct or (Padding.VALID, (max(axes[0].full, axes[0].before + axes[0].out),
                                                 max(axes[1].full, axes[1].before + axes[1].out)))
    if direct is None and not all(a.matches(Padding.VALID, o, 0) for a, o in zip(
            axes, out_hw, strict=True)):
        raise imp.unsupported(node, f"has an output of {axes[0].out}x{axes[1].out} that "
                                    "TFLite's TRANSPOSE_CONV cannot compute from its "
                                    f"{axes[0].size}x{axes[1].size} input (output_padding or "
                                    "output_shape reaching a stride beyond the kernel)")
    inputs = [x.name, imp.constant(f"{node.output[0]}/weights", weights.transpose(1, 2, 3, 0))]
    if bias is not None:
        _check_bias(imp, node, bias, out_c)
        inputs.append(imp.constant(f"{node.output[0]}/bias", bias.reshape(-1)))
    n = x.shape[0]
    tconv = TransposeConvAttrs((n, *out_hw, out_c), axes[0].stride, axes[1].stride, padding)
    shape = (n, out_c, axes[0].out, axes[1].out)
    if direct is not None:
        imp.set(node, imp.emit(OpKind.TRANSPOSE_CONV, inputs, tconv, x, node.output[0], shape))
        return
    full = imp.emit(OpKind.TRANSPOSE_CONV, inputs, tconv, x, imp.fresh(f"{node.output[0]}/full"))
    crop = SliceAttrs((0, axes[0].before, axes[1].before, 0), (n, *shape[2:], out_c))
    imp.set(node, imp.emit(OpKind.SLICE, [full.name], crop, full, node.output[0], shape))


# --- Slice with steps, Split, Gather ------------------------------------------------------------


def _onnx_range(start: int, stop: int, step: int, extent: int) -> range:
    """The indices an ONNX Slice visits along an axis.

    Negative bounds count from the end, then clamp to [0, extent] (step > 0) or
    [-1, extent - 1] (step < 0).
    """
    low, high = (0, extent) if step > 0 else (-1, extent - 1)
    start, stop = (min(max(v + extent if v < 0 else v, low), high) for v in (start, stop))
    return range(start, stop, step)


def _stepped_slice(imp: _Importer, node: onnx.NodeProto, x: _Act,
                   bounds: list[tuple[int, int, int, int]]) -> None:
    """STRIDED_SLICE of every IR axis; an axis running down to index 0 sets its end_mask bit."""
    ranges = {axis: _onnx_range(int(a), int(b), step, x.shape[axis])
              for a, b, axis, step in bounds}
    if any(len(r) == 0 for r in ranges.values()):
        raise imp.unsupported(node, "has an empty output")
    begin, end, strides, end_mask = [], [], [], 0
    for physical, axis in enumerate(x.perm):
        r = ranges.get(axis, range(x.shape[axis]))
        begin.append(r.start)
        end.append(r.stop)
        strides.append(r.step)
        if r.stop < 0:
            end_mask |= 1 << physical
    attrs = StridedSliceAttrs(tuple(begin), tuple(end), tuple(strides), end_mask=end_mask)
    shape = tuple(len(ranges.get(a, range(d))) for a, d in enumerate(x.shape))
    imp.set(node, imp.emit(OpKind.STRIDED_SLICE, [x.name], attrs, x, node.output[0], shape))


def _split_sizes(imp: _Importer, node: onnx.NodeProto, extent: int) -> list[int]:
    """The split attribute or input, else num_outputs pieces (the last smaller), else equal."""
    attrs = imp.attrs(node)
    sizes = imp.listed(node, 1, "split") if len(node.input) > 1 else attrs.get("split")
    count = int(attrs.get("num_outputs", len(node.output)))
    if sizes is None:
        piece = -(-extent // count)
        sizes = [min(piece, extent - k * piece) for k in range(count)]
    sizes = [int(n) for n in sizes]
    if len(sizes) != len(node.output) or sum(sizes) != extent or min(sizes) < 1:
        raise ModelFormatError(f"{imp.label}: Split '{node.name}' cuts an axis of {extent} into "
                               f"{sizes} for {len(node.output)} outputs", _HINT)
    return sizes


@converter("Split")
def _split(imp: _Importer, node: onnx.NodeProto) -> None:
    """SPLIT (equal pieces) or SPLIT_V along the IR axis holding the ONNX axis."""
    x = imp.act(node)
    if x.features is not None:
        raise imp.unsupported(node, "splits a flattened NCHW tensor")
    axis = int(imp.attrs(node).get("axis", 0)) % len(x.shape)
    sizes = _split_sizes(imp, node, x.shape[axis])
    kind = OpKind.SPLIT if len(set(sizes)) == 1 else OpKind.SPLIT_V
    physical = x.perm.index(axis)
    names = [name if name not in imp.graph.tensors else imp.fresh(name) for name in node.output]
    for name, n in zip(names, sizes, strict=True):
        shape = tuple(n if i == physical else d for i, d in enumerate(x.physical))
        imp.check_activation(f"{kind.value} output '{name}'", shape)
        imp.graph.add_tensor(Tensor(name, shape, DType.FLOAT32))
    imp.graph.operators.append(Operator(kind, (x.name,), tuple(names),
                                        SplitAttrs(physical, tuple(sizes)), names[0]))
    for output, name, n in zip(node.output, names, sizes, strict=True):
        shape = tuple(n if i == axis else d for i, d in enumerate(x.shape))
        imp.values[output] = _Act(name, shape, x.perm)


@converter("Gather")
def _gather(imp: _Importer, node: onnx.NodeProto) -> None:
    """GATHER at constant indices (negative ones count from the end) of a computed tensor."""
    x = imp.act(node)
    if x.features is not None:
        raise imp.unsupported(node, "gathers from a flattened NCHW tensor")
    indices = imp.const(node, 1, "indices")
    if indices is None:
        raise imp.unsupported(node, "has no indices input")
    axis = int(imp.attrs(node).get("axis", 0)) % len(x.shape)
    extent = x.shape[axis]
    flat = [int(i) for i in np.asarray(indices).reshape(-1)]
    if any(not -extent <= i < extent for i in flat):
        raise ModelFormatError(f"{imp.label}: Gather '{node.name}' has indices outside "
                               f"[-{extent}, {extent})", _HINT)
    depth = np.ndim(indices)
    perm: list[int] = []
    for p in x.perm:  # the indices' axes replace the gathered axis where the IR holds it
        if p == axis:
            perm.extend(range(axis, axis + depth))
        else:
            perm.append(p if p < axis else p + depth - 1)
    attrs = GatherAttrs(x.perm.index(axis), tuple(i % extent for i in flat),
                        tuple(np.shape(indices)))
    shape = (*x.shape[:axis], *np.shape(indices), *x.shape[axis + 1:])
    imp.set(node, imp.emit(OpKind.GATHER, [x.name], attrs, x, node.output[0], shape,
                           tuple(perm)))
