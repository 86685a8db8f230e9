"""Name -> implementation tables (backbones, poolings, datasets, protocols, methods), so a
paper's piece plugs in by name and a maintainer finds any piece by its name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(dict[str, T]):
    """A dict of named entries of one ``kind`` with a registering decorator and lookups whose
    error lists the valid names."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str, entry: T | None = None) -> Callable[[T], T] | T:
        """``@registry.register("name")`` on a factory or class, or ``register("name", entry)``."""

        def add(item: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self[name] = item
            return item

        return add(entry) if entry is not None else add

    def lookup(self, name: str) -> T:
        """The entry registered as ``name``; a ValueError lists the valid names otherwise."""
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; valid: {sorted(self)}")
        return self[name]
