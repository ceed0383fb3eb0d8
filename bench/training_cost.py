"""Training-cost benchmark: a training step's time fitted on generated architectures, then checked.

Fit (--fit): architectures of spaces generated here (images and series of sizes and channel
counts that are neither digits' 8 x 8 nor MNIST-1D's 40 steps; the largest, the smallest and
random ones at each width and resolution drawn), each trained for a few steps of a batch of
TRAIN_BATCH on one thread (PyTorch on the CPU, as the search's workers train) on data with a
learnable class pattern; the milliseconds of a step fitted per layout by non-negative least
squares on the relative error over nas.space.Work's terms; --write stores them in
src/mcuflow/nas/training_cost.toml.

Check (default): for whole training runs (an epoch of each largest architecture the table's
reference, digits, MNIST-1D and a 49 x 10 keyword-spotting-like series imply), the measured
epoch time over the reference's (REFERENCE_ARCH on REFERENCE_SAMPLES digits) beside the
fitted model's ratio and the ratio by MACs alone (what training_epochs took before).

Run: .venv/bin/python bench/training_cost.py [--fit [--write]] [--seed S]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import nnls
from torch.nn import functional

from mcuflow.nas import supernet
from mcuflow.nas.data import TRAIN_BATCH, channels_first, load_dataset, split
from mcuflow.nas.search import REFERENCE_ARCH, REFERENCE_SAMPLES
from mcuflow.nas.space import (
    Arch,
    SearchSpace,
    Work,
    default_space,
    largest,
    sample,
    smallest,
    work,
)
from mcuflow.nas.training_cost import COSTS_FILE, LAYOUTS, StepCost, step_ms

CLASSES = 10
SWEEP = {2: ((12, 1), (20, 3), (24, 1), (32, 3), (48, 3), (64, 1)),
         1: ((32, 1), (64, 3), (100, 6), (128, 2), (256, 9), (60, 12))}
"""(native size, channels) of the generated spaces, per dims."""
WARM_STEPS, TIMED_STEPS = 3, 10


def learnable(dims: int, shape: tuple[int, ...], count: int, seed: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` channels-first samples of `shape`: a class pattern plus noise, and labels."""
    rng = np.random.default_rng(seed)
    patterns = rng.uniform(0, 1, (CLASSES, *shape)).astype(np.float32)
    y = rng.integers(0, CLASSES, count)
    x = patterns[y] + rng.normal(0, 0.3, (count, *shape)).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def step_time(arch: Arch, space: SearchSpace, channels: int, seed: int,
              data: tuple[torch.Tensor, torch.Tensor] | None = None) -> float:
    """Measured milliseconds of a plain training step of `arch` (the median of TIMED_STEPS).

    On `data` (channels-first samples and labels, at least 4 batches) or on `learnable` data.
    """
    model = supernet.build_model(arch, space, channels, CLASSES, seed)
    size = space.input_size(arch.resolution)
    x, y = data or learnable(space.dims, (channels, *size), TRAIN_BATCH * 4, seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    times = []
    for step in range(WARM_STEPS + TIMED_STEPS):
        batch = slice((step % 4) * TRAIN_BATCH, (step % 4 + 1) * TRAIN_BATCH)
        started = time.perf_counter()
        optimiser.zero_grad()
        functional.cross_entropy(model(x[batch]), y[batch]).backward()
        optimiser.step()
        times.append(time.perf_counter() - started)
    return float(np.median(times[WARM_STEPS:]) * 1000)


@dataclass(frozen=True)
class Measured:
    dims: int
    arch: str
    work: Work
    ms: float


def sweep(seed: int) -> list[Measured]:
    """Step times of the generated architectures (see the module)."""
    rng = np.random.default_rng(seed)
    found = []
    for dims, spaces in SWEEP.items():
        for native, channels in spaces:
            space = default_space(dims, native)
            for draw in range(4):
                width = float(rng.choice(space.widths))
                resolution = int(rng.choice(space.resolutions))
                arch = (largest(space, width, resolution), smallest(space, width, resolution),
                        sample(space, rng, width, resolution),
                        sample(space, rng, width, resolution))[draw]
                measured = Measured(dims, arch.key(), work(arch, space, channels, CLASSES),
                                    step_time(arch, space, channels, seed))
                print(f"{LAYOUTS[dims]:7s} {native:4d} x{channels:<3d} {arch.key():60s} "
                      f"{measured.ms:8.1f} ms", flush=True)
                found.append(measured)
    return found


def terms(work_: Work) -> list[float]:
    """The fitted terms of a step in StepCost's field order."""
    return [1.0, work_.layers, TRAIN_BATCH * work_.dense_macs,
            TRAIN_BATCH * work_.depthwise_macs, TRAIN_BATCH * work_.elements]


def fit(measured: list[Measured]) -> dict[int, StepCost]:
    """Non-negative least squares of each layout's step times on the relative error."""
    costs = {}
    for dims in LAYOUTS:
        rows = [m for m in measured if m.dims == dims]
        a = np.array([terms(m.work) for m in rows]) / np.array([[m.ms] for m in rows])
        coefficients, _ = nnls(a, np.ones(len(rows)))
        costs[dims] = StepCost(*coefficients.tolist())
        ratios = a @ coefficients
        print(f"{LAYOUTS[dims]}: {len(rows)} architectures, predicted / measured "
              f"{ratios.min():.2f}..{ratios.max():.2f}")
    return costs


def reference() -> tuple[Arch, SearchSpace, Work]:
    """The search's reference architecture (REFERENCE_ARCH), its space and Work."""
    native, width, resolution = REFERENCE_ARCH
    space = default_space(2, native)
    arch = largest(space, width, resolution)
    return arch, space, work(arch, space, 1, CLASSES)


def digits_share(costs: dict[int, StepCost], seed: int) -> float:
    """A step of the reference on digits' training samples, measured over the fitted model's."""
    arch, space, done = reference()
    train = split(load_dataset("digits"), seed).train
    data = torch.from_numpy(channels_first(train.x, arch.resolution, 2)), torch.from_numpy(train.y)
    measured = step_time(arch, space, 1, seed, data)
    predicted = costs[2].ms(done, TRAIN_BATCH)
    print(f"reference on digits: {measured:.1f} ms measured, {predicted:.1f} ms predicted")
    return measured / predicted


def write(costs: dict[int, StepCost], share: float) -> None:
    """Store the coefficients and the reference's share where training_cost reads them."""
    path = Path(__file__).resolve().parents[1] / "src" / "mcuflow" / "nas" / COSTS_FILE
    lines = ["# Milliseconds of a training step, fitted by bench/training_cost.py --fit --write."]
    for dims, layout in LAYOUTS.items():
        lines += ["", f"[{layout}]"]
        lines += [f"{field.name} = {getattr(costs[dims], field.name)!r}"
                  for field in fields(StepCost)]
    lines += ["", "[reference]", f"share = {share!r}"]
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


CHECKS = (("reference: digits 8 x 8, largest", 2, 8, 1, REFERENCE_ARCH[1:], REFERENCE_SAMPLES),
          ("digits 8 x 8 at width 1, res 16", 2, 8, 1, (1.0, 16), REFERENCE_SAMPLES),
          ("MNIST-1D 40 steps, width 1", 1, 40, 1, (1.0, 40), 3000),
          ("keyword spotting 49 x 10, width 1", 1, 49, 10, (1.0, 49), 14400),
          ("32 x 32 RGB, width 0.5, res 32", 2, 32, 3, (0.5, 32), 18000))


def check(seed: int) -> None:
    """Epoch times over the reference's: measured, fitted and by MACs (see the module)."""
    reference = None
    for name, dims, native, channels, (width, resolution), samples in CHECKS:
        space = default_space(dims, native)
        arch = largest(space, width, resolution)
        done = work(arch, space, channels, CLASSES)
        batches = -(-samples // TRAIN_BATCH)
        row = (batches * step_time(arch, space, channels, seed),
               batches * step_ms(done, dims, TRAIN_BATCH), samples * done.macs)
        reference = reference or row
        measured, fitted, by_macs = (ours / theirs for ours, theirs in zip(row, reference,
                                                                           strict=True))
        print(f"{name:36s} epoch / reference's: measured {measured:6.2f}, fitted "
              f"{fitted:6.2f} ({fitted / measured:4.2f}x), by MACs {by_macs:6.2f} "
              f"({by_macs / measured:4.2f}x)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.fit:
        costs = fit(sweep(args.seed))
        for dims, cost in costs.items():
            print(LAYOUTS[dims], cost)
        share = digits_share(costs, args.seed)
        if args.write:
            write(costs, share)
        return 0
    check(args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
