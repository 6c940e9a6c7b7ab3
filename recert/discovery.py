"""Step 1: enumerate a tenant through its connector and load the inventory.

get (connector, API only) -> transform (connector, pure) -> load (store, bulk, stamped
with the run) -> cleanup (store sweep, only after the stream ended cleanly).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func
from sqlalchemy.exc import StatementError
from sqlmodel import Session, col, select

from connectors import open_connector
from connectors.base import Checkpoint, Connector, ConnectorError, Page
from connectors.pacing import Pacer
from recert import audit
from recert.clock import Clock
from recert.config import Tenant, require_secrets
from recert.db import session_scope
from recert.models import Principal, SyncRun, SyncStatus
from recert.models import Tenant as TenantRow
from recert.store import PageLoader

log = logging.getLogger(__name__)

PageCallback = Callable[[str, Page], None]
PAGES_PER_COMMIT = 8
ConnectorFactory = Callable[[Tenant], Connector]
Guard = Callable[[], None]  # raises when the run must stop (e.g. its lock was lost)
MAX_ERROR_CHARS = 500  # what a run and its audit event keep of an error


def error_text(error: BaseException) -> str:
    """One short line about a failure, fit to store: for a database error only the
    driver's first line (never the statement or its values, which hold other apps' data)."""
    if isinstance(error, StatementError) and error.orig is not None:
        first = (str(error.orig).strip().splitlines() or [""])[0]
        text = f"the database refused a page: {type(error.orig).__name__}: {first}"
    else:
        text = str(error) or type(error).__name__
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


@dataclass
class SyncSummary:
    tenant: str
    run_id: int
    status: str
    full: bool = False
    principals_seen: int = 0
    new: int = 0
    deleted: int = 0
    skipped: int = 0
    pages: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    not_visible: dict[str, str] = field(default_factory=dict)  # kind -> why it was not listed
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "run_id": self.run_id,
            "status": self.status,
            "full": self.full,
            "principals_seen": self.principals_seen,
            "new": self.new,
            "deleted": self.deleted,
            "skipped": self.skipped,
            "pages": self.pages,
            "by_kind": self.by_kind,
            "not_visible": self.not_visible,
            "error": self.error,
        }


def ensure_tenant(engine: Engine, tenant: Tenant) -> int:
    with session_scope(engine) as session:
        row = session.exec(select(TenantRow).where(TenantRow.name == tenant.name)).first()
        if row is None:
            row = TenantRow(name=tenant.name, kind=tenant.kind)
            session.add(row)
            session.flush()
        assert row.id is not None
        return row.id


def discover_tenant(
    engine: Engine,
    tenant: Tenant,
    clock: Clock,
    *,
    connector: Connector | None = None,
    on_page: PageCallback | None = None,
    pacer: Pacer | None = None,
    guard: Guard | None = None,
) -> SyncSummary:
    """One sync run for one tenant. A failed run is recorded and marks nothing deleted.

    A read credential the config names but cannot provide is a config error, raised
    before any run is recorded. `guard` is asked before anything is marked deleted: a run
    that lost its lock may overlap another, and must not sweep what the other one stamped.
    """
    if connector is None:
        require_secrets(tenant.read)
    return asyncio.run(_discover(engine, tenant, clock, connector, on_page, pacer, guard))


async def _discover(
    engine: Engine,
    tenant: Tenant,
    clock: Clock,
    connector: Connector | None,
    on_page: PageCallback | None,
    pacer: Pacer | None,
    guard: Guard | None,
) -> SyncSummary:
    tenant_id = ensure_tenant(engine, tenant)
    started = clock.now()
    with session_scope(engine) as session:
        row = session.get(TenantRow, tenant_id)
        assert row is not None
        cursor = dict(row.cursor)
        run = SyncRun(tenant_id=tenant_id, started_at=started)
        session.add(run)
        session.flush()
        assert run.id is not None
        run_id = run.id
    summary = SyncSummary(tenant=tenant.name, run_id=run_id, status=SyncStatus.RUNNING)
    connector = connector or open_connector(tenant.read, now=clock.now, pacer=pacer)
    checkpoint: Checkpoint | None = None

    def loaded(session: Session, loader: PageLoader) -> None:
        _audit_returned(session, clock, tenant, run_id, loader.returned)
        summary.deleted += loader.removed

    writer = _Writer(engine, _loader_of(tenant, tenant_id, run_id, started), summary, loaded)
    # The store works in a thread of its own: the connector reads the next pages meanwhile.
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recert-store")
    loop = asyncio.get_running_loop()
    try:
        async for page in connector.discover(cursor or None):
            await loop.run_in_executor(thread, writer.load, page)
            checkpoint = page.checkpoint or checkpoint
            if on_page:
                on_page(tenant.name, page)
        await loop.run_in_executor(thread, writer.commit)
        if checkpoint is None:
            raise ConnectorError(tenant.name, "the listing ended without a checkpoint")
        if guard:
            guard()
    except Exception as error:  # any failure ends the run as failed, sweeping nothing
        if not isinstance(error, ConnectorError):
            log.exception("tenant %s: discovery crashed", tenant.name)
        await loop.run_in_executor(thread, writer.keep_loaded)
        summary.error = error_text(error)
        summary.principals_seen = sum(_seen_by_kind(engine, tenant_id, run_id).values())
        finish_failed(engine, tenant, run_id, clock, summary)
        return summary
    finally:
        thread.shutdown()
        await connector.aclose()
    summary.by_kind = _seen_by_kind(engine, tenant_id, run_id)
    summary.principals_seen = sum(summary.by_kind.values())
    finish_complete(engine, tenant, tenant_id, run_id, started, clock, checkpoint, summary)
    return summary


def _seen_by_kind(engine: Engine, tenant_id: int, run_id: int) -> dict[str, int]:
    """Principals this run delivered, per kind (the store keeps the last page's kind)."""
    with session_scope(engine) as session:
        query = (
            select(Principal.kind, func.count())
            .where(Principal.tenant_id == tenant_id, Principal.last_seen_run_id == run_id)
            .group_by(col(Principal.kind))
        )
        return dict(sorted((kind, int(n)) for kind, n in session.exec(query)))


class _Writer:
    """Loads pages in a few transactions, not one per page: each commit waits for the disk.
    A page counts once its transaction committed; a failure keeps what was committed."""

    def __init__(
        self,
        engine: Engine,
        loader_for: Callable[[Session], PageLoader],
        summary: SyncSummary,
        loaded: Callable[[Session, PageLoader], None],
    ) -> None:
        self.engine = engine
        self.loader_for = loader_for
        self.summary = summary
        self.loaded = loaded  # after each page, in its transaction (audit what it changed)
        self.session: Session | None = None
        self.pages = self.skipped = 0

    def load(self, page: Page) -> None:
        if self.session is None:
            self.session = Session(self.engine, expire_on_commit=False)
        loader = self.loader_for(self.session)
        loader.load(page)
        self.loaded(self.session, loader)
        self.pages += 1
        self.skipped += loader.skipped
        if self.pages >= PAGES_PER_COMMIT:
            self.commit()

    def commit(self) -> None:
        if self.session is not None:
            self.session.commit()
            self.summary.pages += self.pages
            self.summary.skipped += self.skipped
        self.close()

    def keep_loaded(self) -> None:
        """After a failure: commit the pages that loaded, unless loading failed itself."""
        try:
            self.commit()
        except Exception:
            log.exception(
                "tenant %s: could not keep the pages loaded before the failure", self.summary.tenant
            )
            self.close()

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session, self.pages, self.skipped = None, 0, 0


def _loader_of(
    tenant: Tenant, tenant_id: int, run_id: int, now: Any
) -> Callable[[Session], PageLoader]:
    return lambda session: page_loader(session, tenant, tenant_id, run_id, now)


def page_loader(session: Any, tenant: Tenant, tenant_id: int, run_id: int, now: Any) -> PageLoader:
    return PageLoader(
        session,
        tenant_id=tenant_id,
        tenant_name=tenant.name,
        run_id=run_id,
        now=now,
        protected=tenant.protected,
    )


def finish_complete(
    engine: Engine,
    tenant: Tenant,
    tenant_id: int,
    run_id: int,
    started: Any,
    clock: Clock,
    checkpoint: Checkpoint,
    summary: SyncSummary,
) -> None:
    with session_scope(engine) as session:
        loader = page_loader(session, tenant, tenant_id, run_id, started)
        summary.not_visible = dict(checkpoint.not_visible)
        gone = loader.sweep(checkpoint)
        summary.status, summary.full = SyncStatus.COMPLETE, checkpoint.full
        summary.deleted, summary.new = summary.deleted + len(gone), loader.count_new()
        run = session.get(SyncRun, run_id)
        row = session.get(TenantRow, tenant_id)
        assert run is not None
        assert row is not None
        run.status, run.full, run.finished_at = SyncStatus.COMPLETE, checkpoint.full, clock.now()
        run.skipped, run.counts = summary.skipped, summary.as_dict()
        row.cursor, row.last_complete_sync_at = dict(checkpoint.cursor), run.finished_at
        session.add_all([run, row])
        for _, external_id in gone:
            audit.append(
                session,
                clock,
                actor="recert",
                action="principal.deleted",
                subject_type="principal",
                subject_id=external_id,
                tenant=tenant.name,
                data={"sync_run": run_id, "reason": "not seen in a complete discovery"},
            )
        audit.append(
            session,
            clock,
            actor="recert",
            action="discovery.completed",
            subject_type="sync_run",
            subject_id=str(run_id),
            tenant=tenant.name,
            data=summary.as_dict(),
        )


def _audit_returned(
    session: Any, clock: Clock, tenant: Tenant, run_id: int, returned: list[str]
) -> None:
    for external_id in returned:
        audit.append(
            session,
            clock,
            actor="recert",
            action="principal.returned",
            subject_type="principal",
            subject_id=external_id,
            tenant=tenant.name,
            data={"sync_run": run_id, "reason": "seen again after it was marked deleted"},
        )


def finish_failed(
    engine: Engine, tenant: Tenant, run_id: int, clock: Clock, summary: SyncSummary
) -> None:
    log.error("tenant %s: discovery failed: %s", tenant.name, summary.error)
    summary.status = SyncStatus.FAILED
    with session_scope(engine) as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        run.status, run.finished_at, run.error = SyncStatus.FAILED, clock.now(), summary.error
        run.skipped, run.counts = summary.skipped, summary.as_dict()
        session.add(run)
        audit.append(
            session,
            clock,
            actor="recert",
            action="discovery.failed",
            subject_type="sync_run",
            subject_id=str(run_id),
            tenant=tenant.name,
            data={"error": summary.error, "pages": summary.pages},
        )
