"""Named evaluation phases: a rich progress bar for each and its wall time.

Every number in genzoo's cost columns comes from here, so each phase is timed the
same way (``time.perf_counter`` around the whole phase, device synchronised).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Bar:
    """A phase's handle: ``advance(n)`` as work is done, ``set_total(n)`` once it is known."""

    def __init__(self, progress: Progress | None = None, task: Any = None) -> None:
        self.progress = progress
        self.task = task
        self.total: int | None = None

    def advance(self, n: int) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, n)

    def set_total(self, n: int) -> None:
        self.total = n
        if self.progress is not None:
            self.progress.update(self.task, total=n)


def make_progress(console: Console | None = None) -> Progress:
    """The bar layout every evaluation phase uses (description, bar, count, times).

    A description names a model label (a reused run's folder) and samplers: plain text,
    never rich markup, so ``[/bold]`` in a folder name is shown and is no MarkupError.
    """
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
    )


class Phases:
    """Runs phases under one ``Progress`` (or silently) and records their seconds."""

    def __init__(self, progress: Progress | None = None, prefix: str = "") -> None:
        self.progress = progress
        self.prefix = prefix
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str, total: int | None = None) -> Iterator[Bar]:
        """Time the block as phase ``name``; the block reports its work on the yielded bar."""
        bar = Bar()
        if self.progress is not None:
            label = f"{self.prefix}: {name}" if self.prefix else name
            bar = Bar(self.progress, self.progress.add_task(label, total=total))
        bar.total = total
        synchronize()
        started = time.perf_counter()
        try:
            yield bar
        finally:
            synchronize()
            self.seconds[name] = time.perf_counter() - started
            if self.progress is not None and bar.total is not None:
                self.progress.update(bar.task, completed=bar.total)


def synchronize() -> None:
    """Wait for queued GPU work, so a phase's wall time includes it."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
