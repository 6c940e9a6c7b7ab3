"""Entra fixtures: a seeded emulator served over TLS, and connectors pointed at it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.base import Page
from connectors.entra import EntraConnector
from connectors.settings import EntraSettings
from sandbox.entra import EntraEmulator, build
from sandbox.server import serving
from sandbox.tls import SandboxCA


class FakeSleep:
    """Records every wait the connector asks for; never sleeps."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


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


def connector(settings: EntraSettings, sleep: FakeSleep | None = None) -> EntraConnector:
    return EntraConnector(settings, sleep=sleep or FakeSleep(), now=lambda: datetime.now(UTC))


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
    return build(seed=7, size=2000, malformed=4)


@pytest.fixture
def small_tenant() -> EntraEmulator:
    return build(seed=3, size=120, delta_page_size=15)
