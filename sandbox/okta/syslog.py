"""The emulated System Log: months of events held compactly, rendered only when asked.

A real org logs thousands of sign-ins a day; holding each as a dict would cost gigabytes,
so events are kept as parallel columns (time, type, detail) sorted by time, and a query
scans only the time range it names. How long a query "takes" is the number of events it
has to scan: past `scan_budget` the answer is Okta's query timeout (500 E0000009).
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SSO = "user.authentication.sso"
_EVENT_TYPE = re.compile(r'^\s*eventType\s+eq\s+"([^"]+)"\s*$', re.IGNORECASE)

Renderer = Callable[[int, float, str, tuple[Any, ...]], dict[str, Any]]


def okta_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class SystemLog:
    """Events sorted by `published`; `detail[i]` is whatever `render` needs for event i."""

    times: array[float] = field(default_factory=lambda: array("d"))
    types: list[str] = field(default_factory=list)
    detail: list[tuple[Any, ...]] = field(default_factory=list)
    render_event: Renderer | None = None

    def extend(self, rows: list[tuple[float, str, tuple[Any, ...]]]) -> None:
        """Add rows (time, type, detail) and keep the columns sorted by time."""
        merged = sorted(
            [*zip(self.times, self.types, self.detail, strict=True), *rows], key=lambda r: r[0]
        )
        self.times = array("d", (row[0] for row in merged))
        self.types = [row[1] for row in merged]
        self.detail = [row[2] for row in merged]

    def __len__(self) -> int:
        return len(self.times)

    def span(self, low: float, high: float) -> tuple[int, int]:
        """Indexes of the events published in [low, high)."""
        return bisect_left(self.times, low), bisect_left(self.times, high)

    def render(self, index: int) -> dict[str, Any]:
        assert self.render_event is not None
        return self.render_event(index, self.times[index], self.types[index], self.detail[index])

    def matching(
        self,
        start: int,
        stop: int,
        expression: str | None,
        predicate: Callable[[dict[str, Any]], bool] | None,
        descending: bool = False,
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """Events in index range [start, stop) that pass the filter, rendered lazily: an
        expression that only names event types is checked on the type column first."""
        wanted = event_types(expression)
        indexes = range(stop - 1, start - 1, -1) if descending else range(start, stop)
        for index in indexes:
            if wanted is not None and self.types[index] not in wanted:
                continue
            event = self.render(index)
            if predicate is None or predicate(event):
                yield index, event


def event_types(expression: str | None) -> frozenset[str] | None:
    """The event types of a filter made only of `eventType eq "..."` joined by `or`."""
    if not expression:
        return None
    parts = re.split(r"\s+or\s+", expression.strip(), flags=re.IGNORECASE)
    found = [_EVENT_TYPE.match(part) for part in parts]
    if not all(found):
        return None
    return frozenset(match.group(1) for match in found if match)
