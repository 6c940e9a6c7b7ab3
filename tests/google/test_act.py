"""Disable/enable of service accounts, revocation of third-party apps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from connectors.base import GrantRef, NotReversible, PrincipalKind, PrincipalRef, Status
from connectors.google import GoogleConnector, whole_app_grant
from tests.google.conftest import Tenant
from tests.google.truth import fold

T = TypeVar("T")


def run(tenant: Tenant, action: Callable[[GoogleConnector], Awaitable[T]]) -> T:
    async def go() -> T:
        connector = tenant.connector()
        try:
            return await action(connector)
        finally:
            await connector.aclose()

    return asyncio.run(go())


def account_ref(tenant: Tenant, disabled: bool) -> tuple[PrincipalRef, dict[str, Any]]:
    for accounts in tenant.emulator.accounts.values():
        for account in accounts:
            if account["disabled"] == disabled:
                ref = PrincipalRef(
                    account["uniqueId"], PrincipalKind.SERVICE_ACCOUNT, account["email"]
                )
                return ref, account
    raise AssertionError("seed has no such account")


def test_service_account_disable_enable_round_trip(small: Tenant) -> None:
    ref, account = account_ref(small, disabled=False)
    snapshot = run(small, lambda c: c.disable(ref))
    assert snapshot["disabled"] is False
    assert account["disabled"] is True
    status = fold(small.discover()).principals[ref.external_id].status
    assert status == Status.DISABLED
    assert run(small, lambda c: c.disable(ref))["disabled"] is True  # already: success
    run(small, lambda c: c.enable(ref, snapshot))
    assert account["disabled"] is False
    disables = [r for r in small.emulator.requests if r.path.endswith(":disable")]
    assert len(disables) == 1


def test_enable_restores_an_account_that_was_already_disabled(small: Tenant) -> None:
    ref, account = account_ref(small, disabled=True)
    snapshot = run(small, lambda c: c.disable(ref))
    run(small, lambda c: c.enable(ref, snapshot))
    assert account["disabled"] is True


def app_with_holders(tenant: Tenant) -> tuple[PrincipalRef, set[str]]:
    holders: dict[str, set[str]] = {}
    for user in tenant.emulator.seed.users:
        for cid in user.tokens:
            holders.setdefault(cid, set()).add(user.id)
    cid = max(holders, key=lambda c: len(holders[c]))
    users = tuple(sorted(holders[cid]))
    return PrincipalRef(cid, PrincipalKind.THIRD_PARTY_APP, cid, users), holders[cid]


def test_revoke_app_deletes_every_users_token(small: Tenant) -> None:
    ref, holders = app_with_holders(small)
    assert len(holders) > 1
    snapshot = run(small, lambda c: c.revoke_grant(whole_app_grant(ref)))
    assert {h["user"] for h in snapshot["holders"]} == holders
    assert all(ref.external_id not in tokens for tokens in small.emulator.tokens.values())
    again = run(small, lambda c: c.revoke_grant(whole_app_grant(ref)))
    assert again["holders"] == []
    with pytest.raises(NotReversible):
        run(small, lambda c: c.restore_grant(whole_app_grant(ref), snapshot))
    assert ref.external_id not in fold(small.discover()).principals


def test_revoke_for_one_user(small: Tenant) -> None:
    ref, holders = app_with_holders(small)
    user = sorted(holders)[0]
    snapshot = run(small, lambda c: c.revoke_grant(whole_app_grant(ref, user)))
    assert [h["user"] for h in snapshot["holders"]] == [user]
    assert ref.external_id not in small.emulator.tokens[user]
    others = holders - {user}
    assert all(ref.external_id in small.emulator.tokens[o] for o in others)


def test_one_scope_cannot_be_revoked(small: Tenant) -> None:
    ref, holders = app_with_holders(small)
    user = sorted(holders)[0]
    grant = GrantRef(ref, f"{user}:{ref.external_id}", "openid", consenting_user=user)
    with pytest.raises(NotReversible, match="revoke the app or keep it"):
        run(small, lambda c: c.revoke_grant(grant))


def test_disable_third_party_app_is_revoke_and_not_reversible(small: Tenant) -> None:
    ref, holders = app_with_holders(small)
    snapshot = run(small, lambda c: c.disable(ref))
    assert snapshot["reversible"] is False
    assert len(snapshot["holders"]) == len(holders)
    with pytest.raises(NotReversible):
        run(small, lambda c: c.enable(ref, snapshot))


def test_domain_wide_delegation_cannot_be_revoked_by_api(small: Tenant) -> None:
    ref = PrincipalRef("123", PrincipalKind.OAUTH_APP, "123")
    with pytest.raises(NotReversible, match="Admin console"):
        run(small, lambda c: c.disable(ref))
