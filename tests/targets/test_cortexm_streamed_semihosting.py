"""A streamed input larger than the board's SRAM runs bit-exact on QEMU.

The semihosting driver reads its windows straight from input.bin and holds no record of it.
"""

from __future__ import annotations

import pytest

from mcuflow.hw.board import get_board
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import Activation
from mcuflow.memory.patch_search import PatchRequest
from mcuflow.memory.planner import plan_model
from mcuflow.toolchain.qemu import verify_cortexm

BOARD = "nucleo-f091rc"  # 32 KB of SRAM, Cortex-M0
ARENA_BUDGET = 12_000


def _image_model() -> Graph:
    """A 128 x 128 x 3 image (48 KB) through a stride-2 stem, a few layers and a classifier."""
    b = GraphBuilder("streamed_image", seed=3)
    x = b.conv2d(b.input((1, 128, 128, 3), 0.05, 3), 8, (3, 3), stride=2,
                 activation=Activation.RELU)
    x = b.depthwise_conv2d(x, (3, 3), stride=2, activation=Activation.RELU)
    x = b.conv2d(x, 16, (1, 1), activation=Activation.RELU)
    x = b.depthwise_conv2d(x, (3, 3), stride=2)
    return b.output(b.fully_connected(b.mean(x), 10)).build()


@pytest.mark.parametrize("grid", [None, (4, 3)])
def test_an_image_larger_than_the_sram_streams_from_input_bin_bit_exact(
        grid: tuple[int, int] | None) -> None:
    """Whole rows (the search's grid) and windows narrower than the image (one read a row)."""
    graph = _image_model()
    image = graph.tensors[graph.inputs[0]].nbytes
    board = get_board(BOARD)
    assert image > board.sram_bytes
    request = PatchRequest(grid=grid, streamed_input=True)
    plan, _ = plan_model(graph, request, ARENA_BUDGET, "cortex-m0")
    assert plan.streamed and plan.patch is not None and plan.arena_bytes <= ARENA_BUDGET
    assert grid is None or (plan.patch.rows, plan.patch.cols) == grid
    result = verify_cortexm(graph, plan, "cortex-m0", board, runs=2, seed=4)
    assert result.bit_exact and result.mismatches == 0
    assert result.ram_bytes < image
