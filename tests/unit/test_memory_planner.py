"""Planner: exact order search, optimal placement, bounds, in-place decisions, shared models."""

from __future__ import annotations

import multiprocessing
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.ir import zoo
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.graph import Graph
from mcuflow.memory import InPlace, check_plan, plan_memory
from mcuflow.memory.arena import Block
from mcuflow.memory.schedule import best_order, build_problem, evaluate
from mcuflow.memory.scratch import scratch_bytes
from tests.support import SHARED_MODELS, tflm_arena

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TFLM_MODELS = ["kws_ref_model.tflite", "vww_96_int8.tflite", "pretrainedResnet_quant.tflite",
               "ad01_int8.tflite"]


def topological_orders(graph: Graph) -> list[list[int]]:
    """Every order in which each op runs after the producers of its inputs."""
    producer = {out: i for i, op in enumerate(graph.operators) for out in op.outputs}
    needs = [{producer[n] for n in op.inputs if n in producer} for op in graph.operators]
    orders: list[list[int]] = []

    def extend(order: list[int], done: set[int]) -> None:
        if len(order) == len(needs):
            orders.append(list(order))
        for v, need in enumerate(needs):
            if v not in done and need <= done:
                extend([*order, v], done | {v})

    extend([], set())
    return orders


def lifetimes(graph: Graph, order: list[int]) -> list[Block]:
    """Tensors and scratch buffers as blocks over steps, without any sharing.

    Written from scratch here: a tensor lives from its producer's step to its last reader's.
    """
    step = {v: t for t, v in enumerate(order)}
    last = len(order) - 1
    blocks = []
    for name in graph.activations():
        producer = graph.producer(name)
        first = 0 if producer is None else step[producer]
        readers = [step[i] for i in graph.consumers(name)]
        end = last if name in graph.outputs else max([first, *readers])
        blocks.append(Block(name, graph.tensors[name].nbytes, first, end))
    for t, v in enumerate(order):
        scratch = scratch_bytes(graph, graph.operators[v], InPlace.NONE)
        if scratch:
            blocks.append(Block(f"scratch {t}", scratch, t, t))
    return blocks


def live_peak(blocks: list[Block]) -> int:
    """The largest sum of sizes of blocks live at one step."""
    steps = range(max(b.last for b in blocks) + 1)
    return max(sum(b.size for b in blocks if b.first <= t <= b.last) for t in steps)


def optimal_placement(blocks: list[Block], bound: int) -> int:
    """Smallest arena (alignment 1) below `bound`, else `bound`, by branch and bound.

    Blocks go one by one to the lowest offset where they fit; every optimal layout is reached
    this way by placing its blocks in the order of their offsets in it.
    """
    best = bound

    def lowest(block: Block, placed: list[tuple[Block, int]]) -> int:
        offset, moved = 0, True
        while moved:
            moved = False
            for other, at in placed:
                if other.meets(block) and at < offset + block.size and offset < at + other.size:
                    offset, moved = at + other.size, True
        return offset

    def place(placed: list[tuple[Block, int]], rest: list[Block], top: int) -> None:
        nonlocal best
        if not rest:
            best = top
            return
        for block in rest:
            end = lowest(block, placed) + block.size
            if max(top, end) < best:
                place([*placed, (block, end - block.size)], [b for b in rest if b is not block],
                      max(top, end))

    place([], blocks, 0)
    return best


@SETTINGS
@given(seed=st.integers(0, 10_000), ops=st.integers(2, 7))
def test_order_search_finds_the_least_peak_of_all_orders(seed: int, ops: int) -> None:
    problem = build_problem(zoo.random_dag(seed, ops))
    orders = topological_orders(problem.graph)
    brute = min(evaluate(problem, order)[0] for order in orders)
    assert evaluate(problem, best_order(problem))[0] == brute


@SETTINGS
@given(seed=st.integers(0, 10_000), ops=st.integers(2, 7))
def test_planner_matches_brute_force_orders_and_placements(seed: int, ops: int) -> None:
    graph = zoo.random_dag(seed, ops)
    plan = plan_memory(graph, 1.0, alignment=1, kinds=frozenset())
    problem = build_problem(graph, 1, frozenset())
    orders = topological_orders(graph)
    brute = plan.arena_bytes
    for order in orders:
        blocks = lifetimes(graph, order)
        assert evaluate(problem, order)[0] == live_peak(blocks)
        if live_peak(blocks) < brute:
            brute = optimal_placement(blocks, brute)
    assert plan.arena_bytes == brute
    assert plan.lower_bound_bytes == min(live_peak(lifetimes(graph, o)) for o in orders)
    check_plan(plan)


@pytest.mark.parametrize("model", TFLM_MODELS)
def test_shared_models_need_at_most_six_tenths_of_tflm(model: str) -> None:
    """Against TFLM's total arena ("Arena allocation total"), measured with tflite-micro."""
    plan = plan_memory(read_tflite(SHARED_MODELS / model))
    check_plan(plan)
    tflm_total, _ = tflm_arena(SHARED_MODELS / model)
    assert plan.lower_bound_bytes <= plan.arena_bytes <= 0.6 * tflm_total


def test_lower_bound_counts_every_live_byte_of_the_order() -> None:
    graph = read_tflite(SHARED_MODELS / "kws_ref_model.tflite")
    plan = plan_memory(graph, kinds=frozenset())
    assert plan.lower_bound_bytes == live_peak(lifetimes(graph, plan.order))
    assert all(step.inplace is InPlace.NONE for step in plan.steps)


def test_in_place_kinds_can_be_switched_off_one_by_one() -> None:
    graph = zoo.mobilenet_v2_like(48)
    everything = plan_memory(graph)
    without = plan_memory(graph, kinds=frozenset(InPlace) - {InPlace.DEPTHWISE, InPlace.NONE})
    assert InPlace.DEPTHWISE in {s.inplace for s in everything.steps}
    assert InPlace.DEPTHWISE not in {s.inplace for s in without.steps}
    assert everything.arena_bytes < plan_memory(graph, kinds=frozenset()).arena_bytes


def wide_graph(branches: int, depth: int) -> Graph:
    """Parallel chains of 1x1 convolutions, all built first, then summed.

    The graph's own order keeps every branch output live, and there are too many op sets to
    enumerate exactly.
    """
    b = GraphBuilder("wide", seed=1)
    x = b.input((1, 8, 8, 8))
    ends = []
    for _ in range(branches):
        y = x
        for _ in range(depth):
            y = b.conv2d(y, 8, (1, 1))
        ends.append(y)
    total = ends[0]
    for y in ends[1:]:
        total = b.add(total, y)
    return b.output(total).build()


def test_graphs_too_wide_for_exact_search_get_a_good_valid_plan() -> None:
    graph = wide_graph(12, 3)
    plan = plan_memory(graph, 0.5)
    check_plan(plan)
    assert sorted(plan.order) == list(range(len(graph.operators)))
    graph_order = evaluate(build_problem(graph), list(range(len(graph.operators))))[0]
    assert plan.lower_bound_bytes < graph_order / 3
    assert plan.arena_bytes <= 1.05 * plan.lower_bound_bytes


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_the_plan_does_not_depend_on_the_clock() -> None:
    """Budgets count work, not seconds: a plan made while every core is busy is the same."""
    graph = wide_graph(12, 3)
    quiet = plan_memory(graph, 0.5)
    busy = [multiprocessing.Process(target=_spin, args=(30.0,)) for _ in range(4)]
    for process in busy:
        process.start()
    try:
        loaded = plan_memory(graph, 0.5)
    finally:
        for process in busy:
            process.terminate()
            process.join()
    assert loaded.order == quiet.order
    assert {n: (b.offset, b.size) for n, b in loaded.buffers.items()} == {
        n: (b.offset, b.size) for n, b in quiet.buffers.items()}
