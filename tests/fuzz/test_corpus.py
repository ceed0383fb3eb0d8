"""Every input the fuzzer ever failed on, replayed: each must now get its recorded outcome.

Each file goes through the pipeline of its format (by suffix); .tflite inputs that pass code
generation are also built with the sanitizers and run. Regenerate the expectations after a
deliberate message change with `python -m tests.fuzz.test_corpus` (and review the diff).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fuzz.harness import Outcome, Status, execute
from tests.fuzz.onnx_harness import execute_onnx

CORPUS = Path(__file__).with_name("corpus")
EXPECTED = CORPUS / "expected.json"


def corpus_files() -> list[Path]:
    """The regression inputs (.tflite and .onnx), by name."""
    return sorted([*CORPUS.glob("*.tflite"), *CORPUS.glob("*.onnx")])


def replay(path: Path) -> Outcome:
    """The outcome of one regression input, through the pipeline of its format."""
    if path.suffix == ".onnx":
        return execute_onnx(path.read_bytes())
    return execute(path.read_bytes(), build=True)


def record(outcome: Outcome) -> dict[str, str]:
    """What is compared: status, stage reached, error type and message."""
    return {"status": outcome.status.value, "stage": outcome.stage, "error": outcome.error,
            "message": outcome.message}


def test_every_input_has_an_expectation() -> None:
    expected = json.loads(EXPECTED.read_text())
    assert sorted(expected) == [path.name for path in corpus_files()]
    assert len(expected) >= 10


@pytest.mark.parametrize("path", corpus_files(), ids=lambda path: path.stem)
def test_corpus_input(path: Path) -> None:
    outcome = replay(path)
    assert outcome.status is not Status.FAILURE, outcome.trace
    assert record(outcome) == json.loads(EXPECTED.read_text())[path.name]


if __name__ == "__main__":
    results = {path.name: record(replay(path)) for path in corpus_files()}
    EXPECTED.write_text(json.dumps(results, indent=2, ensure_ascii=True) + "\n")
