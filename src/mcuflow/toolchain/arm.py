"""Arm Cortex-M cross build of a generated project (arm-none-eabi-gcc) and its real ELF sizes."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from mcuflow.codegen.firmware import SPILL_OUTPUT
from mcuflow.codegen.targets import (
    CORTEX_M,
    CORTEX_M_CFLAGS,
    CORTEX_M_DRIVER,
    CORTEX_M_LDFLAGS,
    LINKER_SCRIPT,
    STACK_RESERVE_BYTES,
    CortexMCore,
)
from mcuflow.errors import McuflowError, ToolchainError

CROSS_COMPILER = "arm-none-eabi-gcc"
DEBIAN_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
BUILD_TIMEOUT_S = 600
STACK_SECTION = ".stack"
_OVERFLOW = re.compile(r"region [`']?(\w+)'? overflowed by (\d+) bytes")
_REGION = re.compile(r"^\s*(\w+) \(\w+\) : ORIGIN = \w+, LENGTH = (\d+)", re.M)
_BOARD = re.compile(r" on board (\S+)\.$", re.M)
_REGION_WHAT = {
    "FLASH": "flash (code, weights and constants)",
    "RAM": f"SRAM (arena, driver buffers and a {STACK_RESERVE_BYTES:,}-byte stack reserve)",
}
_REGION_HINT = {
    "FLASH": "choose a board with more flash, or shrink the weights (fewer channels, pruning)",
    "RAM": "choose a board with more SRAM, or shrink the activations; `mcuflow analyze` shows "
           "the peak per layer",
}


def cortex_m_core(target: str) -> CortexMCore:
    """The Cortex-M core description of target `target` (e.g. 'cortex-m4')."""
    if target not in CORTEX_M:
        raise McuflowError(f"'{target}' is not a Cortex-M target",
                           f"Cortex-M targets: {', '.join(CORTEX_M)}")
    return CORTEX_M[target]


def find_cross_compiler() -> str:
    """Path of arm-none-eabi-gcc, or a ToolchainError naming the Debian packages."""
    path = shutil.which(CROSS_COMPILER)
    if path is None:
        raise ToolchainError(f"the Arm cross compiler '{CROSS_COMPILER}' is not installed",
                             f"install it: sudo apt-get install {DEBIAN_PACKAGES}")
    return path


def _linker_facts(project_dir: Path) -> tuple[str, dict[str, int]]:
    """The board named by the project's linker script and the LENGTH of its regions."""
    text = (project_dir / LINKER_SCRIPT).read_text("ascii")
    board = _BOARD.search(text)
    sizes = {name: int(length) for name, length in _REGION.findall(text)}
    return (board.group(1) if board else "the board"), sizes


def _link_error(project_dir: Path, log: str) -> McuflowError | None:
    """The user-facing error of a linker region overflow, or None for any other failure."""
    overflows = _OVERFLOW.findall(log)
    if not overflows:
        return None
    board, sizes = _linker_facts(project_dir)
    parts = [f"{_REGION_WHAT.get(region, region)} overflows by {int(extra):,} bytes (the board "
             f"has {sizes.get(region, 0):,})" for region, extra in overflows]
    return McuflowError(f"the model does not fit {board}: {'; '.join(parts)}",
                        _REGION_HINT.get(overflows[0][0], "choose a larger board"))


QEMU_DEFINES = ("-DMCUFLOW_SEMIHOSTING=1", "-DMCUFLOW_RECORD_BATCHES=1")
"""Builds run on QEMU end through semihosting, after one batch of records (--io uart)."""


def compiler_flags(target: str) -> list[str]:
    """The C flags of a QEMU build: the core's, the Makefile's, -Werror and QEMU_DEFINES."""
    return [*cortex_m_core(target).cpu_flags, *CORTEX_M_CFLAGS, "-Werror", *QEMU_DEFINES]


def cross_sources(project_dir: Path) -> list[str]:
    """The C files of a Cortex-M project: the application's first, then the model's."""
    present = sorted(p.name for p in project_dir.glob("*.c"))
    return [*(n for n in CORTEX_M_DRIVER if n in present),
            *(n for n in present if n not in CORTEX_M_DRIVER)]


def build_cortexm(project_dir: Path, target: str, *, profile: bool = False,
                  output: Path | None = None) -> Path:
    """Cross-compile and link a Cortex-M project to run on QEMU; returns the ELF.

    Flags: the core's (`-mcpu=... -mthumb`, float ABI and FPU) and the Makefile's C flags plus
    `-Werror` and QEMU_DEFINES; `-DMCUFLOW_PROFILE` when `profile` (per-layer timer marks). A
    model that overflows the board's flash or SRAM raises McuflowError naming the region and
    the excess.
    """
    project_dir = Path(project_dir).absolute()
    cc = find_cross_compiler()
    if output is None:
        output = project_dir / "build" / f"model-{target}{'-profile' if profile else ''}.elf"
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [cc, *compiler_flags(target), *(("-DMCUFLOW_PROFILE",) if profile else ()),
               *CORTEX_M_LDFLAGS,
               "-o", str(output), *cross_sources(project_dir), "-lm"]
    try:
        result = subprocess.run(command, cwd=project_dir, capture_output=True, text=True,
                                timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"{CROSS_COMPILER} took longer than {BUILD_TIMEOUT_S} s") from None
    if result.returncode != 0:
        log = result.stderr + result.stdout
        error = _link_error(project_dir, log)
        if error is not None:
            raise error
        raise ToolchainError(f"{CROSS_COMPILER} build of {project_dir.name} for {target} failed "
                             f"(exit {result.returncode}): {log.strip()[-3000:]}")
    return output


@dataclass(frozen=True)
class ElfSizes:
    """Bytes of a linked firmware by kind of section (the stack reserve excluded)."""

    text: int  # executable code
    rodata: int  # read-only data: weights, tables, vector table
    data: int  # initialised RAM (its initial image also occupies flash)
    bss: int  # zeroed RAM: the arena and the driver's buffers
    external_ram: int = 0  # the spill area in external RAM (SDRAM, PSRAM), not the MCU's SRAM

    @property
    def flash_bytes(self) -> int:
        """text + rodata + data: everything stored in flash."""
        return self.text + self.rodata + self.data

    @property
    def static_ram_bytes(self) -> int:
        """data + bss: RAM in use before the stack."""
        return self.data + self.bss


def elf_sizes(elf: Path) -> ElfSizes:
    """Section sizes of a linked ELF, read with pyelftools from its allocated sections."""
    sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0, "external_ram": 0}
    with Path(elf).open("rb") as handle:
        for section in ELFFile(handle).iter_sections():
            flags = section["sh_flags"]
            if not flags & SH_FLAGS.SHF_ALLOC or section.name == STACK_SECTION:
                continue
            if section.name == SPILL_OUTPUT:
                kind = "external_ram"
            elif section["sh_type"] == "SHT_NOBITS":
                kind = "bss"
            elif flags & SH_FLAGS.SHF_EXECINSTR:
                kind = "text"
            elif flags & SH_FLAGS.SHF_WRITE:
                kind = "data"
            else:
                kind = "rodata"
            sizes[kind] += section["sh_size"]
    return ElfSizes(**sizes)
