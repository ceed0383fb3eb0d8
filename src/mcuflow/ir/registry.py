"""Keyed hook tables: the one generic registry every per-op (and per-op-type) table is built on."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from mcuflow.ir.ops import OpKind

Key = TypeVar("Key")
Hook = TypeVar("Hook")

TABLES: list[OpTable[Any]] = []
"""Every OpTable ever made, in creation order (tests walk them)."""


class Registry(dict[Key, Hook]):
    """One hook per key; `hook` names what the table holds (for messages).

    Lookups of a missing key raise KeyError.
    """

    def __init__(self, hook: str, entries: Mapping[Key, Hook] | None = None) -> None:
        super().__init__(entries or {})
        self.hook = hook

    def register(self, *keys: Key) -> Callable[[Hook], Hook]:
        """A decorator registering its function for `keys` (each key once)."""

        def register(function: Hook) -> Hook:
            for key in keys:
                if key in self:
                    label = key.value if isinstance(key, Enum) else key
                    raise ValueError(f"{label} already has a {self.hook}")
                self[key] = function
            return function

        return register


class OpTable(Registry["OpKind", Hook]):
    """One hook per OpKind: a definition, a reference kernel, a TFLite form, a C emitter...

    A `complete` table must have an entry for every OpKind, which one test checks over TABLES.
    """

    def __init__(self, hook: str, complete: bool = True,
                 entries: Mapping[OpKind, Hook] | None = None) -> None:
        super().__init__(hook, entries)
        self.complete = complete
        TABLES.append(self)
