"""The shared pacer: a quota is never exceeded in any window, in a process or across workers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from connectors.pacing import Limit, LocalPacer, RedisPacer


class FakeTime:
    """A clock that only the pacer's own waits move forward."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def spent_per_window(stamps: list[float], window: float) -> int:
    """The most calls made in any window of `window` seconds."""
    return max(sum(1 for s in stamps if start <= s < start + window) for start in stamps)


def test_for_quota_leaves_the_reserve_free() -> None:
    limit = Limit.for_quota(2400, 60, reserve=0.1)
    assert limit.per_window + limit.burst == pytest.approx(2160)
    assert limit.window == 60


def test_local_pacer_never_exceeds_the_quota_in_any_window() -> None:
    fake = FakeTime()
    pacer = LocalPacer(sleep=fake.sleep, clock=fake.clock)
    limit = Limit.for_quota(100, 60, reserve=0.2)
    stamps = []

    async def run() -> None:
        for _ in range(400):
            await pacer.acquire("directory", limit)
            stamps.append(fake.now)

    asyncio.run(run())
    assert spent_per_window(stamps, 60) <= 80
    # Paced, not stalled: 400 calls at 72 per minute after the first burst of 8.
    assert fake.now == pytest.approx((400 - 8) / limit.rate, rel=0.01)


def test_local_pacer_charges_costs_learnt_afterwards_and_honours_hold_off() -> None:
    fake = FakeTime()
    pacer = LocalPacer(sleep=fake.sleep, clock=fake.clock)
    limit = Limit(per_window=10, window=10, burst=5)

    async def run() -> None:
        await pacer.acquire("ru", limit)
        pacer.charge("ru", limit, 9)  # the response said it cost 10 units in all
        await pacer.acquire("ru", limit)
        assert fake.now == pytest.approx(6.0)  # from -5 back to the 1 unit needed
        pacer.hold_off("ru", 30)
        await pacer.acquire("ru", limit)
        assert fake.now >= 36.0

    asyncio.run(run())


@pytest.mark.redis
def test_redis_pacer_is_shared_by_every_worker(redis_client: Any) -> None:
    """Two pacers (two workers) on one bucket together stay within its quota."""
    limit = Limit(per_window=20, window=1, burst=2)
    prefix = redis_client.test_prefix
    workers = [RedisPacer(redis_client, "okta-prod", prefix=prefix) for _ in range(2)]
    stamps: list[float] = []

    async def worker(pacer: RedisPacer) -> None:
        for _ in range(15):
            await pacer.acquire("apps", limit)
            stamps.append(time.monotonic())

    async def run() -> None:
        await asyncio.gather(*(worker(p) for p in workers))

    started = time.monotonic()
    asyncio.run(run())
    # 30 calls at 20 per second after a burst of 2 take at least 1.4 s together.
    assert time.monotonic() - started >= 1.3
    assert spent_per_window(stamps, 1.0) <= 20 + 2
    assert redis_client.exists(f"{prefix}recert:pace:okta-prod:apps")


@pytest.mark.redis
def test_redis_hold_off_stops_every_worker(redis_client: Any) -> None:
    limit = Limit(per_window=1000, window=1, burst=100)
    first = RedisPacer(redis_client, "google-prod", prefix=redis_client.test_prefix)
    second = RedisPacer(redis_client, "google-prod", prefix=redis_client.test_prefix)
    first.hold_off("directory", 0.5)
    started = time.monotonic()
    asyncio.run(second.acquire("directory", limit))
    assert time.monotonic() - started >= 0.45
