"""Quota errors, 5xx, resets and expired page tokens, with the injected sleeper."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from connectors.base import PermissionDenied, ProviderError, TransientError
from connectors.google import GoogleConnector, LogState
from connectors.google.client import MAX_ATTEMPTS
from sandbox.server import free_port
from tests.google.conftest import Tenant
from tests.google.truth import fold


def test_directory_quota_403_waits_for_the_window(small: Tenant) -> None:
    small.emulator.faults.only_paths = r"/tokens$"
    small.emulator.faults.throttle_next = 3
    clean = fold(small.discover())
    quota = [r for r in small.emulator.requests if r.path.endswith("/tokens")]
    assert len(quota) == 120 + 3
    assert small.sleeps.calls
    assert all(0 < delay <= 60 for delay in small.sleeps.calls)
    assert sum(small.sleeps.calls) >= 15  # a quarter window at least: the quota turns
    assert len(clean.people) == 120


def test_iam_429_and_5xx_and_resets_recover(small: Tenant) -> None:
    faults = small.emulator.faults
    faults.only_paths = r"/serviceAccounts"
    faults.throttle_next, faults.fail_next, faults.reset_next = 2, 2, 1
    pages = small.discover()
    assert pages[-1].checkpoint is not None
    assert len(small.sleeps.calls) >= 4


def test_backoff_grows_and_gives_up(small: Tenant) -> None:
    small.emulator.faults.only_paths = r"/admin/directory/v1/users$"
    small.emulator.faults.fail_next = 100
    with pytest.raises(TransientError, match="unavailable"):
        small.discover()
    assert len(small.sleeps.calls) == MAX_ATTEMPTS - 1
    assert small.sleeps.calls[-1] > small.sleeps.calls[0]


def test_truncated_body_is_transient(small: Tenant) -> None:
    small.emulator.faults.only_paths = r"/activity/"
    small.emulator.faults.truncate_next = 1
    pages = small.discover()
    assert pages[-1].checkpoint is not None
    assert len(small.sleeps.calls) == 1


def test_expired_page_token_fails_the_run(small: Tenant) -> None:
    small.emulator.faults.expire_page_tokens = True
    with pytest.raises(ProviderError, match="Invalid Input") as raised:
        small.discover(users_per_chunk=50)
    assert raised.value.tenant == "google-test"


def test_token_signed_by_another_key_is_refused(small: Tenant, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    info = json.loads(small.settings.credentials.get_secret_value())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    info["private_key"] = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    settings = small.settings.model_copy(update={"credentials": SecretStr(json.dumps(info))})
    connector = GoogleConnector(settings, sleep=small.sleeps, now=lambda: small.emulator.now)

    async def first_page() -> None:
        try:
            await anext(connector.people_pages(connector.plan(LogState())))
        finally:
            await connector.aclose()

    with pytest.raises(PermissionDenied, match="invalid_grant"):
        asyncio.run(first_page())


@pytest.mark.parametrize("endpoint", ["directory_url", "token_uri"])
def test_an_unreachable_endpoint_fails_at_once_with_one_readable_line(
    small: Tenant, endpoint: str
) -> None:
    dead = f"https://127.0.0.1:{free_port()}/" + ("token" if endpoint == "token_uri" else "")
    started = time.monotonic()
    with pytest.raises(TransientError) as raised:
        small.discover(**{endpoint: dead})
    assert time.monotonic() - started < 15
    assert small.sleeps.calls == [], "no retries before the first answer"
    message = str(raised.value)
    assert message.startswith("google-test")
    where = f"the token endpoint {dead}" if endpoint == "token_uri" else dead
    assert f"cannot reach {where}: connection refused" in message
    assert "\n" not in message
    assert "Error(" not in message
