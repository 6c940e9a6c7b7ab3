"""A full discovery of a seeded 2,000-principal tenant, checked against the seed's truth."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from connectors.base import Consent, OwnerSource, Page, PrincipalKind, Status
from sandbox.entra import EntraEmulator
from sandbox.tls import SandboxCA
from tests.entra.conftest import FakeSleep, connector, discover, served, settings_for


@pytest.fixture(scope="module")
def run(large_tenant: EntraEmulator, sandbox_ca: SandboxCA) -> tuple[list[Page], float]:
    with served(large_tenant, sandbox_ca) as url:
        started = time.perf_counter()
        pages = discover(connector(settings_for(large_tenant, url, sandbox_ca)))
        return pages, time.perf_counter() - started


def everything(pages: list[Page], name: str) -> list:
    return [item for page in pages for item in getattr(page, name)]


def test_run_is_complete_fast_and_checkpointed(run: tuple[list[Page], float]) -> None:
    pages, seconds = run
    print(f"\nfull discovery of 2,000 service principals: {seconds:.2f} s")
    assert seconds < 30
    assert all(page.checkpoint is None for page in pages[:-1])
    checkpoint = pages[-1].checkpoint
    assert checkpoint is not None
    assert checkpoint.full
    assert set(checkpoint.cursor) == {"service_principals", "applications", "full_round_at"}


def test_principals_kinds_status_and_platform_owned(
    run: tuple[list[Page], float], large_tenant: EntraEmulator
) -> None:
    truth = large_tenant.tenant.truth
    principals = {p.external_id: p for p in everything(run[0], "principals")}
    assert len(truth.kinds) >= 2000
    assert {i: p.kind.value for i, p in principals.items()} == truth.kinds
    assert {i for i, p in principals.items() if p.platform_owned} == truth.platform_owned
    assert {i: p.app_id for i, p in principals.items()} == truth.app_ids
    assert {i for i, p in principals.items() if p.status is Status.DISABLED} == truth.disabled
    kinds = {p.kind for p in principals.values()}
    assert kinds == {
        PrincipalKind.SERVICE_PRINCIPAL,
        PrincipalKind.MANAGED_IDENTITY,
        PrincipalKind.OAUTH_APP,
    }
    hostile = {principals[i].display_name for i in truth.hostile}
    assert "<script>alert(1)</script>" in hostile
    assert "A" * 10240 in hostile


def test_permissions_are_named(run: tuple[list[Page], float], large_tenant: EntraEmulator) -> None:
    truth = large_tenant.tenant.truth
    held: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for grant in everything(run[0], "grants"):
        held[grant.principal_id].add((grant.permission, grant.consent.value))
    expected = {i: p for i, p in truth.permissions.items() if p}
    assert dict(held) == expected
    names = {name for grants in held.values() for name, _ in grants}
    assert {"Mail.ReadWrite", "AuditLog.Read.All", "Orders.Read.All"} <= names
    assert any(name.startswith("unknown permission ") for name in names)
    graph = [g for g in everything(run[0], "grants") if g.permission == "Mail.ReadWrite"]
    assert graph
    assert all(g.resource == "Microsoft Graph" for g in graph)
    users = [g for g in everything(run[0], "grants") if g.consent is Consent.USER]
    assert users
    assert all(g.consenting_user for g in users)


def test_owners_and_creators(run: tuple[list[Page], float], large_tenant: EntraEmulator) -> None:
    truth = large_tenant.tenant.truth
    people: dict[str, set[str]] = defaultdict(set)
    apps: dict[str, set[str]] = defaultdict(set)
    creators: dict[str, set[str]] = defaultdict(set)
    for hint in everything(run[0], "owner_hints"):
        if hint.source is OwnerSource.AUDIT_CREATOR:
            creators[hint.principal_id].add(hint.person_id)
        elif hint.person_id:
            people[hint.principal_id].add(hint.person_id)
        else:
            apps[hint.principal_id].add(hint.owner_principal_id)
    assert dict(people) == {i: o for i, o in truth.owner_people.items() if o}
    assert dict(apps) == {i: o for i, o in truth.owner_principals.items() if o}
    assert dict(creators) == truth.creators
    persons = {p.external_id: p for p in everything(run[0], "people")}
    assert len(persons) == len(large_tenant.tenant.users)
    departed = [p for p in persons.values() if not p.active]
    assert departed
    assert all(persons[p.manager_id].active for p in departed if p.manager_id)


def test_credentials_and_activity(
    run: tuple[list[Page], float], large_tenant: EntraEmulator
) -> None:
    truth = large_tenant.tenant.truth
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for credential in everything(run[0], "credentials"):
        found[credential.principal_id].add((credential.type, credential.credential_id))
        assert credential.expires_at is not None
        assert credential.created_at is not None
    assert dict(found) == {i: c for i, c in truth.credentials.items() if c}
    activity = {a.principal_id: a.last_used_at for a in everything(run[0], "activity")}
    assert activity == truth.last_sign_in


def test_malformed_records_are_counted_and_skipped(run: tuple[list[Page], float]) -> None:
    skipped = everything(run[0], "skipped")
    assert len(skipped) == 4
    assert {s.reason.split(" ")[0] for s in skipped} >= {"id", "unknown", "displayName"}


def test_requests_are_gentle(run: tuple[list[Page], float], large_tenant: EntraEmulator) -> None:
    requests = large_tenant.requests
    assert len(requests) < 400  # ~2,100 principals: bulk listings plus 20-wide $batch
    listings = [r for r in requests if r.path in ("/v1.0/users",)]
    assert all(r.arg("$top") == "999" and r.arg("$select") for r in listings)
    delta = [r for r in requests if "delta" in r.path and r.arg("$skiptoken") is None]
    assert all(r.arg("$select") or r.arg("$deltatoken") for r in delta)
    assert FakeSleep().waits == []
