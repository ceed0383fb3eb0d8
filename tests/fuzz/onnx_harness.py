"""The ONNX side of the fuzzer: mutated ONNX models through `mcuflow analyze MODEL --calibration`.

Stages: read (import_onnx), passes, quantize (calibrated on random samples), constraints, plan
and run (the int8 reference interpreter). Float arithmetic on hostile weights may overflow, as
it may for a user; only the integer stages run under strict numerics.

Besides an untyped exception or a hang, two outcomes are failures: an input that made the
process's resident memory grow by more than MAX_INPUT_GROWTH, and an accepted model that stores
a tensor in an external file (mcuflow must refuse it rather than read a file the model names).
"""

from __future__ import annotations

import random
import resource
from functools import cache
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from mcuflow.analysis.metrics import analyze
from mcuflow.frontends.onnx_reader import import_onnx
from mcuflow.ir.constraints import check_supported
from mcuflow.ir.graph import Graph
from mcuflow.passes.pipeline import run_passes
from mcuflow.ptq import QUANT_SCHEMES
from mcuflow.quant.calibrate import Calibrator, Method
from mcuflow.ref.float_kernels import run_float
from mcuflow.ref.interpreter import run
from tests.fuzz.compiled import fast_plan
from tests.fuzz.harness import (
    FuzzInput,
    Limits,
    Outcome,
    Status,
    boards,
    classify,
    random_inputs,
)
from tests.fuzz.mutators import mutate_bytes
from tests.fuzz.onnx_mutators import mutate_onnx, tensors
from tests.fuzz.onnx_seeds import onnx_seeds

CALIBRATION_SAMPLES = 2
SCHEMES = ("affine", "qformat")
DEFAULT_LIMITS = Limits()
MAX_INPUT_GROWTH = 768 << 20
"""No input may make the resident memory grow by more than this: the CLI's budget of 1 GiB,
less what importing mcuflow takes. Seen when the input sets a new peak for the process."""


class _OnnxPipeline:
    """The stages of `mcuflow analyze MODEL.onnx --calibration cal.npy`."""

    def __init__(self, index: int, limits: Limits) -> None:
        self.stage = "read"
        self.index = index
        self.limits = limits

    def execute(self, data: bytes) -> None:
        graph = import_onnx(data).graph
        self.stage = "passes"
        graph = run_passes(graph)
        self.stage = "analyze"
        if analyze(graph, boards()[0]).macs > self.limits.run_macs:
            return
        self.stage = "quantize"
        int8 = self.quantize(graph)
        self.stage = "constraints"
        check_supported(int8)
        self.stage = "plan"
        fast_plan(int8)
        self.stage = "run"
        run(int8, random_inputs(int8, self.index))

    def quantize(self, graph: Graph) -> Graph:
        calibrator = Calibrator(graph.activations())
        for sample in range(CALIBRATION_SAMPLES):
            with np.errstate(all="ignore"):
                tensors = run_float(graph, random_inputs(graph, self.index + sample),
                                    keep_intermediates=True).tensors
            calibrator.observe(tensors)
        scheme = SCHEMES[self.index % len(SCHEMES)]
        return QUANT_SCHEMES[scheme](graph, calibrator.ranges(Method.MINMAX), self.index % 3 > 0)


def execute_onnx(data: bytes, index: int = 0, limits: Limits = DEFAULT_LIMITS) -> Outcome:
    """Take one ONNX input as far as it goes and classify what happened."""
    current, peak = _memory()
    outcome = classify(_OnnxPipeline(index, limits), data, limits.timeout_s)
    after = _memory()[1]
    if after > peak and after - current > MAX_INPUT_GROWTH:
        return _finding(outcome, "MemoryLimit", f"resident memory grew by {after - current:,} "
                        f"bytes, over {MAX_INPUT_GROWTH:,}")
    if outcome.status is Status.ACCEPTED and _stores_externally(data):
        return _finding(outcome, "ExternalDataAccepted",
                        "a model with a tensor stored in an external file was accepted")
    return outcome


def _memory() -> tuple[int, int]:
    """The process's resident memory now and at its peak (now is the peak without /proc)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return peak, peak
    return pages * resource.getpagesize(), peak


def _finding(outcome: Outcome, error: str, message: str) -> Outcome:
    return Outcome(Status.FAILURE, outcome.stage, error, message, "onnx_harness",
                   f"{error}: {message}; the input was {outcome.status.value} at "
                   f"{outcome.stage} {outcome.message[:300]}{outcome.trace}")


def _stores_externally(data: bytes) -> bool:
    """True when the bytes parse as a model with a tensor anywhere marked as stored elsewhere."""
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError):
        return False
    return any(tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data
               for tensor in tensors(model))


@cache
def _protos() -> dict[str, onnx.ModelProto]:
    return {name: onnx.load_from_string(data) for name, data in onnx_seeds().items()}


def make_onnx_input(campaign: str, index: int) -> FuzzInput:
    """The `index`-th ONNX input of a campaign: a seed with protobuf and/or byte mutations."""
    rng = random.Random(f"onnx/{campaign}/{index}")
    seeds = onnx_seeds()
    name = rng.choice(sorted(seeds))
    count = rng.choice((1, 1, 1, 2, 2, 3, 4))
    data, done = seeds[name], []
    strategy = rng.random()
    if strategy < 0.75:
        for _ in range(8):
            mutated = mutate_onnx(_protos()[name], rng, count)
            if mutated is not None:
                data, done = mutated
                break
    if strategy >= 0.65:
        other = seeds[rng.choice(sorted(seeds))]
        data, more = mutate_bytes(data, rng, other, rng.choice((1, 1, 2)))
        done += more
    return FuzzInput(data, f"{name}: " + "; ".join(done))
