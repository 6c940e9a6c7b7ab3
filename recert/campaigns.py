"""Step 3: review campaigns. One review item per in-scope principal, due after
`attestation_days`; orphans are reviewed by the IAM team.

Never in scope: platform-owned apps, managed identities, protected apps, and anything
not active. Opening a campaign twice with the same name opens it once.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from recert import audit
from recert.clock import Clock
from recert.config import Settings
from recert.models import (
    Campaign,
    Credential,
    Decision,
    Grant,
    Ownership,
    Person,
    Principal,
    ReviewItem,
    Tenant,
)
from recert.owners import is_user_consented
from recert.store import grouped

ORPHAN_SOURCE = "orphan"
CONSENTED_SOURCE = "consented"  # a user reviewing their own consent


class NothingToReview(Exception):
    """No active, reviewable app is in scope: a campaign would ask nobody anything."""


@dataclass
class CampaignSummary:
    campaign_id: int
    name: str
    opened_at: datetime
    due_at: datetime
    created: bool
    items: int = 0  # review items: one per app, plus one per user reviewing their own consent
    reviewers: int = 0
    to_iam: int = 0  # apps whose only reviewer is the IAM team
    scope: dict[str, Any] = field(default_factory=dict)
    apps: int = 0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["opened_at"], data["due_at"] = self.opened_at.isoformat(), self.due_at.isoformat()
        return data


def in_scope(
    session: Session,
    tenants: list[str] | None = None,
    kinds: list[str] | None = None,
    risks: list[str] | None = None,
) -> list[Principal]:
    query = (
        select(Principal)
        .join(Tenant, col(Tenant.id) == Principal.tenant_id)
        .where(
            Principal.status == "active",
            col(Principal.platform_owned).is_(False),
            col(Principal.protected).is_(False),
            Principal.kind != "managed_identity",
        )
        .order_by(col(Principal.id))
    )
    if tenants:
        query = query.where(col(Tenant.name).in_(tenants))
    if kinds:
        query = query.where(col(Principal.kind).in_(kinds))
    if risks:
        query = query.where(col(Principal.risk).in_(risks))
    return list(session.exec(query).all())


def reviewer_for(owners: list[Ownership], iam_email: str) -> tuple[str, str]:
    """The accountable owner (highest confidence), or the IAM team for an orphan."""
    named = sorted((o for o in owners if o.email), key=lambda o: -o.confidence)
    if named:
        return (named[0].email or "").lower(), named[0].source
    return iam_email.lower(), ORPHAN_SOURCE


def open_campaign(
    session: Session,
    settings: Settings,
    clock: Clock,
    *,
    name: str | None = None,
    tenants: list[str] | None = None,
    kinds: list[str] | None = None,
    risks: list[str] | None = None,
) -> CampaignSummary:
    now = clock.now()
    name = name or f"Access review {now:%Y-%m-%d}"
    existing = session.exec(select(Campaign).where(Campaign.name == name)).first()
    if existing is not None:
        return _summary(session, existing, False, settings.iam_email)
    scope = {"tenants": tenants or [], "kinds": kinds or [], "risks": risks or []}
    principals = in_scope(session, tenants, kinds, risks)
    if not principals:
        raise NothingToReview(
            "nothing to review: no active app that needs an owner is in scope"
            + ("" if any(scope.values()) else " (run `recert discover` first)")
        )
    campaign = Campaign(
        name=name,
        opened_at=now,
        due_at=now + timedelta(days=settings.campaigns.attestation_days),
        scope=scope,
    )
    session.add(campaign)
    session.flush()
    assert campaign.id is not None
    ids = [p.id for p in principals]
    owners, grants = grouped(session, Ownership, ids), grouped(session, Grant, ids)
    for principal in principals:
        reviewer, source = reviewer_for(owners[principal.id or 0], settings.iam_email)
        session.add(
            ReviewItem(
                campaign_id=campaign.id,
                principal_id=principal.id or 0,
                reviewer_email=reviewer,
                owner_source=source,
                due_at=campaign.due_at,
            )
        )
        if is_user_consented(principal, grants[principal.id or 0]):
            session.add_all(_consent_items(session, campaign, principal, grants[principal.id or 0]))
    session.flush()
    summary = _summary(session, campaign, True, settings.iam_email)
    audit.append(
        session,
        clock,
        actor="recert",
        action="campaign.opened",
        subject_type="campaign",
        subject_id=str(campaign.id),
        data=summary.as_dict(),
    )
    return summary


def _consent_items(
    session: Session, campaign: Campaign, principal: Principal, grants: list[Grant]
) -> list[ReviewItem]:
    """Each active consenting user reviews their own consent to a user-consented app."""
    users = sorted({g.consenting_user for g in grants if g.consent == "user" and g.consenting_user})
    people = session.exec(
        select(Person).where(
            Person.tenant_id == principal.tenant_id, col(Person.external_id).in_(users)
        )
    ).all()
    return [
        ReviewItem(
            campaign_id=campaign.id or 0,
            principal_id=principal.id or 0,
            reviewer_email=person.email.lower(),
            owner_source=CONSENTED_SOURCE,
            due_at=campaign.due_at,
            consenting_user=person.external_id,
        )
        for person in people
        if person.active and person.email
    ]


def _summary(
    session: Session, campaign: Campaign, created: bool, iam_email: str
) -> CampaignSummary:
    items = session.exec(select(ReviewItem).where(ReviewItem.campaign_id == campaign.id)).all()
    apps = [i for i in items if not i.consenting_user]
    return CampaignSummary(
        campaign_id=campaign.id or 0,
        name=campaign.name,
        opened_at=campaign.opened_at,
        due_at=campaign.due_at,
        created=created,
        items=len(items),
        reviewers=len({i.reviewer_email for i in items}),
        to_iam=sum(1 for i in apps if i.reviewer_email == iam_email.lower()),
        scope=dict(campaign.scope),
        apps=len(apps),
    )


def open_campaigns(session: Session) -> list[Campaign]:
    query = select(Campaign).where(col(Campaign.closed_at).is_(None)).order_by(col(Campaign.id))
    return list(session.exec(query).all())


def items_by_reviewer(session: Session, campaign_id: int) -> dict[str, list[ReviewItem]]:
    by_reviewer: dict[str, list[ReviewItem]] = defaultdict(list)
    query = (
        select(ReviewItem).where(ReviewItem.campaign_id == campaign_id).order_by(col(ReviewItem.id))
    )
    for item in session.exec(query):
        by_reviewer[item.reviewer_email].append(item)
    return dict(by_reviewer)


def tiers_due(session: Session, settings: Settings, now: datetime) -> list[str]:
    """Risk tiers whose review cadence has elapsed since a campaign last covered them."""
    last: dict[str, datetime] = {}
    for campaign in session.exec(select(Campaign)).all():
        for tier in campaign.scope.get("risks") or ["low", "medium", "high"]:
            last[tier] = max(last.get(tier, campaign.opened_at), campaign.opened_at)
    cadence = settings.risk.review_cadence_days
    return [
        tier
        for tier in ("high", "medium", "low")
        if tier not in last or now - last[tier] >= timedelta(days=cadence[tier])
    ]


def status(session: Session, campaign_id: int | None = None) -> list[dict[str, Any]]:
    """Progress of one campaign (or every open one), per tenant and per owner. A closed
    campaign shows the figures frozen when it closed."""
    campaigns = (
        [c for c in [session.get(Campaign, campaign_id)] if c]
        if campaign_id
        else open_campaigns(session)
    )
    return [
        dict(campaign.completion) if campaign.completion else _status_of(session, campaign)
        for campaign in campaigns
    ]


def _status_of(session: Session, campaign: Campaign) -> dict[str, Any]:
    rows = session.exec(
        select(ReviewItem, Tenant.name)
        .join(Principal, col(Principal.id) == ReviewItem.principal_id)
        .join(Tenant, col(Tenant.id) == Principal.tenant_id)
        .where(ReviewItem.campaign_id == campaign.id)
    ).all()
    answered = set(
        session.exec(
            select(Decision.review_item_id)
            .join(ReviewItem, col(ReviewItem.id) == Decision.review_item_id)
            .where(ReviewItem.campaign_id == campaign.id)
        ).all()
    )
    per_tenant: dict[str, Counter[str]] = defaultdict(Counter)
    per_owner: dict[str, Counter[str]] = defaultdict(Counter)
    for item, tenant in rows:
        for counter in (per_tenant[tenant], per_owner[item.reviewer_email]):
            counter["items"] += 1
            counter[item.status] += 1
    # An item enforced after its owner chose to revoke or reduce it was decided too.
    decided = sum(
        1
        for item, _ in rows
        if item.status == "decided" or (item.status == "enforced" and item.id in answered)
    )
    return {
        "campaign_id": campaign.id,
        "name": campaign.name,
        "opened_at": campaign.opened_at.isoformat(),
        "due_at": campaign.due_at.isoformat(),
        "closed": campaign.closed_at is not None,
        "closed_at": campaign.closed_at.isoformat() if campaign.closed_at else None,
        "items": len(rows),
        "decided": decided,
        "enforced": sum(1 for item, _ in rows if item.status == "enforced"),
        "completion": round(decided / len(rows), 3) if rows else 1.0,
        "per_tenant": {t: dict(c) for t, c in sorted(per_tenant.items())},
        "per_owner": {o: dict(c) for o, c in sorted(per_owner.items())},
    }


FINISHED = ("decided", "enforced")


def close_finished(session: Session, clock: Clock) -> list[int]:
    """Close each campaign past its due date whose every item is decided or enforced,
    freezing its completion figures; returns the ids closed."""
    now = clock.now()
    closed = []
    for campaign in open_campaigns(session):
        if now < campaign.due_at:
            continue  # owners may still change their minds
        unfinished = session.exec(
            select(ReviewItem.id).where(
                ReviewItem.campaign_id == campaign.id, col(ReviewItem.status).not_in(FINISHED)
            )
        ).first()
        if unfinished is not None:
            continue
        campaign.closed_at = now
        campaign.completion = _status_of(session, campaign)
        session.add(campaign)
        audit.append(
            session,
            clock,
            actor="recert",
            action="campaign.closed",
            subject_type="campaign",
            subject_id=str(campaign.id),
            data=campaign.completion,
        )
        closed.append(campaign.id or 0)
    return closed


@dataclass(frozen=True)
class ItemContext:
    """Everything a digest or the review page shows about one review item (for a user's
    review of their own consent, only that user's grants)."""

    item: ReviewItem
    principal: Principal
    tenant: Tenant
    grants: list[Grant]
    credentials: list[Credential]
    owners: list[Ownership]


def item_contexts(session: Session, items: list[ReviewItem]) -> list[ItemContext]:
    """Load the principals behind `items` and what hangs off them, a few queries in all."""
    ids = [item.principal_id for item in items]
    principals = {
        p.id: p for p in session.exec(select(Principal).where(col(Principal.id).in_(ids)))
    }
    tenants = {t.id: t for t in session.exec(select(Tenant))}
    grants = grouped(session, Grant, ids)
    credentials = grouped(session, Credential, ids)
    owners = grouped(session, Ownership, ids)
    return [
        ItemContext(
            item=item,
            principal=principals[item.principal_id],
            tenant=tenants[principals[item.principal_id].tenant_id],
            grants=[
                g
                for g in grants[item.principal_id]
                if not item.consenting_user or g.consenting_user == item.consenting_user
            ],
            credentials=credentials[item.principal_id],
            owners=owners[item.principal_id],
        )
        for item in items
    ]
