"""Step 5: an owner's decision on one review item.

Each decision is one small operation: lock the item, check it is this reviewer's and
still open, record the decision, write the audit event. Hand-overs and "not mine" move
the item to its new reviewer, whose request the next `notify` run sends. The same form
sent twice (a double click, a resubmit) records one decision. An item that is not the
reviewer's is refused exactly like one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import update
from sqlmodel import Session, col, select

from recert import audit
from recert.clock import Clock
from recert.config import Settings
from recert.links import ReviewLink
from recert.models import Campaign, Decision, Grant, Person, Principal, ReviewItem, Tenant

ACTIONS = ("keep", "reduce", "revoke", "reassign", "not_mine")
NEEDS_JUSTIFICATION = {"keep", "reduce"}
MAX_JUSTIFICATION = 2000
NOT_YOURS = "This app is not part of your review."


class DecisionRefused(Exception):
    """The decision cannot be taken; the message is safe to show to the reviewer."""


@dataclass(frozen=True)
class DecisionRequest:
    action: str
    justification: str = ""
    dropped: tuple[int, ...] = field(default_factory=tuple)  # permission_grant row ids
    new_owner: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None


def decide(
    session: Session,
    settings: Settings,
    clock: Clock,
    link: ReviewLink,
    item_id: int,
    request: DecisionRequest,
) -> Decision:
    # A no-op UPDATE first: it locks the row on PostgreSQL and takes SQLite's write lock,
    # so a second submission of the same form waits, then sees the first one's decision.
    session.execute(
        update(ReviewItem)
        .where(col(ReviewItem.id) == item_id)
        .values(status=col(ReviewItem.status))
    )
    item = session.exec(select(ReviewItem).where(ReviewItem.id == item_id)).first()
    _check_open(session, clock, link, item)
    assert item is not None
    justification = _justification(request)
    repeated = _same_as_latest(session, item, link, request, justification)
    if repeated is not None:
        return repeated
    if item.reviewer_email != link.reviewer.lower():
        raise DecisionRefused(NOT_YOURS)
    principal = session.get(Principal, item.principal_id)
    assert principal is not None
    dropped = _dropped_grants(session, principal, request)
    new_owner = _move(session, settings, item, principal, request)
    if new_owner:
        item.escalated_at = None  # in new hands: IAM is told again if it comes back
    decision = Decision(
        review_item_id=item.id or 0,
        action=request.action,
        justification=justification,
        dropped_permissions=sorted(f"{g.resource}: {g.permission}" for g in dropped),
        dropped_grant_ids=sorted(g.id or 0 for g in dropped),
        new_owner_email=new_owner,
        decided_by=link.reviewer,
        decided_at=clock.now(),
        source_ip=request.source_ip,
        user_agent=(request.user_agent or "")[:500] or None,
    )
    session.add_all([decision, item])
    tenant = session.get(Tenant, principal.tenant_id)
    audit.append(
        session,
        clock,
        actor=link.reviewer,
        action="review.decided",
        subject_type="review_item",
        subject_id=str(item.id),
        tenant=tenant.name if tenant else None,
        data={
            "principal": principal.external_id,
            "decision": request.action,
            "justification": justification,
            "dropped_permissions": decision.dropped_permissions,
            "new_owner": new_owner,
            "source_ip": request.source_ip,
            "user_agent": decision.user_agent,
        },
    )
    session.flush()
    return decision


def _check_open(session: Session, clock: Clock, link: ReviewLink, item: ReviewItem | None) -> None:
    if item is None or item.campaign_id != link.campaign_id:
        raise DecisionRefused(NOT_YOURS)
    campaign = session.get(Campaign, link.campaign_id)
    if campaign is None or campaign.closed_at is not None or clock.now() >= item.due_at:
        raise DecisionRefused("This review has closed; decisions can no longer be changed.")


def _same_as_latest(
    session: Session,
    item: ReviewItem,
    link: ReviewLink,
    request: DecisionRequest,
    justification: str,
) -> Decision | None:
    """The reviewer's latest decision on the item when this request repeats it exactly."""
    latest = latest_decisions(session, [item.id or 0]).get(item.id or 0)
    if latest is None or latest.decided_by.lower() != link.reviewer.lower():
        return None
    same = (
        latest.action == request.action
        and latest.justification == justification
        and sorted(latest.dropped_grant_ids) == sorted(set(request.dropped))
        and (
            request.action != "reassign"
            or latest.new_owner_email == (request.new_owner or "").strip().lower()
        )
    )
    return latest if same else None


def _justification(request: DecisionRequest) -> str:
    if request.action not in ACTIONS:
        raise DecisionRefused("Choose keep, reduce, revoke, hand over or not mine.")
    text = " ".join(request.justification.split())
    if request.action in NEEDS_JUSTIFICATION and not text:
        raise DecisionRefused("Please say in a few words why the app is still needed.")
    if len(text) > MAX_JUSTIFICATION:
        raise DecisionRefused(
            f"Please keep the justification under {MAX_JUSTIFICATION} characters."
        )
    return text


def _dropped_grants(
    session: Session, principal: Principal, request: DecisionRequest
) -> list[Grant]:
    if request.action != "reduce":
        return []
    if not request.dropped:
        raise DecisionRefused("Select the permissions to drop, or choose keep.")
    grants = session.exec(
        select(Grant).where(
            Grant.principal_id == principal.id, col(Grant.id).in_(list(request.dropped))
        )
    ).all()
    if len(grants) != len(set(request.dropped)):
        raise DecisionRefused("Some selected permissions do not belong to this app.")
    return list(grants)


def _move(
    session: Session,
    settings: Settings,
    item: ReviewItem,
    principal: Principal,
    request: DecisionRequest,
) -> str | None:
    """Apply the decision to the item; returns the new reviewer of a hand-over."""
    if item.consenting_user and request.action in ("reassign", "not_mine"):
        raise DecisionRefused("This is your own consent to the app: keep or revoke it.")
    if request.action == "not_mine":
        item.reviewer_email, item.owner_source, item.status = (
            settings.iam_email.lower(),
            "not_mine",
            "pending",
        )
        return settings.iam_email.lower()
    if request.action != "reassign":
        item.status = "decided"
        return None
    email = (request.new_owner or "").strip().lower()
    person = session.exec(
        select(Person).where(
            Person.tenant_id == principal.tenant_id, col(Person.email).ilike(email)
        )
    ).first()
    if not email or person is None or not person.active:
        raise DecisionRefused("Hand it to an active person in the same directory (their email).")
    if email == item.reviewer_email:
        raise DecisionRefused("That is you: choose keep, reduce or revoke instead.")
    item.reviewer_email, item.owner_source, item.status = email, "reassigned", "pending"
    return email


def latest_decisions(session: Session, item_ids: list[int]) -> dict[int, Decision]:
    """The decision in force per item: the newest one (a reviewer may change their mind)."""
    latest: dict[int, Decision] = {}
    query = (
        select(Decision)
        .where(col(Decision.review_item_id).in_(item_ids))
        .order_by(col(Decision.decided_at), col(Decision.id))
    )
    for decision in session.exec(query):
        latest[decision.review_item_id] = decision
    return latest
