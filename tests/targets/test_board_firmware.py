"""Board-ready firmware: each board's real address map, its UART, CMake, and target checks.

The ELF files are read with pyelftools (not with anything mcuflow wrote): the loadable segments
must sit at the addresses of the board's reference manual, the arena in the region asked for.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from mcuflow import api
from mcuflow.hw.board import load_boards
from mcuflow.toolchain.qemu import verify_cortexm
from mcuflow.toolchain.uart import verify_board
from tests.support import INT8_MODELS, SHARED_MODELS
from tests.unit.test_cli import assert_user_error, invoke

MODEL = api.demo_model_path()
FIRMWARE_BOARDS = sorted(b.id for b in load_boards().values() if b.regions)
# Flash and SRAM origins from each part's reference manual / datasheet memory map.
ORIGINS = {
    "nucleo-f767zi": (0x0800_0000, 0x2000_0000), "nucleo-f746zg": (0x0800_0000, 0x2000_0000),
    "nucleo-f429zi": (0x0800_0000, 0x2000_0000), "nucleo-f207zg": (0x0800_0000, 0x2000_0000),
    "nucleo-f091rc": (0x0800_0000, 0x2000_0000), "stm32f746g-disco": (0x0800_0000, 0x2000_0000),
    "nucleo-h743zi": (0x0800_0000, 0x2400_0000), "nucleo-l4r5zi": (0x0800_0000, 0x2000_0000),
    "nrf52840": (0x0000_0000, 0x2000_0000), "rp2040": (0x1000_0000, 0x2000_0000),
}


def _segments(elf: Path) -> list[tuple[int, int, int]]:
    """(virtual address, load address, memory size) of every PT_LOAD segment."""
    with elf.open("rb") as handle:
        return [(s["p_vaddr"], s["p_paddr"], s["p_memsz"]) for s in ELFFile(handle).iter_segments()
                if s["p_type"] == "PT_LOAD" and s["p_memsz"]]


def _symbol(elf: Path, name: str) -> int:
    with elf.open("rb") as handle:
        table = ELFFile(handle).get_section_by_name(".symtab")
        return int(table.get_symbol_by_name(name)[0]["st_value"])


def _make(project: Path) -> Path:
    done = subprocess.run(["make"], cwd=project, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return project / "model.elf"


def test_every_board_with_a_map_has_its_origins_checked() -> None:
    assert sorted(ORIGINS) == FIRMWARE_BOARDS


@pytest.mark.parametrize("board", FIRMWARE_BOARDS)
def test_firmware_links_at_the_boards_own_addresses(board: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Default compile for a board: its core, its map, its console UART driver, -Werror clean."""
    code, _, err = invoke(capsys, "compile", MODEL, "--board", board, "-o", tmp_path / "fw")
    assert (code, err) == (0, "")
    assert "#define MCUFLOW_UART_BASE" in (tmp_path / "fw" / "mcuflow_board.h").read_text()
    subprocess.run(["make", "CFLAGS=" + _strict_cflags(tmp_path / "fw")], cwd=tmp_path / "fw",
                   check=True, capture_output=True, timeout=300)
    flash, sram = ORIGINS[board]
    segments = _segments(tmp_path / "fw" / "model.elf")
    assert segments[0][0] == flash  # vectors and code
    assert all(load == flash or flash < load < flash + (4 << 20) for _, load, _ in segments)
    assert {address for address, _, _ in segments[1:]} and all(
        sram <= address < sram + (1 << 20) for address, _, _ in segments[1:])


def _strict_cflags(project: Path) -> str:
    text = (project / "Makefile").read_text()
    flags = next(line for line in text.splitlines() if line.startswith("CFLAGS ?="))
    return flags.split("=", 1)[1].strip() + " -Werror"


@pytest.mark.parametrize(("model", "board"), [(m, b) for m in INT8_MODELS
                                              for b in ("nucleo-f207zg", "nucleo-f429zi")])
def test_shared_models_build_for_the_qemu_emulated_boards(model: str, board: str,
                                                          tmp_path: Path) -> None:
    """The issue's check: `make` of every shared model links at 0x0800_0000 / 0x2000_0000."""
    project = api.compile_model(SHARED_MODELS / model, tmp_path / "fw", board, target=None,
                                firmware=api.firmware_options(board, None, None))
    segments = _segments(_make(project.path))
    assert segments[0][:2] == (0x0800_0000, 0x0800_0000)
    assert all(address >= 0x2000_0000 for address, _, _ in segments[1:])


def test_cmake_builds_the_same_firmware(tmp_path: Path) -> None:
    project = api.compile_model(MODEL, tmp_path / "fw", "nucleo-f429zi", target=None,
                                firmware=api.firmware_options("nucleo-f429zi", None, None))
    build = tmp_path / "build"
    for command in (["cmake", "-S", project.path, "-B", build,
                     f"-DCMAKE_TOOLCHAIN_FILE={project.path / 'arm-none-eabi.cmake'}"],
                    ["cmake", "--build", build]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert _segments(build / "model.elf") == _segments(_make(project.path))


@pytest.mark.parametrize(("board", "region", "origin"), [
    ("nucleo-f767zi", "dtcm", 0x2000_0000), ("nucleo-f429zi", "ccm", 0x1000_0000),
    ("stm32f746g-disco", "sdram", 0xC000_0000),
])
def test_the_arena_goes_to_the_region_asked_for(board: str, region: str, origin: int,
                                                tmp_path: Path) -> None:
    firmware = api.firmware_options(board, None, None, arena_region=region)
    project = api.compile_model(MODEL, tmp_path / "fw", board, target=None, firmware=firmware)
    elf = _make(project.path)
    assert _symbol(elf, "mcuflow_arena") == origin
    arena = range(origin, origin + project.arena_bytes)
    for symbol in ("__data_start__", "__bss_start__", "__bss_end__"):
        assert _symbol(elf, symbol) not in arena  # the rest of RAM no longer covers the arena


def test_weights_go_to_external_flash(tmp_path: Path) -> None:
    firmware = api.firmware_options("stm32f746g-disco", None, None, weights_region="qspi")
    project = api.compile_model(MODEL, tmp_path / "fw", "stm32f746g-disco", target=None,
                                firmware=firmware)
    segments = _segments(_make(project.path))
    weights = [s for s in segments if s[0] == 0x9000_0000]
    assert weights and weights[0][2] >= project.weight_bytes
    assert "QUADSPI in memory-mapped mode" in (project.path / "mcuflow.ld").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--board", "nrf52840", "--target", "cortex-m7"],
     "--target cortex-m7 does not match board 'nrf52840', whose core is a cortex-m4 (hint: omit "
     "--target to build for the cortex-m4, or pass --target host)"),
    (["--board", "esp32-s3"],
     "board 'esp32-s3' has no Cortex-M core (xtensa-lx7); mcuflow builds firmware for Cortex-M "
     "cores (hint: pass --target host for portable C)"),
    (["--board", "nucleo-f429zi", "--arena-section", "qspi"],
     "board 'nucleo-f429zi' has no RAM region 'qspi' for the arena (hint: choose one of: ccm)"),
    (["--board", "nucleo-f429zi", "--weights-section", "ccm"],
     "board 'nucleo-f429zi' has no flash region 'ccm' for the weights (hint: `mcuflow boards "
     "--json` lists each board's regions)"),
    (["--board", "nucleo-f429zi", "--memory-map", "qemu", "--arena-section", "ccm"],
     "--arena-section and --weights-section place data in the board's own regions (hint: use "
     "them with --memory-map board)"),
])
def test_board_and_target_mistakes(args: list[str], message: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert_user_error(invoke(capsys, "compile", MODEL, "-o", tmp_path / "fw", *args), message)
    assert not (tmp_path / "fw").exists()


def test_the_rp2040_builds_for_the_cortex_m0plus(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(capsys, "compile", MODEL, "--board", "rp2040", "-o", tmp_path / "fw")[0] == 0
    assert "-mcpu=cortex-m0plus" in (tmp_path / "fw" / "Makefile").read_text()
    code, _, _ = invoke(capsys, "compile", MODEL, "--board", "rp2040", "--target", "cortex-m0",
                        "-o", tmp_path / "m0")
    assert code == 0


def test_host_stays_available_for_any_board(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = invoke(capsys, "compile", MODEL, "--board", "esp32-s3", "--target", "host",
                        "-o", tmp_path / "host")
    assert code == 0
    assert not (tmp_path / "host" / "mcuflow.ld").exists()


@pytest.mark.parametrize("model", INT8_MODELS)
@pytest.mark.parametrize("machine", ["netduino2", "netduinoplus2"])
def test_board_firmware_is_bit_exact_over_the_uart(model: str, machine: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's check: each shared model's board firmware on QEMU's STM32 machine."""
    code, out, _ = invoke(capsys, "verify", SHARED_MODELS / model, "--machine", machine,
                          "--runs", "3", "--json")
    result = json.loads(out)
    assert code == 0 and result["bit_exact"] and result["mismatches"] == 0
    assert result["machine"] == machine
    assert result["board"] == {"netduino2": "nucleo-f207zg",
                               "netduinoplus2": "nucleo-f429zi"}[machine]
    assert result["instructions"] > 0


def test_board_firmware_counts_the_instructions_the_mps2_build_counts() -> None:
    """One model and core on two machines: the same count, within each SysTick's resolution."""
    board = api.get_board("nucleo-f429zi")
    analysis = api.analyze_model(MODEL, board.id, target="cortex-m4")
    on_board = verify_board(analysis.graph, analysis.plan, board, runs=2)
    on_mps2 = verify_cortexm(analysis.graph, analysis.plan, "cortex-m4", board, runs=2)
    assert on_board.bit_exact and on_mps2.bit_exact
    slack = on_board.instructions_per_tick + on_mps2.instructions_per_tick + 64
    assert abs(on_board.instructions - on_mps2.instructions) <= slack


@pytest.mark.parametrize(("args", "message"), [
    (["--machine", "netduino3"], "unknown machine 'netduino3' (hint: machines that run board "
                                 "firmware: netduino2, netduinoplus2)"),
    (["--machine", "netduino2", "--board", "nucleo-f429zi"],
     "board 'nucleo-f429zi' runs on QEMU netduinoplus2, not netduino2 (hint: pass --machine "
     "netduinoplus2)"),
    (["--target", "cortex-m7", "--board", "nrf52840"],
     "--target cortex-m7 does not match board 'nrf52840', whose core is a cortex-m4"),
    (["--machine", "netduino2", "--board", "nucleo-f767zi"],
     "no QEMU machine emulates the MCU of board 'nucleo-f767zi' (hint: machines and their "
     "boards: netduino2 (nucleo-f207zg), netduinoplus2 (nucleo-f429zi))"),
])
def test_machine_mistakes(args: list[str], message: str,
                          capsys: pytest.CaptureFixture[str]) -> None:
    assert_user_error(invoke(capsys, "verify", MODEL, *args), message)


def test_the_cortex_m0plus_runs_on_qemu(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(capsys, "verify", MODEL, "--target", "cortex-m0plus", "--runs", "2",
                          "--json")
    result = json.loads(out)
    assert code == 0 and result["bit_exact"] and result["board"] == "rp2040"
