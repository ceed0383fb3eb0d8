"""Picture of a plan: one rectangle per buffer, steps across, arena bytes up."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mcuflow.analysis.plots import new_figure, save_figure
from mcuflow.memory.plan import Plan

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def plot_arena(plan: Plan, path: str | Path, staging_bytes: int = 0) -> Path:
    """Draw the arena over time to `path` (PNG, SVG, PDF... by suffix), scratch hatched.

    An out-of-core plan's staging buffer (`staging_bytes`, static storage beside the arena) is
    drawn above it, with a mark at each step reading its constants from the external tier;
    a plan spilling activations gets a mark at each step writing to and reading back from its
    spill tier.
    """
    import matplotlib
    from matplotlib.patches import Rectangle

    figure = new_figure(10, 5)
    axes = figure.add_subplot()
    colours = matplotlib.colormaps["tab20"]
    for index, buffer in enumerate(sorted(plan.buffers.values(), key=lambda b: b.name)):
        width = buffer.last_step - buffer.first_step + 1
        axes.add_patch(Rectangle(
            (buffer.first_step - 0.5, buffer.offset), width, buffer.size,
            facecolor="none" if buffer.is_scratch else colours(index % 20),
            edgecolor="black", linewidth=0.4, hatch="///" if buffer.is_scratch else None,
            alpha=0.8))
    steps = max(len(plan.steps), 1)
    axes.axhline(plan.arena_bytes, color="red", linewidth=1,
                 label=f"arena {plan.arena_bytes:,} B")
    axes.axhline(plan.lower_bound_bytes, color="grey", linestyle="--", linewidth=1,
                 label=f"lower bound {plan.lower_bound_bytes:,} B")
    if plan.external is not None and staging_bytes:
        _draw_staging(axes, plan, staging_bytes)
    if plan.spilled:
        _draw_spills(axes, plan)
    axes.set_xlim(-0.5, steps - 0.5)
    axes.set_ylim(0, max(plan.arena_bytes + staging_bytes, 1) * 1.05)
    axes.set_xlabel("step")
    axes.set_ylabel("arena offset (bytes)")
    axes.set_title(f"{plan.graph.name}: memory plan")
    axes.legend(loc="center right")
    figure.tight_layout()
    save_figure(figure, Path(path))
    return Path(path)


def _draw_staging(axes: Axes, plan: Plan, staging_bytes: int) -> None:
    """The staging buffer above the arena; a tick per step whose chunk is read into it."""
    from matplotlib.patches import Rectangle

    tier = plan.external.tier if plan.external else ""
    axes.add_patch(Rectangle((-0.5, plan.arena_bytes), len(plan.steps), staging_bytes,
                             facecolor="lightgrey", edgecolor="black", linewidth=0.4,
                             label=f"staging {staging_bytes:,} B (constants from {tier})"))
    steps = sorted(plan.external.steps) if plan.external else []
    axes.plot(steps, [plan.arena_bytes + staging_bytes / 2] * len(steps), "|", color="black",
              markersize=6)


def _draw_spills(axes: Axes, plan: Plan) -> None:
    """Marks along the bottom at the steps writing (down) and reading back (up) spilled rows."""
    tier = plan.spill_tier.kind.value if plan.spill_tier is not None else "external storage"
    ops = [plan.graph.operators[step.op_index] for step in plan.steps]
    writes = [i for i, op in enumerate(ops) if plan.spilled.intersection(op.outputs)]
    reads = [i for i, op in enumerate(ops) if plan.spilled.intersection(op.inputs)]
    low = plan.arena_bytes * 0.02
    axes.plot(writes, [low] * len(writes), "v", color="darkred", markersize=4,
              label=f"rows written to {tier} ({len(writes)} steps)")
    axes.plot(reads, [low] * len(reads), "^", color="darkblue", markersize=4,
              label=f"rows read back from {tier} ({len(reads)} steps)")
