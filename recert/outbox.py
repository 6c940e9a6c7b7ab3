"""Queueing a message in the transactional outbox: one row per idempotency key, inserted
in the caller's transaction; `recert.notify` sends the rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import make_msgid

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from recert.models import OutboxEmail


def insert_email(
    session: Session,
    key: str,
    kind: str,
    recipient: str,
    cc: tuple[str, ...],
    message: EmailMessage,
    campaign_id: int | None,
    now: datetime,
    item_ids: Sequence[int] | None = None,
) -> int:
    """1 when queued, 0 when another run queued `key` first."""
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    row = {
        "idempotency_key": key,
        "kind": kind,
        "recipient": recipient,
        "cc": list(cc),
        "subject": str(message["Subject"]),
        "body_text": text_part.get_content() if text_part else "",
        "body_html": html_part.get_content() if html_part else "",
        "status": "pending",
        "attempts": 0,
        "message_id": make_msgid(domain=recipient.rsplit("@", 1)[-1] or "recert"),
        "created_at": now,
        "campaign_id": campaign_id,
        "item_ids": None if item_ids is None else list(item_ids),
    }
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(OutboxEmail)
        .values(row)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(col(OutboxEmail.id))
    )
    return len(session.execute(statement).all())


def queue_email(
    session: Session, key: str, kind: str, recipient: str, message: EmailMessage, now: datetime
) -> bool:
    """Queue a message that belongs to no campaign; False when `key` is queued already."""
    return insert_email(session, key, kind, recipient, (), message, None, now) == 1
