"""Operator order: exact dynamic programming over sets of executed ops, beam search beyond.

The memory model counts, at every step, the storages that are live (produced and still needed),
the output of the step, its scratch, minus what an in-place option saves (Liberis & Lane, "Neural
networks on microcontrollers: saving memory at inference via operator reordering", extended with
in-place execution). `evaluate` applies the same model to one order, so the peak the search
minimises is exactly the plan's lower bound.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from mcuflow.ir.graph import Graph, Operator
from mcuflow.memory.inplace import (
    ALL_KINDS,
    Option,
    options,
    shared_parents,
    static_kind,
    strided_members,
)
from mcuflow.memory.liveness import Storage, build_storages, split_storages
from mcuflow.memory.plan import RUNS_NO_CODE, InPlace
from mcuflow.memory.scratch import scratch_bytes


@dataclass(frozen=True)
class Decision:
    """How one step runs: its in-place kind, the option used (if any) and its scratch bytes."""

    kind: InPlace
    option: Option | None
    scratch: int


@dataclass
class Problem:
    """Everything the order search needs, precomputed once per graph."""

    graph: Graph
    alignment: int
    storages: list[Storage]
    storage_of: dict[str, int]
    preds: list[int]
    produces: list[list[int]]
    consumes: list[list[int]]
    static: list[InPlace]
    options: list[list[Option]]
    plain_scratch: list[int]
    streamed: frozenset[str] = frozenset()
    groups: dict[str, Storage] = field(default_factory=dict)
    """The storages planned in pieces (`storages` holds their pieces), by name."""
    pixel_steps: dict[str, int] = field(default_factory=dict)
    """Channel slices of concatenations planned in place: elements between their pixels."""
    spilled: frozenset[str] = frozenset()
    """Tensors written to external storage by their producer: in SRAM during that step only."""


def step_signature(graph: Graph, op: Operator) -> tuple[object, ...]:
    """What a step's in-place options, scratch and predicted cost depend on.

    Its kind, attributes and tensors: constants by name, activations by shape, type,
    quantisation and whether they are variables; and which inputs are the same tensor.
    """
    def tensor(name: str) -> object:
        found = graph.tensors[name]
        return name if found.is_constant else (found.shape, found.dtype, found.quant,
                                               found.variable)
    return (op.kind, op.attrs, tuple(map(tensor, op.inputs)), tuple(map(tensor, op.outputs)),
            tuple(map(op.inputs.index, op.inputs)))


@dataclass
class StepCache:
    """build_problem's work per step and its problems, each built once per graph and options.

    Steps of equal step_signature share their work. Scope one to graphs whose constants of
    one name are one tensor: a graph and its patch stage rewrites (the rewrites keep the
    model's constants). `signatures` numbers the step signatures met, which key the rest.
    """

    signatures: dict[tuple[object, ...], int] = field(default_factory=dict)
    options: dict[tuple[object, ...], tuple[tuple[str, ...], list[Option]]] = field(
        default_factory=dict)
    scratch: dict[tuple[int, bool], int] = field(default_factory=dict)
    problems: dict[tuple[object, ...], Problem] = field(default_factory=dict)
    """build_problem's answers by the graph's identity and the options."""

    def number(self, graph: Graph, op: Operator) -> int:
        """The number of the step_signature of `op`."""
        return self.signatures.setdefault(step_signature(graph, op), len(self.signatures))

    def options_of(self, number: int, graph: Graph, op: Operator, alignment: int,
                   kinds: frozenset[InPlace], sizes: dict[str, int], dsp: bool) -> list[Option]:
        """inplace.options of `op` (of signature `number`), once per signature, sizes, settings."""
        key = (number, alignment, kinds, dsp, tuple(sizes.get(name) for name in op.inputs))
        known = self.options.get(key)
        if known is None:
            known = self.options[key] = op.inputs, options(graph, op, alignment, kinds, sizes,
                                                           dsp)
        inputs, found = known
        shares = {name: ours for name, ours in zip(inputs, op.inputs, strict=True)}
        return [option if shares[option.shares] == option.shares
                else dataclasses.replace(option, shares=shares[option.shares])
                for option in found]

    def plain_scratch(self, number: int, graph: Graph, op: Operator, dsp: bool) -> int:
        """scratch_bytes of `op` (of signature `number`) run out of place, once per signature."""
        key = (number, dsp)
        known = self.scratch.get(key)
        if known is None:
            known = self.scratch[key] = scratch_bytes(graph, op, InPlace.NONE, dsp)
        return known


def is_chain(graph: Graph) -> bool:
    """True when each op reads the output of the op before it: the only order is the graph's."""
    produced = [set(op.outputs) for op in graph.operators]
    return all(produced[index - 1] & set(op.inputs)
               for index, op in enumerate(graph.operators) if index)


def build_problem(graph: Graph, alignment: int = 16,
                  kinds: frozenset[InPlace] = ALL_KINDS, dsp: bool = False,
                  streamed: frozenset[str] = frozenset(), split: bool = False,
                  cache: StepCache | None = None, spilled: frozenset[str] = frozenset()
                  ) -> Problem:
    """Storages, dependencies and in-place options of `graph` (scratch for DSP kernels: `dsp`).

    `streamed` graph inputs take no memory: their readers fetch what they need. With `split`,
    storages of several members are planned in pieces (split_storages): a patch stage's input
    image, its windows and its assembled end. A `cache` given shares the steps' work with
    other graphs (see StepCache). `spilled` tensors are written to external storage by their
    producer and read back by SLICEs (patches.PatchChoice.spilled): they take memory during
    the producing step only.
    """
    cache = cache if cache is not None else StepCache()
    key = (id(graph), alignment, kinds, dsp, streamed, split, spilled)
    known = cache.problems.get(key)
    if known is not None and known.graph is graph:
        return known
    problem = _new_problem(graph, alignment, kinds, dsp, streamed, split, cache, spilled)
    cache.problems[key] = problem
    return problem


def _new_problem(graph: Graph, alignment: int, kinds: frozenset[InPlace], dsp: bool,
                 streamed: frozenset[str], split: bool, cache: StepCache,
                 spilled: frozenset[str]) -> Problem:
    """build_problem without the cache's problems."""
    parent, statics = _parents(graph, kinds, streamed | spilled)
    whole = build_storages(graph, parent, streamed, spilled)
    silent = sum(1 << v for v, kind in enumerate(statics) if kind in RUNS_NO_CODE)
    strided = strided_members(graph, statics)
    storages = split_storages(graph, whole, silent, frozenset(strided)) if split else whole
    storage_of = {name: i for i, s in enumerate(storages) for name, _ in s.members}
    pieces_of = _pieces(graph, storages, whole)
    root_sizes = {name: s.size for s in storages for name, off in s.members if off == 0}
    producer = {out: i for i, op in enumerate(graph.operators) for out in op.outputs}
    n = len(graph.operators)
    problem = Problem(graph, alignment, storages, storage_of, [0] * n, [], [], [], [], [],
                      streamed, {s.group: next(w for w in whole if w.name == s.group)
                                 for s in storages if s.group}, strided, spilled)
    for v, op in enumerate(graph.operators):
        for name in op.inputs:
            if name in producer:
                problem.preds[v] |= 1 << producer[name]
        problem.produces.append(sorted({p for o in op.outputs for p in pieces_of.get(o, ())}))
        problem.consumes.append(sorted({p for i in op.inputs if i not in spilled
                                        for p in pieces_of.get(i, ())}))
        static = statics[v]
        problem.static.append(static)
        if static is not InPlace.NONE:
            problem.options.append([])
            problem.plain_scratch.append(0)
            continue
        output = storage_of.get(op.outputs[0])
        number = cache.number(graph, op)
        problem.options.append(
            cache.options_of(number, graph, op, alignment, kinds, root_sizes, dsp)
            if output is not None and storages[output].name == op.outputs[0] else [])
        problem.plain_scratch.append(cache.plain_scratch(number, graph, op, dsp))
    return problem


def static_kinds(graph: Graph, kinds: frozenset[InPlace] = ALL_KINDS,
                 excluded: frozenset[str] = frozenset()) -> list[InPlace]:
    """The static kind of each step (inplace.static_kind), as build_problem plans it.

    `excluded` are its streamed and spilled tensors, which share no storage.
    """
    return _parents(graph, kinds, excluded)[1]


def _parents(graph: Graph, kinds: frozenset[InPlace], excluded: frozenset[str]
             ) -> tuple[dict[str, tuple[str, int]], list[InPlace]]:
    """The storage each tensor shares (inplace.shared_parents), and each step's static kind."""
    parent = shared_parents(graph, kinds, excluded)
    return parent, [static_kind(graph, op, parent) for op in graph.operators]


def _pieces(graph: Graph, storages: list[Storage], whole: list[Storage]
            ) -> dict[str, list[int]]:
    """The storages (or pieces of one) each activation tensor occupies."""
    found: dict[str, list[int]] = {}
    for index, storage in enumerate(storages):
        for name, _ in storage.members:
            found[name] = [index]
    first = {s.group: i for i, s in reversed(list(enumerate(storages))) if s.group}
    for storage in (w for w in whole if w.name in first):
        pieces = range(first[storage.name], first[storage.name] + sum(
            1 for s in storages if s.group == storage.name))
        for name, offset in storage.members:
            end = offset + graph.tensors[name].nbytes
            found[name] = [i for i in pieces if offset < storages[i].group_offset
                           + storages[i].size and storages[i].group_offset < end]
    return found


def _produced(storage: Storage, done: int) -> bool:
    return storage.is_input or bool(storage.producers & done)


def _alive_after(storage: Storage, done: int) -> bool:
    return _produced(storage, done) and (storage.is_output or bool(storage.consumers & ~done))


def initial_memory(problem: Problem) -> int:
    """Bytes live before the first step (the graph inputs that are used)."""
    return sum(s.size for s in problem.storages if _alive_after(s, 0))


def step(problem: Problem, done: int, v: int, memory: int) -> tuple[int, int, Decision]:
    """Run op `v` after the ops in bit mask `done` with `memory` bytes live.

    Returns (bytes needed during the step, bytes live after it, the decision taken).
    """
    storages = problem.storages
    after = done | (1 << v)
    new = sum(storages[s].size for s in problem.produces[v] if not _produced(storages[s], done))
    dying = {s for s in problem.consumes[v]
             if _alive_after(storages[s], done) and not _alive_after(storages[s], after)}
    freed = sum(storages[s].size for s in dying)
    freed += sum(storages[s].size for s in problem.produces[v]
                 if not _produced(storages[s], done) and not _alive_after(storages[s], after))
    decision = Decision(problem.static[v], None, problem.plain_scratch[v])
    best_saving = 0
    for option in problem.options[v]:
        shared = problem.storage_of[option.shares]
        if shared not in dying:
            continue
        output = storages[problem.storage_of[problem.graph.operators[v].outputs[0]]]
        saving = (storages[shared].size + output.size - option.footprint
                  - option.scratch + problem.plain_scratch[v])
        if saving > best_saving:
            best_saving = saving
            decision = Decision(option.kind, option, option.scratch)
    peak = memory + new + problem.plain_scratch[v] - best_saving
    return peak, memory + new - freed, decision


def evaluate(problem: Problem, order: list[int]) -> tuple[int, list[int], list[Decision]]:
    """(peak bytes, bytes needed at each step, decisions) of executing `order`."""
    done, memory = 0, initial_memory(problem)
    needs, decisions = [], []
    for v in order:
        need, memory, decision = step(problem, done, v, memory)
        needs.append(need)
        decisions.append(decision)
        done |= 1 << v
    return max(needs, default=memory), needs, decisions


BEAM_WIDTH = 64
"""Sets of executed ops kept per layer once the exact search has spent its budget."""
STEPS_PER_SECOND = 50_000
"""Step evaluations a second of planning buys: the search counts work, never the clock, so a
plan is the same on every machine however loaded (about a second of a 2024 laptop's time)."""
_GIVE_UP = 3
"""The search returns the graph's own order past this many times its budget."""


@dataclass
class _State:
    peak: int
    total: int
    memory: int
    parent: int
    op: int


def best_order(problem: Problem, time_limit_s: float = 0.5, max_states: int = 20000) -> list[int]:
    """An order minimising the peak (then the sum of step needs).

    The budget is `time_limit_s` x STEPS_PER_SECOND step evaluations. The search is exact while
    every layer of it (sets of k executed ops) holds at most `max_states` sets and budget
    remains; after that each layer keeps only its most promising sets, as many as the rest of
    the budget affords (at most BEAM_WIDTH, at least one). Past _GIVE_UP times the budget it
    returns the graph's own order.
    """
    n = len(problem.graph.operators)
    budget = max(int(time_limit_s * STEPS_PER_SECOND), 1)
    steps = 0
    layers: list[dict[int, _State]] = [{0: _State(0, 0, initial_memory(problem), -1, -1)}]
    for depth in range(n):
        layer: dict[int, _State] = {}
        for done, state in layers[-1].items():
            if steps > _GIVE_UP * budget:
                return list(range(n))
            for v in range(n):
                if done >> v & 1 or problem.preds[v] & ~done:
                    continue
                steps += 1
                need, memory, _ = step(problem, done, v, state.memory)
                key = (max(state.peak, need), state.total + need)
                after = done | (1 << v)
                known = layer.get(after)
                if known is None or key < (known.peak, known.total):
                    layer[after] = _State(key[0], key[1], memory, done, v)
        width = max_states if steps < budget else _beam_width(budget, n - depth - 1, n)
        kept = sorted(layer.items(), key=lambda kv: (kv[1].peak, kv[1].memory, kv[1].total))
        layers.append(dict(kept[:width]))
    return _backtrack(layers)


def _beam_width(budget: int, layers_left: int, n: int) -> int:
    """Sets to keep per layer so that the layers left cost about one more budget."""
    return max(1, min(BEAM_WIDTH, budget // max(layers_left * n, 1)))


def _backtrack(layers: list[dict[int, _State]]) -> list[int]:
    final = min(layers[-1].values(), key=lambda s: (s.peak, s.total))
    order = []
    state = final
    for depth in range(len(layers) - 1, 0, -1):
        order.append(state.op)
        state = layers[depth - 1][state.parent]
    return order[::-1]
