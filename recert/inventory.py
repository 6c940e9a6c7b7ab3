"""The inventory as scripts read it (`recert inventory --format json`, DESIGN.md shape)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from recert.models import Credential, Grant, Ownership, Principal, Tenant


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _by_principal(rows: Iterable[Any]) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[row.principal_id].append(row)
    return grouped


def inventory(
    session: Session, tenant: str | None = None, include_deleted: bool = False
) -> list[dict[str, Any]]:
    query = select(Principal, Tenant.name).join(Tenant, col(Tenant.id) == Principal.tenant_id)
    if tenant:
        query = query.where(Tenant.name == tenant)
    if not include_deleted:
        query = query.where(Principal.status != "deleted")
    rows = session.exec(query.order_by(Tenant.name, Principal.kind, Principal.external_id)).all()
    ids = [p.id for p, _ in rows]
    credentials = _by_principal(_children(session, Credential, ids))
    grants = _by_principal(_children(session, Grant, ids))
    owners = _by_principal(_children(session, Ownership, ids))
    return [
        _entry(p, name, credentials[p.id or 0], grants[p.id or 0], owners[p.id or 0])
        for p, name in rows
    ]


def _children(session: Session, model: Any, ids: list[int | None]) -> list[Any]:
    found: list[Any] = []
    for start in range(0, len(ids), 10_000):
        chunk = ids[start : start + 10_000]
        found.extend(session.exec(select(model).where(col(model.principal_id).in_(chunk))))
    return found


def _entry(
    p: Principal,
    tenant: str,
    credentials: list[Credential],
    grants: list[Grant],
    owners: list[Ownership],
) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "kind": p.kind,
        "external_id": p.external_id,
        "app_id": p.app_id,
        "display_name": p.display_name,
        "status": p.status,
        "platform_owned": p.platform_owned,
        "protected": p.protected,
        "owners": [
            {"email": o.email, "source": o.source, "confidence": o.confidence}
            for o in sorted(owners, key=lambda o: -o.confidence)
            if o.email
        ],
        "orphan_reason": next((o.orphan_reason for o in owners if o.orphan_reason), None),
        "grants": [
            {
                "permission": g.permission,
                "resource": g.resource,
                "consent": g.consent,
                "consenting_user": g.consenting_user,
            }
            for g in sorted(grants, key=lambda g: (g.resource, g.permission, g.grant_id))
        ],
        "credentials": [
            {"type": c.type, "expires_at": _iso(c.expires_at), "created_at": _iso(c.created_at)}
            for c in sorted(credentials, key=lambda c: c.credential_id)
        ],
        "last_used_at": _iso(p.last_used_at),
        "activity_known_since": _iso(p.activity_window_start),
        "risk": p.risk,
        "risk_reasons": p.risk_reasons,
        "publisher": p.publisher,
        "created_at": _iso(p.created_at),
    }
