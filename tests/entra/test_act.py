"""Disable / enable and grant revoke / restore round trips, with the write credential."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from connectors.base import (
    GrantRef,
    NotReversible,
    PermissionDenied,
    PrincipalKind,
    PrincipalRef,
)
from connectors.entra import EntraConnector
from sandbox.entra import EntraEmulator
from sandbox.tls import SandboxCA
from tests.entra.conftest import FakeSleep, connector, served, settings_for

T = TypeVar("T")


def acting(
    app: EntraEmulator,
    ca: SandboxCA,
    work: Callable[[EntraConnector], Awaitable[T]],
    write: bool = True,
) -> T:
    async def run(url: str) -> T:
        conn = connector(settings_for(app, url, ca, write=write), FakeSleep())
        try:
            return await work(conn)
        finally:
            await conn.aclose()

    with served(app, ca) as url:
        return asyncio.run(run(url))


def sp_ref(app: EntraEmulator, *, enabled: bool = True) -> PrincipalRef:
    truth = app.tenant.truth
    for sp in app.tenant.service_principals.values():
        if sp["accountEnabled"] is enabled and truth.kinds.get(sp["id"]) == "service_principal":
            return PrincipalRef(sp["id"], PrincipalKind.SERVICE_PRINCIPAL, sp["appId"])
    raise AssertionError("no such service principal")


def test_disable_enable_round_trip(small_tenant: EntraEmulator, sandbox_ca: SandboxCA) -> None:
    ref = sp_ref(small_tenant)
    before = copy.deepcopy(small_tenant.tenant.service_principals[ref.external_id])

    async def work(conn: EntraConnector) -> dict[str, Any]:
        snapshot = await conn.disable(ref)
        assert small_tenant.tenant.service_principals[ref.external_id]["accountEnabled"] is False
        assert await conn.disable(ref) == {"id": ref.external_id, "accountEnabled": False}
        await conn.enable(ref, snapshot)
        return snapshot

    snapshot = acting(small_tenant, sandbox_ca, work)
    assert snapshot == {"id": ref.external_id, "accountEnabled": True}
    assert small_tenant.tenant.service_principals[ref.external_id] == before
    patches = [r for r in small_tenant.requests if r.method == "PATCH"]
    assert len(patches) == 2  # the second disable found it disabled and wrote nothing


def test_enable_restores_an_already_disabled_principal_as_disabled(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    ref = sp_ref(small_tenant)
    small_tenant.tenant.service_principals[ref.external_id]["accountEnabled"] = False

    async def work(conn: EntraConnector) -> None:
        snapshot = await conn.disable(ref)
        await conn.enable(ref, snapshot)

    acting(small_tenant, sandbox_ca, work)
    assert small_tenant.tenant.service_principals[ref.external_id]["accountEnabled"] is False
    assert not [r for r in small_tenant.requests if r.method == "PATCH"]


def test_read_credential_cannot_write(small_tenant: EntraEmulator, sandbox_ca: SandboxCA) -> None:
    ref = sp_ref(small_tenant)
    with pytest.raises(PermissionDenied) as raised:
        acting(small_tenant, sandbox_ca, lambda conn: conn.disable(ref), write=False)
    assert raised.value.object_id == ref.external_id


def test_oauth_app_cannot_be_disabled(small_tenant: EntraEmulator, sandbox_ca: SandboxCA) -> None:
    app_id = next(i for i, k in small_tenant.tenant.truth.kinds.items() if k == "oauth_app")
    ref = PrincipalRef(app_id, PrincipalKind.OAUTH_APP)
    with pytest.raises(NotReversible):
        acting(small_tenant, sandbox_ca, lambda conn: conn.disable(ref))


def test_application_permission_revoke_restore(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    assignment = next(iter(small_tenant.tenant.assignments.values()))
    principal = PrincipalRef(assignment["principalId"], PrincipalKind.SERVICE_PRINCIPAL)
    ref = GrantRef(principal, assignment["id"], "Mail.ReadWrite")
    key = (assignment["principalId"], assignment["resourceId"], assignment["appRoleId"])

    def held() -> list[tuple[str, str, str]]:
        return sorted(
            (a["principalId"], a["resourceId"], a["appRoleId"])
            for a in small_tenant.tenant.assignments.values()
            if a["principalId"] == key[0]
        )

    before = held()

    async def work(conn: EntraConnector) -> None:
        snapshot = await conn.revoke_grant(ref)
        assert key not in held()
        again = await conn.revoke_grant(ref)
        assert again["absent"]
        await conn.restore_grant(ref, again)
        await conn.restore_grant(ref, snapshot)
        await conn.restore_grant(ref, snapshot)  # restoring twice adds nothing

    acting(small_tenant, sandbox_ca, work)
    assert held() == before


def test_delegated_scope_revoke_restore(small_tenant: EntraEmulator, sandbox_ca: SandboxCA) -> None:
    grant = next(g for g in small_tenant.tenant.grants.values() if len(g["scope"].split()) >= 2)
    single = next(g for g in small_tenant.tenant.grants.values() if len(g["scope"].split()) == 1)
    original = {g["id"]: copy.deepcopy(g) for g in (grant, single)}

    def refs(item: dict[str, Any]) -> GrantRef:
        principal = PrincipalRef(item["clientId"], PrincipalKind.SERVICE_PRINCIPAL)
        scope = item["scope"].split()[0]
        return GrantRef(principal, f"{item['id']}#{scope}", scope, item["principalId"])

    async def work(conn: EntraConnector) -> None:
        kept = await conn.revoke_grant(refs(grant))
        dropped = await conn.revoke_grant(refs(single))
        remaining = small_tenant.tenant.grants[grant["id"]]["scope"].split()
        assert remaining == original[grant["id"]]["scope"].split()[1:]
        assert single["id"] not in small_tenant.tenant.grants  # last scope: grant deleted
        await conn.restore_grant(refs(grant), kept)
        await conn.restore_grant(refs(single), dropped)

    acting(small_tenant, sandbox_ca, work)
    restored = small_tenant.tenant.grants[grant["id"]]
    assert set(restored["scope"].split()) == set(original[grant["id"]]["scope"].split())
    recreated = [
        g
        for g in small_tenant.tenant.grants.values()
        if g["clientId"] == single["clientId"] and g["scope"] == single["scope"]
    ]
    fields = ("clientId", "consentType", "principalId", "resourceId", "scope")
    assert [{k: g[k] for k in fields} for g in recreated] == [{k: single[k] for k in fields}]


def test_a_managed_identity_is_never_patched(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    """Azure manages it: Graph refuses the change (403), so the connector never tries."""
    mi = next(i for i, k in small_tenant.tenant.truth.kinds.items() if k == "managed_identity")
    ref = PrincipalRef(mi, PrincipalKind.MANAGED_IDENTITY)
    with pytest.raises(NotReversible):
        acting(small_tenant, sandbox_ca, lambda conn: conn.disable(ref))
    assert not [r for r in small_tenant.requests if r.method == "PATCH"]
    assert small_tenant.tenant.service_principals[mi]["accountEnabled"] is True


def test_revoke_finds_a_role_granted_again_under_a_new_id(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    """The role was removed and granted again since discovery (new assignment id): the
    revoke finds the current assignment by resource and role instead of calling it gone."""
    old = next(iter(small_tenant.tenant.assignments.values()))
    principal, resource, role = old["principalId"], old["resourceId"], old["appRoleId"]
    grant_id = f"{old['id']}@{resource}/{role}"  # as discovery stored it
    small_tenant.unassign_app_role(old["id"])
    current = small_tenant.assign_app_role(principal, resource, role)
    ref = GrantRef(PrincipalRef(principal, PrincipalKind.SERVICE_PRINCIPAL), grant_id, "x")

    snapshot = acting(small_tenant, sandbox_ca, lambda conn: conn.revoke_grant(ref))
    assert not snapshot.get("absent")
    assert snapshot["id"] == current
    assert current not in small_tenant.tenant.assignments
    acting(small_tenant, sandbox_ca, lambda conn: conn.restore_grant(ref, snapshot))
    held = {
        (a["principalId"], a["resourceId"], a["appRoleId"])
        for a in small_tenant.tenant.assignments.values()
    }
    assert (principal, resource, role) in held


def test_a_create_that_landed_before_its_answer_was_lost_counts_as_done(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    """POST applied, then 503: the retry meets "already exists" (409 for a delegated grant,
    400 for an app role assignment), reads it back and is done."""
    single = next(g for g in small_tenant.tenant.grants.values() if len(g["scope"].split()) == 1)
    single_ref = GrantRef(
        PrincipalRef(single["clientId"], PrincipalKind.SERVICE_PRINCIPAL),
        f"{single['id']}#{single['scope']}",
        single["scope"],
    )
    assignment = next(iter(small_tenant.tenant.assignments.values()))
    grant_id = f"{assignment['id']}@{assignment['resourceId']}/{assignment['appRoleId']}"
    role_ref = GrantRef(
        PrincipalRef(assignment["principalId"], PrincipalKind.SERVICE_PRINCIPAL), grant_id, "x"
    )

    async def work(conn: EntraConnector) -> None:
        dropped = await conn.revoke_grant(single_ref)
        removed = await conn.revoke_grant(role_ref)
        small_tenant.switches.commit_then_fail_next = 2
        await conn.restore_grant(single_ref, dropped)
        await conn.restore_grant(role_ref, removed)

    acting(small_tenant, sandbox_ca, work)
    assert small_tenant.tenant.grants[single["id"]]["scope"] == single["scope"]
    again = [
        a
        for a in small_tenant.tenant.assignments.values()
        if (a["principalId"], a["resourceId"], a["appRoleId"])
        == (assignment["principalId"], assignment["resourceId"], assignment["appRoleId"])
    ]
    assert len(again) == 1
