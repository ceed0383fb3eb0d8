"""Run board-ready firmware on QEMU's STM32 machines: records in and results out over the UART.

The firmware is the `--io uart` application (templates/cortex-m/main_uart.c) linked at the
board's own address map. QEMU's netduino2 (STM32F205) and netduinoplus2 (STM32F405) emulate the
flash, SRAM and USARTs of the NUCLEO-F207ZG's and NUCLEO-F429ZI's parts; the console USART is
this process's pipe (`-serial stdio` in its place). The host waits for the firmware's `ready`
line, sends a record count and the records, and reads back `run`, `output` and `end` lines.
Built with QEMU_DEFINES, the firmware then exits through semihosting.
"""

from __future__ import annotations

import struct
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mcuflow.codegen.firmware import BOARD_MACHINES, BoardMachine, Firmware, Io, MemoryMap
from mcuflow.codegen.project import generate_project
from mcuflow.codegen.render import TensorSpec
from mcuflow.codegen.targets import board_target
from mcuflow.errors import McuflowError, ToolchainError
from mcuflow.hw.board import Board
from mcuflow.ir.graph import Graph
from mcuflow.memory.plan import Plan
from mcuflow.toolchain.arm import build_cortexm, elf_sizes
from mcuflow.toolchain.host import check_runs, compare_runs
from mcuflow.toolchain.qemu import (
    RUN_TIMEOUT_S,
    CortexMResult,
    Measurement,
    QemuChunks,
    QemuRun,
    exit_message,
    find_qemu,
    measured_result,
    parse_report,
)
from mcuflow.toolchain.records import input_records, split_outputs

REPORT_LABELS = frozenset({"calibration", "run", "layer", "stack", "end"})
READY_TIMEOUT_S = 60.0


def board_machine(board_id: str) -> BoardMachine:
    """The QEMU machine that runs `board_id`'s firmware; McuflowError when none does."""
    if board_id not in BOARD_MACHINES:
        known = ", ".join(f"{m.machine} ({b})" for b, m in BOARD_MACHINES.items())
        raise McuflowError(f"no QEMU machine emulates the MCU of board '{board_id}'",
                           f"machines and their boards: {known}")
    return BOARD_MACHINES[board_id]


def machine_board(machine: str) -> str:
    """The board whose MCU QEMU machine `machine` emulates."""
    for board_id, known in BOARD_MACHINES.items():
        if known.machine == machine:
            return board_id
    names = ", ".join(m.machine for m in BOARD_MACHINES.values())
    raise McuflowError(f"unknown machine '{machine}'", f"machines that run board firmware: "
                                                       f"{names}")


def qemu_command(machine: BoardMachine, elf: Path) -> list[str]:
    """qemu-system-arm with the console USART on stdio and instruction counting."""
    return [find_qemu(), "-machine", machine.machine, "-display", "none", "-monitor", "none",
            *machine.serial_args, "-semihosting-config", "enable=on,target=native",
            "-icount", "shift=0", "-kernel", str(Path(elf).absolute())]


def run_uart(elf: Path, machine: BoardMachine, inputs: Sequence[np.ndarray],
             output_specs: Sequence[TensorSpec], timeout: float, cwd: Path | None = None
             ) -> QemuRun:
    """Run every record of `inputs` (stacked per graph input) through the firmware's UART.

    QEMU runs in `cwd`, where semihosting finds the external weights image of a project that
    has one (the project's own directory).
    """
    runs = len(inputs[0])
    process = subprocess.Popen(qemu_command(machine, elf), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    try:
        banner = _until_ready(process)
        payload = struct.pack("<I", runs) + input_records(inputs)
        rest, errors = process.communicate(payload)
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode != 0:
        detail = (errors.decode(errors="replace").strip() or rest.decode(errors="replace"))
        raise ToolchainError(f"{exit_message(process.returncode)} (QEMU {machine.machine}, exit "
                             f"{process.returncode})" + (f": {detail[-1500:]}" if detail else ""))
    lines = (banner + rest).decode("ascii", errors="replace").splitlines()
    return _parse_lines(lines, runs, output_specs)


def _until_ready(process: subprocess.Popen[bytes]) -> bytes:
    """What the firmware prints up to and including its `ready` line."""
    assert process.stdout is not None
    seen = b""
    while True:
        line = process.stdout.readline()
        if not line:
            raise ToolchainError("the firmware stopped before it was ready for records: "
                                 f"{seen.decode(errors='replace')[-500:]!r}",
                                 "run the firmware under QEMU by hand to see where it stops")
        seen += line
        if line.startswith(b"ready "):
            return seen


def _parse_lines(lines: list[str], runs: int, specs: Sequence[TensorSpec]) -> QemuRun:
    report = "\n".join(line for line in lines if line.split(" ", 1)[0] in REPORT_LABELS)
    hexes = [line.split(" ", 1)[1] for line in lines if line.startswith("output ")]
    try:
        data = b"".join(bytes.fromhex(text) for text in hexes)
    except ValueError:
        raise ToolchainError("the firmware printed an output line that is not hexadecimal") \
            from None
    return QemuRun(split_outputs(data, runs, specs), parse_report(report))


BOARD_FIRMWARE = Firmware(MemoryMap.BOARD, Io.UART)
"""What `compile --board B` writes by default for a board with a console: verified as such."""


def verify_board(graph: Graph, plan: Plan, board: Board, runs: int = 10, seed: int = 0, *,
                 timeout: float = RUN_TIMEOUT_S) -> CortexMResult:
    """Build the board-ready firmware of `plan` and check it bit-exact on the board's machine.

    The firmware is the one `compile --board` writes (the board's own address map, the UART
    application); records go in and outputs come back over the console USART, in chunks of
    runs (one QEMU boot each), and are compared with the reference interpreter.
    """
    check_runs(runs)
    machine = board_machine(board.id)
    target = board_target(board, None)
    with tempfile.TemporaryDirectory(prefix="mcuflow-board-") as scratch:
        project = generate_project(graph, plan, Path(scratch) / "project", target=target,
                                   board=board, firmware=BOARD_FIRMWARE)
        elf = build_cortexm(project.path, target)
        runner = QemuChunks(lambda inputs: run_uart(elf, machine, inputs, project.outputs,
                                                    timeout, project.path))
        mismatches = compare_runs(graph, runs, seed, runner,
                                  order=plan.order_in(graph)).mismatches
        sizes = elf_sizes(elf)
    return measured_result(Measurement(graph, plan, target, machine.machine, board, runs,
                                       mismatches, sizes, project.weight_bytes), runner)
