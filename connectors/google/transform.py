"""Pure functions: Google API JSON -> connector records.

Nothing here raises on provider data: a record that cannot be normalized becomes a
`Malformed` for the caller to log and count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectors.base import (
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
TOKEN_USE_EVENTS = frozenset({"authorize", "activity"})
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


def third_party_app(token: Json) -> Principal:
    client_id = str(token["clientId"])
    return Principal(
        external_id=client_id,
        kind=PrincipalKind.THIRD_PARTY_APP,
        display_name=_text(token, "displayText") or client_id,
        platform_owned=client_id in GOOGLE_OWNED_CLIENTS,
        app_id=client_id,
        raw={"clientId": client_id, "displayText": token.get("displayText")},
    )


def _token_problem(token: Any) -> str | None:
    if not isinstance(token, dict) or not _text(token, "clientId"):
        return "token without clientId"
    scopes = token.get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        return "scopes is not a list of strings"
    return None


def user_tokens(user_id: str, tokens: Json) -> UserTokens:
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
        app = third_party_app(token)
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
) -> None:
    """Latest authorize/activity time per OAuth client id, folded into `last_use`."""
    for item in items:
        try:
            moment, events = _events(item)
        except (ValueError, TypeError) as exc:
            skipped.append(Malformed("token_activity", None, str(exc)))
            continue
        for event in events:
            client_id = _parameters(event).get("client_id")
            if event.get("name") not in TOKEN_USE_EVENTS or not isinstance(client_id, str):
                continue
            if client_id and (client_id not in last_use or moment > last_use[client_id]):
                last_use[client_id] = moment


def fold_delegations(
    items: Iterable[Json], state: dict[str, dict[str, Any]], skipped: list[Malformed]
) -> None:
    """Apply admin AUTHORIZE/REMOVE_API_CLIENT_ACCESS events, oldest first, to `state`.

    `state` maps a DWD client id to {"scopes", "by_email", "by_id", "at"} and is kept in
    the checkpoint cursor: no API lists DWD clients and the audit log keeps 180 days.
    """
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
        params = _parameters(event)
        client_id = params.get("API_CLIENT_NAME")
        if not isinstance(client_id, str) or not client_id:
            continue
        if event.get("name") == REMOVE_DWD:
            state.pop(client_id, None)
        elif event.get("name") == AUTHORIZE_DWD:
            scopes = params.get("API_SCOPES")
            if isinstance(scopes, str):
                scopes = [s.strip() for s in scopes.split(",")]
            state[client_id] = {
                "scopes": [s for s in scopes or [] if isinstance(s, str) and s],
                "by_email": actor.get("email") if isinstance(actor.get("email"), str) else None,
                "by_id": actor.get("profileId")
                if isinstance(actor.get("profileId"), str)
                else None,
                "at": moment.isoformat(),
            }


def delegation_records(
    client_id: str, entry: Json
) -> tuple[Principal, list[Grant], list[OwnerHint]]:
    principal = Principal(
        external_id=client_id,
        kind=PrincipalKind.OAUTH_APP,
        display_name=f"Domain-wide delegation client {client_id}",
        app_id=client_id,
        raw={"domainWideDelegation": True, "authorizedAt": entry.get("at")},
    )
    grants = [
        Grant(
            principal_id=client_id,
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
                principal_id=client_id,
                source=OwnerSource.AUDIT_CREATOR,
                evidence=f"authorized domain-wide delegation at {entry.get('at')} "
                f"(admin audit {AUTHORIZE_DWD})",
                person_id=entry.get("by_id"),
                email=entry.get("by_email"),
            )
        )
    return principal, grants, hints


def is_google_managed(account: Json, project: str) -> bool:
    """Google-created accounts (default compute/App Engine accounts, service agents)
    live outside the project's own `<project>.iam.gserviceaccount.com` domain."""
    return not str(account.get("email", "")).endswith(f"@{project}.iam.gserviceaccount.com")


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
        platform_owned=is_google_managed(account, project),
        app_id=email,
        raw={k: account[k] for k in ("name", "projectId", "description") if k in account},
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
