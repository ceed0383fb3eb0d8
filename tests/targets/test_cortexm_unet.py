"""The U-Net-style segmentation network runs bit-exact on QEMU Cortex-M, against LiteRT.

Both forms on Cortex-M4 (the phased DSP TRANSPOSE_CONV kernel): the int8 graph of the TFLite writer,
and the float ONNX model quantised by PTQ; the graph also on Cortex-M0 (the portable kernel).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mcuflow import api
from mcuflow.codegen.project import generate_project
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.hw.board import get_board
from mcuflow.ir.graph import Graph
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.arm import build_cortexm
from mcuflow.toolchain.host import random_inputs
from mcuflow.toolchain.qemu import run_qemu
from tests.codegen.test_host_ops import assert_same_bits, reference
from tests.support import litert_interpreter, litert_invoke
from tests.targets.support import BOARDS, PLAN_SECONDS
from tests.unet_models import images, unet_graph, unet_onnx

RUNS = 4
KERNELS = {"cortex-m4": "mcuflow_transpose_conv_phases_dsp_s8(",
           "cortex-m0": "mcuflow_transpose_conv_s8("}
BOARDS_USED = {**BOARDS, "cortex-m0": "nucleo-f091rc"}


def _bit_exact_on_qemu(graph: Graph, model: bytes, directory: Path,
                       target: str = "cortex-m4") -> None:
    plan = plan_memory(graph, PLAN_SECONDS, dsp=target == "cortex-m4")
    project = generate_project(graph, plan, directory / "project", target=target,
                               board=get_board(BOARDS_USED[target]))
    assert KERNELS[target] in (project.path / "mcuflow_model.c").read_text()
    elf = build_cortexm(project.path, target)
    inputs = random_inputs(graph, RUNS, seed=9)
    actual = run_qemu(elf, target, inputs, project.outputs).outputs
    assert_same_bits(reference(graph, plan, inputs), actual, "the reference interpreter")
    litert = litert_interpreter(model)
    oracle = [litert_invoke(litert, [x[r] for x in inputs]) for r in range(RUNS)]
    assert_same_bits(oracle, actual, "LiteRT")


@pytest.mark.parametrize("target", list(KERNELS))
def test_unet_is_bit_exact_on_qemu(target: str, tmp_path: Path) -> None:
    graph = unet_graph()
    _bit_exact_on_qemu(graph, write_tflite(graph), tmp_path, target)


def test_quantised_onnx_unet_is_bit_exact_on_qemu_cortex_m4(tmp_path: Path) -> None:
    path = tmp_path / "unet.onnx"
    path.write_bytes(unet_onnx())
    result = api.quantize_model(path, images(16, 1), "affine", True, "minmax")
    _bit_exact_on_qemu(result.graph, result.tflite(), tmp_path)
