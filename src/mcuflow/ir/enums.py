"""The enumerations op attributes use: TFLite's padding schemes and fused activations."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class IdentityEnum(Enum):
    """An Enum hashed by identity, as its members are singletons compared by identity.

    Enum's own hash (of the member's name, in Python) is a hot spot of the planner's caches.
    """

    __hash__ = object.__hash__


class Padding(IdentityEnum):
    """Spatial padding scheme of convolutions and pools (TFLite semantics)."""

    SAME = "SAME"
    VALID = "VALID"


@dataclass(frozen=True)
class ExplicitPadding:
    """Padding counted per side: rows before and after, columns before and after.

    No model file writes it: the patches of a patch-based stage use it so that each patch pads
    (or skips) exactly the rows and columns the whole-tensor layer would.
    """

    top: int
    bottom: int
    left: int
    right: int


WindowPadding = Padding | ExplicitPadding
"""The padding of a convolution or pool."""

AxisPadding = Padding | tuple[int, int]
"""The padding along one axis: a scheme, or (before, after) counts."""


def along(padding: WindowPadding, axis: int) -> AxisPadding:
    """The padding along `axis` (0: height, 1: width)."""
    if isinstance(padding, ExplicitPadding):
        return (padding.top, padding.bottom) if axis == 0 else (padding.left, padding.right)
    return padding


class Activation(IdentityEnum):
    """Activation fused into the producing op (TFLite's ActivationFunctionType)."""

    NONE = "NONE"
    RELU = "RELU"
    RELU_N1_TO_1 = "RELU_N1_TO_1"
    RELU6 = "RELU6"
