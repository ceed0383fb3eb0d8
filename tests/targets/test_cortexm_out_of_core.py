"""A model too large for the board's flash runs bit-exact on QEMU, its constants on the SD card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcuflow.codegen.external import HEADER, IMAGE_FILE, MAGIC
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir import zoo
from mcuflow.memory.patch_search import PatchRequest
from mcuflow.planning import Build, analyze_graph
from mcuflow.toolchain.qemu import verify_cortexm
from mcuflow.toolchain.uart import verify_board
from tests.support import run_cli_output
from tests.unit.test_out_of_core import small_flash

FLASH = 256 * 1024
RUNS = 2


@pytest.mark.parametrize("board_id", ["nucleo-f207zg", "nucleo-f429zi"])
def test_the_external_constants_run_bit_exact_within_the_linked_flash(board_id: str) -> None:
    board = small_flash(board_id, FLASH)
    analysis = analyze_graph(zoo.mobilenet_v2(48, 0.35, 100), Build(board), PatchRequest())
    report = analysis.report
    assert analysis.fits and report.external_reads > 0
    result = verify_cortexm(analysis.graph, analysis.plan, board.core.value, board, RUNS, 3)
    assert result.bit_exact and result.mismatches == 0
    assert result.storage_bytes_read == HEADER.size + RUNS * report.external_read_bytes
    assert result.flash_bytes <= FLASH
    assert abs(result.flash_bytes - report.flash_bytes) <= 0.03 * result.flash_bytes
    assert result.ram_bytes <= board.sram_bytes


def test_the_board_firmware_reads_its_image_on_the_boards_machine() -> None:
    board = small_flash("nucleo-f207zg", FLASH)
    analysis = analyze_graph(zoo.mobilenet_v2(48, 0.35, 100), Build(board), PatchRequest())
    assert analysis.report.external_reads > 0
    result = verify_board(analysis.graph, analysis.plan, board, runs=RUNS, seed=5)
    assert result.bit_exact and result.machine == "netduino2"


def test_compile_writes_the_image_and_reports_the_reads(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    graph = zoo.mobilenet_v2(128, 0.35)
    model = tmp_path / "mobilenet_v2_0.35_128.tflite"
    model.write_bytes(write_tflite(graph))
    code, out, err = run_cli_output(capsys, ["compile", str(model), "--board", "nucleo-f207zg",
                                             "-o", str(tmp_path / "out"), "--json"])
    assert code == 0, err
    external = json.loads(out)["external"]
    assert external["external_tier"] == "sd_card" and external["slowdown"] > 1
    image = (tmp_path / "out" / IMAGE_FILE).read_bytes()
    assert image[:len(MAGIC)] == MAGIC
    assert len(image) == HEADER.size + external["external_image_bytes"]
    code, _, err = run_cli_output(capsys, ["compile", str(model), "--board", "nucleo-f207zg",
                                           "--library", "-o", str(tmp_path / "lib")])
    assert code == 2 and "a --library does not ship yet" in err
    assert not (tmp_path / "lib").exists()
    code, out, err = run_cli_output(capsys, ["analyze", str(model), "--board", "nucleo-f207zg",
                                             "--external", "off", "--json"])
    report = json.loads(out)
    assert not report["fits_flash"] and report["external_tier"] == ""
