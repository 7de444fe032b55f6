"""The manifest of an exported model (``pruning.json``): ``glp export`` writes it next to the weights (how the model
was made), ``glp profile`` reads it to time an exported model against its unpruned source."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MANIFEST = "pruning.json"
SCHEMA = "glp.export/1"


def write_manifest(model_dir: str | os.PathLike[str], manifest: dict[str, Any]) -> Path:
    path = Path(model_dir) / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    return path


def read_manifest(model_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of the model in ``model_dir``; None when it is not a glp export."""
    path = Path(model_dir) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None
