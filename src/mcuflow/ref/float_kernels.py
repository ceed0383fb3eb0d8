"""`run_float`: a float32 graph run op by op through the float kernels beside each op's int8 one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

import mcuflow.ref.kernels  # noqa: F401  (registers every kernel)
from mcuflow.errors import McuflowError, UnsupportedModelError
from mcuflow.ir.graph import DType, Graph
from mcuflow.ir.ops import OP_DEFS
from mcuflow.ref.interpreter import RunResult
from mcuflow.ref.registry import FLOAT_KERNELS


def run_float(
    graph: Graph, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray],
    keep_intermediates: bool = False,
) -> RunResult:
    """Run a float32 graph op by op; inputs in graph input order or keyed by name.

    Quantised constants (the int8 weights of hybrid models) must have been dequantised first by
    the passes pipeline (`passes.fold_constants`); a float constant may carry the parameters a
    QDQ model gave it. Variable tensors (SVDF's state) start at zero.
    """
    values = {name: t.data for name, t in graph.tensors.items() if t.is_constant}
    quantised = [name for name, t in graph.tensors.items()
                 if t.is_constant and t.dtype is not DType.FLOAT32]
    if quantised:
        raise UnsupportedModelError(
            f"float graph '{graph.name}' holds quantised constants {quantised[:3]}",
            "run mcuflow.passes.pipeline.run_passes first: it dequantises hybrid weights")
    values.update(_bind(graph, inputs))
    values.update({name: np.zeros(graph.tensor(name).shape, np.float32)
                   for name in graph.variables()})  # one run from a zero state
    for op in graph.operators:
        kernel = FLOAT_KERNELS.get(op.kind)
        written = op.attrs.output_type if OP_DEFS[op.kind].index_output else DType.FLOAT32
        if kernel is None or any(graph.tensor(n).dtype is not written for n in op.outputs):
            raise UnsupportedModelError(
                f"{op.kind.value} '{op.name}' has no float32 reference kernel",
                "run_float executes float32 graphs; run quantised graphs with ref.interpreter")
        outputs = kernel(graph, op, [values[name] for name in op.inputs])
        values.update(zip(op.outputs, outputs, strict=True))
    outputs = [values[name] for name in graph.outputs]
    return RunResult(outputs, values if keep_intermediates else {})


def _bind(graph: Graph, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray]
          ) -> dict[str, np.ndarray]:
    names = graph.inputs
    arrays = [inputs.get(name) for name in names] if isinstance(inputs, Mapping) else list(inputs)
    if len(arrays) != len(names) or (isinstance(inputs, Mapping) and set(inputs) != set(names)):
        raise McuflowError(f"the inputs do not match the graph inputs {names}",
                           "pass one float32 array per graph input")
    for name, value in zip(names, arrays, strict=True):
        shape = graph.tensor(name).shape
        if not isinstance(value, np.ndarray) or value.shape != shape:
            got = value.shape if isinstance(value, np.ndarray) else type(value).__name__
            raise McuflowError(f"input '{name}' is {got}, expected shape {shape}",
                               "convert the input to the model's shape")
    return {name: value.astype(np.float32, copy=False)
            for name, value in zip(names, arrays, strict=True)}
