"""The token audit log, generated on demand: newest first, paged by a time cursor.

A real Enterprise domain logs many `activity` events per user and app per day, far too
many to hold as a list (5,000 users over 180 days are millions of events). Each (user, app)
that is in use is a *series*: `uses_per_day` evenly spaced events a day for `use_days` days
up to its last use. Consents and revocations are a short list kept as one more series.
A page is the next `size` events of the merged series below the cursor; the order is
(time, series) descending, so the cursor `(time, series)` is exact.

Reports API shape and order (newest first, `nextPageToken`): admin.reports_v1.json
`activities.list`; event names and parameters:
developers.google.com/workspace/admin/reports/v1/appendix/activity/token.
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DAY_MS = 86_400_000
Cursor = tuple[int, int]  # (time in ms, series index): the last event already served
Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Actor:
    id: str
    email: str


@dataclass(frozen=True, slots=True)
class UseSeries:
    """`count` `activity` events of one user's app, `step` ms apart, newest at `last`."""

    actor: Actor
    client_id: str
    app_name: str
    last: int  # ms since the epoch
    step: int
    count: int

    def first_below(self, cursor: Cursor, series: int) -> int:
        """Index of this series' newest event that comes after `cursor` in log order."""
        moment, other = cursor
        if self.last < moment or (self.last == moment and series < other):
            return 0
        index = -(-(self.last - moment) // self.step)  # ceil: first event at or below
        if self.last - index * self.step == moment and series >= other:
            index += 1
        return index

    def at(self, index: int) -> int:
        return self.last - index * self.step


@dataclass(frozen=True, slots=True)
class Event:
    moment: int
    actor: Actor
    name: str
    parameters: tuple[tuple[str, Any], ...]


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def rfc3339_ms(moment: int) -> str:
    return datetime.fromtimestamp(moment / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class TokenLog:
    """Every token event of the domain: use series plus a list of discrete events."""

    def __init__(self, series: list[UseSeries], events: list[Event], customer: str) -> None:
        self.series = series
        self.events = sorted(events, key=lambda e: e.moment, reverse=True)
        self.customer = customer

    def add(self, event: Event) -> None:
        self.events.append(event)
        self.events.sort(key=lambda e: e.moment, reverse=True)

    def page(
        self,
        start: int,
        end: int,
        cursor: Cursor | None,
        size: int,
        keep: Callable[[str, Actor, dict[str, Any]], bool],
    ) -> tuple[list[Json], Cursor | None]:
        """Up to `size` items in [start, end] after `cursor`, and the cursor of the next
        page (None after the last)."""
        top: Cursor = cursor or (end + 1, -1)
        items: list[Json] = []
        last: Cursor | None = None
        for moment, index, event in self._merged(top, keep):
            if moment < start:
                return items, None
            if moment > end:
                continue
            if len(items) == size:
                return items, last
            items.append(self._item(event, index))
            last = (moment, index)
        return items, None

    def _merged(
        self, top: Cursor, keep: Callable[[str, Actor, dict[str, Any]], bool]
    ) -> Iterator[tuple[int, int, Event]]:
        """Events below `top` in log order: a heap over the series that `keep` admits."""
        heap: list[tuple[int, int, int]] = []  # (-time, -series, index in series)
        listed = len(self.series)
        for number, use in enumerate(self.series):
            if not keep("activity", use.actor, {"client_id": use.client_id}):
                continue
            index = use.first_below(top, number)
            if index < use.count:
                heap.append((-use.at(index), -number, index))
        for position, event in enumerate(self.events):
            if (event.moment, listed) < top and keep(
                event.name, event.actor, dict(event.parameters)
            ):
                heap.append((-event.moment, -listed, position))
                break
        heapq.heapify(heap)
        while heap:
            negative, series, index = heapq.heappop(heap)
            number = -series
            if number == listed:
                event = self.events[index]
                following = self._next_event(index + 1, keep)
                if following is not None:
                    heapq.heappush(heap, (-self.events[following].moment, series, following))
            else:
                use = self.series[number]
                event = Event(
                    -negative,
                    use.actor,
                    "activity",
                    (("client_id", use.client_id), ("app_name", use.app_name)),
                )
                if index + 1 < use.count:
                    heapq.heappush(heap, (-use.at(index + 1), series, index + 1))
            yield -negative, number, event

    def _next_event(
        self, position: int, keep: Callable[[str, Actor, dict[str, Any]], bool]
    ) -> int | None:
        for index in range(position, len(self.events)):
            event = self.events[index]
            if keep(event.name, event.actor, dict(event.parameters)):
                return index
        return None

    def _item(self, event: Event, series: int) -> Json:
        parameters = [
            {"name": name, "multiValue": list(value)}
            if isinstance(value, list | tuple)
            else {"name": name, "value": value}
            for name, value in event.parameters
        ]
        qualifier = zlib.crc32(f"{event.moment}:{series}:{event.name}".encode())
        return {
            "kind": "admin#reports#activity",
            "id": {
                "time": rfc3339_ms(event.moment),
                "uniqueQualifier": str(qualifier),
                "applicationName": "token",
                "customerId": self.customer,
            },
            "etag": '"emulator"',
            "actor": {
                "email": event.actor.email,
                "profileId": event.actor.id,
                "callerType": "USER",
            },
            "events": [{"type": "auth", "name": event.name, "parameters": parameters}],
        }

    def count(self, start: int, end: int) -> int:
        """How many events lie in [start, end] (for benchmarks' descriptions)."""
        total = sum(1 for e in self.events if start <= e.moment <= end)
        for use in self.series:
            newest = max(0, -(-(use.last - end) // use.step)) if use.last > end else 0
            oldest = min(use.count - 1, (use.last - start) // use.step)
            total += max(0, oldest - newest + 1)
        return total
