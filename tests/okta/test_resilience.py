"""Rate-limit pacing, 429 waits, faults, auth failures and error mapping."""

from __future__ import annotations

import pytest

from connectors.base import PermissionDenied, PrincipalKind, PrincipalRef, ProviderError
from tests.okta.conftest import Org, collect

pytestmark = pytest.mark.anyio


async def test_slows_down_before_the_bucket_runs_dry(org: Org) -> None:
    org.emulator.buckets["apps"].limit = 10
    pages = await collect(org.connector())
    assert pages[-1].checkpoint is not None
    assert not [
        r
        for r in org.emulator.requests
        if r.path.startswith("/api/") and r.headers.get("x-okta-retry-count")
    ]
    assert org.clock.sleeps
    assert all(0 < s <= 61 for s in org.clock.sleeps)
    assert org.emulator.buckets["apps"].used <= 10 - 3 + 1  # a 30 % reserve stayed free


async def test_waits_out_a_429_until_the_reset(org: Org) -> None:
    org.emulator.faults.throttle_next = 2
    org.emulator.faults.only_paths = r"^/api/v1/apps$"
    pages = await collect(org.connector())
    assert pages[-1].checkpoint is not None
    first_two = org.clock.sleeps[:2]
    assert len(first_two) == 2
    assert all(1 <= s <= 61 for s in first_two)


async def test_server_errors_and_resets_are_retried(org: Org) -> None:
    org.emulator.faults.fail_next = 2
    org.emulator.faults.truncate_next = 1
    org.emulator.faults.only_paths = r"^/api/v1/users$"
    pages = await collect(org.connector())
    assert pages[-1].checkpoint is not None
    assert org.clock.sleeps


async def test_expired_cursor_ends_the_run_incomplete(org: Org) -> None:
    org.emulator.faults.expire_page_tokens = True
    with pytest.raises(ProviderError, match="E0000001"):
        await collect(org.connector(page_size=5))


async def test_bad_token_is_permission_denied(org: Org) -> None:
    connector = org.connector()
    org.emulator.read_token = "00rotated"
    with pytest.raises(PermissionDenied, match="E0000011"):
        await collect(connector)


async def test_wrong_key_is_refused_by_the_token_endpoint(org: Org) -> None:
    from sandbox.okta.app import _new_service_client

    real = org.emulator.service_client
    settings = org.settings(auth="private_key_jwt")
    org.emulator.service_client = _new_service_client(real.client_id, real.scopes)
    from connectors.okta import OktaConnector

    connector = OktaConnector(settings, sleep=org.clock.sleep, now=org.clock.now)
    with pytest.raises(PermissionDenied, match="invalid_client"):
        await collect(connector)


async def test_missing_scope_is_permission_denied(org: Org) -> None:
    connector = org.connector(auth="private_key_jwt", scopes=("okta.apps.read",))
    with pytest.raises(PermissionDenied, match="E0000006"):
        await collect(connector)


async def test_read_token_cannot_disable(org: Org) -> None:
    app_id = next(iter(org.emulator.truth.oauth_apps))
    connector = org.connector()
    try:
        with pytest.raises(PermissionDenied):
            await connector.disable(PrincipalRef(app_id, PrincipalKind.OAUTH_APP))
    finally:
        await connector.aclose()


def test_http_org_url_is_refused(org: Org) -> None:
    with pytest.raises(PermissionDenied, match="https"):
        org.connector(org_url="http://127.0.0.1:9")
