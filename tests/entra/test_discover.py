"""A full discovery of a seeded 2,000-principal tenant, checked against the seed's truth:
agent identities with their sponsors, PME/GME first-party apps, federated credentials, SAML
signing certificates counted once, managed identities' certificates not taken for secrets."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from connectors.base import Consent, OwnerSource, Page, PrincipalKind, Status
from sandbox.entra import EntraEmulator
from sandbox.tls import SandboxCA
from tests.entra.conftest import connector, discover, served, settings_for


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
    assert set(checkpoint.cursor) == {
        "service_principals",
        "applications",
        "users",
        "full_round_at",
        "audits_since",
        "activity_since",
    }


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
        PrincipalKind.AGENT_IDENTITY,
    }
    agents = [p for p in principals.values() if p.kind is PrincipalKind.AGENT_IDENTITY]
    assert len(agents) == 40
    assert all(p.created_at is not None and not p.platform_owned for p in agents)
    pme_gme = {
        i
        for i, p in principals.items()
        if large_tenant.tenant.service_principals.get(i, {}).get("appOwnerOrganizationId")
        in ("975f013f-7f24-47e8-a7d3-abc4752bf346", "124edf19-b350-4797-aefc-3206115ffdb3")
    }
    assert len(pme_gme) == 2
    assert all(principals[i].platform_owned for i in pme_gme)
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
    owners_and_sponsors = {
        i: o | truth.sponsors.get(i, set()) for i, o in truth.owner_people.items()
    }
    assert dict(people) == {i: o for i, o in owners_and_sponsors.items() if o}
    sponsored = [h for h in everything(run[0], "owner_hints") if "/sponsors" in h.evidence]
    assert {h.principal_id for h in sponsored} == set(truth.sponsors)
    crowded = next(i for i, o in truth.owner_people.items() if len(o) == 25)
    assert len(people[crowded]) == 25  # more than the 20 an $expand returns
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
        assert credential.created_at is None  # startDateTime is not a creation time
        assert (credential.expires_at is None) == (credential.type == "federated")
    assert dict(found) == {i: c for i, c in truth.credentials.items() if c}
    federated = [c for c in everything(run[0], "credentials") if c.type == "federated"]
    assert federated
    assert all(
        c.display_name and c.display_name.startswith("issuer https://token.actions.")
        for c in federated
    )
    saml = {
        sp["id"]
        for sp in large_tenant.tenant.service_principals.values()
        if sp.get("preferredSingleSignOnMode") == "saml"
    }
    assert saml
    assert all(found[i] == {("certificate", next(iter(found[i]))[1])} for i in saml)
    activity = {a.principal_id: a.last_used_at for a in everything(run[0], "activity")}
    assert activity == truth.last_sign_in


def test_malformed_records_are_counted_and_skipped(run: tuple[list[Page], float]) -> None:
    skipped = everything(run[0], "skipped")
    assert len(skipped) == 4
    assert {s.reason.split(" ")[0] for s in skipped} == {
        "id",
        "accountEnabled",
        "displayName",
        "passwordCredentials",
    }


def test_reads_are_cheap(run: tuple[list[Page], float], large_tenant: EntraEmulator) -> None:
    """Bulk listings in the cheap forms; no read per principal; nothing throttled."""
    meter = large_tenant.quota.meter
    assert meter.throttled == 0
    assert meter.requests < 150  # ~2,100 principals
    assert meter.resource_units < 200  # a naive loop spends ~5 per principal
    crowded = [r for r in large_tenant.requests if r.path.endswith("/owners")]
    assert len(crowded) == 1  # the app with more owners than `$expand` returns
    assert not [r for r in large_tenant.requests if r.path.endswith("/appRoleAssignments")]
    sps = [r for r in large_tenant.requests if r.path == "/v1.0/servicePrincipals"]
    assert all(r.arg("$expand", "").startswith("owners($select=") and r.arg("$select") for r in sps)
    assert meter.key_credential_reads == 1  # only the delta link, by `$deltatoken=latest`
