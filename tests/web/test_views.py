"""The console's queries on SQLite and PostgreSQL alike: search, filters, sorting, paging."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, select

from recert.models import Principal
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
