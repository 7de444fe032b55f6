"""The plan: what a search found, as plain versioned JSON (``RUN_DIR/plan.json``).

``Plan.layers_to_remove(n)`` is a dictionary lookup for every n up to the searched maximum: greedy (GLP) and
the fixed patterns are nested (the set for n contains the set for n-1) and also keep ``order``; beam and
optimal may not be nested, so ``removals`` maps each n to its own set, listed in the order it was found.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from glp.atomic import write_text_atomic
from glp.errors import LayerIndexError, RunDirError, one_line
from glp.kinds import kind_of

SCHEMA = "glp.plan/1"


@dataclass
class Candidate:
    """One removal set scored in a step: every seed's value, their mean and spread."""

    removed: list[int]
    added: int | None
    scores: list[float | None]
    mean: float | None
    std: float | None
    budget: float
    status: str  # "ok" | "failed" | "rejected" (stopped early by successive halving)
    reason: str | None = None
    proxy: float | None = None
    eval_loss: float | None = None  # mean over seeds of the search-eval loss; breaks exact ties of ``mean``

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        return cls(**d)


@dataclass
class Step:
    """Step k of a search: the candidates tried, the one kept, and whether seeds separate it."""

    n: int
    candidates: list[Candidate]
    chosen: list[int]
    chosen_mean: float | None
    runner_up: list[int] | None = None
    runner_up_mean: float | None = None
    separated: bool | None = None
    note: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        d = dict(d)
        d["candidates"] = [Candidate.from_dict(c) for c in d["candidates"]]
        return cls(**d)


@dataclass
class Plan:
    model: dict[str, Any]
    task: dict[str, Any]
    data: dict[str, Any]
    hparams: dict[str, Any]
    strategy: dict[str, Any]
    num_layers: int
    max_remove: int
    removals: dict[int, list[int]] = field(default_factory=dict)
    order: list[int] | None = None
    steps: list[Step] = field(default_factory=list)
    baseline: dict[str, Any] | None = None
    cost: dict[str, Any] = field(default_factory=dict)
    complete: bool = False
    stopped: dict[str, Any] | None = None  # --stop-drop ended the search: {"after_n", "reason", "stop_drop"}
    glp_version: str = ""
    schema: str = SCHEMA

    # -- lookup -------------------------------------------------------------------------------------
    def final_hparams(self) -> dict[str, Any]:
        """The hyper-parameters a final fine-tune of this plan starts from (`glp evaluate`, `glp export --finetune`):
        the search's, less a warm start's candidate budget (``--init parent``'s ``heal_steps`` trained each candidate
        from its parent; a final fine-tune starts from the pre-trained weights and trains the whole schedule)."""
        d = dict(self.hparams)
        if self.strategy.get("init") == "parent":
            d.pop("heal_steps", None)
        return d

    @property
    def searched_max(self) -> int:
        return max(self.removals, default=0)

    def layers_to_remove(self, n: int) -> list[int]:
        """The layers to remove for ``n`` removed layers, in the order they were chosen. O(1)."""
        if n == 0:
            return []
        try:
            return list(self.removals[n])
        except KeyError:
            have = sorted(self.removals)
            raise LayerIndexError(
                f"the plan has no removal set for n={n}; it covers n in {have or 'nothing yet'}"
            ) from None

    def kept_layers(self, n: int) -> list[int]:
        gone = set(self.layers_to_remove(n))
        return [i for i in range(self.num_layers) if i not in gone]

    @property
    def higher_is_better(self) -> bool:
        """The direction of the plan's metric (its task's kind): False for perplexity."""
        return kind_of(self.task).higher_is_better()

    def table_rows(self) -> list[dict[str, Any]]:
        """The plan as rows, one per number of removed layers (the baseline first, n = 0): ``n``, ``removed``,
        ``layers_left``, ``mean`` and ``std`` of the chosen set, ``separated`` (do the seeds separate it from the
        runner-up? None: not measured), ``tried`` (candidates; "baseline" for n = 0). ``glp show`` and
        ``glp report`` render these."""
        rows: list[dict[str, Any]] = []
        if self.baseline is not None:
            rows.append({"n": 0, "removed": [], "layers_left": self.num_layers, "mean": self.baseline.get("mean"),
                         "std": None, "separated": None, "tried": "baseline"})  # fmt: skip
        by_n = {s.n: s for s in self.steps}
        for n in sorted(self.removals):
            s = by_n.get(n)
            win = next((c for c in s.candidates if sorted(c.removed) == sorted(s.chosen)), None) if s else None
            rows.append(
                {
                    "n": n,
                    "removed": list(self.removals[n]),
                    "layers_left": self.num_layers - n,
                    "mean": s.chosen_mean if s else None,
                    "std": win.std if win else None,
                    "separated": s.separated if s else None,
                    "tried": len(s.candidates) if s else None,
                }
            )
        return rows

    # -- JSON -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["removals"] = {str(k): v for k, v in sorted(self.removals.items())}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        """The plan of a dict that `to_dict` wrote; `RunDirError` naming the first field that is not of its type."""
        schema = d.get("schema")
        if schema != SCHEMA:
            raise RunDirError(f"plan schema {schema!r} is not supported (this glp reads {SCHEMA!r})")
        d = dict(d)
        removals, steps = d.get("removals", {}), d.get("steps", [])
        _need("removals", removals, isinstance(removals, dict) and all(_ints(v) for v in removals.values()),
              "an object of n: [layer, ...]")  # fmt: skip
        if not all(isinstance(k, str) and k.strip().isdecimal() for k in removals):
            raise RunDirError(f"the keys of plan field removals must be numbers of layers, got {list(removals)}")
        d["removals"] = {int(k): list(v) for k, v in removals.items()}
        _need("steps", steps, isinstance(steps, list) and all(isinstance(s, dict) for s in steps), "a list of objects")
        for s in steps:
            c = s.get("candidates")
            _need("candidates", c, isinstance(c, list) and all(isinstance(x, dict) for x in c), "a list of objects")
        d["steps"] = [Step.from_dict(s) for s in steps]
        plan = cls(**d)
        plan._check()
        return plan

    def _check(self) -> None:
        """The fields `table_rows`, `layers_to_remove` and the commands read, of their types."""
        _need("num_layers", self.num_layers, _int(self.num_layers) and self.num_layers >= 0, "a number of layers")
        _need("max_remove", self.max_remove, _int(self.max_remove), "an integer")
        for name in ("model", "task", "data", "hparams", "strategy", "cost"):
            _need(name, getattr(self, name), isinstance(getattr(self, name), dict), "an object")
        for name in ("baseline", "stopped"):
            _need(name, getattr(self, name), isinstance(getattr(self, name), dict | None), "an object or null")
        _need("order", self.order, self.order is None or _ints(self.order), "a list of layers or null")
        for removed in self.removals.values():
            _need("removals", removed, all(0 <= i < self.num_layers for i in removed), "layers of the model")
        if self.baseline is not None:
            _need("baseline.mean", self.baseline.get("mean"), _num(self.baseline.get("mean")), "a number or null")
        for s in self.steps:
            _need("steps[].n", s.n, _int(s.n), "an integer")
            _need("steps[].chosen", s.chosen, _ints(s.chosen), "a list of layers")
            _need("steps[].chosen_mean", s.chosen_mean, _num(s.chosen_mean), "a number or null")
            _need("steps[].separated", s.separated, isinstance(s.separated, bool | None), "true, false or null")
            for c in s.candidates:
                _need("candidates[].removed", c.removed, _ints(c.removed), "a list of layers")
                _need("candidates[].scores", c.scores, isinstance(c.scores, list) and all(map(_num, c.scores)),
                      "a list of numbers")  # fmt: skip
                for name in ("mean", "std", "proxy", "eval_loss"):
                    _need(f"candidates[].{name}", getattr(c, name), _num(getattr(c, name)), "a number or null")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the plan file ``path`` atomically (a reader never sees half a file). Where a run directory keeps
        its plans is `glp.run.rundir.RunDir`'s business (``RunDir.save_plan``)."""
        return write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Plan:
        """Read the plan file ``path``. A run directory's plans: ``RunDir(run).load_plan()`` or `glp.load_plan`."""
        path = Path(path)
        if path.is_dir():
            raise RunDirError(f"{path} is a directory: read a run directory's plan with glp.load_plan({str(path)!r})")
        d = read_artifact(path, SCHEMA, "plan", "is this a glp run directory? (glp prune --out DIR writes one)")
        try:
            return cls.from_dict(d)
        except (TypeError, KeyError, RunDirError) as e:
            raise RunDirError(f"{path} is not a valid glp plan: {e}") from e


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _ints(v: Any) -> bool:
    return isinstance(v, list) and all(map(_int, v))


def _num(v: Any) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool))


def _need(field: str, value: Any, ok: bool, what: str) -> None:
    """A plan field ``field`` that is not ``what`` (``ok`` false): `RunDirError`."""
    if not ok:
        raise RunDirError(f"plan field {field} must be {what}, got {value!r:.80}")


def read_artifact(path: str | os.PathLike[str], schema: str | None, what: str, hint: str) -> dict[str, Any]:
    """A JSON file glp wrote (plan, evaluation, profile), with clear errors: missing (``hint`` says which command
    writes it), not JSON, or not of ``schema`` (when given)."""
    p = Path(path)
    if not p.is_file():
        raise RunDirError(f"no {what} at {p}: {hint}")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RunDirError(f"{p} is not valid JSON: {e}") from e
    except (ValueError, RecursionError) as e:  # not UTF-8, nested too deep, an integer of more than 4300 digits
        raise RunDirError(f"{p} is not valid JSON: {one_line(e)[:200]}") from e
    except OSError as e:
        raise RunDirError(f"cannot read the {what} {p}: {e.strerror or e}") from e
    if not isinstance(d, dict):
        raise RunDirError(f"{p} is not a glp {what}: it holds a JSON {type(d).__name__}, not an object")
    if schema is not None and d.get("schema") != schema:
        raise RunDirError(f"{p} is not a glp {what} (its schema is {d.get('schema')!r}; this glp reads {schema!r})")
    return d


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes (an export's manifest names the plan it was made from by it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
