"""Step 6: enforcement. Plan what is due, apply the safety rules, act, and undo on request.

The plan, per tenant: disable an app that is overdue and that nobody kept, disable an app
its owner chose to revoke, remove the permissions an owner dropped, and revoke a user's
own consent when they chose revoke. Every candidate passes the safety rules (RULES); a
refusal names the rule. A whole tenant is blocked when its last complete discovery is
stale or when the plan would disable more than the blast-radius caps allow.

The tenant's mode decides what a run does: `off` nothing, `dry-run` (the default) records
the plan as an audit event, `enforce` carries it out. Each change is one small operation
that survives a crash anywhere: claim the action's row (unique by idempotency key) and
commit, call the provider (already done counts as done), record the outcome with its
audit event, and queue the notice later from the recorded rows. A re-run finds the rows
and changes nothing twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
from connectors.settings import EntraSettings, GoogleSettings, OktaSettings, TenantSettings
from recert import audit
from recert.broker import pacer_for
from recert.campaigns import close_finished, in_scope
from recert.clock import Clock
from recert.config import Settings, Tenant
from recert.db import session_scope
from recert.decisions import latest_decisions
from recert.locks import AlreadyRunning, Holder, Lease, job_lock
from recert.models import (
    AuditEvent,
    Campaign,
    EnforcementAction,
    Grant,
    OutboxEmail,
    Person,
    Principal,
    ReviewItem,
)
from recert.models import Tenant as TenantRow
from recert.notify import queue_disabled_notice, queue_enforcement_alert, send_outbox
from recert.risk import is_stale
from recert.store import grouped

log = logging.getLogger(__name__)

RULES = {
    "platform_owned": "owned by the platform itself (a Microsoft, Okta or Google built-in)",
    "managed_identity": "an Azure managed identity",
    "protected": "on the tenant's protected list",
    "self": "the app Recert itself signs in as",
    "owner_bounced": "the owner's mail bounced: escalated to the IAM team, never disabled",
    "handover_pending": "handed over to a new owner who has not answered yet",
    "not_mine": "its reviewer said it is not theirs: the IAM team decides",
    "orphan_in_use": "no accountable owner, but in use: the IAM team decides",
    "use_unknown": "no accountable owner and last use unknown (never counted as unused)",
    "not_active": "not active at the provider (disabled or deleted outside Recert)",
    "not_supported": "the provider offers no way to do this",
}
DISABLE, REMOVE_GRANT, REVOKE_CONSENT = "disable", "remove_grant", "revoke_consent"
UNDO = {DISABLE: "enable", REMOVE_GRANT: "restore_grant", REVOKE_CONSENT: "restore_consent"}
IAM_QUEUE_SOURCES = {"orphan", "iam_team"}  # no accountable owner: the IAM team reviews
MAX_ATTEMPTS = 5  # transient failures before one counts as permanent
MAX_ERROR = 500  # characters of provider error text kept
ALERT_APPS = 100  # apps listed in one IAM alert; the note gives the total


class ReenableRefused(Exception):
    """Re-enable cannot start: the message says why, naming the tenant and the app."""


# --- the plan -----------------------------------------------------------------------------


@dataclass
class PlannedAction:
    action: str  # disable | remove_grant | revoke_consent
    tenant: str
    principal_id: int
    kind: str
    external_id: str
    app_id: str | None
    display_name: str
    reason: str
    cause: str  # overdue | orphan_unused | owner_revoked | owner_reduced | user_revoked
    campaign_id: int
    item_id: int
    also_items: list[int] = field(default_factory=list)  # other items it settles
    grant_id: str | None = None
    permission: str | None = None
    consenting_user: str | None = None
    reversible: bool = True
    must_consent_again: list[str] = field(default_factory=list)
    last_used_at: datetime | None = None
    unused_days: int | None = None
    previous: str | None = None  # "retrying" or "in_progress": an earlier attempt's state
    attempts: int = 0

    @property
    def key(self) -> str:
        target = self.grant_id or self.consenting_user or self.external_id
        return f"{self.tenant}:item:{self.item_id}:{self.action}:{target}"

    @property
    def items(self) -> list[int]:
        return [self.item_id, *self.also_items]

    def before(self, principal_status: str) -> dict[str, Any]:
        return {
            "status": principal_status,
            "app_id": self.app_id,
            "cause": self.cause,
            "permission": self.permission,
            "consenting_user": self.consenting_user,
            "must_consent_again": self.must_consent_again,
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "kind": self.kind,
            "external_id": self.external_id,
            "display_name": self.display_name,
            "reason": self.reason,
            "campaign_id": self.campaign_id,
            "item_id": self.item_id,
            "permission": self.permission,
            "grant_id": self.grant_id,
            "consenting_user": self.consenting_user,
            "reversible": self.reversible,
            "must_consent_again": self.must_consent_again,
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "unused_days": self.unused_days,
            "previous_attempts": self.attempts,
        }


@dataclass
class Refusal:
    principal_id: int
    external_id: str
    display_name: str
    rule: str
    kind: str
    detail: str
    campaign_id: int
    item_id: int

    @property
    def key(self) -> str:
        return f"item:{self.item_id}:refused:{self.rule}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "external_id": self.external_id,
            "display_name": self.display_name,
            "rule": self.rule,
            "kind": self.kind,
            "detail": self.detail,
            "campaign_id": self.campaign_id,
            "item_id": self.item_id,
        }


@dataclass
class TenantPlan:
    tenant: str
    mode: str
    actions: list[PlannedAction] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    blocked: str | None = None
    blocked_by: str | None = None  # stale_discovery | blast_radius | never_discovered
    failed: list[dict[str, Any]] = field(default_factory=list)  # permanent, awaiting IAM
    in_scope: int = 0
    last_complete_discovery: datetime | None = None
    # every action key of each item, done ones included: an item is enforced once all are
    item_keys: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def disables(self) -> int:
        return len({a.principal_id for a in self.actions if a.action == DISABLE})

    def digest(self) -> str:
        """Identifies what the plan would do, not when it was computed."""
        parts = {
            "actions": sorted(a.key for a in self.actions),
            "refused": sorted(f"{r.key}:{r.external_id}" for r in self.refused),
            "blocked_by": self.blocked_by,
            "discovery": (
                self.last_complete_discovery.isoformat()
                if self.blocked_by == "stale_discovery" and self.last_complete_discovery
                else None
            ),
        }
        return hashlib.sha256(audit.canonical_json(parts).encode()).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "mode": self.mode,
            "actions": [a.as_dict() for a in self.actions],
            "refused": [r.as_dict() for r in self.refused],
            "blocked": self.blocked,
            "failed": self.failed,
            "disables": self.disables,
            "in_scope": self.in_scope,
            "last_complete_discovery": (
                self.last_complete_discovery.isoformat() if self.last_complete_discovery else None
            ),
        }


def plan(
    session: Session, settings: Settings, clock: Clock, tenants: list[str] | None = None
) -> list[TenantPlan]:
    """What a run would do now in each tenant (or only `tenants`), and why."""
    names = tenants or [t.name for t in settings.tenants]
    return [plan_tenant(session, settings, clock, settings.tenant(name)) for name in names]


def plan_tenant(session: Session, settings: Settings, clock: Clock, tenant: Tenant) -> TenantPlan:
    now = clock.now()
    result = TenantPlan(tenant=tenant.name, mode=tenant.enforcement)
    row = session.exec(select(TenantRow).where(TenantRow.name == tenant.name)).first()
    if row is None or row.id is None:
        result.blocked_by = "never_discovered"
        result.blocked = "no discovery yet: run `recert discover` first; nothing is changed"
        return result
    result.last_complete_discovery = row.last_complete_sync_at
    facts = _Facts.load(session, settings, tenant, row.id, now)
    for item in facts.items:
        _plan_item(facts, item, result)
    _attach_duplicates(result)
    result.in_scope = len(in_scope(session, [tenant.name]))
    result.blocked_by, result.blocked = _tenant_block(settings, result, now)
    return result


@dataclass
class _Facts:
    """Everything the plan of one tenant reads, loaded in a few queries."""

    settings: Settings
    tenant: Tenant
    now: datetime
    items: list[ReviewItem]
    principals: dict[int, Principal]
    decisions: dict[int, Any]
    grants: dict[int, list[Grant]]
    emails: dict[str, str]  # person external id -> email
    kept: set[tuple[int, int]]  # (campaign, principal) that someone kept
    bounced: set[tuple[int | None, str]]  # (campaign, recipient) whose mail bounced
    rows: dict[str, EnforcementAction]
    own_ids: set[str]
    protected: set[str]

    @classmethod
    def load(
        cls, session: Session, settings: Settings, tenant: Tenant, tenant_id: int, now: datetime
    ) -> _Facts:
        rows = session.exec(
            select(ReviewItem, Principal)
            .join(Principal, col(Principal.id) == ReviewItem.principal_id)
            .where(
                Principal.tenant_id == tenant_id,
                col(ReviewItem.status).in_(["pending", "decided"]),
            )
            .order_by(col(ReviewItem.id))
        ).all()
        items = [item for item, _ in rows]
        principals = {p.id or 0: p for _, p in rows}
        decisions = latest_decisions(session, [i.id or 0 for i in items])
        kept_items = session.exec(
            select(ReviewItem).where(col(ReviewItem.principal_id).in_(list(principals)))
        ).all()
        kept_decisions = latest_decisions(session, [i.id or 0 for i in kept_items])
        people = session.exec(select(Person).where(Person.tenant_id == tenant_id)).all()
        bounced = session.exec(
            select(OutboxEmail.campaign_id, OutboxEmail.recipient).where(
                OutboxEmail.status == "bounced"
            )
        ).all()
        actions = session.exec(
            select(EnforcementAction).where(EnforcementAction.tenant == tenant.name)
        ).all()
        return cls(
            settings=settings,
            tenant=tenant,
            now=now,
            items=items,
            principals=principals,
            decisions=decisions,
            grants=grouped(session, Grant, list(principals)),
            emails={p.external_id: p.email for p in people if p.email},
            kept={
                (i.campaign_id, i.principal_id)
                for i in kept_items
                if (d := kept_decisions.get(i.id or 0)) and d.action in ("keep", "reduce")
            },
            bounced={(c, r.lower()) for c, r in bounced},
            rows={a.idempotency_key: a for a in actions},
            own_ids=own_identities(tenant),
            protected=set(tenant.protected),
        )


def own_identities(tenant: Tenant) -> set[str]:
    """The ids of the apps Recert signs in as in this tenant, read and write credentials:
    Okta and Entra client ids, the Google service account's client id and email."""
    ids: set[str] = set()
    for settings in (tenant.read, tenant.write_settings):
        ids.update(_credential_ids(settings))
    return {i.lower() for i in ids if i}


def _credential_ids(settings: TenantSettings) -> Iterable[str]:
    if isinstance(settings, OktaSettings | EntraSettings) and settings.client_id:
        yield settings.client_id
    if isinstance(settings, GoogleSettings):
        try:
            key = json.loads(settings.credentials.get_secret_value())
        except ValueError:
            return
        if isinstance(key, dict):
            yield from (str(key.get(k) or "") for k in ("client_id", "client_email"))


def _plan_item(facts: _Facts, item: ReviewItem, result: TenantPlan) -> None:
    principal = facts.principals[item.principal_id]
    intents = _intents(facts, item, principal)
    if not intents:
        return
    principal_rule = _principal_rule(facts, principal)
    if principal_rule:
        result.refused.append(_refusal(principal, item, principal_rule, RULES[principal_rule]))
        return
    if isinstance(intents, Refusal):
        result.refused.append(intents)
        return
    for action in intents:
        if _settled(facts, result, action):
            continue
        unsupported = _unsupported(facts.tenant.kind, action)
        if unsupported:
            result.refused.append(_refusal(principal, item, "not_supported", unsupported))
        elif action.action == DISABLE and principal.status != "active":
            detail = f"{RULES['not_active']}: {principal.status}"
            result.refused.append(_refusal(principal, item, "not_active", detail))
        else:
            _add(facts, result, action)


def _settled(facts: _Facts, result: TenantPlan, action: PlannedAction) -> bool:
    """True when an earlier run finished this action (done, or failed for good)."""
    row = facts.rows.get(action.key)
    if row is None or row.status in ("in_progress", "retrying"):
        return False
    result.item_keys[action.item_id].append(action.key)
    if row.status == "failed":
        result.failed.append(
            {**action.as_dict(), "error": row.error, "failed_at": _iso(row.performed_at)}
        )
    return True


def _add(facts: _Facts, result: TenantPlan, action: PlannedAction) -> None:
    result.item_keys[action.item_id].append(action.key)
    row = facts.rows.get(action.key)
    action.previous = row.status if row else None
    action.attempts = row.attempts if row else 0
    result.actions.append(action)


def _attach_duplicates(result: TenantPlan) -> None:
    """One disable per app: a second overdue item of the same app rides along with it."""
    first: dict[int, PlannedAction] = {}
    kept: list[PlannedAction] = []
    for action in result.actions:
        if action.action != DISABLE:
            kept.append(action)
        elif action.principal_id in first:
            first[action.principal_id].also_items.append(action.item_id)
            result.item_keys[action.item_id] = [first[action.principal_id].key]
        else:
            first[action.principal_id] = action
            kept.append(action)
    result.actions = kept


def _intents(
    facts: _Facts, item: ReviewItem, principal: Principal
) -> list[PlannedAction] | Refusal | None:
    """What this item asks for, before the principal-level safety rules."""
    decision = facts.decisions.get(item.id or 0)
    if item.status == "decided" and decision is not None:
        day = f"{decision.decided_at:%Y-%m-%d}"
        if decision.action == "revoke" and item.consenting_user:
            return _consent_revokes(facts, item, principal, decision.decided_by, day)
        if decision.action == "revoke":
            reason = f"{decision.decided_by} chose to revoke it on {day}"
            return [_disable(facts, item, principal, reason, "owner_revoked")]
        if decision.action == "reduce":
            return _removals(facts, item, principal, decision, day)
        return None
    if item.status != "pending" or facts.now < item.due_at or item.consenting_user:
        return None  # a user's own consent only goes when they choose revoke
    if (item.campaign_id, item.principal_id) in facts.kept:
        return None
    refusal = _queue_rule(facts, item, principal)
    if refusal is not None:
        return refusal
    cause = "orphan_unused" if item.owner_source in IAM_QUEUE_SOURCES else "overdue"
    reason = f"not reviewed by {item.due_at:%Y-%m-%d}; {_use_phrase(principal, facts.now)}"
    if cause == "orphan_unused":
        reason = f"no accountable owner and nobody decided by {item.due_at:%Y-%m-%d}; "
        reason += _use_phrase(principal, facts.now)
    return [_disable(facts, item, principal, reason, cause)]


def _queue_rule(facts: _Facts, item: ReviewItem, principal: Principal) -> Refusal | None:
    """Overdue items the IAM team's queue holds instead of a disable."""
    if item.owner_source == "reassigned":
        detail = f"handed over to {item.reviewer_email}, who has not answered yet"
        return _refusal(principal, item, "handover_pending", detail)
    if item.owner_source == "not_mine":
        return _refusal(principal, item, "not_mine", RULES["not_mine"])
    if item.owner_source == "bounced" or (item.campaign_id, item.reviewer_email) in facts.bounced:
        return _refusal(principal, item, "owner_bounced", RULES["owner_bounced"])
    if item.owner_source in IAM_QUEUE_SOURCES:
        if principal.last_used_at is None and principal.activity_window_start is None:
            return _refusal(principal, item, "use_unknown", RULES["use_unknown"])
        if not is_stale(principal, facts.settings.risk.stale_days, facts.now):
            detail = f"{RULES['orphan_in_use']}; {_use_phrase(principal, facts.now)}"
            return _refusal(principal, item, "orphan_in_use", detail)
    return None


def _principal_rule(facts: _Facts, principal: Principal) -> str | None:
    """The safety rules that hold whatever anyone decided, re-checked at every run."""
    if principal.platform_owned:
        return "platform_owned"
    if principal.kind == PrincipalKind.MANAGED_IDENTITY:
        return "managed_identity"
    names = {principal.external_id, principal.app_id, principal.display_name}
    if principal.protected or names & facts.protected:
        return "protected"
    ids = {principal.external_id.lower(), (principal.app_id or "").lower()}
    if ids & facts.own_ids:
        return "self"
    return None


def _unsupported(provider: str, action: PlannedAction) -> str | None:
    """Why the provider cannot do this at all, if it cannot (connectors/*/act.py)."""
    kind = action.kind
    if provider == "okta" and action.action == DISABLE and kind != PrincipalKind.OAUTH_APP:
        return "Okta API tokens cannot be disabled, only revoked for good in the Admin console"
    if provider == "okta" and action.action == REVOKE_CONSENT:
        return "Okta apps hold no per-user consents Recert can revoke"
    if provider == "entra" and action.action == DISABLE and kind == PrincipalKind.OAUTH_APP:
        return "an app registration without a service principal has nothing to disable"
    if provider == "google" and kind == PrincipalKind.OAUTH_APP:
        return (
            "domain-wide delegation has no API: remove the client in the Admin console "
            "(Security > API controls > Domain-wide delegation)"
        )
    if provider == "google" and action.action == REMOVE_GRANT:
        return "Google cannot revoke one scope of an app: revoke the app or keep it"
    return None


def _refusal(principal: Principal, item: ReviewItem, rule: str, detail: str) -> Refusal:
    return Refusal(
        principal_id=principal.id or 0,
        external_id=principal.external_id,
        display_name=principal.display_name,
        rule=rule,
        kind=principal.kind,
        detail=detail,
        campaign_id=item.campaign_id,
        item_id=item.id or 0,
    )


def _base(
    facts: _Facts, item: ReviewItem, principal: Principal, action: str, reason: str, cause: str
) -> PlannedAction:
    return PlannedAction(
        action=action,
        tenant=facts.tenant.name,
        principal_id=principal.id or 0,
        kind=principal.kind,
        external_id=principal.external_id,
        app_id=principal.app_id,
        display_name=principal.display_name,
        reason=reason,
        cause=cause,
        campaign_id=item.campaign_id,
        item_id=item.id or 0,
        last_used_at=principal.last_used_at,
        unused_days=unused_days(principal, facts.now),
    )


def _disable(
    facts: _Facts, item: ReviewItem, principal: Principal, reason: str, cause: str
) -> PlannedAction:
    action = _base(facts, item, principal, DISABLE, reason, cause)
    if principal.kind == PrincipalKind.THIRD_PARTY_APP:
        users = {g.consenting_user for g in facts.grants[principal.id or 0] if g.consenting_user}
        action.reversible = False  # every user's token is deleted; they must consent again
        action.must_consent_again = sorted(facts.emails.get(u, u) for u in users)
    return action


def _removals(
    facts: _Facts, item: ReviewItem, principal: Principal, decision: Any, day: str
) -> list[PlannedAction]:
    held = {g.id: g for g in facts.grants[principal.id or 0]}
    actions = []
    for grant_row in decision.dropped_grant_ids:
        grant = held.get(grant_row)
        if grant is None:
            continue  # no longer held: nothing left to remove
        reason = f"{decision.decided_by} dropped {grant.permission} on {day}"
        action = _base(facts, item, principal, REMOVE_GRANT, reason, "owner_reduced")
        action.grant_id, action.permission = grant.grant_id, grant.permission
        actions.append(action)
    return actions


def _consent_revokes(
    facts: _Facts, item: ReviewItem, principal: Principal, user: str, day: str
) -> list[PlannedAction]:
    """A user revoking their own consent: on Google their token for the app (final), on
    Entra each delegated permission they granted (restorable)."""
    person = item.consenting_user
    reason = f"{user} revoked their own consent on {day}"
    if facts.tenant.kind == "google":
        action = _base(facts, item, principal, REVOKE_CONSENT, reason, "user_revoked")
        action.consenting_user, action.reversible = person, False
        action.must_consent_again = [facts.emails.get(person, person)]
        return [action]
    actions = []
    for grant in facts.grants[principal.id or 0]:
        if grant.consenting_user != person:
            continue
        action = _base(facts, item, principal, REVOKE_CONSENT, reason, "user_revoked")
        action.grant_id, action.permission = grant.grant_id, grant.permission
        action.consenting_user = person
        actions.append(action)
    return actions


def unused_days(principal: Principal, now: datetime) -> int | None:
    """Days without use as far as the provider's records go; None when use is unknown."""
    since = principal.last_used_at or principal.activity_window_start
    return (now - since).days if since else None


def _use_phrase(principal: Principal, now: datetime) -> str:
    if principal.last_used_at is not None:
        return (
            f"last used {principal.last_used_at:%Y-%m-%d} ({unused_days(principal, now)} days ago)"
        )
    if principal.activity_window_start is not None:
        return (
            f"not used since {principal.activity_window_start:%Y-%m-%d}, as far back as records go"
        )
    return "last use unknown"


def _tenant_block(
    settings: Settings, result: TenantPlan, now: datetime
) -> tuple[str | None, str | None]:
    limits = settings.enforcement
    last = result.last_complete_discovery
    fresh_for = timedelta(hours=limits.discovery_freshness_hours)
    if last is None:
        return "stale_discovery", "no complete discovery yet: nothing is changed"
    if now - last > fresh_for:
        hours = (now - last) / timedelta(hours=1)
        return "stale_discovery", (
            f"stale discovery: the last complete discovery finished {last:%Y-%m-%d %H:%M} UTC "
            f"({hours:.0f} h ago), more than discovery_freshness_hours "
            f"({limits.discovery_freshness_hours:g}); nothing is changed"
        )
    disables = result.disables
    cap_fraction = limits.max_disable_fraction * result.in_scope
    if disables > limits.max_disable_per_run:
        why = f"more than max_disable_per_run ({limits.max_disable_per_run})"
    elif disables > cap_fraction:
        why = (
            f"more than max_disable_fraction ({limits.max_disable_fraction:g}) of "
            f"{result.in_scope} apps in scope"
        )
    else:
        return None, None
    return "blast_radius", (
        f"blast radius: {disables} apps would be disabled, {why}; nothing is changed in "
        "this tenant until the IAM team reviews the plan"
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


# --- acting -------------------------------------------------------------------------------


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
    """A blocked tenant changes nothing; the IAM team hears once per distinct plan."""
    if not _record_plan(engine, clock, tenant_plan, "enforcement.blocked"):
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
    found = {i.id: i for i in session.exec(select(ReviewItem).where(col(ReviewItem.id).in_(ids)))}
    return [found[i] for i in ids if i in found]


def _record_refusals(engine: Engine, clock: Clock, tenant_plan: TenantPlan) -> None:
    """Refusals become rows once, for the evidence bundle's list of exceptions."""
    with session_scope(engine) as session:
        keys = [f"{tenant_plan.tenant}:{r.key}" for r in tenant_plan.refused]
        existing = set(
            session.exec(
                select(EnforcementAction.idempotency_key).where(
                    col(EnforcementAction.idempotency_key).in_(keys)
                )
            ).all()
        )
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


def _ref(action: PlannedAction | EnforcementAction, app_id: str | None) -> PrincipalRef:
    return PrincipalRef(action.external_id, PrincipalKind(action.kind), app_id)


def _grant_ref(
    provider: str, action: PlannedAction | EnforcementAction, app_id: str | None
) -> GrantRef:
    ref = _ref(action, app_id)
    if provider == "google" and action.action == REVOKE_CONSENT:
        from connectors.google.act import whole_app_grant

        return whole_app_grant(ref, action.consenting_user)
    return GrantRef(ref, action.grant_id or "", action.permission or "", action.consenting_user)


async def _perform(connector: Connector, provider: str, action: PlannedAction) -> Snapshot:
    if action.action == DISABLE:
        return await connector.disable(_ref(action, action.app_id))
    return await connector.revoke_grant(_grant_ref(provider, action, action.app_id))


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
    keys = {k for ks in tenant_plan.item_keys.values() for k in ks}
    if not keys:
        return
    with session_scope(engine) as session:
        done = set(
            session.exec(
                select(EnforcementAction.idempotency_key).where(
                    col(EnforcementAction.idempotency_key).in_(keys),
                    EnforcementAction.status == "done",
                )
            ).all()
        )
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


# --- undoing ------------------------------------------------------------------------------


@dataclass
class ReenableResult:
    tenant: str
    external_id: str
    display_name: str
    restored: list[str] = field(default_factory=list)
    not_reversible: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    already: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_reversible

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "external_id": self.external_id,
            "display_name": self.display_name,
            "restored": self.restored,
            "not_reversible": self.not_reversible,
            "failed": self.failed,
            "already_restored": self.already,
        }


def reenable(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    tenant: str,
    external_id: str,
    reason: str,
    actor: str,
    *,
    sleep: Sleeper = asyncio.sleep,
) -> ReenableResult:
    """Undo every change Recert made to one app, exactly: its status and the grants it
    removed, from the stored pre-change state. Records who did it and why. Google token
    revokes cannot be undone: the result names the users who must consent again."""
    reason = " ".join(reason.split())
    if not reason:
        raise ReenableRefused("say why the app is re-enabled (--reason): it is audited")
    config = settings.tenant(tenant)
    with job_lock(settings, engine, "enforce", tenant, owner=f"reenable by {actor}"):
        with Session(engine) as session:
            changes = _changes_of(session, tenant, external_id)
            principal = session.get(Principal, changes[0].principal_id) if changes else None
        if principal is None:
            raise ReenableRefused(
                f"{tenant}/{external_id}: Recert has not disabled or changed this app"
            )
        result = ReenableResult(tenant, external_id, principal.display_name)
        pending = _undo_pending(engine, changes, result)
        if pending:
            undo = _Undo(engine, settings, clock, config, reason, actor, sleep)
            asyncio.run(undo.run(pending, result))
        else:
            result.already = not result.not_reversible
    return result


def _changes_of(session: Session, tenant: str, external_id: str) -> list[EnforcementAction]:
    """The changes Recert made to the app, newest first (undone in that order)."""
    return list(
        session.exec(
            select(EnforcementAction)
            .where(
                EnforcementAction.tenant == tenant,
                EnforcementAction.external_id == external_id,
                EnforcementAction.status == "done",
                col(EnforcementAction.action).in_(list(UNDO)),
            )
            .order_by(col(EnforcementAction.performed_at).desc(), col(EnforcementAction.id).desc())
        ).all()
    )


def _undo_pending(
    engine: Engine, changes: list[EnforcementAction], result: ReenableResult
) -> list[EnforcementAction]:
    """The changes not undone yet; those that cannot be undone are reported again."""
    with Session(engine) as session:
        undone = {
            r.reverses_id: r
            for r in session.exec(
                select(EnforcementAction).where(
                    col(EnforcementAction.reverses_id).in_([c.id for c in changes])
                )
            )
        }
    pending = []
    for change in changes:
        previous = undone.get(change.id)
        if previous is not None and previous.status == "not_reversible":
            result.not_reversible.append(_irreversible(change))
        elif previous is None or previous.status == "failed":
            pending.append(change)
    return pending


def _irreversible(change: EnforcementAction) -> dict[str, Any]:
    users = list(change.before.get("must_consent_again") or [])
    return {
        "action": change.action,
        "message": "Google revoked the users' tokens: this cannot be undone; "
        + (
            f"these users must consent again: {', '.join(users)}"
            if users
            else "users must consent again"
        ),
        "must_consent_again": users,
    }


@dataclass
class _Undo:
    engine: Engine
    settings: Settings
    clock: Clock
    tenant: Tenant
    reason: str
    actor: str
    sleep: Sleeper

    async def run(self, changes: list[EnforcementAction], result: ReenableResult) -> None:
        connector: Connector | None = None
        try:
            for change in changes:
                if not change.reversible:
                    self._record(change, "not_reversible", None)
                    result.not_reversible.append(_irreversible(change))
                    continue
                connector = connector or self._connector()
                error = await _reverse(connector, self.tenant.kind, change)
                self._record(change, "failed" if error else "done", error)
                what = f"{UNDO[change.action]} {change.permission or change.consenting_user or ''}"
                if error:
                    result.failed.append({"action": UNDO[change.action], "error": error})
                else:
                    result.restored.append(what.strip())
        finally:
            if connector is not None:
                await connector.aclose()

    def _connector(self) -> Connector:
        pacer = pacer_for(self.settings, self.tenant.name, sleep=self.sleep)
        return open_connector(
            self.tenant.write_settings, sleep=self.sleep, now=self.clock.now, pacer=pacer
        )

    def _record(self, change: EnforcementAction, status: str, error: str | None) -> None:
        _record_undo(self.engine, self.clock, change, status, self.reason, self.actor, error)


async def _reverse(connector: Connector, provider: str, change: EnforcementAction) -> str | None:
    app_id = change.before.get("app_id")
    try:
        if change.action == DISABLE:
            await connector.enable(_ref(change, app_id), change.snapshot)
        else:
            await connector.restore_grant(_grant_ref(provider, change, app_id), change.snapshot)
    except ConnectorError as error:
        return str(error)[:MAX_ERROR]
    return None


def _record_undo(
    engine: Engine,
    clock: Clock,
    change: EnforcementAction,
    status: str,
    reason: str,
    actor: str,
    error: str | None,
) -> None:
    now = clock.now()
    with session_scope(engine) as session:
        key = f"undo:{change.id}"
        row = session.exec(
            select(EnforcementAction).where(EnforcementAction.idempotency_key == key)
        ).first()
        principal = session.get(Principal, change.principal_id)
        if row is None:
            row = EnforcementAction(
                idempotency_key=key,
                tenant=change.tenant,
                principal_id=change.principal_id,
                external_id=change.external_id,
                display_name=change.display_name,
                kind=change.kind,
                campaign_id=change.campaign_id,
                review_item_id=change.review_item_id,
                action=UNDO[change.action],
                status=status,
                reason=reason,
                grant_id=change.grant_id,
                permission=change.permission,
                consenting_user=change.consenting_user,
                reversible=change.reversible,
                before={"status": principal.status if principal else None},
                snapshot=change.snapshot,
                created_at=now,
                reverses_id=change.id,
            )
        row.status, row.error, row.attempts = status, error, row.attempts + 1
        row.performed_by, row.performed_at, row.reason = actor, now, reason
        restored = status == "done"
        if restored and change.action == DISABLE and principal is not None:
            principal.status = change.before.get("status") or "active"
            session.add(principal)
        row.after = {"status": principal.status if principal else None} if restored else {}
        if status == "not_reversible":
            row.after = {"must_consent_again": change.before.get("must_consent_again") or []}
        session.add(row)
        session.flush()
        audit.append(
            session,
            clock,
            actor=actor,
            action=f"enforcement.{row.action}" + ("" if restored else f"_{status}"),
            subject_type="principal",
            subject_id=change.external_id,
            tenant=change.tenant,
            data={"reverses": change.id, "reason": reason, "error": error},
        )
