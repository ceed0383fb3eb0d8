"""`mcuflow verify --target cortex-m4` measures a patch stage's overhead on QEMU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir import zoo
from mcuflow.measure import PatchOverhead
from tests.unit.test_cli import invoke


def test_verify_measures_the_overhead_against_the_unpatched_model(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = tmp_path / "mobilenet_v2_48.tflite"
    model.write_bytes(write_tflite(zoo.mobilenet_v2_like(48, 0.35, 10)))
    args = ["verify", model, "--target", "cortex-m4", "--runs", "2", "--seed", "4", "--json"]
    code, out, _ = invoke(capsys, *args, "--sram-budget", "16000")
    assert code == 0
    patched = json.loads(out)
    code, out, _ = invoke(capsys, *args, "--patches", "off")
    assert code == 0
    unpatched = json.loads(out)  # the oracle: the unpatched model verified on its own
    overhead = patched["patches"]
    assert patched["bit_exact"] and overhead["unpatched_bit_exact"]
    assert patched["arena_bytes"] <= 16000 < unpatched["arena_bytes"]
    assert "patches" not in unpatched
    assert overhead["instructions_patched"] == patched["instructions"]
    assert overhead["instructions_unpatched"] == unpatched["instructions"]
    assert overhead["unpatched_arena_bytes"] == unpatched["arena_bytes"]
    assert overhead["unpatched_board"] == patched["board"] == "nucleo-f429zi"
    measured = 100 * (patched["instructions"] / unpatched["instructions"] - 1)
    assert overhead["measured_overhead_pct"] == pytest.approx(measured, rel=1e-12)
    assert overhead["predicted_overhead_pct"] != pytest.approx(measured, abs=0.01)
    assert PatchOverhead(**overhead).line().startswith(
        f"patches: measured {measured:+.1f} % instructions (predicted "
        f"{overhead['predicted_overhead_pct']:+.1f} %): {patched['instructions']:,} per "
        f"inference patched, {unpatched['instructions']:,} unpatched")
