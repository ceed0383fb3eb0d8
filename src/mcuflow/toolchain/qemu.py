"""Run Cortex-M firmware on QEMU's MPS2 boards, verify it bit-exact and count its instructions.

Machines: mps2-an385 (Cortex-M3, also runs the Cortex-M0 build), mps2-an386 (Cortex-M4),
mps2-an500 (Cortex-M7), mps2-an505 (Cortex-M33), as chosen by `mcuflow.codegen.targets`. The
generated driver (templates/cortex-m/main.c) reads its input records from input.bin and writes
output.bin and report.txt through Arm semihosting (`-semihosting-config enable=on`).

Counting method. QEMU runs with `-icount shift=0`: its virtual clock advances by exactly
2^0 = 1 ns per executed guest instruction, whatever the host's speed. The driver reads SysTick
(the core's 24-bit down-counter, clocked by the machine's SYSCLK) right before and right after
each inference and counts its wraps in the SysTick exception, so ticks are proportional to
executed instructions. It also times a loop of known length (10^6 iterations of SUBS + BNE,
2 x 10^6 instructions); that calibration gives the instructions per tick: exactly 40 on the
AN385/386/500 (SYSCLK 25 MHz), 50 on the AN505 (20 MHz). Instructions = ticks x that figure.

Resolution: one tick (40 or 50 instructions) per measured interval; the bracket adds the few
instructions of one timer read, and a wrap adds the handful of the SysTick handler every 2^24
ticks. Counts are deterministic: the same firmware and input give the same count. With
`profile`, the firmware is rebuilt with -DMCUFLOW_PROFILE and the model calls
mcuflow_profile_mark() between layers; each layer's count then carries the same one-tick
resolution plus about one tick for the mark itself (a call and a timer read).

Instructions are not cycles: `estimated_ms` multiplies them by the core's cycles per instruction
from boards.toml and divides by the board's clock.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcuflow.codegen.firmware import Firmware
from mcuflow.codegen.project import GeneratedProject, generate_project
from mcuflow.codegen.render import TensorSpec
from mcuflow.errors import McuflowError, ToolchainError
from mcuflow.frontends.tflite_reader import load_int8_model
from mcuflow.hw.board import Board, get_board, get_core_model
from mcuflow.hw.costmodel import op_cost
from mcuflow.hw.memory_map import MemoryRegion
from mcuflow.ir.graph import Graph
from mcuflow.memory.plan import Plan
from mcuflow.memory.planner import plan_memory
from mcuflow.passes.pipeline import INT8_PASSES, run_passes
from mcuflow.toolchain.arm import (
    DEBIAN_PACKAGES,
    ElfSizes,
    build_cortexm,
    cortex_m_core,
    elf_sizes,
)
from mcuflow.toolchain.host import check_runs, compare_runs, external_image, place_external
from mcuflow.toolchain.records import input_records, split_outputs

QEMU = "qemu-system-arm"
RUN_TIMEOUT_S = 600.0
PLAN_SECONDS = 0.5
FAULT_BASE = 64
EXCEPTIONS = {2: "NMI", 3: "HardFault", 4: "MemManage fault", 5: "BusFault", 6: "UsageFault",
              7: "SecureFault", 11: "SVCall", 12: "DebugMonitor", 14: "PendSV"}
EXIT_REASONS = {2: "could not read input.bin or write its outputs through semihosting",
                3: "an inference failed (report.txt's run line has its status)"}
# The board each Cortex-M target is measured on when none is given (its figures size the build
# and give the clock); each holds every shared model. The RP2040's Cortex-M0+ runs M0 code.
DEFAULT_BOARDS = {"cortex-m0": "rp2040", "cortex-m0plus": "rp2040", "cortex-m3": "nucleo-f207zg",
                  "cortex-m4": "nucleo-f429zi", "cortex-m7": "nucleo-f767zi"}


def find_qemu() -> str:
    """Path of qemu-system-arm, or a ToolchainError naming the Debian packages."""
    path = shutil.which(QEMU)
    if path is None:
        raise ToolchainError(f"the emulator '{QEMU}' is not installed",
                             f"install it: sudo apt-get install {DEBIAN_PACKAGES}")
    return path


@dataclass(frozen=True)
class Report:
    """What the firmware's report.txt says (see templates/cortex-m/main.c)."""

    calibration_instructions: int
    calibration_ticks: int
    run_ticks: tuple[int, ...]
    layer_ticks: tuple[int, ...]
    stack_bytes: int
    status: int
    storage_bytes_read: int = 0
    """Bytes read from the external weights image since reset (header included; 0 without)."""
    storage_reads: int = 0
    """Reads from the external weights image since reset."""
    storage_bytes_written: int = 0
    """Bytes of spilled activations written to external storage since reset."""
    storage_writes: int = 0
    """Writes of spilled activations since reset."""

    @property
    def instructions_per_tick(self) -> float:
        """Executed instructions per SysTick tick, from the calibration loop."""
        return self.calibration_instructions / self.calibration_ticks


def parse_report(text: str) -> Report:
    """The facts of a report.txt; ToolchainError when one is missing."""
    values: dict[str, list[list[int]]] = {}
    try:
        for line in filter(None, map(str.split, text.splitlines())):
            values.setdefault(line[0], []).append([int(n) for n in line[1:]])
        (instructions, ticks), = values["calibration"]
        (stack,), = values["stack"]
        (status,), = values["end"]
    except (KeyError, ValueError):
        raise ToolchainError(f"incomplete report from the firmware: {text[-500:]!r}") from None
    if ticks <= 0:
        raise ToolchainError("SysTick did not advance during the calibration loop",
                             "run QEMU with -icount shift=0")
    layers = sorted(values.get("layer", []))
    storage = values.get("storage", [[0, 0, 0, 0]])[-1]
    return Report(instructions, ticks, tuple(t for t, _ in values.get("run", [])),
                  tuple(t for _, t in layers), stack, status, *storage)


@dataclass(frozen=True)
class QemuRun:
    """The outputs of every record and the firmware's report."""

    outputs: list[np.ndarray]
    report: Report


def exit_message(code: int) -> str:
    """Why the firmware stopped, from QEMU's exit status (the firmware's exit code)."""
    if code >= FAULT_BASE:
        name = EXCEPTIONS.get(code - FAULT_BASE, f"exception {code - FAULT_BASE}")
        return f"the firmware stopped on a {name}"
    return EXIT_REASONS.get(code, f"the firmware exited with status {code}")


def psram_window(target: str) -> MemoryRegion:
    """The lower half of the PSRAM of the QEMU machine `target` runs on: an XIP image's window.

    QEMU loads the image there with -device loader; the upper half holds spilled activations.
    """
    return cortex_m_core(target).psram_halves[0]


def _image_args(image: Path | None, address: int | None) -> list[str]:
    """QEMU's generic loader putting `image` raw at `address` (none without an address)."""
    if image is None or address is None:
        return []
    return ["-device", f"loader,file={Path(image).absolute()},addr=0x{address:08X},force-raw=on"]


def run_qemu(elf: Path, target: str, inputs: Sequence[np.ndarray],
             output_specs: Sequence[TensorSpec], timeout: float = RUN_TIMEOUT_S,
             image: Path | None = None, key: bytes | None = None, *,
             image_address: int | None = None) -> QemuRun:
    """Run the firmware `elf` of `target` on QEMU over many inferences at once.

    `inputs[i]` holds graph input i of every run stacked on a leading axis; the outputs come
    back the same way, with the firmware's report (ticks per run, calibration, stack). `image`
    (a model with external weights) is copied as IMAGE_FILE where semihosting reads it, or with
    `image_address` loaded into emulated memory there (memory-mapped storage); `key` (an
    encrypted image's) is written as KEY_FILE beside it.
    """
    command = [find_qemu(), *cortex_m_core(target).qemu_flags, "-kernel", str(Path(elf).absolute()),
               *_image_args(image, image_address)]
    runs = len(inputs[0])
    with tempfile.TemporaryDirectory(prefix="mcuflow-qemu-") as scratch:
        directory = Path(scratch)
        (directory / "input.bin").write_bytes(input_records(inputs))
        place_external(directory, image if image_address is None else None, key)
        try:
            result = subprocess.run(command, cwd=directory, capture_output=True, text=True,
                                    timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ToolchainError(f"QEMU ran {Path(elf).name} for more than {timeout:.0f} s",
                                 "the firmware may be stuck; try fewer runs") from None
        report_path = directory / "report.txt"
        report_text = report_path.read_text("ascii") if report_path.is_file() else ""
        if result.returncode != 0:
            detail = (result.stderr.strip() or report_text.strip())[-1500:]
            raise ToolchainError(f"{exit_message(result.returncode)} (QEMU "
                                 f"{cortex_m_core(target).machine}, exit {result.returncode})"
                                 + (f": {detail}" if detail else ""))
        report = parse_report(report_text)
        outputs = split_outputs((directory / "output.bin").read_bytes(), runs, output_specs)
    return QemuRun(outputs, report)


@dataclass(frozen=True)
class LayerProfile:
    """Instructions of one planned step (layer), beside its MACs."""

    index: int
    op: str
    name: str
    macs: int
    instructions: int
    kernels: tuple[str, ...] = ()
    portable_reason: str | None = None


@dataclass(frozen=True)
class CortexMResult:
    """Outcome of `verify_cortexm`: bit-exactness, instructions, ELF sizes, estimated time."""

    model: str
    target: str
    machine: str
    board: str
    bit_exact: bool
    runs: int
    mismatches: int  # runs whose outputs differ from the reference interpreter in any byte
    instructions: int  # per inference, mean over the runs
    instructions_per_tick: float  # calibrated; also the resolution of one measurement
    macs: int
    macs_per_instruction: float
    flash_bytes: int  # text + rodata + data of the linked ELF
    ram_bytes: int  # data + bss + measured peak stack
    stack_bytes: int
    text_bytes: int
    rodata_bytes: int
    data_bytes: int
    bss_bytes: int
    arena_bytes: int
    weight_bytes: int
    cycles_per_instruction: float
    clock_hz: int
    estimated_ms: float  # instructions x cycles per instruction / board clock
    layers: tuple[LayerProfile, ...] = field(default=())
    storage_bytes_read: int = 0  # from the external weights image, every boot (headers too)
    storage_bytes_written: int = 0  # spilled activations, every run
    external_ram_bytes: int = 0  # the spill area linked into external RAM (not in ram_bytes)


def _board(board: Board | str) -> Board:
    return get_board(board) if isinstance(board, str) else board


class QemuChunks:
    """Runs each chunk of inputs on one QEMU boot; keeps the reports' sums and the first input.

    `run` boots the firmware on one chunk (run_qemu, or uart.run_uart for board firmware).
    Every boot times the same calibration loop, so instructions per tick are those of the first
    report; the mean instructions per inference is over the runs of every chunk.
    """

    def __init__(self, run: Callable[[list[np.ndarray]], QemuRun]) -> None:
        self.run = run
        self.report: Report | None = None
        self.first: list[np.ndarray] = []
        self.run_ticks = 0
        self.runs = 0
        self.stack_bytes = 0
        self.storage_bytes_read = 0
        self.storage_bytes_written = 0

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The outputs of one chunk (stacked like `inputs`); its report is summed in."""
        run = self.run(inputs)
        if self.report is None:
            self.report, self.first = run.report, [x[:1].copy() for x in inputs]
        self.run_ticks += sum(run.report.run_ticks)
        self.runs += len(run.report.run_ticks)
        self.stack_bytes = max(self.stack_bytes, run.report.stack_bytes)
        self.storage_bytes_read += run.report.storage_bytes_read
        self.storage_bytes_written += run.report.storage_bytes_written
        return run.outputs

    @property
    def instructions_per_tick(self) -> float:
        """Calibrated on the first boot."""
        if self.report is None:
            raise ToolchainError("QEMU was never started")
        return self.report.instructions_per_tick

    def mean_instructions(self) -> int:
        """Instructions per inference, mean over every run."""
        if not self.runs:
            raise ToolchainError("the firmware ran no inference")
        return round(self.run_ticks / self.runs * self.instructions_per_tick)


def _layer_profiles(plan: Plan, project: GeneratedProject, report: Report,
                    runs: int) -> tuple[LayerProfile, ...]:
    profiles = []
    graph = plan.graph
    for index, (step, code) in enumerate(zip(plan.steps, project.steps, strict=True)):
        op = graph.operators[step.op_index]
        ticks = report.layer_ticks[index] if index < len(report.layer_ticks) else 0
        profiles.append(LayerProfile(index, op.kind.value, op.name, op_cost(graph, op).macs,
                                     round(ticks * report.instructions_per_tick / runs),
                                     code.functions, code.portable_reason))
    return tuple(profiles)


def model_macs(graph: Graph) -> int:
    """MACs of one inference (the cost model's counting conventions)."""
    return sum(op_cost(graph, op).macs for op in graph.operators)


def verify_cortexm(graph: Graph, plan: Plan, target: str, board: Board | str, runs: int = 10,
                   seed: int = 0, profile: bool = False, *, timeout: float = RUN_TIMEOUT_S,
                   external_key: bytes | None = None, xip: bool = False) -> CortexMResult:
    """Build the C of `plan` for `target`, run `runs` random inputs on QEMU, compare to the bit.

    The linker script is sized by `board` (a model that does not fit raises McuflowError).
    Returns the instructions per inference, the ELF's flash and RAM (with the measured peak
    stack) and, when `profile`, the instructions of every layer (a second, profiling build run
    on the first input). The runs go in chunks (host.compare_runs), one QEMU boot each, so
    memory does not depend on `runs`. `external_key` encrypts an encrypted plan's image and is
    given to the firmware as KEY_FILE. With `xip` the image is read as memory-mapped storage
    (mcuflow_storage_xip.c) from the machine's PSRAM, where QEMU loads it (psram_window).
    """
    check_runs(runs)
    board = _board(board)
    core = cortex_m_core(target)
    window = psram_window(target) if xip else None
    address = None if window is None else window.origin
    with tempfile.TemporaryDirectory(prefix="mcuflow-cortexm-") as scratch:
        project = generate_project(graph, plan, Path(scratch) / "project", target=target,
                                   board=board, external_key=external_key,
                                   firmware=Firmware(xip=window))
        elf = build_cortexm(project.path, target)
        image = external_image(project.path)
        runner = QemuChunks(lambda inputs: run_qemu(elf, target, inputs, project.outputs,
                                                    timeout, image, external_key,
                                                    image_address=address))
        mismatches = compare_runs(graph, runs, seed, runner,
                                  order=plan.order_in(graph)).mismatches
        sizes = elf_sizes(elf)
        layers: tuple[LayerProfile, ...] = ()
        if profile:
            profiled = build_cortexm(project.path, target, profile=True)
            first = run_qemu(profiled, target, runner.first, project.outputs, timeout, image,
                             external_key, image_address=address)
            layers = _layer_profiles(plan, project, first.report, 1)
    return measured_result(Measurement(graph, plan, target, core.machine, board, runs,
                                       mismatches, sizes, project.weight_bytes), runner, layers)


@dataclass(frozen=True)
class Measurement:
    """What one verified QEMU build was: the model, where it ran, what the comparison found."""

    graph: Graph
    plan: Plan
    target: str
    machine: str
    board: Board
    runs: int
    mismatches: int
    sizes: ElfSizes
    weight_bytes: int


def measured_result(measurement: Measurement, runner: QemuChunks,
                    layers: tuple[LayerProfile, ...] = ()) -> CortexMResult:
    """The CortexMResult of a measurement: instructions, MACs, sizes and estimated time."""
    m = measurement
    instructions = runner.mean_instructions()
    macs = model_macs(m.graph)
    cpi = get_core_model(m.target).cycles_per_instruction
    return CortexMResult(
        model=m.graph.name, target=m.target, machine=m.machine, board=m.board.id,
        bit_exact=m.mismatches == 0, runs=m.runs, mismatches=m.mismatches,
        instructions=instructions, instructions_per_tick=runner.instructions_per_tick,
        macs=macs, macs_per_instruction=macs / max(instructions, 1),
        flash_bytes=m.sizes.flash_bytes, ram_bytes=m.sizes.static_ram_bytes + runner.stack_bytes,
        stack_bytes=runner.stack_bytes, text_bytes=m.sizes.text, rodata_bytes=m.sizes.rodata,
        data_bytes=m.sizes.data, bss_bytes=m.sizes.bss, arena_bytes=m.plan.arena_bytes,
        weight_bytes=m.weight_bytes, cycles_per_instruction=cpi, clock_hz=m.board.clock_hz,
        estimated_ms=instructions * cpi / m.board.clock_hz * 1e3, layers=layers,
        storage_bytes_read=runner.storage_bytes_read,
        storage_bytes_written=runner.storage_bytes_written,
        external_ram_bytes=m.sizes.external_ram,
    )


def default_board(target: str) -> Board:
    """The board a Cortex-M target is measured on when the user names none."""
    cortex_m_core(target)
    if target not in DEFAULT_BOARDS:
        raise McuflowError(f"no default board for {target}", "pass a board (--board)")
    return get_board(DEFAULT_BOARDS[target])


def bench_cortexm(models: Sequence[Path | str], target: str = "cortex-m4",
                  board: Board | str | None = None, runs: int = 2) -> list[CortexMResult]:
    """One row per model: built for `target`, run `runs` random inputs on QEMU, measured.

    Each row is bit-exact checked against the reference interpreter; the memory plan
    (`plan_for`) gets PLAN_SECONDS of search per model.
    """
    chosen = default_board(target) if board is None else _board(board)
    rows = []
    for path in models:
        graph = run_passes(load_int8_model(path), INT8_PASSES)
        rows.append(verify_cortexm(graph, plan_for(graph, target), target, chosen, runs, seed=0))
    return rows


def plan_for(graph: Graph, target: str) -> Plan:
    """The memory plan of `graph` for a Cortex-M target (scratch sized for its DSP kernels)."""
    return plan_memory(graph, PLAN_SECONDS, dsp=cortex_m_core(target).dsp)

