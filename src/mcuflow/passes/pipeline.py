"""The pass pipeline: named graph rewrites, each followed by the graph verifier."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mcuflow.ir.graph import Graph
from mcuflow.ir.verify import GraphInvariantError, verify_graph
from mcuflow.passes.fold_batchnorm import fold_batchnorm
from mcuflow.passes.fold_constants import fold_constants
from mcuflow.passes.fold_dilated_conv import fold_dilated_conv
from mcuflow.passes.fuse_activation import fuse_activation
from mcuflow.passes.layout import clean_layout
from mcuflow.passes.upsampling import rewrite_upsampling


@dataclass(frozen=True)
class Pass:
    """A named rewrite: takes a graph, returns the rewritten copy."""

    name: str
    run: Callable[[Graph], Graph]


DEFAULT_PASSES: tuple[Pass, ...] = (
    Pass("fold_constants", fold_constants),
    Pass("fold_batchnorm", fold_batchnorm),
    Pass("fuse_activation", fuse_activation),
    Pass("fold_dilated_conv", fold_dilated_conv),
    Pass("clean_layout", clean_layout),
    Pass("rewrite_upsampling", rewrite_upsampling),
)
"""The float model pipeline of the study's Figure 1: fold, fuse, tidy the layout."""

INT8_PASSES: tuple[Pass, ...] = (
    Pass("rewrite_upsampling", rewrite_upsampling),
    Pass("fold_dilated_conv", fold_dilated_conv),
)
"""The rewrites of an int8 model read as it is: the same values, fewer or cheaper steps."""


def run_passes(graph: Graph, passes: Sequence[Pass] = DEFAULT_PASSES) -> Graph:
    """Run `passes` in order on a copy of `graph`, verifying the graph after each one.

    A pass that breaks an IR invariant raises GraphInvariantError naming the pass.
    """
    verify_graph(graph)
    for rewrite in passes:
        graph = rewrite.run(graph)
        try:
            verify_graph(graph)
        except GraphInvariantError as error:
            raise GraphInvariantError(f"after pass '{rewrite.name}': {error.message}") from None
    return graph
