"""Search strategies: which removal sets to try at each step, and which one to keep.

Every strategy talks to the outside through a `glp.search.context.SearchContext` (which also holds the selection
rule: ranking, ties, separation); the base class and the registry are in `glp.search.base`.

Strategies (``STRATEGIES``):
- ``greedy``: GLP (Peer et al. 2022, eq. 3). Step k tries each remaining layer on top of the k-1 already
  removed and keeps the best. Nested: ``order`` is the removal order.
- ``beam``: keeps the ``beam_width`` best removal sets per step (width 1 is greedy).
- ``optimal``: every removal set of size n, for n = 1..N. Refuses above ``max_trials`` unless forced.
- ``top``, ``bottom``, ``even``, ``odd``, ``symmetric``, ``random``: fixed patterns (Sajjad et al.,
  `glp.search.patterns`), fine-tuned and scored like any candidate so the comparison is fair.
- ``proxy-bi``, ``proxy-angular``, ``proxy-loss``: training-free; step k removes the remaining layer with the
  lowest proxy score (see glp.search.proxies). The chosen set of each n is then fine-tuned and scored.
- ``shortgpt`` (block influence once, lowest n removed) and ``block-angular`` (Gromov et al.'s contiguous block):
  the LLM baselines, training-free choices that are then healed and scored like every candidate. SLEB is
  ``greedy`` with ``--heal none``; Gromov et al.'s simple heuristic is ``top`` with ``--keep`` of the last layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from glp.errors import ConfigError, LayerIndexError
from glp.search.base import Strategy, register_strategy, score_order, score_sets
from glp.search.context import SearchContext, SearchResult
from glp.search.patterns import PATTERN_HELP, PATTERNS, fixed_pattern
from glp.search.proxies import PROXIES
from glp.trial.types import Removal


@dataclass(frozen=True)
class BeamSettings:
    beam_width: int = field(default=2, metadata={"help": "For --strategy beam."})

    def __post_init__(self) -> None:
        if self.beam_width < 1:
            raise ConfigError(f"--beam-width must be at least 1, got {self.beam_width}")


class Beam(Strategy):
    """Keeps the ``beam_width`` best removal sets per step; width 1 is GLP's greedy search."""

    settings_class = BeamSettings

    @property
    def width(self) -> int:
        return self.settings.beam_width

    def run(self, ctx: SearchContext) -> SearchResult:
        beams: list[Removal] = [()]
        removals: dict[int, list[int]] = {}
        for n in range(1, ctx.max_remove + 1):
            sets: list[Removal] = []
            added: list[int | None] = []
            seen: set[frozenset[int]] = set()
            note = None
            for b in beams:
                layers = [i for i in ctx.removable if i not in b]
                if ctx.proxy is not None and ctx.prefilter_top is not None and ctx.prefilter_top < len(layers):
                    scores = ctx.proxy(b, layers)
                    layers = sorted(layers, key=lambda i: (scores[i], -i))[: ctx.prefilter_top]
                    note = f"proxy pre-filter kept {ctx.prefilter_top} of {len(ctx.removable) - len(b)}"
                for i in layers:
                    s = b + (i,)
                    if frozenset(s) not in seen:
                        seen.add(frozenset(s))
                        sets.append(s)
                        added.append(i)
            ranked = ctx.evaluate(n, sets, added)
            ctx.record(n, ranked, note)
            ok = [c for c in ranked if c.status == "ok"]
            beams = [tuple(c.removed) for c in ok[: self.width]]
            removals[n] = list(beams[0])
        order = removals[ctx.max_remove] if self.nested else None
        return SearchResult(removals, ctx.steps, order)


class Greedy(Beam):
    """GLP (Peer et al. 2022, eq. 3): step k tries each remaining layer on top of the k-1 already removed and keeps
    the best; a beam of width 1."""

    nested = True
    settings_class = BeamSettings  # fixed at width 1; the plan records it as beam_width 1, as it always did

    def __init__(self, settings: Any = None, seed: int = 0):
        super().__init__(BeamSettings(beam_width=1), seed)


@dataclass(frozen=True)
class OptimalSettings:
    max_trials: int = field(default=200, metadata={"help": "For --strategy optimal: refuse above this many sets."})
    force: bool = field(default=False, metadata={"help": "Run optimal above --max-trials."})


class Optimal(Strategy):
    """Exhaustive search: every removal set of size n, for each n = 1..N."""

    settings_class = OptimalSettings

    @property
    def max_trials(self) -> int:
        return self.settings.max_trials

    @property
    def force(self) -> bool:
        return self.settings.force

    @staticmethod
    def count(removable: int, max_remove: int) -> int:
        return sum(math.comb(removable, n) for n in range(1, max_remove + 1))

    def run(self, ctx: SearchContext) -> SearchResult:
        total = self.count(len(ctx.removable), ctx.max_remove)
        fine_tunes = total * len(ctx.seeds)
        if total > self.max_trials and not self.force:
            raise ConfigError(
                f"optimal search over {len(ctx.removable)} layers for n=1..{ctx.max_remove} needs {total} "
                f"removal sets ({fine_tunes} fine-tunes with {len(ctx.seeds)} seed(s)), above the limit of "
                f"{self.max_trials}; lower --max-remove, or pass --force to run it anyway"
            )
        removals: dict[int, list[int]] = {}
        for n in range(1, ctx.max_remove + 1):
            sets = [tuple(sorted(c, reverse=True)) for c in combinations(ctx.removable, n)]
            ranked = ctx.evaluate(n, sets, [None] * len(sets))
            step = ctx.record(n, ranked)
            removals[n] = step.chosen
        return SearchResult(removals, ctx.steps, None)


class ProxyStrategy(Strategy):
    """Training-free: step k removes the remaining layer with the lowest proxy score (``needs``: the proxy's name)."""

    nested = True

    def run(self, ctx: SearchContext) -> SearchResult:
        if ctx.proxy is None:
            raise ConfigError(f"strategy {self.name} needs a proxy scorer")
        order: list[int] = []
        proxies: list[dict[int, float]] = []
        for _ in range(ctx.max_remove):
            layers = [i for i in ctx.removable if i not in order]
            scores = ctx.proxy(tuple(order), layers)
            proxies.append(scores)
            order.append(min(layers, key=lambda i: (scores[i], -i)))
        return score_order(ctx, order, proxies)


class ShortGPT(Strategy):
    """ShortGPT (Men et al. 2024, "ShortGPT: Layers in Large Language Models are More Redundant Than You Expect"):
    the block influence BI_i = 1 - E[cos(x_i, x_{i+1})] of every layer, computed once on the unpruned model, and the
    n layers with the lowest BI removed (one shot; ``proxy-bi`` recomputes it after every removal instead)."""

    nested = True
    needs = "bi"

    def run(self, ctx: SearchContext) -> SearchResult:
        if ctx.proxy is None:
            raise ConfigError("strategy shortgpt needs the bi proxy scorer")
        scores = ctx.proxy((), ctx.removable)
        order = sorted(ctx.removable, key=lambda i: (scores[i], -i))[: ctx.max_remove]
        return score_order(ctx, order, [scores] * ctx.max_remove)


class BlockAngularStrategy(Strategy):
    """Gromov et al. 2024 ("The Unreasonable Ineffectiveness of the Deeper Layers"): for each n, the contiguous
    block of n layers whose input and output hidden states of the last token are closest in angular distance
    (`glp.search.proxies.BlockAngular`). Not nested: the block for n + 1 need not contain the one for n."""

    needs = "block-angular"

    def run(self, ctx: SearchContext) -> SearchResult:
        if ctx.block_distance is None:
            raise ConfigError("strategy block-angular needs the block distance scorer")
        chosen: list[tuple[Removal, float]] = []
        for n in range(1, ctx.max_remove + 1):
            dist = ctx.block_distance(n, ctx.removable)
            if not dist:
                raise LayerIndexError(f"no block of {n} contiguous removable layers (check --keep)")
            start = min(dist, key=lambda s: (dist[s], -s))  # ties: the deeper block
            chosen.append((tuple(range(start + n - 1, start - 1, -1)), dist[start]))
        removals = score_sets(ctx, [s for s, _ in chosen], [None] * len(chosen), [d for _, d in chosen])
        return SearchResult(removals, ctx.steps, None)


# the built-in strategies, in the order ``--strategy`` lists them
register_strategy("greedy", help="GLP, the paper's method: grow the removed set one best layer a step")(Greedy)
register_strategy("beam", help="keep the --beam-width best removal sets a step")(Beam)
register_strategy("optimal", help="every removal set of size n (refused above --max-trials unless --force)")(Optimal)
for _name in PATTERNS:
    register_strategy(_name, help=PATTERN_HELP[_name])(fixed_pattern(_name))
register_strategy("shortgpt", help="ShortGPT: the n layers of lowest block influence, one shot")(ShortGPT)
register_strategy(
    "block-angular", help="Gromov et al.: the contiguous n-layer block of smallest last-token angular distance"
)(BlockAngularStrategy)
for _proxy in PROXIES.entries():
    register_strategy(f"proxy-{_proxy.name}", help=f"training-free: {_proxy.help}")(
        type(f"Proxy_{_proxy.name}", (ProxyStrategy,), {"needs": _proxy.name, "__doc__": ProxyStrategy.__doc__})
    )
