"""The reference-kernel registry: one numpy kernel per OpKind."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind

KernelFn = Callable[[Graph, Operator, list[np.ndarray]], list[np.ndarray]]
"""A kernel gets the graph (for attributes and quantisation), the op and its input arrays in
`op.inputs` order (constants included), and returns the output arrays in `op.outputs` order."""

KERNELS: dict[OpKind, KernelFn] = {}


def kernel(*kinds: OpKind) -> Callable[[KernelFn], KernelFn]:
    """Register a reference kernel for one or more op kinds."""

    def register(function: KernelFn) -> KernelFn:
        for kind in kinds:
            KERNELS[kind] = function
        return function

    return register
