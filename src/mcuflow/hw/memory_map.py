"""A board's address map and serial console: what a linker script and a UART driver need."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from mcuflow.errors import BoardError

REGION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
CODE_REGION = "flash"
"""The region that holds code and constants by default (execute-in-place flash on the RP2040)."""
RAM_REGION = "sram"
"""The region that holds the arena, data, bss and stack by default: the board's `sram_bytes`."""
ADDRESS_LIMIT = 1 << 32


@dataclass(frozen=True)
class MemoryRegion:
    """A block of the board's address map that the linker may place sections in.

    `writable` regions are RAM (the arena may go there), the others hold code or constants.
    `needs_init` names what the user's code must set up before the region can be used (an
    external SDRAM controller, a QSPI flash in memory-mapped mode), or is empty.
    """

    name: str
    origin: int
    size_bytes: int
    writable: bool
    source: str
    needs_init: str = ""

    @property
    def end(self) -> int:
        """The first address past the region."""
        return self.origin + self.size_bytes

    def contains(self, other: MemoryRegion) -> bool:
        """True when `other` lies wholly inside this region."""
        return self.origin <= other.origin and other.end <= self.end


class UartKind(StrEnum):
    """A UART register layout the generated driver knows, and how its divisor is computed."""

    STM32_SR = "stm32-usart-sr"
    STM32_ISR = "stm32-usart-isr"
    STM32_LPUART = "stm32-lpuart"
    NRF = "nrf-uart"
    PL011 = "pl011"

    def divisor(self, clock_hz: int, baud: int) -> int:
        """The value of the baud-rate register for `baud` from a UART clock of `clock_hz`."""
        if self is UartKind.STM32_LPUART:
            return round(256 * clock_hz / baud)  # RM0432 LPUART BRR = 256 x fck / baud
        if self is UartKind.NRF:
            return round(baud * 2**32 / 16e6 / 0x1000) * 0x1000  # nRF52 PS BAUDRATE
        if self is UartKind.PL011:
            return round(4 * clock_hz / baud)  # PL011 divisor in 64ths: IBRD << 6 | FBRD
        return round(clock_hz / baud)  # STM32 USART, oversampling by 16: BRR = fck / baud

    @property
    def c_name(self) -> str:
        """The MCUFLOW_UART_* constant of mcuflow_uart.c."""
        return {UartKind.STM32_SR: "STM32_SR", UartKind.STM32_ISR: "STM32_ISR",
                UartKind.STM32_LPUART: "STM32_ISR", UartKind.NRF: "NRF",
                UartKind.PL011: "PL011"}[self]


@dataclass(frozen=True)
class RegisterWrite:
    """`*address = (*address & ~mask) | value`: a clock enable or a pin's multiplexing."""

    address: int
    mask: int
    value: int


@dataclass(frozen=True)
class Console:
    """The UART wired to the board's debug probe (its virtual COM port)."""

    name: str
    kind: UartKind
    base: int
    clock_hz: int
    baud: int
    setup: tuple[RegisterWrite, ...]
    source: str
    note: str = ""

    @property
    def divisor(self) -> int:
        """The baud-rate register value at the UART's clock after reset."""
        return self.kind.divisor(self.clock_hz, self.baud)


def check_regions(regions: tuple[MemoryRegion, ...], where: str) -> None:
    """Names unique and well-formed, inside 32 bits; regions overlap only by nesting."""
    names = [r.name for r in regions]
    for region in regions:
        if not REGION_NAME.match(region.name):
            raise BoardError(f"{where}: region name '{region.name}' must be a lower-case "
                             "identifier of at most 16 characters", hint="e.g. 'dtcm', 'ccm'")
        if names.count(region.name) > 1:
            raise BoardError(f"{where}: two regions are called '{region.name}'",
                             hint="give each region its own name")
        if region.end > ADDRESS_LIMIT:
            raise BoardError(f"{where}: region '{region.name}' ends past the 4 GiB address "
                             "space", hint="check its origin and size_bytes")
    for index, first in enumerate(regions):
        for second in regions[index + 1:]:
            apart = first.end <= second.origin or second.end <= first.origin
            if not (apart or first.contains(second) or second.contains(first)):
                raise BoardError(f"{where}: regions '{first.name}' and '{second.name}' overlap "
                                 "without one containing the other",
                                 hint="a region may lie inside another (DTCM inside SRAM)")


def region(regions: tuple[MemoryRegion, ...], name: str) -> MemoryRegion | None:
    """The region called `name`, or None."""
    return next((r for r in regions if r.name == name), None)
