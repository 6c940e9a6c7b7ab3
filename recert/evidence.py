"""Step 7: the evidence bundle compliance pulls each quarter (or per campaign).

One zip of CSV and JSON tables — decisions, in-scope items with their outcome, emails,
enforcement actions, exceptions, completeness per tenant and owner, and the audit events
of the period — plus `summary.html` and `manifest.json` (the SHA-256 of every file, each
table's columns and the audit-chain segment with its head).

The same database always gives the same bytes: rows in a fixed order, JSON with sorted
keys, zip entries sorted with a fixed timestamp, and nothing read from the wall clock.
Exporting writes nothing to the database.

`verify_bundle` re-checks a zip without the database: every file against the manifest,
every CSV against its JSON twin, the audit segment hash by hash up to the recorded head,
and every decision against the `review.decided` event that recorded it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import and_, func, or_
from sqlmodel import Session, col, select

from emails.text import finalize
from recert import charts
from recert.audit import GENESIS, event_hash
from recert.clock import as_utc, parse_instant
from recert.decisions import ACTIONS
from recert.enforcement.planning import DISABLE, REMOVE_GRANT, REVOKE_CONSENT
from recert.models import (
    AuditEvent,
    AuditHead,
    Campaign,
    Decision,
    EnforcementAction,
    OutboxEmail,
    Principal,
    ReviewItem,
    Tenant,
)
from recert.reports import csv_cell

BUNDLE_FORMAT = "recert-evidence/1"
MANIFEST = "manifest.json"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: no wall clock in the bytes
_QUARTER = re.compile(r"(\d{4})Q([1-4])")
FINAL_ACTIONS = ("keep", "reduce", "revoke")  # decisions that close an item
# What enforcement changes; the rows undoing them (enable, restore_grant, restore_consent)
# name the change they reverse in reverses_id.
CHANGES = (DISABLE, REMOVE_GRANT, REVOKE_CONSENT)
# Audit events that record a Decision row: an owner's answer, or IAM assigning the item.
DECISION_EVENTS = ("review.decided", "review.assigned")


class EvidenceError(Exception):
    """Bad scope (unknown campaign, malformed quarter); the message names it."""


@dataclass(frozen=True)
class Scope:
    kind: str  # "campaign" | "quarter"
    label: str
    campaign_ids: tuple[int, ...]
    start: datetime | None  # the period, [start, end); None: open-ended
    end: datetime | None

    def covers(self, moment: datetime | None) -> bool:
        if moment is None:
            return False
        moment = as_utc(moment)
        return (self.start is None or moment >= self.start) and (
            self.end is None or moment < self.end
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "campaign_ids": list(self.campaign_ids),
            "from": _iso(self.start),
            "until": _iso(self.end),
        }


def campaign_scope(session: Session, campaign_id: int) -> Scope:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise EvidenceError(f"no campaign with id {campaign_id}")
    return Scope(
        "campaign",
        f"campaign {campaign_id}: {campaign.name}",
        (campaign_id,),
        campaign.opened_at,
        campaign.closed_at,
    )


def quarter_scope(session: Session, quarter: str) -> Scope:
    """`2026Q4`: campaigns opened from 1 October 2026 up to 1 January 2027."""
    match = _QUARTER.fullmatch(quarter.strip().upper())
    if not match:
        raise EvidenceError(f"not a quarter: {quarter!r} (expected e.g. 2026Q4)")
    year, number = int(match.group(1)), int(match.group(2))
    start = datetime(year, 3 * number - 2, 1, tzinfo=UTC)
    end = (
        datetime(year + 1, 1, 1, tzinfo=UTC)
        if number == 4
        else start.replace(month=start.month + 3)
    )
    ids = session.exec(
        select(Campaign.id)
        .where(Campaign.opened_at >= start, Campaign.opened_at < end)
        .order_by(col(Campaign.id))
    ).all()
    return Scope("quarter", f"{year}Q{number}", tuple(i for i in ids if i), start, end)


@dataclass
class Table:
    name: str
    columns: list[str]
    rows: list[dict[str, Any]]


@dataclass
class Bundle:
    scope: Scope
    tables: dict[str, Table] = field(default_factory=dict)
    chain: dict[str, Any] = field(default_factory=dict)


# --- gathering ---------------------------------------------------------------------------


def gather(session: Session, scope: Scope) -> Bundle:
    """Every table of the bundle, read from the database in a stable order."""
    bundle = Bundle(scope)
    items = _items(session, scope)
    item_ids = [row["item_id"] for row in items]
    decisions = _decisions(session, item_ids)
    enforcement = _enforcement(session, scope, item_ids)
    _add_outcomes(items, decisions, enforcement)
    events, bundle.chain = _audit_segment(session, scope, item_ids)
    for table in (
        _campaigns(session, scope, items),
        Table("items", ITEM_COLUMNS, items),
        Table("decisions", DECISION_COLUMNS, decisions),
        _emails(session, scope),
        enforcement,
        _exceptions(session, scope, enforcement),
        _completeness(items, decisions, "tenant"),
        _completeness(items, decisions, "owner"),
        Table("audit_events", AUDIT_COLUMNS, events),
    ):
        bundle.tables[table.name] = table
    return bundle


def _iso(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat() if moment else None


def _principals(session: Session, ids: Iterable[int]) -> dict[int, tuple[Principal, Tenant]]:
    wanted = sorted(set(ids))
    rows = session.exec(
        select(Principal, Tenant)
        .join(Tenant, col(Tenant.id) == Principal.tenant_id)
        .where(col(Principal.id).in_(wanted))
    ).all()
    return {p.id or 0: (p, t) for p, t in rows}


def _campaigns(session: Session, scope: Scope, items: list[dict[str, Any]]) -> Table:
    counts = Counter(row["campaign_id"] for row in items)
    rows = [
        {
            "campaign_id": c.id,
            "name": c.name,
            "opened_at": _iso(c.opened_at),
            "due_at": _iso(c.due_at),
            "closed_at": _iso(c.closed_at),
            "scope_tenants": sorted(c.scope.get("tenants") or []),
            "scope_kinds": sorted(c.scope.get("kinds") or []),
            "scope_risks": sorted(c.scope.get("risks") or []),
            "items": counts[c.id],
        }
        for c in session.exec(
            select(Campaign)
            .where(col(Campaign.id).in_(scope.campaign_ids))
            .order_by(col(Campaign.id))
        )
    ]
    return Table("campaigns", CAMPAIGN_COLUMNS, rows)


CAMPAIGN_COLUMNS = [
    "campaign_id",
    "name",
    "opened_at",
    "due_at",
    "closed_at",
    "scope_tenants",
    "scope_kinds",
    "scope_risks",
    "items",
]
ITEM_COLUMNS = [
    "campaign_id",
    "item_id",
    "tenant",
    "kind",
    "external_id",
    "display_name",
    "risk",
    "owner",
    "owner_source",
    "consenting_user",
    "status",
    "due_at",
    "outcome",
    "decided_by",
    "decided_at",
    "decided_in_time",
    "escalated",
    "enforced",
]


def _items(session: Session, scope: Scope) -> list[dict[str, Any]]:
    items = session.exec(
        select(ReviewItem)
        .where(col(ReviewItem.campaign_id).in_(scope.campaign_ids))
        .order_by(col(ReviewItem.campaign_id), col(ReviewItem.id))
    ).all()
    principals = _principals(session, (i.principal_id for i in items))
    rows = []
    for item in items:
        principal, tenant = principals[item.principal_id]
        rows.append(
            {
                "campaign_id": item.campaign_id,
                "item_id": item.id,
                "tenant": tenant.name,
                "kind": principal.kind,
                "external_id": principal.external_id,
                "display_name": principal.display_name,
                "risk": principal.risk,
                "owner": item.reviewer_email,
                "owner_source": item.owner_source,
                "consenting_user": item.consenting_user,
                "status": item.status,
                "due_at": _iso(item.due_at),
                "outcome": "",
                "decided_by": None,
                "decided_at": None,
                "decided_in_time": False,
                "escalated": item.status == "escalated"
                or item.owner_source in ("bounced", "not_mine"),
                "enforced": item.status == "enforced",
            }
        )
    return rows


DECISION_COLUMNS = [
    "decision_id",
    "item_id",
    "tenant",
    "external_id",
    "display_name",
    "action",
    "justification",
    "dropped_permissions",
    "new_owner",
    "decided_by",
    "decided_at",
    "source_ip",
    "user_agent",
]


def _decisions(session: Session, item_ids: list[int]) -> list[dict[str, Any]]:
    rows = session.exec(
        select(Decision, ReviewItem.principal_id)
        .join(ReviewItem, col(ReviewItem.id) == Decision.review_item_id)
        .where(col(Decision.review_item_id).in_(item_ids))
        .order_by(col(Decision.decided_at), col(Decision.id))
    ).all()
    principals = _principals(session, (pid for _, pid in rows))
    result = []
    for decision, principal_id in rows:
        principal, tenant = principals[principal_id]
        result.append(
            {
                "decision_id": decision.id,
                "item_id": decision.review_item_id,
                "tenant": tenant.name,
                "external_id": principal.external_id,
                "display_name": principal.display_name,
                "action": decision.action,
                "justification": decision.justification,
                "dropped_permissions": list(decision.dropped_permissions),
                "new_owner": decision.new_owner_email,
                "decided_by": decision.decided_by,
                "decided_at": _iso(decision.decided_at),
                "source_ip": decision.source_ip,
                "user_agent": decision.user_agent,
            }
        )
    return result


def _add_outcomes(
    items: list[dict[str, Any]], decisions: list[dict[str, Any]], enforcement: Table
) -> None:
    """Each item's outcome: what enforcement did to it (and whether that was undone), its
    decision in force, or why it is still open."""
    latest = {row["item_id"]: row for row in decisions}
    rows_of: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in enforcement.rows:
        if row.get("review_item_id"):
            rows_of[row["review_item_id"]].append(row)
    for item in items:
        decision = latest.get(item["item_id"])
        if decision is not None:
            item["decided_by"], item["decided_at"] = decision["decided_by"], decision["decided_at"]
            final = decision["action"] in FINAL_ACTIONS and item["status"] != "pending"
            in_time = parse_instant(decision["decided_at"]) <= parse_instant(item["due_at"])
            item["decided_in_time"] = final and in_time
        rows = rows_of.get(item["item_id"], [])
        refusals = [row["rule"] or row["reason"] for row in rows if row["status"] == "refused"]
        if changed := _enforcement_outcome(rows):
            item["outcome"] = changed
        elif item["enforced"]:  # settled by the disable of the same app's other item
            item["outcome"] = "enforced"
        elif decision is not None and item["status"] == "decided":
            item["outcome"] = decision["action"]
        elif item["escalated"]:
            item["outcome"] = "escalated to the IAM team"
        elif refusals:
            item["outcome"] = f"enforcement refused: {', '.join(sorted(set(refusals)))}"
        else:
            item["outcome"] = "not decided"


def _enforcement_outcome(rows: list[dict[str, Any]]) -> str:
    """What enforcement did to one item, in the words of its rows: the changes done (and
    who undid them), the failed ones and those still being retried; "" when none."""
    undone_by = {
        row["reverses_id"]: row["performed_by"]
        for row in rows
        if row.get("reverses_id") and row["status"] == "done"
    }
    parts: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row["action"] not in CHANGES:
            continue
        if row["status"] == "done" and row["id"] in undone_by:
            parts["enforced"].append(f"{row['action']} (undone by {undone_by[row['id']]})")
        elif row["status"] == "done":
            parts["enforced"].append(row["action"])
        elif row["status"] == "failed":
            parts["enforcement failed"].append(row["action"])
        elif row["status"] in ("retrying", "in_progress"):
            parts["enforcement pending"].append(row["action"])
    return "; ".join(
        f"{what}: {', '.join(sorted(set(actions)))}" for what, actions in parts.items()
    )


EMAIL_COLUMNS = [
    "email_id",
    "campaign_id",
    "kind",
    "recipient",
    "cc",
    "subject",
    "created_at",
    "sent_at",
    "message_id",
    "status",
    "attempts",
    "last_error",
]


def _emails(session: Session, scope: Scope) -> Table:
    query = select(OutboxEmail).order_by(col(OutboxEmail.created_at), col(OutboxEmail.id))
    in_campaigns = col(OutboxEmail.campaign_id).in_(scope.campaign_ids)
    if scope.kind == "quarter":
        assert scope.start is not None
        assert scope.end is not None
        in_period = (col(OutboxEmail.created_at) >= scope.start) & (
            col(OutboxEmail.created_at) < scope.end
        )
        query = query.where(or_(in_campaigns, in_period))
    else:
        query = query.where(in_campaigns)
    rows = [
        {
            "email_id": row.id,
            "campaign_id": row.campaign_id,
            "kind": row.kind,
            "recipient": row.recipient,
            "cc": list(row.cc),
            "subject": row.subject,
            "created_at": _iso(row.created_at),
            "sent_at": _iso(row.sent_at),
            "message_id": row.message_id,
            "status": row.status,
            "attempts": row.attempts,
            "last_error": row.last_error,
        }
        for row in session.exec(query)
    ]
    return Table("emails", EMAIL_COLUMNS, rows)


def enforcement_columns() -> list[str]:
    """Every column of the enforcement table, so columns added to it flow through."""
    names = [column.name for column in EnforcementAction.__table__.columns]  # type: ignore[attr-defined]
    return ["tenant", "kind", "external_id", "display_name", *names]


def _enforcement(session: Session, scope: Scope, item_ids: list[int]) -> Table:
    columns = enforcement_columns()
    in_items = col(EnforcementAction.review_item_id).in_(item_ids)
    query = select(EnforcementAction).order_by(col(EnforcementAction.id))
    if scope.kind == "quarter":
        assert scope.start is not None
        assert scope.end is not None
        performed = col(EnforcementAction.performed_at)
        query = query.where(or_(in_items, (performed >= scope.start) & (performed < scope.end)))
    else:
        query = query.where(in_items)
    actions = session.exec(query).all()
    principals = _principals(session, (a.principal_id for a in actions))
    rows = []
    for action in actions:
        principal, tenant = principals[action.principal_id]
        row: dict[str, Any] = {
            "tenant": tenant.name,
            "kind": principal.kind,
            "external_id": principal.external_id,
            "display_name": principal.display_name,
        }
        for name in columns[4:]:
            value = getattr(action, name)
            row[name] = _iso(value) if isinstance(value, datetime) else value
        rows.append(row)
    return Table("enforcement", columns, rows)


EXCEPTION_COLUMNS = ["tenant", "kind", "external_id", "display_name", "exception", "rule"]
_EXCEPTION_RULES = {
    "platform_owned": "owned by the identity provider itself: never reviewed or disabled",
    "managed_identity": "an Azure managed identity: never reviewed or disabled",
    "protected": "on the tenant's protected list: never reviewed or disabled",
}


def _exceptions(session: Session, scope: Scope, enforcement: Table) -> Table:
    """Apps kept out of review by rule, and enforcement refused by a safety rule."""
    scoped = [
        campaign.scope.get("tenants") or []
        for campaign in session.exec(
            select(Campaign).where(col(Campaign.id).in_(scope.campaign_ids))
        )
    ]
    # Only the tenants the campaigns reviewed; a campaign over every tenant covers all.
    tenants = set() if not scoped or not all(scoped) else {n for names in scoped for n in names}
    query = (
        select(Principal, Tenant.name)
        .join(Tenant, col(Tenant.id) == Principal.tenant_id)
        .where(
            Principal.status != "deleted",
            or_(
                col(Principal.platform_owned).is_(True),
                col(Principal.protected).is_(True),
                col(Principal.kind) == "managed_identity",
            ),
        )
        .order_by(Tenant.name, Principal.kind, Principal.external_id)
    )
    if tenants:
        query = query.where(col(Tenant.name).in_(sorted(tenants)))
    rows = []
    for principal, tenant in session.exec(query):
        if principal.protected:
            exception = "protected"
        elif principal.kind == "managed_identity":
            exception = "managed_identity"
        else:
            exception = "platform_owned"
        rows.append(
            {
                "tenant": tenant,
                "kind": principal.kind,
                "external_id": principal.external_id,
                "display_name": principal.display_name,
                "exception": exception,
                "rule": _EXCEPTION_RULES[exception],
            }
        )
    for action in enforcement.rows:
        if action.get("status") == "refused":
            rows.append(
                {
                    "tenant": action["tenant"],
                    "kind": action["kind"],
                    "external_id": action["external_id"],
                    "display_name": action["display_name"],
                    "exception": "refused",
                    "rule": action.get("rule") or action.get("reason") or "",
                }
            )
    return Table("exceptions", EXCEPTION_COLUMNS, rows)


COMPLETENESS_COUNTS = [
    "items",
    "decided",
    "decided_in_time",
    "decided_late",
    "escalated",
    "enforced",
    "open",
]


def _completeness(items: list[dict[str, Any]], decisions: list[dict[str, Any]], by: str) -> Table:
    latest = {row["item_id"]: row["action"] for row in decisions}
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for item in items:
        counter = counts[item[by]]
        counter["items"] += 1
        # An item enforced after its owner chose to revoke or reduce it was decided too.
        answered = latest.get(item["item_id"]) in FINAL_ACTIONS
        decided = item["status"] == "decided" or (item["enforced"] and answered)
        counter["decided"] += decided
        counter["decided_in_time"] += decided and item["decided_in_time"]
        counter["decided_late"] += decided and not item["decided_in_time"]
        counter["escalated"] += item["escalated"]
        counter["enforced"] += item["enforced"]
        counter["open"] += not decided and not item["enforced"]
    rows = []
    for key in sorted(counts):
        counter = counts[key]
        row: dict[str, Any] = {by: key, **{name: counter[name] for name in COMPLETENESS_COUNTS}}
        finished = counter["items"] - counter["open"]
        row["completion"] = f"{finished / counter['items']:.3f}"
        rows.append(row)
    columns = [by, *COMPLETENESS_COUNTS, "completion"]
    return Table(f"completeness_by_{by}", columns, rows)


AUDIT_COLUMNS = [
    "seq",
    "occurred_at",
    "actor",
    "action",
    "subject_type",
    "subject_id",
    "tenant",
    "data",
    "prev_hash",
    "hash",
]


def _audit_segment(
    session: Session, scope: Scope, item_ids: list[int]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The contiguous run of the chain from the period's first event to its last, widened
    to cover the events that recorded this scope's decisions and campaigns."""
    occurred = col(AuditEvent.occurred_at)
    related = or_(
        (col(AuditEvent.subject_type) == "review_item")
        & col(AuditEvent.subject_id).in_([str(i) for i in item_ids]),
        (col(AuditEvent.subject_type) == "campaign")
        & col(AuditEvent.subject_id).in_([str(i) for i in scope.campaign_ids]),
    )
    period = [occurred >= scope.start] if scope.start else []
    if scope.end:
        period.append(occurred < scope.end)
    wanted = or_(related, and_(*period)) if period else related
    bounds = session.exec(select(func.min(AuditEvent.seq), func.max(AuditEvent.seq)).where(wanted))
    first, last = bounds.one()
    head = session.get(AuditHead, 1)
    database_head = {"seq": head.seq if head else 0, "hash": head.hash if head else GENESIS}
    if first is None or last is None:
        chain = {
            "first_seq": None,
            "last_seq": None,
            "events": 0,
            "start_prev_hash": database_head["hash"],
            "head_hash": database_head["hash"],
            "database_head": database_head,
        }
        return [], chain
    query = (
        select(AuditEvent)
        .where(AuditEvent.seq >= first, AuditEvent.seq <= last)
        .order_by(col(AuditEvent.seq))
    )
    events = [_event_row(event) for event in session.exec(query)]
    chain = {
        "first_seq": events[0]["seq"],
        "last_seq": events[-1]["seq"],
        "events": len(events),
        "start_prev_hash": events[0]["prev_hash"],
        "head_hash": events[-1]["hash"],
        "database_head": database_head,
    }
    return events, chain


def _event_row(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "occurred_at": _iso(event.occurred_at),
        "actor": event.actor,
        "action": event.action,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "tenant": event.tenant,
        "data": event.data,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


# --- files -------------------------------------------------------------------------------


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _csv_value(value: Any) -> str:
    if isinstance(value, dict):
        return csv_cell(json.dumps(value, sort_keys=True, separators=(",", ":")))
    if isinstance(value, bool):
        return "true" if value else "false"
    return csv_cell(value)


def csv_bytes(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> bytes:
    """The CSV twin of a JSON table: spreadsheet formulas defused, lists joined by "; "."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(row.get(column)) for column in columns])
    return buffer.getvalue().encode()


def files(bundle: Bundle) -> dict[str, bytes]:
    """Every file of the bundle, manifest included, by name."""
    contents: dict[str, bytes] = {}
    for table in bundle.tables.values():
        contents[f"{table.name}.json"] = _json_bytes(table.rows)
        contents[f"{table.name}.csv"] = csv_bytes(table.columns, table.rows)
    contents["summary.html"] = summary_html(bundle).encode()
    manifest = {
        "format": BUNDLE_FORMAT,
        "scope": bundle.scope.as_dict(),
        "chain": bundle.chain,
        "tables": {name: table.columns for name, table in sorted(bundle.tables.items())},
        "files": {name: _sha256(data) for name, data in sorted(contents.items())},
    }
    contents[MANIFEST] = _json_bytes(manifest)
    return contents


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zip_bytes(contents: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(contents):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, whatever the exporting machine
            info.external_attr = 0o644 << 16
            archive.writestr(info, contents[name], compresslevel=6)
    return buffer.getvalue()


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    scope: Scope
    files: int
    counts: dict[str, int]
    chain: dict[str, Any]
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "scope": self.scope.as_dict(),
            "files": self.files,
            "rows": self.counts,
            "chain": self.chain,
            "sha256": self.sha256,
        }


def export(session: Session, scope: Scope, path: Path) -> ExportSummary:
    """Write the bundle to `path` (atomically: a half-written zip never has its name)."""
    bundle = gather(session, scope)
    contents = files(bundle)
    data = zip_bytes(contents)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
    counts = {name: len(table.rows) for name, table in bundle.tables.items()}
    return ExportSummary(path, scope, len(contents), counts, bundle.chain, _sha256(data))


# --- summary.html --------------------------------------------------------------------------

_templates = Environment(
    loader=PackageLoader("recert", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
    finalize=finalize,
)


def summary_html(bundle: Bundle) -> str:
    tables = bundle.tables
    decisions = Counter(row["action"] for row in tables["decisions"].rows)
    per_tenant = tables["completeness_by_tenant"].rows
    emails = Counter(row["status"] for row in tables["emails"].rows)
    items = tables["items"].rows
    totals = {name: sum(row[name] for row in per_tenant) for name in COMPLETENESS_COUNTS}
    titled: list[tuple[str, list[tuple[str, float]]]] = [
        ("Decisions by kind", [(_ACTION_WORDS[a], decisions[a]) for a in ACTIONS if decisions[a]]),
        (
            "Completion per tenant",
            [(r["tenant"], 100 * float(r["completion"])) for r in per_tenant],
        ),
    ]
    chart_list = [
        (title, charts.bar_chart(title, bars, percent=index == 1, color=charts.PALETTE[index]))
        for index, (title, bars) in enumerate(titled)
    ]
    chart_list += [
        (title, charts.pie_chart(title, sorted(counts.items()), empty=empty))
        for title, counts, empty in (
            ("Emails by delivery status", emails, "No email was sent."),
            (
                "Items by outcome",
                Counter(_ACTION_WORDS.get(r["outcome"], r["outcome"]) for r in items),
                "No item in scope.",
            ),
        )
    ]
    return _templates.get_template("evidence_summary.html").render(
        scope=bundle.scope,
        chain=bundle.chain,
        campaigns=tables["campaigns"].rows,
        per_tenant=per_tenant,
        per_owner=tables["completeness_by_owner"].rows,
        totals=totals,
        charts=chart_list,
        counts={name: len(table.rows) for name, table in sorted(tables.items())},
        exceptions=Counter(row["exception"] for row in tables["exceptions"].rows),
        enforcement=Counter(
            f"{row.get('action')} ({row.get('status')})" for row in tables["enforcement"].rows
        ),
    )


_ACTION_WORDS = {
    "keep": "Kept",
    "reduce": "Reduced",
    "revoke": "Revoked",
    "reassign": "Handed over",
    "not_mine": "Not mine",
}


# --- verify --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleCheck:
    ok: bool
    problem: str | None = None
    files: int = 0
    events: int = 0
    head: str | None = None
    scope: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problem": self.problem,
            "files": self.files,
            "audit_events": self.events,
            "head": self.head,
            "scope": self.scope,
        }


class _Mismatch(Exception):
    pass


def verify_bundle(path: Path) -> BundleCheck:
    """Check the zip on its own; the first mismatch found is named in `problem`."""
    try:
        with zipfile.ZipFile(path) as archive:
            contents = {name: archive.read(name) for name in archive.namelist()}
    except (OSError, zipfile.BadZipFile) as error:
        return BundleCheck(False, f"{path}: not a readable zip ({error})")
    try:
        manifest = _manifest(contents)
        _check_files(contents, manifest)
        tables = _check_tables(contents, manifest)
        _check_chain(tables["audit_events"], manifest["chain"])
        _check_decisions(tables["decisions"], tables["audit_events"])
    except _Mismatch as mismatch:
        return BundleCheck(False, str(mismatch))
    return BundleCheck(
        True,
        files=len(contents),
        events=len(tables["audit_events"]),
        head=manifest["chain"]["head_hash"],
        scope=manifest["scope"],
    )


def _manifest(contents: Mapping[str, bytes]) -> dict[str, Any]:
    if MANIFEST not in contents:
        raise _Mismatch(f"{MANIFEST}: missing from the bundle")
    try:
        manifest = json.loads(contents[MANIFEST])
        well_formed = manifest["format"] == BUNDLE_FORMAT and all(
            isinstance(manifest[key], dict) for key in ("files", "tables", "chain")
        )
    except (ValueError, KeyError, TypeError):
        well_formed = False
    if not well_formed:
        raise _Mismatch(f"{MANIFEST}: not a {BUNDLE_FORMAT} manifest")
    return dict(manifest)


def _check_files(contents: Mapping[str, bytes], manifest: Mapping[str, Any]) -> None:
    listed: dict[str, str] = manifest["files"]
    present = set(contents) - {MANIFEST}
    for name in sorted(set(listed) | present):
        if name not in present:
            raise _Mismatch(f"{name}: listed in the manifest but missing from the bundle")
        if name not in listed:
            raise _Mismatch(f"{name}: in the bundle but not in the manifest (added)")
        if _sha256(contents[name]) != listed[name]:
            raise _Mismatch(f"{name}: its SHA-256 does not match the manifest (edited)")


def _check_tables(
    contents: Mapping[str, bytes], manifest: Mapping[str, Any]
) -> dict[str, list[dict[str, Any]]]:
    """Each table's JSON parses and its CSV is exactly the CSV of that JSON."""
    tables: dict[str, list[dict[str, Any]]] = {}
    for name in ("audit_events", "decisions"):
        if name not in manifest["tables"]:
            raise _Mismatch(f"{MANIFEST}: the {name} table is not listed")
    for name, columns in sorted(manifest["tables"].items()):
        try:
            rows = json.loads(contents[f"{name}.json"])
        except (KeyError, ValueError):
            rows = None
        if not isinstance(rows, list):
            raise _Mismatch(f"{name}.json: missing or not a JSON list")
        if csv_bytes(columns, rows) != contents.get(f"{name}.csv"):
            raise _Mismatch(f"{name}.csv: does not match {name}.json")
        tables[name] = rows
    return tables


def _check_chain(events: list[dict[str, Any]], chain: Mapping[str, Any]) -> None:
    """Recompute every hash from the segment's first prev_hash to the recorded head."""
    expected_prev = chain.get("start_prev_hash")
    expected_seq = chain.get("first_seq")
    for row in events:
        seq = row.get("seq")
        if seq != expected_seq:
            raise _Mismatch(
                f"audit_events.json: expected event {expected_seq} next, found {seq} "
                "(events removed or reordered)"
            )
        if row.get("prev_hash") != expected_prev:
            raise _Mismatch(
                f"audit event {seq}: its prev_hash does not match the event before it "
                "(the chain is broken)"
            )
        try:
            recomputed = event_hash(_as_event(row))
        except (KeyError, TypeError, ValueError):
            raise _Mismatch(f"audit event {seq}: malformed") from None
        if recomputed != row.get("hash"):
            raise _Mismatch(f"audit event {seq}: its content does not match its hash (edited)")
        expected_prev, expected_seq = row["hash"], int(row["seq"]) + 1
    if len(events) != chain.get("events") or expected_prev != chain.get("head_hash"):
        raise _Mismatch(
            f"audit_events.json: the segment does not end at the recorded head "
            f"{chain.get('head_hash')} (events removed from the end)"
        )


def _as_event(row: Mapping[str, Any]) -> AuditEvent:
    return AuditEvent(
        seq=int(row["seq"]),
        occurred_at=parse_instant(str(row["occurred_at"])),
        actor=row["actor"],
        action=row["action"],
        subject_type=row["subject_type"],
        subject_id=row["subject_id"],
        tenant=row["tenant"],
        data=row["data"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def _check_decisions(decisions: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
    """Each decision must be the one its `review.decided` audit event recorded."""
    recorded = Counter(
        (
            str(event.get("subject_id")),
            event.get("actor"),
            event["data"].get("decision"),
            event["data"].get("justification"),
        )
        for event in events
        if event.get("action") in DECISION_EVENTS and isinstance(event.get("data"), dict)
    )
    for decision in decisions:
        key = (
            str(decision.get("item_id")),
            decision.get("decided_by"),
            decision.get("action"),
            decision.get("justification"),
        )
        if recorded[key] <= 0:
            raise _Mismatch(
                f"decisions.json: decision {decision.get('decision_id')} on item "
                f"{decision.get('item_id')} does not match the audit event that recorded it"
            )
        recorded[key] -= 1
