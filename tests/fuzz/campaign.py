"""Campaigns: one format's generated inputs executed in order, with a host build now and then."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tests.fuzz.harness import FuzzInput, Limits, Outcome, Status, execute, make_input
from tests.fuzz.onnx_harness import execute_onnx, make_onnx_input
from tests.fuzz.outputs import execute_outputs, make_output_input
from tests.fuzz.readers import execute_arrays, execute_boards, make_array_input, make_board_input

BUILD_EVERY = 200
"""Every this many inputs that pass the code generation stage, one is built and run too."""


@dataclass(frozen=True)
class Format:
    """An input format: how its inputs are made and executed, and the suffix of its files."""

    name: str
    suffix: str
    make_input: Callable[[str, int], FuzzInput]
    execute: Callable[[bytes, int, Limits], Outcome]


FORMATS = {
    "tflite": Format("tflite", ".tflite", make_input, execute),
    "onnx": Format("onnx", ".onnx", make_onnx_input, execute_onnx),
    "boards": Format("boards", ".toml", make_board_input, execute_boards),
    "arrays": Format("arrays", ".npz", make_array_input, execute_arrays),
    "outputs": Format("outputs", ".json", make_output_input, execute_outputs),
}
"""Model formats, and the files a user names beside a model: board files and calibration arrays
(tests/fuzz/readers.py; an arrays input is read as .npy unless it starts as a zip), and the
output paths the writers meet (tests/fuzz/outputs.py)."""


@dataclass
class Campaign:
    """The inputs of a named campaign in one format, executed one index at a time.

    Every `build_every`-th input that passes code generation is executed again with a
    sanitised host build of its C, run against the reference interpreter (0: never).
    """

    name: str
    format: Format
    limits: Limits = field(default_factory=Limits)
    build_every: int = BUILD_EVERY
    rendered: int = 0
    built: int = 0

    def run(self, index: int) -> tuple[FuzzInput, Outcome]:
        """Make and execute input `index`."""
        fuzz_input = self.format.make_input(self.name, index)
        outcome = self.format.execute(fuzz_input.data, index, self.limits)
        if outcome.status is Status.ACCEPTED and outcome.stage == "codegen":
            self.rendered += 1
            if self.build_every and self.rendered % self.build_every == 0:
                self.built += 1
                outcome = execute(fuzz_input.data, index, self.limits, build=True)
        return fuzz_input, outcome
