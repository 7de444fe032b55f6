"""Rendering a report: the markdown as one self-contained HTML page, and the size checks of its figures."""

from __future__ import annotations

import base64
import math
import os
import re
from pathlib import Path

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
