"""Boards and their memory tiers, loaded and validated from boards.toml or a user board file."""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import asdict, dataclass
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from pathlib import Path
from statistics import median
from typing import Any

from mcuflow.errors import BoardError
from mcuflow.frontends.files import parse_toml, read_toml
from mcuflow.hw.memory_map import (
    ADDRESS_LIMIT,
    CODE_REGION,
    RAM_REGION,
    Console,
    MemoryRegion,
    RegisterWrite,
    UartKind,
    check_regions,
    region,
)

SCHEMA_HINT = "see the packaged boards.toml (src/mcuflow/hw/boards.toml) for the schema"
MAX_BOARD_FILE_BYTES = 1 << 20
"""A board file describes a few boards in a few kilobytes (the packaged one is about 40 KB)."""
MAX_BOARD_DEPTH = 8
"""Nesting of tables and arrays: the schema needs 5 (file, boards, board, tiers, tier)."""
MAX_BOARD_NUMBER = 1e15
"""No figure of a board comes near this (sizes of SD cards are ~1e11 bytes); derived figures
(power = current x voltage) then stay finite."""


class Core(StrEnum):
    """CPU cores the cost model has coefficients for."""

    CORTEX_M0 = "cortex-m0"
    CORTEX_M0PLUS = "cortex-m0plus"
    CORTEX_M3 = "cortex-m3"
    CORTEX_M4 = "cortex-m4"
    CORTEX_M7 = "cortex-m7"
    CORTEX_M33 = "cortex-m33"
    XTENSA_LX7 = "xtensa-lx7"


class Fpu(StrEnum):
    """Floating-point unit: none, single precision, double precision."""

    NONE = "none"
    SP = "sp"
    DP = "dp"


class TierKind(StrEnum):
    """A level of a board's memory hierarchy."""

    SRAM = "sram"
    ONCHIP_FLASH = "onchip_flash"
    QSPI_FLASH = "qspi_flash"
    SD_CARD = "sd_card"
    PSRAM = "psram"
    SDRAM = "sdram"

    @property
    def volatile(self) -> bool:
        """True for RAM tiers, whose content is lost when power is removed."""
        return self in (TierKind.SRAM, TierKind.PSRAM, TierKind.SDRAM)


@dataclass(frozen=True)
class MemoryTier:
    """One memory of a board: size, bandwidths (bytes/s), energies (nJ/B), write constraints."""

    kind: TierKind
    size_bytes: int
    read_bandwidth: float
    write_bandwidth: float
    read_energy_nj_per_byte: float
    write_energy_nj_per_byte: float
    writable: bool
    needs_erase: bool
    memory_mapped: bool
    source: str
    erase_block_bytes: int = 0
    erase_time_s: float = 0.0
    endurance_cycles: int = 0
    access_latency_s: float = 0.0
    """Seconds from a read request to its first byte (command, seek, an SD card's block read
    latency); a read of n bytes takes access_latency_s + n / read_bandwidth."""

    def to_json(self) -> dict[str, Any]:
        """The tier as plain JSON types."""
        return {**asdict(self), "kind": self.kind.value}


class SleepKind(StrEnum):
    """How deep a low-power mode is: what keeps running and what a wake-up costs."""

    IDLE = "idle"
    """CPU halted (WFI), clocks and memories on: what an always-on device idles in."""
    RETENTION = "retention"
    """Clocks stopped, SRAM (all, or the bytes given) kept; execution resumes where it was."""
    OFF = "off"
    """Core powered down; waking is a reset, so the code restarts (some SRAM may be kept)."""


@dataclass(frozen=True)
class SleepMode:
    """A low-power mode: its supply current, the SRAM it keeps and the time to wake from it.

    `wakeup_s` runs from the wake-up event to the application running at full clock again
    (regulator and clock restart, and for OFF modes the reset and start-up code).
    """

    name: str
    kind: SleepKind
    current_ua: float
    retained_sram_bytes: int
    wakeup_s: float
    source: str

    def to_json(self) -> dict[str, Any]:
        """The mode as plain JSON types."""
        return {**asdict(self), "kind": self.kind.value}


@dataclass(frozen=True)
class CoreModel:
    """Cost-model coefficients of a core (calibrated against QEMU instruction counts).

    `cycles_per_instruction` converts executed instructions (what QEMU counts) into cycles.
    """

    core: Core
    cycles_per_mac: float
    cycles_per_mac_dsp: float
    cycles_per_elem: float
    source: str
    cycles_per_instruction: float = 1.0


@dataclass(frozen=True)
class Board:
    """A development board: its MCU, core, clock, memories and power figures."""

    id: str
    name: str
    mcu: str
    core: Core
    fpu: Fpu
    dsp: bool
    clock_hz: int
    sram_bytes: int
    sram_total_bytes: int
    flash_bytes: int
    flash_wait_states: int
    tiers: tuple[MemoryTier, ...]
    supply_voltage_v: float
    active_power_mw: float
    sleep_power_mw: float
    sleep_mode: str
    core_model: CoreModel
    aliases: tuple[str, ...]
    source: str
    sram_source: str
    wait_states_source: str
    power_source: str
    regions: tuple[MemoryRegion, ...] = ()
    console: Console | None = None
    sleep_modes: tuple[SleepMode, ...] = ()

    @property
    def idle_mode(self) -> SleepMode:
        """The mode an always-on device idles in between inferences."""
        return next(mode for mode in self.sleep_modes if mode.kind is SleepKind.IDLE)

    def has_tier(self, kind: TierKind) -> bool:
        """True when the board has a memory of this kind."""
        return any(tier.kind is kind for tier in self.tiers)

    def tier(self, kind: TierKind) -> MemoryTier:
        """The board's memory of this kind; BoardError when it has none."""
        for tier in self.tiers:
            if tier.kind is kind:
                return tier
        have = ", ".join(t.kind.value for t in self.tiers)
        raise BoardError(f"board '{self.id}' has no {kind.value} memory",
                         hint=f"its memory tiers are: {have}")

    @property
    def weights_tier(self) -> MemoryTier:
        """Where constants live by default: on-chip flash, else an execute-in-place flash."""
        return _storage_tier(self.tiers)

    @property
    def firmware_flash_bytes(self) -> int:
        """Bytes of the flash the firmware (code and constants) is linked into.

        The on-chip flash, or on a board without (RP2040, ESP32-S3) the flash it executes in
        place from (weights_tier).
        """
        return self.flash_bytes or self.weights_tier.size_bytes

    @property
    def cycles_per_mac(self) -> float:
        """Cycles per int8 MAC on this core, with the DSP/SIMD path when the board has it."""
        model = self.core_model
        return model.cycles_per_mac_dsp if self.dsp else model.cycles_per_mac

    @property
    def cycles_per_elem(self) -> float:
        """Cycles per non-MAC element operation."""
        return self.core_model.cycles_per_elem

    def to_json(self) -> dict[str, Any]:
        """The board as plain JSON types (what `mcuflow boards --json` prints)."""
        data = asdict(self)
        data.update(
            core=self.core.value, fpu=self.fpu.value, aliases=list(self.aliases),
            tiers=[tier.to_json() for tier in self.tiers],
            core_model={**asdict(self.core_model), "core": self.core.value},
            sleep_modes=[mode.to_json() for mode in self.sleep_modes],
        )
        return data


def _storage_tier(tiers: tuple[MemoryTier, ...]) -> MemoryTier:
    nonvolatile = [t for t in tiers if not t.kind.volatile]
    ranked = sorted(nonvolatile, key=lambda t: (t.kind is not TierKind.ONCHIP_FLASH,
                                                not t.memory_mapped))
    if not ranked:
        raise BoardError("a board needs a non-volatile memory tier", hint=SCHEMA_HINT)
    return ranked[0]


# --- schema -------------------------------------------------------------------------------

NUMBER = (int, float)


@dataclass(frozen=True)
class _Field:
    types: type | tuple[type, ...]
    required: bool = True
    positive: bool = False


_BOARD_FIELDS: dict[str, _Field] = {
    "name": _Field(str), "mcu": _Field(str), "core": _Field(str), "fpu": _Field(str),
    "dsp": _Field(bool), "clock_hz": _Field(int, positive=True),
    "sram_bytes": _Field(int, positive=True), "sram_total_bytes": _Field(int, positive=True),
    "flash_bytes": _Field(int), "flash_wait_states": _Field(int),
    "supply_voltage_v": _Field(NUMBER, positive=True),
    "active_current_ma": _Field(NUMBER, required=False, positive=True),
    "active_current_ua_per_mhz": _Field(NUMBER, required=False, positive=True),
    "sleep_current_ua": _Field(NUMBER), "sleep_mode": _Field(str),
    "aliases": _Field(list, required=False), "tiers": _Field(list),
    "source": _Field(str), "sram_source": _Field(str), "wait_states_source": _Field(str),
    "power_source": _Field(str), "regions": _Field(list, required=False),
    "console": _Field(dict, required=False), "sleep_modes": _Field(list, required=False),
}

_SLEEP_FIELDS: dict[str, _Field] = {
    "name": _Field(str), "kind": _Field(str), "current_ua": _Field(NUMBER, positive=True),
    "retained_sram": _Field((str, int)), "wakeup_s": _Field(NUMBER), "source": _Field(str),
}

_REGION_FIELDS: dict[str, _Field] = {
    "name": _Field(str), "origin": _Field(int), "size_bytes": _Field(int, positive=True),
    "writable": _Field(bool), "source": _Field(str), "needs_init": _Field(str, required=False),
}

_CONSOLE_FIELDS: dict[str, _Field] = {
    "name": _Field(str), "kind": _Field(str), "base": _Field(int),
    "clock_hz": _Field(int, positive=True), "baud": _Field(int, positive=True),
    "setup": _Field(list), "source": _Field(str), "note": _Field(str, required=False),
}

_TIER_FIELDS: dict[str, _Field] = {
    "kind": _Field(str), "size_bytes": _Field(int, positive=True),
    "read_bandwidth": _Field(NUMBER, positive=True),
    "write_bandwidth": _Field(NUMBER, positive=True),
    "read_energy_nj_per_byte": _Field(NUMBER), "write_energy_nj_per_byte": _Field(NUMBER),
    "writable": _Field(bool), "needs_erase": _Field(bool), "memory_mapped": _Field(bool),
    "erase_block_bytes": _Field(int, required=False),
    "erase_time_s": _Field(NUMBER, required=False),
    "endurance_cycles": _Field(int, required=False), "source": _Field(str),
    "access_latency_s": _Field(NUMBER, required=False),
}

_CORE_FIELDS: dict[str, _Field] = {
    "cycles_per_mac": _Field(NUMBER, positive=True),
    "cycles_per_mac_dsp": _Field(NUMBER, positive=True),
    "cycles_per_elem": _Field(NUMBER, positive=True), "source": _Field(str),
    "cycles_per_instruction": _Field(NUMBER, required=False, positive=True),
}

_BOARD_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def _type_name(types: type | tuple[type, ...]) -> str:
    if types == NUMBER:
        return "a number"
    if types == (str, int):
        return 'an integer (bytes), "all" or "none"'
    return {int: "an integer", bool: "true or false", str: "a string", list: "a list",
            dict: "a table"}[types]


def _shown(value: Any) -> str:
    """`value` for a message, short: an integer of many digits by its length only."""
    if isinstance(value, int) and abs(value) >= 10**20:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _check_number(name: str, value: float, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise BoardError(f"{where}: field '{name}' must be a finite number, got {value}",
                         hint=SCHEMA_HINT)
    if abs(value) > MAX_BOARD_NUMBER:
        raise BoardError(f"{where}: field '{name}' must be at most {MAX_BOARD_NUMBER:g}, got "
                         f"{_shown(value)}", hint=SCHEMA_HINT)


def _check_value(name: str, value: Any, field: _Field, where: str) -> None:
    # bool is an int subclass in Python; TOML keeps them apart, so must we.
    wrong_bool = isinstance(value, bool) and field.types is not bool
    if wrong_bool or not isinstance(value, field.types):
        raise BoardError(f"{where}: field '{name}' must be {_type_name(field.types)}, "
                         f"got {_shown(value)}", hint=SCHEMA_HINT)
    if isinstance(value, NUMBER) and not isinstance(value, bool):
        _check_number(name, value, where)
        if value < 0:
            raise BoardError(f"{where}: field '{name}' must not be negative, got {value}",
                             hint=SCHEMA_HINT)
        if field.positive and value == 0:
            raise BoardError(f"{where}: field '{name}' must be positive, got 0", hint=SCHEMA_HINT)
    if isinstance(value, str) and not value.strip():
        raise BoardError(f"{where}: field '{name}' must not be empty", hint=SCHEMA_HINT)


def _check_names(table: dict[str, Any], fields: dict[str, _Field], where: str) -> None:
    """No unknown field (a typo gets the close known name as its hint)."""
    for name in table:
        if name not in fields:
            close = difflib.get_close_matches(name, list(fields), n=1)
            hint = f"did you mean '{close[0]}'?" if close else SCHEMA_HINT
            raise BoardError(f"{where}: unknown field '{name}'", hint=hint)


def _missing(table: dict[str, Any], fields: dict[str, _Field]) -> str:
    """"missing field 'a'" or "missing fields 'a', 'b'"; empty when none is missing."""
    names = [name for name, field in fields.items() if field.required and name not in table]
    if not names:
        return ""
    return f"missing field{'s' if len(names) > 1 else ''} {', '.join(map(repr, names))}"


def _check_table(table: Any, fields: dict[str, _Field], where: str) -> None:
    """Every required field present, no unknown field, every value of the right type and sign."""
    if not isinstance(table, dict):
        raise BoardError(f"{where} must be a table", hint=SCHEMA_HINT)
    _check_names(table, fields, where)
    missing = _missing(table, fields)
    if missing:
        raise BoardError(f"{where}: {missing}", hint=SCHEMA_HINT)
    for name, field in fields.items():
        if name in table:
            _check_value(name, table[name], field, where)


def _check_complete(table: Any, where: str) -> None:
    """Every missing field of a board and of its tiers, named in one error."""
    if not isinstance(table, dict):
        return
    _check_names(table, _BOARD_FIELDS, where)
    gaps = [_missing(table, _BOARD_FIELDS)]
    tiers = table.get("tiers")
    for index, tier in enumerate(tiers if isinstance(tiers, list) else []):
        if isinstance(tier, dict):
            _check_names(tier, _TIER_FIELDS, f"{where}, tier {index}")
            gap = _missing(tier, _TIER_FIELDS)
            gaps.append(gap and f"tier {index}: {gap}")
    if any(gaps):
        raise BoardError(f"{where}: {'; '.join(gap for gap in gaps if gap)}",
                         hint=f"energy and source fields may be left out; {SCHEMA_HINT}")


def _enum(cls: type[StrEnum], value: str, what: str, where: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        known = ", ".join(member.value for member in cls)
        raise BoardError(f"{where}: unknown {what} '{value}'",
                         hint=f"known {what}s: {known}") from None


# --- parsing ------------------------------------------------------------------------------


def _parse_core(name: str, table: Any, where: str) -> CoreModel:
    where = f"{where}, core '{name}'"
    core = _enum(Core, name, "core", where)
    _check_table(table, _CORE_FIELDS, where)
    return CoreModel(core, float(table["cycles_per_mac"]), float(table["cycles_per_mac_dsp"]),
                     float(table["cycles_per_elem"]), table["source"],
                     float(table.get("cycles_per_instruction", 1.0)))


def _parse_tier(index: int, table: Any, where: str) -> MemoryTier:
    where = f"{where}, tier {index}"
    _check_table(table, _TIER_FIELDS, where)
    kind = _enum(TierKind, table["kind"], "tier kind", where)
    numbers = {k: float(v) for k, v in table.items() if k in
               ("read_bandwidth", "write_bandwidth", "read_energy_nj_per_byte",
                "write_energy_nj_per_byte", "erase_time_s", "access_latency_s")}
    return MemoryTier(**{**table, **numbers, "kind": kind})


def _active_power_mw(table: dict[str, Any], clock_hz: int, where: str) -> float:
    volts = float(table["supply_voltage_v"])
    given = [k for k in ("active_current_ma", "active_current_ua_per_mhz") if k in table]
    if len(given) != 1:
        raise BoardError(f"{where}: give exactly one of 'active_current_ma' and "
                         f"'active_current_ua_per_mhz'", hint=SCHEMA_HINT)
    if given[0] == "active_current_ma":
        return float(table["active_current_ma"]) * volts
    return float(table["active_current_ua_per_mhz"]) * clock_hz / 1e6 / 1000.0 * volts


def _check_memories(board_id: str, tiers: tuple[MemoryTier, ...], table: dict[str, Any],
                    where: str) -> None:
    kinds = [t.kind for t in tiers]
    duplicates = sorted({k.value for k in kinds if kinds.count(k) > 1})
    if duplicates:
        raise BoardError(f"{where}: more than one '{duplicates[0]}' tier", hint=SCHEMA_HINT)
    if TierKind.SRAM not in kinds:
        raise BoardError(f"{where}: no 'sram' tier", hint=SCHEMA_HINT)
    if table["sram_bytes"] > table["sram_total_bytes"]:
        raise BoardError(f"{where}: sram_bytes ({table['sram_bytes']}) exceeds "
                         f"sram_total_bytes ({table['sram_total_bytes']})", hint=SCHEMA_HINT)
    sizes = {t.kind: t.size_bytes for t in tiers}
    if sizes[TierKind.SRAM] != table["sram_bytes"]:
        raise BoardError(f"{where}: the sram tier size ({sizes[TierKind.SRAM]}) differs from "
                         f"sram_bytes ({table['sram_bytes']})", hint=SCHEMA_HINT)
    if sizes.get(TierKind.ONCHIP_FLASH, 0) != table["flash_bytes"]:
        raise BoardError(f"{where}: flash_bytes ({table['flash_bytes']}) differs from the "
                         f"onchip_flash tier size ({sizes.get(TierKind.ONCHIP_FLASH, 0)})",
                         hint="boards without on-chip flash give flash_bytes = 0")
    if all(k.volatile for k in kinds):
        raise BoardError(f"{where}: board '{board_id}' has no non-volatile tier to hold the "
                         f"model", hint="add an onchip_flash or qspi_flash tier")


def _parse_board(board_id: str, table: Any, cores: dict[Core, CoreModel], where: str) -> Board:
    where = f"{where}, board '{board_id}'"
    if not _BOARD_ID.match(board_id):
        raise BoardError(f"{where}: invalid board id",
                         hint="use lower-case letters, digits, '-', '_' and '.'")
    _check_complete(table, where)
    _check_table(table, _BOARD_FIELDS, where)
    core = _enum(Core, table["core"], "core", where)
    fpu = _enum(Fpu, table["fpu"], "fpu", where)
    tiers = tuple(_parse_tier(i, t, where) for i, t in enumerate(table["tiers"]))
    _check_memories(board_id, tiers, table, where)
    aliases = table.get("aliases", [])
    if not all(isinstance(a, str) and a for a in aliases):
        raise BoardError(f"{where}: 'aliases' must be a list of strings", hint=SCHEMA_HINT)
    volts = float(table["supply_voltage_v"])
    regions = _parse_regions(table, where)
    active_mw = _active_power_mw(table, table["clock_hz"], where)
    return Board(
        id=board_id, name=table["name"], mcu=table["mcu"], core=core, fpu=fpu,
        dsp=table["dsp"], clock_hz=table["clock_hz"], sram_bytes=table["sram_bytes"],
        sram_total_bytes=table["sram_total_bytes"], flash_bytes=table["flash_bytes"],
        flash_wait_states=table["flash_wait_states"], tiers=tiers, supply_voltage_v=volts,
        active_power_mw=active_mw,
        sleep_power_mw=float(table["sleep_current_ua"]) / 1000.0 * volts,
        sleep_mode=table["sleep_mode"], core_model=cores[core], aliases=tuple(aliases),
        source=table["source"], sram_source=table["sram_source"],
        wait_states_source=table["wait_states_source"], power_source=table["power_source"],
        regions=regions, console=_parse_console(table.get("console"), where),
        sleep_modes=_parse_sleep_modes(table, active_mw / volts * 1000.0, where),
    )


IDLE_FRACTION = 0.3
"""Sleep (WFI) current over run current where a board lists no modes: Cortex-M Sleep-mode
tables (flash on, peripherals off) give about a quarter to a third."""
DEFAULT_WAKEUP_S = 1e-3
"""Wake-up from the deepest mode where a board lists no modes: a reset and start-up code."""


def _parse_sleep_modes(table: dict[str, Any], active_ua: float,
                       where: str) -> tuple[SleepMode, ...]:
    """The board's [[sleep_modes]], else an idle mode and `sleep_mode` derived as estimates."""
    if "sleep_modes" not in table:
        return _default_modes(table, active_ua)
    modes = tuple(_parse_sleep_mode(i, entry, table["sram_total_bytes"], where)
                  for i, entry in enumerate(table["sleep_modes"]))
    kinds = [mode.kind for mode in modes]
    if kinds.count(SleepKind.IDLE) != 1 or len(kinds) < 2:
        raise BoardError(f"{where}: 'sleep_modes' needs exactly one mode of kind 'idle' and at "
                         "least one 'retention' or 'off' mode", hint=SCHEMA_HINT)
    return modes


def _parse_sleep_mode(index: int, entry: Any, sram_total: int, where: str) -> SleepMode:
    where = f"{where}, sleep mode {index}"
    _check_table(entry, _SLEEP_FIELDS, where)
    kind = _enum(SleepKind, entry["kind"], "sleep mode kind", where)
    kept = entry["retained_sram"]
    if isinstance(kept, str):
        if kept not in ("all", "none"):
            raise BoardError(f"{where}: 'retained_sram' must be bytes, \"all\" or \"none\", "
                             f"got {_shown(kept)}", hint=SCHEMA_HINT)
        kept = sram_total if kept == "all" else 0
    if kept > sram_total:
        raise BoardError(f"{where}: retained_sram ({kept}) exceeds sram_total_bytes "
                         f"({sram_total})", hint=SCHEMA_HINT)
    return SleepMode(entry["name"], kind, float(entry["current_ua"]), kept,
                     float(entry["wakeup_s"]), entry["source"])


def _default_modes(table: dict[str, Any], active_ua: float) -> tuple[SleepMode, ...]:
    idle = SleepMode(
        "sleep (WFI)", SleepKind.IDLE, active_ua * IDLE_FRACTION, table["sram_total_bytes"],
        0.0, f"estimate: {IDLE_FRACTION:.0%} of the run current (no sleep_modes given)")
    deepest = SleepMode(
        table["sleep_mode"], SleepKind.OFF, float(table["sleep_current_ua"]), 0,
        DEFAULT_WAKEUP_S, f"{table['power_source']}; estimate: SRAM taken as lost, "
        f"{DEFAULT_WAKEUP_S * 1e3:g} ms wake-up (reset and start-up), no sleep_modes given")
    return idle, deepest


def _parse_regions(table: dict[str, Any], where: str) -> tuple[MemoryRegion, ...]:
    """The address map; when given, its `flash` and `sram` regions match the board's sizes."""
    regions = []
    for index, entry in enumerate(table.get("regions", [])):
        _check_table(entry, _REGION_FIELDS, f"{where}, region {index}")
        regions.append(MemoryRegion(**entry))
    found = tuple(regions)
    check_regions(found, where)
    if not found:
        return found
    expected = {CODE_REGION: table["flash_bytes"] or None, RAM_REGION: table["sram_bytes"]}
    for name, size in expected.items():
        given = region(found, name)
        if given is None:
            raise BoardError(f"{where}: the address map has no '{name}' region", SCHEMA_HINT)
        if size is not None and given.size_bytes != size:
            raise BoardError(f"{where}: region '{name}' holds {given.size_bytes} bytes, the "
                             f"board {size}", hint=SCHEMA_HINT)
    return found


def _parse_console(table: Any, where: str) -> Console | None:
    if table is None:
        return None
    where = f"{where}, console"
    _check_table(table, _CONSOLE_FIELDS, where)
    writes = []
    for entry in table["setup"]:
        if not (isinstance(entry, list) and len(entry) == 3 and all(
                isinstance(n, int) and not isinstance(n, bool) and 0 <= n < ADDRESS_LIMIT
                for n in entry)):
            raise BoardError(f"{where}: each 'setup' entry is [address, mask, value], 32-bit "
                             f"integers; got {entry!r}"[:200], hint=SCHEMA_HINT)
        writes.append(RegisterWrite(*entry))
    kind = _enum(UartKind, table["kind"], "console kind", where)
    return Console(table["name"], kind, table["base"], table["clock_hz"], table["baud"],
                   tuple(writes), table["source"], table.get("note", ""))


def _read_toml(path: Path | None) -> tuple[dict[str, Any], str]:
    if path is None:
        text = resources.files("mcuflow.hw").joinpath("boards.toml").read_text("utf-8")
        where = "packaged boards.toml"
        data = parse_toml(text, where, SCHEMA_HINT, MAX_BOARD_DEPTH, BoardError)
    else:
        where = f"board file {path}"
        data = read_toml(path, where, SCHEMA_HINT, MAX_BOARD_FILE_BYTES, MAX_BOARD_DEPTH,
                         BoardError)
    unknown = sorted(set(data) - {"boards", "cores"})
    if unknown:
        raise BoardError(f"{where}: unknown top-level table '{unknown[0]}'",
                         hint="a board file holds [boards.<id>] and optional [cores.<core>]")
    return data, where


def _parse_file(
    path: Path | None, cores: dict[Core, CoreModel]
) -> tuple[dict[Core, CoreModel], dict[str, Board]]:
    data, where = _read_toml(path)
    tables = data.get("cores", {})
    if not isinstance(tables, dict):
        raise BoardError(f"{where}: 'cores' must be a table of [cores.<core>] tables",
                         hint=SCHEMA_HINT)
    cores = cores | {model.core: model for model in
                     (_parse_core(n, t, where) for n, t in tables.items())}
    missing = [core.value for core in Core if core not in cores]
    if missing:
        raise BoardError(f"{where}: no cost coefficients for core '{missing[0]}'",
                         hint="add a [cores.<core>] table")
    boards = data.get("boards")
    if not isinstance(boards, dict) or not boards:
        raise BoardError(f"{where} defines no boards", hint="add a [boards.<id>] table")
    if path is not None:
        boards = {board_id: _with_estimates(table) for board_id, table in boards.items()}
    return cores, {board_id: _parse_board(board_id, table, cores, where)
                   for board_id, table in boards.items()}


# --- estimates for what a user board file leaves out ----------------------------------------

ESTIMATED = "estimate: not given in the board file"
"""The source of a figure a user board file leaves out."""
_TYPICAL = "the median of mcuflow's packaged boards"


@lru_cache(maxsize=1)
def _typical() -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """The packaged boards' median power figures, and their median energies per tier kind."""
    boards = list(_packaged()[1].values())
    power = {
        "supply_voltage_v": median(b.supply_voltage_v for b in boards),
        "active_current_ua_per_mhz": round(median(
            b.active_power_mw * 1e9 / b.supply_voltage_v / b.clock_hz for b in boards)),
        "sleep_current_ua": median(b.sleep_power_mw * 1e3 / b.supply_voltage_v for b in boards),
        "sleep_mode": "unknown",
    }
    tiers = [tier for board in boards for tier in board.tiers]
    energies = {kind.value: {
        "read_energy_nj_per_byte": median(t.read_energy_nj_per_byte for t in tiers
                                          if t.kind is kind),
        "write_energy_nj_per_byte": median(t.write_energy_nj_per_byte for t in tiers
                                           if t.kind is kind),
    } for kind in {tier.kind for tier in tiers}}
    return power, energies


def _with_estimates(table: Any) -> Any:
    """A user's board with its missing power, energy and source fields filled as estimates.

    Power and energy figures take the median of the packaged boards (of tiers of the same
    kind), and the source field beside them says so: it starts with or gains "estimate:".
    """
    if not isinstance(table, dict):
        return table
    power, energies = _typical()
    if "active_current_ma" in table:
        power = {k: v for k, v in power.items() if k != "active_current_ua_per_mhz"}
    filled = {"source": ESTIMATED, "sram_source": ESTIMATED, "wait_states_source": ESTIMATED,
              **_filled(table, power, "power_source")}
    tiers = filled.get("tiers")
    if isinstance(tiers, list):
        filled["tiers"] = [_filled(t, energies.get(str(t.get("kind")), {}), "source")
                           if isinstance(t, dict) else t for t in tiers]
    return filled


def _filled(table: dict[str, Any], defaults: dict[str, Any], source: str) -> dict[str, Any]:
    """`table` with each of `defaults` it lacks, its `source` field marking them estimates."""
    absent = {name: value for name, value in defaults.items() if name not in table}
    given = table.get(source)
    if not absent:
        return {source: ESTIMATED, **table}
    note = f"{ESTIMATED}: {', '.join(absent)} ({_TYPICAL})"
    if isinstance(given, str) and given.strip():
        note = f"{given}; {note}"
    elif given is not None and not isinstance(given, str):
        note = given  # a wrong type: the schema check names it
    return {**table, **absent, source: note}


@lru_cache(maxsize=1)
def _packaged() -> tuple[dict[Core, CoreModel], dict[str, Board]]:
    return _parse_file(None, {})


def get_core_model(core: str) -> CoreModel:
    """The packaged cost coefficients of `core` (e.g. 'cortex-m4')."""
    return _packaged()[0][_enum(Core, core, "core", "packaged boards.toml")]


def load_boards(path: Path | None = None) -> dict[str, Board]:
    """Boards by id: the packaged database, or the boards of the TOML file at `path`.

    A user file has the same schema as the packaged boards.toml; its [cores] tables are
    optional and override the packaged coefficients. Raises BoardError on any schema problem.
    """
    cores, packaged = _packaged()
    if path is None:
        return dict(packaged)
    return _parse_file(path, cores)[1]


def get_board(board_id: str, board_file: Path | None = None) -> Board:
    """The board called `board_id`: its id, an alias or its printed name, in any case.

    `mcuflow boards` prints ids (nucleo-f429zi) and names (NUCLEO-F429ZI); either is accepted.
    User boards override packaged ones.
    """
    boards = load_boards()
    if board_file is not None:
        boards |= load_boards(board_file)
    if board_id in boards:
        return boards[board_id]
    wanted = board_id.strip().casefold()
    found = [board for board in boards.values()
             if wanted in (name.casefold() for name in (board.id, board.name, *board.aliases))]
    if len(found) == 1:
        return found[0]
    if found:
        raise BoardError(f"board name '{board_id}' is ambiguous: it names "
                         f"{', '.join(board.id for board in found)}", hint="pass the board id")
    names = list(boards) + [alias for board in boards.values() for alias in board.aliases]
    close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise BoardError(f"unknown board '{board_id}'",
                     hint=f"{hint}`mcuflow boards` lists the known boards")
