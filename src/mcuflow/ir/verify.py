"""Graph invariants, checked after import and after every pass."""

from __future__ import annotations

from mcuflow.errors import McuflowError
from mcuflow.ir.graph import DType, Graph, Operator
from mcuflow.ir.ops import OP_DEFS, infer_output_shapes

_HINT = "this is a bug in the pass or frontend that produced the graph; please report it"
_QUANTISED = (DType.INT8, DType.UINT8, DType.INT16)


class GraphInvariantError(McuflowError):
    """The graph breaks an IR invariant (dangling tensor, order, attributes, shapes...)."""

    def __init__(self, message: str, hint: str = _HINT) -> None:
        super().__init__(message, hint)


def verify_graph(graph: Graph) -> None:
    """Check every IR invariant of `graph`; raise GraphInvariantError naming the op and tensor.

    Checked: tensors are keyed by their own name; graph inputs exist, are not constants and are
    listed once; every op input exists and is a constant, a graph input or the output of an
    earlier op; every tensor is produced once and never overwrites a graph input or constant;
    graph outputs exist and are produced (or are graph inputs); each op's attributes are the
    dataclass of its kind; output shapes match shape inference; quantised activations have
    quantisation parameters whose channel count matches the tensor.
    """
    _check_tensor_table(graph)
    available = _check_inputs(graph)
    for index, op in enumerate(graph.operators):
        _check_operator(graph, index, op, available)
    for name in graph.outputs:
        if name not in available:
            raise GraphInvariantError(f"graph output {name!r} is neither produced nor an input")
        if graph.tensors[name].is_constant:
            raise GraphInvariantError(f"graph output {name!r} is a constant, not computed")


def _check_tensor_table(graph: Graph) -> None:
    for key, tensor in graph.tensors.items():
        if key != tensor.name:
            raise GraphInvariantError(f"tensor {tensor.name!r} is stored under the key {key!r}")
        if any(d < 0 for d in tensor.shape):
            raise GraphInvariantError(f"tensor {key!r} has a negative dimension: {tensor.shape}")
        if tensor.data is not None and tuple(tensor.data.shape) != tuple(tensor.shape):
            raise GraphInvariantError(
                f"constant {key!r} holds data of shape {tuple(tensor.data.shape)} "
                f"but declares {tensor.shape}"
            )
        if tensor.data is not None and tensor.data.dtype != tensor.dtype.numpy:
            raise GraphInvariantError(
                f"constant {key!r} holds {tensor.data.dtype} data but declares {tensor.dtype.value}"
            )
        _check_quant(graph, key)


def _check_quant(graph: Graph, name: str) -> None:
    tensor = graph.tensors[name]
    quant = tensor.quant
    if quant is None:
        if tensor.dtype in _QUANTISED and not tensor.is_constant:
            raise GraphInvariantError(
                f"{tensor.dtype.value} activation {name!r} has no quantisation parameters"
            )
        return
    if not quant.is_per_channel:
        return
    if not 0 <= quant.axis < len(tensor.shape) or tensor.shape[quant.axis] != len(quant.scale):
        raise GraphInvariantError(
            f"tensor {name!r} of shape {tensor.shape} has {len(quant.scale)} per-channel scales "
            f"along axis {quant.axis}"
        )


def _check_inputs(graph: Graph) -> set[str]:
    """Validate graph inputs; return the tensor names available before the first op."""
    available = {name for name, t in graph.tensors.items() if t.is_constant}
    available |= set(graph.variables())
    for name in graph.inputs:
        if name not in graph.tensors:
            raise GraphInvariantError(f"graph input {name!r} is not a tensor of the graph")
        if graph.tensors[name].variable:
            raise GraphInvariantError(f"graph input {name!r} is a variable tensor")
        if name in available:
            raise GraphInvariantError(f"graph input {name!r} is a constant or listed twice")
        available.add(name)
    for name in graph.outputs:
        if name not in graph.tensors:
            raise GraphInvariantError(f"graph output {name!r} is not a tensor of the graph")
    return available


def _check_operator(graph: Graph, index: int, op: Operator, available: set[str]) -> None:
    label = f"op {index} ({op.kind.value} {op.name!r})"
    definition = OP_DEFS[op.kind]
    if type(op.attrs) is not definition.attrs:
        raise GraphInvariantError(f"{label} has attributes {type(op.attrs).__name__}, expected "
                                  f"{definition.attrs.__name__}")
    fewest, most = definition.inputs
    if not fewest <= len(op.inputs) <= most:
        raise GraphInvariantError(f"{label} has {len(op.inputs)} inputs, {op.kind.value} takes "
                                  f"{fewest}..{most}")
    if definition.outputs and len(op.outputs) != definition.outputs:
        raise GraphInvariantError(f"{label} has {len(op.outputs)} outputs, but {op.kind.value} "
                                  f"produces {definition.outputs}")
    for name in op.inputs:
        if name not in graph.tensors:
            raise GraphInvariantError(f"{label} reads tensor {name!r}, which does not exist")
        if name not in available:
            raise GraphInvariantError(
                f"{label} reads tensor {name!r} before any op produces it (not topological)"
            )
    for name in op.outputs:
        if name not in graph.tensors:
            raise GraphInvariantError(f"{label} writes tensor {name!r}, which does not exist")
        if name in available:
            raise GraphInvariantError(
                f"{label} writes tensor {name!r}, which is already a constant, an input or "
                "the output of an earlier op"
            )
        available.add(name)
    _check_shapes(graph, label, op)


def _check_shapes(graph: Graph, label: str, op: Operator) -> None:
    try:
        inferred = infer_output_shapes(graph, op)
    except McuflowError as error:
        raise GraphInvariantError(f"{label}: {error.message}") from None
    except (IndexError, ValueError, ZeroDivisionError) as error:
        raise GraphInvariantError(f"{label}: shape inference failed ({error})") from None
    if len(inferred) != len(op.outputs):
        raise GraphInvariantError(
            f"{label} has {len(op.outputs)} outputs, but {op.kind.value} produces {len(inferred)}"
        )
    for name, shape in zip(op.outputs, inferred, strict=True):
        declared = graph.tensors[name].shape
        if tuple(shape) != tuple(declared):
            raise GraphInvariantError(
                f"{label} output {name!r} has shape {declared}, but its inputs give {tuple(shape)}"
            )
