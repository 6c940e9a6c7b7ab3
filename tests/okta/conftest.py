"""Okta fixtures: a seeded emulator over TLS and a connector with a fake clock and sleeper.

The fake clock drives both the emulator (rate-limit windows, Date headers) and the
connector, and its `sleep` only moves time forward: no test really sleeps.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Checkpoint, Page
from connectors.okta import OktaConnector
from connectors.pacing import LocalPacer
from connectors.settings import OktaSettings, settings_for
from sandbox.okta import REALISTIC_LIMITS, OktaEmulator, build
from sandbox.okta.app import SERVICE_SCOPES
from sandbox.server import EmulatorServer, serving
from sandbox.tls import SandboxCA


@dataclass
class FakeClock:
    """Epoch seconds that move only when someone sleeps.

    The time slept is summed apart from the epoch: at epoch scale a float cannot hold a
    pacer's microsecond waits, which would then never add up.
    """

    start: float = field(default_factory=lambda: float(int(time.time())))
    slept: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    @property
    def now_epoch(self) -> float:
        return self.start + self.slept

    def time(self) -> float:
        return self.now_epoch

    def elapsed(self) -> float:
        return self.slept

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_epoch, UTC)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.slept += seconds


@pytest.fixture(autouse=True)
def _hermetic_okta_sdk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hostile OKTA_CLIENT_* variables and an okta.yaml in the working dir: the connector
    must ignore both."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "okta.yaml").write_text(
        "okta:\n  client:\n    token: from-yaml\n    rateLimit:\n      maxRetries: 7\n"
    )
    monkeypatch.setenv("OKTA_CLIENT_TOKEN", "from-env")
    monkeypatch.setenv("OKTA_CLIENT_ORGURL", "https://elsewhere.okta.com")
    monkeypatch.setenv("OKTA_CLIENT_PROXY_HOST", "proxy.invalid")
    monkeypatch.setenv("OKTA_CLIENT_PROXY_PORT", "3128")
    os.environ.pop("OKTA_TESTING_TESTINGDISABLEHTTPSCHECK", None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@dataclass
class Org:
    emulator: OktaEmulator
    server: EmulatorServer
    clock: FakeClock
    ca: SandboxCA
    secrets: Path

    def settings(self, *, auth: str = "ssws", write: bool = False, **extra: Any) -> OktaSettings:
        table = self.emulator.tenant_table(
            "okta-test", self.server.url, self.ca.ca_bundle, self.secrets, auth=auth
        )
        enforce = table.pop("enforce")
        if write:
            table = {
                k: v
                for k, v in table.items()
                if k not in {"api_token_file", "client_id", "key_id", "private_key_file", "scopes"}
            }
            table.update(enforce)
        values = {_resolved(k): _read(k, v) for k, v in {**table, **extra}.items()}
        values.pop("kind")
        return settings_for("okta", values)  # type: ignore[return-value]

    def pacer(self) -> LocalPacer:
        """Buckets on the fake clock: the pacer's waits move it, like every other wait."""
        return LocalPacer(sleep=self.clock.sleep, clock=self.clock.elapsed)

    def connector(self, pacer: LocalPacer | None = None, **kwargs: Any) -> OktaConnector:
        return OktaConnector(
            self.settings(**kwargs),
            sleep=self.clock.sleep,
            now=self.clock.now,
            pacer=pacer or self.pacer(),
        )


def _resolved(key: str) -> str:
    return key.removesuffix("_file")


def _read(key: str, value: Any) -> Any:
    return Path(value).read_text() if key.endswith("_file") else value


def serve_org(
    emulator: OktaEmulator, clock: FakeClock, ca: SandboxCA, secrets: Path
) -> Iterator[Org]:
    with serving(emulator, ca) as server:
        yield Org(emulator, server, clock, ca, secrets)


@pytest.fixture
def org(sandbox_ca: SandboxCA, clock: FakeClock, tmp_path: Path) -> Iterator[Org]:
    """A small org (60 apps) with generous limits, for focused tests."""
    emulator = build(seed=7, size=60, clock=clock.time, limits=_generous())
    yield from serve_org(emulator, clock, sandbox_ca, tmp_path / "secrets")


@pytest.fixture
def tiny_org(sandbox_ca: SandboxCA, clock: FakeClock, tmp_path: Path) -> Iterator[Org]:
    """A dozen apps and one AI agent: for flows whose every request is costly (DPoP)."""
    emulator = build(seed=11, size=12, clock=clock.time, limits=_generous(), agents=1)
    yield from serve_org(emulator, clock, sandbox_ca, tmp_path / "secrets")


def _generous() -> dict[str, int]:
    return dict.fromkeys(REALISTIC_LIMITS, 10_000)


async def collect(connector: OktaConnector, cursor: dict[str, Any] | None = None) -> list[Page]:
    try:
        return [page async for page in connector.discover(cursor)]
    finally:
        await connector.aclose()


def merged(pages: list[Page]) -> dict[str, list[Any]]:
    """Every record of a run by type."""
    out: dict[str, list[Any]] = {}
    for name in (
        "principals",
        "credentials",
        "grants",
        "owner_hints",
        "people",
        "activity",
        "skipped",
    ):
        out[name] = [record for page in pages for record in getattr(page, name)]
    return out


def checkpoint(pages: list[Page]) -> Checkpoint:
    final = pages[-1].checkpoint
    assert final is not None
    return final


# Every read scope the emulated service app holds, AI agents included.
ALL_READ_SCOPES = tuple(sorted(s for s in SERVICE_SCOPES if s.endswith(".read")))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
