"""Discovery of a seeded domain, asserted against the seed's ground truth."""

from __future__ import annotations

import asyncio
import time

import pytest

import sandbox.google
from connectors.base import Consent, OwnerSource, PrincipalKind, Status
from connectors.google import LogState, TokensRead
from sandbox.google import GoogleEmulator
from sandbox.google.seed import (
    DEPARTED_MANAGER,
    FOREIGN_MANAGERS,
    GOOGLE_OWNED_CLIENTS,
    HOSTILE_NAMES,
)
from sandbox.server import serving
from sandbox.tls import SandboxCA
from tests.google.conftest import Sleeps, Tenant, settings_from
from tests.google.truth import (
    LOG_WINDOW,
    Stream,
    expected_delegations,
    expected_grants,
    expected_keys,
    expected_last_use,
    fold,
)


@pytest.fixture(scope="module")
def large_run(
    sandbox_ca: SandboxCA, tmp_path_factory: pytest.TempPathFactory
) -> tuple[GoogleEmulator, Stream]:
    """One discovery of a 2,000-user domain, shared by the assertions below."""
    emulator = sandbox.google.build(seed=1, size=150, users=2000)
    with serving(emulator, sandbox_ca) as server:
        secrets = tmp_path_factory.mktemp("google-secrets")
        table = emulator.tenant_table("google-test", server.url, sandbox_ca.ca_bundle, secrets)
        tenant = Tenant(emulator, server, settings_from(table), Sleeps())
        started = time.perf_counter()
        pages = tenant.discover()
        elapsed = time.perf_counter() - started
    assert pages[-1].checkpoint is not None
    assert pages[-1].checkpoint.full
    assert all(page.checkpoint is None for page in pages[:-1])
    assert emulator.quota.throttled == 0
    print(
        f"\ngoogle discover: {len(emulator.users)} users, {len(emulator.requests)} requests, "
        f"{elapsed:.1f} s wall"
    )
    return emulator, fold(pages)


def test_people_and_managers(large_run: tuple[GoogleEmulator, Stream]) -> None:
    emulator, stream = large_run
    seed = emulator.seed
    by_email = {u.email: u for u in seed.users}
    assert len(seed.users) >= 2000
    assert set(stream.people) == {u.id for u in seed.users}
    for user in seed.users:
        person = stream.people[user.id]
        assert person.active == user.active
        assert person.email == user.email
        manager = by_email.get(user.manager_email or "")
        assert person.manager_id == (manager.id if manager else None)
    assert {FOREIGN_MANAGERS[0], FOREIGN_MANAGERS[1], DEPARTED_MANAGER} <= {
        u.manager_email for u in seed.users
    }


def test_third_party_apps_fold_user_tokens(large_run: tuple[GoogleEmulator, Stream]) -> None:
    emulator, stream = large_run
    seed = emulator.seed
    apps = {
        p.external_id: p
        for p in stream.principals.values()
        if p.kind == PrincipalKind.THIRD_PARTY_APP
    }
    names = {cid: t.display_text for u in seed.users for cid, t in u.tokens.items()}
    assert set(apps) == set(names)
    for cid, app in apps.items():
        assert app.app_id == cid
        assert app.display_name == names[cid]
        assert app.platform_owned == (cid in GOOGLE_OWNED_CLIENTS)
    assert set(HOSTILE_NAMES) <= {app.display_name for app in apps.values()}
    user_grants = {
        (g.principal_id, g.grant_id, g.permission, g.consenting_user)
        for g in stream.grants
        if g.consent == Consent.USER
    }
    assert user_grants == expected_grants(seed)


def test_last_use_inside_retention(large_run: tuple[GoogleEmulator, Stream]) -> None:
    emulator, stream = large_run
    expected = expected_last_use(emulator.seed)
    assert {cid: a.last_used_at for cid, a in stream.activity.items()} == expected
    assert None in expected.values()  # some apps unused for 180 days: no use seen
    window = {a.window_start for a in stream.activity.values()}
    assert window == {emulator.now - LOG_WINDOW}


def test_domain_wide_delegation_from_admin_audit(large_run: tuple[GoogleEmulator, Stream]) -> None:
    emulator, stream = large_run
    expected = expected_delegations(emulator.seed)
    dwd = {g.principal_id for g in stream.grants if g.consent == Consent.DOMAIN_WIDE}
    assert dwd == set(expected)
    grants = {
        (g.principal_id, g.permission) for g in stream.grants if g.consent == Consent.DOMAIN_WIDE
    }
    assert grants == {(cid, s) for cid, scopes in expected.items() for s in scopes}
    authorizers = {c.client_id: c.authorized_by for c in emulator.seed.dwd_clients}
    hints = {h.principal_id: h for h in stream.owner_hints if h.source == OwnerSource.AUDIT_CREATOR}
    for cid in expected:
        assert hints[cid].source == OwnerSource.AUDIT_CREATOR
        assert hints[cid].email == authorizers[cid]
        assert hints[cid].person_id in stream.people


def test_service_accounts_and_keys(large_run: tuple[GoogleEmulator, Stream]) -> None:
    emulator, stream = large_run
    seed = emulator.seed
    accounts = {
        p.external_id: p
        for p in stream.principals.values()
        if p.kind == PrincipalKind.SERVICE_ACCOUNT
    }
    assert set(accounts) == {a.unique_id for a in seed.service_accounts}
    for account in seed.service_accounts:
        principal = accounts[account.unique_id]
        assert principal.app_id == account.email
        assert principal.status == (Status.DISABLED if account.disabled else Status.ACTIVE)
        assert principal.platform_owned is False  # default accounts are user-managed too
    keys = {(c.principal_id, c.credential_id, c.expires_at) for c in stream.credentials}
    assert keys == expected_keys(seed)
    assert {c.type for c in stream.credentials} == {"key"}
    assert any(expires is None for _, _, expires in keys)


def test_suspended_consenting_user(large_run: tuple[GoogleEmulator, Stream]) -> None:
    emulator, stream = large_run
    suspended = [u for u in emulator.seed.users if u.suspended and u.tokens]
    assert suspended
    user = suspended[0]
    assert stream.people[user.id].active is False
    held = {g.principal_id for g in stream.grants if g.consenting_user == user.id}
    assert held == set(user.tokens)


def test_chunks_cover_the_same_stream(small: Tenant) -> None:
    """The Celery form: plan, people, tokens in chunks of user ids, then the rest."""

    async def chunked() -> tuple[int, Stream]:
        connector = small.connector(users_per_chunk=25)
        try:
            plan = connector.plan(LogState())
            pages = [page async for page in connector.people_pages(plan)]
            chunks = await connector.token_chunks(plan, LogState())
            read = TokensRead()
            for chunk in chunks:
                page, found = await connector.tokens_chunk(chunk, plan.unknown_use)
                read.merge(found)
                pages.append(page)
            pages += [p async for p in connector.finish_pages(plan, LogState(), read)]
            return len(chunks), fold(pages)
        finally:
            await connector.aclose()

    calls, stream = asyncio.run(chunked())
    assert calls == 5  # 120 users / 25
    assert len(stream.people) == 120
    whole = fold(small.discover())
    assert stream.grants == whole.grants
    assert stream.people == whole.people
    assert stream.activity == whole.activity
    sizes = {r.arg("maxResults") for r in small.emulator.requests if r.path.endswith("/users")}
    assert sizes == {"500"}


def test_malformed_records_are_skipped_and_logged(
    small: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    broken = small.emulator.inject_malformed()
    pages = small.discover()
    stream = fold(pages)
    assert pages[-1].checkpoint is not None
    assert pages[-1].checkpoint.full
    kinds = {entry.split(":")[0] for entry in stream.skipped}
    assert {"user", "token", "service_account", "service_account_key"} <= kinds
    assert f"user:{broken['user']}" in stream.skipped
    assert "tenant=google-test" in caplog.text
    assert len(stream.people) == 120
