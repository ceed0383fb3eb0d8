"""LiteRT's int16x8 scheme: int16 symmetric activations, int8 per-channel weights, int64 bias."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.quantization import INT16_MAX, QuantParams
from mcuflow.quant.affine import ParamRules, quantize_graph, symmetric_scales
from mcuflow.quant.calibrate import Range


def symmetric_int16_activation(value_range: Range) -> QuantParams:
    """max(|min|, |max|) / 32767 with zero point 0, in float32 (1.0 for an all-zero range)."""
    bound = np.float32(max(abs(value_range.low), abs(value_range.high)))
    with np.errstate(over="ignore"):  # an infinite scale is rejected by the scale check
        scale = bound / np.float32(INT16_MAX)
    return QuantParams.per_tensor(float(scale) if scale > 0.0 else 1.0, 0)


INT16X8 = ParamRules("int16x8", symmetric_int16_activation, symmetric_scales, DType.INT16)


def quantize_int16x8(graph: Graph, ranges: Mapping[str, Range], per_channel: bool = True
                     ) -> Graph:
    """The int16x8 graph of a float graph.

    int16 activations (inputs and outputs too), int8 weights, int64 biases; SOFTMAX, LOGISTIC
    and TANH write scale 1/32768. Ops outside the int16x8 kernels are refused by the
    int16_activations constraint.
    """
    return quantize_graph(graph, ranges, INT16X8, per_channel)
