"""Patch stages past the first: later runs of layers go patch by patch until the peak fits."""

from __future__ import annotations

from dataclasses import dataclass

from mcuflow.ir.graph import Graph
from mcuflow.memory.patches import (
    PatchChoice,
    PatchError,
    PatchMode,
    Stage,
    find_segments,
    patch_graph,
)
from mcuflow.memory.schedule import build_problem, evaluate

MAX_SEGMENTS = 8
"""Segments patched at most (each round patches the one that lowers the peak most)."""
LOOK_BACK = 24
"""Ops before the peak step where a segment containing it may start."""


@dataclass(frozen=True)
class Segmented:
    """A graph with its later segments patched, and the lower bound of its peak."""

    graph: Graph
    peak_bytes: int
    segments: tuple[PatchChoice, ...]


def peak_of(graph: Graph, dsp: bool, streamed: frozenset[str]) -> tuple[int, list[int]]:
    """The planner's lower bound of `graph` in its own order, and the bytes needed per step."""
    problem = build_problem(graph, dsp=dsp, streamed=streamed, split=True)
    peak, needs, _ = evaluate(problem, list(range(len(graph.operators))))
    return peak, needs


def patch_segments(graph: Graph, budget: int, dsp: bool,
                   streamed: frozenset[str] = frozenset()) -> Segmented:
    """`graph` with runs of layers after its first patch stage patched until its peak fits.

    Each round takes the step needing the most bytes, tries every segment (find_segments)
    starting up to LOOK_BACK ops before it and containing it, in the cached mode with one
    source row per step and with half as many steps, and keeps the rewrite whose lower bound
    is smallest; rounds stop when the peak fits `budget`, no segment lowers it, or after
    MAX_SEGMENTS. Every rewrite is bit-exact (patches.patch_graph).
    """
    peak, needs = peak_of(graph, dsp, streamed)
    chosen: list[PatchChoice] = []
    while peak > budget and len(chosen) < MAX_SEGMENTS:
        found = _best_rewrite(graph, needs.index(peak), dsp, streamed)
        if found is None or found[1] >= peak:
            break
        graph, peak, needs, choice = found
        chosen.append(choice)
    return Segmented(graph, peak, tuple(chosen))


def _best_rewrite(graph: Graph, at: int, dsp: bool, streamed: frozenset[str]
                  ) -> tuple[Graph, int, list[int], PatchChoice] | None:
    """The segment rewrite containing step `at` with the smallest lower bound (None: none)."""
    best = None
    for start in range(at, max(at - LOOK_BACK, 0) - 1, -1):
        for stage in find_segments(graph, start):
            if stage.ops[-1] < at:
                continue
            for choice in _choices(graph, stage):
                try:
                    patched = patch_graph(graph, stage, choice)
                except PatchError:
                    continue
                peak, needs = peak_of(patched, dsp, streamed)
                if best is None or peak < best[1]:
                    best = patched, peak, needs, choice
    return best


def _choices(graph: Graph, stage: Stage) -> list[PatchChoice]:
    """Cached row steps: one per source row, and half as many."""
    rows = graph.tensors[stage.source].shape[1]
    return [PatchChoice(stage.end, steps, 1, PatchMode.CACHED)
            for steps in sorted({rows, max(rows // 2, 2)}) if steps > 1]
