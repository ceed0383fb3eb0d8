"""Every OpKind has a hook in every registry: shapes, reference kernel, cost, C emitter, attrs."""

from __future__ import annotations

import re
from importlib import resources

import pytest

import mcuflow.api  # noqa: F401  (imports every stage, which fills every table)
from mcuflow.hw.kernels import KERNELS as CATALOGUE
from mcuflow.ir.ops import OP_DEFS, OpKind
from mcuflow.ir.registry import TABLES, Registry


@pytest.mark.parametrize("kind", list(OpKind), ids=lambda k: k.value)
def test_every_op_has_every_hook(kind: OpKind) -> None:
    missing = [table.hook for table in TABLES if table.complete and kind not in table]
    assert not missing, f"{kind.value} lacks: {', '.join(missing)}"


def test_the_complete_tables_include_every_stage() -> None:
    hooks = {table.hook for table in TABLES if table.complete}
    assert {"definition", "reference kernel", "C emitter", "TFLite form"} <= hooks


def test_every_kind_has_one_definition_of_its_own_kind() -> None:
    assert list(OP_DEFS) == list(OpKind)
    assert all(definition.kind is kind for kind, definition in OP_DEFS.items())


def test_every_c_kernel_has_one_catalogue_record() -> None:
    """The public functions the kernel C files define are exactly the catalogue's records."""
    kernels_dir = resources.files("mcuflow.codegen") / "kernels"
    defined: dict[str, str] = {}
    for source in kernels_dir.iterdir():
        if source.name.endswith(".c"):
            for name in re.findall(r"^(?:void|int) (mcuflow_\w+)\(", source.read_text(), re.M):
                defined[name] = source.name.removesuffix(".c")
    assert defined == {name: record.source for name, record in CATALOGUE.items()}


def test_a_key_takes_one_hook() -> None:
    table: Registry[str, int] = Registry("number")
    table.register("a", "b")(1)
    with pytest.raises(ValueError, match="a already has a number"):
        table.register("a")(2)
    assert table == {"a": 1, "b": 1}
