"""Checked reads of a decoded TFLite op's options and operands, raising the reader's errors."""

from __future__ import annotations

import numpy as np

from mcuflow.errors import ModelFormatError, UnsupportedModelError
from mcuflow.frontends.tflite_schema import (
    ACTIVATION_OF_FUSED,
    PADDING_OF_TFLITE,
    RawOp,
    RawSubgraph,
)
from mcuflow.ir.enums import Activation, Padding

HINT = "re-export the model with the TFLite converter, or check that the file was copied whole"
UNSUPPORTED_HINT = "run `mcuflow ops` to list the operators and types mcuflow supports"


def ints(vector: object) -> list[int]:
    """A flatbuffer int vector (the generated accessors return 0 when the field is absent)."""
    return [int(v) for v in vector] if isinstance(vector, np.ndarray) else []


def op_error(op: RawOp, message: str) -> ModelFormatError:
    """A ModelFormatError about `op`."""
    return ModelFormatError(f"op {op.index} ({op.name}) {message}", HINT)


def unsupported(op: RawOp, message: str) -> UnsupportedModelError:
    """An UnsupportedModelError about `op`."""
    return UnsupportedModelError(f"op {op.index} ({op.name}) {message}", UNSUPPORTED_HINT)


def options(op: RawOp, options_class: type, required: bool = False) -> object | None:
    """The op's options, checked to be of `options_class`."""
    if op.options is None:
        if required:
            raise op_error(op, f"has no {options_class.__name__}")
        return None
    if not isinstance(op.options, options_class):
        raise op_error(
            op, f"carries {type(op.options).__name__} instead of {options_class.__name__}"
        )
    return op.options


def positive(op: RawOp, what: str, value: int) -> int:
    """`value`, checked to be at least 1."""
    if value < 1:
        raise op_error(op, f"has {what} {value}; it must be at least 1")
    return int(value)


def activation(op: RawOp, code: int) -> Activation:
    """The fused activation of a TFLite ActivationFunctionType code."""
    if code not in ACTIVATION_OF_FUSED:
        raise unsupported(op, f"uses the fused activation code {code}")
    return ACTIVATION_OF_FUSED[code]


def padding(op: RawOp, code: int) -> Padding:
    """The padding scheme of a TFLite Padding code."""
    if code not in PADDING_OF_TFLITE:
        raise op_error(op, f"has unknown padding code {code}")
    return PADDING_OF_TFLITE[code]


def constant_input(op: RawOp, subgraph: RawSubgraph, position: int, what: str) -> np.ndarray:
    """The data of an attribute input (axes, paddings, shape) that must be constant."""
    if position >= len(op.inputs) or op.inputs[position] < 0:
        raise op_error(op, f"lacks its {what} input")
    data = subgraph.tensors[op.inputs[position]].data
    if data is None:
        raise unsupported(op, f"takes its {what} from a tensor computed at run time")
    return data


def axis(op: RawOp, value: int, rank: int) -> int:
    """Axis `value` in [-rank, rank), made non-negative."""
    if not -rank <= value < max(rank, 1):
        raise op_error(op, f"has axis {value}, out of range for rank {rank}")
    return value % rank if rank else 0
