"""Step 4: the transactional outbox. Due emails become rows keyed by (review set, kind,
recipient); a sender claims rows one at a time, sends over SMTP and records the result.

Running notify twice, or two senders at once, never sends an email twice: a row is
inserted once per key, and a claim is one conditional UPDATE that only one sender wins.
A permanent refusal at RCPT is a hard bounce: that owner's items, or the credential
notices the mail carried, go to the IAM team.
The IAM team's first escalation lists every orphan of the campaign; after it, at most one
digest a day lists only the apps that reached the team since its last email.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from sqlalchemy import Engine, and_, or_, update
from sqlmodel import Session, col, select

from connectors.base import LAST_USE_UNKNOWN
from emails import render as mail
from emails import wording
from emails.send import HardBounce, SendError, SmtpServer, TransientSendError, send
from recert import audit, notices, reports
from recert.campaigns import item_contexts, items_by_reviewer, open_campaigns
from recert.clock import Clock
from recert.config import ConfigError, Settings
from recert.db import session_scope
from recert.links import ReviewLink, sign
from recert.models import (
    Campaign,
    Decision,
    Grant,
    OutboxEmail,
    Ownership,
    Person,
    Principal,
    ReviewItem,
    Tenant,
)
from recert.outbox import insert_email
from recert.risk import permission_level

log = logging.getLogger(__name__)

REMINDER_DAY = 7
FINAL_WARNING_DAY = 12
MAX_ATTEMPTS = 8
CLAIM_FOR = timedelta(minutes=10)


@dataclass
class NotifySummary:
    queued: int = 0
    sent: int = 0
    bounced: int = 0
    retrying: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def notify(engine: Engine, settings: Settings, clock: Clock) -> NotifySummary:
    summary = NotifySummary(queued=enqueue_due(engine, settings, clock))
    send_outbox(engine, settings, clock, summary)
    return summary


# --- what is due --------------------------------------------------------------------


def kinds_due(day: float, reviewer_is_iam: bool, pending: int) -> list[mail.Kind]:
    """Day 0 request, day 7 reminder, day 12 final warning; IAM gets one escalation."""
    if reviewer_is_iam:
        return ["orphan_escalation"] if pending else []
    due: list[mail.Kind] = ["request"] if pending else []
    if pending and day >= FINAL_WARNING_DAY:
        due.append("final_warning")
    elif pending and day >= REMINDER_DAY:
        due.append("reminder")
    return due


def enqueue_due(engine: Engine, settings: Settings, clock: Clock) -> int:
    now = clock.now()
    secret = settings.signing_key()
    queued = 0
    with session_scope(engine) as session:
        for campaign in open_campaigns(session):
            if now >= campaign.due_at:
                continue
            day = (now - campaign.opened_at) / timedelta(days=1)
            for reviewer, items in items_by_reviewer(session, campaign.id or 0).items():
                pending = [i for i in items if i.status == "pending"]
                is_iam = reviewer == settings.iam_email.lower()
                for kind in kinds_due(day, is_iam, len(pending)):
                    queued += _enqueue(
                        session, settings, now, secret, campaign, reviewer, kind, pending
                    )
                if not is_iam:
                    queued += _enqueue_handovers(
                        session, settings, now, secret, campaign, reviewer, pending
                    )
    return queued


def _enqueue_handovers(
    session: Session,
    settings: Settings,
    now: datetime,
    secret: bytes,
    campaign: Campaign,
    reviewer: str,
    pending: list[ReviewItem],
) -> int:
    """An app handed over after the reviewer's request went out gets a request of its own."""
    queued = 0
    for item in pending:
        if item.owner_source == "reassigned" and not _covered_by_request(
            session, campaign, reviewer, item
        ):
            queued += _enqueue(
                session,
                settings,
                now,
                secret,
                campaign,
                reviewer,
                "request",
                [item],
                f"handover:{item.id}",
            )
    return queued


def _covered_by_request(
    session: Session, campaign: Campaign, reviewer: str, item: ReviewItem
) -> bool:
    """True when the reviewer's first request listed the item handed over to them.

    By the items the request recorded, not by time: with a pinned clock a hand-over and
    the request share one instant, whichever came first."""
    first = session.exec(
        select(OutboxEmail.item_ids, OutboxEmail.created_at).where(
            OutboxEmail.idempotency_key == f"campaign:{campaign.id}:request:{reviewer}"
        )
    ).first()
    if first is None:
        return False
    listed, queued_at = first
    if listed is not None:
        return item.id in listed
    return _handed_over_before(session, item, reviewer, queued_at)  # queued before 0011


def _handed_over_before(
    session: Session, item: ReviewItem, reviewer: str, moment: datetime
) -> bool:
    decided = session.exec(
        select(Decision.decided_at)
        .where(Decision.review_item_id == item.id, Decision.new_owner_email == reviewer)
        .order_by(col(Decision.decided_at).desc())
    ).first()
    return decided is not None and decided < moment


def _enqueue(
    session: Session,
    settings: Settings,
    now: datetime,
    secret: bytes,
    campaign: Campaign,
    reviewer: str,
    kind: mail.Kind,
    items: list[ReviewItem],
    suffix: str = "",
) -> int:
    key = f"campaign:{campaign.id}:{kind}:{reviewer}" + (f":{suffix}" if suffix else "")
    title = campaign.name
    if kind == "orphan_escalation":
        changes = _orphan_changes(session, campaign, reviewer, items, now)
        if changes is None:
            return 0
        key, items, title = changes
    if _queued(session, key):
        return 0
    link = ReviewLink(campaign.id or 0, reviewer, campaign.due_at)
    digest = mail.Digest(
        kind=kind,
        campaign=title,
        recipient_email=reviewer,
        recipient_name=_person_name(session, reviewer),
        apps=tuple(_app_summaries(session, items, reviewer)),
        review_url=f"{settings.web.base_url.rstrip('/')}/review/{sign(secret, link)}",
        due_at=campaign.due_at,
        iam_contact=settings.iam_email,
        now=now,
    )
    cc = _manager_of(session, reviewer) if kind == "final_warning" else ()
    message = mail.render(digest, from_address=settings.smtp.from_address, cc=cc)
    listed = [item.id for item in items if item.id is not None]
    return insert_email(session, key, kind, reviewer, cc, message, campaign.id, now, listed)


def _orphan_changes(
    session: Session,
    campaign: Campaign,
    reviewer: str,
    pending: list[ReviewItem],
    now: datetime,
) -> tuple[str, list[ReviewItem], str] | None:
    """(key, items, title) of the IAM escalation due now: every pending item the first
    time; after that, at most once a day, only the items no escalation has listed since
    they reached IAM. The listed items are marked in the transaction that queues it."""
    key = f"campaign:{campaign.id}:orphan_escalation:{reviewer}"
    arrived = [item for item in pending if item.escalated_at is None]
    if not arrived:
        return None
    title = campaign.name
    if _queued(session, key):
        key, title = f"{key}:{now:%Y-%m-%d}", f"{campaign.name}, since the last orphan email"
        if _queued(session, key):
            return None
    for item in arrived:
        item.escalated_at = now
        session.add(item)
    return key, arrived, title


def _queued(session: Session, key: str) -> bool:
    return (
        session.exec(select(OutboxEmail.id).where(OutboxEmail.idempotency_key == key)).first()
        is not None
    )


def _person_name(session: Session, email: str) -> str | None:
    person = session.exec(select(Person).where(col(Person.email).ilike(email))).first()
    return person.display_name if person else None


def _manager_of(session: Session, email: str) -> tuple[str, ...]:
    """The reviewer's active manager, copied on the final warning."""
    person = session.exec(select(Person).where(col(Person.email).ilike(email))).first()
    if person is None or not person.manager_external_id:
        return ()
    manager = session.exec(
        select(Person).where(
            Person.tenant_id == person.tenant_id,
            Person.external_id == person.manager_external_id,
        )
    ).first()
    if manager is None or not manager.active or not manager.email:
        return ()
    return (manager.email.lower(),)


def _app_summaries(
    session: Session,
    items: list[ReviewItem],
    reviewer: str,
    orphan_reasons: dict[int, str] | None = None,
) -> list[mail.AppSummary]:
    """One summary per app, however many of its review items the reviewer holds."""
    by_app = {item.principal_id: item for item in reversed(items)}  # the first item wins
    items = [item for item in items if by_app[item.principal_id] is item]
    return [
        mail.AppSummary(
            provider=wording.PROVIDERS.get(c.tenant.kind, c.tenant.kind),
            tenant=c.tenant.name,
            kind=c.principal.kind,
            display_name=c.principal.display_name,
            external_id=c.principal.external_id,
            permissions=tuple(_permission(g) for g in c.grants),
            credentials=tuple(mail.CredentialInfo(x.type, x.expires_at) for x in c.credentials),
            last_used_at=c.principal.last_used_at,
            activity_known_since=c.principal.activity_window_start,
            owner_reason=_owner_reason(session, c.owners, c.item, reviewer),
            risk=c.principal.risk,
            risk_reasons=tuple(c.principal.risk_reasons),
            reversible=c.principal.kind != "third_party_app",
            last_use_unknown=c.principal.raw.get(LAST_USE_UNKNOWN),
            orphan_reason=(orphan_reasons or {}).get(c.principal.id or 0)
            or _orphan_reason(c.owners, c.item),
        )
        for c in item_contexts(session, items)
    ]


def _orphan_reason(owners: list[Ownership], item: ReviewItem) -> str | None:
    """Why IAM reviews it: a hand-back or a bounce, else the owner resolution's reason."""
    found = reports.orphan_reason(owners, item.owner_source)
    return found[0] if found else None


def _permission(grant: Grant) -> mail.Permission:
    return mail.Permission(
        name=grant.permission,
        resource=grant.resource,
        description=grant.description,
        high_risk=permission_level(grant.permission) == "high" or grant.consent == "domain_wide",
        consent=grant.consent,
    )


def _owner_reason(
    session: Session, owners: list[Ownership], item: ReviewItem, reviewer: str
) -> str:
    if item.owner_source == "reassigned":
        return f"{_handed_over_by(session, item, reviewer)} handed this app over to you"
    if item.owner_source == "not_mine":
        return "its owner said it is not theirs: the IAM team decides"
    if item.consenting_user:
        return "you granted this app access to your account yourself"
    for owner in owners:
        if (owner.email or "").lower() == reviewer:
            return owner.evidence
    orphan = next((o for o in owners if o.orphan_reason), None)
    return f"no accountable owner: {orphan.evidence}" if orphan else item.owner_source


def _handed_over_by(session: Session, item: ReviewItem, reviewer: str) -> str:
    """Who handed the item to `reviewer`: "Ann Active (ann@acme.com)"."""
    giver = session.exec(
        select(Decision.decided_by)
        .where(
            Decision.review_item_id == item.id,
            Decision.action == "reassign",
            col(Decision.new_owner_email) == reviewer,
        )
        .order_by(col(Decision.decided_at).desc(), col(Decision.id).desc())
    ).first()
    if giver is None:
        return "The previous owner"
    name = _person_name(session, giver)
    return f"{name} ({giver})" if name else giver


def queue_orphan_report(engine: Engine, settings: Settings, clock: Clock) -> int:
    """This week's orphan report for the IAM team (once per ISO week)."""
    now = clock.now()
    year, week, _ = now.isocalendar()
    recipient = settings.iam_email.lower()
    with session_scope(engine) as session:
        key = f"orphan_report:{year}-W{week:02d}:{recipient}"
        if session.exec(select(OutboxEmail.id).where(OutboxEmail.idempotency_key == key)).first():
            return 0
        orphaned = reports.orphans(session, settings, now)
        principals = session.exec(
            select(Principal)
            .join(Tenant, col(Tenant.id) == Principal.tenant_id)
            .where(
                col(Principal.external_id).in_([r["external_id"] for r in orphaned]),
                col(Tenant.name).in_({r["tenant"] for r in orphaned}),
            )
        ).all()
        tenants = {t.id: t.name for t in session.exec(select(Tenant))}
        ids = {(tenants[p.tenant_id], p.external_id): p.id or 0 for p in principals}
        reasons = {ids[(r["tenant"], r["external_id"])]: r["reason"] for r in orphaned}
        items = [
            ReviewItem(campaign_id=0, principal_id=pid, reviewer_email=recipient, due_at=now)
            for pid in reasons  # in the report's order
        ]
        digest = mail.Digest(
            kind="orphan_report",
            campaign=f"Orphan report {year}-W{week:02d}",
            recipient_email=recipient,
            recipient_name=None,
            apps=tuple(_app_summaries(session, items, recipient, reasons)),
            review_url=reports.report_url(settings, now),
            due_at=None,
            iam_contact=settings.iam_email,
            now=now,
        )
        message = mail.render(digest, from_address=settings.smtp.from_address)
        return insert_email(session, key, "orphan_report", recipient, (), message, None, now)


# --- enforcement notices -------------------------------------------------------------


def queue_disabled_notice(
    session: Session,
    settings: Settings,
    now: datetime,
    campaign: Campaign,
    reviewer: str,
    items: list[ReviewItem],
    must_consent_again: Mapping[int, tuple[str, ...]],
) -> int:
    """The notice that apps were disabled, to their reviewer with the IAM team copied;
    once per set of items. `must_consent_again` is by principal id."""
    iam = settings.iam_email.lower()
    ids = ",".join(str(i.id) for i in sorted(items, key=lambda i: i.id or 0))
    key = f"campaign:{campaign.id}:disabled_notice:{reviewer}:" + _short_hash(ids)
    apps = [
        replace(app, must_consent_again=must_consent_again.get(item.principal_id, ()))
        for item, app in zip(items, _app_summaries(session, items, reviewer), strict=True)
    ]
    digest = mail.Digest(
        kind="disabled_notice",
        campaign=campaign.name,
        recipient_email=reviewer,
        recipient_name=_person_name(session, reviewer),
        apps=tuple(apps),
        review_url=None,
        due_at=campaign.due_at,
        iam_contact=settings.iam_email,
        now=now,
    )
    cc = () if reviewer == iam else (iam,)
    message = mail.render(digest, from_address=settings.smtp.from_address, cc=cc)
    listed = [item.id for item in items if item.id is not None]
    return insert_email(
        session, key, "disabled_notice", reviewer, cc, message, campaign.id, now, listed
    )


def queue_enforcement_alert(
    session: Session,
    settings: Settings,
    now: datetime,
    *,
    tenant: str,
    key: str,
    note: str,
    items: list[ReviewItem],
    notes: Mapping[int, str],
) -> int:
    """One email to the IAM team about enforcement it must look at (a blocked run, a
    permanent failure); `key` makes it once. `notes` says per principal id what happened."""
    iam = settings.iam_email.lower()
    apps = [
        replace(app, note=notes.get(item.principal_id))
        for item, app in zip(items, _app_summaries(session, items, iam), strict=True)
    ]
    try:
        link: str | None = reports.report_url(settings, now)
    except ConfigError:
        link = None  # no signing key: the email still says what happened
    digest = mail.Digest(
        kind="enforcement_alert",
        campaign=f"enforcement in {tenant}",
        recipient_email=iam,
        recipient_name=None,
        apps=tuple(apps),
        review_url=link,
        due_at=None,
        iam_contact=settings.iam_email,
        now=now,
        note=note,
    )
    message = mail.render(digest, from_address=settings.smtp.from_address)
    return insert_email(
        session,
        f"enforcement_alert:{tenant}:{key}",
        "enforcement_alert",
        iam,
        (),
        message,
        None,
        now,
    )


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- sending --------------------------------------------------------------------------


def send_outbox(
    engine: Engine, settings: Settings, clock: Clock, summary: NotifySummary | None = None
) -> NotifySummary:
    summary = summary or NotifySummary()
    server = SmtpServer(
        host=settings.smtp.host,
        port=settings.smtp.port,
        starttls=settings.smtp.starttls,
        username=settings.smtp.username,
        password=settings.smtp.password.get_secret_value() if settings.smtp.password else None,
        timeout_seconds=settings.smtp.timeout_seconds,
    )
    while (row := _claim_next(engine, clock.now())) is not None:
        _deliver(engine, settings, clock, server, row, summary)
    return summary


def _claim_next(engine: Engine, now: datetime) -> OutboxEmail | None:
    """Claim one due row; only one sender's conditional UPDATE can win it."""
    claimable = and_(
        col(OutboxEmail.status) == "pending",
        or_(col(OutboxEmail.next_attempt_at).is_(None), col(OutboxEmail.next_attempt_at) <= now),
        or_(col(OutboxEmail.claimed_until).is_(None), col(OutboxEmail.claimed_until) <= now),
    )
    with session_scope(engine) as session:
        for candidate in session.exec(
            select(OutboxEmail.id).where(claimable).order_by(col(OutboxEmail.id)).limit(20)
        ):
            won = session.execute(
                update(OutboxEmail)
                .where(col(OutboxEmail.id) == candidate, claimable)
                .values(claimed_until=now + CLAIM_FOR)
            )
            if won.rowcount == 1:  # type: ignore[attr-defined]
                session.commit()
                return session.get(OutboxEmail, candidate)
    return None


def _message(row: OutboxEmail, from_address: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = row.recipient
    if row.cc:
        message["Cc"] = ", ".join(row.cc)
    message["Subject"] = row.subject
    message["Message-ID"] = row.message_id or make_msgid()
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(row.body_text)
    message.add_alternative(row.body_html, subtype="html")
    return message


def _deliver(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    server: SmtpServer,
    row: OutboxEmail,
    summary: NotifySummary,
) -> None:
    try:
        message_id = send(server, _message(row, settings.smtp.from_address))
    except HardBounce as bounce:
        _escalate_bounced(engine, settings, clock, row, str(bounce))
        summary.bounced += 1
    except TransientSendError as error:
        attempts = row.attempts + 1
        if attempts >= MAX_ATTEMPTS:
            _record(engine, row.id, status="failed", attempts=attempts, last_error=str(error))
            summary.failed += 1
            return
        delay = timedelta(minutes=min(2**attempts, 360) * random.uniform(0.5, 1.0))
        _record(
            engine,
            row.id,
            attempts=attempts,
            next_attempt_at=clock.now() + delay,
            claimed_until=None,
            last_error=str(error),
        )
        summary.retrying += 1
    except SendError as error:
        _record(engine, row.id, status="failed", attempts=row.attempts + 1, last_error=str(error))
        summary.failed += 1
    else:
        _record(engine, row.id, status="sent", message_id=message_id, sent_at=clock.now())
        summary.sent += 1


def _record(engine: Engine, row_id: int | None, **values: Any) -> None:
    with session_scope(engine) as session:
        session.execute(update(OutboxEmail).where(col(OutboxEmail.id) == row_id).values(**values))


def _escalate_bounced(
    engine: Engine, settings: Settings, clock: Clock, row: OutboxEmail, error: str
) -> None:
    """The recipient cannot be reached: what the mail asked of them goes to the IAM team.
    Recorded with the bounce in one transaction, so neither is lost nor done twice."""
    with session_scope(engine) as session:
        session.execute(
            update(OutboxEmail)
            .where(col(OutboxEmail.id) == row.id)
            .values(status="bounced", last_error=error)
        )
        data: dict[str, Any] = {"recipient": row.recipient}
        if row.kind == notices.KIND:
            data["notices_to_iam"] = notices.reroute_bounced(session, settings, clock.now(), row)
        else:
            data["items_escalated"] = _move_pending_to_iam(session, settings, row)
        audit.append(
            session,
            clock,
            actor="recert",
            action="owner.mail_bounced",
            subject_type="outbox_email",
            subject_id=str(row.id),
            data=data,
        )


def _move_pending_to_iam(session: Session, settings: Settings, row: OutboxEmail) -> list[int]:
    """The owner's pending items in the bounced mail's campaign go to the IAM team."""
    items = session.exec(
        select(ReviewItem).where(
            ReviewItem.reviewer_email == row.recipient,
            ReviewItem.status == "pending",
            ReviewItem.campaign_id == row.campaign_id,
        )
    ).all()
    for item in items:
        item.reviewer_email, item.owner_source = settings.iam_email.lower(), "bounced"
        item.escalated_at = None
        session.add(item)
    return [item.id or 0 for item in items]
