"""Thin tasks: names in, one `recert` call under a Redis lock, its summary out."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import redis
from celery import Task, chord
from sqlalchemy import Engine

from connectors.base import TransientError
from jobs.celery_app import app, settings
from jobs.locks import AlreadyRunning, give_back, singleton, take
from recert import campaigns, chunked, db, notices
from recert import notify as outbox
from recert.analysis import analyze
from recert.clock import clock_from_env
from recert.config import ConfigError, require_secrets
from recert.discovery import discover_tenant as run_discovery

log = logging.getLogger(__name__)
LOCK_SECONDS = 6 * 3600  # longer than any run; a killed worker's lock still expires


def _engine() -> Engine:
    return db.require_current(db.make_engine(settings.database.url))


def _locked(name: str, job: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    client = redis.Redis.from_url(settings.celery.broker_url)
    try:
        with singleton(client, name, LOCK_SECONDS):
            return job()
    except AlreadyRunning:
        return {"job": name, "status": "skipped", "error": "already running"}
    finally:
        client.close()


@app.task(name="jobs.tasks.discover_tenant", acks_late=True, reject_on_worker_lost=True)
def discover_tenant(tenant_name: str) -> dict[str, Any]:
    """Discovery, then owners and risk. Idempotent, so a redelivery is harmless."""
    try:
        tenant = settings.tenant(tenant_name)
        require_secrets(tenant.read)
    except ConfigError as error:  # this tenant's problem alone: one line, no retry
        log.error("discover %s: %s", tenant_name, error)
        return {"tenant": tenant_name, "status": "failed", "error": str(error)}

    def job() -> dict[str, Any]:
        engine, clock = _engine(), clock_from_env()
        summary = run_discovery(engine, tenant, clock)
        if summary.status == "complete":
            analyze(engine, settings, clock, [tenant_name])
        return summary.as_dict()

    return _locked(f"discover:{tenant_name}", job)


@app.task(name="jobs.tasks.open_due_campaigns", acks_late=True, reject_on_worker_lost=True)
def open_due_campaigns() -> dict[str, Any]:
    """Open a campaign for the risk tiers whose review cadence has elapsed."""

    def job() -> dict[str, Any]:
        engine, clock = _engine(), clock_from_env()
        with db.session_scope(engine) as session:
            tiers = campaigns.tiers_due(session, settings, clock.now())
            if not tiers:
                return {"opened": None}
            name = f"Access review {clock.now():%Y-%m-%d} ({', '.join(tiers)} risk)"
            try:
                opened = campaigns.open_campaign(session, settings, clock, name=name, risks=tiers)
            except campaigns.NothingToReview as nothing:
                return {"opened": None, "reason": str(nothing)}
            return {"opened": opened.as_dict()}

    return _locked("campaigns", job)


@app.task(name="jobs.tasks.notify", acks_late=True, reject_on_worker_lost=True)
def notify() -> dict[str, Any]:
    engine, clock = _engine(), clock_from_env()
    return _locked("notify", lambda: outbox.notify(engine, settings, clock).as_dict())


@app.task(name="jobs.tasks.weekly_orphan_report", acks_late=True, reject_on_worker_lost=True)
def weekly_orphan_report() -> dict[str, Any]:
    engine, clock = _engine(), clock_from_env()

    def job() -> dict[str, Any]:
        queued = outbox.queue_orphan_report(engine, settings, clock)
        return {"queued": queued, **outbox.send_outbox(engine, settings, clock).as_dict()}

    return _locked("orphan-report", job)


@app.task(name="jobs.tasks.credential_expiry_notices", acks_late=True, reject_on_worker_lost=True)
def credential_expiry_notices() -> dict[str, Any]:
    """Today's credential-expiry digests, then the outbox. Idempotent: a ledger row per
    (credential, threshold) and one outbox key per (day, recipient)."""
    engine, clock = _engine(), clock_from_env()

    def job() -> dict[str, Any]:
        queued = notices.queue_expiry_notices(engine, settings, clock)
        return {**queued.as_dict(), **outbox.send_outbox(engine, settings, clock).as_dict()}

    return _locked("credential-expiry", job)


# ----- Google: per-user chunks fanned out and joined ---------------------------------------

CHUNK_RETRIES = 5


@app.task(name="jobs.tasks.discover_fanned_out", acks_late=True, reject_on_worker_lost=True)
def discover_fanned_out(tenant_name: str) -> dict[str, Any]:
    """Start a discovery whose token reads run as one task per chunk of users, joined by
    `finish_discovery`; the tenant's discovery lock is held from here to the join."""
    tenant = settings.tenant(tenant_name)
    name = f"discover:{tenant_name}"
    client = redis.Redis.from_url(settings.celery.broker_url)
    try:
        token = take(client, name, LOCK_SECONDS)
        if token is None:
            return {"job": name, "status": "skipped", "error": "already running"}
        try:
            started = chunked.start_run(_engine(), tenant, clock_from_env())
        except Exception:
            give_back(client, name, token)
            raise
    finally:
        client.close()
    finish = finish_discovery.s(tenant_name, started.as_dict(), token)
    chunks = [
        discover_chunk.s(tenant_name, started.run_id, ids, started.plan.get("unknown_use"))
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


@app.task(name="jobs.tasks.discover_chunk", bind=True, acks_late=True, reject_on_worker_lost=True)
def discover_chunk(
    self: Task, tenant_name: str, run_id: int, user_ids: list[str], unknown_use: str | None
) -> dict[str, Any]:
    """One chunk of users' tokens. Idempotent; transient failures retry with backoff and
    jitter; whatever still fails is reported to the join, which then fails the run."""
    tenant = settings.tenant(tenant_name)
    try:
        return chunked.load_chunk(
            _engine(), tenant, clock_from_env(), run_id, user_ids, unknown_use
        )
    except TransientError as error:
        if self.request.retries < CHUNK_RETRIES:
            delay = min(300, 2**self.request.retries * 10) * random.uniform(0.5, 1.0)
            raise self.retry(exc=error, countdown=delay) from None
        return {"ok": False, "error": str(error)}
    except Exception as error:  # reported to the join: the run fails, sweeping nothing
        return {"ok": False, "error": str(error) or type(error).__name__}


@app.task(name="jobs.tasks.finish_discovery", acks_late=True, reject_on_worker_lost=True)
def finish_discovery(
    chunks: list[dict[str, Any]], tenant_name: str, started: dict[str, Any], token: str
) -> dict[str, Any]:
    """The join: the rest of the tenant, then the sweep if every chunk succeeded; then
    owners and risk, as after any discovery."""
    tenant = settings.tenant(tenant_name)
    client = redis.Redis.from_url(settings.celery.broker_url)
    try:
        engine, clock = _engine(), clock_from_env()
        summary = chunked.finish_run(engine, tenant, clock, started, chunks)
        if summary.status == "complete":
            analyze(engine, settings, clock, [tenant_name])
        return summary.as_dict()
    finally:
        give_back(client, f"discover:{tenant_name}", token)
        client.close()
