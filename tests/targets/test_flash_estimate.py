"""Flash estimates hold against the linker: within 3 % of the ELF, and no FITS where it overflows.

The estimate (mcuflow.codegen.flash) needs no toolchain: it adds the emitted constants to the
code sizes of mcuflow/hw/kernel_code.toml. Here every figure of that file is re-measured for two
targets, and the estimate is compared with real links (build_cortexm) of shared MLPerf Tiny
models and of models the test-suite builds, on every kind of Cortex-M core.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from mcuflow import api
from mcuflow.analysis.metrics import analyze
from mcuflow.codegen.external import external_layout
from mcuflow.codegen.flash import estimate_flash
from mcuflow.codegen.project import generate_project
from mcuflow.codegen.render import emit_layers
from mcuflow.errors import McuflowError
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.hw.board import Board, TierKind, get_board
from mcuflow.hw.kernel_code import REMEASURE, FlashEstimate, measured_toolchain, target_code
from mcuflow.ir import zoo
from mcuflow.ir.graph import Graph
from mcuflow.memory.plan import ExternalWeights, Plan
from mcuflow.memory.planner import plan_memory
from mcuflow.planning import spill_kind
from mcuflow.toolchain.arm import build_cortexm, cortex_m_core, elf_sizes
from mcuflow.toolchain.code_size import (
    ALIGNMENT_ALLOWANCE,
    PROBE_BOARD,
    compiler_version,
    measure_target,
)
from tests.codegen.test_external_weights import steps_with_constants
from tests.support import SHARED_MODELS
from tests.unit.test_spill import GRAPH, _spilling

TOLERANCE = 0.03
PLAN_SECONDS = 0.3


def _codebook() -> Graph:
    """The KWS float model quantised with the codebook scheme (k-means + Huffman weights)."""
    model = SHARED_MODELS / "kws_ref_model_float32.tflite"
    shape = api.load_float_model(model).model_shape("input_1")
    calibration = np.random.default_rng(0).standard_normal((8, *shape[1:])).astype(np.float32)
    return api.quantize_model(model, calibration, "codebook").graph


BUILT = {"fc_only": zoo.fc_autoencoder, "tiny": zoo.tiny_classifier, "codebook": _codebook,
         "mobilenet_v3": zoo.mobilenet_v3_like, "squeezenet": zoo.squeezenet_like}
CASES = [
    ("kws_ref_model.tflite", "cortex-m0"), ("kws_ref_model.tflite", "cortex-m4"),
    ("kws_ref_model.tflite", "cortex-m7"), ("ad01_int8.tflite", "cortex-m4"),
    ("vww_96_int8.tflite", "cortex-m7"), ("pretrainedResnet_quant.tflite", "cortex-m3"),
    ("str_ww_ref_model.tflite", "cortex-m33"), ("codebook", "cortex-m0"),
    ("codebook", "cortex-m4"), ("fc_only", "cortex-m0"), ("fc_only", "cortex-m7"),
    ("tiny", "cortex-m0"), ("tiny", "cortex-m4"), ("tiny", "cortex-m33"),
    ("mobilenet_v3", "cortex-m4"), ("squeezenet", "cortex-m0plus"),
]


@functools.cache
def _graph(name: str) -> Graph:
    return read_tflite(SHARED_MODELS / name) if name.endswith(".tflite") else BUILT[name]()


def _planned(name: str, target: str) -> tuple[Graph, Plan, FlashEstimate]:
    """A model, its plan for `target` and the flash estimate of its semihosting firmware."""
    graph, dsp = _graph(name), cortex_m_core(target).dsp
    plan = plan_memory(graph, PLAN_SECONDS, dsp=dsp)
    layers, pool = emit_layers(graph, plan, dsp)
    return graph, plan, estimate_flash(graph, layers, pool, target)


def _elf_flash(graph: Graph, plan: Plan, target: str, board: Board, directory: Path) -> int:
    project = generate_project(graph, plan, directory, target=target, board=board)
    return elf_sizes(build_cortexm(project.path, target)).flash_bytes


@pytest.mark.parametrize(("name", "target"), CASES)
def test_flash_estimate_is_within_3_percent_of_the_linked_elf(name: str, target: str,
                                                             tmp_path: Path) -> None:
    graph, plan, estimate = _planned(name, target)
    elf = _elf_flash(graph, plan, target, get_board(PROBE_BOARD), tmp_path / "project")
    error = estimate.total / elf - 1
    assert abs(error) <= TOLERANCE, (
        f"{name} on {target}: estimate {estimate.total:,} B ({estimate}), ELF {elf:,} B "
        f"({error:+.2%}); re-measure: {REMEASURE}")


def _with_flash(board: Board, flash: int) -> Board:
    tiers = tuple(replace(t, size_bytes=flash) if t.kind is TierKind.ONCHIP_FLASH else t
                  for t in board.tiers)
    return replace(board, flash_bytes=flash, tiers=tiers)


def test_a_model_whose_link_overflows_flash_does_not_fit(tmp_path: Path) -> None:
    """Its constant tensors fit the board's flash, its firmware does not: analyze says so."""
    graph, plan, estimate = _planned("kws_ref_model.tflite", "cortex-m0")
    board = _with_flash(get_board("nucleo-f091rc"), 32 * 1024)
    report = analyze(graph, board, order=plan.order, peak_ram_bytes=plan.arena_bytes,
                     flash=estimate)
    assert report.constant_bytes < report.flash_capacity < report.flash_bytes
    assert not report.fits_flash and not report.fits and report.weights_not_fitting
    with pytest.raises(McuflowError, match="does not fit .* flash .* overflows by"):
        _elf_flash(graph, plan, "cortex-m0", board, tmp_path / "project")


def _differences(stored: dict, measured: dict, where: str = "") -> list[str]:
    """Every key path whose stored and measured values differ."""
    lines = []
    for key in sorted(set(stored) | set(measured)):
        old, new = stored.get(key), measured.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            lines += _differences(old, new, f"{where}{key}.")
        elif old != new:
            lines.append(f"{where}{key}: stored {old}, measured {new}")
    return lines


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m0"])
def test_kernel_code_sizes_are_current(target: str, tmp_path: Path) -> None:
    """A kernel, driver or flag change that was not re-measured fails here."""
    assert compiler_version() == measured_toolchain(), f"re-measure: {REMEASURE}"
    differences = _differences(asdict(target_code(target)),
                               asdict(measure_target(target, tmp_path)))
    assert not differences, f"re-measure ({REMEASURE}): " + "; ".join(differences[:20])


@pytest.mark.parametrize(("encrypted", "target"), [(False, "cortex-m4"), (True, "cortex-m0")])
def test_an_out_of_core_firmware_is_estimated_with_its_storage_code(
        encrypted: bool, target: str, tmp_path: Path) -> None:
    """The estimate of a firmware reading some weights from an external image holds.

    The weights leave flash; reading them adds the storage, image check and chunk code, and
    for an encrypted image the AES: the estimate counts them.
    """
    graph, dsp = zoo.mobilenet_v2_like(32, 0.35, 10), cortex_m_core(target).dsp
    unpacked = plan_memory(graph, PLAN_SECONDS, dsp=dsp)
    plan = replace(unpacked, external=ExternalWeights(
        "sd_card", frozenset(range(0, len(unpacked.steps), 3)), encrypted))
    layers, pool = emit_layers(graph, plan, dsp)
    layout = external_layout(plan, layers, pool)
    assert layout is not None and len(layout.chunks) > 3
    estimate = estimate_flash(graph, layers, pool, target, external=layout)
    project = generate_project(graph, plan, tmp_path / "project", target=target,
                               board=get_board(PROBE_BOARD),
                               external_key=bytes(16) if encrypted else None)
    elf = elf_sizes(build_cortexm(project.path, target)).flash_bytes
    assert abs(estimate.total / elf - 1) <= TOLERANCE, (estimate, elf)
    assert estimate.total >= elf - ALIGNMENT_ALLOWANCE, (estimate, elf)


@pytest.mark.parametrize(("encrypted", "target"), [(False, "cortex-m4"), (True, "cortex-m0")])
def test_a_firmware_spilling_beside_an_external_image_is_estimated_within_3_percent(
        encrypted: bool, target: str, tmp_path: Path) -> None:
    """Weights read from an SD card image and activations spilled to the same card.

    The spill's storage code (and, both encrypted, its AES, CMAC and key code) is the
    image's: counted twice, the Cortex-M0 estimate was 5.5 % over the ELF.
    """
    plan = replace(_spilling(GRAPH, 12, 2), spill_encrypted=encrypted)
    plan.external = ExternalWeights("sd_card", steps_with_constants(plan), encrypted)
    layers, pool = emit_layers(plan.graph, plan, cortex_m_core(target).dsp)
    layout = external_layout(plan, layers, pool)
    assert layout is not None and layout.chunks
    estimate = estimate_flash(plan.graph, layers, pool, target, external=layout,
                              spill=spill_kind(plan))
    project = generate_project(GRAPH, plan, tmp_path / "project", target=target,
                               board=get_board(PROBE_BOARD),
                               external_key=bytes(16) if encrypted else None)
    elf = elf_sizes(build_cortexm(project.path, target)).flash_bytes
    assert abs(estimate.total / elf - 1) <= TOLERANCE, (estimate, elf)
