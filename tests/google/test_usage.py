"""Last use from the token log: honest on every edition, streamed, and read since the last run."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import sandbox.google
from connectors.base import LAST_USE_UNKNOWN, Page, PrincipalKind
from connectors.google import usage
from connectors.google.client import GoogleClient
from connectors.google.usage import rfc3339
from sandbox.google import GoogleEmulator
from tests.google.conftest import Tenant
from tests.google.truth import expected_last_use, fold

Serve = Callable[[GoogleEmulator], Tenant]


def cursor_of(pages: list[Page]) -> dict[str, Any]:
    checkpoint = pages[-1].checkpoint
    assert checkpoint is not None
    return dict(checkpoint.cursor)


def reports_since(tenant: Tenant, first: int) -> list[Any]:
    return [r for r in tenant.emulator.requests[first:] if "/activity/" in r.path]


def test_business_edition_says_last_use_is_unknown(serve: Serve) -> None:
    tenant = serve(sandbox.google.build(seed=7, size=30, users=80, edition="business"))
    stream = fold(tenant.discover())
    apps = [p for p in stream.principals.values() if p.kind == PrincipalKind.THIRD_PARTY_APP]
    assert apps
    assert stream.activity == {}, "no Activity: nothing says 'unused since'"
    for app in apps:
        assert "does not log app use" in app.raw[LAST_USE_UNKNOWN]


def test_enterprise_edition_knows_last_use(small: Tenant) -> None:
    stream = fold(small.discover())
    apps = [p for p in stream.principals.values() if p.kind == PrincipalKind.THIRD_PARTY_APP]
    assert all(LAST_USE_UNKNOWN not in app.raw for app in apps)
    expected = expected_last_use(small.emulator.seed)
    assert {c: a.last_used_at for c, a in stream.activity.items()} == expected
    assert any(moment is not None for moment in expected.values())


def test_first_run_asks_per_app_not_per_event(small: Tenant) -> None:
    """179 days of many events a day: a few newest pages, then one query per app left."""
    emulator = small.emulator
    window = (emulator.now - timedelta(days=179), emulator.now)
    events = emulator.token_log.count(*(int(t.timestamp() * 1000) for t in window))
    small.discover()
    token_log = [r for r in reports_since(small, 0) if r.path.endswith("/token")]
    apps = {cid for user in emulator.seed.users for cid in user.tokens}
    assert events > 5 * 1000
    assert len(token_log) <= len(apps) + 4
    assert all(r.arg("endTime") for r in token_log)


def test_nights_read_the_log_since_the_last_run(serve: Serve) -> None:
    tenant = serve(sandbox.google.build(seed=5, size=30, users=400))
    emulator = tenant.emulator
    cursor = cursor_of(tenant.discover())
    first_end = emulator.now
    emulator.advance(timedelta(days=1), active_share=1.0, seed=3)
    before = len(emulator.requests)
    stream = fold(tenant.discover(cursor))
    night = reports_since(tenant, before)
    assert night
    for request in night:
        assert request.arg("startTime") >= rfc3339(first_end - timedelta(hours=1))
    tonight: dict[str, datetime] = {}
    for use in emulator.token_log.series:
        if use.last > first_end.timestamp() * 1000:
            moment = datetime.fromtimestamp(use.last / 1000, UTC)
            tonight[use.client_id] = max(moment, tonight.get(use.client_id, moment))
    assert tonight
    for client_id, moment in tonight.items():
        assert stream.activity[client_id].last_used_at == moment


def test_memory_does_not_grow_with_the_log(serve: Serve) -> None:
    """8 pages of events are read holding about one: one latest time per app is kept."""
    tenant = serve(sandbox.google.build(seed=5, size=30, users=400))
    emulator = tenant.emulator
    apps = {cid for user in emulator.seed.users for cid in user.tokens}
    end = emulator.now
    start = end - timedelta(days=25)
    assert (
        emulator.token_log.count(int(start.timestamp() * 1000), int(end.timestamp() * 1000)) > 7000
    )

    async def peak() -> tuple[int, int]:
        client = GoogleClient(tenant.settings, sleep=tenant.sleeps, pacer=tenant.pacer)
        try:
            await usage.app_use_logged(client, start, end)  # builds the services first
            tracemalloc.start()
            try:
                scan = await usage.last_use(client, start, end, apps, exhaustive=True)
                return tracemalloc.get_traced_memory()[1], scan.pages
            finally:
                tracemalloc.stop()
        finally:
            await client.aclose()

    held, pages = asyncio.run(peak())
    assert pages >= 8
    # A page is about 1.5 MiB parsed, and as much again while the emulator writes it:
    # holding the events would take 12 MiB and more.
    assert held < 8 * 2**20, f"{held / 2**20:.1f} MiB held"


def test_quiet_night_costs_a_sliver_of_a_full_run(serve: Serve) -> None:
    """Only users with consent events get tokens.list; everyone else costs nothing."""
    tenant = serve(sandbox.google.build(seed=9, size=30, users=300))
    emulator = tenant.emulator
    cursor = cursor_of(tenant.discover())
    full = len(emulator.requests)
    seed_users = emulator.seed.users
    newcomer, leaver = seed_users[10], next(u for u in seed_users if u.tokens)
    token = next(iter(leaver.tokens.values()))
    emulator.advance(timedelta(hours=20), active_share=0.3, seed=4)
    emulator.consent(newcomer.id, token, emulator.now - timedelta(hours=2))
    emulator.revoke(leaver.id, token.client_id, emulator.now - timedelta(hours=1))
    pages = tenant.discover(cursor)
    night = emulator.requests[full:]
    listed = {r.path.split("/")[-2] for r in night if r.path.endswith("/tokens")}
    assert listed == {newcomer.id, leaver.id}
    assert len(night) <= 0.05 * full + len([r for r in night if "/v1/projects/" in r.path])
    checkpoint = pages[-1].checkpoint
    assert checkpoint is not None
    assert checkpoint.full is False
    assert checkpoint.consents_of == {newcomer.id, leaver.id}
    grants = {(g.principal_id, g.consenting_user) for g in fold(pages).grants}
    assert (token.client_id, newcomer.id) in grants
    assert (token.client_id, leaver.id) not in grants


@pytest.mark.parametrize("days", [2])
def test_a_full_pass_every_full_sync_days(serve: Serve, days: int) -> None:
    tenant = serve(sandbox.google.build(seed=9, size=20, users=60))
    emulator = tenant.emulator
    cursor = cursor_of(tenant.discover(full_sync_days=days))
    for night in range(1, days + 1):
        emulator.advance(timedelta(days=1))
        pages = tenant.discover(cursor, full_sync_days=days)
        checkpoint = pages[-1].checkpoint
        assert checkpoint is not None
        assert checkpoint.full is (night == days)
        cursor = dict(checkpoint.cursor)


def test_a_last_run_ahead_of_the_clock_means_reading_the_whole_window_again() -> None:
    """A drill that ran at a later RECERT_NOW leaves a checkpoint in the future: the next
    run at the real time must not ask Google for a start after its end."""
    from connectors.google.state import LogState, Plan

    now = datetime(2026, 12, 4, tzinfo=UTC)
    ahead = LogState(log_until=now + timedelta(days=15), full_at=now + timedelta(days=15))
    plan = Plan.decide(ahead, now, full_sync_days=7)
    assert plan.first
    assert plan.full
    assert plan.since == plan.window_start() < now
