"""The one error type users see: a message and a hint, printed as `mcuflow: error: …`."""

from __future__ import annotations


class McuflowError(Exception):
    """An error the user caused (bad file, unsupported op, impossible board...)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class ModelFormatError(McuflowError):
    """The model file is not a well-formed model of the expected format."""


class UnsupportedModelError(McuflowError):
    """The model uses ops, types or attributes mcuflow does not support."""


class BoardError(McuflowError):
    """The board is unknown or its description is invalid."""


class ToolchainError(McuflowError):
    """A compiler, emulator or other external tool is missing or failed."""


class OutputError(McuflowError):
    """An output cannot be written where the user asked, or would replace the user's files."""
