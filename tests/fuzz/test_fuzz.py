"""The bounded CI fuzz pass: a fixed, deterministic campaign of mutated models.

Four shards of EXECUTIONS inputs each (about 60 s of CPU in all, split over the xdist workers).
A failing input is written to the test's temporary directory to be replayed and, once fixed,
kept in tests/fuzz/corpus/.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.fuzz.harness import FuzzInput, Outcome, Status, execute, make_input

CAMPAIGN = "ci"
SHARDS = 4
EXECUTIONS = 5000


def _report(failures: dict[str, tuple[int, FuzzInput, Outcome]], directory: Path) -> str:
    lines = []
    for signature, (index, fuzz_input, outcome) in sorted(failures.items()):
        path = directory / f"{CAMPAIGN}-{index}.tflite"
        path.write_bytes(fuzz_input.data)
        lines.append(f"{signature}: input {index} ({fuzz_input.description}) saved as {path}\n"
                     f"{outcome.trace}")
    return "\n".join(lines)


@pytest.mark.fuzz
@pytest.mark.parametrize("shard", range(SHARDS))
def test_fuzz_shard(shard: int, tmp_path: Path) -> None:
    failures: dict[str, tuple[int, FuzzInput, Outcome]] = {}
    stages: Counter[tuple[Status, str]] = Counter()
    for index in range(shard, SHARDS * EXECUTIONS, SHARDS):
        fuzz_input = make_input(CAMPAIGN, index)
        outcome = execute(fuzz_input.data, index)
        stages[outcome.status, outcome.stage] += 1
        if outcome.status is Status.FAILURE:
            failures.setdefault(outcome.signature, (index, fuzz_input, outcome))
    assert not failures, _report(failures, tmp_path)
    # A campaign whose inputs all die in the reader would test nothing past it.
    accepted = sum(n for (status, _), n in stages.items() if status is Status.ACCEPTED)
    rejecting = {stage for status, stage in stages if status is Status.REJECTED}
    assert accepted > EXECUTIONS // 20, stages
    assert {"read", "constraints"} <= rejecting, stages
