"""Nightly re-runs: the delta link from the checkpoint, changes and removals."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.base import Checkpoint, Page
from connectors.entra import EntraConnector
from sandbox.entra import EntraEmulator
from sandbox.tls import SandboxCA
from tests.entra.conftest import FakeSleep, connector, discover, served, settings_for


def tenant_app_with_sp(app: EntraEmulator) -> tuple[str, str]:
    """(service principal id, application object id) of a registration in this tenant."""
    by_app_id = {a["appId"]: a["id"] for a in app.tenant.applications.values()}
    for sp in app.tenant.service_principals.values():
        if sp["appId"] in by_app_id:
            return sp["id"], by_app_id[sp["appId"]]
    raise AssertionError("no tenant app")


def test_delta_round_reports_changes_and_removals(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    with served(small_tenant, sandbox_ca) as url:
        first = discover(connector(settings_for(small_tenant, url, sandbox_ca)))
        cursor = first[-1].checkpoint.cursor  # type: ignore[union-attr]
        renamed, app_object = tenant_app_with_sp(small_tenant)
        doomed = next(
            i for i, k in small_tenant.tenant.truth.kinds.items() if k == "managed_identity"
        )
        small_tenant.update_service_principal(renamed, displayName="Renamed app")
        secret = {
            "keyId": "11111111-2222-4333-8444-555555555555",
            "displayName": "new secret",
            "startDateTime": "2026-11-30T00:00:00Z",
            "endDateTime": "2299-12-31T00:00:00Z",
        }
        creds = copy.deepcopy(small_tenant.tenant.applications[app_object]["passwordCredentials"])
        small_tenant.update_application(app_object, passwordCredentials=[*creds, secret])
        small_tenant.delete_service_principal(doomed)
        second = discover(connector(settings_for(small_tenant, url, sandbox_ca)), dict(cursor))
        third = discover(
            connector(settings_for(small_tenant, url, sandbox_ca)),
            dict(second[-1].checkpoint.cursor),  # type: ignore[union-attr]
        )
    checkpoint = second[-1].checkpoint
    assert checkpoint is not None
    assert not checkpoint.full
    assert checkpoint.cursor != cursor
    principals = {p.external_id: p for page in second for p in page.principals}
    assert set(principals) == {renamed}
    assert principals[renamed].display_name == "Renamed app"
    assert doomed in {r for page in second for r in page.removed}
    credentials = {c.credential_id for page in second for c in page.credentials}
    expected = {key for _, key in small_tenant.tenant.truth.credentials[renamed]}
    assert credentials == expected | {secret["keyId"]}
    grants = {g.grant_id for page in second for g in page.grants}
    assert all(g.principal_id == renamed for page in second for g in page.grants)
    assert len(grants) == sum(1 for page in first for g in page.grants if g.principal_id == renamed)
    assert [a for page in second for a in page.activity]  # sign-ins still reported for all
    assert not any(page.principals for page in third)
    assert third[-1].checkpoint is not None
    assert not third[-1].checkpoint.full


def test_expired_delta_link_falls_back_to_a_full_round(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    with served(small_tenant, sandbox_ca) as url:
        first = discover(connector(settings_for(small_tenant, url, sandbox_ca)))
        small_tenant.expire_delta_tokens()
        again: list[Page] = discover(
            connector(settings_for(small_tenant, url, sandbox_ca)),
            dict(first[-1].checkpoint.cursor),  # type: ignore[union-attr]
        )
    assert again[-1].checkpoint is not None
    assert again[-1].checkpoint.full
    assert {p.external_id for page in again for p in page.principals} == set(
        small_tenant.tenant.truth.kinds
    )


def test_a_full_round_comes_back_after_full_sync_days(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    """Deltas miss grant changes on unchanged principals, so they do not run forever."""
    start = datetime(2026, 12, 1, tzinfo=UTC)
    with served(small_tenant, sandbox_ca) as url:
        settings = settings_for(small_tenant, url, sandbox_ca)

        def run_at(moment: datetime, cursor: dict[str, Any] | None) -> Checkpoint:
            reader = EntraConnector(settings, sleep=FakeSleep(), now=lambda: moment)
            checkpoint = discover(reader, cursor)[-1].checkpoint
            assert checkpoint is not None
            return checkpoint

        first = run_at(start, None)
        soon = run_at(start + timedelta(days=6), dict(first.cursor))
        later = run_at(start + timedelta(days=7, seconds=1), dict(soon.cursor))
    assert (first.full, soon.full, later.full) == (True, False, True)
    assert soon.cursor["full_round_at"] == first.cursor["full_round_at"] == start.isoformat()
    assert later.cursor["full_round_at"] == (start + timedelta(days=7, seconds=1)).isoformat()
