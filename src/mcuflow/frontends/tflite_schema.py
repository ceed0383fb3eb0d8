"""TFLite schema mappings (types, activations, padding) shared by reader and writer."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tflite
from tflite.utils import BUILTIN_OPCODE2NAME

from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import DType
from mcuflow.ir.quantization import QuantParams

FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3
PLACEHOLDER_FOR_GREATER_OP_CODES = 127

TENSOR_TYPE_OF_DTYPE: dict[DType, int] = {
    DType.INT8: tflite.TensorType.INT8,
    DType.UINT8: tflite.TensorType.UINT8,
    DType.INT16: tflite.TensorType.INT16,
    DType.INT32: tflite.TensorType.INT32,
    DType.INT64: tflite.TensorType.INT64,
    DType.FLOAT32: tflite.TensorType.FLOAT32,
    DType.BOOL: tflite.TensorType.BOOL,
}
DTYPE_OF_TENSOR_TYPE: dict[int, DType] = {code: d for d, code in TENSOR_TYPE_OF_DTYPE.items()}

TENSOR_TYPE_NAMES: dict[int, str] = {
    value: name for name, value in vars(tflite.TensorType).items() if not name.startswith("_")
}

FUSED_OF_ACTIVATION: dict[Activation, int] = {
    Activation.NONE: tflite.ActivationFunctionType.NONE,
    Activation.RELU: tflite.ActivationFunctionType.RELU,
    Activation.RELU_N1_TO_1: tflite.ActivationFunctionType.RELU_N1_TO_1,
    Activation.RELU6: tflite.ActivationFunctionType.RELU6,
}
ACTIVATION_OF_FUSED: dict[int, Activation] = {c: a for a, c in FUSED_OF_ACTIVATION.items()}

TFLITE_OF_PADDING: dict[Padding, int] = {
    Padding.SAME: tflite.Padding.SAME,
    Padding.VALID: tflite.Padding.VALID,
}
PADDING_OF_TFLITE: dict[int, Padding] = {c: p for p, c in TFLITE_OF_PADDING.items()}


def builtin_name(code: int) -> str:
    """The schema name of a builtin operator code (`BUILTIN_<code>` when the schema lacks it)."""
    return BUILTIN_OPCODE2NAME.get(code, f"BUILTIN_{code}")


def tensor_type_name(code: int) -> str:
    """The schema name of a TensorType code (`TYPE_<code>` when the schema lacks it)."""
    return TENSOR_TYPE_NAMES.get(code, f"TYPE_{code}")


@dataclass
class RawTensor:
    """A tensor as decoded from the flatbuffer, before it becomes an IR tensor."""

    index: int
    name: str
    shape: tuple[int, ...]
    type_code: int
    quant: QuantParams | None = None
    data: np.ndarray | None = None
    variable: bool = False

    @property
    def dtype(self) -> DType | None:
        """The IR dtype, or None when mcuflow has no such type (FLOAT16, STRING...)."""
        return DTYPE_OF_TENSOR_TYPE.get(self.type_code)


@dataclass
class RawOp:
    """An operator as decoded from the flatbuffer; inputs use -1 for an absent optional input.

    `options` is the decoded builtin-options table of the `tflite` package (or None);
    `intermediates` the indices of its intermediate tensors (the integer LSTM's).
    """

    index: int
    code: int
    name: str
    inputs: list[int]
    outputs: list[int]
    options: object | None = None
    intermediates: list[int] = field(default_factory=list)


@dataclass
class RawSubgraph:
    """Subgraph 0 of a model, decoded and validated (indices in range, data sizes consistent)."""

    name: str
    tensors: list[RawTensor] = field(default_factory=list)
    ops: list[RawOp] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
