"""The flash estimate without a toolchain: the measured table, its sums and what analyze reports."""

from __future__ import annotations

from dataclasses import replace
from importlib import resources

import pytest

from mcuflow import api
from mcuflow.analysis.metrics import analyze
from mcuflow.codegen.context import LayerCode
from mcuflow.codegen.firmware import Io
from mcuflow.codegen.flash import estimate_flash, kernel_calls
from mcuflow.codegen.render import emit_layers
from mcuflow.codegen.targets import CORTEX_M
from mcuflow.errors import McuflowError
from mcuflow.hw.board import TierKind, get_board
from mcuflow.hw.kernel_code import DATA_FILE, FlashEstimate, dump_table, load_table, target_code
from mcuflow.hw.kernels import KERNELS
from mcuflow.ir import zoo
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.code_size import flash_sections
from tests.support import SHARED_MODELS

KWS = SHARED_MODELS / "kws_ref_model.tflite"


@pytest.mark.parametrize("target", list(CORTEX_M))
def test_every_kernel_the_emitters_may_call_is_measured(target: str) -> None:
    code = target_code(target)
    dsp = CORTEX_M[target].dsp
    missing = [k.function for k in KERNELS.values() if (dsp or not k.dsp)
               and k.function not in code.kernels]
    assert not missing, f"re-measure with bench/kernel_code.py --write: {missing}"
    assert {key for k in code.kernels.values() for key in k.support} == set(code.support)
    assert all(size > 0 for size in (*code.structs.values(), *code.runtime.values()))


def test_the_packaged_table_round_trips() -> None:
    text = resources.files("mcuflow.hw").joinpath(DATA_FILE).read_text("utf-8")
    toolchain, tables = load_table(text)
    assert "arm-none-eabi-gcc" in toolchain and set(tables) == set(CORTEX_M)
    assert load_table(dump_table(toolchain, tables, "comment")) == (toolchain, tables)


def test_kernel_calls_counts_calls_and_their_arguments() -> None:
    layers = [LayerCode(["mcuflow_a_s8(&w, MCUFLOW_S8(16), (int8_t *)MCUFLOW_S8(0), 4);"]),
              LayerCode(["if (mcuflow_b_s8(&w, -128, 127) != 0) {\n    return 2;\n}"]),
              LayerCode([])]
    assert kernel_calls(layers) == (2, 7)


def _estimate(graph_name: str, target: str) -> tuple[FlashEstimate, list[LayerCode], int]:
    graph = getattr(zoo, graph_name)()
    dsp = CORTEX_M[target].dsp
    layers, pool = emit_layers(graph, plan_memory(graph, 0.1, dsp=dsp), dsp)
    arrays = sum(-(-a.nbytes // 16) * 16 for a in pool.arrays)
    return estimate_flash(graph, layers, pool, target), layers, arrays


def test_estimate_sums_aligned_constants_structs_code_once_and_runtime() -> None:
    estimate, layers, arrays = _estimate("resnet_like", "cortex-m0")
    code = target_code("cortex-m0")
    functions = set().union(*(layer.functions for layer in layers))
    assert {"mcuflow_conv2d_s8", "mcuflow_fully_connected_s8"} <= functions
    kernels = [code.kernels[f] for f in functions]
    support = set().union(*(k.support for k in kernels))
    structs = sum(code.structs[d.split()[2]] for layer in layers for d in layer.definitions)
    assert estimate.constants == arrays + structs
    assert estimate.code == (sum(k.code for k in kernels) + sum(code.support[s] for s in support)
                             + code.run.bytes(*kernel_calls(layers)))
    assert estimate.runtime == code.runtime["semihosting"] + code.slack
    assert estimate.total == estimate.constants + estimate.code + estimate.runtime


def test_an_unmeasured_kernel_names_the_remeasure_command() -> None:
    graph = zoo.tiny_classifier()
    _, pool = emit_layers(graph, plan_memory(graph, 0.1))
    with pytest.raises(McuflowError, match="mcuflow_nope_s8") as error:
        estimate_flash(graph, [LayerCode(["mcuflow_nope_s8(1);"])], pool, "cortex-m4")
    assert "kernel_code.py --write" in (error.value.hint or "")


def test_analyze_model_reports_the_firmware_flash_on_cortex_m_only() -> None:
    uart = api.analyze_model(KWS, "nucleo-f429zi").report
    assert uart.flash_estimate is not None and uart.flash_estimate.target == "cortex-m4"
    assert uart.flash_bytes == uart.flash_estimate.total > 2 * uart.constant_bytes
    m4 = target_code("cortex-m4")
    assert uart.flash_estimate.runtime == m4.runtime["uart"] + m4.slack
    semihosting = api.analyze_model(KWS, "nucleo-f429zi", application=Io.SEMIHOSTING).report
    assert semihosting.flash_estimate.runtime == m4.runtime["semihosting"] + m4.slack
    assert uart.to_json()["flash_estimate"]["constants"] == uart.flash_estimate.constants
    for report in (api.analyze_model(KWS, "nucleo-f429zi", target="host").report,
                   api.analyze_model(KWS, "esp32-s3").report):
        assert report.flash_estimate is None and report.flash_bytes == report.constant_bytes


def test_the_flash_verdict_counts_code_before_the_constants() -> None:
    graph = zoo.tiny_classifier()
    board = get_board("nucleo-f091rc")
    constants = sum(t.nbytes for t in graph.tensors.values() if t.is_constant)
    flash = FlashEstimate("cortex-m0", constants + 16, 3000, 2000)
    tiers = tuple(replace(t, size_bytes=4000) if t.kind is TierKind.ONCHIP_FLASH else t
                  for t in board.tiers)
    report = analyze(graph, replace(board, flash_bytes=4000, tiers=tiers), flash=flash)
    assert report.flash_bytes == flash.total and report.constant_bytes == constants
    assert not report.fits_flash and report.flash_margin_bytes == 4000 - flash.total
    assert report.weights_not_fitting == (report.layers[0].name,)


MAP = """\
Linker script and memory map

.text           0x00000040      0x85c
 .text.mcuflow_conv2d_s8
                0x00000040      0x184 obj/mcuflow_conv.o
                0x00000040                mcuflow_conv2d_s8
 .text          0x000001c4       0x80 /usr/lib/gcc/arm-none-eabi/thumb/libgcc.a(_udivsi3.o)
 *fill*         0x00000244        0x4
 .text.unused   0x00000248        0x0 obj/main.o

.bss            0x20000000       0x80
 .bss.input_record
                0x20000000       0x20 obj/main.o
"""


def test_flash_sections_reads_what_a_link_keeps_in_flash() -> None:
    assert flash_sections(MAP) == {"mcuflow_conv.o:.text.mcuflow_conv2d_s8": 0x184,
                                   "libgcc.a(_udivsi3.o):.text": 0x80}
