"""What the IAM console shows: read-only view objects built from the database.

Searches, filters, sorting and paging run in SQL, so a page costs the same with 60 apps
or 60,000. Everything from an identity provider stays untrusted text for the templates.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import case, func, or_
from sqlmodel import Session, col, select

from emails import wording
from recert import reports
from recert.config import Settings
from recert.decisions import latest_decisions
from recert.enforcement.planning import DISABLE
from recert.models import (
    Campaign,
    Credential,
    Decision,
    EnforcementAction,
    Grant,
    OutboxEmail,
    OwnerHint,
    Ownership,
    Principal,
    ReviewItem,
    Tenant,
)
from recert.web.page import (
    ACTION_WORDS,
    CredentialView,
    PermissionView,
    credential_view,
    last_used,
    permission_view,
)

PAGE_SIZE = 50
PAGE_SIZES = (10, 25, 50, 100)
FINAL_ACTIONS = ("keep", "reduce", "revoke")
# Why Recert holds someone accountable, said to the IAM team (the owners' page says "you").
OWNER_SOURCE_WORDS = {
    "catalog": "Named in the app catalog",
    "idp_owner": "Listed as an owner by the identity provider",
    "audit_creator": "Created it, says the audit log",
    "token_creator": "The API token is theirs",
    "rule": "Matched by a naming rule",
    "manager": "Manager of the owner who left",
    "iam_team": "The IAM team, as nobody else was found",
}
QUEUE_REASONS = {
    "orphan": "Orphan: no accountable owner",
    "not_mine": "Answered “not mine”",
    "bounced": "Owner's mail bounced",
    "iam_team": "Users consented; no catalog owner",
}
ACTION_LABELS = {
    "keep": "Kept",
    "reduce": "Reduced",
    "revoke": "Revoked",
    "reassign": "Handed over",
    "not_mine": "Not mine",
}


def kind_label(kind: str) -> str:
    return wording.KINDS.get(kind) or kind.replace("_", " ").capitalize()


def like(text: str) -> str:
    """A case-insensitive substring pattern; the user's % and _ match only themselves."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


T = TypeVar("T")


@dataclass(frozen=True)
class Paged(Generic[T]):
    rows: Sequence[T]
    total: int
    page: int
    size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def first(self) -> int:
        return 0 if not self.total else (self.page - 1) * self.size + 1

    @property
    def last(self) -> int:
        return min(self.total, self.page * self.size)


def _page_of(
    session: Session, query: Any, page: int, size: int = PAGE_SIZE
) -> tuple[list[Any], int, int]:
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    pages = max(1, -(-int(total) // size))
    page = min(max(1, page), pages)
    rows = session.exec(query.offset((page - 1) * size).limit(size)).all()
    return list(rows), int(total), page


# --- overview ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    campaigns: Sequence[Campaign]
    campaign: Campaign | None
    completion: Sequence[tuple[str, float]]
    decisions: Sequence[tuple[str, float]]
    orphans: Sequence[tuple[str, float]]
    risk: Sequence[tuple[str, float]]
    expiries: Sequence[tuple[str, float]]
    never_expire: int
    expired: int
    figures: dict[str, int] = field(default_factory=dict)


def overview(
    session: Session, settings: Settings, now: datetime, campaign_id: int | None = None
) -> Overview:
    campaigns = list(session.exec(select(Campaign).order_by(col(Campaign.opened_at).desc())))
    campaign = next((c for c in campaigns if c.id == campaign_id), None) or (
        campaigns[0] if campaigns else None
    )
    items = (
        list(session.exec(select(ReviewItem).where(ReviewItem.campaign_id == campaign.id)))
        if campaign
        else []
    )
    latest = latest_decisions(session, [i.id or 0 for i in items])
    orphans = reports.orphans(session, settings, now)
    reviewable = _reviewable(session)
    expiries, never, expired = _expiries(session, now)
    return Overview(
        campaigns=campaigns,
        campaign=campaign,
        completion=completion_by_day(session, campaign, items, now) if campaign else [],
        decisions=[
            (ACTION_LABELS[action], count)
            for action in ACTION_LABELS
            if (count := sum(1 for d in latest.values() if d.action == action))
        ],
        orphans=[
            (f"{kind_label(kind)} · {tenant}", count)
            for (tenant, kind), count in sorted(
                Counter((r["tenant"], r["kind"]) for r in orphans).items()
            )
        ],
        risk=[
            (reports.RISK_LABELS[level], count)
            for level in ("high", "medium", "low")
            if (count := sum(1 for p in reviewable if p.risk == level))
        ],
        expiries=expiries,
        never_expire=never,
        expired=expired,
        figures={
            "principals": len(reviewable),
            "orphans": len(orphans),
            "high_risk": sum(1 for p in reviewable if p.risk == "high"),
            "items": len(items),
            "decided": sum(1 for i in items if i.status == "decided"),
            "queue": _queue_query_count(session, settings),
        },
    )


def _reviewable(session: Session) -> list[Principal]:
    return list(
        session.exec(
            select(Principal).where(
                Principal.status != "deleted",
                col(Principal.platform_owned).is_(False),
                Principal.kind != "managed_identity",
            )
        )
    )


def completion_by_day(
    session: Session, campaign: Campaign, items: list[ReviewItem], now: datetime
) -> list[tuple[str, float]]:
    """Share of the campaign's items decided by the end of each day it has run."""
    if not items:
        return []
    first_final: dict[int, datetime] = {}
    for decision in session.exec(
        select(Decision)
        .where(
            col(Decision.review_item_id).in_([i.id for i in items]),
            col(Decision.action).in_(FINAL_ACTIONS),
        )
        .order_by(col(Decision.decided_at))
    ):
        first_final.setdefault(decision.review_item_id, decision.decided_at)
    stop = min(now, campaign.closed_at or campaign.due_at)
    day = campaign.opened_at.replace(hour=0, minute=0, second=0, microsecond=0)
    bars = []
    while day <= stop:
        end = day + timedelta(days=1)
        done = sum(1 for moment in first_final.values() if moment < end)
        bars.append((f"{day:%d %b}", round(100 * done / len(items), 1)))
        day = end
    return bars


def _expiries(session: Session, now: datetime) -> tuple[list[tuple[str, float]], int, int]:
    """Credentials expiring in each of the next 12 months, and those never or already."""
    rows = session.exec(
        select(Credential.expires_at)
        .join(Principal, col(Principal.id) == Credential.principal_id)
        .where(Principal.status != "deleted", col(Principal.platform_owned).is_(False))
    ).all()
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    months = []
    for offset in range(12):
        year, month = divmod(start.month - 1 + offset, 12)
        months.append(datetime(start.year + year, month + 1, 1, tzinfo=UTC))
    counts: Counter[datetime] = Counter()
    for expires in rows:
        if expires is not None and expires > now:
            bucket = datetime(expires.year, expires.month, 1, tzinfo=UTC)
            counts[bucket] += 1
    never = sum(1 for expires in rows if expires is None)
    expired = sum(1 for expires in rows if expires is not None and expires <= now)
    return [(f"{month:%b %Y}", counts[month]) for month in months], never, expired


# --- inventory -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InventoryFilter:
    q: str = ""
    tenant: str = ""
    kind: str = ""
    risk: str = ""
    status: str = ""
    owner: str = ""  # "" | owned | orphan | platform
    sort: str = "name"
    descending: bool = False
    page: int = 1
    size: int = PAGE_SIZE


@dataclass(frozen=True)
class InventoryRow:
    id: int
    tenant: str
    kind: str
    name: str
    external_id: str
    status: str
    risk: str
    owner: str
    last_used: datetime | None
    flags: tuple[str, ...]


INVENTORY_SORTS = ("name", "tenant", "kind", "risk", "status", "owner", "last_used")
_RISK_RANK = case({"high": 0, "medium": 1, "low": 2}, value=col(Principal.risk), else_=3)


def inventory(session: Session, wanted: InventoryFilter) -> Paged[InventoryRow]:
    primary_owner = (
        select(func.min(Ownership.email))
        .where(Ownership.principal_id == Principal.id, col(Ownership.email).is_not(None))
        .scalar_subquery()
    )
    query = select(Principal, Tenant.name).join(Tenant, col(Tenant.id) == Principal.tenant_id)
    if wanted.q:
        pattern = like(wanted.q.strip())
        owned_by = select(Ownership.principal_id).where(col(Ownership.email).ilike(pattern, "\\"))
        query = query.where(
            or_(
                col(Principal.display_name).ilike(pattern, "\\"),
                col(Principal.external_id).ilike(pattern, "\\"),
                col(Principal.app_id).ilike(pattern, "\\"),
                col(Principal.id).in_(owned_by),
            )
        )
    for value, column in (
        (wanted.tenant, Tenant.name),
        (wanted.kind, Principal.kind),
        (wanted.risk, Principal.risk),
        (wanted.status, Principal.status),
    ):
        if value:
            query = query.where(column == value)
    if wanted.owner == "orphan":
        orphaned = select(Ownership.principal_id).where(col(Ownership.orphan_reason).is_not(None))
        query = query.where(col(Principal.id).in_(orphaned))
    elif wanted.owner == "owned":
        query = query.where(primary_owner.is_not(None))
    elif wanted.owner == "platform":
        query = query.where(col(Principal.platform_owned).is_(True))
    order: dict[str, Any] = {
        "name": func.lower(Principal.display_name),
        "tenant": Tenant.name,
        "kind": Principal.kind,
        "risk": _RISK_RANK,
        "status": Principal.status,
        "owner": primary_owner,
        "last_used": Principal.last_used_at,
    }
    key = order.get(wanted.sort, order["name"])
    direction = key.desc() if wanted.descending else key.asc()
    query = query.order_by(direction.nulls_last(), col(Principal.id))
    rows, total, page = _page_of(session, query, wanted.page, wanted.size)
    owners = _owners(session, [p.id for p, _ in rows])
    return Paged(
        [
            InventoryRow(
                id=p.id or 0,
                tenant=tenant,
                kind=kind_label(p.kind),
                name=p.display_name,
                external_id=p.external_id,
                status=p.status,
                risk=p.risk,
                owner=_owner_words(p, owners.get(p.id or 0, [])),
                last_used=p.last_used_at,
                flags=tuple(
                    flag
                    for flag, on in (
                        ("platform-owned", p.platform_owned),
                        ("protected", p.protected),
                    )
                    if on
                ),
            )
            for p, tenant in rows
        ],
        total,
        page,
        wanted.size,
    )


def _owners(session: Session, ids: list[int | None]) -> dict[int, list[Ownership]]:
    by_principal: dict[int, list[Ownership]] = defaultdict(list)
    for row in session.exec(
        select(Ownership).where(col(Ownership.principal_id).in_(ids)).order_by(col(Ownership.id))
    ):
        by_principal[row.principal_id].append(row)
    return by_principal


def _owner_words(principal: Principal, owners: list[Ownership]) -> str:
    named = sorted((o for o in owners if o.email), key=lambda o: -o.confidence)
    if named:
        return named[0].email or ""
    orphan = next((o for o in owners if o.orphan_reason), None)
    if orphan:
        return reports.REASON_LABELS.get(orphan.orphan_reason or "", "Orphan")
    if principal.platform_owned or principal.kind == "managed_identity":
        return "Not reviewed"
    return reports.NOTHING


def tenants_and_kinds(session: Session) -> tuple[list[str], list[str]]:
    tenants = list(session.exec(select(Tenant.name).order_by(Tenant.name)))
    kinds = list(session.exec(select(Principal.kind).distinct().order_by(Principal.kind)))
    return tenants, kinds


# --- one principal -------------------------------------------------------------------------


@dataclass(frozen=True)
class OwnerView:
    who: str
    source: str
    confidence: float
    evidence: str


@dataclass(frozen=True)
class HintView:
    source: str
    points_at: str
    evidence: str


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    what: str
    who: str
    detail: str


@dataclass(frozen=True)
class PrincipalPage:
    principal: Principal
    tenant: str
    provider: str
    kind: str
    owners: Sequence[OwnerView]
    hints: Sequence[HintView]
    permissions: Sequence[PermissionView]
    credentials: Sequence[CredentialView]
    last_used: str
    history: Sequence[HistoryEntry]
    disabled_by_recert: bool


def principal_page(session: Session, principal_id: int, now: datetime) -> PrincipalPage | None:
    principal = session.get(Principal, principal_id)
    if principal is None:
        return None
    tenant = session.get(Tenant, principal.tenant_id)
    assert tenant is not None
    grants = session.exec(
        select(Grant)
        .where(Grant.principal_id == principal_id)
        .order_by(Grant.resource, Grant.permission, col(Grant.id))
    ).all()
    credentials = session.exec(
        select(Credential)
        .where(Credential.principal_id == principal_id)
        .order_by(col(Credential.id))
    ).all()
    actions = list(
        session.exec(
            select(EnforcementAction)
            .where(EnforcementAction.principal_id == principal_id)
            .order_by(col(EnforcementAction.id))
        )
    )
    return PrincipalPage(
        principal=principal,
        tenant=tenant.name,
        provider=wording.PROVIDERS.get(tenant.kind, tenant.kind),
        kind=kind_label(principal.kind),
        owners=[_owner_view(o) for o in _owners(session, [principal_id]).get(principal_id, [])],
        hints=[
            HintView(
                OWNER_SOURCE_WORDS.get(h.source, h.source.replace("_", " ")),
                h.email or h.person_external_id or h.owner_principal_external_id or h.reference,
                h.evidence,
            )
            for h in session.exec(
                select(OwnerHint)
                .where(OwnerHint.principal_id == principal_id)
                .order_by(col(OwnerHint.id))
            )
        ],
        permissions=[permission_view(g) for g in grants],
        credentials=[credential_view(c, now) for c in credentials],
        last_used=last_used(principal, now),
        history=_history(session, principal_id, actions),
        disabled_by_recert=principal.status == "disabled"
        and any(a.action == DISABLE for a in _still_done(actions)),
    )


def _owner_view(owner: Ownership) -> OwnerView:
    who = owner.email or wording.ORPHAN_REASONS.get(owner.orphan_reason or "", "No owner")
    return OwnerView(
        who=who,
        source=OWNER_SOURCE_WORDS.get(owner.source, owner.source.replace("_", " ")),
        confidence=owner.confidence,
        evidence=owner.evidence,
    )


def _history(
    session: Session, principal_id: int, actions: list[EnforcementAction]
) -> list[HistoryEntry]:
    """Reviews, decisions, emails and enforcement actions, newest first."""
    items = list(
        session.exec(
            select(ReviewItem, Campaign)
            .join(Campaign, col(Campaign.id) == ReviewItem.campaign_id)
            .where(ReviewItem.principal_id == principal_id)
        )
    )
    entries = [
        HistoryEntry(
            campaign.opened_at,
            "In review",
            item.reviewer_email,
            f"{campaign.name}: due {campaign.due_at:%Y-%m-%d}, now {item.status}",
        )
        for item, campaign in items
    ]
    people: dict[int, set[str]] = defaultdict(set)  # campaign -> everyone asked about it
    for item, campaign in items:
        people[campaign.id or 0].add(item.reviewer_email)
    decisions = session.exec(
        select(Decision)
        .where(col(Decision.review_item_id).in_([item.id for item, _ in items]))
        .order_by(col(Decision.id))
    ).all()
    item_campaign = {item.id: item.campaign_id for item, _ in items}
    for decision in decisions:
        detail = decision.justification
        if decision.new_owner_email:
            detail = f"to {decision.new_owner_email}" + (f": {detail}" if detail else "")
            people[item_campaign[decision.review_item_id]].add(decision.new_owner_email)
        if decision.dropped_permissions:
            detail = f"dropped {', '.join(decision.dropped_permissions)}. {detail}".strip()
        entries.append(
            HistoryEntry(
                decision.decided_at,
                f"Decision: {ACTION_WORDS.get(decision.action, decision.action)}",
                decision.decided_by,
                detail,
            )
        )
    for campaign_id, recipients in people.items():
        for email in session.exec(
            select(OutboxEmail).where(
                OutboxEmail.campaign_id == campaign_id,
                col(OutboxEmail.recipient).in_(sorted(recipients)),
            )
        ):
            entries.append(
                HistoryEntry(
                    email.sent_at or email.created_at,
                    f"Email: {email.kind.replace('_', ' ')}",
                    email.recipient,
                    f"{email.status}; Message-ID {email.message_id or reports.NOTHING}",
                )
            )
    for action in actions:
        detail = action.reason + (f"; {action.status}: {action.error}" if action.error else "")
        entries.append(
            HistoryEntry(
                action.performed_at or action.created_at,
                f"Enforcement: {enforcement_words(action.action, action.status)}",
                action.performed_by,
                detail,
            )
        )
    return sorted(entries, key=lambda e: e.at, reverse=True)


# --- the IAM queue -------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueRow:
    item_id: int
    principal_id: int
    campaign: str
    tenant: str
    kind: str
    name: str
    external_id: str
    risk: str
    reason: str
    due_at: datetime


def _queue_query(settings: Settings) -> Any:
    return (
        select(ReviewItem, Principal, Tenant.name, Campaign)
        .join(Principal, col(Principal.id) == ReviewItem.principal_id)
        .join(Tenant, col(Tenant.id) == Principal.tenant_id)
        .join(Campaign, col(Campaign.id) == ReviewItem.campaign_id)
        .where(
            ReviewItem.reviewer_email == settings.iam_email.lower(),
            ReviewItem.status == "pending",
            col(Campaign.closed_at).is_(None),
        )
    )


def _queue_query_count(session: Session, settings: Settings) -> int:
    query = _queue_query(settings)
    return int(session.exec(select(func.count()).select_from(query.subquery())).one())


def iam_queue(
    session: Session, settings: Settings, q: str = "", reason: str = "", page: int = 1
) -> Paged[QueueRow]:
    query = _queue_query(settings)
    if q:
        pattern = like(q.strip())
        query = query.where(
            or_(
                col(Principal.display_name).ilike(pattern, "\\"),
                col(Principal.external_id).ilike(pattern, "\\"),
                col(Tenant.name).ilike(pattern, "\\"),
            )
        )
    if reason in QUEUE_REASONS:
        query = query.where(col(ReviewItem.owner_source) == reason)
    query = query.order_by(col(ReviewItem.due_at), col(ReviewItem.id))
    rows, total, page = _page_of(session, query, page)
    owners = _owners(session, [p.id for _, p, _, _ in rows])
    result = []
    for item, principal, tenant, campaign in rows:
        why = QUEUE_REASONS.get(item.owner_source, item.owner_source)
        orphan = next((o for o in owners.get(principal.id or 0, []) if o.orphan_reason), None)
        if item.owner_source == "orphan" and orphan:
            why = reports.REASON_LABELS.get(orphan.orphan_reason or "", why)
        result.append(
            QueueRow(
                item_id=item.id or 0,
                principal_id=principal.id or 0,
                campaign=campaign.name,
                tenant=tenant,
                kind=kind_label(principal.kind),
                name=principal.display_name,
                external_id=principal.external_id,
                risk=principal.risk,
                reason=why,
                due_at=item.due_at,
            )
        )
    return Paged(result, total, page)


# --- enforcement history -------------------------------------------------------------------

# The actions and statuses recert.enforcement writes (acting.py, undoing.py), in words.
ENFORCEMENT_ACTIONS = {
    "disable": "Disable",
    "remove_grant": "Remove permission",
    "revoke_consent": "Revoke consent",
    "enable": "Re-enable",
    "restore_grant": "Restore permission",
    "restore_consent": "Restore consent",
    "refuse": "Refused by a safety rule",
}
ENFORCEMENT_STATUSES = {
    "done": "done",
    "in_progress": "in progress",
    "retrying": "failed, will retry",
    "failed": "failed",
    "refused": "refused",
    "not_reversible": "cannot be undone",
}


def action_words(action: str) -> str:
    return ENFORCEMENT_ACTIONS.get(action, action.replace("_", " "))


def status_words(status: str) -> str:
    return ENFORCEMENT_STATUSES.get(status, status)


def enforcement_words(action: str, status: str) -> str:
    return f"{action_words(action)} ({status_words(status)})"


def _still_done(actions: Sequence[EnforcementAction]) -> list[EnforcementAction]:
    """The done rows that no done undo row reverses."""
    undone = {a.reverses_id for a in actions if a.reverses_id and a.status == "done"}
    return [a for a in actions if a.status == "done" and a.id not in undone]


@dataclass(frozen=True)
class ActionRow:
    at: datetime | None
    action: str
    status: str
    principal_id: int
    tenant: str
    name: str
    external_id: str
    reason: str
    by: str
    error: str | None

    @property
    def action_words(self) -> str:
        return action_words(self.action)

    @property
    def status_words(self) -> str:
        return status_words(self.status)


def _action_row(action: EnforcementAction, principal: Principal, tenant: str) -> ActionRow:
    return ActionRow(
        at=action.performed_at,
        action=action.action,
        status=action.status,
        principal_id=principal.id or 0,
        tenant=tenant,
        name=principal.display_name,
        external_id=principal.external_id,
        reason=action.reason,
        by=action.performed_by,
        error=action.error,
    )


def enforcement_history(session: Session, limit: int = 200) -> list[ActionRow]:
    rows = session.exec(
        select(EnforcementAction, Principal, Tenant.name)
        .join(Principal, col(Principal.id) == EnforcementAction.principal_id)
        .join(Tenant, col(Tenant.id) == Principal.tenant_id)
        .order_by(col(EnforcementAction.id).desc())
        .limit(limit)
    ).all()
    return [_action_row(action, principal, tenant) for action, principal, tenant in rows]


def disabled_by_recert(session: Session) -> list[ActionRow]:
    """Apps Recert disabled that are still disabled: a done disable that no done re-enable
    reverses. The re-enable candidates, one row per app (its newest disable)."""
    disables = session.exec(
        select(EnforcementAction, Principal, Tenant.name)
        .join(Principal, col(Principal.id) == EnforcementAction.principal_id)
        .join(Tenant, col(Tenant.id) == Principal.tenant_id)
        .where(
            EnforcementAction.action == DISABLE,
            EnforcementAction.status == "done",
            Principal.status == "disabled",
        )
        .order_by(col(EnforcementAction.id))
    ).all()
    undone = set(
        session.exec(
            select(EnforcementAction.reverses_id).where(
                col(EnforcementAction.reverses_id).in_([a.id for a, _, _ in disables]),
                EnforcementAction.status == "done",
            )
        ).all()
    )
    newest = {p.id: _action_row(a, p, t) for a, p, t in disables if a.id not in undone}
    return sorted(newest.values(), key=lambda r: (r.tenant, r.name.casefold()))
