"""Patched and streamed plans: the generated C equals LiteRT to the bit (gcc, clang, sanitised)."""

from __future__ import annotations

import pytest

from mcuflow.ir import zoo
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import NoAttrs, OpKind
from mcuflow.ir.quantization import QuantParams
from mcuflow.memory.patch_search import PatchRequest
from mcuflow.memory.patches import PatchChoice, PatchMode, find_stages, patch_graph
from mcuflow.memory.planner import plan_memory, plan_model
from mcuflow.toolchain.host import verify_host
from tests.remap_stages import block_stage, resize_stage, transpose_conv_stage
from tests.support import keras_padded


@pytest.mark.parametrize(("text", "input_mode"), [
    ("3x2", "arena"), ("12x1", "arena"), ("2x3", "streamed"), ("16x1", "streamed"),
])
@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_patched_c_is_bit_exact_with_litert(text: str, input_mode: str, compiler: str) -> None:
    graph = zoo.squeezenet_like(48)
    request = PatchRequest.parse(text, None, None, input_mode)
    plan, _ = plan_model(graph, request, 1 << 20, "cortex-m4")
    assert plan.patch is not None
    result = verify_host(graph, plan, runs=4, seed=8, compiler=compiler)
    assert result.bit_exact and result.mismatches == 0 and result.litert_mismatches == 0


@pytest.mark.parametrize("text", ["3x2", "10x1"])
def test_a_stage_through_pads_is_bit_exact_in_c(text: str) -> None:
    """Keras writes ZeroPadding2D as PAD before each stride-2 VALID conv: the stage runs through."""
    graph = keras_padded(40)
    plan, _ = plan_model(graph, PatchRequest.parse(text), 1 << 20, "cortex-m4")
    assert plan.patch is not None
    assert any(op.kind is OpKind.PAD and "#" in op.name for op in plan.graph.operators)
    result = verify_host(graph, plan, runs=3, seed=2)
    assert result.bit_exact and result.mismatches == 0 and result.litert_mismatches == 0


def _pointwise_stage() -> Graph:
    """A first stage with every per-pixel op patches may cut, between convolutions."""
    b = GraphBuilder("pointwise_stage", seed=4)
    q = QuantParams.per_tensor
    x = b.input((1, 24, 24, 3), 0.04, 1)
    y = b.conv2d(x, 8, (3, 3), stride=2)
    y = b.op(OpKind.PRELU, [y, b.constant_int8((1, 1, 8), 0.01, 2)], NoAttrs(), q(0.05, 3))
    z = b.op(OpKind.ABS, [b.conv2d(y, 8, (3, 3))], NoAttrs(), q(0.05, -128))
    y = b.op(OpKind.SQUARED_DIFFERENCE, [y, z], NoAttrs(), q(0.2, -110))
    y = b.op(OpKind.L2_NORMALIZATION, [y], NoAttrs(), q(1.0 / 128.0, 0))
    y = b.op(OpKind.LOG_SOFTMAX, [b.conv2d(y, 8, (3, 3))], NoAttrs(), q(16.0 / 256.0, 127))
    y = b.conv2d(y, 16, (3, 3), stride=2)
    b.output(b.fully_connected(b.reshape(b.mean(y, (1, 2)), (1, -1)), 4))
    return b.build()


@pytest.mark.parametrize("text", ["2x2@conv_2d_19", "6x1@conv_2d_19"])
def test_pointwise_ops_run_patch_by_patch(text: str) -> None:
    graph = _pointwise_stage()
    plan, _ = plan_model(graph, PatchRequest.parse(text), 1 << 20, "cortex-m4")
    assert plan.patch is not None
    patched = {op.kind for op in plan.graph.operators if "#" in op.name}
    assert {OpKind.PRELU, OpKind.ABS, OpKind.SQUARED_DIFFERENCE, OpKind.L2_NORMALIZATION,
            OpKind.LOG_SOFTMAX} <= patched
    result = verify_host(graph, plan, runs=3, seed=2)
    assert result.bit_exact and result.mismatches == 0 and result.litert_mismatches == 0


REMAP_STAGES = {"transpose_conv": (transpose_conv_stage, "conv_2d_22"),
                "resize": (resize_stage, "conv_2d_19"),
                "block": (block_stage, "conv_2d_13")}


@pytest.mark.parametrize(("grid", "mode"), [((3, 2), PatchMode.RECOMPUTE),
                                            ((5, 5), PatchMode.RECOMPUTE),
                                            ((4, 1), PatchMode.CACHED),
                                            ((24, 1), PatchMode.CACHED)])
@pytest.mark.parametrize("name", REMAP_STAGES)
def test_remap_ops_run_patch_by_patch_in_c(name: str, grid: tuple[int, int],
                                           mode: PatchMode) -> None:
    """TRANSPOSE_CONV, both resizes and the block ops run on windows inside a stage, bit-exact.

    Each patch or row step runs them cropped; the C equals LiteRT's whole-tensor run.
    """
    make, end = REMAP_STAGES[name]
    graph = make()
    stage = next(s for s in find_stages(graph) if graph.operators[s.ops[-1]].name == end)
    choice = PatchChoice(stage.end, *grid, mode)
    patched = patch_graph(graph, stage, choice)
    assert {graph.operators[i].kind for i in stage.ops} - {OpKind.CONV_2D} <= {
        op.kind for op in patched.operators if "#" in op.name}
    plan = plan_memory(patched, 0.2, order=list(range(len(patched.operators))))
    plan.patch = choice
    result = verify_host(graph, plan, runs=3, seed=4)
    assert result.bit_exact and result.mismatches == 0 and result.litert_mismatches == 0
