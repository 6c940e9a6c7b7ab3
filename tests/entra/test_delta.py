"""Nightly re-runs: delta links, the audit log for what delta cannot see, replication lag,
expired tokens and the 150-per-minute limit on reading keyCredentials."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import Checkpoint, OwnerSource, Page
from sandbox.entra import EntraEmulator, build
from sandbox.tls import SandboxCA
from tests.entra.conftest import TEST_CLOCK, FakeSleep, connector, discover, served, settings_for


def tenant_app_with_sp(app: EntraEmulator, skip: int = 0) -> tuple[str, str]:
    """(service principal id, application object id) of a registration in this tenant."""
    by_app_id = {a["appId"]: a["id"] for a in app.tenant.applications.values()}
    found = [
        (sp["id"], by_app_id[sp["appId"]])
        for sp in app.tenant.service_principals.values()
        if sp["appId"] in by_app_id
    ]
    return found[skip]


def run(app: EntraEmulator, url: str, ca: SandboxCA, cursor: Any = None) -> list[Page]:
    return discover(connector(settings_for(app, url, ca)), dict(cursor) if cursor else None)


def cursor_of(pages: list[Page]) -> dict[str, Any]:
    checkpoint = pages[-1].checkpoint
    assert checkpoint is not None
    return dict(checkpoint.cursor)


def by_principal(pages: list[Page], name: str) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for page in pages:
        for record in getattr(page, name):
            found.setdefault(record.principal_id, []).append(record)
    return found


def test_delta_round_reports_changes_and_removals(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    with served(small_tenant, sandbox_ca) as url:
        first = run(small_tenant, url, sandbox_ca)
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
        second = run(small_tenant, url, sandbox_ca, cursor_of(first))
        third = run(small_tenant, url, sandbox_ca, cursor_of(second))
    checkpoint = second[-1].checkpoint
    assert checkpoint is not None
    assert not checkpoint.full
    assert checkpoint.cursor != cursor_of(first)
    # a delta item carries only what changed: the principal is read again, whole
    principals = {p.external_id: p for page in second for p in page.principals}
    assert set(principals) == {renamed}
    assert principals[renamed].display_name == "Renamed app"
    assert principals[renamed].app_id == small_tenant.tenant.service_principals[renamed]["appId"]
    assert doomed in {r for page in second for r in page.removed}
    credentials = {c.credential_id for page in second for c in page.credentials}
    expected = {key for _, key in small_tenant.tenant.truth.credentials[renamed]}
    assert credentials == expected | {secret["keyId"]}
    grants = {g.grant_id for page in second for g in page.grants}
    assert all(g.principal_id == renamed for page in second for g in page.grants)
    assert len(grants) == sum(1 for page in first for g in page.grants if g.principal_id == renamed)
    assert not any(page.principals for page in third)
    assert third[-1].checkpoint is not None
    assert not third[-1].checkpoint.full


def test_relationship_changes_show_up_the_next_night(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    """Owners, consents and app role assignments of otherwise unchanged principals: delta
    does not see them, the directory audit log does."""
    tenant = small_tenant.tenant
    graph = next(
        i for i, sp in tenant.service_principals.items() if sp["displayName"] == "Microsoft Graph"
    )
    roles = {r["value"]: r["id"] for r in tenant.service_principals[graph]["appRoles"]}
    owned, consented, assigned = (tenant_app_with_sp(small_tenant, n)[0] for n in (1, 2, 3))
    unassigned = next(iter(tenant.assignments.values()))
    person = next(u for u, user in tenant.users.items() if user["accountEnabled"])
    with served(small_tenant, sandbox_ca) as url:
        first = run(small_tenant, url, sandbox_ca)
        small_tenant.add_owner(owned, person)
        small_tenant.grant_consent(consented, graph, "Mail.Read Calendars.Read", None)
        small_tenant.assign_app_role(assigned, graph, roles["Mail.ReadWrite"])
        small_tenant.unassign_app_role(unassigned["id"])
        second = run(small_tenant, url, sandbox_ca, cursor_of(first))
    delivered = {p.external_id for page in second for p in page.principals}
    assert {owned, consented, assigned, unassigned["principalId"]} <= delivered
    assert len(delivered) < 10  # only those touched (and the resource they point at)
    hints = by_principal(second, "owner_hints")
    assert person in {h.person_id for h in hints[owned] if h.source is OwnerSource.IDP_OWNER}
    grants = by_principal(second, "grants")
    assert {"Mail.Read", "Calendars.Read"} <= {g.permission for g in grants[consented]}
    assert "Mail.ReadWrite" in {g.permission for g in grants[assigned]}
    held = {g.grant_id.partition("@")[0] for g in grants.get(unassigned["principalId"], [])}
    assert unassigned["id"] not in held


def test_a_quiet_night_reads_almost_nothing(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    meter = small_tenant.quota.meter
    with served(small_tenant, sandbox_ca) as url:
        first = run(small_tenant, url, sandbox_ca)
        full = meter.resource_units + meter.report_requests
        run(small_tenant, url, sandbox_ca, cursor_of(first))
        quiet = meter.resource_units + meter.report_requests - full
    assert quiet <= 8  # three delta links, the audit log, the sign-in report


def test_a_user_who_leaves_is_seen_the_next_night(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    leaver = next(u for u, user in small_tenant.tenant.users.items() if user["accountEnabled"])
    with served(small_tenant, sandbox_ca) as url:
        first = run(small_tenant, url, sandbox_ca)
        small_tenant.update_user(leaver, accountEnabled=False)
        second = run(small_tenant, url, sandbox_ca, cursor_of(first))
    people = {p.external_id: p for page in second for p in page.people}
    assert set(people) == {leaver}
    assert not people[leaver].active
    assert people[leaver].email  # read again whole, not just the changed property


def test_replication_lag_is_waited_out_or_carried_over(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    """A changed object may 404 for a while: read again, never taken for removed."""
    quick, slow = (tenant_app_with_sp(small_tenant, n)[0] for n in (4, 5))
    with served(small_tenant, sandbox_ca) as url:
        first = run(small_tenant, url, sandbox_ca)
        small_tenant.switches.replication_lag_reads = 2
        small_tenant.update_service_principal(quick, displayName="Quick change")
        small_tenant.switches.replication_lag_reads = 5
        small_tenant.update_service_principal(slow, displayName="Slow change")
        sleep = FakeSleep()
        second = discover(
            connector(settings_for(small_tenant, url, sandbox_ca), sleep), cursor_of(first)
        )
        third = run(small_tenant, url, sandbox_ca, cursor_of(second))
    delivered = {p.external_id: p.display_name for page in second for p in page.principals}
    assert delivered == {quick: "Quick change"}
    assert not {r for page in second for r in page.removed} & {quick, slow}
    waits = iter(sleep.waits)
    assert all(wait in waits for wait in (1.0, 2.0, 4.0))  # read again 1, 2 and 4 s later
    assert cursor_of(second)["pending"] == {"service_principals": [slow], "applications": []}
    assert {p.external_id: p.display_name for page in third for p in page.principals} == {
        slow: "Slow change"
    }
    assert "pending" not in cursor_of(third)


@pytest.mark.parametrize("status", [400, 410])
def test_expired_delta_link_falls_back_to_a_full_round(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA, status: int
) -> None:
    small_tenant.switches.expired_delta_status = status
    with served(small_tenant, sandbox_ca) as url:
        first = run(small_tenant, url, sandbox_ca)
        small_tenant.expire_delta_tokens()
        again = run(small_tenant, url, sandbox_ca, cursor_of(first))
    assert again[-1].checkpoint is not None
    assert again[-1].checkpoint.full
    assert {p.external_id for page in again for p in page.principals} == set(
        small_tenant.tenant.truth.kinds
    )


def test_credential_reads_stay_inside_their_budget(sandbox_ca: SandboxCA) -> None:
    """Reading applications with keyCredentials selected: 150 a minute per tenant. A night
    with many changed apps is paced to that, and the apps are re-read without it."""
    app = build(seed=9, size=300, delta_page_size=1, clock=TEST_CLOCK)
    changed = list(app.tenant.applications.values())[:180]
    sp_of = {sp["appId"]: sp["id"] for sp in app.tenant.service_principals.values()}
    with served(app, sandbox_ca) as url:
        first = run(app, url, sandbox_ca)
        for registration in changed:
            app.update_application(
                registration["id"], displayName=f"{registration['displayName']} v2"
            )
        started = TEST_CLOCK()
        second = run(app, url, sandbox_ca, cursor_of(first))
    assert app.quota.meter.key_credential_reads > 180
    assert app.quota.meter.throttled == 0
    assert TEST_CLOCK() - started >= 60  # paced: over 150 such reads took over a minute
    delivered = {p.external_id for page in second for p in page.principals}
    assert delivered == {sp_of.get(a["appId"], a["id"]) for a in changed}
    rereads = [
        r
        for r in app.requests
        if r.path.startswith("/v1.0/applications/") and "delta" not in r.path
    ]
    assert len(rereads) >= 180
    assert all("keyCredentials" not in (r.arg("$select") or "") for r in rereads)


def test_a_full_round_comes_back_after_full_sync_days(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    """Delta rounds follow the audit log; a full round now and then is the backstop."""
    start = datetime(2026, 12, 1, tzinfo=UTC)
    with served(small_tenant, sandbox_ca) as url:
        settings = settings_for(small_tenant, url, sandbox_ca)

        def run_at(moment: datetime, cursor: dict[str, Any] | None) -> Checkpoint:
            reader = connector(settings, now=lambda: moment)
            checkpoint = discover(reader, cursor)[-1].checkpoint
            assert checkpoint is not None
            return checkpoint

        first = run_at(start, None)
        soon = run_at(start + timedelta(days=6), dict(first.cursor))
        later = run_at(start + timedelta(days=7, seconds=1), dict(soon.cursor))
    assert (first.full, soon.full, later.full) == (True, False, True)
    assert soon.cursor["full_round_at"] == first.cursor["full_round_at"] == start.isoformat()
    assert later.cursor["full_round_at"] == (start + timedelta(days=7, seconds=1)).isoformat()
