"""One tiny end-to-end search on digits for NUCLEO-F091RC, against LiteRT, ORT, planner, QEMU."""

from __future__ import annotations

import dataclasses
import html
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.preprocessing import StandardScaler

from mcuflow import api
from mcuflow.memory.patch_search import PatchRequest
from mcuflow.nas import pipeline
from mcuflow.nas.command import print_summary
from mcuflow.nas.data import Dataset, Layout, load_dataset, resize, split
from mcuflow.nas.fitcheck import firmware_reserve, limits_for
from mcuflow.nas.pipeline import (
    SearchReport,
    TrainedModels,
    TrainingJob,
    onnx_layout,
    paired,
    run_search,
)
from mcuflow.nas.report import render_report
from mcuflow.nas.search import (
    SearchOptions,
    budget_for,
    mobilenet_v2,
    ranking_samples,
    worker_pool,
)
from mcuflow.nas.space import Arch, default_space, smallest
from mcuflow.ref.interpreter import Interpreter
from tests.support import barometer_series, litert_interpreter, litert_invoke

torch = pytest.importorskip("torch")

BOARD = "nucleo-f091rc"
SEED = 0


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[SearchReport, Path]:
    torch.set_num_threads(1)
    scratch = tmp_path_factory.mktemp("search")
    build = api.build_for(BOARD)
    options = SearchOptions(build, limits_for(build, None, None, None), minutes=1, seed=SEED,
                            checkpoint=scratch / "search.checkpoint")
    out = scratch / "out"
    return run_search("digits", options, out), out


@pytest.fixture(scope="module")
def test_split() -> Dataset:
    return split(load_dataset("digits"), SEED).test


def test_files_and_report_fields(searched: tuple[SearchReport, Path]) -> None:
    report, out = searched
    for name in ("model.onnx", "model_int8.tflite", "report.json", "report.html"):
        assert (out / name).is_file(), name
    data = json.loads((out / "report.json").read_text())
    for key in ("accuracy", "baseline_accuracy", "float_accuracy", "baseline_float_accuracy",
                "arch", "pareto", "spaces", "found", "baseline", "qemu", "search", "budget",
                "seed", "workers", "generations"):
        assert key in data, key
    assert Arch.from_json(data["arch"]) == report.result.best.arch
    assert len(data["generations"]) == budget_for(1).generations
    assert sum(space["chosen"] for space in data["spaces"]) == 1
    assert data["class_labels"] == [str(label) for label in load_digits().target_names]
    rows, columns = load_digits().images.shape[1:]
    assert (data["layout"], data["sample_shape"]) == ("images", [rows, columns, 1])
    assert data["stored_shape"] is None  # read as stored
    assert data["input_standardization"] is None  # digits' pixels keep their int8 steps
    assert data["search"]["fit_checks"] >= data["search"]["evaluated"] > 0
    epochs = data["epochs"]  # from scratch, as many epochs as the supernet and fine-tuning
    assert epochs["scratch"] == epochs["supernet"] + epochs["final"] > epochs["final"]
    page = (out / "report.html").read_text()
    assert "<script" not in page and page.count("<svg") == 3
    assert (data["space"]["kernels"], data["space"]["expansions"]) == ([3, 5, 7], [3, 4, 6])
    assert "The space: kernels 3, 5, 7, expansions 3, 4, 6, widths 0.25, 0.35, 0.5" in page


def test_summary_names_the_data_and_a_found_model_slower_than_the_baseline(
        searched: tuple[SearchReport, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """The latency line (and the page's) is checked both ways: as run, and the models swapped."""
    report, out = searched
    images = load_digits().images
    swapped = dataclasses.replace(report, found=report.baseline, baseline=report.found)
    for shown in (report, swapped):
        print_summary(shown, out, report.options, Layout.AUTO)
        text = " ".join(capsys.readouterr().out.split())
        assert (f"data: {len(images):,} samples, {images.shape[1]} x {images.shape[2]} images "
                "of 1 channel, 10 classes digits on nucleo-f091rc: found vs baseline") in text
        found, baseline = shown.found.fit.latency_ms, shown.baseline.fit.latency_ms
        note = (f"latency is {found / baseline:.1f} times the baseline's: without --latency-ms "
                f"the search does not weigh latency (--latency-ms {baseline:.0f} keeps")
        assert (note in text) == (found > baseline), text
        page = html.unescape(render_report(shown))
        assert (f"<p>The found model's estimated {note}" in page) == (found > baseline)
    assert report.found.fit.latency_ms != report.baseline.fit.latency_ms
    photos = dataclasses.replace(report, sample_shape=(90, 120, 3), stored_shape=(480, 640, 3))
    print_summary(photos, out, report.options, Layout.AUTO)
    assert ("90 x 120 images of 3 channels (stored 480 x 640, read smaller: the SRAM limit "
            "holds no larger input)") in " ".join(capsys.readouterr().out.split())


def test_images_over_the_sram_limit_reach_the_search_read_smaller(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 96 x 128 RGB .npz for a 20,000 B --sram-budget is split read at 70 x 93 x 3."""
    x = np.random.default_rng(9).integers(0, 256, (40, 96, 128, 3), dtype=np.uint8)
    np.savez(tmp_path / "photos.npz", x=x, y=np.arange(40) % 2)
    loaded: list[Dataset] = []

    class Loaded(Exception):
        """Raised where the search would split what it loaded."""

    def stop(dataset: Dataset, seed: int) -> None:
        loaded.append(dataset)
        raise Loaded

    monkeypatch.setattr(pipeline, "split", stop)
    build = api.build_for(BOARD)
    options = SearchOptions(build, limits_for(build, 20_000, None, None), minutes=1, seed=SEED)
    with pytest.raises(Loaded):
        run_search(str(tmp_path / "photos.npz"), options, tmp_path / "out")
    assert (loaded[0].x.shape[1:], loaded[0].stored_shape) == ((70, 93, 3), (96, 128, 3))
    assert 70 * 93 * 3 <= 20_000 < 71 * 95 * 3  # 4:3 rows of 70 and 71: 93 and 95 columns


def test_int8_model_is_litert_exact_and_scored_as_reported(
        searched: tuple[SearchReport, Path], test_split: Dataset) -> None:
    report, out = searched
    _check_int8_model(report, out, test_split)
    assert report.found.int8_accuracy > 0.3, "the tiny search learnt nothing"


def _check_int8_model(report: SearchReport, out: Path, test: Dataset) -> None:
    """model_int8.tflite takes the test images as resized, runs as LiteRT does, scores so."""
    shape, runs = _litert_runs(out / "model_int8.tflite", report.found.arch.resolution, test)
    assert shape[1:] == runs[0][0].shape[1:]
    assert shape == report.found.input_shape
    ours = Interpreter(api.load_graph(out / "model_int8.tflite"))
    answers = []
    for x, expected in runs:
        np.testing.assert_array_equal(ours.run([x]).outputs[0], expected)
        answers.append(int(np.argmax(expected)))
    tolerance = 1 / len(test.y)  # an input that rounds the other way, at most one sample
    assert abs(accuracy_score(test.y, answers) - report.found.int8_accuracy) <= tolerance + 1e-9
    tolerance = 1 / np.bincount(test.y).min() / test.classes  # that sample's class's recall
    assert abs(balanced_accuracy_score(test.y, answers)
               - report.found.int8_balanced_accuracy) <= tolerance + 1e-9


def _litert_runs(model: Path, resolution: int, test: Dataset
                 ) -> tuple[tuple[int, ...], list[tuple[np.ndarray, np.ndarray]]]:
    """The .tflite's input shape, and each test sample with LiteRT's output for it.

    The samples are resized to `resolution` and quantised as the model takes them.
    """
    litert = litert_interpreter(model.read_bytes())
    detail = litert.get_input_details()[0]
    scale, zero_point = detail["quantization"]
    runs = []
    for image in resize(test.x, resolution, test.dims):
        x = np.clip(np.round(image / scale) + zero_point, -128, 127).astype(np.int8)[None]
        runs.append((x, litert_invoke(litert, [x])[0]))
    return tuple(detail["shape"]), runs


def _litert_answers(model: Path, resolution: int, test: Dataset) -> list[int]:
    """LiteRT's class for each test sample (see _litert_runs)."""
    return [int(np.argmax(output)) for _, output in _litert_runs(model, resolution, test)[1]]


def test_the_paired_comparison_counts_litert_answers(searched: tuple[SearchReport, Path],
                                                     test_split: Dataset) -> None:
    """report.json's paired counts are those of both .tflite files' answers under LiteRT."""
    report, out = searched
    found = np.array(_litert_answers(out / "model_int8.tflite", report.found.arch.resolution,
                                     test_split)) == test_split.y
    baseline = np.array(_litert_answers(out / "baseline_int8.tflite",
                                        report.baseline.arch.resolution, test_split)
                        ) == test_split.y
    data = json.loads((out / "report.json").read_text())["paired"]
    assert data["samples"] == len(test_split.y)
    # an input that rounds the other way changes one model's answer on at most one sample
    assert abs(data["found_only_right"] - int(np.sum(found & ~baseline))) <= 1
    assert abs(data["baseline_only_right"] - int(np.sum(baseline & ~found))) <= 1


def test_mcnemar_exact_p_values() -> None:
    """Hand-computed: 4 against 1 disagreements give 2 * P(X <= 1), X ~ B(5, 1/2)."""
    labels = np.zeros(10, np.int64)
    found = [0] * 9 + [1]  # right on samples 0-8
    baseline = [0] * 5 + [1] * 4 + [0]  # right on 0-4 and on 9
    result = paired(labels, found, baseline)
    assert (result.found_only_right, result.baseline_only_right) == (4, 1)
    assert result.p_value == pytest.approx(2 * 6 / 32)
    assert paired(labels, [0] * 10, [1] * 10).p_value == pytest.approx(2 / 2 ** 10)
    same = paired(labels, found, found)
    assert (same.found_only_right, same.baseline_only_right, same.p_value) == (0, 0, 1.0)
    assert "same ones" in same.summary() and "p = 0.38" in result.summary()


def test_images_keep_their_aspect(tmp_path: Path) -> None:
    """Digits' middle 8 x 4 columns: the found model reads R x R/2 images, LiteRT-exact.

    Saved as float N x 8 x 4, which --layout images reads as grey images (auto: as series).
    """
    torch.set_num_threads(1)
    digits = load_dataset("digits")
    np.savez(tmp_path / "halves.npz", x=digits.x[:, :, 2:6, 0], y=digits.y)
    build = api.build_for(BOARD)
    options = SearchOptions(build, limits_for(build, None, None, None), minutes=1, seed=SEED)
    report = run_search(str(tmp_path / "halves.npz"), options, tmp_path / "out",
                        layout=Layout.IMAGES)
    assert (report.layout, report.sample_form()) == (Layout.IMAGES, "8 x 4 images of 1 channel")
    resolution = report.found.arch.resolution
    assert report.result.space.input_size(resolution) == (resolution, resolution // 2)
    test = split(load_dataset(str(tmp_path / "halves.npz"), Layout.IMAGES), SEED).test
    assert resize(test.x, resolution, 2).shape[1:] == (resolution, resolution // 2, 1)
    _check_int8_model(report, tmp_path / "out", test)
    assert report.qemu.bit_exact and report.found.fit.fits


def test_series_far_from_zero_are_standardised_for_the_int8_input(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A pressure and a temperature: as they come, an int8 input blurs both to a step or two.

    Standardised as scikit-learn's StandardScaler does it on the training split, the int8
    models score as their float ones, LiteRT-exact, and the summary says what they take.
    """
    torch.set_num_threads(1)
    x, y = barometer_series(900, seed=2)
    path, out = tmp_path / "barometer.npz", tmp_path / "out"
    np.savez(path, x=x, y=y)
    build = api.build_for(BOARD)
    options = SearchOptions(build, limits_for(build, None, None, None), minutes=1, seed=SEED)
    report = run_search(str(path), options, out)
    parts = split(load_dataset(str(path)), SEED)
    scaler = StandardScaler().fit(parts.train.x.reshape(-1, 2))
    saved = json.loads((out / "report.json").read_text())["input_standardization"]
    np.testing.assert_allclose(saved["mean"], scaler.mean_, rtol=1e-6)
    np.testing.assert_allclose(saved["std"], scaler.scale_, rtol=1e-6)
    test = parts.test
    scaled = scaler.transform(test.x.reshape(-1, 2)).reshape(test.x.shape).astype(np.float32)
    _check_int8_model(report, out, dataclasses.replace(test, x=scaled))
    for model in (report.found, report.baseline):
        assert model.int8_accuracy >= model.float_accuracy - 0.05 > 0.5
    assert report.qemu.bit_exact
    print_summary(report, out, options, Layout.AUTO)
    text = " ".join(capsys.readouterr().out.split())
    assert "The models take x standardised per channel, (x - mean) / std" in text


def test_float_model_agrees_with_onnxruntime(searched: tuple[SearchReport, Path],
                                             test_split: Dataset) -> None:
    report, out = searched
    accuracy = _onnx_accuracy(out / "model.onnx", report.found.arch, test_split)
    assert abs(accuracy - report.found.float_accuracy) <= 1 / len(test_split.y) + 1e-9


def _onnx_accuracy(path: Path, arch: Arch, data: Dataset) -> float:
    """Top-1 accuracy of a float ONNX model on `data`, by onnxruntime."""
    session = ort.InferenceSession(str(path))
    x = onnx_layout(data.x, arch, data.dims)
    name = session.get_inputs()[0].name
    logits = np.concatenate([session.run(None, {name: sample[None]})[0] for sample in x])
    return float(np.mean(logits.argmax(axis=1) == data.y))


def test_each_model_deploys_its_start_of_higher_validation_accuracy(
        searched: tuple[SearchReport, Path]) -> None:
    """Each model deploys its start that scored highest on the ranked validation samples.

    Both starts of the winner (the supernet holds it) were tried; the deployed ONNX scores
    there, by onnxruntime, as the report says.
    """
    report, out = searched
    result = report.result
    ranked = ranking_samples(split(load_dataset("digits"), SEED), result.space, result.chosen,
                             SEED)
    assert len(ranked.y) == result.ranked_samples
    assert set(report.found.val_accuracies) == {"supernet", "scratch"}
    for model, onnx in ((report.found, "model.onnx"), (report.baseline, "baseline.onnx")):
        assert model.val_accuracies[model.start] == max(model.val_accuracies.values())
        accuracy = _onnx_accuracy(out / onnx, model.arch, ranked)
        assert abs(accuracy - model.val_accuracies[model.start]) <= 1 / len(ranked.y) + 1e-9


def test_found_model_fits_and_runs_bit_exact_on_qemu(searched: tuple[SearchReport, Path]
                                                     ) -> None:
    report, out = searched
    build = api.build_for(BOARD)
    limit = build.board.sram_bytes - firmware_reserve(build, default_space(2, 8), 1, 10)
    data = json.loads((out / "report.json").read_text())
    assert data["limits"]["sram_bytes"] + data["firmware_reserve_bytes"] == (
        build.board.sram_bytes)
    analysis = api.analyze_model(out / "model_int8.tflite", BOARD,
                                 patches=PatchRequest(sram_budget=limit))
    assert analysis.fits and analysis.plan.arena_bytes <= limit
    assert report.found.fit.fits
    assert report.found.fit.peak_ram_bytes == analysis.report.peak_ram_bytes
    assert report.found.fit.flash_bytes == analysis.report.flash_bytes
    assert report.qemu.target == "cortex-m0" and report.qemu.bit_exact
    assert report.qemu.flash_bytes <= analysis.board.flash_bytes
    assert report.qemu.ram_bytes <= analysis.board.sram_bytes


def test_a_resumed_deployment_loads_the_trained_models_and_writes_the_same_files(
        searched: tuple[SearchReport, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """--resume after a finished run trains nothing again, and writes the same models."""
    from mcuflow.nas import supernet

    report, out = searched

    def forbidden(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a resumed deployment trained a model again")

    monkeypatch.setattr(supernet, "train_model", forbidden)
    options = dataclasses.replace(report.options, limits=limits_for(
        report.options.build, None, None, None), resume=True)
    again = run_search("digits", options, tmp_path / "again")
    for name in ("model.onnx", "model_int8.tflite", "baseline.onnx", "baseline_int8.tflite"):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name
    assert again.found == report.found and again.baseline == report.baseline


class _CountingPool:
    """The in-process pool, counting the units of work it runs."""

    def __init__(self) -> None:
        self.runs = 0

    def share(self, value: object) -> object:
        return value

    def map(self, function: Callable[..., object], shared: tuple[object, ...],
            items: list[tuple[object, ...]]) -> list[object]:
        self.runs += len(items)
        return [function(*shared, *item) for item in items]


def _states(models: list[torch.nn.Module]) -> list[list[torch.Tensor]]:
    return [list(model.state_dict().values()) for model in models]


def _same(ours: list[list[torch.Tensor]], theirs: list[list[torch.Tensor]]) -> bool:
    return all(torch.equal(a, b) for x, y in zip(ours, theirs, strict=True)
               for a, b in zip(x, y, strict=True))


def test_trained_models_load_only_for_the_same_search_and_train_alike_on_ray(
        tmp_path: Path) -> None:
    """Saved models load for their own search, architecture and epochs; Ray trains alike.

    Two Ray workers train the winner and the baseline to the weights this process gives.
    """
    from mcuflow.nas.supernet import Supernet, state_bytes

    torch.set_num_threads(1)
    parts = split(load_dataset("digits"), SEED)
    space = default_space(2, 8)
    arch, base = smallest(space, 0.25, 8), mobilenet_v2(space, 0.25, 8)
    supernet = state_bytes(Supernet(space, 0.25, 1, 10))
    jobs = [TrainingJob("winner", arch, 0.1, 1, supernet), TrainingJob("baseline", base, 0.1, 2,
                                                                         None)]
    checkpoint, pool = tmp_path / "run.checkpoint", _CountingPool()
    first = TrainedModels(checkpoint, False, "a").trained(jobs, parts, space, pool)
    assert pool.runs == 2 and (tmp_path / "run.winner.pt").is_file()
    loaded = TrainedModels(checkpoint, True, "a").trained(jobs, parts, space, pool)
    assert pool.runs == 2 and not any(model.training for model in loaded)
    assert _same(_states(loaded), _states(first))
    other = [dataclasses.replace(jobs[0], arch=smallest(space, 0.25, 10)),
             dataclasses.replace(jobs[0], epochs=0.2)]
    for fingerprint, resume, job in (("b", True, jobs[0]), ("a", True, other[0]),
                                     ("a", True, other[1]), ("a", False, jobs[0])):
        TrainedModels(checkpoint, resume, fingerprint).trained([job], parts, space, pool)
    assert pool.runs == 6
    build = api.build_for(BOARD)
    options = SearchOptions(build, limits_for(build, None, None, None), workers=2)
    with worker_pool(options) as ray_pool:
        remote = TrainedModels(None, False, "a").trained(jobs, parts, space, ray_pool)
    assert _same(_states(remote), _states(first))
