"""Pure functions: Google API JSON -> connector records.

Nothing here raises on provider data: a record that cannot be normalized becomes a
`Malformed` for the caller to log and count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectors.base import (
    LAST_USE_UNKNOWN,
    SEEN_SINCE,
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

WORKSPACE = "Google Workspace"
AUTHORIZE_DWD = "AUTHORIZE_API_CLIENT_ACCESS"
REMOVE_DWD = "REMOVE_API_CLIENT_ACCESS"
USE_EVENT = "activity"  # an app's API access on a user's behalf: the only "use" Google logs
CONSENT_EVENTS = ("authorize", "revoke")  # a user's grants changed
NEVER = datetime(9999, 1, 1, tzinfo=UTC)  # IAM spells "no expiry" as year 9999
# Google's own OAuth clients, matched by client id only: display names are attacker-chosen.
GOOGLE_OWNED_CLIENTS = frozenset(
    line.split("#")[0].strip()
    for line in (Path(__file__).parent / "google_owned_clients.txt").read_text().splitlines()
    if line.split("#")[0].strip()
)
Json = Mapping[str, Any]


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 -> aware UTC datetime; raises ValueError/TypeError on garbage."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"time is {type(value).__name__}, not a string")
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _text(record: Json, key: str) -> str | None:
    value = record.get(key)
    return value if isinstance(value, str) and value else None


def manager_email(user: Json) -> str | None:
    relations = user.get("relations")
    if not isinstance(relations, list):
        return None
    for relation in relations:
        if isinstance(relation, dict) and relation.get("type") == "manager":
            value = relation.get("value")
            return value.lower() if isinstance(value, str) and value else None
    return None


def person(user: Json, manager_id: str | None) -> Person | Malformed:
    user_id, email = _text(user, "id"), _text(user, "primaryEmail")
    if user_id is None or email is None:
        return Malformed("user", user_id or email, "user without id or primaryEmail")
    for flag in ("suspended", "archived"):
        if not isinstance(user.get(flag, False), bool):
            return Malformed("user", user_id, f"{flag} is not a boolean")
    name = user.get("name")
    full_name = name.get("fullName") if isinstance(name, dict) else None
    return Person(
        external_id=user_id,
        display_name=full_name if isinstance(full_name, str) and full_name else email,
        email=email.lower(),
        active=not (user.get("suspended", False) or user.get("archived", False)),
        manager_id=manager_id,
    )


@dataclass(slots=True)
class UserTokens:
    principals: list[Principal] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)
    skipped: list[Malformed] = field(default_factory=list)


def third_party_app(token: Json, unknown_use: str | None = None) -> Principal:
    client_id = str(token["clientId"])
    raw: dict[str, Any] = {"clientId": client_id, "displayText": token.get("displayText")}
    if unknown_use:
        raw[LAST_USE_UNKNOWN] = unknown_use
    return Principal(
        external_id=client_id,
        kind=PrincipalKind.THIRD_PARTY_APP,
        display_name=_text(token, "displayText") or client_id,
        platform_owned=client_id in GOOGLE_OWNED_CLIENTS,
        app_id=client_id,
        raw=raw,
    )


def _token_problem(token: Any) -> str | None:
    if not isinstance(token, dict) or not _text(token, "clientId"):
        return "token without clientId"
    scopes = token.get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        return "scopes is not a list of strings"
    return None


def user_tokens(user_id: str, tokens: Json, unknown_use: str | None = None) -> UserTokens:
    """One user's tokens.list -> an app principal per client and a grant per scope."""
    result = UserTokens()
    items = tokens.get("items", [])
    if not isinstance(items, list):
        result.skipped.append(Malformed("tokens", user_id, "items is not a list"))
        return result
    for token in items:
        problem = _token_problem(token)
        if problem:
            client = token.get("clientId") if isinstance(token, dict) else None
            result.skipped.append(Malformed("token", f"{user_id}:{client}", problem))
            continue
        app = third_party_app(token, unknown_use)
        result.principals.append(app)
        result.grants.extend(
            Grant(
                principal_id=app.external_id,
                grant_id=f"{user_id}:{app.external_id}",
                permission=scope,
                resource=WORKSPACE,
                consent=Consent.USER,
                consenting_user=user_id,
            )
            for scope in dict.fromkeys(token.get("scopes", []))
        )
    return result


def _parameters(event: Json) -> dict[str, Any]:
    found: dict[str, Any] = {}
    parameters = event.get("parameters")
    for parameter in parameters if isinstance(parameters, list) else []:
        if isinstance(parameter, dict) and isinstance(parameter.get("name"), str):
            found[parameter["name"]] = parameter.get("value", parameter.get("multiValue"))
    return found


def _events(item: Json) -> tuple[datetime, list[Json]]:
    """The time and events of one Reports activity; raises on a malformed item."""
    ident = item.get("id")
    moment = parse_time(ident.get("time") if isinstance(ident, dict) else None)
    events = item.get("events")
    if moment is None or not isinstance(events, list):
        raise ValueError("activity without id.time or events")
    return moment, [e for e in events if isinstance(e, dict)]


def fold_token_use(
    items: Iterable[Json], last_use: dict[str, datetime], skipped: list[Malformed]
) -> set[str]:
    """Latest `activity` time per OAuth client id, folded into `last_use` (memory stays
    one entry per client whatever the number of events). Returns the clients seen."""
    seen: set[str] = set()
    for item in items:
        try:
            moment, events = _events(item)
        except (ValueError, TypeError) as exc:
            skipped.append(Malformed("token_activity", None, str(exc)))
            continue
        for event in events:
            client_id = _parameters(event).get("client_id")
            if event.get("name") != USE_EVENT or not isinstance(client_id, str) or not client_id:
                continue
            seen.add(client_id)
            if client_id not in last_use or moment > last_use[client_id]:
                last_use[client_id] = moment
    return seen


def consenting_actors(items: Iterable[Json]) -> set[str]:
    """The users (profile ids) behind a page of authorize/revoke events."""
    found = set()
    for item in items:
        actor = item.get("actor") if isinstance(item, dict) else None
        profile = actor.get("profileId") if isinstance(actor, dict) else None
        if isinstance(profile, str) and profile:
            found.add(profile)
    return found


@dataclass(slots=True)
class Delegations:
    """Domain-wide delegation clients, kept in the checkpoint cursor: no API lists them and
    the admin audit log keeps 180 days, so the set is carried forward run after run.

    `clients` maps a client id to {"scopes", "by_email", "by_id", "at", "source", "since",
    "name"}; `removed` maps a client id to when REMOVE_API_CLIENT_ACCESS retired it.
    """

    clients: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)
    retired_now: set[str] = field(default_factory=set)  # removed by this run's events

    def fold(self, items: Iterable[Json], skipped: list[Malformed]) -> None:
        """Apply AUTHORIZE/REMOVE_API_CLIENT_ACCESS events, oldest first."""
        dated: list[tuple[datetime, Json, Json]] = []
        for item in items:
            try:
                moment, events = _events(item)
            except (ValueError, TypeError) as exc:
                skipped.append(Malformed("admin_activity", None, str(exc)))
                continue
            found = item.get("actor")
            actor: Json = found if isinstance(found, dict) else {}
            dated.extend((moment, event, actor) for event in events)
        for moment, event, actor in sorted(dated, key=lambda entry: entry[0]):
            self._apply(moment, event, actor)

    def _apply(self, moment: datetime, event: Json, actor: Json) -> None:
        params = _parameters(event)
        client_id = params.get("API_CLIENT_NAME")
        if not isinstance(client_id, str) or not client_id:
            return
        if event.get("name") == REMOVE_DWD:
            self.clients.pop(client_id, None)
            self.removed[client_id] = moment.isoformat()
            self.retired_now.add(client_id)
        elif event.get("name") == AUTHORIZE_DWD:
            scopes = params.get("API_SCOPES")
            if isinstance(scopes, str):
                scopes = [s.strip() for s in scopes.split(",")]
            email, profile = actor.get("email"), actor.get("profileId")
            previous = self.clients.get(client_id, {})
            self.removed.pop(client_id, None)
            self.retired_now.discard(client_id)
            self.clients[client_id] = {
                "scopes": [s for s in scopes or [] if isinstance(s, str) and s],
                "by_email": email if isinstance(email, str) else None,
                "by_id": profile if isinstance(profile, str) else None,
                "at": moment.isoformat(),
                "source": "admin audit",
                "since": moment.isoformat(),
                "name": previous.get("name"),
            }

    def register(self, client_id: str, scopes: Iterable[str], name: str | None, since: str) -> bool:
        """A client IAM listed in `delegation_clients_file`. False when the audit log says
        it was removed (the file is out of date); an audited client keeps its audit data."""
        if client_id in self.removed:
            return False
        entry = self.clients.get(client_id)
        if entry is None or entry.get("source") != "admin audit":
            self.clients[client_id] = {
                "scopes": list(scopes),
                "by_email": None,
                "by_id": None,
                "at": None,
                "source": "delegation_clients_file",
                "since": (entry or {}).get("since") or since,
                "name": name,
            }
        elif name:
            entry["name"] = name
        return True


def delegation_records(
    client_id: str, entry: Json, account: Principal | None = None
) -> tuple[Principal, list[Grant], list[OwnerHint]]:
    """A DWD client as a principal. When it is the OAuth client (`oauth2ClientId`) of a
    listed service account, it *is* that account: the delegated scopes become the
    account's grants, reviewed with it by the account's owner (the ids are the same
    number, so two principals would collide anyway)."""
    evidence = {
        "domainWideDelegation": True,
        "authorizedAt": entry.get("at"),
        "evidence": entry.get("source"),
        SEEN_SINCE: entry.get("since"),
    }
    if account is not None:
        principal = replace(account, raw={**account.raw, **evidence})
    else:
        principal = Principal(
            external_id=client_id,
            kind=PrincipalKind.OAUTH_APP,
            display_name=entry.get("name") or f"Domain-wide delegation client {client_id}",
            app_id=client_id,
            raw=evidence,
        )
    owner = principal.external_id
    grants = [
        Grant(
            principal_id=owner,
            grant_id=f"dwd:{client_id}",
            permission=scope,
            resource=WORKSPACE,
            consent=Consent.DOMAIN_WIDE,
        )
        for scope in entry.get("scopes", [])
    ]
    hints = []
    if entry.get("by_email") or entry.get("by_id"):
        hints.append(
            OwnerHint(
                principal_id=owner,
                source=OwnerSource.AUDIT_CREATOR,
                evidence=f"authorized domain-wide delegation at {entry.get('at')} "
                f"(admin audit {AUTHORIZE_DWD})",
                person_id=entry.get("by_id"),
                email=entry.get("by_email"),
            )
        )
    return principal, grants, hints


def is_service_agent(account: Json) -> bool:
    """Google-managed service agents (`service-123@gcp-sa-x.iam.gserviceaccount.com`,
    `123@cloudservices.gserviceaccount.com`) are Google's to run. The Compute Engine and App
    Engine *default* accounts (`-compute@developer.`, `@appspot.`) are user-managed: Google
    creates them with Editor, the project owns them, so they are reviewed
    (cloud.google.com/iam/docs/service-account-types)."""
    email = str(account.get("email", ""))
    domain = email.rpartition("@")[2]
    return domain.startswith("gcp-sa-") or domain == "cloudservices.gserviceaccount.com"


def service_account(project: str, account: Json) -> Principal | Malformed:
    unique_id, email = _text(account, "uniqueId"), _text(account, "email")
    if unique_id is None or email is None:
        return Malformed("service_account", unique_id or email, "no uniqueId or email")
    if not isinstance(account.get("disabled", False), bool):
        return Malformed("service_account", unique_id, "disabled is not a boolean")
    return Principal(
        external_id=unique_id,
        kind=PrincipalKind.SERVICE_ACCOUNT,
        display_name=_text(account, "displayName") or email,
        status=Status.DISABLED if account.get("disabled") else Status.ACTIVE,
        platform_owned=is_service_agent(account),
        app_id=email,
        raw={
            k: account[k]
            for k in ("name", "projectId", "description", "oauth2ClientId")
            if k in account
        },
    )


def key_credentials(principal_id: str, keys: Json) -> tuple[list[Credential], list[Malformed]]:
    credentials, skipped = [], []
    items = keys.get("keys", [])
    for key in items if isinstance(items, list) else []:
        name = key.get("name") if isinstance(key, dict) else None
        key_id = name.rsplit("/", 1)[-1] if isinstance(name, str) and name else None
        try:
            if key_id is None or key.get("keyType") != "USER_MANAGED":
                raise ValueError("key without name, or not USER_MANAGED")
            if not isinstance(key.get("disabled", False), bool):
                raise ValueError("disabled is not a boolean")
            if key.get("disabled"):
                continue  # a disabled key signs nothing: not a live credential
            created = parse_time(key.get("validAfterTime"))
            expires = parse_time(key.get("validBeforeTime"))
        except (ValueError, TypeError) as exc:
            skipped.append(Malformed("service_account_key", f"{principal_id}/{key_id}", str(exc)))
            continue
        credentials.append(
            Credential(
                principal_id=principal_id,
                credential_id=key_id,
                type="key",
                created_at=created,
                expires_at=None if expires is None or expires >= NEVER else expires,
            )
        )
    return credentials, skipped
