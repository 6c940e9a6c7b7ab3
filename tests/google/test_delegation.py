"""Domain-wide delegation beyond the 180-day audit window: carried, joined, registered."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

import sandbox.google
from connectors.base import SEEN_SINCE, Consent, PrincipalKind
from connectors.settings import KnownDelegation
from recert.config import ConfigError, load_settings
from sandbox.google import GoogleEmulator
from tests.google.conftest import Tenant
from tests.google.truth import LOG_WINDOW, expected_delegations, fold

Serve = Callable[[GoogleEmulator], Tenant]


@pytest.fixture
def tenant(serve: Serve) -> Tenant:
    return serve(sandbox.google.build(seed=11, size=50, users=60, dwd_share=0.3))


def test_a_client_older_than_the_audit_log_is_registered_from_the_file(tenant: Tenant) -> None:
    seed = tenant.emulator.seed
    old = [
        c
        for c in seed.dwd_clients
        if c.authorized_at < seed.now - LOG_WINDOW and c.removed_at is None
    ]
    assert old, "the seed authorizes some clients before the audit window"
    known = tuple(
        KnownDelegation(client_id=c.client_id, scopes=tuple(c.scopes), name=f"Vendor {i}")
        for i, c in enumerate(old)
    )
    plain = fold(tenant.discover())
    stream = fold(tenant.discover(delegation_clients=known))
    delegated = {g.principal_id for g in stream.grants if g.consent == Consent.DOMAIN_WIDE}
    assert {c.client_id for c in old}.isdisjoint(
        {g.principal_id for g in plain.grants if g.consent == Consent.DOMAIN_WIDE}
    )
    assert {c.client_id for c in old} <= delegated
    window_start = (seed.now - LOG_WINDOW).isoformat()
    for client in old:
        principal = stream.principals[client.client_id]
        assert principal.raw["evidence"] == "delegation_clients_file"
        assert principal.raw[SEEN_SINCE] == window_start
    audited = expected_delegations(seed)
    for client_id in audited:
        assert stream.principals[client_id].raw[SEEN_SINCE] is not None


def test_a_client_joins_its_service_account(tenant: Tenant) -> None:
    seed = tenant.emulator.seed
    accounts = {a.unique_id: a for a in seed.service_accounts}
    joined = [cid for cid in expected_delegations(seed) if cid in accounts]
    assert joined
    stream = fold(tenant.discover())
    for client_id in joined:
        principal = stream.principals[client_id]
        assert principal.kind == PrincipalKind.SERVICE_ACCOUNT
        assert principal.app_id == accounts[client_id].email
        assert principal.raw["domainWideDelegation"] is True
        scopes = {
            g.permission
            for g in stream.grants
            if g.principal_id == client_id and g.consent == Consent.DOMAIN_WIDE
        }
        assert scopes == set(expected_delegations(seed)[client_id])


def test_only_a_removal_event_retires_a_client(tenant: Tenant) -> None:
    seed = tenant.emulator.seed
    pages = tenant.discover()
    checkpoint = pages[-1].checkpoint
    assert checkpoint is not None
    assert PrincipalKind.OAUTH_APP in checkpoint.keep_kinds
    removed = [c for c in seed.dwd_clients if c.removed_at]
    assert removed
    assert {c.client_id for c in removed} <= set(pages[-2].removed)
    carried = dict(checkpoint.cursor)
    tenant.emulator.advance(timedelta(days=200))  # the audit log forgot every event
    later = tenant.discover(carried)
    again = {g.principal_id for g in fold(later).grants if g.consent == Consent.DOMAIN_WIDE}
    assert again == set(expected_delegations(seed))
    assert later[-2].removed == []


def test_a_removed_client_left_in_the_file_stays_removed(
    tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    gone = next(c for c in tenant.emulator.seed.dwd_clients if c.removed_at)
    known = (KnownDelegation(client_id=gone.client_id, scopes=tuple(gone.scopes)),)
    stream = fold(tenant.discover(delegation_clients=known))
    assert gone.client_id not in stream.principals
    assert f"lists {gone.client_id}, which the admin audit log shows removed" in caplog.text


def test_the_file_is_read_and_checked_with_the_config(tmp_path: Path) -> None:
    (tmp_path / "sa.json").write_text("{}")
    (tmp_path / "dwd.csv").write_text(
        'client_id,scopes,name\n104,"https://mail.google.com/ https://www.googleapis.com/auth/drive",Backup\n'
    )
    config = tmp_path / "recert.toml"
    table = (
        '[[tenants]]\nname = "g"\nkind = "google"\ncredentials_file = "sa.json"\n'
        'admin_subject = "admin@acme.test"\ndelegation_clients_file = "dwd.csv"\n'
    )
    config.write_text(table)
    read = load_settings(config, {}).tenants[0].read
    assert read.delegation_clients == (  # type: ignore[union-attr]
        KnownDelegation(
            client_id="104",
            scopes=("https://mail.google.com/", "https://www.googleapis.com/auth/drive"),
            name="Backup",
        ),
    )
    (tmp_path / "dwd.csv").write_text("client,scopes\n104,x\n")
    with pytest.raises(ConfigError, match=r"delegation_clients: .*client_id,scopes\[,name\]"):
        load_settings(config, {})
