"""`mcuflow verify --target cortex-m*` and `mcuflow bench` through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcuflow.examples import DEMO_MODEL
from tests.support import SHARED_MODELS
from tests.unit.test_cli import assert_user_error, invoke


def test_verify_on_cortex_m4_with_profile(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(capsys, "verify", DEMO_MODEL, "--target", "cortex-m4", "--runs", "3",
                          "--profile", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["bit_exact"] is True and result["mismatches"] == 0
    assert result["board"] == "nucleo-f429zi"
    layers = result["layers"]
    assert len(layers) == 10
    # Per-layer counts cover the whole inference (one tick of resolution per layer).
    assert abs(sum(layer["instructions"] for layer in layers) - result["instructions"]) \
        <= (len(layers) + 1) * result["instructions_per_tick"]
    assert result["flash_bytes"] > 0 and result["ram_bytes"] >= result["arena_bytes"]
    # Each layer names the kernels its step calls; the demo's convolutions all run DSP kernels.
    assert all(layer["kernels"] for layer in layers if layer["macs"])
    assert all(layer["portable_reason"] is None for layer in layers)
    assert any("dsp" in kernel for layer in layers for kernel in layer["kernels"])


def test_bench_table_on_cortex_m0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(capsys, "bench", "--target", "cortex-m0", "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert row["bit_exact"] is True and row["machine"] == "mps2-an385"
    assert row["instructions"] > row["macs"]  # no DSP: more than one instruction per MAC


def test_unknown_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert_user_error(invoke(capsys, "verify", DEMO_MODEL, "--target", "cortex-m9"), "cortex-m9")


def test_compile_refuses_a_model_too_big_for_the_board(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "project"
    result = invoke(capsys, "compile", SHARED_MODELS / "vww_96_int8.tflite", "--board",
                    "nucleo-f091rc", "--target", "cortex-m0", "--patches", "off", "-o", out)
    assert_user_error(result, "does not fit nucleo-f091rc: needs 36,896 B of SRAM (has 32,768)")
    assert not out.exists()
