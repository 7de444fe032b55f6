"""How removal sets are chosen.

- `glp.search.context`: `SearchContext` turns a strategy's candidate sets into ranked, recorded steps (the
  selection rule, ties, separation of seeds); `glp.search.schedule`: successive halving within a step;
- `glp.search.base`: the `Strategy` base class, its settings and the ``STRATEGIES`` registry;
- `glp.search.strategies` (greedy, beam, optimal, the proxies, ShortGPT, Gromov's block) and
  `glp.search.patterns` (top, bottom, ... random): the built-in strategies, registered on import in the
  order ``--strategy`` lists them;
- `glp.search.proxies`: training-free layer scores (block influence, angular distance, skipped-layer loss);
"""

from glp.search import strategies as _strategies  # noqa: F401 - the built-in strategies register themselves
from glp.search.base import STRATEGIES, NoSettings, Strategy, make_strategy, register_strategy
from glp.search.context import SearchContext, SearchResult, SearchStopped, rank, separation, tie_key
from glp.search.patterns import PATTERNS, pattern_order
from glp.trial.types import TrialRequest

STRATEGIES.load_entry_points("glp.strategies")  # strategies of other packages (docs/extending.md)

__all__ = [
    "PATTERNS",
    "STRATEGIES",
    "NoSettings",
    "SearchContext",
    "SearchResult",
    "SearchStopped",
    "Strategy",
    "TrialRequest",
    "make_strategy",
    "pattern_order",
    "rank",
    "register_strategy",
    "separation",
    "tie_key",
]
