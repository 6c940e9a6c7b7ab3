"""The enforcement plan: what is due in a tenant, and the safety rules that refuse."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from connectors.base import PrincipalKind
from connectors.settings import EntraSettings, GoogleSettings, OktaSettings, TenantSettings
from recert import audit
from recert.campaigns import in_scope
from recert.clock import Clock
from recert.config import Settings, Tenant
from recert.decisions import latest_decisions
from recert.models import (
    EnforcementAction,
    Grant,
    OutboxEmail,
    Person,
    Principal,
    ReviewItem,
)
from recert.models import Tenant as TenantRow
from recert.risk import is_stale
from recert.store import grouped

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
IAM_QUEUE_SOURCES = {"orphan", "iam_team"}  # no accountable owner: the IAM team reviews
CHUNK = 5000  # ids per IN (...) query: SQLite caps the parameters of one statement


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
    consenting_users: list[str] = field(default_factory=list)  # person ids, for the provider
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
        decisions = _latest(session, [i.id or 0 for i in items])
        all_items = session.exec(
            select(ReviewItem)
            .join(Principal, col(Principal.id) == ReviewItem.principal_id)
            .where(Principal.tenant_id == tenant_id)
        ).all()
        all_decisions = _latest(session, [i.id or 0 for i in all_items])
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
                for i in all_items
                if (d := all_decisions.get(i.id or 0)) and d.action in ("keep", "reduce")
            },
            bounced={(c, r.lower()) for c, r in bounced},
            rows={a.idempotency_key: a for a in actions},
            own_ids=own_identities(tenant),
            protected=set(tenant.protected),
        )


def _latest(session: Session, item_ids: list[int]) -> dict[int, Any]:
    """The decisions in force, a bounded number of ids per query."""
    latest: dict[int, Any] = {}
    for start in range(0, len(item_ids), CHUNK):
        latest.update(latest_decisions(session, item_ids[start : start + CHUNK]))
    return latest


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
    if provider == "okta" and action.action == DISABLE and kind == PrincipalKind.API_TOKEN:
        return "Okta API tokens cannot be disabled, only revoked for good in the Admin console"
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
        action.consenting_users = sorted(users)
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
    Entra each delegated permission they granted (restorable), on Okta each END_USER grant
    (final: Okta's API cannot consent on a user's behalf, connectors/okta/act.py)."""
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
        if facts.tenant.kind == "okta":
            action.reversible = False
            action.must_consent_again = [facts.emails.get(person, person)]
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
