"""split_wide_layers: groups of output channels give LiteRT's outputs of the unsplit model."""

from __future__ import annotations

import numpy as np
import pytest

from mcuflow.codegen.render import emit_layers
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.hw.kernels import FC_FEW_PASSES, FC_FEW_UNITS
from mcuflow.ir import zoo
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import OpKind
from mcuflow.ir.verify import verify_graph
from mcuflow.memory.execute import run_in_arena
from mcuflow.memory.planner import plan_memory
from mcuflow.passes.split_channels import split_wide_layers
from tests.support import litert_invoke


def _fc_model(per_channel: bool) -> Graph:
    b = GraphBuilder("wide_fc", 3)
    x = b.fully_connected(b.input((1, 96), 0.05, 0), 37, per_channel=per_channel)
    return b.output(b.softmax(x)).build()


def _logits(graph: Graph) -> Graph:
    """The model without its final SOFTMAX, whose int8 output random weights saturate."""
    graph = graph.copy()
    softmax = graph.operators.pop()
    graph.outputs = [softmax.inputs[0]]
    del graph.tensors[softmax.outputs[0]]
    return graph


def _weighted(graph: Graph) -> list[int]:
    return [graph.tensors[op.inputs[1]].nbytes for op in graph.operators
            if op.kind in (OpKind.CONV_2D, OpKind.FULLY_CONNECTED)]


@pytest.mark.parametrize("graph, limit", [
    (_logits(zoo.mobilenet_v2(32, 0.35, 100)), 4096),
    (_logits(_fc_model(True)), 1000),
    (_logits(_fc_model(False)), 500),
], ids=["mobilenet_v2_imagenet_head", "fc_per_channel", "fc_per_tensor"])
def test_split_layers_are_bit_exact_against_litert(graph: Graph, limit: int) -> None:
    split = split_wide_layers(graph, limit)
    verify_graph(split)
    assert max(_weighted(split)) <= limit < max(_weighted(graph))
    rng = np.random.default_rng(7)
    shape = graph.tensors[graph.inputs[0]].shape
    for _ in range(3):
        x = rng.integers(-128, 128, shape, dtype=np.int8)
        expected = litert_invoke(write_tflite(graph), [x])[0]
        np.testing.assert_array_equal(litert_invoke(write_tflite(split), [x])[0], expected)
        assert len(np.unique(expected)) > 10
        np.testing.assert_array_equal(run_in_arena(plan_memory(split), [x]).outputs[0], expected)


def test_a_layer_whose_one_channel_exceeds_the_limit_stays_whole() -> None:
    graph = _fc_model(True)
    assert len(split_wide_layers(graph, 95).operators) == len(graph.operators)


def test_the_pooled_wide_layer_is_never_whole() -> None:
    graph = zoo.mobilenet_v2(64, 0.35, 10)
    split = split_wide_layers(graph, 4096)
    wide = [t.name for t in split.tensors.values() if len(t.shape) == 4 and t.shape[1] > 1
            and t.shape[-1] == 1280]
    assert wide == [] and any(len(t.shape) == 4 and t.shape[-1] == 1280
                              for t in graph.tensors.values())
    x = np.random.default_rng(3).integers(-128, 128, (1, 64, 64, 3), dtype=np.int8)
    np.testing.assert_array_equal(litert_invoke(write_tflite(_logits(split)), [x])[0],
                                  litert_invoke(write_tflite(_logits(graph)), [x])[0])


def test_a_split_fc_groups_chunk_fits_its_limit_with_the_dsp_kernels() -> None:
    """Groups of 5-8 units would run the _few kernel, which widens weights to int16 (2x)."""
    b = GraphBuilder("deep_fc", 5)
    x = b.fully_connected(b.input((1, 1280), 0.05, 0), 100, per_channel=True)
    graph = b.output(x).build()
    limit = 16_384
    split = split_wide_layers(graph, int(limit * 0.75), FC_FEW_UNITS * FC_FEW_PASSES)
    layers, pool = emit_layers(split, plan_memory(split), dsp=True)
    sizes = {a.symbol: a.nbytes for a in pool.arrays}
    for index, op in enumerate(split.operators):
        if op.kind is OpKind.FULLY_CONNECTED:
            text = "\n".join((*layers[index].statements, *layers[index].definitions))
            assert sum(n for symbol, n in sizes.items() if symbol in text) <= limit
    np.testing.assert_array_equal(
        run_in_arena(plan_memory(split), [np.full((1, 1280), 3, np.int8)]).outputs[0],
        litert_invoke(write_tflite(graph), [np.full((1, 1280), 3, np.int8)])[0])
