"""Operator kinds and their typed attribute dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class OpKind(Enum):
    """Every operator mcuflow knows; each has a hook in every registry (shapes, ref, cost, C)."""

    CONV_2D = "CONV_2D"
    DEPTHWISE_CONV_2D = "DEPTHWISE_CONV_2D"
    FULLY_CONNECTED = "FULLY_CONNECTED"
    ADD = "ADD"
    SUB = "SUB"
    MUL = "MUL"
    AVERAGE_POOL_2D = "AVERAGE_POOL_2D"
    MAX_POOL_2D = "MAX_POOL_2D"
    MEAN = "MEAN"
    RESHAPE = "RESHAPE"
    SQUEEZE = "SQUEEZE"
    SOFTMAX = "SOFTMAX"
    PAD = "PAD"
    CONCATENATION = "CONCATENATION"
    LOGISTIC = "LOGISTIC"
    TANH = "TANH"
    HARD_SWISH = "HARD_SWISH"
    RELU = "RELU"
    RELU6 = "RELU6"
    LEAKY_RELU = "LEAKY_RELU"
    QUANTIZE = "QUANTIZE"
    DEQUANTIZE = "DEQUANTIZE"


class Padding(Enum):
    """Spatial padding scheme of convolutions and pools (TFLite semantics)."""

    SAME = "SAME"
    VALID = "VALID"


class Activation(Enum):
    """Activation fused into the producing op (TFLite's ActivationFunctionType)."""

    NONE = "NONE"
    RELU = "RELU"
    RELU_N1_TO_1 = "RELU_N1_TO_1"
    RELU6 = "RELU6"


@dataclass(frozen=True)
class NoAttrs:
    """Ops without attributes (RELU, LOGISTIC, QUANTIZE...)."""


@dataclass(frozen=True)
class Conv2DAttrs:
    """CONV_2D. Inputs: x [N,H,W,C], filter [O,KH,KW,C], optional bias [O] int32."""

    stride_h: int = 1
    stride_w: int = 1
    dilation_h: int = 1
    dilation_w: int = 1
    padding: Padding = Padding.VALID
    activation: Activation = Activation.NONE


@dataclass(frozen=True)
class DepthwiseConv2DAttrs:
    """DEPTHWISE_CONV_2D. Inputs: x [N,H,W,C], filter [1,KH,KW,C*M], optional bias [C*M]."""

    stride_h: int = 1
    stride_w: int = 1
    dilation_h: int = 1
    dilation_w: int = 1
    depth_multiplier: int = 1
    padding: Padding = Padding.VALID
    activation: Activation = Activation.NONE


@dataclass(frozen=True)
class FullyConnectedAttrs:
    """FULLY_CONNECTED. Inputs: x [..., K], weights [O,K], optional bias [O]."""

    activation: Activation = Activation.NONE
    keep_num_dims: bool = False


@dataclass(frozen=True)
class ElementwiseAttrs:
    """ADD, SUB, MUL with numpy broadcasting."""

    activation: Activation = Activation.NONE


@dataclass(frozen=True)
class Pool2DAttrs:
    """AVERAGE_POOL_2D and MAX_POOL_2D."""

    filter_h: int = 1
    filter_w: int = 1
    stride_h: int = 1
    stride_w: int = 1
    padding: Padding = Padding.VALID
    activation: Activation = Activation.NONE


@dataclass(frozen=True)
class MeanAttrs:
    """MEAN over `axes` (TFLite's constant axis tensor, folded into the attribute)."""

    axes: tuple[int, ...] = ()
    keep_dims: bool = False


@dataclass(frozen=True)
class ReshapeAttrs:
    """RESHAPE to a fully known `new_shape` (the constant shape input, folded)."""

    new_shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class SqueezeAttrs:
    """SQUEEZE of `axes` (all size-1 axes when empty)."""

    axes: tuple[int, ...] = ()


@dataclass(frozen=True)
class SoftmaxAttrs:
    """SOFTMAX along the last axis."""

    beta: float = 1.0


@dataclass(frozen=True)
class PadAttrs:
    """PAD with constant zero point; `paddings` is one (before, after) pair per axis."""

    paddings: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class ConcatenationAttrs:
    """CONCATENATION along `axis` (non-negative after import)."""

    axis: int = 0
    activation: Activation = Activation.NONE


@dataclass(frozen=True)
class LeakyReluAttrs:
    """LEAKY_RELU: x if x >= 0 else alpha * x."""

    alpha: float = 0.2


OpAttrs = (
    NoAttrs
    | Conv2DAttrs
    | DepthwiseConv2DAttrs
    | FullyConnectedAttrs
    | ElementwiseAttrs
    | Pool2DAttrs
    | MeanAttrs
    | ReshapeAttrs
    | SqueezeAttrs
    | SoftmaxAttrs
    | PadAttrs
    | ConcatenationAttrs
    | LeakyReluAttrs
)
