"""The command line as a new user meets it: fit gates, plan hashes and one-line errors (exit 2)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.zoo import squeezenet_like
from tests.child import ChildRun, run_mcuflow
from tests.support import SHARED_MODELS, litert_interpreter, litert_invoke

KWS = SHARED_MODELS / "kws_ref_model.tflite"
KWS_FLOAT = SHARED_MODELS / "kws_ref_model_float32.tflite"
WRITE_HINT = "(hint: check that the parent directory exists and is writable)"
FIT_HINT = ("(hint: pick a larger board (`mcuflow boards`) or a smaller model (`mcuflow analyze` "
            "shows which layers need the memory), or pass --no-fit-check to generate the C "
            "anyway)")


# --- analyze --require-fit and compile's fit check ------------------------------------------


def require_fit_report(model: Path, overflows: str, *options: str) -> dict[str, object]:
    """`analyze --json --require-fit` of a model that does not fit nucleo-f091rc: exit 1.

    The JSON report is still printed, with `fits` and `overflows` false.
    """
    done = run_mcuflow(["analyze", model, "-b", "nucleo-f091rc", "--json", "--require-fit",
                        *options])
    assert done.code == 1 and done.stderr == ""
    report = json.loads(done.stdout)
    assert report["fits"] is False and report[overflows] is False
    return report


def test_require_fit_exits_1_after_the_table_and_only_with_the_flag() -> None:
    """Patched vww still overflows the flash: the table and exit 1 with the flag, 0 without.

    The exit status is decided after either output; the JSON form with the flag (exit 1 after
    the report) is run by the compile tests below, whose messages quote their reports.
    """
    args = ["analyze", SHARED_MODELS / "vww_96_int8.tflite", "-b", "nucleo-f091rc"]
    table = run_mcuflow([*args, "--require-fit"])
    assert table.code == 1 and table.stderr == "" and "Verdict" in table.stdout
    done = run_mcuflow([*args, "--json"])
    assert done.code == 0 and done.stderr == ""
    report = json.loads(done.stdout)
    assert report["fits"] is False and report["fits_flash"] is False


def test_require_fit_exits_0_when_the_model_fits() -> None:
    done = run_mcuflow(["analyze", KWS, "-b", "nucleo-f767zi", "--json", "--require-fit"])
    assert done.code == 0 and json.loads(done.stdout)["fits"] is True


def test_compile_for_the_host_checks_the_fit_against_the_board(tmp_path: Path) -> None:
    """Unpatched, vww needs more SRAM than the board has, and the refusal names patches.

    Patched it fits (a host build has no flash limit).
    """
    model = SHARED_MODELS / "vww_96_int8.tflite"
    unpatched = require_fit_report(model, "fits_sram", "--patches", "off")
    out = tmp_path / "host"
    args = ["compile", model, "-b", "nucleo-f091rc", "--target", "host", "-o", out]
    done = run_mcuflow([*args, "--patches", "off"])
    assert done.code == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(
        f"mcuflow: error: 'vww_96_int8' does not fit nucleo-f091rc (a host build is checked "
        f"against the board too): needs {unpatched['peak_ram_bytes']:,} B of SRAM (has "
        f"{unpatched['sram_bytes']:,}) (hint: the fit advisor's best option fits: patches")
    assert not out.exists()
    done = run_mcuflow([*args, "--patches", "off", "--no-fit-check"])
    assert done.code == 0, done.stderr
    assert (out / "mcuflow_model.c").is_file()
    patched = tmp_path / "patched"
    done = run_mcuflow(["compile", model, "-b", "nucleo-f091rc", "--target", "host", "-o",
                        patched, "--json"])
    assert done.code == 0, done.stderr


def test_compile_names_the_flash_overflow(tmp_path: Path) -> None:
    model = SHARED_MODELS / "ad01_int8.tflite"
    report = require_fit_report(model, "fits_flash", "--external", "off")
    out = tmp_path / "fw"
    done = run_mcuflow(["compile", model, "-b", "nucleo-f091rc", "-o", out, "--external", "off"])
    assert done.code == 2 and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(f"mcuflow: error: 'ad01_int8' does not fit nucleo-f091rc: "
                                  f"needs {report['flash_bytes']:,} B of flash for ")
    assert done.stderr.endswith(f"(has {report['flash_capacity']:,}) {FIT_HINT}\n")
    assert not out.exists()


# --- plan --json: plan_hash -----------------------------------------------------------------


def _plan(model: Path) -> dict[str, object]:
    done = run_mcuflow(["plan", model, "--json"])
    assert done.code == 0, done.stderr
    return json.loads(done.stdout)


def test_plan_hash_is_the_same_under_cpu_load(tmp_path: Path) -> None:
    model = tmp_path / "squeezenet.tflite"
    model.write_bytes(write_tflite(squeezenet_like()))
    quiet = _plan(model)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        loaded = _plan(model)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert loaded == quiet
    rest = {key: value for key, value in quiet.items() if key != "plan_hash"}
    canonical = json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()
    assert quiet["plan_hash"] == hashlib.sha256(canonical).hexdigest()


# --- output paths and plot formats ----------------------------------------------------------


@pytest.mark.parametrize("command", ["analyze", "plan"])
def test_plot_into_a_missing_directory(tmp_path: Path, command: str) -> None:
    done = run_mcuflow([command, KWS, "--plot", "nodir/ws.png"], cwd=tmp_path)
    done.assert_one_line(f"cannot write plot 'nodir/ws.png': No such file or directory "
                         f"{WRITE_HINT}")
    assert list(tmp_path.iterdir()) == []


def test_compile_into_proc() -> None:
    run_mcuflow(["compile", KWS, "-o", "/proc/nope"]).assert_one_line(
        f"cannot write project '/proc/nope': No such file or directory {WRITE_HINT}")


@pytest.mark.parametrize(("command", "name", "magic"), [("analyze", "ws.svg", b"<?xml"),
                                                        ("plan", "arena.pdf", b"%PDF")])
def test_plot_format_follows_the_suffix(tmp_path: Path, command: str, name: str,
                                        magic: bytes) -> None:
    done = run_mcuflow([command, KWS, "--plot", tmp_path / name, "--json"])
    assert done.code == 0, done.stderr
    data = (tmp_path / name).read_bytes()
    assert data.startswith(magic)
    assert (b"<svg" in data) == name.endswith(".svg")


@pytest.mark.parametrize(("name", "problem"), [("ws.txt", "unknown image format '.txt'"),
                                               ("ws", "no image format suffix")])
def test_plot_of_an_unknown_format_is_refused(tmp_path: Path, name: str, problem: str) -> None:
    done = run_mcuflow(["analyze", KWS, "--plot", name], cwd=tmp_path)
    done.assert_one_line(
        f"cannot write plot '{name}': {problem} (hint: end the file name with .png, .svg or "
        ".pdf; matplotlib also writes avif, eps, gif, jpeg, jpg, ps, raw, rgba, svgz, tif, "
        "tiff, webp)")
    assert done.stdout == "" and list(tmp_path.iterdir()) == []


# --- verify of a compiled directory ---------------------------------------------------------


def test_verify_of_a_cortex_m_directory_names_the_command(tmp_path: Path) -> None:
    project = tmp_path / "fw"
    assert run_mcuflow(["compile", KWS, "-b", "nucleo-f429zi", "-o", project]).code == 0
    run_mcuflow(["verify", project]).assert_one_line(
        f"'{project}' is Cortex-M firmware; the host builds only --target host projects (hint: "
        "verify the model for the board you compiled for: `mcuflow verify MODEL` with --board "
        "nucleo-f207zg --machine netduino2, --board nucleo-f429zi --machine netduinoplus2, or "
        "--target for QEMU's MPS2 machines)")
    run_mcuflow(["verify", project, "--target", "cortex-m4"]).assert_one_line(
        "a compiled directory is verified on the host, not on cortex-m4 (hint: verify the model "
        f"it was compiled from: `mcuflow verify {project}/model.tflite --target cortex-m4`)")


# --- model files --------------------------------------------------------------------------


def test_a_text_file_named_onnx_is_not_a_valid_onnx_model(tmp_path: Path) -> None:
    (tmp_path / "x.onnx").write_text("hello, I am a text file\n")
    done = run_mcuflow(["analyze", "x.onnx"], cwd=tmp_path)
    assert done.code == 2 and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("mcuflow: error: 'x.onnx' is not a valid ONNX protobuf")
    assert "float ONNX" not in done.stderr


@pytest.mark.parametrize("command", [["compile", "-o", "out"],
                                     ["quantize", "--calibration", "c.npy", "-o", "q.tflite"]])
def test_a_directory_given_as_the_model(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "models").mkdir()
    done = run_mcuflow([command[0], "models", *command[1:]], cwd=tmp_path)
    done.assert_one_line("'models' is a directory, not a model file (hint: pass the .tflite or "
                         ".onnx file; a directory written by `mcuflow compile` keeps its model "
                         "as model.tflite)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


# --- quantize --evaluation with labels -------------------------------------------------------


def _kws_samples(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Calibration file, held-out samples, and the float model's own predictions for them."""
    rng = np.random.default_rng(5)
    calibration = tmp_path / "cal.npy"
    np.save(calibration, rng.standard_normal((8, 49, 10, 1)).astype(np.float32))
    x = rng.standard_normal((6, 49, 10, 1)).astype(np.float32)
    predicted = np.array([np.argmax(litert_invoke(KWS_FLOAT, [x[i:i + 1]])[0])
                          for i in range(len(x))])
    return calibration, x, predicted


def test_evaluation_labels_give_accuracy(tmp_path: Path) -> None:
    calibration, x, predicted = _kws_samples(tmp_path)
    labels = predicted.copy()
    labels[3:] = (labels[3:] + 1) % 12  # the float model is right on exactly half
    np.savez(tmp_path / "eval.npz", x=x, y=labels)
    done = run_mcuflow(["quantize", KWS_FLOAT, "--calibration", calibration, "--evaluation",
                        tmp_path / "eval.npz", "-o", tmp_path / "q.tflite", "--json"])
    assert done.code == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["held_out"] is True and report["samples"] == 6
    accuracy = report["accuracy"]
    assert accuracy["samples"] == 6 and accuracy["float32"] == 0.5
    # The int8 model differs from the float one on 1 - top1_agreement of the samples at most.
    assert abs(accuracy["int8"] - 0.5) <= 1 - report["top1_agreement"] + 1e-9
    answers = [np.argmax(litert_invoke(tmp_path / "q.tflite", [_quantized_input(
        tmp_path / "q.tflite", x[i:i + 1])])[0]) for i in range(len(x))]
    assert accuracy["int8"] == accuracy_score(labels, answers)
    assert accuracy["int8_balanced"] == pytest.approx(balanced_accuracy_score(labels, answers))
    text = run_mcuflow(["quantize", KWS_FLOAT, "--calibration", calibration, "--evaluation",
                        tmp_path / "eval.npz", "-o", tmp_path / "q.tflite"])
    assert text.code == 0
    assert (f"top-1 accuracy on 6 labelled samples: int8 {accuracy['int8']:.1%} (balanced "
            f"{accuracy['int8_balanced']:.1%}), float 50.0%") in " ".join(text.stdout.split())


def _quantized_input(model: Path, x: np.ndarray) -> np.ndarray:
    """`x` in the model's input type: quantised by its scale and zero point where int8."""
    detail = litert_interpreter(model).get_input_details()[0]
    if detail["dtype"] != np.int8:
        return x.astype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)


def test_evaluation_labels_must_match_the_samples(tmp_path: Path) -> None:
    calibration, x, predicted = _kws_samples(tmp_path)
    np.savez(tmp_path / "eval.npz", x=x, y=predicted[:4])
    out = tmp_path / "q.tflite"
    run_mcuflow(["quantize", KWS_FLOAT, "--calibration", calibration, "--evaluation",
                 tmp_path / "eval.npz", "-o", out]).assert_one_line(
        "evaluation data: 6 samples in 'x' but 4 labels in 'y' (hint: give one label per "
        "sample)")
    assert not out.exists()


# --- boards -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "board_id"), [("NUCLEO-F429ZI", "nucleo-f429zi"),
                                                ("raspberry pi PICO", "rp2040")])
def test_board_names_as_boards_prints_them(name: str, board_id: str) -> None:
    done = run_mcuflow(["analyze", KWS, "-b", name, "--json"])
    assert done.code == 0, done.stderr
    assert json.loads(done.stdout)["board"] == board_id


MINIMAL_BOARD = """
[boards.mine]
name = "My board"
core = "cortex-m4"
clock_hz = 80_000_000
sram_bytes = 65536
flash_bytes = 262144
"""

TIERS = """
[[boards.mine.tiers]]
kind = "sram"
size_bytes = 65536
read_bandwidth = 3.2e8
write_bandwidth = 3.2e8
writable = true
needs_erase = false
memory_mapped = true

[[boards.mine.tiers]]
kind = "onchip_flash"
size_bytes = 262144
read_bandwidth = 3.2e8
write_bandwidth = 1e5
writable = true
needs_erase = true
source = "RM0394"
"""


def test_a_minimal_board_file_names_every_missing_field(tmp_path: Path) -> None:
    (tmp_path / "my.toml").write_text(MINIMAL_BOARD + TIERS)
    run_mcuflow(["analyze", KWS, "-b", "mine", "--board-file", "my.toml"],
                cwd=tmp_path).assert_one_line(
        "board file my.toml, board 'mine': missing fields 'mcu', 'fpu', 'dsp', "
        "'sram_total_bytes', 'flash_wait_states'; tier 1: missing field 'memory_mapped' (hint: "
        "energy and source fields may be left out; see the packaged boards.toml "
        "(src/mcuflow/hw/boards.toml) for the schema)")


def test_energy_and_sources_left_out_are_marked_estimates(tmp_path: Path) -> None:
    board = MINIMAL_BOARD + ('mcu = "STM32L432KC"\nfpu = "sp"\ndsp = true\n'
                             "sram_total_bytes = 65536\nflash_wait_states = 4\n")
    (tmp_path / "my.toml").write_text(board + TIERS + "memory_mapped = true\n")
    done = run_mcuflow(["boards", "--board-file", "my.toml", "--json"], cwd=tmp_path)
    assert done.code == 0, done.stderr
    [mine] = json.loads(done.stdout)
    for field in ("source", "sram_source", "wait_states_source", "power_source"):
        assert mine[field].startswith("estimate: not given in the board file"), field
    assert "supply_voltage_v, active_current_ua_per_mhz" in mine["power_source"]
    assert mine["active_power_mw"] > 0 and mine["sleep_power_mw"] > 0
    sram, flash = mine["tiers"]
    assert sram["source"].startswith("estimate: not given in the board file")
    assert flash["source"].startswith("RM0394; estimate: not given in the board file")
    assert sram["read_energy_nj_per_byte"] > 0 and flash["write_energy_nj_per_byte"] > 0
    analysed = run_mcuflow(["analyze", KWS, "-b", "mine", "--board-file", "my.toml", "--json"],
                           cwd=tmp_path)
    assert analysed.code == 0 and json.loads(analysed.stdout)["energy_mj_estimate"] > 0


def test_the_rp2040_compiles_for_the_cortex_m0plus(tmp_path: Path) -> None:
    done = run_mcuflow(["compile", KWS, "-b", "rp2040", "--target", "cortex-m0plus", "-o",
                        tmp_path / "fw"])
    assert done.code == 0, done.stderr
    assert "-mcpu=cortex-m0plus" in (tmp_path / "fw" / "Makefile").read_text()


def test_a_board_and_target_mismatch(tmp_path: Path) -> None:
    out = tmp_path / "fw"
    run_mcuflow(["compile", KWS, "-b", "nrf52840", "--target", "cortex-m7", "-o", out]
                ).assert_one_line(
        "--target cortex-m7 does not match board 'nrf52840', whose core is a cortex-m4 (hint: "
        "omit --target to build for the cortex-m4, or pass --target host)")
    assert not out.exists()


# --- --json errors ------------------------------------------------------------------------


def _assert_json_error(done: ChildRun, error: str, hint: str) -> None:
    done.assert_one_line(f"{error} (hint: {hint})")
    assert json.loads(done.stdout) == {"error": error, "hint": hint}


def test_json_errors_are_json_on_stdout(tmp_path: Path) -> None:
    _assert_json_error(run_mcuflow(["analyze", "nope.tflite", "--json"], cwd=tmp_path),
                       "no such model file: nope.tflite", "check the path")
    _assert_json_error(run_mcuflow(["plan", "--json"]), "Missing parameter: model",
                       "see `mcuflow --help`")
    plain = run_mcuflow(["analyze", "nope.tflite"], cwd=tmp_path)
    assert plain.code == 2 and plain.stdout == ""
