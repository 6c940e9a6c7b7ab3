"""Writes: disable / enable a service principal, revoke / restore one grant.

Each returns or takes the pre-change snapshot; already-in-that-state is success.
Delegated grant ids are "<oauth2PermissionGrant id>#<scope>"; application grant ids are
appRoleAssignment ids (see transform).
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import quote

from connectors.base import GrantRef, NotFound, NotReversible, PrincipalKind, PrincipalRef, Snapshot
from connectors.entra.client import GraphClient


async def disable(client: GraphClient, ref: PrincipalRef) -> Snapshot:
    if ref.kind == PrincipalKind.OAUTH_APP:
        raise NotReversible(
            client.tenant,
            "an app registration without a service principal has nothing to disable",
            ref.external_id,
        )
    enabled = await account_enabled(client, ref.external_id)
    if enabled is not False:
        await set_account_enabled(client, ref.external_id, False)
    return {"id": ref.external_id, "accountEnabled": enabled is not False}


async def enable(client: GraphClient, ref: PrincipalRef, snapshot: Snapshot) -> None:
    wanted = snapshot.get("accountEnabled", True) is not False
    if await account_enabled(client, ref.external_id) is not wanted:
        await set_account_enabled(client, ref.external_id, wanted)


async def account_enabled(client: GraphClient, sp_id: str) -> bool | None:
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.service_principals.item.service_principal_item_request_builder import (
        ServicePrincipalItemRequestBuilder,
    )

    query = ServicePrincipalItemRequestBuilder.ServicePrincipalItemRequestBuilderGetQueryParameters(
        select=["id", "accountEnabled"]
    )
    builder = client.sdk.service_principals.by_service_principal_id(sp_id)
    sp = await client.call(lambda: builder.get(RequestConfiguration(query_parameters=query)), sp_id)
    return sp.account_enabled if sp is not None else None


async def set_account_enabled(client: GraphClient, sp_id: str, enabled: bool) -> None:
    from msgraph.generated.models.service_principal import ServicePrincipal

    builder = client.sdk.service_principals.by_service_principal_id(sp_id)
    await client.call(lambda: builder.patch(ServicePrincipal(account_enabled=enabled)), sp_id)


# grants ---------------------------------------------------------------------------------


async def revoke_grant(client: GraphClient, grant: GrantRef) -> Snapshot:
    if "#" in grant.grant_id:
        return await revoke_scope(client, grant)
    return await revoke_assignment(client, grant)


async def restore_grant(client: GraphClient, grant: GrantRef, snapshot: Snapshot) -> None:
    if snapshot.get("absent"):
        return  # nothing was removed, so nothing to put back
    if snapshot.get("type") == "delegated":
        await restore_scope(client, snapshot)
    else:
        await restore_assignment(client, grant, snapshot)


async def revoke_assignment(client: GraphClient, grant: GrantRef) -> Snapshot:
    sp_id = grant.principal.external_id
    builder = client.sdk.service_principals.by_service_principal_id(sp_id).app_role_assignments
    item = builder.by_app_role_assignment_id(grant.grant_id)
    try:
        found = await client.call(item.get, grant.grant_id)
    except NotFound:
        return {"type": "application", "id": grant.grant_id, "absent": True}
    snapshot = {
        "type": "application",
        "id": grant.grant_id,
        "principalId": sp_id,
        "resourceId": str(found.resource_id) if found else None,
        "appRoleId": str(found.app_role_id) if found else None,
    }
    with contextlib.suppress(NotFound):  # deleted meanwhile: the outcome wanted
        await client.call(item.delete, grant.grant_id)
    return snapshot


async def restore_assignment(client: GraphClient, grant: GrantRef, snapshot: Snapshot) -> None:
    from uuid import UUID

    from msgraph.generated.models.app_role_assignment import AppRoleAssignment

    sp_id = grant.principal.external_id
    url = f"{client.graph_url}/v1.0/servicePrincipals/{sp_id}/appRoleAssignments"
    for existing in await client.collect(url, sp_id):
        same_resource = str(existing.get("resourceId")) == snapshot["resourceId"]
        if (
            same_resource
            and str(existing.get("appRoleId")).lower() == snapshot["appRoleId"].lower()
        ):
            return
    body = AppRoleAssignment(
        principal_id=UUID(sp_id),
        resource_id=UUID(snapshot["resourceId"]),
        app_role_id=UUID(snapshot["appRoleId"]),
    )
    builder = client.sdk.service_principals.by_service_principal_id(sp_id).app_role_assignments
    await client.call(lambda: builder.post(body), sp_id)


async def revoke_scope(client: GraphClient, grant: GrantRef) -> Snapshot:
    grant_id, scope = grant.grant_id.split("#", 1)
    item = client.sdk.oauth2_permission_grants.by_o_auth2_permission_grant_id(grant_id)
    try:
        found = await client.call(item.get, grant_id)
    except NotFound:
        return {"type": "delegated", "id": grant_id, "scope": scope, "absent": True}
    scopes = (found.scope or "").split() if found else []
    snapshot: dict[str, Any] = {
        "type": "delegated",
        "id": grant_id,
        "scope": scope,
        "clientId": found.client_id if found else None,
        "consentType": found.consent_type if found else None,
        "principalId": found.principal_id if found else None,
        "resourceId": found.resource_id if found else None,
        "scopes": scopes,
        "absent": scope not in scopes,
    }
    if scope in scopes:
        await set_scopes(client, grant_id, [s for s in scopes if s != scope])
    return snapshot


async def set_scopes(client: GraphClient, grant_id: str, scopes: list[str]) -> None:
    from msgraph.generated.models.o_auth2_permission_grant import OAuth2PermissionGrant

    item = client.sdk.oauth2_permission_grants.by_o_auth2_permission_grant_id(grant_id)
    try:
        if scopes:
            await client.call(
                lambda: item.patch(OAuth2PermissionGrant(scope=" ".join(scopes))), grant_id
            )
        else:
            await client.call(item.delete, grant_id)
    except NotFound:
        if scopes:
            raise


async def restore_scope(client: GraphClient, snapshot: Snapshot) -> None:
    from msgraph.generated.models.o_auth2_permission_grant import OAuth2PermissionGrant

    grant_id, scope = snapshot["id"], snapshot["scope"]
    item = client.sdk.oauth2_permission_grants.by_o_auth2_permission_grant_id(grant_id)
    try:
        found = await client.call(item.get, grant_id)
    except NotFound:
        found = None
    if found is not None:
        current: dict[str, Any] | None = {"id": grant_id, "scope": found.scope}
    else:  # deleted with its last scope; an earlier restore may have re-created it
        current = await _same_grant(client, snapshot)
    if current is not None:
        scopes = str(current.get("scope") or "").split()
        if scope not in scopes:
            ordered = _in_original_order(snapshot, [*scopes, scope])
            await set_scopes(client, str(current["id"]), ordered)
        return
    body = OAuth2PermissionGrant(
        client_id=snapshot["clientId"],
        consent_type=snapshot["consentType"],
        principal_id=snapshot["principalId"],
        resource_id=snapshot["resourceId"],
        scope=scope,
    )
    await client.call(lambda: client.sdk.oauth2_permission_grants.post(body), grant_id)


async def _same_grant(client: GraphClient, snapshot: Snapshot) -> dict[str, Any] | None:
    """The grant of the same client, user and resource, if one exists (Graph keeps one)."""
    url = f"{client.graph_url}/v1.0/oauth2PermissionGrants?$filter=" + quote(
        f"clientId eq '{snapshot['clientId']}'"
    )
    for grant in await client.collect(url, snapshot["clientId"]):
        if all(grant.get(k) == snapshot[k] for k in ("consentType", "principalId", "resourceId")):
            return grant
    return None


def _in_original_order(snapshot: Snapshot, scopes: list[str]) -> list[str]:
    """The scopes as the grant listed them before the revoke, then any added since."""
    before = [s for s in snapshot.get("scopes") or [] if s in scopes]
    return before + [s for s in scopes if s not in before]
