"""Enforcement runs: the modes, the blocked tenant, and acting on an emulated Okta org
through the real SDK: already done, transient and permanent failures, an attempt that
died mid-way, re-runs that change nothing, and re-enable restoring the exact state."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from recert import campaigns, enforcement, reports
from recert.clock import FixedClock
from recert.config import Settings
from recert.db import session_scope
from recert.models import AuditEvent, EnforcementAction, OutboxEmail, Principal, ReviewItem
from sandbox import okta
from sandbox.okta.app import OktaEmulator
from sandbox.server import serving
from sandbox.tenants import UNHURRIED_OKTA_LIMITS
from sandbox.tls import SandboxCA
from tests.conftest import SmtpCapture
from tests.enforcement_world import IAM, NOW, World, write_config

OPEN_CAPS = {"max_disable_per_run": 100, "max_disable_fraction": 1.0}


async def no_wait(_seconds: float) -> None:
    return None


def count(engine: Engine, model: Any) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def smtp(server: SmtpCapture) -> dict[str, Any]:
    return {"host": server.host, "port": server.port, "from_address": "recert@acme.test"}


def run(world: World, at: Any = NOW) -> enforcement.EnforceSummary:
    [summary] = enforcement.enforce(
        world.engine, world.settings, FixedClock(at), [world.tenant], sleep=no_wait
    )
    return summary


@pytest.mark.parametrize("mode", ["off", "dry-run"])
def test_off_and_dry_run_act_on_nothing(engine: Engine, tmp_path: Path, mode: str) -> None:
    settings = write_config(tmp_path, {"enforcement": mode}, enforcement=OPEN_CAPS)
    world = World(engine, settings)
    world.item(world.app("0oaOverdue"))
    first, again = run(world), run(world)
    assert (first.status, first.planned, again.status) == (mode, 1, mode)
    assert count(engine, EnforcementAction) == 0
    with Session(engine) as session:
        planned = session.exec(
            select(AuditEvent).where(AuditEvent.action == "enforcement.planned")
        ).all()
    assert len(planned) == (1 if mode == "dry-run" else 0), "a re-run records no new plan"
    if planned:
        assert planned[0].data["plan"]["actions"][0]["external_id"] == "0oaOverdue"
        world.item(world.app("0oaSecond"))
        run(world)
        assert count(engine, AuditEvent) == 2, "a changed plan is recorded again"


def test_thirty_overdue_with_a_cap_of_25_disable_nothing_and_mail_iam_once(
    engine: Engine, tmp_path: Path, smtp_server: SmtpCapture
) -> None:
    """The org URL answers nothing: any attempt to act would fail, not block."""
    caps = {"max_disable_per_run": 25, "max_disable_fraction": 1.0}
    settings = write_config(tmp_path, enforcement=caps, smtp=smtp(smtp_server))
    world = World(engine, settings)
    for index in range(30):
        world.item(world.app(f"0oa{index:03d}"))
    first, again = run(world), run(world, NOW + timedelta(hours=1))
    assert (first.status, again.status) == ("blocked", "blocked")
    assert "30 apps would be disabled, more than max_disable_per_run (25)" in str(first.blocked)
    assert count(engine, EnforcementAction) == 0
    [alert] = smtp_server.to(IAM)
    assert len(smtp_server.messages) == 1
    assert alert.message["Subject"] == "Enforcement needs the IAM team: 30 apps"
    body = alert.message.get_body(("plain",)).get_content()
    assert "30 apps would be disabled" in body
    with Session(engine) as session:
        statuses = set(session.exec(select(ReviewItem.status)).all())
    assert statuses == {"pending"}


@dataclass
class Org:
    emulator: OktaEmulator
    table: dict[str, Any]
    folder: Path


@pytest.fixture
def org(sandbox_ca: SandboxCA, tmp_path: Path) -> Iterator[Org]:
    emulator = okta.build(7, 30, limits=UNHURRIED_OKTA_LIMITS)
    with serving(emulator, sandbox_ca) as server:
        table = emulator.tenant_table("okta-test", server.url, sandbox_ca.ca_bundle, tmp_path)
        yield Org(emulator, table, tmp_path)


def okta_world(
    engine: Engine, org: Org, smtp_server: SmtpCapture, **changes: Any
) -> tuple[World, Settings]:
    table = {**org.table, "enforcement": "enforce", **changes}
    settings = write_config(org.folder, table, enforcement=OPEN_CAPS, smtp=smtp(smtp_server))
    return World(engine, settings), settings


def reviewable(emulator: OktaEmulator) -> list[str]:
    """Active OAuth apps under review, those with an admin-granted scope first."""
    truth = emulator.truth
    apps = [
        app_id
        for app_id in truth.oauth_apps
        if app_id not in truth.builtins and emulator.org.apps[app_id]["status"] == "ACTIVE"
    ]
    return sorted(apps, key=lambda app_id: (not admin_grants(emulator, app_id), app_id))


def admin_grants(emulator: OktaEmulator, app_id: str) -> dict[str, Any]:
    grants = emulator.org.grants.get(app_id, {})
    return {gid: grant for gid, grant in grants.items() if grant.get("source") == "ADMIN"}


def comparable(app: dict[str, Any]) -> dict[str, Any]:
    """An app's JSON less what Okta maintains itself (lastUpdated) and the links the
    emulator points at the URL it serves on."""
    return {k: v for k, v in app.items() if k not in ("lastUpdated", "_links")}


def lifecycle_calls(emulator: OktaEmulator, app_id: str) -> int:
    return sum(1 for r in emulator.requests if r.path.endswith(f"/{app_id}/lifecycle/deactivate"))


def test_enforce_on_okta_then_rerun_then_reenable_exactly(
    engine: Engine, org: Org, smtp_server: SmtpCapture
) -> None:
    world, settings = okta_world(engine, org, smtp_server)
    emulator = org.emulator
    reduced, overdue, revoked, already = reviewable(emulator)[:4]
    grant_id, grant = next(iter(admin_grants(emulator, reduced).items()))
    emulator.org.apps[already]["status"] = "INACTIVE"  # someone was quicker
    before = {a: copy.deepcopy(emulator.org.apps[a]) for a in (overdue, revoked, already)}
    world.item(world.app(overdue))
    world.decide(world.item(world.app(revoked)), "revoke")
    reduced_item = world.item(world.app(reduced, grants={grant["scopeId"]: grant_id}))
    world.decide(reduced_item, "reduce", dropped=(grant["scopeId"],))
    world.item(world.app(already))

    summary = run(world)
    assert (summary.status, summary.done, summary.failed) == ("enforced", 4, 0)
    for app_id in (overdue, revoked, already):
        assert emulator.org.apps[app_id]["status"] == "INACTIVE"
    assert grant_id not in emulator.org.grants[reduced]
    assert lifecycle_calls(emulator, already) == 0, "already inactive counts as done"
    [notice] = smtp_server.to("ann@acme.test")
    assert notice.message["Cc"] == IAM
    assert "Disabled: 2 apps" in notice.message["Subject"]  # the overdue ones, not the revoke
    with Session(engine) as session:
        assert set(session.exec(select(ReviewItem.status)).all()) == {"enforced"}
        events = session.exec(select(AuditEvent.action)).all()
    assert sorted(e for e in events if e.startswith("enforcement.")) == [
        "enforcement.disable",
        "enforcement.disable",
        "enforcement.disable",
        "enforcement.remove_grant",
    ]

    with session_scope(engine) as session:
        [closed] = campaigns.status(session, world.campaign_id)
        assert (closed["closed"], closed["items"], closed["enforced"]) == (True, 4, 4)
        assert closed["decided"] == 2, "revoked and reduced were decided; silence was not"
        item = session.get(ReviewItem, reduced_item.id)
        assert item is not None
        item.status = "pending"  # whatever happens later, the closing figures stay
        session.add(item)
    with session_scope(engine) as session:
        assert campaigns.status(session, world.campaign_id) == [closed]
        session.add(item)
        item.status = "enforced"

    rows, audit_events, mails = (
        count(engine, EnforcementAction),
        len(events),
        len(smtp_server.messages),
    )
    writes = sum(1 for r in emulator.requests if r.method != "GET")
    again = run(world, NOW + timedelta(hours=3))
    assert (again.planned, again.done, again.notices) == (0, 0, 0)
    assert count(engine, EnforcementAction) == rows
    assert count(engine, AuditEvent) == audit_events
    assert len(smtp_server.messages) == mails
    assert sum(1 for r in emulator.requests if r.method != "GET") == writes

    later = FixedClock(NOW + timedelta(days=1))
    for app_id in (overdue, revoked, already):
        result = enforcement.reenable(
            engine,
            settings,
            later,
            "okta-test",
            app_id,
            "needed by payroll",
            "iam-ann",
            sleep=no_wait,
        )
        assert result.ok, result.as_dict()
        assert comparable(emulator.org.apps[app_id]) == comparable(before[app_id])
    result = enforcement.reenable(
        engine, settings, later, "okta-test", reduced, "scope needed", "iam-ann", sleep=no_wait
    )
    assert result.restored == [f"restore_grant {grant['scopeId']}"]
    scopes = {g["scopeId"] for g in emulator.org.grants[reduced].values()}
    assert grant["scopeId"] in scopes
    again = enforcement.reenable(
        engine, settings, later, "okta-test", overdue, "twice", "iam-ann", sleep=no_wait
    )
    assert again.already
    with Session(engine) as session:
        undo = session.exec(
            select(EnforcementAction).where(EnforcementAction.action == "enable")
        ).all()
    assert {(u.performed_by, u.reason, u.status) for u in undo} == {
        ("iam-ann", "needed by payroll", "done")
    }
    assert all(u.reverses_id for u in undo)


def test_a_transient_failure_is_retried_on_the_next_run(
    engine: Engine, org: Org, smtp_server: SmtpCapture
) -> None:
    world, _ = okta_world(engine, org, smtp_server)
    [app_id] = reviewable(org.emulator)[:1]
    world.item(world.app(app_id))
    org.emulator.faults.only_paths = "/lifecycle/"
    org.emulator.faults.fail_next = 100
    first = run(world)
    assert (first.retrying, first.done) == (1, 0)
    assert org.emulator.org.apps[app_id]["status"] == "ACTIVE"
    with Session(engine) as session:
        listed = reports.enforcement(session, world.settings, NOW)
    assert [r["status"] for r in listed] == ["retrying"]
    org.emulator.faults.fail_next = 0
    assert run(world).done == 0, "not before its backoff"
    second = run(world, NOW + timedelta(hours=2))
    assert (second.retrying, second.done) == (0, 1)
    assert org.emulator.org.apps[app_id]["status"] == "INACTIVE"


def test_a_permanent_failure_is_recorded_mailed_and_reported_never_dropped(
    engine: Engine, org: Org, smtp_server: SmtpCapture
) -> None:
    (org.folder / "okta-readonly-token").write_text(org.emulator.readonly_token)
    read_only = {"api_token_file": "okta-readonly-token"}  # a Read-Only Administrator's
    world, settings = okta_world(engine, org, smtp_server, enforce=read_only)
    [app_id] = reviewable(org.emulator)[:1]
    world.item(world.app(app_id))
    first = run(world)
    assert (first.failed, first.alerts) == (1, 1)
    [alert] = smtp_server.to(IAM)
    assert "Could not disable" in alert.message.get_body(("plain",)).get_content()
    with Session(engine) as session:
        [row] = session.exec(select(EnforcementAction)).all()
        listed = reports.enforcement(session, settings, NOW)
    assert (row.status, row.attempts) == ("failed", 1)
    assert "permission" in (row.error or "").lower()
    assert [(r["external_id"], r["status"]) for r in listed] == [(app_id, "failed")]
    again = run(world, NOW + timedelta(days=1))
    assert (again.failed, again.alerts, len(smtp_server.messages)) == (0, 0, 1)
    with Session(engine) as session:
        plan = enforcement.plan(session, settings, FixedClock(NOW), ["okta-test"])[0]
    assert [f["external_id"] for f in plan.failed] == [app_id], "still listed, never dropped"


def test_an_attempt_that_died_mid_way_is_finished_and_restores_exactly(
    engine: Engine, org: Org, smtp_server: SmtpCapture
) -> None:
    """The process died after Okta deactivated the app but before the outcome was
    stored: the next run finishes it, and re-enable still brings the app back."""
    world, settings = okta_world(engine, org, smtp_server)
    [app_id] = reviewable(org.emulator)[:1]
    item = world.item(world.app(app_id))
    with Session(engine) as session:
        [action] = enforcement.plan(session, settings, FixedClock(NOW), ["okta-test"])[0].actions
    org.emulator.org.apps[app_id]["status"] = "INACTIVE"
    with session_scope(engine) as session:
        session.add(
            EnforcementAction(
                idempotency_key=action.key,
                tenant="okta-test",
                principal_id=item.principal_id,
                external_id=app_id,
                display_name=action.display_name,
                kind="oauth_app",
                campaign_id=world.campaign_id,
                review_item_id=item.id,
                action="disable",
                status="in_progress",
                reason=action.reason,
                before=action.before("active"),
                attempts=1,
                created_at=NOW,
            )
        )
    summary = run(world)
    assert summary.done == 1
    with Session(engine) as session:
        [row] = session.exec(select(EnforcementAction)).all()
        assert (row.status, row.attempts, row.snapshot) == ("done", 2, {})
        principal = session.get(Principal, item.principal_id)
        assert principal is not None
        assert principal.status == "disabled"
    result = enforcement.reenable(
        engine, settings, FixedClock(NOW), "okta-test", app_id, "back", "iam", sleep=no_wait
    )
    assert result.ok
    assert org.emulator.org.apps[app_id]["status"] == "ACTIVE"


def test_reenable_refuses_an_app_recert_never_changed(
    engine: Engine, org: Org, smtp_server: SmtpCapture
) -> None:
    _, settings = okta_world(engine, org, smtp_server)
    with pytest.raises(enforcement.ReenableRefused, match="okta-test/0oaNope: Recert has not"):
        enforcement.reenable(engine, settings, FixedClock(NOW), "okta-test", "0oaNope", "x", "me")
    with pytest.raises(enforcement.ReenableRefused, match="say why"):
        enforcement.reenable(engine, settings, FixedClock(NOW), "okta-test", "0oaNope", " ", "me")
    assert count(engine, OutboxEmail) == 0
