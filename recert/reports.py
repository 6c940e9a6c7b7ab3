"""IAM reports: orphaned, stale, risky and uncataloged apps, as CSV, JSON or HTML.

Platform-owned apps and managed identities are never in these reports: nobody in the
company can act on them. App names are attacker-controlled: HTML escapes them and CSV
defuses spreadsheet formulas.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlmodel import Session, col, select

from recert import links
from recert.catalog import Catalog
from recert.config import Settings
from recert.models import EnforcementAction, Ownership, Principal, Tenant
from recert.risk import is_stale
from recert.store import grouped

REPORTS = ("orphans", "stale", "risky", "uncataloged", "enforcement")
TITLES = {
    "orphans": "Orphaned apps: no accountable, active owner",
    "stale": "Stale apps: no use in the provider's records",
    "risky": "Risky apps: broad permissions, long-lived secrets, tenant-wide consent",
    "uncataloged": "Apps missing from the catalog",
    "enforcement": "Enforcement: changes that failed for good or wait for a retry",
}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

_templates = Environment(
    loader=PackageLoader("recert", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _reviewable(session: Session, tenant: str | None) -> list[tuple[Principal, str]]:
    query = (
        select(Principal, Tenant.name)
        .join(Tenant, col(Tenant.id) == Principal.tenant_id)
        .where(
            Principal.status != "deleted",
            col(Principal.platform_owned).is_(False),
            Principal.kind != "managed_identity",
        )
        .order_by(Tenant.name, Principal.kind, Principal.display_name, Principal.external_id)
    )
    if tenant:
        query = query.where(Tenant.name == tenant)
    return [(p, name) for p, name in session.exec(query).all()]


def _base(principal: Principal, tenant: str) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "kind": principal.kind,
        "external_id": principal.external_id,
        "display_name": principal.display_name,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def orphans(
    session: Session, settings: Settings, now: datetime, tenant: str | None = None
) -> list[dict[str, Any]]:
    rows = _reviewable(session, tenant)
    owners = grouped(session, Ownership, [p.id for p, _ in rows])
    report = []
    for principal, name in rows:
        orphan = next((o for o in owners[principal.id or 0] if o.orphan_reason), None)
        if orphan:
            report.append(
                {
                    **_base(principal, name),
                    "reason": orphan.orphan_reason,
                    "evidence": orphan.evidence,
                }
            )
    return report


def stale(
    session: Session, settings: Settings, now: datetime, tenant: str | None = None
) -> list[dict[str, Any]]:
    days = settings.risk.stale_days
    report = []
    for principal, name in _reviewable(session, tenant):
        if not is_stale(principal, days, now):
            continue
        since = principal.last_used_at or principal.activity_window_start
        report.append(
            {
                **_base(principal, name),
                "last_used_at": _iso(principal.last_used_at),
                "activity_known_since": _iso(principal.activity_window_start),
                "days_unused": (now - since).days if since else None,
            }
        )
    return report


def risky(
    session: Session, settings: Settings, now: datetime, tenant: str | None = None
) -> list[dict[str, Any]]:
    rank = {"high": 0, "medium": 1}
    rows = [
        {**_base(p, name), "risk": p.risk, "reasons": list(p.risk_reasons)}
        for p, name in _reviewable(session, tenant)
        if p.risk in rank
    ]
    return sorted(rows, key=lambda r: (rank[r["risk"]], r["tenant"], r["display_name"]))


def uncataloged(
    session: Session,
    settings: Settings,
    now: datetime,
    tenant: str | None = None,
    catalog: Catalog | None = None,
) -> list[dict[str, Any]]:
    catalog = catalog or Catalog((), ())
    rows = _reviewable(session, tenant)
    owners = grouped(session, Ownership, [p.id for p, _ in rows])
    report = []
    for principal, name in rows:
        if catalog.match(name, (principal.external_id, principal.app_id)):
            continue
        owner = next((o.email for o in owners[principal.id or 0] if o.email), None)
        report.append({**_base(principal, name), "owner": owner, "risk": principal.risk})
    return report


def enforcement(
    session: Session, settings: Settings, now: datetime, tenant: str | None = None
) -> list[dict[str, Any]]:
    """Changes Recert could not make: never dropped, listed until the IAM team acts."""
    query = (
        select(EnforcementAction)
        .where(col(EnforcementAction.status).in_(["failed", "retrying", "in_progress"]))
        .order_by(EnforcementAction.tenant, col(EnforcementAction.id))
    )
    if tenant:
        query = query.where(EnforcementAction.tenant == tenant)
    return [
        {
            "tenant": row.tenant,
            "kind": row.kind,
            "external_id": row.external_id,
            "display_name": row.display_name,
            "action": row.action,
            "permission": row.permission,
            "status": row.status,
            "attempts": row.attempts,
            "error": row.error,
            "reason": row.reason,
            "since": _iso(row.created_at),
        }
        for row in session.exec(query)
    ]


def build(
    kind: str,
    session: Session,
    settings: Settings,
    now: datetime,
    tenant: str | None = None,
    catalog: Catalog | None = None,
) -> list[dict[str, Any]]:
    builders: dict[str, Callable[..., list[dict[str, Any]]]] = {
        "orphans": orphans,
        "stale": stale,
        "risky": risky,
        "enforcement": enforcement,
    }
    if kind == "uncataloged":
        return uncataloged(session, settings, now, tenant, catalog)
    return builders[kind](session, settings, now, tenant)


def render(kind: str, rows: list[dict[str, Any]], output: str, now: datetime) -> str:
    if output == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False)
    if output == "csv":
        return to_csv(rows)
    columns = list(rows[0]) if rows else ["tenant", "kind", "external_id", "display_name"]
    return _templates.get_template("report.html").render(
        title=TITLES[kind], rows=rows, columns=columns, generated_at=now.isoformat()
    )


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if not rows:
        return ""
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buffer.getvalue()


def _cell(value: Any) -> str:
    text = (
        "; ".join(map(str, value))
        if isinstance(value, list)
        else ""
        if value is None
        else str(value)
    )
    return "'" + text if text.startswith(_FORMULA_START) else text


REPORT_LINK_DAYS = 7


def report_url(settings: Settings, now: datetime, days: int = REPORT_LINK_DAYS) -> str:
    """A signed link to the report pages for the IAM team, valid for `days`."""
    link = links.ReviewLink(0, settings.iam_email.lower(), now + timedelta(days=days))
    token = links.sign(settings.signing_key(), link, links.REPORTS)
    return f"{settings.web.base_url.rstrip('/')}/reports/{token}"
