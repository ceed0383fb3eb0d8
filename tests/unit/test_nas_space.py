"""nas.space: canonical architectures, variation operators, MACs and graphs vs mcuflow's own."""

from __future__ import annotations

import numpy as np
import pytest

from mcuflow.analysis.metrics import analyze
from mcuflow.errors import McuflowError
from mcuflow.hw.board import get_board
from mcuflow.ir.ops import OpKind
from mcuflow.ir.verify import verify_graph
from mcuflow.nas.report import describe
from mcuflow.nas.space import (
    FINAL_SIZE,
    Arch,
    arch_graph,
    canonical,
    crossover,
    default_space,
    largest,
    macs,
    mutate,
    sample,
    smallest,
)

WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
SPACES = (default_space(2, 8), default_space(1, 40))
STRIDED = (default_space(2, 96), default_space(1, 1000), default_space(2, 49, 10 / 49))


def _archs(space, count: int, seed: int) -> list[Arch]:
    rng = np.random.default_rng(seed)
    return [sample(space, rng, float(rng.choice(space.widths)), int(rng.choice(space.resolutions)))
            for _ in range(count)]


@pytest.mark.parametrize("space", SPACES + STRIDED,
                         ids=("2d", "1d", "2d-96", "1d-1000", "2d-49x10"))
def test_macs_equal_mcuflows_count_of_the_weighted_layers(space) -> None:
    board = get_board("nucleo-f091rc")
    for arch in [*_archs(space, 6, 1), largest(space, 1.0, space.resolutions[-1]),
                 smallest(space, 0.25, space.resolutions[0])]:
        graph = arch_graph(arch, space, 1, 10)
        verify_graph(graph)
        layers = analyze(graph, board).layers
        counted = sum(layer.macs for layer in layers if layer.op in WEIGHTED)
        assert macs(arch, space, 1, 10) == counted, arch.key()


@pytest.mark.parametrize("space", SPACES, ids=("2d", "1d"))
def test_graph_follows_the_family(space) -> None:
    arch = largest(space, 0.5, space.resolutions[-1])
    graph = arch_graph(arch, space, 3, 7)
    kinds = [op.kind for op in graph.operators]
    depthwise = [op for op in graph.operators if op.kind is OpKind.DEPTHWISE_CONV_2D]
    assert len(depthwise) == sum(arch.depths)
    assert [graph.tensors[op.inputs[1]].shape[1:3] for op in depthwise] == [
        (7, 7) if space.dims == 2 else (1, 7)] * len(depthwise)
    assert kinds[-1] is OpKind.FULLY_CONNECTED and graph.tensors[graph.outputs[0]].shape == (1, 7)
    assert OpKind.ADD in kinds
    strides = [(op.attrs.stride_h, op.attrs.stride_w) for op in depthwise]
    if space.dims == 1:
        assert all(h == 1 for h, _ in strides) and any(w == 2 for _, w in strides)
        assert graph.tensors[graph.inputs[0]].shape == (1, arch.resolution, 3)


@pytest.mark.parametrize(("dims", "native", "last"), [
    (2, 8, 2), (2, 32, 8), (2, 48, 6), (2, 96, 6), (2, 224, 7), (1, 40, 5), (1, 128, 8),
    (1, 1000, 32)])
def test_large_inputs_reach_the_last_stage_at_final_size(dims: int, native: int,
                                                          last: int) -> None:
    """The classifier's MEAN reads at most FINAL_SIZE rows (series: steps) where strides allow.

    Digits and MNIST-1D keep the strides they were designed with; 1,000 steps run out of
    unstrided stages (32 is 2 ** 5).
    """
    space = default_space(dims, native)
    graph = arch_graph(largest(space, 0.5, native), space, 3, 4)
    (mean,) = [op for op in graph.operators if op.kind is OpKind.MEAN]
    shape = graph.tensors[mean.inputs[0]].shape
    assert shape[1:3] == ((last, last) if dims == 2 else (1, last))
    assert last <= FINAL_SIZE or space.stem_stride * 2 ** len(space.stages) == 32
    if native in (8, 40):
        assert space.stem_stride == 1


def test_images_keep_their_aspect() -> None:
    """49 x 10 spectrograms are searched at R x round(R * 10 / 49), not squeezed into R x R."""
    space = default_space(2, 49, 10 / 49)
    assert space.resolutions == (24, 37, 49)
    for resolution, columns in zip(space.resolutions, (5, 8, 10), strict=True):
        graph = arch_graph(smallest(space, 0.5, resolution), space, 1, 12)
        assert graph.tensors[graph.inputs[0]].shape == (1, resolution, columns, 1)
    assert default_space(2, 28).aspect == 1.0 and default_space(1, 40, 3.0).aspect == 1.0


@pytest.mark.parametrize("space", SPACES, ids=("2d", "1d"))
def test_variation_keeps_archs_canonical_and_in_the_space(space) -> None:
    rng = np.random.default_rng(3)
    parents = _archs(space, 2, 4)
    b = sample(space, rng, parents[0].width, parents[0].resolution)
    children = [mutate(parents[0], space, rng, 0.5) for _ in range(20)]
    children += [crossover(parents[0], b, rng, space) for _ in range(20)]
    for child in children:
        assert canonical(child, space) == child
        assert (child.width, child.resolution) == (parents[0].width, parents[0].resolution)
        ranges = zip(child.depths, space.stages, strict=True)
        assert all(s.min_depth <= d <= s.max_depth for d, s in ranges)
        assert set(child.kernels) <= set(space.kernels)
        assert set(child.expansions) <= set(space.expansions)
    assert len({c.key() for c in children}) > 10
    assert mutate(parents[0], space, rng, 0.0) == parents[0]


def test_unused_slots_do_not_change_the_key() -> None:
    space = SPACES[0]
    arch = smallest(space, 0.5, 8)
    other = Arch(0.5, 8, arch.depths, (7,) * space.slots, (6,) * space.slots)
    assert canonical(other, space).key() != arch.key()  # slot 0 of each stage is used
    tail = list(arch.kernels)
    tail[1] = 7  # stage 0 slot 1 is beyond depth 1
    assert canonical(Arch(0.5, 8, arch.depths, tuple(tail), arch.expansions), space) == arch


def test_json_round_trip_and_stable_key() -> None:
    arch = _archs(SPACES[1], 1, 5)[0]
    assert Arch.from_json(arch.to_json()) == arch
    assert arch.key() == Arch.from_json(arch.to_json()).key()
    assert arch.key().startswith(f"w{arch.width:g}-r{arch.resolution}-d")


def test_same_seed_same_samples() -> None:
    assert _archs(SPACES[0], 5, 9) == _archs(SPACES[0], 5, 9)


def test_default_space_rejects_other_dims() -> None:
    with pytest.raises(McuflowError):
        default_space(3, 8)


def test_description_names_the_kernels_the_graph_runs() -> None:
    """Stages below their full depth skip slots: the kernels named are the graph's."""
    space = default_space(1, 40)
    arch = Arch(1.0, 40, (1, 1, 1, 2), (7, 3, 3, 3, 3, 3, 3, 3, 5, 5),
                (3, 3, 6, 3, 3, 6, 3, 3, 4, 3))
    graph = arch_graph(arch, space, 1, 10)
    kernels = "".join(str(graph.tensors[op.inputs[1]].shape[2]) for op in graph.operators
                      if op.kind is OpKind.DEPTHWISE_CONV_2D)
    assert f"kernels {kernels}," in describe(arch, space)
    assert kernels == "73355"
