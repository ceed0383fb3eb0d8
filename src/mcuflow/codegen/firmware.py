"""Cortex-M firmware around a model: address map and linker script, application, board header."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mcuflow.errors import McuflowError
from mcuflow.hw.board import Board, TierKind
from mcuflow.hw.memory_map import CODE_REGION, RAM_REGION, MemoryRegion, UartKind, region

ARENA_SECTION = ".bss.mcuflow_arena"
"""The arena's input section (MCUFLOW_ARENA_PLACE in mcuflow_common.h); .bss by default."""
WEIGHTS_SECTION = ".rodata.mcuflow_weights"
"""The weights' input section (MCUFLOW_WEIGHTS_PLACE); .rodata by default."""
SPILL_SECTION = ".bss.mcuflow_spill"
"""The input section of a spill area in external RAM (MCUFLOW_SPILL_PLACE)."""
SPILL_OUTPUT = ".mcuflow_spill"
"""The output section the linker script gathers SPILL_SECTION into."""
SPILL_REGION = "EXTRAM"
"""The linker script's region for that external RAM."""
BOARD_HEADER = "mcuflow_board.h"
_HINT_REGIONS = "`mcuflow boards --json` lists each board's regions"


class Io(StrEnum):
    """What the generated application does with its inputs and outputs."""

    SEMIHOSTING = "semihosting"
    UART = "uart"
    NONE = "none"


class MemoryMap(StrEnum):
    """Whose address map the linker script uses."""

    BOARD = "board"
    QEMU = "qemu"


@dataclass(frozen=True)
class Firmware:
    """How a Cortex-M project is built around the model.

    `memory_map`: the board's own map (flash at 0x0800_0000 on an STM32...) or the QEMU MPS2
    machine's that `verify --target` runs on. `io`: the application (records through
    semihosting files, over the board's UART, or none). `arena_region` and `weights_region`
    name board regions (e.g. 'dtcm', 'ccm', 'qspi') for the arena and the weights.
    """

    memory_map: MemoryMap = MemoryMap.QEMU
    io: Io = Io.SEMIHOSTING
    arena_region: str | None = None
    weights_region: str | None = None
    xip: MemoryRegion | None = None
    """The window an external weights image is read from by memcpy (memory-mapped storage),
    whatever the map: QEMU's PSRAM holding the image, say. None: the board's region for the
    plan's tier (XIP_REGIONS) on the board's own map, else a file through semihosting."""
    spill_ram: MemoryRegion | None = None
    """The external RAM a spill area in RAM is linked into, whatever the map. None: the board's
    region of the plan's spill tier (RAM_REGIONS) on its own map, else the upper half of the
    QEMU machine's PSRAM."""


QEMU_SEMIHOSTING = Firmware()
"""The firmware `verify --target` runs: QEMU's MPS2 map, records through semihosting files."""


XIP_REGIONS: dict[TierKind, str] = {TierKind.QSPI_FLASH: "qspi"}
"""The board region a memory-mapped external tier is read through (execute in place)."""
RAM_REGIONS: dict[TierKind, str] = {TierKind.SDRAM: "sdram", TierKind.PSRAM: "psram"}
"""The board region of an external RAM tier that spilled activations may live in."""


def xip_region(board: Board | None, firmware: Firmware, tier: str) -> MemoryRegion | None:
    """The window the external image on `tier` is read from, or None (a storage driver).

    `firmware.xip` when given; on the board's own map, the region XIP_REGIONS names for a
    memory-mapped tier of `board`; otherwise None.
    """
    if firmware.xip is not None:
        return firmware.xip
    kind = TierKind(tier)
    if (board is None or firmware.memory_map is not MemoryMap.BOARD or kind not in XIP_REGIONS
            or not board.has_tier(kind) or not board.tier(kind).memory_mapped):
        return None
    return region(board.regions, XIP_REGIONS[kind])


@dataclass(frozen=True)
class BoardMachine:
    """A QEMU machine emulating a board's MCU: its name and the -serial index of the console."""

    machine: str
    console_serial: int

    @property
    def serial_args(self) -> tuple[str, ...]:
        """qemu-system-arm options: the console USART on stdio, the USARTs before it on null."""
        return (*("-serial", "null") * self.console_serial, "-serial", "stdio")


BOARD_MACHINES: dict[str, BoardMachine] = {
    "nucleo-f207zg": BoardMachine("netduino2", 2),
    "nucleo-f429zi": BoardMachine("netduinoplus2", 2),
}
"""QEMU's STM32F205 (netduino2) and STM32F405 (netduinoplus2) have the flash, SRAM and USART
map of these boards' parts; their USARTs take -serial in the order USART1, USART2, USART3..."""


@dataclass(frozen=True)
class LinkerRegion:
    """One MEMORY line of the linker script."""

    name: str
    origin: int
    length: int
    attributes: str

    def line(self) -> str:
        """`NAME (rwx) : ORIGIN = 0x..., LENGTH = n` (the form toolchain.arm parses)."""
        return (f"    {self.name} ({self.attributes}) : ORIGIN = 0x{self.origin:08X}, "
                f"LENGTH = {self.length}")


@dataclass(frozen=True)
class LinkerLayout:
    """The linker script's regions and where the arena and the weights go."""

    regions: tuple[LinkerRegion, ...]
    arena: str | None
    weights: str | None
    note: str
    spill: str | None = None
    """The region of a spill area in external RAM (SPILL_REGION), or None."""


def with_spill_ram(layout: LinkerLayout, ram: MemoryRegion) -> LinkerLayout:
    """`layout` with SPILL_REGION at `ram`, where the spill area of external RAM goes."""
    setup = f"; {ram.name}: set up {ram.needs_init} before using it" if ram.needs_init else ""
    return LinkerLayout((*layout.regions, LinkerRegion(SPILL_REGION, ram.origin, ram.size_bytes,
                                                       "rw")),
                        layout.arena, layout.weights, layout.note + setup, SPILL_REGION)


def board_spill_ram(board: Board, kind: TierKind) -> MemoryRegion:
    """The board's region of the external RAM `kind` (RAM_REGIONS), or McuflowError."""
    found = region(board.regions, RAM_REGIONS[kind]) if kind in RAM_REGIONS else None
    if found is None or not found.writable:
        raise McuflowError(f"board '{board.id}' has no {kind.value} region for the spilled "
                           "activations", _HINT_REGIONS)
    return found


def board_layout(board: Board, firmware: Firmware) -> LinkerLayout:
    """FLASH and RAM at the board's own addresses, plus the regions the placement uses."""
    if not board.regions:
        raise McuflowError(f"board '{board.id}' has no address map in the board database",
                           "use --memory-map qemu, or add [[boards.<id>.regions]] to a "
                           "--board-file")
    flash, ram = region(board.regions, CODE_REGION), region(board.regions, RAM_REGION)
    assert flash is not None and ram is not None
    used = [LinkerRegion("FLASH", flash.origin, flash.size_bytes, "rx")]
    arena = _placed(board, firmware.arena_region, "arena", writable=True)
    weights = _placed(board, firmware.weights_region, "weights", writable=False)
    if arena is not None and ram.contains(arena):
        ram = _carve(ram, arena, board.id)
    used.append(LinkerRegion("RAM", ram.origin, ram.size_bytes, "rwx"))
    used += [LinkerRegion(r.name.upper(), r.origin, r.size_bytes, "rw" if r.writable else "r")
             for r in (arena, weights) if r is not None]
    notes = [f"{r.name}: set up {r.needs_init} before using it" for r in (arena, weights)
             if r is not None and r.needs_init]
    note = "; ".join([f"the address map of {board.name} ({board.mcu})", *notes])
    return LinkerLayout(tuple(used), arena and arena.name.upper(),
                        weights and weights.name.upper(), note)


def _placed(board: Board, name: str | None, what: str, writable: bool) -> MemoryRegion | None:
    if name is None:
        return None
    found = region(board.regions, name)
    choices = ", ".join(r.name for r in board.regions
                        if r.writable == writable and r.name not in (CODE_REGION, RAM_REGION))
    if found is None or found.name in (CODE_REGION, RAM_REGION) or found.writable != writable:
        kind = "RAM" if writable else "flash"
        raise McuflowError(f"board '{board.id}' has no {kind} region '{name}' for the {what}",
                           f"choose one of: {choices}" if choices else _HINT_REGIONS)
    return found


def _carve(ram: MemoryRegion, inner: MemoryRegion, board_id: str) -> MemoryRegion:
    """`ram` without `inner`, which must sit at its start or its end."""
    if inner.origin == ram.origin:
        return MemoryRegion(ram.name, inner.end, ram.end - inner.end, True, ram.source)
    if inner.end == ram.end:
        return MemoryRegion(ram.name, ram.origin, inner.origin - ram.origin, True, ram.source)
    raise McuflowError(f"region '{inner.name}' lies in the middle of '{ram.name}' on "
                       f"'{board_id}'", "place the arena in another region")


def placement_sections(layout: LinkerLayout) -> str:
    """Output sections that send the arena and the weights to their regions (before .bss)."""
    blocks = []
    if layout.weights is not None:
        blocks.append(_output_section(".mcuflow_weights", "", WEIGHTS_SECTION, layout.weights))
    if layout.arena is not None:
        blocks.append(_output_section(".mcuflow_arena", " (NOLOAD)", ARENA_SECTION,
                                      layout.arena))
    if layout.spill is not None:
        blocks.append(_output_section(SPILL_OUTPUT, " (NOLOAD)", SPILL_SECTION, layout.spill))
    return "\n".join(blocks)


def _output_section(name: str, kind: str, inputs: str, region_name: str) -> str:
    return (f"    {name}{kind} :\n    {{\n        . = ALIGN(16);\n        *({inputs})\n"
            f"    }} > {region_name}\n")


def board_header(board: Board) -> str:
    """mcuflow_board.h: the console UART's kind, address, divisor and set-up writes."""
    console = board.console
    if console is None:
        raise McuflowError(f"board '{board.id}' has no console UART in the board database",
                           "use --io semihosting or --io none")
    kinds = sorted({kind.c_name for kind in UartKind})
    writes = ", ".join(f"{{0x{w.address:08X}u, 0x{w.mask:08X}u, 0x{w.value:08X}u}}"
                       for w in console.setup)
    lines = [
        f"/* Board facts generated by mcuflow for {board.name} ({board.mcu}): the console UART,",
        f" * {console.name} ({console.kind.value}) at {console.baud} baud. Source: the board",
        " * database (boards.toml). */",
        "#ifndef MCUFLOW_BOARD_H",
        "#define MCUFLOW_BOARD_H",
        "",
        *(f"#define MCUFLOW_UART_{name} {index + 1}" for index, name in enumerate(kinds)),
        f"#define MCUFLOW_UART_KIND MCUFLOW_UART_{console.kind.c_name}",
        f"#define MCUFLOW_UART_BASE 0x{console.base:08X}u",
        f"/* {_divisor_formula(console.kind)} with the UART clock at {console.clock_hz} Hz, as "
        "reset leaves it */",
        "#ifndef MCUFLOW_UART_DIVISOR",
        f"#define MCUFLOW_UART_DIVISOR {console.divisor}u",
        "#endif",
        "/* {address, mask, value}: clock enables and pin multiplexing, before the UART */",
        f"#define MCUFLOW_UART_SETUP {{{writes}}}",
        "",
        "#endif /* MCUFLOW_BOARD_H */",
        "",
    ]
    return "\n".join(lines)


def _divisor_formula(kind: UartKind) -> str:
    return {UartKind.STM32_LPUART: "BRR = 256 x clock / baud",
            UartKind.NRF: "BAUDRATE = baud x 2^32 / 16 MHz, in steps of 0x1000",
            UartKind.PL011: "IBRD.FBRD = clock / (16 x baud), in 64ths"}.get(
        kind, "BRR = clock / baud")
