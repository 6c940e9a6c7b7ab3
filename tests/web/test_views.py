"""The console's queries on SQLite and PostgreSQL alike: search, filters, sorting, paging."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from recert.db import session_scope
from recert.models import EnforcementAction, Principal
from recert.web import views
from tests.web.conftest import GMAIL, NO_APP_LOG, OPENED, UNLISTED_SCOPE, WITH_GOOGLE, make_site


def test_inventory_and_queue_queries(engine: Engine, tmp_path: Path) -> None:
    site = make_site(engine, tmp_path, "http://testserver")
    with Session(engine) as session:

        def names(**wanted: object) -> list[str]:
            found = views.inventory(session, views.InventoryFilter(**wanted))  # type: ignore[arg-type]
            return [row.name[:12] for row in found.rows]

        assert len(names()) == 6
        assert names(q="PAYROLL") == ["Payroll Sync"]
        assert len(names(q="ann@acme")) == 4, "found by their owner's email"
        assert names(q="100%") == [], "% matches only itself"
        assert names(owner="orphan") == ["Ghost App"]
        assert names(sort="risk")[0] == "Payroll Sync"
        assert names(sort="last_used", descending=True)[0] == "Payroll Sync"
        page = views.inventory(session, views.InventoryFilter(size=4, page=2))
        assert (page.total, page.pages, page.first, page.last, len(page.rows)) == (6, 2, 5, 6, 2)
        beyond = views.inventory(session, views.InventoryFilter(size=4, page=99))
        assert beyond.page == 2, "a page past the end shows the last one"

        queue = views.iam_queue(session, site.settings)
        assert [(row.name, row.reason) for row in queue.rows] == [
            ("Ghost App", "No owner recorded")
        ]
        assert views.iam_queue(session, site.settings, q="nothing like it").total == 0
        overview = views.overview(session, site.settings, OPENED + timedelta(days=1))
        assert [label for label, _ in overview.completion] == ["01 Dec", "02 Dec"]
        assert overview.figures["queue"] == 1


def _action(session: Session, external_id: str, action: str, status: str, **extra: Any) -> int:
    """A row as recert.enforcement writes it (acting.py, undoing.py)."""
    principal = session.exec(select(Principal).where(Principal.external_id == external_id)).one()
    at = extra.pop("at", OPENED + timedelta(days=15))
    row = EnforcementAction(
        idempotency_key=f"{external_id}:{action}:{status}:{extra.get('reverses_id')}",
        tenant="entra-test",
        principal_id=principal.id or 0,
        external_id=external_id,
        display_name=principal.display_name,
        kind=principal.kind,
        action=action,
        status=status,
        reason=extra.pop("reason", "not reviewed by the due date"),
        created_at=at,
        performed_at=at,
        **extra,
    )
    session.add(row)
    if action == "disable" and status == "done":
        principal.status = "disabled"
    if action == "enable" and status == "done":
        principal.status = "active"
    session.add(principal)
    session.flush()
    return row.id or 0


def _candidates(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return [row.external_id for row in views.disabled_by_recert(session)]


def _page(engine: Engine, external_id: str) -> views.PrincipalPage:
    with Session(engine) as session:
        principal_id = session.exec(
            select(Principal.id).where(Principal.external_id == external_id)
        ).one()
        page = views.principal_page(session, principal_id or 0, OPENED + timedelta(days=20))
    assert page is not None
    return page


def test_disabled_by_recert_follows_what_enforcement_wrote(engine: Engine, tmp_path: Path) -> None:
    make_site(engine, tmp_path, "http://testserver")
    later = OPENED + timedelta(days=16)
    with session_scope(engine) as session:
        payroll = _action(session, "payroll", "disable", "done")
        _action(session, "payroll", "enable", "done", reverses_id=payroll, at=later)
        builder = _action(session, "builder", "disable", "done")
        _action(
            session,
            "builder",
            "enable",
            "failed",
            reverses_id=builder,
            performed_by="admin@acme.test",
            error="403 Authorization_RequestDenied",
            at=later,
        )
        _action(session, "ghost", "disable", "done")
        _action(session, "ghost", "refuse", "refused", rule="not_active", at=later)
        _action(session, "hostile", "disable", "failed", error="500 Internal")
    assert _candidates(engine) == ["builder", "ghost"], (
        "re-enabled: no longer listed; a failed re-enable or a later refusal: still disabled"
    )
    assert not _page(engine, "payroll").disabled_by_recert
    assert _page(engine, "builder").disabled_by_recert
    assert _page(engine, "ghost").disabled_by_recert
    assert not _page(engine, "hostile").disabled_by_recert

    with Session(engine) as session:
        history = {
            (row.external_id, row.action_words, row.status_words)
            for row in views.enforcement_history(session)
        }
    assert history == {
        ("payroll", "Disable", "done"),
        ("payroll", "Re-enable", "done"),
        ("builder", "Disable", "done"),
        ("builder", "Re-enable", "failed"),
        ("ghost", "Disable", "done"),
        ("ghost", "Refused by a safety rule", "refused"),
        ("hostile", "Disable", "failed"),
    }
    entries = {entry.what: entry for entry in _page(engine, "builder").history}
    failed = entries["Enforcement: Re-enable (failed)"]
    assert (failed.who, failed.at) == ("admin@acme.test", later)
    assert failed.detail.endswith("failed: 403 Authorization_RequestDenied")


def test_principal_page_words_last_use_and_scopes_as_the_email_does(
    engine: Engine, tmp_path: Path
) -> None:
    make_site(engine, tmp_path, "http://testserver", WITH_GOOGLE)
    with Session(engine) as session:
        mailer = views.principal_page(session, _principal_id(session, "mailer"), OPENED)
        payroll = views.principal_page(session, _principal_id(session, "payroll"), OPENED)
    assert mailer is not None
    assert payroll is not None
    assert mailer.last_used == f"Unknown: {NO_APP_LOG}"
    assert payroll.last_used == "Tue 1 Dec 2026 09:00 UTC (today)"
    descriptions = {p.name: p.description for p in mailer.permissions}
    assert descriptions == {
        GMAIL: "Read, compose, send, and permanently delete all your email from Gmail",
        UNLISTED_SCOPE: None,
    }


def _principal_id(session: Session, external_id: str) -> int:
    query = select(Principal.id).where(Principal.external_id == external_id)
    return int(session.exec(query).one() or 0)
