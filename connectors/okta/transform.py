"""Pure functions: Okta API JSON -> normalized records. Nothing here does I/O.

Every record is validated on its own: a malformed one becomes a `Malformed` (logged with
tenant and id by the caller's `skip`), never an exception.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
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
    }
)
APP_STATUS = {"ACTIVE": Status.ACTIVE, "INACTIVE": Status.DISABLED, "DELETED": Status.DELETED}
SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post", "client_secret_jwt"})
INACTIVE_USER_STATUSES = frozenset({"SUSPENDED", "DEPROVISIONED"})
RESOURCE = "Okta API"
CREATE_EVENT = "application.lifecycle.create"
APP_SIGN_IN_EVENT = "user.authentication.sso"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class _OAuthClientCredentials(_Model):
    client_id: str = Field(min_length=1)
    token_endpoint_auth_method: str | None = None


class _AppCredentials(_Model):
    oauthClient: _OAuthClientCredentials | None = None


class _Jwk(_Model):
    kid: str | None = None
    kty: str | None = None


class _Jwks(_Model):
    keys: list[_Jwk] = []


class _OAuthClientSettings(_Model):
    grant_types: list[str] = []
    application_type: str | None = None
    jwks: _Jwks | None = None
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
    source: str | None = None
    userId: str | None = None


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


class _LogEvent(_Model):
    uuid: str = Field(min_length=1)
    eventType: str
    published: str
    actor: _LogParty | None = None
    target: list[_LogParty] | None = None
    outcome: _LogOutcome | None = None


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


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
    """What one app contributes; `principal` is None for apps that are not under review."""

    principal: Principal | None = None
    credentials: list[Credential] = field(default_factory=list)
    client_id: str | None = None
    wants_grants: bool = False


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
            "token_endpoint_auth_method": oauth.token_endpoint_auth_method if oauth else None,
            "grant_types": list(settings.grant_types),
            "application_type": settings.application_type,
        },
    )
    return AppRecords(
        principal=principal,
        credentials=list(_app_credentials(app.id, oauth, settings)),
        client_id=oauth.client_id if oauth else None,
        wants_grants=not builtin,
    )


def _app_credentials(
    app_id: str, oauth: _OAuthClientCredentials | None, settings: _OAuthClientSettings
) -> Iterable[Credential]:
    if oauth is not None and oauth.token_endpoint_auth_method in SECRET_METHODS:
        # Okta client secrets carry no expiry: they live until rotated.
        yield Credential(app_id, f"{app_id}/client_secret", "secret", "client secret")
    if settings.jwks is not None:
        for index, key in enumerate(settings.jwks.keys):
            key_id = key.kid or f"key-{index}"
            yield Credential(app_id, f"{app_id}/jwks/{key_id}", "jwks", key_id)
    if settings.jwks_uri:
        yield Credential(app_id, f"{app_id}/jwks_uri", "jwks", settings.jwks_uri)


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
        if grant.status == "ACTIVE":
            grants.append(
                Grant(
                    principal_id=app_id,
                    grant_id=grant.id,
                    permission=grant.scopeId,
                    resource=RESOURCE,
                    consent=Consent.APPLICATION,
                    consenting_user=grant.userId,
                )
            )
    return grants, skipped


@dataclass(slots=True)
class TokenRecords:
    principal: Principal
    credential: Credential
    owner_hint: OwnerHint


def api_token_records(raw: Any) -> TokenRecords | Malformed:
    try:
        token = _ApiToken.model_validate(raw)
    except ValidationError as error:
        return _malformed("api_token", raw, error)
    created = parse_time(token.created)
    principal = Principal(
        external_id=token.id,
        kind=PrincipalKind.API_TOKEN,
        display_name=token.name,
        created_at=created,
        raw={
            "userId": token.userId,
            "clientName": token.clientName,
            "tokenWindow": token.tokenWindow,
            "network": token.network.model_dump(exclude_none=True) if token.network else None,
        },
    )
    credential = Credential(
        token.id, token.id, "api_token", token.name, created, parse_time(token.expiresAt)
    )
    hint = OwnerHint(
        principal_id=token.id,
        source=OwnerSource.TOKEN_CREATOR,
        evidence=f"SSWS API token issued to Okta user {token.userId}; it acts with their rights",
        person_id=token.userId,
    )
    return TokenRecords(principal, credential, hint)


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
    """Creators and last uses gathered from one walk of the System Log."""

    creators: dict[str, OwnerHint] = field(default_factory=dict)  # app id -> hint
    last_use_by_client: dict[str, datetime] = field(default_factory=dict)
    last_use_by_app: dict[str, datetime] = field(default_factory=dict)

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
        elif event.eventType == APP_SIGN_IN_EVENT:
            for target in _app_targets(event):
                _keep_latest(self.last_use_by_app, target, at)
        elif event.actor is not None and event.actor.id:
            _keep_latest(self.last_use_by_client, event.actor.id, at)
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

    def last_use(self, app_id: str, client_id: str | None) -> datetime | None:
        found = [self.last_use_by_app.get(app_id)]
        if client_id:
            found.append(self.last_use_by_client.get(client_id))
        present = [moment for moment in found if moment is not None]
        return max(present) if present else None

    def activity(self, app_id: str, client_id: str | None, window_start: datetime) -> Activity:
        return Activity(app_id, window_start, self.last_use(app_id, client_id))


def _app_targets(event: _LogEvent) -> list[str]:
    return [t.id for t in event.target or [] if t.type == "AppInstance" and t.id]


def _keep_latest(latest: dict[str, datetime], key: str, at: datetime) -> None:
    if key not in latest or latest[key] < at:
        latest[key] = at
