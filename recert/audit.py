"""The tamper-evident audit log: every state change appends one hash-chained event.

Each event's hash is SHA-256 over the previous event's hash and the event's own canonical
JSON (its sequence number included), so editing, deleting, inserting or reordering any
event breaks the chain at that point. A one-row head, locked by every append, serializes
writers and lets `verify` notice a truncated tail.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col, select

from recert.clock import Clock, as_utc
from recert.models import AuditEvent, AuditHead

GENESIS = "0" * 64


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _payload(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "occurred_at": as_utc(event.occurred_at).isoformat(),
        "actor": event.actor,
        "action": event.action,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "tenant": event.tenant,
        "data": event.data,
        "prev_hash": event.prev_hash,
    }


def event_hash(event: AuditEvent) -> str:
    return _digest(_payload(event))


def _digest(payload: dict[str, Any]) -> str:
    body = payload["prev_hash"] + "\n" + canonical_json(payload)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def append(
    session: Session,
    clock: Clock,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    tenant: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction (it commits with the change it records)."""
    head = session.exec(select(AuditHead).where(AuditHead.id == 1).with_for_update()).one()
    event = AuditEvent(
        seq=head.seq + 1,
        occurred_at=clock.now(),
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        tenant=tenant,
        data=json.loads(canonical_json(dict(data or {}))),  # what is stored is what is hashed
        prev_hash=head.hash,
        hash="",
    )
    event.hash = event_hash(event)
    head.seq, head.hash = event.seq, event.hash
    session.add(event)
    session.add(head)
    session.flush()
    return event


@dataclass(frozen=True)
class Entry:
    """One event for `append_many`: the keyword arguments of `append`."""

    actor: str
    action: str
    subject_type: str
    subject_id: str
    tenant: str | None = None
    data: Mapping[str, Any] | None = None


def append_many(session: Session, clock: Clock, entries: Sequence[Entry]) -> None:
    """Append events in order, as `append` would one by one, with one statement: the head
    is locked once and the chain computed here."""
    if not entries:
        return
    head = session.exec(select(AuditHead).where(AuditHead.id == 1).with_for_update()).one()
    rows = []
    for entry in entries:
        moment = as_utc(clock.now())
        payload = {
            "seq": head.seq + 1,
            "occurred_at": moment.isoformat(),
            "actor": entry.actor,
            "action": entry.action,
            "subject_type": entry.subject_type,
            "subject_id": entry.subject_id,
            "tenant": entry.tenant,
            "data": json.loads(canonical_json(dict(entry.data or {}))),
            "prev_hash": head.hash,
        }
        digest = _digest(payload)
        head.seq, head.hash = payload["seq"], digest
        rows.append({**payload, "occurred_at": moment, "hash": digest})
    session.execute(insert(AuditEvent.__table__), rows)  # type: ignore[attr-defined]
    session.add(head)
    session.flush()


@dataclass(frozen=True)
class Verification:
    ok: bool
    events: int
    head: str
    first_bad_seq: int | None = None
    problem: str | None = None


def verify(session: Session, batch: int = 5000) -> Verification:
    """Walk the chain in order; report the first event that does not fit."""
    expected_seq, expected_prev, count = 1, GENESIS, 0
    query = select(AuditEvent).order_by(col(AuditEvent.seq))
    for event in session.exec(query.execution_options(yield_per=batch)):
        problem = _check(event, expected_seq, expected_prev)
        if problem:
            return Verification(False, count, expected_prev, event.seq, problem)
        expected_seq, expected_prev, count = event.seq + 1, event.hash, count + 1
    head = session.get(AuditHead, 1)
    if head is None or (head.seq, head.hash) != (expected_seq - 1, expected_prev):
        problem = "the chain ends before its recorded head: events were removed from the end"
        return Verification(False, count, expected_prev, expected_seq, problem)
    return Verification(True, count, expected_prev)


def _check(event: AuditEvent, expected_seq: int, expected_prev: str) -> str | None:
    if event.seq != expected_seq:
        return f"expected event {expected_seq} next, found {event.seq}: events missing"
    if event.prev_hash != expected_prev:
        return "its prev_hash does not match the event before it: inserted or reordered"
    if event_hash(event) != event.hash:
        return "its content does not match its hash: edited"
    return None
