"""Issue #22: Okta for AI Agents discovered as `agent_identity` principals, with owners
(a group's active members), keys, connections and lifecycle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.base import OwnerSource, PrincipalKind, PrincipalRef
from sandbox.okta import build
from sandbox.tls import SandboxCA
from tests.okta.conftest import FakeClock, Org, _generous, checkpoint, collect, merged, serve_org

pytestmark = pytest.mark.anyio
AGENTS = "/workload-principals/api/v1/ai-agents"


@pytest.fixture
def agent_org(sandbox_ca: SandboxCA, clock: FakeClock, tmp_path: Path) -> Iterator[Org]:
    """More agents than the API's default page of 20."""
    emulator = build(seed=13, size=15, clock=clock.time, limits=_generous(), agents=25)
    yield from serve_org(emulator, clock, sandbox_ca, tmp_path / "secrets")


def agent_hints(records: dict[str, list[Any]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for hint in records["owner_hints"]:
        if hint.principal_id.startswith("wlp"):
            assert hint.source == OwnerSource.IDP_OWNER
            found.setdefault(hint.principal_id, set()).add(hint.person_id)
    return found


async def test_agents_with_owners_keys_and_connections(agent_org: Org) -> None:
    truth = agent_org.emulator.truth
    records = merged(await collect(agent_org.connector()))
    agents = {
        p.external_id: p for p in records["principals"] if p.kind == PrincipalKind.AGENT_IDENTITY
    }
    assert set(agents) == set(truth.agents), "every agent, past the first 20"
    assert {a: p.display_name for a, p in agents.items()} == truth.agents

    reach: dict[str, set[str]] = {}
    for grant in records["grants"]:
        if grant.principal_id in agents:
            reach.setdefault(grant.principal_id, set()).add(grant.permission)
    assert reach == {a: p for a, p in truth.agent_permissions.items() if p}

    keys: dict[str, set[str]] = {}
    for credential in records["credentials"]:
        if credential.principal_id in agents:
            assert credential.type == "jwks"
            assert credential.created_at is not None
            keys.setdefault(credential.principal_id, set()).add(
                credential.credential_id.split("/")[-1]
            )
    assert keys == truth.agent_keys

    assert agent_hints(records) == truth.agent_owners
    for agent_id in truth.orphan_agents:
        assert agent_id not in agent_hints(records)
    group_agent, group_id = next(iter(truth.agent_group.items()))
    owners = agents[group_agent].raw["owners"]
    assert owners == [
        {"type": "GROUP", "id": group_id, "name": "AI Platform Owners", "active_members": 3}
    ], "the group is kept as evidence; its suspended and departed members own nothing"
    linked = [p for p in agents.values() if p.raw["linked_app"]]
    assert linked
    assert all(p.raw["linked_app"]["label"] for p in linked)
    people = {p.external_id for p in records["people"]}
    assert set().union(*truth.agent_owners.values()) <= people


@pytest.mark.parametrize("mode", ["endpoint", "refused"])
async def test_owners_wherever_the_api_puts_them(org: Org, mode: str) -> None:
    """Owners are in no published definition: read from `/owners` when the object lacks
    them; an API that refuses that path (405, provider-facts.md) leaves orphans."""
    org.emulator.agent_owners = mode
    truth = org.emulator.truth
    records = merged(await collect(org.connector()))
    asked = [r for r in org.emulator.requests if r.path.endswith("/owners")]
    if mode == "endpoint":
        assert agent_hints(records) == truth.agent_owners
        assert len(asked) == len(truth.agents)
        return
    assert agent_hints(records) == {}
    assert len(asked) == 1, "refused once: not asked again for every agent"
    agents = [p for p in records["principals"] if p.kind == PrincipalKind.AGENT_IDENTITY]
    assert all("405" in p.raw["owners"] for p in agents)


async def test_an_org_without_okta_for_ai_agents_completes_without_them(org: Org) -> None:
    org.emulator.ai_agents_subscribed = False
    pages = await collect(org.connector())
    final = checkpoint(pages)
    assert final.full
    assert "E0000015" in final.not_visible["agent_identity"]
    kinds = {p.kind for p in merged(pages)["principals"]}
    assert PrincipalKind.AGENT_IDENTITY not in kinds
    assert {PrincipalKind.OAUTH_APP, PrincipalKind.API_TOKEN} <= kinds


async def test_deactivate_and_activate_an_agent(org: Org) -> None:
    """Through the lifecycle endpoint, whose 202 operation is polled to its end."""
    agents = org.emulator.org.agents
    agent_id = next(a for a in org.emulator.truth.agent_owners if agents[a]["status"] == "ACTIVE")
    staged = next(a for a in agents if a != agent_id)
    agents[staged]["status"] = "STAGED"
    ref = PrincipalRef(agent_id, PrincipalKind.AGENT_IDENTITY)
    connector = org.connector(write=True)
    try:
        snapshot = await connector.disable(ref)
        assert agents[agent_id]["status"] == "INACTIVE"
        assert await connector.disable(ref) == {"agent_id": agent_id, "status": "INACTIVE"}
        await connector.enable(ref, snapshot)
        assert agents[agent_id]["status"] == "ACTIVE"
        staged_ref = PrincipalRef(staged, PrincipalKind.AGENT_IDENTITY)
        await connector.enable(staged_ref, await connector.disable(staged_ref))
    finally:
        await connector.aclose()
    assert agents[staged]["status"] == "STAGED", "what was not active stays as it was"
    polled = [r for r in org.emulator.requests if "/operations/" in r.path]
    assert len(polled) == 2
