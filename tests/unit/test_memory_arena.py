"""Arena placement: greedy and CP-SAT layouts are valid, CP-SAT is optimal on small cases."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcuflow.memory.arena import Block, Pair, arena_size, place_greedy, place_optimal
from tests.unit.test_memory_planner import optimal_placement

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def block_sets(draw: st.DrawFn, most: int = 7) -> list[Block]:
    count = draw(st.integers(1, most))
    blocks = []
    for index in range(count):
        first = draw(st.integers(0, 8))
        blocks.append(Block(f"b{index}", draw(st.integers(1, 200)), first,
                            first + draw(st.integers(0, 5))))
    return blocks


def assert_valid(blocks: list[Block], pairs: list[Pair], placement: dict[str, int],
                 alignment: int) -> None:
    for block in blocks:
        assert placement[block.name] % alignment == 0
        assert placement[block.name] >= 0
    for i, a in enumerate(blocks):
        for b in blocks[i + 1:]:
            if a.meets(b):
                assert (placement[a.name] + a.size <= placement[b.name]
                        or placement[b.name] + b.size <= placement[a.name]), (a, b)
    for pair in pairs:
        assert pair.allows(placement[pair.upper.name], placement[pair.lower.name])


@SETTINGS
@given(blocks=block_sets(), alignment=st.sampled_from([1, 16]))
def test_greedy_and_cp_sat_layouts_are_valid(blocks: list[Block], alignment: int) -> None:
    greedy = place_greedy(blocks, [], alignment)
    assert_valid(blocks, [], greedy, alignment)
    optimal = place_optimal(blocks, [], alignment, 1.0, greedy)
    assert optimal is not None
    assert_valid(blocks, [], optimal, alignment)
    assert arena_size(blocks, optimal) <= arena_size(blocks, greedy)


@SETTINGS
@given(blocks=block_sets(6))
def test_cp_sat_finds_the_brute_force_optimum(blocks: list[Block]) -> None:
    greedy = place_greedy(blocks, [], 1)
    optimal = place_optimal(blocks, [], 1, 2.0, greedy)
    assert optimal is not None
    assert arena_size(blocks, optimal) == optimal_placement(blocks, arena_size(blocks, greedy) + 1)


@st.composite
def chains(draw: st.DrawFn) -> tuple[list[Block], list[Pair]]:
    """In-place chains: each block overwrites the previous one at the step where it dies."""
    blocks, pairs = [], []
    for index in range(draw(st.integers(2, 6))):
        block = Block(f"c{index}", 16 * draw(st.integers(1, 12)), 2 * index + 1, 2 * index + 2)
        if blocks:
            modulus = draw(st.sampled_from([0, 16, 48]))
            pairs.append(Pair(blocks[-1], block, 16 * draw(st.integers(0, 4)), modulus))
        blocks.append(block)
    side = Block("side", 16 * draw(st.integers(1, 8)), 0, 2 * len(blocks))
    return [*blocks, side], pairs


@SETTINGS
@given(problem=chains())
def test_in_place_pairs_are_respected(problem: tuple[list[Block], list[Pair]]) -> None:
    blocks, pairs = problem
    greedy = place_greedy(blocks, pairs, 16)
    assert_valid(blocks, pairs, greedy, 16)
    optimal = place_optimal(blocks, pairs, 16, 1.0, greedy)
    assert optimal is not None
    assert_valid(blocks, pairs, optimal, 16)
    assert arena_size(blocks, optimal) <= arena_size(blocks, greedy)


def test_the_same_placement_problem_is_solved_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A problem asked again is answered from memory, as CP-SAT answered it; another is solved.

    The NAS fit check plans a patch option settled, then in full: one solve serves both.
    """
    from ortools.sat.python import cp_model

    solves = []
    solve = cp_model.CpSolver.solve

    def counted(self: cp_model.CpSolver, model: cp_model.CpModel, *rest: object) -> object:
        solves.append(model)
        return solve(self, model, *rest)

    monkeypatch.setattr(cp_model.CpSolver, "solve", counted)
    blocks = [Block("a", 96, 0, 3), Block("b", 64, 2, 5), Block("c", 80, 4, 7),
              Block("d", 48, 0, 7), Block("e", 112, 6, 9)]
    pairs = [Pair(blocks[0], blocks[1], 16)]
    greedy = place_greedy(blocks, pairs, 16)
    first = place_optimal(blocks, pairs, 16, 0.5, greedy)
    assert first is not None and len(solves) == 1
    assert_valid(blocks, pairs, first, 16)
    solved = dict(first)
    first["a"] = -1  # a caller's change to its answer is not remembered
    again = place_optimal(list(blocks), list(pairs), 16, 0.5, dict(greedy))
    assert len(solves) == 1 and again == solved
    wider = [*blocks[:-1], Block("e", 128, 6, 9)]
    place_optimal(wider, pairs, 16, 0.5, place_greedy(wider, pairs, 16))
    assert len(solves) == 2
