"""Pure functions: Okta API JSON -> normalized records. Nothing here does I/O.

Every record is validated on its own: a malformed one becomes a `Malformed` (logged with
tenant and id by the caller's `skip`), never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.base import (
    Activity,
    Consent,
    Credential,
    Grant,
    Malformed,
    OwnerHint,
    OwnerSource,
    Person,
    Principal,
    PrincipalKind,
    Status,
)

# Okta's own apps, keyed on the app `name` (labels are editable, names are not).
BUILTIN_APP_NAMES = frozenset(
    {
        "saasure",  # Okta Admin Console
        "okta_enduser",  # Okta Dashboard
        "okta_browser_plugin",  # Okta Browser Plugin
        "okta_flow_sso",  # Okta Workflows
        "okta_workflows_oauth",
        "okta_access_requests_resource_catalog",
        "okta_iga_reviewer",
        "flow",
        "okta_atspoke_sso",  # Okta's Atspoke integration (provider-facts.md)
        "okta_oin_submission_tester_app",  # OIN submission tester (provider-facts.md)
    }
)
APP_STATUS = {"ACTIVE": Status.ACTIVE, "INACTIVE": Status.DISABLED, "DELETED": Status.DELETED}
SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post", "client_secret_jwt"})
INACTIVE_USER_STATUSES = frozenset({"SUSPENDED", "DEPROVISIONED"})
RESOURCE = "Okta API"
CREATE_EVENT = "application.lifecycle.create"
CLIENT_ACTOR = "PublicClientApp"  # actor of client-credentials token events
# API tokens live for 30 days and renew on every use (help.okta.com, "Manage Okta API
# tokens"); the recorded answers carry `tokenWindow: null` for that default.
DEFAULT_TOKEN_WINDOW = timedelta(days=30)
_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class _OAuthClientCredentials(_Model):
    client_id: str = Field(min_length=1)
    token_endpoint_auth_method: str | None = None


class _AppCredentials(_Model):
    oauthClient: _OAuthClientCredentials | None = None


class _OAuthClientSettings(_Model):
    grant_types: list[str] = []
    application_type: str | None = None
    jwks_uri: str | None = None


class _AppSettings(_Model):
    oauthClient: _OAuthClientSettings | None = None


class _App(_Model):
    id: str = Field(min_length=1)
    name: str
    label: str
    status: Literal["ACTIVE", "INACTIVE", "DELETED"]
    signOnMode: str
    created: str | None = None
    credentials: _AppCredentials = _AppCredentials()
    settings: _AppSettings = _AppSettings()


class _Grant(_Model):
    id: str = Field(min_length=1)
    scopeId: str = Field(min_length=1)
    status: Literal["ACTIVE", "REVOKED"] = "ACTIVE"
    issuer: str | None = None
    source: Literal["ADMIN", "END_USER"] | None = None
    userId: str | None = None


class _Secret(_Model):
    """OAuth2ClientSecret (management spec): at most two per app."""

    id: str = Field(min_length=1)
    status: Literal["ACTIVE", "INACTIVE"] = "ACTIVE"
    created: str | None = None


class _SigningKey(_Model):
    """OAuth2ClientJsonSigningKeyResponse / AgentJsonSigningKeyResponse."""

    id: str = Field(min_length=1)
    kid: str | None = None
    kty: str | None = None
    status: Literal["ACTIVE", "INACTIVE"] = "ACTIVE"
    created: str | None = None


class _Network(_Model):
    connection: str | None = None
    include: list[str] | None = None
    exclude: list[str] | None = None


class _ApiToken(_Model):
    id: str = Field(min_length=1)
    name: str
    userId: str = Field(min_length=1)
    clientName: str | None = None
    created: str | None = None
    expiresAt: str | None = None
    tokenWindow: str | None = None
    network: _Network | None = None


class _Profile(_Model):
    login: str | None = None
    email: str | None = None
    firstName: str | None = None
    lastName: str | None = None
    displayName: str | None = None
    managerId: str | None = None


class _User(_Model):
    id: str = Field(min_length=1)
    status: Literal[
        "ACTIVE",
        "DEPROVISIONED",
        "LOCKED_OUT",
        "PASSWORD_EXPIRED",
        "PROVISIONED",
        "RECOVERY",
        "STAGED",
        "SUSPENDED",
    ]
    profile: _Profile


class _LogParty(_Model):
    id: str | None = None
    type: str | None = None
    alternateId: str | None = None


class _LogOutcome(_Model):
    result: str | None = None


class _LogClient(_Model):
    id: str | None = None


class _LogEvent(_Model):
    uuid: str = Field(min_length=1)
    eventType: str
    published: str
    actor: _LogParty | None = None
    client: _LogClient | None = None
    target: list[_LogParty] | None = None
    outcome: _LogOutcome | None = None


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def parse_duration(text: str | None) -> timedelta | None:
    """An ISO 8601 duration such as `P30D` or `PT720H`."""
    match = _DURATION.match(text or "")
    if not text or not match or text in ("P", "PT"):
        return None
    parts = {name: int(value) for name, value in match.groupdict().items() if value}
    return timedelta(**parts)


def _malformed(object_type: str, raw: Any, error: ValidationError | str) -> Malformed:
    object_id = raw.get("id") if isinstance(raw, dict) else None
    reason = error if isinstance(error, str) else _short(error)
    return Malformed(object_type, object_id if isinstance(object_id, str) else None, reason)


def _short(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}"


@dataclass(slots=True)
class AppRecords:
    """What one app contributes; `principal` is None for apps that are not under review.

    `wants_*` say which per-app reads complete it: scope grants, client secrets (apps that
    authenticate with one) and the registered public keys (private_key_jwt apps).
    """

    principal: Principal | None = None
    credentials: list[Credential] = field(default_factory=list)
    client_id: str | None = None
    wants_grants: bool = False
    wants_secrets: bool = False
    wants_keys: bool = False


def app_records(raw: Any) -> AppRecords | Malformed:
    try:
        app = _App.model_validate(raw)
    except ValidationError as error:
        return _malformed("app", raw, error)
    builtin = app.name in BUILTIN_APP_NAMES
    oauth = app.credentials.oauthClient
    if not builtin and (app.signOnMode != "OPENID_CONNECT" or oauth is None):
        return AppRecords()  # SAML, SWA, bookmarks...: people's apps, not non-human identities
    settings = app.settings.oauthClient or _OAuthClientSettings()
    method = oauth.token_endpoint_auth_method if oauth else None
    principal = Principal(
        external_id=app.id,
        kind=PrincipalKind.OAUTH_APP,
        display_name=app.label,
        status=APP_STATUS[app.status],
        platform_owned=builtin,
        app_id=oauth.client_id if oauth else None,
        publisher="Okta" if builtin else None,
        created_at=parse_time(app.created),
        raw={
            "name": app.name,
            "signOnMode": app.signOnMode,
            "token_endpoint_auth_method": method,
            "grant_types": list(settings.grant_types),
            "application_type": settings.application_type,
        },
    )
    customer = not builtin
    return AppRecords(
        principal=principal,
        credentials=list(_app_credentials(app.id, settings)),
        client_id=oauth.client_id if oauth else None,
        wants_grants=customer,
        wants_secrets=customer and method in SECRET_METHODS,
        wants_keys=customer and method == "private_key_jwt" and not settings.jwks_uri,
    )


def _app_credentials(app_id: str, settings: _OAuthClientSettings) -> Iterable[Credential]:
    """Keys published at a URL: Okta fetches them there, so no dates are known."""
    if settings.jwks_uri:
        yield Credential(app_id, f"{app_id}/jwks_uri", "jwks", settings.jwks_uri)


def secret_records(app_id: str, raw: Any) -> tuple[list[Credential], list[Malformed]]:
    """Each usable client secret with its creation date (they never expire: rotation is
    the only way out, so age is what matters, and two live secrets both show)."""
    credentials: list[Credential] = []
    skipped: list[Malformed] = []
    for item in raw if isinstance(raw, list) else []:
        try:
            secret = _Secret.model_validate(item)
        except ValidationError as error:
            skipped.append(_malformed("client_secret", item, error))
            continue
        if secret.status == "ACTIVE":
            credentials.append(
                Credential(
                    app_id,
                    f"{app_id}/secret/{secret.id}",
                    "secret",
                    "client secret",
                    parse_time(secret.created),
                )
            )
    if not isinstance(raw, list):
        skipped.append(Malformed("client_secrets", app_id, "secret list is not an array"))
    return credentials, skipped


def key_records(owner_id: str, raw: Any) -> tuple[list[Credential], list[Malformed]]:
    """Each active registered public key (an app's or an AI agent's) with its date. The
    spec's schema says array; its example shows `{"jwks": {"keys": [...]}}`: both read."""
    if isinstance(raw, dict) and isinstance(raw.get("jwks"), dict):
        raw = raw["jwks"].get("keys")
    credentials: list[Credential] = []
    skipped: list[Malformed] = []
    for item in raw if isinstance(raw, list) else []:
        try:
            key = _SigningKey.model_validate(item)
        except ValidationError as error:
            skipped.append(_malformed("json_web_key", item, error))
            continue
        if key.status == "ACTIVE":
            name = f"public key {key.kid or key.id}"
            created = parse_time(key.created)
            credentials.append(
                Credential(owner_id, f"{owner_id}/jwks/{key.id}", "jwks", name, created)
            )
    if not isinstance(raw, list):
        skipped.append(Malformed("json_web_keys", owner_id, "key list is not an array"))
    return credentials, skipped


def grant_records(app_id: str, raw: Any) -> tuple[list[Grant], list[Malformed]]:
    if not isinstance(raw, list):
        return [], [Malformed("grants", app_id, "grant list is not an array")]
    grants: list[Grant] = []
    skipped: list[Malformed] = []
    for item in raw:
        try:
            grant = _Grant.model_validate(item)
        except ValidationError as error:
            skipped.append(_malformed("grant", item, error))
            continue
        if grant.status != "ACTIVE":
            continue
        # END_USER: one user consented for themselves (`userId`, management spec
        # OAuth2ScopeConsentGrant); ADMIN: an admin granted the scope to the app.
        user_consent = grant.source == "END_USER"
        if user_consent and not grant.userId:
            skipped.append(Malformed("grant", grant.id, "END_USER grant without userId"))
            continue
        grants.append(
            Grant(
                principal_id=app_id,
                grant_id=grant.id,
                permission=grant.scopeId,
                resource=RESOURCE,
                consent=Consent.USER if user_consent else Consent.APPLICATION,
                consenting_user=grant.userId if user_consent else None,
            )
        )
    return grants, skipped


@dataclass(slots=True)
class TokenRecords:
    principal: Principal
    credential: Credential
    owner_hint: OwnerHint
    activity: Activity | None


def token_user(raw: Any) -> str | None:
    user = raw.get("userId") if isinstance(raw, dict) else None
    return user if isinstance(user, str) and user else None


def api_token_records(raw: Any, user_status: str | None) -> TokenRecords | Malformed:
    """An SSWS token; `user_status` is its user's Okta status (None: unknown).

    Okta rejects the tokens of a deactivated user, so those are disabled. Tokens renew on
    every use, so `expiresAt - tokenWindow` is when it was last used: derived, and said so.
    """
    try:
        token = _ApiToken.model_validate(raw)
    except ValidationError as error:
        return _malformed("api_token", raw, error)
    created = parse_time(token.created)
    expires = parse_time(token.expiresAt)
    window = parse_duration(token.tokenWindow) or DEFAULT_TOKEN_WINDOW
    last_used = expires - window if expires else None
    if last_used is not None and created is not None:
        last_used = max(last_used, created)
    deactivated = user_status == "DEPROVISIONED"
    principal = Principal(
        external_id=token.id,
        kind=PrincipalKind.API_TOKEN,
        display_name=token.name,
        status=Status.DISABLED if deactivated else Status.ACTIVE,
        created_at=created,
        raw={
            "userId": token.userId,
            "clientName": token.clientName,
            "tokenWindow": token.tokenWindow,
            "network": token.network.model_dump(exclude_none=True) if token.network else None,
            "last_used_derived": last_used.isoformat() if last_used else None,
            "last_used_source": "expiresAt - tokenWindow (tokens renew on use)",
            "disabled_reason": "its user is deactivated: Okta rejects the token"
            if deactivated
            else None,
        },
    )
    credential = Credential(token.id, token.id, "api_token", token.name, created, expires)
    hint = OwnerHint(
        principal_id=token.id,
        source=OwnerSource.TOKEN_CREATOR,
        evidence=f"SSWS API token issued to Okta user {token.userId}; it acts with their rights",
        person_id=token.userId,
    )
    activity = Activity(token.id, created or last_used, last_used) if last_used else None
    return TokenRecords(principal, credential, hint, activity)


def user_status(raw: Any) -> str | None:
    status = raw.get("status") if isinstance(raw, dict) else None
    return status if isinstance(status, str) else None


def person_record(raw: Any) -> Person | Malformed:
    try:
        user = _User.model_validate(raw)
    except ValidationError as error:
        return _malformed("user", raw, error)
    profile = user.profile
    names = " ".join(part for part in (profile.firstName, profile.lastName) if part)
    return Person(
        external_id=user.id,
        display_name=profile.displayName or names or profile.login or user.id,
        email=profile.email,
        active=user.status not in INACTIVE_USER_STATUSES,
        manager_id=profile.managerId or None,
    )


@dataclass(slots=True)
class LogFindings:
    """Creators and last uses from the System Log, carried from run to run in the
    checkpoint: each run reads only the window since the last one, and what the log no
    longer holds (older than its 90 days) is still known."""

    creators: dict[str, OwnerHint] = field(default_factory=dict)  # app id -> hint
    last_use_by_client: dict[str, datetime] = field(default_factory=dict)  # client id

    def add(self, raw: Any) -> Malformed | None:
        try:
            event = _LogEvent.model_validate(raw)
        except ValidationError as error:
            return _malformed("log_event", raw if isinstance(raw, dict) else {}, error)
        at = parse_time(event.published)
        if at is None:
            return Malformed("log_event", event.uuid, "published is not a timestamp")
        if event.outcome is not None and event.outcome.result not in (None, "SUCCESS"):
            return None
        if event.eventType == CREATE_EVENT:
            self._creator(event, at)
        elif client := _token_client(event):
            _keep_latest(self.last_use_by_client, client, at)
        return None

    def _creator(self, event: _LogEvent, at: datetime) -> None:
        actor = event.actor
        if actor is None or not actor.id or actor.type != "User":
            return
        for app_id in _app_targets(event):
            self.creators[app_id] = OwnerHint(
                principal_id=app_id,
                source=OwnerSource.AUDIT_CREATOR,
                evidence=(
                    f"System Log {CREATE_EVENT} at {event.published} by "
                    f"{actor.alternateId or actor.id} (event {event.uuid})"
                ),
                person_id=actor.id,
            )

    def last_use(self, client_id: str | None) -> datetime | None:
        return self.last_use_by_client.get(client_id) if client_id else None

    def activity(self, app_id: str, client_id: str | None, window_start: datetime) -> Activity:
        return Activity(app_id, window_start, self.last_use(client_id))

    def to_cursor(self) -> dict[str, Any]:
        return {
            "creators": {
                app: {"person": hint.person_id, "evidence": hint.evidence}
                for app, hint in sorted(self.creators.items())
            },
            "last_use": {
                client: at.isoformat() for client, at in sorted(self.last_use_by_client.items())
            },
        }

    @classmethod
    def from_cursor(cls, cursor: Mapping[str, Any]) -> LogFindings:
        """What earlier runs found; anything unreadable is dropped (the log is re-read)."""
        findings = cls()
        creators = cursor.get("creators")
        for app_id, found in (creators if isinstance(creators, dict) else {}).items():
            if isinstance(found, dict) and isinstance(found.get("person"), str):
                findings.creators[app_id] = OwnerHint(
                    principal_id=app_id,
                    source=OwnerSource.AUDIT_CREATOR,
                    evidence=str(found.get("evidence") or "System Log"),
                    person_id=found["person"],
                )
        last_use = cursor.get("last_use")
        for client, text in (last_use if isinstance(last_use, dict) else {}).items():
            at = parse_time(text) if isinstance(text, str) else None
            if at is not None:
                findings.last_use_by_client[client] = at
        return findings


def _token_client(event: _LogEvent) -> str | None:
    """The OAuth client a token grant went to: `client.id` (LogClient, management spec),
    else the actor of a client-credentials grant."""
    if not event.eventType.startswith("app.oauth2."):
        return None
    if event.client is not None and event.client.id:
        return event.client.id
    actor = event.actor
    return actor.id if actor is not None and actor.type == CLIENT_ACTOR and actor.id else None


def _app_targets(event: _LogEvent) -> list[str]:
    return [t.id for t in event.target or [] if t.type == "AppInstance" and t.id]


def _keep_latest(latest: dict[str, datetime], key: str, at: datetime) -> None:
    if key not in latest or latest[key] < at:
        latest[key] = at
