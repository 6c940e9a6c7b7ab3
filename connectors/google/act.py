"""Disable / enable / revoke on Google.

- Cloud service account: `:disable` / `:enable`, reversible; the snapshot records whether
  it was already disabled so that enable restores exactly that.
- Workspace third-party app: `tokens.delete` for every consenting user. Not reversible
  (users must re-consent); the snapshot records who held which scopes.
- Google cannot drop one scope of an app, and domain-wide delegation has no API at all.
"""

from __future__ import annotations

import asyncio

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


def account_name(ref: PrincipalRef) -> str:
    """`projects/-/serviceAccounts/<email or uniqueId>`: the ref does not carry the project."""
    return f"projects/-/serviceAccounts/{ref.app_id or ref.external_id}"


async def set_service_account(client: GoogleClient, ref: PrincipalRef, disabled: bool) -> Snapshot:
    name = account_name(ref)
    before = await get.account(client, name)
    was_disabled = bool(before.get("disabled", False))
    if was_disabled != disabled:
        await get.set_account_disabled(client, name, disabled)
    return {"kind": "service_account", "name": name, "disabled": was_disabled}


async def _holders(client: GoogleClient, customer: str, client_id: str) -> dict[str, list[str]]:
    """Every user holding a token for `client_id` (user id -> scopes): no reverse index
    exists, so this walks all users' tokens."""
    holders: dict[str, list[str]] = {}
    page_token: str | None = None
    while True:
        page = await get.users_page(client, customer, page_token, "nextPageToken,users(id)")
        ids = [u["id"] for u in page.get("users", []) if isinstance(u, dict) and u.get("id")]
        lists = await asyncio.gather(*(_user_scopes(client, i, client_id) for i in ids))
        holders.update(
            (i, scopes) for i, scopes in zip(ids, lists, strict=True) if scopes is not None
        )
        page_token = page.get("nextPageToken")
        if not page_token:
            return holders


async def _user_scopes(client: GoogleClient, user_key: str, client_id: str) -> list[str] | None:
    try:
        tokens = await get.user_tokens(client, user_key)
    except NotFound:
        return None
    for token in tokens.get("items", []):
        if isinstance(token, dict) and token.get("clientId") == client_id:
            scopes = token.get("scopes")
            return [s for s in scopes if isinstance(s, str)] if isinstance(scopes, list) else []
    return None


async def _delete(client: GoogleClient, user_key: str, client_id: str) -> None:
    try:
        await get.delete_token(client, user_key, client_id)
    except NotFound:
        return  # already revoked


async def revoke_app(client: GoogleClient, customer: str, grant: GrantRef) -> Snapshot:
    client_id = grant.principal.app_id or grant.principal.external_id
    if grant.grant_id == grant.principal.external_id:
        holders = await _holders(client, customer, client_id)
    else:
        user_key = grant.grant_id.partition(":")[0]
        scopes = await _user_scopes(client, user_key, client_id)
        holders = {user_key: scopes} if scopes is not None else {}
    await asyncio.gather(*(_delete(client, user, client_id) for user in holders))
    return {
        "kind": "third_party_app",
        "client_id": client_id,
        "reversible": False,
        "holders": [{"user": user, "scopes": scopes} for user, scopes in sorted(holders.items())],
    }


async def revoke_grant(client: GoogleClient, customer: str, grant: GrantRef) -> Snapshot:
    kind = grant.principal.kind
    if kind == PrincipalKind.OAUTH_APP:
        raise NotReversible(client.tenant, DWD_MESSAGE, grant.principal.external_id)
    if kind != PrincipalKind.THIRD_PARTY_APP:
        raise ProviderError(client.tenant, f"{kind} has no revocable grants", grant.grant_id)
    if grant.permission != WHOLE_APP:
        raise NotReversible(client.tenant, SCOPE_MESSAGE, grant.grant_id)
    return await revoke_app(client, customer, grant)
