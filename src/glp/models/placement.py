"""A candidate over several devices (``--device-map auto``): accelerate places the pruned model's blocks over the
devices a worker sees (its GPUs, then the CPU, then the disk), recomputed for every candidate, since a candidate with
fewer layers fits in fewer devices.

`Placement.place` takes a candidate built on the CPU (over the frozen base of the process, `glp.models.build`),
computes its map with accelerate's ``infer_auto_device_map`` (whole blocks: the model's ``_no_split_modules``) under
``--max-memory`` (default: accelerate's balanced share of each GPU), and dispatches it (``dispatch_model``: each
block's weights copied to its device, hooks that move the activations between them). Blocks the map puts on the CPU
(with a GPU as the main device) or on the disk are *offloaded*: their weights are read onto the main device for each
forward pass and never kept there. That works for scoring (``--heal none``); training needs every block's weights on
the device where it runs, so a map that offloads a trained candidate is refused with what to change.

The base is never written to: dispatching replaces the candidate's own module entries (`glp.layers.shared_copy`), and
disk-offloaded weights go to a folder of their own per candidate (under ``$TMPDIR``), removed with it.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from typing import Any

import torch

from glp.errors import ConfigError

#: ``--device-map`` choices
DEVICE_MAPS = ("auto",)
_SIZE = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)$", re.IGNORECASE)


def parse_max_memory(text: str | None) -> dict[int | str, str] | None:
    """``--max-memory 0=70GiB,1=70GiB,cpu=200GiB`` → accelerate's ``max_memory`` ({0: "70GiB", ..., "cpu": ...}).
    `ConfigError` on an entry that is not DEVICE=SIZE (DEVICE a GPU id or cpu; SIZE like 512MiB or 70GB)."""
    if text is None:
        return None
    out: dict[int | str, str] = {}
    for raw in str(text).split(","):
        entry = raw.strip()
        if not entry:
            continue
        device, eq, size = entry.partition("=")
        device, size = device.strip().lower(), size.strip()
        if not eq or not (device.isdigit() or device == "cpu") or not _SIZE.match(size):
            raise ConfigError(
                f"--max-memory {text!r}: each entry is DEVICE=SIZE, DEVICE a GPU id or cpu, SIZE like 70GiB or "
                f"512MB; got {entry!r}"
            )
        out[int(device) if device.isdigit() else device] = size.replace(" ", "")
    if not out:
        raise ConfigError(f"--max-memory {text!r} names no device")
    return out


@dataclass(frozen=True)
class Placement:
    """Where a candidate's blocks go: ``device_map`` ("auto") under ``max_memory`` (``--max-memory``, parsed by
    `parse_max_memory`; None: accelerate's balanced share of the visible GPUs, and the CPU)."""

    device_map: str = "auto"
    max_memory: dict[int | str, str] | None = None

    def __post_init__(self) -> None:
        if self.device_map not in DEVICE_MAPS:
            raise ConfigError(f"--device-map {self.device_map!r}: the choices are {', '.join(DEVICE_MAPS)}")

    def device_map_of(self, model: Any) -> dict[str, Any]:
        """The map of ``model`` (module name → GPU id, "cpu" or "disk"), its blocks kept whole."""
        from accelerate import infer_auto_device_map  # deferred: accelerate is slow to import
        from accelerate.utils import get_balanced_memory

        whole = list(getattr(model, "_no_split_modules", None) or [])
        dtype = next(model.parameters()).dtype
        memory = self.max_memory
        if memory is None and torch.cuda.is_available():
            memory = get_balanced_memory(model, no_split_module_classes=whole, dtype=dtype)
        return infer_auto_device_map(model, max_memory=memory, no_split_module_classes=whole, dtype=dtype)

    def place(self, model: Any, *, training: bool) -> tuple[Any, torch.device]:
        """(``model`` dispatched over its map, the main device: where its inputs go and its outputs come back).
        ``training``: its weights will be trained (adapters included), so no block may be offloaded."""
        from accelerate import dispatch_model  # deferred: accelerate is slow to import

        device_map = self.device_map_of(model)
        devices = set(device_map.values())
        gpus = sorted(d for d in devices if d not in ("cpu", "disk"))
        main = torch.device("cuda", int(gpus[0])) if gpus else torch.device("cpu")
        offloaded = sorted(n for n, d in device_map.items() if d == "disk" or (d == "cpu" and gpus))
        if training and offloaded:
            raise ConfigError(
                f"--device-map auto: the candidate does not fit the devices' memory, so {len(offloaded)} of its "
                f"modules ({', '.join(offloaded[:3])}{', ...' if len(offloaded) > 3 else ''}) would be offloaded "
                f"to {'the disk' if not gpus else 'the CPU or disk'}, and offloaded weights cannot be trained: give it "
                "more devices (--devices 0+1+2+3), raise --max-memory, or score without healing (--heal none)"
            )
        folder = tempfile.mkdtemp(prefix="glp-offload-") if "disk" in devices else None  # (under $TMPDIR)
        if folder is not None:  # the candidate's own: removed with it (or when the process ends)
            weakref.finalize(model, shutil.rmtree, folder, True)
        said = logging.getLogger("accelerate.big_modeling")  # ("some parameters are on the meta device": by design)
        level = said.level
        said.setLevel(logging.ERROR)
        try:
            model = dispatch_model(model, device_map, main_device=str(main) if gpus else "cpu", offload_dir=folder)
        finally:
            said.setLevel(level)
        return model, main


def is_dispatched(model: Any) -> bool:
    """Whether ``model`` was placed by `Placement.place` (accelerate's hooks move its activations; ``.to`` must not
    move it)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, "hf_device_map", None) is not None and hasattr(base, "_hf_hook")
