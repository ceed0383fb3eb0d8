"""Memory planner benchmark: our arena against TFLM's on the shared int8 models and zoo graphs.

Run: .venv/bin/python bench/memory.py [--time-limit 1.0] [--json]
Goals (issue 3): ours <= 0.6 x TFLM's total and <= TFLM's head on every int8 model, within 5 %
of the lower bound for the order chosen, planning under 2 s per model.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from mcuflow.errors import McuflowError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir import zoo
from mcuflow.ir.graph import DType, Graph
from mcuflow.memory import check_plan, plan_memory

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support import tflm_arena  # noqa: E402

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf_tiny"
ZOO: dict[str, Callable[[], Graph]] = {
    "zoo/mobilenet_v2_like": zoo.mobilenet_v2_like,
    "zoo/mobilenet_v3_like": zoo.mobilenet_v3_like,
    "zoo/squeezenet_like": zoo.squeezenet_like,
    "zoo/resnet_like": zoo.resnet_like,
}


@dataclass
class Row:
    model: str
    ops: int
    ours: int
    lower_bound: int
    tflm_total: int
    tflm_head: int
    plan_s: float

    @property
    def vs_total(self) -> float:
        return self.ours / self.tflm_total

    @property
    def vs_bound(self) -> float:
        return self.ours / self.lower_bound

    def goals(self) -> dict[str, bool]:
        return {"<=0.6 TFLM total": self.vs_total <= 0.6,
                "<=TFLM head": self.ours <= self.tflm_head,
                "<=1.05 lower bound": self.vs_bound <= 1.05,
                "plan <2 s": self.plan_s < 2.0}


def measure(name: str, graph: Graph, path: Path, time_limit: float) -> Row:
    start = time.perf_counter()
    plan = plan_memory(graph, time_limit)
    elapsed = time.perf_counter() - start
    check_plan(plan)
    total, head = tflm_arena(path)
    return Row(name, len(graph.operators), plan.arena_bytes, plan.lower_bound_bytes, total,
               head, elapsed)


def is_int8(graph: Graph) -> bool:
    return all(graph.tensors[name].dtype is DType.INT8 for name in graph.inputs)


def rows(time_limit: float) -> list[Row]:
    found = []
    for path in sorted(MODELS.glob("*.tflite")):
        try:
            graph = read_tflite(path)
        except McuflowError as error:
            print(f"{path.name}: not read ({error})", file=sys.stderr)
            continue
        if is_int8(graph):
            found.append(measure(path.name, graph, path, time_limit))
    with tempfile.TemporaryDirectory() as folder:
        for name, build in ZOO.items():
            graph = build()
            path = Path(folder) / f"{graph.name}.tflite"
            path.write_bytes(write_tflite(graph))
            found.append(measure(name, graph, path, time_limit))
    return found


def table(found: list[Row]) -> str:
    header = (f"{'model':<32}{'ops':>5}{'ours B':>10}{'bound B':>10}{'ours/bnd':>9}"
              f"{'TFLM tot':>10}{'TFLM head':>10}{'ours/tot':>9}{'plan s':>8}  goals")
    lines = [header, "-" * len(header)]
    for r in found:
        failed = [goal for goal, ok in r.goals().items() if not ok]
        lines.append(f"{r.model:<32}{r.ops:>5}{r.ours:>10,}{r.lower_bound:>10,}{r.vs_bound:>9.3f}"
                     f"{r.tflm_total:>10,}{r.tflm_head:>10,}{r.vs_total:>9.3f}{r.plan_s:>8.2f}"
                     f"  {'ok' if not failed else 'MISSED ' + ', '.join(failed)}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=1.0, help="plan_memory time limit")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    found = rows(args.time_limit)
    if args.json:
        print(json.dumps([asdict(r) | {"goals": r.goals()} for r in found], indent=2))
    else:
        print(table(found))
    return 0 if all(all(r.goals().values()) for r in found) else 1


if __name__ == "__main__":
    raise SystemExit(main())
