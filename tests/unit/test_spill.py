"""Spilled activations: a cached stage writing tensors to external storage and reading them back.

It runs bit-exact against LiteRT, in the planned arena and in C, and the planner spills only
when nothing else fits.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mcuflow.advisor import advise_fit
from mcuflow.analysis.energy import energy_report, parse_battery, weights_in_sram
from mcuflow.codegen.external import IMAGE_FILE
from mcuflow.codegen.project import generate_project
from mcuflow.frontends.tflite_writer import write_tflite
from mcuflow.hw.board import TierKind, get_board
from mcuflow.hw.storage_io import MAX_SPILL_SLOTS, lifetime_years, spill_slots
from mcuflow.ir import zoo
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import OpKind
from mcuflow.memory.check import check_plan
from mcuflow.memory.execute import run_in_arena
from mcuflow.memory.patch_search import PatchRequest, SpillTarget
from mcuflow.memory.patches import PatchChoice, PatchError, PatchMode, find_stages, patch_rewrite
from mcuflow.memory.placement import plan_for_order
from mcuflow.memory.plan import Plan, PlanError
from mcuflow.memory.planner import plan_model
from mcuflow.memory.plot import plot_arena
from mcuflow.memory.schedule import build_problem
from mcuflow.memory.tiers import spill_tier
from mcuflow.planning import Analysis, Build, analyze_graph, planned_steps, spill_target
from mcuflow.toolchain.host import (
    WARNING_FLAGS,
    build_host,
    input_records,
    model_sources,
    random_inputs,
    run_tool,
    verify_host,
)
from tests.support import litert_invoke, run_cli_output

GRAPH = zoo.mobilenet_v2_like(48, 0.35, 10)
F091RC = get_board("nucleo-f091rc")
SPILL_BUDGET = 16_000
"""Below what patches alone reach on a streamed 96 x 96 MobileNetV2 (18,432 B)."""


def _spilling(graph: Graph, steps: int, share: int) -> Plan:
    """The deepest stage of `graph` in `steps` row steps, every `share`-th tensor spilled."""
    stage = find_stages(graph)[-1]
    spillable = [graph.operators[i].outputs[0] for i in stage.ops[:-1]
                 if graph.operators[i].kind is not OpKind.PAD]
    choice = PatchChoice(stage.end, steps, 1, PatchMode.CACHED, tuple(spillable[::share]))
    patched = patch_rewrite(graph, stage, choice)
    problem = build_problem(patched.graph, split=True, spilled=patched.spilled)
    plan = plan_for_order(problem, list(range(len(patched.graph.operators))))
    plan.patch = choice
    return plan


@pytest.mark.parametrize(("steps", "share"), [(5, 1), (48, 1), (12, 3)])
def test_a_spilling_stage_is_bit_exact_in_its_arena(steps: int, share: int) -> None:
    plan = _spilling(GRAPH, steps, share)
    check_plan(plan)
    unspilled = _spilling_none(steps)
    assert plan.spilled and plan.arena_bytes < unspilled.arena_bytes
    rng = np.random.default_rng(steps)
    x = rng.integers(-128, 128, GRAPH.tensors[GRAPH.inputs[0]].shape, dtype=np.int8)
    expected = litert_invoke(write_tflite(GRAPH), [x])
    got = run_in_arena(plan, [x]).outputs
    assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))


def _spilling_none(steps: int) -> Plan:
    stage = find_stages(GRAPH)[-1]
    choice = PatchChoice(stage.end, steps, 1, PatchMode.CACHED)
    patched = patch_rewrite(GRAPH, stage, choice)
    problem = build_problem(patched.graph, split=True)
    return plan_for_order(problem, list(range(len(patched.graph.operators))))


def test_only_slices_read_a_spilled_tensor_and_its_buffer_lives_one_step() -> None:
    plan = _spilling(GRAPH, 12, 1)
    uses = plan.graph.uses()
    for name in plan.spilled:
        assert all(plan.graph.operators[i].kind is OpKind.SLICE for i in uses.consumers[name])
        assert plan.buffers[name].first_step == plan.buffers[name].last_step
    bad = dataclasses.replace(plan, spilled=frozenset())
    with pytest.raises(PlanError, match="live at steps"):
        check_plan(bad)


def test_a_stage_end_or_a_recompute_stage_is_never_spilled() -> None:
    stage = find_stages(GRAPH)[-1]
    with pytest.raises(PatchError, match="only a cached stage spills"):
        patch_rewrite(GRAPH, stage, PatchChoice(stage.end, 4, 1, PatchMode.CACHED, (stage.end,)))
    inner = GRAPH.operators[stage.ops[0]].outputs[0]
    with pytest.raises(PatchError, match="only a cached stage spills"):
        patch_rewrite(GRAPH, stage, PatchChoice(stage.end, 2, 2, PatchMode.RECOMPUTE, (inner,)))


def test_a_spilled_tensor_read_by_a_narrower_window_is_read_back_in_whole_rows() -> None:
    """A stride-2 3x3 VALID-like read takes 47 of 48 columns: the rows come back whole."""
    graph = zoo.resnet_like(48, (8, 16, 32), 10)
    plan = _spilling(graph, 12, 1)
    check_plan(plan)
    narrower = [op for op in plan.graph.operators if op.kind is OpKind.SLICE
                and op.inputs[0] in plan.spilled
                and plan.graph.tensors[op.outputs[0]].shape[2:]
                != plan.graph.tensors[op.inputs[0]].shape[2:]]
    assert narrower == []
    result = verify_host(graph, plan, runs=1, seed=2)
    assert result.bit_exact and result.mismatches == 0 and result.litert_mismatches == 0


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_the_c_of_a_spilling_stage_is_bit_exact_with_litert(compiler: str) -> None:
    plan = _spilling(GRAPH, 12, 2)
    result = verify_host(GRAPH, plan, runs=3, seed=4, compiler=compiler)
    assert result.bit_exact and result.mismatches == 0 and result.litert_mismatches == 0


def test_the_planner_spills_only_when_nothing_else_fits() -> None:
    """A streamed 96 x 96 MobileNetV2 under a budget patches alone cannot meet."""
    graph = zoo.mobilenet_v2(96, 0.35, 10)
    target = SpillTarget(F091RC, spill_tier(F091RC))
    roomy = PatchRequest(sram_budget=20_000, streamed_input=True)
    plan, _ = plan_model(graph, roomy, roomy.sram_budget, "cortex-m0", spill=target)
    assert not plan.spilled
    tight = PatchRequest(sram_budget=SPILL_BUDGET, streamed_input=True)
    unspilled, _ = plan_model(graph, tight, SPILL_BUDGET, "cortex-m0")
    assert unspilled.arena_bytes > SPILL_BUDGET
    plan, search = plan_model(graph, tight, SPILL_BUDGET, "cortex-m0", spill=target)
    assert plan.spilled and plan.arena_bytes <= SPILL_BUDGET
    assert search.chosen.choice is not None and search.chosen.choice.spilled
    check_plan(plan)
    result = verify_host(graph, plan, runs=2, seed=1)
    assert result.bit_exact and result.litert_mismatches == 0



def test_external_ram_holds_a_spill_area_that_no_storage_call_reaches(tmp_path: Path) -> None:
    """The STM32F746G-DISCO spills to its SDRAM (before its SD card): a buffer, no file."""
    disco = get_board("stm32f746g-disco")
    sdram = spill_tier(disco)
    assert sdram is not None and sdram.kind is TierKind.SDRAM
    plan = _spilling(GRAPH, 12, 2)
    plan.spill_tier = sdram
    project = generate_project(GRAPH, plan, tmp_path / "project", target="host")
    files = {path.name for path in project.path.iterdir()}
    model = (project.path / "mcuflow_model.c").read_text()
    assert "mcuflow_storage.h" not in files and "mcuflow_storage_write" not in model
    assert "mcuflow_spill_area[MCUFLOW_SPILL_BYTES]" in model
    result = verify_host(GRAPH, plan, runs=2, seed=4)
    assert result.bit_exact and result.mismatches == 0 and result.litert_mismatches == 0
    picture = plot_arena(plan, tmp_path / "plan.svg").read_text()
    assert "rows written to sdram" in picture and "rows read back from sdram" in picture


def test_spilling_needs_a_writable_tier() -> None:
    assert spill_target(F091RC, PatchRequest()) is not None
    assert spill_target(F091RC, PatchRequest(out_of_core=False)) is None
    assert spill_tier(get_board("nucleo-h743zi")) is None


def test_a_card_wears_out_slower_than_raw_flash_sectors() -> None:
    """SD cards level wear over their capacity; raw NOR sectors take one erase per inference."""
    card = spill_tier(F091RC)
    years = lifetime_years(card, 10**6, 3600)
    assert years == pytest.approx(card.endurance_cycles * card.size_bytes / 10**6
                                  / 3600 / (24 * 365.25))
    nor = dataclasses.replace(card, needs_erase=True)
    assert lifetime_years(nor, 10**6, 3600) < years
    assert lifetime_years(card, 0, 3600) is None
    assert lifetime_years(nor, 10**6, 3600, 8) == pytest.approx(8 * lifetime_years(nor, 10**6,
                                                                                    3600))
    nor = dataclasses.replace(nor, erase_block_bytes=4096, size_bytes=1 << 20)
    assert spill_slots(nor, 4097, 4096) == ((1 << 20) - 4096) // 8192
    assert spill_slots(nor, 4096, 1 << 20) == 1 and spill_slots(card, 4096, 0) == 1
    assert spill_slots(dataclasses.replace(nor, size_bytes=1 << 30), 4096, 0) == MAX_SPILL_SLOTS


def test_the_spill_goes_to_ram_then_a_card_then_nor_flash() -> None:
    """The STM32F746G-DISCO has SDRAM, a card and a QSPI NOR flash; the nRF52840 DK only NOR."""
    disco = get_board("stm32f746g-disco")
    assert spill_tier(disco).kind is TierKind.SDRAM
    without_ram = dataclasses.replace(disco, tiers=tuple(
        tier for tier in disco.tiers if tier.kind is not TierKind.SDRAM))
    assert spill_tier(without_ram).kind is TierKind.SD_CARD
    nor = spill_tier(get_board("nrf52840"))
    assert nor.kind is TierKind.QSPI_FLASH and nor.needs_erase and nor.memory_mapped


def test_the_fit_advisor_offers_a_spilling_plan_as_an_exact_option() -> None:
    """With the NUCLEO-F429ZI's SD card, streaming the input and spilling meets 8,000 B."""
    build = Build(get_board("nucleo-f429zi"), "cortex-m4")
    request = PatchRequest(sram_budget=8000)
    asked = analyze_graph(zoo.squeezenet_like(48), build, request)
    option = advise_fit(asked, build, request).named("streamed")
    analysis = option.analysis
    assert option.fits and option.exact and analysis.plan.spilled
    assert analysis.report.spill_tier == "sd_card" and analysis.report.spill_ms > 0
    assert "spilled" in analysis.plan.patch.describe()
    result = verify_host(analysis.graph, analysis.plan, runs=2, seed=3)
    assert result.bit_exact and result.litert_mismatches == 0


def test_energy_counts_the_spill_waits_and_gives_the_storage_lifetime_at_its_rate() -> None:
    board = get_board("nucleo-f429zi")
    analysis = analyze_graph(zoo.squeezenet_like(48), Build(board, "cortex-m4"),
                             PatchRequest(sram_budget=8000, streamed_input=True))
    report = analysis.report
    assert report.spill_ms > 0 and report.modelled_ms > report.latency_ms_estimate
    sram = weights_in_sram(analysis.plan.graph, board, report, analysis.plan.order,
                           planned_steps(analysis.plan))
    hourly, minutely = (energy_report(board, report, sram, rate, parse_battery("CR2032"))
                        for rate in (1 / 3600, 1 / 60))
    assert hourly.run.latency_s == pytest.approx(report.modelled_ms * 1e-3)
    card = board.tier(TierKind.SD_CARD)
    years = card.endurance_cycles * card.size_bytes / report.spill_bytes / (24 * 365.25)
    assert hourly.storage_lifetime_years == pytest.approx(years)
    assert minutely.storage_lifetime_years == pytest.approx(years / 60)
    assert hourly.to_json()["storage_lifetime_years"] == hourly.storage_lifetime_years


def test_a_failed_spill_write_makes_invoke_return_the_storage_error(tmp_path: Path) -> None:
    """The spill area is a file beside the binary; when it cannot be written, status 5."""
    plan = _spilling(GRAPH, 12, 2)
    project = generate_project(GRAPH, plan, tmp_path / "project", target="host")
    binary = build_host(project.path)
    records = input_records(random_inputs(GRAPH, 1, 0))
    for name, blocked in (("fine", False), ("blocked", True)):
        directory = tmp_path / name
        directory.mkdir()
        (directory / "input.bin").write_bytes(records)
        if blocked:
            (directory / IMAGE_FILE).mkdir()
        result = subprocess.run([str(binary), "input.bin", "output.bin"], cwd=directory,
                                capture_output=True, text=True, timeout=60)
        if blocked:
            assert result.returncode != 0 and "status 5" in result.stderr + result.stdout
        else:
            assert result.returncode == 0, result.stderr
            assert (directory / IMAGE_FILE).stat().st_size == plan.spill_bytes


def test_the_lifetime_is_given_at_the_asked_rate(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "squeezenet.tflite"
    model.write_bytes(write_tflite(zoo.squeezenet_like(48)))
    common = ["analyze", str(model), "--board", "nucleo-f429zi", "--sram-budget", "8000",
              "--input", "streamed", "--json"]
    years = {}
    for rate in ("3600", "60"):
        code, out, err = run_cli_output(capsys, [*common, "--inferences-per-hour", rate])
        assert code == 0, err
        report = json.loads(out)
        assert report["spill_tier"] == "sd_card" and report["inferences_per_hour"] == float(rate)
        years[rate] = report["lifetime_years"]
    assert years["60"] == pytest.approx(years["3600"] * 60)
    code, out, err = run_cli_output(capsys, [*common[:-1], "--inferences-per-hour", "0"])
    assert code == 2 and out == ""
    assert err.startswith("mcuflow: error: --inferences-per-hour must be a positive number")


NOR_PROBE = r"""
#include <stdio.h>

#include "mcuflow_model.h"
#include "mcuflow_storage.h"

/* What a model.c whose erase was taken out calls instead: nothing is erased. */
int mcuflow_probe_no_erase(uint32_t offset, uint32_t size);
int mcuflow_probe_no_erase(uint32_t offset, uint32_t size)
{
    (void)offset;
    (void)size;
    return 0;
}

static int8_t input[MCUFLOW_INPUT_0_BYTES];
static int8_t output[MCUFLOW_OUTPUT_0_BYTES];

/* Two inferences of input.bin, their outputs to output.bin; prints the status of each, the
 * bytes erased and written. */
int main(void)
{
    FILE *in = fopen("input.bin", "rb");
    FILE *out = fopen("output.bin", "wb");
    int run;
    if (in == NULL || out == NULL || fread(input, 1, sizeof input, in) != sizeof input) {
        return 2;
    }
    for (run = 0; run < 2; run++) {
        printf("%d ", mcuflow_model_invoke(input, output));
        (void)fwrite(output, 1, sizeof output, out);
    }
    printf("%llu %llu\n", (unsigned long long)mcuflow_storage_bytes_erased(),
           (unsigned long long)mcuflow_storage_bytes_written());
    (void)fclose(in);
    return fclose(out) != 0;
}
"""
"""A host driver reading the storage's own counters (the shipped main.c does not print them)."""


@pytest.fixture(scope="module")
def nor_spill() -> Analysis:
    """The nRF52840 DK (QSPI NOR flash, no card) under 8,000 B: the plan spills to NOR."""
    return analyze_graph(zoo.squeezenet_like(48), Build(get_board("nrf52840"), "cortex-m4"),
                         PatchRequest(sram_budget=8000, streamed_input=True))


def _probe(project: Path, model_c: str, name: str) -> Path:
    """The NOR_PROBE driver built with the project's sources, `model_c` as the model's source."""
    (project / "probe.c").write_text(NOR_PROBE)
    sources = [source for source in model_sources(project)
               if source not in ("probe.c", "unerased.c", "mcuflow_model.c")]
    run_tool(["gcc", *WARNING_FLAGS, "-O1", "-o", name, "probe.c", model_c, *sources, "-lm"],
             project, f"probe build {name}")
    return project / name


def test_a_nor_flash_spill_erases_the_next_slot_each_inference(tmp_path: Path,
                                                              nor_spill: Analysis) -> None:
    """Bit-exact on the emulated NOR flash; the storage's counters match the report.

    Two inferences write the same bytes into two slots, each erased first; a model whose
    erase is taken out fails with the storage error on bytes the first run wrote.
    """
    report, plan = nor_spill.report, nor_spill.plan
    tier = get_board("nrf52840").tier(TierKind.QSPI_FLASH)
    assert report.spill_tier == "qspi_flash" and plan.spill_tier == tier
    area = report.erases_per_inference * tier.erase_block_bytes
    assert plan.spill_bytes <= area < plan.spill_bytes + tier.erase_block_bytes
    assert report.spill_slots == min(MAX_SPILL_SLOTS, tier.size_bytes // area) > 1
    assert report.lifetime_years == pytest.approx(
        tier.endurance_cycles * report.spill_slots / report.inferences_per_hour / (24 * 365.25))
    assert report.spill_ms * 1e-3 >= report.erases_per_inference * tier.erase_time_s
    project = generate_project(nor_spill.graph, plan, tmp_path / "project", target="host").path
    assert "#define MCUFLOW_STORAGE_NOR 1" in (project / "mcuflow_storage_file.c").read_text()
    model_c = (project / "mcuflow_model.c").read_text()
    storage = '#include "mcuflow_storage.h"'
    (project / "unerased.c").write_text(
        model_c.replace("mcuflow_storage_erase(", "mcuflow_probe_no_erase(").replace(
            storage, f"{storage}\nint mcuflow_probe_no_erase(uint32_t offset, uint32_t size);"))
    good = _probe(project, "mcuflow_model.c", "probe")
    unerased = _probe(project, "unerased.c", "probe-unerased")
    x = random_inputs(nor_spill.graph, 1, 5)
    (tmp_path / "input.bin").write_bytes(input_records(x))
    result = subprocess.run([str(good)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, check=True)
    statuses, erased, written = result.stdout.split()[:2], *map(int, result.stdout.split()[2:])
    assert statuses == ["0", "0"]
    assert erased == 2 * area and written == 2 * plan.spill_bytes
    expected = litert_invoke(write_tflite(nor_spill.graph), [x[0][0]])[0].tobytes()
    assert (tmp_path / "output.bin").read_bytes() == expected * 2
    data = (tmp_path / IMAGE_FILE).read_bytes()
    assert len(data) == 2 * area
    slot0, slot1 = data[:plan.spill_bytes], data[area:area + plan.spill_bytes]
    assert slot0 == slot1 and slot0 != b"\xff" * plan.spill_bytes
    assert data[plan.spill_bytes:area] == b"\xff" * (area - plan.spill_bytes)
    result = subprocess.run([str(unerased)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.split()[:2] == ["5", "5"]


@pytest.mark.parametrize(("board", "said"), [
    ("stm32f746g-disco", "to the sdram: a buffer the linker script places in its region"),
    ("nucleo-f091rc", "to the sd_card through mcuflow_storage.h"),
])
def test_compile_says_where_the_activations_spill(tmp_path: Path, board: str, said: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "mobilenet.tflite"
    model.write_bytes(write_tflite(zoo.mobilenet_v2(96, 0.35, 10)))
    code, out, err = run_cli_output(capsys, [
        "compile", str(model), "--board", board, "--sram-budget", str(SPILL_BUDGET),
        "--input", "streamed", "-o", str(tmp_path / "project")])
    assert code == 0, err
    assert said in " ".join(out.split())
    assert "B of activations spilled per inference" in " ".join(out.split())
