"""Test helpers: the LiteRT oracle, TFLM's arena, random inputs and the shared model paths."""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from tflite_micro.python.tflite_micro import runtime as tflm

from mcuflow.cli import main
from mcuflow.codegen.project import generate_project
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import Graph
from mcuflow.memory.planner import plan_memory
from mcuflow.ptq import QuantizeResult
from mcuflow.ref.interpreter import Interpreter as RefInterpreter
from mcuflow.toolchain.host import build_host, run_host

SHARED_MODELS = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf_tiny"
INT8_MODELS = [
    "kws_ref_model.tflite",
    "vww_96_int8.tflite",
    "pretrainedResnet_quant.tflite",
    "ad01_int8.tflite",
    "str_ww_ref_model.tflite",
]
FLOAT_MODELS = [
    "kws_ref_model_float32.tflite",
    "vww_96_float.tflite",
    "pretrainedResnet.tflite",
    "ad01_fp32.tflite",
]


def litert_interpreter(model: bytes | Path) -> Interpreter:
    """A LiteRT interpreter with the reference op resolver (the bit-exact oracle)."""
    source = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    interpreter = Interpreter(
        **source, experimental_op_resolver_type=OpResolverType.BUILTIN_REF, num_threads=1
    )
    interpreter.allocate_tensors()
    return interpreter


def litert_invoke(model: bytes | Path | Interpreter, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run LiteRT (reference kernels) on `inputs`; returns the outputs in graph order."""
    interpreter = model if isinstance(model, Interpreter) else litert_interpreter(model)
    for detail, value in zip(interpreter.get_input_details(), inputs, strict=True):
        interpreter.set_tensor(detail["index"], value)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()]


def fd_output(action: Callable[[], object]) -> str:
    """What `action` prints, from C or C++ too, to file descriptors 1 and 2."""
    with tempfile.TemporaryFile() as capture:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        os.dup2(capture.fileno(), 1)
        os.dup2(capture.fileno(), 2)
        try:
            action()
            ctypes.CDLL(None).fflush(None)
        finally:
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
        capture.seek(0)
        return capture.read().decode()


def tflm_arena(model: Path) -> tuple[int, int]:
    """(total, head) bytes of TFLM's arena for `model`, from tflite-micro's print_allocations()."""
    interpreter = tflm.Interpreter.from_file(str(model), arena_size=4 << 20)
    text = fd_output(interpreter.print_allocations)
    total = re.search(r"Arena allocation total (\d+) bytes", text)
    head = re.search(r"Arena allocation head (\d+) bytes", text)
    if not total or not head:
        raise RuntimeError(f"no arena figures in TFLM's output for {model}:\n{text}")
    return int(total.group(1)), int(head.group(1))


def random_input(shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    """Uniform random values over the whole range of an integer dtype, or N(0,1) floats."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=dtype)


def assert_litert_bit_exact(result: QuantizeResult, samples: np.ndarray) -> None:
    """A quantised model's int8 outputs equal LiteRT's on float `samples` (model layout)."""
    litert = litert_interpreter(result.tflite())
    interpreter = RefInterpreter(result.graph)
    for sample in samples:
        x = result.quantize_input(sample[None])
        np.testing.assert_array_equal(interpreter.run([x]).outputs[0],
                                      litert_invoke(litert, [x])[0])


def inception_block(size: int = 16, seed: int = 0, with_add: bool = False) -> Graph:
    """An Inception-style block concatenating six branches on channels, then a 1x1 conv.

    The branches of one input: 1x1 and 3x3 convolutions, 5x5 and 3x3 depthwise ones, a max and
    an average pool, all of one quantisation (as an int8 concatenation needs).

    `with_add` adds an ADD branch, whose kernel cannot write a channel slice.
    """
    b = GraphBuilder("inception_block", seed)
    x = b.conv2d(b.input((1, size, size, 3), 0.02, 0), 8, activation=Activation.RELU)
    branches = [b.conv2d(x, 12, (1, 1), activation=Activation.RELU),
                b.conv2d(x, 8, (3, 3)),
                b.depthwise_conv2d(x, (5, 5)),
                b.depthwise_conv2d(x, (3, 3)),
                b.max_pool2d(x, 3, 1, Padding.SAME),
                b.average_pool2d(x, 3, 1, Padding.SAME)]
    if with_add:
        branches.append(b.add(x, x))
    for name in branches:
        b.graph.tensors[name].quant = b.quant(x)
    y = b.conv2d(b.concatenation(branches, axis=3), 8, (1, 1), activation=Activation.RELU)
    return b.output(y).build()


def run_cli(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str]:
    """Run the CLI in-process; (exit code, stderr)."""
    code, _, err = run_cli_output(capsys, args)
    return code, err


def run_cli_output(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    """Run the CLI in-process; (exit code, stdout, stderr)."""
    sys.argv = ["mcuflow", *args]
    code = 0
    try:
        main()
    except SystemExit as done:
        code = int(done.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def keras_padded(size: int = 40) -> Graph:
    """Keras MobileNet style: ZeroPadding2D (a PAD, asymmetric) before each stride-2 VALID conv."""
    b = GraphBuilder("keras_padded", 3)
    x = b.pad(b.input((1, size, size, 3), 0.02, 0), ((0, 0), (0, 1), (0, 1), (0, 0)))
    x = b.conv2d(x, 8, stride=2, padding=Padding.VALID, activation=Activation.RELU)
    x = b.depthwise_conv2d(x, activation=Activation.RELU)
    x = b.pad(b.conv2d(x, 16, (1, 1), activation=Activation.RELU), ((0, 0), (1, 1), (1, 1), (0, 0)))
    x = b.depthwise_conv2d(x, stride=2, padding=Padding.VALID, activation=Activation.RELU)
    x = b.conv2d(x, 16, (1, 1), activation=Activation.RELU)
    return b.output(b.reshape(b.mean(x, (1, 2), keep_dims=True), (1, 16))).build()


def host_outputs(graph: Graph, inputs: list[np.ndarray], directory: Path) -> list[np.ndarray]:
    """The generated C of `graph`, built on the host (sanitised), run on stacked `inputs`."""
    plan = plan_memory(graph, 0.3)
    project = generate_project(graph, plan, directory)
    return run_host(build_host(project.path, sanitize=True), inputs, project.outputs)


def barometer_series(samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Series of 64 steps of a pressure (hPa) and a temperature (K) channel, 3 classes.

    Each class is a tone of its own frequency, 1.5 hPa and 0.3 K deep, in noise: far from
    zero, each channel's standard deviation spans under one step of an int8 input whose range
    contains zero.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, samples)
    steps = np.arange(64)
    phase = rng.uniform(0, 2 * np.pi, (samples, 1))
    angle = 2 * np.pi * np.array([0.05, 0.12, 0.25])[y][:, None] * steps + phase
    pressure = 1013.0 + 1.5 * np.sin(angle) + rng.normal(0, 0.5, angle.shape)
    temperature = 300.0 + 0.3 * np.cos(angle) + rng.normal(0, 0.3, angle.shape)
    return np.stack([pressure, temperature], axis=-1).astype(np.float32), y
