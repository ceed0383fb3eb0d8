"""plot_arena draws a PNG of the plan."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg

from mcuflow.ir import zoo
from mcuflow.memory import plan_memory
from mcuflow.memory.plot import plot_arena


def test_arena_picture_is_a_png_with_the_buffers_drawn(tmp_path: Path) -> None:
    plan = plan_memory(zoo.resnet_like(16))
    path = plot_arena(plan, tmp_path / "arena.png")
    image = mpimg.imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 600
    assert len({tuple(pixel) for pixel in image.reshape(-1, image.shape[2])[::97]}) > 8


def test_peak_step_is_where_the_lower_bound_is_reached() -> None:
    plan = plan_memory(zoo.squeezenet_like(32))
    assert len(plan.step_bytes) == len(plan.steps)
    assert plan.step_bytes[plan.peak_step] == plan.lower_bound_bytes == max(plan.step_bytes)
