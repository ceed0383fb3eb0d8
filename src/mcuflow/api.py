"""The Python API: wires frontends, passes, memory, analysis, codegen and toolchains together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuflow.analysis.metrics import Report, analyze
from mcuflow.errors import McuflowError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.hw.board import Board, get_board
from mcuflow.ir.constraints import check_supported
from mcuflow.ir.graph import Graph
from mcuflow.ir.verify import verify_graph
from mcuflow.memory.plan import Plan
from mcuflow.memory.planner import plan_memory
from mcuflow.ref.interpreter import RunResult, run

DEFAULT_BOARD = "nucleo-f767zi"


def load_graph(model: Path | str) -> Graph:
    """Read a model file, check its invariants and that every op is supported."""
    path = Path(model)
    if not path.is_file():
        raise McuflowError(f"no such model file: {path}", hint="check the path")
    graph = read_tflite(path)
    verify_graph(graph)
    check_supported(graph)
    return graph


@dataclass(frozen=True)
class Analysis:
    """A model analysed on a board: the graph, its memory plan and the report."""

    graph: Graph
    board: Board
    plan: Plan
    report: Report


def analyze_model(
    model: Path | str, board_id: str = DEFAULT_BOARD, board_file: Path | None = None
) -> Analysis:
    """Plan memory for `model` and report per-layer costs on the board."""
    graph = load_graph(model)
    board = get_board(board_id, board_file)
    plan = plan_memory(graph)
    report = analyze(graph, board, order=plan.order, peak_ram_bytes=plan.arena_bytes)
    return Analysis(graph, board, plan, report)


def run_model(model: Path | str, inputs: list[np.ndarray]) -> RunResult:
    """Run the bit-exact reference interpreter, keeping every intermediate tensor."""
    return run(load_graph(model), inputs, keep_intermediates=True)


def demo_model_path() -> Path:
    """The bundled example model (regenerate with `python -m mcuflow.examples`)."""
    from mcuflow.examples import DEMO_MODEL

    return DEMO_MODEL


def dump_tensors(tensors: dict[str, np.ndarray], directory: Path) -> None:
    """Write each tensor as DIRECTORY/<sanitised name>.npy."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in tensors.items():
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:120]
        np.save(directory / f"{safe}.npy", value)
