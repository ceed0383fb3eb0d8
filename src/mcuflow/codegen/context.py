"""What a C emitter works with: the planned step, arena pointers, and the constant-array pool."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from mcuflow.codegen.names import Naming, c_comment, c_identifier
from mcuflow.ir.graph import DType, Graph, Operator, Tensor
from mcuflow.ir.quantization import INT32_MIN, QuantParams
from mcuflow.memory.plan import InPlace, Plan, Step

_CTYPE_OF = {
    DType.INT8: "int8_t",
    DType.UINT8: "uint8_t",
    DType.INT16: "int16_t",
    DType.INT32: "int32_t",
    DType.FLOAT32: "float",
}
_PER_LINE = {"int8_t": 16, "uint8_t": 16, "int16_t": 12, "int32_t": 8, "float": 6, "double": 4,
             "int64_t": 4, "uint16_t": 12}
STRUCT_LINE_CHARS = 96
_KERNEL_CALL = re.compile(r"\b(mcuflow_[a-z0-9_]+)\(")


def c_type_of(tensor: Tensor) -> str:
    """The C element type of a constant tensor's array."""
    return _CTYPE_OF[tensor.dtype]


class CodegenError(Exception):
    """An internal inconsistency between the plan, the graph and the emitters (a bug)."""


def c_int(value: int) -> str:
    """An integer literal valid for any int32 value (INT32_MIN has no literal of its own)."""
    value = int(value)
    return "(-2147483647 - 1)" if value == INT32_MIN else str(value)


def c_float(value: float) -> str:
    """A float literal that reads back as exactly the same float32."""
    f = float(np.float32(value))
    if not np.isfinite(f):
        raise CodegenError(f"non-finite constant {f}")
    text = f"{f:.9g}"
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def c_double(value: float) -> str:
    """A double literal that reads back as exactly the same double (shortest round trip)."""
    if not math.isfinite(value):
        raise CodegenError(f"non-finite constant {value}")
    return repr(float(value))


_FORMAT = {"float": c_float, "double": c_double}


@dataclass(frozen=True)
class CArray:
    """A constant array of mcuflow_weights.c."""

    symbol: str
    ctype: str
    values: np.ndarray
    comment: str

    @property
    def nbytes(self) -> int:
        """Bytes the array occupies in flash."""
        return int(self.values.size * self.values.dtype.itemsize)

    def declaration(self) -> str:
        """The extern declaration for mcuflow_weights.h."""
        return f"extern const {self.ctype} {self.symbol}[{self.values.size}];"

    def definition(self) -> str:
        """The aligned definition with its values, a fixed number per line."""
        fmt = _FORMAT.get(self.ctype, c_int)
        items = [fmt(v) for v in self.values.reshape(-1).tolist()]
        per_line = _PER_LINE[self.ctype]
        lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
        body = ",\n    ".join(lines)
        return (f"/* {self.comment} */\n"
                f"const {self.ctype} {self.symbol}[{self.values.size}] MCUFLOW_ALIGNED(16) "
                f"MCUFLOW_WEIGHTS_PLACE = {{\n"
                f"    {body}\n}};\n")


@dataclass
class ConstantPool:
    """Every constant array of the generated model, in first-use order; `naming` prefixes them."""

    arrays: list[CArray] = field(default_factory=list)
    _of_tensor: dict[str, str] = field(default_factory=dict)
    _of_values: dict[tuple[str, str, bytes], str] = field(default_factory=dict)
    structs: dict[tuple[str, tuple[tuple[str, int | str], ...]], str] = field(
        default_factory=dict)
    """Symbols of the `static const` structs defined so far, by C type and fields."""
    naming: Naming = field(default_factory=Naming)

    def add(self, symbol: str, ctype: str, values: np.ndarray, comment: str) -> str:
        """Register a derived array (multipliers, folded bias, table); returns its symbol.

        An array equal to one registered before (same C type and values, e.g. the constants of
        one layer repeated by a patch stage) is not stored twice: its first symbol is returned.
        """
        values = np.ascontiguousarray(values).reshape(-1)
        if values.size == 0:
            raise CodegenError(f"empty constant {symbol}")
        key = self.identity(ctype, values)
        if key not in self._of_values:
            self.arrays.append(CArray(symbol, ctype, values, c_comment(comment)))
            self._of_values[key] = symbol
        return self._of_values[key]

    @staticmethod
    def identity(ctype: str, values: np.ndarray) -> tuple[str, str, bytes]:
        """What makes two arrays one array of the pool: C type, element type and bytes."""
        return ctype, values.dtype.str, np.ascontiguousarray(values).tobytes()

    def tensor(self, graph: Graph, name: str) -> str:
        """The symbol of a constant tensor of the graph, emitted once however many ops read it."""
        if name not in self._of_tensor:
            tensor = graph.tensors[name]
            symbol = c_identifier(name, self.naming.symbol(f"c{len(self._of_tensor)}"))
            comment = f"{name} {list(tensor.shape)} {tensor.dtype.value}"
            self._of_tensor[name] = self.add(symbol, c_type_of(tensor), tensor.data, comment)
        return self._of_tensor[name]

    @property
    def nbytes(self) -> int:
        """Total bytes of constant data."""
        return sum(a.nbytes for a in self.arrays)


@dataclass(frozen=True)
class StepKernels:
    """What one generated step runs, without its C.

    The kernel functions it calls, in order, and on a core with the Arm DSP extension why it
    runs a portable kernel (see LayerCode.portable_reason).
    """

    op: str
    name: str
    functions: tuple[str, ...]
    portable_reason: str | None = None


@dataclass
class LayerCode:
    """The C of one step.

    File-scope definitions, statements inside the run function, and the kernel sources (stems
    under codegen/kernels) the statements call.
    """

    statements: list[str]
    definitions: list[str] = field(default_factory=list)
    kernels: frozenset[str] = frozenset()
    portable_reason: str | None = None
    """On a core with the Arm DSP extension, why the step runs a portable kernel where a DSP
    kernel exists for its op kind (None when it runs the DSP kernel, or has none)."""

    @property
    def functions(self) -> tuple[str, ...]:
        """The C kernel functions the statements call, in order of first call."""
        return tuple(dict.fromkeys(_KERNEL_CALL.findall("\n".join(self.statements))))


@dataclass
class EmitContext:
    """One planned step seen by its emitter; `dsp` when the core has the Arm DSP extension."""

    graph: Graph
    plan: Plan
    step: Step
    layer: int
    pool: ConstantPool
    definitions: list[str] = field(default_factory=list)
    dsp: bool = False
    portable_reason: str | None = None
    """Set by a DSP emitter that declines the step: why (see LayerCode.portable_reason)."""

    @property
    def op(self) -> Operator:
        """The operator this step runs."""
        return self.graph.operators[self.step.op_index]

    @property
    def inplace(self) -> InPlace:
        """How the step shares memory with its input."""
        return self.step.inplace

    def tensor(self, name: str) -> Tensor:
        """A tensor of the graph."""
        return self.graph.tensors[name]

    def input(self, index: int) -> Tensor:
        """The op's input tensor number `index`."""
        return self.graph.tensors[self.op.inputs[index]]

    def output(self, index: int = 0) -> Tensor:
        """The op's output tensor number `index`."""
        return self.graph.tensors[self.op.outputs[index]]

    def output_pixel_step(self) -> int:
        """Elements between neighbouring NHWC pixels of the output.

        Its channels, or more for a channel slice of a concatenation planned in place
        (Buffer.pixel_step).
        """
        buffer = self.plan.buffers.get(self.op.outputs[0])
        return buffer.pixel_step if buffer is not None and buffer.pixel_step else (
            self.output().shape[-1])

    def quant(self, name: str) -> QuantParams:
        """Quantisation of a tensor (int8 tensors always have one after the support checks)."""
        quant = self.graph.tensors[name].quant
        if quant is None:
            raise CodegenError(f"tensor {name!r} has no quantisation parameters")
        return quant

    def symbol(self, stem: str) -> str:
        """A file-scope identifier private to this layer (prefixed like the model's names)."""
        return self.pool.naming.symbol(f"l{self.layer}_{stem}")

    def offset(self, name: str) -> int:
        """Arena offset of an activation tensor."""
        return self.plan.offset_of(name)

    def pointer(self, name: str, kind: str = "S8") -> str:
        """C pointer to a tensor.

        An arena address (`kind` S8 for int8_t*, U8 for uint8_t*, S16 for int16_t*) or the
        constant array of a constant tensor.
        """
        if self.graph.tensors[name].is_constant:
            symbol = self.pool.tensor(self.graph, name)
            return symbol if kind == "S8" else f"(const uint8_t *){symbol}"
        return f"MCUFLOW_{kind}({self.offset(name)})"

    def state(self, name: str) -> str:
        """The static array holding variable tensor `name` (outside the arena)."""
        return state_symbol(self.graph, self.pool.naming, name)

    def scratch(self) -> str:
        """C pointer to the step's planned scratch buffer."""
        if self.step.scratch is None:
            raise CodegenError(f"step {self.layer} has no scratch buffer")
        return f"MCUFLOW_S8({self.plan.buffers[self.step.scratch].offset})"

    def constant(self, stem: str, ctype: str, values: np.ndarray, comment: str) -> str:
        """Register a derived constant array of this layer; returns its symbol."""
        return self.pool.add(self.symbol(stem), ctype, values, comment)

    def struct(self, ctype: str, stem: str, fields: dict[str, int | str]) -> str:
        """Define a `static const` struct for this layer; returns its symbol.

        A struct equal to one an earlier layer defined (a patch stage repeats layers) is reused.
        """
        key = (ctype, tuple(fields.items()))
        if key not in self.pool.structs:
            symbol = self.symbol(stem)
            self.definitions.append(c_struct(ctype, symbol, fields))
            self.pool.structs[key] = symbol
        return self.pool.structs[key]


def state_symbol(graph: Graph, naming: Naming, name: str) -> str:
    """The model's static array of variable tensor `name`: `<prefix>state<i>`.

    `i` is its index among the graph's variables.
    """
    return naming.symbol(f"state{graph.variables().index(name)}")


def c_struct(ctype: str, symbol: str, fields: dict[str, int | str]) -> str:
    """A `static const` struct definition with designated initialisers, several per line."""
    items = [f".{key} = {value if isinstance(value, str) else c_int(value)}"
             for key, value in fields.items()]
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + len(item) + 2 <= STRUCT_LINE_CHARS:
            lines[-1] += f", {item}"
        else:
            lines.append(f"    {item}")
    body = ",\n".join(lines)
    return f"static const {ctype} {symbol} = {{\n{body}\n}};"
