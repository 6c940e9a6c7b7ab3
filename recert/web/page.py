"""What the review page shows: plain view objects built from the database, read-only.

Everything here that came from an identity provider (names, descriptions, evidence) is
untrusted text; the templates escape it and isolate its direction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlmodel import Session, col, select

from connectors.base import LAST_USE_UNKNOWN
from emails import wording
from emails.render import described, last_use
from recert.campaigns import item_contexts
from recert.decisions import latest_decisions
from recert.links import ReviewLink
from recert.models import (
    Campaign,
    Credential,
    Decision,
    Grant,
    Ownership,
    Principal,
    ReviewItem,
)
from recert.risk import permission_level
from recert.web.templating import day

OWNER_SOURCES = {
    "catalog": "The app catalog names you as its owner",
    "idp_owner": "The identity provider lists you as an owner",
    "audit_creator": "The audit log shows you created it",
    "token_creator": "The API token belongs to you",
    "rule": "Its name matches a team naming rule",
    "manager": "Its owner has left and you are their manager",
    "orphan": "No owner could be found, so the IAM team reviews it",
    "reassigned": "It was handed over to you",
    "not_mine": "The previous reviewer said it is not theirs",
    "consented": "You granted this app access to your account yourself",
}
ACTION_WORDS = {
    "keep": "Keep",
    "reduce": "Keep, dropping some permissions",
    "revoke": "Revoke",
    "reassign": "Handed over",
    "not_mine": "Not mine",
}


@dataclass(frozen=True)
class Draft:
    """What the item's form shows as chosen: the reviewer's decision, or a refused attempt."""

    action: str = ""
    justification: str = ""
    dropped: frozenset[int] = frozenset()
    new_owner: str = ""


@dataclass(frozen=True)
class Retry:
    """A submission decide() refused: shown again with its message, nothing lost."""

    item_id: int
    draft: Draft
    message: str


@dataclass(frozen=True)
class PermissionView:
    grant_id: int
    name: str
    resource: str
    description: str | None
    consent: str
    high_risk: bool


@dataclass(frozen=True)
class CredentialView:
    kind: str
    name: str | None
    expiry: str
    warning: bool


@dataclass(frozen=True)
class OwnerReason:
    why: str
    evidence: str = ""


@dataclass(frozen=True)
class DecisionView:
    action: str
    words: str
    by: str
    at: datetime
    justification: str
    dropped: Sequence[str]
    new_owner: str | None


@dataclass(frozen=True)
class ItemView:
    id: int
    name: str
    provider: str
    tenant: str
    kind: str
    external_id: str
    risk: str
    permissions: Sequence[PermissionView]
    credentials: Sequence[CredentialView]
    last_used: str
    owner_reasons: Sequence[OwnerReason]
    decision: DecisionView | None
    awaiting: bool
    draft: Draft
    own_consent: bool = False  # the reviewer's own consent: keep, reduce or revoke only
    error: str | None = None


@dataclass(frozen=True)
class Confirmation:
    action: str
    app: str
    dropped: Sequence[str]
    new_owner: str | None


@dataclass(frozen=True)
class ReviewPage:
    campaign: str
    due_at: datetime
    reviewer: str
    items: Sequence[ItemView] = field(default_factory=list)
    confirmation: Confirmation | None = None
    error: str | None = None
    error_item: int | None = None  # the item whose form shows the error, when on the page
    focus: int | None = None  # the item to put focus on: the next one still to decide

    @property
    def empty(self) -> bool:
        return not self.items and self.confirmation is None

    @property
    def heading(self) -> str:
        """The campaign's name, said once ("Access review 2026-12-01", not twice)."""
        if "review" in self.campaign.casefold():
            return self.campaign
        return f"Access review: {self.campaign}"

    @property
    def decided(self) -> int:
        return sum(1 for item in self.items if not item.awaiting)


def build_review(
    session: Session,
    link: ReviewLink,
    now: datetime,
    *,
    done: int | None = None,
    retry: Retry | None = None,
) -> ReviewPage | None:
    """The reviewer's page in its campaign; None when the campaign no longer exists."""
    campaign = session.get(Campaign, link.campaign_id)
    if campaign is None:
        return None
    items = _item_views(session, link, assigned_items(session, link), now, retry)
    return ReviewPage(
        campaign=campaign.name,
        due_at=campaign.due_at,
        reviewer=link.reviewer.lower(),
        items=items,
        confirmation=_confirmation(session, link, done) if done is not None else None,
        error=retry.message if retry else None,
        error_item=next((item.id for item in items if item.error), None),
        focus=None if retry else _next_to_decide(items, done),
    )


def _next_to_decide(items: list[ItemView], done: int | None) -> int | None:
    """After a save, the next item still waiting for a decision (wrapping to the first)."""
    if done is None:
        return None
    waiting = [item.id for item in items if item.awaiting]
    later = [item_id for item_id in waiting if item_id > done]
    candidates = later or waiting
    return candidates[0] if candidates else None


def assigned_items(session: Session, link: ReviewLink) -> list[ReviewItem]:
    query = (
        select(ReviewItem)
        .where(
            ReviewItem.campaign_id == link.campaign_id,
            ReviewItem.reviewer_email == link.reviewer.lower(),
        )
        .order_by(col(ReviewItem.id))
    )
    return list(session.exec(query).all())


def _item_views(
    session: Session,
    link: ReviewLink,
    items: list[ReviewItem],
    now: datetime,
    retry: Retry | None,
) -> list[ItemView]:
    decisions = latest_decisions(session, [item.id or 0 for item in items])
    views = []
    for context in item_contexts(session, items):
        item, principal = context.item, context.principal
        decision = decisions.get(item.id or 0)
        view = ItemView(
            id=item.id or 0,
            name=principal.display_name,
            provider=wording.PROVIDERS.get(context.tenant.kind, "Unknown provider"),
            tenant=context.tenant.name,
            kind=wording.KINDS.get(principal.kind) or principal.kind.replace("_", " ").capitalize(),
            external_id=principal.external_id,
            risk=principal.risk,
            permissions=[permission_view(g) for g in context.grants],
            credentials=[credential_view(c, now) for c in context.credentials],
            last_used=last_used(principal, now),
            owner_reasons=_owner_reasons(item, context.owners, link),
            decision=_decision(decision) if decision else None,
            awaiting=item.status == "pending",
            draft=_draft(decision, link),
            own_consent=bool(item.consenting_user),
        )
        if retry is not None and retry.item_id == view.id:
            view = _with_retry(view, retry)
        views.append(view)
    return views


def _with_retry(view: ItemView, retry: Retry) -> ItemView:
    return replace(view, draft=retry.draft, error=retry.message)


def permission_view(grant: Grant) -> PermissionView:
    return PermissionView(
        grant_id=grant.id or 0,
        name=grant.permission,
        resource=grant.resource,
        description=described(grant.permission, grant.description),
        consent=wording.CONSENTS.get(grant.consent, grant.consent),
        high_risk=permission_level(grant.permission) == "high",
    )


def credential_view(credential: Credential, now: datetime) -> CredentialView:
    if credential.expires_at is None:
        expiry, warning = "never expires", True
    elif credential.expires_at <= now:
        expiry, warning = f"expired on {day(credential.expires_at)}", False
    else:
        expiry, warning = f"expires on {day(credential.expires_at)}", False
    return CredentialView(
        kind=wording.CREDENTIALS.get(credential.type, credential.type),
        name=credential.display_name,
        expiry=expiry,
        warning=warning,
    )


def last_used(principal: Principal, now: datetime) -> str:
    """The request email's words, so the page and the email never disagree."""
    unknown_why = principal.raw.get(LAST_USE_UNKNOWN)
    return last_use(
        principal.last_used_at,
        principal.activity_window_start,
        str(unknown_why) if unknown_why else None,
        now,
    )


def _owner_reasons(
    item: ReviewItem, owners: list[Ownership], link: ReviewLink
) -> list[OwnerReason]:
    reviewer = link.reviewer.lower()
    mine = [o for o in owners if (o.email or "").lower() == reviewer]
    if mine:
        return [OwnerReason(OWNER_SOURCES.get(o.source, o.source), o.evidence) for o in mine]
    orphaned = [o for o in owners if o.orphan_reason]
    if item.owner_source == "orphan" and orphaned:
        return [
            OwnerReason(wording.ORPHAN_REASONS.get(o.orphan_reason or "", "No owner"), o.evidence)
            for o in orphaned
        ]
    return [OwnerReason(OWNER_SOURCES.get(item.owner_source, item.owner_source))]


def _decision(decision: Decision) -> DecisionView:
    return DecisionView(
        action=decision.action,
        words=ACTION_WORDS.get(decision.action, decision.action),
        by=decision.decided_by,
        at=decision.decided_at,
        justification=decision.justification,
        dropped=list(decision.dropped_permissions),
        new_owner=decision.new_owner_email,
    )


def _draft(decision: Decision | None, link: ReviewLink) -> Draft:
    """Pre-fill the form with the reviewer's own decision so a change starts from it."""
    if decision is None or decision.decided_by.lower() != link.reviewer.lower():
        return Draft()
    return Draft(
        action=decision.action,
        justification=decision.justification,
        dropped=frozenset(decision.dropped_grant_ids),
    )


def _confirmation(session: Session, link: ReviewLink, item_id: int) -> Confirmation | None:
    """What the reviewer just saved; nothing for an item they did not decide."""
    item = session.get(ReviewItem, item_id)
    if item is None or item.campaign_id != link.campaign_id:
        return None
    decision = latest_decisions(session, [item_id]).get(item_id)
    if decision is None or decision.decided_by.lower() != link.reviewer.lower():
        return None
    principal = session.get(Principal, item.principal_id)
    return Confirmation(
        action=decision.action,
        app=principal.display_name if principal else "the app",
        dropped=list(decision.dropped_permissions),
        new_owner=decision.new_owner_email,
    )
