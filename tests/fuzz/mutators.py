"""Mutations of .tflite files: blind byte edits, and structure-aware edits of the object tree."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tests.fuzz.flat import pack, schema

INTERESTING_INTS = (
    0, 1, -1, 2, 3, 4, 7, 8, 16, 127, 128, -128, -129, 255, 256, 1 << 15, (1 << 16) - 1,
    1 << 16, 1 << 20, 1 << 24, (1 << 31) - 1, -(1 << 31), (1 << 32) - 1,
)
INTERESTING_FLOATS = (
    0.0, -0.0, math.nan, math.inf, -math.inf, -1.0, 1.0, 1e-45, 1e-38, 2.0**-64, 2.0**-63,
    2.0**-40, 2.0**-31, 1e-12, 1e-6, 1e3, 2.0**30, 2.0**31, 1e12, 3.4e38, 0.5,
)
_PACKINGS = ("<b", "<B", "<h", "<H", "<i", "<I", "<q", "<f")


@dataclass
class Journal:
    """Attribute assignments to an object tree, undone in reverse order after packing."""

    entries: list[tuple[object, str, object]] = field(default_factory=list)

    def set(self, target: object, attr: str, value: object) -> None:
        """Assign `target.attr = value`, remembering the old value."""
        self.entries.append((target, attr, getattr(target, attr)))
        setattr(target, attr, value)

    def undo(self) -> None:
        """Restore every assigned attribute."""
        for target, attr, old in reversed(self.entries):
            setattr(target, attr, old)
        self.entries.clear()


# --------------------------------------------------------------------------- byte mutations


def _position(rng: random.Random, size: int) -> int:
    """A byte position, skewed towards the start where the flatbuffer's tables usually lie."""
    return min(int(size * rng.random() ** 3), size - 1)


def _flip_bit(data: bytearray, rng: random.Random, _: bytes) -> str:
    at = _position(rng, len(data))
    data[at] ^= 1 << rng.randrange(8)
    return f"flip bit at {at}"


def _set_byte(data: bytearray, rng: random.Random, _: bytes) -> str:
    at = _position(rng, len(data))
    data[at] = rng.randrange(256)
    return f"set byte {at}"


def _set_number(data: bytearray, rng: random.Random, _: bytes) -> str:
    packing = rng.choice(_PACKINGS)
    width = struct.calcsize(packing)
    if len(data) < width:
        return "no-op"
    at = min(_position(rng, len(data)) & ~3, len(data) - width)
    if packing == "<f":
        value: float = rng.choice(INTERESTING_FLOATS)
    else:
        bits = 8 * width
        value = rng.choice(INTERESTING_INTS) if rng.random() < 0.7 else rng.randrange(1 << bits)
        value = value % (1 << bits)
        if packing.islower() and value >= 1 << (bits - 1):
            value -= 1 << bits
    struct.pack_into(packing, data, at, value)
    return f"write {packing} {value} at {at}"


def _nudge_int32(data: bytearray, rng: random.Random, _: bytes) -> str:
    if len(data) < 4:
        return "no-op"
    at = min(_position(rng, len(data)) & ~3, len(data) - 4)
    value = (struct.unpack_from("<I", data, at)[0] + rng.choice((-8, -4, -2, -1, 1, 2, 4, 8)))
    struct.pack_into("<I", data, at, value % (1 << 32))
    return f"nudge int32 at {at}"


def _truncate(data: bytearray, rng: random.Random, _: bytes) -> str:
    size = rng.randrange(len(data)) if rng.random() < 0.5 else _position(rng, len(data))
    del data[size:]
    return f"truncate to {size}"


def _extend(data: bytearray, rng: random.Random, _: bytes) -> str:
    count = rng.choice((1, 3, 4, 16, 100))
    data.extend(rng.randbytes(count))
    return f"append {count} bytes"


def _delete_range(data: bytearray, rng: random.Random, _: bytes) -> str:
    start = _position(rng, len(data))
    count = rng.choice((1, 2, 4, 8, 16, 64))
    del data[start:start + count]
    return f"delete {count} bytes at {start}"


def _duplicate_range(data: bytearray, rng: random.Random, _: bytes) -> str:
    start = _position(rng, len(data))
    count = rng.choice((4, 8, 16, 64))
    data[start:start] = data[start:start + count]
    return f"duplicate {count} bytes at {start}"


def _splice(data: bytearray, rng: random.Random, other: bytes) -> str:
    cut = rng.randrange(len(data))
    other_cut = rng.randrange(len(other)) if other else 0
    data[cut:] = other[other_cut:]
    return f"splice at {cut} with other[{other_cut}:]"


BYTE_MUTATIONS: tuple[Callable[[bytearray, random.Random, bytes], str], ...] = (
    _flip_bit, _set_byte, _set_number, _set_number, _nudge_int32, _truncate, _extend,
    _delete_range, _duplicate_range, _splice,
)


def mutate_bytes(
    data: bytes, rng: random.Random, other: bytes, count: int
) -> tuple[bytes, list[str]]:
    """`count` blind byte mutations of `data`; `other` is the file spliced in by a splice."""
    result = bytearray(data)
    done = []
    for _ in range(count):
        if not result:
            break
        done.append(rng.choice(BYTE_MUTATIONS)(result, rng, other))
    return bytes(result), done


# --------------------------------------------------------------------------- structure mutations


def _fields(model: schema.ModelT) -> list[tuple[object, str]]:
    """Every (object, attribute) holding a scalar, vector or options table in the model."""
    found: list[tuple[object, str]] = [(model, "version")]
    objects: list[object] = []
    if model.subgraphs:
        graph = model.subgraphs[0]
        found += [(graph, "inputs"), (graph, "outputs")]
        objects += list(graph.tensors or []) + list(graph.operators or [])
        objects += [t.quantization for t in graph.tensors or [] if t.quantization is not None]
        objects += [op.builtinOptions for op in graph.operators or [] if op.builtinOptions]
    objects += list(model.operatorCodes or [])
    found += [(obj, name) for obj in objects for name, value in vars(obj).items()
              if _mutable(name, value)]
    return found


_SKIPPED = {"details", "sparsity", "variantTensors", "customOptions", "intermediates",
            "mutatingVariableInputs", "shapeSignature", "min", "max"}


def _mutable(name: str, value: object) -> bool:
    if name in _SKIPPED:
        return False
    return value is None or isinstance(value, int | float | bool | str | bytes | list | np.ndarray)


def _new_int(rng: random.Random, old: int) -> int:
    roll = rng.random()
    if roll < 0.4:
        return old + rng.choice((-2, -1, 1, 2))
    if roll < 0.9:
        return rng.choice(INTERESTING_INTS)
    return rng.randrange(-(1 << 31), 1 << 31)


def _new_value(rng: random.Random, old: object, model: schema.ModelT) -> object:
    """A replacement for a field's value, of the same kind."""
    if isinstance(old, bool):
        return not old
    if isinstance(old, int):
        return _new_int(rng, old)
    if isinstance(old, float):
        return rng.choice(INTERESTING_FLOATS) if rng.random() < 0.8 else old * rng.uniform(-4, 4)
    if isinstance(old, str | bytes):
        return rng.choice((b"", b"x" * 300, b"a\x00b", b"\xff\xfe", _some_name(rng, model)))
    if old is None:
        return [rng.choice(INTERESTING_INTS) for _ in range(rng.randrange(4))]
    return _new_vector(rng, list(np.asarray(old).tolist()))


def _some_name(rng: random.Random, model: schema.ModelT) -> bytes:
    tensors = model.subgraphs[0].tensors if model.subgraphs else None
    return rng.choice(tensors).name or b"" if tensors else b"t0"


def _new_vector(rng: random.Random, values: list) -> list | None:
    roll = rng.random()
    floats = any(isinstance(v, float) for v in values)
    pick: Callable[[], object] = (
        (lambda: rng.choice(INTERESTING_FLOATS)) if floats
        else (lambda: rng.choice(INTERESTING_INTS))
    )
    if values and roll < 0.5:
        at = rng.randrange(len(values))
        old = values[at]
        values[at] = pick() if floats or rng.random() < 0.5 else _new_int(rng, int(old))
    elif values and roll < 0.65:
        del values[rng.randrange(len(values))]
    elif roll < 0.8:
        values.insert(rng.randrange(len(values) + 1), pick())
    elif roll < 0.9:
        return None
    else:
        return values[::-1] if rng.random() < 0.5 else values + values
    return values


def _mutate_field(model: schema.ModelT, rng: random.Random, journal: Journal) -> str:
    target, attr = rng.choice(_fields(model))
    old = getattr(target, attr)
    journal.set(target, attr, _new_value(rng, old, model))
    return f"{type(target).__name__}.{attr}"


def _graph(model: schema.ModelT) -> schema.SubGraphT | None:
    return model.subgraphs[0] if model.subgraphs else None


def _rewire(model: schema.ModelT, rng: random.Random, journal: Journal) -> str:
    """Point an operand at another op's output, its own output, or nothing (cycles, gaps)."""
    graph = _graph(model)
    if graph is None or not graph.operators:
        return "no-op"
    op = rng.choice(graph.operators)
    other = rng.choice(graph.operators)
    candidates = list(np.asarray(other.outputs).tolist()) + [-1, len(graph.tensors or [])]
    attr = "inputs" if rng.random() < 0.7 else "outputs"
    values = list(np.asarray(getattr(op, attr) if getattr(op, attr) is not None else []).tolist())
    if not values:
        return "no-op"
    values[rng.randrange(len(values))] = rng.choice(candidates)
    journal.set(op, attr, values)
    return f"rewire operator {attr}"


def _reorder(model: schema.ModelT, rng: random.Random, journal: Journal) -> str:
    """Swap, delete or duplicate operators, or drop the last tensor."""
    graph = _graph(model)
    if graph is None or not graph.operators:
        return "no-op"
    ops = list(graph.operators)
    roll = rng.random()
    i, j = rng.randrange(len(ops)), rng.randrange(len(ops))
    if roll < 0.4:
        ops[i], ops[j] = ops[j], ops[i]
    elif roll < 0.6:
        del ops[i]
    elif roll < 0.8:
        ops.insert(j, ops[i])
    else:
        journal.set(graph, "tensors", list(graph.tensors or [])[:-1])
        return "drop last tensor"
    journal.set(graph, "operators", ops)
    return "reorder operators"


def _retype_options(model: schema.ModelT, rng: random.Random, journal: Journal) -> str:
    """Give an operator another builtin code or another operator's options table."""
    graph = _graph(model)
    if graph is None or not graph.operators:
        return "no-op"
    if rng.random() < 0.5 and model.operatorCodes:
        code = rng.choice(model.operatorCodes)
        new = rng.choice((0, 1, 3, 4, 9, 14, 17, 18, 19, 22, 25, 28, 34, 40, 41, 74, 98, 114, 127))
        journal.set(code, "builtinCode", new)
        journal.set(code, "deprecatedBuiltinCode", min(new, 127))
        return f"operator code -> {new}"
    op, donor = rng.choice(graph.operators), rng.choice(graph.operators)
    journal.set(op, "builtinOptionsType", donor.builtinOptionsType)
    journal.set(op, "builtinOptions", donor.builtinOptions)
    return "swap options"


def _buffer_edit(model: schema.ModelT, rng: random.Random, journal: Journal) -> str:
    """Resize a buffer, overwrite its elements with extreme values, or move it out of line."""
    filled = [b for b in model.buffers or [] if b.data is not None and len(b.data)]
    if not filled:
        return "no-op"
    buffer = rng.choice(filled)
    data = np.array(buffer.data, dtype=np.uint8)
    roll = rng.random()
    if roll < 0.3:
        journal.set(buffer, "data", data[: rng.randrange(len(data))])
    elif roll < 0.4:
        journal.set(buffer, "data", np.concatenate([data, data[: rng.choice((1, 4, 16))]]))
    elif roll < 0.9:
        words = data[: len(data) // 4 * 4].view("<i4").copy()
        if words.size:
            value = np.asarray(rng.choice(INTERESTING_INTS), dtype=np.int64)
            words[rng.randrange(words.size)] = value.astype(np.int32)
        data[: words.size * 4] = words.view(np.uint8)
        journal.set(buffer, "data", data)
    else:
        journal.set(buffer, "offset", rng.choice((2, 1 << 20, (1 << 63) - 1)))
        journal.set(buffer, "size", rng.choice((0, 4, 1 << 31)))
    return "edit buffer"


STRUCTURE_MUTATIONS: tuple[Callable[[schema.ModelT, random.Random, Journal], str], ...] = (
    _mutate_field, _mutate_field, _mutate_field, _mutate_field, _rewire, _reorder,
    _retype_options, _buffer_edit,
)


def mutate_structure(
    model: schema.ModelT, rng: random.Random, count: int
) -> tuple[bytes, list[str]] | None:
    """Pack `model` after `count` structure mutations (the tree is restored afterwards).

    None when the mutated tree cannot be serialised (a value too wide for its field).
    """
    journal = Journal()
    try:
        done = [rng.choice(STRUCTURE_MUTATIONS)(model, rng, journal) for _ in range(count)]
        return pack(model), done
    except (struct.error, OverflowError, TypeError, ValueError, AttributeError):
        return None
    finally:
        journal.undo()
