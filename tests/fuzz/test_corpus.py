"""Every input the fuzzer ever failed on, replayed: each must now get its recorded outcome.

Regenerate the expectations after a deliberate message change with
`python -m tests.fuzz.test_corpus` (and review the diff).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fuzz.harness import Outcome, Status, execute

CORPUS = Path(__file__).with_name("corpus")
EXPECTED = CORPUS / "expected.json"


def corpus_files() -> list[Path]:
    """The regression inputs, by name."""
    return sorted(CORPUS.glob("*.tflite"))


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
    outcome = execute(path.read_bytes())
    assert outcome.status is not Status.FAILURE, outcome.trace
    assert record(outcome) == json.loads(EXPECTED.read_text())[path.name]


if __name__ == "__main__":
    results = {path.name: record(execute(path.read_bytes())) for path in corpus_files()}
    EXPECTED.write_text(json.dumps(results, indent=2, ensure_ascii=True) + "\n")
