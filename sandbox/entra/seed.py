"""A deterministic Entra tenant: users, app registrations, service principals, grants.

The generator also records the ground truth the connector's output is checked against
(which principals are Microsoft's, which permission names each holds, who owns what),
decided here when each object is made, never derived from the Graph data afterwards.

`TenantGenerator` makes the same tenant for a seed as it always has (benchmarks and the
inventory comparison rely on it); `Additions` then adds, from a random stream of its own,
what later Graph releases and real tenants brought: agent identities with sponsors,
Microsoft's PME and GME owner tenants, GitHub Actions federated credentials, SAML signing
certificates, and an app with more owners than `$expand` returns.
"""

from __future__ import annotations

import base64
import csv
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "connectors" / "entra" / "data"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
MICROSOFT_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
MICROSOFT_TENANTS = (
    MICROSOFT_TENANT,
    "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "cdc5aeea-15c5-4db6-b079-fcadd2505dc2",
    "33e01921-4d64-4f8c-a055-5bdaffd5e33d",
)
# Microsoft's PME and GME tenants also own first-party apps (../shared/notes/provider-facts.md).
PME_TENANT = "975f013f-7f24-47e8-a7d3-abc4752bf346"
GME_TENANT = "124edf19-b350-4797-aefc-3206115ffdb3"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
SEED_NOW = datetime(2026, 12, 1, tzinfo=UTC)
APP_PERMISSIONS = (
    "Mail.ReadWrite",
    "Directory.ReadWrite.All",
    "Files.ReadWrite.All",
    "User.Read.All",
    "Application.ReadWrite.All",
    "Sites.Read.All",
    "Group.Read.All",
)
CSV_ONLY_PERMISSION = "AuditLog.Read.All"  # left out of the Graph SP's appRoles on purpose
DELEGATED_SCOPES = ("User.Read", "Mail.Read", "offline_access", "Files.ReadWrite.All", "openid")
HOSTILE_NAMES = (
    "<script>alert(1)</script>",
    "Security Team\r\nBcc: x@evil",
    "\u202eexe.tnemucod",
    "A" * 10240,
)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def grant_id(client_id: str, resource_id: str, principal_id: str | None = None) -> str:
    """Graph's oauth2PermissionGrant id: base64url of the client's, the resource's and (for
    one user's consent) the user's object ids (../shared/notes/provider-facts.md)."""
    parts = [client_id, resource_id] + ([principal_id] if principal_id else [])
    raw = b"".join(uuid.UUID(part).bytes_le for part in parts)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_csv(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


@dataclass
class Truth:
    """What a correct connector must report, keyed by principal external id."""

    kinds: dict[str, str] = field(default_factory=dict)
    app_ids: dict[str, str] = field(default_factory=dict)
    platform_owned: set[str] = field(default_factory=set)
    permissions: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    owner_people: dict[str, set[str]] = field(default_factory=dict)
    owner_principals: dict[str, set[str]] = field(default_factory=dict)
    creators: dict[str, set[str]] = field(default_factory=dict)
    credentials: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    last_sign_in: dict[str, datetime] = field(default_factory=dict)
    disabled: set[str] = field(default_factory=set)
    malformed: set[str] = field(default_factory=set)
    hostile: set[str] = field(default_factory=set)
    added: set[str] = field(default_factory=set)  # principals made by `Additions`
    sponsors: dict[str, set[str]] = field(default_factory=dict)  # agent identity -> users


@dataclass
class Tenant:
    tenant_id: str
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    managers: dict[str, str] = field(default_factory=dict)
    applications: dict[str, dict[str, Any]] = field(default_factory=dict)
    service_principals: dict[str, dict[str, Any]] = field(default_factory=dict)
    owners: dict[str, list[str]] = field(default_factory=dict)  # object id -> owner ids
    grants: dict[str, dict[str, Any]] = field(default_factory=dict)  # oauth2PermissionGrants
    assignments: dict[str, dict[str, Any]] = field(default_factory=dict)  # appRoleAssignments
    audits: list[dict[str, Any]] = field(default_factory=list)
    sign_ins: dict[str, dict[str, Any]] = field(default_factory=dict)  # appId -> activity row
    sponsors: dict[str, list[str]] = field(default_factory=dict)  # agent identity -> user ids
    federated: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # app -> FICs
    truth: Truth = field(default_factory=Truth)


class TenantGenerator:
    """Builds one tenant; every random choice comes from one seeded `random.Random`."""

    def __init__(
        self,
        seed: int,
        size: int,
        sp_mix: dict[str, float],
        oauth_share: float,
        malformed: int,
        now: datetime = SEED_NOW,
    ) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.size = size
        self.sp_mix = sp_mix
        self.oauth_share = oauth_share
        self.malformed = malformed
        self.tenant = Tenant(tenant_id=self.new_id())
        self.app_roles = {row["Value"]: row["Id"] for row in read_csv(APP_CSV)}
        self.scopes = {row["Value"]: row["Id"] for row in read_csv(DELEGATED_CSV)}
        self.graph_sp = ""
        self.custom_api = ""
        self.unknown_role = ""
        self.active_users: list[str] = []
        self.departed_users: list[str] = []
        self.hostile_left = list(HOSTILE_NAMES)

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def build(self) -> Tenant:
        self.add_users(max(30, self.size // 5))
        self.add_resources()
        rows = {row["AppId"]: row for row in read_csv(FIRST_PARTY_CSV)}
        rows.pop(GRAPH_APP_ID)
        first_party = list(rows.values())
        self.rng.shuffle(first_party)
        kinds = list(self.sp_mix)
        weights = [self.sp_mix[k] for k in kinds]
        for index in range(self.size - len(self.tenant.service_principals)):
            kind = self.rng.choices(kinds, weights)[0]
            if kind == "first_party" and first_party:
                self.add_first_party(first_party.pop())
            elif kind == "microsoft_tenant":
                self.add_first_party({"AppId": self.new_id(), "AppDisplayName": f"MS tool {index}"})
            elif kind == "managed_identity":
                self.add_managed_identity(index)
            elif kind == "third_party":
                self.add_third_party(index)
            else:
                self.add_tenant_app(index, with_sp=True)
        for index in range(max(3, int(self.size * self.oauth_share))):
            self.add_tenant_app(self.size + index, with_sp=False)
        self.add_malformed()
        return self.tenant

    # people -------------------------------------------------------------------------

    def add_users(self, count: int) -> None:
        managers: list[str] = []
        for index in range(count):
            user_id = self.new_id()
            is_manager = index < max(3, count // 10)
            enabled = is_manager or self.rng.random() > 0.12
            self.tenant.users[user_id] = {
                "id": user_id,
                "displayName": f"User {index:05d}",
                "mail": f"user{index:05d}@contoso.example" if index % 7 else None,
                "userPrincipalName": f"user{index:05d}@contoso.example",
                "accountEnabled": enabled,
            }
            if is_manager:
                managers.append(user_id)
            else:
                self.tenant.managers[user_id] = self.rng.choice(managers)
            (self.active_users if enabled else self.departed_users).append(user_id)

    # resources ---------------------------------------------------------------------

    def add_resources(self) -> None:
        roles = [
            {"id": role_id, "value": value, "displayName": value, "isEnabled": True}
            for value, role_id in self.app_roles.items()
            if value != CSV_ONLY_PERMISSION
        ]
        scopes = [
            {"id": scope_id, "value": value, "adminConsentDisplayName": value, "type": "Admin"}
            for value, scope_id in self.scopes.items()
        ]
        self.graph_sp = self.add_sp(
            app_id=GRAPH_APP_ID,
            name="Microsoft Graph",
            owner_org=MICROSOFT_TENANT,
            app_roles=roles,
            scopes=scopes,
        )
        self.mark(self.graph_sp, "service_principal", GRAPH_APP_ID, platform=True)
        self.custom_api = self.add_sp(
            app_id=self.new_id(),
            name="Contoso Orders API",
            owner_org=self.tenant.tenant_id,
            app_roles=[
                {"id": self.new_id(), "value": "Orders.Read.All", "displayName": "Read orders"},
                {"id": self.new_id(), "value": "Orders.Write", "displayName": "Write orders"},
            ],
        )
        self.mark(self.custom_api, "service_principal", self.sp(self.custom_api)["appId"])
        self.unknown_role = self.new_id()

    # principals ---------------------------------------------------------------------

    def sp(self, sp_id: str) -> dict[str, Any]:
        return self.tenant.service_principals[sp_id]

    def mark(self, principal: str, kind: str, app_id: str, platform: bool = False) -> None:
        truth = self.tenant.truth
        truth.kinds[principal] = kind
        truth.app_ids[principal] = app_id
        truth.permissions.setdefault(principal, set())
        truth.owner_people.setdefault(principal, set())
        truth.owner_principals.setdefault(principal, set())
        truth.credentials.setdefault(principal, set())
        if platform:
            truth.platform_owned.add(principal)

    def add_sp(
        self,
        *,
        app_id: str,
        name: str,
        owner_org: str | None,
        sp_type: str = "Application",
        app_roles: list[dict[str, Any]] | None = None,
        scopes: list[dict[str, Any]] | None = None,
    ) -> str:
        sp_id = self.new_id()
        self.tenant.service_principals[sp_id] = {
            "id": sp_id,
            "appId": app_id,
            "displayName": name,
            "appDisplayName": name,
            "accountEnabled": True,
            "servicePrincipalType": sp_type,
            "appOwnerOrganizationId": owner_org,
            "publisherName": "Microsoft Services" if owner_org in MICROSOFT_TENANTS else name,
            "verifiedPublisher": {"displayName": None, "verifiedPublisherId": None},
            "appRoles": app_roles or [],
            "oauth2PermissionScopes": scopes or [],
            "passwordCredentials": [],
            "keyCredentials": [],
            "servicePrincipalNames": [app_id],
            "tags": [],
        }
        return sp_id

    def add_first_party(self, row: dict[str, str]) -> None:
        owner = row.get("AppOwnerOrganizationId") or self.rng.choice(MICROSOFT_TENANTS)
        sp_id = self.add_sp(app_id=row["AppId"], name=row["AppDisplayName"], owner_org=owner)
        self.mark(sp_id, "service_principal", row["AppId"], platform=True)
        self.maybe_grants(sp_id, share=0.2)
        self.maybe_sign_in(sp_id)

    def add_managed_identity(self, index: int) -> None:
        app_id = self.new_id()
        sp_id = self.add_sp(
            app_id=app_id, name=f"mi-workload-{index}", owner_org=None, sp_type="ManagedIdentity"
        )
        self.mark(sp_id, "managed_identity", app_id)
        # Azure rotates it: inventoried, never flagged as an expiring secret.
        self.add_credential(
            sp_id, self.sp(sp_id), "certificate", days=180, recorded_as="managed_certificate"
        )
        self.maybe_grants(sp_id, share=0.5)
        self.maybe_sign_in(sp_id)

    def add_third_party(self, index: int) -> None:
        app_id = self.new_id()
        sp_id = self.add_sp(app_id=app_id, name=f"Vendor App {index}", owner_org=self.new_id())
        self.mark(sp_id, "service_principal", app_id)
        self.maybe_owners(sp_id, sp_id, share=0.2)
        self.maybe_grants(sp_id, share=0.6)
        self.maybe_sign_in(sp_id)
        self.maybe_disabled(sp_id)

    def add_tenant_app(self, index: int, *, with_sp: bool) -> None:
        app_id = self.new_id()
        name = self.hostile_left.pop() if self.hostile_left else f"Contoso App {index}"
        object_id = self.new_id()
        created = self.now - timedelta(days=self.rng.randint(1, 900))
        app = {
            "id": object_id,
            "appId": app_id,
            "displayName": name,
            "createdDateTime": iso(created),
            "publisherDomain": "contoso.example",
            "signInAudience": "AzureADMyOrg",
            "verifiedPublisher": {"displayName": None, "verifiedPublisherId": None},
            "passwordCredentials": [],
            "keyCredentials": [],
        }
        self.tenant.applications[object_id] = app
        principal = object_id
        if with_sp:
            principal = self.add_sp(app_id=app_id, name=name, owner_org=self.tenant.tenant_id)
            self.mark(principal, "service_principal", app_id)
            self.maybe_grants(principal, share=0.7)
            self.maybe_sign_in(principal)
            self.maybe_disabled(principal)
            self.maybe_owners(principal, principal, share=0.3)
            if self.rng.random() < 0.1:  # SAML-style signing certificate on the SP itself
                self.add_credential(principal, self.sp(principal), "certificate", days=700)
        else:
            self.mark(principal, "oauth_app", app_id)
        if name in HOSTILE_NAMES:
            self.tenant.truth.hostile.add(principal)
        for _ in range(self.rng.choice((0, 1, 1, 2, 3))):
            kind = self.rng.choice(("secret", "secret", "certificate"))
            days = self.rng.choice((-30, 90, 365, 730, 1825, 99999))
            self.add_credential(principal, app, kind, days=days)
        self.maybe_owners(principal, object_id, share=0.85)
        self.maybe_audit(principal, object_id, "Add application", created)
        if with_sp:
            self.maybe_audit(principal, principal, "Add service principal", created)

    def add_malformed(self) -> None:
        breakers = (
            lambda sp: sp.pop("id"),
            lambda sp: sp.update(accountEnabled="yes"),
            lambda sp: sp.update(displayName=12345),
            lambda sp: sp.update(passwordCredentials="oops"),
        )
        for index in range(self.malformed):
            app_id = self.new_id()
            sp_id = self.add_sp(app_id=app_id, name=f"Broken {index}", owner_org=self.new_id())
            breakers[index % len(breakers)](self.sp(sp_id))
            self.tenant.truth.malformed.add(sp_id)

    # attachments --------------------------------------------------------------------

    def add_credential(
        self,
        principal: str,
        holder: dict[str, Any],
        kind: str,
        *,
        days: int,
        recorded_as: str | None = None,
    ) -> None:
        key_id = self.new_id()
        start = self.now - timedelta(days=self.rng.randint(31, 400))
        end = min(start + timedelta(days=days), datetime(2299, 12, 31, tzinfo=UTC))
        if kind == "secret":
            holder["passwordCredentials"].append(
                {
                    "keyId": key_id,
                    "displayName": f"secret {len(holder['passwordCredentials'])}",
                    "hint": "abc",
                    "startDateTime": iso(start),
                    "endDateTime": iso(end),
                }
            )
        else:
            holder["keyCredentials"].append(
                {
                    "keyId": key_id,
                    "displayName": "CN=contoso",
                    "type": "AsymmetricX509Cert",
                    "usage": "Verify",
                    "startDateTime": iso(start),
                    "endDateTime": iso(end),
                }
            )
        self.tenant.truth.credentials[principal].add((recorded_as or kind, key_id))

    def maybe_owners(self, principal: str, object_id: str, *, share: float) -> None:
        if self.rng.random() >= share:
            return
        roll = self.rng.random()
        truth = self.tenant.truth
        if roll < 0.15 and len(self.tenant.service_principals) > 2:
            owner = self.custom_api
            truth.owner_principals[principal].add(owner)
        else:
            pool = self.departed_users if roll < 0.35 and self.departed_users else self.active_users
            owner = self.rng.choice(pool)
            truth.owner_people[principal].add(owner)
        self.tenant.owners.setdefault(object_id, []).append(owner)

    def maybe_grants(self, sp_id: str, *, share: float) -> None:
        if self.rng.random() >= share:
            return
        permissions = self.tenant.truth.permissions[sp_id]
        roll = self.rng.random()
        if roll < 0.45:
            scopes = self.rng.sample(DELEGATED_SCOPES, self.rng.randint(1, 3))
            principal = None if self.rng.random() < 0.6 else self.rng.choice(self.active_users)
            self.add_delegated(sp_id, scopes, principal)
            consent = "admin" if principal is None else "user"
            permissions.update((scope, consent) for scope in scopes)
        for value in self.rng.sample(APP_PERMISSIONS, self.rng.randint(1, 3)) if roll > 0.3 else ():
            self.add_assignment(sp_id, self.graph_sp, self.app_roles[value])
            permissions.add((value, "application"))
        if roll > 0.9:
            self.add_assignment(sp_id, self.graph_sp, self.app_roles[CSV_ONLY_PERMISSION])
            permissions.add((CSV_ONLY_PERMISSION, "application"))
        if 0.85 < roll <= 0.9:
            role = self.sp(self.custom_api)["appRoles"][0]
            self.add_assignment(sp_id, self.custom_api, role["id"])
            permissions.add((role["value"], "application"))
        if 0.8 < roll <= 0.85:
            self.add_assignment(sp_id, self.custom_api, self.unknown_role)
            permissions.add((f"unknown permission {self.unknown_role}", "application"))

    def add_delegated(self, sp_id: str, scopes: list[str], principal: str | None) -> None:
        self.new_id()  # drawn as before, so that a seed still makes the same tenant
        key = grant_id(sp_id, self.graph_sp, principal)
        self.tenant.grants[key] = {
            "id": key,
            "clientId": sp_id,
            "consentType": "Principal" if principal else "AllPrincipals",
            "principalId": principal,
            "resourceId": self.graph_sp,
            "scope": " ".join(scopes),
        }

    def add_assignment(self, sp_id: str, resource: str, role_id: str) -> None:
        assignment_id = self.new_id()
        self.tenant.assignments[assignment_id] = {
            "id": assignment_id,
            "appRoleId": role_id,
            "createdDateTime": iso(self.now - timedelta(days=self.rng.randint(1, 500))),
            "principalDisplayName": self.sp(sp_id)["displayName"],
            "principalId": sp_id,
            "principalType": "ServicePrincipal",
            "resourceDisplayName": self.sp(resource)["displayName"],
            "resourceId": resource,
        }

    def maybe_audit(self, principal: str, target: str, activity: str, when: datetime) -> None:
        if self.rng.random() >= 0.5 or when < self.now - timedelta(days=30):
            return
        user = self.rng.choice(self.active_users + self.departed_users)
        self.tenant.audits.append(
            {
                "id": self.new_id(),
                "activityDateTime": iso(when),
                "activityDisplayName": activity,
                "category": "ApplicationManagement",
                "correlationId": self.new_id(),
                "loggedByService": "Core Directory",
                "operationType": "Add",
                "result": "success",
                "resultReason": "",
                "additionalDetails": [],
                "initiatedBy": {
                    "user": {
                        "id": user,
                        "displayName": None,
                        "userPrincipalName": self.tenant.users[user]["userPrincipalName"],
                        "ipAddress": None,
                    },
                },
                "targetResources": [
                    {
                        "id": target,
                        "displayName": None,
                        "type": "Application",
                        "modifiedProperties": [],
                    }
                ],
            }
        )
        self.tenant.truth.creators.setdefault(principal, set()).add(user)

    def maybe_sign_in(self, sp_id: str) -> None:
        roll = self.rng.random()
        if roll < 0.3:
            return
        app_id = self.sp(sp_id)["appId"]
        ago = self.rng.randint(0, 29) if roll < 0.75 else self.rng.randint(100, 500)
        last = self.now - timedelta(days=ago, minutes=self.rng.randint(0, 600))
        empty = {
            "lastSignInDateTime": None,
            "lastSignInRequestId": None,
            "lastNonInteractiveSignInDateTime": None,
            "lastNonInteractiveSignInRequestId": None,
            "lastSuccessfulSignInDateTime": None,
            "lastSuccessfulSignInRequestId": None,
        }
        last_block = {
            **empty,
            "lastSignInDateTime": iso(last),
            "lastSignInRequestId": self.new_id(),
        }
        self.tenant.sign_ins[app_id] = {
            "id": app_id,
            "appId": app_id,
            "lastSignInActivity": last_block,
            "applicationAuthenticationClientSignInActivity": last_block,
            "applicationAuthenticationResourceSignInActivity": empty,
            "delegatedClientSignInActivity": empty,
            "delegatedResourceSignInActivity": empty,
        }
        self.tenant.truth.last_sign_in[sp_id] = last

    def maybe_disabled(self, sp_id: str) -> None:
        if self.rng.random() < 0.04:
            self.sp(sp_id)["accountEnabled"] = False
            self.tenant.truth.disabled.add(sp_id)

    # additions, from a random stream of their own -----------------------------------

    def add_additions(self, seed: int) -> None:
        """What later Graph releases and real tenants brought; base objects stay as they are."""
        self.rng = random.Random(f"additions-{seed}")
        before = set(self.tenant.truth.kinds)
        blueprint = self.new_id()  # the appId of the blueprint the agents are made from
        for index in range(max(2, self.size // 50)):
            self.add_agent_identity(index, blueprint)
        for owner_org in (PME_TENANT, GME_TENANT):
            name = f"Microsoft service of tenant {owner_org[:8]}"
            row = {"AppId": self.new_id(), "AppDisplayName": name}
            self.add_first_party({**row, "AppOwnerOrganizationId": owner_org})
        for index in range(max(2, self.size // 100)):
            self.add_federated_app(index)
        for index in range(max(2, self.size // 100)):
            self.add_saml_app(index)
        self.add_crowded_app()
        self.tenant.truth.added = set(self.tenant.truth.kinds) - before

    def add_agent_identity(self, index: int, blueprint: str) -> None:
        """An agent identity: a service principal of type ServiceIdentity with sponsors
        (learn.microsoft.com/graph/api/resources/agentidentity; msgraph-sdk-python
        models/agent_identity.py)."""
        app_id = self.new_id()
        sp_id = self.add_sp(
            app_id=app_id,
            name=f"Agent {index:04d}",
            owner_org=self.tenant.tenant_id,
            sp_type="ServiceIdentity",
        )
        created = self.now - timedelta(days=self.rng.randint(1, 120))
        self.sp(sp_id).update(
            {
                "@odata.type": "#microsoft.graph.agentIdentity",
                "agentIdentityBlueprintId": blueprint,
                "createdDateTime": iso(created),
            }
        )
        self.mark(sp_id, "agent_identity", app_id)
        if self.departed_users and self.rng.random() < 0.2:
            sponsors = [self.rng.choice(self.departed_users)]  # the sponsor has left
        else:
            sponsors = self.rng.sample(self.active_users, self.rng.randint(1, 2))
        self.tenant.sponsors[sp_id] = sponsors
        self.tenant.truth.sponsors[sp_id] = set(sponsors)
        self.maybe_owners(sp_id, sp_id, share=0.3)
        self.maybe_grants(sp_id, share=0.8)
        self.maybe_sign_in(sp_id)

    def new_app(self, name: str) -> tuple[str, str]:
        """An app registration of this tenant with its service principal: (sp id, app id)."""
        app_id, object_id = self.new_id(), self.new_id()
        self.tenant.applications[object_id] = {
            "id": object_id,
            "appId": app_id,
            "displayName": name,
            "createdDateTime": iso(self.now - timedelta(days=self.rng.randint(1, 900))),
            "publisherDomain": "contoso.example",
            "signInAudience": "AzureADMyOrg",
            "verifiedPublisher": {"displayName": None, "verifiedPublisherId": None},
            "passwordCredentials": [],
            "keyCredentials": [],
        }
        sp_id = self.add_sp(app_id=app_id, name=name, owner_org=self.tenant.tenant_id)
        self.mark(sp_id, "service_principal", app_id)
        return sp_id, object_id

    def add_federated_app(self, index: int) -> None:
        """A deployment pipeline that signs in with a GitHub Actions OIDC token: a
        federatedIdentityCredential, no secret at all."""
        sp_id, object_id = self.new_app(f"Deploy pipeline {index}")
        credentials = []
        for branch in ("main", "release")[: self.rng.randint(1, 2)]:
            credential_id = self.new_id()
            credentials.append(
                {
                    "id": credential_id,
                    "name": f"github-{branch}",
                    "issuer": GITHUB_ISSUER,
                    "subject": f"repo:contoso/pipeline-{index}:ref:refs/heads/{branch}",
                    "audiences": [EXCHANGE_AUDIENCE],
                    "description": None,
                }
            )
            self.tenant.truth.credentials[sp_id].add(("federated", credential_id))
        self.tenant.federated[object_id] = credentials
        self.maybe_owners(sp_id, object_id, share=1.0)
        self.maybe_grants(sp_id, share=0.7)
        self.maybe_sign_in(sp_id)

    def add_saml_app(self, index: int) -> None:
        """An enterprise app with SAML sign-on: its signing certificate shows as a Sign and
        a Verify keyCredential and a passwordCredential, sharing key id and thumbprint."""
        sp_id, object_id = self.new_app(f"SAML app {index}")
        sign_key, verify_key = self.new_id(), self.new_id()
        thumbprint = f"{self.rng.getrandbits(160):040X}"
        start = self.now - timedelta(days=self.rng.randint(10, 300))
        common = {
            "customKeyIdentifier": thumbprint,
            "displayName": "CN=Microsoft Azure Federated SSO Certificate",
            "startDateTime": iso(start),
            "endDateTime": iso(start + timedelta(days=3 * 365)),
        }
        sp = self.sp(sp_id)
        sp["preferredSingleSignOnMode"] = "saml"
        sp["keyCredentials"] = [
            {**common, "keyId": sign_key, "type": "AsymmetricX509Cert", "usage": "Sign"},
            {**common, "keyId": verify_key, "type": "AsymmetricX509Cert", "usage": "Verify"},
        ]
        sp["passwordCredentials"] = [{**common, "keyId": sign_key, "hint": None}]
        self.tenant.truth.credentials[sp_id].add(("certificate", sign_key))
        self.maybe_owners(sp_id, object_id, share=1.0)
        self.maybe_sign_in(sp_id)

    def add_crowded_app(self) -> None:
        """More owners than an `$expand` returns: 20
        (developer.microsoft.com/graph/known-issues)."""
        sp_id, _ = self.new_app("Shared tooling app")
        owners = self.rng.sample(self.active_users, min(25, len(self.active_users)))
        self.tenant.owners[sp_id] = list(owners)
        self.tenant.truth.owner_people[sp_id].update(owners)


APP_CSV = "graph-permissions-application.csv"
DELEGATED_CSV = "graph-permissions-delegated.csv"
FIRST_PARTY_CSV = "microsoft-first-party-apps.csv"
DEFAULT_MIX = {
    "first_party": 0.15,
    "microsoft_tenant": 0.02,
    "managed_identity": 0.08,
    "third_party": 0.2,
    "tenant_app": 0.55,
    "oauth_app_only": 0.05,
}


def generate(
    seed: int = 0,
    size: int = 2000,
    malformed: int = 0,
    now: datetime = SEED_NOW,
    *,
    additions: bool = True,
    **mix: float,
) -> Tenant:
    """A tenant of about `size` service principals aged against `now`; `mix` overrides
    DEFAULT_MIX weights. `additions=False` leaves out what `add_additions` makes."""
    weights = {**DEFAULT_MIX, **mix}
    oauth_share = weights.pop("oauth_app_only")
    generator = TenantGenerator(seed, size, weights, oauth_share, malformed, now)
    tenant = generator.build()
    if additions:
        generator.add_additions(seed)
    return tenant
