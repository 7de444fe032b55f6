"""Warm start (``glp prune --init parent``): a candidate starts from its parent's fine-tuned weights.

The paper fine-tunes every candidate from the pre-trained weights. With ``--init parent``, the parent of a removal
set ``R + (l,)`` (the sets of a nested search are built one layer at a time, in order) is the trained model of ``R``
with the same seed: the unpruned model fine-tuned on search-train for step 1 (the baseline trial, trained with the
whole schedule), the previous step's winner after that. The candidate is that model with layer ``l`` taken out,
trained for ``--heal-steps`` optimizer steps (a fresh AdamW), then scored.

Parents are kept like the distillation teachers: safetensors under ``RUN/cache/parents/``, named by a hash of the
run's journal context, the ordered removal set and the seed (content-addressed), written atomically once the trial
reaches its full budget; the search deletes a step's losers once the step is recorded. Worker processes read them
from the same disk. Ray actors, which may run on a node without the driver's disk, get them through Ray's object
store instead (`ParentsInTransit`): the driver sends a candidate's parent with the trial, and a trial's trained model
comes back with its result to be written here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from glp.atomic import write_atomic
from glp.errors import RunDirError
from glp.layers import drop_layers, find_layer_stack
from glp.trial.heal import merged

INITS = ("pretrained", "parent")


@dataclass(frozen=True)
class Parents:
    """Where a warm-started run keeps its parents, and what names them (plain data: sent to worker processes)."""

    directory: str
    context: dict[str, Any]  # the run's journal context (model, weights revision, task, split, hyper-parameters)

    def path(self, removed: Sequence[int], seed: int) -> Path:
        """The weights of the trained model that removes ``removed`` (in the order chosen) with ``seed``."""
        payload = {"context": self.context, "removed": [int(i) for i in removed], "seed": int(seed)}
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        return Path(self.directory) / f"{digest[:40]}.safetensors"

    def save(self, model: Any, removed: Sequence[int], seed: int) -> Path:
        """Keep a trained model as a parent: its plain weights (LoRA adapters merged), atomically."""
        state = {k: v.detach().to("cpu").contiguous() for k, v in merged(model).state_dict().items()}
        path = self.path(removed, seed)
        return write_atomic(path, lambda tmp: save_file(_unshared(state), str(tmp)))

    def write(self, removed: Sequence[int], seed: int, blob: bytes) -> Path:
        """Keep a parent that arrives as the bytes of its safetensors file (from a Ray actor, or sent to one),
        atomically."""
        return write_atomic(self.path(removed, seed), lambda tmp: Path(tmp).write_bytes(blob))

    def parent_of(self, removed: Sequence[int], seed: int) -> Path:
        """The kept parent of candidate ``removed`` (``seed``); a `RunDirError` that says what to do when it is not
        there."""
        path = self.path(tuple(removed[:-1]), seed)
        if not path.is_file():
            raise RunDirError(
                f"the parent of removal set {list(removed)} (seed {seed}), {path}, is missing: it is written when "
                "the parent's trial finishes; delete the run directory's journal entries of that step or use a new "
                "--out"
            )
        return path

    def model(self, build: Any, removed: Sequence[int], seed: int) -> Any:
        """The candidate ``removed`` of ``seed``: its parent's trained model (``build(parent_removed)`` gives the
        architecture) with the last layer of ``removed`` taken out."""
        parent, layer = tuple(removed[:-1]), int(removed[-1])
        model = self.trained(build(parent), self.parent_of(removed, seed))
        kept = [i for i in range(len(parent) + len(find_layer_stack(model).layers)) if i not in set(parent)]
        return drop_layers(model, [kept.index(layer)])

    @staticmethod
    def trained(model: Any, path: str | Path, missing: str | None = None) -> Any:
        """``model`` (the architecture of a removal set) with a kept parent's weights: a candidate's start, and what
        ``glp export`` ships from a warm-started search. ``missing``: what to say when the file is not there."""
        path = Path(path)
        if not path.is_file():
            trained = f"the model the warm-started search trained, {path}, is missing: export with --finetune instead"
            raise RunDirError(missing or trained)
        model.load_state_dict(_tied(model, load_file(str(path))), strict=True)
        return model

    def forget(self, removed: Sequence[int], seed: int) -> None:
        """Delete a parent no later step needs (a step's losers)."""
        self.path(removed, seed).unlink(missing_ok=True)


class ParentsInTransit:
    """A Ray actor's side of the parents: they live in a folder of the actor's own (its node may not share the
    driver's disk), arrive as bytes with the trial that starts from them (through Ray's object store) and leave the
    same way once a trial has kept its trained model, to be written to the driver's `Parents`."""

    def __init__(self, driver: Parents):
        self.local = Parents(tempfile.mkdtemp(prefix="glp-parents-"), driver.context)
        self.depths: dict[str, int] = {}  # file name -> the length of the removal set it is the model of

    def holds(self, removed: Sequence[int], seed: int) -> bool:
        """Does the folder hold candidate ``removed``'s parent already?"""
        return self.local.path(tuple(removed[:-1]), seed).is_file()

    def receive(self, removed: Sequence[int], seed: int, blob: bytes | None) -> None:
        """Before candidate ``removed`` runs: its parent's weights (``blob``) in the local folder. Parents of
        earlier steps (shorter removal sets) are deleted: no candidate starts from them any more. A parent's
        name is a hash of what trained it, so one sent again is the same file: it is written once."""
        if blob is None or self.holds(removed, seed):
            return
        depth = len(removed) - 1
        for name in [n for n, d in self.depths.items() if d < depth]:
            (Path(self.local.directory) / name).unlink(missing_ok=True)
            del self.depths[name]
        self.depths[self.local.write(tuple(removed[:-1]), seed, blob).name] = depth

    def clean_up(self) -> None:
        """Delete the folder and what it holds."""
        shutil.rmtree(self.local.directory, ignore_errors=True)
        self.depths.clear()

    def send(self, removed: Sequence[int], seed: int) -> bytes | None:
        """After a trial of ``removed`` ran: its kept trained model, as bytes (deleted here), or None when the trial
        kept none (a lower budget, a failure)."""
        path = self.local.path(tuple(removed), seed)
        if not path.is_file():
            return None
        blob = path.read_bytes()
        path.unlink(missing_ok=True)
        return blob


def _unshared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory (tied embeddings): keep the first name of each storage."""
    seen: set[tuple[int, int]] = set()
    out = {}
    for k, v in state.items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset())
        if key in seen:
            continue
        seen.add(key)
        out[k] = v
    return out


def _tied(model: Any, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The saved weights with the names `_unshared` dropped filled in from the model's own tied tensors."""
    own = model.state_dict()
    missing = set(own) - set(state)
    for k in missing:
        ptr = own[k].untyped_storage().data_ptr()
        twin = next((n for n in state if n in own and own[n].untyped_storage().data_ptr() == ptr), None)
        if twin is not None:
            state[k] = state[twin]
    return state
