"""Shared fixtures: real services only. Nothing that can run for real is mocked.

PostgreSQL, Redis and the browser come from `RECERT_TEST_DATABASE_URL`,
`RECERT_TEST_REDIS_URL` and `RECERT_TEST_BROWSER`. Unset: those tests skip with a reason.
Set but unreachable: they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlmodel import SQLModel

from recert import db
from sandbox.server import free_port
from sandbox.tls import SandboxCA, make_ca

DATABASE_URL = os.environ.get("RECERT_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("RECERT_TEST_REDIS_URL")
BROWSER = os.environ.get("RECERT_TEST_BROWSER")


def spec_path(*parts: str) -> Path:
    """A file under the shared provider specs (`../shared/specs` beside the repo)."""
    root = Path(__file__).resolve().parents[1].parent / "shared" / "specs"
    return root.joinpath(*parts)


@pytest.fixture(scope="session")
def sandbox_ca(tmp_path_factory: pytest.TempPathFactory) -> SandboxCA:
    """One CA per test run; emulators serve certificates from it, clients trust its PEM."""
    return make_ca(tmp_path_factory.mktemp("ca"))


# --- databases -------------------------------------------------------------------------


@contextmanager
def temporary_database() -> Iterator[str]:
    """A PostgreSQL database of its own, dropped afterwards."""
    if not DATABASE_URL:
        pytest.skip("RECERT_TEST_DATABASE_URL is unset: PostgreSQL tests skipped")
    admin = create_engine(DATABASE_URL, isolation_level="AUTOCOMMIT")
    name = f"recert_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The run's shared PostgreSQL database (the `engine` fixture empties it per test)."""
    with temporary_database() as url:
        yield url


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A PostgreSQL database nobody has touched yet."""
    with temporary_database() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    engine = db.make_engine(postgres_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


def reset_database(engine: Engine) -> None:
    """Empty every table and restore the audit chain's genesis head."""
    tables = [t.name for t in SQLModel.metadata.sorted_tables]
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        connection.execute(
            text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :h)"), {"h": "0" * 64}
        )


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty database: every store test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        sqlite = db.make_engine(f"sqlite:///{tmp_path / 'recert.db'}")
        db.upgrade(sqlite)
        yield sqlite
        sqlite.dispose()
        return
    postgres = request.getfixturevalue("postgres_engine")
    reset_database(postgres)
    yield postgres


@pytest.fixture
def database_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


# --- Redis -----------------------------------------------------------------------------


@pytest.fixture
def redis_client() -> Iterator[Any]:
    """The shared Redis, with a key prefix of this test's own that is removed afterwards."""
    if not REDIS_URL:
        pytest.skip("RECERT_TEST_REDIS_URL is unset: Redis tests skipped")
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    prefix = f"recert-test:{uuid.uuid4().hex[:12]}:"
    client.test_prefix = prefix  # type: ignore[attr-defined]
    yield client
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


# --- SMTP ------------------------------------------------------------------------------


@dataclass
class CapturedMail:
    envelope_from: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class SmtpCapture:
    host: str
    port: int
    messages: list[CapturedMail] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # recipients answered 550 at RCPT

    def to(self, address: str) -> list[CapturedMail]:
        return [m for m in self.messages if address in m.recipients]


class _CaptureHandler:
    def __init__(self, capture: SmtpCapture) -> None:
        self.capture = capture

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.capture.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.capture.messages.append(
            CapturedMail(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                message_from_bytes(envelope.content, policy=policy.default),
            )
        )
        return "250 Message accepted"


@contextmanager
def capturing_smtp() -> Iterator[SmtpCapture]:
    """A real SMTP server (aiosmtpd) on loopback that keeps every message it accepts."""
    from aiosmtpd.controller import Controller

    capture = SmtpCapture(host="127.0.0.1", port=free_port())
    controller = Controller(_CaptureHandler(capture), hostname=capture.host, port=capture.port)
    controller.start()
    try:
        yield capture
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpCapture]:
    with capturing_smtp() as capture:
        yield capture


# --- browser ---------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (never a downloaded browser build).

    Per module: Playwright's sync API keeps an event loop running on the main thread while
    it lives, and later modules' `asyncio.run` (every connector call) must not meet it."""
    if not BROWSER:
        pytest.skip("RECERT_TEST_BROWSER is unset: browser tests skipped")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=BROWSER, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()
