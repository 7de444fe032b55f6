"""Early rejection: how much training budget each candidate of a step gets (successive halving).

The paper fine-tunes every candidate for the full 3 epochs and names "reject bad candidates after a few
training steps" as future work. `Halving` does that: all candidates of a step train for the first rung's
budget (a fraction of the full fine-tune), the best ``1/eta`` go on to the next rung, and so on until the
last rung, which is the full budget. Survivors continue from where they stopped (the executor keeps their
trainer state), so a rung costs only the steps between two budgets.

With ``rungs=3, eta=3`` the budgets are 1/9, 1/3 and 1 of the full fine-tune; a step with 6 candidates
trains 6 x 1/9 + 2 x (1/3 - 1/9) + 1 x (1 - 1/3) = 1.78 fine-tunes' worth of steps instead of 6.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from glp.errors import ConfigError


@dataclass(frozen=True)
class Halving:
    """Successive halving with ``rungs`` budgets, keeping the best ``ceil(n / eta)`` after each rung."""

    rungs: int = 3
    eta: float = 3.0
    min_budget: float | None = None  # first rung's budget; default eta ** -(rungs - 1)

    def __post_init__(self) -> None:
        if self.rungs < 1:
            raise ConfigError(f"--rungs must be at least 1, got {self.rungs}")
        if self.eta <= 1:
            raise ConfigError(f"--eta (1 / keep fraction) must be greater than 1, got {self.eta}")
        if self.min_budget is not None and not 0 < self.min_budget <= 1:
            raise ConfigError(f"--min-budget must be in (0, 1], got {self.min_budget}")

    def budgets(self) -> list[float]:
        """The training budget of each rung as a fraction of the full fine-tune, ending with 1.0."""
        if self.rungs == 1:
            return [1.0]
        lo = self.min_budget if self.min_budget is not None else self.eta ** -(self.rungs - 1)
        # geometric from lo to 1
        return [round(lo ** (1 - i / (self.rungs - 1)), 9) for i in range(self.rungs - 1)] + [1.0]

    def keep(self, n: int) -> int:
        """How many of ``n`` candidates go on to the next rung."""
        return max(1, math.ceil(n / self.eta))

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self) | {"budgets": self.budgets()}


FULL = Halving(rungs=1)
"""No early rejection: every candidate gets the full fine-tune (the paper's behaviour)."""
