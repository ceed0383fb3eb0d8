"""Fold shape-only subgraphs (SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE...) into constants.

Keras exports compute RESHAPE targets at run time from the static input shape. With every shape
static, these integer computations are evaluated here, at import time, so the IR holds only
OpKind operators. Only ops whose outputs are unquantised int32/int64 tensors and whose inputs are
all constant are folded (SHAPE and RANK need only the static shape of their input).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tflite

from mcuflow.errors import ModelFormatError
from mcuflow.frontends.tflite_schema import RawOp, RawSubgraph, builtin_name
from mcuflow.ir.graph import DType

_INTEGER_OUTPUTS = (DType.INT32, DType.INT64)
_MAX_FOLDED_ELEMENTS = 1 << 16


class _NotFoldable(Exception):
    """The op is outside what import-time folding evaluates (it then stays an op)."""


@dataclass(frozen=True)
class _Folder:
    """How to evaluate one builtin op on constant inputs."""

    evaluate: Callable[[list[np.ndarray], object | None], list[np.ndarray]]
    needs_data: bool = True


def fold_shape_ops(subgraph: RawSubgraph) -> None:
    """Evaluate foldable ops of `subgraph` in order; their outputs become constants, ops removed."""
    kept: list[RawOp] = []
    for op in subgraph.ops:
        values = _fold(subgraph, op)
        if values is None:
            kept.append(op)
            continue
        for index, value in zip(op.outputs, values, strict=True):
            tensor = subgraph.tensors[index]
            data = np.array(value, dtype=tensor.dtype.numpy, order="C")
            tensor.data, tensor.shape = data, tuple(int(d) for d in data.shape)
    subgraph.ops = kept


def _fold(subgraph: RawSubgraph, op: RawOp) -> list[np.ndarray] | None:
    """The op's output values, or None when it cannot or should not be folded."""
    folder = _FOLDERS.get(op.code)
    if folder is None or not _integer_outputs(subgraph, op):
        return None
    inputs = [subgraph.tensors[i] for i in op.inputs if i >= 0]
    if folder.needs_data and any(t.data is None for t in inputs):
        return None
    values = [
        t.data if t.data is not None else np.broadcast_to(np.int8(0), t.shape) for t in inputs
    ]
    try:
        results = folder.evaluate(values, op.options)
    except _NotFoldable:
        return None
    except (ValueError, IndexError, TypeError, ZeroDivisionError, OverflowError) as error:
        raise ModelFormatError(
            f"cannot evaluate shape computation {builtin_name(op.code)} (op {op.index}): {error}",
            "the model's shape-computing ops are inconsistent; re-export the model",
        ) from None
    if any(np.asarray(result).dtype.kind not in "iub" for result in results):
        return None
    if len(results) != len(op.outputs):
        raise ModelFormatError(
            f"{builtin_name(op.code)} (op {op.index}) declares {len(op.outputs)} outputs but "
            f"computes {len(results)}",
            "re-export the model",
        )
    return results


def _integer_outputs(subgraph: RawSubgraph, op: RawOp) -> bool:
    outputs = [subgraph.tensors[i] for i in op.outputs]
    return bool(outputs) and all(
        t.dtype in _INTEGER_OUTPUTS and t.quant is None for t in outputs
    )


def _option(options: object | None, getter: str, default: int) -> int:
    """An integer option, or `default` when the op's options table lacks it."""
    read = getattr(options, getter, None)
    return int(read()) if read is not None else default


def _check_size(shape: tuple[int, ...]) -> None:
    """Refuse to materialise big results: shape arithmetic is small, anything else stays an op."""
    if int(np.prod(shape, dtype=np.int64)) > _MAX_FOLDED_ELEMENTS or any(d < 0 for d in shape):
        raise _NotFoldable


def _shape(values: list[np.ndarray], _: object | None) -> list[np.ndarray]:
    return [np.asarray(values[0].shape, dtype=np.int64)]


def _rank(values: list[np.ndarray], _: object | None) -> list[np.ndarray]:
    return [np.asarray(values[0].ndim, dtype=np.int64)]


def _bit(mask: int, axis: int) -> bool:
    return bool((mask >> axis) & 1)


def _strided_slice(values: list[np.ndarray], options: object | None) -> list[np.ndarray]:
    x, begin, end, strides = values[0], values[1], values[2], values[3]
    if _option(options, "EllipsisMask", 0) or _option(options, "NewAxisMask", 0):
        raise _NotFoldable
    begin_mask = _option(options, "BeginMask", 0)
    end_mask = _option(options, "EndMask", 0)
    shrink_mask = _option(options, "ShrinkAxisMask", 0)
    offset = bool(_option(options, "Offset", 0))
    index: list[int | slice] = []
    for axis, (b, e, s) in enumerate(zip(begin.tolist(), end.tolist(), strides.tolist(),
                                         strict=True)):
        if _bit(shrink_mask, axis):
            index.append(int(b))
            continue
        start = None if _bit(begin_mask, axis) else int(b)
        stop = None if _bit(end_mask, axis) else int(b + e if offset else e)
        index.append(slice(start, stop, int(s)))
    return [np.asarray(x[tuple(index)])]


def _slice(values: list[np.ndarray], _: object | None) -> list[np.ndarray]:
    x, begin, size = values
    index = tuple(
        slice(int(b), None if int(n) == -1 else int(b) + int(n))
        for b, n in zip(begin.tolist(), size.tolist(), strict=True)
    )
    return [x[index]]


def _pack(values: list[np.ndarray], options: object | None) -> list[np.ndarray]:
    return [np.stack(values, axis=_option(options, "Axis", 0))]


def _unpack(values: list[np.ndarray], options: object | None) -> list[np.ndarray]:
    axis = _option(options, "Axis", 0)
    return [np.asarray(v) for v in np.moveaxis(values[0], axis, 0)]


def _gather(values: list[np.ndarray], options: object | None) -> list[np.ndarray]:
    if _option(options, "BatchDims", 0) != 0:
        raise _NotFoldable
    return [np.take(values[0], values[1], axis=_option(options, "Axis", 0))]


def _concatenation(values: list[np.ndarray], options: object | None) -> list[np.ndarray]:
    if _option(options, "FusedActivationFunction", 0) != 0:
        raise _NotFoldable
    return [np.concatenate(values, axis=_option(options, "Axis", 0))]


def _reshape(values: list[np.ndarray], options: object | None) -> list[np.ndarray]:
    if len(values) > 1:
        return [values[0].reshape(values[1].reshape(-1).tolist())]
    read = getattr(options, "NewShapeAsNumpy", None)
    new_shape = read() if read is not None else 0
    if not isinstance(new_shape, np.ndarray):
        raise _NotFoldable
    return [values[0].reshape(new_shape.tolist())]


def _squeeze(values: list[np.ndarray], options: object | None) -> list[np.ndarray]:
    read = getattr(options, "SqueezeDimsAsNumpy", None)
    dims = read() if read is not None else 0
    axes = tuple(int(d) for d in dims) if isinstance(dims, np.ndarray) and dims.size else None
    return [np.squeeze(values[0], axis=axes)]


def _expand_dims(values: list[np.ndarray], _: object | None) -> list[np.ndarray]:
    return [np.expand_dims(values[0], int(values[1].reshape(-1)[0]))]


def _cast(values: list[np.ndarray], _: object | None) -> list[np.ndarray]:
    if values[0].dtype.kind == "f":
        raise _NotFoldable
    return [values[0]]


def _binary(function: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> _Folder:
    def evaluate(values: list[np.ndarray], options: object | None) -> list[np.ndarray]:
        if _option(options, "FusedActivationFunction", 0) != 0:
            raise _NotFoldable
        if any(v.dtype.kind not in "iu" for v in values):
            raise _NotFoldable
        _check_size(np.broadcast_shapes(values[0].shape, values[1].shape))
        a, b = (v.astype(np.int64) for v in values)
        return [function(a, b)]

    return _Folder(evaluate)


def _floor_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.any(b == 0):
        raise ZeroDivisionError("division by zero")
    return np.floor_divide(a, b)


def _reduce(function: Callable[..., np.ndarray]) -> _Folder:
    def evaluate(values: list[np.ndarray], options: object | None) -> list[np.ndarray]:
        if values[0].dtype.kind not in "iu":
            raise _NotFoldable
        axes = tuple(int(a) for a in values[1].reshape(-1))
        keep = bool(_option(options, "KeepDims", 0))
        return [function(values[0].astype(np.int64), axis=axes, keepdims=keep)]

    return _Folder(evaluate)


def _fill(values: list[np.ndarray], _: object | None) -> list[np.ndarray]:
    dims = tuple(int(d) for d in values[0].reshape(-1))
    _check_size(dims)
    return [np.full(dims, values[1].reshape(-1)[0])]


_OP = tflite.BuiltinOperator
_FOLDERS: dict[int, _Folder] = {
    _OP.SHAPE: _Folder(_shape, needs_data=False),
    _OP.RANK: _Folder(_rank, needs_data=False),
    _OP.STRIDED_SLICE: _Folder(_strided_slice),
    _OP.SLICE: _Folder(_slice),
    _OP.PACK: _Folder(_pack),
    _OP.UNPACK: _Folder(_unpack),
    _OP.GATHER: _Folder(_gather),
    _OP.CONCATENATION: _Folder(_concatenation),
    _OP.RESHAPE: _Folder(_reshape),
    _OP.SQUEEZE: _Folder(_squeeze),
    _OP.EXPAND_DIMS: _Folder(_expand_dims),
    _OP.CAST: _Folder(_cast),
    _OP.ADD: _binary(np.add),
    _OP.SUB: _binary(np.subtract),
    _OP.MUL: _binary(np.multiply),
    _OP.FLOOR_DIV: _binary(_floor_div),
    _OP.MAXIMUM: _binary(np.maximum),
    _OP.MINIMUM: _binary(np.minimum),
    _OP.REDUCE_PROD: _reduce(np.prod),
    _OP.SUM: _reduce(np.sum),
    _OP.FILL: _Folder(_fill),
}
"""Builtin ops evaluated at import time, keyed by BuiltinOperator code."""
