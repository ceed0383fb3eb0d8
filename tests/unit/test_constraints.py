"""Constraint functions: their docstrings are the messages, and every violation is reported."""

from __future__ import annotations

import pytest

from mcuflow.errors import UnsupportedModelError
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.constraints import CONSTRAINTS, check_supported, find_violations
from mcuflow.ir.quantization import QuantParams


def test_every_constraint_has_a_message() -> None:
    for item in CONSTRAINTS:
        assert item.check.__doc__, item.name
        assert item.message.endswith("."), item.message


def test_valid_graph_passes() -> None:
    b = GraphBuilder(seed=3)
    x = b.depthwise_conv2d(b.conv2d(b.input((1, 6, 6, 2)), 4))
    check_supported(b.output(b.softmax(b.fully_connected(b.reshape(x, (1, -1)), 3))).build())


def test_all_violations_listed_at_once() -> None:
    b = GraphBuilder(seed=3)
    x = b.max_pool2d(b.conv2d(b.input((1, 6, 6, 2)), 4))
    y = b.softmax(b.reshape(x, (1, -1)))
    graph = b.output(y).build()
    graph.tensors[x].quant = QuantParams.per_tensor(0.5, 3)
    graph.tensors[y].quant = QuantParams.per_tensor(0.1, 0)
    names = [v.constraint.name for v in find_violations(graph)]
    assert names == ["same_quantisation", "same_quantisation", "unit_output_range"]
    with pytest.raises(UnsupportedModelError, match="3 unsupported operator"):
        check_supported(graph)
