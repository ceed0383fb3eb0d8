"""The harness itself: inputs are reproducible and every kind of failure is caught."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from mcuflow.errors import ModelFormatError
from mcuflow.frontends.tflite_reader import read_tflite
from tests.fuzz import harness
from tests.fuzz.compiled import UnsafeCode, check_rendered
from tests.fuzz.harness import Limits, Status, execute, make_input
from tests.fuzz.onnx_harness import execute_onnx, make_onnx_input
from tests.fuzz.onnx_seeds import onnx_seeds
from tests.fuzz.seeds import all_seeds, built_seeds


def test_inputs_are_deterministic() -> None:
    first = [make_input("determinism", i) for i in range(30)]
    again = [make_input("determinism", i) for i in range(30)]
    assert first == again
    assert len({item.data for item in first}) > 25


def test_every_seed_is_accepted() -> None:
    for name, data in built_seeds().items():
        outcome = execute(data)
        assert (outcome.status, outcome.stage) == (Status.ACCEPTED, "codegen"), name
    assert len(all_seeds()) > len(built_seeds())


def test_every_onnx_seed_is_accepted() -> None:
    for name, data in onnx_seeds().items():
        outcome = execute_onnx(data)
        assert (outcome.status, outcome.stage) == (Status.ACCEPTED, "run"), (name, outcome.trace)


def test_onnx_inputs_are_deterministic() -> None:
    first = [make_onnx_input("determinism", i) for i in range(30)]
    assert first == [make_onnx_input("determinism", i) for i in range(30)]
    assert len({item.data for item in first}) > 25


def test_a_seed_builds_and_runs_bit_exact() -> None:
    outcome = execute(built_seeds()["convs"], build=True)
    assert (outcome.status, outcome.stage) == (Status.ACCEPTED, "build"), outcome.trace


@pytest.mark.parametrize(
    ("name", "text"),
    [("mcuflow_model.c", "int caf\u00e9;"), ("mcuflow_model.c", "int conv_out;"),
     ("mcuflow_model.h", 'const char *s = "evil";'), ("mcuflow_model.c", "/* a */ */")],
    ids=["non-ascii", "raw-name", "string", "comment-end"],
)
def test_unsafe_code_is_caught(name: str, text: str) -> None:
    graph = read_tflite(built_seeds()["convs"])
    with pytest.raises(UnsafeCode):
        check_rendered(graph, {name: text})


def _raising(error: BaseException):
    def read(data: bytes) -> None:
        raise error

    return read


@pytest.mark.parametrize(
    ("fault", "status", "error"),
    [
        (_raising(IndexError("list index out of range")), Status.FAILURE, "IndexError"),
        (_raising(ModelFormatError("bad file", "a hint")), Status.REJECTED, "ModelFormatError"),
        (_raising(ModelFormatError("a\nb", "a hint")), Status.REJECTED, "ModelFormatError"),
        (_raising(ModelFormatError("", "a hint")), Status.FAILURE, "ModelFormatError"),
        (_raising(RecursionError()), Status.FAILURE, "RecursionError"),
        (lambda data: np.float32(1e38) * np.float32(1e38), Status.FAILURE, "FloatingPointError"),
        (lambda data: warnings.warn("odd", UserWarning, stacklevel=1), Status.FAILURE,
         "UserWarning"),
        (lambda data: time.sleep(5), Status.FAILURE, "Hang"),
    ],
    ids=["index", "typed", "newline", "empty-message", "recursion", "overflow", "warning",
         "hang"],
)
def test_failures_are_classified(monkeypatch: pytest.MonkeyPatch, fault, status: Status,
                                 error: str) -> None:
    monkeypatch.setattr(harness, "read_tflite", fault)
    outcome = execute(b"", limits=Limits(timeout_s=0.3))
    assert (outcome.status, outcome.stage, outcome.error) == (status, "read", error)


def test_arena_mismatch_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def corrupt(plan, inputs):
        result = harness.run(plan.graph, inputs)
        result.outputs[0] = result.outputs[0] ^ np.int8(1)
        return result

    monkeypatch.setattr(harness, "run_in_arena", corrupt)
    outcome = execute(built_seeds()["elementwise"])
    assert (outcome.status, outcome.stage, outcome.error) == (Status.FAILURE, "arena", "Mismatch")
