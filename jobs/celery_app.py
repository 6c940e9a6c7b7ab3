"""The Celery application: broker from the config, schedule from the config.

A bad config stops the worker or beat at start with the config's one line, exit code 2.
Secrets are read when a task uses them, so one tenant's missing credential fails only
that tenant's tasks.
"""

from __future__ import annotations

import sys

from celery import Celery

from jobs.schedule import beat_schedule
from recert.config import ConfigError, load_settings

try:
    settings = load_settings()
except ConfigError as error:
    print(f"recert worker: {error}", file=sys.stderr)
    raise SystemExit(2) from None

app = Celery(
    "recert",
    broker=settings.celery.broker_url,
    backend=settings.celery.broker_url,  # summaries, for `celery result` and scripts
    include=["jobs.tasks"],
)
app.conf.update(
    result_expires=24 * 3600,
    task_acks_late=False,  # only idempotent tasks opt in, per task
    worker_prefetch_multiplier=1,
    task_default_queue="recert",
    task_routes={
        "jobs.tasks.discover_tenant": {"queue": "discovery"},
        "jobs.tasks.discover_fanned_out": {"queue": "discovery"},
        "jobs.tasks.discover_chunk": {"queue": "discovery"},
        "jobs.tasks.finish_discovery": {"queue": "discovery"},
    },
    broker_transport_options={"visibility_timeout": 6 * 3600},  # longer than any task
    timezone="UTC",
    enable_utc=True,
    beat_schedule=beat_schedule(settings),
)
