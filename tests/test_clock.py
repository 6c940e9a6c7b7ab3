from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from recert.clock import ClockError, FixedClock, SystemClock, clock_from_env, parse_instant


def test_recert_now_pins_the_clock_in_utc() -> None:
    clock = clock_from_env({"RECERT_NOW": "2026-12-01T09:30:00+01:00"})
    assert clock.now() == datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    assert clock.now().tzinfo is UTC


def test_zulu_and_naive_instants_are_utc() -> None:
    assert parse_instant("2026-12-01T00:00:00Z") == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_instant("2026-12-01T00:00:00").tzinfo is UTC


def test_without_recert_now_the_clock_is_the_system_clock() -> None:
    clock = clock_from_env({})
    assert isinstance(clock, SystemClock)
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)


def test_fixed_clock_converts_other_zones() -> None:
    tz = timezone(timedelta(hours=-5))
    assert FixedClock(datetime(2026, 1, 1, 19, tzinfo=tz)).now() == datetime(2026, 1, 2, tzinfo=UTC)


def test_a_bad_recert_now_is_a_clear_error() -> None:
    with pytest.raises(ClockError, match="not an ISO 8601"):
        clock_from_env({"RECERT_NOW": "next tuesday"})
