"""The one connector interface: normalized records, typed errors and the protocol.

The seam between connectors and the domain is data, not objects. A connector streams
`Page`s of plain records while it enumerates a tenant, and takes back plain references
for `disable` / `enable`, returning the pre-change snapshot that restores it.

Streaming contract (what the store relies on for mark-and-sweep):
- The last page of a clean run carries a `Checkpoint`. A stream that raised, or ended
  without a checkpoint, is incomplete: nothing is marked deleted.
- `Checkpoint.full` is True when the run enumerated every principal, credential, grant,
  owner hint, person and activity row of the tenant; whatever the run did not yield is
  then gone. In a delta run (`full=False`) deletions come only from `Page.removed`, and
  for every principal the run yields it also yields that principal's complete set of
  credentials, grants and owner hints.
- Records may repeat across pages; the store de-duplicates by key.
- What a complete run could not see is not gone: the checkpoint names it
  (`keep_kinds`, `unread_consents`), and the sweep leaves it alone.
- `Checkpoint.not_visible` names the principal kinds the credential could not enumerate
  (not subscribed, role too weak), with the reason: stored principals of those kinds are
  kept as they are, even in a full run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class PrincipalKind(StrEnum):
    OAUTH_APP = "oauth_app"
    SERVICE_PRINCIPAL = "service_principal"
    MANAGED_IDENTITY = "managed_identity"
    AGENT_IDENTITY = "agent_identity"  # an AI agent (Entra agent identity, Okta AI agent)
    SERVICE_ACCOUNT = "service_account"
    THIRD_PARTY_APP = "third_party_app"
    API_TOKEN = "api_token"


class Status(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    DELETED = "deleted"


class Consent(StrEnum):
    ADMIN = "admin"  # tenant-wide admin consent to a delegated permission
    USER = "user"  # one user consented for themselves
    APPLICATION = "application"  # app-only permission (Graph app role, Okta API scope)
    DOMAIN_WIDE = "domain_wide"  # Google domain-wide delegation


# `Principal.raw` keys the domain reads (reports, emails, inventory):
LAST_USE_UNKNOWN = "last_use_unknown"  # why last use cannot be known (e.g. the edition)
SEEN_SINCE = "seen_since"  # ISO time the provider's evidence for the principal starts


class OwnerSource(StrEnum):
    IDP_OWNER = "idp_owner"  # the provider's own owner list (Entra /owners)
    AUDIT_CREATOR = "audit_creator"  # who created it, from the audit log
    TOKEN_CREATOR = "token_creator"  # the user an API token belongs to


@dataclass(frozen=True, slots=True)
class Principal:
    """A non-human identity under review. `external_id` is the provider's own id."""

    external_id: str
    kind: PrincipalKind
    display_name: str
    status: Status = Status.ACTIVE
    platform_owned: bool = False
    app_id: str | None = None  # client id / appId; links registrations and grants
    publisher: str | None = None
    publisher_verified: bool | None = None
    created_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)  # provider fields kept for evidence


@dataclass(frozen=True, slots=True)
class Credential:
    principal_id: str
    credential_id: str
    type: str  # "secret" | "certificate" | "key" | "api_token" | "jwks"
    display_name: str | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None  # None: never expires
    valid_from: datetime | None = None  # when it starts to be valid, where no creation time is


@dataclass(frozen=True, slots=True)
class Grant:
    """One permission held by a principal. `grant_id` is what act() needs to revoke it."""

    principal_id: str
    grant_id: str
    permission: str  # human name: "Mail.ReadWrite", "okta.apps.manage", a Google scope URL
    resource: str  # what it reaches: "Microsoft Graph", the Okta org, "Google Workspace"
    consent: Consent
    consenting_user: str | None = None  # person external id, for user consents
    description: str | None = None


@dataclass(frozen=True, slots=True)
class OwnerHint:
    """Someone (or some app) the provider says is behind a principal, and why."""

    principal_id: str
    source: OwnerSource
    evidence: str
    person_id: str | None = None  # a Person.external_id of the same tenant
    email: str | None = None
    owner_principal_id: str | None = None  # the owner is itself a principal


@dataclass(frozen=True, slots=True)
class Person:
    external_id: str
    display_name: str
    email: str | None
    active: bool
    manager_id: str | None = None  # Person.external_id of the manager


@dataclass(frozen=True, slots=True)
class Activity:
    """Last use inside the provider's retention window.

    `last_used_at=None` means "no use seen since `window_start`". A principal with no
    Activity record at all has *unknown* use, never *unused*; its `raw[LAST_USE_UNKNOWN]`
    may say why.
    """

    principal_id: str
    window_start: datetime
    last_used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Malformed:
    """A record the connector could not normalize: logged, counted, skipped."""

    object_type: str
    object_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    full: bool
    cursor: Mapping[str, Any] = field(default_factory=dict)  # e.g. delta links, for next run
    # Kinds no API can list completely: an unseen one is kept; it leaves only via `removed`.
    keep_kinds: frozenset[PrincipalKind] = frozenset()
    # People whose consents could not be read: their grants, and the apps only those grants
    # keep in the inventory, stay as they were.
    unread_consents: frozenset[str] = frozenset()
    # Delta runs that re-read some people's consents in full: those people's user grants
    # are replaced; a re-delivered principal keeps other people's user grants.
    consents_of: frozenset[str] | None = None
    not_visible: Mapping[str, str] = field(default_factory=dict)  # PrincipalKind value -> why


@dataclass(slots=True)
class Page:
    principals: list[Principal] = field(default_factory=list)
    credentials: list[Credential] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)
    owner_hints: list[OwnerHint] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)
    activity: list[Activity] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # principal external ids (delta)
    skipped: list[Malformed] = field(default_factory=list)
    checkpoint: Checkpoint | None = None


@dataclass(frozen=True, slots=True)
class PrincipalRef:
    external_id: str
    kind: PrincipalKind
    app_id: str | None = None
    # Person external ids whose own consent the inventory holds: a provider that revokes
    # per user (Google tokens) revokes exactly these instead of scanning every user.
    consenting_users: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GrantRef:
    principal: PrincipalRef
    grant_id: str
    permission: str
    consenting_user: str | None = None


Snapshot = dict[str, Any]  # JSON-serializable pre-change state, stored for restore


class ConnectorError(Exception):
    """Base of every error a connector raises; names the tenant and the object."""

    def __init__(self, tenant: str, message: str, object_id: str | None = None) -> None:
        self.tenant = tenant
        self.object_id = object_id
        self.message = message
        where = f"{tenant}/{object_id}" if object_id else tenant
        super().__init__(f"{where}: {message}")


class TransientError(ConnectorError):
    """Worth retrying later: throttling, 5xx, resets, timeouts."""

    def __init__(
        self,
        tenant: str,
        message: str,
        object_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(tenant, message, object_id)
        self.retry_after = retry_after


class NotFound(ConnectorError):
    """The object does not exist (for a delete or disable: already done)."""


class PermissionDenied(ConnectorError):
    """The credential lacks a permission, or authentication failed."""


class ProviderError(ConnectorError):
    """Any other failure the provider reported; not worth retrying as is."""


class NotReversible(ConnectorError):
    """The provider offers no way to undo or to do this alone (e.g. drop one Google scope)."""


@runtime_checkable
class Connector(Protocol):
    tenant: str

    def discover(self, cursor: Mapping[str, Any] | None = None) -> AsyncIterator[Page]:
        """Stream the tenant page by page; `cursor` is the last complete checkpoint's."""
        ...

    async def disable(self, ref: PrincipalRef) -> Snapshot:
        """Disable the principal; already disabled counts as success. Returns pre-state."""
        ...

    async def enable(self, ref: PrincipalRef, snapshot: Snapshot) -> None:
        """Restore the state `disable` recorded."""
        ...

    async def revoke_grant(self, grant: GrantRef) -> Snapshot:
        """Remove one grant; already gone counts as success. Returns what restores it."""
        ...

    async def restore_grant(self, grant: GrantRef, snapshot: Snapshot) -> None: ...

    async def aclose(self) -> None: ...
