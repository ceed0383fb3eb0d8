"""The graph IR: tensors (by unique name), operators in topological order, graph inputs/outputs."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mcuflow.ir.codebook import Codebook
from mcuflow.ir.enums import IdentityEnum
from mcuflow.ir.quantization import QuantParams

if TYPE_CHECKING:
    from mcuflow.ir.ops import OpAttrs, OpKind


class DType(IdentityEnum):
    """Element types a tensor can hold."""

    INT8 = "int8"
    UINT8 = "uint8"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    FLOAT32 = "float32"
    BOOL = "bool"

    def __init__(self, value: str) -> None:
        self._itemsize = np.dtype(value).itemsize

    @property
    def numpy(self) -> np.dtype:
        """The matching numpy dtype."""
        return np.dtype(self.value)

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return self._itemsize


@dataclass
class Tensor:
    """A named tensor; `data` is set for constants (weights, biases).

    `codebook`, when set, is how a constant is stored compressed; `data` holds its decoded values.
    A `variable` tensor (TFLite's is_variable: SVDF's activation state, an LSTM's output and
    cell states) has no data and no producer: the op reading it updates it in place, and it
    keeps its value from one invocation to the next (`reset_value` at the start).
    """

    name: str
    shape: tuple[int, ...]
    dtype: DType
    quant: QuantParams | None = None
    data: np.ndarray | None = None
    codebook: Codebook | None = None
    variable: bool = False

    @property
    def is_constant(self) -> bool:
        """True for tensors whose value is stored in the model (weights, biases)."""
        return self.data is not None

    @property
    def reset_value(self) -> int:
        """The value a variable tensor starts from and is reset to (LiteRT's ResetVariableTensor).

        An int8 tensor's zero point (an LSTM's output state), 0 for any other type.
        """
        if self.dtype is DType.INT8 and self.quant is not None:
            return int(self.quant.zero_point0)
        return 0

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(math.prod(self.shape))

    @property
    def nbytes(self) -> int:
        """Bytes the tensor occupies."""
        return self.size * self.dtype.itemsize


@dataclass
class Operator:
    """One operation; `inputs` and `outputs` are tensor names. Optional inputs are omitted."""

    kind: OpKind
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: OpAttrs
    name: str = ""


@dataclass(frozen=True)
class TensorUses:
    """The producing op index and the reading op indices of every tensor, indexed once."""

    producer: dict[str, int]
    consumers: dict[str, list[int]]


@dataclass
class Graph:
    """A dataflow graph whose operators are stored in a valid topological order."""

    name: str
    tensors: dict[str, Tensor] = field(default_factory=dict)
    operators: list[Operator] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def tensor(self, name: str) -> Tensor:
        """The tensor called `name`."""
        return self.tensors[name]

    def producer(self, name: str) -> int | None:
        """Index of the operator producing tensor `name`, or None for inputs and constants."""
        for index, op in enumerate(self.operators):
            if name in op.outputs:
                return index
        return None

    def consumers(self, name: str) -> list[int]:
        """Indices of the operators reading tensor `name`."""
        return [index for index, op in enumerate(self.operators) if name in op.inputs]

    def uses(self) -> TensorUses:
        """Producer and consumers of every tensor in one pass (producer/consumers scan per call)."""
        producer: dict[str, int] = {}
        consumers: dict[str, list[int]] = {}
        for index, op in enumerate(self.operators):
            for name in op.outputs:
                producer.setdefault(name, index)
            for name in dict.fromkeys(op.inputs):
                consumers.setdefault(name, []).append(index)
        return TensorUses(producer, consumers)

    def activations(self) -> list[str]:
        """Names of the non-constant tensors (graph inputs and op outputs)."""
        return [name for name, t in self.tensors.items()
                if not t.is_constant and not t.variable]

    def variables(self) -> list[str]:
        """Names of the variable tensors (state kept across invocations)."""
        return [name for name, t in self.tensors.items() if t.variable]

    def add_tensor(self, tensor: Tensor) -> Tensor:
        """Add a tensor; its name must be new."""
        if tensor.name in self.tensors:
            raise ValueError(f"duplicate tensor name {tensor.name!r}")
        self.tensors[tensor.name] = tensor
        return tensor

    def copy(self) -> Graph:
        """A deep copy (passes rewrite copies, never the caller's graph)."""
        return copy.deepcopy(self)
