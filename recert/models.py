"""SQLModel tables for the whole domain. Times are timezone-aware UTC.

Inventory rows (principals and what hangs off them) carry `last_seen_run_id`, the sync
run that last saw them, so a complete run can sweep what it did not see.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Dialect, Index, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from recert.clock import as_utc


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC in and out on every database (SQLite would hand back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


def _when(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_type=UtcDateTime, nullable=nullable, index=index)


def _json() -> Any:
    return Field(default_factory=dict, sa_type=JSON, nullable=False)


def _json_list() -> Any:
    return Field(default_factory=list, sa_type=JSON, nullable=False)


class SyncStatus(StrEnum):
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    ABANDONED = "abandoned"  # its process died: the lock's heartbeat stopped


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Tenant(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    kind: str
    cursor: dict[str, Any] = _json()  # connector checkpoint of the last complete run
    last_complete_sync_at: datetime | None = _when()


class SyncRun(SQLModel, table=True):
    __tablename__ = "sync_run"

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = Field(foreign_key="tenant.id", index=True)
    started_at: datetime = _when(nullable=False)
    finished_at: datetime | None = _when()
    status: str = SyncStatus.RUNNING
    full: bool = False
    counts: dict[str, Any] = _json()
    skipped: int = 0
    error: str | None = None


class Principal(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("tenant_id", "external_id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = Field(foreign_key="tenant.id", index=True)
    external_id: str
    kind: str
    display_name: str
    status: str
    platform_owned: bool = False
    protected: bool = False
    app_id: str | None = Field(default=None, index=True)
    publisher: str | None = None
    publisher_verified: bool | None = None
    created_at: datetime | None = _when()
    first_seen_at: datetime = _when(nullable=False)
    first_seen_run_id: int | None = None
    last_seen_at: datetime = _when(nullable=False)
    last_seen_run_id: int | None = Field(default=None, index=True)
    deleted_at: datetime | None = _when()
    last_used_at: datetime | None = _when()
    activity_window_start: datetime | None = _when()  # None: use unknown
    risk: str = Risk.LOW
    risk_reasons: list[str] = _json_list()
    raw: dict[str, Any] = _json()


class Credential(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("principal_id", "credential_id"),)

    id: int | None = Field(default=None, primary_key=True)
    principal_id: int = Field(foreign_key="principal.id", index=True)
    credential_id: str
    type: str
    display_name: str | None = None
    created_at: datetime | None = _when()
    expires_at: datetime | None = _when()
    valid_from: datetime | None = _when()  # when it starts to be valid (Entra)
    last_seen_run_id: int | None = None


class Grant(SQLModel, table=True):
    __tablename__ = "permission_grant"  # GRANT is reserved in SQL
    __table_args__ = (UniqueConstraint("principal_id", "grant_id", "permission"),)

    id: int | None = Field(default=None, primary_key=True)
    principal_id: int = Field(foreign_key="principal.id", index=True)
    grant_id: str
    permission: str
    resource: str
    consent: str
    consenting_user: str | None = None
    description: str | None = None
    last_seen_run_id: int | None = None


class OwnerHint(SQLModel, table=True):
    __tablename__ = "owner_hint"
    __table_args__ = (UniqueConstraint("principal_id", "source", "reference"),)

    id: int | None = Field(default=None, primary_key=True)
    principal_id: int = Field(foreign_key="principal.id", index=True)
    source: str
    reference: str  # person id, owner principal id or email: what the hint points at
    person_external_id: str | None = None
    owner_principal_external_id: str | None = None
    email: str | None = None
    evidence: str
    last_seen_run_id: int | None = None


class Person(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("tenant_id", "external_id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = Field(foreign_key="tenant.id", index=True)
    external_id: str
    display_name: str
    email: str | None = Field(default=None, index=True)
    active: bool
    manager_external_id: str | None = None
    last_seen_run_id: int | None = None


class Ownership(SQLModel, table=True):
    """The resolved, accountable owner of a principal (or why there is none)."""

    id: int | None = Field(default=None, primary_key=True)
    principal_id: int = Field(foreign_key="principal.id", index=True)
    email: str | None = None
    person_id: int | None = Field(default=None, foreign_key="person.id")
    source: str  # catalog | idp_owner | audit_creator | token_creator | rule | manager
    confidence: float = 0.0
    evidence: str = ""
    orphan_reason: str | None = None  # no_owner, owner_departed, owner_unresolvable, owner_is_app
    resolved_at: datetime = _when(nullable=False)


class Campaign(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    opened_at: datetime = _when(nullable=False)
    due_at: datetime = _when(nullable=False)
    closed_at: datetime | None = _when()
    scope: dict[str, Any] = _json()
    completion: dict[str, Any] = _json()  # progress figures, frozen when the campaign closes


class ReviewItem(SQLModel, table=True):
    __tablename__ = "review_item"
    __table_args__ = (UniqueConstraint("campaign_id", "principal_id", "consenting_user"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    principal_id: int = Field(foreign_key="principal.id", index=True)
    reviewer_email: str = Field(index=True)
    owner_source: str = ""
    status: str = "pending"  # pending | decided | escalated | enforced
    due_at: datetime = _when(nullable=False)
    # A user-consented app: "" is the app as a whole; a person's external id is the review
    # of that person's own consent (reviewed by them).
    consenting_user: str = ""
    # When an IAM escalation email listed it; reset whenever the item changes hands, so
    # the IAM team's daily digest lists only what reached it since its last email.
    escalated_at: datetime | None = _when()


class Decision(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    review_item_id: int = Field(foreign_key="review_item.id", index=True)
    action: str  # keep | reduce | revoke | reassign | not_mine
    justification: str = ""
    dropped_permissions: list[str] = _json_list()  # "resource: permission", for people
    dropped_grant_ids: list[int] = _json_list()  # permission_grant rows, for enforcement
    new_owner_email: str | None = None
    decided_by: str
    decided_at: datetime = _when(nullable=False)
    source_ip: str | None = None
    user_agent: str | None = None


class OutboxEmail(SQLModel, table=True):
    __tablename__ = "outbox_email"

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True)  # review set x kind x recipient
    kind: str
    recipient: str = Field(index=True)
    cc: list[str] = _json_list()
    subject: str
    body_text: str
    body_html: str
    status: str = Field(default="pending", index=True)  # pending | sent | failed | bounced
    attempts: int = 0
    next_attempt_at: datetime | None = _when()
    claimed_until: datetime | None = _when()
    message_id: str | None = None
    sent_at: datetime | None = _when()
    last_error: str | None = None
    created_at: datetime = _when(nullable=False)
    campaign_id: int | None = Field(default=None, foreign_key="campaign.id")
    # The review items the mail lists; None on rows queued before migration 0011.
    item_ids: list[int] | None = Field(default=None, sa_type=JSON, nullable=True)


class CredentialNotice(SQLModel, table=True):
    """The ledger of credential-expiry notices: one row per (credential, threshold), so
    each is notified once. `threshold_days` 0 is the notice that it has expired."""

    __tablename__ = "credential_notice"
    __table_args__ = (UniqueConstraint("principal_id", "credential_id", "threshold_days"),)

    id: int | None = Field(default=None, primary_key=True)
    principal_id: int = Field(foreign_key="principal.id")
    credential_id: str
    threshold_days: int
    expires_at: datetime = _when(nullable=False)
    recipient: str
    outbox_key: str = Field(index=True)  # the digest that listed it (outbox idempotency key)
    notified_at: datetime = _when(nullable=False)


class EnforcementAction(SQLModel, table=True):
    """One change Recert made, tried or refused at a provider: what the evidence bundle
    exports. `idempotency_key` makes every re-run find the row instead of adding one."""

    __tablename__ = "enforcement_action"
    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_enforcement_action_idempotency_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str
    tenant: str = Field(index=True)
    principal_id: int = Field(foreign_key="principal.id", index=True)
    external_id: str
    display_name: str
    kind: str
    campaign_id: int | None = Field(default=None, foreign_key="campaign.id")
    review_item_id: int | None = Field(default=None, foreign_key="review_item.id")
    # disable | remove_grant | revoke_consent, and their undoing: enable | restore_grant
    action: str
    # in_progress | done | retrying | failed | refused | not_reversible
    status: str = Field(index=True)
    reason: str
    rule: str | None = None  # the safety rule that refused it
    grant_id: str | None = None
    permission: str | None = None
    consenting_user: str | None = None
    reversible: bool = True
    before: dict[str, Any] = _json()  # Recert's view before the change (inventory)
    snapshot: dict[str, Any] = _json()  # the provider's pre-change state that restores it
    after: dict[str, Any] = _json()
    attempts: int = 0
    next_attempt_at: datetime | None = _when()
    created_at: datetime = _when(nullable=False)
    performed_by: str = "recert"
    performed_at: datetime | None = _when()
    error: str | None = None
    mailed_at: datetime | None = _when()  # the notice or IAM alert about it was queued
    reverses_id: int | None = Field(default=None, foreign_key="enforcement_action.id")


class JobLock(SQLModel, table=True):
    """A job's lease when no Redis broker answers (embedded use): one row per held lock."""

    __tablename__ = "job_lock"

    name: str = Field(primary_key=True)
    token: str
    holder: dict[str, Any] = _json()
    expires_at: datetime = _when(nullable=False)


class AuditEvent(SQLModel, table=True):
    """Append-only, hash-chained: `hash` covers `prev_hash` and the event's canonical JSON."""

    __tablename__ = "audit_event"

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    occurred_at: datetime = _when(nullable=False)
    actor: str
    action: str
    subject_type: str
    subject_id: str
    tenant: str | None = None
    data: dict[str, Any] = _json()
    prev_hash: str
    hash: str = Field(unique=True)


class AuditHead(SQLModel, table=True):
    """The chain's newest event; one row, locked by every append so appends serialize."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    hash: str


class AdminSession(SQLModel, table=True):
    """A signed-in IAM admin. The browser holds a random token; only its SHA-256 is stored,
    and signing out stamps `revoked_at`, so a copied cookie is worthless afterwards."""

    __tablename__ = "admin_session"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True)
    email: str
    name: str = ""
    created_at: datetime = _when(nullable=False)
    expires_at: datetime = _when(nullable=False)
    revoked_at: datetime | None = _when()
    id_token: str | None = None  # the provider's ID token, the hint its sign-out asks for
    source_ip: str | None = None
    user_agent: str | None = None
    # The sign-in claims that made them an admin, re-checked against [web.oidc] on every
    # request: removed from admin_emails or admin_groups, the session ends.
    email_verified: bool = False
    groups: list[str] = _json_list()


Index("ix_principal_tenant_status", Principal.tenant_id, Principal.status)  # type: ignore[arg-type]
