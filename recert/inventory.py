"""The inventory as scripts read it (`recert inventory --format json`, DESIGN.md shape)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from connectors.base import LAST_USE_UNKNOWN, SEEN_SINCE
from recert.models import Credential, Grant, Ownership, Principal, Tenant
from recert.store import grouped


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


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
    credentials = grouped(session, Credential, ids)
    grants = grouped(session, Grant, ids)
    owners = grouped(session, Ownership, ids)
    return [
        _entry(p, name, credentials[p.id or 0], grants[p.id or 0], owners[p.id or 0])
        for p, name in rows
    ]


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
            {
                "type": c.type,
                "expires_at": _iso(c.expires_at),
                "created_at": _iso(c.created_at),
                "display_name": c.display_name,
            }
            for c in sorted(credentials, key=lambda c: c.credential_id)
        ],
        "last_used_at": _iso(p.last_used_at),
        "activity_known_since": _iso(p.activity_window_start),
        "last_use_unknown": p.raw.get(LAST_USE_UNKNOWN),
        "seen_since": p.raw.get(SEEN_SINCE),
        "risk": p.risk,
        "risk_reasons": p.risk_reasons,
        "publisher": p.publisher,
        "created_at": _iso(p.created_at),
    }
