"""How removal sets are chosen: strategies, the search context that ranks candidates, halving, proxies."""

from glp.search.strategies import *  # noqa: F401,F403
