"""Patch-based inference: patched graphs and their planned arenas agree with LiteRT to the bit."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from mcuflow.errors import McuflowError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.ir import zoo
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Padding
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import OpKind, infer_output_shapes
from mcuflow.ir.shapes import ShapeError
from mcuflow.memory.check import check_plan
from mcuflow.memory.execute import run_in_arena
from mcuflow.memory.patch_search import PatchRequest, search_patches
from mcuflow.memory.patches import PatchChoice, PatchMode, find_stages, patch_graph
from mcuflow.memory.plan import InPlace
from mcuflow.memory.planner import plan_memory, plan_model
from mcuflow.ref.interpreter import run
from tests.remap_stages import block_stage, resize_stage, transpose_conv_stage
from tests.support import SHARED_MODELS, keras_padded, litert_invoke

GRAPHS: dict[str, Callable[[], Graph]] = {
    "keras_padded": keras_padded,
    "mobilenet_v2": lambda: zoo.mobilenet_v2_like(48, 0.35, 10),
    "squeezenet": lambda: zoo.squeezenet_like(48),
    "resnet": lambda: zoo.resnet_like(24),
    "vww": lambda: read_tflite(SHARED_MODELS / "vww_96_int8.tflite"),
    "transpose_conv_stage": transpose_conv_stage,
    "resize_stage": resize_stage,
    "block_stage": block_stage,
}


def _inputs(graph: Graph, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, graph.tensors[name].shape, dtype=np.int8)
            for name in graph.inputs]


def _choices(graph: Graph) -> list[tuple[int, PatchChoice]]:
    """Every stage end with an uneven recompute grid and two cached band counts."""
    found = []
    for index, stage in enumerate(find_stages(graph)):
        height, width = graph.tensors[stage.end].shape[1:3]
        grids = [(min(3, height), min(2, width), PatchMode.RECOMPUTE),
                 (min(2, height), min(5, width), PatchMode.RECOMPUTE),
                 (min(5, height), 1, PatchMode.CACHED), (height, 1, PatchMode.CACHED)]
        found += [(index, PatchChoice(stage.end, rows, cols, mode)) for rows, cols, mode in grids
                  if rows * cols > 1]
    return found


SAMPLE_EVERY = {"vww": 3, "mobilenet_v2": 2}
"""The largest graphs check every n-th (stage, grid) choice: the whole sweep costs a minute."""


@pytest.mark.parametrize("name", GRAPHS)
def test_every_stage_and_grid_is_bit_exact_with_litert(name: str) -> None:
    graph = GRAPHS[name]()
    inputs = _inputs(graph)
    expected = litert_invoke(write_tflite(graph), inputs)
    stages = find_stages(graph)
    checked = 0
    for index, choice in _choices(graph)[::SAMPLE_EVERY.get(name, 1)]:
        patched = patch_graph(graph, stages[index], choice)
        got = run(patched, inputs).outputs
        assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True)), choice
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("mode", list(PatchMode))
def test_patched_plan_runs_bit_exact_in_its_own_arena(mode: PatchMode) -> None:
    graph = zoo.mobilenet_v2_like(64, 0.35, 10)
    stage = next(s for s in find_stages(graph) if s.end == "conv_2d_20")
    grid = (3, 4) if mode is PatchMode.RECOMPUTE else (16, 1)
    patched = patch_graph(graph, stage, PatchChoice(stage.end, *grid, mode))
    plan = plan_memory(patched, 0.2, dsp=True, order=list(range(len(patched.operators))))
    check_plan(plan)
    unpatched = plan_memory(graph, 0.2, dsp=True)
    assert plan.arena_bytes < 0.6 * unpatched.arena_bytes
    inputs = _inputs(graph, seed=1)
    expected = litert_invoke(write_tflite(graph), inputs)
    got = run_in_arena(plan, inputs).outputs
    assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))


def test_a_model_that_fits_gets_no_patches() -> None:
    graph = zoo.mobilenet_v2_like(64, 0.35, 10)
    plan, search = plan_model(graph, PatchRequest(), 1 << 20, "cortex-m4", dsp=True)
    assert plan.patch is None and plan.graph is graph and not search.options


def test_the_chosen_patches_fit_the_budget_with_the_fewest_instructions() -> None:
    graph = zoo.mobilenet_v2_like(96, 0.35, 10)
    unpatched = plan_memory(graph, 0.2, dsp=True).arena_bytes
    budget = unpatched // 2
    plan, search = plan_model(graph, PatchRequest(), budget, "cortex-m4", dsp=True)
    assert plan.patch is not None and plan.arena_bytes <= budget
    fitting = [o for o in search.options if o.peak_bytes <= budget]
    assert search.chosen.instructions == min(o.instructions for o in fitting)
    assert search.overhead(search.chosen) > 0
    front = search.pareto
    assert all(a.peak_bytes < b.peak_bytes and a.instructions > b.instructions
               for a, b in zip(front, front[1:], strict=False))


def test_max_overhead_alone_asks_for_the_smallest_peak_within_it() -> None:
    graph = zoo.mobilenet_v2_like(96, 0.35, 10)
    request = PatchRequest.parse("auto", None, 10.0)
    search = search_patches(graph, request, 1 << 20, "cortex-m4", True)
    within = [o for o in (search.baseline, *search.options) if search.overhead(o) <= 0.10]
    assert search.chosen.peak_bytes == min(o.peak_bytes for o in within)
    assert search.chosen.choice is not None


def test_a_grid_and_layer_are_honoured() -> None:
    graph = zoo.mobilenet_v2_like(64, 0.35, 10)
    request = PatchRequest.parse("4x2@depthwise_conv_2d_17")
    search = search_patches(graph, request, 1 << 20, "cortex-m4", True)
    choice = search.chosen.choice
    assert choice is not None and (choice.rows, choice.cols) == (4, 2)
    assert graph.operators[graph.producer(choice.end)].name == "depthwise_conv_2d_17"


@pytest.mark.parametrize(("text", "budget", "overhead", "message"), [
    ("4by4", None, None, "--patches takes auto, off or RxC"),
    ("0x2", None, None, "--patches takes auto, off or RxC"),
    ("auto", 0, None, "--sram-budget must be positive"),
    ("auto", None, -1.0, "--max-overhead must be"),
])
def test_bad_patch_options_are_refused(text: str, budget: int | None, overhead: float | None,
                                       message: str) -> None:
    with pytest.raises(McuflowError, match=message):
        PatchRequest.parse(text, budget, overhead)


def test_an_impossible_grid_or_layer_is_refused() -> None:
    graph = zoo.mobilenet_v2_like(32, 0.35, 10)
    with pytest.raises(McuflowError, match="no patch stage can end at 'softmax'"):
        search_patches(graph, PatchRequest.parse("2x2@softmax"), 1, "cortex-m4", True)
    with pytest.raises(McuflowError, match="takes a 99x1 grid"):
        search_patches(graph, PatchRequest.parse("99x1"), 1, "cortex-m4", True)


@pytest.mark.parametrize("text", ["3x3", "16x1", "off"])
def test_a_streamed_input_stays_out_of_the_arena_and_the_outputs_stay_exact(text: str) -> None:
    graph = zoo.mobilenet_v2_like(64, 0.35, 10)
    request = PatchRequest.parse(text, None, None, "streamed")
    plan, _ = plan_model(graph, request, 1 << 20, "cortex-m4", dsp=True)
    check_plan(plan)
    assert plan.streamed == frozenset(graph.inputs)
    in_arena, _ = plan_model(graph, PatchRequest.parse(text), 1 << 20, "cortex-m4", dsp=True)
    if text != "off":
        assert plan.arena_bytes < in_arena.arena_bytes
    inputs = _inputs(graph, seed=2)
    expected = litert_invoke(write_tflite(graph), inputs)
    got = run_in_arena(plan, inputs).outputs
    assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))


def test_an_unknown_input_mode_is_refused() -> None:
    with pytest.raises(McuflowError, match="--input takes arena or streamed"):
        PatchRequest.parse("auto", None, None, "camera")


def test_the_lower_bound_of_a_split_plan_counts_every_step_it_must_hold() -> None:
    """A step run apart from its inputs holds them and its output at once.

    No lower bound may claim less (pieces of split storages were once freed twice, giving
    negative needs).
    """
    graph = zoo.mobilenet_v2_like(96, 0.35, 10)
    stage = find_stages(graph)[-1]
    patched = patch_graph(graph, stage, PatchChoice(stage.end, 8, 1, PatchMode.CACHED))
    plan = plan_memory(patched, 0.0, order=list(range(len(patched.operators))), split=True)
    assert min(plan.step_bytes) >= 0
    apart = [sum({patched.tensors[n].nbytes for n in (*op.inputs, *op.outputs)
                  if not patched.tensors[n].is_constant})
             for op, step in zip(patched.operators, plan.steps, strict=True)
             if step.inplace is InPlace.NONE
             and op.kind in (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D)]
    assert plan.lower_bound_bytes >= max(apart)
    assert plan.arena_bytes >= plan.lower_bound_bytes


REMAP_KINDS = {OpKind.TRANSPOSE_CONV, OpKind.RESIZE_NEAREST_NEIGHBOR, OpKind.RESIZE_BILINEAR,
               OpKind.DEPTH_TO_SPACE, OpKind.SPACE_TO_DEPTH}


@pytest.mark.parametrize(("make", "end"), [(transpose_conv_stage, "conv_2d_22"),
                                           (resize_stage, "conv_2d_19"),
                                           (block_stage, "conv_2d_13")])
def test_the_planner_runs_remap_ops_on_windows(make: Callable[[], Graph], end: str) -> None:
    """The stage runs through every TRANSPOSE_CONV, resize and block op up to the last conv.

    The planner's patched graph runs each on windows, all but SPACE_TO_DEPTH cropped.
    """
    graph = make()
    longest = find_stages(graph)[-1]
    assert graph.operators[longest.ops[-1]].name == end
    inside = {graph.operators[i].kind for i in longest.ops} & REMAP_KINDS
    assert inside == {op.kind for op in graph.operators} & REMAP_KINDS != set()
    plan, _ = plan_model(graph, PatchRequest.parse(f"3x2@{end}"), 1 << 20, "cortex-m4")
    assert plan.patch is not None and plan.patch.end == longest.end
    windowed = [op for op in plan.graph.operators if op.kind in REMAP_KINDS]
    assert {op.kind for op in windowed} == inside
    assert all(op.attrs.crop is not None for op in windowed
               if op.kind is not OpKind.SPACE_TO_DEPTH)
    assert len(windowed) == 6 * len([i for i in longest.ops
                                     if graph.operators[i].kind in REMAP_KINDS])
    check_plan(plan)
    inputs = _inputs(graph, seed=3)
    expected = litert_invoke(write_tflite(graph), inputs)
    got = run_in_arena(plan, inputs).outputs
    assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))


def test_a_transpose_conv_leaving_rows_of_bias_ends_the_stage() -> None:
    """A stride above the kernel leaves output rows no input reaches: not run on windows."""
    b = GraphBuilder("gappy", seed=5)
    x = b.conv2d(b.input((1, 12, 12, 3), 0.04, 0), 4, (3, 3))
    y = b.transpose_conv(x, 4, (2, 2), stride=3, padding=Padding.VALID)
    y = b.conv2d(y, 4, (3, 3), stride=2)
    graph = b.output(b.reshape(b.mean(y, (1, 2)), (1, 4))).build()
    assert [graph.tensors[s.end].shape for s in find_stages(graph)] == [(1, 12, 12, 4)]


@pytest.mark.parametrize("make", [transpose_conv_stage, resize_stage, block_stage])
def test_a_crop_missing_input_rows_is_refused(make: Callable[[], Graph]) -> None:
    """A windowed op whose input window starts a row late lacks rows it reads: a ShapeError.

    TRANSPOSE_CONV and DEPTH_TO_SPACE fail shape inference, the resizes their index tables.
    """
    graph = make()
    stage = find_stages(graph)[-1]
    patched = patch_graph(graph, stage, PatchChoice(stage.end, 3, 2, PatchMode.RECOMPUTE))
    cropped = [op for op in patched.operators if getattr(op.attrs, "crop", None) is not None]
    assert {op.kind for op in cropped} == ({op.kind for op in graph.operators} & REMAP_KINDS
                                           - {OpKind.SPACE_TO_DEPTH})
    for kind in {op.kind for op in cropped}:
        op = next(o for o in cropped if o.kind is kind and o.attrs.crop.in_origin[0] == 0)
        crop = dataclasses.replace(op.attrs.crop, in_origin=(1, op.attrs.crop.in_origin[1]))
        bad = dataclasses.replace(op, attrs=dataclasses.replace(op.attrs, crop=crop))
        broken = Graph("broken", dict(patched.tensors), [bad], [op.inputs[0]], list(op.outputs))
        with pytest.raises(ShapeError, match=kind.value):
            infer_output_shapes(broken, bad)
            run(broken, _inputs(broken))
