"""Importing this module registers every reference kernel, so the registry is complete."""

from mcuflow.ref import (  # noqa: F401
    activations,
    concatenation,
    conv2d,
    depthwise_conv2d,
    elementwise,
    fully_connected,
    mean,
    pad,
    pooling,
    quantize,
    reshape,
    softmax,
)
