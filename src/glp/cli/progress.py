"""What the commands print while they run and when they are done: the search's progress (`SearchProgress`), the
plan's table (`print_plan`), the progress of export's fine-tune and of evaluate's trials, export's summary."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


def _search_wall(cost: dict[str, Any]) -> str:
    """The search's wall time over all its calls, where it differs from this call's."""
    total = cost.get("search_wall_seconds")
    if total is None or total - cost.get("wall_seconds", 0) < 1:
        return ""
    return f", {'' if cost.get('search_wall_complete') else 'at least '}{total:,.0f} s over all its calls"


class SearchProgress:
    """Progress of a search: step k/N, trial i/m, the step's best so far, elapsed time and ETA.

    Every event is rendered once, by `line`; a terminal shows those lines in a live display (rich progress bars), a
    log (nohup, CI, a pipe) gets them one per line with a time stamp.
    """

    def __init__(self, max_remove: int) -> None:
        self.max_remove = max_remove
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.steps = self.progress.add_task("steps", total=max_remove, info="", visible=True)
        self.trials = self.progress.add_task("trials", total=1, info="", visible=False)
        self.best: float | None = None
        self.higher = True
        self.n: int | str = 0
        # not a terminal (nohup, CI, a pipe): one plain line per event instead of a live display
        self.plain = not self.progress.console.is_terminal
        self.batch_start = self.batch_done = self.batch_total = self.batch_cached = 0
        self.t0 = time.time()

    def __enter__(self):
        if not self.plain:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if not self.plain:
            self.progress.__exit__(*exc)

    def event(self, name: str, **info) -> None:
        self._track(name, info)
        text = self.line(name, info)
        if self.plain:
            if text:
                elapsed = time.time() - self.t0
                typer.echo(f"[{time.strftime('%H:%M:%S')} +{elapsed:.0f}s] {text}", err=True)
            return
        p = self.progress
        if name in ("step_start", "batch_start"):
            label = f"step {info['n']}/{info['total']}" if name == "step_start" else info["label"]
            p.update(self.steps, description=label, info=escape(text))
        elif name == "trials_start":
            cached = info["cached"]
            p.reset(self.trials, total=max(info["total"], 1), completed=cached, visible=True, info=escape(text or ""))
        elif name == "trial_done":
            p.update(self.trials, advance=1, description="trials", info=escape(text))
        elif name == "step_done":
            p.update(self.steps, advance=1, info=escape(text))
        elif text:
            p.console.print(("[yellow]warning:[/yellow] " if name == "warning" else "") + escape(text))

    def _track(self, name: str, info: dict) -> None:
        """The state the lines report: the current step, the batch's count and the step's best score."""
        if name in ("step_start", "batch_start"):
            self.n, self.best = (info["n"] if name == "step_start" else info["label"]), None
            self.higher = info.get("higher_is_better", self.higher)
        elif name == "trials_start":
            self.batch_start, self.batch_total = time.time(), info["total"]
            self.batch_done = self.batch_cached = info["cached"]
            for request, result in info.get("from_journal", ()):  # a resumed step's best includes its journaled trials
                self._note(request, result)
        elif name == "trial_done":
            self.batch_done += 1
            self._note(info["request"], info["result"])

    def _note(self, request, result: dict) -> None:
        """'best so far' is over the step's candidates, not the unpruned model's trials."""
        if request.removed and result.get("status") == "ok" and result.get("score") is not None:
            s = result["score"]
            better = self.best is None or (s > self.best if self.higher else s < self.best)
            self.best = s if better else self.best

    def line(self, name: str, info: dict) -> str | None:
        """The one rendering of an event (None: nothing to say)."""
        if name == "warning":
            return f"warning: {info['text']}" if self.plain else info["text"]
        if name == "step_start":
            line = f"step {info['n']}/{info['total']}: {info['candidates']} candidates"
            if "parent" in info:  # --init parent: the model the step's candidates start from
                parent = info["parent"]
                line += f", from the winner that removes {parent}" if parent else ", from the fine-tuned unpruned model"
            return line
        if name == "batch_start":
            return f"{info['label']}: {info['candidates']} removal sets of a fixed order, fine-tuned at once"
        if name == "trials_start":
            return f"{info['cached']} of {info['total']} trials from the journal" if info["cached"] else None
        if name == "trial_done":
            r, req = info["result"], info["request"]
            eta = _remaining(self.batch_start, self.batch_done, self.batch_cached, self.batch_total)
            score = f"{r['score']:.4f}" if r.get("score") is not None else f"failed ({r.get('reason')})"
            where = (
                "baseline (with the first batch)"
                if not req.removed
                else f"step {self.n}/{self.max_remove}"
                if isinstance(self.n, int) and self.n
                else self.n or "search"
            )
            return (
                f"{where} trial {self.batch_done}/{self.batch_total}: remove {sorted(req.removed)} (seed {req.seed}, "
                f"budget {req.budget:g}) -> {score}; best so far {_fmt(self.best)}; ETA for this batch {eta:.0f}s"
            )
        if name == "rung_done":
            return f"step {info['n']}: rung {info['rung']} (budget {info['budget']:g}) kept {info['kept']}"
        if name == "step_done":
            s = info["step"]
            return f"step {s.n} done: remove {s.chosen} ({_fmt(s.chosen_mean)})"
        return None


def _remaining(start: float, done: int, cached: int, total: int) -> float:
    """Seconds the ``total - done`` trials left should take, at the pace of those run since ``start`` (``done``
    counts the ``cached`` journal hits, which take no time)."""
    return (time.time() - start) / max(done - cached, 1) * (total - done)


def _duration(seconds: float) -> str:
    """A rough duration: 40 s, 12 min, 3.4 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def print_plan(plan, chosen: int | None = None) -> None:
    """The plan as a table (`Plan.table_rows`): one row per number of removed layers; ``chosen`` is marked."""
    metric = plan.task.get("metric", "score")
    scheme = (plan.task.get("options") or {}).get("scheme")
    tags = f", {scheme} tags" if scheme and scheme != "none" else ""
    title = (
        f"{plan.strategy.get('name')} on {plan.task.get('name')} ({metric}{tags}, search split) — "
        f"{plan.model.get('source')}, {plan.num_layers} layers" + ("" if plan.complete else " [partial]")
    )
    table = Table(title=title)
    for col in ("n", "remove (in order)", "layers left", f"{metric} mean", "± std", "seeds separate it?", "tried"):
        table.add_column(col, justify="right" if col not in ("remove (in order)",) else "left")
    for r in plan.table_rows():
        sep = "" if r["separated"] is None else ("yes" if r["separated"] else "[yellow]no[/]")
        table.add_row(
            f"[bold green]{r['n']} ←[/]" if chosen is not None and r["n"] == chosen else str(r["n"]),
            ",".join(map(str, r["removed"])) or "-",
            str(r["layers_left"]),
            _fmt(r["mean"]),
            "" if r["n"] == 0 else _fmt(r["std"]),
            sep,
            "" if r["tried"] is None else str(r["tried"]),
        )
    console = Console()
    console.print(table)
    c = plan.cost
    if c:
        console.print(
            f"cost: {c.get('trials', 0)} trials ({c.get('trials_run', 0)} run now, "
            f"{c.get('trials_reused', 0)} from the journal), {c.get('train_steps', 0):,} training steps, "
            f"{c.get('trial_seconds', 0):.0f} s of trials, {c.get('wall_seconds', 0):.0f} s wall for this call"
            + _search_wall(c)
        )
    for s in plan.steps:
        if s.separated is False:
            console.print(
                f"[yellow]step {s.n}: the winner {s.chosen} is not separated from {s.runner_up} "
                "by more than the seeds' spread[/]"
            )
        if s.note:
            console.print(f"step {s.n}: {escape(s.note)}")
    if plan.baseline and plan.baseline.get("warning"):
        console.print(f"[yellow]warning:[/yellow] {escape(plan.baseline['warning'])}")
    if getattr(plan, "stopped", None):
        console.print(f"[yellow]the search stopped early:[/yellow] {escape(plan.stopped['reason'])}")


def fine_tune_progress() -> Callable[[int, int, float], None]:
    """A fine-tune's progress callback (step, total, loss): one line about every tenth of the steps, and the last."""
    shown = 0

    def progress(step: int, total: int, loss: float) -> None:
        nonlocal shown
        if step - shown >= max(1, total // 10) or step == total:
            shown = step
            typer.echo(f"  fine-tune step {step}/{total}, loss {loss:.4f}")

    return progress


def evaluation_progress() -> Callable[..., None]:
    """``glp evaluate``'s event handler: the teacher, each task's trials and one line per finished trial, with the
    time the task's remaining trials should take at the pace of those run so far (journal hits take none)."""
    done = total = cached = 0
    start = time.time()

    def on_event(event: str, **info: Any) -> None:
        nonlocal done, total, cached, start
        if event == "teacher":
            typer.echo(f"{info['task']}: the teacher (the unpruned model, seed {info['seed']}) for distillation")
        elif event == "trials_start":
            done = cached = info["cached"]
            total, start = info["total"], time.time()
            typer.echo(f"{info['task']}: {info['total']} trials ({info['cached']} from the journal)")
        elif event == "trial_done":
            done += 1
            r, req = info["result"], info["request"]
            score = f"{r['score']:.4f}" if r.get("score") is not None else f"failed ({r.get('reason')})"
            left = _remaining(start, done, cached, total)
            typer.echo(
                f"  [{done}/{total}] remove {list(req.removed) or '-'} seed {req.seed}: "
                f"{score} ({r.get('wall_time', 0):.0f} s)" + (f"; about {_duration(left)} left" if done < total else "")
            )

    return on_event


def print_exported(manifest: dict[str, Any], out) -> None:
    """What ``glp export`` wrote: the layers removed, the parameters, the metrics (or the head's state)."""
    m = manifest
    typer.echo(
        f"removed layers {m['removed_layers']}: {m['source']['num_layers']} → {m['num_layers']} layers, "
        f"{m['parameters']:,} parameters"
    )
    if m["metrics"]:
        for split, values in m["metrics"].items():
            typer.echo(f"{split}: " + ", ".join(f"{k}={v:.4f}" for k, v in values.items()))
    else:
        typer.secho(f"note: the head is {m['head']} (no --finetune)", fg=typer.colors.YELLOW)
    typer.echo(f"saved to {out} (pruning.json, README.md)")
