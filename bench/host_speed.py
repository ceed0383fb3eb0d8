"""Generated C on the host vs LiteRT's default (optimised) interpreter, measured in one run.

Per int8 MLPerf Tiny model: inference time of the generated C (gcc -O2, many inferences timed
inside the binary with clock_gettime), LiteRT's default interpreter (default op resolver,
num_threads=1) on the same input, and the generated code's size (executable bytes of the model
and kernel objects at -O2), constant data and arena.

Usage: .venv/bin/python bench/host_speed.py [--seconds S] [MODEL.tflite ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from mcuflow.codegen.project import generate_project
from mcuflow.errors import McuflowError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.host import bench_host, build_host, code_bytes, random_inputs

SHARED = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf_tiny"
MODELS = ["kws_ref_model.tflite", "vww_96_int8.tflite", "pretrainedResnet_quant.tflite",
          "ad01_int8.tflite", "str_ww_ref_model.tflite"]


def litert_seconds(path: Path, inputs: list[np.ndarray], budget: float) -> float:
    """Seconds per invoke of LiteRT's default interpreter (best of three timed batches)."""
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    for detail, x in zip(interpreter.get_input_details(), inputs, strict=True):
        interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    start = time.perf_counter()
    interpreter.invoke()
    iterations = max(1, int(budget / 3 / max(time.perf_counter() - start, 1e-7)))
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(iterations):
            interpreter.invoke()
        best = min(best, (time.perf_counter() - start) / iterations)
    return best


def c_seconds(binary: Path, inputs: list[np.ndarray], budget: float) -> float:
    """Seconds per inference of the generated C (best of three timed batches)."""
    once = bench_host(binary, inputs, 3)
    iterations = max(1, int(budget / 3 / max(once, 1e-7)))
    return min(bench_host(binary, inputs, iterations) for _ in range(3))


def measure(path: Path, budget: float) -> dict[str, float | int | str]:
    """One table row for the model at `path`."""
    graph = read_tflite(path)
    plan = plan_memory(graph)
    inputs = [x[0] for x in random_inputs(graph, 1, seed=0)]
    with tempfile.TemporaryDirectory(prefix="mcuflow-bench-") as scratch:
        project = generate_project(graph, plan, Path(scratch) / "project")
        binary = build_host(project.path, opt_level="-O2")
        ours = c_seconds(binary, inputs, budget)
        code = code_bytes(project.path)
    theirs = litert_seconds(path, inputs, budget)
    return {"model": path.name, "c_ms": ours * 1e3, "litert_ms": theirs * 1e3,
            "ratio": ours / theirs, "code": code, "weights": project.weight_bytes,
            "arena": plan.arena_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--seconds", type=float, default=1.5,
                        help="time budget per model and engine")
    args = parser.parse_args()
    paths = args.models or [SHARED / name for name in MODELS]
    header = (f"{'model':32} {'C -O2 ms':>9} {'LiteRT ms':>10} {'C/LiteRT':>9} "
              f"{'code B':>8} {'weights B':>10} {'arena B':>8}")
    print(header)
    print("-" * len(header))
    for path in paths:
        try:
            row = measure(path, args.seconds)
        except McuflowError as error:
            print(f"{path.name:32} error: {error}", flush=True)
            continue
        print(f"{row['model']:32} {row['c_ms']:9.3f} {row['litert_ms']:10.3f} "
              f"{row['ratio']:9.2f} {row['code']:8d} {row['weights']:10d} {row['arena']:8d}",
              flush=True)


if __name__ == "__main__":
    main()
