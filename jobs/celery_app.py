"""The Celery application: broker from the config, schedule from the config.

A bad config stops the worker or beat at start with the config's one line, exit code 2.
Secrets are read when a task uses them, so one tenant's missing credential fails only
that tenant's tasks.

Every queue a task is routed to is declared here, so a plain `celery -A jobs worker`
consumes all of them (discovery included); `-Q` splits them across workers if wanted.
"""

from __future__ import annotations

import sys

from celery import Celery
from kombu import Queue

from jobs.schedule import beat_schedule
from recert.config import ConfigError, load_settings

try:
    settings = load_settings()
except ConfigError as error:
    print(f"recert worker: {error}", file=sys.stderr)
    raise SystemExit(2) from None

QUEUES = ("recert", "discovery")  # discovery runs long: a worker may be given only it

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
    # Each queue has its own routing key: with one shared key a message routed to one
    # queue would be delivered to both, and run twice.
    task_queues=[Queue(name, routing_key=name) for name in QUEUES],
    task_default_queue="recert",
    task_routes={
        "jobs.tasks.discover_tenant": {"queue": "discovery"},
        "jobs.tasks.discover_fanned_out": {"queue": "discovery"},
        "jobs.tasks.discover_chunk": {"queue": "discovery"},
        "jobs.tasks.finish_discovery": {"queue": "discovery"},
    },
    # A task whose worker process died is requeued at once (reject_on_worker_lost); the
    # visibility timeout only bounds how long a message of a worker killed as a whole
    # waits to be redelivered.
    broker_transport_options={
        "visibility_timeout": 6 * 3600,
        "global_keyprefix": settings.celery.key_prefix,
    },
    timezone="UTC",
    enable_utc=True,
    beat_schedule=beat_schedule(settings),
)
