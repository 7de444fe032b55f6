"""Progress of a long load: reading a large checkpoint (or de-quantizing a GGUF file) takes minutes, during which
transformers' own bars are off (`glp.models.loader.quiet_transformers`). `LoadProgress` prints one line to stderr
every ``EVERY`` seconds once a load has run ``AFTER`` seconds: what is read, how many of its tensors so far (counted
through the loops transformers would draw its bars for) and the time; and, when it printed anything, a last line
with the total. A load shorter than ``AFTER`` prints nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

AFTER = 10.0  # seconds before the first line
EVERY = 30.0  # seconds between lines


class LoadProgress:
    """A context manager around one load of ``what``; `tqdm` stands for transformers' progress bars inside it."""

    def __init__(self, what: str, stream: TextIO | None = None, after: float | None = None, every: float | None = None):
        self.what = what
        self.stream = stream
        self.after = AFTER if after is None else after
        self.every = EVERY if every is None else every
        self.stage: str | None = None  # the loop transformers is in ("Loading weights", ...)
        self.done = 0
        self.total: int | None = None
        self.printed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    # -- transformers' bars, counted instead of drawn

    def tqdm(self, iterable: Iterable[Any] | None = None, *args: Any, desc: str | None = None, **kw: Any) -> Any:
        """What ``tqdm(iterable, desc=...)`` returns inside the load: the iterable, its items counted."""
        total = kw.get("total")
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.stage, self.done, self.total = (desc or "tensors").rstrip(". "), 0, total
        return _Counted(self, iterable if iterable is not None else ())

    # -- the lines

    def _line(self, final: bool = False) -> None:
        out = self.stream or sys.stderr
        seconds = time.perf_counter() - self._t0
        count = f"{self.done:,}" + (f"/{self.total:,}" if self.total else "")
        stage = f"{self.stage}: {count}, " if self.stage else ""
        verb = "read" if final else "reading"
        print(f"glp: {verb} {self.what}: {stage}{seconds:.0f} s", file=out, flush=True)
        self.printed = True

    def _beat(self) -> None:
        wait = self.after
        while not self._stop.wait(wait):
            self._line()
            wait = self.every

    def __enter__(self) -> LoadProgress:
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._beat, name="glp-load-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.printed and exc[0] is None:
            self._line(final=True)


class _Counted:
    """An iterable whose items `LoadProgress` counts as they are taken."""

    def __init__(self, progress: LoadProgress, iterable: Iterable[Any]):
        self.progress = progress
        self.iterable = iterable

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable:
            yield item
            self.progress.done += 1

    def __len__(self) -> int:
        return len(self.iterable)  # type: ignore[arg-type]

    # (transformers calls these on its bars)
    def update(self, n: int = 1) -> None:
        self.progress.done += n

    def set_postfix(self, *args: Any, **kw: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Counted:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass
