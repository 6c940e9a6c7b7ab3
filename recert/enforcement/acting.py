"""Carrying a plan out: each change claimed, made and recorded so that a crash anywhere
re-runs to the same end state; notices and IAM alerts from the recorded rows."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from connectors import Sleeper, open_connector
from connectors.base import (
    Connector,
    ConnectorError,
    GrantRef,
    NotFound,
    PrincipalKind,
    PrincipalRef,
    Snapshot,
    TransientError,
)
from recert import audit
from recert.broker import pacer_for
from recert.campaigns import close_finished
from recert.clock import Clock
from recert.config import Settings, Tenant
from recert.db import session_scope
from recert.enforcement.planning import (
    CHUNK,
    DISABLE,
    REVOKE_CONSENT,
    PlannedAction,
    TenantPlan,
    plan_tenant,
)
from recert.locks import AlreadyRunning, Holder, Lease, job_lock
from recert.models import AuditEvent, Campaign, EnforcementAction, Principal, ReviewItem
from recert.notify import queue_disabled_notice, queue_enforcement_alert, send_outbox

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # transient failures before one counts as permanent
MAX_ERROR = 500  # characters of provider error text kept
ALERT_APPS = 100  # apps listed in one IAM alert; the note gives the total


@dataclass
class EnforceSummary:
    tenant: str
    mode: str
    status: str  # off | dry-run | blocked | enforced | skipped
    blocked: str | None = None
    planned: int = 0
    done: int = 0
    retrying: int = 0
    failed: int = 0
    refused: int = 0
    notices: int = 0
    alerts: int = 0
    error: str | None = None
    locked_by: Holder | None = field(default=None, repr=False)
    lock_expires_in: float = field(default=0.0, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "mode": self.mode,
            "status": self.status,
            "blocked": self.blocked,
            "planned": self.planned,
            "done": self.done,
            "retrying": self.retrying,
            "failed": self.failed,
            "refused": self.refused,
            "notices": self.notices,
            "alerts": self.alerts,
            "error": self.error,
        }


def enforce(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    tenants: list[str] | None = None,
    *,
    owner: str = "cli",
    task_id: str | None = None,
    sleep: Sleeper = asyncio.sleep,
) -> list[EnforceSummary]:
    """One enforcement run per tenant under the tenant's enforce lock, each in its mode;
    then close finished campaigns and send what was queued."""
    summaries = []
    for name in tenants or [t.name for t in settings.tenants]:
        tenant = settings.tenant(name)
        try:
            with job_lock(settings, engine, "enforce", name, owner=owner, task_id=task_id) as lease:
                summary = enforce_tenant(
                    engine,
                    settings,
                    clock,
                    tenant,
                    lease,
                    shared_pacing=owner == "celery",
                    sleep=sleep,
                )
        except AlreadyRunning as busy:
            summary = EnforceSummary(name, tenant.enforcement, "skipped", error=str(busy))
            summary.locked_by, summary.lock_expires_in = busy.holder, busy.expires_in
        summaries.append(summary)
    with session_scope(engine) as session:
        close_finished(session, clock)
    if any(s.notices or s.alerts for s in summaries):
        send_outbox(engine, settings, clock)
    return summaries


def enforce_tenant(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    tenant: Tenant,
    lease: Lease,
    *,
    shared_pacing: bool = False,
    sleep: Sleeper = asyncio.sleep,
) -> EnforceSummary:
    """One tenant's run; the caller holds its enforce lock. `sleep` is every wait the
    connector makes (retries, pacing)."""
    with Session(engine) as session:
        tenant_plan = plan_tenant(session, settings, clock, tenant)
    summary = EnforceSummary(
        tenant.name,
        tenant.enforcement,
        tenant.enforcement,
        blocked=tenant_plan.blocked,
        planned=len(tenant_plan.actions),
        refused=len(tenant_plan.refused),
    )
    if tenant.enforcement == "off":
        return summary
    if tenant.enforcement == "dry-run":
        _record_plan(engine, clock, tenant_plan, "enforcement.planned")
        return summary
    if tenant_plan.blocked:
        summary.status = "blocked"
        summary.alerts = _block(engine, settings, clock, tenant_plan)
        return summary
    _record_refusals(engine, clock, tenant_plan)
    if tenant_plan.actions:
        pacer = pacer_for(settings, tenant.name, shared=shared_pacing, sleep=sleep)
        connector = open_connector(tenant.write_settings, sleep=sleep, now=clock.now, pacer=pacer)
        asyncio.run(_carry_out(engine, clock, tenant, connector, tenant_plan, lease, summary))
    _mark_enforced(engine, tenant_plan)
    summary.notices = _queue_notices(engine, settings, clock, tenant.name)
    summary.alerts = _queue_failure_alerts(engine, settings, clock, tenant.name)
    summary.status = "enforced"
    return summary


def _record_plan(engine: Engine, clock: Clock, tenant_plan: TenantPlan, action: str) -> bool:
    """Audit the plan once per distinct plan: re-runs of the same plan add nothing."""
    digest = tenant_plan.digest()
    with session_scope(engine) as session:
        last = session.exec(
            select(AuditEvent)
            .where(AuditEvent.tenant == tenant_plan.tenant, AuditEvent.action == action)
            .order_by(col(AuditEvent.seq).desc())
        ).first()
        if last is not None and last.data.get("digest") == digest:
            return False
        audit.append(
            session,
            clock,
            actor="recert",
            action=action,
            subject_type="tenant",
            subject_id=tenant_plan.tenant,
            tenant=tenant_plan.tenant,
            data={"digest": digest, "plan": tenant_plan.as_dict()},
        )
    return True


def _block(engine: Engine, settings: Settings, clock: Clock, tenant_plan: TenantPlan) -> int:
    """A blocked tenant changes nothing; when that held changes back, the IAM team hears
    once per distinct plan."""
    recorded = _record_plan(engine, clock, tenant_plan, "enforcement.blocked")
    if not recorded or not tenant_plan.actions:
        return 0
    planned = [a for a in tenant_plan.actions if a.action == DISABLE] or tenant_plan.actions
    with session_scope(engine) as session:
        items = _items(session, [a.item_id for a in planned[:ALERT_APPS]])
        note = f"{tenant_plan.blocked}."
        if len(planned) > ALERT_APPS:
            note += f" The first {ALERT_APPS} of {len(planned)} apps are listed."
        notes = {a.principal_id: f"Would be: {a.reason}" for a in planned}
        return queue_enforcement_alert(
            session,
            settings,
            clock.now(),
            tenant=tenant_plan.tenant,
            key=f"blocked:{tenant_plan.digest()}",
            note=note,
            items=items,
            notes=notes,
        )


def _items(session: Session, ids: list[int]) -> list[ReviewItem]:
    found: dict[int | None, ReviewItem] = {}
    for start in range(0, len(ids), CHUNK):
        query = select(ReviewItem).where(col(ReviewItem.id).in_(ids[start : start + CHUNK]))
        found.update((i.id, i) for i in session.exec(query))
    return [found[i] for i in ids if i in found]


def _existing(session: Session, keys: list[str], status: str | None = None) -> set[str]:
    """Which of the idempotency keys have a row (with that status, if given)."""
    found: set[str] = set()
    for start in range(0, len(keys), CHUNK):
        query = select(EnforcementAction.idempotency_key).where(
            col(EnforcementAction.idempotency_key).in_(keys[start : start + CHUNK])
        )
        if status:
            query = query.where(EnforcementAction.status == status)
        found.update(session.exec(query).all())
    return found


def _record_refusals(engine: Engine, clock: Clock, tenant_plan: TenantPlan) -> None:
    """Refusals become rows once, for the evidence bundle's list of exceptions."""
    with session_scope(engine) as session:
        keys = [f"{tenant_plan.tenant}:{r.key}" for r in tenant_plan.refused]
        existing = _existing(session, keys)
        for key, refusal in zip(keys, tenant_plan.refused, strict=True):
            if key in existing:
                continue
            existing.add(key)
            principal = session.get(Principal, refusal.principal_id)
            session.add(
                EnforcementAction(
                    idempotency_key=key,
                    tenant=tenant_plan.tenant,
                    principal_id=refusal.principal_id,
                    external_id=refusal.external_id,
                    display_name=refusal.display_name,
                    kind=refusal.kind,
                    campaign_id=refusal.campaign_id,
                    review_item_id=refusal.item_id,
                    action="refuse",
                    status="refused",
                    reason=refusal.detail,
                    rule=refusal.rule,
                    before={"status": principal.status if principal else None},
                    created_at=clock.now(),
                )
            )


async def _carry_out(
    engine: Engine,
    clock: Clock,
    tenant: Tenant,
    connector: Connector,
    tenant_plan: TenantPlan,
    lease: Lease,
    summary: EnforceSummary,
) -> None:
    try:
        for action in tenant_plan.actions:
            lease.check()  # a run that lost its lock stops before its next change
            claimed = _claim(engine, clock, action)
            if claimed is None:
                continue
            row_id, interrupted = claimed
            outcome = await _attempt(connector, tenant.kind, action)
            status = _record(engine, clock, action, row_id, interrupted, outcome)
            setattr(summary, status, getattr(summary, status) + 1)
    finally:
        await connector.aclose()


def _claim(engine: Engine, clock: Clock, action: PlannedAction) -> tuple[int, bool] | None:
    """Take the action's row before touching the provider. Returns its id and whether an
    earlier attempt died mid-way (its outcome at the provider unknown), or None when there
    is nothing to do now."""
    now = clock.now()
    with session_scope(engine) as session:
        row = session.exec(
            select(EnforcementAction)
            .where(EnforcementAction.idempotency_key == action.key)
            .with_for_update()
        ).first()
        if row is None:
            principal = session.get(Principal, action.principal_id)
            row = EnforcementAction(
                idempotency_key=action.key,
                tenant=action.tenant,
                principal_id=action.principal_id,
                external_id=action.external_id,
                display_name=action.display_name,
                kind=action.kind,
                campaign_id=action.campaign_id,
                review_item_id=action.item_id,
                action=action.action,
                status="in_progress",
                reason=action.reason,
                grant_id=action.grant_id,
                permission=action.permission,
                consenting_user=action.consenting_user,
                reversible=action.reversible,
                before=action.before(principal.status if principal else "unknown"),
                attempts=1,
                created_at=now,
            )
            session.add(row)
            session.flush()
            return row.id or 0, False
        interrupted = row.status == "in_progress"
        due = row.next_attempt_at is None or row.next_attempt_at <= now
        if not interrupted and not (row.status == "retrying" and due):
            return None
        row.status, row.attempts = "in_progress", row.attempts + 1
        session.add(row)
        return row.id or 0, interrupted


@dataclass
class _Outcome:
    status: str  # done | retrying | failed
    snapshot: Snapshot = field(default_factory=dict)
    error: str | None = None
    note: str | None = None


async def _attempt(connector: Connector, provider: str, action: PlannedAction) -> _Outcome:
    try:
        return _Outcome("done", await _perform(connector, provider, action))
    except NotFound:
        return _Outcome("done", note="not found at the provider: already gone")
    except TransientError as error:
        return _Outcome("retrying", error=str(error)[:MAX_ERROR])
    except ConnectorError as error:
        return _Outcome("failed", error=str(error)[:MAX_ERROR])
    except Exception as error:  # an unexpected answer must not stop the other changes
        log.exception("tenant %s: %s of %s crashed", action.tenant, action.action, action.key)
        return _Outcome("failed", error=f"{type(error).__name__}: {error}"[:MAX_ERROR])


def principal_ref(action: PlannedAction | EnforcementAction, app_id: str | None) -> PrincipalRef:
    users = tuple(action.consenting_users) if isinstance(action, PlannedAction) else ()
    return PrincipalRef(action.external_id, PrincipalKind(action.kind), app_id, users)


def grant_ref(
    provider: str, action: PlannedAction | EnforcementAction, app_id: str | None
) -> GrantRef:
    ref = principal_ref(action, app_id)
    if provider == "google" and action.action == REVOKE_CONSENT:
        from connectors.google.act import whole_app_grant

        return whole_app_grant(ref, action.consenting_user)
    return GrantRef(ref, action.grant_id or "", action.permission or "", action.consenting_user)


async def _perform(connector: Connector, provider: str, action: PlannedAction) -> Snapshot:
    if action.action == DISABLE:
        return await connector.disable(principal_ref(action, action.app_id))
    return await connector.revoke_grant(grant_ref(provider, action, action.app_id))


def _record(
    engine: Engine,
    clock: Clock,
    action: PlannedAction,
    row_id: int,
    interrupted: bool,
    outcome: _Outcome,
) -> str:
    """Store the outcome; returns the summary field it counts under."""
    now = clock.now()
    with session_scope(engine) as session:
        row = session.get(EnforcementAction, row_id)
        assert row is not None
        if outcome.status == "done":
            _record_done(session, clock, action, row, interrupted, outcome)
            return "done"
        row.error = outcome.error
        if outcome.status == "retrying" and row.attempts < MAX_ATTEMPTS:
            backoff = timedelta(minutes=min(2**row.attempts, 60) * random.uniform(0.5, 1.0))
            row.status, row.next_attempt_at = "retrying", now + backoff
            session.add(row)
            return "retrying"
        row.status, row.performed_at = "failed", now
        session.add(row)
        audit.append(
            session,
            clock,
            actor="recert",
            action=f"enforcement.{action.action}_failed",
            subject_type="principal",
            subject_id=action.external_id,
            tenant=action.tenant,
            data={"key": action.key, "error": row.error, "attempts": row.attempts},
        )
        return "failed"


def _record_done(
    session: Session,
    clock: Clock,
    action: PlannedAction,
    row: EnforcementAction,
    interrupted: bool,
    outcome: _Outcome,
) -> None:
    snapshot = dict(outcome.snapshot)
    after: dict[str, Any] = {"note": outcome.note} if outcome.note else {}
    if interrupted and action.action == DISABLE and row.before.get("status") == "active":
        # An earlier attempt died after the provider may already have disabled it, so the
        # provider now reports "was disabled". Every connector's enable() takes an empty
        # snapshot as "it was active", which is what the inventory said before we began.
        after["provider_snapshot"], snapshot = snapshot, {}
    if action.action == DISABLE:
        after["status"] = "disabled"
        principal = session.get(Principal, action.principal_id)
        if principal is not None and not outcome.note:
            principal.status = "disabled"
            session.add(principal)
    else:
        after["removed"] = action.permission or "the user's consent"
    row.status, row.snapshot, row.after = "done", snapshot, after
    row.performed_at, row.error, row.next_attempt_at = clock.now(), None, None
    session.add(row)
    audit.append(
        session,
        clock,
        actor="recert",
        action=f"enforcement.{action.action}",
        subject_type="principal",
        subject_id=action.external_id,
        tenant=action.tenant,
        data={
            "key": action.key,
            "item_id": action.item_id,
            "campaign_id": action.campaign_id,
            "reason": action.reason,
            "permission": action.permission,
            "reversible": action.reversible,
            "must_consent_again": action.must_consent_again,
            "note": outcome.note,
        },
    )


def _mark_enforced(engine: Engine, tenant_plan: TenantPlan) -> None:
    """An item is enforced once every change it asked for is done."""
    keys = sorted({k for ks in tenant_plan.item_keys.values() for k in ks})
    if not keys:
        return
    with session_scope(engine) as session:
        done = _existing(session, keys, "done")
        for item in _items(session, list(tenant_plan.item_keys)):
            if set(tenant_plan.item_keys[item.id or 0]) <= done:
                item.status = "enforced"
                session.add(item)


def _queue_notices(engine: Engine, settings: Settings, clock: Clock, tenant: str) -> int:
    """The disabled notice for apps disabled because nobody answered in time: one per
    campaign and reviewer, the IAM team copied; each row is announced once."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(EnforcementAction).where(
                EnforcementAction.tenant == tenant,
                EnforcementAction.action == DISABLE,
                EnforcementAction.status == "done",
                col(EnforcementAction.mailed_at).is_(None),
            )
        ).all()
        rows = [r for r in rows if r.before.get("cause") in ("overdue", "orphan_unused")]
        groups: dict[tuple[int, str], list[tuple[EnforcementAction, ReviewItem]]] = defaultdict(
            list
        )
        items = {i.id: i for i in _items(session, [r.review_item_id or 0 for r in rows])}
        for row in rows:
            item = items.get(row.review_item_id)
            if item is not None:
                groups[(item.campaign_id, item.reviewer_email)].append((row, item))
        queued = 0
        for (campaign_id, reviewer), members in groups.items():
            campaign = session.get(Campaign, campaign_id)
            assert campaign is not None
            users = {
                row.principal_id: tuple(row.before.get("must_consent_again") or ())
                for row, _ in members
            }
            queued += queue_disabled_notice(
                session, settings, clock.now(), campaign, reviewer, [i for _, i in members], users
            )
        for row in rows:
            row.mailed_at = clock.now()
            session.add(row)
        return queued


def _queue_failure_alerts(engine: Engine, settings: Settings, clock: Clock, tenant: str) -> int:
    """Permanent failures go to the IAM team, once each, and stay on the report."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(EnforcementAction).where(
                EnforcementAction.tenant == tenant,
                EnforcementAction.status == "failed",
                col(EnforcementAction.mailed_at).is_(None),
            )
        ).all()
        if not rows:
            return 0
        items = _items(session, [r.review_item_id or 0 for r in rows][:ALERT_APPS])
        notes = {r.principal_id: f"Could not {r.action.replace('_', ' ')}: {r.error}" for r in rows}
        note = (
            f"{len(rows)} changes failed for good after {MAX_ATTEMPTS} attempts at most, or "
            "were refused by the provider. Fix the cause (often the enforce credential's "
            "permissions), then act in the provider's console or re-run enforcement."
        )
        ids = ",".join(str(r.id) for r in rows)
        key = "failed:" + hashlib.sha256(ids.encode()).hexdigest()[:16]
        queued = queue_enforcement_alert(
            session,
            settings,
            clock.now(),
            tenant=tenant,
            key=key,
            note=note,
            items=items,
            notes=notes,
        )
        for row in rows:
            row.mailed_at = clock.now()
            session.add(row)
        return queued
