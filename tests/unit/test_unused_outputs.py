"""Multi-output ops (UNPACK, SPLIT, SPLIT_V) whose outputs nobody reads plan and run bit-exact.

Their kernels still write every output, so an unread output needs a buffer live at least
during its producing step; run as views of their input (inplace.piece_views), several outputs
share one storage and one producing op.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import OpKind, PackAttrs, SplitAttrs
from mcuflow.memory import InPlace, Plan, check_plan, plan_memory
from mcuflow.memory.inplace import shared_parents
from mcuflow.memory.liveness import build_storages
from mcuflow.toolchain.host import verify_host


def unstack_net() -> Graph:
    """TensorFlow's `tf.stack(tf.unstack(t, axis=1)[::2], axis=2)`: two ops, 12 rows unpacked."""
    b = GraphBuilder("unstack_stack", seed=37)
    x = b.input((1, 12, 3, 4), 0.05, 1)
    rows = b.op_outputs(OpKind.UNPACK, [x], PackAttrs(1, 12), b.quant(x))
    return b.output(b.op(OpKind.PACK, rows[::2], PackAttrs(2, 6), b.quant(x))).build()


def unpack_net() -> Graph:
    """UNPACKs of a conv output into rows (views) and columns (copies), some of them unread."""
    b = GraphBuilder("unpack_unused", seed=41)
    y = b.conv2d(b.input((1, 6, 4, 8), 0.05, -3), 8, (1, 1))
    q = b.quant(y)
    rows = b.op_outputs(OpKind.UNPACK, [y], PackAttrs(1, 6), q)
    columns = b.op_outputs(OpKind.UNPACK, [y], PackAttrs(2, 4), q)
    return b.output(
        b.op(OpKind.PACK, rows[::2], PackAttrs(2, 3), q),
        b.relu(columns[3]),
    ).build()


def split_net() -> Graph:
    """A SPLIT into rows (views) and a SPLIT_V into channels (copies), some pieces unread."""
    b = GraphBuilder("split_unused", seed=43)
    y = b.conv2d(b.input((1, 6, 5, 4), 0.05, 2), 6, (1, 1))
    q = b.quant(y)
    thirds = b.op_outputs(OpKind.SPLIT, [y], SplitAttrs(1, (2, 2, 2)), q)
    channels = b.op_outputs(OpKind.SPLIT_V, [y], SplitAttrs(3, (1, 3, 2)), q)
    return b.output(b.relu(thirds[1]), channels[2]).build()


NETS = [unstack_net, unpack_net, split_net]
KINDS = {"in-place": None, "apart": frozenset()}


def planned(net: Callable[[], Graph], kinds: frozenset[InPlace] | None) -> tuple[Graph, Plan]:
    """The graph of `net` and its plan, with every in-place kind (None) or only `kinds`."""
    graph = net()
    plan = plan_memory(graph, 0.3) if kinds is None else plan_memory(graph, 0.3, kinds=kinds)
    return graph, plan


def unread(graph: Graph) -> list[str]:
    """Outputs of multi-output ops that no op reads and that are not graph outputs."""
    uses = graph.uses()
    return [name for op in graph.operators if len(op.outputs) > 1 for name in op.outputs
            if name not in uses.consumers and name not in graph.outputs]


@pytest.mark.parametrize("net", NETS)
def test_a_storage_of_pieces_has_one_bit_per_producing_op(net: Callable[[], Graph]) -> None:
    graph = net()
    producer = graph.uses().producer
    for storage in build_storages(graph, shared_parents(graph)):
        ops = {producer[name] for name, _ in storage.members if name in producer}
        assert storage.producers == sum(1 << index for index in ops), storage.name


@pytest.mark.parametrize("kinds", KINDS.values(), ids=KINDS.keys())
@pytest.mark.parametrize("net", NETS)
def test_unread_outputs_get_buffers_the_checker_accepts(
        net: Callable[[], Graph], kinds: frozenset[InPlace] | None) -> None:
    graph, plan = planned(net, kinds)
    check_plan(plan)
    step_of = {op: step for step, op in enumerate(plan.order)}
    producer = graph.uses().producer
    assert unread(graph)
    for name in unread(graph):
        buffer = plan.buffers[name]
        assert buffer.first_step <= step_of[producer[name]] <= buffer.last_step, name


@pytest.mark.parametrize("kinds", KINDS.values(), ids=KINDS.keys())
@pytest.mark.parametrize("net", NETS)
def test_generated_c_is_bit_exact_against_litert(
        net: Callable[[], Graph], kinds: frozenset[InPlace] | None) -> None:
    graph, plan = planned(net, kinds)
    result = verify_host(graph, plan, runs=4)
    assert result.bit_exact and result.litert_mismatches == 0
