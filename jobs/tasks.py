"""Thin tasks: names in, one `recert` call under a Redis lock, its summary out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy import Engine

from jobs.celery_app import app, settings
from jobs.locks import AlreadyRunning, singleton
from recert import campaigns, db, notices
from recert import notify as outbox
from recert.analysis import analyze
from recert.clock import clock_from_env
from recert.discovery import discover_tenant as run_discovery

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
    tenant = settings.tenant(tenant_name)

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
            opened = campaigns.open_campaign(session, settings, clock, name=name, risks=tiers)
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
