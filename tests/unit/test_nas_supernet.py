"""nas.supernet against torch, onnxruntime, mcuflow's ONNX import and arch_graph, and digits.

Extracted subnets compute what the supernet computes; the ONNX export runs the same in
onnxruntime and imports (PTQ) to arch_graph's layers; training is deterministic and learns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mcuflow import api
from mcuflow.errors import McuflowError
from mcuflow.ir.graph import Graph
from mcuflow.nas.data import Split, load_dataset, resize, split
from mcuflow.nas.space import (
    SearchSpace,
    Stage,
    arch_graph,
    default_space,
    largest,
    sample,
    smallest,
)

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from mcuflow.nas.supernet import (  # noqa: E402
    Supernet,
    TrainBudget,
    accuracy,
    build_model,
    export_onnx,
    extract,
    load_state,
    recalibrate_bn,
    state_bytes,
    train_model,
    train_supernet,
)

IMAGES = SearchSpace(2, (Stage(16, 1, 2, 1), Stage(24, 1, 2, 2)), kernels=(3, 5, 7),
                     expansions=(1, 3, 6), resolutions=(8, 10), head_channels=32)
SERIES = SearchSpace(1, (Stage(16, 1, 2, 2), Stage(24, 1, 3, 2)), kernels=(3, 7),
                     expansions=(3, 4), resolutions=(24, 40), stem_stride=2)
STRIDED = SearchSpace(2, (Stage(16, 1, 2, 2), Stage(24, 1, 2, 2)), 0.5, kernels=(3, 5),
                      expansions=(3, 6), resolutions=(12, 15), stem_stride=2)
"""A space as strided() makes them for larger images (the stem and every stage halve), of
images half as wide as tall."""
DIGITS = default_space(2, 8)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors: threads only add overhead (and oneDNN set-up time) on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> Split:
    return split(load_dataset("digits"), seed=0)


def _scramble_batch_norms(net: torch.nn.Module, seed: int) -> None:
    """Random statistics and affine parameters, so copying them wrongly shows."""
    generator = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            for tensor in (module.weight.data, module.bias.data, module.running_mean):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator)
                                     + 0.5)


@pytest.mark.parametrize("space", [IMAGES, SERIES], ids=["images", "series"])
def test_extracted_subnets_compute_what_the_supernet_computes(space: SearchSpace) -> None:
    net = Supernet(space, 0.75, 2, 5, seed=1)
    _scramble_batch_norms(net, 2)
    net.eval()
    rng = np.random.default_rng(3)
    resolution = space.resolutions[0]
    archs = [largest(space, 0.75, resolution), smallest(space, 0.75, resolution)]
    archs += [sample(space, rng, 0.75, resolution) for _ in range(2)]
    x = torch.randn(6, 2, *space.input_size(resolution), generator=torch.Generator().manual_seed(4))
    outputs = []
    for arch in archs:
        net.set_active(arch)
        expected = net(x)
        model = extract(net, arch).eval()
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
        outputs.append(expected)
    assert not torch.allclose(outputs[0], outputs[1])  # the subnets do differ


@pytest.mark.parametrize("space", [IMAGES, SERIES, STRIDED], ids=["images", "series", "strided"])
def test_onnx_export_runs_the_same_in_onnxruntime(space: SearchSpace, tmp_path: Path) -> None:
    arch = sample(space, np.random.default_rng(5), 0.5, space.resolutions[-1])
    model = build_model(arch, space, 3, 4, seed=6)
    _scramble_batch_norms(model, 7)
    export_onnx(model, 3, tmp_path / "model.onnx")
    x = np.random.default_rng(8).standard_normal((1, 3, *space.input_size(arch.resolution)))
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    (logits,) = session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(x.astype(np.float32))).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("space", [IMAGES, SERIES, STRIDED], ids=["images", "series", "strided"])
def test_quantised_export_has_arch_graphs_operators(space: SearchSpace, tmp_path: Path) -> None:
    arch = largest(space, 0.5, space.resolutions[0])
    model = build_model(arch, space, 1, 3, seed=0)
    export_onnx(model, 1, tmp_path / "model.onnx")
    samples = np.random.default_rng(0).random((4, 1, *space.input_size(arch.resolution)))
    np.savez(tmp_path / "calibration.npz", x=samples.astype(np.float32))
    imported = api.load_graph(tmp_path / "model.onnx",
                              api.QuantizeOptions(calibration=tmp_path / "calibration.npz"))
    planned = arch_graph(arch, space, 1, 3)

    def layers(graph: Graph) -> list[tuple[str, tuple[int, ...]]]:
        return [(op.kind.name, graph.tensors[op.outputs[0]].shape) for op in graph.operators]

    assert layers(imported) == layers(planned)


def test_recalibration_measures_the_samples_statistics(digits: Split) -> None:
    arch = smallest(IMAGES, 0.5, 8)
    model = build_model(arch, IMAGES, 1, 10, seed=0)
    x = digits.train.x[:512]
    recalibrate_bn(model, x, seed=0, batches=8)
    stem, bn = model.features[0], model.features[1]
    with torch.no_grad():
        features = stem(torch.from_numpy(np.moveaxis(x, -1, 1).copy()))
    torch.testing.assert_close(bn.running_mean, features.mean(dim=(0, 2, 3)), atol=1e-5,
                               rtol=1e-4)
    assert not model.training


def test_state_bytes_round_trip_and_mismatch() -> None:
    net = Supernet(IMAGES, 0.5, 1, 10, seed=1)
    _scramble_batch_norms(net, 1)
    fresh = Supernet(IMAGES, 0.5, 1, 10, seed=2)
    load_state(fresh, state_bytes(net))
    assert state_bytes(fresh) == state_bytes(net)
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(fresh.eval()(x), net.eval()(x), rtol=0, atol=0)
    with pytest.raises(McuflowError, match="do not match"):
        load_state(Supernet(IMAGES, 1.0, 1, 10), state_bytes(net))


def test_supernet_training_is_deterministic(digits: Split) -> None:
    small = dataclasses.replace(digits, train=digits.train.subset(np.arange(100)))
    states = []
    for seed in (0, 0, 1):
        net = Supernet(IMAGES, 0.25, 1, 10)
        train_supernet(net, IMAGES, small, 8, TrainBudget(epochs=1), seed=seed)
        states.append(state_bytes(net))
    assert states[0] == states[1] and states[0] != states[2]


def test_sandwich_training_teaches_small_and_large_subnets(digits: Split) -> None:
    net = Supernet(DIGITS, 0.5, 1, 10)
    train_supernet(net, DIGITS, digits, 8, TrainBudget(epochs=3), seed=0)
    x = resize(digits.train.x, 8, 2)
    for arch in (largest(DIGITS, 0.5, 8), smallest(DIGITS, 0.5, 8)):
        model = extract(net, arch)
        recalibrate_bn(model, x, seed=0)
        assert accuracy(model, digits.val, 8) > 0.8, arch.key()


def test_plain_training_learns_digits_at_another_resolution(digits: Split) -> None:
    arch = sample(DIGITS, np.random.default_rng(0), 0.5, 12)
    model = build_model(arch, DIGITS, 1, 10, seed=0)
    before = accuracy(model, digits.test, 12)
    train_model(model, digits, 12, TrainBudget(epochs=3), seed=0)
    with torch.no_grad():
        logits = model(torch.from_numpy(np.moveaxis(resize(digits.test.x, 12, 2), -1, 1).copy()))
    after = float((logits.argmax(dim=1).numpy() == digits.test.y).mean())
    assert accuracy(model, digits.test, 12) == after
    assert before < 0.3 < 0.9 < after


def test_a_short_training_leaves_batch_norm_the_training_samples_statistics(
        digits: Split) -> None:
    """After four batches, batch norm holds the training samples' statistics.

    Its running averages would still be near their initial 0 and 1.
    """
    model = build_model(smallest(DIGITS, 0.5, 8), DIGITS, 1, 10, seed=0)
    train_model(model, digits, 8, TrainBudget(epochs=0.25), seed=0)
    stem, bn = model.features[0], model.features[1]
    with torch.no_grad():
        features = stem(torch.from_numpy(np.moveaxis(digits.train.x, -1, 1).copy()))
    mean, variance = features.mean(dim=(0, 2, 3)), features.var(dim=(0, 2, 3))
    assert torch.all((bn.running_mean - mean).abs() < 0.2 * variance.sqrt())
    assert torch.all((bn.running_var - variance).abs() < 0.2 * variance)


class _CountingNet(torch.nn.Module):
    """A linear classifier counting the training batches it sees."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(features, classes)
        self.batches = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches += self.training
        return self.linear(x.flatten(1))


@pytest.mark.parametrize(("epochs", "batches"), [(2, 2 * 17), (0.25, 4), (0.001, 1)])
def test_training_runs_the_budgets_share_of_batches(digits: Split, epochs: float,
                                                    batches: int) -> None:
    """Digits' 1,078 training samples are 17 batches of 64 (the last of 54)."""
    model = _CountingNet(64, 10)
    train_model(model, digits, 8, TrainBudget(epochs=epochs), seed=0)
    assert model.batches == batches
