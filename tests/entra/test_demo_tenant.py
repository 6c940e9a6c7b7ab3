"""The demo tenant (sandbox/tenants.py) through the CLI: the night after an owner or a grant
is added to an unchanged service principal, the inventory shows it; agent identities are in
the inventory, in a campaign and in the reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sandbox.tenants import SandboxTenants, Sizes, running_tenants

SIZES = Sizes(okta_apps=5, entra_principals=70, google_principals=5, google_users=20)
TONIGHT = datetime.now(UTC).replace(microsecond=0)
TOMORROW = TONIGHT + timedelta(days=1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SandboxTenants, Path]]:
    folder = tmp_path_factory.mktemp("demo-entra")
    with running_tenants(folder, SIZES, now=TONIGHT) as tenants:
        config = folder / "recert.toml"
        database = {"url": f"sqlite:///{folder / 'recert.db'}"}
        config.write_text(tenants.config(database=database, iam_email="iam@example.com"))
        yield tenants, config


def recert(config: Path, now: datetime, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECERT_", "OKTA_"))}
    env.update(RECERT_CONFIG=str(config), RECERT_NOW=now.isoformat())
    result = subprocess.run(
        [sys.executable, "-m", "recert", *args, "--format", "json"],
        env=env,
        cwd=config.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def entries(config: Path, now: datetime) -> dict[str, dict[str, Any]]:
    found = recert(config, now, "inventory", "--tenant", "entra-demo")
    return {e["external_id"]: e for e in found}


def quiet_service_principal(tenants: SandboxTenants, skip: int) -> str:
    """A service principal of one of the tenant's own apps, with nothing on it yet."""
    tenant = tenants.entra.tenant
    consented = {g["clientId"] for g in tenant.grants.values()}
    found = [
        sp_id
        for sp_id, kind in tenant.truth.kinds.items()
        if kind == "service_principal"
        and sp_id in tenant.service_principals
        and sp_id not in tenant.truth.platform_owned
        and sp_id not in consented
        and not tenant.owners.get(sp_id)
    ]
    return found[skip]


def test_a_new_owner_and_grant_show_up_the_next_night(demo: tuple[SandboxTenants, Path]) -> None:
    tenants, config = demo
    tenant = tenants.entra.tenant
    first = recert(config, TONIGHT, "discover", "--tenant", "entra-demo")
    assert first[0]["full"]
    owned, consented = quiet_service_principal(tenants, 0), quiet_service_principal(tenants, 1)
    person = next(u for u, user in tenant.users.items() if user["accountEnabled"] and user["mail"])
    graph = next(
        i for i, sp in tenant.service_principals.items() if sp["displayName"] == "Microsoft Graph"
    )
    tenants.entra.add_owner(owned, person)
    tenants.entra.grant_consent(consented, graph, "Mail.Read", None)
    nightly = recert(config, TOMORROW, "discover", "--tenant", "entra-demo")
    assert not nightly[0]["full"]
    inventory = entries(config, TOMORROW)
    owners = {o["email"] for o in inventory[owned]["owners"]}
    assert tenant.users[person]["mail"] in owners
    assert ("Mail.Read", "admin") in {
        (g["permission"], g["consent"]) for g in inventory[consented]["grants"]
    }


def test_agent_identities_in_inventory_campaign_and_reports(
    demo: tuple[SandboxTenants, Path],
) -> None:
    tenants, config = demo
    recert(config, TONIGHT, "discover", "--tenant", "entra-demo")
    agents = {i: e for i, e in entries(config, TONIGHT).items() if e["kind"] == "agent_identity"}
    assert set(agents) == {
        i for i, k in tenants.entra.tenant.truth.kinds.items() if k == "agent_identity"
    }
    assert all(e["owners"] or e["orphan_reason"] for e in agents.values())
    campaign = recert(config, TONIGHT, "campaign", "open", "--kind", "agent_identity")
    assert campaign["items"] == len(agents)
    risky = recert(config, TONIGHT, "report", "risky", "--tenant", "entra-demo")
    assert {r["external_id"] for r in risky if r["kind"] == "agent_identity"} == set(agents)
