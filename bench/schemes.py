"""Quantisation schemes side by side on Cortex-M4: the study's Figure 7 and section 7, measured.

"Deep Learning on Microcontrollers" (seeds/003, sections 6-7) compares Q-format, affine and
codebook (k-means + Huffman) quantisation and warns that the codebook's decoding is a hidden
cost. LiteRT's int16x8 scheme (int16 activations, int8 weights) is measured beside them.
Here each float model is quantised under each scheme with the same calibration data,
compiled to C for the Cortex-M4 (arm-none-eabi-gcc -O2) and run on QEMU mps2-an386 with
`-icount shift=0` (counting method in mcuflow.toolchain.qemu), every run checked bit-exact
against the reference interpreter. Per model and scheme:
- stored weight bytes (weights and biases as the generated C stores them: the codebook's
  stream, decoder tables and centroids) and the float32 model's weight bytes;
- flash (text + rodata + data of the linked ELF) and RAM (the planned arena, which holds the
  decoded weights of the layer running, and the ELF's static RAM plus peak stack);
- instructions per inference of the default M4 build (Arm DSP kernels where they apply; a layer
  with codebook weights runs the portable kernel on its decoded weights) and of a build with
  the portable kernels only, where the schemes run the same kernels and the difference is the
  scheme's own cost (the codebook's decoding);
- quality: digits, accuracy on the held-back split (the CNN of tests/models/test_digits.py,
  needs torch); MLPerf Tiny float models, output SQNR against the float model and top-1
  agreement (classifiers) on held-out N(0, 1) inputs.
Run: .venv/bin/python bench/schemes.py [--json] [--model digits|FILE ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from mcuflow import api  # noqa: E402
from mcuflow.codegen.project import generate_project  # noqa: E402
from mcuflow.hw.board import Board  # noqa: E402
from mcuflow.ir.graph import Graph  # noqa: E402
from mcuflow.memory.planner import plan_memory  # noqa: E402
from mcuflow.quant.report import dequantize, is_classifier, sqnr_db  # noqa: E402
from mcuflow.ref.float_kernels import run_float  # noqa: E402
from mcuflow.ref.interpreter import Interpreter  # noqa: E402
from mcuflow.toolchain.arm import build_cortexm, elf_sizes  # noqa: E402
from mcuflow.toolchain.host import random_inputs  # noqa: E402
from mcuflow.toolchain.qemu import default_board, run_qemu  # noqa: E402
from tests.support import FLOAT_MODELS, SHARED_MODELS  # noqa: E402

TARGET = "cortex-m4"
SCHEMES = (("affine", 0), ("qformat", 0), ("codebook", 16), ("codebook", 256), ("int16x8", 0))
CALIBRATION = 50
EVALUATION = 20
QEMU_RUNS = 2
PLAN_SECONDS = 0.5


@dataclass(frozen=True)
class Build:
    """One Cortex-M4 build run on QEMU."""

    instructions: int
    flash_bytes: int
    ram_bytes: int
    arena_bytes: int
    bit_exact: bool


@dataclass(frozen=True)
class Row:
    """One model under one scheme."""

    model: str
    scheme: str
    stored_weight_bytes: int
    unpacked_weight_bytes: int
    float_weight_bytes: int
    decoded_weight_bytes: int  # weights the generated C decodes per inference
    quality: str
    m4: Build
    portable: Build


def measure(graph: Graph, board: Board, dsp: bool) -> Build:
    """Plan, generate, cross-build and run `graph` on QEMU; bit-exact against the reference."""
    plan = plan_memory(graph, PLAN_SECONDS, dsp=dsp)
    inputs = random_inputs(graph, QEMU_RUNS, seed=0)
    interpreter = Interpreter(graph, plan.order)
    expected = [interpreter.run([x[r] for x in inputs]).outputs for r in range(QEMU_RUNS)]
    with tempfile.TemporaryDirectory(prefix="mcuflow-schemes-") as scratch:
        project = generate_project(graph, plan, Path(scratch) / "project", target=TARGET,
                                   board=board, dsp=dsp)
        elf = build_cortexm(project.path, TARGET)
        run = run_qemu(elf, TARGET, inputs, project.outputs)
        sizes = elf_sizes(elf)
    report = run.report
    exact = all(np.array_equal(e, a[r]) for r, outputs in enumerate(expected)
                for e, a in zip(outputs, run.outputs, strict=True))
    return Build(round(float(np.mean(report.run_ticks)) * report.instructions_per_tick),
                 sizes.flash_bytes, sizes.static_ram_bytes + report.stack_bytes,
                 plan.arena_bytes, exact)


@dataclass(frozen=True)
class Task:
    """A float model, its calibration samples and how to judge an int8 graph of it."""

    name: str
    path: Path
    calibration: np.ndarray
    judge: Callable[[api.QuantizeResult], str]


def _outputs(result: api.QuantizeResult, samples: np.ndarray) -> np.ndarray:
    """Dequantised outputs of the int8 graph (reference interpreter) for model-layout samples."""
    interpreter = Interpreter(result.graph)
    quant = result.graph.tensor(result.graph.outputs[0]).quant
    return np.concatenate([dequantize(interpreter.run([result.quantize_input(s[None])])
                                      .outputs[0], quant) for s in samples])


def digits_task(directory: Path) -> Task | None:
    """The digits CNN, trained as the test-suite trains it (None without torch)."""
    try:
        from tests.models.test_digits import train_digits
    except ImportError:
        return None
    data = train_digits()
    path = directory / "digits.onnx"
    path.write_bytes(data.onnx)

    def accuracy(result: api.QuantizeResult) -> str:
        logits = _outputs(result, data.test_x)
        return f"accuracy {100 * np.mean(logits.argmax(axis=1) == data.test_y):.1f}%"

    return Task(f"digits CNN ({len(data.test_y)} test images)", path, data.train_x[:CALIBRATION],
                accuracy)


def mlperf_task(model: str) -> Task:
    """An MLPerf Tiny float model with N(0, 1) calibration and evaluation inputs."""
    path = SHARED_MODELS / model
    float_model = api.load_float_model(path)
    graph = float_model.graph
    shape = graph.tensor(graph.inputs[0]).shape
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((CALIBRATION, *shape[1:])).astype(np.float32)
    evaluation = rng.standard_normal((EVALUATION, *shape[1:])).astype(np.float32)
    reference = np.concatenate([run_float(graph, [s[None]]).outputs[0] for s in evaluation])
    classifier = is_classifier(graph)

    def agreement(result: api.QuantizeResult) -> str:
        ours = _outputs(result, evaluation).reshape(reference.shape)
        signal = float(np.sum(reference.astype(np.float64) ** 2))
        text = f"SQNR {sqnr_db(signal, float(np.sum((reference - ours) ** 2))):.1f} dB"
        if classifier:
            agree = np.mean(ours.argmax(axis=-1) == reference.argmax(axis=-1))
            text += f", top-1 agree {100 * agree:.0f}%"
        return text

    return Task(Path(model).stem, path, calibration, agreement)


def bench_task(task: Task, board: Board) -> list[Row]:
    rows = []
    for scheme, size in SCHEMES:
        result = api.quantize_model(task.path, task.calibration, scheme,
                                    codebook_size=size or 16)
        report = result.report
        decoded = sum(t.nbytes for t in result.graph.tensors.values() if t.codebook is not None)
        label = f"{scheme}-{size}" if size else scheme
        rows.append(Row(task.name, label, report.stored_weight_bytes,
                        report.unpacked_weight_bytes, report.float_weight_bytes, decoded,
                        task.judge(result), measure(result.graph, board, dsp=True),
                        measure(result.graph, board, dsp=False)))
        print(f"  measured {task.name} {label}", file=sys.stderr)
    return rows


HEADER = ("| model | scheme | weights stored B | flash B | RAM B (arena) | M4 instructions | "
          "portable kernels | quality | bit-exact |")


def markdown(rows: list[Row]) -> str:
    """The table, one line per model and scheme, ratios to the model's affine row."""
    lines = [HEADER, "| " + " | ".join(["---"] * 9) + " |"]
    affine = {row.model: row for row in rows if row.scheme == "affine"}
    for row in rows:
        base = affine[row.model]
        ratio = row.m4.instructions / base.m4.instructions
        exact = "yes" if row.m4.bit_exact and row.portable.bit_exact else "**NO**"
        lines.append(
            f"| {row.model} | {row.scheme} | {row.stored_weight_bytes:,} "
            f"({row.stored_weight_bytes / row.float_weight_bytes:.1%} of float) | "
            f"{row.m4.flash_bytes:,} | {row.m4.ram_bytes:,} ({row.m4.arena_bytes:,}) | "
            f"{row.m4.instructions:,} ({ratio:.2f}x) | {row.portable.instructions:,} | "
            f"{row.quality} | {exact} |")
    return "\n".join(lines)


def decode_costs(rows: list[Row]) -> list[str]:
    """The codebook's own cost: its portable build minus affine's, per decoded weight byte."""
    affine = {row.model: row for row in rows if row.scheme == "affine"}
    notes = []
    for row in rows:
        if row.decoded_weight_bytes:
            extra = row.portable.instructions - affine[row.model].portable.instructions
            notes.append(f"{row.model} {row.scheme}: decoding {row.decoded_weight_bytes:,} B of "
                         f"weights costs {extra:,} instructions "
                         f"({extra / row.decoded_weight_bytes:.1f} per byte)")
    return notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="rows as JSON")
    parser.add_argument("--model", action="append", help="only these (digits or a file name)")
    args = parser.parse_args()
    board = default_board(TARGET)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as temporary:
        wanted = args.model or ["digits", *FLOAT_MODELS]
        if "digits" in wanted:
            task = digits_task(Path(temporary))
            if task is None:
                print("digits: skipped (install the `nas` extra for torch)", file=sys.stderr)
            else:
                rows += bench_task(task, board)
        for model in (m for m in wanted if m != "digits"):
            rows += bench_task(mlperf_task(model), board)
    if args.json:
        print(json.dumps([dataclasses.asdict(row) for row in rows], indent=2))
        return
    print(f"Cortex-M4 (QEMU mps2-an386, board {board.id}); calibration {CALIBRATION} samples, "
          f"{QEMU_RUNS} inferences per build")
    print(markdown(rows))
    print("\n".join(decode_costs(rows)))


if __name__ == "__main__":
    main()
