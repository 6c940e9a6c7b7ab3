"""Pacing per rate-limit bucket: each bucket's limit learnt from the headers, a reserve kept
free for the org's other integrations, and a 429 holding off every caller of the bucket."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.okta.conftest import Org, checkpoint, collect

pytestmark = pytest.mark.anyio


def per_window(org: Org, bucket: str) -> Counter[int]:
    window = org.emulator.window
    return Counter(int(at // window) for at, name, _ in org.emulator.served if name == bucket)


async def test_each_bucket_keeps_its_reserve_free(org: Org) -> None:
    """The org's real limits (10 and 5 a minute here, not Okta's documented 100 and 120)
    are learnt from X-Rate-Limit-Limit; 30 % of each stays free in every window."""
    org.emulator.buckets["apps"].limit = 10
    org.emulator.buckets["logs"].limit = 5
    org.emulator.expire_cursors = 0
    pages = await collect(org.connector(page_size=20))
    assert checkpoint(pages).full
    assert not [s for _, _, s in org.emulator.served if s == 429]
    apps = per_window(org, "apps")
    assert sum(apps.values()) > 20, "enough calls to need several windows"
    assert max(apps.values()) <= 7
    assert max(per_window(org, "logs").values()) <= 3


async def test_others_spending_the_bucket_make_us_wait(org: Org) -> None:
    """Another integration left less than the reserve (X-Rate-Limit-Remaining): nothing
    more is asked of that bucket until it resets."""
    bucket = org.emulator.buckets["apps"]
    bucket.limit = 100
    bucket.window, bucket.used = int(org.clock.time() // org.emulator.window), 80
    await collect(org.connector())
    apps = sorted(at for at, name, _ in org.emulator.served if name == "apps")
    assert int(apps[1] // 60) > int(apps[0] // 60), "the second call waits for the reset"


async def test_a_429_holds_off_every_caller_of_the_bucket(org: Org) -> None:
    """Two runs share one pacer (as Celery workers share the RedisPacer): after one of
    them is throttled, neither calls that bucket again before Okta's reset."""
    pacer = org.pacer()
    org.emulator.faults.only_paths = r"^/api/v1/apps/[^/]+/grants$"
    org.emulator.faults.throttle_next = 1
    first, second = org.connector(pacer=pacer), org.connector(pacer=pacer)
    results = await asyncio.gather(collect(first), collect(second))
    assert all(checkpoint(pages).full for pages in results)
    served = [(at, status) for at, name, status in org.emulator.served if name == "apps"]
    throttled_at = next(at for at, status in served if status == 429)
    reset = (int(throttled_at // 60) + 1) * 60
    after = [at for at, status in served if at > throttled_at]
    assert after
    assert min(after) >= reset, "no one asked the throttled bucket before its reset"
