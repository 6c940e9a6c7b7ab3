"""Jobs that must never overlap, run under their lock: the same code for a CLI command
and a Celery task, so both take the same lock per (job, tenant).

A discovery that holds its tenant's lock knows that any run of that tenant still marked
`running` belongs to a process that died (its heartbeat stopped and its lease expired):
it closes those runs as `abandoned` before starting its own.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine
from sqlmodel import col, select

from connectors import open_connector
from connectors.base import Connector
from recert import audit, chunked
from recert.analysis import analyze
from recert.broker import pacer_for
from recert.clock import Clock
from recert.config import Settings, require_secrets
from recert.config import Tenant as ConfiguredTenant
from recert.db import session_scope
from recert.discovery import PageCallback, SyncSummary, discover_tenant
from recert.locks import AlreadyRunning, job_lock, lease_store, lock_name, take
from recert.models import SyncRun, SyncStatus, Tenant
from recert.notices import ExpirySummary, queue_expiry_notices
from recert.notify import NotifySummary
from recert.notify import notify as run_notify

log = logging.getLogger(__name__)
# A discovery fanned out over tasks holds its lock from the first task to the join; each
# chunk renews it, and a run whose tasks all died frees its tenant within this long.
FANOUT_LEASE_SECONDS = 15 * 60.0
LOST = "the run's lock was lost: another run may hold the tenant"


def discover(
    engine: Engine,
    settings: Settings,
    tenant_name: str,
    clock: Clock,
    *,
    owner: str = "cli",
    task_id: str | None = None,
    on_page: PageCallback | None = None,
) -> SyncSummary:
    """One tenant's discovery under its lock, then risk and owners; AlreadyRunning if
    another run holds the lock."""
    tenant = settings.tenant(tenant_name)
    with job_lock(settings, engine, "discover", tenant.name, owner=owner, task_id=task_id) as lease:
        abandon_runs(engine, tenant.name, clock)
        pacer = pacer_for(settings, tenant.name, shared=owner == "celery")
        summary = discover_tenant(
            engine, tenant, clock, on_page=on_page, pacer=pacer, guard=lease.check
        )
        if summary.status == SyncStatus.COMPLETE:
            analyze(engine, settings, clock, [tenant.name])
    return summary


def start_fanned_out(
    engine: Engine, settings: Settings, tenant_name: str, clock: Clock, *, task_id: str | None
) -> tuple[chunked.StartedRun, str]:
    """Take the tenant's discovery lock for a run that spans tasks, open the run and plan
    its chunks. Returns the plan and the lock's value, which the chunks and the join renew
    and the join releases; AlreadyRunning if another run holds the lock."""
    tenant = settings.tenant(tenant_name)
    require_secrets(tenant.read)
    store, name = lease_store(settings, engine), lock_name("discover", tenant.name)
    lease = take(store, name, FANOUT_LEASE_SECONDS, owner="celery", task_id=task_id)
    try:
        abandon_runs(engine, tenant.name, clock)
        connector = _shared_connector(settings, tenant, clock)
        return chunked.start_run(engine, tenant, clock, connector=connector), lease
    except BaseException:
        store.release(name, lease)
        raise


def discover_chunk(
    engine: Engine,
    settings: Settings,
    tenant_name: str,
    clock: Clock,
    lease: str,
    run_id: int,
    user_ids: list[str],
    unknown_use: str | None,
) -> dict[str, Any]:
    """One chunk of a fanned-out run, if the run still holds its tenant's lock."""
    tenant = settings.tenant(tenant_name)
    store = lease_store(settings, engine)
    if not store.renew(lock_name("discover", tenant.name), lease, FANOUT_LEASE_SECONDS):
        return {"ok": False, "error": LOST}
    connector = _shared_connector(settings, tenant, clock)
    return chunked.load_chunk(
        engine, tenant, clock, run_id, user_ids, unknown_use, connector=connector
    )


def finish_fanned_out(
    engine: Engine,
    settings: Settings,
    tenant_name: str,
    clock: Clock,
    started: dict[str, Any],
    chunks: list[dict[str, Any]],
    lease: str,
) -> SyncSummary:
    """The join: the rest of the tenant and the sweep, only if every chunk succeeded and
    the lock is still the run's; then risk and owners. Releases the lock."""
    tenant = settings.tenant(tenant_name)
    store, name = lease_store(settings, engine), lock_name("discover", tenant.name)
    try:
        if not store.renew(name, lease, FANOUT_LEASE_SECONDS):
            chunks = [*chunks, {"ok": False, "error": LOST}]
        connector = _shared_connector(settings, tenant, clock)
        summary = chunked.finish_run(engine, tenant, clock, started, chunks, connector=connector)
        if summary.status == SyncStatus.COMPLETE:
            analyze(engine, settings, clock, [tenant.name])
        return summary
    finally:
        store.release(name, lease)


def _shared_connector(settings: Settings, tenant: ConfiguredTenant, clock: Clock) -> Connector:
    pacer = pacer_for(settings, tenant.name, shared=True)
    return open_connector(tenant.read, now=clock.now, pacer=pacer)


def notify(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    *,
    owner: str = "cli",
    task_id: str | None = None,
) -> tuple[ExpirySummary, NotifySummary]:
    """Queue what is due (today's credential-expiry digests included) and send the
    outbox, under the notify lock."""
    with job_lock(settings, engine, "notify", owner=owner, task_id=task_id):
        expiry = queue_expiry_notices(engine, settings, clock)
        return expiry, run_notify(engine, settings, clock)


def abandon_runs(engine: Engine, tenant_name: str, clock: Clock) -> int:
    """Close the tenant's runs still marked `running`; the caller holds its lock, so their
    processes are gone. Returns how many were closed."""
    with session_scope(engine) as session:
        runs = session.exec(
            select(SyncRun)
            .join(Tenant, col(Tenant.id) == SyncRun.tenant_id)
            .where(Tenant.name == tenant_name, SyncRun.status == SyncStatus.RUNNING)
        ).all()
        for run in runs:
            run.status, run.finished_at = SyncStatus.ABANDONED, clock.now()
            run.error = "its process stopped: the run's lock lost its heartbeat"
            session.add(run)
            audit.append(
                session,
                clock,
                actor="recert",
                action="discovery.abandoned",
                subject_type="sync_run",
                subject_id=str(run.id),
                tenant=tenant_name,
                data={"started_at": run.started_at.isoformat(), "error": run.error},
            )
    for run in runs:
        log.warning("tenant %s: closed run %s as abandoned", tenant_name, run.id)
    return len(runs)


def reap_abandoned(engine: Engine, settings: Settings, clock: Clock) -> int:
    """Close every run left `running` by a dead process, tenant by tenant: a tenant whose
    discovery lock is free has no live run. Live runs are left alone."""
    with session_scope(engine) as session:
        tenants = session.exec(
            select(Tenant.name)
            .join(SyncRun, col(SyncRun.tenant_id) == Tenant.id)
            .where(SyncRun.status == SyncStatus.RUNNING)
            .distinct()
        ).all()
    closed = 0
    for name in tenants:
        try:
            with job_lock(settings, engine, "discover", name, owner="reaper"):
                closed += abandon_runs(engine, name, clock)
        except AlreadyRunning:
            continue  # a live discovery: its run is not abandoned
    return closed
