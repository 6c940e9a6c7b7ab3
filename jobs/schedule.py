"""The beat schedule, derived from the config. One beat process runs it."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from recert.config import Settings

# Providers whose discovery runs as parallel chunk tasks joined at the end.
FANNED_OUT = {"google": "jobs.tasks.discover_fanned_out"}


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Nightly discovery and daily enforcement per tenant (staggered), then the daily and
    weekly jobs, and a sweep that closes runs whose process died."""
    schedule: dict[str, dict[str, Any]] = {}
    for index, tenant in enumerate(settings.tenants):
        schedule[f"discover:{tenant.name}"] = {
            "task": FANNED_OUT.get(tenant.kind, "jobs.tasks.discover_tenant"),
            "schedule": crontab(hour=2, minute=(index * 7) % 60),
            "args": (tenant.name,),
        }
        schedule[f"enforce:{tenant.name}"] = {
            "task": "jobs.tasks.enforce_tenant",
            "schedule": crontab(hour=9, minute=(index * 7) % 60),
            "args": (tenant.name,),
        }
    schedule["campaigns"] = {
        "task": "jobs.tasks.open_due_campaigns",
        "schedule": crontab(hour=6, minute=0),
    }
    schedule["notify"] = {"task": "jobs.tasks.notify", "schedule": crontab(hour="8-17", minute=15)}
    schedule["credential-expiry"] = {  # after the night's discovery, before the day starts
        "task": "jobs.tasks.credential_expiry_notices",
        "schedule": crontab(hour=7, minute=0),
    }
    schedule["orphan-report"] = {
        "task": "jobs.tasks.weekly_orphan_report",
        "schedule": crontab(day_of_week="mon", hour=7, minute=30),
    }
    schedule["reap-abandoned-runs"] = {
        "task": "jobs.tasks.reap_abandoned_runs",
        "schedule": crontab(minute="*/10"),
    }
    return schedule
