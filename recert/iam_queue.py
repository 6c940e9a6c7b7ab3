"""The IAM team hands queued review items (orphans, "not mine" answers, bounced owners)
to an owner, many at a time.

Each item moves exactly as an owner's hand-over moves it: a `reassign` decision by the
admin, the item pending with its new reviewer, one audit event, and the new reviewer's
request email queued by the next `notify` run. Items that cannot move are refused one by
one with the reason; the rest still move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, col, select

from recert import audit
from recert.clock import Clock
from recert.config import Settings
from recert.decisions import MAX_JUSTIFICATION
from recert.models import Campaign, Decision, Person, Principal, ReviewItem, Tenant

ASSIGNED = "reassigned"  # the owner source a hand-over gives, so notify sends a request


class AssignRefused(Exception):
    """The whole request is unusable; the message is safe to show."""


@dataclass
class AssignResult:
    new_owner: str
    assigned: list[int] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (item id, why)


def assign(
    session: Session,
    settings: Settings,
    clock: Clock,
    item_ids: list[int],
    new_owner: str,
    *,
    actor: str,
    justification: str = "",
    source_ip: str | None = None,
    user_agent: str | None = None,
) -> AssignResult:
    email = new_owner.strip().lower()
    if "@" not in email:
        raise AssignRefused("Give the new owner's email address.")
    if not item_ids:
        raise AssignRefused("Select at least one app in the queue.")
    text = " ".join(justification.split())
    if len(text) > MAX_JUSTIFICATION:
        raise AssignRefused(f"Keep the note under {MAX_JUSTIFICATION} characters.")
    iam = settings.iam_email.lower()
    result = AssignResult(email)
    items = session.exec(
        select(ReviewItem)
        .where(col(ReviewItem.id).in_(sorted(set(item_ids))))
        .order_by(col(ReviewItem.id))
        .with_for_update()
    ).all()
    found = {item.id for item in items}
    result.refused += [(i, "no such review item") for i in sorted(set(item_ids) - found)]
    now = clock.now()
    for item in items:
        principal = session.get(Principal, item.principal_id)
        tenant = session.get(Tenant, principal.tenant_id) if principal else None
        assert principal is not None
        assert tenant is not None
        problem = _problem(session, item, principal, tenant, email, iam, now)
        if problem:
            result.refused.append((item.id or 0, problem))
            continue
        previous = item.owner_source
        session.add(
            Decision(
                review_item_id=item.id or 0,
                action="reassign",
                justification=text,
                new_owner_email=email,
                decided_by=actor,
                decided_at=now,
                source_ip=source_ip,
                user_agent=(user_agent or "")[:500] or None,
            )
        )
        item.reviewer_email, item.owner_source, item.status = email, ASSIGNED, "pending"
        session.add(item)
        audit.append(
            session,
            clock,
            actor=actor,
            action="review.assigned",
            subject_type="review_item",
            subject_id=str(item.id),
            tenant=tenant.name,
            data={
                "principal": principal.external_id,
                "decision": "reassign",
                "justification": text,
                "new_owner": email,
                "was": previous,
                "source_ip": source_ip,
            },
        )
        result.assigned.append(item.id or 0)
    session.flush()
    return result


def _problem(
    session: Session,
    item: ReviewItem,
    principal: Principal,
    tenant: Tenant,
    email: str,
    iam: str,
    now: datetime,
) -> str | None:
    if item.reviewer_email != iam or item.status != "pending":
        return "it is no longer in the IAM queue"
    campaign = session.get(Campaign, item.campaign_id)
    if campaign is None or campaign.closed_at is not None or now >= item.due_at:
        return "its review has closed"
    if item.consenting_user:
        return "it is a user's own consent, which only that user reviews"
    person = session.exec(
        select(Person).where(Person.tenant_id == tenant.id, col(Person.email).ilike(email))
    ).first()
    if person is None or not person.active:
        return f"{email} is not an active person in tenant {tenant.name}"
    return None
