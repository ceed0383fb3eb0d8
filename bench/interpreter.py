"""Reference interpreter vs LiteRT's reference kernels: inferences per second on the shared models.

Both run single-threaded in this process (every BLAS / OpenMP pool is pinned to one thread before
numpy loads, as LiteRT runs with num_threads=1) with the garbage collector off. Time is the
process's CPU time, so being descheduled by other processes on a shared host costs neither side;
the many short rounds alternate which side goes first and each side keeps its best round.
Run: .venv/bin/python bench/interpreter.py [model file names...]
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

for _pool in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_pool] = "1"
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

ROUNDS = 100
ROUND_SECONDS = 0.01


def _seconds_per_call(function: Callable[[], object], calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        function()
    return (time.process_time() - start) / calls


def _calls_for(function: Callable[[], object]) -> int:
    """How many calls fill about ROUND_SECONDS (after one warm-up call)."""
    function()
    return max(1, int(ROUND_SECONDS / max(_seconds_per_call(function, 3), 1e-7)))


def _best_rounds(runs: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Best seconds per call of each run over ROUNDS rounds, alternating which goes first."""
    calls = {name: _calls_for(run) for name, run in runs.items()}
    best = dict.fromkeys(runs, float("inf"))
    order = list(runs)
    gc.disable()
    try:
        for _ in range(ROUNDS):
            for name in order:
                best[name] = min(best[name], _seconds_per_call(runs[name], calls[name]))
            order.reverse()
    finally:
        gc.enable()
    return best


def compare(path: Path) -> tuple[float, float]:
    """(ours, LiteRT) inferences per second on one model."""
    graph = read_tflite(path)
    ours = Interpreter(graph)
    theirs = litert_interpreter(path)
    rng = np.random.default_rng(0)
    inputs = [random_input(graph.tensor(name).shape, graph.tensor(name).dtype.numpy, rng)
              for name in graph.inputs]
    best = _best_rounds({"ours": lambda: ours.run(inputs),
                         "litert": lambda: litert_invoke(theirs, inputs)})
    return 1.0 / best["ours"], 1.0 / best["litert"]


def main(names: list[str]) -> None:
    """Print one row per int8 shared model and the geometric mean of the ratios."""
    print(f"{'model':34s} {'ours/s':>10s} {'LiteRT/s':>10s} {'ours/LiteRT':>12s}")
    ratios = []
    for name in names:
        ours, theirs = compare(SHARED_MODELS / name)
        ratios.append(ours / theirs)
        print(f"{name:34s} {ours:10.1f} {theirs:10.1f} {ours / theirs:12.2f}", flush=True)
    mean = float(np.exp(np.mean(np.log(ratios))))
    print(f"{'geometric mean':34s} {'':10s} {'':10s} {mean:12.2f}")


if __name__ == "__main__":
    main(sys.argv[1:] or INT8_MODELS)
