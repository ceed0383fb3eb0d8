"""The bounded CI fuzz pass: fixed, deterministic campaigns of mutated models.

TFLite inputs go through read, verify, constraints, plan, analyze, run, the arena and code
generation (every BUILD_EVERY-th rendered project is also built with the sanitizers and run);
ONNX inputs through import, passes, quantisation, constraints, plan and run; hostile board files
and calibration arrays through their readers (tests/fuzz/readers.py), and hostile output paths
through the writers (tests/fuzz/outputs.py). The shards take about
70-90 s of CPU in all, split over the xdist workers. A failing input is written to the
test's temporary directory to be replayed and, once fixed, kept in tests/fuzz/corpus/.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.fuzz.campaign import FORMATS, Campaign
from tests.fuzz.harness import FuzzInput, Outcome, Status

CAMPAIGN = "ci"
SHARDS = {"tflite": (4, 2500), "onnx": (2, 4000), "boards": (1, 1000), "arrays": (1, 1000),
          "outputs": (1, 1000)}
"""Per format: shards, and inputs per shard."""
BUILD_EVERY = 150
MUST_REJECT_AT = {"tflite": {"read", "constraints"}, "onnx": {"read", "quantize"},
                  "boards": {"read"}, "arrays": {"calibration", "input"}, "outputs": {"refused"}}
MUST_ACCEPT_AT = {"tflite": "codegen", "onnx": "run", "boards": "json", "arrays": "calibration",
                  "outputs": "written"}


def _report(failures: dict[str, tuple[int, FuzzInput, Outcome]], directory: Path,
            suffix: str) -> str:
    lines = []
    for signature, (index, fuzz_input, outcome) in sorted(failures.items()):
        path = directory / f"{CAMPAIGN}-{index}{suffix}"
        path.write_bytes(fuzz_input.data)
        lines.append(f"{signature}: input {index} ({fuzz_input.description}) saved as {path}\n"
                     f"{outcome.trace}")
    return "\n".join(lines)


SHARD_IDS = [(name, shard) for name, (count, _) in SHARDS.items() for shard in range(count)]


@pytest.mark.fuzz
@pytest.mark.parametrize(("name", "shard"), SHARD_IDS, ids=[f"{n}-{s}" for n, s in SHARD_IDS])
def test_fuzz_shard(name: str, shard: int, tmp_path: Path) -> None:
    shards, executions = SHARDS[name]
    campaign = Campaign(CAMPAIGN, FORMATS[name], build_every=BUILD_EVERY)
    failures: dict[str, tuple[int, FuzzInput, Outcome]] = {}
    stages: Counter[tuple[Status, str]] = Counter()
    for index in range(shard, shards * executions, shards):
        fuzz_input, outcome = campaign.run(index)
        stages[outcome.status, outcome.stage] += 1
        if outcome.status is Status.FAILURE:
            failures.setdefault(outcome.signature, (index, fuzz_input, outcome))
    assert not failures, _report(failures, tmp_path, FORMATS[name].suffix)
    # A campaign whose inputs all die in the reader would test nothing past it.
    accepted = stages[Status.ACCEPTED, MUST_ACCEPT_AT[name]]
    rejecting = {stage for status, stage in stages if status is Status.REJECTED}
    assert accepted > executions // 20, stages
    assert MUST_REJECT_AT[name] <= rejecting, stages
    if name == "tflite":
        assert campaign.built >= 1 and stages[Status.ACCEPTED, "build"] == campaign.built, stages
