"""Enforcement round trips against the emulator's mutable state."""

from __future__ import annotations

import pytest

from connectors.base import GrantRef, NotFound, PrincipalKind, PrincipalRef
from tests.okta.conftest import Org

pytestmark = pytest.mark.anyio

MANAGE = ("okta.apps.manage", "okta.appGrants.manage")


@pytest.mark.parametrize("auth", ["ssws", "private_key_jwt"])
async def test_deactivate_activate_round_trip(org: Org, auth: str) -> None:
    """OAuth here without DPoP (test_dpop.py disables through a DPoP-bound app)."""
    org.emulator.service_client.dpop_bound = False
    app_id = next(
        a
        for a, app in org.emulator.org.apps.items()
        if a in org.emulator.truth.oauth_apps and app["status"] == "ACTIVE"
    )
    extra = {"scopes": MANAGE, "dpop": False} if auth != "ssws" else {}
    connector = org.connector(write=auth == "ssws", auth=auth, **extra)
    ref = PrincipalRef(app_id, PrincipalKind.OAUTH_APP)
    try:
        snapshot = await connector.disable(ref)
        assert org.emulator.org.apps[app_id]["status"] == "INACTIVE"
        assert await connector.disable(ref) == {"app_id": app_id, "status": "INACTIVE"}
        await connector.enable(ref, snapshot)
        assert org.emulator.org.apps[app_id]["status"] == "ACTIVE"
        with pytest.raises(NotFound):
            await connector.disable(PrincipalRef("0oaGone", PrincipalKind.OAUTH_APP))
    finally:
        await connector.aclose()


async def test_already_inactive_app_stays_inactive_after_enable(org: Org) -> None:
    app_id = next(iter(org.emulator.truth.oauth_apps))
    org.emulator.org.apps[app_id]["status"] = "INACTIVE"
    connector = org.connector(write=True)
    ref = PrincipalRef(app_id, PrincipalKind.OAUTH_APP)
    try:
        snapshot = await connector.disable(ref)
        await connector.enable(ref, snapshot)
    finally:
        await connector.aclose()
    assert org.emulator.org.apps[app_id]["status"] == "INACTIVE"
    assert not [r for r in org.emulator.requests if "/lifecycle/" in r.path]


async def test_revoke_and_restore_a_scope_grant(org: Org) -> None:
    app_id, grant_id, grant = next(
        (a, gid, g)
        for a, grants in org.emulator.org.grants.items()
        for gid, g in grants.items()
        if g["source"] == "ADMIN"
    )
    ref = GrantRef(PrincipalRef(app_id, PrincipalKind.OAUTH_APP), grant_id, grant["scopeId"])
    connector = org.connector(write=True)
    try:
        snapshot = await connector.revoke_grant(ref)
        assert grant_id not in org.emulator.org.grants[app_id]
        assert await connector.revoke_grant(ref) == snapshot  # 404 on delete = done
        await connector.restore_grant(ref, snapshot)
    finally:
        await connector.aclose()
    scopes = {g["scopeId"] for g in org.emulator.org.grants[app_id].values()}
    assert grant["scopeId"] in scopes
