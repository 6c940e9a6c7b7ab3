"""Progress for long commands: Rich bars on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from connectors.base import Page
    from recert.clock import Clock
    from recert.config import Tenant
    from recert.discovery import SyncSummary


class Step(Protocol):
    def advance(self, amount: int = 1, note: str = "") -> None: ...


class _PlainStep:
    def __init__(self, label: str, every: int) -> None:
        self.label, self.every, self.done, self._last = label, every, 0, 0

    def advance(self, amount: int = 1, note: str = "") -> None:
        self.done += amount
        if self.done - self._last >= self.every:
            self._last = self.done
            print(f"{self.label}: {self.done} {note}".rstrip(), file=sys.stderr, flush=True)


class _RichStep:
    def __init__(self, progress: Progress, task: TaskID) -> None:
        self.progress, self.task = progress, task

    def advance(self, amount: int = 1, note: str = "") -> None:
        self.progress.update(self.task, advance=amount, note=note)


@contextmanager
def step(label: str, total: int | None = None, every: int = 1) -> Iterator[Step]:
    """Show one long step; on a terminal as a live bar, elsewhere a line every `every`."""
    console = Console(stderr=True)
    if not console.is_terminal:
        print(f"{label}...", file=sys.stderr, flush=True)
        yield _PlainStep(label, every)
        return
    columns = [
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}"),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(label, total=total, note="")
        yield _RichStep(progress, task)


def discover_with_progress(engine: Engine, tenant: Tenant, clock: Clock) -> SyncSummary:
    """One tenant's discovery behind a progress step that counts the records streamed."""
    from recert.discovery import discover_tenant

    with step(f"discover {tenant.name}") as progress:

        def on_page(_tenant: str, page: Page) -> None:
            progress.advance(len(page.principals), "records")

        return discover_tenant(engine, tenant, clock, on_page=on_page)
