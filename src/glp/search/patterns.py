"""Fixed removal patterns (Sajjad et al.'s layer-dropping strategies), each a strategy whose candidates are fine-tuned
and scored like any other, so the comparison with GLP is fair."""

from __future__ import annotations

import random as _random
from typing import Any

from glp.errors import ConfigError
from glp.search.base import Strategy, score_order
from glp.search.context import SearchContext, SearchResult

PATTERNS = ("top", "bottom", "even", "odd", "symmetric", "random")


def pattern_order(name: str, num_layers: int, seed: int = 0) -> list[int]:
    """Full removal order of a fixed pattern (0-based layer indices).

    - top: d-1, d-2, ..., 0 (Sajjad et al.'s top-layer dropping)
    - bottom: 0, 1, ..., d-1
    - even: even indices from the top (d=12: 10, 8, ..., 0), then the odd ones from the top
    - odd: odd indices from the top (d=12: 11, 9, ..., 1), then the even ones from the top
    - symmetric: from the middle outwards, keeping the bottom and top layers longest
      (d=12: 6, 5, 7, 4, 8, 3, ...; d=6: 3, 2, 4, 1, 5, 0)
    - random: a permutation drawn with ``seed``
    """
    d = num_layers
    top = list(range(d - 1, -1, -1))
    if name == "top":
        return top
    if name == "bottom":
        return list(range(d))
    if name == "even":
        return [i for i in top if i % 2 == 0] + [i for i in top if i % 2 == 1]
    if name == "odd":
        return [i for i in top if i % 2 == 1] + [i for i in top if i % 2 == 0]
    if name == "symmetric":
        mid = d // 2
        order = [mid]
        for k in range(1, d):
            for i in (mid - k, mid + k):
                if 0 <= i < d and len(order) < d:
                    order.append(i)
        return order
    if name == "random":
        order = list(range(d))
        _random.Random(seed).shuffle(order)
        return order
    raise ConfigError(f"unknown pattern {name!r}; known: {', '.join(PATTERNS)}")


def named_order(name: str, num_layers: int, seed: int = 0) -> list[int]:
    """The order of a ``glp evaluate --pattern`` name: a pattern, or ``random:S``, the random order of seed S (a row
    of its own, so several random orders can be evaluated side by side)."""
    base, sep, given = name.partition(":")
    if not sep:
        return pattern_order(name, num_layers, seed)
    if base != "random" or not given.strip().isdigit():
        raise ConfigError(f"--pattern {name!r}: only random takes a seed, as random:S with S a whole number (random:1)")
    return pattern_order(base, num_layers, int(given))


class Fixed(Strategy):
    """A fixed removal order (layer patterns of Sajjad et al.), scored with the same fine-tuning; ``random`` draws
    its order with the search's base seed."""

    nested = True
    pattern: str = "top"

    def params(self) -> dict[str, Any]:
        return {"pattern_seed": self.seed} if self.pattern == "random" else {}

    def order(self, num_layers: int) -> list[int]:
        return pattern_order(self.pattern, num_layers, self.seed)

    def run(self, ctx: SearchContext) -> SearchResult:
        order = [i for i in self.order(ctx.num_layers) if i not in ctx.keep]
        return score_order(ctx, order)


PATTERN_HELP = {
    "top": "drop the last layers first (Sajjad et al.)",
    "bottom": "drop the first layers first",
    "even": "even layers from the top, then odd",
    "odd": "odd layers from the top, then even",
    "symmetric": "from the middle outwards",
    "random": "a seeded random order",
}


def fixed_pattern(name: str) -> type[Fixed]:
    """The `Fixed` strategy class of pattern ``name`` (registered as ``--strategy NAME`` by `glp.search.strategies`)."""
    if name not in PATTERNS:
        raise ConfigError(f"unknown pattern {name!r}; known: {', '.join(PATTERNS)}")
    return type(f"Fixed_{name}", (Fixed,), {"pattern": name, "__doc__": Fixed.__doc__})
