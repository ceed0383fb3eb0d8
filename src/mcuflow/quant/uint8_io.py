"""uint8 model I/O: QUANTIZE ops around an int8 graph, as LiteRT's inference_input_type=uint8."""

from __future__ import annotations

from collections.abc import Iterable

from mcuflow.errors import UnsupportedModelError
from mcuflow.ir.constraints import check_supported
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.ops import NoAttrs, OpKind
from mcuflow.ir.quantization import QuantParams
from mcuflow.ir.verify import verify_graph
from mcuflow.passes.common import unique_name

UINT8_SHIFT = 128
"""A uint8 code is the int8 code plus 128 at the same scale (the sign bit flipped)."""


def with_uint8_io(graph: Graph, names: Iterable[str]) -> Graph:
    """A copy of int8 `graph` whose named inputs and outputs are uint8.

    The uint8 tensor keeps the name and the scale and takes the zero point plus 128; a QUANTIZE
    converts between it and the int8 tensor (renamed `<name>/int8`) the graph computes on.
    """
    result = graph.copy()
    for name in names:
        tensor = result.tensors[name]
        if tensor.dtype is not DType.INT8 or tensor.quant is None:
            raise UnsupportedModelError(
                f"'{name}' is {tensor.dtype.value}; only int8 model inputs and outputs can "
                "be uint8", "use uint8 I/O with the affine (int8) scheme")
        inner = _int8_twin(result, name)
        if name in graph.inputs:
            result.operators.insert(0, Operator(OpKind.QUANTIZE, (name,), (inner,), NoAttrs(),
                                                inner))
        else:
            result.operators.append(Operator(OpKind.QUANTIZE, (inner,), (name,), NoAttrs(),
                                             name))
    verify_graph(result)
    check_supported(result)
    return result


def _int8_twin(graph: Graph, name: str) -> str:
    """Move int8 tensor `name` (its readers and writer) to a new name; `name` becomes uint8."""
    tensor = graph.tensors[name]
    inner = unique_name(graph, f"{name}/int8")
    graph.add_tensor(Tensor(inner, tensor.shape, DType.INT8, tensor.quant))
    for op in graph.operators:
        op.inputs = tuple(inner if n == name else n for n in op.inputs)
        op.outputs = tuple(inner if n == name else n for n in op.outputs)
    quant = QuantParams.per_tensor(tensor.quant.scale0, tensor.quant.zero_point0 + UINT8_SHIFT)
    graph.tensors[name] = Tensor(name, tensor.shape, DType.UINT8, quant)
    return inner
