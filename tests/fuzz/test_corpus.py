"""Every input the fuzzer ever failed on, replayed against rules the implementation did not write.

Each file goes through the pipeline of its format (by suffix); .tflite inputs that pass code
generation are also built with the sanitizers and run. Every file is also compiled by the CLI:
a broken one must give DESIGN.md's user error (exactly one `mcuflow: error: … (hint: …)` line,
exit code 2, no traceback, no output directory), a valid one a project. A new input goes into
corpus/; when it is a valid model, its name goes into ACCEPTED too.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.fuzz.harness import Outcome, Status, execute
from tests.fuzz.onnx_harness import execute_onnx
from tests.support import run_cli

CORPUS = Path(__file__).with_name("corpus")
ACCEPTED = frozenset({"keras-flatten-scalar-pack.tflite"})
"""The valid models of the corpus (Keras writes a scalar's Flatten as PACK); the rest are broken."""
MAX_SAMPLE_VALUES = 1 << 20


def corpus_files() -> list[Path]:
    """The regression inputs (.tflite and .onnx), by name."""
    return sorted([*CORPUS.glob("*.tflite"), *CORPUS.glob("*.onnx")])


def replay(path: Path) -> Outcome:
    """The outcome of one regression input, through the pipeline of its format."""
    if path.suffix == ".onnx":
        return execute_onnx(path.read_bytes())
    return execute(path.read_bytes(), build=True)


def calibration(model: Path, folder: Path) -> Path:
    """One N(0, 1) sample per graph input, shaped as the ONNX file (read by onnx) declares."""
    graph = onnx.load_from_string(model.read_bytes()).graph
    constants = {tensor.name for tensor in graph.initializer}
    rng, samples = np.random.default_rng(0), {}
    for value in graph.input:
        if value.name not in constants:
            shape = [max(d.dim_value, 1) for d in value.type.tensor_type.shape.dim]
            size_ok = math.prod(shape) <= MAX_SAMPLE_VALUES
            samples[value.name] = rng.standard_normal(shape if size_ok else [1], np.float32)
    path = folder / "calibration.npz"
    np.savez(path, **samples)
    return path


def compile_with_cli(model: Path, output: Path, capsys: pytest.CaptureFixture[str]
                     ) -> tuple[int, str]:
    """`mcuflow compile MODEL -o OUTPUT` in-process (with calibration for ONNX): code, stderr."""
    onnx_model = model.suffix == ".onnx"
    extra = ["--calibration", str(calibration(model, output.parent))] if onnx_model else []
    return run_cli(capsys, ["compile", str(model), "-o", str(output), *extra])


def test_the_corpus_holds_its_inputs() -> None:
    names = {path.name for path in corpus_files()}
    assert len(names) >= 10
    assert names >= ACCEPTED


@pytest.mark.parametrize("path", corpus_files(), ids=lambda path: path.stem)
def test_corpus_input(path: Path) -> None:
    outcome = replay(path)
    assert outcome.status is not Status.FAILURE, outcome.trace
    assert (outcome.status is Status.ACCEPTED) == (path.name in ACCEPTED), outcome.message


@pytest.mark.parametrize("path", corpus_files(), ids=lambda path: path.stem)
def test_corpus_input_through_the_cli(path: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "project"
    code, err = compile_with_cli(path, output, capsys)
    assert "Traceback" not in err, err
    if path.name in ACCEPTED:
        assert code == 0 and output.is_dir(), err
        return
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("mcuflow: error: ") and "(hint: " in lines[0], err
    assert not output.exists()
