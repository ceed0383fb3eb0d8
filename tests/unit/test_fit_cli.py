"""--fit and the fit advisor on the command line: tables, JSON, the refusal, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir import zoo
from mcuflow.ref.interpreter import run
from mcuflow.toolchain.host import random_inputs
from tests.support import litert_invoke
from tests.unit.test_cli import assert_user_error, invoke

BUDGET = "8000"
"""SqueezeNet-48 fits this SRAM budget only at a smaller input resolution."""
M4 = ["-b", "nucleo-f429zi", "--sram-budget", BUDGET, "--external", "off"]
"""Without external storage: no option spills activations to the SD card."""


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fit") / "squeezenet_48.tflite"
    path.write_bytes(write_tflite(zoo.squeezenet_like(48)))
    return path


def test_analyze_lists_the_options_after_the_verdict(capsys: pytest.CaptureFixture[str],
                                                     model: Path) -> None:
    code, out, err = invoke(capsys, "analyze", model, *M4, "--require-fit")
    assert code == 1 and err == ""
    assert out.index("Verdict") < out.index("How to make it fit (fit advisor, best first)")
    for name in ("resolution", "patches", "streamed", "order"):
        assert f"--fit {name}" in out or name == "order"
    assert "1. resolution: input 32x32 instead of 48x48" in out
    assert "not offered: external tier" in out and "--external auto" in out


def test_analyze_json_has_the_ranked_options(capsys: pytest.CaptureFixture[str],
                                             model: Path) -> None:
    code, out, _ = invoke(capsys, "analyze", model, *M4, "--json")
    assert code == 0
    report = json.loads(out)
    options = report["fit_options"]
    assert report["fits"] is True and report["fits_budget"] is False
    assert report["fit"] == {"applied": None, "changed_model": False}
    assert options[0]["name"] == "resolution" and options[0]["fits"] is True
    assert [o["fits"] for o in options] == sorted((o["fits"] for o in options), reverse=True)
    for option in options:
        assert set(option) >= {"name", "description", "exact", "fits", "peak_bytes",
                               "flash_bytes", "instructions", "overhead_pct", "latency_ms",
                               "macs", "flags", "detail", "over_bytes", "sqnr_db"}
        assert option["fits"] == (option["peak_bytes"] <= int(BUDGET))
    assert any("--external auto applies it" in note for note in report["fit_notes"])


def test_compile_refuses_and_points_at_the_best_option(capsys: pytest.CaptureFixture[str],
                                                       model: Path, tmp_path: Path) -> None:
    out = tmp_path / "project"
    result = invoke(capsys, "compile", model, *M4, "-o", out)
    assert_user_error(result, "'squeezenet_48' does not fit nucleo-f429zi: needs ")
    line = result[2]
    assert "B of SRAM (--sram-budget 8,000)" in line
    assert ("(hint: the fit advisor's best option fits: resolution (lossy: it changes the "
            "model), input 32x32 instead of 48x48") in line
    assert "apply it with --fit auto (or --fit resolution)" in line
    assert "`mcuflow analyze` lists every option ranked" in line
    assert not out.exists()
    code, text, _ = invoke(capsys, "compile", model, *M4, "-o", out, "--no-fit-check")
    assert code == 0 and (out / "mcuflow_model.c").is_file()
    assert text.index("How to make it fit") < text.index("wrote ")


def test_compile_fit_auto_writes_a_model_that_fits(capsys: pytest.CaptureFixture[str],
                                                   model: Path, tmp_path: Path) -> None:
    out = tmp_path / "project"
    code, text, _ = invoke(capsys, "compile", model, *M4, "-o", out, "--fit", "auto")
    assert code == 0
    assert ("fit: the model 'squeezenet_48' was changed (resolution, lossy): input 32x32 "
            "instead of 48x48") in " ".join(text.split())
    arena = int(next(line for line in (out / "mcuflow_model.h").read_text().splitlines()
                     if "MCUFLOW_ARENA_BYTES" in line and "define" in line).split()[-1])
    assert arena <= int(BUDGET)
    written = read_tflite(out / "model.tflite")
    assert written.tensors[written.inputs[0]].shape == (1, 32, 32, 3)
    inputs = [x[0] for x in random_inputs(written, 1, 3)]
    assert np.array_equal(litert_invoke(out / "model.tflite", inputs)[0],
                          run(written, inputs).outputs[0])


def test_fit_auto_json_says_the_model_changed(capsys: pytest.CaptureFixture[str],
                                              model: Path, tmp_path: Path) -> None:
    code, out, _ = invoke(capsys, "plan", model, *M4, "--fit", "auto", "--json")
    assert code == 0
    plan = json.loads(out)
    assert plan["arena_bytes"] <= int(BUDGET) and plan["plan_hash"]
    assert plan["fit"]["changed_model"] is True
    assert plan["fit"]["applied"]["name"] == "resolution"
    assert plan["fit"]["applied"]["input_shape"] == [1, 32, 32, 3]


def test_fit_auto_names_the_best_peak_when_nothing_fits(capsys: pytest.CaptureFixture[str],
                                                        model: Path, tmp_path: Path) -> None:
    result = invoke(capsys, "compile", model, "-b", "nucleo-f429zi", "--sram-budget", "900",
                    "-o", tmp_path / "p", "--fit", "auto")
    assert_user_error(result, "does not fit nucleo-f429zi: needs ")
    assert "; the fit advisor's best option, " in result[2]
    assert "(hint: pick a larger board" in result[2]


def test_verify_on_the_host_says_where_the_overhead_is_measured(
        capsys: pytest.CaptureFixture[str], model: Path) -> None:
    args = ["verify", model, "-b", "nucleo-f429zi", "--sram-budget", "12000", "--runs", "2"]
    code, out, _ = invoke(capsys, *args, "--json")
    assert code == 0
    result = json.loads(out)
    patches = result["patches"]
    assert result["bit_exact"] is True and patches["measured_overhead_pct"] is None
    assert patches["instructions_unpatched"] is None
    assert "measured on Cortex-M targets only" in patches["note"]
    code, out, _ = invoke(capsys, *args)
    assert code == 0
    assert (f"predicted {patches['predicted_overhead_pct']:+.1f} % instructions; the overhead "
            "is measured on Cortex-M targets only") in " ".join(out.split())


@pytest.mark.parametrize("command", ["analyze", "plan", "compile", "verify", "bench"])
def test_a_bad_fit_value_is_one_line(capsys: pytest.CaptureFixture[str], model: Path,
                                     tmp_path: Path, command: str) -> None:
    extra = ["-o", str(tmp_path / "out")] if command == "compile" else []
    result = invoke(capsys, command, model, "--fit", "bogus", *extra)
    assert_user_error(result, "--fit takes off, auto or an option's name (patches, "
                              "patches-smallest, streamed, order, codebook-256, codebook-16, "
                              "resolution), not 'bogus' (hint: `mcuflow analyze MODEL` lists")


def test_a_streamed_input_must_be_an_image(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    model = tmp_path / "autoencoder.tflite"
    model.write_bytes(write_tflite(zoo.fc_autoencoder()))
    result = invoke(capsys, "analyze", model, "--input", "streamed")
    assert_user_error(result, "--input streamed reads NHWC images; input 'input_1' (1, 128) is "
                              "not one (hint: drop --input streamed")
