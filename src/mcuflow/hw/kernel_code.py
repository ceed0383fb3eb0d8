"""Linked flash bytes of the generated C on each Cortex-M target: kernels, structs, runtime."""

from __future__ import annotations

import functools
import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources

from mcuflow.errors import McuflowError

DATA_FILE = "kernel_code.toml"
REMEASURE = "python bench/kernel_code.py --write"
APPLICATIONS = ("semihosting", "uart", "none")
"""The Cortex-M applications (codegen.firmware.Io values) whose runtime is measured."""


@dataclass(frozen=True)
class KernelCode:
    """Flash bytes of one kernel function once linked.

    `code` counts the sections only this kernel pulls in (its function, its private static
    helpers and library routines); `support` names the sections it shares with other kernels
    (static helpers of its file, libgcc and libm routines), whose bytes are counted once per
    firmware in TargetCode.support.
    """

    code: int
    support: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunFit:
    """Bytes the model's run function adds, fitted: base + call * calls + argument * arguments."""

    base: float
    call: float
    argument: float

    def bytes(self, calls: int, arguments: int) -> int:
        """Estimated bytes of a run function making `calls` kernel calls with `arguments`."""
        if calls == 0:
            return 0
        return max(round(self.base + self.call * calls + self.argument * arguments), 0)


@dataclass(frozen=True)
class TargetCode:
    """The flash facts of one Cortex-M target, measured by mcuflow.toolchain.code_size.

    `runtime` is, per application, the firmware of a model with one input and one output whose
    steps run no kernel (startup, driver, timing, the model's invoke function, libc);
    `per_tensor` the bytes each further model input or output adds; `slack` what the sum of
    the parts may miss (alignment padding between sections), so that an estimate does not
    undercount; `structs` sizeof each kernel parameter struct; `external`, for a plain and an
    encrypted external image, what reading one chunk of constants from it adds to the firmware
    (the storage interface and the shipped semihosting storage, the image check and chunk
    functions, and for an encrypted image the AES-CMAC/CTR code and the key hook), and
    `per_chunk` what each further chunk adds (its table row and its read).
    """

    runtime: dict[str, int]
    per_tensor: int
    slack: int
    run: RunFit
    structs: dict[str, int]
    kernels: dict[str, KernelCode]
    support: dict[str, int] = field(default_factory=dict)
    external: dict[str, int] = field(default_factory=dict)
    per_chunk: int = 0
    spill: dict[str, int] = field(default_factory=dict)
    """What spilled activations add: `storage` (the storage code with reads and writes, beside
    the first access) and `access` (each read or write statement of the run function); the
    other kinds' keys are code_size._spill's, `beside_image` and `sealed_beside_image` what
    the storage (and the AES) already linked for an external image leaves to add."""


@dataclass(frozen=True)
class FlashEstimate:
    """Flash bytes of a model's firmware on one Cortex-M target, as the linker will place it.

    `constants`: the emitted constant arrays (16-byte aligned) and parameter structs; `code`:
    the kernels called, the library routines they share and the model's run function;
    `runtime`: startup, driver, timing, libc and the target's slack for alignment padding.
    """

    target: str
    constants: int
    code: int
    runtime: int

    @property
    def total(self) -> int:
        """Everything the linker puts in flash (text + rodata + data)."""
        return self.constants + self.code + self.runtime


def _kernel_code(table: dict) -> KernelCode:
    return KernelCode(table["code"], tuple(table.get("support", ())))


def _target_code(table: dict) -> TargetCode:
    return TargetCode(dict(table["runtime"]), table["per_tensor"], table["slack"],
                      RunFit(**table["run"]),
                      dict(table["structs"]),
                      {name: _kernel_code(entry) for name, entry in table["kernels"].items()},
                      dict(table.get("support", {})), dict(table["external"]),
                      table["per_chunk"], dict(table["spill"]))


def load_table(text: str) -> tuple[str, dict[str, TargetCode]]:
    """The toolchain that measured a kernel_code.toml text, and its targets."""
    data = tomllib.loads(text)
    toolchain = data.pop("toolchain")
    return toolchain, {target: _target_code(table) for target, table in data.items()}


@functools.cache
def _packaged() -> tuple[str, dict[str, TargetCode]]:
    return load_table(resources.files("mcuflow.hw").joinpath(DATA_FILE).read_text("utf-8"))


def target_code(target: str) -> TargetCode:
    """The measured flash facts of Cortex-M target `target` (e.g. 'cortex-m4')."""
    tables = _packaged()[1]
    if target not in tables:
        raise McuflowError(f"no code sizes for target '{target}'",
                           f"measured targets: {', '.join(tables)}")
    return tables[target]


def measured_toolchain() -> str:
    """The compiler version the packaged figures were measured with."""
    return _packaged()[0]


def _value(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(value)


def _key(key: str) -> str:
    bare = key.replace("-", "").replace("_", "").isalnum()
    return key if bare else json.dumps(key)


def _kernel_entry(code: KernelCode) -> dict[str, object]:
    return {"code": code.code, **({"support": list(code.support)} if code.support else {})}


def dump_table(toolchain: str, tables: dict[str, TargetCode], comment: str) -> str:
    """kernel_code.toml text of `tables` (what load_table reads), `comment` at its top."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    lines += ["", f"toolchain = {_value(toolchain)}"]
    for target, code in tables.items():
        lines += ["", f"[{target}]", f"runtime = {_value(code.runtime)}",
                  f"per_tensor = {code.per_tensor}", f"slack = {code.slack}",
                  f"run = {_value(vars(code.run))}", f"external = {_value(code.external)}",
                  f"per_chunk = {code.per_chunk}", f"spill = {_value(code.spill)}", "",
                  f"[{target}.structs]"]
        lines += [f"{_key(k)} = {v}" for k, v in code.structs.items()]
        lines += ["", f"[{target}.kernels]"]
        lines += [f"{_key(k)} = {_value(_kernel_entry(v))}" for k, v in code.kernels.items()]
        lines += ["", f"[{target}.support]"]
        lines += [f"{_key(k)} = {v}" for k, v in code.support.items()]
    return "\n".join(lines) + "\n"
