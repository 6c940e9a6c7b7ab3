"""Enforcement: deactivate / activate an app, revoke / restore one Okta API scope grant.

Each change reads the pre-change state first and returns it as the snapshot that undoes it;
asking for the state an object is already in is a success.
"""

from __future__ import annotations

from connectors.base import GrantRef, NotFound, PrincipalRef, Snapshot
from connectors.okta import get
from connectors.okta.client import OktaClient


async def disable(client: OktaClient, ref: PrincipalRef) -> Snapshot:
    app = await get.get_app(client, ref.external_id)
    status = app.get("status") if isinstance(app, dict) else None
    if status != "INACTIVE":
        await get.set_app_lifecycle(client, ref.external_id, "deactivate")
    return {"app_id": ref.external_id, "status": status}


async def enable(client: OktaClient, ref: PrincipalRef, snapshot: Snapshot) -> None:
    """Back to what `disable` saw: an app that was already inactive stays inactive."""
    if snapshot.get("status", "ACTIVE") == "ACTIVE":
        await get.set_app_lifecycle(client, ref.external_id, "activate")


async def revoke_grant(client: OktaClient, grant: GrantRef) -> Snapshot:
    app_id = grant.principal.external_id
    snapshot: Snapshot = {
        "app_id": app_id,
        "grant_id": grant.grant_id,
        "scopeId": grant.permission,
        "issuer": client.org_url,
    }
    try:
        current = await get.get_grant(client, app_id, grant.grant_id)
        if isinstance(current, dict):
            snapshot["scopeId"] = current.get("scopeId") or grant.permission
            snapshot["issuer"] = current.get("issuer") or client.org_url
        await get.delete_grant(client, app_id, grant.grant_id)
    except NotFound:
        pass  # already revoked
    return snapshot


async def restore_grant(client: OktaClient, grant: GrantRef, snapshot: Snapshot) -> None:
    """Re-grant the scope (Okta gives the new grant a new id)."""
    app_id = snapshot.get("app_id") or grant.principal.external_id
    scope = snapshot.get("scopeId") or grant.permission
    await get.create_grant(client, app_id, snapshot.get("issuer") or client.org_url, scope)
