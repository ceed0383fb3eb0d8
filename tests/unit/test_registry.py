"""Every OpKind has a hook in every registry: shapes, reference kernel, cost, C emitter, attrs."""

from __future__ import annotations

import re
from importlib import resources

import pytest

import mcuflow.ref.kernels  # noqa: F401  (fills the kernel registry)
from mcuflow.hw.costmodel import COST_RULES
from mcuflow.hw.kernels import KERNELS as CATALOGUE
from mcuflow.ir.ops import ATTRS_OF, OpKind
from mcuflow.ir.shapes import SHAPE_RULES
from mcuflow.ref.registry import KERNELS


@pytest.mark.parametrize("kind", list(OpKind), ids=lambda k: k.value)
def test_every_op_has_every_hook(kind: OpKind) -> None:
    missing = [
        name
        for name, table in (
            ("attrs", ATTRS_OF),
            ("shape rule", SHAPE_RULES),
            ("reference kernel", KERNELS),
            ("cost rule", COST_RULES),
        )
        if kind not in table
    ]
    assert not missing, f"{kind.value} lacks: {', '.join(missing)}"


def test_every_c_kernel_has_one_catalogue_record() -> None:
    """The public functions the kernel C files define are exactly the catalogue's records."""
    kernels_dir = resources.files("mcuflow.codegen") / "kernels"
    defined: dict[str, str] = {}
    for source in kernels_dir.iterdir():
        if source.name.endswith(".c"):
            for name in re.findall(r"^(?:void|int) (mcuflow_\w+)\(", source.read_text(), re.M):
                defined[name] = source.name.removesuffix(".c")
    assert defined == {name: record.source for name, record in CATALOGUE.items()}
