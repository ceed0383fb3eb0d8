"""nas.fitcheck: verdicts and figures equal mcuflow's planner (analyze_graph) on two boards."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mcuflow import api
from mcuflow.codegen.project import generate_project
from mcuflow.codegen.targets import STACK_RESERVE_BYTES
from mcuflow.errors import McuflowError
from mcuflow.hw.board import get_board
from mcuflow.memory.patch_search import PatchRequest, PatchSearch
from mcuflow.nas import fitcheck
from mcuflow.nas.fitcheck import (
    FitCheck,
    Limits,
    arena_bound,
    firmware_reserve,
    flash_bound,
    limits_for,
)
from mcuflow.nas.space import (
    Arch,
    SearchSpace,
    arch_graph,
    default_space,
    macs,
    mutate,
    part_keys,
    sample,
    smallest,
)
from mcuflow.planning import Analysis, Build, analyze_graph, patch_search
from mcuflow.toolchain.arm import build_cortexm, elf_sizes
from tests.support import SHARED_MODELS

TINY = Path(__file__).parents[2] / "bench/boards/tiny16k.toml"
BOARDS = {"nucleo-f091rc": None, "tiny16k": TINY, "tight": TINY}
SRAM_BUDGETS = {"nucleo-f091rc": 8192, "tiny16k": None, "tight": 4096}
"""On NUCLEO-F091RC (32 KB) every sample fits: a budget puts the patch search to work."""
FLASH_BUDGETS = {"nucleo-f091rc": None, "tiny16k": None, "tight": 48000}
"""tight: tiny16k under budgets that the bounds' rejections decide for many samples."""


def _planner(arch, space: SearchSpace, build: Build, limits: Limits) -> Analysis:
    """The oracle: mcuflow's analysis with automatic patches aiming at the SRAM limit."""
    graph = arch_graph(arch, space, 1, 10)
    return analyze_graph(graph, build, PatchRequest(sram_budget=limits.sram_bytes))


def _samples(space: SearchSpace, count: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [sample(space, rng, float(rng.choice(space.widths)), int(rng.choice(space.resolutions)))
            for _ in range(count)]


@pytest.mark.parametrize(("board", "dims", "native", "width", "resolution"), [
    ("nucleo-f091rc", 1, 40, 1.0, 40), ("tiny16k", 1, 40, 0.75, 32),
    ("nucleo-f091rc", 2, 8, 0.5, 8), ("tiny16k", 2, 8, 0.5, 8),
    ("nucleo-f429zi", 2, 8, 0.5, 8)])
def test_figures_composed_from_other_candidates_equal_the_full_plans(
        board: str, dims: int, native: int, width: float, resolution: int) -> None:
    """A candidate whose parts were all met in earlier candidates gets its own plan's figures.

    As in an evolution: mutants of a few parents. The oracle is mcuflow's full analysis of the
    candidate's own graph, CP-SAT placement included: its arena, flash and latency equal the
    composed ones to the byte and the bit, and so do the verdicts. The NUCLEO-F429ZI's
    Cortex-M4 runs the DSP kernels, whose emitted constants differ.
    """
    build = Build(get_board(board, BOARDS.get(board)))
    space = default_space(dims, native)
    limits = limits_for(build, None, None, None)
    check = FitCheck(build, limits, space, 1, 10)
    rng = np.random.default_rng(5)
    parents = [sample(space, rng, width, resolution) for _ in range(4)]
    composed = 0
    for arch in [mutate(parents[k % 4], space, rng, 0.3) for k in range(48)]:
        known = all(key in check.tables for key in part_keys(arch, space))
        fit = check(arch)
        if not known or fit.peak_ram_bytes > limits.sram_bytes:
            continue
        analysis = _planner(arch, space, build, limits)
        report = analysis.report
        assert analysis.plan.patch is None, arch.key()
        assert (fit.peak_ram_bytes, fit.flash_bytes, fit.latency_ms) == (
            analysis.plan.arena_bytes, report.flash_bytes, report.latency_ms_estimate), arch.key()
        assert fit.fits == (analysis.fits and report.flash_bytes <= limits.flash_bytes)
        composed += 1
    assert composed >= 12


def test_an_input_over_the_sram_limit_is_rejected_by_the_arena_bound() -> None:
    """Photos read at 90 x 120 x 3 for a 32 KB board: the input alone is over the limit.

    The bound says so without the patch search; the planner's arena holds the input too.
    """
    build = Build(get_board("nucleo-f091rc"))
    limits = limits_for(build, 30_000, None, None)
    space = default_space(2, 90, 4 / 3)
    arch = sample(space, np.random.default_rng(5), 0.25, 90)
    graph = arch_graph(arch, space, 3, 10)
    assert arena_bound(graph, build) >= 90 * 120 * 3 > limits.sram_bytes
    check = FitCheck(build, limits, space, 3, 10)
    assert not check(arch).fits and check.decided["arena bound"] == 1
    analysis = analyze_graph(graph, build, PatchRequest(sram_budget=limits.sram_bytes))
    assert analysis.plan.arena_bytes >= 90 * 120 * 3


@pytest.mark.parametrize("case", sorted(BOARDS))
def test_verdict_and_figures_equal_the_planners(case: str) -> None:
    build = Build(get_board("tiny16k" if case == "tight" else case, BOARDS[case]))
    verdicts, decided, settled = [], Counter(), 0
    limits = limits_for(build, SRAM_BUDGETS[case], FLASH_BUDGETS[case], None)
    for space, count in ((default_space(1, 40), 24), (default_space(2, 8), 8)):
        check = FitCheck(build, limits, space, 1, 10)
        for arch in _samples(space, count, 11):
            fit, analysis = check(arch), _planner(arch, space, build, limits)
            report = analysis.report
            expected = (analysis.fits and analysis.plan.arena_bytes <= limits.sram_bytes
                        and report.flash_bytes <= limits.flash_bytes)
            assert fit.fits == expected, arch.key()
            graph = arch_graph(arch, space, 1, 10)
            arena, flash = arena_bound(graph, build), flash_bound(graph, build)
            assert arena <= analysis.plan.arena_bytes, arch.key()
            assert flash <= report.flash_bytes, arch.key()
            figures = (fit.peak_ram_bytes, fit.flash_bytes, fit.latency_ms)
            planned = (analysis.plan.arena_bytes, report.flash_bytes, report.latency_ms_estimate)
            if fit.exact:
                assert figures == planned, arch.key()
            elif fit.fits:
                assert figures[1:] == planned[1:], arch.key()
                assert planned[0] <= fit.peak_ram_bytes <= limits.sram_bytes, arch.key()
                assert check.figures(arch) == replace(fit, peak_ram_bytes=planned[0],
                                                      exact=True), arch.key()
                settled += 1
            else:
                assert fit.flash_bytes <= report.flash_bytes, arch.key()
                assert fit.peak_ram_bytes <= analysis.plan.arena_bytes, arch.key()
                assert (fit.flash_bytes > limits.flash_bytes
                        or fit.peak_ram_bytes > limits.sram_bytes), arch.key()
                assert fit.latency_ms in (0.0, report.latency_ms_estimate), arch.key()
            assert fit.macs == macs(arch, space, 1, 10)
            verdicts.append(fit.fits)
        decided += check.decided
    if case == "tight":
        assert decided["arena bound"] and decided["flash bound"], decided
    assert any(verdicts) and not all(verdicts), "the sample should hold both verdicts"
    assert settled, "some fitting sample should keep its greedy placement"


def test_a_first_patch_option_that_does_not_fit_placed_falls_back_to_the_whole_search(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The fit check's patch search stops at the option the planner plans first (settle).

    On this architecture that option's lower bound fits the 8 KB budget and its plan does not:
    the check searches again in full, and its verdict and figures are the planner's.
    """
    build = Build(get_board("nucleo-f091rc"))
    limits = limits_for(build, 8192, None, None)
    space = default_space(2, 8)
    arch = Arch(0.35, 16, (1, 2, 3, 2), (5, 3, 3, 5, 3, 7, 5, 7, 5, 7),
                (4, 3, 3, 4, 3, 3, 4, 4, 6, 3))
    searches: list[tuple[bool, bool]] = []

    def spy(*args: object, settle: bool = False) -> PatchSearch:
        search = patch_search(*args, settle=settle)
        searches.append((settle, search.settled))
        return search

    monkeypatch.setattr(fitcheck, "patch_search", spy)
    fit, analysis = FitCheck(build, limits, space, 1, 10)(arch), _planner(arch, space, build,
                                                                          limits)
    assert searches == [(True, True), (False, False)]
    assert fit.fits and analysis.fits and analysis.plan.arena_bytes <= limits.sram_bytes
    assert (fit.flash_bytes, fit.latency_ms) == (analysis.report.flash_bytes,
                                                 analysis.report.latency_ms_estimate)
    assert analysis.plan.arena_bytes <= fit.peak_ram_bytes <= limits.sram_bytes


def test_patch_search_rejects_what_no_plan_of_it_fits() -> None:
    """120 x 160 images on the NUCLEO-F091RC: most need patches and no plan fits.

    The search's plans are not made for those; the verdicts equal the planner's and the
    arena given is at most the planner's, over the limit.
    """
    build = Build(get_board("nucleo-f091rc"))
    limits = limits_for(build, None, None, None)
    space = default_space(2, 120, 4 / 3)
    check = FitCheck(build, limits, space, 1, 10)
    for arch in _samples(space, 4, 2):
        fit, analysis = check(arch), _planner(arch, space, build, limits)
        assert fit.fits == (analysis.fits and analysis.plan.arena_bytes <= limits.sram_bytes)
        if not fit.exact and not fit.fits:
            assert limits.sram_bytes < fit.peak_ram_bytes <= analysis.plan.arena_bytes
    assert check.decided["patch search"] >= 2, check.decided


def test_budgets_and_latency_limit_tighten_the_verdict() -> None:
    build = Build(get_board("nucleo-f091rc"))
    space = default_space(1, 40)
    archs = _samples(space, 12, 5)
    loose = FitCheck(build, limits_for(build, None, None, None), space, 1, 10)
    figures = [loose(arch) for arch in archs]
    peaks = sorted(f.peak_ram_bytes for f in figures)
    latencies = sorted(f.latency_ms for f in figures)
    limits = limits_for(build, peaks[6], None, latencies[8])
    tight = FitCheck(build, limits, space, 1, 10)
    for arch, before in zip(archs, figures, strict=True):
        analysis = _planner(arch, space, build, limits)
        expected = (analysis.fits and analysis.plan.arena_bytes <= limits.sram_bytes
                    and analysis.report.latency_ms_estimate <= latencies[8])
        assert tight(arch).fits == expected, arch.key()
        assert before.fits
    assert sum(tight(arch).fits for arch in archs) < len(archs)


def test_limits_default_to_the_board_and_reject_nonsense() -> None:
    build = Build(get_board("tiny16k", TINY))
    assert limits_for(build, None, None, None) == Limits(16384, 65536, None)
    assert limits_for(build, 8000, 30000, 5.0) == Limits(8000, 30000, 5.0)
    with pytest.raises(McuflowError):
        limits_for(build, 0, None, None)
    for latency in (-1.0, 0.0, float("inf"), float("nan")):
        with pytest.raises(McuflowError, match="--latency-ms"):
            limits_for(build, None, None, latency)
    with pytest.raises(McuflowError) as raised:
        limits_for(build, None, 0, None)
    assert raised.value.hint == "e.g. --flash-budget 65536"


@pytest.mark.parametrize("board", ["rp2040", "esp32-s3"])
def test_boards_without_on_chip_flash_take_the_flash_they_execute_from(board: str) -> None:
    """The analysis's flash capacity is the limit: the smallest architecture fits as it says."""
    build = api.build_for(board)
    limits = limits_for(build, None, None, None)
    space = default_space(2, 8)
    analysis = _planner(smallest(space, 0.25, 8), space, build, limits)
    assert limits.flash_bytes == analysis.report.flash_capacity > 0
    assert analysis.report.fits
    assert FitCheck(build, limits, space, 1, 10)(smallest(space, 0.25, 8)).fits


def test_firmware_reserve_holds_where_the_smallest_model_overflows_the_board(
        tmp_path: Path) -> None:
    """The reserve does not link the smallest architecture in the board's memory.

    On 28 x 28 images that architecture does not fit the NUCLEO-F091RC unpatched, and the
    search stopped with "the model does not fit". The reserve is what the board's linker
    script leaves besides the arena of a model that does fit there.
    """
    build = api.build_for("nucleo-f091rc")
    space = default_space(2, 8)
    graph = arch_graph(smallest(space, min(space.widths), min(space.resolutions)), space, 1, 10)
    plan = analyze_graph(graph, build, PatchRequest(enabled=False)).plan
    generate_project(graph, plan, tmp_path / "fw", target=build.firmware, board=build.board)
    static = elf_sizes(build_cortexm(tmp_path / "fw", build.firmware)).static_ram_bytes
    expected = static - plan.arena_bytes + STACK_RESERVE_BYTES
    assert firmware_reserve(build, default_space(2, 28), 1, 10) == expected


@pytest.mark.parametrize("board_id", ["nucleo-f091rc", "nucleo-l4r5zi"])
@pytest.mark.parametrize("model", ["kws_ref_model.tflite", "str_ww_ref_model.tflite"])
def test_flash_bound_holds_on_models_built_elsewhere(board_id: str, model: str) -> None:
    """The bound is below the planner's flash on MLPerf Tiny models; `above` keeps its verdict."""
    graph = api.load_graph(SHARED_MODELS / model)
    build = api.build_for(board_id)
    analysis = analyze_graph(graph, build, PatchRequest(sram_budget=build.board.sram_bytes,
                                                        out_of_core=False))
    bound = flash_bound(graph, build)
    assert 0 < bound <= analysis.report.flash_bytes
    for above in (bound - 1, bound, analysis.report.flash_bytes):
        assert (flash_bound(graph, build, above) > above) == (bound > above)
