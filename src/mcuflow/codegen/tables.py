"""Look-up tables frozen into the C: computed by the reference kernels and fixed-point helpers."""

from __future__ import annotations

import numpy as np

import mcuflow.ref.interpreter  # noqa: F401  (registers every reference kernel)
from mcuflow.ir.graph import Graph, Operator, Tensor
from mcuflow.ref.registry import prepare
from mcuflow.ref.softmax import SoftmaxParams, softmax_exps_by_difference

INT8_VALUES = np.arange(-128, 128, dtype=np.int8)


def _run_on_every_int8(graph: Graph, op: Operator) -> np.ndarray:
    """The reference kernel of the one-input op `op` applied to each of the 256 int8 values."""
    x, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    probe = Graph(f"{graph.name}-table")
    probe.add_tensor(Tensor(x.name, (256,), x.dtype, x.quant))
    probe.add_tensor(Tensor(out.name, (256,), out.dtype, out.quant))
    probe_op = Operator(op.kind, (x.name,), (out.name,), op.attrs, op.name)
    probe.operators.append(probe_op)
    probe.inputs.append(x.name)
    probe.outputs.append(out.name)
    codes = INT8_VALUES.view(x.dtype.numpy)  # a uint8 input (QUANTIZE): the same 256 bytes
    return np.asarray(prepare(probe, probe_op)([codes])[0]).reshape(256)


def lookup_table_s8(graph: Graph, op: Operator) -> np.ndarray:
    """Output for every int8 input (index x + 128) of an element-wise int8 -> int8 op.

    A QUANTIZE from or to uint8 is a byte -> byte table too: entry x + 128 is its output byte
    for the input byte of int8 x.
    """
    values = _run_on_every_int8(graph, op)
    return values.view(np.int8) if values.dtype == np.uint8 else values.astype(np.int8)


def lookup_table_f32(graph: Graph, op: Operator) -> np.ndarray:
    """Output for every int8 input (index x + 128) of DEQUANTIZE."""
    return _run_on_every_int8(graph, op).astype(np.float32)


def softmax_exp_table(params: SoftmaxParams) -> np.ndarray:
    """exp_on_negative_values of the rescaled difference -d, for d = 0..255.

    The reference kernel's table (indexed by d + 255 for d = -255..0) reversed, so the C
    indexes it by max - x; differences below `diff_min` hold 0.
    """
    return softmax_exps_by_difference(params)[::-1].astype(np.int32)
