"""The strategy extension point: `Strategy` (one abstract method, ``run``), its settings, and ``STRATEGIES``.

A strategy decides which removal sets to try at each step and which to keep; it talks to the outside only through
a `glp.search.context.SearchContext`. A strategy with settings of its own names a frozen dataclass as its
``settings_class``; each field carries its help (``field(default=..., metadata={"help": ...})``, as PEFT's
configs do) and becomes a ``glp prune`` flag (``beam_width`` → ``--beam-width``) and a YAML key. Registering is
one decorator::

    @register_strategy("my-strategy", help="one line for --help")
    class MyStrategy(Strategy):
        settings_class = MySettings
        def run(self, ctx): ...

`docs/extending.md` adds one in a single file; `tests/search/test_search.py` runs that example.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from glp.errors import ConfigError
from glp.registry import Registry
from glp.search.context import SearchContext, SearchResult
from glp.trial.types import Removal


@dataclass(frozen=True)
class NoSettings:
    """The settings of a strategy that has none."""


class Strategy(ABC):
    """How removal sets are chosen. Subclass, set the class attributes, implement `run`, register it."""

    #: the ``--strategy`` name, the plan's label (``plans/<name>.json``) and the journal's config label
    name: ClassVar[str]
    #: is the removal set of n + 1 the one of n plus a layer (then the plan has a removal ``order``)?
    nested: ClassVar[bool] = False
    #: the scorer the strategy reads from the context: a proxy (`glp.search.proxies.PROXIES` name), the
    #: "block-angular" distance, or None
    needs: ClassVar[str | None] = None
    #: a frozen dataclass of the strategy's own settings (fields with ``metadata={"help": ...}``)
    settings_class: ClassVar[type] = NoSettings

    def __init__(self, settings: Any = None, seed: int = 0):
        self.settings = settings if settings is not None else self.settings_class()
        self.seed = int(seed)  # the search's base seed (``--seed``), for strategies that draw at random

    def params(self) -> dict[str, Any]:
        """What the plan records of the strategy besides its name: its settings, by default."""
        return dataclasses.asdict(self.settings)

    @abstractmethod
    def run(self, ctx: SearchContext) -> SearchResult:
        """Search removal sets of 1..``ctx.max_remove`` layers.

        Args:
            ctx: hands candidate removal sets to the trials (``ctx.evaluate``) and records each step
                (``ctx.record``); its ``proxy`` / ``block_distance`` scorers are set when `needs` asks for them.

        Returns:
            The chosen removal set of every n, the steps, and the removal order when `nested`.

        Raises:
            glp.errors.GLPError: settings that cannot work for this model (say, too many removal sets).
        """


#: ``--strategy`` choices: name → `Strategy` subclass
STRATEGIES: Registry[type[Strategy]] = Registry("strategy", flag="--strategy", base_cls=Strategy)


def register_strategy(name: str, help: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Class decorator: register a `Strategy` subclass under ``name`` (which becomes its ``name``)."""

    def deco(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        STRATEGIES.add(name, cls, help)
        return cls

    return deco


def settings_fields() -> Iterator[tuple[dataclasses.Field, type, list[str]]]:
    """Every setting of the registered strategies, once per name (a flag each): the field, the settings class that
    declares it first, and the strategies that read it."""
    seen: dict[str, tuple[dataclasses.Field, type, list[str]]] = {}
    for entry in STRATEGIES.entries():
        cls = entry.value.settings_class
        for f in dataclasses.fields(cls):
            if f.name in seen:
                seen[f.name][2].append(entry.name)
            else:
                seen[f.name] = (f, cls, [entry.name])
    yield from seen.values()


def setting_names() -> set[str]:
    return {f.name for f, _, _ in settings_fields()}


def defaults() -> dict[str, Any]:
    """Every strategy setting at its default (``glp prune``'s journaled config lists them all)."""
    out = {}
    for f, _, _ in settings_fields():
        out[f.name] = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    return out


def make_strategy(name: str, settings: Mapping[str, Any] | None = None, *, seed: int = 0) -> Strategy:
    """The registered strategy ``name``, built with the settings of ``settings`` its `settings_class` reads
    (the others are other strategies' and ignored)."""
    cls = STRATEGIES.get(name)
    given = dict(settings or {})
    unknown = sorted(set(given) - setting_names())
    if unknown:
        raise ConfigError(f"unknown strategy setting(s) {unknown}; known: {sorted(setting_names())}")
    mine = {f.name: given[f.name] for f in dataclasses.fields(cls.settings_class) if f.name in given}
    return cls(cls.settings_class(**mine), seed=seed)


def score_order(ctx: SearchContext, order: list[int], proxies: list[dict[int, float]] | None = None) -> SearchResult:
    """Score the nested sets of a removal ``order`` (its first n layers for each n), each recorded as step n."""
    sets = [tuple(order[:n]) for n in range(1, ctx.max_remove + 1)]
    scores = None if proxies is None else [proxies[n][s[-1]] for n, s in enumerate(sets)]
    removals = score_sets(ctx, sets, [s[-1] for s in sets], scores)
    return SearchResult(removals, ctx.steps, order[: ctx.max_remove])


def score_sets(
    ctx: SearchContext, sets: list[Removal], added: list[int | None], proxies: list[float] | None = None
) -> dict[int, list[int]]:
    """Score one known removal set per n (``sets[n - 1]``), all fine-tuned in one batch first, and record each as
    step n (with its proxy score, where there is one)."""
    removals: dict[int, list[int]] = {}
    ctx.prefetch(sets)
    for n, s in enumerate(sets, start=1):
        ranked = ctx.evaluate(n, [s], [added[n - 1]], halving=False)
        if proxies is not None:
            ranked[0].proxy = proxies[n - 1]
        ctx.record(n, ranked)
        removals[n] = list(s)
    return removals
