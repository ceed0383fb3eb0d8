"""Reference interpreter vs LiteRT's reference kernels: inferences per second on the shared models.

Both run single-threaded (OpenBLAS is pinned to one thread before numpy loads, as LiteRT runs with
num_threads=1), interleaved in rounds, best round kept, so machine noise hits both alike.
Run: .venv/bin/python bench/interpreter.py
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from mcuflow.frontends.tflite_reader import read_tflite  # noqa: E402
from mcuflow.ref.interpreter import Interpreter  # noqa: E402
from tests.support import (  # noqa: E402
    INT8_MODELS,
    SHARED_MODELS,
    litert_interpreter,
    litert_invoke,
    random_input,
)

ROUNDS = 5
ROUND_SECONDS = 0.2


def _seconds_per_call(function: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


def _calls_for(function: Callable[[], object]) -> int:
    """How many calls fill about ROUND_SECONDS."""
    return max(1, int(ROUND_SECONDS / max(_seconds_per_call(function, 3), 1e-7)))


def compare(path: Path) -> tuple[float, float]:
    """(ours, LiteRT) inferences per second on one model, best of ROUNDS interleaved rounds."""
    graph = read_tflite(path)
    ours = Interpreter(graph)
    theirs = litert_interpreter(path)
    rng = np.random.default_rng(0)
    inputs = [random_input(graph.tensor(name).shape, graph.tensor(name).dtype.numpy, rng)
              for name in graph.inputs]
    runs = {"ours": lambda: ours.run(inputs), "litert": lambda: litert_invoke(theirs, inputs)}
    calls = {name: _calls_for(run) for name, run in runs.items()}
    best = {name: float("inf") for name in runs}
    for _ in range(ROUNDS):
        for name, run in runs.items():
            best[name] = min(best[name], _seconds_per_call(run, calls[name]))
    return 1.0 / best["ours"], 1.0 / best["litert"]


def main() -> None:
    """Print one row per int8 shared model and the geometric mean of the ratios."""
    print(f"{'model':34s} {'ours/s':>10s} {'LiteRT/s':>10s} {'ours/LiteRT':>12s}")
    ratios = []
    for name in INT8_MODELS:
        ours, theirs = compare(SHARED_MODELS / name)
        ratios.append(ours / theirs)
        print(f"{name:34s} {ours:10.1f} {theirs:10.1f} {ours / theirs:12.2f}")
    mean = float(np.exp(np.mean(np.log(ratios))))
    print(f"{'geometric mean':34s} {'':10s} {'':10s} {mean:12.2f}")


if __name__ == "__main__":
    main()
