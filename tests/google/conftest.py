"""Fixtures: seeded Google emulators served over TLS, and connectors pointed at them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import sandbox.google
from connectors.base import Page
from connectors.google import GoogleConnector
from connectors.settings import GoogleSettings, settings_for
from sandbox.google import GoogleEmulator
from sandbox.server import EmulatorServer, serving
from sandbox.tls import SandboxCA


@dataclass
class Sleeps:
    """The injected sleeper: records every wait, never sleeps."""

    calls: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@dataclass
class Tenant:
    emulator: GoogleEmulator
    server: EmulatorServer
    settings: GoogleSettings
    sleeps: Sleeps

    def connector(self, **overrides: Any) -> GoogleConnector:
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        return GoogleConnector(settings, sleep=self.sleeps, now=lambda: self.emulator.now)

    def discover(self, **overrides: Any) -> list[Page]:
        async def run() -> list[Page]:
            connector = self.connector(**overrides)
            try:
                return [page async for page in connector.discover()]
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
