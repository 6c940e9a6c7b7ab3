"""Thin tasks: a tenant name in, one `recert` call, its summary out."""

from __future__ import annotations

from typing import Any

import redis

from jobs.celery_app import app, settings
from jobs.locks import AlreadyRunning, singleton
from recert.clock import clock_from_env
from recert.db import make_engine
from recert.discovery import discover_tenant as run_discovery

DISCOVERY_LOCK_SECONDS = 6 * 3600


@app.task(name="jobs.tasks.discover_tenant", acks_late=True, reject_on_worker_lost=True)
def discover_tenant(tenant_name: str) -> dict[str, Any]:
    """Idempotent (a re-run upserts the same rows), so it may be delivered twice."""
    tenant = settings.tenant(tenant_name)
    client = redis.Redis.from_url(settings.celery.broker_url)
    try:
        with singleton(client, f"discover:{tenant_name}", DISCOVERY_LOCK_SECONDS):
            engine = make_engine(settings.database.url)
            return run_discovery(engine, tenant, clock_from_env()).as_dict()
    except AlreadyRunning:
        return {"tenant": tenant_name, "status": "skipped", "error": "already running"}
    finally:
        client.close()
