"""The beat schedule, derived from the config (one entry per tenant and job)."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from recert.config import Settings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Nightly discovery per tenant, staggered so tenants do not start at once."""
    return {
        f"discover:{tenant.name}": {
            "task": "jobs.tasks.discover_tenant",
            "schedule": crontab(hour=2, minute=(index * 7) % 60),
            "args": (tenant.name,),
        }
        for index, tenant in enumerate(settings.tenants)
    }
