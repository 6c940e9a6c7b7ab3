"""Faults, expired cursors, auth failures and error mapping."""

from __future__ import annotations

import pytest

from connectors.base import PermissionDenied, PrincipalKind, PrincipalRef, ProviderError
from connectors.okta import OktaConnector
from sandbox.okta.auth import new_service_client
from tests.okta.conftest import ALL_READ_SCOPES, Org, checkpoint, collect, merged

pytestmark = pytest.mark.anyio


async def test_server_errors_and_resets_are_retried(org: Org) -> None:
    org.emulator.faults.fail_next = 2
    org.emulator.faults.truncate_next = 1
    org.emulator.faults.only_paths = r"^/api/v1/users$"
    pages = await collect(org.connector())
    assert pages[-1].checkpoint is not None
    assert org.clock.sleeps


async def test_an_expired_cursor_restarts_the_listing_once(org: Org) -> None:
    """400 E0000001 on `after` (issue #16 item 5): the listing starts over, once."""
    org.emulator.expire_cursors = 1
    pages = await collect(org.connector(page_size=5))
    apps = {p.external_id for p in merged(pages)["principals"] if p.kind == PrincipalKind.OAUTH_APP}
    assert apps == set(org.emulator.truth.oauth_apps) | org.emulator.truth.builtins
    firsts = [r for r in org.emulator.requests if r.path == "/api/v1/apps" and not r.arg("after")]
    assert len(firsts) == 2


async def test_a_cursor_that_keeps_expiring_ends_the_run_incomplete(org: Org) -> None:
    org.emulator.faults.expire_page_tokens = True
    with pytest.raises(ProviderError, match="E0000001"):
        await collect(org.connector(page_size=5))
    firsts = [r for r in org.emulator.requests if r.path == "/api/v1/apps" and not r.arg("after")]
    assert len(firsts) == 2, "restarted once, then gave up"


async def test_bad_token_is_permission_denied(org: Org) -> None:
    connector = org.connector()
    org.emulator.auth.ssws_tokens.pop(org.emulator.read_token)  # revoked
    with pytest.raises(PermissionDenied, match="E0000011"):
        await collect(connector)


async def test_wrong_key_is_refused_by_the_token_endpoint(org: Org) -> None:
    real = org.emulator.service_client
    settings = org.settings(auth="private_key_jwt", dpop=False)
    org.emulator.service_client = new_service_client(real.client_id, real.scopes)
    connector = OktaConnector(settings, sleep=org.clock.sleep, now=org.clock.now, pacer=org.pacer())
    with pytest.raises(PermissionDenied, match="invalid_client"):
        await collect(connector)


async def test_a_scope_missing_from_the_token_is_permission_denied(org: Org) -> None:
    org.emulator.service_client.dpop_bound = False
    connector = org.connector(auth="private_key_jwt", scopes=("okta.apps.read",), dpop=False)
    with pytest.raises(PermissionDenied, match="E0000006"):
        await collect(connector)


async def test_a_scope_the_app_was_not_granted_is_named(org: Org) -> None:
    """Issue #16 item 8: the token request fails and says which scope."""
    org.emulator.service_client.dpop_bound = False
    org.emulator.service_client.scopes -= {"okta.logs.read"}
    connector = org.connector(auth="private_key_jwt", scopes=ALL_READ_SCOPES, dpop=False)
    with pytest.raises(PermissionDenied, match=r"refused scope okta\.logs\.read") as raised:
        await collect(connector)
    assert "invalid_scope" in str(raised.value)


async def test_an_org_without_agent_scopes_is_read_without_them(org: Org) -> None:
    """The AI-agent scopes are asked for by default; an org that cannot grant them (not
    subscribed) refuses them, and the run goes on without agents."""
    org.emulator.service_client.dpop_bound = False
    org.emulator.service_client.scopes -= {"okta.aiAgents.read", "okta.groups.read"}
    pages = await collect(org.connector(auth="private_key_jwt", scopes=ALL_READ_SCOPES, dpop=False))
    final = checkpoint(pages)
    assert final.full
    assert "agent_identity" in final.not_visible
    assert any(p.kind == PrincipalKind.OAUTH_APP for p in merged(pages)["principals"])
    asked = [r.body.decode() for r in org.emulator.requests if r.path == "/oauth2/v1/token"]
    assert "okta.aiAgents.read" in asked[0]
    assert any("okta.aiAgents.read" not in body for body in asked), "asked again without"


async def test_read_only_admin_cannot_disable(org: Org) -> None:
    app_id = next(iter(org.emulator.truth.oauth_apps))
    connector = org.connector(auth="readonly")
    try:
        with pytest.raises(PermissionDenied):
            await connector.disable(PrincipalRef(app_id, PrincipalKind.OAUTH_APP))
    finally:
        await connector.aclose()


def test_http_org_url_is_refused(org: Org) -> None:
    with pytest.raises(PermissionDenied, match="https"):
        org.connector(org_url="http://127.0.0.1:9")
