"""Google discovery into the store: what a run could not see is not swept, a night replaces
only what changed, and unknown last use reaches the reports and the owners' emails."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session, select

import sandbox.google
from recert import campaigns, reports
from recert.analysis import analyze
from recert.clock import FixedClock
from recert.config import Settings, SmtpSettings, Tenant, WebSettings
from recert.db import session_scope
from recert.discovery import SyncSummary, discover_tenant
from recert.inventory import inventory
from recert.models import Grant, Principal
from recert.models import Tenant as TenantRow
from recert.notify import notify
from sandbox.google import GoogleEmulator
from tests.conftest import SmtpCapture
from tests.google.conftest import Tenant as Served

Serve = Callable[[GoogleEmulator], Served]


@pytest.fixture
def google(serve: Serve) -> Callable[..., Served]:
    def make(**options: Any) -> Served:
        return serve(sandbox.google.build(seed=21, size=24, users=40, dwd_share=0.3, **options))

    return make


def config(served: Served) -> Tenant:
    return Tenant(name=served.settings.name, kind="google", read=served.settings)


def discover(engine: Engine, served: Served, **overrides: Any) -> SyncSummary:
    summary = discover_tenant(
        engine,
        config(served),
        FixedClock(served.emulator.now),
        connector=served.connector(**overrides),
    )
    assert summary.status == "complete", summary.error
    return summary


def rows(engine: Engine) -> dict[str, Principal]:
    with Session(engine) as session:
        return {p.external_id: p for p in session.exec(select(Principal))}


def grants(engine: Engine) -> set[tuple[str, str | None]]:
    with Session(engine) as session:
        ids = {p.id: p.external_id for p in session.exec(select(Principal))}
        return {(ids[g.principal_id], g.consenting_user) for g in session.exec(select(Grant))}


def test_delegation_clients_stay_until_a_removal_event(
    engine: Engine, google: Callable[..., Served]
) -> None:
    served = google()
    discover(engine, served)
    with Session(engine) as session:
        entries = inventory(session)
    delegated = {
        e["external_id"]: e
        for e in entries
        if any(g["consent"] == "domain_wide" for g in e["grants"])
    }
    assert all(e["seen_since"] for e in delegated.values())
    clients = {cid for cid, e in delegated.items() if e["kind"] == "oauth_app"}
    assert clients
    with session_scope(engine) as session:  # the carried-forward set is lost
        row = session.exec(select(TenantRow)).one()
        row.cursor = {}
    served.emulator.advance(timedelta(days=200))  # ... and the audit log forgot them
    discover(engine, served)
    stored = rows(engine)
    assert all(stored[cid].status == "active" for cid in clients)
    assert grants(engine) >= {(cid, None) for cid in clients}
    client_id = sorted(clients)[0]
    served.emulator.advance(timedelta(hours=6))
    served.emulator.remove_delegation(client_id, served.emulator.now - timedelta(hours=2))
    discover(engine, served)
    assert rows(engine)[client_id].status == "deleted"


def test_grants_of_users_who_could_not_be_read_are_kept(
    engine: Engine, google: Callable[..., Served]
) -> None:
    served = google()
    holders: dict[str, list[str]] = {}
    for user in served.emulator.seed.users:
        for cid in user.tokens:
            holders.setdefault(cid, []).append(user.id)
    cid, (only,) = next((c, h) for c, h in holders.items() if len(h) == 1)
    discover(engine, served)
    served.emulator.break_tokens(only, 403)
    served.emulator.advance(timedelta(days=8))  # a full pass
    summary = discover(engine, served)
    assert summary.full
    assert rows(engine)[cid].status == "active"
    assert (cid, only) in grants(engine)


def test_a_night_replaces_only_the_grants_of_users_who_changed(
    engine: Engine, google: Callable[..., Served]
) -> None:
    served = google()
    emulator = served.emulator
    users = emulator.seed.users
    discover(engine, served)
    shared = next(
        c for c in {c for u in users for c in u.tokens} if sum(c in u.tokens for u in users) > 1
    )
    leaver = next(u for u in users if shared in u.tokens)
    stayers = {u.id for u in users if shared in u.tokens} - {leaver.id}
    newcomer = next(u for u in users if shared not in u.tokens)
    emulator.advance(timedelta(days=1))
    emulator.revoke(leaver.id, shared, emulator.now - timedelta(hours=3))
    emulator.consent(newcomer.id, leaver.tokens[shared], emulator.now - timedelta(hours=2))
    summary = discover(engine, served)
    assert not summary.full
    held = {user for app, user in grants(engine) if app == shared}
    assert held == stayers | {newcomer.id}


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)  # nothing here is SQL-specific
def test_unknown_last_use_reaches_reports_and_the_owners_email(
    engine: Engine,
    google: Callable[..., Served],
    tmp_path: Path,
    smtp_server: SmtpCapture,
) -> None:
    served = google(edition="business")
    settings = Settings(
        path=tmp_path / "recert.toml",
        tenants=(config(served),),
        iam_email="iam@acme.test",
        smtp=SmtpSettings(host=smtp_server.host, port=smtp_server.port),
        web=WebSettings(base_url="https://recert.acme.test", secret_key=SecretStr("k" * 32)),
    )
    clock = FixedClock(served.emulator.now)
    discover(engine, served)
    analyze(engine, settings, clock)
    with Session(engine) as session:
        stale = reports.stale(session, settings, clock.now())
        risky = reports.risky(session, settings, clock.now())
    apps = {r["external_id"]: r for r in stale if r["kind"] == "third_party_app"}
    assert apps
    assert all("does not log app use" in r["last_use_unknown"] for r in apps.values())
    assert all(r["days_unused"] is None for r in apps.values())
    assert any(r["last_use_unknown"] for r in risky if r["kind"] == "third_party_app")
    assert not any("no use in" in reason for r in risky for reason in r["reasons"])
    with session_scope(engine) as session:
        campaigns.open_campaign(session, settings, clock, name="Review")
    notify(engine, settings, clock)
    texts = [m.message.get_body(("plain",)).get_content() for m in smtp_server.messages]
    assert any("Unknown: this Workspace edition does not log app use" in t for t in texts)
