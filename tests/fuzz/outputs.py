"""Hostile output paths, through the real writers of `compile -o`, `--plot` and `quantize -o`.

An input is a scenario (JSON): what already stands at and around the output path — nothing, an
empty folder, an earlier mcuflow output, the same with files the user added or changed, a
forged or corrupt manifest, links to a file or a folder outside, a FIFO, a plain file, a file
where a parent folder should be, look-alike leftovers of killed runs — and the write to make
(a whole output directory, with or without --force, or one file). The writers must succeed or
refuse with an McuflowError, and whatever happens:
- nothing outside the output path changes: the victim file and folder outside, every file the
  scenario marks as the user's, every look-alike leftover;
- a refused write leaves no new entry beside or inside the output path;
- a successful one leaves exactly the files it wrote (plus the user's, kept, under --force).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mcuflow.outputs import MANIFEST, write_directory, write_file
from tests.fuzz.harness import FuzzInput, Limits, Outcome, classify

DEFAULT_LIMITS = Limits()
EXISTING = ("none", "empty", "output", "file", "link-file", "link-dir", "fifo", "user-dir",
            "deep")
DAMAGE = ("add-file", "add-dir", "change-file", "manifest-garbage", "manifest-forged",
          "manifest-escape", "listed-link", "listed-dir", "listed-fifo", "drop-file",
          "look-alike", "product")
OPERATIONS = ("directory", "directory-force", "file")


class BrokenPromise(Exception):
    """A writer changed what it must not touch, or left something behind."""


@dataclass
class Scenario:
    """What stands at and around the output path, and the write to make."""

    existing: str
    damage: list[str]
    operation: str
    names: list[str]
    nested: bool
    seed: int

    @staticmethod
    def parse(data: bytes) -> Scenario:
        """The scenario of an input; a malformed one is replaced by the simplest."""
        try:
            raw = json.loads(data)
            return Scenario(str(raw["existing"]), [str(d) for d in raw["damage"]][:8],
                            str(raw["operation"]), [_plain(n) for n in raw["names"]][:12] or
                            ["a.c"], bool(raw["nested"]), int(raw["seed"]))
        except (ValueError, KeyError, TypeError):
            return Scenario("none", [], "directory", ["a.c"], False, 0)


def _plain(name: object) -> str:
    text = "".join(c for c in str(name) if c.isalnum() or c in "._-")[:40].strip(".")
    return text if text and text != MANIFEST else "x.c"


@dataclass
class _Sandbox:
    """A scratch tree: `work/` holds the output path; `outside/` must never change."""

    root: Path
    user: dict[Path, bytes] = field(default_factory=dict)
    changed: dict[Path, bytes] = field(default_factory=dict)

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    def user_file(self, path: Path, data: bytes) -> None:
        """A file of the user's, which no write may change."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.user[path] = data

    def changed_file(self, path: Path, data: bytes) -> None:
        """One of mcuflow's files that the user changed: only --force may replace it."""
        path.write_bytes(data)
        self.changed[path] = data


def _snapshot(directory: Path) -> dict[str, bytes | str]:
    found: dict[str, bytes | str] = {}
    for path in sorted(directory.rglob("*")):
        key = str(path.relative_to(directory))
        if path.is_symlink():
            found[key] = "link:" + os.readlink(path)
        elif path.is_fifo():
            found[key] = "fifo"
        elif path.is_file():
            found[key] = path.read_bytes()
        else:
            found[key] = "dir"
    return found


class _OutputPipeline:
    """Build the scenario's tree, make the write, then check every promise."""

    def __init__(self) -> None:
        self.stage = "write"

    def execute(self, data: bytes) -> None:
        scenario = Scenario.parse(data)
        with tempfile.TemporaryDirectory(prefix="mcuflow-fuzz-") as scratch:
            box = _Sandbox(Path(scratch))
            target = _build(box, scenario)
            outside, before = _snapshot(box.outside), _snapshot(box.work)
            files = {name: f"{name} of run {scenario.seed}\n" for name in scenario.names}
            try:
                self.stage = "write"
                _write(scenario, target, files)
            except BaseException:
                self.stage = "refused"
                _check_untouched(box, outside, box.changed)
                _check_nothing_new(box, before)
                raise
            self.stage = "written"
            forced = scenario.operation == "directory-force"
            if scenario.operation == "file":
                box.user.pop(target, None)  # overwriting the file named is the write asked for
            _check_untouched(box, outside, {} if forced else box.changed)
            _check_written(scenario, target, files)


def _write(scenario: Scenario, target: Path, files: dict[str, str]) -> None:
    if scenario.operation == "file":
        write_file(target, "".join(files.values()).encode(), "output")
    else:
        write_directory(files, target, force=scenario.operation == "directory-force")


def _build(box: _Sandbox, scenario: Scenario) -> Path:
    """Lay out the scenario's tree; the output path."""
    rng = random.Random(scenario.seed)
    box.work.mkdir()
    box.outside.mkdir()
    (box.outside / "victim.txt").write_bytes(b"precious")
    target = box.work / "a" / "b" / "out" if scenario.nested else box.work / "out"
    if scenario.existing != "deep":
        target.parent.mkdir(parents=True, exist_ok=True)
    _EXISTING[scenario.existing](box, target, rng)
    for damage in scenario.damage:
        if target.is_dir() and not target.is_symlink():
            _DAMAGE.get(damage, _no_damage)(box, target, rng)
    return target


def _no_damage(box: _Sandbox, target: Path, rng: random.Random) -> None:
    return None


def _earlier_output(box: _Sandbox, target: Path, rng: random.Random) -> None:
    names = rng.sample(["main.c", "model.c", "model.h", "README.md", "Makefile"], 3)
    write_directory({name: f"earlier {name}\n" for name in names}, target,
                    build_products=("model.elf", "build"))


def _user_dir(box: _Sandbox, target: Path, rng: random.Random) -> None:
    box.user_file(target / "main_app.c", b"int main(void) { return 0; }\n")
    box.user_file(target / "mcuflow_model.h", b"/* a user's copy */\n")


def _deep(box: _Sandbox, target: Path, rng: random.Random) -> None:
    box.user_file(box.work / "a", b"a file where a folder should be")


_EXISTING = {
    "none": _no_damage,
    "empty": lambda box, target, rng: target.mkdir(),
    "output": _earlier_output,
    "file": lambda box, target, rng: box.user_file(target, b"a user's file"),
    "link-file": lambda box, target, rng: target.symlink_to(box.outside / "victim.txt"),
    "link-dir": lambda box, target, rng: target.symlink_to(box.outside),
    "fifo": lambda box, target, rng: os.mkfifo(target),
    "user-dir": _user_dir,
    "deep": _deep,
}


def _manifest(target: Path, data: bytes) -> None:
    (target / MANIFEST).write_bytes(data)


def _listed(target: Path, box: _Sandbox) -> list[Path]:
    """The regular files an intact manifest of `target` lists, not yet damaged."""
    try:
        names = json.loads((target / MANIFEST).read_bytes())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    paths = [target / name for name in names if isinstance(name, str) and "/" not in name]
    return sorted(p for p in paths if p.is_file() and not p.is_symlink()
                  and p not in box.user and p not in box.changed)


def _replace_listed(target: Path, rng: random.Random, make: str, box: _Sandbox) -> None:
    listed = _listed(target, box)
    if not listed:
        return
    victim = rng.choice(listed)
    victim.unlink()
    if make == "link":
        victim.symlink_to(box.outside / "victim.txt")
    elif make == "dir":
        box.user_file(victim / "inside.txt", b"a user's file in a folder")
    else:
        os.mkfifo(victim)


def _change(box: _Sandbox, target: Path, rng: random.Random) -> None:
    listed = _listed(target, box)
    if listed:
        path = rng.choice(listed)
        box.changed_file(path, path.read_bytes() + b"/* the user's change */\n")


def _look_alike(box: _Sandbox, target: Path, rng: random.Random) -> None:
    leftover = target.parent / f".{target.name}.{rng.randrange(16**8):08x}.tmp"
    box.user_file(leftover / "thesis.tex", b"not mcuflow's")


_DAMAGE = {
    "add-file": lambda box, t, rng: box.user_file(t / "notes.txt", b"the user's notes"),
    "add-dir": lambda box, t, rng: box.user_file(t / "src" / "app.c", b"void app(void) {}\n"),
    "change-file": _change,
    "manifest-garbage": lambda box, t, rng: _manifest(t, rng.randbytes(rng.randrange(1, 64))),
    "manifest-forged": lambda box, t, rng: _manifest(t, json.dumps(
        {"format": "mcuflow-manifest-1", "files": {"claimed.txt": "0" * 64}}).encode()),
    "manifest-escape": lambda box, t, rng: _manifest(t, json.dumps(
        {"format": "mcuflow-manifest-1", "files": {"../outside/victim.txt": "0" * 64},
         "build_products": ["../../outside"]}).encode()),
    "listed-link": lambda box, t, rng: _replace_listed(t, rng, "link", box),
    "listed-dir": lambda box, t, rng: _replace_listed(t, rng, "dir", box),
    "listed-fifo": lambda box, t, rng: _replace_listed(t, rng, "fifo", box),
    "drop-file": lambda box, t, rng: [p.unlink() for p in _listed(t, box)[:1]],
    "look-alike": _look_alike,
    "product": lambda box, t, rng: (t / "model.elf").write_bytes(b"built"),
}


def _check_untouched(box: _Sandbox, outside: dict[str, bytes | str],
                     changed: dict[Path, bytes]) -> None:
    if _snapshot(box.outside) != outside:
        raise BrokenPromise("a file outside the output path changed")
    for path, data in (box.user | changed).items():
        if not path.is_file() or path.is_symlink() or path.read_bytes() != data:
            raise BrokenPromise(f"the user's file {path.name} was changed or removed")


def _check_nothing_new(box: _Sandbox, before: dict[str, bytes | str]) -> None:
    new = sorted(set(_snapshot(box.work)) - set(before))
    if new:
        raise BrokenPromise(f"a refused write left {new[:3]}")


def _check_written(scenario: Scenario, target: Path, files: dict[str, str]) -> None:
    if scenario.operation == "file":
        if target.is_symlink() or target.read_bytes() != "".join(files.values()).encode():
            raise BrokenPromise("the written file does not hold what was written")
        return
    for name, text in files.items():
        path = target / name
        if path.is_symlink() or not path.is_file() or path.read_text() != text:
            raise BrokenPromise(f"{name} does not hold what was written")
    leftovers = [p.name for p in target.parent.iterdir()
                 if p.name.startswith(f".{target.name}.") and (p / MANIFEST).exists()]
    if leftovers:
        raise BrokenPromise(f"a staging directory was left: {leftovers}")


def execute_outputs(data: bytes, index: int = 0, limits: Limits = DEFAULT_LIMITS) -> Outcome:
    """Make one scenario's write and classify what happened."""
    return classify(_OutputPipeline(), data, limits.timeout_s)


def make_output_input(campaign: str, index: int) -> FuzzInput:
    """The `index`-th scenario of a campaign."""
    rng = random.Random(f"outputs/{campaign}/{index}")
    existing = rng.choice(EXISTING)
    damage = rng.sample(DAMAGE, rng.choice((0, 1, 1, 2, 3)))
    operation = rng.choice(OPERATIONS)
    names = sorted({rng.choice(["main.c", "model.c", "model.h", "README.md", "notes.txt",
                                "Makefile", "model.elf", "src", "x" * rng.randrange(1, 60)])
                    for _ in range(rng.randrange(1, 6))})
    scenario = {"existing": existing, "damage": damage, "operation": operation, "names": names,
                "nested": rng.random() < 0.3, "seed": rng.randrange(1 << 30)}
    description = f"{existing} + {','.join(damage) or 'nothing'} -> {operation}"
    return FuzzInput(json.dumps(scenario).encode(), description)
