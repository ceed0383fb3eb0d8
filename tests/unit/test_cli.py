"""The command line: outputs, JSON fields, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mcuflow.examples import DEMO_MODEL, build_demo_graph
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.constraints import supported_ops_markdown
from mcuflow.ir.graph import DType
from mcuflow.ir.ops import NoAttrs, OpKind
from tests.fuzz.onnx_seeds import onnx_seeds
from tests.support import SHARED_MODELS, litert_invoke, run_cli_output

ROOT = Path(__file__).resolve().parents[2]
KWS = SHARED_MODELS / "kws_ref_model.tflite"


def invoke(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    return run_cli_output(capsys, [str(arg) for arg in args])


def assert_user_error(result: tuple[int, str, str], phrase: str) -> None:
    code, _, err = result
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mcuflow: error: ")
    assert phrase in lines[0]
    assert "Traceback" not in err


def test_analyze_json_fields(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(capsys, "analyze", KWS, "--board", "nucleo-f767zi", "--json")
    assert code == 0
    report = json.loads(out)
    for key in ("model", "board", "macs", "flash_bytes", "peak_ram_bytes", "fits",
                "latency_ms_estimate", "energy_mj_estimate", "layers"):
        assert key in report
    assert report["board"] == "nucleo-f767zi"
    # DS-CNN KWS of MLPerf Tiny: 2.66 M MACs (published figure for this model).
    assert 2_600_000 < report["macs"] < 2_800_000
    layer = report["layers"][0]
    for key in ("name", "op", "output_shape", "macs", "weight_bytes", "working_set_bytes"):
        assert key in layer
    assert report["fits"] is True
    # The working sets are the planner's live bytes: the arena holds every one of them.
    largest = max(layer["working_set_bytes"] for layer in report["layers"])
    assert largest <= report["peak_ram_bytes"] <= 1.05 * largest


def test_analyze_table_and_plot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plot = tmp_path / "ws.png"
    code, out, _ = invoke(capsys, "analyze", KWS, "--board", "nucleo-f091rc", "--plot", plot)
    assert code == 0
    assert "DEPTHWISE_CONV_2D" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_matches_litert(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, size=(1, 49, 10, 1), dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    dump = tmp_path / "dump"
    code, _, _ = invoke(capsys, "run", KWS, "--input", tmp_path / "x.npy",
                        "--output", tmp_path / "y.npy", "--dump-intermediates", dump)
    assert code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), litert_invoke(KWS, [x])[0])
    assert len(list(dump.glob("*.npy"))) > 10


def test_boards_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(capsys, "boards", "--json")
    assert code == 0
    ids = {board["id"] for board in json.loads(out)}
    assert {"nucleo-f767zi", "nucleo-f746zg", "nucleo-f429zi", "nucleo-f207zg",
            "nucleo-f091rc", "nucleo-l4r5zi", "rp2040", "nrf52840"} <= ids


def test_boards_table_written_to_a_pipe_shows_every_id_whole(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The ids are what --board takes: an 80-column table once cut them to 'nucleo-…'."""
    _, listed, _ = invoke(capsys, "boards", "--json")
    code, out, _ = invoke(capsys, "boards")
    assert code == 0
    first_cells = {line.split("│")[1].strip() for line in out.splitlines()
                   if line.startswith("│") and line.split("│")[1].strip()}
    assert first_cells == {board["id"] for board in json.loads(listed)}


def test_supported_ops_md_is_generated() -> None:
    assert (ROOT / "SUPPORTED_OPS.md").read_text() == supported_ops_markdown()


def test_demo_fixture_is_reproducible() -> None:
    assert DEMO_MODEL.read_bytes() == write_tflite(build_demo_graph())


def test_entry_point_prints_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "empty.tflite"
    bad.write_bytes(b"")
    done = subprocess.run([sys.executable, "-m", "mcuflow", "analyze", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("mcuflow: error: ")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (b"", "empty"),
        (KWS.read_bytes()[:1000], "truncated"),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "not a TFLite"),
        (KWS.read_bytes()[:4] + b"XXXX" + KWS.read_bytes()[8:], "not a TFLite"),
    ],
    ids=["empty", "truncated", "png", "bad-identifier"],
)
def test_broken_files(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                      content: bytes, phrase: str) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    assert_user_error(invoke(capsys, "analyze", path), phrase)


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert_user_error(invoke(capsys, "analyze", tmp_path / "nope.tflite"), "no such model")


def test_float_model_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(capsys, "analyze", SHARED_MODELS / "kws_ref_model_float32.tflite")
    assert_user_error(result, "int8")


def test_unknown_board(capsys: pytest.CaptureFixture[str]) -> None:
    assert_user_error(invoke(capsys, "analyze", KWS, "--board", "nucleo-f767"), "unknown board")


def test_every_unsupported_op_listed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    b = GraphBuilder("mixed", seed=1)
    x = b.dequantize(b.conv2d(b.input((1, 8, 8, 4)), 4))
    x = b.op(OpKind.RELU, [x], NoAttrs(), None, DType.FLOAT32)
    x = b.op(OpKind.LOGISTIC, [x], NoAttrs(), None, DType.FLOAT32)
    path = tmp_path / "mixed.tflite"
    path.write_bytes(write_tflite(b.output(x).build()))
    code, _, err = invoke(capsys, "analyze", path)
    assert_user_error((code, "", err), "2 unsupported operator(s)")
    assert "op 2" in err and "RELU" in err and "op 3" in err and "LOGISTIC" in err


def test_quantize_then_run_matches_litert(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    np.save(tmp_path / "cal.npy", rng.standard_normal((8, 640)).astype(np.float32))
    out = tmp_path / "ad01_int8_ours.tflite"
    code, stdout, _ = invoke(capsys, "quantize", SHARED_MODELS / "ad01_fp32.tflite",
                             "--calibration", tmp_path / "cal.npy", "-o", out, "--json")
    assert code == 0
    assert json.loads(stdout)["samples"] == 8
    assert json.loads(stdout)["bias_corrected"] is True
    plain = tmp_path / "plain.tflite"
    code, stdout, _ = invoke(capsys, "quantize", SHARED_MODELS / "ad01_fp32.tflite",
                             "--calibration", tmp_path / "cal.npy", "-o", plain, "--json",
                             "--no-bias-correction")
    assert code == 0 and json.loads(stdout)["bias_corrected"] is False
    assert plain.read_bytes() != out.read_bytes()
    x = rng.integers(-128, 128, size=(1, 640), dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    code, _, _ = invoke(capsys, "run", out, "--input", tmp_path / "x.npy",
                        "--output", tmp_path / "y.npy")
    assert code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), litert_invoke(out, [x])[0])


def test_quantize_report_on_held_out_samples(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    np.save(tmp_path / "cal.npy", rng.standard_normal((8, 640)).astype(np.float32))
    np.save(tmp_path / "eval.npy", rng.standard_normal((5, 640)).astype(np.float32))
    args = ["quantize", SHARED_MODELS / "ad01_fp32.tflite", "--calibration", tmp_path / "cal.npy",
            "-o", tmp_path / "out.tflite"]
    code, stdout, _ = invoke(capsys, *args, "--evaluation", tmp_path / "eval.npy", "--json")
    assert code == 0
    report = json.loads(stdout)
    assert report["held_out"] is True and report["samples"] == 5
    code, stdout, _ = invoke(capsys, *args, "--evaluation", tmp_path / "eval.npy", "--report")
    assert code == 0 and "on 5 held-out samples" in stdout
    np.save(tmp_path / "wrong.npy", np.zeros((2, 3), np.float32))
    assert_user_error(invoke(capsys, *args, "--evaluation", tmp_path / "wrong.npy"),
                      "evaluation data: calibration array of shape (2, 3)")


def test_verify_quantises_a_float_model_on_the_fly(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    samples = np.random.default_rng(4).standard_normal((8, 49, 10, 1)).astype(np.float32)
    np.save(tmp_path / "cal.npy", samples)
    code, stdout, _ = invoke(capsys, "verify", SHARED_MODELS / "kws_ref_model_float32.tflite",
                             "--calibration", tmp_path / "cal.npy", "--scheme", "codebook",
                             "--json")
    assert code == 0
    report = json.loads(stdout)
    assert report["bit_exact"] and report["litert_mismatches"] == 0
    assert report["weight_bytes"] < 22_000  # affine stores 24,368 B: the C holds the codebook


def test_float_onnx_needs_calibration(capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_seeds()["conv_bn"])
    assert_user_error(invoke(capsys, "analyze", path), "is a float ONNX model")
    assert_user_error(invoke(capsys, "analyze", path), "--calibration")
    path.write_bytes(b"\x08\x07")  # a protobuf, but no ONNX model
    assert_user_error(invoke(capsys, "analyze", path), "is not an ONNX model")


def test_compile_names_the_layers_that_run_portable_kernels(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A depth multiplier of 2 on 12 channels runs portable: compile for an M4 says why.

    For the host it says nothing.
    """
    b = GraphBuilder("portable_note", seed=7)
    x = b.input((1, 6, 6, 12), 0.05, 1)
    b.output(b.conv2d(b.depthwise_conv2d(x, (3, 3), depth_multiplier=2), 6, (3, 3)))
    model = tmp_path / "m.tflite"
    model.write_bytes(write_tflite(b.build()))
    board = ("-b", "nucleo-f429zi")
    code, out, _ = invoke(capsys, "compile", str(model), *board, "-o", str(tmp_path / "m4"),
                          "--json")
    assert code == 0
    portable = json.loads(out)["portable_layers"]
    assert [(p["op"], p["kernels"], p["reason"]) for p in portable] == [
        ("DEPTHWISE_CONV_2D", ["mcuflow_dwconv_s8"], "depth multiplier 2, and more than 8 input "
         "channels for the depthwise layer as a dense matrix product")]
    code, out, _ = invoke(capsys, "compile", str(model), *board, "-o", str(tmp_path / "text"))
    assert code == 0 and "(DEPTHWISE_CONV_2D) runs a portable kernel on this DSP core: depth " \
        "multiplier 2" in " ".join(out.split())
    code, out, _ = invoke(capsys, "compile", str(model), *board, "--target", "host", "-o",
                          str(tmp_path / "host"), "--json")
    assert code == 0 and json.loads(out)["portable_layers"] == []
