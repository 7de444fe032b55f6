"""Rendering a report: the markdown as one self-contained HTML page, the size checks of its figures, and the seeds'
spread drawn on its trade-off plot."""

from __future__ import annotations

import base64
import math
import os
import re
from pathlib import Path
from typing import Any

from glp.results.evaluation import BASELINE, row_score
from glp.tasks import relative_performance

DPI = 100  # the figures' resolution: a figure of w x h inches is w*DPI x h*DPI pixels


def to_html(markdown_text: str, base: Path, title: str) -> str:
    """A self-contained HTML page: the markdown rendered, the PNGs embedded as data URIs."""
    from markdown_it import MarkdownIt  # deferred: only --html needs it

    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown_text)

    def embed(m: re.Match[str]) -> str:
        f = base / m.group(1)
        if not f.exists():
            return m.group(0)
        return 'src="data:image/png;base64,' + base64.b64encode(f.read_bytes()).decode() + '"'

    body = re.sub(r'src="([^"]+\.png)"', embed, body)
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:3px 8px}"
        "th{background:#f3f3f3}img{max-width:100%}code{background:#f6f6f6;padding:0 3px}"
    )
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head>"
        f"<body>\n{body}</body></html>\n"
    )


def png_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    from PIL import Image  # deferred: only the report's figure check needs it

    with Image.open(path) as im:
        im.load()
        return im.size


def expected_size(figsize: tuple[float, float]) -> tuple[int, int]:
    return (int(math.floor(figsize[0] * DPI + 0.5)), int(math.floor(figsize[1] * DPI + 0.5)))


def seed_range(row: dict[str, Any], summary: dict[str, Any]) -> tuple[float, float] | None:
    """An evaluation row's relative performance with every task at its lowest and at its highest seed (the seeds'
    min–max) for the trade-off plot; None with one seed or without a relative score."""
    base = next((r for r in summary["rows"] if r["strategy"] == BASELINE), None)
    cells = row.get("cells") or {}
    if base is None or row.get("rel") is None or not cells:
        return None
    if any(len([s for s in c.get("scores", []) if s is not None]) < 2 for c in cells.values()):
        return None
    ends: list[float] = []
    for key in ("min", "max"):
        values = {t: c.get(key) for t, c in cells.items()}
        score = None if any(v is None for v in values.values()) else row_score(values)
        rel = relative_performance(score, base.get("score"), not summary.get("lower_is_better"))
        if rel is None:
            return None
        ends.append(rel)
    return (min(ends), max(ends))


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, imported on first use (it is slow to import; only figures need it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def error_bars(
    ax: Any, points: list[tuple[float, float, tuple[float, float]]], color: Any, zorder: int, label: str | None = None
) -> None:
    """Vertical bars from lo to hi at each (x, y, (lo, hi)) of ``points`` on the matplotlib axes ``ax``."""
    if points:
        lo = [p[1] - p[2][0] for p in points]
        hi = [p[2][1] - p[1] for p in points]
        ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[lo, hi], fmt="none", ecolor=color,
                    elinewidth=0.9, capsize=2.5, alpha=0.7, zorder=zorder, label=label)
