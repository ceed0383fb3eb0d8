"""Per-layer Cortex-M benchmark: mcuflow's generated layer beside CMSIS-NN's kernel for it, on QEMU.

TFLM + CMSIS-NN runs a layer as CMSIS-NN's function plus the interpreter's work around it, so
CMSIS-NN's instructions alone are a lower bound of that peer, and ours / CMSIS-NN an upper bound
of ours / (TFLM + CMSIS-NN). Each layer is a one-op int8 graph; ours is the project `compile`
writes, built and run on QEMU (method in mcuflow.toolchain.qemu). The peer firmware is the same
driver (templates/cortex-m/main.c) with the model replaced by a C file calling the CMSIS-NN
function on the same constants and parameters (prepared by mcuflow's reference `prepare_*`),
linked against CMSIS-NN built with the same compiler and flags. Both run the same random inputs;
the peer's outputs are compared with ours (`max_diff`, in LSB), which checks the parameters given
to CMSIS-NN (LiteRT's FULLY_CONNECTED requantises in double precision, CMSIS-NN with a Q31
multiplier: up to 1 LSB apart).

CMSIS-NN is not shipped with mcuflow: pass --cmsis-nn DIR (a checkout of ARM-software/CMSIS-NN)
or set CMSIS_NN_DIR.

Run: .venv/bin/python bench/cmsis_nn.py --cmsis-nn DIR [--target cortex-m4] [--json] [CASE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mcuflow.codegen.project import generate_project
from mcuflow.codegen.targets import CORTEX_M_DRIVER, CORTEX_M_LDFLAGS
from mcuflow.errors import McuflowError
from mcuflow.hw.board import Board
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.enums import Activation, Padding
from mcuflow.ir.graph import Graph, Operator
from mcuflow.ir.ops import OpKind
from mcuflow.ref.conv2d import prepare_conv
from mcuflow.ref.fully_connected import prepare_fully_connected
from mcuflow.toolchain.arm import build_cortexm, compiler_flags, find_cross_compiler
from mcuflow.toolchain.host import random_inputs
from mcuflow.toolchain.qemu import QemuRun, default_board, plan_for, run_qemu

RUNS = 3
PEER_FILE = "cmsis_nn_layer.c"
SCRATCH_BYTES = 32 * 1024
"""Static scratch the peer lends CMSIS-NN (each case's get_buffer_size must fit)."""
FLOAT_SUFFIXES = ("_f16", "_f32")
"""CMSIS-NN's floating-point kernels, not built (int8/int16 layers only)."""


@dataclass(frozen=True)
class Case:
    """One layer: its graph and the C body calling CMSIS-NN on it."""

    name: str
    build: Callable[[], Graph]
    peer: Callable[[Graph, Operator], str]


@dataclass(frozen=True)
class Row:
    case: str
    kernel: str
    ours: int
    cmsis_nn: int
    ratio: float
    max_diff: int


# --------------------------------------------------------------------------- C text


def _array(ctype: str, name: str, values: np.ndarray | list[int] | tuple[int, ...]) -> str:
    flat = np.asarray(values).reshape(-1)
    body = ", ".join(str(int(v)) for v in flat) or "0"
    return f"static const {ctype} {name}[{max(flat.size, 1)}] = {{{body}}};\n"


def _dims(name: str, shape: tuple[int, ...]) -> str:
    n, h, w, c = (1,) * (4 - len(shape)) + tuple(shape)
    return f"    const cmsis_nn_dims {name} = {{.n = {n}, .h = {h}, .w = {w}, .c = {c}}};\n"


def _io(graph: Graph, op: Operator) -> str:
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    return (f"static int8_t layer_input[{x.size}] __attribute__((aligned(8)));\n"
            f"static int8_t layer_output[{y.size}] __attribute__((aligned(8)));\n"
            f"static int8_t scratch[{SCRATCH_BYTES}] __attribute__((aligned(8)));\n"
            "void *mcuflow_model_input(int index) { return index == 0 ? layer_input : NULL; }\n"
            "const void *mcuflow_model_output(int index)\n"
            "{ return index == 0 ? layer_output : NULL; }\n")


def _peer_source(graph: Graph, op: Operator, constants: str, call: str) -> str:
    return ("#include <stddef.h>\n#include \"arm_nnfunctions.h\"\n#include \"mcuflow_model.h\"\n"
            f"{_io(graph, op)}{constants}"
            "int mcuflow_model_invoke_in_place(void)\n{\n"
            f"{call}"
            "    return status == ARM_CMSIS_NN_SUCCESS ? MCUFLOW_OK : MCUFLOW_ERROR_KERNEL;\n}\n")


def _bias(graph: Graph, op: Operator, channels: int) -> np.ndarray:
    if len(op.inputs) > 2 and graph.tensors[op.inputs[2]].data is not None:
        return graph.tensors[op.inputs[2]].data
    return np.zeros(channels, np.int32)


def _conv_peer(graph: Graph, op: Operator) -> str:
    x, w, y = (graph.tensors[n] for n in (op.inputs[0], op.inputs[1], op.outputs[0]))
    params, a = prepare_conv(x, w, y, op.attrs), op.attrs
    depthwise = op.kind is OpKind.DEPTHWISE_CONV_2D
    constants = (_array("int8_t", "filter", w.data) + _array("int32_t", "bias",
                                                             _bias(graph, op, y.shape[3]))
                 + _array("int32_t", "multipliers", params.multipliers)
                 + _array("int32_t", "shifts", params.shifts))
    kind, function = ("cmsis_nn_dw_conv_params", "arm_depthwise_conv_wrapper_s8") if depthwise \
        else ("cmsis_nn_conv_params", "arm_convolve_wrapper_s8")
    multiplier = f"        .ch_mult = {a.depth_multiplier},\n" if depthwise else ""
    call = (f"    const {kind} conv = {{\n"
            f"        .input_offset = {params.input_offset},\n"
            f"        .output_offset = {params.output_offset},\n"
            f"{multiplier}"
            f"        .stride = {{.w = {a.stride_w}, .h = {a.stride_h}}},\n"
            f"        .padding = {{.w = {params.pad_w}, .h = {params.pad_h}}},\n"
            f"        .dilation = {{.w = {a.dilation_w}, .h = {a.dilation_h}}},\n"
            f"        .activation = {{.min = {params.act_min}, .max = {params.act_max}}}}};\n"
            "    const cmsis_nn_per_channel_quant_params quant = {\n"
            "        .multiplier = (int32_t *)multipliers, .shift = (int32_t *)shifts};\n"
            + _dims("input_dims", x.shape) + _dims("filter_dims", w.shape)
            + _dims("bias_dims", (y.shape[3],)) + _dims("output_dims", y.shape)
            + f"    const cmsis_nn_context context = {{.buf = scratch, .size = {SCRATCH_BYTES}}};\n"
            f"    const arm_cmsis_nn_status status = {function}(&context, &conv, &quant,\n"
            "        &input_dims, layer_input, &filter_dims, filter, &bias_dims, bias,\n"
            "        &output_dims, layer_output);\n")
    return _peer_source(graph, op, constants, call)


def _fully_connected_peer(graph: Graph, op: Operator) -> str:
    x, w, y = (graph.tensors[n] for n in (op.inputs[0], op.inputs[1], op.outputs[0]))
    params = prepare_fully_connected(x, w, y, op.attrs)
    scale = params.scales[0]
    from mcuflow.quant.fixedpoint import quantize_multiplier

    q = quantize_multiplier(scale)
    units, depth = w.shape
    constants = (_array("int8_t", "filter", w.data)
                 + _array("int32_t", "bias", _bias(graph, op, units)))
    call = ("    const cmsis_nn_fc_params fc = {\n"
            f"        .input_offset = {params.input_offset}, .filter_offset = "
            f"{params.weights_offset},\n"
            f"        .output_offset = {params.output_offset},\n"
            f"        .activation = {{.min = {params.act_min}, .max = {params.act_max}}}}};\n"
            f"    const cmsis_nn_per_tensor_quant_params quant = {{.multiplier = {q.multiplier}, "
            f".shift = {q.shift}}};\n"
            + _dims("input_dims", (x.size // depth, 1, 1, depth))
            + _dims("filter_dims", (depth, 1, 1, units))
            + _dims("bias_dims", (units,)) + _dims("output_dims", (x.size // depth, units))
            + f"    const cmsis_nn_context context = {{.buf = scratch, .size = {SCRATCH_BYTES}}};\n"
            "    const arm_cmsis_nn_status status = arm_fully_connected_s8(&context, &fc, "
            "&quant,\n        &input_dims, layer_input, &filter_dims, filter, &bias_dims, bias,\n"
            "        &output_dims, layer_output);\n")
    return _peer_source(graph, op, constants, call)


# --------------------------------------------------------------------------- cases


def _one_layer(name: str, shape: tuple[int, ...], add: Callable[[GraphBuilder, str], str]
               ) -> Callable[[], Graph]:
    def build() -> Graph:
        b = GraphBuilder(name, seed=5)
        b.output(add(b, b.input(shape, 0.05, 3)))
        return b.build()

    return build


CASES = (
    Case("conv3x3_s1_16x16x16", _one_layer("conv3x3", (1, 16, 16, 16), lambda b, x: b.conv2d(
        x, 16, (3, 3), activation=Activation.RELU)), _conv_peer),
    Case("conv1x1_20x20x32_64", _one_layer("conv1x1", (1, 20, 20, 32), lambda b, x: b.conv2d(
        x, 64, (1, 1))), _conv_peer),
    Case("conv3x3_s2_valid_24x24x8", _one_layer("conv_s2", (1, 24, 24, 8), lambda b, x: b.conv2d(
        x, 16, (3, 3), stride=2, padding=Padding.VALID)), _conv_peer),
    Case("depthwise3x3_24x24x32", _one_layer("dw3x3", (1, 24, 24, 32), lambda b, x:
                                             b.depthwise_conv2d(x, (3, 3))), _conv_peer),
    Case("fully_connected_640_128", _one_layer("fc", (1, 640), lambda b, x: b.fully_connected(
        x, 128, per_channel=False)), _fully_connected_peer),
)


# --------------------------------------------------------------------------- building


def _cmsis_library(cmsis: Path, target: str, directory: Path) -> Path:
    """CMSIS-NN's sources compiled with our flags into one static library."""
    sources = [s for s in sorted((cmsis / "Source").rglob("*.c"))
               if not s.stem.endswith(FLOAT_SUFFIXES)]
    objects = directory / f"cmsis-nn-{target}"
    objects.mkdir(parents=True, exist_ok=True)
    ours = [f for f in compiler_flags(target) if f not in ("-std=c99", "-pedantic", "-Werror")]
    cc, flags = find_cross_compiler(), [*ours, "-std=c11", "-I", str(cmsis / "Include")]
    built = []
    for source in sources:
        obj = objects / f"{source.parent.name}_{source.stem}.o"
        subprocess.run([cc, *flags, "-c", str(source), "-o", str(obj)], check=True,
                       capture_output=True)
        built.append(str(obj))
    library = objects / "libcmsis-nn.a"
    subprocess.run([cc.replace("gcc", "ar"), "rcs", str(library), *built], check=True)
    return library


def _peer_elf(project: Path, peer_c: str, cmsis: Path, library: Path, target: str) -> Path:
    """Our project's driver with the model replaced by `peer_c`, linked with CMSIS-NN."""
    peer = project.parent / f"{project.name}-cmsis-nn"
    shutil.copytree(project, peer)
    for source in peer.glob("*.c"):
        if source.name not in CORTEX_M_DRIVER:
            source.unlink()
    (peer / PEER_FILE).write_text(peer_c)
    sources = [n for n in CORTEX_M_DRIVER if (peer / n).exists()] + [PEER_FILE]
    elf = peer / "peer.elf"
    result = subprocess.run([find_cross_compiler(), *compiler_flags(target), "-I",
                             str(cmsis / "Include"), *CORTEX_M_LDFLAGS, "-o", str(elf),
                             *sources, str(library), "-lm"], cwd=peer, capture_output=True,
                            text=True)
    if result.returncode:
        raise McuflowError(f"peer build failed: {result.stderr[-2000:]}")
    return elf


def _instructions(run: QemuRun) -> int:
    per_tick = run.report.instructions_per_tick
    return int(round(float(np.median(run.report.run_ticks)) * per_tick))


def measure(case: Case, cmsis: Path, library: Path, target: str, board: Board,
            directory: Path) -> Row:
    """Ours and CMSIS-NN's instructions for one layer, and how far their outputs are apart."""
    graph = case.build()
    op = graph.operators[0]
    project = directory / case.name
    generated = generate_project(graph, plan_for(graph, target), project, target=target,
                                 board=board)
    inputs = random_inputs(graph, RUNS, seed=0)
    ours = run_qemu(build_cortexm(project, target), target, inputs, generated.outputs)
    theirs = run_qemu(_peer_elf(project, case.peer(graph, op), cmsis, library, target), target,
                      inputs, generated.outputs)
    diff = max(int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max())
               for a, b in zip(ours.outputs, theirs.outputs, strict=True))
    mine, peer = _instructions(ours), _instructions(theirs)
    return Row(case.name, op.kind.value, mine, peer, mine / peer, diff)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--cmsis-nn", type=Path, default=os.environ.get("CMSIS_NN_DIR"),
                        help="a checkout of ARM-software/CMSIS-NN (or CMSIS_NN_DIR)")
    parser.add_argument("--target", default="cortex-m4")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.cmsis_nn is None or not (Path(args.cmsis_nn) / "Include").is_dir():
        sys.exit("bench/cmsis_nn.py: pass --cmsis-nn DIR, a checkout of ARM-software/CMSIS-NN")
    cases = [c for c in CASES if not args.cases or c.name in args.cases]
    board = default_board(args.target)
    with tempfile.TemporaryDirectory(prefix="mcuflow-cmsis-nn-") as scratch:
        directory = Path(scratch)
        library = _cmsis_library(Path(args.cmsis_nn), args.target, directory)
        rows = [measure(c, Path(args.cmsis_nn), library, args.target, board, directory)
                for c in cases]
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return
    print(f"Per layer on QEMU {args.target} ({board.id}): mcuflow vs CMSIS-NN's kernel alone "
          "(a lower bound of TFLM + CMSIS-NN)")
    print(f"{'case':32} {'op':18} {'mcuflow':>10} {'CMSIS-NN':>10} {'ratio':>6} {'max diff':>8}")
    for r in rows:
        print(f"{r.case:32} {r.kernel:18} {r.ours:>10,} {r.cmsis_nn:>10,} {r.ratio:>6.2f} "
              f"{r.max_diff:>8}")


if __name__ == "__main__":
    main()
