"""C literals and layouts the emitters write (test_registry.py walks the emitter table)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from mcuflow.codegen.context import CArray, CodegenError, c_double, c_float, c_int
from mcuflow.codegen.emit import broadcast_layout


def test_int_literals_cover_the_whole_int32_range() -> None:
    assert c_int(-(1 << 31)) == "(-2147483647 - 1)"
    assert c_int((1 << 31) - 1) == "2147483647"
    assert c_int(np.int8(-5)) == "-5"


@pytest.mark.parametrize("value", [0.1, 1 / 3, 3.0, 1e-30, -2.5e12, 0.00390625])
def test_float_literals_round_trip_exactly(value: float) -> None:
    text = c_float(value)
    assert text.endswith("f")
    assert np.float32(float(text[:-1])) == np.float32(value)
    assert struct.pack("<d", float(c_double(value))) == struct.pack("<d", value)


def test_non_finite_constants_are_refused() -> None:
    with pytest.raises(CodegenError):
        c_float(float("nan"))
    with pytest.raises(CodegenError):
        c_double(float("inf"))


def test_constant_arrays_are_aligned_and_complete() -> None:
    values = np.arange(-20, 20, dtype=np.int32)
    array = CArray("mcuflow_l1_bias", "int32_t", values, "bias")
    text = array.definition()
    assert "MCUFLOW_ALIGNED(16)" in text and "[40]" in text
    body = text[text.index("{") + 1:text.rindex("}")]
    assert [int(v) for v in body.replace("\n", "").split(",")] == values.tolist()
    assert array.nbytes == 160
    assert array.declaration() == "extern const int32_t mcuflow_l1_bias[40];"


@pytest.mark.parametrize(("a", "b", "out", "dims", "s1", "s2"), [
    ((2, 3, 4), (2, 3, 4), (2, 3, 4), [24], [1], [1]),
    ((1, 5, 6, 4), (1, 1, 1, 4), (1, 5, 6, 4), [30, 4], [4, 1], [0, 1]),
    ((1, 5, 1, 1), (1, 5, 6, 4), (1, 5, 6, 4), [5, 24], [1, 0], [24, 1]),
    ((1,), (3, 4), (3, 4), [12], [0], [1]),
    ((1, 1, 1, 4), (1, 5, 1, 1), (1, 5, 1, 4), [5, 4], [0, 1], [1, 0]),
    ((1, 1), (1, 1), (1, 1), [1], [1], [1]),
])
def test_broadcast_layout_merges_dims(a, b, out, dims, s1, s2) -> None:
    assert broadcast_layout(a, b, out) == (dims, s1, s2)
    # The layout addresses exactly numpy's broadcast elements.
    xa = np.arange(int(np.prod(a))).reshape(a)
    xb = np.arange(int(np.prod(b))).reshape(b)
    index = np.indices(dims).reshape(len(dims), -1)
    got_a = (index * np.array(s1)[:, None]).sum(0)
    got_b = (index * np.array(s2)[:, None]).sum(0)
    assert (got_a == np.broadcast_to(xa, out).reshape(-1)).all()
    assert (got_b == np.broadcast_to(xb, out).reshape(-1)).all()
