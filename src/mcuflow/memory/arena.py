"""Arena placement: byte offsets for blocks with lifetimes (greedy by size, and CP-SAT optimal)."""

from __future__ import annotations

import functools
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Block:
    """A rectangle to place: `size` bytes, live from time slot `first` to `last` inclusive.

    Blocks with the same `group` are pieces of one buffer: each lies `group_offset` bytes
    above the group's (aligned) base.
    """

    name: str
    size: int
    first: int
    last: int
    group: str = ""
    group_offset: int = 0

    def meets(self, other: Block) -> bool:
        """True when both blocks are live in a common slot."""
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class Pair:
    """An in-place step: its output `lower` and the input `upper` it overwrites.

    They may share bytes when `lower` starts at least `delta` bytes below `upper` or, with a
    `modulus`, a whole number of `modulus` bytes away; otherwise they must lie wholly apart.
    The two blocks meet in no time slot, so the no-overlap constraint does not see them.
    """

    upper: Block
    lower: Block
    delta: int = 0
    modulus: int = 0

    def allows(self, upper: int, lower: int) -> bool:
        """True when offsets `upper` and `lower` respect the pair."""
        if lower + self.lower.size <= upper or lower >= upper + self.upper.size:
            return True
        gap = upper - lower
        return gap % self.modulus == 0 if self.modulus else gap >= self.delta


Placement = dict[str, int]
SOLVED = 32
"""CP-SAT placements place_optimal remembers (the most recent)."""


def align_up(value: int, alignment: int) -> int:
    """The smallest multiple of `alignment` that is >= `value`."""
    return -(-value // alignment) * alignment


def arena_size(blocks: Sequence[Block], placement: Placement) -> int:
    """Bytes of arena a placement needs (end of the highest block)."""
    return max((placement[b.name] + b.size for b in blocks), default=0)


class _Placed:
    """The blocks placed so far: time span and byte range of each, as arrays."""

    def __init__(self, capacity: int) -> None:
        self.first, self.last, self.start, self.end = (np.zeros(capacity, np.int64)
                                                       for _ in range(4))
        self.count = 0

    def add(self, block: Block, at: int) -> None:
        k = self.count
        self.first[k], self.last[k], self.start[k], self.end[k] = (
            block.first, block.last, at, at + block.size)
        self.count += 1


@dataclass
class _Occupied:
    """Byte ranges of placed blocks that meet one block in time, for O(log n) overlap tests."""

    starts: list[int]
    max_end: list[int]

    @classmethod
    def of(cls, block: Block, placed: _Placed) -> _Occupied:
        n = placed.count
        meets = (placed.first[:n] <= block.last) & (placed.last[:n] >= block.first)
        starts, ends = placed.start[:n][meets], placed.end[:n][meets]
        ranked = np.argsort(starts, kind="stable")
        return cls(starts[ranked].tolist(), np.maximum.accumulate(ends[ranked]).tolist()
                   if len(ranked) else [])

    def ends(self) -> list[int]:
        """Ends of the occupied ranges (candidate offsets for the next block)."""
        return self.max_end

    def overlaps(self, offset: int, size: int) -> bool:
        """True when [offset, offset + size) intersects an occupied range."""
        below = bisect_left(self.starts, offset + size)
        return below > 0 and self.max_end[below - 1] > offset


def _pair_offsets(block: Block, pairs: list[Pair], placement: Placement) -> set[int]:
    """Offsets next to, or at the allowed distance from, an already placed pair partner."""
    found: set[int] = set()
    for pair in pairs:
        if pair.lower is block and pair.upper.name in placement:
            at = placement[pair.upper.name]
            found.update({at - pair.delta, at + pair.upper.size})
        elif pair.upper is block and pair.lower.name in placement:
            at = placement[pair.lower.name]
            found.update({at + pair.delta, at + pair.lower.size})
    return found


def _pairs_allow(block: Block, offset: int, pairs: list[Pair], placement: Placement) -> bool:
    for pair in pairs:
        if pair.lower is block and pair.upper.name in placement:
            if not pair.allows(placement[pair.upper.name], offset):
                return False
        elif (pair.upper is block and pair.lower.name in placement
              and not pair.allows(offset, placement[pair.lower.name])):
            return False
    return True


def _lowest_base(forbidden_low: np.ndarray, forbidden_high: np.ndarray, alignment: int) -> int:
    """The lowest aligned base >= 0 in no open interval (forbidden_low, forbidden_high)."""
    ranked = np.argsort(forbidden_low, kind="stable")
    lows = forbidden_low[ranked].tolist()
    reach = np.maximum.accumulate(forbidden_high[ranked]).tolist() if lows else []
    base = 0
    while True:
        below = bisect_left(lows, base)
        if below == 0 or reach[below - 1] <= base:
            return base
        base = align_up(reach[below - 1], alignment)


def _free_base(pieces: list[Block], placed: _Placed, alignment: int) -> int:
    """The lowest aligned base where no piece (at its group offset) meets a placed block.

    Meeting: sharing a time slot and a byte.
    """
    n = placed.count
    lows, highs = [], []
    for piece in pieces:
        meets = (placed.first[:n] <= piece.last) & (placed.last[:n] >= piece.first)
        lows.append(placed.start[:n][meets] - piece.group_offset - piece.size)
        highs.append(placed.end[:n][meets] - piece.group_offset)
    return _lowest_base(np.concatenate(lows), np.concatenate(highs), alignment)


def _place_group(pieces: list[Block], placed: _Placed, placement: Placement,
                 alignment: int) -> None:
    """Place the pieces of one group at the lowest aligned base where every piece fits."""
    base = _free_base(pieces, placed, alignment)
    for piece in pieces:
        placed.add(piece, base + piece.group_offset)
        placement[piece.name] = base + piece.group_offset


def first_fit(blocks: list[Block], pairs: list[Pair], alignment: int,
              reserve: bool = False) -> Placement:
    """Place blocks in the given order, each at the lowest aligned offset that fits.

    A group's pieces are placed together when its first piece comes. With `reserve`, the input
    of an in-place step placed before its output leaves room below it for that output.
    """
    placed = _Placed(len(blocks))
    placement: Placement = {}
    touching: dict[str, list[Pair]] = {b.name: [] for b in blocks}
    groups: dict[str, list[Block]] = {}
    for block in blocks:
        if block.group:
            groups.setdefault(block.group, []).append(block)
    for pair in pairs:
        touching[pair.upper.name].append(pair)
        touching[pair.lower.name].append(pair)
    for block in blocks:
        if block.group:
            if block.name not in placement:
                _place_group(groups[block.group], placed, placement, alignment)
            continue
        mine = touching[block.name]
        if not mine:
            offset = _free_base([block], placed, alignment)
            placed.add(block, offset)
            placement[block.name] = offset
            continue
        occupied = _Occupied.of(block, placed)
        candidates = {0, *occupied.ends(), *_pair_offsets(block, mine, placement)}
        chained = any(p.lower is block and p.upper.name in placement for p in mine)
        lowest = 0 if chained else max((p.delta for p in mine if reserve and p.upper is block
                                        and not p.modulus and p.lower.name not in placement),
                                       default=0)
        candidates |= {c + lowest for c in candidates}
        offset = next(c for c in sorted({align_up(c, alignment) for c in candidates
                                         if c >= lowest})
                      if not occupied.overlaps(c, block.size)
                      and _pairs_allow(block, c, mine, placement))
        placed.add(block, offset)
        placement[block.name] = offset
    return placement


_GREEDY_KEYS = (
    lambda b: (-b.size, b.first),
    lambda b: (-b.size * (b.last - b.first + 1), b.first),
    lambda b: (-(b.last - b.first), -b.size),
    lambda b: (b.first, -b.size),
)


_MANY_BLOCKS = 1000
"""Beyond this many blocks only the first greedy order is tried (first fit is quadratic)."""


def _group_extents(blocks: list[Block]) -> dict[str, Block]:
    """Each group as one block (its pieces' total size and whole lifetime), to rank it by."""
    extents: dict[str, Block] = {}
    for block in blocks:
        if block.group:
            known = extents.get(block.group)
            extents[block.group] = block if known is None else Block(
                block.group, known.size + block.size, min(known.first, block.first),
                max(known.last, block.last))
    return extents


def place_greedy(blocks: list[Block], pairs: list[Pair], alignment: int,
                 quick: bool = False, enough: int = 0) -> Placement:
    """TFLM-style greedy by size (plus a few other orders); the smallest arena wins.

    `quick` (or many blocks) tries the order by size only. Groups (pieces of one buffer) rank
    by their whole extent, and are also tried before every other block. An order met before is
    not placed again, nor reserving room where no pair asks for any (first_fit's `reserve`),
    and no order is tried once a placement reaches slot_floor (none can be smaller) or is
    within `enough` bytes.
    """
    best: Placement = {}
    best_size = 0
    floor = max(slot_floor(blocks), enough)
    whole = _group_extents(blocks)
    tried: set[tuple[str, ...]] = set()
    reserves = (False, True) if any(not p.modulus and p.delta for p in pairs) else (False,)
    for key in _GREEDY_KEYS[:1] if quick or len(blocks) > _MANY_BLOCKS else _GREEDY_KEYS:
        for groups_first in (False, True) if whole else (False,):
            ranked = sorted(blocks, key=lambda b: (groups_first and not b.group,
                                                   key(whole.get(b.group, b))))
            order = tuple(block.name for block in ranked)
            if order in tried:
                continue
            tried.add(order)
            for reserve in reserves:
                placement = first_fit(ranked, pairs, alignment, reserve)
                size = arena_size(blocks, placement)
                if not best or size < best_size:
                    best, best_size = placement, size
                if best_size <= floor:
                    return best
    return best


def slot_floor(blocks: list[Block]) -> int:
    """The most bytes of blocks live in one time slot: no placement's arena is smaller.

    Blocks that meet in a slot never share a byte (an in-place pair meets in none).
    """
    change: dict[int, int] = {}
    for block in blocks:
        change[block.first] = change.get(block.first, 0) + block.size
        change[block.last + 1] = change.get(block.last + 1, 0) - block.size
    live = most = 0
    for slot in sorted(change):
        live += change[slot]
        most = max(most, live)
    return most


def place_optimal(blocks: list[Block], pairs: list[Pair], alignment: int, time_limit_s: float,
                  hint: Placement, lower_bound: int = 0) -> Placement | None:
    """CP-SAT placement (no-overlap 2D over time slots x bytes) minimising the arena.

    `hint` is a feasible placement (e.g. the greedy one); its arena size bounds the search.
    Returns None when the solver finds nothing within `time_limit_s` (deterministic time).
    The solve depends on its arguments alone (one worker, a work limit), so the last SOLVED
    problems are answered from memory: the NAS fit check plans a patch option settled, then
    in full, each time solving the same placement.
    """
    placed = _solved(tuple(blocks), tuple(pairs), alignment, time_limit_s,
                     tuple(hint[block.name] for block in blocks), lower_bound)
    return None if placed is None else dict(placed)


@functools.lru_cache(maxsize=SOLVED)
def _solved(blocks: tuple[Block, ...], pairs: tuple[Pair, ...], alignment: int,
            time_limit_s: float, hinted: tuple[int, ...], lower_bound: int
            ) -> tuple[tuple[str, int], ...] | None:
    """place_optimal's solve: the placement as (block name, offset) pairs, or None.

    `hinted` holds the hint's offset of each block.
    """
    from ortools.sat.python import cp_model

    hint = {block.name: offset for block, offset in zip(blocks, hinted, strict=True)}
    upper = arena_size(blocks, hint)
    model = cp_model.CpModel()
    arena = model.new_int_var(min(lower_bound, upper), upper, "arena")
    offsets, xs, ys = {}, [], []
    bases: dict[str, object] = {}
    for block in blocks:
        key = block.group or block.name
        if key not in bases:
            bases[key] = model.new_int_var(0, upper // alignment, key)
            model.add_hint(bases[key], (hint[block.name] - block.group_offset) // alignment)
        offset = bases[key] * alignment + block.group_offset
        offsets[block.name] = offset
        model.add(arena >= offset + block.size)
        if block.size:
            xs.append(model.new_fixed_size_interval_var(
                block.first, block.last - block.first + 1, f"t_{block.name}"))
            ys.append(model.new_fixed_size_interval_var(offset, block.size, f"m_{block.name}"))
    model.add_no_overlap_2d(xs, ys)
    for pair in pairs:
        _add_pair(model, pair, offsets[pair.upper.name], offsets[pair.lower.name])
    model.minimize(arena)
    solver = cp_model.CpSolver()
    # Work, not the clock, bounds the solve: the plan is the same on every machine.
    solver.parameters.max_deterministic_time = time_limit_s
    # One worker: reproducible plans, and OR-Tools 9.15 can abort the process in its
    # multi-worker interleaved search (google/or-tools#5048).
    solver.parameters.num_workers = 1
    # Ctrl-C stays the command line's: OR-Tools' own SIGINT handler is left at SIG_DFL after.
    solver.parameters.catch_sigint_signal = False
    if solver.solve(model) not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    return tuple((block.name, int(solver.value(offsets[block.name]))) for block in blocks)


def _add_pair(model: object, pair: Pair, upper: object, lower: object) -> None:
    """lower wholly below or above upper, or sharing bytes as the pair's rule allows."""
    below, above, shared = (model.new_bool_var(name) for name in ("below", "above", "shared"))
    model.add(lower + pair.lower.size <= upper).only_enforce_if(below)
    model.add(lower >= upper + pair.upper.size).only_enforce_if(above)
    if pair.modulus:
        reach = (pair.upper.size + pair.lower.size) // pair.modulus + 1
        steps = model.new_int_var(-reach, reach, "steps")
        model.add(upper - lower == steps * pair.modulus).only_enforce_if(shared)
    else:
        model.add(upper - lower >= pair.delta).only_enforce_if(shared)
    model.add_bool_or([below, above, shared])
