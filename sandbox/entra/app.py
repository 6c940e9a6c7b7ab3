"""Microsoft Graph (v1.0 + one beta report) and the Entra token endpoint, on loopback.

Follows the Graph definitions in ../shared/specs/msgraph and the documentation named at
each behaviour: absolute `@odata.nextLink` with a `$skiptoken`, delta rounds ending in
`@odata.deltaLink`, `@removed` stubs, Graph error bodies, resource-unit throttling with
429 + `Retry-After` (quota.py), PATCH answered 204, JSON `$batch` of at most 20.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from sandbox.entra import auth
from sandbox.entra.odata import (
    EXPANDED_ITEMS,
    ODataFault,
    decode_token,
    encode_token,
    error,
    expansions,
    fields_of,
    filtered,
    not_found,
    page_size,
    project,
    selection,
)
from sandbox.entra.quota import Quota, Verdict
from sandbox.entra.seed import Tenant, grant_id
from sandbox.server import EmulatorApp, Request, Response

SP_FIELDS = frozenset(
    [
        "id",
        "appId",
        "displayName",
        "appDisplayName",
        "accountEnabled",
        "servicePrincipalType",
        "appOwnerOrganizationId",
        "publisherName",
        "verifiedPublisher",
        "appRoles",
        "oauth2PermissionScopes",
        "passwordCredentials",
        "keyCredentials",
        "servicePrincipalNames",
        "tags",
        "description",
        "notes",
        "preferredSingleSignOnMode",
        "createdDateTime",  # agentIdentity (msgraph-sdk-python models/agent_identity.py)
        "agentIdentityBlueprintId",
    ]
)
APP_FIELDS = frozenset(
    [
        "id",
        "appId",
        "displayName",
        "createdDateTime",
        "publisherDomain",
        "signInAudience",
        "verifiedPublisher",
        "passwordCredentials",
        "keyCredentials",
        "description",
        "notes",
    ]
)
USER_FIELDS = frozenset(["id", "displayName", "mail", "userPrincipalName", "accountEnabled"])
USER_DELTA_FIELDS = USER_FIELDS | {"manager"}
OWNER_FIELDS = USER_FIELDS | SP_FIELDS
FIC_FIELDS = frozenset(["id", "name", "issuer", "subject", "audiences", "description"])
BATCH_LIMIT = 20
DELTA = r"(?:microsoft\.graph\.)?delta(?:\(\))?"
AGENTS = "microsoft.graph.agentIdentity"
COLLECTIONS = {"servicePrincipals": "servicePrincipal", "applications": "application"}
ANY = frozenset({"eq"})
SP_FILTERS = {
    "appId": frozenset({"eq", "in", "startswith"}),
    "displayName": frozenset({"eq", "in", "startswith"}),
    "id": frozenset({"eq", "in"}),
}
APP_FILTERS = {
    "appId": ANY,
    "displayName": frozenset({"eq", "in", "startswith"}),
    "id": frozenset({"eq", "in"}),
    "federatedIdentityCredentials": frozenset({"count_eq", "count_ne"}),
}
GRANT_FILTERS = dict.fromkeys(("clientId", "consentType", "principalId", "resourceId"), ANY)
AUDIT_FILTERS = {
    "activityDisplayName": frozenset({"eq", "startswith"}),
    "activityDateTime": frozenset({"eq", "ge", "le"}),
    "loggedByService": ANY,
    "correlationId": ANY,
}
# Directory audit activity names, from the Microsoft Entra audit log reference
# (learn.microsoft.com/entra/identity/monitoring-health/reference-audit-activities).
ADD_OWNER = {
    "servicePrincipals": "Add owner to service principal",
    "applications": "Add owner to application",
}
REMOVE_OWNER = {
    "servicePrincipals": "Remove owner from service principal",
    "applications": "Remove owner from application",
}
CONSENT = "Consent to application"
ADD_GRANT, REMOVE_GRANT = "Add delegated permission grant", "Remove delegated permission grant"
ADD_ASSIGNMENT = "Add app role assignment to service principal"
REMOVE_ASSIGNMENT = "Remove app role assignment from service principal"
UPDATE_CREDENTIALS = "Update application \u2013 Certificates and secrets management "


@dataclass
class Client:
    secret: str | None
    certificate_pem: bytes | None
    can_write: bool


@dataclass
class Switches:
    """Graph-specific faults, beside the shared `app.faults`."""

    # "ok" | "forbidden" (no Entra ID P1: 403) | "missing" (no rows) | "national" (the
    # beta report answers 400 in national clouds) | "absent" (404)
    sign_in_report: str = "ok"
    expire_page_tokens_next: int = 0  # the next N skip tokens answer Directory_ExpiredPageToken
    throttle_batch_items: int = 0  # the next N $batch sub-requests answer 429 on their own
    tokens_issued: int = 0
    delta_tokens_before: int = 0  # delta tokens older than this version are expired
    expired_delta_status: int = 400  # 400 syncStateNotFound; 410 resyncRequired also happens
    # Re-reads of a just-changed object that still answer 404: directory replicas catch up
    # with a delay (learn.microsoft.com/graph/delta-query-overview, known limitations).
    replication_lag_reads: int = 0
    commit_then_fail_next: int = 0  # writes applied, then answered 503 (the client never knows)
    token_failures_next: int = 0  # the token endpoint answers 503


@dataclass
class DeltaState:
    """Change tracking: each change is a version; a token remembers the version it saw."""

    version: int = 1
    created: dict[tuple[str, str], int] = field(default_factory=dict)  # default: version 1
    changed: dict[tuple[str, str], list[tuple[int, frozenset[str]]]] = field(default_factory=dict)
    tombstones: list[tuple[str, str, int]] = field(default_factory=list)


class EntraEmulator(EmulatorApp):
    def __init__(
        self,
        tenant: Tenant,
        delta_page_size: int = 200,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__()
        self.tenant = tenant
        self.delta_page_size = delta_page_size
        self.now = now  # stamps audit events of changes made through the emulator
        self.switches = Switches()
        self.delta = DeltaState()
        self.quota = Quota(tenant.tenant_id, len(tenant.users), clock)
        self.lagging: dict[str, int] = {}  # object id -> re-reads that still 404
        self.revision = 0  # moves on every change: cached listings are stale then
        self._listings: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self.clients: dict[str, Client] = {}
        self.tokens: dict[str, str] = {}
        self.read_client_id = self.add_client(write=False)[0]
        self.write_client_id = self.add_client(write=True)[0]
        self._register_routes()

    # clients and tokens -------------------------------------------------------------

    def add_client(self, *, write: bool) -> tuple[str, str]:
        client_id, secret = str(uuid.uuid4()), secrets.token_urlsafe(24)
        self.clients[client_id] = Client(secret=secret, certificate_pem=None, can_write=write)
        return client_id, secret

    def add_certificate_client(self, *, write: bool = False) -> tuple[str, bytes]:
        """A client that signs in with a certificate; returns its id and key+cert PEM."""
        key_and_cert, cert = auth.make_certificate()
        client_id = str(uuid.uuid4())
        self.clients[client_id] = Client(secret=None, certificate_pem=cert, can_write=write)
        return client_id, key_and_cert

    def secret_of(self, client_id: str) -> str:
        secret = self.clients[client_id].secret
        assert secret is not None
        return secret

    def tenant_table(self, name: str, url: str, ca_bundle: Path, secrets_dir: Path) -> dict:
        """The `[[tenants]]` table pointing Recert at this emulator (secrets in files)."""
        secrets_dir.mkdir(parents=True, exist_ok=True)
        read_file = secrets_dir / f"{name}-read-secret"
        write_file = secrets_dir / f"{name}-write-secret"
        read_file.write_text(self.secret_of(self.read_client_id))
        write_file.write_text(self.secret_of(self.write_client_id))
        return {
            "name": name,
            "kind": "entra",
            "tenant_id": self.tenant.tenant_id,
            "client_id": self.read_client_id,
            "client_secret_file": str(read_file),
            "graph_url": url,
            "authority": url,
            "ca_bundle": str(ca_bundle),
            "enforce": {
                "client_id": self.write_client_id,
                "client_secret_file": str(write_file),
            },
        }

    # changes made around Recert (each as Graph records it: delta, audit log) ----------

    def touch(self, collection: str, object_id: str, fields: frozenset[str] | None) -> None:
        """A directory change; `fields=None` is a new object. Re-reads may lag behind it."""
        self.revision += 1
        self.delta.version += 1
        key = (collection, object_id)
        if fields is None:
            self.delta.created[key] = self.delta.version
        else:
            self.delta.changed.setdefault(key, []).append((self.delta.version, fields))
        if self.switches.replication_lag_reads:
            self.lagging[object_id] = self.switches.replication_lag_reads

    def update_service_principal(self, sp_id: str, **fields: Any) -> None:
        with self.lock:
            self.tenant.service_principals[sp_id].update(fields)
            self.touch("servicePrincipals", sp_id, frozenset(fields))

    def update_application(self, object_id: str, **fields: Any) -> None:
        with self.lock:
            self.tenant.applications[object_id].update(fields)
            self.touch("applications", object_id, frozenset(fields))

    def update_user(self, user_id: str, **fields: Any) -> None:
        with self.lock:
            self.tenant.users[user_id].update(fields)
            self.touch("users", user_id, frozenset(fields))

    def delete_service_principal(self, sp_id: str) -> None:
        with self.lock:
            del self.tenant.service_principals[sp_id]
            self.revision += 1
            self.delta.version += 1
            self.delta.tombstones.append(("servicePrincipals", sp_id, self.delta.version))

    def add_service_principal(self, body: dict[str, Any]) -> None:
        with self.lock:
            self.tenant.service_principals[body["id"]] = body
            self.touch("servicePrincipals", body["id"], None)

    def add_owner(self, object_id: str, owner_id: str) -> None:
        """Owners are a relationship: delta does not see it, the audit log does."""
        with self.lock:
            collection = self.collection_of(object_id)
            self.tenant.owners.setdefault(object_id, []).append(owner_id)
            self.audit(ADD_OWNER[collection], [(object_id, collection), (owner_id, "users")])

    def remove_owner(self, object_id: str, owner_id: str) -> None:
        with self.lock:
            collection = self.collection_of(object_id)
            self.tenant.owners[object_id].remove(owner_id)
            self.audit(REMOVE_OWNER[collection], [(object_id, collection), (owner_id, "users")])

    def grant_consent(self, client_id: str, resource_id: str, scope: str, user: str | None) -> str:
        """An admin (user=None) or a user consents: one oauth2PermissionGrant, audited."""
        with self.lock:
            key = grant_id(client_id, resource_id, user)
            self.tenant.grants[key] = {
                "id": key,
                "clientId": client_id,
                "consentType": "Principal" if user else "AllPrincipals",
                "principalId": user,
                "resourceId": resource_id,
                "scope": scope,
            }
            targets = [(client_id, "servicePrincipals"), (resource_id, "servicePrincipals")]
            self.audit(CONSENT, targets[:1])
            self.audit(ADD_GRANT, targets)
            return key

    def assign_app_role(self, client_id: str, resource_id: str, role_id: str) -> str:
        with self.lock:
            return self.create_assignment(client_id, resource_id, role_id)["id"]

    def unassign_app_role(self, assignment_id: str) -> None:
        with self.lock:
            self.remove_assignment(self.tenant.assignments[assignment_id])

    def add_federated_credential(self, object_id: str, credential: dict[str, Any]) -> None:
        with self.lock:
            self.tenant.federated.setdefault(object_id, []).append(credential)
            self.audit(UPDATE_CREDENTIALS, [(object_id, "applications")])

    def expire_delta_tokens(self) -> None:
        self.switches.delta_tokens_before = self.delta.version + 1

    def collection_of(self, object_id: str) -> str:
        return "applications" if object_id in self.tenant.applications else "servicePrincipals"

    def audit(self, activity: str, targets: list[tuple[str, str]]) -> None:
        """A directoryAudit as Core Directory logs it (spec: microsoft.graph.directoryAudit)."""
        self.revision += 1
        kinds = {
            "servicePrincipals": "ServicePrincipal",
            "applications": "Application",
            "users": "User",
        }
        self.tenant.audits.append(
            {
                "id": str(uuid.uuid4()),
                "activityDateTime": self.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "activityDisplayName": activity,
                "category": "ApplicationManagement",
                "correlationId": str(uuid.uuid4()),
                "loggedByService": "Core Directory",
                "operationType": "Assign" if "assignment" in activity else "Update",
                "result": "success",
                "resultReason": "",
                "additionalDetails": [],
                "initiatedBy": {"app": None, "user": None},
                "targetResources": [
                    {"id": i, "displayName": None, "type": kinds[k], "modifiedProperties": []}
                    for i, k in targets
                ],
            }
        )

    # plumbing ----------------------------------------------------------------------

    def _register_routes(self) -> None:
        graph = r"/v1\.0"
        sp_item = graph + "/servicePrincipals/{id}"
        table: list[tuple[str, str, Callable[[Request], Response]]] = [
            ("POST", "/{tenant}/oauth2/v2.0/token", self.token),
            ("GET", "/{tenant}/v2.0/.well-known/openid-configuration", self.openid_configuration),
            ("POST", graph + r"/\$batch", self.batch),
            ("GET", graph + "/servicePrincipals/" + DELTA, self.delta_of("servicePrincipals")),
            ("GET", graph + "/applications/" + DELTA, self.delta_of("applications")),
            ("GET", graph + "/users/" + DELTA, self.delta_of("users")),
            ("GET", graph + "/servicePrincipals/" + AGENTS, self.list_agent_identities),
            ("GET", graph + "/servicePrincipals", self.list_service_principals),
            ("GET", graph + "/applications", self.list_applications),
            ("GET", sp_item, self.get_service_principal),
            ("PATCH", sp_item, self.patch_service_principal),
            ("GET", graph + "/applications/{id}", self.get_application),
            ("GET", sp_item + "/owners", self.owners_of("servicePrincipals")),
            ("GET", graph + "/applications/{id}/owners", self.owners_of("applications")),
            ("GET", sp_item + "/" + AGENTS + "/sponsors", self.list_sponsors),
            (
                "GET",
                graph + "/applications/{id}/federatedIdentityCredentials",
                self.list_federated,
            ),
            ("GET", sp_item + "/appRoleAssignments", self.list_assignments),
            ("GET", sp_item + "/appRoleAssignedTo", self.list_assigned_to),
            ("POST", sp_item + "/appRoleAssignments", self.add_assignment),
            ("GET", sp_item + "/appRoleAssignments/{aid}", self.get_assignment),
            ("DELETE", sp_item + "/appRoleAssignments/{aid}", self.delete_assignment),
            ("GET", graph + "/oauth2PermissionGrants", self.list_grants),
            ("POST", graph + "/oauth2PermissionGrants", self.add_grant),
            ("GET", graph + "/oauth2PermissionGrants/{id}", self.get_grant),
            ("PATCH", graph + "/oauth2PermissionGrants/{id}", self.patch_grant),
            ("DELETE", graph + "/oauth2PermissionGrants/{id}", self.delete_grant),
            ("GET", graph + "/users", self.list_users),
            ("GET", graph + "/users/{id}", self.get_user),
            ("GET", graph + "/auditLogs/directoryAudits", self.list_audits),
            ("GET", r"/beta/reports/servicePrincipalSignInActivities", self.list_sign_ins),
        ]
        for method, pattern, handler in table:
            self.route(method, pattern)(handler)

    def dispatch(self, request: Request) -> Response:
        try:
            verdict = Verdict()
            if request.path.startswith(("/v1.0/", "/beta/")):
                client = self.authorize(request)
                if request.path != "/v1.0/$batch":
                    verdict = self.admit(client, request)
                    if verdict.retry_after:
                        return self.refused(verdict)
            response = self.write_then_fail(request) or super().dispatch(request)
        except ODataFault as fault:
            return error(fault.status, fault.code, fault.message)
        if verdict.units:
            response.headers["x-ms-resource-unit"] = str(verdict.units)
        if verdict.limit_percentage is not None:
            response.headers["x-ms-throttle-limit-percentage"] = f"{verdict.limit_percentage:.2f}"
        return response

    def authorize(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        client_id = self.tokens.get(header.removeprefix("Bearer ").strip())
        if client_id is None:
            raise ODataFault(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        writes = request.method != "GET" and request.path != "/v1.0/$batch"
        if writes and not self.clients[client_id].can_write:
            raise ODataFault(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
        return client_id

    def admit(self, client: str, request: Request) -> Verdict:
        relative = request.path.split("/", 2)[2]
        return self.quota.admit(
            client, request.method, relative, request.query, self.selects_keys(request, relative)
        )

    def selects_keys(self, request: Request, relative: str) -> bool:
        """Reads of applications that `$select` keyCredentials (also baked into a delta
        token) fall under their own 150-per-minute limit (application-list doc)."""
        if request.method != "GET" or not relative.startswith("applications"):
            return False
        if relative.count("/") > 1:
            return False  # a relationship of an application, not the application itself
        selected = request.arg("$select")
        token = request.arg("$skiptoken") or request.arg("$deltatoken")
        if token and token != "latest" and "delta" in relative:
            try:
                selected = ",".join(decode_token(token).get("s") or [])
            except ODataFault:
                return False
        return "keyCredentials" in (selected or "").split(",")

    def refused(self, verdict: Verdict) -> Response:
        return error(
            429,
            "TooManyRequests",
            "Too many requests.",
            {
                "Retry-After": str(int(verdict.retry_after)),
                "x-ms-throttle-scope": verdict.scope,
                "x-ms-throttle-information": verdict.information,
            },
        )

    def write_then_fail(self, request: Request) -> Response | None:
        """A write that commits and then loses its answer (timeout, 5xx on the way back)."""
        if request.method == "GET" or self.switches.commit_then_fail_next <= 0:
            return None
        if request.path == "/v1.0/$batch" or not request.path.startswith("/v1.0/"):
            return None
        self.switches.commit_then_fail_next -= 1
        super().dispatch(request)
        return self.server_error(request)

    def throttled(self, request: Request) -> Response:
        return error(429, "TooManyRequests", "Too many requests.", {"Retry-After": "7"})

    def server_error(self, request: Request) -> Response:
        return error(503, "serviceNotAvailable", "Service is temporarily unavailable.")

    def not_found(self, request: Request) -> Response:
        return error(400, "BadRequest", f"Resource not found for the segment '{request.path}'.")

    def not_allowed(self, request: Request) -> Response:
        return error(405, "Request_BadRequest", "The requested method is not allowed.")

    def decorate(self, request: Request, response: Response) -> Response:
        request_id = str(uuid.uuid4())
        response.headers.setdefault("request-id", request_id)
        response.headers.setdefault("client-request-id", request_id)
        return response

    # token endpoint ----------------------------------------------------------------

    def openid_configuration(self, request: Request) -> Response:
        base = f"{request.base_url}/{request.params['tenant']}"
        return Response(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "issuer": f"{base}/v2.0",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
            },
        )

    def token(self, request: Request) -> Response:
        if self.switches.token_failures_next > 0:
            self.switches.token_failures_next -= 1
            return auth.token_error(503, "temporarily_unavailable", 50001, "Service unavailable.")
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        client = self.clients.get(form.get("client_id", ""))
        if request.params["tenant"] != self.tenant.tenant_id:
            return auth.token_error(400, "invalid_request", 90002, "Tenant not found.")
        if form.get("grant_type") != "client_credentials" or client is None:
            return auth.token_error(
                400, "unauthorized_client", 700016, "Application not found in the directory."
            )
        if not auth.client_authenticated(client.secret, client.certificate_pem, form):
            return auth.token_error(401, "invalid_client", 7000215, "Invalid client secret.")
        access_token = secrets.token_urlsafe(32)
        self.tokens[access_token] = form["client_id"]
        self.switches.tokens_issued += 1
        return Response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": access_token,
            },
        )

    # paging ------------------------------------------------------------------------

    def page(
        self,
        request: Request,
        items: list[dict[str, Any]],
        shape: Callable[[dict[str, Any]], dict[str, Any]],
        cap: int | None = None,
    ) -> Response:
        top = min(page_size(request), cap or page_size(request))
        offset = self.skip_offset(request)
        chunk = items[offset : offset + top]
        body: dict[str, Any] = {
            "@odata.context": f"{request.base_url}/v1.0/$metadata#{request.path.split('/')[2]}",
            "value": [shape(item) for item in chunk],
        }
        if request.arg("$count") == "true":
            body["@odata.count"] = len(items)
        if offset + top < len(items):
            query = {k: v[0] for k, v in request.query.items() if k != "$skiptoken"}
            query["$skiptoken"] = encode_token({"o": offset + top})
            body["@odata.nextLink"] = f"{request.base_url}{request.path}?{urlencode(query)}"
        return Response(200, body)

    def skip_offset(self, request: Request) -> int:
        token = request.arg("$skiptoken")
        if token is None:
            return 0
        self.reject_expired_token()
        offset = decode_token(token).get("o")
        if not isinstance(offset, int) or offset < 0:
            raise ODataFault(400, "Request_BadRequest", "Invalid skip token.")
        return offset

    def reject_expired_token(self) -> None:
        expired = self.faults.expire_page_tokens
        if self.switches.expire_page_tokens_next > 0:
            self.switches.expire_page_tokens_next -= 1
            expired = True
        if expired:
            raise ODataFault(
                400,
                "Directory_ExpiredPageToken",
                "The specified page token value has expired and can no longer be included "
                "in your request.",
            )

    # directory objects ---------------------------------------------------------------

    def objects(self, collection: str) -> dict[str, dict[str, Any]]:
        if collection == "servicePrincipals":
            return self.tenant.service_principals
        if collection == "users":
            return self.tenant.users
        return self.tenant.applications

    def fields_of(self, collection: str) -> frozenset[str]:
        return SP_FIELDS if collection == "servicePrincipals" else APP_FIELDS

    def shaper(
        self, request: Request, collection: str
    ) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """`$select` and `$expand` (owners; sponsors of agents; federated credentials)."""
        fields = selection(request, COLLECTIONS[collection], self.fields_of(collection))
        allowed = {"owners"} | (
            {"federatedIdentityCredentials"} if collection == "applications" else set()
        )
        wanted = expansions(request, frozenset(allowed | {"sponsors"}))

        def shape(item: dict[str, Any]) -> dict[str, Any]:
            shown = project(item, fields)
            for expansion in wanted:
                name = expansion.relationship
                if name == "sponsors" and item.get("@odata.type") != "#" + AGENTS:
                    raise ODataFault(
                        400,
                        "Request_BadRequest",
                        "Could not find a navigation property named 'sponsors'.",
                    )
                related = self.related(item.get("id", ""), name)[:EXPANDED_ITEMS]
                chosen = fields_of(expansion.select, "directoryObject", OWNER_FIELDS | FIC_FIELDS)
                shown[name] = [self.typed(other, chosen) for other in related]
            return shown

        return shape

    def related(self, object_id: str, relationship: str) -> list[dict[str, Any]]:
        if relationship == "federatedIdentityCredentials":
            return list(self.tenant.federated.get(object_id, []))
        source = self.tenant.sponsors if relationship == "sponsors" else self.tenant.owners
        found = [self.directory_object(i) for i in source.get(object_id, [])]
        return [o for o in found if o]

    def list_service_principals(self, request: Request) -> Response:
        return self.list_directory(request, "servicePrincipals", SP_FILTERS)

    def list_applications(self, request: Request) -> Response:
        return self.list_directory(request, "applications", APP_FILTERS)

    def list_agent_identities(self, request: Request) -> Response:
        """Only agent identities (learn.microsoft.com/graph/api/agentidentity-list): at most
        100 per page; `$expand=sponsors` allowed."""
        agents = [
            sp
            for sp in self.tenant.service_principals.values()
            if sp.get("@odata.type") == "#" + AGENTS
        ]
        items = filtered(request, agents, SP_FILTERS)
        return self.page(request, items, self.shaper(request, "servicePrincipals"), cap=100)

    def cached(
        self, key: tuple[Any, ...], compute: Callable[[], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """A listing's items, kept while nothing changes: paging through 50,000 objects
        does not filter them all again for every page."""
        key = (self.revision, len(self.tenant.service_principals), *key)
        if key not in self._listings:
            self._listings = {k: v for k, v in self._listings.items() if k[:2] == key[:2]}
            self._listings[key] = compute()
        return self._listings[key]

    def list_directory(
        self, request: Request, collection: str, allowed: dict[str, frozenset[str]]
    ) -> Response:
        shape = self.shaper(request, collection)
        consistency = request.headers.get("consistencylevel")
        key = (collection, request.arg("$filter"), request.arg("$count"), consistency)
        items = self.cached(
            key,
            lambda: filtered(
                request,
                self.objects(collection).values(),
                allowed,
                lambda item, prop: len(self.related(item.get("id", ""), prop)),
            ),
        )
        return self.page(request, items, shape)

    def get_object(self, request: Request, collection: str) -> Response:
        item = self.find(collection, request.params["id"], reread=True)
        return Response(200, self.shaper(request, collection)(item))

    def get_service_principal(self, request: Request) -> Response:
        return self.get_object(request, "servicePrincipals")

    def get_application(self, request: Request) -> Response:
        return self.get_object(request, "applications")

    def find(self, collection: str, object_id: str, *, reread: bool = False) -> dict[str, Any]:
        """One object; a just-changed one may still 404 on a re-read (replication lag)."""
        item = self.objects(collection).get(object_id)
        if reread and self.lagging.get(object_id, 0) > 0:
            self.lagging[object_id] -= 1
            item = None
        if item is None:
            raise not_found(object_id)
        return item

    def patch_service_principal(self, request: Request) -> Response:
        item = self.find("servicePrincipals", request.params["id"])
        if item.get("servicePrincipalType") == "ManagedIdentity":
            # "Service principals representing managed identities ... can't be updated or
            # modified directly" (servicePrincipalType in the spec); Graph answers 403.
            raise ODataFault(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
        body = request.json()
        if not isinstance(body, dict):
            raise ODataFault(400, "Request_BadRequest", "Invalid request body.")
        changes = {k: v for k, v in body.items() if not k.startswith("@odata.")}
        unknown = set(changes) - SP_FIELDS
        if unknown:
            raise ODataFault(
                400, "Request_BadRequest", f"Property '{sorted(unknown)[0]}' does not exist."
            )
        item.update(changes)
        self.touch("servicePrincipals", item["id"], frozenset(changes))
        return Response(204)

    def owners_of(self, collection: str) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            self.find(collection, request.params["id"])
            fields = selection(request, "directoryObject", OWNER_FIELDS)
            owners = self.related(request.params["id"], "owners")
            return self.page(request, owners, lambda item: self.typed(item, fields))

        return handler

    def list_sponsors(self, request: Request) -> Response:
        """learn.microsoft.com/graph/api/agentidentity-list-sponsors."""
        agent = self.find("servicePrincipals", request.params["id"])
        if agent.get("@odata.type") != "#" + AGENTS:
            raise not_found(request.params["id"])
        fields = selection(request, "directoryObject", OWNER_FIELDS)
        sponsors = self.related(agent["id"], "sponsors")
        return self.page(request, sponsors, lambda item: self.typed(item, fields))

    def list_federated(self, request: Request) -> Response:
        self.find("applications", request.params["id"])
        fields = selection(request, "federatedIdentityCredential", FIC_FIELDS)
        found = self.related(request.params["id"], "federatedIdentityCredentials")
        return self.page(request, found, lambda item: project(item, fields))

    def directory_object(self, object_id: str) -> dict[str, Any] | None:
        if object_id in self.tenant.users:
            return {"@odata.type": "#microsoft.graph.user", **self.tenant.users[object_id]}
        if object_id in self.tenant.service_principals:
            sp = self.tenant.service_principals[object_id]
            return {"@odata.type": "#microsoft.graph.servicePrincipal", **sp}
        return None

    @staticmethod
    def typed(item: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
        known = [f for f in fields if f in item] if fields is not None else None
        shown = project(item, known)
        if "@odata.type" in item:
            shown["@odata.type"] = item["@odata.type"]
        return shown

    # delta -------------------------------------------------------------------------

    def delta_of(self, collection: str) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            return self.delta_page(request, collection)

        return handler

    def delta_fields(self, request: Request, collection: str) -> list[str] | None:
        if collection == "users":
            return selection(request, "user", USER_DELTA_FIELDS)
        return selection(request, COLLECTIONS[collection], self.fields_of(collection))

    def delta_page(self, request: Request, collection: str) -> Response:
        """learn.microsoft.com/graph/delta-query-overview: `$deltatoken=latest` starts
        tracking from now with no objects; an expired token is 400 syncStateNotFound (410
        resyncRequired also happens, ../shared/notes/provider-facts.md); an updated object
        carries at least the properties that changed, not all of them."""
        skip, delta = request.arg("$skiptoken"), request.arg("$deltatoken")
        base = f"{request.base_url}/v1.0/{collection}/delta()"
        if delta == "latest":
            token = encode_token(
                {"v": self.delta.version, "s": self.delta_fields(request, collection)}
            )
            return Response(
                200,
                {
                    "@odata.context": f"{request.base_url}/v1.0/$metadata#{collection}",
                    "value": [],
                    "@odata.deltaLink": f"{base}?$deltatoken={quote(token)}",
                },
            )
        if skip is not None:
            self.reject_expired_token()
            state = decode_token(skip)
        elif delta is not None:
            state = {**decode_token(delta), "o": 0, "u": self.delta.version}
            if state.get("v", 0) < self.switches.delta_tokens_before:
                raise self.expired_delta_token()
        else:
            fields = self.delta_fields(request, collection)
            state = {"v": 0, "u": self.delta.version, "o": 0, "s": fields}
        changes = self.changes_between(collection, state["v"], state["u"], state["s"])
        offset = state["o"]
        chunk = changes[offset : offset + self.delta_page_size]
        body: dict[str, Any] = {
            "@odata.context": f"{request.base_url}/v1.0/$metadata#{collection}",
            "value": chunk,
        }
        if offset + self.delta_page_size < len(changes):
            token = encode_token({**state, "o": offset + self.delta_page_size})
            body["@odata.nextLink"] = f"{base}?$skiptoken={quote(token)}"
        else:
            token = encode_token({"v": state["u"], "s": state["s"]})
            body["@odata.deltaLink"] = f"{base}?$deltatoken={quote(token)}"
        return Response(200, body)

    def expired_delta_token(self) -> ODataFault:
        if self.switches.expired_delta_status == 410:
            return ODataFault(410, "resyncRequired", "The delta token has expired; start again.")
        return ODataFault(
            400,
            "syncStateNotFound",
            "The sync state generation is not found. Start a new round of change tracking.",
        )

    def changes_between(
        self, collection: str, since: int, until: int, fields: list[str] | None
    ) -> list[dict[str, Any]]:
        found = []
        for key, item in self.objects(collection).items():
            created = self.delta.created.get((collection, key), 1)
            if since < created <= until:
                found.append(self.delta_item(collection, item, fields))
                continue
            changed: set[str] = set()
            for version, names in self.delta.changed.get((collection, key), []):
                if since < version <= until:
                    changed |= names
            tracked = changed & set(fields) if fields is not None else changed
            if tracked:
                found.append(self.delta_item(collection, item, sorted(tracked)))
        removed = [
            {"id": object_id, "@removed": {"reason": "deleted"}}
            for kind, object_id, version in self.delta.tombstones
            if kind == collection and since < version <= until
        ]
        return found + removed

    def delta_item(
        self, collection: str, item: dict[str, Any], fields: list[str] | None
    ) -> dict[str, Any]:
        if collection != "users":
            return project(item, fields)
        shown = project(item, [f for f in fields if f != "manager"] if fields else None)
        manager = self.tenant.managers.get(item["id"])
        if manager and (fields is None or "manager" in fields):
            # user-delta: the manager comes as a `manager@delta` reference list
            shown["manager@delta"] = [{"@odata.type": "#microsoft.graph.user", "id": manager}]
        return shown

    # app role assignments ----------------------------------------------------------

    def list_assignments(self, request: Request) -> Response:
        self.find("servicePrincipals", request.params["id"])
        items = [
            a for a in self.tenant.assignments.values() if a["principalId"] == request.params["id"]
        ]
        return self.page(request, items, dict)

    def list_assigned_to(self, request: Request) -> Response:
        """Who holds this resource's app roles (serviceprincipal-list-approleassignedto)."""
        resource = self.find("servicePrincipals", request.params["id"])["id"]
        items = self.cached(
            ("assignedTo", resource),
            lambda: [a for a in self.tenant.assignments.values() if a["resourceId"] == resource],
        )
        return self.page(request, items, dict)

    def get_assignment(self, request: Request) -> Response:
        return Response(200, self.assignment(request))

    def assignment(self, request: Request) -> dict[str, Any]:
        item = self.tenant.assignments.get(request.params["aid"])
        if item is None or item["principalId"] != request.params["id"]:
            raise not_found(request.params["aid"])
        return item

    def delete_assignment(self, request: Request) -> Response:
        self.remove_assignment(self.assignment(request))
        return Response(204)

    def remove_assignment(self, item: dict[str, Any]) -> None:
        del self.tenant.assignments[item["id"]]
        targets = [
            (item["resourceId"], "servicePrincipals"),
            (item["principalId"], "servicePrincipals"),
        ]
        self.audit(REMOVE_ASSIGNMENT, targets)

    def add_assignment(self, request: Request) -> Response:
        principal = self.find("servicePrincipals", request.params["id"])
        body = request.json()
        if not isinstance(body, dict) or body.get("principalId") != principal["id"]:
            raise ODataFault(400, "Request_BadRequest", "principalId must match the path.")
        resource = self.find("servicePrincipals", str(body.get("resourceId")))
        role = str(body.get("appRoleId"))
        for existing in self.tenant.assignments.values():
            same = (existing["principalId"], existing["resourceId"], existing["appRoleId"])
            if same == (principal["id"], resource["id"], role):
                # Graph's wording; a 409 "EntitlementGrant entry already exists" is also
                # reported (microsoftgraph/msgraph-bicep-types#161): the connector takes both.
                raise ODataFault(
                    400,
                    "Request_BadRequest",
                    "Permission being assigned already exists on the object",
                )
        return Response(201, self.create_assignment(principal["id"], resource["id"], role))

    def create_assignment(self, client_id: str, resource_id: str, role_id: str) -> dict[str, Any]:
        """A new assignment id on every create (../shared/notes/provider-facts.md)."""
        principal = self.tenant.service_principals[client_id]
        resource = self.tenant.service_principals[resource_id]
        assignment_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        item = {
            "id": assignment_id,
            "appRoleId": role_id,
            "createdDateTime": self.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "principalDisplayName": principal.get("displayName"),
            "principalId": client_id,
            "principalType": "ServicePrincipal",
            "resourceDisplayName": resource.get("displayName"),
            "resourceId": resource_id,
        }
        self.tenant.assignments[assignment_id] = item
        self.audit(
            ADD_ASSIGNMENT, [(resource_id, "servicePrincipals"), (client_id, "servicePrincipals")]
        )
        return item

    # delegated grants ---------------------------------------------------------------

    def list_grants(self, request: Request) -> Response:
        items = self.cached(
            ("grants", request.arg("$filter")),
            lambda: filtered(request, self.tenant.grants.values(), GRANT_FILTERS),
        )
        return self.page(request, items, dict)

    def grant(self, request: Request) -> dict[str, Any]:
        item = self.tenant.grants.get(request.params["id"])
        if item is None:
            raise not_found(request.params["id"])
        return item

    def get_grant(self, request: Request) -> Response:
        return Response(200, self.grant(request))

    def patch_grant(self, request: Request) -> Response:
        item = self.grant(request)
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("scope"), str):
            raise ODataFault(400, "Request_BadRequest", "Only 'scope' can be updated.")
        item["scope"] = body["scope"]
        self.revision += 1
        return Response(204)

    def delete_grant(self, request: Request) -> Response:
        item = self.grant(request)
        del self.tenant.grants[item["id"]]
        self.audit(
            REMOVE_GRANT,
            [(item["clientId"], "servicePrincipals"), (item["resourceId"], "servicePrincipals")],
        )
        return Response(204)

    def add_grant(self, request: Request) -> Response:
        """The id is derived from client, resource and user; a second grant of the same
        three is a 409 conflict (../shared/notes/provider-facts.md; Azure/SimuLand#13)."""
        body = request.json()
        required = ("clientId", "consentType", "resourceId", "scope")
        if not isinstance(body, dict) or any(not body.get(k) for k in required):
            raise ODataFault(400, "Request_BadRequest", "clientId, consentType, resourceId, scope.")
        self.find("servicePrincipals", body["clientId"])
        self.find("servicePrincipals", body["resourceId"])
        user = body.get("principalId") if body["consentType"] == "Principal" else None
        key = grant_id(body["clientId"], body["resourceId"], user)
        if key in self.tenant.grants:
            raise ODataFault(
                409, "Request_MultipleObjectsWithSameKeyValue", "Permission entry already exists."
            )
        item = {
            "id": key,
            "principalId": None,
            **{k: body.get(k) for k in (*required, "principalId")},
        }
        self.tenant.grants[key] = item
        targets = [
            (body["clientId"], "servicePrincipals"),
            (body["resourceId"], "servicePrincipals"),
        ]
        self.audit(ADD_GRANT, targets)
        return Response(201, item)

    # people, audit, sign-in activity -------------------------------------------------

    def user_shaper(self, request: Request) -> Callable[[dict[str, Any]], dict[str, Any]]:
        fields = selection(request, "user", USER_FIELDS)
        expand = request.arg("$expand")
        if expand not in (None, "manager", "manager($select=id)"):
            raise ODataFault(400, "Request_BadRequest", f"Unsupported expand: '{expand}'.")
        managers = self.tenant.managers

        def shape(user: dict[str, Any]) -> dict[str, Any]:
            shown = project(user, fields)
            manager = managers.get(user["id"]) if expand else None
            if manager:  # Graph leaves the property out for a user with no manager
                shown["manager"] = {"@odata.type": "#microsoft.graph.user", "id": manager}
            return shown

        return shape

    def list_users(self, request: Request) -> Response:
        shape = self.user_shaper(request)
        return self.page(request, list(self.tenant.users.values()), shape)

    def get_user(self, request: Request) -> Response:
        user = self.find("users", request.params["id"], reread=True)
        return Response(200, self.user_shaper(request)(user))

    def list_audits(self, request: Request) -> Response:
        items = filtered(request, self.tenant.audits, AUDIT_FILTERS)
        return self.page(request, items, dict)

    def list_sign_ins(self, request: Request) -> Response:
        report = self.switches.sign_in_report
        if report == "forbidden":
            raise ODataFault(
                403,
                "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                "Neither tenant is B2C or tenant doesn't have premium license",
            )
        if report == "national":
            raise ODataFault(400, "BadRequest", "Resource not found for the segment 'reports'.")
        if report == "absent":
            raise ODataFault(404, "ResourceNotFound", "The report is not available here.")
        rows = [] if report == "missing" else list(self.tenant.sign_ins.values())
        return self.page(request, rows, dict)

    # $batch ------------------------------------------------------------------------

    def batch(self, request: Request) -> Response:
        body = request.json()
        items = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(items, list) or not 1 <= len(items) <= BATCH_LIMIT:
            raise ODataFault(400, "BadRequest", "A batch holds 1 to 20 requests.")
        ids = [item.get("id") for item in items if isinstance(item, dict)]
        if len(set(ids)) != len(items):
            raise ODataFault(400, "BadRequest", "Batch request ids must be unique.")
        return Response(200, {"responses": [self.batch_item(request, item) for item in items]})

    def batch_item(self, outer: Request, item: dict[str, Any]) -> dict[str, Any]:
        """Each sub-request is admitted, charged and throttled on its own."""
        if self.switches.throttle_batch_items > 0:
            self.switches.throttle_batch_items -= 1
            reply = self.throttled(outer)
        else:
            split = urlsplit(str(item.get("url", "")))
            inner = Request(
                method=str(item.get("method", "GET")).upper(),
                path="/v1.0/" + split.path.lstrip("/"),
                query=parse_qs(split.query, keep_blank_values=True),
                headers=outer.headers,
                body=json.dumps(item["body"]).encode() if "body" in item else b"",
                base_url=outer.base_url,
            )
            self.requests.append(inner)  # seen by tests like any other request
            reply = self.dispatch(inner)
        return {
            "id": item["id"],
            "status": reply.status,
            "headers": {"Content-Type": "application/json", **reply.headers},
            "body": reply.body,
        }
