"""Registries: one per kind of plug-in (task kinds, strategies, proxies, executors).

A plug-in is a class (or factory) registered under a name with a one-line help text. The CLI takes its choices and
help from the registry, so a new plug-in is a class in one file plus ``@REGISTRY.register("name", help=...)``:
    >>> from glp.search import STRATEGIES
    >>> STRATEGIES.names()[:3]
    ('greedy', 'beam', 'optimal')

An unknown name is a `ConfigError` that lists what is known (as lm-evaluation-harness does).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from glp.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    value: T
    help: str


class Registry(Generic[T]):
    """Names → plug-ins, in registration order."""

    def __init__(self, what: str, flag: str | None = None, base_cls: type | None = None):
        self.what = what  # "strategy", "task kind", ...
        self.flag = flag  # the CLI flag that takes these names, for messages
        self.base_cls = base_cls  # what every registered value must be a subclass of (None: anything)
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        """Decorator: register ``value`` under ``name`` (a second registration of a name is a bug)."""
        def deco(value: T) -> T:
            self.add(name, value, help)
            return value

        return deco

    def add(self, name: str, value: T, help: str = "") -> None:
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        base = self.base_cls
        if base is not None and not (isinstance(value, type) and issubclass(value, base)):
            where = f"{base.__module__}.{base.__qualname__}"
            raise TypeError(f"{self.what} {name!r}: {value!r} is not a subclass of {where}")
        self._entries[name] = Entry(name, value, help)

    def remove(self, name: str) -> None:
        """Forget ``name`` (a test that registered a plug-in cleans up with this)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        entry = self._entries.get(str(name))
        if entry is None:
            where = f"{self.flag} " if self.flag else f"{self.what} "
            raise ConfigError(f"unknown {where}{name!r}; known: {', '.join(self._entries)}")
        return entry.value

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def entries(self) -> list[Entry[T]]:
        return list(self._entries.values())

    def help_text(self, sep: str = "; ") -> str:
        """``name: help`` for every entry, for a flag's help."""
        return sep.join(f"{e.name}: {e.help}" if e.help else e.name for e in self._entries.values())

    def choices(self) -> str:
        return " | ".join(self._entries)

    def load_entry_points(self, group: str) -> None:
        """Import the plug-ins other packages declare as entry points of ``group`` (their pyproject.toml:
        ``[project.entry-points."glp.strategies"] my-strategy = "my_package.my_strategy"``); importing a module
        registers what it defines. A plug-in that fails to import is a warning, not the end of glp."""
        for ep in entry_points(group=group):
            if ep.name in self:
                continue
            try:
                ep.load()
            except Exception as exc:  # noqa: BLE001 - someone else's package
                warnings.warn(f"glp {self.what} plug-in {ep.name!r} ({ep.value}) failed to load: {exc}", stacklevel=2)
