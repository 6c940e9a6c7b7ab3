"""Writes: disable / enable a service principal, revoke / restore one grant.

Each returns or takes the pre-change snapshot; already-in-that-state is success.
Delegated grant ids are "<oauth2PermissionGrant id>#<scope>"; application grant ids are
"<appRoleAssignment id>@<resource id>/<app role id>" (see transform).

A create retried after a timeout or a 5xx may find its first attempt did land: Graph then
answers 409 (delegated grants, whose ids are derived from client, resource and user) or
400 "already exists" (app role assignments). That is read back and counted as done.
"""

from __future__ import annotations

import contextlib
from typing import Any

from connectors.base import GrantRef, NotFound, NotReversible, PrincipalKind, PrincipalRef, Snapshot
from connectors.entra.client import AlreadyExists, GraphClient
from connectors.entra.transform import parse_assignment_grant_id


async def disable(client: GraphClient, ref: PrincipalRef) -> Snapshot:
    if ref.kind == PrincipalKind.OAUTH_APP:
        raise NotReversible(
            client.tenant,
            "an app registration without a service principal has nothing to disable",
            ref.external_id,
        )
    if ref.kind == PrincipalKind.MANAGED_IDENTITY:
        # "Service principals representing managed identities ... can't be updated or
        # modified directly" (servicePrincipalType, ../shared/specs/msgraph).
        raise NotReversible(
            client.tenant,
            "a managed identity is Azure's to manage: Graph refuses to change it",
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


async def assignments_of(client: GraphClient, sp_id: str) -> list[dict[str, Any]]:
    url = f"{client.graph_url}/v1.0/servicePrincipals/{sp_id}/appRoleAssignments"
    return await client.collect(url, sp_id)


def holds(found: list[dict[str, Any]], resource_id: str, role_id: str) -> dict[str, Any] | None:
    for existing in found:
        same_resource = str(existing.get("resourceId")).lower() == resource_id.lower()
        if same_resource and str(existing.get("appRoleId")).lower() == role_id.lower():
            return existing
    return None


async def revoke_assignment(client: GraphClient, grant: GrantRef) -> Snapshot:
    """Removes the assignment; if its stored id is gone (removed and granted again since
    the last discovery), the current one is found by (resource, app role)."""
    sp_id = grant.principal.external_id
    assignment_id, resource_id, role_id = parse_assignment_grant_id(grant.grant_id)
    builder = client.sdk.service_principals.by_service_principal_id(sp_id).app_role_assignments
    try:
        found = await client.call(builder.by_app_role_assignment_id(assignment_id).get, sp_id)
        current: dict[str, Any] = {
            "id": assignment_id,
            "resourceId": str(found.resource_id) if found else resource_id,
            "appRoleId": str(found.app_role_id) if found else role_id,
        }
    except NotFound:
        again = (
            holds(await assignments_of(client, sp_id), resource_id, role_id)
            if (resource_id and role_id)
            else None
        )
        if again is None:
            return {"type": "application", "id": assignment_id, "absent": True}
        current = {k: str(again.get(k)) for k in ("id", "resourceId", "appRoleId")}
    assignment_id = current["id"] or assignment_id
    snapshot = {"type": "application", "principalId": sp_id, **current}
    with contextlib.suppress(NotFound):  # deleted meanwhile: the outcome wanted
        await client.call(builder.by_app_role_assignment_id(assignment_id).delete, sp_id)
    return snapshot


async def restore_assignment(client: GraphClient, grant: GrantRef, snapshot: Snapshot) -> None:
    from uuid import UUID

    from msgraph.generated.models.app_role_assignment import AppRoleAssignment

    sp_id = grant.principal.external_id
    resource_id, role_id = snapshot["resourceId"], snapshot["appRoleId"]
    if holds(await assignments_of(client, sp_id), resource_id, role_id):
        return
    body = AppRoleAssignment(
        principal_id=UUID(sp_id), resource_id=UUID(resource_id), app_role_id=UUID(role_id)
    )
    builder = client.sdk.service_principals.by_service_principal_id(sp_id).app_role_assignments
    try:
        await client.call(lambda: builder.post(body), sp_id)
    except AlreadyExists:  # an earlier attempt landed after all
        if not holds(await assignments_of(client, sp_id), resource_id, role_id):
            raise


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


async def scopes_of(client: GraphClient, grant_id: str) -> list[str] | None:
    item = client.sdk.oauth2_permission_grants.by_o_auth2_permission_grant_id(grant_id)
    try:
        found = await client.call(item.get, grant_id)
    except NotFound:
        return None
    return (found.scope or "").split() if found else []


async def restore_scope(client: GraphClient, snapshot: Snapshot) -> None:
    from msgraph.generated.models.o_auth2_permission_grant import OAuth2PermissionGrant

    grant_id, scope = snapshot["id"], snapshot["scope"]
    scopes = await scopes_of(client, grant_id)
    if scopes is None:
        body = OAuth2PermissionGrant(
            client_id=snapshot["clientId"],
            consent_type=snapshot["consentType"],
            principal_id=snapshot["principalId"],
            resource_id=snapshot["resourceId"],
            scope=scope,
        )
        try:
            await client.call(lambda: client.sdk.oauth2_permission_grants.post(body), grant_id)
            return
        except AlreadyExists:  # an earlier attempt landed: the id is the same one again
            scopes = await scopes_of(client, grant_id)
            if scopes is None:
                raise
    if scope not in scopes:
        await set_scopes(client, grant_id, _in_original_order(snapshot, [*scopes, scope]))


def _in_original_order(snapshot: Snapshot, scopes: list[str]) -> list[str]:
    """The scopes as the grant listed them before the revoke, then any added since."""
    before = [s for s in snapshot.get("scopes") or [] if s in scopes]
    return before + [s for s in scopes if s not in before]
