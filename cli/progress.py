"""Progress bars for long computations: the CLI's side of the library's ``progress.step`` protocol
(ingest and the demo share it)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


class RichProgress:
    """A rich progress bar per step of the computation (the library only calls ``step``)."""

    def __init__(self, console) -> None:
        self.console = console

    @contextlib.contextmanager
    def step(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        columns = (TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=False) as bar:
            task = bar.add_task(description, total=total)
            def advance(n: int = 1) -> None:
                bar.advance(task, n)

            yield advance


def progress_for(quiet: bool) -> RichProgress | None:
    """Progress bars on stderr, or none with ``--quiet``."""
    if quiet:
        return None
    from rich.console import Console

    return RichProgress(Console(stderr=True))
