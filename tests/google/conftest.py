"""Fixtures: seeded Google emulators served over TLS, and connectors pointed at them."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import sandbox.google
from connectors.base import Page
from connectors.google import GoogleConnector
from connectors.pacing import LocalPacer
from connectors.settings import GoogleSettings, settings_for
from sandbox.google import GoogleEmulator
from sandbox.server import EmulatorServer, serving
from sandbox.tls import SandboxCA


@dataclass
class Sleeps:
    """The injected sleeper: records every wait and moves a virtual clock, never sleeps.
    Sleepers wake in the order of their wake times, so concurrent waits overlap as they
    would in real time. The emulator's quota window and the pacer run on this clock."""

    calls: list[float] = field(default_factory=list)
    now: float = 0.0
    waking: list[float] = field(default_factory=list)  # heap of pending wake times

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        target = self.now + seconds
        heapq.heappush(self.waking, target)
        while self.waking[0] < target:  # an earlier sleeper wakes first
            await asyncio.sleep(0)
        heapq.heappop(self.waking)
        self.now = max(self.now, target)

    def clock(self) -> float:
        return self.now


@dataclass
class Tenant:
    emulator: GoogleEmulator
    server: EmulatorServer
    settings: GoogleSettings
    sleeps: Sleeps
    pacer: LocalPacer = field(init=False)

    def __post_init__(self) -> None:
        self.emulator.quota.clock = self.sleeps.clock
        self.pacer = LocalPacer(sleep=self.sleeps, clock=self.sleeps.clock)

    def connector(self, **overrides: Any) -> GoogleConnector:
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        return GoogleConnector(
            settings, sleep=self.sleeps, now=lambda: self.emulator.now, pacer=self.pacer
        )

    def discover(self, cursor: dict[str, Any] | None = None, **overrides: Any) -> list[Page]:
        async def run() -> list[Page]:
            connector = self.connector(**overrides)
            try:
                return [page async for page in connector.discover(cursor)]
            finally:
                await connector.aclose()

        return asyncio.run(run())


def settings_from(table: dict[str, Any]) -> GoogleSettings:
    """What the config layer does: resolve `credentials_file` into `credentials`."""
    values = dict(table)
    values["credentials"] = Path(values.pop("credentials_file")).read_text()
    settings = settings_for("google", values)
    assert isinstance(settings, GoogleSettings)
    return settings


@pytest.fixture
def serve(sandbox_ca: SandboxCA, tmp_path: Path) -> Iterator[Callable[[GoogleEmulator], Tenant]]:
    with_servers: list[Any] = []

    def start(emulator: GoogleEmulator) -> Tenant:
        context = serving(emulator, sandbox_ca)
        server = context.__enter__()
        with_servers.append(context)
        table = emulator.tenant_table("google-test", server.url, sandbox_ca.ca_bundle, tmp_path)
        return Tenant(emulator, server, settings_from(table), Sleeps())

    yield start
    for context in with_servers:
        context.__exit__(None, None, None)


@pytest.fixture
def small(serve: Callable[[GoogleEmulator], Tenant]) -> Tenant:
    return serve(sandbox.google.build(seed=7, size=40, users=120))
