"""Names in generated C: model-file names sanitised (comments, identifiers), model-level names."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mcuflow.errors import McuflowError

MAX_COMMENT_CHARS = 60
MAX_IDENTIFIER_CHARS = 32

_C_KEYWORDS = frozenset({
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
    "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
    "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef",
    "union", "unsigned", "void", "volatile", "while", "_Bool", "_Complex", "_Imaginary",
})


def _printable_ascii(text: str) -> str:
    """Non-ASCII and control characters become '?' (so nothing invisible reaches the C file)."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def c_comment(text: str, limit: int = MAX_COMMENT_CHARS) -> str:
    """`text` made safe inside a /* ... */ comment.

    One line, printable ASCII, no comment delimiters, no trigraphs, no line splice, at most
    `limit` characters.
    """
    safe = _printable_ascii(text)
    safe = safe.replace("\\", "/")
    safe = re.sub(r"\*+/", lambda m: "*" * (len(m.group()) - 1) + " /", safe)
    safe = re.sub(r"/(?=[/*])", "/ ", safe)
    safe = re.sub(r"\?{2,}", lambda m: "? " * len(m.group()), safe).strip()
    return _shorten(safe, limit).replace("*/", "* /")


def c_identifier(text: str, prefix: str, limit: int = MAX_IDENTIFIER_CHARS) -> str:
    """An identifier `prefix_<readable part of text>`.

    [a-z0-9_] only after the prefix, no double underscores, at most `limit` characters. Callers
    make it unique by putting a number in `prefix`, which must itself be a valid identifier.
    """
    stem = re.sub(r"[^a-z0-9]+", "_", _printable_ascii(text).lower()).strip("_")
    name = f"{prefix}_{stem}" if stem else prefix
    name = re.sub(r"_+", "_", name[:limit]).rstrip("_")
    return f"{name}_" if name in _C_KEYWORDS else name


def c_string(text: str, limit: int = MAX_COMMENT_CHARS) -> str:
    """A C string literal (quotes included) holding a printable-ASCII rendering of `text`."""
    safe = _shorten(_printable_ascii(text), limit)
    escaped = safe.replace("\\", "\\\\").replace('"', '\\"').replace("?", "\\?")
    return f'"{escaped}"'


DEFAULT_PREFIX = "mcuflow_"
MAX_PREFIX_CHARS = 16
_PREFIX = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*_")


@dataclass(frozen=True)
class Naming:
    """Every model-level name of one generated model: `prefix` followed by a fixed stem.

    Files (`kws_model.h`), functions, arrays and types (`kws_model_invoke`) and macros
    (`KWS_ARENA_BYTES`) all come from here, so that several models link into one firmware. The
    kernels keep their shared `mcuflow_` names. The prefix is a C identifier prefix: lowercase
    letters, digits and single underscores (a double one is reserved in C++), ending with '_'.
    """

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if len(self.prefix) > MAX_PREFIX_CHARS or not _PREFIX.fullmatch(self.prefix):
            shown = _shorten(repr(self.prefix), 2 * MAX_PREFIX_CHARS)
            raise McuflowError(
                f"--prefix {shown} is not a C identifier prefix: lowercase letters, digits and "
                f"single underscores, starting with a letter and ending with '_', at most "
                f"{MAX_PREFIX_CHARS} characters", "e.g. --prefix kws_")

    @property
    def is_default(self) -> bool:
        """True for the `mcuflow_` prefix (the names of a single-model project)."""
        return self.prefix == DEFAULT_PREFIX

    def symbol(self, stem: str) -> str:
        """A function, array or type name: `kws_` + `stem`."""
        return self.prefix + stem

    def macro(self, stem: str) -> str:
        """A macro name: `KWS_` + `stem`."""
        return self.prefix.upper() + stem

    def file(self, stem: str) -> str:
        """A file name: `kws_` + `stem`."""
        return self.prefix + stem
