"""`recert discover` as an operator runs it: a TOML file, the real SDKs over TLS, the three
emulated tenants, a separate process; then the inventory and reports it produced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from recert import db
from recert.clock import FixedClock
from recert.config import load_settings
from recert.discovery import discover_tenant
from recert.inventory import inventory as build_inventory
from sandbox.tenants import SandboxTenants, Sizes, running_tenants
from tests.google.truth import expected_delegations

SIZES = Sizes(okta_apps=40, entra_principals=60, google_principals=30, google_users=120)
NOW = datetime.now(UTC).replace(microsecond=0)  # emulators and RECERT_NOW share one instant


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SandboxTenants, Path]]:
    directory = tmp_path_factory.mktemp("e2e")
    with running_tenants(directory, SIZES, now=NOW) as tenants:
        config = directory / "recert.toml"
        config.write_text(
            tenants.config(
                database={"url": f"sqlite:///{directory / 'recert.db'}"},
                iam_email="iam@example.com",
            )
        )
        yield tenants, config


def recert(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECERT_", "OKTA_"))}
    env["RECERT_CONFIG"] = str(config)
    env["RECERT_NOW"] = NOW.isoformat()
    return subprocess.run(
        [sys.executable, "-m", "recert", *args],
        env=env,
        cwd=config.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def json_of(config: Path, *args: str) -> Any:
    result = recert(config, *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def discovered(world: tuple[SandboxTenants, Path]) -> dict[str, Any]:
    _, config = world
    summaries = json_of(config, "discover")
    return {s["tenant"]: s for s in summaries}


@pytest.fixture(scope="module")
def inventory(
    world: tuple[SandboxTenants, Path], discovered: dict[str, Any]
) -> list[dict[str, Any]]:
    _, config = world
    return list(json_of(config, "inventory"))


def of(inventory: list[dict[str, Any]], tenant: str) -> dict[str, dict[str, Any]]:
    return {e["external_id"]: e for e in inventory if e["tenant"] == tenant}


def test_every_tenant_completes(discovered: dict[str, Any]) -> None:
    assert set(discovered) == {"okta-demo", "entra-demo", "google-demo"}
    for summary in discovered.values():
        assert summary["status"] == "complete", summary
        assert summary["full"] is True
        assert summary["principals_seen"] > 0
    assert discovered["okta-demo"]["skipped"] == 3, "the seeded malformed apps are skipped"


def test_inventory_has_the_design_shape(inventory: list[dict[str, Any]]) -> None:
    required = {
        "tenant",
        "kind",
        "external_id",
        "display_name",
        "status",
        "platform_owned",
        "protected",
        "owners",
        "grants",
        "credentials",
        "last_used_at",
        "risk",
    }
    kinds = {
        "oauth_app",
        "service_principal",
        "managed_identity",
        "agent_identity",
        "service_account",
        "third_party_app",
        "api_token",
    }
    for entry in inventory:
        assert required <= set(entry)
        assert entry["kind"] in kinds
        assert entry["status"] in {"active", "disabled", "deleted"}
        assert entry["risk"] in {"low", "medium", "high"}
        for owner in entry["owners"]:
            assert set(owner) == {"email", "source", "confidence"}
        for grant in entry["grants"]:
            assert {"permission", "resource", "consent"} <= set(grant)
        for credential in entry["credentials"]:
            assert {"type", "expires_at"} <= set(credential)
    assert {e["kind"] for e in inventory} == kinds


def test_okta_inventory_matches_the_seed(
    world: tuple[SandboxTenants, Path], inventory: list[dict[str, Any]]
) -> None:
    truth = world[0].okta.truth
    found = of(inventory, "okta-demo")
    apps = {i for i, e in found.items() if e["kind"] == "oauth_app"}
    assert apps == set(truth.oauth_apps) | truth.builtins
    assert {i for i, e in found.items() if e["platform_owned"]} == truth.builtins
    assert {i for i, e in found.items() if e["kind"] == "api_token"} == set(truth.api_tokens)
    grants = {i: {g["permission"] for g in e["grants"]} for i, e in found.items() if e["grants"]}
    assert grants == {a: s for a, s in truth.grants.items() if s}


def test_entra_inventory_matches_the_seed(
    world: tuple[SandboxTenants, Path], inventory: list[dict[str, Any]]
) -> None:
    truth = world[0].entra.tenant.truth
    found = of(inventory, "entra-demo")
    assert {i: e["kind"] for i, e in found.items()} == truth.kinds
    assert {i for i, e in found.items() if e["platform_owned"]} == truth.platform_owned
    held = {
        i: {(g["permission"], g["consent"]) for g in e["grants"]}
        for i, e in found.items()
        if e["grants"]
    }
    assert held == {i: p for i, p in truth.permissions.items() if p}
    assert any(g["permission"] == "Mail.ReadWrite" for e in found.values() for g in e["grants"])


def test_google_inventory_matches_the_seed(
    world: tuple[SandboxTenants, Path], inventory: list[dict[str, Any]]
) -> None:
    seed = world[0].google.seed
    found = of(inventory, "google-demo")
    consented = {cid for user in seed.users for cid in user.tokens}
    assert {i for i, e in found.items() if e["kind"] == "third_party_app"} == consented
    delegated = {
        i for i, e in found.items() if any(g["consent"] == "domain_wide" for g in e["grants"])
    }
    assert delegated == set(expected_delegations(seed))
    accounts = {a.unique_id for a in seed.service_accounts}
    assert {i for i, e in found.items() if e["kind"] == "service_account"} == accounts
    for external_id in delegated:
        assert found[external_id]["risk"] == "high", "domain-wide delegation is always high risk"


def test_owners_are_resolved_and_orphans_reported(
    world: tuple[SandboxTenants, Path], inventory: list[dict[str, Any]]
) -> None:
    _, config = world
    okta_truth = world[0].okta.truth
    found = of(inventory, "okta-demo")
    for app_id in set(okta_truth.creators) - okta_truth.departed:
        entry = found.get(app_id)
        if entry and entry["owners"]:
            assert entry["owners"][0]["source"] in {"audit_creator", "manager"}
    orphans = json_of(config, "report", "orphans")
    assert orphans, "the seeds contain orphaned apps"
    platform = {
        (e["tenant"], e["external_id"])
        for e in inventory
        if e["platform_owned"] or e["kind"] == "managed_identity"
    }
    for row in orphans:
        assert set(row) >= {"tenant", "kind", "external_id", "display_name", "reason"}
        assert row["reason"] in {"no_owner", "owner_departed", "owner_unresolvable", "owner_is_app"}
        assert (row["tenant"], row["external_id"]) not in platform
    third_party = [
        e for e in inventory if e["kind"] == "third_party_app" and not e["platform_owned"]
    ]
    assert all(e["owners"][0]["email"] == "iam@example.com" for e in third_party)


def test_html_reports_escape_hostile_names(
    world: tuple[SandboxTenants, Path], inventory: list[dict[str, Any]], tmp_path: Path
) -> None:
    _, config = world
    assert any("<script>" in e["display_name"] for e in inventory)
    out = tmp_path / "uncataloged.html"
    result = recert(config, "report", "uncataloged", "--format", "html", "--output", str(out))
    assert result.returncode == 0, result.stderr
    html = out.read_text()
    assert "<script>alert" not in html
    assert "&lt;script&gt;" in html


def test_a_second_run_changes_nothing_and_the_audit_chain_holds(
    world: tuple[SandboxTenants, Path], inventory: list[dict[str, Any]]
) -> None:
    _, config = world
    again = {s["tenant"]: s for s in json_of(config, "discover")}
    for summary in again.values():
        assert (summary["status"], summary["new"], summary["deleted"]) == ("complete", 0, 0)
    owners = json_of(config, "owners")
    assert all(r["changed"] == 0 for r in owners)
    assert json_of(config, "inventory") == inventory
    verified = recert(config, "audit", "verify")
    assert verified.returncode == 0, verified.stderr


def test_tenants_at_scale_fill_the_inventory(tmp_path: Path) -> None:
    """2,000 Entra service principals, 1,000 Okta apps, 2,000 Google users, into the store."""
    sizes = Sizes(okta_apps=1000, entra_principals=2000, google_principals=400, google_users=2000)
    with running_tenants(tmp_path, sizes, now=NOW) as tenants:
        config = tmp_path / "recert.toml"
        config.write_text(tenants.config(database={"url": f"sqlite:///{tmp_path / 'big.db'}"}))
        settings = load_settings(config, {})
        engine = db.make_engine(settings.database.url)
        db.upgrade(engine)
        for tenant in settings.tenants:
            assert discover_tenant(engine, tenant, FixedClock(NOW)).status == "complete"
        with Session(engine) as session:
            entries = build_inventory(session)
    entra_truth = tenants.entra.tenant.truth
    found = of(entries, "entra-demo")
    assert len(found) >= 2000
    assert {i: e["kind"] for i, e in found.items()} == entra_truth.kinds
    assert {i for i, e in found.items() if e["platform_owned"]} == entra_truth.platform_owned
    okta_truth = tenants.okta.truth
    assert {i for i, e in of(entries, "okta-demo").items() if e["kind"] == "oauth_app"} == (
        set(okta_truth.oauth_apps) | okta_truth.builtins
    )
    users = tenants.google.seed.users
    assert len(users) >= 2000
    consented = {cid for user in users for cid in user.tokens}
    google = of(entries, "google-demo")
    assert {i for i, e in google.items() if e["kind"] == "third_party_app"} == consented
