"""Re-enable: undo every change Recert made to one app, from the stored pre-change state."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from connectors import Sleeper, open_connector
from connectors.base import Connector, ConnectorError
from recert import audit
from recert.broker import pacer_for
from recert.clock import Clock
from recert.config import Settings, Tenant
from recert.db import session_scope
from recert.enforcement.acting import MAX_ERROR, grant_ref, principal_ref
from recert.enforcement.planning import DISABLE, REMOVE_GRANT, REVOKE_CONSENT
from recert.locks import job_lock
from recert.models import EnforcementAction, Principal

UNDO = {DISABLE: "enable", REMOVE_GRANT: "restore_grant", REVOKE_CONSENT: "restore_consent"}


class ReenableRefused(Exception):
    """Re-enable cannot start: the message says why, naming the tenant and the app."""


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
    removed, from the stored pre-change state. Records who did it and why. Revoked consents
    (Google tokens, Okta user grants) cannot be restored: the result names the users who
    must consent again."""
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
        "message": "a revoked consent cannot be restored (Google and Okta delete it); "
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
            await connector.enable(principal_ref(change, app_id), change.snapshot)
        else:
            await connector.restore_grant(grant_ref(provider, change, app_id), change.snapshot)
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
