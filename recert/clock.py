"""The one clock. `RECERT_NOW` (ISO 8601) pins it for drills and tests that travel in time."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    def __init__(self, at: datetime) -> None:
        self.at = as_utc(at)

    def now(self) -> datetime:
        return self.at


class ClockError(ValueError):
    pass


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC (SQLite returns them naive)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_instant(text: str) -> datetime:
    try:
        return as_utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
    except ValueError as error:
        raise ClockError(f"not an ISO 8601 date-time: {text!r}") from error


def clock_from_env(environ: dict[str, str] | None = None) -> Clock:
    value = (environ if environ is not None else dict(os.environ)).get("RECERT_NOW")
    return FixedClock(parse_instant(value)) if value else SystemClock()
