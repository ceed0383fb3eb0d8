"""`mcuflow search`: user errors are one line and exit 2, before any training, and write nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import mcuflow.nas.command  # noqa: F401  (registers `mcuflow search` on the CLI)
import mcuflow.nas.pipeline
from mcuflow import api
from mcuflow.memory.patch_search import PatchRequest
from mcuflow.nas.space import arch_graph, default_space, smallest
from mcuflow.planning import analyze_graph
from tests.support import run_cli, run_cli_output

pytest.importorskip("torch")


def _error_line(code: int, err: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mcuflow: error: "), err
    return lines[0]


def test_missing_data_file_is_one_line(capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    out = tmp_path / "out"
    line = _error_line(*run_cli(capsys, ["search", "--data", str(tmp_path / "none.npz"),
                                         "--board", "nucleo-f091rc", "-o", str(out)]))
    assert "none.npz" in line
    assert not out.exists() and not (tmp_path / "out.checkpoint").exists()


@pytest.mark.parametrize(("option", "limit", "unit"), [("--flash-budget", "4096", "B"),
                                                       ("--latency-ms", "1", "ms")])
def test_impossible_limit_is_one_line_naming_the_smallest_need(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, option: str, limit: str,
        unit: str) -> None:
    """The line gives what the smallest architecture needs: at least the planner's figure."""
    out = tmp_path / "out"
    code, stdout, err = run_cli_output(capsys, [
        "search", "--data", "digits", "--board", "nucleo-f091rc", option, limit,
        "--minutes", "1", "-o", str(out), "--json"])
    line = _error_line(code, err)
    assert "hint:" in line and "--latency-ms" in line
    assert '"error"' in stdout  # --json: the error as JSON on stdout too
    assert not out.exists()
    space = default_space(2, 8)
    graph = arch_graph(smallest(space, min(space.widths), 8), space, 1, 10)
    report = analyze_graph(graph, api.build_for("nucleo-f091rc"),
                           PatchRequest(sram_budget=32768)).report
    planned = report.flash_bytes if unit == "B" else report.latency_ms_estimate
    shown = f"{float(limit):,g}"
    match = re.search(rf"needs (at least )?([0-9,.]+) {unit} .*over the limit of {shown} ", line)
    assert match, line
    need = float(match[2].replace(",", ""))
    assert float(limit) < need <= planned + 0.05
    if match[1] is None:
        assert need == pytest.approx(planned, abs=0.05)


def test_resume_without_a_checkpoint_says_the_search_starts_afresh(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _out, err = run_cli_output(capsys, [
        "search", "--data", str(tmp_path / "none.npz"), "--board", "nucleo-f091rc", "--resume",
        "-o", str(tmp_path / "out")])
    assert code == 2
    notice, error = " ".join(err.split()).split(" mcuflow: error: ")
    assert notice == f"no checkpoint at {tmp_path / 'out.checkpoint'}: the search starts afresh"
    assert "none.npz" in error


@pytest.mark.parametrize(("layout", "message"), [
    ("series", "--layout series does not apply to digits: it holds images"),
    ("rows", "'rows' is not one of 'auto', 'images', 'series'")])
def test_a_layout_that_does_not_apply_is_one_line(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path, layout: str,
                                                  message: str) -> None:
    line = _error_line(*run_cli(capsys, ["search", "--data", "digits", "--board",
                                         "nucleo-f091rc", "--layout", layout, "--minutes", "1",
                                         "-o", str(tmp_path / "out")]))
    assert message in line
    assert not (tmp_path / "out").exists()


def test_unknown_board_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = _error_line(*run_cli(capsys, ["search", "--data", "digits", "--board", "no-such",
                                         "-o", str(tmp_path / "out")]))
    assert "no-such" in line


def test_a_board_without_a_cortex_m_core_is_refused_before_the_search(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The found model could not be verified on QEMU: the search does not start."""
    monkeypatch.setattr(mcuflow.nas.pipeline, "search", _never_called)
    line = _error_line(*run_cli(capsys, ["search", "--data", "digits", "--board", "esp32-s3",
                                         "-o", str(tmp_path / "out")]))
    assert "esp32-s3" in line and "xtensa-lx7" in line and "Cortex-M" in line
    assert not (tmp_path / "out").exists()


def _never_called(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("the search started")


def test_foreign_output_directory_is_refused_first(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    line = _error_line(*run_cli(capsys, ["search", "--data", "digits", "--board",
                                         "nucleo-f091rc", "-o", str(out)]))
    assert "not an mcuflow output directory" in line
    assert (out / "notes.txt").read_text() == "keep me"


def test_without_torch_names_the_extra(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    line = _error_line(*run_cli(capsys, ["search", "--data", "digits", "--board",
                                         "nucleo-f091rc", "-o", str(tmp_path / "out")]))
    assert "pip install 'mcuflow[nas]'" in line


def test_python_m_mcuflow_has_the_search_command() -> None:
    done = subprocess.run([sys.executable, "-m", "mcuflow", "search", "--help"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    for option in ("--data", "--board", "--sram-budget", "--flash-budget", "--latency-ms",
                   "--minutes", "--workers", "--ray-address", "--resume", "--json", "--layout",
                   "--space"):
        assert option in done.stdout
