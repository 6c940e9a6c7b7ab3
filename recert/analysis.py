"""After discovery: score risk and resolve owners, tenant by tenant."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy import Engine
from sqlmodel import select

from recert.catalog import Catalog, load_catalog
from recert.clock import Clock
from recert.config import Settings
from recert.db import session_scope
from recert.models import Tenant
from recert.owners import resolve_tenant
from recert.risk import score_tenant


def analyze(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    tenants: list[str] | None = None,
    catalog: Catalog | None = None,
) -> list[dict[str, Any]]:
    """Risk then owners for each discovered tenant (or only `tenants`); idempotent."""
    catalog = catalog or load_catalog(settings.catalog_dir)
    results = []
    with session_scope(engine) as session:
        rows = session.exec(select(Tenant).order_by(Tenant.name)).all()
    for row in rows:
        if tenants is not None and row.name not in tenants:
            continue
        with session_scope(engine) as session:
            rescored = score_tenant(session, row, settings.risk, clock.now())
            summary = resolve_tenant(session, row, settings, catalog, clock)
        results.append({**asdict(summary), "risk_changed": rescored})
    return results
