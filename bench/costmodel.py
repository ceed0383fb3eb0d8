"""Cost-model benchmark: analyze's latency beside QEMU per model, core and kernel; the kernel fit.

Report (default): for every shared MLPerf Tiny model and the zoo models built here (MobileNetV2,
MobileNetV3-small-like with HARD_SWISH and squeeze-excite blocks, SqueezeNet-like, an FC-only
autoencoder, a codebook-compressed ResNet), on cortex-m0, m3, m4, m7 and m33: `analyze`'s
latency (the kernels' fitted costs, mcuflow.hw.kernel_costs) beside the QEMU measurement
(instructions x the core's cycles per instruction / clock) and the goal verdict (within 15 % on
every model); per kernel the aggregate error over every layer that calls it; analyze's flash
beside the linked ELF's; on cortex-m4 the ratio to TFLM + CMSIS-NN (bench/cortexm.py's peers).

Fit (--fit): single-layer sweeps generated here (shapes, strides, kernel sizes, channel counts,
activations, per-tensor and per-channel scales, broadcasts, in-place plans, codebook weights;
never the models of the report), built per core with the profiling firmware and run on QEMU;
each kernel's instructions per work term (mcuflow.hw.work) fitted per core by non-negative
least squares on the relative error; --write stores them in src/mcuflow/hw/kernel_costs.toml.

Run: .venv/bin/python bench/costmodel.py [--core C ...] [--json] [MODEL.tflite ...]
     .venv/bin/python bench/costmodel.py --fit [--core C ...] [--write]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from mcuflow.analysis.metrics import analyze
from mcuflow.api import planned_steps
from mcuflow.codegen.firmware import Io
from mcuflow.codegen.flash import estimate_flash
from mcuflow.codegen.project import generate_project
from mcuflow.codegen.render import emit_layers
from mcuflow.codegen.targets import CORTEX_M
from mcuflow.frontends.tflite_reader import load_int8_model
from mcuflow.hw.board import Board, Core, get_board, get_core_model
from mcuflow.hw.kernel_costs import COSTS_FILE, CoreCosts, parse_costs, step_instructions
from mcuflow.hw.kernels import KERNELS
from mcuflow.hw.work import Work
from mcuflow.ir import zoo
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.ops import (
    ArgAttrs,
    BlockAttrs,
    BroadcastToAttrs,
    GatherAttrs,
    LstmAttrs,
    MeanAttrs,
    NoAttrs,
    OpKind,
    PackAttrs,
    ResizeBilinearAttrs,
    ResizeNearestNeighborAttrs,
    ReverseAttrs,
    SliceAttrs,
    SplitAttrs,
    StridedSliceAttrs,
    TileAttrs,
    TransposeAttrs,
)
from mcuflow.ir.quantization import QuantParams
from mcuflow.memory.inplace import ALL_KINDS
from mcuflow.memory.plan import InPlace
from mcuflow.memory.planner import plan_memory
from mcuflow.quant.codebook import compress_graph
from mcuflow.toolchain.arm import build_cortexm
from mcuflow.toolchain.host import random_inputs
from mcuflow.toolchain.qemu import CortexMResult, plan_for, run_qemu, verify_cortexm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cortexm import MODELS, PEER_TFLM_CORTEX_M4, SHARED  # noqa: E402

COSTS_TOML = Path(__file__).resolve().parents[1] / "src" / "mcuflow" / "hw" / COSTS_FILE
FIT_CORES = ("cortex-m0", "cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33")
BENCH_CORES = ("cortex-m0", "cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7",
               "cortex-m33")
GOAL = 0.15
LINK_BOARD = "nucleo-f767zi"  # every build links against it: it holds every shared model
MIB = 1 << 20

# --- the sweeps --------------------------------------------------------------------------------

SEED = 11
MAX_MACS = 1_500_000  # per layer: a few million instructions on a Cortex-M0
GRAPH_BYTES = 1_000_000  # activations per sweep graph (QEMU's 4 MiB of RAM holds the build)
GRAPH_LAYERS = 14
SWEEP_RUNS = 2  # inputs per QEMU run; a layer's count is their mean (resolution 40 / 2)
SWEEP_PLAN_SECONDS = 0.0  # the greedy plan: in-place where it helps, no search
FLOOR = 2_000  # instructions: smaller layers weigh as this much in the relative fit
ACTIVATIONS = (Activation.NONE, Activation.NONE, Activation.RELU, Activation.RELU6)


@dataclasses.dataclass(frozen=True)
class Fused:
    """A fused activation and how the converter quantised its output (None: as built)."""

    activation: Activation
    zero_point: int | None = None
    scale: float | None = None


FUSED = (Fused(Activation.NONE),) * 7 + (Fused(Activation.RELU, -128),) * 6 + (
    Fused(Activation.RELU6, -128, 6 / 255),) * 4 + (
    Fused(Activation.RELU), Fused(Activation.RELU6), Fused(Activation.RELU_N1_TO_1))
"""As TFLite converters quantise them: a RELU's output mostly at zero point -128 (the clamp
then spans int8), a RELU6's at scale 6/255 too; a few narrower than int8."""

LayerFn = Callable[[GraphBuilder, np.random.Generator], str]


def _pick(rng: np.random.Generator, values: list) -> object:
    return values[int(rng.integers(len(values)))]


def _input(b: GraphBuilder, rng: np.random.Generator, shape: tuple[int, ...]) -> str:
    return b.input(shape, float(rng.uniform(0.01, 0.1)), int(rng.integers(-20, 21)))


def _spatial(rng: np.random.Generator, low: int, high: int) -> tuple[int, int]:
    return int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1))


def _fused(b: GraphBuilder, rng: np.random.Generator, layer: Callable[[Activation], str]) -> str:
    """`layer` built with a random FUSED activation, its output quantised accordingly."""
    fused: Fused = _pick(rng, list(FUSED))
    out = layer(fused.activation)
    if fused.zero_point is not None:
        scale = fused.scale or b.quant(out).scale0
        b.graph.tensors[out].quant = QuantParams.per_tensor(scale, fused.zero_point)
    return out


def _fused_conv(b: GraphBuilder, rng: np.random.Generator, shape: tuple[int, ...], out_c: int,
                kernel: tuple[int, int], stride: int) -> str:
    """A CONV_2D of a fresh input with a sampled padding, fused activation and weight scales."""
    padding = _pick(rng, [Padding.SAME, Padding.SAME, Padding.VALID])
    x = _input(b, rng, shape)
    return _fused(b, rng, lambda act: b.conv2d(x, out_c, kernel, stride, padding=padding,
                                               activation=act,
                                               per_channel=bool(rng.integers(4))))


def _conv(b: GraphBuilder, rng: np.random.Generator) -> str:
    while True:
        kernel = _pick(rng, [(1, 1)] * 6 + [(3, 3)] * 3 + [(5, 5), (1, 3), (3, 1), (7, 7),
                                                           (10, 4)])
        in_c = int(_pick(rng, [1, 2, 3, 4, 5, 7, 8, 8, 12, 16, 16, 24, 27, 32, 32, 48, 64, 96,
                               128]))
        out_c = int(_pick(rng, [int(rng.integers(1, 97)), 8 * int(rng.integers(1, 17))]))
        h, w = _spatial(rng, max(kernel), 48 if in_c * out_c <= 256 else 24)
        stride = int(_pick(rng, [1, 1, 1, 2]))
        if h * w * out_c * kernel[0] * kernel[1] * in_c // stride ** 2 <= MAX_MACS:
            break
    return _fused_conv(b, rng, (1, h, w, in_c), out_c, kernel, stride)


def _stem(b: GraphBuilder, rng: np.random.Generator) -> str:
    """A network's first convolution: an image of 1 to 4 channels, few output channels."""
    while True:
        kernel = _pick(rng, [(3, 3), (3, 3), (3, 3), (5, 5), (7, 7), (10, 4)])
        in_c = int(_pick(rng, [1, 3, 3, 3, 4]))
        out_c = int(_pick(rng, [8, 8, 16, 16, 24, 32, 6, 12]))
        h, w = _spatial(rng, 16, 96)
        stride = int(_pick(rng, [2, 2, 1]))
        if h * w * out_c * kernel[0] * kernel[1] * in_c // stride ** 2 <= MAX_MACS:
            break
    return _fused_conv(b, rng, (1, h, w, in_c), out_c, kernel, stride)


def _depthwise(b: GraphBuilder, rng: np.random.Generator) -> str:
    kernel = _pick(rng, [(3, 3), (3, 3), (3, 3), (5, 5), (7, 7), (3, 1)])
    multiplier = int(_pick(rng, [1, 1, 1, 1, 1, 1, 2]))
    channels = int(_pick(rng, [1, 3, 4, 5, 8, 8, 12, 15, 16, 16, 24, 32, 40, 48, 64, 72, 96,
                               120, 144]))
    channels = max(1, channels // multiplier)
    h, w = _spatial(rng, max(kernel), 48 if channels <= 32 else 24)
    stride = int(_pick(rng, [1, 1, 2]))
    dilation = int(_pick(rng, [1] * 9 + [2]))
    if (max(kernel) - 1) * dilation + 1 > min(h, w):
        dilation = 1
    padding = _pick(rng, [Padding.SAME, Padding.SAME, Padding.VALID])
    x = _input(b, rng, (1, h, w, channels))
    return _fused(b, rng, lambda act: b.depthwise_conv2d(
        x, kernel, stride, dilation, multiplier, padding, activation=act,
        per_channel=bool(rng.integers(4))))


def _fully_connected(b: GraphBuilder, rng: np.random.Generator) -> str:
    while True:
        depth = int(_pick(rng, [3, 8, 10, 16, 33, 64, 100, 128, 250, 256, 490, 640, 1000,
                                1024, 1280]))
        units = int(_pick(rng, [1, 2, 3, 4, 5, 8, 10, 12, 16, 31, 64, 100, 128, 200, 256, 640]))
        rows = int(_pick(rng, [1, 1, 1, 1, 2, 4]))
        if rows * units * depth <= MAX_MACS:
            break
    x = _input(b, rng, (rows, depth))
    return _fused(b, rng, lambda act: b.fully_connected(x, units, act,
                                                        per_channel=bool(rng.integers(2))))


def _pool(b: GraphBuilder, rng: np.random.Generator) -> str:
    channels = int(_pick(rng, [1, 3, 8, 16, 24, 32, 64, 70, 128]))
    h, w = _spatial(rng, 2, 32)
    size = min(int(_pick(rng, [2, 2, 3, 3, 4, 7, 32])), h, w)
    x = _input(b, rng, (1, h, w, channels))
    padding = _pick(rng, [Padding.VALID, Padding.SAME])
    stride = int(_pick(rng, [1, 2, 2, size]))
    pool = b.max_pool2d if rng.integers(2) else b.average_pool2d
    return pool(x, size, stride, padding, _pick(rng, ACTIVATIONS))


def _mean(b: GraphBuilder, rng: np.random.Generator) -> str:
    h, w = _spatial(rng, 1, 40)
    channels = int(_pick(rng, [1, 8, 16, 24, 40, 48, 96, 128, 256]))
    axes = _pick(rng, [(1, 2), (1, 2), (1, 2), (1,), (2,), (3,)])
    return b.mean(_input(b, rng, (1, h, w, channels)), axes, keep_dims=bool(rng.integers(2)))


def _softmax(b: GraphBuilder, rng: np.random.Generator) -> str:
    """Mostly of logits (an FC's outputs), as classifiers end; some of uniform inputs."""
    rows = int(_pick(rng, [1, 1, 1, 2, 4, 16, 49]))
    depth = int(_pick(rng, [2, 3, 10, 12, 35, 100, 256, 1000]))
    if rng.integers(3):
        x = b.fully_connected(_input(b, rng, (rows, int(_pick(rng, [16, 64])))), depth)
    else:
        x = _input(b, rng, (rows, depth))
    return b.softmax(x, beta=float(rng.uniform(0.5, 2.0)))


def _binary(b: GraphBuilder, rng: np.random.Generator) -> str:
    h, w = _spatial(rng, 1, 40)
    channels = int(_pick(rng, [1, 3, 8, 16, 24, 40, 64, 96]))
    shape = (1, h, w, channels)
    other = _pick(rng, [shape, shape, shape, (1, 1, 1, channels), (1, h, w, 1),
                        (1, 1, w, channels), (channels,)])
    x, y = _input(b, rng, shape), _input(b, rng, other)
    op = _pick(rng, [b.add, b.add, b.sub, b.mul, b.mul])
    return op(x, y, _pick(rng, [Activation.NONE, Activation.NONE, Activation.RELU]))


def _maximum_minimum(b: GraphBuilder, rng: np.random.Generator) -> str:
    h, w = _spatial(rng, 1, 40)
    channels = int(_pick(rng, [1, 3, 8, 16, 24, 40, 64, 96]))
    shape = (1, h, w, channels)
    other = _pick(rng, [shape, shape, (1, 1, 1, channels), (1, h, w, 1), (channels,)])
    x, y = _input(b, rng, shape), _input(b, rng, other)
    kind = _pick(rng, [OpKind.MAXIMUM, OpKind.MINIMUM])
    return b.op(kind, [x, y], NoAttrs(), b.quant(x))


def _lookup(b: GraphBuilder, rng: np.random.Generator) -> str:
    h, w = _spatial(rng, 1, 48)
    x = _input(b, rng, (1, h, w, int(_pick(rng, [1, 8, 16, 24, 48]))))
    kind = int(rng.integers(7))
    unary = [b.relu, b.relu6, b.hard_swish, b.logistic, b.tanh, b.leaky_relu]
    if kind < len(unary):
        return unary[kind](x)
    return b.quantize(x, float(rng.uniform(0.01, 0.1)), int(rng.integers(-20, 21)))


def _float_edge(b: GraphBuilder, rng: np.random.Generator) -> str:
    shape = (1, int(rng.integers(1, 2000)))
    if rng.integers(2):
        return b.dequantize(_input(b, rng, shape))
    x = b.input(shape, dtype=DType.FLOAT32)
    return b.quantize(x, float(rng.uniform(0.01, 0.1)), int(rng.integers(-20, 21)))


def _pad(b: GraphBuilder, rng: np.random.Generator) -> str:
    h, w = _spatial(rng, 1, 32)
    x = _input(b, rng, (1, h, w, int(_pick(rng, [1, 3, 8, 16, 32]))))
    edges = [(int(rng.integers(3)), int(rng.integers(3))) for _ in range(2)]
    channels = _pick(rng, [(0, 0), (0, 0), (0, 0), (1, 2)])
    return b.pad(x, ((0, 0), *edges, channels))


def _concatenation(b: GraphBuilder, rng: np.random.Generator) -> str:
    h, w = _spatial(rng, 1, 24)
    axis = int(_pick(rng, [3, 3, 1, 2]))
    scale, zero = float(rng.uniform(0.01, 0.1)), int(rng.integers(-20, 21))
    channels = int(_pick(rng, [1, 4, 8, 16, 24]))
    parts = []
    for _ in range(int(rng.integers(2, 5))):
        shape = [1, h, w, channels]
        shape[axis] = int(_pick(rng, [1, 4, 8, 16, 24])) if axis == 3 else int(rng.integers(1, 17))
        parts.append(b.input(tuple(shape), scale, zero))
    return b.concatenation(parts, axis)


def _slice(b: GraphBuilder, rng: np.random.Generator) -> str:
    """A box of an (N, H, W, C) input, cut on the chosen axes (row copies or mcuflow_slice_s8)."""
    h, w = _spatial(rng, 1, 32)
    shape = (int(_pick(rng, [1, 1, 2])), h, w, int(_pick(rng, [1, 3, 8, 16, 32])))
    cut: tuple[int, ...] = _pick(rng, [(1, 2), (3,), (1, 2, 3), (1, 2, 3), (2, 3), (2, 3)])
    begin = [int(rng.integers(d)) if axis in cut else 0 for axis, d in enumerate(shape)]
    size = [int(rng.integers(1, d - first + 1)) if axis in cut else d
            for axis, (d, first) in enumerate(zip(shape, begin, strict=True))]
    x = _input(b, rng, shape)
    return b.op(OpKind.SLICE, [x], SliceAttrs(tuple(begin), tuple(size)), b.quant(x))


def _reduce(b: GraphBuilder, rng: np.random.Generator) -> str:
    """REDUCE_MAX / REDUCE_MIN: global max pooling over H, W or time, channels, or all axes."""
    h, w = _spatial(rng, 1, 40)
    x = _input(b, rng, (1, h, w, int(_pick(rng, [1, 8, 16, 24, 40, 64, 128]))))
    axes = _pick(rng, [(1, 2), (1, 2), (1,), (2,), (3,), (1, 2, 3)])
    kind = _pick(rng, [OpKind.REDUCE_MAX, OpKind.REDUCE_MAX, OpKind.REDUCE_MIN])
    return b.op(kind, [x], MeanAttrs(axes, bool(rng.integers(2))), b.quant(x))


def _arg(b: GraphBuilder, rng: np.random.Generator) -> str:
    """ARG_MAX / ARG_MIN: mostly over a classifier's logits, some over channels or rows."""
    if rng.integers(2):
        shape: tuple[int, ...] = (1, int(_pick(rng, [2, 10, 12, 35, 100, 1000])))
        axis = 1
    else:
        h, w = _spatial(rng, 1, 32)
        shape = (1, h, w, int(_pick(rng, [2, 8, 16, 32])))
        axis = int(_pick(rng, [3, 3, 1, 2]))
    kind = _pick(rng, [OpKind.ARG_MAX, OpKind.ARG_MAX, OpKind.ARG_MIN])
    return b.op(kind, [_input(b, rng, shape)], ArgAttrs(axis), None, DType.INT32)


def _resize(b: GraphBuilder, rng: np.random.Generator) -> str:
    """RESIZE_NEAREST_NEIGHBOR up (x2, x3, fractional) and down, in each mode."""
    h, w = _spatial(rng, 1, 24)
    x = _input(b, rng, (1, h, w, int(_pick(rng, [1, 3, 8, 16, 32]))))
    factor = float(_pick(rng, [2.0, 2.0, 3.0, 1.5, 0.5]))
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    align, half = _pick(rng, [(False, False), (False, False), (True, False), (False, True)])
    return b.op(OpKind.RESIZE_NEAREST_NEIGHBOR, [x],
                ResizeNearestNeighborAttrs(size, align, half), b.quant(x))


def _squared_difference_prelu(b: GraphBuilder, rng: np.random.Generator) -> str:
    """mcuflow_binary_s8's SQUARED_DIFFERENCE and PRELU modes (alpha mostly per channel)."""
    h, w = _spatial(rng, 1, 40)
    channels = int(_pick(rng, [1, 3, 8, 16, 24, 40, 64, 96]))
    shape = (1, h, w, channels)
    x = _input(b, rng, shape)
    out = QuantParams.per_tensor(float(rng.uniform(0.05, 0.5)), int(rng.integers(-20, 21)))
    if rng.integers(2):
        other = _pick(rng, [shape, shape, (1, 1, 1, channels), (1, h, w, 1)])
        return b.op(OpKind.SQUARED_DIFFERENCE, [x, _input(b, rng, other)], NoAttrs(), out)
    alpha_shape = _pick(rng, [(1, 1, channels), (1, 1, channels), (1,), shape[1:]])
    alpha = b.constant_int8(alpha_shape, float(rng.uniform(0.002, 0.02)),
                            int(rng.integers(-20, 21)))
    return b.op(OpKind.PRELU, [x, alpha], NoAttrs(), out)


def _abs_sum(b: GraphBuilder, rng: np.random.Generator) -> str:
    """ABS (mcuflow_lookup_s8) or SUM (mcuflow_mean_s8) over spatial, channel or all axes."""
    h, w = _spatial(rng, 1, 40)
    x = _input(b, rng, (1, h, w, int(_pick(rng, [1, 8, 16, 24, 40, 96]))))
    out = QuantParams.per_tensor(float(rng.uniform(0.2, 4.0)), int(rng.integers(-20, 21)))
    if rng.integers(3) == 0:
        return b.op(OpKind.ABS, [x], NoAttrs(), out)
    axes = _pick(rng, [(1, 2), (1, 2), (3,), (1,), (1, 2, 3)])
    return b.op(OpKind.SUM, [x], MeanAttrs(axes, bool(rng.integers(2))), out)


def _normalization(b: GraphBuilder, rng: np.random.Generator) -> str:
    """L2_NORMALIZATION of embeddings or channels; LOG_SOFTMAX mostly of logits."""
    rows = int(_pick(rng, [1, 1, 1, 2, 4, 16, 49, 100]))
    depth = int(_pick(rng, [2, 3, 10, 12, 35, 64, 128, 256, 1000]))
    x = _input(b, rng, (rows, depth))
    if rng.integers(2):
        return b.op(OpKind.L2_NORMALIZATION, [x], NoAttrs(),
                    QuantParams.per_tensor(1.0 / 128.0, 0))
    return b.op(OpKind.LOG_SOFTMAX, [x], NoAttrs(), QuantParams.per_tensor(16.0 / 256.0, 127))


def _transpose_conv(b: GraphBuilder, rng: np.random.Generator) -> str:
    """TRANSPOSE_CONV: decoder upsampling (2x2 / 3x3 / 4x4 stride 2, 3x3 stride 1).

    Also filters shorter than their stride (1x1 stride 2, 2x3 stride 3), whose output phases
    no tap reaches: on a DSP core the gathering kernels run them, not the phased one.
    """
    while True:
        kernel, stride = _pick(rng, [((2, 2), 2), ((3, 3), 2), ((4, 4), 2), ((3, 3), 1),
                                     ((1, 1), 2), ((2, 3), 3)])
        in_c = int(_pick(rng, [1, 4, 8, 16, 24, 32, 64]))
        out_c = int(_pick(rng, [1, 3, 8, 16, 24, 32]))
        h, w = _spatial(rng, 1, 16)
        if h * w * in_c * out_c * kernel[0] * kernel[1] <= MAX_MACS:
            break
    x = _input(b, rng, (1, h, w, in_c))
    padding = _pick(rng, [Padding.SAME, Padding.SAME, Padding.VALID])
    out_hw = None if padding is Padding.SAME else ((h - 1) * stride + kernel[0],
                                                   (w - 1) * stride + kernel[1])
    return b.transpose_conv(x, out_c, kernel, stride, padding, _pick(rng, list(ACTIVATIONS)),
                            per_channel=bool(rng.integers(2)), bias=bool(rng.integers(4)),
                            output_hw=out_hw)


def _resize_bilinear(b: GraphBuilder, rng: np.random.Generator) -> str:
    """RESIZE_BILINEAR up (x2, x3, fractional) and down, in each mode."""
    h, w = _spatial(rng, 1, 24)
    x = _input(b, rng, (1, h, w, int(_pick(rng, [1, 3, 8, 16, 32]))))
    factor = float(_pick(rng, [2.0, 2.0, 3.0, 1.5, 0.5]))
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    align, half = _pick(rng, [(False, False), (False, True), (False, True), (True, False)])
    return b.op(OpKind.RESIZE_BILINEAR, [x], ResizeBilinearAttrs(size, align, half), b.quant(x))


def _tile(b: GraphBuilder, rng: np.random.Generator) -> str:
    """TILE and BROADCAST_TO: UpSampling2D's repeat over a unit axis, channel, spatial tiling."""
    h, w = _spatial(rng, 1, 24)
    c = int(_pick(rng, [1, 3, 8, 16, 32]))
    m = int(_pick(rng, [2, 2, 3, 4]))
    shape, multiples = _pick(rng, [((1, h, 1, w, c), (1, 1, m, 1, 1)),
                                   ((1, h, w, 1, c), (1, 1, 1, m, 1)),
                                   ((1, h, w, c), (1, 1, 1, m)), ((1, h, w, c), (1, m, m, 1))])
    x = _input(b, rng, shape)
    if rng.integers(3) == 0:  # BROADCAST_TO runs the same kernel
        target = tuple(d * m for d, m in zip(shape, multiples, strict=True))
        if all(d == 1 or m == 1 for d, m in zip(shape, multiples, strict=True)):
            return b.op(OpKind.BROADCAST_TO, [x], BroadcastToAttrs(target), b.quant(x))
    return b.op(OpKind.TILE, [x], TileAttrs(multiples), b.quant(x))


def _depth_space(b: GraphBuilder, rng: np.random.Generator) -> str:
    """DEPTH_TO_SPACE (pixel shuffle) and SPACE_TO_DEPTH, blocks 2 to 4."""
    block = int(_pick(rng, [2, 2, 3, 4]))
    h, w = _spatial(rng, 1, 16)
    c = int(_pick(rng, [1, 2, 4, 8, 16]))
    if rng.integers(2):
        x = _input(b, rng, (1, h, w, c * block * block))
        return b.op(OpKind.DEPTH_TO_SPACE, [x], BlockAttrs(block), b.quant(x))
    x = _input(b, rng, (1, h * block, w * block, c))
    return b.op(OpKind.SPACE_TO_DEPTH, [x], BlockAttrs(block), b.quant(x))


def _batch_space(b: GraphBuilder, rng: np.random.Generator) -> str:
    """SPACE_TO_BATCH_ND or BATCH_TO_SPACE_ND with a dilation's block (2, 4 or [1, d] for 1-D)."""
    d = int(_pick(rng, [2, 2, 4]))
    block = _pick(rng, [(d, d), (d, d), (1, d)])
    h, w = (int(rng.integers(1, 9)) * block[0], int(rng.integers(1, 9)) * block[1])
    shape = (1, h, w, int(_pick(rng, [1, 3, 8, 16, 32])))
    if rng.integers(2):
        pads = tuple((int(rng.integers(2)) * k, int(rng.integers(2)) * k) for k in block)
        return b.space_to_batch(_input(b, rng, shape), block, pads)
    batched = (block[0] * block[1], h // block[0], w // block[1], shape[3])
    crops = tuple((0, int(rng.integers(k))) for k in block)
    return b.batch_to_space(_input(b, rng, batched), block, crops)


def _svdf(b: GraphBuilder, rng: np.random.Generator) -> str:
    """SVDF of keyword spotters: 10 to 640 features, up to 256 units, rank 1 to 4, memory 1..32."""
    while True:
        depth = int(_pick(rng, [1, 10, 16, 40, 64, 100, 128, 250, 640]))
        units = int(_pick(rng, [1, 4, 8, 16, 32, 64, 128, 256]))
        rank, memory = int(_pick(rng, [1, 1, 2, 4])), int(_pick(rng, [1, 2, 4, 8, 10, 16, 32]))
        if units * rank * (depth + memory) <= MAX_MACS:
            break
    x = _input(b, rng, (int(_pick(rng, [1, 1, 1, 2])), depth))
    return b.svdf(x, units, rank, memory, bias=bool(rng.integers(4)))


def _lstm(b: GraphBuilder, rng: np.random.Generator) -> str:
    """UNIDIRECTIONAL_SEQUENCE_LSTM: keyword-spotter and sensor sizes, either time layout."""
    while True:
        batch = int(_pick(rng, [1, 1, 1, 2]))
        time = int(_pick(rng, [1, 4, 10, 25, 49]))
        features = int(_pick(rng, [1, 3, 10, 13, 40]))
        units = int(_pick(rng, [2, 8, 16, 32, 64]))
        if batch * time * 4 * units * (features + units) <= MAX_MACS:
            break
    time_major = bool(rng.integers(2))
    x = _input(b, rng, (time, batch, features) if time_major else (batch, time, features))
    cell_exponent = int(rng.integers(-15, -8))
    clip = float(_pick(rng, [0.0, 0.0, 3.0]))
    return b.lstm(x, units, LstmAttrs(time_major, clip), gain=float(rng.uniform(1.0, 6.0)),
                  cell_exponent=cell_exponent)


def _strided(b: GraphBuilder, rng: np.random.Generator) -> str:
    """mcuflow_strided_copy_s8: TRANSPOSEs, REVERSE_V2s, STRIDED_SLICEs with steps."""
    h, w = _spatial(rng, 1, 24)
    x = _input(b, rng, (1, h, w, int(_pick(rng, [1, 3, 8, 16, 32]))))
    choice = int(rng.integers(3))
    if choice == 0:
        perm = _pick(rng, [(0, 3, 1, 2), (0, 2, 3, 1), (0, 2, 1, 3), (0, 3, 2, 1)])
        return b.op(OpKind.TRANSPOSE, [x], TransposeAttrs(perm), b.quant(x))
    if choice == 1:
        axes = _pick(rng, [(1,), (2,), (3,), (1, 2)])
        return b.op(OpKind.REVERSE_V2, [x], ReverseAttrs(axes), b.quant(x))
    strides = _pick(rng, [(1, 2, 2, 1), (1, 1, 2, 1), (1, 1, 1, 2), (1, -1, -1, 1),
                          (1, 2, 2, 2)])
    return b.op(OpKind.STRIDED_SLICE, [x], StridedSliceAttrs(
        (0, 0, 0, 0), (0, 0, 0, 0), strides, 0b1111, 0b1111), b.quant(x))


def _gather(b: GraphBuilder, rng: np.random.Generator) -> str:
    """mcuflow_gather_s8: rows of a table, pixels of an image, channels."""
    h, w = _spatial(rng, 1, 24)
    shape = (1, h, w, int(_pick(rng, [1, 3, 8, 16, 32])))
    axis = int(_pick(rng, [1, 2, 3]))
    count = int(rng.integers(1, 2 * shape[axis] + 1))
    indices = tuple(int(i) for i in rng.integers(0, shape[axis], count))
    x = _input(b, rng, shape)
    return b.op(OpKind.GATHER, [x], GatherAttrs(axis, indices, (count,)), b.quant(x))


def _pieces(b: GraphBuilder, rng: np.random.Generator) -> str:
    """mcuflow_copy_rows per piece: SPLIT, SPLIT_V and UNPACK of W or C, PACK on any axis."""
    h, w = _spatial(rng, 2, 24)
    shape = (1, h, w, int(_pick(rng, [2, 4, 8, 16, 32])))
    x = _input(b, rng, shape)
    kind = _pick(rng, [OpKind.SPLIT, OpKind.SPLIT_V, OpKind.UNPACK, OpKind.PACK])
    if kind is OpKind.PACK:
        parts = [x, *(b.input(shape, *_shared(b, x)) for _ in range(int(rng.integers(1, 4))))]
        return b.op(kind, parts, PackAttrs(int(rng.integers(0, 5)), len(parts)), b.quant(x))
    axis = int(_pick(rng, [2, 3]))
    if kind is OpKind.UNPACK:
        attrs: SplitAttrs | PackAttrs = PackAttrs(axis, shape[axis])
    else:
        first = int(rng.integers(1, shape[axis]))
        attrs = SplitAttrs(axis, (first, shape[axis] - first) if kind is OpKind.SPLIT_V else (
            (shape[axis] // 2,) * 2 if shape[axis] % 2 == 0 else (shape[axis],)))
    first_piece, *rest = b.op_outputs(kind, [x], attrs, b.quant(x))
    b.output(*rest)
    return first_piece


def _shared(b: GraphBuilder, x: str) -> tuple[float, int]:
    quant = b.quant(x)
    return quant.scale0, quant.zero_point0


def _input_s16(b: GraphBuilder, rng: np.random.Generator, shape: tuple[int, ...]) -> str:
    """An int16 input (LiteRT's int16x8 scheme: zero point 0)."""
    return b.input(shape, float(rng.uniform(1e-4, 1e-3)), 0, DType.INT16)


def _s16_moves(b: GraphBuilder, rng: np.random.Generator) -> str:
    """The data-movement kernels on int16 values (their terms count bytes, as for int8).

    Strided copies (TRANSPOSE, REVERSE_V2), PAD, TILE, RESIZE_NEAREST_NEIGHBOR, CONCATENATION.
    """
    h, w = _spatial(rng, 1, 24)
    c = int(_pick(rng, [1, 3, 8, 16, 32]))
    x = _input_s16(b, rng, (1, h, w, c))
    q, kind = b.quant(x), int(rng.integers(6))
    if kind == 0:
        perm = _pick(rng, [(0, 3, 1, 2), (0, 2, 3, 1), (0, 2, 1, 3), (0, 3, 2, 1)])
        return b.op(OpKind.TRANSPOSE, [x], TransposeAttrs(perm), q, DType.INT16)
    if kind == 1:
        axes = _pick(rng, [(1,), (2,), (3,), (1, 2)])
        return b.op(OpKind.REVERSE_V2, [x], ReverseAttrs(axes), q, DType.INT16)
    if kind == 2:
        edges = [(int(rng.integers(3)), int(rng.integers(3))) for _ in range(2)]
        return b.pad(x, ((0, 0), *edges, (0, 0)))
    if kind == 3:
        m = int(_pick(rng, [2, 3]))
        return b.op(OpKind.TILE, [x], TileAttrs((1, m, m, 1)), q, DType.INT16)
    if kind == 4:
        size = (2 * h, 2 * w)
        return b.op(OpKind.RESIZE_NEAREST_NEIGHBOR, [x],
                    ResizeNearestNeighborAttrs(size, False, False), q, DType.INT16)
    axis = int(_pick(rng, [3, 1]))
    shape = (1, h, w, int(_pick(rng, [1, 8, 16]))) if axis == 3 else (1, 3, w, c)
    return b.concatenation([x, b.input(shape, q.scale0, 0, DType.INT16)], axis)


def _s16_window(b: GraphBuilder, rng: np.random.Generator) -> str:
    """int16x8 CONV_2D and DEPTHWISE_CONV_2D (mcuflow_conv2d_s16, mcuflow_dwconv_s16)."""
    kernel = _pick(rng, [(1, 1), (3, 3), (3, 3), (5, 5)])
    in_c = int(_pick(rng, [1, 3, 8, 16, 32]))
    h, w = _spatial(rng, max(kernel), 24)
    x = _input_s16(b, rng, (1, h, w, in_c))
    stride = int(_pick(rng, [1, 1, 2]))
    activation = _pick(rng, ACTIVATIONS)
    if rng.integers(2):
        return b.depthwise_conv2d(x, kernel, stride, activation=activation,
                                  depth_multiplier=int(_pick(rng, [1, 1, 2])))
    return b.conv2d(x, int(_pick(rng, [4, 8, 16, 32])), kernel, stride, activation=activation)


def _s16_depthwise(b: GraphBuilder, rng: np.random.Generator) -> str:
    """int16x8 DEPTHWISE_CONV_2D of depth multiplier 1 (mcuflow_dwconv_s16_dsp on DSP cores)."""
    kernel = _pick(rng, [(3, 3), (3, 3), (5, 5), (2, 2), (1, 3), (7, 7)])
    h, w = _spatial(rng, max(kernel), 24)
    x = _input_s16(b, rng, (1, h, w, int(_pick(rng, [1, 3, 8, 16, 32]))))
    return b.depthwise_conv2d(x, kernel, int(_pick(rng, [1, 1, 2])),
                              activation=_pick(rng, ACTIVATIONS))


def _s16_fully_connected(b: GraphBuilder, rng: np.random.Generator) -> str:
    """int16x8 FULLY_CONNECTED (mcuflow_fully_connected_s16)."""
    x = _input_s16(b, rng, (int(_pick(rng, [1, 1, 4])), int(_pick(rng, [8, 64, 256, 1000]))))
    return b.fully_connected(x, int(_pick(rng, [2, 10, 32, 128])), _pick(rng, ACTIVATIONS),
                             per_channel=bool(rng.integers(2)))


def _s16_elementwise(b: GraphBuilder, rng: np.random.Generator) -> str:
    """int16 element-wise layers: ADD, MUL, pools, MEAN, SOFTMAX, LOGISTIC, TANH, the edges."""
    h, w = _spatial(rng, 2, 24)
    channels = int(_pick(rng, [1, 8, 16, 32]))
    x = _input_s16(b, rng, (1, h, w, channels))
    kind = int(rng.integers(8))
    if kind == 6:
        return (b.logistic if rng.integers(2) else b.tanh)(x)
    if kind == 7:
        return b.quantize(b.input((1, h * w * channels), dtype=DType.FLOAT32),
                          float(rng.uniform(1e-4, 1e-3)), 0, DType.INT16)
    if kind < 2:
        y = _input_s16(b, rng, _pick(rng, [(1, h, w, channels), (1, 1, 1, channels)]))
        return (b.add if kind == 0 else b.mul)(x, y, _pick(rng, ACTIVATIONS))
    if kind == 2:
        if rng.integers(3) == 0:
            return b.mean(x, _pick(rng, [(1, 2), (3,)]))
        pool = b.max_pool2d if rng.integers(2) else b.average_pool2d
        return pool(x, min(h, w, int(_pick(rng, [2, 3]))), 2, Padding.SAME)
    if kind == 3:
        return b.softmax(b.reshape(x, (h * w, channels)), float(rng.uniform(0.5, 2.0)))
    if kind == 4:
        return b.dequantize(x)
    return b.quantize(x, float(rng.uniform(1e-4, 1e-3)), 0, DType.INT16)


FAMILIES: dict[str, tuple[LayerFn, int]] = {
    "conv": (_conv, 110), "stem": (_stem, 24), "depthwise": (_depthwise, 80),
    "fully_connected": (_fully_connected, 40), "pool": (_pool, 30), "mean": (_mean, 20),
    "softmax": (_softmax, 24), "binary": (_binary, 40),
    "lookup": (_lookup, 24), "float": (_float_edge, 8), "pad": (_pad, 12),
    "concatenation": (_concatenation, 12), "maximum_minimum": (_maximum_minimum, 12),
    "slice": (_slice, 24), "reduce": (_reduce, 16), "arg": (_arg, 16),
    "resize": (_resize, 16),
    "squared_difference_prelu": (_squared_difference_prelu, 20), "abs_sum": (_abs_sum, 16),
    "normalization": (_normalization, 20),
    "transpose_conv": (_transpose_conv, 16),
    "resize_bilinear": (_resize_bilinear, 16), "tile": (_tile, 16),
    "depth_space": (_depth_space, 16),
    "batch_space": (_batch_space, 16),
    "svdf": (_svdf, 16),
    "lstm": (_lstm, 16),
    "strided": (_strided, 20), "gather": (_gather, 16), "pieces": (_pieces, 20),
    "s16_window": (_s16_window, 24), "s16_fully_connected": (_s16_fully_connected, 12),
    "s16_elementwise": (_s16_elementwise, 30),
    "s16_depthwise": (_s16_depthwise, 24),
    "s16_moves": (_s16_moves, 24),
}
"""Layer generator and how many layers of it the sweep builds."""
CODEBOOK_FAMILIES = ("conv", "depthwise", "fully_connected")
CODEBOOK_LAYERS = 24


def _laplace(graph: Graph, rng: np.random.Generator) -> Graph:
    """Conv and FC weights redrawn Laplace-shaped (as trained weights are), then compressed."""
    for op in graph.operators:
        if op.kind in (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED):
            tensor = graph.tensors[op.inputs[1]]
            spread = float(_pick(rng, [3.0, 8.0, 20.0]))
            codes = np.clip(np.round(rng.laplace(0.0, spread, tensor.shape)), -127, 127)
            tensor.data = codes.astype(np.int8)
    return compress_graph(graph, int(_pick(rng, [16, 16, 256])))


def _batches(name: str, layer: LayerFn, count: int, rng: np.random.Generator
             ) -> Iterator[Graph]:
    """Graphs of independent layers (each from its own inputs) with at most GRAPH_BYTES."""
    b, layers = GraphBuilder(f"sweep_{name}_0", int(rng.integers(1 << 30))), 0
    for index in range(count):
        b.output(layer(b, rng))
        layers += 1
        size = sum(t.nbytes for t in b.graph.tensors.values() if not t.is_constant)
        if layers == GRAPH_LAYERS or size > GRAPH_BYTES or index == count - 1:
            first = next(n for n in b.graph.inputs
                         if b.graph.tensors[n].dtype in (DType.INT8, DType.INT16))
            b.output(b.reshape(first, (-1,)))  # aliased: the marks' own cost
            yield b.build()
            b, layers = GraphBuilder(f"sweep_{name}_{index + 1}", int(rng.integers(1 << 30))), 0


def sweep_graphs(seed: int = SEED) -> list[Graph]:
    """Every sweep graph: FAMILIES' layers, then conv / FC layers with codebook weights."""
    rng = np.random.default_rng(seed)
    graphs = [graph for name, (layer, count) in FAMILIES.items()
              for graph in _batches(name, layer, count, rng)]
    for name in CODEBOOK_FAMILIES:
        layer = FAMILIES[name][0]
        graphs += [_laplace(graph, rng) for graph in _batches(f"codebook_{name}", layer,
                                                              CODEBOOK_LAYERS, rng)]
    return graphs


# --- measuring the sweeps ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sample:
    """One measured step: the kernels it called, their work terms and its instructions."""

    layer: str
    functions: tuple[str, ...]
    work: tuple[Work, ...]
    instructions: float


def sweep_board() -> Board:
    """A board whose flash and SRAM are QEMU's whole memories (instructions do not depend on it)."""
    return dataclasses.replace(get_board(LINK_BOARD), flash_bytes=4 * MIB, sram_bytes=4 * MIB)


def measure_sweep(graph: Graph, target: str, dsp: bool, kinds: frozenset[InPlace]
                  ) -> list[Sample]:
    """Per step of one sweep graph: its kernels, work and instructions less the marks' cost."""
    plan = plan_memory(graph, SWEEP_PLAN_SECONDS, kinds=kinds, dsp=dsp)
    layers, _ = emit_layers(graph, plan, dsp)
    with tempfile.TemporaryDirectory(prefix="mcuflow-sweep-") as scratch:
        project = generate_project(graph, plan, Path(scratch) / "project", target=target,
                                   board=sweep_board(), dsp=dsp)
        elf = build_cortexm(project.path, target, profile=True)
        report = run_qemu(elf, target, random_inputs(graph, SWEEP_RUNS, 0), project.outputs).report
    counts = [ticks * report.instructions_per_tick / SWEEP_RUNS for ticks in report.layer_ticks]
    marks = [count for count, layer in zip(counts, layers, strict=True) if not layer.functions]
    overhead = float(np.median(marks)) if marks else 0.0
    samples = []
    for step, layer, count in zip(plan.steps, layers, counts, strict=True):
        op = graph.operators[step.op_index]
        if layer.functions:
            work = tuple(KERNELS[name].work(graph, op) for name in layer.functions)
            samples.append(Sample(f"{graph.name}/{op.name}", layer.functions, work,
                                  count - overhead))
    return samples


DSP_FAMILIES = frozenset({"conv", "stem", "depthwise", "fully_connected", "binary",
                          "transpose_conv", "svdf", "lstm", "s16_window", "s16_fully_connected",
                          "s16_depthwise"})
"""Families whose kernels differ with the DSP extension: on a DSP core, measured both ways (the
portable kernel still runs there where a DSP emitter declines)."""
IN_PLACE_FAMILIES = frozenset({"depthwise"})
"""Families whose kernels differ in place: planned out of place too."""


def family(graph: Graph) -> str:
    """The layer family a sweep graph was built from (its name: sweep_<family>_<n>)."""
    return graph.name.removeprefix("sweep_").rsplit("_", 1)[0]


def variants(graph: Graph, target: str) -> list[tuple[bool, frozenset[InPlace]]]:
    """(dsp, in-place kinds) a sweep graph is planned with on `target`."""
    name = family(graph)
    dsp = CORTEX_M[target].dsp
    dsps = (True, False) if dsp and name in DSP_FAMILIES else (dsp,)
    kinds = (ALL_KINDS, frozenset()) if name in IN_PLACE_FAMILIES else (ALL_KINDS,)
    return [(d, k) for d in dsps for k in kinds]


def measure_core(target: str) -> list[Sample]:
    """Every sweep graph measured on `target` in each of its variants."""
    return [sample for graph in sweep_graphs() for dsp, kinds in variants(graph, target)
            for sample in measure_sweep(graph, target, dsp, kinds)]


# --- the fit -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CoreFit:
    """A core's fitted coefficients per kernel and the samples they were fitted to."""

    core: str
    kernels: dict[str, Work]
    samples: list[Sample]

    def estimate(self, sample: Sample) -> float:
        """The fitted instructions of a sample."""
        return sum(work.dot(self.kernels[name])
                   for name, work in zip(sample.functions, sample.work, strict=True))


def fit_core(core: str, samples: list[Sample]) -> CoreFit:
    """Non-negative instructions per work term and kernel minimising the relative error.

    Each step weighs as 1 / max(measured, FLOOR): large layers, which make a model's time, are
    fitted to their relative error; the smallest ones to FLOOR's absolute error.
    """
    names = Work.names()
    columns = sorted({(function, name) for s in samples
                      for function, work in zip(s.functions, s.work, strict=True)
                      for name, value in zip(names, work.values(), strict=True) if value})
    index = {column: i for i, column in enumerate(columns)}
    matrix = np.zeros((len(samples), len(columns)))
    for row, s in enumerate(samples):
        for function, work in zip(s.functions, s.work, strict=True):
            for name, value in zip(names, work.values(), strict=True):
                if value:
                    matrix[row, index[(function, name)]] += value
    measured = np.array([s.instructions for s in samples])
    weights = 1.0 / np.maximum(measured, FLOOR)
    scale = np.abs(matrix).max(axis=0)
    solution, _ = nnls(matrix * weights[:, None] / scale, measured * weights, maxiter=50_000)
    coefficients = solution / scale
    kernels: dict[str, dict[str, float]] = {}
    for (function, name), value in zip(columns, coefficients, strict=True):
        kernels.setdefault(function, {})[name] = float(value)
    return CoreFit(core, {f: Work(**terms) for f, terms in kernels.items()}, samples)


@dataclasses.dataclass(frozen=True)
class KernelError:
    """How the fitted estimate of the steps calling one kernel compares with the measurement."""

    kernel: str
    layers: int
    measured: float
    estimated: float
    rms: float  # root mean square of the per-layer relative errors (each at least FLOOR)

    @property
    def error(self) -> float:
        """Aggregate relative error: sum of estimates / sum of measurements - 1."""
        return self.estimated / self.measured - 1


def kernel_errors(rows: list[tuple[str, float, float]]) -> list[KernelError]:
    """Per kernel label, from (label, measured, estimated) per layer."""
    grouped: dict[str, list[tuple[float, float]]] = {}
    for label, measured, estimated in rows:
        grouped.setdefault(label, []).append((measured, estimated))
    errors = []
    for label, pairs in sorted(grouped.items()):
        measured = np.array([m for m, _ in pairs])
        estimated = np.array([e for _, e in pairs])
        relative = (estimated - measured) / np.maximum(measured, FLOOR)
        errors.append(KernelError(label, len(pairs), float(measured.sum()),
                                  float(estimated.sum()), float(np.sqrt(np.mean(relative ** 2)))))
    return errors


def _label(functions: tuple[str, ...]) -> str:
    return " + ".join(name.removeprefix("mcuflow_") for name in functions)


def print_kernel_errors(errors: list[KernelError]) -> None:
    """The per-kernel table."""
    print(f"  {'kernel':<40}{'layers':>7}{'measured instr':>16}{'estimate':>14}{'error':>8}"
          f"{'rms/layer':>10}")
    for e in errors:
        print(f"  {e.kernel:<40}{e.layers:>7}{e.measured:>16,.0f}{e.estimated:>14,.0f}"
              f"{e.error:>+8.1%}{e.rms:>10.1%}")


def _fit_one(core: str) -> CoreFit:
    return fit_core(core, measure_core(core))


def _source(fit: CoreFit) -> str:
    machine = CORTEX_M[fit.core].machine
    graphs = len({s.layer.split("/")[0] for s in fit.samples})
    return (f"QEMU {machine} instruction counts (-icount shift=0, profiling firmware, "
            f"{SWEEP_RUNS} random inputs) of {len(fit.samples)} steps of {graphs} sweep graphs "
            f"generated by bench/costmodel.py --fit (seed {SEED}), built with and without the "
            "DSP kernels where the core has them, in place and not; non-negative least "
            "squares on the relative error")


def costs_text(costs: dict[str, CoreCosts]) -> str:
    """kernel_costs.toml: the header comment, then every core's table."""
    header = [line for line in COSTS_TOML.read_text("utf-8").splitlines()
              if line.startswith("#")]
    lines = [*header, ""]
    for core in sorted(costs):
        entry = costs[core]
        lines += [f"[cores.{core}]", f"source = {json.dumps(entry.source)}",
                  f"date = {json.dumps(entry.date)}", ""]
        for function in sorted(entry.kernels):
            lines.append(f"[cores.{core}.kernels.{function}]")
            work = entry.kernels[function]
            lines += [f"{name} = {value:.6g}" for name, value in zip(
                Work.names(), work.values(), strict=True) if value]
            lines.append("")
    return "\n".join(lines)


def fit(cores: list[str], write: bool) -> None:
    """Measure the sweeps on every core (two at a time), fit, print, and with `write` store."""
    with ProcessPoolExecutor(max_workers=2) as pool:
        fits = list(pool.map(_fit_one, cores))
    today = datetime.date.today().isoformat()
    costs = parse_costs(COSTS_TOML.read_text("utf-8"))
    for result in fits:
        print(f"{result.core}: {len(result.samples)} sweep steps, in-sample errors per kernel")
        rows = [(_label(s.functions), s.instructions, result.estimate(s))
                for s in result.samples]
        print_kernel_errors(kernel_errors(rows))
        costs[result.core] = CoreCosts(result.core, _source(result), today, result.kernels)
    if write:
        COSTS_TOML.write_text(costs_text(costs), "utf-8")
        print(f"wrote {COSTS_TOML}")


# --- the report --------------------------------------------------------------------------------

ANALYSIS_BOARDS = {"cortex-m0": "nucleo-f091rc", "cortex-m3": "nucleo-f207zg",
                   "cortex-m4": "nucleo-f429zi", "cortex-m7": "nucleo-f767zi"}
AS_CORE = {"cortex-m33": "nucleo-l4r5zi", "cortex-m0plus": "nucleo-f091rc"}
"""Boards taken with another core: no packaged board has a Cortex-M33, and the one Cortex-M0+
board (rp2040) runs from external QSPI flash, whose XIP reads analyze adds and QEMU does not
model, so its core is checked on an on-chip-flash board."""


def analysis_board(core: str) -> Board:
    """The board `analyze` runs with for `core` (its clock converts both times)."""
    if core in ANALYSIS_BOARDS:
        return get_board(ANALYSIS_BOARDS[core])
    base = get_board(AS_CORE[core])
    return dataclasses.replace(base, id=f"{base.id}-{core}", name=f"{base.name} (as {core})",
                               core=Core(core), core_model=get_core_model(core),
                               dsp=CORTEX_M[core].dsp)


def _fc_autoencoder() -> Graph:
    return zoo.fc_autoencoder(320, (256, 128, 32, 128, 256))


def _codebook_resnet() -> Graph:
    graph = compress_graph(zoo.resnet_like(), 16)
    graph.name = "codebook_resnet_like"
    return graph


ZOO: dict[str, Callable[[], Graph]] = {
    "mobilenet_v2_like": zoo.mobilenet_v2_like, "mobilenet_v3_like": zoo.mobilenet_v3_like,
    "squeezenet_like": zoo.squeezenet_like, "fc_autoencoder": _fc_autoencoder,
    "codebook_resnet_like": _codebook_resnet,
}
"""Zoo models the report builds itself (none of them is in the sweeps)."""


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One step of a measured model: its kernels, measured and estimated instructions."""

    kernels: str
    measured: float
    estimated: float


@dataclasses.dataclass(frozen=True)
class ModelRow:
    """One model on one core: analyze's estimates beside the QEMU measurement."""

    model: str
    core: str
    board: str
    estimated_ms: float
    measured_ms: float
    instructions: int
    bit_exact: bool
    flash_estimate: int
    flash_elf: int
    peer_ratio: float | None
    layers: tuple[LayerRow, ...]

    @property
    def error(self) -> float:
        """Estimated / measured time - 1."""
        return self.estimated_ms / self.measured_ms - 1


def _layers(graph: Graph, result: CortexMResult, functions: list[tuple[str, ...]],
            core: str, order: list[int]) -> tuple[LayerRow, ...]:
    marks = [p.instructions for p, f in zip(result.layers, functions, strict=True) if not f]
    overhead = float(np.median(marks)) if marks else 0.0
    rows = []
    for profile, called, index in zip(result.layers, functions, order, strict=True):
        if called:
            estimate = step_instructions(graph, graph.operators[index], called, core) or 0.0
            rows.append(LayerRow(_label(called), profile.instructions - overhead, estimate))
    return tuple(rows)


def measure_model(graph: Graph, core: str) -> ModelRow:
    """`analyze`'s latency and flash for `graph` on `core` beside QEMU's measurement.

    As `mcuflow analyze` does, with the plan, kernels and firmware (semihosting, QEMU's) of
    the measured build.
    """
    board = analysis_board(core)
    plan = plan_for(graph, core)
    layers, pool = emit_layers(graph, plan, CORTEX_M[core].dsp)
    functions = [layer.functions for layer in layers]
    report = analyze(graph, board, order=plan.order, peak_ram_bytes=plan.arena_bytes,
                     planned=planned_steps(plan), kernels=functions,
                     flash=estimate_flash(graph, layers, pool, core, Io.SEMIHOSTING))
    result = verify_cortexm(graph, plan, core, LINK_BOARD, runs=1, profile=True)
    cpi = board.core_model.cycles_per_instruction
    peer = PEER_TFLM_CORTEX_M4.get(graph.name) if core == "cortex-m4" else None
    return ModelRow(graph.name, core, board.id, report.latency_ms_estimate,
                    result.instructions * cpi / board.clock_hz * 1e3, result.instructions,
                    result.bit_exact, report.flash_bytes, result.flash_bytes,
                    None if peer is None else result.instructions / peer[0],
                    _layers(graph, result, functions, core, plan.order))


def report_models(paths: list[Path]) -> list[Callable[[], Graph]]:
    """The report's model builders: the shared models, `paths`, then the zoo."""
    files = [MODELS / name for name in SHARED] + paths
    return [*(_loader(path) for path in files), *ZOO.values()]


def _loader(path: Path) -> Callable[[], Graph]:
    def load() -> Graph:
        return load_int8_model(path)
    return load


def _measure_core(job: tuple[str, list[Path]]) -> list[ModelRow]:
    core, paths = job
    return [measure_model(build(), core) for build in report_models(paths)]


def print_models(rows: list[ModelRow]) -> None:
    """The per model x core table and the goal verdict."""
    width = max([24, *(len(r.model) + 1 for r in rows)])
    print(f"{'model':<{width}}{'core':<12}{'estimate ms':>12}{'measured ms':>12}{'error':>8}"
          f"{'flash est B':>13}{'ELF flash B':>13}{'flash err':>10}{'ours/TFLM':>10}  exact")
    for r in rows:
        ratio = "-" if r.peer_ratio is None else f"{r.peer_ratio:.3f}"
        flash = r.flash_estimate / r.flash_elf - 1
        print(f"{r.model:<{width}}{r.core:<12}{r.estimated_ms:>12.3f}{r.measured_ms:>12.3f}"
              f"{r.error:>+8.1%}{r.flash_estimate:>13,}{r.flash_elf:>13,}{flash:>+10.1%}"
              f"{ratio:>10}  {r.bit_exact}")
    print_summary(rows)


def print_summary(rows: list[ModelRow]) -> None:
    """Per core the worst latency and flash errors; the goal verdict; the ratio to the peer."""
    print(f"{'core':<12}{'models':>7}{'worst latency error':>30}{'mean |error|':>14}"
          f"{'worst flash error':>19}")
    for core in dict.fromkeys(r.core for r in rows):
        mine = [r for r in rows if r.core == core]
        worst = max(mine, key=lambda r: abs(r.error))
        flash = max((r.flash_estimate / r.flash_elf - 1 for r in mine), key=abs)
        mean = sum(abs(r.error) for r in mine) / len(mine)
        print(f"{core:<12}{len(mine):>7}{f'{worst.error:+.1%} ({worst.model})':>30}"
              f"{mean:>14.1%}{flash:>+19.1%}")
    worst = max(rows, key=lambda r: abs(r.error))
    verdict = "met" if abs(worst.error) <= GOAL else "NOT met"
    print(f"goal: latency within {GOAL:.0%} of QEMU on every model and core: {verdict} (worst "
          f"{worst.error:+.1%}, {worst.model} on {worst.core})")
    ratios = [r.peer_ratio for r in rows if r.peer_ratio is not None]
    if ratios:
        print(f"ours / TFLM + CMSIS-NN instructions on cortex-m4: {min(ratios):.3f} to "
              f"{max(ratios):.3f} over {len(ratios)} MLPerf Tiny models")


def print_kernels(rows: list[ModelRow], cores: list[str]) -> None:
    """Per kernel (combination) and core: the aggregate error over every layer of the models."""
    table: dict[str, dict[str, KernelError]] = {}
    for core in cores:
        layers = [(layer.kernels, layer.measured, layer.estimated)
                  for r in rows if r.core == core for layer in r.layers]
        for error in kernel_errors(layers):
            table.setdefault(error.kernel, {})[core] = error
    print("per kernel, aggregate error over the models' layers (sum of estimates / sum of "
          "measurements - 1; layers)")
    print(f"{'kernel':<40}" + "".join(f"{core:>16}" for core in cores))
    for kernel, by_core in sorted(table.items()):
        cells = [f"{by_core[c].error:>+9.1%} ({by_core[c].layers:>3})" if c in by_core
                 else f"{'-':>16}" for c in cores]
        print(f"{kernel:<40}" + "".join(f"{cell:>16}" for cell in cells))


def report(cores: list[str], paths: list[Path], as_json: bool) -> None:
    """Measure every model on every core (two cores at a time) and print the tables."""
    with ProcessPoolExecutor(max_workers=2) as pool:
        rows = [row for rows in pool.map(_measure_core, [(c, paths) for c in cores])
                for row in rows]
    if as_json:
        print(json.dumps([{**dataclasses.asdict(r), "error": r.error} for r in rows], indent=2))
        return
    print("analyze's latency (kernel costs fitted by bench/costmodel.py --fit) beside QEMU: "
          "instructions x cycles per instruction / clock of the board of each core")
    print_models(rows)
    print()
    print_kernels(rows, cores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, help="extra .tflite models")
    parser.add_argument("--core", action="append", choices=FIT_CORES, help="(repeatable)")
    parser.add_argument("--fit", action="store_true", help="measure the sweeps and fit")
    parser.add_argument("--write", action="store_true", help="with --fit: update the TOML")
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    args = parser.parse_args()
    if args.fit:
        fit(args.core or list(FIT_CORES), args.write)
    else:
        report(args.core or list(BENCH_CORES), args.models, args.json)


if __name__ == "__main__":
    main()
