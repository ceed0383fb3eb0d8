"""Build targets: the files around the generated model (driver, build scripts, startup, linker).

Every target shares the same model sources (mcuflow_model.c, mcuflow_weights.c, the kernels);
a target only adds its own driver and build files. The Cortex-M targets add a main using
semihosting, a startup file, a linker script sized by the board and a cross Makefile.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from mcuflow.codegen.firmware import (
    BOARD_HEADER,
    BOARD_MACHINES,
    QEMU_SEMIHOSTING,
    Firmware,
    Io,
    LinkerLayout,
    LinkerRegion,
    MemoryMap,
    board_header,
    board_layout,
    board_spill_ram,
    placement_sections,
    with_spill_ram,
)
from mcuflow.errors import McuflowError
from mcuflow.hw.board import Board, TierKind
from mcuflow.hw.memory_map import MemoryRegion


@dataclass(frozen=True)
class ModelSummary:
    """What a target needs to know about the generated model."""

    name: str
    model_sources: tuple[str, ...]
    arena_bytes: int
    weight_bytes: int
    board: Board | None = None
    firmware: Firmware = QEMU_SEMIHOSTING
    spill_ram: TierKind | None = None
    """The external RAM holding the model's spill area (render.ModelSources.spill_ram)."""


@dataclass(frozen=True)
class Target:
    """A named target.

    `files` returns its extra files (name -> text); `build` is the README's build instructions;
    `dsp` is true when the core has the Arm DSP extension (the emitters may then choose the
    SIMD kernels); `build_products` are the names its build scripts create in the project
    (what `make clean` removes), which regenerating the project may remove too.
    """

    name: str
    description: str
    files: Callable[[ModelSummary], dict[str, str]]
    build: str
    dsp: bool = False
    build_products: tuple[str, ...] = ()


TARGETS: dict[str, Target] = {}


def register_target(target: Target) -> Target:
    """Make a target available to `generate_project(..., target=name)`."""
    TARGETS[target.name] = target
    return target


def get_target(name: str) -> Target:
    """The registered target called `name`."""
    if name not in TARGETS:
        raise McuflowError(f"unknown target '{name}'",
                           f"known targets: {', '.join(sorted(TARGETS))}")
    return TARGETS[name]


def template(target: str, name: str) -> str:
    """The text of template file `name` of `target` (codegen/templates/<target>/<name>)."""
    return resources.files("mcuflow.codegen").joinpath("templates", target, name).read_text("ascii")


def fill(text: str, values: dict[str, str]) -> str:
    """Replace every @KEY@ of `text` by its value."""
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


RECORDS_HEADER = "mcuflow_records.h"
"""The drivers' one helper for records (every input, or output, of one inference in a row)."""


def _host_files(model: ModelSummary) -> dict[str, str]:
    sources = " ".join(model.model_sources)
    return {
        "main.c": template("host", "main.c"),
        RECORDS_HEADER: template("common", RECORDS_HEADER),
        "Makefile": fill(template("host", "Makefile"), {"MODEL_SOURCES": sources}),
        "CMakeLists.txt": fill(template("host", "CMakeLists.txt"), {"MODEL_SOURCES": sources}),
    }


HOST = register_target(Target(
    name="host",
    description="the machine running mcuflow (gcc or clang), for testing and benchmarking",
    files=_host_files,
    build=(
        "```sh\nmake                      # or: cmake -B build && cmake --build build\n"
        "./model input.bin output.bin   # raw bytes: one record per inference\n"
        "./model --bench 100 input.bin  # time per inference\n```"
    ),
    build_products=("model", "build"),
))


# --- Arm Cortex-M ------------------------------------------------------------------------------

CORTEX_M_CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic", "-ffunction-sections",
                   "-fdata-sections")
LINKER_SCRIPT = "mcuflow.ld"
CORTEX_M_LDFLAGS = ("-T", LINKER_SCRIPT, "-nostartfiles", "--specs=nano.specs",
                    "-Wl,--gc-sections")
CORTEX_M_DRIVER = ("main.c", "startup.c", "mcuflow_timing.c", "mcuflow_uart.c")
"""The application's C files (those a project has), compiled before the model's."""
CORTEX_M_BUILD_PRODUCTS = ("model.elf", "model-profile.elf", "output.bin", "report.txt", "build")
"""What the Cortex-M Makefile's `clean` removes."""
STACK_RESERVE_BYTES = 2048
QEMU_COMMON_FLAGS = ("-nographic", "-monitor", "none", "-serial", "none",
                     "-semihosting-config", "enable=on,target=native", "-icount", "shift=0")
_MPS2_RAMS = "ZBT SSRAM1 at 0x00000000 and ZBT SSRAM2/3 at 0x20000000, 4 MiB each"
_AN505_RAMS = ("the Secure aliases of SSRAM1 at 0x10000000 (4 MiB) and of SSRAM2/3 at "
               "0x38000000 (4 MiB)")
MIB = 1 << 20


@dataclass(frozen=True)
class CortexMCore:
    """A Cortex-M core: compiler flags and the QEMU machine whose memory map the build uses."""

    core: str
    cpu_flags: tuple[str, ...]
    dsp: bool
    machine: str
    flash_origin: int
    ram_origin: int
    flash_limit: int
    ram_limit: int
    memory_note: str
    psram_origin: int | None = None
    """Where the machine maps its 16 MiB PSRAM (QEMU hw/arm/mps2.c, the memory map comment),
    or None (the AN505 map is not modelled)."""

    @property
    def psram_halves(self) -> tuple[MemoryRegion, MemoryRegion]:
        """The PSRAM's lower half (an XIP image's window) and upper half (spilled activations).

        McuflowError on a machine without a known PSRAM.
        """
        if self.psram_origin is None:
            raise McuflowError(f"QEMU's {self.machine} ({self.core}) has no PSRAM mcuflow knows",
                               "run external memories on cortex-m0, m3, m4 or m7")
        half = PSRAM_BYTES // 2
        source = f"QEMU hw/arm/mps2.c: {self.machine} PSRAM (16 MiB)"
        return (MemoryRegion("psram", self.psram_origin, half, True, source + ", lower half"),
                MemoryRegion("psram", self.psram_origin + half, half, True,
                             source + ", upper half"))

    @property
    def qemu_flags(self) -> tuple[str, ...]:
        """qemu-system-arm options (everything but -kernel)."""
        return ("-machine", self.machine, *QEMU_COMMON_FLAGS)


PSRAM_BYTES = 16 * MIB
_PSRAM_ORIGINS = {"mps2-an385": 0x2100_0000, "mps2-an386": 0x2100_0000, "mps2-an500": 0x6000_0000}


def _core(core: str, fpu: str | None, dsp: bool, machine: str, secure: bool = False
          ) -> CortexMCore:
    float_flags = ("-mfloat-abi=soft",) if fpu is None else ("-mfloat-abi=hard", f"-mfpu={fpu}")
    origins = (0x1000_0000, 0x3800_0000) if secure else (0x0000_0000, 0x2000_0000)
    return CortexMCore(core, (f"-mcpu={core}", "-mthumb", *float_flags), dsp, machine,
                       *origins, 4 * MIB, 4 * MIB, _AN505_RAMS if secure else _MPS2_RAMS,
                       _PSRAM_ORIGINS.get(machine))


CORTEX_M: dict[str, CortexMCore] = {
    "cortex-m0": _core("cortex-m0", None, False, "mps2-an385"),
    "cortex-m0plus": _core("cortex-m0plus", None, False, "mps2-an385"),
    "cortex-m3": _core("cortex-m3", None, False, "mps2-an385"),
    "cortex-m4": _core("cortex-m4", "fpv4-sp-d16", True, "mps2-an386"),
    "cortex-m7": _core("cortex-m7", "fpv5-sp-d16", True, "mps2-an500"),
    "cortex-m33": _core("cortex-m33", "fpv5-sp-d16", True, "mps2-an505", secure=True),
}


RUNS_ON = {"cortex-m0plus": ("cortex-m0",)}
"""Cores whose boards also run a build for another core (ARMv6-M code on the M0+)."""


def board_target(board: Board, target: str | None) -> str:
    """The target of a build for `board`: its own core by default, which `target` must match.

    `host` is always allowed (portable C for the machine running mcuflow).
    """
    core = board.core.value
    if target is None:
        if core not in CORTEX_M:
            raise McuflowError(f"board '{board.id}' has no Cortex-M core ({core}); mcuflow builds "
                               "firmware for Cortex-M cores", "pass --target host for portable C")
        return core
    get_target(target)
    if target != "host" and target != core and target not in RUNS_ON.get(core, ()):
        raise McuflowError(f"--target {target} does not match board '{board.id}', whose core "
                           f"is a {core}", f"omit --target to build for the {core}, or pass "
                           "--target host")
    return target


def memory_sizes(core: CortexMCore, board: Board) -> tuple[int, int]:
    """FLASH and RAM lengths on QEMU's MPS2 map: the board's, within QEMU's memories.

    A board without on-chip flash runs from its memory-mapped (XIP) flash.
    """
    return (min(board.firmware_flash_bytes, core.flash_limit),
            min(board.sram_bytes, core.ram_limit))


def qemu_layout(core: CortexMCore, board: Board) -> LinkerLayout:
    """The board's flash and SRAM sizes at the addresses of QEMU's MPS2 machine."""
    flash, ram = memory_sizes(core, board)
    return LinkerLayout((LinkerRegion("FLASH", core.flash_origin, flash, "rx"),
                         LinkerRegion("RAM", core.ram_origin, ram, "rwx")), None, None,
                        f"those of QEMU's {core.machine} ({core.memory_note}); on {board.name} "
                        "itself, link with --memory-map board")


def firmware_layout(core: CortexMCore, board: Board, firmware: Firmware,
                    spill_ram: TierKind | None = None) -> LinkerLayout:
    """The linker layout `firmware` asks for on `board`.

    With `spill_ram`, a region for the spill area too: `firmware.spill_ram`, the board's region
    of that RAM on its own map, or on QEMU's the upper half of the machine's PSRAM.
    """
    if firmware.memory_map is MemoryMap.BOARD:
        layout = board_layout(board, firmware)
    elif firmware.arena_region or firmware.weights_region:
        raise McuflowError("--arena-section and --weights-section place data in the board's "
                           "own regions", "use them with --memory-map board")
    else:
        layout = qemu_layout(core, board)
    if spill_ram is None:
        return layout
    if firmware.spill_ram is not None:
        return with_spill_ram(layout, firmware.spill_ram)
    if firmware.memory_map is MemoryMap.BOARD:
        return with_spill_ram(layout, board_spill_ram(board, spill_ram))
    return with_spill_ram(layout, core.psram_halves[1])


_APPLICATIONS = {Io.SEMIHOSTING: "main.c", Io.UART: "main_uart.c", Io.NONE: "main_none.c"}
_SUPPORT = ("startup.c", "mcuflow_timing.c", "mcuflow_cortexm.h", "mcuflow_arena_records.h",
            "arm-none-eabi.cmake")


def _cortex_m_files(core: CortexMCore, model: ModelSummary) -> dict[str, str]:
    board, firmware = model.board, model.firmware
    if board is None:
        raise McuflowError(f"target {core.core} needs a board for its flash and SRAM sizes",
                           "pass --board (see `mcuflow boards`)")
    layout = firmware_layout(core, board, firmware, model.spill_ram)
    files = {"main.c": template("cortex-m", _APPLICATIONS[firmware.io])}
    files |= {name: template("cortex-m", name) for name in _SUPPORT}
    files[RECORDS_HEADER] = template("common", RECORDS_HEADER)
    if firmware.io is Io.UART:
        files |= {"mcuflow_uart.c": template("cortex-m", "mcuflow_uart.c"),
                  BOARD_HEADER: board_header(board)}
    sources = (*sorted(n for n in files if n.endswith(".c")), *model.model_sources)
    values = _build_values(core, board, firmware, layout, sources)
    files |= {name: fill(template("cortex-m", name), values)
              for name in (LINKER_SCRIPT, "Makefile", "CMakeLists.txt")}
    return files


def _build_values(core: CortexMCore, board: Board, firmware: Firmware, layout: LinkerLayout,
                  sources: tuple[str, ...]) -> dict[str, str]:
    defines = ("-DMCUFLOW_SEMIHOSTING=1",) if firmware.io is Io.SEMIHOSTING else ()
    return {
        "CORE": core.core, "BOARD": board.id, "MAP_NOTE": layout.note,
        "MEMORY": "\n".join(r.line() for r in layout.regions),
        "PLACED_SECTIONS": placement_sections(layout),
        "STACK_RESERVE": str(STACK_RESERVE_BYTES), "CPU_FLAGS": " ".join(core.cpu_flags),
        "CFLAGS": " ".join((*CORTEX_M_CFLAGS, *defines)),
        "LDFLAGS": " ".join(CORTEX_M_LDFLAGS), "SOURCES": " ".join(sources),
        "RUN": _run_rule(core, board, firmware),
    }


def _run_rule(core: CortexMCore, board: Board, firmware: Firmware) -> str:
    """The Makefile's `run` and `profile` recipes: QEMU where a machine runs this build."""
    if firmware.memory_map is MemoryMap.QEMU and firmware.io is Io.SEMIHOSTING:
        qemu = f"qemu-system-arm {' '.join(core.qemu_flags)}"
        return (f"# Reads input.bin, writes output.bin and report.txt in this directory.\n"
                f"run: model.elf\n\t{qemu} -kernel model.elf\n\n"
                f"profile: model-profile.elf\n\t{qemu} -kernel model-profile.elf\n")
    machine = BOARD_MACHINES.get(board.id)
    if firmware.memory_map is MemoryMap.BOARD and firmware.io is Io.UART and machine:
        serials = " ".join(machine.serial_args)
        return (f"# QEMU {machine.machine} emulates the board's MCU; its {board.console.name} is "
                "this terminal (Ctrl-A x quits).\n"
                f"run: model.elf\n\tqemu-system-arm -machine {machine.machine} -nographic "
                f"-monitor none {serials} -kernel model.elf\n")
    return ("run: model.elf\n\t@echo 'no QEMU machine runs this build: flash model.elf to the "
            "board with your probe (openocd, pyocd, st-flash...)'\n")


def _cortex_m_build(core: CortexMCore) -> str:
    return (
        "```sh\n"
        f"make                 # arm-none-eabi-gcc {' '.join(core.cpu_flags)} -> model.elf\n"
        "cmake -B build -DCMAKE_TOOLCHAIN_FILE=arm-none-eabi.cmake && cmake --build build\n"
        "make run             # on QEMU, where a machine runs this build (see the Makefile)\n"
        "```\n\n"
        "main.c is the application chosen with --io: `semihosting` reads input.bin and writes\n"
        "output.bin and report.txt through the debugger (QEMU), `uart` talks over the board's\n"
        "console UART (see the comment at its top), `none` runs the model in a loop for a\n"
        "debugger to watch. mcuflow.ld says whose address map it uses (--memory-map)."
    )


def _register_cortex_m(core: CortexMCore) -> Target:
    name = f"Cortex-{core.core.split('-')[1].upper()}"
    return register_target(Target(
        name=core.core,
        description=f"Arm {name} bare metal (arm-none-eabi-gcc), run on QEMU {core.machine}",
        files=functools.partial(_cortex_m_files, core),
        build=_cortex_m_build(core),
        dsp=core.dsp,
        build_products=CORTEX_M_BUILD_PRODUCTS,
    ))


for _core_spec in CORTEX_M.values():
    _register_cortex_m(_core_spec)
