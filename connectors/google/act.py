"""Disable / enable / revoke on Google.

- Cloud service account: `:disable` / `:enable`, reversible; the snapshot records whether
  it was already disabled so that enable restores exactly that. Addressed by project:
  `projects/-/…` answers 403 for an account that no longer exists, a project 404
  (provider-facts.md, "Google"), and 404 means already gone.
- Workspace third-party app: `tokens.delete` for each consenting user the inventory holds
  (`PrincipalRef.consenting_users`); 404 means already revoked. Not reversible (users must
  re-consent); the snapshot records whose tokens were deleted.
- Google cannot drop one scope of an app, and domain-wide delegation has no API at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from connectors.base import (
    GrantRef,
    NotFound,
    NotReversible,
    PrincipalKind,
    PrincipalRef,
    ProviderError,
    Snapshot,
)
from connectors.google import get
from connectors.google.client import GoogleClient

WHOLE_APP = "*"  # GrantRef.permission meaning "every scope": revoke the app, not one scope
SCOPE_MESSAGE = "Google cannot revoke one scope of an app: revoke the app or keep it"
DWD_MESSAGE = (
    "domain-wide delegation has no API: remove the client in the Admin console "
    "(Security > API controls > Domain-wide delegation)"
)


def whole_app_grant(ref: PrincipalRef, user_key: str | None = None) -> GrantRef:
    """The GrantRef that revokes a third-party app for every user (or for one user)."""
    grant_id = f"{user_key}:{ref.external_id}" if user_key else ref.external_id
    return GrantRef(
        principal=ref, grant_id=grant_id, permission=WHOLE_APP, consenting_user=user_key
    )


def account_names(ref: PrincipalRef, projects: Iterable[str]) -> list[str]:
    """Where the account may live: the project its address names, then each configured
    project (a Compute Engine default account's address carries the project number)."""
    email = ref.app_id or ref.external_id
    domain = email.rpartition("@")[2]
    owner = None
    if domain.endswith(".iam.gserviceaccount.com"):
        owner = domain.removesuffix(".iam.gserviceaccount.com")
    elif domain == "appspot.gserviceaccount.com":
        owner = email.partition("@")[0]
    candidates = dict.fromkeys([p for p in (owner, *projects) if p])
    return [f"projects/{project}/serviceAccounts/{email}" for project in candidates]


async def _find_account(
    client: GoogleClient, ref: PrincipalRef, projects: Iterable[str]
) -> tuple[str, dict[str, object]]:
    for name in account_names(ref, projects):
        try:
            return name, await get.account(client, name)
        except NotFound:
            continue
    raise NotFound(client.tenant, "no such service account in any known project", ref.app_id)


async def set_service_account(
    client: GoogleClient, ref: PrincipalRef, projects: Iterable[str], disabled: bool
) -> Snapshot:
    name, before = await _find_account(client, ref, projects)
    was_disabled = bool(before.get("disabled", False))
    if was_disabled != disabled:
        await get.set_account_disabled(client, name, disabled)
    return {"kind": "service_account", "name": name, "disabled": was_disabled}


async def _delete(client: GoogleClient, user_key: str, client_id: str) -> bool:
    """True when a token was deleted, False when it was already gone."""
    try:
        await get.delete_token(client, user_key, client_id)
    except NotFound:
        return False
    return True


async def revoke_app(client: GoogleClient, grant: GrantRef) -> Snapshot:
    client_id = grant.principal.app_id or grant.principal.external_id
    if grant.grant_id == grant.principal.external_id:
        users = list(dict.fromkeys(grant.principal.consenting_users))
        if not users:
            raise ProviderError(
                client.tenant,
                "revoking an app needs its consenting users from the inventory "
                "(PrincipalRef.consenting_users); none were given",
                grant.principal.external_id,
            )
    else:
        users = [grant.grant_id.partition(":")[0]]
    deleted = await asyncio.gather(*(_delete(client, user, client_id) for user in users))
    return {
        "kind": "third_party_app",
        "client_id": client_id,
        "reversible": False,
        "holders": [{"user": u} for u, done in sorted(zip(users, deleted, strict=True)) if done],
        "already_revoked": sorted(u for u, done in zip(users, deleted, strict=True) if not done),
    }


async def revoke_grant(client: GoogleClient, grant: GrantRef) -> Snapshot:
    kind = grant.principal.kind
    if kind == PrincipalKind.OAUTH_APP:
        raise NotReversible(client.tenant, DWD_MESSAGE, grant.principal.external_id)
    if kind != PrincipalKind.THIRD_PARTY_APP:
        raise ProviderError(client.tenant, f"{kind} has no revocable grants", grant.grant_id)
    if grant.permission != WHOLE_APP:
        raise NotReversible(client.tenant, SCOPE_MESSAGE, grant.grant_id)
    return await revoke_app(client, grant)
