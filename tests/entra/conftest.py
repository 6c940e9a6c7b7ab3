"""Entra fixtures: a seeded emulator served over TLS, and connectors pointed at it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.base import Page
from connectors.entra import EntraConnector
from connectors.pacing import LocalPacer
from connectors.settings import EntraSettings
from sandbox.entra import EntraEmulator, build
from sandbox.server import serving
from sandbox.tls import SandboxCA


class Clock:
    """Seconds that pass only when FakeSleep sleeps: the pacer's and the quota's time."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


# One time line for the tests' emulators, pacers and sleeps: it moves only when a
# FakeSleep sleeps, so throttling plays out the same way on every run.
TEST_CLOCK = Clock()


class FakeSleep:
    """Records every wait the connector asks for and moves `clock` to its end; never
    sleeps. Other tasks run meanwhile, and waits that overlap end together, as real ones
    would."""

    def __init__(self, clock: Clock = TEST_CLOCK) -> None:
        self.waits: list[float] = []
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        until = self.clock.seconds + seconds
        await asyncio.sleep(0)
        self.clock.seconds = max(self.clock.seconds, until)


@contextmanager
def served(app: EntraEmulator, ca: SandboxCA) -> Iterator[str]:
    with serving(app, ca) as server:
        yield server.url


def settings_for(
    app: EntraEmulator, url: str, ca: SandboxCA, *, write: bool = False, **extra: Any
) -> EntraSettings:
    client_id = app.write_client_id if write else app.read_client_id
    values: dict[str, Any] = {
        "name": "entra-test",
        "tenant_id": app.tenant.tenant_id,
        "client_id": client_id,
        "client_secret": app.secret_of(client_id),
        "graph_url": url,
        "authority": url,
        "ca_bundle": str(ca.ca_bundle),
        **extra,
    }
    return EntraSettings.model_validate(values)


def connector(
    settings: EntraSettings,
    sleep: FakeSleep | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> EntraConnector:
    """A connector whose pacer waits through `sleep` on `sleep.clock`."""
    sleep = sleep or FakeSleep()
    pacer = LocalPacer(sleep=sleep, clock=sleep.clock)
    return EntraConnector(settings, sleep=sleep, now=now, pacer=pacer)


def discover(
    conn: EntraConnector, cursor: dict[str, Any] | None = None, seen: list[Page] | None = None
) -> list[Page]:
    """Run discovery to the end; `seen` keeps the pages delivered before a failure."""
    pages = [] if seen is None else seen

    async def run() -> list[Page]:
        try:
            async for page in conn.discover(cursor):
                pages.append(page)
            return pages
        finally:
            await conn.aclose()

    return asyncio.run(run())


@pytest.fixture(scope="session")
def large_tenant() -> EntraEmulator:
    return build(seed=7, size=2000, malformed=4, clock=TEST_CLOCK)


@pytest.fixture
def small_tenant() -> EntraEmulator:
    return build(seed=3, size=120, delta_page_size=15, clock=TEST_CLOCK)
