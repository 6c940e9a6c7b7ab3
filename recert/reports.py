"""IAM reports: orphaned, stale, risky and uncataloged apps, as CSV, JSON or HTML.

Platform-owned apps and managed identities are never in these reports: nobody in the
company can act on them. App names are attacker-controlled: HTML escapes them and CSV
defuses spreadsheet formulas.

`orphans` is the one orphan set: the report, the weekly email, the demo and the campaign
summary all count it. An orphan is an app in review scope whose only reviewer is the IAM
team: no owner resolved (with the resolver's reason), a user-consented app no catalog
entry claims, or, in an open campaign, an app its owner said is not theirs or whose
owner's mail bounced.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlmodel import Session, col, select

from connectors.base import LAST_USE_UNKNOWN
from emails import wording
from emails.text import finalize
from recert import links
from recert.catalog import Catalog
from recert.clock import as_utc
from recert.config import Settings
from recert.models import (
    Campaign,
    Decision,
    EnforcementAction,
    Ownership,
    Principal,
    ReviewItem,
    Tenant,
)
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
_NO_USE_DATA = {"last_used_at": None, "activity_known_since": None, "days_unused": None}


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


def _in_review_scope(session: Session, tenant: str | None) -> list[tuple[Principal, str]]:
    """What a campaign reviews: active, not protected, not platform-owned or managed."""
    return [
        (p, name)
        for p, name in _reviewable(session, tenant)
        if p.status == "active" and not p.protected
    ]


MOVED_TO_IAM = {"not_mine": "not_mine", "bounced": "owner_unreachable"}


def orphan_reason(owners: list[Ownership], moved: str | None = None) -> tuple[str, str] | None:
    """(reason, evidence) when the IAM team is an app's only reviewer, else None.

    `moved` is the owner_source of the app's review item in an open campaign."""
    if moved in MOVED_TO_IAM:
        return MOVED_TO_IAM[moved], ""
    orphan = next((o for o in owners if o.orphan_reason), None)
    if orphan:
        return orphan.orphan_reason or "no_owner", orphan.evidence
    named = [o for o in owners if o.email]
    if named and all(o.source == "iam_team" for o in named):
        return "user_consented", named[0].evidence
    return None


def app_orphan_reason(
    owners: list[Ownership], moved: tuple[str, str] | None
) -> tuple[str, str] | None:
    """(reason, evidence) of an app in the one orphan set; `moved` is its entry in
    `moved_to_iam`, if an open campaign moved it to the IAM team."""
    source, moved_evidence = moved or (None, "")
    found = orphan_reason(owners, source)
    return (found[0], moved_evidence or found[1]) if found else None


def moved_to_iam(
    session: Session, iam_email: str, ids: Sequence[int | None]
) -> dict[int, tuple[str, str]]:
    """Apps an open campaign moved to the IAM team ("not mine", bounced), with evidence."""
    query = (
        select(ReviewItem, Campaign.name)
        .join(Campaign, col(Campaign.id) == ReviewItem.campaign_id)
        .where(
            col(Campaign.closed_at).is_(None),
            ReviewItem.consenting_user == "",
            ReviewItem.reviewer_email == iam_email.lower(),
            col(ReviewItem.owner_source).in_(list(MOVED_TO_IAM)),
            col(ReviewItem.principal_id).in_(ids),
        )
        .order_by(col(ReviewItem.id))
    )
    found = session.exec(query).all()
    said = {
        d.review_item_id: d.decided_by
        for d in session.exec(
            select(Decision)
            .where(
                Decision.action == "not_mine",
                col(Decision.review_item_id).in_([item.id for item, _ in found]),
            )
            .order_by(col(Decision.decided_at))
        )
    }
    moved: dict[int, tuple[str, str]] = {}
    for item, campaign in found:
        if item.owner_source == "not_mine":
            who = said.get(item.id or 0, "its reviewer")
            evidence = f"in {campaign!r}, {who} said it is not theirs"
        else:
            evidence = f"in {campaign!r}, mail to its owner bounced"
        moved[item.principal_id] = (item.owner_source, evidence)
    return moved


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
    """The one orphan set (see the module docstring), each with its reason and evidence."""
    rows = _in_review_scope(session, tenant)
    ids = [p.id for p, _ in rows]
    owners = grouped(session, Ownership, ids)
    moved = moved_to_iam(session, settings.iam_email, ids)
    report = []
    for principal, name in rows:
        found = app_orphan_reason(owners[principal.id or 0], moved.get(principal.id or 0))
        if found:
            reason, evidence = found
            report.append({**_base(principal, name), "reason": reason, "evidence": evidence})
    return report


def stale(
    session: Session, settings: Settings, now: datetime, tenant: str | None = None
) -> list[dict[str, Any]]:
    """Stale apps, then apps whose last use the provider cannot report (`days_unused` null,
    `last_use_unknown` says why): their silence is not disuse."""
    days = settings.risk.stale_days
    report, unknown = [], []
    for principal, name in _reviewable(session, tenant):
        why = principal.raw.get(LAST_USE_UNKNOWN)
        if why:
            unknown.append({**_base(principal, name), **_NO_USE_DATA, "last_use_unknown": why})
            continue
        if not is_stale(principal, days, now):
            continue
        since = principal.last_used_at or principal.activity_window_start
        report.append(
            {
                **_base(principal, name),
                "last_used_at": _iso(principal.last_used_at),
                "activity_known_since": _iso(principal.activity_window_start),
                "days_unused": (now - since).days if since else None,
                "last_use_unknown": None,
            }
        )
    return report + unknown


def risky(
    session: Session, settings: Settings, now: datetime, tenant: str | None = None
) -> list[dict[str, Any]]:
    rank = {"high": 0, "medium": 1}
    rows = [
        {
            **_base(p, name),
            "risk": p.risk,
            "reasons": list(p.risk_reasons),
            "last_use_unknown": p.raw.get(LAST_USE_UNKNOWN),
        }
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


COLUMN_LABELS = {
    "tenant": "Tenant",
    "kind": "Kind",
    "external_id": "ID",
    "display_name": "Name",
    "reason": "Why orphaned",
    "evidence": "Evidence",
    "last_used_at": "Last used",
    "activity_known_since": "Use recorded since",
    "days_unused": "Days unused",
    "risk": "Risk",
    "reasons": "Why",
    "owner": "Owner",
}
REASON_LABELS = {
    "no_owner": "No owner recorded",
    "owner_departed": "Owner has left",
    "owner_unresolvable": "Owner not found",
    "owner_is_app": "Owner is an app",
}
RISK_LABELS = {"high": "High", "medium": "Medium", "low": "Low"}
_DATE_COLUMNS = {"last_used_at", "activity_known_since"}
_RISK_ORDER = {"high": 0, "medium": 1, "low": 2}
NAME_LIMIT = 120
NOTHING = "\N{EN DASH}"  # an empty cell


def short_name(value: str, limit: int = NAME_LIMIT) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _html_environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("recert", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=finalize,
    )
    environment.filters.update(short=short_name)
    return environment


_templates = _html_environment()


def when(value: str | datetime | None) -> str:
    """'2026-12-04 09:30 UTC': no seconds, no microseconds, always UTC."""
    if value is None:
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return f"{as_utc(moment):%Y-%m-%d %H:%M} UTC"


def shown(column: str, value: Any) -> str:
    """A report cell in words: human labels for codes, short dates, joined lists."""
    if value is None:
        return NOTHING
    if column == "kind":
        return wording.KINDS.get(value, str(value))
    if column == "reason":
        return REASON_LABELS.get(value, str(value))
    if column == "risk":
        return RISK_LABELS.get(value, str(value))
    if column in _DATE_COLUMNS:
        return when(value)
    if isinstance(value, list):
        return "; ".join(map(str, value))
    return str(value)


def sort_rows(rows: list[dict[str, Any]], column: str, descending: bool) -> list[dict[str, Any]]:
    """Rows ordered by one column; empty cells always last, ties in the report's order."""

    def key(row: dict[str, Any]) -> tuple[int, Any]:
        value = row.get(column)
        if value is None or value == "":
            return (1, "")
        if column == "risk":
            return (0, _RISK_ORDER.get(value, 3))
        if isinstance(value, int | float):
            return (0, value)
        return (0, shown(column, value).casefold())

    filled = [row for row in rows if key(row)[0] == 0]
    empty = [row for row in rows if key(row)[0] == 1]
    return sorted(filled, key=key, reverse=descending) + empty


@dataclass(frozen=True)
class PageLinks:
    """What a served report page links to; a file written by the CLI has none."""

    back: tuple[str, str]  # (href, label)
    downloads: dict[str, str]  # label -> href
    sort_url: Callable[[str, bool], str]  # (column, descending) -> href
    sorted_by: str | None = None
    descending: bool = False


def render(
    kind: str,
    rows: list[dict[str, Any]],
    output: str,
    now: datetime,
    page: PageLinks | None = None,
) -> str:
    if output == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False)
    if output == "csv":
        return to_csv(rows)
    columns = list(rows[0]) if rows else ["tenant", "kind", "external_id", "display_name"]
    return _templates.get_template("report.html").render(
        title=TITLES[kind],
        rows=rows,
        columns=columns,
        labels=COLUMN_LABELS,
        shown=shown,
        generated_at=when(now),
        page=page,
    )


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if not rows:
        return ""
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(v) for k, v in row.items()})
    return buffer.getvalue()


def csv_cell(value: Any) -> str:
    """One CSV cell; a leading =, +, -, @ is defused so no spreadsheet runs it."""
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
