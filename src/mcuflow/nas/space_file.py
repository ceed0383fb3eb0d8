"""A search space's choices from a user's TOML file (`mcuflow search --space`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcuflow.errors import McuflowError
from mcuflow.frontends.files import read_toml
from mcuflow.nas.space import SearchSpace, Stage

MAX_SPACE_FILE_BYTES = 64 << 10
"""A space file holds a few lists and stage tables in a few hundred bytes."""
MAX_SPACE_DEPTH = 3
"""Nesting of tables and arrays: the file, `stages`, a stage."""
HINT = "see 'Your own search space' in the README for the keys and their ranges"
MOST_STAGES = 8
MOST_DEPTH = 8
MOST_CHANNELS = 1024


@dataclass(frozen=True)
class SpaceEdits:
    """The choices a space file sets; each None keeps the one chosen for the data."""

    kernels: tuple[int, ...] | None = None
    expansions: tuple[int, ...] | None = None
    widths: tuple[float, ...] | None = None
    resolutions: tuple[int, ...] | None = None
    stages: tuple[Stage, ...] | None = None
    stem_channels: int | None = None
    stem_stride: int | None = None
    head_channels: int | None = None

    def applied(self, space: SearchSpace) -> SearchSpace:
        """`space` with the choices this file sets."""
        changes = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                   if getattr(self, field.name) is not None}
        return dataclasses.replace(space, **changes)


def read_space(path: Path) -> SpaceEdits:
    """The choices of the space file `path`, each checked (one clear error for the first wrong).

    Lists are kept sorted and must not repeat a value: kernels odd from 1 to 9, expansions 1 to
    8, widths above 0 up to 4, resolutions (rows of an image, steps of a series) 4 to 512;
    `stages` a list of 1 to 8 tables of channels (before the width), min_depth and max_depth
    (1 to 8) and stride (1 or 2); stem_channels 1 to 1024, stem_stride 1 or 2, head_channels 0
    (none) to 1024.
    """
    where = f"space file {path}"
    data = read_toml(path, where, HINT, MAX_SPACE_FILE_BYTES, MAX_SPACE_DEPTH)
    unknown = sorted(set(data) - set(_READERS))
    if unknown:
        raise McuflowError(f"{where}: unknown key '{unknown[0]}'",
                           f"known keys: {', '.join(_READERS)}")
    return SpaceEdits(**{key: _READERS[key](where, key, value) for key, value in data.items()})


def _options(low: float, high: float, kind: type, odd: bool = False
             ) -> Callable[[str, str, Any], tuple[Any, ...]]:
    """A reader of a list of distinct numbers of `kind` in [low, high] (above 0: low 0)."""
    def read(where: str, key: str, value: Any) -> tuple[Any, ...]:
        wanted = (f"a list of distinct {'odd ' if odd else ''}"
                  f"{'integers' if kind is int else 'numbers'} from {low:g} to {high:g}")
        if low == 0:
            wanted = f"a list of distinct numbers above 0 up to {high:g}"
        good = (isinstance(value, list) and value
                and all(_number(item, kind) and low <= item <= high and item != 0
                        and (not odd or item % 2 == 1) for item in value)
                and len(set(value)) == len(value))
        if not good:
            raise McuflowError(f"{where}: {key} must be {wanted}, got {value!r}",
                               f"e.g. {key} = {_EXAMPLES[key]}")
        return tuple(sorted(kind(item) for item in value))
    return read


def _number(value: Any, kind: type) -> bool:
    """True for an int (any int where floats are asked), never a bool."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (kind is float and isinstance(value, float))


def _integer(low: int, high: int) -> Callable[[str, str, Any], int]:
    """A reader of one integer in [low, high]."""
    def read(where: str, key: str, value: Any) -> int:
        if not (_number(value, int) and low <= value <= high):
            raise McuflowError(f"{where}: {key} must be an integer from {low} to {high}, got "
                               f"{value!r}", f"e.g. {key} = {_EXAMPLES[key]}")
        return int(value)
    return read


_STAGE_KEYS = {"channels": _integer(1, MOST_CHANNELS), "min_depth": _integer(1, MOST_DEPTH),
               "max_depth": _integer(1, MOST_DEPTH), "stride": _integer(1, 2)}


def _stages(where: str, key: str, value: Any) -> tuple[Stage, ...]:
    """The [[stages]] tables, each with every one of _STAGE_KEYS."""
    if not (isinstance(value, list) and 1 <= len(value) <= MOST_STAGES
            and all(isinstance(item, dict) for item in value)):
        raise McuflowError(f"{where}: stages must be 1 to {MOST_STAGES} [[stages]] tables, got "
                           f"{value!r}", f"e.g. {_EXAMPLES[key]}")
    return tuple(_stage(f"{where}, stage {index + 1}", table) for index, table in
                 enumerate(value))


def _stage(where: str, table: dict[str, Any]) -> Stage:
    """One stage table: channels, min_depth, max_depth, stride, and nothing else."""
    keys = ", ".join(_STAGE_KEYS)
    if set(table) != set(_STAGE_KEYS):
        raise McuflowError(f"{where}: a stage has exactly the keys {keys}, got "
                           f"{', '.join(table) or 'none'}", f"e.g. {_EXAMPLES['stages']}")
    stage = Stage(**{name: read(where, name, table[name]) for name, read in _STAGE_KEYS.items()})
    if stage.min_depth > stage.max_depth:
        raise McuflowError(f"{where}: min_depth {stage.min_depth} is above max_depth "
                           f"{stage.max_depth}", "a stage runs min_depth to max_depth blocks")
    return stage


_READERS: dict[str, Callable[[str, str, Any], Any]] = {
    "kernels": _options(1, 9, int, odd=True), "expansions": _options(1, 8, int),
    "widths": _options(0, 4, float), "resolutions": _options(4, 512, int),
    "stages": _stages, "stem_channels": _integer(1, MOST_CHANNELS),
    "stem_stride": _integer(1, 2), "head_channels": _integer(0, MOST_CHANNELS),
}
_EXAMPLES = {
    "kernels": "[3, 5, 7]", "expansions": "[3, 4, 6]", "widths": "[0.5, 0.75, 1.0]",
    "resolutions": "[32, 48, 64]", "stem_channels": "16", "stem_stride": "2",
    "head_channels": "0", "channels": "24", "min_depth": "1", "max_depth": "3", "stride": "2",
    "stages": "[[stages]] channels = 16, min_depth = 1, max_depth = 2, stride = 1",
}
