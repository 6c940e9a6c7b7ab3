"""Discovery against a seeded org, checked against the seed's ground truth."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.base import Consent, OwnerSource, PrincipalKind, Status
from sandbox.okta import build
from sandbox.tls import SandboxCA
from tests.okta.conftest import FakeClock, Org, checkpoint, collect, merged, serve_org

pytestmark = pytest.mark.anyio


@pytest.fixture
def big_org(sandbox_ca: SandboxCA, clock: FakeClock, tmp_path: Path) -> Iterator[Org]:
    """400 apps under Okta's real per-minute limits (the fake clock makes waits free)."""
    yield from serve_org(
        build(seed=3, size=400, clock=clock.time), clock, sandbox_ca, tmp_path / "secrets"
    )


async def test_paced_org_matches_ground_truth(big_org: Org) -> None:
    truth = big_org.emulator.truth
    started = time.perf_counter()
    pages = await collect(big_org.connector())
    wall = time.perf_counter() - started
    print(
        f"\n400-app org: {len(pages)} pages in {wall:.2f}s wall, "
        f"{sum(big_org.clock.sleeps):.0f}s of paced waits"
    )
    records = merged(pages)
    assert checkpoint(pages).full
    assert all(page.checkpoint is None for page in pages[:-1])

    by_id = {p.external_id: p for p in records["principals"]}
    oauth = {i for i, p in by_id.items() if p.kind == PrincipalKind.OAUTH_APP}
    assert oauth == set(truth.oauth_apps) | truth.builtins
    assert not oauth & truth.other_apps  # SAML/SWA/bookmarks are not principals
    assert {i for i, p in by_id.items() if p.platform_owned} == truth.builtins
    assert {i for i, p in by_id.items() if p.kind == PrincipalKind.API_TOKEN} == set(
        truth.api_tokens
    )
    assert {i for i, p in by_id.items() if p.kind == PrincipalKind.AGENT_IDENTITY} == set(
        truth.agents
    )
    assert all(by_id[i].app_id == cid for i, cid in truth.oauth_apps.items())
    assert len(records["skipped"]) == truth.malformed_apps

    admin: dict[str, set[str]] = {}
    for grant in records["grants"]:
        if grant.principal_id in truth.oauth_apps and grant.consent == Consent.APPLICATION:
            admin.setdefault(grant.principal_id, set()).add(grant.permission)
    assert admin == {app: scopes for app, scopes in truth.grants.items() if scopes}

    hints = {(h.principal_id, h.source, h.person_id) for h in records["owner_hints"]}
    expected = {(a, OwnerSource.AUDIT_CREATOR, u) for a, u in truth.creators.items()}
    expected |= {(t, OwnerSource.TOKEN_CREATOR, u) for t, u in truth.api_tokens.items()}
    expected |= {
        (agent, OwnerSource.IDP_OWNER, person)
        for agent, people in truth.agent_owners.items()
        for person in people
    }
    assert hints == expected

    last_used = {
        a.principal_id: a.last_used_at
        for a in records["activity"]
        if a.principal_id in truth.oauth_apps
    }
    assert last_used == truth.last_used
    people = {p.external_id: p for p in records["people"]}
    for user_id in set(truth.creators.values()) | set(truth.api_tokens.values()):
        assert user_id in people
    assert {u for u in truth.departed if u in people} == truth.departed
    assert all(not people[u].active for u in truth.departed)
    assert big_org.clock.sleeps, "the apps bucket (100/min) must have paced the run"


async def test_departed_creator_found_with_active_manager(org: Org) -> None:
    records = merged(await collect(org.connector()))
    people = {p.external_id: p for p in records["people"]}
    departed_creators = set(org.emulator.truth.creators.values()) & org.emulator.truth.departed
    assert departed_creators
    for user_id in departed_creators:
        person = people[user_id]
        assert not person.active
        assert person.manager_id is not None
        assert people[person.manager_id].active
    requests = [r for r in org.emulator.requests if r.path == "/api/v1/users"]
    assert any(r.arg("filter") == 'status eq "DEPROVISIONED"' for r in requests)


async def test_cursor_paging_uses_largest_pages_and_follows_links(org: Org) -> None:
    records = merged(await collect(org.connector(page_size=7)))
    app_requests = [r for r in org.emulator.requests if r.path == "/api/v1/apps"]
    assert len(app_requests) == -(-len(org.emulator.org.apps) // 7)
    assert [r.arg("limit") for r in app_requests] == ["7"] * len(app_requests)
    assert all(r.arg("after") for r in app_requests[1:])
    assert len({p.external_id for p in records["principals"]}) == len(records["principals"])
    limits = {r.path: r.arg("limit") for r in org.emulator.requests}
    assert limits["/api/v1/logs"] == "1000"
    assert limits["/api/v1/api-tokens"] == "200"
    assert limits["/workload-principals/api/v1/ai-agents"] == "200"


async def test_hostile_names_survive_as_data(org: Org) -> None:
    records = merged(await collect(org.connector()))
    names = {p.external_id: p.display_name for p in records["principals"]}
    hostile = org.emulator.truth.hostile_apps
    assert hostile
    assert all(app in names for app in hostile)
    assert "<script>alert(1)</script>" in {names[a] for a in hostile}


async def test_statuses_map(org: Org) -> None:
    records = merged(await collect(org.connector()))
    statuses = {p.status for p in records["principals"]}
    assert Status.ACTIVE in statuses
    assert Status.DISABLED in statuses
