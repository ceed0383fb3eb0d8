"""Q-format (Q7): power-of-two scales and zero points 0, so every requantisation is a shift.

A Qm.n int8 value q means q * 2**-n. Each tensor gets the largest n whose range still holds its
largest magnitude; weights per channel or per tensor likewise. Because every scale is a power of
two, each conv/FC/ADD multiplier s_in * s_w / s_out is too: TFLite's QuantizeMultiplier returns
the mantissa 2**30 and a pure shift, as NNoM and CMSIS-NN's old q7 API compute. The exception is
TFLite's fixed outputs: SOFTMAX and LOGISTIC keep scale 2**-8 with zero point -128 (LiteRT
requires it), TANH keeps 2**-7 with zero point 0. The graph remains a valid TFLite int8 model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from mcuflow.ir.graph import Graph
from mcuflow.ir.quantization import QuantParams
from mcuflow.quant.affine import WEIGHT_MAX, ParamRules, quantize_graph
from mcuflow.quant.calibrate import Range

MAX_FRACTIONAL_BITS = 62
"""Bound on n for vanishingly small tensors; an all-zero one gets n = 0 (scale 1)."""


def fractional_bits(max_abs: float, limit: int = WEIGHT_MAX) -> int:
    """The largest n with max_abs <= limit * 2**-n (Q7 keeps |q| <= 127)."""
    if max_abs <= 0.0:
        return 0
    return min(math.floor(math.log2(limit / max_abs)), MAX_FRACTIONAL_BITS)


def pow2_scale(max_abs: float) -> float:
    """The Q-format scale 2**-n covering `max_abs`."""
    return math.ldexp(1.0, -fractional_bits(max_abs))


def qformat_activation(value_range: Range) -> QuantParams:
    """Symmetric Q7 parameters: scale 2**-n, zero point 0."""
    return QuantParams.per_tensor(pow2_scale(value_range.max_abs), 0)


def qformat_weight_scales(max_abs: np.ndarray) -> np.ndarray:
    """One power-of-two scale per entry of `max_abs`."""
    return np.array([pow2_scale(float(m)) for m in np.asarray(max_abs)], np.float32)


QFORMAT = ParamRules("qformat", qformat_activation, qformat_weight_scales)


def quantize_qformat(graph: Graph, ranges: Mapping[str, Range], per_channel: bool = True) -> Graph:
    """The Q-format int8 graph of a float graph (`ranges` from calibration)."""
    return quantize_graph(graph, ranges, QFORMAT, per_channel)
