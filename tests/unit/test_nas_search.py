"""nas/search.py on sklearn digits with the tiny budget: fit, determinism, resume, errors."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import mcuflow.nas.search as search_module  # noqa: E402
from mcuflow import api  # noqa: E402
from mcuflow.errors import McuflowError  # noqa: E402
from mcuflow.memory.patch_search import PatchRequest  # noqa: E402
from mcuflow.nas.data import Dataset, Split, load_dataset, split  # noqa: E402
from mcuflow.nas.fitcheck import Fit, FitCheck, Limits, limits_for  # noqa: E402
from mcuflow.nas.search import (  # noqa: E402
    LEAST_RANKED_SAMPLES,
    RANKED_SAMPLES,
    REFERENCE_ARCH,
    REFERENCE_SAMPLES,
    Candidate,
    SearchOptions,
    SearchResult,
    SpaceChoice,
    at_most,
    budget_for,
    mobilenet_v2,
    ranked_samples,
    reachable_space,
    search,
    training_epochs,
    winner,
)
from mcuflow.nas.space import (  # noqa: E402
    Work,
    arch_graph,
    default_space,
    largest,
    macs,
    smallest,
    work,
)
from mcuflow.nas.training_cost import reference_share, step_ms  # noqa: E402
from mcuflow.planning import analyze_graph  # noqa: E402

BOARD_FILE = Path(__file__).parents[2] / "bench/boards/tiny16k.toml"
TINY_MINUTES = 1


class Interrupted(Exception):
    """Raised from the progress callback to stop a search as a kill would."""


@pytest.fixture(scope="module")
def setting():
    build = api.build_for("tiny16k", BOARD_FILE)
    parts = split(load_dataset("digits"), seed=0)
    space = dataclasses.replace(default_space(2, 8), widths=(0.25, 0.5), resolutions=(8,))
    options = SearchOptions(build, limits_for(build, None, None, None), minutes=TINY_MINUTES)
    return parts, space, options


@pytest.fixture(scope="module")
def result(setting) -> SearchResult:
    """An uninterrupted search in this process."""
    parts, space, options = setting
    return search(parts, space, options)


@pytest.fixture(scope="module")
def checkpoint(setting, tmp_path_factory) -> Path:
    """The checkpoint of a search stopped (as by a kill) after its first generation.

    Its folder does not exist yet: the search makes it.
    """
    parts, space, options = setting
    written = tmp_path_factory.mktemp("checkpoint") / "new" / "search.json"

    def stop_after_first_generation(stage: str, done: int, total: int) -> None:
        if (stage, done) == ("evolution", 1):
            raise Interrupted

    with pytest.raises(Interrupted):
        search(parts, space, dataclasses.replace(options, checkpoint=written, resume=True),
               stop_after_first_generation)
    return written


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def comparable(result: SearchResult) -> SearchResult:
    """The result without its one measured figure (fit checks per second)."""
    return dataclasses.replace(result, fit_checks_per_second=0.0)


def planner_fits(arch, space, parts, options) -> bool:
    """True when mcuflow's planner keeps the arch's int8 graph within the SRAM and flash limits.

    Automatic patches aim at the SRAM limit, as the deployed model is planned.
    """
    train, limits = parts.train, options.limits
    graph = arch_graph(arch, space, train.input_channels, train.classes)
    analysis = analyze_graph(graph, options.build, PatchRequest(sram_budget=limits.sram_bytes))
    return (analysis.fits and analysis.plan.arena_bytes <= limits.sram_bytes
            and analysis.report.flash_bytes <= limits.flash_bytes)


def test_budget_table_grows_with_minutes_and_refuses_nonsense():
    tiny, default, goal = budget_for(1), budget_for(10), budget_for(20)
    assert budget_for(0.5) == tiny and budget_for(15) == default
    longer = budget_for(40)
    assert (longer.supernet_epochs, longer.final_epochs) == (
        2 * goal.supernet_epochs, 2 * goal.final_epochs)
    assert dataclasses.replace(longer, supernet_epochs=goal.supernet_epochs,
                               final_epochs=goal.final_epochs) == goal
    for small, large in ((tiny, default), (default, goal)):
        assert all(getattr(large, f.name) >= getattr(small, f.name)
                   for f in dataclasses.fields(small) if f.name != "mutation_probability")
    for nonsense in (0, float("inf"), float("nan")):
        with pytest.raises(McuflowError, match="--minutes"):
            budget_for(nonsense)


def test_space_optimisation_chooses_the_space_with_most_fitting_macs(result, setting):
    parts, space, options = setting
    assert len(result.spaces) == len(space.widths) * len(space.resolutions)
    assert result.chosen in result.spaces and result.chosen.fitting > 0
    best_mean = max(choice.mean_macs for choice in result.spaces)
    assert result.chosen.mean_macs == best_mean
    assert all(choice.macs == tuple(sorted(choice.macs)) and len(choice.macs) == choice.fitting
               for choice in result.spaces)
    # Every evaluated candidate belongs to the chosen space.
    assert {(c.arch.width, c.arch.resolution) for c in result.pareto} == {
        (result.chosen.width, result.chosen.resolution)}


def test_best_candidate_fits_by_fitcheck_and_by_the_planner(result, setting):
    parts, space, options = setting
    best = result.best
    assert best.fit.fits
    assert planner_fits(best.arch, space, parts, options)
    train = parts.train
    assert best.fit.macs == macs(best.arch, space, train.input_channels, train.classes)
    top = max(c.accuracy for c in result.pareto)
    assert 0.0 <= best.accuracy <= top
    # No candidate at least as accurate as the winner has more MACs.
    assert not [c for c in result.pareto
                if c.accuracy >= best.accuracy and c.fit.macs > best.fit.macs]
    assert result.generations == tuple(sorted(result.generations))
    assert result.generations[-1] == top


def test_pareto_front_is_monotone_in_macs_and_accuracy(result):
    front = result.pareto
    assert [c.fit.macs for c in front] == sorted(c.fit.macs for c in front)
    assert all(a.accuracy < b.accuracy for a, b in zip(front, front[1:], strict=False))
    assert result.evaluated >= len(front) and result.fit_checks >= result.evaluated
    assert result.fit_checks_per_second > 0


def test_baseline_is_the_largest_fitting_mobilenet_v2(result, setting):
    parts, space, options = setting
    train = parts.train
    assert planner_fits(result.baseline, space, parts, options)
    assert result.baseline_fit.fits
    grid = [mobilenet_v2(space, w, r) for w in space.widths for r in space.resolutions]
    larger = [arch for arch in grid if macs(arch, space, train.input_channels, train.classes)
              > macs(result.baseline, space, train.input_channels, train.classes)]
    smallest_larger = min(larger, default=None, key=lambda a: macs(
        a, space, train.input_channels, train.classes))
    if smallest_larger is not None:
        assert not planner_fits(smallest_larger, space, parts, options)


def test_one_and_two_ray_workers_give_the_same_result(result, setting, ray_session):
    parts, space, options = setting
    on_ray = search(parts, space, dataclasses.replace(options, workers=2))
    assert comparable(on_ray) == comparable(result)


def test_resumed_search_equals_an_uninterrupted_one(result, setting, checkpoint):
    parts, space, options = setting
    assert checkpoint.with_suffix(".supernet.pt").exists()
    resumed = dataclasses.replace(options, checkpoint=checkpoint, resume=True)
    stages = []
    outcome = search(parts, space, resumed, lambda stage, done, total: stages.append(stage))
    assert "space" not in stages and "supernet" not in stages  # continued, not redone
    assert comparable(outcome) == comparable(result)


def test_checkpoint_of_other_options_is_refused(setting, checkpoint):
    parts, space, options = setting
    other_seed = dataclasses.replace(options, seed=1, checkpoint=checkpoint, resume=True)
    with pytest.raises(McuflowError, match="another search"):
        search(parts, space, other_seed)


def test_nothing_fits_is_a_user_error(setting):
    parts, space, options = setting
    small = dataclasses.replace(space, widths=(0.25,), resolutions=(8,))
    starved = dataclasses.replace(options, limits=Limits(sram_bytes=64, flash_bytes=64))
    with pytest.raises(McuflowError, match="fits"):
        search(parts, small, starved)


def test_limits_only_the_smallest_architecture_meets_still_give_a_model_and_a_baseline(
        setting):
    """Under the smallest architecture's flash, the found model and a slimmed baseline fit.

    No random sample and no MobileNetV2 of expansion 6 fits that limit; both fit by the planner.
    """
    parts, space, options = setting
    small = dataclasses.replace(space, widths=(0.25,), resolutions=(8,))
    train = parts.train
    check = FitCheck(options.build, options.limits, small, train.input_channels, train.classes)
    least = smallest(small, 0.25, 8)
    tight = dataclasses.replace(options, limits=dataclasses.replace(
        options.limits, flash_bytes=check.figures(least).flash_bytes))
    assert not planner_fits(mobilenet_v2(small, 0.25, 8), small, parts, tight)
    outcome = search(parts, small, tight)
    assert planner_fits(outcome.best.arch, small, parts, tight)
    assert planner_fits(outcome.baseline, small, parts, tight)
    assert outcome.baseline.expansions != mobilenet_v2(small, 0.25, 8).expansions


def test_workers_without_ray_say_how_to_install_it(setting, monkeypatch):
    parts, space, options = setting
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(McuflowError) as error:
        search(parts, space, dataclasses.replace(options, workers=2))
    assert "mcuflow[nas]" in error.value.hint


def test_a_ray_address_nothing_answers_at_is_a_user_error(tmp_path):
    """Ray itself retries such an address for minutes, then raises ConnectionError.

    The command runs in a process of its own: this one may hold a Ray session already.
    """
    pytest.importorskip("ray")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run([sys.executable, "-m", "mcuflow", "search", "--data", "digits",
                           "--board", "nucleo-f091rc", "--minutes", "1", "--ray-address",
                           f"127.0.0.1:{port}", "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"mcuflow: error: no Ray cluster answers at '127.0.0.1:{port}'")
    assert "ray start --head" in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


class _RefusingRay:
    """A ray module whose init logs as Ray's core does for a missing token, then gives up."""

    @staticmethod
    def is_initialized() -> bool:
        return False

    @staticmethod
    def init(**_settings: object) -> None:
        for _ in range(3):
            os.write(2, b"gcs_client.cc:210: Failed to get cluster ID from GCS server: "
                        b"Unauthenticated: RPC error: InvalidAuthToken\n")
        raise ConnectionError("Failed to connect to Ray cluster at 192.0.2.2:6390")


def test_a_cluster_asking_for_its_token_is_one_line_saying_how(setting, capfd, monkeypatch):
    """A cluster `ray start` started (Ray 2.59 and later) wants its token.

    Ray sends it to an explicit address only with RAY_AUTH_MODE=token: the error says so, and
    Ray's once-a-second log lines stay out.
    """
    parts, space, options = setting
    monkeypatch.setattr(search_module, "_import_ray", lambda: _RefusingRay)
    monkeypatch.setattr(search_module, "_answers", lambda _address: True)
    with pytest.raises(McuflowError) as error:
        search(parts, space, dataclasses.replace(options, ray_address="127.0.0.1:6390"))
    assert error.value.message == ("the Ray cluster at '127.0.0.1:6390' asks for its "
                                   "authentication token")
    assert "RAY_AUTH_MODE=token" in error.value.hint and "auto" in error.value.hint
    assert "InvalidAuthToken" not in capfd.readouterr().err


def test_workers_start_their_own_cluster_beside_one_of_ray_start(tmp_path):
    """--workers 2 beside a cluster of `ray start` on this machine: a cluster of 2 CPUs.

    Ray joins the cluster `ray start` runs unless told "local", and then refuses the CPUs
    asked (a ValueError).
    """
    pytest.importorskip("ray")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--port",
         str(port), "--num-cpus", "3", "--include-dashboard=false", "--disable-usage-stats"],
        env={**os.environ, "HOME": str(tmp_path)}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert head.stdout is not None
        for line in head.stdout:  # `ray start` says so once the cluster is recorded
            if "Ray runtime started" in line:
                break
        code = ("from mcuflow import api; from mcuflow.nas.fitcheck import limits_for; "
                "from mcuflow.nas.search import SearchOptions, worker_pool; import ray; "
                "build = api.build_for('nucleo-f091rc'); "
                "options = SearchOptions(build, limits_for(build, None, None, None), workers=2); "
                "pool = worker_pool(options); print(ray.cluster_resources()['CPU']); "
                "pool.__exit__()")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "HOME": str(tmp_path)})
    finally:
        os.killpg(head.pid, signal.SIGINT)  # --block stops its cluster at once on SIGINT
        head.communicate(timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2.0"]


def test_zero_workers_and_a_broken_checkpoint_are_user_errors(setting, tmp_path):
    parts, space, options = setting
    for bad, message in (({"workers": 0}, "--workers must"), ({"seed": -1}, "--seed"),
                         ({"workers": 2, "ray_address": "127.0.0.1:1"}, "not both")):
        with pytest.raises(McuflowError, match=message):
            search(parts, space, dataclasses.replace(options, **bad))
    broken = tmp_path / "search.json"
    broken.write_text("{not json")
    with pytest.raises(McuflowError, match="cannot read checkpoint"):
        search(parts, space, dataclasses.replace(options, checkpoint=broken, resume=True))


def test_training_epochs_follow_the_time_of_an_epoch() -> None:
    """Epochs hold the row's time: four times the samples get a quarter of them.

    A costlier architecture gets fewer again: whole epochs down to one, then less than half
    an epoch where its time calls for less (a share of one epoch's batches). A cheaper one
    gets no more on as many samples; a quarter of the samples (5 batches of 64 where digits
    has 17) get up to 17/5 times the epochs: the reference's optimiser steps. Digits' own
    epochs are the row's times the reference's measured share of its predicted time.
    """
    digits = split(load_dataset("digits"), seed=0)
    assert len(digits.train.y) == REFERENCE_SAMPLES
    native, width, resolution = REFERENCE_ARCH
    space = default_space(2, native)
    reference = SpaceChoice(width, resolution, 1, 1, 0.0, ())
    own = training_epochs(60, digits, space, reference)
    assert own == round(60 * reference_share())
    repeat = np.tile(np.arange(len(digits.train.y)), 4)
    more = dataclasses.replace(digits, train=digits.train.subset(repeat))
    assert training_epochs(60, more, space, reference) == round(own / 4)
    wider = SpaceChoice(1.0, 16, 1, 1, 0.0, ())
    assert 1 <= training_epochs(60, more, space, wider) < own / 4
    assert 0 < training_epochs(1, more, space, wider) < 0.5
    narrower = SpaceChoice(0.25, 8, 1, 1, 0.0, ())
    fewer = dataclasses.replace(digits, train=digits.train.subset(
        np.arange(len(digits.train.y) // 4)))
    assert training_epochs(60, fewer, space, narrower) == round(60 * 17 / 5)
    assert own < training_epochs(60, fewer, space, reference) <= round(60 * 17 / 5)


def test_a_step_costs_its_layers_macs_and_elements() -> None:
    """The fitted step time grows with layers, MACs of each kind and the batch, per layout.

    The reference's measured share of its predicted time (digits train fast) is a share.
    """
    base = Work(dense_macs=100_000, depthwise_macs=20_000, elements=5_000, layers=20)
    for dims in (1, 2):
        ms = step_ms(base, dims, 64)
        for bigger in (dataclasses.replace(base, layers=40),
                       dataclasses.replace(base, dense_macs=10_000_000),
                       dataclasses.replace(base, depthwise_macs=2_000_000)):
            assert step_ms(bigger, dims, 64) > ms
        assert step_ms(base, dims, 128) >= ms
    assert 0 < reference_share() <= 1


def test_costlier_samples_rank_on_fewer_validation_samples() -> None:
    """The evaluations' time holds the reference's (its steps as timed on digits), to a floor."""
    digits = split(load_dataset("digits"), seed=0)
    native, width, resolution = REFERENCE_ARCH
    space = default_space(2, native)
    narrow = ranked_samples(space, SpaceChoice(0.25, 8, 1, 1, 0.0, ()), digits.val)
    assert narrow == RANKED_SAMPLES
    rgb = dataclasses.replace(digits.val, x=np.repeat(digits.val.x, 3, axis=-1))
    reference = work(largest(space, width, resolution), space, 1, 10)
    budget = RANKED_SAMPLES * step_ms(reference, 2, 64) * reference_share()
    for native, (width, resolution) in ((8, (1.0, 16)), (32, (1.0, 32)), (32, (0.5, 24))):
        images = default_space(2, native)
        ranked = ranked_samples(images, SpaceChoice(width, resolution, 1, 1, 0.0, ()), rgb)
        cost = step_ms(work(largest(images, width, resolution), images, 3, 10), 2, 64)
        assert ranked == max(LEAST_RANKED_SAMPLES, round(budget / cost)) < RANKED_SAMPLES


def _candidate(accuracy: float, model_macs: int) -> Candidate:
    """A candidate of these val accuracy and MACs (the rest does not enter the winner)."""
    return Candidate(smallest(default_space(2, 8), 1.0, 8), Fit(0, 0, 0.0, model_macs, True),
                     accuracy)


def test_the_winner_is_the_largest_within_a_standard_error_of_the_best() -> None:
    """Binomial standard errors sqrt(p (1 - p) / n), p plus four (Agresti-Coull).

    988 of 1,000 right: p = 990 / 1004, 0.0037; 360 of 360: p = 362 / 364, 0.0039.
    """
    ranked = [_candidate(0.988, 375_680), _candidate(0.988, 545_120),
              _candidate(0.985, 958_960), _candidate(0.983, 1_200_000)]
    assert winner(ranked, 1000).fit.macs == 958_960
    assert winner(ranked, 100_000).fit.macs == 545_120
    perfect = [_candidate(1.0, 10), _candidate(359 / 360, 20), _candidate(358 / 360, 30)]
    assert winner(perfect, 360).fit.macs == 20
    tied = [_candidate(0.5, 7), _candidate(0.5, 7)]
    assert winner(tied, 1000) is tied[0]


def test_large_data_is_ranked_on_a_seeded_random_subset() -> None:
    """An image folder's samples come class by class: the first 2,000 would be a few classes."""
    y = np.repeat(np.arange(10), 300)
    ordered = Dataset("folder", np.zeros((len(y), 4, 4, 1), np.float32), y, 10)
    ranked = at_most(ordered, RANKED_SAMPLES, 0, "ranking")
    assert len(ranked.y) == RANKED_SAMPLES
    assert set(np.bincount(ranked.y)) <= set(range(150, 251))
    assert np.array_equal(ranked.y, at_most(ordered, RANKED_SAMPLES, 0, "ranking").y)
    small = ordered.subset(np.arange(100))
    assert at_most(small, RANKED_SAMPLES, 0, "ranking") is small


def test_a_local_ray_cluster_starts_without_notices() -> None:
    """`--workers 2` output holds the search's own lines, not Ray's start-up notices."""
    pytest.importorskip("ray")
    script = ("import ray\n"
              "from mcuflow import api\n"
              "from mcuflow.nas.fitcheck import limits_for\n"
              "from mcuflow.nas.search import SearchOptions, _init_ray\n"
              "build = api.build_for('nucleo-f091rc')\n"
              "_init_ray(ray, SearchOptions(build, limits_for(build, None, None, None),"
              " workers=2))\n"
              "print(ray.cluster_resources()['CPU'])\n"
              "ray.shutdown()\n")
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, check=True)
    assert ran.stdout.strip() == "2.0"
    assert "Started a local Ray instance" not in ran.stderr, ran.stderr
    assert "WARNING" not in ran.stderr and "INFO" not in ran.stderr, ran.stderr


def test_long_series_get_a_resolution_the_board_holds() -> None:
    """T=2000 on the NUCLEO-F091RC: no scaled MobileNetV2 of the grid fits, half the lowest does."""
    build = api.build_for("nucleo-f091rc")
    limits = limits_for(build, None, None, None)
    space = default_space(1, 2000)
    series = Dataset("long", np.zeros((15, 2000, 4), np.float32), np.arange(15) % 3, 3)
    parts = Split(series, series, series)
    options = SearchOptions(build, limits)
    reached = reachable_space(space, build, limits, 4, 3)
    added = sorted(set(reached.resolutions) - set(space.resolutions))
    assert added and set(space.resolutions) < set(reached.resolutions)
    assert any(planner_fits(mobilenet_v2(reached, w, added[0]), reached, parts, options)
               for w in space.widths)
    for resolution in [*added[1:], min(space.resolutions)]:
        assert not any(planner_fits(mobilenet_v2(reached, w, resolution), reached, parts,
                                    options) for w in space.widths)
    digits = default_space(2, 8)
    assert reachable_space(digits, build, limits, 1, 10) == digits
