"""Names from model files never reach the C text unsanitised."""

from __future__ import annotations

import re

import pytest

from mcuflow.codegen.names import (
    MAX_COMMENT_CHARS,
    MAX_IDENTIFIER_CHARS,
    c_comment,
    c_identifier,
    c_string,
)

HOSTILE = [
    "*/ int evil(void) { return 1; } /*",
    "a*/b**/c***/",
    'quote " and \' and \\',
    "line\nbreak\r\nand\ttab",
    "trigraph ??/ splice ??= ??( ???",
    "ends with backslash \\",
    "//comment /* nested",
    "///*",
    "////",
    "*//*/",
    "x" * 5000,
    "ünïcødé ☃ 名前 \u202e",
    "\x00\x01\x7f nul and controls",
    "",
    "123 leading digit",
    "int",
    "__reserved__",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_comment_text_cannot_escape_a_comment(name: str) -> None:
    text = c_comment(name)
    assert "*/" not in text and "/*" not in text and "//" not in text
    assert "??" not in text and "\\" not in text
    assert text.isascii() and text.isprintable()
    assert len(text) <= MAX_COMMENT_CHARS
    assert "*/" not in f"/* {text} */"[2:-2]


@pytest.mark.parametrize("name", HOSTILE)
def test_identifiers_are_valid_c(name: str) -> None:
    ident = c_identifier(name, "mcuflow_c3")
    assert re.fullmatch(r"mcuflow_c3(_[a-z0-9]+)*_?", ident)
    assert "__" not in ident
    assert len(ident) <= MAX_IDENTIFIER_CHARS + 1


@pytest.mark.parametrize("name", HOSTILE)
def test_string_literals_are_closed_and_ascii(name: str) -> None:
    literal = c_string(name)
    assert literal.startswith('"') and literal.endswith('"')
    body = literal[1:-1]
    assert re.fullmatch(r'([ -!#-\[\]-~]|\\["\\?])*', body), body
    assert "??" not in body


def test_readable_names_stay_readable() -> None:
    assert c_comment("conv2d/Conv2D;bias") == "conv2d/Conv2D;bias"
    assert c_identifier("model/conv2d/Conv2D", "mcuflow_c0") == "mcuflow_c0_model_conv2d_conv2d"
    assert c_string("kws") == '"kws"'
