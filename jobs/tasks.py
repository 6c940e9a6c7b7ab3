"""Thin tasks: names in, one `recert` call under the job's lock, its summary out.

Every task is idempotent, so all of them are acked late and requeued when their worker
process dies. The requeued delivery then finds the lock its dead predecessor held; it
recognises its own task id there and retries once the lease has expired (one TTL after
the last heartbeat), instead of being skipped. A different task holding the lock is a
real overlap: that one is skipped and says who runs.
"""

from __future__ import annotations

import importlib
import logging
import random
from collections.abc import Callable
from functools import cache
from typing import Any

from celery import Task, chord
from celery.signals import worker_init, worker_process_init, worker_process_shutdown
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from connectors.base import TransientError
from jobs.celery_app import app, settings
from recert import campaigns, db, enforcement, notices, runs
from recert import notify as outbox
from recert.clock import clock_from_env
from recert.config import ConfigError
from recert.locks import AlreadyRunning, Holder, job_lock

log = logging.getLogger(__name__)
LOCK_RETRIES = 10
TRANSIENT_RETRIES = 3
CHUNK_RETRIES = 5
# The SDK each provider's connector imports on first use (the Okta SDK alone takes seconds).
SDKS = {"okta": "okta.client", "entra": "msgraph", "google": "googleapiclient.discovery"}


@worker_init.connect
def _import_sdks_before_fork(**_: Any) -> None:
    """Import the configured providers' SDKs once in the parent, so every forked pool
    process, and the replacement of one that died, starts with them loaded."""
    for kind in sorted({tenant.kind for tenant in settings.tenants}):
        importlib.import_module(SDKS[kind])


@cache
def engine() -> Engine:
    """One engine (and pool) per worker process."""
    return db.require_current(db.make_engine(settings.database.url))


@worker_process_init.connect
def _fresh_engine_after_fork(**_: Any) -> None:
    """A forked child must not use the parent's pooled connections: drop them (without
    closing the parent's sockets) and open its own on first use."""
    if engine.cache_info().currsize:
        engine().dispose(close=False)
        engine.cache_clear()


@worker_process_shutdown.connect
def _close_engine(**_: Any) -> None:
    if engine.cache_info().currsize:
        engine().dispose()
        engine.cache_clear()


def _busy(task: Task, holder: Holder | None, expires_in: float, message: str) -> dict[str, Any]:
    """Retry a redelivery whose own dead predecessor holds the lock; skip a real overlap."""
    if holder is not None and holder.task_id == task.request.id:
        countdown = expires_in + random.uniform(0.5, 2.0)
        raise task.retry(countdown=countdown, max_retries=LOCK_RETRIES)
    return {"status": "skipped", "error": message}


def _locked(task: Task, job: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `job`; a lock held elsewhere is a retry or a skip."""
    try:
        return _failing_in_one_line(task, job)
    except AlreadyRunning as running:
        return _busy(task, running.holder, running.expires_in, str(running))


def _failing_in_one_line(task: Task, job: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A config problem (one tenant's missing secret, say) or a database that does not
    answer or is not migrated fails this task alone with one line, not a traceback; beat
    runs it again at its next time."""
    try:
        return job()
    except (ConfigError, db.DatabaseError) as error:
        return _failed(task, str(error))
    except OperationalError as error:  # the database went away in the middle of the job
        return _failed(task, f"database error: {db.first_line(error)}")


def _failed(task: Task, error: str) -> dict[str, Any]:
    log.error("%s: %s", task.name, error)
    return {"status": "failed", "error": error}


TASK_OPTIONS: dict[str, Any] = {"bind": True, "acks_late": True, "reject_on_worker_lost": True}


@app.task(name="jobs.tasks.discover_tenant", **TASK_OPTIONS)
def discover_tenant(self: Task, tenant_name: str) -> dict[str, Any]:
    """Discovery, then owners and risk."""
    task_id = self.request.id

    def job() -> dict[str, Any]:
        clock = clock_from_env()
        return runs.discover(
            engine(), settings, tenant_name, clock, owner="celery", task_id=task_id
        ).as_dict()

    return _locked(self, job)


@app.task(name="jobs.tasks.enforce_tenant", **TASK_OPTIONS)
def enforce_tenant(self: Task, tenant_name: str) -> dict[str, Any]:
    """The tenant's daily enforcement run, in its mode; transient provider failures are
    retried with backoff and jitter."""

    def job() -> dict[str, Any]:
        summary = enforcement.enforce(
            engine(),
            settings,
            clock_from_env(),
            [tenant_name],
            owner="celery",
            task_id=self.request.id,
        )[0]
        if summary.status == "skipped":
            return _busy(self, summary.locked_by, summary.lock_expires_in, summary.error or "")
        if summary.retrying and self.request.retries < TRANSIENT_RETRIES:
            countdown = 300 * 2**self.request.retries * random.uniform(1.0, 1.5)
            raise self.retry(countdown=countdown, max_retries=TRANSIENT_RETRIES)
        return summary.as_dict()

    return {"tenant": tenant_name, **_failing_in_one_line(self, job)}


@app.task(name="jobs.tasks.open_due_campaigns", **TASK_OPTIONS)
def open_due_campaigns(self: Task) -> dict[str, Any]:
    """Open a campaign for the risk tiers whose review cadence has elapsed."""

    def job() -> dict[str, Any]:
        clock = clock_from_env()
        lock = job_lock(settings, engine(), "campaigns", owner="celery", task_id=self.request.id)
        with lock, db.session_scope(engine()) as session:
            tiers = campaigns.tiers_due(session, settings, clock.now())
            if not tiers:
                return {"opened": None}
            name = f"Access review {clock.now():%Y-%m-%d} ({', '.join(tiers)} risk)"
            try:
                opened = campaigns.open_campaign(session, settings, clock, name=name, risks=tiers)
            except campaigns.NothingToReview as nothing:
                return {"opened": None, "reason": str(nothing)}
            return {"opened": opened.as_dict()}

    return _locked(self, job)


@app.task(name="jobs.tasks.notify", **TASK_OPTIONS)
def notify(self: Task) -> dict[str, Any]:
    def job() -> dict[str, Any]:
        clock = clock_from_env()
        expiry, summary = runs.notify(
            engine(), settings, clock, owner="celery", task_id=self.request.id
        )
        return {**summary.as_dict(), "credential_expiry": expiry.as_dict()}

    return _locked(self, job)


@app.task(name="jobs.tasks.weekly_orphan_report", **TASK_OPTIONS)
def weekly_orphan_report(self: Task) -> dict[str, Any]:
    def job() -> dict[str, Any]:
        clock = clock_from_env()
        with job_lock(settings, engine(), "orphan-report", owner="celery", task_id=self.request.id):
            queued = outbox.queue_orphan_report(engine(), settings, clock)
            return {"queued": queued, **outbox.send_outbox(engine(), settings, clock).as_dict()}

    return _locked(self, job)


@app.task(name="jobs.tasks.credential_expiry_notices", **TASK_OPTIONS)
def credential_expiry_notices(self: Task) -> dict[str, Any]:
    """Today's credential-expiry digests, then the outbox. Idempotent: a ledger row per
    (credential, threshold) and one outbox key per (day, recipient)."""

    def job() -> dict[str, Any]:
        clock = clock_from_env()
        lock = job_lock(
            settings, engine(), "credential-expiry", owner="celery", task_id=self.request.id
        )
        with lock:
            queued = notices.queue_expiry_notices(engine(), settings, clock)
            return {**queued.as_dict(), **outbox.send_outbox(engine(), settings, clock).as_dict()}

    return _locked(self, job)


@app.task(name="jobs.tasks.reap_abandoned_runs", **TASK_OPTIONS)
def reap_abandoned_runs(self: Task) -> dict[str, Any]:
    """Close discovery runs left `running` by a process that died."""
    return _failing_in_one_line(
        self, lambda: {"abandoned": runs.reap_abandoned(engine(), settings, clock_from_env())}
    )


# ----- Google: per-user chunks fanned out and joined ---------------------------------------


@app.task(name="jobs.tasks.discover_fanned_out", **TASK_OPTIONS)
def discover_fanned_out(self: Task, tenant_name: str) -> dict[str, Any]:
    """Start a discovery whose token reads run as one task per chunk of users, joined by
    `finish_discovery`; the tenant's discovery lock is held from here to the join."""

    def job() -> dict[str, Any]:
        started, lease = runs.start_fanned_out(
            engine(), settings, tenant_name, clock_from_env(), task_id=self.request.id
        )
        finish = finish_discovery.s(tenant_name, started.as_dict(), lease)
        chunks = [
            discover_chunk.s(
                tenant_name, lease, started.run_id, ids, started.plan.get("unknown_use")
            )
            for ids in started.chunks
        ]
        joined = chord(chunks)(finish) if chunks else finish.delay([])
        return {
            "tenant": tenant_name,
            "run_id": started.run_id,
            "status": "running",
            "chunks": len(chunks),
            "finish_task_id": joined.id,
        }

    return _locked(self, job)


@app.task(name="jobs.tasks.discover_chunk", **TASK_OPTIONS)
def discover_chunk(
    self: Task,
    tenant_name: str,
    lease: str,
    run_id: int,
    user_ids: list[str],
    unknown_use: str | None,
) -> dict[str, Any]:
    """One chunk of users' tokens. Idempotent; transient failures retry with backoff and
    jitter; whatever still fails is reported to the join, which then fails the run."""
    try:
        return runs.discover_chunk(
            engine(), settings, tenant_name, clock_from_env(), lease, run_id, user_ids, unknown_use
        )
    except TransientError as error:
        if self.request.retries < CHUNK_RETRIES:
            delay = min(300, 2**self.request.retries * 10) * random.uniform(0.5, 1.0)
            raise self.retry(exc=error, countdown=delay) from None
        return {"ok": False, "error": str(error)}
    except Exception as error:  # reported to the join: the run fails, sweeping nothing
        return {"ok": False, "error": str(error) or type(error).__name__}


@app.task(name="jobs.tasks.finish_discovery", **TASK_OPTIONS)
def finish_discovery(
    self: Task, chunks: list[dict[str, Any]], tenant_name: str, started: dict[str, Any], lease: str
) -> dict[str, Any]:
    """The join: the rest of the tenant, then the sweep if every chunk succeeded; then
    owners and risk, as after any discovery."""
    return _failing_in_one_line(
        self,
        lambda: runs.finish_fanned_out(
            engine(), settings, tenant_name, clock_from_env(), started, chunks, lease
        ).as_dict(),
    )
