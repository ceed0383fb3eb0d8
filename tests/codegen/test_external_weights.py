"""Out-of-core weights: the external image's layout, bit-exact host C, flash, injected faults."""

from __future__ import annotations

import dataclasses
import functools
import re
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from mcuflow.codegen.context import ConstantPool, LayerCode, c_struct
from mcuflow.codegen.external import (
    ALIGNMENT,
    HEADER,
    IMAGE_FILE,
    MAGIC,
    c_bytes,
    external_layout,
)
from mcuflow.codegen.flash import estimate_flash
from mcuflow.codegen.names import Naming
from mcuflow.codegen.project import generate_project
from mcuflow.codegen.render import TensorSpec, emit_layers
from mcuflow.errors import ToolchainError
from mcuflow.ir import zoo
from mcuflow.ir.graph import Graph
from mcuflow.memory.plan import ExternalWeights, Plan, Step
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.host import build_host, random_inputs, run_host, verify_host

PLAN_SECONDS = 0.2


def steps_with_constants(plan: Plan) -> frozenset[int]:
    """The steps whose op reads a constant tensor."""
    graph = plan.graph
    return frozenset(i for i, step in enumerate(plan.steps)
                     if any(graph.tensors[n].is_constant
                            for n in graph.operators[step.op_index].inputs))


@functools.cache
def planned(dsp: bool = False) -> tuple[Graph, Plan]:
    """mobilenet_v2_like with every step that has constants reading them from an SD card."""
    graph = zoo.mobilenet_v2_like(32, 0.35, 10)
    plan = plan_memory(graph, PLAN_SECONDS, dsp=dsp)
    plan.external = ExternalWeights("sd_card", steps_with_constants(plan))
    return graph, plan


def test_layout_chunks_follow_the_listed_steps() -> None:
    graph, plan = planned()
    layers, pool = emit_layers(graph, plan)
    layout = external_layout(plan, layers, pool)
    assert layout is not None and layout == external_layout(plan, *emit_layers(graph, plan))
    assert [c.step for c in layout.chunks] == sorted(c.step for c in layout.chunks)
    assert {c.step for c in layout.chunks} <= plan.external.steps
    assert [c.half for c in layout.chunks] == [i % 2 for i in range(len(layout.chunks))]
    offset = 0
    for chunk in layout.chunks:
        assert chunk.offset == offset and chunk.size % ALIGNMENT == 0
        assert all(a.offset % ALIGNMENT == 0 and a.offset + a.nbytes <= chunk.size
                   for a in chunk.arrays)
        offset += chunk.size
    assert layout.external_bytes == offset
    largest = max(c.size for c in layout.chunks)
    assert layout.staging_bytes == 2 * largest
    assert layout.symbols < {a.symbol for a in pool.arrays}


def test_image_holds_the_header_and_each_array_at_its_place() -> None:
    graph, plan = planned()
    layers, pool = emit_layers(graph, plan)
    layout = external_layout(plan, layers, pool)
    assert layout is not None
    image = layout.image(pool)
    magic, version, size, payload, layout_id, chunks = HEADER.unpack_from(image)
    assert (magic, version, size) == (MAGIC, 1, HEADER.size)
    assert (payload, layout_id, chunks) == (layout.external_bytes, layout.layout_id,
                                            len(layout.chunks))
    assert len(image) == HEADER.size + layout.external_bytes
    arrays = {a.symbol: a for a in pool.arrays}
    for chunk in layout.chunks:
        for a in chunk.arrays:
            start = HEADER.size + chunk.offset + a.offset
            assert image[start:start + a.nbytes] == c_bytes(arrays[a.symbol])


def test_no_layout_without_external_steps() -> None:
    graph, plan = planned()
    assert external_layout(dataclasses.replace(plan, external=None),
                           *emit_layers(graph, plan)) is None
    quiet = dataclasses.replace(plan, external=ExternalWeights("sd_card", frozenset()))
    assert external_layout(quiet, *emit_layers(graph, quiet)) is None


def test_a_struct_shared_with_another_step_keeps_its_arrays_in_flash() -> None:
    """Step 0 defines a struct naming `a`; step 1 reuses it: only step 0's own `b` goes out."""
    pool = ConstantPool(naming=Naming())
    a = pool.add("mcuflow_a", "int32_t", np.arange(3), "a")
    b = pool.add("mcuflow_b", "int8_t", np.arange(5), "b")
    struct_text = c_struct("mcuflow_requant_t", "mcuflow_l0_requant", {"bias": a, "shift": 0})
    layers = [LayerCode([f"f(&mcuflow_l0_requant, {b});"], [struct_text]),
              LayerCode(["f(&mcuflow_l0_requant, NULL);"])]
    graph, _ = planned()
    plan = Plan(graph, [Step(0), Step(1)],
                external=ExternalWeights("sd_card", frozenset({0})))
    layout = external_layout(plan, layers, pool)
    assert layout is not None and layout.symbols == {b}


def test_external_c_is_bit_exact_with_litert() -> None:
    graph, plan = planned()
    result = verify_host(graph, plan, runs=3, seed=5)
    assert result.bit_exact and result.mismatches == 0 and result.litert_mismatches == 0


def test_flash_estimate_drops_by_the_external_arrays() -> None:
    graph, plan = planned(dsp=True)
    layers, pool = emit_layers(graph, plan, dsp=True)
    layout = external_layout(plan, layers, pool)
    assert layout is not None
    flash = estimate_flash(graph, layers, pool, "cortex-m4")
    out = estimate_flash(graph, layers, pool, "cortex-m4", external=layout)
    aligned = sum(-(-a.nbytes // ALIGNMENT) * ALIGNMENT for c in layout.chunks for a in c.arrays)
    assert flash.constants - out.constants == aligned >= layout.external_bytes * 0.9


class Built(NamedTuple):
    """A host build of the external-weights project."""

    binary: Path
    project: Path
    graph: Graph
    outputs: tuple[TensorSpec, ...]


@pytest.fixture(scope="module")
def host_binary(tmp_path_factory: pytest.TempPathFactory) -> Built:
    graph, plan = planned()
    project = generate_project(graph, plan, tmp_path_factory.mktemp("external") / "project")
    assert project.external is not None and (project.path / IMAGE_FILE).is_file()
    text = (project.path / "mcuflow_weights.c").read_text()
    assert not any(f" {symbol}[" in text for symbol in project.external.symbols)
    return Built(build_host(project.path, opt_level="-O1"), project.path, graph, project.outputs)


def _run(built: Built, image: Path | None) -> str:
    """The error of a failed run with `image` ('' when the outputs came back)."""
    try:
        run_host(built.binary, random_inputs(built.graph, 1, 0), built.outputs, image)
    except ToolchainError as error:
        return str(error)
    return ""


def _damaged(project: Path, tmp_path: Path, edit: int, data: bytes) -> Path:
    image = bytearray((project / IMAGE_FILE).read_bytes())
    image[edit:edit + len(data)] = data
    path = tmp_path / f"damaged_{edit}.bin"
    path.write_bytes(bytes(image))
    return path


def test_the_image_is_found_and_faults_return_distinct_codes(host_binary: Built,
                                                              tmp_path: Path) -> None:
    project = host_binary.project
    image = (project / IMAGE_FILE).read_bytes()
    assert _run(host_binary, project / IMAGE_FILE) == ""
    status = re.compile(r"inference failed \(status (\d+)\)")
    faults = {
        "missing": (None, 5),
        "magic": (_damaged(project, tmp_path, 0, b"MCFY"), 6),
        "layout id": (_damaged(project, tmp_path, 16, struct.pack("<I", 1)), 6),
    }
    for what, (path, code) in faults.items():
        match = status.search(_run(host_binary, path))
        assert match and int(match.group(1)) == code, what
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(image[:len(image) - 100])
    match = status.search(_run(host_binary, truncated))
    assert match and int(match.group(1)) == 5
