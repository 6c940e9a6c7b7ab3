"""A small inventory written straight into the store, for enforcement tests that need no
provider: principals, a campaign opened 15 days ago, review items and decisions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import tomli_w
from sqlalchemy import Engine
from sqlmodel import Session

from recert.clock import FixedClock
from recert.config import Settings, load_settings
from recert.db import session_scope
from recert.enforcement import TenantPlan, plan
from recert.models import Campaign, Decision, Grant, Principal, ReviewItem, Tenant

NOW = datetime(2026, 12, 16, 9, 0, tzinfo=UTC)  # day 15 of a campaign opened on 1 Dec
OPENED = NOW - timedelta(days=15)
IAM = "iam@acme.test"
OKTA_CLIENT = "0oaRecertRead"
OKTA_WRITE_CLIENT = "0oaRecertWrite"


def write_config(
    directory: Path, tenant: dict[str, Any] | None = None, **top_level: Any
) -> Settings:
    """A config with one tenant: by default Okta, signing in as an OAuth service app with
    separate read and write clients; a `tenant` table with a `kind` replaces it."""
    key = directory / "okta-key.pem"
    key.write_text("not used: no call reaches a provider in these tests")
    okta = {
        "name": "okta-test",
        "kind": "okta",
        "org_url": "https://acme.okta.test",
        "client_id": OKTA_CLIENT,
        "private_key_file": str(key),
        "enforcement": "enforce",
        "enforce": {"client_id": OKTA_WRITE_CLIENT, "private_key_file": str(key)},
    }
    tenant = tenant or {}
    table = tenant if "kind" in tenant else {**okta, **tenant}
    config = directory / "recert.toml"
    top = {"iam_email": IAM, **top_level}
    config.write_text(tomli_w.dumps({**top, "tenants": [table]}))
    return load_settings(config, {})


def google_key(directory: Path, client_id: str, email: str) -> Path:
    path = directory / "google-key.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "client_id": client_id,
                "client_email": email,
                "private_key": "unused",
            }
        )
    )
    return path


@dataclass
class World:
    engine: Engine
    settings: Settings
    tenant: str = "okta-test"
    discovered_at: datetime = NOW - timedelta(hours=2)
    tenant_id: int = 0
    campaign_id: int = 0
    principals: dict[str, Principal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        with session_scope(self.engine) as session:
            kind = self.settings.tenant(self.tenant).kind
            row = Tenant(name=self.tenant, kind=kind, last_complete_sync_at=self.discovered_at)
            campaign = Campaign(
                name=f"Q4 review of {self.tenant}",
                opened_at=OPENED,
                due_at=OPENED + timedelta(days=14),
            )
            session.add_all([row, campaign])
            session.flush()
            self.tenant_id, self.campaign_id = row.id or 0, campaign.id or 0

    def app(
        self,
        external_id: str,
        *,
        kind: str = "oauth_app",
        last_used_days: int | None = None,
        grants: tuple[str, ...] | dict[str, str] = (),
        **fields: Any,
    ) -> Principal:
        """An active app; `last_used_days=None` means its use is unknown. `grants` are
        permissions, or permission -> the provider's grant id."""
        known = last_used_days is not None
        principal = Principal(
            tenant_id=self.tenant_id,
            external_id=external_id,
            kind=kind,
            display_name=fields.pop("display_name", f"App {external_id}"),
            status="active",
            first_seen_at=OPENED,
            last_seen_at=self.discovered_at,
            last_used_at=NOW - timedelta(days=last_used_days) if known else None,
            activity_window_start=NOW - timedelta(days=180) if known else None,
            **fields,
        )
        with session_scope(self.engine) as session:
            session.add(principal)
            session.flush()
            ids = grants if isinstance(grants, dict) else {}
            for index, permission in enumerate(grants):
                session.add(
                    Grant(
                        principal_id=principal.id or 0,
                        grant_id=ids.get(permission, f"{external_id}-grant-{index}"),
                        permission=permission,
                        resource="Okta",
                        consent="application",
                    )
                )
        self.principals[external_id] = principal
        return principal

    def item(
        self,
        principal: Principal,
        *,
        reviewer: str = "ann@acme.test",
        owner_source: str = "audit_creator",
        consenting_user: str = "",
    ) -> ReviewItem:
        item = ReviewItem(
            campaign_id=self.campaign_id,
            principal_id=principal.id or 0,
            reviewer_email=reviewer,
            owner_source=owner_source,
            due_at=OPENED + timedelta(days=14),
            consenting_user=consenting_user,
        )
        with session_scope(self.engine) as session:
            session.add(item)
        return item

    def decide(self, item: ReviewItem, action: str, dropped: tuple[str, ...] = ()) -> Decision:
        with session_scope(self.engine) as session:
            grant_ids = [
                g.id or 0
                for g in session.query(Grant).filter(Grant.principal_id == item.principal_id)
                if g.permission in dropped
            ]
            decision = Decision(
                review_item_id=item.id or 0,
                action=action,
                justification="checked",
                dropped_grant_ids=grant_ids,
                decided_by=item.reviewer_email,
                decided_at=OPENED + timedelta(days=3),
            )
            stored = session.get(ReviewItem, item.id)
            assert stored is not None
            stored.status = "decided"
            session.add_all([decision, stored])
        return decision

    def plan(self, at: datetime = NOW) -> TenantPlan:
        with Session(self.engine) as session:
            return plan(session, self.settings, FixedClock(at), [self.tenant])[0]


def rules_of(tenant_plan: TenantPlan) -> dict[str, str]:
    return {r.external_id: r.rule for r in tenant_plan.refused}


def disabled_of(tenant_plan: TenantPlan) -> set[str]:
    return {a.external_id for a in tenant_plan.actions if a.action == "disable"}
