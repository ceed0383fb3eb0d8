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

from mcuflow.errors import McuflowError
from mcuflow.hw.board import Board


@dataclass(frozen=True)
class ModelSummary:
    """What a target needs to know about the generated model."""

    name: str
    model_sources: tuple[str, ...]
    arena_bytes: int
    weight_bytes: int
    board: Board | None = None


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


def _host_files(model: ModelSummary) -> dict[str, str]:
    sources = " ".join(model.model_sources)
    return {
        "main.c": template("host", "main.c"),
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
                   "-fdata-sections", "-DMCUFLOW_SEMIHOSTING=1")
LINKER_SCRIPT = "mcuflow.ld"
CORTEX_M_LDFLAGS = ("-T", LINKER_SCRIPT, "-nostartfiles", "--specs=nano.specs",
                    "-Wl,--gc-sections")
CORTEX_M_DRIVER = ("main.c", "startup.c", "mcuflow_timing.c")
CORTEX_M_BUILD_PRODUCTS = ("model.elf", "model-profile.elf", "output.bin", "report.txt")
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

    @property
    def qemu_flags(self) -> tuple[str, ...]:
        """qemu-system-arm options (everything but -kernel)."""
        return ("-machine", self.machine, *QEMU_COMMON_FLAGS)


def _core(core: str, fpu: str | None, dsp: bool, machine: str, secure: bool = False
          ) -> CortexMCore:
    float_flags = ("-mfloat-abi=soft",) if fpu is None else ("-mfloat-abi=hard", f"-mfpu={fpu}")
    origins = (0x1000_0000, 0x3800_0000) if secure else (0x0000_0000, 0x2000_0000)
    return CortexMCore(core, (f"-mcpu={core}", "-mthumb", *float_flags), dsp, machine,
                       *origins, 4 * MIB, 4 * MIB, _AN505_RAMS if secure else _MPS2_RAMS)


CORTEX_M: dict[str, CortexMCore] = {
    "cortex-m0": _core("cortex-m0", None, False, "mps2-an385"),
    "cortex-m3": _core("cortex-m3", None, False, "mps2-an385"),
    "cortex-m4": _core("cortex-m4", "fpv4-sp-d16", True, "mps2-an386"),
    "cortex-m7": _core("cortex-m7", "fpv5-sp-d16", True, "mps2-an500"),
    "cortex-m33": _core("cortex-m33", "fpv5-sp-d16", True, "mps2-an505", secure=True),
}


def memory_sizes(core: CortexMCore, board: Board) -> tuple[int, int]:
    """FLASH and RAM lengths of the linker script: the board's, within QEMU's memories.

    A board without on-chip flash runs from its memory-mapped (XIP) flash.
    """
    flash = board.flash_bytes or board.weights_tier.size_bytes
    return min(flash, core.flash_limit), min(board.sram_bytes, core.ram_limit)


def _cortex_m_files(core: CortexMCore, model: ModelSummary) -> dict[str, str]:
    if model.board is None:
        raise McuflowError(f"target {core.core} needs a board for its flash and SRAM sizes",
                           "pass --board (see `mcuflow boards`)")
    flash, ram = memory_sizes(core, model.board)
    values = {
        "CORE": core.core, "BOARD": model.board.id, "MACHINE": core.machine,
        "ORIGIN_NOTE": core.memory_note, "FLASH_ORIGIN": f"0x{core.flash_origin:08X}",
        "RAM_ORIGIN": f"0x{core.ram_origin:08X}", "FLASH_BYTES": str(flash),
        "RAM_BYTES": str(ram), "STACK_RESERVE": str(STACK_RESERVE_BYTES),
        "CPU_FLAGS": " ".join(core.cpu_flags), "CFLAGS": " ".join(CORTEX_M_CFLAGS),
        "LDFLAGS": " ".join(CORTEX_M_LDFLAGS),
        "SOURCES": " ".join((*CORTEX_M_DRIVER, *model.model_sources)),
        "QEMU_FLAGS": " ".join(core.qemu_flags),
    }
    names = (*CORTEX_M_DRIVER, "mcuflow_cortexm.h", LINKER_SCRIPT, "Makefile")
    return {name: fill(template("cortex-m", name), values) for name in names}


def _cortex_m_build(core: CortexMCore) -> str:
    return (
        "```sh\n"
        f"make                 # arm-none-eabi-gcc {' '.join(core.cpu_flags)} -> model.elf\n"
        "# put the input records (raw bytes, inputs in order) in input.bin, then:\n"
        f"make run             # QEMU {core.machine}: writes output.bin and report.txt\n"
        "make profile         # the same with per-layer SysTick readings in report.txt\n"
        "```\n\n"
        "The driver (main.c) talks to the host through Arm semihosting, so on a real board it\n"
        "needs a debugger attached; mcuflow.ld places flash and RAM where QEMU has them."
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
