"""Pure functions: Graph JSON -> connectors.base records.

Nothing here does I/O or raises on bad input: a record that cannot be normalized comes
back as a `Malformed`, and the caller logs, counts and skips it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

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

Json = dict[str, Any]

MICROSOFT_TENANTS = frozenset(
    {
        "f8cdef31-a31e-4b4a-93e4-5f571e91255a",
        "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "cdc5aeea-15c5-4db6-b079-fcadd2505dc2",
        "33e01921-4d64-4f8c-a055-5bdaffd5e33d",
        "975f013f-7f24-47e8-a7d3-abc4752bf346",  # PME (../shared/notes/provider-facts.md)
        "124edf19-b350-4797-aefc-3206115ffdb3",  # GME
    }
)
# servicePrincipalType (msgraph-sdk-python models/service_principal.py): ServiceIdentity is
# an agent identity. Any other value is inventoried as a service principal, with a warning.
SP_TYPES = {
    "Application": PrincipalKind.SERVICE_PRINCIPAL,
    "Legacy": PrincipalKind.SERVICE_PRINCIPAL,
    "SocialIdp": PrincipalKind.SERVICE_PRINCIPAL,
    "ManagedIdentity": PrincipalKind.MANAGED_IDENTITY,
    "ServiceIdentity": PrincipalKind.AGENT_IDENTITY,
}
AGENT_TYPE = "#microsoft.graph.agentIdentity"
DEFAULT_ACCESS_ROLE = "00000000-0000-0000-0000-000000000000"
# Microsoft keeps service-principal sign-in activity back to May 2020 (Graph docs).
SIGN_IN_WINDOW_START = datetime(2020, 5, 1, tzinfo=UTC)
SIGN_IN_BLOCKS = (
    "lastSignInActivity",
    "applicationAuthenticationClientSignInActivity",
    "applicationAuthenticationResourceSignInActivity",
    "delegatedClientSignInActivity",
    "delegatedResourceSignInActivity",
)
SIGN_IN_FIELDS = (
    "lastSignInDateTime",
    "lastNonInteractiveSignInDateTime",
    "lastSuccessfulSignInDateTime",
)


class Bad(ValueError):
    """Why one record cannot be normalized."""


# reference data shipped beside this module (MIT, merill/microsoft-info) ------------


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("connectors.entra").joinpath("data", name).read_text("utf-8-sig")
    return list(csv.DictReader(text.splitlines()))


@cache
def first_party_app_ids() -> frozenset[str]:
    rows = _rows("microsoft-first-party-apps.csv") + _rows("microsoft-first-party-apps-other.csv")
    return frozenset(row["AppId"].lower() for row in rows if row.get("AppId"))


@cache
def known_permissions() -> Mapping[str, tuple[str, str]]:
    """Graph permission GUID -> (name, plain-words description), both kinds."""
    names = {
        row["Id"].lower(): (row["Value"], row["DisplayName"])
        for row in _rows("graph-permissions-application.csv")
    }
    for row in _rows("graph-permissions-delegated.csv"):
        names.setdefault(row["Id"].lower(), (row["Value"], row["AdminConsentDisplayName"]))
    return names


@cache
def delegated_descriptions() -> Mapping[str, str]:
    return {
        row["Value"]: row["AdminConsentDisplayName"]
        for row in _rows("graph-permissions-delegated.csv")
    }


# field checks ---------------------------------------------------------------------


def text(record: Json, name: str, *, required: bool = False) -> str | None:
    value = record.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise Bad(f"{name} is {'missing' if value is None else 'not a non-empty string'}")
    return value


def listing(record: Json, name: str) -> list[Any]:
    value = record.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Bad(f"{name} is not a list")
    return value


def moment(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Bad(f"date-time {value!r} is not a string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Bad(f"bad date-time {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def as_object(value: Any) -> Json:
    """`value` if it is a JSON object, else an empty one (for optional nested fields)."""
    return value if isinstance(value, dict) else {}


def record_id(record: Any) -> str | None:
    value = record.get("id") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def malformed(kind: str, record: Any, reason: str) -> Malformed:
    return Malformed(object_type=kind, object_id=record_id(record), reason=reason)


def check_service_principal(record: Any) -> Malformed | None:
    try:
        if not isinstance(record, dict):
            raise Bad("not a JSON object")
        text(record, "id", required=True)
        text(record, "appId", required=True)
        text(record, "displayName")
        text(record, "servicePrincipalType")
        moment(record.get("createdDateTime"))
        if not isinstance(record.get("accountEnabled", True), bool | None):
            raise Bad("accountEnabled is not a boolean")
        listing(record, "passwordCredentials")
        listing(record, "keyCredentials")
    except Bad as bad:
        return malformed("servicePrincipal", record, str(bad))
    return None


def check_application(record: Any) -> Malformed | None:
    try:
        if not isinstance(record, dict):
            raise Bad("not a JSON object")
        text(record, "id", required=True)
        text(record, "appId", required=True)
        text(record, "displayName")
        moment(record.get("createdDateTime"))
        listing(record, "passwordCredentials")
        listing(record, "keyCredentials")
    except Bad as bad:
        return malformed("application", record, str(bad))
    return None


# principals -----------------------------------------------------------------------


def is_platform_owned(app_id: str, owner_tenant: Any) -> bool:
    """Microsoft first-party: by appId first, by Microsoft's own owner tenants second."""
    return app_id.lower() in first_party_app_ids() or owner_tenant in MICROSOFT_TENANTS


def _publisher(record: Json) -> tuple[str | None, bool | None]:
    verified = as_object(record.get("verifiedPublisher"))
    name = verified.get("displayName") or record.get("publisherName")
    return (name if isinstance(name, str) else None), bool(verified.get("verifiedPublisherId"))


def kind_of(sp: Json) -> PrincipalKind:
    if sp.get("@odata.type") == AGENT_TYPE:
        return PrincipalKind.AGENT_IDENTITY
    return SP_TYPES.get(
        sp.get("servicePrincipalType") or "Application", PrincipalKind.SERVICE_PRINCIPAL
    )


def unknown_type(sp: Json) -> str | None:
    """A servicePrincipalType this code does not know (it is still inventoried)."""
    sp_type = sp.get("servicePrincipalType")
    return sp_type if sp_type is not None and sp_type not in SP_TYPES else None


def principal_of(sp: Json | None, app: Json | None) -> Principal:
    """One principal: a service principal with its app registration folded in, or an app
    registration that has no service principal (an `oauth_app`). Inputs are checked."""
    if sp is None:
        assert app is not None
        publisher, verified = _publisher(app)
        return Principal(
            external_id=app["id"],
            kind=PrincipalKind.OAUTH_APP,
            display_name=app.get("displayName") or app["appId"],
            app_id=app["appId"],
            publisher=publisher or app.get("publisherDomain"),
            publisher_verified=verified,
            created_at=moment(app.get("createdDateTime")),
            raw={"applicationId": app["id"], "publisherDomain": app.get("publisherDomain")},
        )
    publisher, verified = _publisher(sp)
    created = app.get("createdDateTime") if app else sp.get("createdDateTime")
    return Principal(
        external_id=sp["id"],
        kind=kind_of(sp),
        display_name=sp.get("displayName") or sp["appId"],
        status=Status.DISABLED if sp.get("accountEnabled") is False else Status.ACTIVE,
        platform_owned=is_platform_owned(sp["appId"], sp.get("appOwnerOrganizationId")),
        app_id=sp["appId"],
        publisher=publisher,
        publisher_verified=verified,
        created_at=moment(created),
        raw={
            "servicePrincipalType": sp.get("servicePrincipalType"),
            "appOwnerOrganizationId": sp.get("appOwnerOrganizationId"),
            "applicationId": app["id"] if app else None,
        },
    )


def credentials_of(
    principal_id: str, holders: Iterable[Json], *, managed: bool = False
) -> tuple[list[Credential], list[Malformed]]:
    """Secrets and certificates of the service principal and of its app registration.

    A SAML signing certificate shows as a Sign keyCredential, a Verify keyCredential with
    the same thumbprint and a passwordCredential with the Sign key's id: one certificate
    (../shared/notes/provider-facts.md). A managed identity's certificate is Azure's to
    rotate: `managed_certificate`, never an expiring secret.
    """
    found: dict[str, Credential] = {}
    bad: list[Malformed] = []
    for holder in holders:
        signing = _signing_keys(listing(holder, "keyCredentials"))
        for field_name, kind in (
            ("passwordCredentials", "secret"),
            ("keyCredentials", "managed_certificate" if managed else "certificate"),
        ):
            for entry in listing(holder, field_name):
                if _part_of_signing(entry, kind, signing):
                    continue
                try:
                    credential = _credential(principal_id, entry, kind)
                except Bad as reason:
                    key = entry.get("keyId") if isinstance(entry, dict) else None
                    bad.append(Malformed("credential", str(key or principal_id), str(reason)))
                    continue
                found[credential.credential_id] = credential
    return list(found.values()), bad


def _signing_keys(keys: list[Any]) -> dict[str, str | None]:
    """Sign keyCredentials: key id -> thumbprint (customKeyIdentifier)."""
    return {
        entry["keyId"]: entry.get("customKeyIdentifier")
        for entry in keys
        if isinstance(entry, dict) and entry.get("usage") == "Sign" and entry.get("keyId")
    }


def _part_of_signing(entry: Any, kind: str, signing: dict[str, str | None]) -> bool:
    """The Verify half or the password half of a signing certificate already counted."""
    if not isinstance(entry, dict) or not signing:
        return False
    thumbprint = entry.get("customKeyIdentifier")
    same_print = thumbprint is not None and thumbprint in signing.values()
    if kind == "secret":
        return entry.get("keyId") in signing or same_print
    return entry.get("usage") == "Verify" and same_print


def _credential(principal_id: str, entry: Any, kind: str) -> Credential:
    """`startDateTime` is when the credential starts to be valid, not when anyone made it:
    Graph has no creation time for credentials, so `created_at` stays unknown."""
    if not isinstance(entry, dict):
        raise Bad("credential is not a JSON object")
    return Credential(
        principal_id=principal_id,
        credential_id=text(entry, "keyId", required=True) or "",
        type=kind,
        display_name=text(entry, "displayName"),
        expires_at=moment(entry.get("endDateTime")),
        valid_from=moment(entry.get("startDateTime")),
    )


def federated_credentials(
    principal_id: str, found: Iterable[Any]
) -> tuple[list[Credential], list[Malformed]]:
    """federatedIdentityCredentials: an outside issuer's tokens (a GitHub Actions workflow,
    another cloud) sign in as the app with no secret at all."""
    credentials, bad = [], []
    for entry in found:
        try:
            if not isinstance(entry, dict):
                raise Bad("not a JSON object")
            issuer = text(entry, "issuer", required=True)
            subject = text(entry, "subject", required=True)
            credentials.append(
                Credential(
                    principal_id=principal_id,
                    credential_id=text(entry, "id", required=True) or "",
                    type="federated",
                    display_name=f"issuer {issuer}, subject {subject}",
                )
            )
        except Bad as reason:
            bad.append(malformed("federatedIdentityCredential", entry, str(reason)))
    return credentials, bad


# people and owners ------------------------------------------------------------------


def person_of(user: Any) -> Person | Malformed:
    try:
        if not isinstance(user, dict):
            raise Bad("not a JSON object")
        user_id = text(user, "id", required=True) or ""
        manager = user.get("manager")
        if isinstance(user.get("manager@delta"), list):  # users/delta spells it so
            manager = next(iter(user["manager@delta"]), None)
        manager_id = record_id(manager) if isinstance(manager, dict) else None
        enabled = user.get("accountEnabled")
        if not isinstance(enabled, bool | None):
            raise Bad("accountEnabled is not a boolean")
        return Person(
            external_id=user_id,
            display_name=text(user, "displayName") or text(user, "userPrincipalName") or user_id,
            email=text(user, "mail") or text(user, "userPrincipalName"),
            active=enabled is not False,
            manager_id=manager_id,
        )
    except Bad as bad:
        return malformed("user", user, str(bad))


def owner_hints(
    principal_id: str, owners: Iterable[Json], held_by: str, relationship: str = "owners"
) -> list[OwnerHint]:
    """Owners (or an agent identity's sponsors) listed on the service principal or on the
    app registration (`held_by`)."""
    hints: list[OwnerHint] = []
    for owner in owners:
        owner_id, kind = record_id(owner), owner.get("@odata.type")
        if owner_id is None:
            continue
        evidence = f"listed in /{relationship} of the {held_by}"
        if kind == "#microsoft.graph.user":
            email = owner.get("mail") or owner.get("userPrincipalName")
            hints.append(
                OwnerHint(
                    principal_id,
                    OwnerSource.IDP_OWNER,
                    evidence,
                    person_id=owner_id,
                    email=email if isinstance(email, str) else None,
                )
            )
        elif kind == "#microsoft.graph.servicePrincipal":
            hints.append(
                OwnerHint(
                    principal_id, OwnerSource.IDP_OWNER, evidence, owner_principal_id=owner_id
                )
            )
    return hints


def creator_hint(principal_id: str, audit: Json) -> OwnerHint | None:
    """Who ran "Add application" / "Add service principal", from the directory audit."""
    initiated = as_object(audit.get("initiatedBy"))
    user, app = as_object(initiated.get("user")), as_object(initiated.get("app"))
    evidence = (
        f"{audit.get('activityDisplayName')} at {audit.get('activityDateTime')} (directory audit)"
    )
    if isinstance(user.get("id"), str):
        upn = user.get("userPrincipalName")
        return OwnerHint(
            principal_id,
            OwnerSource.AUDIT_CREATOR,
            evidence,
            person_id=user["id"],
            email=upn if isinstance(upn, str) else None,
        )
    if isinstance(app.get("servicePrincipalId"), str):
        return OwnerHint(
            principal_id,
            OwnerSource.AUDIT_CREATOR,
            evidence,
            owner_principal_id=app["servicePrincipalId"],
        )
    return None


def audit_targets(audit: Any) -> list[str]:
    if not isinstance(audit, dict) or not isinstance(audit.get("targetResources"), list):
        return []
    return [
        t["id"]
        for t in audit["targetResources"]
        if isinstance(t, dict) and isinstance(t.get("id"), str)
    ]


# grants -------------------------------------------------------------------------------


@dataclass
class Resource:
    """What a grant points at: a resource service principal's name, roles and scopes."""

    name: str
    roles: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # id -> (value, text)
    scopes: dict[str, str | None] = field(default_factory=dict)  # value -> description


def resource_of(sp: Json) -> Resource:
    roles = {
        str(role.get("id")).lower(): (role["value"], role.get("displayName"))
        for role in sp.get("appRoles") or []
        if isinstance(role, dict) and isinstance(role.get("value"), str)
    }
    scopes = {
        scope["value"]: scope.get("adminConsentDisplayName")
        for scope in sp.get("oauth2PermissionScopes") or []
        if isinstance(scope, dict) and isinstance(scope.get("value"), str)
    }
    return Resource(
        name=sp.get("displayName") or sp.get("appId") or sp["id"], roles=roles, scopes=scopes
    )


def delegated_grants(grant: Any, resources: Mapping[str, Resource]) -> list[Grant] | Malformed:
    """One Grant per scope of an oauth2PermissionGrant; grant_id is "<grant id>#<scope>"."""
    try:
        if not isinstance(grant, dict):
            raise Bad("not a JSON object")
        grant_id = text(grant, "id", required=True) or ""
        client = text(grant, "clientId", required=True) or ""
        resource_id = text(grant, "resourceId", required=True) or ""
        consent_type = grant.get("consentType")
        if consent_type not in ("AllPrincipals", "Principal"):
            raise Bad(f"unknown consentType {consent_type!r}")
        scopes = (text(grant, "scope") or "").split()
    except Bad as bad:
        return malformed("oauth2PermissionGrant", grant, str(bad))
    resource = resources.get(resource_id)
    admin = consent_type == "AllPrincipals"
    return [
        Grant(
            principal_id=client,
            grant_id=f"{grant_id}#{scope}",
            permission=scope,
            resource=resource.name if resource else f"unknown resource {resource_id}",
            consent=Consent.ADMIN if admin else Consent.USER,
            consenting_user=None if admin else grant.get("principalId"),
            description=(resource.scopes.get(scope) if resource else None)
            or delegated_descriptions().get(scope),
        )
        for scope in scopes
    ]


def assignment_grant_id(assignment_id: str, resource_id: str, role_id: str) -> str:
    """An application grant's id carries what finds it again if the assignment is
    re-created under a new id: "<assignment id>@<resource id>/<app role id>"."""
    return f"{assignment_id}@{resource_id}/{role_id}"


def parse_assignment_grant_id(grant_id: str) -> tuple[str, str | None, str | None]:
    """(assignment id, resource id, app role id); ids stored before carry only the first."""
    assignment_id, _, rest = grant_id.partition("@")
    resource_id, _, role_id = rest.partition("/")
    return assignment_id, resource_id or None, role_id or None


def application_grant(
    principal_id: str, assignment: Any, resources: Mapping[str, Resource]
) -> Grant | Malformed:
    """An app role granted to the service principal (an application permission)."""
    try:
        if not isinstance(assignment, dict):
            raise Bad("not a JSON object")
        assignment_id = text(assignment, "id", required=True) or ""
        role_id = (text(assignment, "appRoleId", required=True) or "").lower()
        resource_id = text(assignment, "resourceId", required=True) or ""
    except Bad as bad:
        return malformed("appRoleAssignment", assignment, str(bad))
    resource = resources.get(resource_id)
    name, description = permission_name(role_id, resource)
    fallback_name = assignment.get("resourceDisplayName")
    return Grant(
        principal_id=principal_id,
        grant_id=assignment_grant_id(assignment_id, resource_id, role_id),
        permission=name,
        resource=resource.name
        if resource
        else (fallback_name or f"unknown resource {resource_id}"),
        consent=Consent.APPLICATION,
        description=description,
    )


def permission_name(role_id: str, resource: Resource | None) -> tuple[str, str | None]:
    """Resource's own appRoles first, the shipped Graph permission list second."""
    if resource and role_id in resource.roles:
        return resource.roles[role_id]
    if role_id in known_permissions():
        return known_permissions()[role_id]
    if role_id == DEFAULT_ACCESS_ROLE:
        return "default access", "Assigned to the app with no specific role"
    return f"unknown permission {role_id}", None


# activity -----------------------------------------------------------------------------


def last_sign_in(row: Json) -> datetime | Malformed | None:
    """The latest sign-in of any kind in one servicePrincipalSignInActivity row."""
    latest: datetime | None = None
    try:
        for block_name in SIGN_IN_BLOCKS:
            block = row.get(block_name)
            if not isinstance(block, dict):
                continue
            for name in SIGN_IN_FIELDS:
                seen = moment(block.get(name))
                if seen and (latest is None or seen > latest):
                    latest = seen
    except Bad as bad:
        return malformed("servicePrincipalSignInActivity", row, str(bad))
    return latest


def activity_of(principal_id: str, latest: datetime | None) -> Activity:
    return Activity(
        principal_id=principal_id, window_start=SIGN_IN_WINDOW_START, last_used_at=latest
    )
