"""Discovery in chunks that Celery fans out: Google's one `tokens.list` per user.

`start_run` opens a sync run, loads the people and plans the chunks; `load_chunk` reads
one chunk's users' tokens and loads them under that run (any worker, any order, as many
times as a redelivery wants: loads are upserts stamped with the run); `finish_run` loads
the rest (service accounts, delegation, last use) and sweeps only when every chunk
succeeded. The store ends up exactly as after `discover_tenant` in one process.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sqlalchemy import Engine
from sqlmodel import func, select

from connectors import open_connector
from connectors.base import Checkpoint, Page
from recert.clock import Clock
from recert.config import Tenant
from recert.db import session_scope
from recert.discovery import (
    SyncSummary,
    ensure_tenant,
    finish_complete,
    finish_failed,
    page_loader,
)
from recert.models import Principal, SyncRun, SyncStatus
from recert.models import Tenant as TenantRow


class ChunkedConnector(Protocol):
    """What a connector offers to be fanned out (connectors.google.GoogleConnector)."""

    tenant: str

    def plan(self, state: Any) -> Any: ...

    def people_pages(self, plan: Any) -> AsyncIterator[Page]: ...

    async def token_chunks(self, plan: Any, state: Any) -> list[list[str]]: ...

    async def tokens_chunk(
        self, user_ids: Iterable[str], unknown_use: str | None = None
    ) -> tuple[Page, Any]: ...

    def finish_pages(self, plan: Any, state: Any, read: Any) -> AsyncIterator[Page]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class StartedRun:
    run_id: int
    plan: dict[str, Any]  # the connector's plan, as JSON, for the finishing step
    chunks: list[list[str]]  # user ids, one list per chunk task
    pages: int
    skipped: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "plan": self.plan,
            "chunks": self.chunks,
            "pages": self.pages,
            "skipped": self.skipped,
        }


def _connector(tenant: Tenant, clock: Clock, given: Any) -> ChunkedConnector:
    connector = given or open_connector(tenant.read, now=clock.now)
    if not hasattr(connector, "tokens_chunk"):
        raise TypeError(f"tenant {tenant.name}: a {tenant.kind} connector does not fan out")
    return cast(ChunkedConnector, connector)


def _cursor(engine: Engine, tenant_id: int) -> dict[str, Any]:
    with session_scope(engine) as session:
        row = session.get(TenantRow, tenant_id)
        assert row is not None
        return dict(row.cursor)


def _run_start(engine: Engine, run_id: int) -> Any:
    with session_scope(engine) as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        return run.started_at


def _load(engine: Engine, tenant: Tenant, tenant_id: int, run_id: int, page: Page) -> int:
    with session_scope(engine) as session:
        loader = page_loader(session, tenant, tenant_id, run_id, _run_start(engine, run_id))
        loader.load(page)
        return loader.skipped


def start_run(engine: Engine, tenant: Tenant, clock: Clock, *, connector: Any = None) -> StartedRun:
    """Open the run, load every person, and split the token reads into chunks."""
    from connectors.google import LogState

    tenant_id = ensure_tenant(engine, tenant)
    state = LogState.from_cursor(_cursor(engine, tenant_id))
    with session_scope(engine) as session:
        run = SyncRun(tenant_id=tenant_id, started_at=clock.now())
        session.add(run)
        session.flush()
        assert run.id is not None
        run_id = run.id
    chunked = _connector(tenant, clock, connector)

    async def go() -> StartedRun:
        plan = chunked.plan(state)
        pages = skipped = 0
        try:
            async for page in chunked.people_pages(plan):
                skipped += _load(engine, tenant, tenant_id, run_id, page)
                pages += 1
            chunks = await chunked.token_chunks(plan, state)
        finally:
            await chunked.aclose()
        return StartedRun(run_id, plan.as_json(), chunks, pages, skipped)

    try:
        return asyncio.run(go())
    except Exception as error:
        summary = SyncSummary(tenant.name, run_id, SyncStatus.RUNNING, error=str(error))
        finish_failed(engine, tenant, run_id, clock, summary)
        raise


def load_chunk(
    engine: Engine,
    tenant: Tenant,
    clock: Clock,
    run_id: int,
    user_ids: list[str],
    unknown_use: str | None,
    *,
    connector: Any = None,
) -> dict[str, Any]:
    """One chunk's tokens, loaded under `run_id`. Idempotent."""
    tenant_id = ensure_tenant(engine, tenant)
    chunked = _connector(tenant, clock, connector)

    async def go() -> tuple[Page, Any]:
        try:
            return await chunked.tokens_chunk(user_ids, unknown_use)
        finally:
            await chunked.aclose()

    page, read = asyncio.run(go())
    skipped = _load(engine, tenant, tenant_id, run_id, page)
    return {"ok": True, "read": read.as_json(), "pages": 1, "skipped": skipped}


def finish_run(
    engine: Engine,
    tenant: Tenant,
    clock: Clock,
    started: Mapping[str, Any],
    chunks: Sequence[Mapping[str, Any]],
    *,
    connector: Any = None,
) -> SyncSummary:
    """Load the rest and sweep, if every chunk succeeded; otherwise fail the run. A run
    that already ended (a redelivered finish) is reported as it ended."""
    from connectors.google import LogState, Plan, TokensRead

    run_id = int(started["run_id"])
    tenant_id = ensure_tenant(engine, tenant)
    ended = _ended(engine, run_id)
    if ended is not None:
        return ended
    summary = SyncSummary(tenant=tenant.name, run_id=run_id, status=SyncStatus.RUNNING)
    summary.pages = int(started.get("pages", 0)) + sum(int(c.get("pages", 0)) for c in chunks)
    summary.skipped = int(started.get("skipped", 0)) + sum(int(c.get("skipped", 0)) for c in chunks)
    failed = [str(c.get("error")) for c in chunks if not c.get("ok")]
    if failed:
        summary.error = f"{len(failed)} of {len(chunks)} chunks failed, first: {failed[0]}"
        finish_failed(engine, tenant, run_id, clock, summary)
        return summary
    read = TokensRead()
    for chunk in chunks:
        read.merge(TokensRead.from_json(chunk["read"]))
    state = LogState.from_cursor(_cursor(engine, tenant_id))
    plan = Plan.from_json(started["plan"])
    chunked = _connector(tenant, clock, connector)

    async def go() -> Checkpoint | None:
        checkpoint = None
        try:
            async for page in chunked.finish_pages(plan, state, read):
                summary.skipped += _load(engine, tenant, tenant_id, run_id, page)
                summary.pages += 1
                checkpoint = page.checkpoint or checkpoint
        finally:
            await chunked.aclose()
        return checkpoint

    try:
        checkpoint = asyncio.run(go())
        if checkpoint is None:
            raise RuntimeError("the listing ended without a checkpoint")
    except Exception as error:
        summary.error = str(error) or type(error).__name__
        finish_failed(engine, tenant, run_id, clock, summary)
        return summary
    kinds = _seen_kinds(engine, tenant_id, run_id)
    summary.principals_seen = sum(kinds.values())
    summary.by_kind = dict(sorted(kinds.items()))
    started_at = _run_start(engine, run_id)
    finish_complete(engine, tenant, tenant_id, run_id, started_at, clock, checkpoint, summary)
    return summary


def _seen_kinds(engine: Engine, tenant_id: int, run_id: int) -> Counter[str]:
    with session_scope(engine) as session:
        rows = session.exec(
            select(Principal.kind, func.count())
            .where(Principal.tenant_id == tenant_id, Principal.last_seen_run_id == run_id)
            .group_by(Principal.kind)
        ).all()
    return Counter({kind: int(count) for kind, count in rows})


def _ended(engine: Engine, run_id: int) -> SyncSummary | None:
    with session_scope(engine) as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        if run.status == SyncStatus.RUNNING:
            return None
        counts = dict(run.counts)
        summary = SyncSummary(
            tenant=str(counts.get("tenant", "")), run_id=run_id, status=run.status
        )
        for key in ("full", "principals_seen", "new", "deleted", "skipped", "pages", "by_kind"):
            if key in counts:
                setattr(summary, key, counts[key])
        summary.error = run.error
        return summary
