"""The reference-kernel registries: one int8 numpy kernel and one float32 kernel per OpKind."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mcuflow.ir.constraints import check_operator
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind
from mcuflow.ir.registry import OpTable

KernelFn = Callable[[Graph, Operator, list[np.ndarray]], list[np.ndarray]]
"""A kernel gets the graph (for attributes and quantisation), the op and its input arrays in
`op.inputs` order (constants included), and returns the output arrays in `op.outputs` order."""

KERNELS: OpTable[KernelFn] = OpTable("reference kernel")


kernel = KERNELS.register


FLOAT_KERNELS: OpTable[KernelFn] = OpTable("float kernel", complete=False)
"""One float32 kernel per OpKind that appears in float models (all but QUANTIZE, DEQUANTIZE)."""


float_kernel = FLOAT_KERNELS.register


PreparedFn = Callable[[list[np.ndarray]], list[np.ndarray]]
"""An op's per-inference function: input arrays in, output arrays out (constants captured)."""

PrepareFn = Callable[[Graph, Operator], PreparedFn]
"""TFLite's Prepare step: computes an op's constants once and returns its per-inference function."""

PREPARERS: OpTable[PrepareFn] = OpTable("prepared reference kernel", complete=False)


def prepared_kernel(*kinds: OpKind) -> Callable[[PrepareFn], PrepareFn]:
    """Register a prepare function; it also becomes the op's plain kernel (prepare, then run).

    The plain kernel first checks the op's support constraints, as `prepare` does.
    """

    def register(preparer: PrepareFn) -> PrepareFn:
        KERNELS.register(*kinds)(lambda graph, op, inputs: prepare(graph, op)(inputs))
        return PREPARERS.register(*kinds)(preparer)

    return register


def prepare(graph: Graph, op: Operator, checked: bool = False) -> PreparedFn:
    """The per-inference function of `op`: its prepared kernel, else a call of its plain kernel.

    An op failing a support constraint is refused with the constraint's message
    (UnsupportedModelError); `checked` skips that when `check_supported` accepted the graph.
    """
    if not checked:
        check_operator(graph, op)
    if op.kind in PREPARERS:
        return PREPARERS[op.kind](graph, op)
    plain = KERNELS[op.kind]
    return lambda inputs: plain(graph, op, inputs)
