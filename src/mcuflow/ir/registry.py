"""OpKind-keyed tables: the one generic registry every per-op hook table is built on."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from mcuflow.ir.ops import OpKind

Hook = TypeVar("Hook")

TABLES: list[OpTable[Any]] = []
"""Every OpTable ever made, in creation order (tests walk them)."""


class OpTable(dict["OpKind", Hook]):
    """One hook per OpKind: a definition, a reference kernel, a TFLite form, a C emitter...

    `hook` names what the table holds (for messages); a `complete` table must have an entry for
    every OpKind, which one test checks over TABLES. Lookups of a missing kind raise KeyError.
    """

    def __init__(self, hook: str, complete: bool = True,
                 entries: Mapping[OpKind, Hook] | None = None) -> None:
        super().__init__(entries or {})
        self.hook = hook
        self.complete = complete
        TABLES.append(self)

    def register(self, *kinds: OpKind) -> Callable[[Hook], Hook]:
        """A decorator registering its function for `kinds` (each kind once)."""

        def register(function: Hook) -> Hook:
            for kind in kinds:
                if kind in self:
                    raise ValueError(f"{kind.value} already has a {self.hook}")
                self[kind] = function
            return function

        return register
