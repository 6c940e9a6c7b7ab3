"""Discovery and the store: bulk loads, idempotent re-runs, and mark-and-sweep only
after a complete run. The connector here is a scripted implementation of the connector
interface; the SDK-backed connectors are exercised against the emulators elsewhere."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, event, func
from sqlmodel import Session, select

from connectors import base
from connectors.settings import OktaSettings
from recert.clock import FixedClock
from recert.config import Tenant
from recert.discovery import discover_tenant
from recert.models import AuditEvent, Credential, Grant, Person, Principal, SyncRun
from recert.models import Tenant as TenantRow

T0 = datetime(2026, 11, 1, 2, tzinfo=UTC)
TENANT = Tenant(
    name="okta-test",
    kind="okta",
    protected=("0oaPROTECTED",),
    read=OktaSettings(name="okta-test", org_url="https://acme.okta.test", api_token="x"),
)


class ScriptedConnector:
    """Yields the given pages; raises where a page is an exception (a run killed half-way)."""

    tenant = "okta-test"

    def __init__(self, pages: list[base.Page | Exception]) -> None:
        self.pages = pages
        self.cursors: list[Mapping[str, Any] | None] = []
        self.closed = False

    async def discover(self, cursor: Mapping[str, Any] | None = None) -> AsyncIterator[base.Page]:
        self.cursors.append(cursor)
        for page in self.pages:
            if isinstance(page, Exception):
                raise page
            yield page

    async def disable(self, ref: base.PrincipalRef) -> base.Snapshot:
        raise NotImplementedError

    async def enable(self, ref: base.PrincipalRef, snapshot: base.Snapshot) -> None:
        raise NotImplementedError

    async def revoke_grant(self, grant: base.GrantRef) -> base.Snapshot:
        raise NotImplementedError

    async def restore_grant(self, grant: base.GrantRef, snapshot: base.Snapshot) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        self.closed = True


def app(i: int, **kw: Any) -> base.Principal:
    return base.Principal(
        external_id=f"0oa{i:05d}",
        kind=base.PrincipalKind.OAUTH_APP,
        display_name=kw.pop("name", f"App {i}"),
        app_id=f"client{i:05d}",
        created_at=T0 - timedelta(days=400),
        raw={"signOnMode": "OPENID_CONNECT", "i": i},
        **kw,
    )


def page_for(ids: range, checkpoint: base.Checkpoint | None = None, **extra: Any) -> base.Page:
    return base.Page(
        principals=[app(i) for i in ids],
        credentials=[
            base.Credential(
                f"0oa{i:05d}", f"secret-{i}", "secret", expires_at=T0 + timedelta(days=30)
            )
            for i in ids
        ],
        grants=[
            base.Grant(
                f"0oa{i:05d}", f"grant-{i}", "okta.apps.read", "Okta org", base.Consent.APPLICATION
            )
            for i in ids
        ],
        checkpoint=checkpoint,
        **extra,
    )


def run(engine: Engine, pages: list[base.Page | Exception], at: datetime = T0) -> Any:
    connector = ScriptedConnector(pages)
    summary = discover_tenant(engine, TENANT, FixedClock(at), connector=connector)
    assert connector.closed
    return summary


def count(engine: Engine, model: Any, *where: Any) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(model).where(*where)).one())


def statuses(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        return dict(session.exec(select(Principal.external_id, Principal.status)).all())


FULL = base.Checkpoint(full=True)


def test_a_page_is_one_insert_statement_per_table(engine: Engine) -> None:
    inserts: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO PRINCIPAL"):
            inserts.append(statement)

    event.listen(engine, "before_cursor_execute", capture)
    try:
        summary = run(engine, [page_for(range(600), FULL)])
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert summary.status == "complete"
    assert summary.principals_seen == 600
    assert len(inserts) == 1
    assert count(engine, Principal) == 600
    assert count(engine, Credential) == 600


def test_rerunning_changes_nothing_and_keeps_first_seen(engine: Engine) -> None:
    first = run(engine, [page_for(range(10)), page_for(range(10, 20), FULL)])
    second = run(
        engine, [page_for(range(10)), page_for(range(10, 20), FULL)], T0 + timedelta(days=1)
    )
    assert (first.new, second.new, second.deleted) == (20, 0, 0)
    assert count(engine, Principal) == 20
    assert count(engine, Grant) == 20
    with Session(engine) as session:
        seen = session.exec(select(Principal).where(Principal.external_id == "0oa00003")).one()
    assert seen.first_seen_at == T0
    assert seen.last_seen_at == T0 + timedelta(days=1)
    assert seen.first_seen_at.tzinfo is not None, "times come back timezone-aware"


def test_a_complete_run_sweeps_what_it_did_not_see(engine: Engine) -> None:
    run(engine, [page_for(range(5), FULL)])
    summary = run(engine, [page_for(range(4), FULL)], T0 + timedelta(days=1))
    assert summary.deleted == 1
    assert statuses(engine)["0oa00004"] == "deleted"
    gone = select(Principal.id).where(Principal.external_id == "0oa00004").scalar_subquery()
    assert count(engine, Credential, Credential.principal_id == gone) == 0
    assert count(engine, AuditEvent, AuditEvent.action == "principal.deleted") == 1


def test_a_run_killed_half_way_marks_nothing_deleted(engine: Engine) -> None:
    run(engine, [page_for(range(10), FULL)])
    failure = base.TransientError("okta-test", "connection reset", retry_after=None)
    summary = run(engine, [page_for(range(3)), failure], T0 + timedelta(days=1))
    assert summary.status == "failed"
    assert "connection reset" in (summary.error or "")
    assert set(statuses(engine).values()) == {"active"}
    with Session(engine) as session:
        tenant = session.exec(select(TenantRow)).one()
        runs = session.exec(select(SyncRun.status).order_by(SyncRun.id)).all()
    assert tenant.last_complete_sync_at == T0, "freshness still points at the last good run"
    assert runs == ["complete", "failed"]
    assert count(engine, AuditEvent, AuditEvent.action == "discovery.failed") == 1


def test_a_stream_that_ends_without_a_checkpoint_is_incomplete(engine: Engine) -> None:
    run(engine, [page_for(range(5), FULL)])
    summary = run(engine, [page_for(range(2))], T0 + timedelta(days=1))
    assert summary.status == "failed"
    assert "without a checkpoint" in (summary.error or "")
    assert list(statuses(engine).values()).count("deleted") == 0


def test_a_delta_run_applies_removals_and_refreshes_only_what_it_delivered(engine: Engine) -> None:
    run(engine, [page_for(range(5), base.Checkpoint(full=True, cursor={"delta": "d1"}))])
    delta = base.Page(
        principals=[app(1, name="App 1 renamed")],
        grants=[],  # app 1 lost its grant
        removed=["0oa00002"],
        checkpoint=base.Checkpoint(full=False, cursor={"delta": "d2"}),
    )
    connector = ScriptedConnector([delta])
    summary = discover_tenant(
        engine, TENANT, FixedClock(T0 + timedelta(days=1)), connector=connector
    )
    assert connector.cursors == [{"delta": "d1"}], "the last complete checkpoint is handed back"
    assert (summary.status, summary.full) == ("complete", False)
    states = statuses(engine)
    assert states["0oa00002"] == "deleted"
    assert states["0oa00003"] == "active", "a delta run does not sweep what it did not mention"
    with Session(engine) as session:
        grants = dict(
            session.exec(
                select(Principal.external_id, func.count(Grant.id))
                .join(Grant, Grant.principal_id == Principal.id, isouter=True)
                .group_by(Principal.external_id)
            ).all()
        )
        cursor = session.exec(select(TenantRow.cursor)).one()
    assert grants["0oa00001"] == 0
    assert grants["0oa00003"] == 1
    assert cursor == {"delta": "d2"}


def test_malformed_records_are_counted_and_skipped(engine: Engine) -> None:
    page = page_for(range(3), FULL)
    page.skipped.append(base.Malformed("application", "0oaBROKEN", "missing label"))
    page.grants.append(
        base.Grant("0oaNEVER", "g", "okta.users.read", "Okta org", base.Consent.APPLICATION)
    )
    summary = run(engine, [page])
    assert summary.status == "complete"
    assert summary.skipped == 2
    assert count(engine, Principal) == 3


def test_protected_list_people_and_activity_are_loaded(engine: Engine) -> None:
    used = T0 - timedelta(days=3)
    page = base.Page(
        principals=[
            base.Principal("0oaPROTECTED", base.PrincipalKind.OAUTH_APP, "Break glass"),
            base.Principal("0oaUSED", base.PrincipalKind.OAUTH_APP, "<script>alert(1)</script>"),
        ],
        people=[
            base.Person("00u1", "Ann Owner", "ann@acme.test", active=True, manager_id="00u2"),
            base.Person("00u2", "Bo Manager", "bo@acme.test", active=True),
        ],
        activity=[
            base.Activity("0oaUSED", window_start=T0 - timedelta(days=90), last_used_at=used)
        ],
        checkpoint=FULL,
    )
    run(engine, [page])
    with Session(engine) as session:
        rows = {p.external_id: p for p in session.exec(select(Principal))}
        ann = session.exec(select(Person).where(Person.external_id == "00u1")).one()
    assert rows["0oaPROTECTED"].protected
    assert not rows["0oaUSED"].protected
    assert rows["0oaUSED"].display_name == "<script>alert(1)</script>"
    assert rows["0oaUSED"].last_used_at == used
    assert rows["0oaPROTECTED"].activity_window_start is None, "no activity row: use unknown"
    assert ann.manager_external_id == "00u2"
    # A person missing from the next complete listing is no longer active.
    run(engine, [base.Page(people=[page.people[1]], checkpoint=FULL)], T0 + timedelta(days=1))
    with Session(engine) as session:
        assert not session.exec(select(Person.active).where(Person.external_id == "00u1")).one()


def test_an_empty_tenant_completes(engine: Engine) -> None:
    summary = run(engine, [base.Page(checkpoint=FULL)])
    assert summary.status == "complete"
    assert summary.principals_seen == 0


def test_a_record_skipped_as_malformed_keeps_its_stored_row(engine: Engine) -> None:
    ann = base.Person("u-ann", "Ann", "ann@acme.test", active=True)
    run(engine, [page_for(range(3), FULL, people=[ann])])
    skipped = [
        base.Malformed("app", "0oa00002", "signOnMode is not a string"),
        base.Malformed("user", "u-ann", "status is not a string"),
    ]
    again = run(engine, [page_for(range(2), FULL, skipped=skipped)], at=T0 + timedelta(days=1))
    assert (again.status, again.skipped, again.deleted) == ("complete", 2, 0)
    assert statuses(engine)["0oa00002"] == "active", "skipped is not deleted"
    assert count(engine, Credential) == count(engine, Grant) == 3, "nor is what hangs off it"
    assert count(engine, Person, Person.active == True) == 1, "a malformed user has not left"  # noqa: E712
    assert count(engine, AuditEvent, AuditEvent.action == "principal.deleted") == 0
    run(engine, [page_for(range(2), FULL)], at=T0 + timedelta(days=2))
    assert statuses(engine)["0oa00002"] == "deleted", "gone once a run no longer mentions it"
    run(engine, [page_for(range(3), FULL)], at=T0 + timedelta(days=3))
    assert statuses(engine)["0oa00002"] == "active"
    with Session(engine) as session:
        back = session.exec(
            select(AuditEvent).where(AuditEvent.action == "principal.returned")
        ).all()
    assert [(e.subject_id, e.tenant) for e in back] == [("0oa00002", "okta-test")]


def test_nul_and_control_characters_are_stored_safely(engine: Engine) -> None:
    hostile = "Evil\x00App\x01\x1b[31m"
    page = base.Page(
        principals=[app(1, name=hostile), replace(app(2), external_id="0oa\x00two")],
        grants=[base.Grant("0oa\x00two", "g\x00", "scope\x00x", "Okta\x00", base.Consent.USER)],
        people=[base.Person("u-\x00", "Nul\x00Person", "n@acme.test", active=True)],
        skipped=[base.Malformed("app", "0oa\x00three", "bad\x00")],
        checkpoint=FULL,
    )
    page.principals[0] = replace(page.principals[0], raw={"k\x00": ["v\x00", {"n": "\x00"}]})
    summary = run(engine, [page])
    assert (summary.status, summary.error) == ("complete", None)
    with Session(engine) as session:
        stored = {p.external_id: p for p in session.exec(select(Principal))}
        grant = session.exec(select(Grant)).one()
        person = session.exec(select(Person)).one()
    assert stored["0oa00001"].display_name == "Evil\ufffdApp\x01\x1b[31m"
    assert stored["0oa00001"].raw == {"k\ufffd": ["v\ufffd", {"n": "\ufffd"}]}
    assert "0oa\ufffdtwo" in stored
    assert (grant.permission, grant.resource) == ("scope\ufffdx", "Okta\ufffd")
    assert person.display_name == "Nul\ufffdPerson"


def test_a_failed_run_stores_a_short_error_without_sql_or_other_apps(engine: Engine) -> None:
    page = page_for(range(50), FULL)
    page.principals.append(replace(app(99), display_name=None))  # type: ignore[arg-type]
    summary = run(engine, [page])
    assert summary.status == "failed"
    with Session(engine) as session:
        stored = session.exec(select(SyncRun)).one().error
        event = session.exec(
            select(AuditEvent).where(AuditEvent.action == "discovery.failed")
        ).one()
    for text in (summary.error, stored, event.data["error"]):
        assert text is not None
        assert text.startswith("the database refused a page: ")
        assert "display_name" in text
        assert len(text) <= 500
        assert "\n" not in text
        for leak in ("INSERT", "SELECT", "App 1", "OPENID_CONNECT", "0oa00001"):
            assert leak not in text


def test_a_delta_run_says_what_changed(engine: Engine) -> None:
    from recert.cli import sync_line

    run(engine, [page_for(range(3), FULL)])
    delta = base.Checkpoint(full=False, cursor={"delta": "next"})
    summary = run(engine, [page_for(range(1, 2), delta, removed=["0oa00002"])])
    assert (summary.full, summary.principals_seen, summary.deleted) == (False, 1, 1)
    assert sync_line(summary) == (
        "okta-test: delta: 1 changed, 1 removed (0 new); 0 malformed records skipped"
    )
