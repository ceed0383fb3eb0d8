"""`mcuflow search` end to end: search, train the winner and a baseline, quantise, verify."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mcuflow import api
from mcuflow.codegen.targets import CORTEX_M, board_target
from mcuflow.errors import McuflowError
from mcuflow.nas.data import (
    Dataset,
    Layout,
    Split,
    Standardization,
    channels_first,
    layout_of,
    load_dataset,
    sample_form,
    split,
    standardization_for,
    standardized,
)
from mcuflow.nas.fitcheck import Fit, analyze, firmware_reserve, fit_of, within_firmware
from mcuflow.nas.report import render_report
from mcuflow.nas.search import (
    Budget,
    Pool,
    SearchOptions,
    SearchResult,
    at_most,
    budget_for,
    check_options,
    ranking_samples,
    reachable_space,
    search,
    stable_seed,
    training_epochs,
    worker_pool,
)
from mcuflow.nas.space import Arch, SearchSpace, default_space, held, macs
from mcuflow.outputs import Manifest, write_directory, write_file
from mcuflow.planning import Analysis, Build
from mcuflow.ptq import Calibration, QuantizeResult
from mcuflow.toolchain.qemu import verify_cortexm

if TYPE_CHECKING:
    from torch import nn

Progress = Callable[[str, int, int], None]
"""Told (stage, done, total) as the search and the deployment advance."""

CALIBRATION_SAMPLES = 100
"""Training samples the post-training quantisation calibrates on (the first of the split)."""
TEST_SAMPLES = 2000
"""Test samples the deployed models are scored on at most: a seeded random subset of a larger
test split (search.at_most), as candidates are ranked on at most RANKED_SAMPLES. Scoring runs
mcuflow's reference interpreter and float kernels sample by sample: 4,000 samples of a
20-MMAC model took 86 s per model."""
QEMU_RUNS = 5
"""Random inputs the found model's firmware runs on QEMU, each compared to the bit."""
DEPLOY_STEPS = ("train the winner and the baseline", "quantise and score",
                "run the winner on QEMU")


@dataclass(frozen=True)
class Deployed:
    """A trained model as deployed: test-split accuracies and its analysis on the board.

    `float_accuracy` is the exported float ONNX model's (mcuflow's float kernels),
    `int8_accuracy` the quantised model's on mcuflow's reference interpreter, to which the
    generated C is bit-exact, and `int8_balanced_accuracy` its recall averaged over the
    classes (api.Accuracy). `input_shape` is the int8 model's input shape, as its .tflite
    takes it (an image's rows are the architecture's resolution, its columns follow the
    data's aspect). `fit` is the planner's figures and verdict for the int8 model under the
    search's limits, as the fit check computes them for candidates.
    """

    arch: Arch
    fit: Fit
    float_accuracy: float
    int8_accuracy: float
    int8_balanced_accuracy: float
    input_shape: tuple[int, ...]
    test_samples: int
    """How many test samples scored it (at most TEST_SAMPLES)."""
    start: str
    """Where the deployed training started: "supernet" or "scratch" (training_jobs)."""
    val_accuracies: dict[str, float]
    """Each start's float accuracy on the validation samples that chose between them."""

    def training(self) -> str:
        """Its start, then each start's val accuracy: 'scratch (val 99.0 %, supernet 86.5 %)'."""
        others = "".join(f", {start} {100 * value:.1f} %"
                         for start, value in self.val_accuracies.items() if start != self.start)
        return f"{self.start} (val {100 * self.val_accuracies[self.start]:.1f} %{others})"

    def to_json(self) -> dict[str, object]:
        """The accuracies, the start, the fit figures (Fit.to_json) and the architecture."""
        return {"arch": self.arch.to_json(), "float_accuracy": self.float_accuracy,
                "int8_accuracy": self.int8_accuracy,
                "int8_balanced_accuracy": self.int8_balanced_accuracy,
                "input_shape": list(self.input_shape), "test_samples": self.test_samples,
                "start": self.start, "val_accuracies": self.val_accuracies,
                **self.fit.to_json()}


@dataclass(frozen=True)
class QemuCheck:
    """The found model's firmware on QEMU, linked for the board: bit-exact and instructions."""

    target: str
    machine: str
    bit_exact: bool
    runs: int
    instructions: int
    flash_bytes: int
    ram_bytes: int
    estimated_ms: float


@dataclass(frozen=True)
class Paired:
    """The found model against the baseline on the same test samples (McNemar's exact test).

    Only the samples exactly one model classifies right tell the models apart. Were neither
    better, each such sample would be the found model's with probability 1/2, so `p_value`
    is the two-sided binomial p of their split (1 where the models never disagree). A small
    p says the difference in accuracy is unlikely to be chance alone.
    """

    samples: int
    found_only_right: int
    baseline_only_right: int
    p_value: float

    def summary(self) -> str:
        """One sentence of the comparison, for the command's summary and the report page."""
        if not self.found_only_right + self.baseline_only_right:
            return (f"On the {self.samples:,} test samples both int8 models are right on the "
                    "same ones.")
        return (f"On the {self.samples:,} test samples only the found int8 model is right on "
                f"{self.found_only_right:,}, only the baseline on "
                f"{self.baseline_only_right:,} (McNemar's exact test: p = "
                f"{self.p_value:.2g}; below 0.05 the difference is unlikely to be chance).")


def paired(labels: np.ndarray, found: Sequence[int], baseline: Sequence[int]) -> Paired:
    """McNemar's exact test of two classifiers' `found` and `baseline` answers to `labels`."""
    from scipy.stats import binomtest

    found_right = np.asarray(found) == labels
    baseline_right = np.asarray(baseline) == labels
    found_only = int(np.sum(found_right & ~baseline_right))
    baseline_only = int(np.sum(baseline_right & ~found_right))
    disagreeing = found_only + baseline_only
    p_value = binomtest(found_only, disagreeing).pvalue if disagreeing else 1.0
    return Paired(len(labels), found_only, baseline_only, float(p_value))


@dataclass(frozen=True)
class TrainingEpochs:
    """The epochs the budget's row gave on this data (search.training_epochs).

    A model fine-tuned from the supernet trains there, then for `final`; one trained from
    scratch trains for both together (`scratch`): each sees the same epochs of data.
    """

    supernet: float
    final: float

    @property
    def scratch(self) -> float:
        """The epochs from scratch: the supernet's and the fine-tuning's together."""
        return self.supernet + self.final

    def to_json(self) -> dict[str, float]:
        """The three counts, for report.json."""
        return {**dataclasses.asdict(self), "scratch": self.scratch}


@dataclass(frozen=True)
class SearchReport:
    """Everything `mcuflow search` found and measured (report.json and report.html)."""

    dataset: str
    samples: int
    classes: int
    class_labels: tuple[str, ...]
    """The data's name of each output index (labels sorted, or class folders)."""
    sample_shape: tuple[int, ...]
    """One sample's axes as read: H x W x C (images) or T x C (series)."""
    stored_shape: tuple[int, ...]
    """One sample's axes as the data stored them, where the images were read smaller (no
    input larger than the SRAM limit fits the board); empty: as read."""
    board: str
    options: SearchOptions
    budget: Budget
    result: SearchResult
    found: Deployed
    baseline: Deployed
    qemu: QemuCheck
    epochs: TrainingEpochs
    firmware_reserve_bytes: int
    """SRAM the verification firmware needs beside the arena: the SRAM limit the candidates
    met (`options.limits`) is the board's SRAM, or --sram-budget, less this."""
    paired: Paired
    """The two int8 models' answers on the test samples, compared."""
    standardization: Standardization | None
    """What the models' input is where not the samples as they came (standardization_for)."""

    @property
    def layout(self) -> Layout:
        """How the samples were read: IMAGES or SERIES."""
        return layout_of(self.sample_shape)

    def sample_form(self) -> str:
        """One sample in words (data.sample_form), and its stored size where read smaller."""
        form = sample_form(self.sample_shape)
        if not self.stored_shape:
            return form
        return (f"{form} (stored {self.stored_shape[0]} x {self.stored_shape[1]}, read "
                "smaller: the SRAM limit holds no larger input)")

    def to_json(self) -> dict[str, object]:
        """report.json: accuracies, architectures, the search's tables and figures, checks."""
        result, options = self.result, self.options
        return {
            "dataset": self.dataset, "samples": self.samples, "classes": self.classes,
            "class_labels": list(self.class_labels), "layout": self.layout.value,
            "sample_shape": list(self.sample_shape),
            "stored_shape": list(self.stored_shape) or None,
            "input_standardization": (self.standardization.to_json()
                                      if self.standardization else None),
            "board": self.board, "target": self.qemu.target,
            "limits": dataclasses.asdict(options.limits),
            "firmware_reserve_bytes": self.firmware_reserve_bytes,
            "accuracy": self.found.int8_accuracy,
            "baseline_accuracy": self.baseline.int8_accuracy,
            "test_samples": self.found.test_samples,
            "paired": dataclasses.asdict(self.paired),
            "balanced_accuracy": self.found.int8_balanced_accuracy,
            "baseline_balanced_accuracy": self.baseline.int8_balanced_accuracy,
            "float_accuracy": self.found.float_accuracy,
            "baseline_float_accuracy": self.baseline.float_accuracy,
            "arch": self.found.arch.to_json(), "baseline_arch": self.baseline.arch.to_json(),
            "found": self.found.to_json(), "baseline": self.baseline.to_json(),
            "qemu": dataclasses.asdict(self.qemu),
            "pareto": [{"arch": c.arch.to_json(), "val_accuracy": c.accuracy,
                        **c.fit.to_json()} for c in result.pareto],
            "space": dataclasses.asdict(result.space),
            "spaces": [{"width": s.width, "resolution": s.resolution, "samples": s.samples,
                        "fitting": s.fitting, "mean_macs": s.mean_macs,
                        "chosen": s == result.chosen} for s in result.spaces],
            "generations": list(result.generations),
            "search": {"evaluated": result.evaluated, "fit_checks": result.fit_checks,
                       "fit_checks_per_second": result.fit_checks_per_second,
                       "found_val_accuracy": result.best.accuracy,
                       "ranked_samples": result.ranked_samples},
            "budget": dataclasses.asdict(self.budget),
            "epochs": self.epochs.to_json(), "minutes": options.minutes,
            "seed": options.seed, "workers": options.workers,
        }


def run_search(dataset: str, options: SearchOptions, out_dir: Path,
               progress: Progress | None = None, layout: Layout = Layout.AUTO) -> SearchReport:
    """Search `dataset` for the board of `options`, deploy the winner and a baseline, report.

    `layout` says how an .npz's x is read (load_dataset); images larger than the SRAM limit
    are read smaller (no board holds a larger input: see load_dataset's most_values). Samples
    with a channel the models would lose as it comes are standardised first
    (standardization_for), and the models take them so.

    Writes OUT/model.onnx (float), OUT/model_int8.tflite, the baseline's baseline.onnx and
    baseline_int8.tflite, OUT/report.json and OUT/report.html, all or nothing (see
    outputs.write_directory): an error leaves no half-written OUT.
    """
    check_output(out_dir)
    check_options(options)
    check_verifiable(options.build)
    reading = None if progress is None else functools.partial(progress, "read")
    parts = split(load_dataset(dataset, layout, options.limits.sram_bytes, reading), options.seed)
    standardization = standardization_for(parts.train)
    parts = standardized(parts, standardization)
    train = parts.train
    space = options.space.applied(default_space(train.dims, train.native_size, train.aspect))
    reserve = firmware_reserve(options.build, space, train.input_channels, train.classes)
    options = replace(options, limits=within_firmware(options.limits, reserve))
    if options.space.resolutions is None:
        space = reachable_space(space, options.build, options.limits, train.input_channels,
                                train.classes)
    budget = budget_for(options.minutes)
    with worker_pool(options) as pool:
        result = search(parts, space, options, progress, pool)
        report, files = _deploy(parts, space, result, options, budget, reserve, pool,
                                progress or _silent, standardization)
    files["report.json"] = report_json(report)
    files["report.html"] = render_report(report)
    write_directory(files, out_dir, what="search output")
    return report


def check_verifiable(build: Build) -> None:
    """Refuse, before a long search, a board whose core the found model cannot be verified on.

    The found model's firmware is built for the board's Cortex-M core and run on QEMU.
    """
    core = build.board.core.value
    if core not in CORTEX_M:
        raise McuflowError(f"board '{build.board.id}' has a {core} core: mcuflow search verifies "
                           "the found model on QEMU for a Cortex-M core",
                           "choose a board with a Cortex-M core (see `mcuflow boards`)")


def check_output(out_dir: Path) -> None:
    """Refuse, before a long search, an OUT that the results could not replace."""
    if out_dir.is_symlink() or out_dir.exists() and not out_dir.is_dir():
        raise McuflowError(f"'{out_dir}' exists and is not a directory",
                           "choose a new output directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and Manifest.read(out_dir) is None:
        raise McuflowError(f"'{out_dir}' exists and is not an mcuflow output directory",
                           "choose a new or empty output directory")


def report_json(report: SearchReport) -> str:
    """report.json's text: sorted keys, two-space indent, strict JSON."""
    return json.dumps(report.to_json(), indent=2, sort_keys=True, allow_nan=False) + "\n"


def _silent(_stage: str, _done: int, _total: int) -> None:
    """No progress to show."""


def _deploy(parts: Split, space: SearchSpace, result: SearchResult, options: SearchOptions,
            budget: Budget, reserve: int, pool: Pool, progress: Progress,
            standardization: Standardization | None
            ) -> tuple[SearchReport, dict[str, str | bytes]]:
    """Train (on `pool`), export, quantise and verify the winner and the baseline; their files.

    `reserve` is the firmware's SRAM beside the arena (firmware_reserve), and `parts` the
    samples as `standardization` made them, for the report.
    """

    def step(done: int) -> None:
        progress("deploy", done, len(DEPLOY_STEPS))

    step(0)
    arch, base = result.best.arch, result.baseline
    epochs = TrainingEpochs(*(training_epochs(row, parts, space, result.chosen)
                              for row in (budget.supernet_epochs, budget.final_epochs)))
    ours = training_jobs("winner", arch, epochs, result, options.seed)
    theirs = training_jobs("baseline", base, epochs, result, options.seed)
    saved = TrainedModels(options.checkpoint, options.resume, result.fingerprint)
    models = saved.trained([*ours, *theirs], parts, space, pool)
    ranked = ranking_samples(parts, space, result.chosen, options.seed)
    winner = _better(ours, models[:len(ours)], ranked)
    baseline = _better(theirs, models[len(ours):], ranked)
    step(1)
    test = at_most(parts.test, TEST_SAMPLES, options.seed, "test")
    with tempfile.TemporaryDirectory(prefix="mcuflow-search-") as scratch:
        found = _quantised(winner, space, parts.train, test, Path(scratch) / "model")
        reference = _quantised(baseline, space, parts.train, test, Path(scratch) / "baseline")
        found_analysis = _analysis(found.quantized, options)
        step(2)
        qemu = _qemu(found_analysis, options)
    step(3)
    train = parts.train
    labels = tuple(train.label(index) for index in range(train.classes))
    samples = sum(len(part.y) for part in (parts.train, parts.val, parts.test))
    report = SearchReport(train.name, samples, train.classes, labels, train.x.shape[1:],
                          train.stored_shape,
                          options.build.board.id,
                          options, budget, result, _deployed(found, found_analysis, options),
                          _deployed(reference, _analysis(reference.quantized, options), options),
                          qemu, epochs, reserve,
                          paired(test.y, found.accuracy.int8_answers,
                                 reference.accuracy.int8_answers), standardization)
    files: dict[str, str | bytes] = {
        "model.onnx": found.onnx, "model_int8.tflite": found.quantized.tflite(),
        "baseline.onnx": reference.onnx,
        "baseline_int8.tflite": reference.quantized.tflite()}
    return report, files


@dataclass(frozen=True)
class TrainingJob:
    """One model the deployment trains, on the training split, for `epochs`.

    The winner is fine-tuned from the supernet's weights (`supernet` given), the baseline
    trained from scratch (initialised from `seed`, which also shuffles its batches).
    """

    role: str
    arch: Arch
    epochs: float
    seed: int
    supernet: bytes | None

    @property
    def start(self) -> str:
        """Where its weights start: "supernet" (fine-tuned) or "scratch"."""
        return "scratch" if self.supernet is None else "supernet"

    def network(self, space: SearchSpace, input_channels: int, classes: int) -> nn.Module:
        """The model before its training."""
        from mcuflow.nas import supernet

        if self.supernet is None:
            return supernet.build_model(self.arch, space, input_channels, classes, self.seed)
        net = supernet.Supernet(space, self.arch.width, input_channels, classes)
        supernet.load_state(net, self.supernet)
        return supernet.extract(net, self.arch)


def train_job(parts: Split, space: SearchSpace, job: TrainingJob) -> bytes:
    """The weights (supernet.state_bytes) of `job`'s model trained on the training split.

    The unit of work of a worker: a function of its arguments only, trained on one thread.
    """
    from mcuflow.nas import supernet

    train = parts.train
    model = job.network(space, train.input_channels, train.classes)
    supernet.train_model(model, parts, job.arch.resolution, supernet.TrainBudget(job.epochs),
                         job.seed)
    return supernet.state_bytes(model)


@dataclass(frozen=True)
class TrainedModels:
    """The deployment's trained models, saved beside the search's checkpoint for --resume.

    Each goes to `<checkpoint stem>.<role>.pt` once trained: the SHA-256 of what its training
    depends on (the search's fingerprint, which holds the data, options and seed; the role,
    architecture and epochs), then its weights (supernet.state_bytes). A resumed deployment
    loads a model whose digest matches instead of training it again, so it writes the same
    files as an uninterrupted run. Without a checkpoint nothing is saved.
    """

    checkpoint: Path | None
    resume: bool
    fingerprint: str

    def trained(self, jobs: Sequence[TrainingJob], parts: Split, space: SearchSpace,
                pool: Pool) -> list[nn.Module]:
        """The models of `jobs`: loaded as a matching earlier run saved them, or trained.

        Those to train are trained by the pool at once (train_job), each as it would alone,
        the most epochs first: two workers given two trainings from scratch and then two
        fine-tunings finish together, where in the jobs' order one would train two from
        scratch after each other.
        """
        from mcuflow.nas import supernet

        train = parts.train
        models = [job.network(space, train.input_channels, train.classes) for job in jobs]
        states = [self._saved(job) for job in jobs]
        missing = sorted((index for index, state in enumerate(states) if state is None),
                         key=lambda index: -jobs[index].epochs)
        trained = pool.map(train_job, (pool.share(parts), space),
                           [(jobs[i],) for i in missing]) if missing else []
        for index, state in zip(missing, trained, strict=True):
            states[index] = state
            self._save(jobs[index], state)
        for model, state in zip(models, states, strict=True):
            assert state is not None
            supernet.load_state(model, state)
            model.eval()
        return models

    def _path_and_digest(self, job: TrainingJob) -> tuple[Path, bytes] | None:
        if self.checkpoint is None:
            return None
        digest = hashlib.sha256(
            f"{self.fingerprint}:{job.role}:{job.arch.key()}:{job.epochs!r}".encode()).digest()
        return self.checkpoint.with_suffix(f".{job.role}.pt"), digest

    def _saved(self, job: TrainingJob) -> bytes | None:
        """`job`'s weights as an earlier run of this search saved them, when resuming."""
        found = self._path_and_digest(job)
        if found is None or not self.resume or not found[0].is_file():
            return None
        saved = found[0].read_bytes()
        return saved[len(found[1]):] if saved[:len(found[1])] == found[1] else None

    def _save(self, job: TrainingJob, state: bytes) -> None:
        found = self._path_and_digest(job)
        if found is not None:
            write_file(found[0], found[1] + state, "checkpoint")


def training_jobs(role: str, arch: Arch, epochs: TrainingEpochs, result: SearchResult,
                  seed: int) -> tuple[TrainingJob, ...]:
    """The trainings of one final model, the better of which is deployed (_better).

    Fine-tuned from the supernet's weights for the `final` epochs where the supernet holds
    `arch` (the chosen space's width and resolution, and its layers: nas.space.held), and
    trained from scratch for the supernet's and the fine-tuning's epochs: the same starts for
    the found model and the baseline. A short supernet is a poor start: on a 20-class series
    after 1 supernet epoch, the found model fine-tuned for 2 reached 81.5 %, its architecture
    from scratch for 3 reached 99.5 %.
    """
    scratch = TrainingJob(f"{role}-scratch", arch, epochs.scratch,
                          derived_seed(seed, "scratch", arch), None)
    chosen = (result.chosen.width, result.chosen.resolution)
    if (arch.width, arch.resolution) != chosen or not held(arch, result.space):
        return (scratch,)
    return (TrainingJob(f"{role}-supernet", arch, epochs.final,
                        derived_seed(seed, "finetune", arch), result.supernet_state), scratch)


@dataclass(frozen=True)
class Trained:
    """A final model as trained from the start kept, and each start's validation accuracy."""

    arch: Arch
    model: nn.Module
    start: str
    val_accuracies: dict[str, float]


def _better(jobs: Sequence[TrainingJob], models: Sequence[nn.Module], ranked: Dataset
            ) -> Trained:
    """The model of higher float accuracy on `ranked` (the candidates' validation samples).

    On a tie the first job's (the supernet start where there is one).
    """
    from mcuflow.nas import supernet

    accuracies = {job.start: supernet.accuracy(model, ranked, job.arch.resolution)
                  for job, model in zip(jobs, models, strict=True)}
    best = max(range(len(jobs)), key=lambda index: accuracies[jobs[index].start])
    return Trained(jobs[best].arch, models[best], jobs[best].start, accuracies)


def derived_seed(seed: int, purpose: str, arch: Arch) -> int:
    """A stable 31-bit seed for one use of one architecture (the same on every machine)."""
    return stable_seed(seed, purpose, arch.key()) & 0x7FFF_FFFF


@dataclass(frozen=True)
class _Quantised:
    """A trained model exported to ONNX and quantised, scored on the test split."""

    trained: Trained
    macs: int
    onnx: bytes
    quantized: QuantizeResult
    accuracy: api.Accuracy


def _quantised(trained: Trained, space: SearchSpace, train: Dataset, test: Dataset,
               stem: Path) -> _Quantised:
    """Export the model (float ONNX), quantise it with mcuflow's PTQ, score it on `test`."""
    from mcuflow.nas import supernet

    arch, onnx = trained.arch, stem.with_suffix(".onnx")
    supernet.export_onnx(trained.model, train.input_channels, onnx)
    calibration = stem.with_name(f"{stem.name}_calibration.npz")
    np.savez(calibration, x=onnx_layout(train.x[:CALIBRATION_SAMPLES], arch, train.dims))
    quantized = api.load_quantized(onnx, api.QuantizeOptions(calibration=calibration))
    samples = Calibration({"": [onnx_layout(test.x, arch, test.dims)]})
    return _Quantised(trained, macs(arch, space, train.input_channels, train.classes),
                      onnx.read_bytes(), quantized, api.accuracy(quantized, samples, test.y))


def onnx_layout(x: np.ndarray, arch: Arch, dims: int) -> np.ndarray:
    """Samples (N x H x W x C or N x T x C) resized for `arch`, in the ONNX input's layout.

    The exported model takes NCHW images, or N x C x T series (Conv1d).
    """
    return channels_first(x, arch.resolution, dims)


def _analysis(quantized: QuantizeResult, options: SearchOptions) -> Analysis:
    """The plan and report of the int8 model on the board, planned as the fit check plans."""
    return analyze(quantized.graph, options.build, options.limits)


def _deployed(model: _Quantised, analysis: Analysis, options: SearchOptions) -> Deployed:
    graph = model.quantized.graph
    trained = model.trained
    return Deployed(trained.arch, fit_of(analysis, options.limits, model.macs),
                    model.accuracy.float32, model.accuracy.int8, model.accuracy.int8_balanced,
                    graph.tensors[graph.inputs[0]].shape, model.accuracy.samples,
                    trained.start, trained.val_accuracies)


def _qemu(analysis: Analysis, options: SearchOptions) -> QemuCheck:
    """Build the firmware for the board's core, linked in its SRAM and flash; run it on QEMU."""
    target = board_target(analysis.board, options.build.target)
    result = verify_cortexm(analysis.graph, analysis.plan, target, analysis.board,
                            QEMU_RUNS, options.seed)
    return QemuCheck(result.target, result.machine, result.bit_exact, result.runs,
                     result.instructions, result.flash_bytes, result.ram_bytes,
                     result.estimated_ms)
