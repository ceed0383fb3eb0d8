"""The README's Layout section lists exactly the packages and top-level modules of src/mcuflow/."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "mcuflow"
README = ROOT / "README.md"
ENTRY = re.compile(r"\w+/|\w+\.py")
"""How an entry names a package (`ir/`) or a top-level module (`api.py`)."""


def layout_block(readme: str) -> str:
    """The first fenced block of the README's `## Layout` section."""
    section = readme.partition("\n## Layout\n")[2].split("\n## ", 1)[0]
    match = re.search(r"^```\w*\n(.*?)^```", section, re.M | re.S)
    assert match, "the README's Layout section has no ``` block listing src/mcuflow/"
    return match.group(1)


def listed(block: str) -> set[str]:
    """The names of the entry lines (indented two spaces), before their description.

    An entry line is `  name/, other.py  description`: names separated by commas, then two or
    more spaces; lines indented further continue the description.
    """
    names: set[str] = set()
    for line in block.splitlines():
        if re.match(r"  \S", line):
            head = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
            names.update(name.strip() for name in head.split(","))
    return names


def in_tree() -> set[str]:
    """The packages (`name/`) and top-level modules (`name.py`, dunder files aside)."""
    packages = {f"{path.name}/" for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    modules = {path.name for path in PACKAGE.glob("*.py") if not path.name.startswith("__")}
    return packages | modules


def test_layout_lists_every_package_and_module() -> None:
    missing = in_tree() - listed(layout_block(README.read_text()))
    assert not missing, f"add to the README's Layout section: {sorted(missing)}"


def test_layout_lists_nothing_absent() -> None:
    absent = {name for name in listed(layout_block(README.read_text()))
              if not ENTRY.fullmatch(name) or not (PACKAGE / name).exists()}
    assert not absent, f"the README's Layout section lists what is not there: {sorted(absent)}"
