"""The fuzz harness: deterministic mutated inputs, the pipeline they go through, and outcomes.

Every input must either pass every stage or raise an McuflowError; anything else (another
exception, a numpy warning, a hang, a result computed in the planned arena that differs from
the reference interpreter's) is a failure, identified by its stage, type and source location.
"""

from __future__ import annotations

import random
import signal
import threading
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np

from mcuflow.analysis.metrics import analyze
from mcuflow.cli import error_line
from mcuflow.errors import McuflowError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.hw.board import Board, load_boards
from mcuflow.ir.constraints import check_supported
from mcuflow.ir.graph import Graph
from mcuflow.ir.verify import verify_graph
from mcuflow.memory.execute import run_in_arena
from mcuflow.memory.plan import Plan
from mcuflow.memory.planner import plan_memory
from mcuflow.ref.interpreter import run
from tests.fuzz.compiled import build_and_compare, fast_plan, render_checked
from tests.fuzz.flat import ModelT, unpack
from tests.fuzz.mutators import mutate_bytes, mutate_structure
from tests.fuzz.seeds import all_seeds, built_seeds

SOURCE_ROOT = str(Path(__file__).resolve().parents[2] / "src" / "mcuflow")


class Status(Enum):
    """What became of one input."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    FAILURE = "failure"


class Hang(BaseException):
    """Raised by the watchdog when one input runs past its deadline (not an Exception)."""


class Mismatch(Exception):
    """The model computed in its planned arena differs from the reference interpreter."""


@dataclass(frozen=True)
class Limits:
    """How far an accepted input is taken: MACs run by the interpreter, time per input."""

    run_macs: int = 2_000_000
    timeout_s: float = 10.0
    full_planner_every: int = 20
    build_timeout_s: float = 120.0


@dataclass(frozen=True)
class Outcome:
    """The result of one input: its status, the stage reached, and the error if any."""

    status: Status
    stage: str
    error: str = ""
    message: str = ""
    location: str = ""
    trace: str = ""

    @property
    def signature(self) -> str:
        """What identifies a distinct failure: stage, exception type and where it was raised."""
        return f"{self.stage}:{self.error}:{self.location}"


@dataclass(frozen=True)
class FuzzInput:
    """One generated input and how it was made."""

    data: bytes
    description: str


# --------------------------------------------------------------------------- the pipeline


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise Hang in the main thread when the block runs longer than `seconds`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise Hang(f"no result after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def strict_numerics() -> Iterator[None]:
    """Every warning and numpy floating-point error becomes an exception (underflow is benign)."""
    with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
        warnings.simplefilter("error")
        yield


@cache
def boards() -> list[Board]:
    """The packaged boards, in a fixed order."""
    return [board for _, board in sorted(load_boards().items())]


class _Pipeline:
    """The stages of `mcuflow analyze`, `run` and `compile`, recording the stage reached.

    With `build`, the generated C is also compiled with the sanitizers and run.
    """

    def __init__(self, index: int, limits: Limits, build: bool = False) -> None:
        self.stage = "read"
        self.index = index
        self.limits = limits
        self.build = build

    def enter(self, stage: str) -> None:
        self.stage = stage

    def execute(self, data: bytes) -> None:
        graph = read_tflite(data)
        self.enter("verify")
        verify_graph(graph)
        self.enter("constraints")
        check_supported(graph)
        self.enter("plan")
        plan = self.plan(graph)
        self.enter("analyze")
        board = boards()[self.index % len(boards())]
        report = analyze(graph, board, order=plan.order, peak_ram_bytes=plan.arena_bytes)
        if report.macs > self.limits.run_macs:
            return
        self.enter("run")
        inputs = random_inputs(graph, self.index)
        expected = run(graph, inputs).outputs
        self.enter("arena")
        got = run_in_arena(plan, inputs).outputs
        for name, a, b in zip(graph.outputs, expected, got, strict=True):
            if a.shape != b.shape or not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                raise Mismatch(f"output {name!r} computed in the arena differs")
        self.enter("codegen")
        render_checked(graph, plan)
        if self.build:
            self.enter("build")
            build_and_compare(graph, plan, inputs, expected)

    def plan(self, graph: Graph) -> Plan:
        """The API's planner now and then; its fast path (greedy placement) otherwise."""
        if self.index % self.limits.full_planner_every == 0:
            return plan_memory(graph, time_limit_s=0.05)
        return fast_plan(graph)


def random_inputs(graph: Graph, seed: int) -> list[np.ndarray]:
    """Random values for every graph input: the whole integer range, or N(0, 1) floats."""
    rng = np.random.default_rng(seed)
    values = []
    for name in graph.inputs:
        tensor = graph.tensors[name]
        dtype = tensor.dtype.numpy
        if dtype.kind == "f":
            values.append(rng.standard_normal(tensor.shape).astype(dtype))
        elif dtype.kind == "b":
            values.append(rng.integers(0, 2, size=tensor.shape).astype(dtype))
        else:
            info = np.iinfo(dtype)
            values.append(rng.integers(info.min, info.max, size=tensor.shape, dtype=dtype,
                                       endpoint=True))
    return values


class Stages(Protocol):
    """A pipeline: `execute` runs the stages, `stage` names the one reached."""

    stage: str

    def execute(self, data: bytes) -> None:
        """Run every stage on one input."""


def execute(data: bytes, index: int = 0, limits: Limits = Limits(), *,
            build: bool = False) -> Outcome:
    """Take one .tflite input as far as it goes (with `build`, to a sanitised host binary)."""
    seconds = limits.build_timeout_s if build else limits.timeout_s
    return classify(_Pipeline(index, limits, build), data, seconds)


def classify(pipeline: Stages, data: bytes, seconds: float) -> Outcome:
    """Run `pipeline` on `data` under a deadline and strict numerics; classify what happened."""
    try:
        with deadline(seconds), strict_numerics():
            pipeline.execute(data)
    except McuflowError as error:
        return _rejection(pipeline.stage, error)
    except (Exception, Hang) as error:  # every other error is a finding
        return _failure(pipeline.stage, error)
    return Outcome(Status.ACCEPTED, pipeline.stage)


def _rejection(stage: str, error: McuflowError) -> Outcome:
    """A typed rejection; one the CLI could not print as one line is a failure all the same."""
    text = str(error)
    if not error.message.strip() or not error_line(text).isprintable():
        return _failure(stage, error, "empty or unprintable message: ")
    return Outcome(Status.REJECTED, stage, type(error).__name__, text)


def _failure(stage: str, error: BaseException, prefix: str = "") -> Outcome:
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if f.filename.startswith(SOURCE_ROOT)] or frames
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    trace = "".join(traceback.format_exception(error))
    return Outcome(Status.FAILURE, stage, type(error).__name__, prefix + repr(str(error)),
                   where, trace)


# --------------------------------------------------------------------------- inputs


@cache
def _trees() -> dict[str, ModelT]:
    return {name: unpack(data) for name, data in all_seeds().items()}


def make_input(campaign: str, index: int) -> FuzzInput:
    """The `index`-th input of a campaign: a seed model with one to four mutations.

    Deterministic: the same campaign and index always give the same bytes.
    """
    rng = random.Random(f"{campaign}/{index}")
    seeds = all_seeds()
    small = list(built_seeds())
    name = rng.choice(small) if rng.random() < 0.7 or len(seeds) == len(small) else (
        rng.choice(sorted(seeds)))
    count = rng.choice((1, 1, 1, 2, 2, 3, 4))
    data, done = seeds[name], []
    strategy = rng.random()
    if strategy < 0.55:
        for _ in range(8):
            packed = mutate_structure(_trees()[name], rng, count)
            if packed is not None:
                data, done = packed
                break
    if strategy >= 0.45 or not done:
        other = seeds[rng.choice(sorted(seeds))]
        data, more = mutate_bytes(data, rng, other, count)
        done += more
    return FuzzInput(data, f"{name}: " + "; ".join(done))
