"""Per-layer Cortex-M benchmark: mcuflow's generated layer beside CMSIS-NN's kernel for it, on QEMU.

TFLM + CMSIS-NN runs a layer as CMSIS-NN's function plus the interpreter's work around it, so
CMSIS-NN's instructions alone are a lower bound of that peer, and ours / CMSIS-NN an upper bound
of ours / (TFLM + CMSIS-NN). Each layer is a one-op graph; ours is the project `compile`
writes, built and run on QEMU (method in mcuflow.toolchain.qemu). The peer firmware is the same
driver (templates/cortex-m/main.c) with the model replaced by a C file calling the CMSIS-NN
function TFLM's CMSIS-NN kernel calls, on the same constants and with the parameters TFLM gives
it (computed by mcuflow's reference `prepare_*`), linked against CMSIS-NN built with the same
compiler and flags. Both run the same RUNS random inputs in one firmware; the peer's outputs are
compared with ours (`max_diff`, the largest difference in LSB over all runs), which checks the
parameters given to CMSIS-NN. The cases:

- CONV_2D, DEPTHWISE_CONV_2D (arm_convolve_wrapper_s8, arm_depthwise_conv_wrapper_s8),
  TRANSPOSE_CONV (arm_transpose_conv_wrapper_s8, both buffers sized by CMSIS-NN's
  get_buffer_size functions; it convolves the upsampled input when there are more than 16 input
  channels, else runs arm_transpose_conv_s8: the cases cover both): max_diff 0, the same
  arithmetic as LiteRT.
- FULLY_CONNECTED (arm_fully_connected_s8): LiteRT requantises in double precision, CMSIS-NN
  with a Q31 multiplier: up to 1 LSB apart.
- int16x8 CONV_2D, DEPTHWISE_CONV_2D (arm_convolve_wrapper_s16 with an int64 cmsis_nn_bias_data,
  arm_depthwise_conv_wrapper_s16): max_diff 0; both round the Q31 multiplier to Q15.
- int16x8 FULLY_CONNECTED (arm_fully_connected_s16): LiteRT requantises in double precision,
  CMSIS-NN with the Q31 multiplier rounded to Q15: up to 1 LSB apart.
- SVDF int8 with int16 state (arm_svdf_state_s16_s8): max_diff 0; the state starts at zero and
  persists across the runs in both.
- UNIDIRECTIONAL_SEQUENCE_LSTM int8 (arm_lstm_unidirectional_s8, both states persisting across
  runs as in LiteRT): LiteRT's 8x8_16 LSTM computes its gates' sigmoid and tanh with gemmlowp's
  fixed-point functions, CMSIS-NN by interpolating its 256-entry sigmoid table (as LiteRT's int16
  LOGISTIC / TANH ops do): up to 1 LSB apart.

CMSIS-NN is not shipped with mcuflow: pass --cmsis-nn DIR (a checkout of ARM-software/CMSIS-NN)
or set CMSIS_NN_DIR.

With --models, also every layer of the coverage models (tests/coverage_models.py, the
int8 rewrites applied) that one of these CMSIS-NN kernels runs, each cut from its model as a
one-layer graph with the model's own constants and parameters, and per model the sum over those
layers: the check on whole models, not only on chosen shapes.

Run: .venv/bin/python bench/cmsis_nn.py --cmsis-nn DIR [--target cortex-m4] [--models] [--json]
     [CASE ...]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mcuflow.codegen.project import generate_project
from mcuflow.codegen.targets import CORTEX_M_DRIVER, CORTEX_M_LDFLAGS
from mcuflow.errors import McuflowError
from mcuflow.hw.board import Board
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import LSTM_GATES, OpKind
from mcuflow.ir.svdf import svdf_bias
from mcuflow.passes.pipeline import INT8_PASSES, run_passes
from mcuflow.quant.fixedpoint import quantize_multiplier
from mcuflow.ref.common import quant_of
from mcuflow.ref.conv2d import prepare_conv
from mcuflow.ref.fully_connected import prepare_fully_connected
from mcuflow.ref.int16x8 import prepare_conv_s16, prepare_fully_connected_s16
from mcuflow.ref.lstm import LstmParams, prepare_lstm
from mcuflow.ref.svdf import prepare_svdf
from mcuflow.ref.transpose_conv import prepare_transpose_conv
from mcuflow.toolchain.arm import build_cortexm, compiler_flags, find_cross_compiler
from mcuflow.toolchain.host import random_inputs
from mcuflow.toolchain.qemu import QemuRun, default_board, plan_for, run_qemu

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test-suite's model builders (tests.coverage_models)
RUNS = 3
PEER_FILE = "cmsis_nn_layer.c"
SCRATCH_BYTES = 32 * 1024
"""Static scratch the peer lends CMSIS-NN (each case's get_buffer_size must fit)."""
LSTM_GATE_NAMES = ("input", "forget", "cell", "output")
"""mcuflow's gate order (its weights and biases); cmsis_nn_lstm_params names each gate."""
CTYPES = {DType.INT8: "int8_t", DType.INT16: "int16_t"}
FLOAT_SUFFIXES = ("_f16", "_f32")
"""CMSIS-NN's floating-point kernels, not built (int8/int16 layers only)."""


@dataclass(frozen=True)
class Case:
    """One layer: its graph and the C body calling CMSIS-NN on it."""

    name: str
    build: Callable[[], Graph]
    peer: Callable[[Graph, Operator], str]


@dataclass(frozen=True)
class Row:
    case: str
    kernel: str
    ours: int
    cmsis_nn: int
    ratio: float
    max_diff: int


# --------------------------------------------------------------------------- C text


def _array(ctype: str, name: str, values: np.ndarray | list[int] | tuple[int, ...]) -> str:
    flat = np.asarray(values).reshape(-1)
    body = ", ".join(str(int(v)) for v in flat) or "0"
    return f"static const {ctype} {name}[{max(flat.size, 1)}] = {{{body}}};\n"


def _dims(name: str, shape: tuple[int, ...]) -> str:
    n, h, w, c = (1,) * (4 - len(shape)) + tuple(shape)
    return f"    const cmsis_nn_dims {name} = {{.n = {n}, .h = {h}, .w = {w}, .c = {c}}};\n"


def _io(graph: Graph, op: Operator) -> str:
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    return (f"static {CTYPES[x.dtype]} layer_input[{x.size}] __attribute__((aligned(8)));\n"
            f"static {CTYPES[y.dtype]} layer_output[{y.size}] __attribute__((aligned(8)));\n"
            f"static int8_t scratch[{SCRATCH_BYTES}] __attribute__((aligned(8)));\n"
            "void *mcuflow_model_input(int index) { return index == 0 ? layer_input : NULL; }\n"
            "const void *mcuflow_model_output(int index)\n"
            "{ return index == 0 ? layer_output : NULL; }\n")


def _peer_source(graph: Graph, op: Operator, constants: str, call: str) -> str:
    return ("#include <stddef.h>\n#include \"arm_nnfunctions.h\"\n#include \"mcuflow_model.h\"\n"
            f"{_io(graph, op)}{constants}"
            "int mcuflow_model_invoke_in_place(void)\n{\n"
            f"{call}"
            "    return status == ARM_CMSIS_NN_SUCCESS ? MCUFLOW_OK : MCUFLOW_ERROR_KERNEL;\n}\n")


def _bias(graph: Graph, op: Operator, channels: int) -> np.ndarray:
    if len(op.inputs) > 2 and graph.tensors[op.inputs[2]].data is not None:
        return graph.tensors[op.inputs[2]].data
    return np.zeros(channels, np.int32)


def _operands(graph: Graph, op: Operator) -> tuple[Tensor, Tensor, Tensor]:
    """The input, the weights and the output of a weighted layer."""
    return graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]], graph.tensors[op.outputs[0]]


def _conv_peer(graph: Graph, op: Operator) -> str:
    """arm_{convolve,depthwise_conv}_wrapper_{s8,s16}, as TFLM's CMSIS-NN conv kernels call them."""
    x, w, y = _operands(graph, op)
    wide, a = x.dtype is DType.INT16, op.attrs
    params = prepare_conv_s16(x, w, y, a) if wide else prepare_conv(x, w, y, a)
    offsets = (0, 0) if wide else (params.input_offset, params.output_offset)
    depthwise = op.kind is OpKind.DEPTHWISE_CONV_2D
    constants = (_array("int8_t", "filter", w.data)
                 + _array("int64_t" if wide else "int32_t", "bias", _bias(graph, op, y.shape[3]))
                 + _array("int32_t", "multipliers", params.multipliers)
                 + _array("int32_t", "shifts", params.shifts))
    kind, stem = ("cmsis_nn_dw_conv_params", "depthwise_conv") if depthwise \
        else ("cmsis_nn_conv_params", "convolve")
    function = f"arm_{stem}_wrapper_{'s16' if wide else 's8'}"
    wide_bias = wide and not depthwise  # arm_convolve_wrapper_s16 takes the int64 bias wrapped
    bias = "&bias_data" if wide_bias else "bias"
    bias_data = ("    const cmsis_nn_bias_data bias_data = {.data = bias, "
                 ".is_int32_bias = false};\n" if wide_bias else "")
    multiplier = f"        .ch_mult = {a.depth_multiplier},\n" if depthwise else ""
    call = (f"    const {kind} conv = {{\n"
            f"        .input_offset = {offsets[0]},\n"
            f"        .output_offset = {offsets[1]},\n"
            f"{multiplier}"
            f"        .stride = {{.w = {a.stride_w}, .h = {a.stride_h}}},\n"
            f"        .padding = {{.w = {params.pad_w}, .h = {params.pad_h}}},\n"
            f"        .dilation = {{.w = {a.dilation_w}, .h = {a.dilation_h}}},\n"
            f"        .activation = {{.min = {params.act_min}, .max = {params.act_max}}}}};\n"
            "    const cmsis_nn_per_channel_quant_params quant = {\n"
            "        .multiplier = (int32_t *)multipliers, .shift = (int32_t *)shifts};\n"
            f"{bias_data}"
            + _dims("input_dims", x.shape) + _dims("filter_dims", w.shape)
            + _dims("bias_dims", (y.shape[3],)) + _dims("output_dims", y.shape)
            + f"    const cmsis_nn_context context = {{.buf = scratch, .size = {SCRATCH_BYTES}}};\n"
            f"    const arm_cmsis_nn_status status = {function}(&context, &conv, &quant,\n"
            f"        &input_dims, layer_input, &filter_dims, filter, &bias_dims, {bias},\n"
            "        &output_dims, layer_output);\n")
    return _peer_source(graph, op, constants, call)


def _fully_connected_peer(graph: Graph, op: Operator) -> str:
    """arm_fully_connected_{s8,s16} with TFLM's per-tensor Q31 multiplier of the double scale."""
    x, w, y = _operands(graph, op)
    wide = x.dtype is DType.INT16
    if wide:
        s16 = prepare_fully_connected_s16(x, w, y, op.attrs)
        scale, act, offsets = s16.scales[0], (s16.act_min, s16.act_max), (0, 0, 0)
    else:
        params = prepare_fully_connected(x, w, y, op.attrs)
        scale, act = params.scales[0], (params.act_min, params.act_max)
        offsets = (params.input_offset, params.weights_offset, params.output_offset)
    q = quantize_multiplier(scale)
    units, depth = w.shape
    constants = (_array("int8_t", "filter", w.data)
                 + _array("int64_t" if wide else "int32_t", "bias", _bias(graph, op, units)))
    call = ("    const cmsis_nn_fc_params fc = {\n"
            f"        .input_offset = {offsets[0]}, .filter_offset = {offsets[1]},\n"
            f"        .output_offset = {offsets[2]},\n"
            f"        .activation = {{.min = {act[0]}, .max = {act[1]}}}}};\n"
            f"    const cmsis_nn_per_tensor_quant_params quant = {{.multiplier = {q.multiplier}, "
            f".shift = {q.shift}}};\n"
            + _dims("input_dims", (x.size // depth, 1, 1, depth))
            + _dims("filter_dims", (depth, 1, 1, units))
            + _dims("bias_dims", (units,)) + _dims("output_dims", (x.size // depth, units))
            + f"    const cmsis_nn_context context = {{.buf = scratch, .size = {SCRATCH_BYTES}}};\n"
            f"    const arm_cmsis_nn_status status = arm_fully_connected_{'s16' if wide else 's8'}"
            "(&context, &fc, &quant,\n        &input_dims, layer_input, &filter_dims, filter, "
            "&bias_dims, bias,\n        &output_dims, layer_output);\n")
    return _peer_source(graph, op, constants, call)


def _padding_offset(in_size: int, kernel: int, stride: int, out_size: int) -> int:
    """TFLM's padding offset of a transpose convolution: the odd part of its total padding."""
    return max((in_size - 1) * stride + kernel - out_size, 0) % 2


def _transpose_conv_peer(graph: Graph, op: Operator) -> str:
    """arm_transpose_conv_wrapper_s8, its two buffers sized by CMSIS-NN as TFLM sizes them."""
    x, w, y = _operands(graph, op)
    params = prepare_transpose_conv(x, w, y, op.attrs)
    offset_h = _padding_offset(x.shape[1], w.shape[1], params.stride_h, y.shape[1])
    offset_w = _padding_offset(x.shape[2], w.shape[2], params.stride_w, y.shape[2])
    constants = (_array("int8_t", "filter", w.data)
                 + _array("int32_t", "bias", _bias(graph, op, y.shape[3]))
                 + _array("int32_t", "multipliers", params.multipliers)
                 + _array("int32_t", "shifts", params.shifts))
    call = ("    const cmsis_nn_transpose_conv_params conv = {\n"
            f"        .input_offset = {params.input_offset},\n"
            f"        .output_offset = {params.output_offset},\n"
            f"        .stride = {{.w = {params.stride_w}, .h = {params.stride_h}}},\n"
            f"        .padding = {{.w = {params.pad_w}, .h = {params.pad_h}}},\n"
            f"        .padding_offsets = {{.w = {offset_w}, .h = {offset_h}}},\n"
            "        .dilation = {.w = 1, .h = 1},\n"
            f"        .activation = {{.min = {params.act_min}, .max = {params.act_max}}}}};\n"
            "    const cmsis_nn_per_channel_quant_params quant = {\n"
            "        .multiplier = (int32_t *)multipliers, .shift = (int32_t *)shifts};\n"
            + _dims("input_dims", x.shape) + _dims("filter_dims", w.shape)
            + _dims("bias_dims", (y.shape[3],)) + _dims("output_dims", y.shape)
            + "    const int32_t size = arm_transpose_conv_s8_get_buffer_size(&conv, &input_dims,\n"
            "        &filter_dims, &output_dims);\n"
            "    const int32_t reverse_size = arm_transpose_conv_s8_get_reverse_conv_buffer_size(\n"
            "        &conv, &input_dims, &filter_dims);\n"
            "    const int32_t start = (size + 7) & ~7;\n"
            f"    if (start + reverse_size > {SCRATCH_BYTES}) {{ return MCUFLOW_ERROR_KERNEL; }}\n"
            "    const cmsis_nn_context context = {.buf = scratch, .size = size};\n"
            "    const cmsis_nn_context reverse = {.buf = scratch + start, .size = reverse_size};\n"
            "    const arm_cmsis_nn_status status = arm_transpose_conv_wrapper_s8(&context,\n"
            "        &reverse, &conv, &quant, &input_dims, layer_input, &filter_dims, filter,\n"
            "        &bias_dims, bias, &output_dims, layer_output);\n")
    return _peer_source(graph, op, constants, call)


def _svdf_peer(graph: Graph, op: Operator) -> str:
    """arm_svdf_state_s16_s8 with the parameters TFLM's CMSIS-NN SVDF gives it.

    The int16 state is static: it starts at zero and persists across the firmware's runs, as
    mcuflow's variable tensor does.
    """
    p = prepare_svdf(graph, op)
    bias, sums = svdf_bias(op), p.batch * p.filters
    constants = (_array("int8_t", "weights_feature", graph.tensors[op.inputs[1]].data)
                 + _array("int16_t", "weights_time", graph.tensors[op.inputs[2]].data)
                 + _array("int32_t", "bias", [] if bias is None else graph.tensors[bias].data)
                 + f"static int16_t state[{p.batch * p.memory * p.filters}];\n")
    call = ("    const cmsis_nn_svdf_params svdf = {\n"
            f"        .rank = {p.rank}, .input_offset = {p.input_offset}, "
            f".output_offset = {p.output_offset},\n"
            "        .input_activation = {.min = INT16_MIN, .max = INT16_MAX},\n"
            "        .output_activation = {.min = INT8_MIN, .max = INT8_MAX}};\n"
            "    const cmsis_nn_per_tensor_quant_params feature_quant = {\n"
            f"        .multiplier = {p.feature.multiplier}, .shift = {p.feature.shift}}};\n"
            "    const cmsis_nn_per_tensor_quant_params time_quant = {\n"
            f"        .multiplier = {p.time.multiplier}, .shift = {p.time.shift}}};\n"
            + _dims("input_dims", (p.batch, graph.tensors[op.inputs[0]].shape[1], 1, 1))
            + _dims("state_dims", (p.batch, p.memory * p.filters, 1, 1))
            + _dims("feature_dims", (*graph.tensors[op.inputs[1]].shape, 1, 1))
            + _dims("time_dims", (p.filters, p.memory, 1, 1))
            + _dims("bias_dims", (p.units, 1, 1, 1))
            + _dims("output_dims", (p.batch, p.units, 1, 1))
            + "    int32_t *sums = (int32_t *)scratch;  /* per filter, then per unit */\n"
            f"    const cmsis_nn_context sums_ctx = {{.buf = sums, .size = {4 * sums}}};\n"
            f"    const cmsis_nn_context units_ctx = {{.buf = sums + {sums}, "
            f".size = {4 * p.batch * p.units}}};\n"
            "    const arm_cmsis_nn_status status = arm_svdf_state_s16_s8(&sums_ctx, &units_ctx,\n"
            "        &svdf, &feature_quant, &time_quant, &input_dims, layer_input, &state_dims,\n"
            "        state, &feature_dims, weights_feature, &time_dims, weights_time, &bias_dims,\n"
            f"        {'NULL' if bias is None else 'bias'}, &output_dims, layer_output);\n")
    return _peer_source(graph, op, constants, call)


def _lstm_gate(p: LstmParams, gate: int) -> str:
    """The cmsis_nn_lstm_gate TFLM's CMSIS-NN LSTM builds (biases with the zero points folded)."""
    name, x, h = (LSTM_GATE_NAMES[gate], p.input_multipliers[gate],
                  p.recurrent_multipliers[gate])
    return (f"        .{name}_gate = {{.input_multiplier = {x.multiplier}, "
            f".input_shift = {x.shift},\n"
            f"            .input_weights = {name}_weights, .input_effective_bias = {name}_bias,\n"
            f"            .hidden_multiplier = {h.multiplier}, .hidden_shift = {h.shift},\n"
            f"            .hidden_weights = {name}_recurrent, "
            f".hidden_effective_bias = {name}_recurrent_bias,\n"
            f"            .bias = {name}_gate_bias, "
            f".activation_type = {'ARM_TANH' if name == 'cell' else 'ARM_SIGMOID'}}},\n")


def _lstm_constants(graph: Graph, op: Operator, p: LstmParams) -> str:
    text = ""
    for gate, name in enumerate(LSTM_GATE_NAMES):
        weights, recurrent, bias = (graph.tensors[op.inputs[1 + gate + k * LSTM_GATES]].data
                                    for k in range(3))
        text += (_array("int8_t", f"{name}_weights", weights)
                 + _array("int8_t", f"{name}_recurrent", recurrent)
                 + _array("int32_t", f"{name}_gate_bias", bias)
                 + _array("int32_t", f"{name}_bias", p.input_bias[gate])
                 + _array("int32_t", f"{name}_recurrent_bias", p.recurrent_bias[gate]))
    start = ", ".join([str(p.output_zero_point)] * (p.batch * p.units))
    return (text + f"static int16_t cell_state[{p.batch * p.units}];\n"
            f"static int8_t hidden_state[{p.batch * p.units}] = {{{start}}};\n")


def _lstm_peer(graph: Graph, op: Operator) -> str:
    """arm_lstm_unidirectional_s8 with the parameters TFLM's CMSIS-NN LSTM gives it.

    Both states are static and passed to CMSIS-NN (cell_state, hidden_state): they start at 0
    and the output zero point and persist across the firmware's runs, as LiteRT's and mcuflow's
    variable tensors do.
    """
    p, x = prepare_lstm(graph, op), graph.tensors[op.inputs[0]]
    # TFLM's inter-gate scales: forget gate (Q0.15) x cell state -> cell state, and input gate
    # (Q0.15) x cell gate (Q0.15) -> cell state (scale 2**cell_exponent).
    forget_cell, input_cell = quantize_multiplier(2.0**-15), quantize_multiplier(
        2.0**(-30 - p.cell_exponent))
    gates = "".join(_lstm_gate(p, gate) for gate in range(LSTM_GATES))
    call = ("    const cmsis_nn_lstm_params lstm = {\n"
            f"        .time_major = {int(p.time_major)}, .batch_size = {p.batch}, "
            f".time_steps = {p.time}, .input_size = {p.features},\n"
            f"        .hidden_size = {p.units}, .input_offset = {-quant_of(x).zero_point0},\n"
            f"        .forget_to_cell_multiplier = {forget_cell.multiplier}, "
            f".forget_to_cell_shift = {forget_cell.shift},\n"
            f"        .input_to_cell_multiplier = {input_cell.multiplier}, "
            f".input_to_cell_shift = {input_cell.shift},\n"
            f"        .cell_clip = {p.cell_clip}, .cell_scale_power = {p.cell_exponent},\n"
            f"        .output_multiplier = {p.hidden.multiplier}, "
            f".output_shift = {p.hidden.shift}, .output_offset = {p.hidden_zero_point},\n"
            f"{gates}    }};\n"
            "    int16_t *temp = (int16_t *)scratch;\n"
            f"    cmsis_nn_lstm_context buffers = {{.temp1 = temp, .temp2 = temp + "
            f"{p.batch * p.units},\n"
            "        .cell_state = cell_state, .hidden_state = hidden_state};\n"
            "    const arm_cmsis_nn_status status = arm_lstm_unidirectional_s8(layer_input, "
            "layer_output, &lstm,\n        &buffers);\n")
    return _peer_source(graph, op, _lstm_constants(graph, op, p), call)


# --------------------------------------------------------------------------- cases


def _one_layer(name: str, shape: tuple[int, ...], add: Callable[[GraphBuilder, str], str],
               dtype: DType = DType.INT8) -> Callable[[], Graph]:
    """A graph of one layer `add` on an input of `shape` (int16: LiteRT's zero point 0)."""
    def build() -> Graph:
        b = GraphBuilder(name, seed=5)
        x = b.input(shape, 4.0 / 32768, 0, dtype) if dtype is DType.INT16 \
            else b.input(shape, 0.05, 3)
        b.output(add(b, x))
        return b.build()

    return build


CASES = (
    Case("conv3x3_s1_16x16x16", _one_layer("conv3x3", (1, 16, 16, 16), lambda b, x: b.conv2d(
        x, 16, (3, 3), activation=Activation.RELU)), _conv_peer),
    Case("conv1x1_20x20x32_64", _one_layer("conv1x1", (1, 20, 20, 32), lambda b, x: b.conv2d(
        x, 64, (1, 1))), _conv_peer),
    Case("conv3x3_s2_valid_24x24x8", _one_layer("conv_s2", (1, 24, 24, 8), lambda b, x: b.conv2d(
        x, 16, (3, 3), stride=2, padding=Padding.VALID)), _conv_peer),
    Case("depthwise3x3_24x24x32", _one_layer("dw3x3", (1, 24, 24, 32), lambda b, x:
                                             b.depthwise_conv2d(x, (3, 3))), _conv_peer),
    Case("fully_connected_640_128", _one_layer("fc", (1, 640), lambda b, x: b.fully_connected(
        x, 128, per_channel=False)), _fully_connected_peer),
    Case("conv1x3_valid_1x64x6_8", _one_layer("conv1x3", (1, 1, 64, 6), lambda b, x: b.conv2d(
        x, 8, (1, 3), padding=Padding.VALID, activation=Activation.RELU)), _conv_peer),
    Case("conv3x5_s2_12x12x2_12", _one_layer("conv3x5", (1, 12, 12, 2), lambda b, x: b.conv2d(
        x, 12, (3, 5), stride=2)), _conv_peer),
    Case("depthwise1x3_m2_dil2_1x96x8", _one_layer("dw_m2", (1, 1, 96, 8), lambda b, x:
                                                   b.depthwise_conv2d(
                                                       x, (1, 3), dilation=2,
                                                       depth_multiplier=2)), _conv_peer),
    Case("depthwise3x3_m3_s2_12x12x3", _one_layer("dw_m3", (1, 12, 12, 3), lambda b, x:
                                                  b.depthwise_conv2d(
                                                      x, (3, 3), stride=2, depth_multiplier=3,
                                                      activation=Activation.RELU)), _conv_peer),
    Case("depthwise3x3_8x8x8_relu6", _one_layer("dw_small", (1, 8, 8, 8), lambda b, x:
                                                b.depthwise_conv2d(
                                                    x, (3, 3), activation=Activation.RELU6)),
         _conv_peer),
    Case("depthwise3x3_dil2_10x10x4", _one_layer("dw_dil", (1, 10, 10, 4), lambda b, x:
                                                 b.depthwise_conv2d(x, (3, 3), dilation=2)),
         _conv_peer),
    Case("fully_connected_16_5", _one_layer("fc5", (1, 16), lambda b, x: b.fully_connected(
        x, 5, per_channel=False)), _fully_connected_peer),
    Case("fully_connected_64_8", _one_layer("fc8", (1, 64), lambda b, x: b.fully_connected(
        x, 8, per_channel=False, activation=Activation.RELU)), _fully_connected_peer),
    Case("transpose_conv3x3_s2_8x8x32_16", _one_layer("tconv", (1, 8, 8, 32), lambda b, x:
                                                      b.transpose_conv(x, 16, (3, 3))),
         _transpose_conv_peer),
    Case("transpose_conv2x2_s2_8x8x32_16", _one_layer("tconv2", (1, 8, 8, 32), lambda b, x:
                                                      b.transpose_conv(x, 16, (2, 2))),
         _transpose_conv_peer),
    Case("transpose_conv3x3_s2_16x16x16_8", _one_layer("tconv3", (1, 16, 16, 16), lambda b, x:
                                                       b.transpose_conv(x, 8, (3, 3))),
         _transpose_conv_peer),
    Case("transpose_conv4x4_s2_8x8x8_8", _one_layer("tconv4", (1, 8, 8, 8), lambda b, x:
                                                    b.transpose_conv(x, 8, (4, 4))),
         _transpose_conv_peer),
    Case("transpose_conv3x3_s2_valid_10x10x12_7", _one_layer(
        "tconv5", (1, 10, 10, 12), lambda b, x: b.transpose_conv(
            x, 7, (3, 3), padding=Padding.VALID, output_hw=(21, 21))), _transpose_conv_peer),
    Case("transpose_conv3x3_s2_12x12x3_8", _one_layer("tconv6", (1, 12, 12, 3), lambda b, x:
                                                      b.transpose_conv(x, 8, (3, 3))),
         _transpose_conv_peer),
    Case("s16_conv3x3_16x16x16", _one_layer("conv3x3_s16", (1, 16, 16, 16), lambda b, x:
                                            b.conv2d(x, 16, (3, 3), activation=Activation.RELU),
                                            DType.INT16), _conv_peer),
    Case("s16_depthwise3x3_24x24x32", _one_layer("dw3x3_s16", (1, 24, 24, 32), lambda b, x:
                                                 b.depthwise_conv2d(x, (3, 3)), DType.INT16),
         _conv_peer),
    Case("s16_depthwise3x3_s2_32x32x16", _one_layer("dw3x3s2_s16", (1, 32, 32, 16), lambda b, x:
                                                    b.depthwise_conv2d(x, (3, 3), stride=2),
                                                    DType.INT16), _conv_peer),
    Case("s16_depthwise5x5_12x12x24", _one_layer("dw5x5_s16", (1, 12, 12, 24), lambda b, x:
                                                 b.depthwise_conv2d(x, (5, 5)), DType.INT16),
         _conv_peer),
    Case("s16_depthwise3x3_relu_15x15x7", _one_layer("dw3x3r_s16", (1, 15, 15, 7), lambda b, x:
                                                     b.depthwise_conv2d(
                                                         x, (3, 3), activation=Activation.RELU),
                                                     DType.INT16), _conv_peer),
    Case("s16_fully_connected_640_128", _one_layer("fc_s16", (1, 640), lambda b, x:
                                                   b.fully_connected(x, 128), DType.INT16),
         _fully_connected_peer),
    Case("s16_conv1x1_20x20x32_64", _one_layer("conv1x1_s16", (1, 20, 20, 32), lambda b, x:
                                               b.conv2d(x, 64, (1, 1)), DType.INT16),
         _conv_peer),
    Case("s16_conv3x3_s2_23x23x7_13", _one_layer("conv3x3_s2_s16", (1, 23, 23, 7), lambda b, x:
                                                 b.conv2d(x, 13, (3, 3), stride=2,
                                                          activation=Activation.RELU6),
                                                 DType.INT16), _conv_peer),
    Case("s16_fully_connected_250_35", _one_layer("fc2_s16", (1, 250), lambda b, x:
                                                  b.fully_connected(x, 35), DType.INT16),
         _fully_connected_peer),
    Case("s16_fully_connected_8_10", _one_layer("fc3_s16", (1, 8), lambda b, x:
                                                b.fully_connected(x, 10), DType.INT16),
         _fully_connected_peer),
    Case("s16_fully_connected_13_7", _one_layer("fc4_s16", (1, 13), lambda b, x:
                                                b.fully_connected(x, 7), DType.INT16),
         _fully_connected_peer),
    Case("s16_fully_connected_2x16_32", _one_layer("fc5_s16", (2, 16), lambda b, x:
                                                   b.fully_connected(x, 32), DType.INT16),
         _fully_connected_peer),
    Case("svdf_40_32_rank2_memory10", _one_layer("svdf", (1, 40), lambda b, x: b.svdf(
        x, 32, rank=2, memory=10)), _svdf_peer),
    Case("svdf_64_64_rank1_memory8", _one_layer("svdf_speech", (1, 64), lambda b, x: b.svdf(
        x, 64, rank=1, memory=8)), _svdf_peer),
    Case("svdf_400_32_rank1_memory5", _one_layer("svdf_wide", (1, 400), lambda b, x: b.svdf(
        x, 32, rank=1, memory=5)), _svdf_peer),
    Case("svdf_2x36_10_rank3_memory6", _one_layer("svdf_batches", (2, 36), lambda b, x: b.svdf(
        x, 10, rank=3, memory=6)), _svdf_peer),
    Case("lstm_49x10_32", _one_layer("lstm", (1, 49, 10), lambda b, x: b.lstm(x, 32)),
         _lstm_peer),
    Case("lstm_25x40_64", _one_layer("lstm2", (1, 25, 40), lambda b, x: b.lstm(x, 64)),
         _lstm_peer),
    Case("lstm_10x8_16", _one_layer("lstm3", (1, 10, 8), lambda b, x: b.lstm(x, 16)),
         _lstm_peer),
    Case("lstm_batch2_12x13_20", _one_layer("lstm4", (2, 12, 13), lambda b, x: b.lstm(x, 20)),
         _lstm_peer),
)


PEERS: dict[OpKind, Callable[[Graph, Operator], str]] = {
    OpKind.CONV_2D: _conv_peer, OpKind.DEPTHWISE_CONV_2D: _conv_peer,
    OpKind.FULLY_CONNECTED: _fully_connected_peer, OpKind.TRANSPOSE_CONV: _transpose_conv_peer,
    OpKind.SVDF: _svdf_peer, OpKind.UNIDIRECTIONAL_SEQUENCE_LSTM: _lstm_peer,
}
"""The kinds a CMSIS-NN kernel runs in TFLM's CMSIS-NN kernels, and the peer of each."""


def layer_graph(graph: Graph, op: Operator, name: str) -> Graph:
    """`op` of `graph` alone: its activation inputs are the inputs, its outputs the outputs."""
    used = [n for n in (*op.inputs, *op.outputs) if n]
    inputs = [n for n in op.inputs
              if n and not graph.tensors[n].is_constant and not graph.tensors[n].variable]
    return Graph(name, {n: graph.tensors[n] for n in used}, [op], inputs, list(op.outputs))


def _per_tensor(graph: Graph, op: Operator) -> bool:
    """False for a FULLY_CONNECTED with per-channel weights: the peer takes one multiplier."""
    if op.kind is not OpKind.FULLY_CONNECTED:
        return True
    quant = graph.tensors[op.inputs[1]].quant
    return quant is None or len(quant.scale) == 1


def model_cases() -> dict[str, list[Case]]:
    """Per coverage model, a case for each of its layers a CMSIS-NN kernel runs."""
    from tests.coverage_models import COVERAGE_MODELS

    cases: dict[str, list[Case]] = {}
    for model, build in COVERAGE_MODELS.items():
        graph = run_passes(build(), INT8_PASSES)
        cases[model] = [
            Case(f"{model}#{index}", functools.partial(layer_graph, graph, op, f"{model}_{index}"),
                 PEERS[op.kind])
            for index, op in enumerate(graph.operators)
            if op.kind in PEERS and _per_tensor(graph, op)]
    return cases


# --------------------------------------------------------------------------- building


def _cmsis_library(cmsis: Path, target: str, directory: Path) -> Path:
    """CMSIS-NN's sources compiled with our flags into one static library."""
    sources = [s for s in sorted((cmsis / "Source").rglob("*.c"))
               if not s.stem.endswith(FLOAT_SUFFIXES)]
    objects = directory / f"cmsis-nn-{target}"
    objects.mkdir(parents=True, exist_ok=True)
    ours = [f for f in compiler_flags(target) if f not in ("-std=c99", "-pedantic", "-Werror")]
    cc, flags = find_cross_compiler(), [*ours, "-std=c11", "-I", str(cmsis / "Include")]
    built = []
    for source in sources:
        obj = objects / f"{source.parent.name}_{source.stem}.o"
        subprocess.run([cc, *flags, "-c", str(source), "-o", str(obj)], check=True,
                       capture_output=True)
        built.append(str(obj))
    library = objects / "libcmsis-nn.a"
    subprocess.run([cc.replace("gcc", "ar"), "rcs", str(library), *built], check=True)
    return library


def _peer_elf(project: Path, peer_c: str, cmsis: Path, library: Path, target: str) -> Path:
    """Our project's driver with the model replaced by `peer_c`, linked with CMSIS-NN."""
    peer = project.parent / f"{project.name}-cmsis-nn"
    shutil.copytree(project, peer)
    for source in peer.glob("*.c"):
        if source.name not in CORTEX_M_DRIVER:
            source.unlink()
    (peer / PEER_FILE).write_text(peer_c)
    sources = [n for n in CORTEX_M_DRIVER if (peer / n).exists()] + [PEER_FILE]
    elf = peer / "peer.elf"
    result = subprocess.run([find_cross_compiler(), *compiler_flags(target), "-I",
                             str(cmsis / "Include"), *CORTEX_M_LDFLAGS, "-o", str(elf),
                             *sources, str(library), "-lm"], cwd=peer, capture_output=True,
                            text=True)
    if result.returncode:
        raise McuflowError(f"peer build failed: {result.stderr[-2000:]}")
    return elf


def _instructions(run: QemuRun) -> int:
    per_tick = run.report.instructions_per_tick
    return int(round(float(np.median(run.report.run_ticks)) * per_tick))


def measure(case: Case, cmsis: Path, library: Path, target: str, board: Board,
            directory: Path) -> Row:
    """Ours and CMSIS-NN's instructions for one layer, and how far their outputs are apart."""
    graph = case.build()
    op = graph.operators[0]
    project = directory / case.name
    generated = generate_project(graph, plan_for(graph, target), project, target=target,
                                 board=board)
    inputs = random_inputs(graph, RUNS, seed=0)
    ours = run_qemu(build_cortexm(project, target), target, inputs, generated.outputs)
    theirs = run_qemu(_peer_elf(project, case.peer(graph, op), cmsis, library, target), target,
                      inputs, generated.outputs)
    diff = max(int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max())
               for a, b in zip(ours.outputs, theirs.outputs, strict=True))
    mine, peer = _instructions(ours), _instructions(theirs)
    return Row(case.name, op.kind.value, mine, peer, mine / peer, diff)


def _print_rows(rows: list[Row]) -> None:
    width = max([len("case"), *(len(r.case) for r in rows)])
    print(f"{'case':{width}} {'op':28} {'mcuflow':>10} {'CMSIS-NN':>10} {'ratio':>6} "
          f"{'max diff':>8}")
    for r in rows:
        print(f"{r.case:{width}} {r.kernel:28} {r.ours:>10,} {r.cmsis_nn:>10,} {r.ratio:>6.2f} "
              f"{r.max_diff:>8}")


def _print_models(models: dict[str, list[Row]]) -> None:
    """Per model, the sum over its CMSIS-NN-run layers."""
    print(f"{'model':24} {'layers':>6} {'mcuflow':>11} {'CMSIS-NN':>11} {'ratio':>6}")
    for model, rows in models.items():
        ours, theirs = sum(r.ours for r in rows), sum(r.cmsis_nn for r in rows)
        ratio = f"{ours / theirs:>6.2f}" if theirs else f"{'-':>6}"
        print(f"{model:24} {len(rows):>6} {ours:>11,} {theirs:>11,} {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--cmsis-nn", type=Path, default=os.environ.get("CMSIS_NN_DIR"),
                        help="a checkout of ARM-software/CMSIS-NN (or CMSIS_NN_DIR)")
    parser.add_argument("--target", default="cortex-m4")
    parser.add_argument("--models", action="store_true",
                        help="also every CMSIS-NN-run layer of the coverage models")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.cmsis_nn is None or not (Path(args.cmsis_nn) / "Include").is_dir():
        sys.exit("bench/cmsis_nn.py: pass --cmsis-nn DIR, a checkout of ARM-software/CMSIS-NN")
    cases = [c for c in CASES if not args.cases or c.name in args.cases]
    per_model = model_cases() if args.models else {}
    board, cmsis = default_board(args.target), Path(args.cmsis_nn)
    with tempfile.TemporaryDirectory(prefix="mcuflow-cmsis-nn-") as scratch:
        directory = Path(scratch)
        library = _cmsis_library(cmsis, args.target, directory)
        rows = [measure(c, cmsis, library, args.target, board, directory) for c in cases]
        models = {m: [measure(c, cmsis, library, args.target, board, directory) for c in cs]
                  for m, cs in per_model.items()}
    if args.json:
        print(json.dumps({"layers": [asdict(r) for r in rows],
                          "models": {m: [asdict(r) for r in rs] for m, rs in models.items()}},
                         indent=2))
        return
    print(f"Per layer on QEMU {args.target} ({board.id}): mcuflow vs CMSIS-NN's kernel alone "
          "(a lower bound of TFLM + CMSIS-NN)")
    _print_rows(rows)
    if models:
        print("\nThe coverage models' layers that CMSIS-NN kernels run, one by one:")
        _print_rows([r for rs in models.values() for r in rs])
        _print_models(models)


if __name__ == "__main__":
    main()
