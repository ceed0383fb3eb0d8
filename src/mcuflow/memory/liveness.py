"""Liveness: storages (tensors that share memory by construction) and their lifetimes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mcuflow.ir.graph import Graph, TensorUses


@dataclass(frozen=True)
class Storage:
    """A region owned by one tensor and shared by its aliases and concatenation slices.

    `members` maps each tensor stored here to its byte offset inside the region; `producers` and
    `consumers` are bit masks over operator indices. A piece of a storage planned in pieces
    (split_storages) has no members: it is bytes [group_offset, group_offset + size) of the
    storage `group`.
    """

    name: str
    size: int
    members: tuple[tuple[str, int], ...]
    producers: int
    consumers: int
    is_input: bool
    is_output: bool
    group: str = ""
    group_offset: int = 0


def _op_mask(indices: Iterable[int]) -> int:
    """The bit mask of operator indices; an op listed several times sets its bit once.

    A multi-output op (SPLIT, UNPACK) produces several members of one storage: adding its bit
    once per member would carry into other ops' bits.
    """
    mask = 0
    for index in indices:
        mask |= 1 << index
    return mask


def _root(parent: dict[str, tuple[str, int]], name: str) -> tuple[str, int]:
    offset = 0
    while name in parent:
        name, inner = parent[name]
        offset += inner
    return name, offset


def build_storages(graph: Graph, parent: dict[str, tuple[str, int]],
                   streamed: frozenset[str] = frozenset(),
                   spilled: frozenset[str] = frozenset()) -> list[Storage]:
    """Group the activation tensors into storages (streamed graph inputs have none).

    `parent` maps a tensor to (tensor it lives in, byte offset inside it), e.g. a RESHAPE output
    to its input at offset 0 or a concatenation input to the concatenated tensor. The reads of
    a `spilled` tensor come from external storage: they do not keep its bytes alive.
    """
    groups: dict[str, list[tuple[str, int]]] = {}
    for name in (n for n in graph.activations() if n not in streamed):
        root, offset = _root(parent, name)
        groups.setdefault(root, []).append((name, offset))
    producer_of = {out: i for i, op in enumerate(graph.operators) for out in op.outputs}
    consumers_of: dict[str, int] = {}
    for i, op in enumerate(graph.operators):
        for name in (n for n in op.inputs if n not in spilled):
            consumers_of[name] = consumers_of.get(name, 0) | (1 << i)
    storages = []
    for root, members in groups.items():
        names = {name for name, _ in members}
        producers = _op_mask(producer_of[n] for n in names if n in producer_of)
        consumers = 0
        for name in names:
            consumers |= consumers_of.get(name, 0)
        size = max(off + graph.tensors[name].nbytes for name, off in members)
        storages.append(Storage(
            root, size, tuple(members), producers, consumers,
            any(n in graph.inputs for n in names), any(n in graph.outputs for n in names),
        ))
    return storages


def split_storages(graph: Graph, storages: list[Storage], silent: int,
                   interleaved: frozenset[str] = frozenset()) -> list[Storage]:
    """Every storage with several members cut at its members' boundaries into pieces.

    Storages holding `interleaved` members (channel slices, whose pixels alternate with the
    other slices' pixels) stay whole.

    A piece is live from the first step that writes a member over it (the start for a graph
    input) to the last that reads one; `silent` (a bit mask) marks the ops that run no code
    (aliases, concatenations planned in place), whose reads do not keep bytes alive: the
    members they define carry those bytes' lifetime. So the rows of an input image that no
    patch reads any more, or the part of a concatenation not yet written, hold other buffers.
    """
    uses = graph.uses()
    found = []
    for storage in storages:
        cuts = sorted({0, storage.size, *(off for _, off in storage.members),
                       *(off + graph.tensors[n].nbytes for n, off in storage.members)})
        if len(cuts) <= 2 or any(name in interleaved for name, _ in storage.members):
            found.append(storage)
            continue
        for start, end in zip(cuts, cuts[1:], strict=False):
            over = [n for n, off in storage.members
                    if off < end and start < off + graph.tensors[n].nbytes]
            producers = _op_mask(uses.producer[n] for n in over if n in uses.producer)
            consumers = 0
            for name in over:
                for index in uses.consumers.get(name, ()):
                    consumers |= (1 << index) & ~silent
            found.append(Storage(f"{storage.name}[{start}:{end}]", end - start, (), producers,
                                 consumers, any(n in graph.inputs for n in over),
                                 any(n in graph.outputs for n in over), storage.name, start))
    return found


def _steps_of(mask: int, step_of: list[int]) -> list[int]:
    steps = []
    while mask:
        low = mask & -mask
        steps.append(step_of[low.bit_length() - 1])
        mask ^= low
    return steps


def storage_lifetime(storage: Storage, step_of: list[int], n_steps: int) -> tuple[int, int]:
    """(first, last) step of a storage, given `step_of[op_index]` in the chosen order."""
    produced = _steps_of(storage.producers, step_of)
    first = 0 if storage.is_input or not produced else min(produced)
    if storage.is_output:
        return first, n_steps - 1
    return first, max([first, *produced, *_steps_of(storage.consumers, step_of)])


def tensor_lifetime(graph: Graph, uses: TensorUses, name: str, step_of: list[int],
                    n_steps: int) -> tuple[int, int]:
    """(first, last) step during which tensor `name` holds its value (`uses`: graph.uses())."""
    producer = uses.producer.get(name)
    first = 0 if producer is None else step_of[producer]
    if name in graph.outputs:
        return first, n_steps - 1
    return first, max([first, *(step_of[i] for i in uses.consumers.get(name, ()))])
