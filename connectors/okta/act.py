"""Enforcement: deactivate / activate an app or an AI agent, revoke / restore one Okta API
scope grant.

Each change reads the pre-change state first and returns it as the snapshot that undoes it;
asking for the state an object is already in is a success.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from connectors.base import (
    GrantRef,
    NotFound,
    NotReversible,
    PermissionDenied,
    PrincipalKind,
    PrincipalRef,
    ProviderError,
    Snapshot,
    TransientError,
)
from connectors.okta import get
from connectors.okta.client import OktaClient

Sleeper = Callable[[float], Awaitable[None]]
AGENT_SCOPE = "okta.aiAgents.manage"
OPERATION_POLLS = 10
OPERATION_WAIT = 1.0  # seconds between polls of an AI agent operation


async def disable(client: OktaClient, ref: PrincipalRef, sleep: Sleeper) -> Snapshot:
    if ref.kind == PrincipalKind.AGENT_IDENTITY:
        agent = await get.get_agent(_agents(client, ref), ref.external_id)
        status = agent.get("status") if isinstance(agent, dict) else None
        if status == "ACTIVE":  # only an ACTIVE agent can be deactivated (help.okta.com)
            await _agent_lifecycle(client, ref, "deactivate", sleep)
        return {"agent_id": ref.external_id, "status": status}
    app = await get.get_app(client, ref.external_id)
    status = app.get("status") if isinstance(app, dict) else None
    if status != "INACTIVE":
        await get.set_app_lifecycle(client, ref.external_id, "deactivate")
    return {"app_id": ref.external_id, "status": status}


async def enable(client: OktaClient, ref: PrincipalRef, snapshot: Snapshot, sleep: Sleeper) -> None:
    """Back to what `disable` saw: what was not active before stays as it is."""
    if ref.kind == PrincipalKind.AGENT_IDENTITY:
        if snapshot.get("status") == "ACTIVE":
            await _agent_lifecycle(client, ref, "activate", sleep)
        return
    if snapshot.get("status", "ACTIVE") == "ACTIVE":
        await get.set_app_lifecycle(client, ref.external_id, "activate")


def _agents(client: OktaClient, ref: PrincipalRef) -> OktaClient:
    if not client.may_use(AGENT_SCOPE):
        raise PermissionDenied(
            client.tenant,
            f"acting on AI agents needs {AGENT_SCOPE} in the enforce credential's scopes",
            ref.external_id,
        )
    return client


async def _agent_lifecycle(
    client: OktaClient, ref: PrincipalRef, action: str, sleep: Sleeper
) -> None:
    """POST the lifecycle change; a 202 hands back an operation, polled until it ends."""
    result = await get.set_agent_lifecycle(_agents(client, ref), ref.external_id, action)
    operation: Any = result.data
    for _ in range(OPERATION_POLLS):
        if result.status != 202 or not isinstance(operation, dict):
            return
        status = operation.get("status")
        if status == "COMPLETED":
            return
        if status == "FAILED":
            details = operation.get("errorDetails") or {}
            raise ProviderError(
                client.tenant, f"AI agent {action} failed: {details}", ref.external_id
            )
        await sleep(OPERATION_WAIT)
        path = f"/workload-principals/api/v1/operations/{operation.get('id')}"
        operation = await get.get_operation(client, path, ref.external_id)
    raise TransientError(
        client.tenant, f"AI agent {action} still running; check again later", ref.external_id
    )


async def revoke_grant(client: OktaClient, grant: GrantRef) -> Snapshot:
    app_id = grant.principal.external_id
    snapshot: Snapshot = {
        "app_id": app_id,
        "grant_id": grant.grant_id,
        "scopeId": grant.permission,
        "issuer": client.org_url,
        "source": "END_USER" if grant.consenting_user else "ADMIN",
        "userId": grant.consenting_user,
    }
    try:
        current = await get.get_grant(client, app_id, grant.grant_id)
        if isinstance(current, dict):
            snapshot["scopeId"] = current.get("scopeId") or grant.permission
            snapshot["issuer"] = current.get("issuer") or client.org_url
            snapshot["source"] = current.get("source") or snapshot["source"]
            snapshot["userId"] = current.get("userId") or snapshot["userId"]
        await get.delete_grant(client, app_id, grant.grant_id)
    except NotFound:
        pass  # already revoked
    return snapshot


async def restore_grant(client: OktaClient, grant: GrantRef, snapshot: Snapshot) -> None:
    """Re-grant the scope (Okta gives the new grant a new id). A user's own consent cannot
    be recreated by an admin: the management API creates ADMIN grants only."""
    app_id = snapshot.get("app_id") or grant.principal.external_id
    scope = snapshot.get("scopeId") or grant.permission
    if snapshot.get("source") == "END_USER":
        raise NotReversible(
            client.tenant,
            f"{scope} was consented by user {snapshot.get('userId')} themselves; Okta cannot "
            "recreate a user's consent: they must consent again",
            app_id,
        )
    await get.create_grant(client, app_id, snapshot.get("issuer") or client.org_url, scope)
