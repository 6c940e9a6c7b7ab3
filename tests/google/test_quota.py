"""Pacing to the Admin SDK quota: spread over the window, never burst and back off."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import sandbox.google
from connectors.base import Page
from connectors.google import usage
from connectors.google.client import GoogleClient
from sandbox.google import GoogleEmulator
from tests.google.conftest import Tenant
from tests.google.truth import fold

Serve = Callable[[GoogleEmulator], Tenant]
QUOTA = 120  # a small per-minute quota, so a 300-user run spans several windows
IN_FLIGHT = 8  # requests a connector has out at once: taken from the bucket, not yet seen


def busiest_minute(times: list[float]) -> int:
    ordered, busiest, first = sorted(times), 0, 0
    for last, moment in enumerate(ordered):
        while ordered[first] <= moment - 60:
            first += 1
        busiest = max(busiest, last - first + 1)
    return busiest


def test_a_full_run_spreads_over_the_quota_and_stays_near_the_bound(serve: Serve) -> None:
    tenant = serve(sandbox.google.build(seed=9, size=30, users=300, quota_per_minute=QUOTA))
    pages = tenant.discover()
    quota = tenant.emulator.quota
    usable = QUOTA * (1 - tenant.settings.rate_limit_reserve)
    assert pages[-1].checkpoint is not None
    assert quota.throttled == 0, "paced runs never meet a quota error"
    assert busiest_minute(quota.admitted) <= usable + IN_FLIGHT, "the reserve stays free"
    bound = len(quota.admitted) / usable * 60
    assert tenant.sleeps.now <= 1.25 * bound
    tokens = [r for r in tenant.emulator.requests if r.path.endswith("/tokens")]
    assert len(tokens) == 300, "one tokens.list per user, none repeated"


def test_workers_sharing_the_tenants_pacer_share_the_quota(serve: Serve) -> None:
    tenant = serve(sandbox.google.build(seed=3, size=20, users=60, quota_per_minute=QUOTA))

    async def two_at_once() -> list[list[Page]]:
        async def one() -> list[Page]:
            connector = tenant.connector()
            try:
                return [page async for page in connector.discover()]
            finally:
                await connector.aclose()

        return list(await asyncio.gather(one(), one()))

    first, second = asyncio.run(two_at_once())
    assert fold(first).grants == fold(second).grants
    usable = QUOTA * (1 - tenant.settings.rate_limit_reserve)
    assert tenant.emulator.quota.throttled == 0
    assert busiest_minute(tenant.emulator.quota.admitted) <= usable + 2 * IN_FLIGHT


def test_every_throttle_answer_waits_for_the_window(small: Tenant) -> None:
    """403 userRateLimitExceeded / rateLimitExceeded / quotaExceeded, 429, and Reports' 503."""
    emulator = small.emulator
    users = [u.id for u in emulator.seed.users[:10]]
    reasons = ("userRateLimitExceeded", "rateLimitExceeded", "quotaExceeded", "429", "503")

    async def each_answer() -> None:
        connector = small.connector()
        client = GoogleClient(small.settings, sleep=small.sleeps, pacer=small.pacer)
        try:
            for reason in reasons:
                emulator.throttle_reason = reason
                reports = reason == "503"  # Reports says it with 503
                emulator.faults.only_paths = r"/activity/" if reports else r"/tokens$"
                emulator.faults.throttle_next = 12
                waited = small.sleeps.now
                if reports:
                    await usage.app_use_logged(
                        client, emulator.now - timedelta(days=1), emulator.now
                    )
                else:
                    _, read = await connector.tokens_chunk(users)
                    assert len(read.read) == len(users), reason
                assert emulator.faults.throttle_next == 0, reason
                assert small.sleeps.now - waited >= 15, reason
        finally:
            await connector.aclose()
            await client.aclose()

    asyncio.run(each_answer())


def test_another_tool_spending_the_quota_delays_but_never_fails_the_run(serve: Serve) -> None:
    emulator = sandbox.google.build(seed=7, size=40, users=120, quota_per_minute=50)
    tenant = serve(emulator)
    pages = tenant.discover(quota_per_minute=2400)  # Recert believes it has it all
    assert pages[-1].checkpoint is not None
    assert emulator.quota.throttled > 0
    assert len(fold(pages).people) == 120
