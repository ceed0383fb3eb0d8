"""Cortex-M test helpers: the board of each target and QEMU measurements cached per process."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from mcuflow.codegen.project import generate_project
from mcuflow.frontends.tflite_reader import read_tflite
from mcuflow.hw.board import get_board
from mcuflow.ir.graph import Graph
from mcuflow.memory.plan import Plan
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.arm import build_cortexm, cortex_m_core
from mcuflow.toolchain.qemu import CortexMResult, run_qemu, verify_cortexm
from tests.codegen.cases import FAMILIES
from tests.support import SHARED_MODELS

# The targets every model and graph must be bit-exact on, and the boards that size their builds.
BOARDS = {"cortex-m4": "nucleo-f429zi", "cortex-m7": "nucleo-f767zi"}
TARGETS = list(BOARDS)
RUNS = 4
PLAN_SECONDS = 0.5
FAMILY_PLAN_SECONDS = 0.2
# SYSCLK of the MPS2 FPGA images in QEMU: 25 MHz on AN385/AN386/AN500, 20 MHz on AN505. With
# -icount shift=0 one instruction takes 1 ns, so one SysTick tick is 1e9 / SYSCLK instructions.
INSTRUCTIONS_PER_TICK = {"cortex-m0": 40.0, "cortex-m3": 40.0, "cortex-m4": 40.0,
                         "cortex-m7": 40.0, "cortex-m33": 50.0}


@functools.cache
def planned_model(name: str, target: str) -> tuple[Graph, Plan]:
    """A shared model and its memory plan for `target` (scratch for its DSP kernels)."""
    graph = read_tflite(SHARED_MODELS / name)
    return graph, plan_memory(graph, PLAN_SECONDS, dsp=cortex_m_core(target).dsp)


@functools.cache
def planned_family(name: str, target: str) -> tuple[Graph, Plan]:
    """A graph of tests/codegen/cases.py planned (in place allowed) for `target`."""
    graph = FAMILIES[name]()
    return graph, plan_memory(graph, FAMILY_PLAN_SECONDS, dsp=cortex_m_core(target).dsp)


@functools.cache
def measured(name: str, target: str) -> CortexMResult:
    """A shared model verified on QEMU (RUNS random inputs), reused by every test."""
    graph, plan = planned_model(name, target)
    return verify_cortexm(graph, plan, target, BOARDS[target], runs=RUNS, seed=3)


def qemu_outputs(graph: Graph, inputs: list[np.ndarray], directory: Path,
                 target: str = "cortex-m4") -> list[np.ndarray]:
    """The generated C of `graph` for `target`, run on QEMU over stacked `inputs`."""
    plan = plan_memory(graph, PLAN_SECONDS, dsp=cortex_m_core(target).dsp)
    project = generate_project(graph, plan, directory, target=target,
                               board=get_board(BOARDS[target]))
    return run_qemu(build_cortexm(project.path, target), target, inputs, project.outputs).outputs
