"""The enumerations op attributes use: TFLite's padding schemes and fused activations."""

from __future__ import annotations

from enum import Enum


class Padding(Enum):
    """Spatial padding scheme of convolutions and pools (TFLite semantics)."""

    SAME = "SAME"
    VALID = "VALID"


class Activation(Enum):
    """Activation fused into the producing op (TFLite's ActivationFunctionType)."""

    NONE = "NONE"
    RELU = "RELU"
    RELU_N1_TO_1 = "RELU_N1_TO_1"
    RELU6 = "RELU6"
