"""MAXIMUM and MINIMUM: int8 kernels (broadcasting) and float32."""

from __future__ import annotations

import numpy as np

from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind
from mcuflow.ref.common import require_int8
from mcuflow.ref.registry import PreparedFn, float_kernel, prepared_kernel

_CHOOSE = {OpKind.MAXIMUM: np.maximum, OpKind.MINIMUM: np.minimum}


@prepared_kernel(OpKind.MAXIMUM, OpKind.MINIMUM)
def _prepare(graph: Graph, op: Operator) -> PreparedFn:
    """maximum_minimum.cc: the larger (smaller) stored int8 value, broadcast, no requantisation.

    LiteRT compares the stored values whatever the quantisation; mcuflow's quantiser gives both
    inputs the output's (the op shares one quantisation, as TFLite's converter writes it).
    """
    require_int8(op, *(graph.tensor(name) for name in (*op.inputs, *op.outputs)))
    choose = _CHOOSE[op.kind]
    return lambda inputs: [choose(inputs[0], inputs[1])]


@float_kernel(OpKind.MAXIMUM, OpKind.MINIMUM)
def _float(graph: Graph, op: Operator, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [_CHOOSE[op.kind](inputs[0], inputs[1]).astype(np.float32)]
