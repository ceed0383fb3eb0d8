"""The integer types a quantised model gives its activations and its raw inputs and outputs."""

from __future__ import annotations

from dataclasses import dataclass

from mcuflow.ir.graph import DType


@dataclass(frozen=True)
class ModelTypes:
    """The integer types a QDQ model gives its activations and its raw inputs and outputs."""

    activations: DType = DType.INT8
    """int8, or int16 (LiteRT's int16x8 scheme) when the model quantises activations to int16."""
    uint8_io: frozenset[str] = frozenset()
    """IR graph inputs and outputs the model reads or writes as uint8 codes."""
