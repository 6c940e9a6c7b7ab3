"""The right apps in review, and the smaller truths: addressing, keys, windows, scopes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest

import sandbox.google
from connectors.base import NotFound, PrincipalKind, PrincipalRef
from connectors.google import GoogleConnector, get, whole_app_grant
from connectors.google.client import CLOUD_SCOPES, WORKSPACE_SCOPES, GoogleClient
from connectors.google.transform import GOOGLE_OWNED_CLIENTS
from connectors.google.usage import rfc3339
from sandbox.google.seed import REUSABLE_GOOGLE_CLIENTS
from sandbox.server import serving
from sandbox.tls import SandboxCA
from tests.google.conftest import Sleeps, Tenant, settings_from
from tests.google.truth import Stream, expected_keys, fold

T = TypeVar("T")
GOOGLE = Path(__file__).parents[2] / "connectors" / "google"


def run(tenant: Tenant, action: Callable[[GoogleConnector], Awaitable[T]]) -> T:
    async def go() -> T:
        connector = tenant.connector()
        try:
            return await action(connector)
        finally:
            await connector.aclose()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def discovered(
    sandbox_ca: SandboxCA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Tenant, Stream]]:
    """One discovery of a small domain, read by the tests that only look."""
    emulator = sandbox.google.build(seed=7, size=40, users=120)
    with serving(emulator, sandbox_ca) as server:
        secrets = tmp_path_factory.mktemp("google-truths")
        table = emulator.tenant_table("google-test", server.url, sandbox_ca.ca_bundle, secrets)
        tenant = Tenant(emulator, server, settings_from(table), Sleeps())
        yield tenant, fold(tenant.discover())


def test_reusable_google_clients_are_reviewed_with_their_users(
    discovered: tuple[Tenant, Stream],
) -> None:
    small, stream = discovered
    seed = small.emulator.seed
    for client_id in REUSABLE_GOOGLE_CLIENTS:
        app = stream.principals[client_id]
        assert app.kind == PrincipalKind.THIRD_PARTY_APP
        assert app.platform_owned is False
        holders = {u.id for u in seed.users if client_id in u.tokens}
        assert holders == {g.consenting_user for g in stream.grants if g.principal_id == client_id}
    owned = [p for p in stream.principals.values() if p.platform_owned]
    assert {p.external_id for p in owned} == set(GOOGLE_OWNED_CLIENTS) & set(stream.principals)


def test_every_google_owned_entry_says_what_it_is() -> None:
    entries = [
        line
        for line in (GOOGLE / "google_owned_clients.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert entries
    assert all("#" in line and line.split("#", 1)[1].strip() for line in entries)
    assert set(REUSABLE_GOOGLE_CLIENTS).isdisjoint(GOOGLE_OWNED_CLIENTS)


def test_default_compute_and_app_engine_accounts_are_reviewed(
    discovered: tuple[Tenant, Stream],
) -> None:
    small, stream = discovered
    defaults = [a for a in small.emulator.seed.service_accounts if a.default_account]
    assert {a.email.rpartition("@")[2] for a in defaults} == {
        "developer.gserviceaccount.com",
        "appspot.gserviceaccount.com",
    }
    for account in defaults:
        assert stream.principals[account.unique_id].platform_owned is False


def test_disabled_keys_are_not_live_credentials(discovered: tuple[Tenant, Stream]) -> None:
    small, stream = discovered
    disabled = {
        k.key_id for a in small.emulator.seed.service_accounts for k in a.keys if k.disabled
    }
    assert disabled
    found = {(c.principal_id, c.credential_id, c.expires_at) for c in stream.credentials}
    assert found == expected_keys(small.emulator.seed)
    assert disabled.isdisjoint({c.credential_id for c in stream.credentials})


def test_accounts_are_addressed_by_project_never_by_wildcard(small: Tenant) -> None:
    seed = small.emulator.seed
    compute = next(
        a
        for a in seed.service_accounts
        if a.email.endswith("-compute@developer.gserviceaccount.com")
    )
    ref = PrincipalRef(compute.unique_id, PrincipalKind.SERVICE_ACCOUNT, compute.email)
    snapshot = run(small, lambda c: c.disable(ref))
    assert snapshot["name"] == f"projects/{compute.project}/serviceAccounts/{compute.email}"
    gone = next(a for a in seed.service_accounts if a.email.startswith("svc-"))
    small.emulator.delete_account(gone.email)
    gone_ref = PrincipalRef(gone.unique_id, PrincipalKind.SERVICE_ACCOUNT, gone.email)
    with pytest.raises(NotFound):  # already gone, which a disable counts as done
        run(small, lambda c: c.disable(gone_ref))
    assert not [r for r in small.emulator.requests if "/projects/-/" in r.path]


def test_report_queries_start_179_days_back(discovered: tuple[Tenant, Stream]) -> None:
    small, _ = discovered
    reports = [r for r in small.emulator.requests if "/activity/" in r.path]
    oldest = rfc3339(small.emulator.now - timedelta(days=179))
    assert reports
    assert all(r.arg("startTime") >= oldest and r.arg("endTime") for r in reports)

    async def exactly_180() -> None:
        client = GoogleClient(small.settings, sleep=small.sleeps)
        try:
            start = rfc3339(small.emulator.now - timedelta(days=180))
            await get.activities_page(client, "token", (start, rfc3339(small.emulator.now)))
        finally:
            await client.aclose()

    with pytest.raises(Exception, match="Start time is after end time"):
        asyncio.run(exactly_180())


def test_permissions_md_lists_the_scopes_requested() -> None:
    text = (GOOGLE / "PERMISSIONS.md").read_text()
    listed = set(re.findall(r"`(https://www\.googleapis\.com/auth/[\w.-]+)`", text))
    assert listed == set(WORKSPACE_SCOPES) | set(CLOUD_SCOPES)
    assert re.search(r"admin\.directory\.user\.security` *\|[^\n]*`tokens\.list`", text)


def test_whole_app_revoke_uses_the_stored_consenting_users(small: Tenant) -> None:
    holders: dict[str, set[str]] = {}
    for user in small.emulator.seed.users:
        for cid in user.tokens:
            holders.setdefault(cid, set()).add(user.id)
    cid = max(holders, key=lambda c: len(holders[c]))
    users = tuple(sorted(holders[cid]))
    ref = PrincipalRef(cid, PrincipalKind.THIRD_PARTY_APP, cid, users)
    before = len(small.emulator.requests)
    snapshot = run(small, lambda c: c.revoke_grant(whole_app_grant(ref)))
    made = small.emulator.requests[before:]
    assert {h["user"] for h in snapshot["holders"]} == set(users)
    assert [r.method for r in made if r.path != "/token"] == ["DELETE"] * len(users)
