"""Pure functions: Okta for AI Agents JSON -> normalized records. Nothing here does I/O.

Shapes follow the published definitions kept in the SDK's api.yaml (../shared/specs/okta/
okta-sdk-python-3.4.4.api.yaml, schemas AIAgent, ManagedConnection, AgentJsonSigningKey*).
Owners are in neither the AIAgent schema nor any published path: they are read from the
agent object when it carries them, else from `/owners` (see get.list_agent_owners).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.base import Consent, Grant, Malformed, Principal, PrincipalKind, Status
from connectors.okta.transform import parse_time

AGENT_STATUS = {"ACTIVE": Status.ACTIVE, "INACTIVE": Status.DISABLED, "STAGED": Status.DISABLED}
# ORN of a directory principal: orn:okta:directory:{orgId}:users:{id} | ...:groups:{id}
_ORN = re.compile(r"^orn:okta:directory:[^:]+:(users|groups):([^:]+)$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class _Profile(_Model):
    name: str = Field(min_length=1)
    description: str | None = None


class _Agent(_Model):
    id: str = Field(min_length=1)
    status: Literal["ACTIVE", "INACTIVE", "STAGED"]
    profile: _Profile
    appId: str | None = None
    created: str | None = None
    owners: list[Any] | None = None


class _Named(_Model):
    name: str | None = None
    orn: str | None = None
    path: str | None = None


class _Connection(_Model):
    id: str = Field(min_length=1)
    connectionType: Literal[
        "IDENTITY_ASSERTION_APP_INSTANCE",
        "IDENTITY_ASSERTION_CUSTOM_AS",
        "STS_SERVICE_ACCOUNT",
        "STS_VAULT_SECRET",
    ]
    status: Literal["ACTIVE", "INACTIVE"] = "ACTIVE"
    scopeCondition: Literal["ALL_SCOPES", "EXCLUDE", "INCLUDE_ONLY"] | None = None
    scopes: list[str] = []
    authorizationServer: _Named | None = None
    app: _Named | None = None
    secret: _Named | None = None
    serviceAccount: _Named | None = None


@dataclass(frozen=True, slots=True)
class OwnerRef:
    kind: Literal["USER", "GROUP"]
    id: str


@dataclass(slots=True)
class AgentRecords:
    agent_id: str
    name: str
    status: Status
    description: str | None
    linked_app: str | None
    created: str | None
    owners: list[OwnerRef] | None  # None: the object does not say
    skipped: list[Malformed] = field(default_factory=list)


def agent_records(raw: Any) -> AgentRecords | Malformed:
    try:
        agent = _Agent.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        object_id = raw.get("id") if isinstance(raw, dict) else None
        return Malformed(
            "ai_agent",
            object_id if isinstance(object_id, str) else None,
            f"{where}: {first['msg']}",
        )
    records = AgentRecords(
        agent_id=agent.id,
        name=agent.profile.name,
        status=AGENT_STATUS[agent.status],
        description=agent.profile.description,
        linked_app=agent.appId or None,
        created=agent.created,
        owners=None,
    )
    if agent.owners is not None:
        records.owners, records.skipped = owner_refs(agent.id, agent.owners)
    return records


def owner_refs(agent_id: str, items: Iterable[Any]) -> tuple[list[OwnerRef], list[Malformed]]:
    """Owners as `{"type": "USER"|"GROUP", "id"}`, `{"orn"}` or a bare ORN string."""
    owners: list[OwnerRef] = []
    skipped: list[Malformed] = []
    for item in items:
        owner = _owner(item)
        if owner is None:
            skipped.append(Malformed("ai_agent_owner", agent_id, f"unreadable owner {item!r:.80}"))
        elif owner not in owners:
            owners.append(owner)
    return owners, skipped


def _owner(item: Any) -> OwnerRef | None:
    if isinstance(item, Mapping):
        kind, owner_id = str(item.get("type") or "").upper(), item.get("id")
        if kind in ("USER", "GROUP") and isinstance(owner_id, str) and owner_id:
            return OwnerRef("USER" if kind == "USER" else "GROUP", owner_id)
        item = item.get("orn")
    if isinstance(item, str) and (match := _ORN.match(item)):
        return OwnerRef("USER" if match.group(1) == "users" else "GROUP", match.group(2))
    return None


@dataclass(slots=True)
class ConnectionRecords:
    grants: list[Grant] = field(default_factory=list)
    summaries: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Malformed] = field(default_factory=list)


def connection_records(agent_id: str, raw_connections: Iterable[Any]) -> ConnectionRecords:
    """What an agent can reach: each active connection's scopes on its resource, or the
    vaulted secret / service account it is handed."""
    out = ConnectionRecords()
    for raw in raw_connections:
        try:
            connection = _Connection.model_validate(raw)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            out.skipped.append(Malformed("ai_agent_connection", agent_id, where + ": bad"))
            continue
        resource = _resource_name(connection)
        out.summaries.append(
            {
                "id": connection.id,
                "type": connection.connectionType,
                "resource": resource,
                "scopeCondition": connection.scopeCondition,
                "scopes": list(connection.scopes),
                "status": connection.status,
            }
        )
        if connection.status == "ACTIVE":
            out.grants.extend(_grants(agent_id, connection, resource))
    return out


def _resource_name(connection: _Connection) -> str:
    for part in (
        connection.authorizationServer,
        connection.app,
        connection.secret,
        connection.serviceAccount,
    ):
        if part is not None and (part.name or part.orn):
            return str(part.name or part.orn)
    return connection.connectionType


def _grants(agent_id: str, connection: _Connection, resource: str) -> Iterable[Grant]:
    def grant(permission: str, description: str | None = None) -> Grant:
        return Grant(
            principal_id=agent_id,
            grant_id=f"{connection.id}:{permission}",
            permission=permission,
            resource=resource,
            consent=Consent.APPLICATION,
            description=description,
        )

    kind = connection.connectionType
    if kind == "STS_VAULT_SECRET":
        where = connection.secret.path if connection.secret and connection.secret.path else ""
        yield grant(f"secret:{resource}", f"Is handed the vaulted secret {resource} {where}")
    elif kind == "STS_SERVICE_ACCOUNT":
        account = connection.serviceAccount.name if connection.serviceAccount else None
        yield grant(
            f"service_account:{account or resource}",
            f"Signs in to {resource} as the service account {account or '(unnamed)'}",
        )
    elif connection.scopeCondition == "ALL_SCOPES":
        yield grant("*", f"Every scope of {resource}")
    elif connection.scopeCondition == "EXCLUDE":
        excluded = ", ".join(connection.scopes)
        yield grant(f"* except {excluded}", f"Every scope of {resource} except {excluded}")
    else:
        for scope in connection.scopes:
            yield grant(scope)


def agent_principal(
    records: AgentRecords,
    *,
    owners: Any,
    connections: list[dict[str, Any]],
    linked_app_label: str | None,
    inactive_keys: int,
) -> Principal:
    """The agent, with what it is linked to, owned by and connected to kept as evidence."""
    return Principal(
        external_id=records.agent_id,
        kind=PrincipalKind.AGENT_IDENTITY,
        display_name=records.name,
        status=records.status,
        created_at=parse_time(records.created),
        raw={
            "description": records.description,
            "linked_app": (
                {"id": records.linked_app, "label": linked_app_label}
                if records.linked_app
                else None
            ),
            "owners": owners,
            "connections": connections,
            "inactive_keys": inactive_keys,
        },
    )
