"""Flash of a model's Cortex-M firmware, estimated from the emitted C and the measured catalogue."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from mcuflow.codegen.context import ConstantPool, LayerCode
from mcuflow.codegen.external import ExternalLayout
from mcuflow.errors import McuflowError
from mcuflow.hw.kernel_code import REMEASURE, FlashEstimate, TargetCode, target_code
from mcuflow.ir.graph import Graph

CONSTANT_ALIGNMENT = 16
"""Every constant array is defined MCUFLOW_ALIGNED(16)."""
_STRUCT = re.compile(r"^static const (\w+) \w+ =")
_CALL = re.compile(r"\b(mcuflow_[a-z0-9_]+)\(")
_PUNCTUATION = re.compile(r"[(),]")
_SPILL_ACCESS = re.compile(r"\bMCUFLOW_SPILL_(?:READ|WRITE|OPEN|SEAL)\(")
T = TypeVar("T")


@dataclass(frozen=True)
class SpillKind:
    """Where spilled activations go and how: what their code depends on."""

    in_ram: bool = False
    """Copied to a spill area in external RAM, not through the storage."""
    on_nor: bool = False
    """Through the storage to NOR flash (slots and erases)."""
    sealed: bool = False
    """Encrypted and authenticated (--encrypt-external)."""


def array_flash_bytes(nbytes: int) -> int:
    """Flash a constant array of `nbytes` takes: rounded up to CONSTANT_ALIGNMENT."""
    return -(-nbytes // CONSTANT_ALIGNMENT) * CONSTANT_ALIGNMENT


def _arguments(text: str, start: int) -> int:
    """Arguments of the call whose '(' is at `start`: the commas at its own depth, plus one."""
    depth, commas = 0, 0
    for mark in _PUNCTUATION.finditer(text, start):
        char = mark.group()
        depth += 1 if char == "(" else -1 if char == ")" else 0
        commas += char == "," and depth == 1
        if depth == 0:
            break
    return commas + 1


def kernel_calls(layers: Sequence[LayerCode]) -> tuple[int, int]:
    """The kernel calls of the model's run function and the arguments they pass in all."""
    calls = arguments = 0
    for statement in (s for layer in layers for s in layer.statements):
        for match in _CALL.finditer(statement):
            calls += 1
            arguments += _arguments(statement, match.end() - 1)
    return calls, arguments


def _lookup(table: dict[str, T], key: str, what: str, target: str) -> T:
    if key not in table:
        raise McuflowError(f"no measured flash size of {what} {key} for {target}",
                           f"measure it: {REMEASURE}")
    return table[key]


def _constants(layers: Sequence[LayerCode], pool: ConstantPool, code: TargetCode,
               target: str, external: frozenset[str]) -> int:
    arrays = sum(array_flash_bytes(array.nbytes) for array in pool.arrays
                 if array.symbol not in external)
    types = [m.group(1) for layer in layers for d in layer.definitions
             if (m := _STRUCT.match(d))]
    return arrays + sum(struct_bytes(t, code, target) for t in types)


def struct_bytes(ctype: str, code: TargetCode, target: str) -> int:
    """Flash of one `static const` struct of C type `ctype` on `target`."""
    return _lookup(code.structs, ctype, "struct", target)


def _code(layers: Sequence[LayerCode], code: TargetCode, target: str) -> int:
    functions = set().union(*(layer.functions for layer in layers))
    return code_bytes(functions, *kernel_calls(layers), code, target)


def code_bytes(functions: Iterable[str], calls: int, arguments: int, code: TargetCode,
               target: str) -> int:
    """Code of kernel `functions` and their library routines (each once) and a run function.

    The run function makes `calls` kernel calls that pass `arguments` arguments in all.
    """
    kernels = [_lookup(code.kernels, f, "kernel", target) for f in sorted(set(functions))]
    support = {key for kernel in kernels for key in kernel.support}
    return (sum(kernel.code for kernel in kernels) + sum(code.support[key] for key in support)
            + code.run.bytes(calls, arguments))


def external_code(target: str, encrypted: bool, code: TargetCode | None = None
                  ) -> tuple[int, int]:
    """Flash that reading an external image adds on `target`: with one chunk, and per more.

    The measured kernel_code.TargetCode.external and per_chunk.
    """
    code = code or target_code(target)
    mode = "encrypted" if encrypted else "plain"
    return _lookup(code.external, mode, "out-of-core runtime", target), code.per_chunk


def _spill_code(layers: Sequence[LayerCode], code: TargetCode, target: str,
                spill: SpillKind, external: ExternalLayout | None = None) -> int:
    """What spilled activations add: the fixed code and each write or read statement.

    The fixed code is the storage's, or none in external RAM, plus what NOR flash (slots and
    erases) and encryption (AES, CMAC, key and nonce) add to it, each measured alone. Beside
    an `external` image read through the storage, the storage code (and, both encrypted, the
    AES, CMAC and key code) is the image's already: what a spill adds there was measured.
    """
    accesses = sum(len(_SPILL_ACCESS.findall(s)) for layer in layers for s in layer.statements)
    if not accesses:
        return 0
    table, what = code.spill, "spilled-activation code"

    def measured(key: str) -> int:
        return _lookup(table, key, what, target)

    imaged = not spill.in_ram and external is not None and bool(external.chunks)
    keys = (("beside_image", "beside_image_access") if imaged
            else ("ram", "ram_access") if spill.in_ram else ("storage", "access"))
    fixed, each = map(measured, keys)
    if spill.sealed and imaged and external.encrypted:
        fixed, each = measured("sealed_beside_image"), measured("sealed_beside_image_access")
    elif spill.sealed:
        fixed += measured("sealed") - measured("storage")
        each = measured("sealed_access")
    if spill.on_nor:
        fixed += measured("nor") - measured("storage")
    return fixed + each * accesses


def _external_runtime(code: TargetCode, target: str, external: ExternalLayout | None) -> int:
    """What reading `external`'s chunks adds: its storage, image and crypto code, its chunks."""
    if external is None or not external.chunks:
        return 0
    first, each = external_code(target, external.encrypted, code)
    return first + each * (len(external.chunks) - 1)


def estimate_flash(graph: Graph, layers: Sequence[LayerCode], pool: ConstantPool, target: str,
                   application: str = "semihosting", code: TargetCode | None = None,
                   external: ExternalLayout | None = None,
                   spill: SpillKind = SpillKind()) -> FlashEstimate:
    """Flash of the firmware of `graph` on Cortex-M `target`, from emit_layers' output.

    `application` is the Cortex-M main (codegen.firmware.Io: semihosting, uart or none).
    Constants are exact to alignment; code comes from the kernels' linked sizes in
    mcuflow.hw.kernel_code (shared library routines counted once) plus a fitted run function;
    `code` replaces the packaged measurements of the target (while measuring them); the
    arrays of an `external` image are read from external storage, not flash, and its reading
    code is in the runtime (_external_runtime); `spill` says where and how spilled
    activations go.
    """
    code = code or target_code(target)
    tensors = len(graph.inputs) + len(graph.outputs)
    runtime = (_lookup(code.runtime, application, "application", target) + code.slack
               + _external_runtime(code, target, external))
    moved = external.symbols if external is not None else frozenset()
    return FlashEstimate(target, _constants(layers, pool, code, target, moved),
                         _code(layers, code, target)
                         + _spill_code(layers, code, target, spill, external),
                         runtime + code.per_tensor * max(tensors - 2, 0))
