"""A registry of implementations by name, each a lazily imported `module:attr` line (vLLM's model registry,
lm-eval's model registry): listing the names and their help imports nothing heavy, a typo gets "did you
mean", and the first use of a name imports its module."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from components.core.errors import UserError, did_you_mean


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "package.module:Attribute"
    help: str = ""


class Registry:
    """Ordered name -> Entry. `key` is the config key that chooses among them (for error messages)."""

    def __init__(self, key: str, entries: tuple[Entry, ...]):
        self.key = key
        self._entries: dict[str, Entry] = {e.name: e for e in entries}

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def entries(self) -> tuple[Entry, ...]:
        return tuple(self._entries.values())

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def register(self, name: str, target: str, help: str = "") -> None:
        """Add (or replace) an implementation at the end of the order: a plugin, or a fake in tests."""
        self._entries[name] = Entry(name, target, help)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def check(self, name: str, extra: tuple[str, ...] = ()) -> None:
        """One line naming the key and the choices when `name` is not registered."""
        choices = (*self._entries, *extra)
        if name not in choices:
            raise UserError(f"invalid value for {self.key}: {name!r}{did_you_mean(name, choices)} "
                            f"(expected one of {', '.join(choices)})")

    def load(self, name: str) -> Any:
        """The implementation itself, importing its module on first use."""
        self.check(name)
        module, _, attr = self._entries[name].target.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise UserError(f"{self.key}={name}: cannot import {self._entries[name].target} ({e})") from None
