"""Resource limits: a hostile 10 MB file costs at most a few times its size and a few seconds.

`mcuflow analyze`'s work (api.analyze_model) runs on each file in a fresh subprocess, under
tracemalloc, so that the peak counts every allocation the file caused, numpy arrays included.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.hostile import HOSTILE

ROOT = Path(__file__).resolve().parents[2]
MAX_MEMORY_RATIO = 4.0
MAX_SECONDS = 5.0

MEASURE = """
import json, sys, time, tracemalloc
from mcuflow import api
from mcuflow.errors import McuflowError
results = {}
tracemalloc.start()
for path in sys.argv[1:]:
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    try:
        api.analyze_model(path)
        outcome = "accepted"
    except McuflowError as error:
        outcome = error.message
    results[path] = {"seconds": time.perf_counter() - start, "outcome": outcome,
                     "peak": tracemalloc.get_traced_memory()[1] - base}
print(json.dumps(results))
"""

EXPECTED = {
    "aliased-tensors": "has 2621440 tensors; mcuflow reads at most 16384",
    "aliased-quantisation": "has 2605056 quantisation scales; mcuflow reads at most 65536",
    "huge-operator": "op 0 has 2620417 operands; mcuflow reads at most 65536",
    "aliased-operands": "is corrupt: its shapes, quantisation parameters and operands hold more",
    "shared-buffer": "is corrupt: its constant tensors add up to more than twice its",
    "random-bytes": "is truncated or corrupt: its root table offset",
    "big-weights": "accepted",
}


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    directory = tmp_path_factory.mktemp("hostile")
    paths = []
    for name, make in HOSTILE.items():
        path = directory / f"{name}.tflite"
        path.write_bytes(make())
        paths.append(str(path))
    done = subprocess.run([sys.executable, "-c", MEASURE, *paths], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, check=True)
    results = json.loads(done.stdout)
    return {Path(path).stem: {**value, "size": Path(path).stat().st_size}
            for path, value in results.items()}


def test_every_hostile_file_is_expected() -> None:
    assert set(EXPECTED) == set(HOSTILE)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file(name: str, measured: dict[str, dict]) -> None:
    result = measured[name]
    assert result["size"] > 10_000_000
    assert EXPECTED[name] in result["outcome"]
    assert result["peak"] <= MAX_MEMORY_RATIO * result["size"], result
    assert result["seconds"] <= MAX_SECONDS, result
