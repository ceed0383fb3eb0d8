"""`mcuflow verify DIR`: a compiled directory is built as it is and checked to the bit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support import SHARED_MODELS
from tests.unit.test_cli import assert_user_error, invoke


def test_compiled_directory_verifies_and_a_tampered_one_does_not(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    project = tmp_path / "kws"
    model = SHARED_MODELS / "kws_ref_model.tflite"
    assert invoke(capsys, "compile", model, "-o", project, "--target", "host")[0] == 0
    code, out, _ = invoke(capsys, "verify", project, "--runs", "4", "--json")
    assert code == 0
    assert json.loads(out)["bit_exact"] is True
    weights = project / "mcuflow_weights.c"
    # Zero the first layer's bias: every later layer sees different activations.
    tampered, count = re.subn(r"(_l0_bias\[\d+\][^{]*\{)[^}]*\}", r"\1 0 }",
                              weights.read_text())
    assert count == 1
    weights.write_text(tampered)
    code, out, _ = invoke(capsys, "verify", project, "--runs", "4", "--json")
    assert code == 1
    assert json.loads(out)["bit_exact"] is False


def test_directory_without_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert_user_error(invoke(capsys, "verify", tmp_path), "holds no model.tflite")


def test_a_firmware_directory_is_verified_through_its_model(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    project = tmp_path / "firmware"
    assert invoke(capsys, "compile", SHARED_MODELS / "kws_ref_model.tflite", "-o", project,
                  "--board", "nucleo-f429zi")[0] == 0
    assert_user_error(invoke(capsys, "verify", project),
                      f"'{project}' is Cortex-M firmware; the host builds only --target host "
                      "projects (hint: verify the model for the board you compiled for: "
                      "`mcuflow verify MODEL` with --board nucleo-f207zg --machine netduino2, "
                      "--board nucleo-f429zi --machine netduinoplus2, or --target for QEMU's "
                      "MPS2 machines)")
