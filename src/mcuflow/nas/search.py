"""TinyNAS search: space optimisation, one supernet, evolution, Pareto front and baseline."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from mcuflow.errors import McuflowError
from mcuflow.nas.data import TRAIN_BATCH, Dataset, Split, resize
from mcuflow.nas.fitcheck import Fit, FitCheck, Limits
from mcuflow.nas.space import (
    Arch,
    SearchSpace,
    crossover,
    default_space,
    largest,
    macs,
    mutate,
    sample,
    smallest,
    stable_seed,
    work,
)
from mcuflow.nas.space_file import SpaceEdits
from mcuflow.nas.training_cost import reference_share, step_costs, step_ms
from mcuflow.outputs import write_file
from mcuflow.planning import Build

Progress = Callable[[str, int, int], None]

_CHECKPOINT_VERSION = 2
_PARENT_FRACTION = 0.25          # top share of the population that breeds
_MUTATION_FRACTION = 0.5         # share of the children made by mutation (rest: crossover)
_DRAW_ROUNDS = 50                # rounds of draws before missing children are left out
_RAY_HINT = "install the search extra: pip install 'mcuflow[nas]' (it brings ray), or --workers 1"


@dataclass(frozen=True)
class Budget:
    """Fixed amounts of work for one search; no decision ever looks at the clock."""

    supernet_epochs: int
    space_samples: int
    population: int
    generations: int
    mutation_probability: float
    final_epochs: int
    """Fine-tuning of each final model from the supernet's weights; from scratch, a model
    trains for these and the supernet's epochs together (pipeline.training_jobs). The same for
    the found model and the baseline, so that the architectures are compared."""
    recalibration_batches: int


# (minutes, budget) rows: --minutes takes the largest row it reaches (below 1: the first; above
# the last, that row training longer: budget_for), so the row's minutes bound the whole
# `mcuflow search`. Sized from single-thread CPU costs on
# sklearn digits at width 0.75, resolution 16 (the space tiny16k's SRAM favours): a fit check
# 0.05-0.5 s, a supernet (sandwich) epoch 8 s, a candidate evaluation 0.3 s, a plain training
# epoch 1.5 s; with --workers 2 fit checks and evaluations run two at a time. The 20-minute
# row (the goal: search, fine-tune, baseline, PTQ and QEMU within 20 min on 2 cores)
# took 7.1-9.6 min per bench/search.py row on a shared machine, its final models training 60
# epochs each (a 20-minute search of 50 supernet epochs and 990 fit checks once took 13.7 min
# under a load of 4 on 2 cores: too long); 1 is the tests' tiny run, 10 the default. Costlier
# data get fewer epochs (training_epochs).
_BUDGETS: tuple[tuple[float, Budget], ...] = (
    (1, Budget(supernet_epochs=1, space_samples=4, population=4, generations=2,
               mutation_probability=0.3, final_epochs=2,
               recalibration_batches=2)),
    (5, Budget(supernet_epochs=8, space_samples=8, population=8, generations=4,
               mutation_probability=0.2, final_epochs=15,
               recalibration_batches=4)),
    (10, Budget(supernet_epochs=18, space_samples=16, population=12, generations=6,
                mutation_probability=0.2, final_epochs=30,
                recalibration_batches=8)),
    (20, Budget(supernet_epochs=35, space_samples=24, population=16, generations=8,
                mutation_probability=0.2, final_epochs=60,
                recalibration_batches=8)),
)


def budget_for(minutes: float) -> Budget:
    """The budget of `--minutes`: the largest row of a fixed table it reaches, never a timer.

    Rows at 1 (the tests' tiny search; also below 1), 5, 10 (the default) and 20 minutes (the
    issue's goal: the whole search within 20 minutes on 2 cores with --workers 2). Above the
    last row its training grows in proportion (longer_training): the supernet's and the final
    models' epochs, which hold most of a search's time on large data, while the search itself
    (samples, population, generations) stays the row's.
    """
    if not (math.isfinite(minutes) and minutes > 0):
        raise McuflowError(f"--minutes must be a positive, finite number, not {minutes}",
                           "10 is the default; 1 gives a tiny search, 20 or more train longer")
    last, largest = _BUDGETS[-1]
    if minutes > last:
        return longer_training(largest, minutes / last)
    reached = [budget for row, budget in _BUDGETS if row <= minutes]
    return reached[-1] if reached else _BUDGETS[0][1]


def longer_training(budget: Budget, factor: float) -> Budget:
    """`budget` with its supernet's and final models' epochs `factor` times as many (rounded).

    The rest of the search's work is fixed, so the whole grows less than in proportion: on
    50,000 32 x 32 RGB images for the NUCLEO-F091RC the 20-minute row took 14.6 min (0.68 of an
    epoch from scratch), 40 minutes 20.5 min (1.5 epochs).
    """
    return dataclasses.replace(budget, supernet_epochs=round(budget.supernet_epochs * factor),
                               final_epochs=round(budget.final_epochs * factor))


REFERENCE_SAMPLES = 1078
"""The training split (60 %) of sklearn's 1,797 digits: the data the budget table was sized on."""
REFERENCE_ARCH = (8, 0.75, 16)
"""(native size, width, resolution) of the space's largest architecture the table was sized on."""


def training_epochs(epochs: int, split: Split, space: SearchSpace, chosen: SpaceChoice
                    ) -> float:
    """A table row's `epochs` for this data: as many as take the time they take on digits.

    An epoch's time is predicted for the chosen space's largest architecture (_epoch_ms: its
    training batches times a step's fitted time, nas.training_cost); against the table's
    reference epoch (_reference_epoch_ms) a costlier epoch gets proportionally fewer epochs,
    whole ones down to one, below half an epoch that share of one (TrainBudget), so the row's
    minutes hold on data sets of any size and kind. Digits' mostly blank pixels train in about
    half the time of dense data (training_cost.reference_share), so the search on digits
    itself trains about half the table's epochs and ends early. From half an epoch up, one
    whole: in one run on 20,000 32 x 32 RGB images, 0.6 of an epoch cost the found model its
    lead over the baseline (90.8 % against 94.5 %; one epoch gave 95.9 % against 95.7 %). A
    cheaper one gets more only where the data has fewer batches than the reference: at most as
    many more as keep the reference's optimiser steps, so a few hundred samples still train
    for the row's steps. Both final models get the same count.
    """
    data = split.train
    scale = _reference_epoch_ms() / _epoch_ms(space, chosen, data)
    if scale > 1:
        scale = min(scale, max(1.0, _batches(REFERENCE_SAMPLES) / _batches(len(data.y))))
    scaled = epochs * scale
    return float(max(1, round(scaled))) if scaled >= 0.5 else scaled


def _batches(samples: int) -> int:
    """Training batches an epoch of `samples` has."""
    return -(-samples // TRAIN_BATCH)


@functools.cache
def _reference_step_ms() -> float:
    """A training step of the table's reference (REFERENCE_ARCH, digits) as timed on digits.

    The fitted step time (for dense data) times digits' measured share of it.
    """
    native, width, resolution = REFERENCE_ARCH
    reference = default_space(2, native)
    done = work(largest(reference, width, resolution), reference, 1, 10)
    return step_ms(done, 2, TRAIN_BATCH) * reference_share()


def _reference_epoch_ms() -> float:
    """The table's epoch: REFERENCE_SAMPLES digits on the reference, as timed on digits."""
    return _batches(REFERENCE_SAMPLES) * _reference_step_ms()


def _sample_step_ms(space: SearchSpace, chosen: SpaceChoice, data: Dataset) -> float:
    """Predicted time of a training step of `data` on the chosen space's largest architecture."""
    done = work(largest(space, chosen.width, chosen.resolution), space, data.input_channels,
                data.classes)
    return step_ms(done, space.dims, TRAIN_BATCH)


def _epoch_ms(space: SearchSpace, chosen: SpaceChoice, data: Dataset) -> float:
    """Predicted time of a training epoch of `data` (see _sample_step_ms)."""
    return _batches(len(data.y)) * _sample_step_ms(space, chosen, data)


@dataclass(frozen=True)
class SearchOptions:
    """What a search runs for: the build and limits, the budget's minutes, seed and workers.

    `workers` 1 without `ray_address` evaluates in this process; otherwise candidates are
    evaluated as Ray tasks. `checkpoint` is a JSON file written after each stage; `resume`
    continues from it (a missing file starts afresh).
    """

    build: Build
    limits: Limits
    minutes: float = 10
    seed: int = 0
    workers: int = 1
    ray_address: str | None = None
    checkpoint: Path | None = None
    resume: bool = False
    space: SpaceEdits = SpaceEdits()
    """The choices of a space file (`--space`), applied to the space chosen for the data."""


@dataclass(frozen=True)
class SpaceChoice:
    """One (width, resolution) space of the space optimisation and its fitting samples."""

    width: float
    resolution: int
    samples: int
    fitting: int
    mean_macs: float
    macs: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        """The choice as JSON (MACs as a list)."""
        return {**dataclasses.asdict(self), "macs": list(self.macs)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SpaceChoice:
        """The inverse of `to_json`."""
        return cls(**{**data, "macs": tuple(data["macs"])})


@dataclass(frozen=True)
class Candidate:
    """An evaluated architecture: its fit and its val accuracy (inherited weights + BN)."""

    arch: Arch
    fit: Fit
    accuracy: float


@dataclass(frozen=True)
class SearchResult:
    """What a search found: the spaces, the winner, the Pareto front and the baseline."""

    space: SearchSpace
    spaces: tuple[SpaceChoice, ...]
    chosen: SpaceChoice
    best: Candidate
    pareto: tuple[Candidate, ...]
    generations: tuple[float, ...]
    baseline: Arch
    baseline_fit: Fit
    supernet_state: bytes
    evaluated: int
    fit_checks: int
    fit_checks_per_second: float
    """Per core: the checks over the sum of their own times (_Fits)."""
    fingerprint: str
    """A digest of everything the result depends on (the checkpoint's)."""
    ranked_samples: int
    """The validation samples candidates were ranked on (ranking_samples)."""


def search(split: Split, space: SearchSpace, options: SearchOptions,
           progress: Progress | None = None, pool: Pool | None = None) -> SearchResult:
    """Search `space` for the most accurate architecture that fits `options.limits`.

    Space optimisation picks the (width, resolution) whose fitting samples have the most MACs,
    one supernet is trained for it, and an evolution over its architectures ranks fit-checked
    candidates by val accuracy with inherited weights. Depends only on the inputs, the options
    and the seed: 1 and N workers, and a resumed run, give the same result. A `pool` given
    (worker_pool's for these options) runs the work; else one is started for the search.
    """
    budget = budget_for(options.minutes)
    check_options(options)
    report = progress or _no_progress
    data = split.train
    fitcheck = FitCheck(options.build, options.limits, space, data.input_channels, data.classes)
    state = _State.start(split, space, options, budget)
    with nullcontext(pool) if pool is not None else worker_pool(options) as pool:
        fits = _Fits(fitcheck, state, pool)
        if state.spaces is None:
            state.spaces = _optimise_space(space, budget, options.seed, fits, report)
        chosen = _choose_space(state.spaces)
        if chosen is None:
            raise _unfit("no architecture of the search space fits the limits", space, fits,
                         options.limits)
        baseline = _baseline(space, data.input_channels, data.classes, fits, fitcheck,
                             options.limits)
        state.save()
        if state.supernet is None:
            report("supernet", 0, 1)
            state.supernet = _train_supernet(split, space, chosen, budget, options.seed)
            state.save()
            report("supernet", 1, 1)
        ranked = ranking_samples(split, space, chosen, options.seed)
        evaluate = _evaluator(pool, split, ranked, chosen, state.supernet, space, budget,
                              options.seed)
        _evolve(space, chosen, budget, options.seed, fits, evaluate, state, report)
    return _result(space, state, chosen, baseline, fitcheck, len(ranked.y))


def _no_progress(stage: str, done: int, total: int) -> None:
    """The progress callback when the caller gives none."""


class _State:
    """The search's progress, saved to and restored from the checkpoint."""

    def __init__(self, path: Path | None, fingerprint: str) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.fits: dict[str, tuple[Arch, Fit]] = {}
        self.fit_checks = 0
        self.fit_seconds = 0.0
        self.spaces: tuple[SpaceChoice, ...] | None = None
        self.supernet: bytes | None = None
        self.accuracy: dict[str, float] = {}
        self.population: list[Arch] = []
        self.generations: list[float] = []

    @classmethod
    def start(cls, split: Split, space: SearchSpace, options: SearchOptions,
              budget: Budget) -> _State:
        """A fresh state, or the checkpoint's when resuming (its options must match)."""
        state = cls(options.checkpoint, _fingerprint(split, space, options, budget))
        if options.resume and options.checkpoint is not None and options.checkpoint.exists():
            state.load()
        return state

    @property
    def weights_path(self) -> Path:
        """The supernet state beside the JSON checkpoint."""
        assert self.path is not None
        return self.path.with_suffix(".supernet.pt")

    def save(self) -> None:
        """Write the checkpoint atomically (outputs.write_file), when there is one.

        Its folder is made first, as `-o` makes OUT's.
        """
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise McuflowError(f"cannot make the checkpoint's folder '{self.path.parent}': "
                               f"{error.strerror or error}",
                               "check that the path is writable, or pass --checkpoint") from error
        if self.supernet is not None:
            write_file(self.weights_path, self.supernet, "checkpoint")
        write_file(self.path, json.dumps(self.to_json(), indent=1).encode(), "checkpoint")

    def to_json(self) -> dict[str, Any]:
        """The state as JSON (the supernet weights go to `weights_path`)."""
        return {
            "version": _CHECKPOINT_VERSION, "fingerprint": self.fingerprint,
            "fit_checks": self.fit_checks, "fit_seconds": self.fit_seconds,
            "fits": [{"arch": arch.to_json(), "fit": fit.to_json()}
                     for arch, fit in self.fits.values()],
            "spaces": None if self.spaces is None else [s.to_json() for s in self.spaces],
            "supernet": None if self.supernet is None
            else hashlib.sha256(self.supernet).hexdigest(),
            "accuracy": self.accuracy,
            "population": [arch.to_json() for arch in self.population],
            "generations": self.generations,
        }

    def load(self) -> None:
        """Restore the state from the checkpoint, refusing one written for other options."""
        assert self.path is not None
        data = _read_checkpoint(self.path)
        written = (data.get("version"), data.get("fingerprint"))
        if written != (_CHECKPOINT_VERSION, self.fingerprint):
            raise McuflowError(f"checkpoint {self.path} was written for another search "
                               "(dataset, space, limits, seed or --minutes differ)",
                               "rerun with the same options, or drop --resume to start afresh")
        for entry in data["fits"]:
            arch = Arch.from_json(entry["arch"])
            self.fits[arch.key()] = (arch, Fit(**entry["fit"]))
        self.fit_checks = data["fit_checks"]
        self.fit_seconds = data["fit_seconds"]
        if data["spaces"] is not None:
            self.spaces = tuple(SpaceChoice.from_json(s) for s in data["spaces"])
        if data["supernet"] is not None:
            self.supernet = self._load_weights(data["supernet"])
        self.accuracy = dict(data["accuracy"])
        self.population = [Arch.from_json(a) for a in data["population"]]
        self.generations = list(data["generations"])

    def _load_weights(self, digest: str) -> bytes:
        """The supernet state saved beside the checkpoint, checked against its digest."""
        weights = self.weights_path.read_bytes() if self.weights_path.exists() else b""
        if hashlib.sha256(weights).hexdigest() != digest:
            raise McuflowError(f"the supernet weights {self.weights_path} of checkpoint "
                               f"{self.path} are missing or do not match it",
                               "drop --resume to start afresh")
        return weights


def _fingerprint(split: Split, space: SearchSpace, options: SearchOptions, budget: Budget) -> str:
    """A digest of everything a search's result depends on (not workers or the checkpoint).

    The training-time model's coefficients are among it: they set the epochs.
    """
    digest = hashlib.sha256()
    for part in (split.train, split.val, split.test):
        digest.update(np.ascontiguousarray(part.x).tobytes())
        digest.update(np.ascontiguousarray(part.y).tobytes())
    settings = (repr(space), repr(options.limits), repr(options.build), options.seed,
                repr(budget), repr(step_costs()), reference_share())
    digest.update(repr(settings).encode())
    return digest.hexdigest()


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's JSON, or a McuflowError when it is not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise McuflowError(f"cannot read checkpoint {path}: {error}",
                           "drop --resume to start afresh") from error
    if not isinstance(data, dict):
        raise McuflowError(f"checkpoint {path} is not a search checkpoint",
                           "drop --resume to start afresh")
    return data


class _Fits:
    """FitCheck run by the pool, cached by arch key, counting and timing the checks it runs.

    The time is each check's own CPU time (time.process_time of the process that ran it):
    the sum over checks gives the rate per core, whatever the number of workers, their
    dispatch overhead, and the other processes sharing the cores.
    """

    def __init__(self, fitcheck: FitCheck, state: _State, pool: Pool) -> None:
        self.fitcheck = fitcheck
        self.shared = (pool.share(fitcheck),)
        self.state = state
        self.pool = pool

    def __call__(self, arch: Arch) -> Fit:
        """The arch's fit, checked once per arch."""
        return self.all([arch])[0]

    def all(self, archs: Sequence[Arch]) -> list[Fit]:
        """The fit of each arch; those not checked yet are checked in parallel batches.

        FitCheck.check, its units of work run by the pool on the shared fit check.
        """
        new = list({a.key(): a for a in archs if a.key() not in self.state.fits}.values())
        fits, seconds = self.fitcheck.check(
            new, lambda function, items: self.pool.map(function, self.shared, items))
        self.state.fit_seconds += seconds
        self.state.fit_checks += len(new)
        self.state.fits.update((arch.key(), (arch, fit)) for arch, fit in
                               zip(new, fits, strict=True))
        return [self.state.fits[arch.key()][1] for arch in archs]


def _optimise_space(space: SearchSpace, budget: Budget, seed: int, fits: _Fits,
                    report: Progress) -> tuple[SpaceChoice, ...]:
    """Sample every (width, resolution) of the grid and record its fitting samples' MACs."""
    grid = [(w, r) for w in space.widths for r in space.resolutions]
    choices = []
    for done, (width, resolution) in enumerate(grid):
        report("space", done, len(grid))
        rng = np.random.default_rng([stable_seed(seed, "space"), done])
        archs = [sample(space, rng, width, resolution) for _ in range(budget.space_samples)]
        fitting = sorted(fit.macs for fit in fits.all(archs) if fit.fits)
        mean = float(np.mean(fitting)) if fitting else 0.0
        choices.append(SpaceChoice(width, resolution, len(archs), len(fitting), mean,
                                   tuple(fitting)))
    report("space", len(grid), len(grid))
    if not any(choice.fitting for choice in choices):
        return tuple(_with_smallest(space, choice, fits) for choice in choices)
    return tuple(choices)


def _with_smallest(space: SearchSpace, choice: SpaceChoice, fits: _Fits) -> SpaceChoice:
    """`choice` with its space's smallest architecture as one more sample.

    For limits so tight that no random sample fits: the smallest may.
    """
    fit = fits(smallest(space, choice.width, choice.resolution))
    fitting = (fit.macs,) if fit.fits else ()
    return dataclasses.replace(choice, samples=choice.samples + 1, fitting=len(fitting),
                               mean_macs=float(fit.macs) if fit.fits else 0.0, macs=fitting)


def _choose_space(spaces: Sequence[SpaceChoice]) -> SpaceChoice | None:
    """The space with the largest mean MACs of fitting samples (more fitting, smaller width).

    None when no sample of any space fits.
    """
    viable = [choice for choice in spaces if choice.fitting]
    if not viable:
        return None
    return min(viable, key=lambda c: (-c.mean_macs, -c.fitting, c.width, c.resolution))


def _unfit(what: str, space: SearchSpace, fits: Callable[[Arch], Fit],
           limits: Limits) -> McuflowError:
    """The error `what`, with what the space's smallest architecture needs over the limits."""
    width, resolution = min(space.widths), min(space.resolutions)
    fit = fits(smallest(space, width, resolution))
    least = "" if fit.exact else "at least "
    over = []
    if fit.peak_ram_bytes > limits.sram_bytes:
        over.append(f"{least}{fit.peak_ram_bytes:,} B of arena where the SRAM limit leaves "
                    f"{limits.sram_bytes:,} B beside the firmware")
    if fit.flash_bytes > limits.flash_bytes:
        over.append(f"{least}{fit.flash_bytes:,} B of flash over the limit of "
                    f"{limits.flash_bytes:,} B")
    if limits.latency_ms is not None and fit.latency_ms > limits.latency_ms:  # bounds give 0
        over.append(f"{fit.latency_ms:,.1f} ms over the limit of {limits.latency_ms:g} ms")
    size = " x ".join(map(str, space.input_size(resolution)))
    needs = f"needs {' and '.join(over)}" if over else "fits, but no sample of the spaces did"
    return McuflowError(f"{what}: the smallest (width {width:g}, {size} inputs) {needs}",
                        "raise --sram-budget, --flash-budget or --latency-ms, or choose a "
                        "board with more SRAM or flash")


def _train_supernet(split: Split, space: SearchSpace, chosen: SpaceChoice, budget: Budget,
                    seed: int) -> bytes:
    """Train the chosen space's supernet with the sandwich rule; its state as bytes."""
    from mcuflow.nas.supernet import Supernet, TrainBudget, state_bytes, train_supernet

    data = split.train
    net = Supernet(space, chosen.width, data.input_channels, data.classes)
    epochs = training_epochs(budget.supernet_epochs, split, space, chosen)
    train_supernet(net, space, split, chosen.resolution, TrainBudget(epochs),
                   stable_seed(seed, "supernet"))
    return state_bytes(net)


def evaluate_candidate(supernet: bytes, space: SearchSpace, train_x: np.ndarray, val: Dataset,
                       batches: int, arch: Arch, seed: int) -> float:
    """Val accuracy of `arch` with the supernet's weights and batch norm recalibrated on `train_x`.

    `train_x` holds training samples at the arch's resolution. The unit of work of a worker: a
    function of its arguments only.
    """
    import torch

    from mcuflow.nas.supernet import Supernet, accuracy, extract, load_state, recalibrate_bn

    torch.set_num_threads(1)
    net = Supernet(space, arch.width, val.input_channels, val.classes)
    load_state(net, supernet)
    model = extract(net, arch)
    recalibrate_bn(model, train_x, seed, batches)
    return accuracy(model, val, arch.resolution)


class _Local:
    """Runs units of work one after another in this process."""

    def share(self, value: Any) -> Any:
        """`value` itself: nothing to ship."""
        return value

    def map(self, function: Callable[..., Any], shared: tuple[Any, ...],
            items: Sequence[tuple[Any, ...]]) -> list[Any]:
        """`function(*shared, *item)` for each item, in order."""
        return [function(*shared, *item) for item in items]

    def __enter__(self) -> _Local:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _Ray:
    """Runs units of work as Ray tasks of one CPU, gathered in submission order.

    Shared arguments (supernet state, data, the fit check) go to the object store once.
    """

    def __init__(self, options: SearchOptions) -> None:
        self.ray = _import_ray()
        self.started = not self.ray.is_initialized()
        if self.started:
            _init_ray(self.ray, options)
        self.tasks: dict[Callable[..., Any], Any] = {}

    def share(self, value: Any) -> Any:
        """A reference to `value` in the object store."""
        return self.ray.put(value)

    def map(self, function: Callable[..., Any], shared: tuple[Any, ...],
            items: Sequence[tuple[Any, ...]]) -> list[Any]:
        """`function(*shared, *item)` for each item on the workers, results in item order."""
        if function not in self.tasks:
            self.tasks[function] = self.ray.remote(num_cpus=1)(function)
        task = self.tasks[function]
        return list(self.ray.get([task.remote(*shared, *item) for item in items]))

    def __enter__(self) -> _Ray:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.ray.shutdown()


Pool = _Local | _Ray
"""Where units of work run: in this process, or as Ray tasks."""


def worker_pool(options: SearchOptions) -> Pool:
    """The pool: in process for 1 worker without an address, else Ray."""
    return _Ray(options) if _on_ray(options) else _Local()


RANKED_SAMPLES = 2000
"""Validation samples candidates are ranked on, at most, where a sample costs no more than on
the table's reference architecture (REFERENCE_ARCH): an evaluation costs in proportion."""
LEAST_RANKED_SAMPLES = 500
"""Validation samples candidates are ranked on however costly a sample (where the data has as
many): the standard error of an accuracy near 80 % is then under 2 points."""
RECALIBRATION_SAMPLES = 4096
"""Training samples batch norm recalibrates on, at most (each evaluation draws its batches)."""


def at_most(data: Dataset, count: int, seed: int, purpose: str) -> Dataset:
    """`data`, or a seeded random `count` of its samples (in their order) when it has more."""
    if len(data.y) <= count:
        return data
    rng = np.random.default_rng(stable_seed(seed, purpose))
    return data.subset(np.sort(rng.permutation(len(data.y))[:count]))


def _evaluator(pool: Pool, split: Split, ranked: Dataset, chosen: SpaceChoice,
               supernet: bytes, space: SearchSpace, budget: Budget, seed: int
               ) -> Callable[[Sequence[Arch]], list[float]]:
    """Accuracy on `ranked` (ranking_samples) of archs of the chosen space, by the pool.

    Batch norm recalibrates on training samples at the chosen space's resolution: on large
    data sets a subset (RECALIBRATION_SAMPLES), so that the evaluations keep to the budget's
    minutes.
    """
    pool_x = at_most(split.train, RECALIBRATION_SAMPLES, seed, "recalibration").x
    train_x = resize(pool_x, chosen.resolution, split.train.dims)
    shared = tuple(pool.share(value) for value in (supernet, space, train_x, ranked,
                                                    budget.recalibration_batches))

    def evaluate(archs: Sequence[Arch]) -> list[float]:
        items = [(arch, stable_seed(seed, arch.key())) for arch in archs]
        return [float(value) for value in pool.map(evaluate_candidate, shared, items)]

    return evaluate


def ranking_samples(split: Split, space: SearchSpace, chosen: SpaceChoice, seed: int
                    ) -> Dataset:
    """The validation samples candidates are ranked on: at most ranked_samples, seeded."""
    return at_most(split.val, ranked_samples(space, chosen, split.val), seed, "ranking")


def ranked_samples(space: SearchSpace, chosen: SpaceChoice, val: Dataset) -> int:
    """How many validation samples rank the candidates of the chosen space, at most.

    RANKED_SAMPLES where a step of the space's largest architecture takes no longer than one
    of the table's reference as timed on digits (_reference_step_ms), proportionally fewer
    where it takes longer, down to LEAST_RANKED_SAMPLES: as training_epochs holds the
    training's time, this holds the evaluations' (2,000 samples of 32 x 32 RGB images at
    width 1 took 7 s an evaluation, against 0.3 s on digits).
    """
    share = _reference_step_ms() / _sample_step_ms(space, chosen, val)
    return max(LEAST_RANKED_SAMPLES, min(RANKED_SAMPLES, round(RANKED_SAMPLES * share)))


def _on_ray(options: SearchOptions) -> bool:
    """True when candidates are evaluated as Ray tasks: N workers or a cluster address."""
    return options.workers > 1 or bool(options.ray_address)


def check_options(options: SearchOptions) -> None:
    """Refuse options no search can run with, before any work.

    --minutes that are not positive and finite, a worker count below 1, both --workers N and
    --ray-address, a negative seed, and Ray work without ray.
    """
    budget_for(options.minutes)
    if options.workers < 1:
        raise McuflowError(f"--workers must be 1 or more, not {options.workers}",
                           "1 evaluates in this process; N runs N Ray workers")
    if options.workers > 1 and options.ray_address:
        raise McuflowError("--workers starts a local Ray cluster, --ray-address joins one: "
                           "not both", "drop one of them")
    if options.seed < 0:
        raise McuflowError(f"--seed must be 0 or more, not {options.seed}", "e.g. --seed 7")
    if _on_ray(options):
        _import_ray()


def _import_ray() -> Any:
    """The ray module, or a McuflowError saying how to install it."""
    try:
        import ray
    except ImportError as error:
        raise McuflowError("--workers above 1 and --ray-address need ray, which is not "
                           "installed", _RAY_HINT) from error
    return ray


def _init_ray(ray: Any, options: SearchOptions) -> None:
    """Start local Ray with `workers` CPUs, or connect to `ray_address`.

    `--workers` starts a cluster of its own even where `ray start` runs one on this machine
    (which Ray would join, then refuse the CPUs asked).

    Ray's own notices (its start, token authentication) stay out of the command's output;
    its errors still show.
    """
    settings = {"include_dashboard": False, "log_to_driver": False,
                "logging_level": logging.ERROR}
    if not options.ray_address:
        ray.init(address="local", num_cpus=options.workers, **settings)
        return
    address = options.ray_address
    hint = ("start one with `ray start --head` and pass the address it prints (on its own "
            "machine: --ray-address auto), or use --workers")
    if not _answers(address):
        raise McuflowError(f"no Ray cluster answers at {address!r}", hint)
    with tempfile.TemporaryFile() as log:
        try:
            with _stderr_to(log):
                ray.init(address=address, **settings)
        except ConnectionError as error:
            log.seek(0)
            if any(word in log.read() for word in (b"InvalidAuthToken", b"Unauthenticated")):
                raise McuflowError(
                    f"the Ray cluster at {address!r} asks for its authentication token",
                    f"export RAY_AUTH_MODE=token (Ray then reads the token from RAY_AUTH_TOKEN "
                    f"or {AUTH_TOKEN_FILE}; `ray get-auth-token` prints it on the cluster), "
                    "or on the cluster's machine use --ray-address auto") from error
            raise McuflowError(f"cannot join the Ray cluster at {address!r}: {error}",
                               hint) from error


AUTH_TOKEN_FILE = "~/.ray/auth_token"
"""Where Ray keeps the token of the clusters `ray start` starts (Ray 2.59 and later enable
token authentication for them; a driver sends it to an explicit address only with
RAY_AUTH_MODE=token, to `auto` by itself)."""


@contextmanager
def _stderr_to(file: BinaryIO) -> Iterator[None]:
    """File descriptor 2 written to `file` meanwhile.

    Ray's core logs each failed attempt to join a cluster there, once a second, until it gives
    up: the command's one line says why instead.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


RAY_CONNECT_SECONDS = 10.0
"""How long a --ray-address's host may take to accept a connection (Ray itself retries for
minutes, then fails with a traceback)."""


def _answers(address: str) -> bool:
    """Whether HOST:PORT (or ray://HOST:PORT) accepts a TCP connection; True for others.

    Addresses without a port ("auto", "local") are left to Ray.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return True
    try:
        with socket.create_connection((host.strip("[]"), int(port)), RAY_CONNECT_SECONDS):
            return True
    except OSError:
        return False


def _evolve(space: SearchSpace, chosen: SpaceChoice, budget: Budget, seed: int, fits: _Fits,
            evaluate: Callable[[Sequence[Arch]], list[float]], state: _State,
            report: Progress) -> None:
    """Run the generations the state still lacks: a random first one, then evolution.

    Each generation's draws come from its own seeded stream, so a resumed run draws as an
    uninterrupted one. The state is saved after every generation.
    """
    for generation in range(len(state.generations), budget.generations):
        report("evolution", generation, budget.generations)
        rng = np.random.default_rng([stable_seed(seed, "evolution"), generation])
        if generation == 0:
            archs = _first_population(space, chosen, budget, rng, fits)
        else:
            archs = _next_population(space, budget, rng, fits, state)
        _evaluate_new(archs, evaluate, state)
        state.population = archs
        best = max(state.accuracy[arch.key()] for arch in archs)
        state.generations.append(max([best, *state.generations]))
        state.save()
    report("evolution", budget.generations, budget.generations)


def _first_population(space: SearchSpace, chosen: SpaceChoice, budget: Budget,
                      rng: np.random.Generator, fits: _Fits) -> list[Arch]:
    """`population` distinct fitting archs of the chosen space: its largest, then random ones.

    The largest architecture (the one the sandwich rule trains at every step) leads when it
    fits. Where the draws fall short, the space's smallest joins them if it fits.
    """
    def draw() -> Arch:
        return sample(space, rng, chosen.width, chosen.resolution)

    most = largest(space, chosen.width, chosen.resolution)
    archs = [most] if fits(most).fits else []
    archs += _fitting_draws(draw, budget.population - len(archs), fits, {most.key()})
    least = smallest(space, chosen.width, chosen.resolution)
    drawn = {arch.key() for arch in archs}
    if len(archs) < budget.population and least.key() not in drawn and fits(least).fits:
        archs.append(least)
    if not archs:
        raise McuflowError(f"no sampled architecture of width {chosen.width} and resolution "
                           f"{chosen.resolution} fits the limits",
                           "raise the budgets or give a smaller space")
    return archs


def _next_population(space: SearchSpace, budget: Budget, rng: np.random.Generator,
                     fits: _Fits, state: _State) -> list[Arch]:
    """The best parents of the population and their mutated and crossed-over children."""
    ranked = sorted(state.population, key=lambda a: _rank(a, state))
    parents = ranked[:max(2, round(len(ranked) * _PARENT_FRACTION))]
    seen = {arch.key() for arch in parents}
    mutations = round((budget.population - len(parents)) * _MUTATION_FRACTION)

    def mutant() -> Arch:
        return mutate(parents[rng.integers(len(parents))], space, rng,
                      budget.mutation_probability)

    def cross() -> Arch:
        first, second = rng.choice(len(parents), size=2, replace=len(parents) < 2)
        return mutate(crossover(parents[first], parents[second], rng, space), space, rng,
                      budget.mutation_probability)

    children = _fitting_draws(mutant, mutations, fits, seen)
    children += _fitting_draws(cross, budget.population - len(parents) - mutations, fits,
                               seen)
    return parents + children


def _fitting_draws(draw: Callable[[], Arch], count: int, fits: _Fits,
                   seen: set[str]) -> list[Arch]:
    """Up to `count` fitting archs not in `seen`, drawn in order; unfit ones are redrawn.

    Each round draws the archs still missing and fit-checks them in one batch.
    """
    archs: list[Arch] = []
    for _ in range(_DRAW_ROUNDS):
        if len(archs) == count:
            break
        drawn = [draw() for _ in range(count - len(archs))]
        for arch, fit in zip(drawn, fits.all(drawn), strict=True):
            if fit.fits and arch.key() not in seen and len(archs) < count:
                seen.add(arch.key())
                archs.append(arch)
    return archs


def _evaluate_new(archs: Iterable[Arch], evaluate: Callable[[Sequence[Arch]], list[float]],
                  state: _State) -> None:
    """Evaluate the archs not evaluated yet, in one batch, and cache their accuracy."""
    new = [arch for arch in archs if arch.key() not in state.accuracy]
    for arch, value in zip(new, evaluate(new), strict=True):
        state.accuracy[arch.key()] = value


def _rank(arch: Arch, state: _State) -> tuple[float, int, str]:
    """Sort key: higher accuracy first, then more MACs, then the arch key.

    More MACs first on ties: under the same limits more computation gives more accuracy
    (TinyNAS's premise), so the evolution breeds from the larger of equal parents.
    """
    return (-state.accuracy[arch.key()], -state.fits[arch.key()][1].macs, arch.key())


def winner(candidates: Sequence[Candidate], samples: int) -> Candidate:
    """The candidate of most MACs whose val accuracy is within a standard error of the best.

    Ties go by `candidates`' order. Accuracies on `samples` validation samples that differ by
    less than a standard error (the best's binomial one, its count of correct answers taken
    plus four as Agresti and Coull's, so that 100 % keeps one) tell nothing apart, while under
    the same limits more computation gives more accuracy once trained (TinyNAS). On 1,000
    samples at 98.8 % the error is 0.37 points; on 360 at 100 %, 0.39 (one sample is 0.28).
    """
    best = max(candidate.accuracy for candidate in candidates)
    correct = round(best * samples)
    smoothed = (correct + 2) / (samples + 4)
    error = math.sqrt(smoothed * (1 - smoothed) / samples)
    close = [candidate for candidate in candidates if candidate.accuracy >= best - error]
    return max(close, key=lambda candidate: candidate.fit.macs)


def mobilenet_v2(space: SearchSpace, width: float, resolution: int, expansion: int = 6,
                 shallow: bool = False) -> Arch:
    """The width/resolution-scaled MobileNetV2 of the family: kernels 3, expansions 6, max depth.

    Slimmer ones take a smaller `expansion`, and with `shallow` each stage's least depth.
    """
    return Arch(width=width, resolution=resolution,
                depths=tuple(stage.min_depth if shallow else stage.max_depth
                             for stage in space.stages),
                kernels=(3,) * space.slots, expansions=(expansion,) * space.slots)


MIN_RESOLUTION = 8
"""The smallest resolution reachable_space adds to a grid."""


def reachable_space(space: SearchSpace, build: Build, limits: Limits, input_channels: int,
                    classes: int) -> SearchSpace:
    """`space`, with smaller resolutions while no scaled MobileNetV2 of it fits `limits`.

    While no mobilenet_v2 of any width at the grid's smallest resolution fits, half that
    resolution (at least MIN_RESOLUTION) joins the grid: long series and large images get
    inputs the board can hold, which space optimisation then weighs like the others. A space
    with a fitting MobileNetV2 is returned as it is.
    """
    fitcheck = FitCheck(build, limits, space, input_channels, classes)
    while True:
        lowest = min(space.resolutions)
        if lowest <= MIN_RESOLUTION or any(
                fitcheck(mobilenet_v2(space, width, lowest)).fits for width in space.widths):
            return space
        space = dataclasses.replace(
            space, resolutions=(max(MIN_RESOLUTION, lowest // 2), *space.resolutions))


def _baseline(space: SearchSpace, input_channels: int, classes: int, fits: _Fits,
              fitcheck: FitCheck, limits: Limits) -> Arch:
    """The MobileNetV2 of the grid with the most MACs that fits, by the fit check and planned.

    Where none fits, the slimmer ones (expansions of the space from the largest, then each
    stage at its least depth) are tried the same way, and the first slimming that fits gives it.
    A fit check's verdict is confirmed by the full plan (FitCheck.figures).
    """
    expansions = sorted({6, *space.expansions}, reverse=True)
    for shallow in (False, True):
        for expansion in expansions:
            archs = [mobilenet_v2(space, w, r, expansion, shallow)
                     for w in space.widths for r in space.resolutions]
            archs.sort(key=lambda a: (-macs(a, space, input_channels, classes), a.key()))
            for arch in archs:
                if fits(arch).fits and fitcheck.figures(arch).fits:
                    return arch
    raise _unfit("no width/resolution-scaled MobileNetV2 of the space fits the limits, even "
                 "at its least expansion and depth, so there is no baseline to compare with",
                 space, fits, limits)


def _result(space: SearchSpace, state: _State, chosen: SpaceChoice, baseline: Arch,
            fitcheck: FitCheck, ranked: int) -> SearchResult:
    """Gather the state into the search's result, with the planner's exact figures.

    The winner is chosen among the candidates ranked on `ranked` validation samples (winner).

    The candidates the result reports (the winner, the Pareto front) and the baseline get
    their full analysis's figures (FitCheck.figures): a fit check may give a bound of a fitting
    candidate's arena. A winner whose full plan does not fit gives way to the next.
    """
    candidates = [Candidate(arch, fit, state.accuracy[key])
                  for key, (arch, fit) in sorted(state.fits.items()) if key in state.accuracy]
    candidates.sort(key=lambda c: _rank(c.arch, state))
    assert state.spaces is not None and state.supernet is not None
    speed = state.fit_checks / state.fit_seconds if state.fit_seconds > 0 else 0.0

    def exact(candidate: Candidate) -> Candidate:
        return dataclasses.replace(candidate, fit=fitcheck.figures(candidate.arch))

    return SearchResult(space=space, spaces=state.spaces, chosen=chosen,
                        best=_planned_winner(candidates, ranked, exact),
                        pareto=tuple(map(exact, pareto_front(candidates))),
                        generations=tuple(state.generations),
                        baseline=baseline, baseline_fit=fitcheck.figures(baseline),
                        supernet_state=state.supernet, evaluated=len(candidates),
                        fit_checks=state.fit_checks, fit_checks_per_second=speed,
                        fingerprint=state.fingerprint, ranked_samples=ranked)


def _planned_winner(candidates: list[Candidate], ranked: int,
                    exact: Callable[[Candidate], Candidate]) -> Candidate:
    """The winner among `candidates` whose full plan fits, with its full figures."""
    left = list(candidates)
    while left:
        chosen = winner(left, ranked)
        planned = exact(chosen)
        if planned.fit.fits:
            return planned
        left.remove(chosen)
    raise McuflowError("no candidate the search evaluated fits the limits once fully planned",
                       "raise --sram-budget or --flash-budget, or search longer (--minutes)")


def pareto_front(candidates: Iterable[Candidate]) -> tuple[Candidate, ...]:
    """The candidates no other beats on both val accuracy and MACs, by increasing MACs."""
    front: list[Candidate] = []
    for candidate in sorted(candidates, key=lambda c: (c.fit.macs, -c.accuracy, c.arch.key())):
        if not front or candidate.accuracy > front[-1].accuracy:
            front.append(candidate)
    return tuple(front)
