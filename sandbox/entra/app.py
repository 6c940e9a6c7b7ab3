"""Microsoft Graph (v1.0 + one beta report) and the Entra token endpoint, on loopback.

Follows the Graph definitions in ../shared/specs/msgraph: absolute `@odata.nextLink`
with a `$skiptoken`, delta rounds ending in `@odata.deltaLink`, `@removed` stubs, Graph
error bodies, 429 with `Retry-After`, PATCH answered 204, JSON `$batch` of at most 20.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from sandbox.entra import auth
from sandbox.entra.odata import (
    ODataFault,
    decode_token,
    encode_token,
    equality_filter,
    error,
    page_size,
    project,
    selection,
)
from sandbox.entra.seed import Tenant
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
OWNER_FIELDS = USER_FIELDS | SP_FIELDS
BATCH_LIMIT = 20
DELTA = r"(?:microsoft\.graph\.)?delta(?:\(\))?"
COLLECTIONS = {"servicePrincipals": "servicePrincipal", "applications": "application"}


@dataclass
class Client:
    secret: str | None
    certificate_pem: bytes | None
    can_write: bool


@dataclass
class Switches:
    """Graph-specific faults, beside the shared `app.faults`."""

    sign_in_report: str = "ok"  # "ok" | "forbidden" (tenant without Entra ID P1) | "missing"
    expire_page_tokens_next: int = 0  # the next N skip tokens answer Directory_ExpiredPageToken
    throttle_batch_items: int = 0  # the next N $batch sub-requests answer 429 on their own
    tokens_issued: int = 0
    delta_tokens_before: int = 0  # delta tokens older than this version are expired


@dataclass
class DeltaState:
    version: int = 1
    versions: dict[tuple[str, str], int] = field(default_factory=dict)
    tombstones: list[tuple[str, str, int]] = field(default_factory=list)


class EntraEmulator(EmulatorApp):
    def __init__(self, tenant: Tenant, delta_page_size: int = 200) -> None:
        super().__init__()
        self.tenant = tenant
        self.delta_page_size = delta_page_size
        self.switches = Switches()
        self.delta = DeltaState()
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

    # mutations tests use (each counts as a directory change for delta) ---------------

    def touch(self, collection: str, object_id: str) -> None:
        self.delta.version += 1
        self.delta.versions[(collection, object_id)] = self.delta.version

    def update_service_principal(self, sp_id: str, **fields: Any) -> None:
        with self.lock:
            self.tenant.service_principals[sp_id].update(fields)
            self.touch("servicePrincipals", sp_id)

    def update_application(self, object_id: str, **fields: Any) -> None:
        with self.lock:
            self.tenant.applications[object_id].update(fields)
            self.touch("applications", object_id)

    def delete_service_principal(self, sp_id: str) -> None:
        with self.lock:
            del self.tenant.service_principals[sp_id]
            self.delta.version += 1
            self.delta.tombstones.append(("servicePrincipals", sp_id, self.delta.version))

    def add_service_principal(self, body: dict[str, Any]) -> None:
        with self.lock:
            self.tenant.service_principals[body["id"]] = body
            self.touch("servicePrincipals", body["id"])

    def expire_delta_tokens(self) -> None:
        self.switches.delta_tokens_before = self.delta.version + 1

    # plumbing ----------------------------------------------------------------------

    def _register_routes(self) -> None:
        graph = r"/v1\.0"
        table: list[tuple[str, str, Callable[[Request], Response]]] = [
            ("POST", "/{tenant}/oauth2/v2.0/token", self.token),
            ("GET", "/{tenant}/v2.0/.well-known/openid-configuration", self.openid_configuration),
            ("POST", graph + r"/\$batch", self.batch),
            ("GET", graph + "/servicePrincipals/" + DELTA, self.delta_of("servicePrincipals")),
            ("GET", graph + "/applications/" + DELTA, self.delta_of("applications")),
            ("GET", graph + "/servicePrincipals", self.list_service_principals),
            ("GET", graph + "/applications", self.list_applications),
            ("GET", graph + "/servicePrincipals/{id}", self.get_service_principal),
            ("PATCH", graph + "/servicePrincipals/{id}", self.patch_service_principal),
            ("GET", graph + "/applications/{id}", self.get_application),
            ("GET", graph + "/servicePrincipals/{id}/owners", self.owners_of("servicePrincipals")),
            ("GET", graph + "/applications/{id}/owners", self.owners_of("applications")),
            ("GET", graph + "/servicePrincipals/{id}/appRoleAssignments", self.list_assignments),
            ("POST", graph + "/servicePrincipals/{id}/appRoleAssignments", self.add_assignment),
            (
                "GET",
                graph + "/servicePrincipals/{id}/appRoleAssignments/{aid}",
                self.get_assignment,
            ),
            (
                "DELETE",
                graph + "/servicePrincipals/{id}/appRoleAssignments/{aid}",
                self.delete_assignment,
            ),
            ("GET", graph + "/oauth2PermissionGrants", self.list_grants),
            ("POST", graph + "/oauth2PermissionGrants", self.add_grant),
            ("GET", graph + "/oauth2PermissionGrants/{id}", self.get_grant),
            ("PATCH", graph + "/oauth2PermissionGrants/{id}", self.patch_grant),
            ("DELETE", graph + "/oauth2PermissionGrants/{id}", self.delete_grant),
            ("GET", graph + "/users", self.list_users),
            ("GET", graph + "/auditLogs/directoryAudits", self.list_audits),
            ("GET", r"/beta/reports/servicePrincipalSignInActivities", self.list_sign_ins),
        ]
        for method, pattern, handler in table:
            self.route(method, pattern)(handler)

    def dispatch(self, request: Request) -> Response:
        try:
            if request.path.startswith(("/v1.0/", "/beta/")):
                self.authorize(request)
            return super().dispatch(request)
        except ODataFault as fault:
            return error(fault.status, fault.code, fault.message)

    def authorize(self, request: Request) -> None:
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
        fields: list[str] | None,
        shape: Callable[[dict[str, Any], list[str] | None], dict[str, Any]] = project,
    ) -> Response:
        top = page_size(request)
        offset = self.skip_offset(request)
        chunk = items[offset : offset + top]
        body: dict[str, Any] = {
            "@odata.context": f"{request.base_url}/v1.0/$metadata#{request.path.split('/')[2]}",
            "value": [shape(item, fields) for item in chunk],
        }
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

    # service principals and applications --------------------------------------------

    def objects(self, collection: str) -> dict[str, dict[str, Any]]:
        if collection == "servicePrincipals":
            return self.tenant.service_principals
        return self.tenant.applications

    def fields_of(self, collection: str) -> frozenset[str]:
        return SP_FIELDS if collection == "servicePrincipals" else APP_FIELDS

    def list_service_principals(self, request: Request) -> Response:
        return self.list_directory(request, "servicePrincipals")

    def list_applications(self, request: Request) -> Response:
        return self.list_directory(request, "applications")

    def list_directory(self, request: Request, collection: str) -> Response:
        fields = selection(request, COLLECTIONS[collection], self.fields_of(collection))
        items: Iterable[dict[str, Any]] = self.objects(collection).values()
        wanted = equality_filter(request, frozenset({"appId", "displayName"}))
        if wanted:
            items = [item for item in items if item.get(wanted[0]) == wanted[1]]
        return self.page(request, list(items), fields)

    def get_object(self, request: Request, collection: str) -> Response:
        item = self.find(collection, request.params["id"])
        fields = selection(request, COLLECTIONS[collection], self.fields_of(collection))
        return Response(200, project(item, fields))

    def get_service_principal(self, request: Request) -> Response:
        return self.get_object(request, "servicePrincipals")

    def get_application(self, request: Request) -> Response:
        return self.get_object(request, "applications")

    def find(self, collection: str, object_id: str) -> dict[str, Any]:
        item = self.objects(collection).get(object_id)
        if item is None:
            raise ODataFault(
                404,
                "Request_ResourceNotFound",
                f"Resource '{object_id}' does not exist or one of its queried reference-property "
                "objects are not present.",
            )
        return item

    def patch_service_principal(self, request: Request) -> Response:
        item = self.find("servicePrincipals", request.params["id"])
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
        self.touch("servicePrincipals", item["id"])
        return Response(204)

    def owners_of(self, collection: str) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            self.find(collection, request.params["id"])
            fields = selection(request, "directoryObject", OWNER_FIELDS)
            owners = [
                self.directory_object(i) for i in self.tenant.owners.get(request.params["id"], [])
            ]
            return self.page(request, [o for o in owners if o], fields, self.typed)

        return handler

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
        return {"@odata.type": item["@odata.type"], **project(item, known)}

    # delta -------------------------------------------------------------------------

    def delta_of(self, collection: str) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            return self.delta_page(request, collection)

        return handler

    def delta_page(self, request: Request, collection: str) -> Response:
        skip, delta = request.arg("$skiptoken"), request.arg("$deltatoken")
        if skip is not None:
            self.reject_expired_token()
            state = decode_token(skip)
        elif delta is not None:
            state = {**decode_token(delta), "o": 0, "u": self.delta.version}
            if state.get("v", 0) < self.switches.delta_tokens_before:
                raise ODataFault(
                    410, "resyncRequired", "The delta token has expired; start a new round."
                )
        else:
            fields = selection(request, COLLECTIONS[collection], self.fields_of(collection))
            state = {"v": 0, "u": self.delta.version, "o": 0, "s": fields}
        changes = self.changes_between(collection, state["v"], state["u"])
        offset = state["o"]
        chunk = changes[offset : offset + self.delta_page_size]
        base = f"{request.base_url}/v1.0/{collection}/delta()"
        body: dict[str, Any] = {
            "@odata.context": f"{request.base_url}/v1.0/$metadata#{collection}",
            "value": [self.delta_item(item, state["s"]) for item in chunk],
        }
        if offset + self.delta_page_size < len(changes):
            token = encode_token({**state, "o": offset + self.delta_page_size})
            body["@odata.nextLink"] = f"{base}?$skiptoken={quote(token)}"
        else:
            token = encode_token({"v": state["u"], "s": state["s"]})
            body["@odata.deltaLink"] = f"{base}?$deltatoken={quote(token)}"
        return Response(200, body)

    def changes_between(self, collection: str, since: int, until: int) -> list[dict[str, Any]]:
        changed = [
            item
            for key, item in self.objects(collection).items()
            if since < self.delta.versions.get((collection, key), 1) <= until
        ]
        removed = [
            {"id": object_id, "@removed": {"reason": "deleted"}}
            for kind, object_id, version in self.delta.tombstones
            if kind == collection and since < version <= until
        ]
        return changed + removed

    @staticmethod
    def delta_item(item: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
        return dict(item) if "@removed" in item else project(item, fields)

    # app role assignments ----------------------------------------------------------

    def list_assignments(self, request: Request) -> Response:
        self.find("servicePrincipals", request.params["id"])
        items = [
            a for a in self.tenant.assignments.values() if a["principalId"] == request.params["id"]
        ]
        return self.page(request, items, None)

    def get_assignment(self, request: Request) -> Response:
        return Response(200, self.assignment(request))

    def assignment(self, request: Request) -> dict[str, Any]:
        item = self.tenant.assignments.get(request.params["aid"])
        if item is None or item["principalId"] != request.params["id"]:
            raise ODataFault(
                404,
                "Request_ResourceNotFound",
                f"Resource '{request.params['aid']}' does not exist.",
            )
        return item

    def delete_assignment(self, request: Request) -> Response:
        del self.tenant.assignments[self.assignment(request)["id"]]
        return Response(204)

    def add_assignment(self, request: Request) -> Response:
        principal = self.find("servicePrincipals", request.params["id"])
        body = request.json()
        if not isinstance(body, dict) or body.get("principalId") != principal["id"]:
            raise ODataFault(400, "Request_BadRequest", "principalId must match the path.")
        resource = self.find("servicePrincipals", str(body.get("resourceId")))
        assignment_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        item = {
            "id": assignment_id,
            "appRoleId": body.get("appRoleId"),
            "createdDateTime": None,
            "principalDisplayName": principal.get("displayName"),
            "principalId": principal["id"],
            "principalType": "ServicePrincipal",
            "resourceDisplayName": resource.get("displayName"),
            "resourceId": resource["id"],
        }
        self.tenant.assignments[assignment_id] = item
        return Response(201, item)

    # delegated grants ---------------------------------------------------------------

    def list_grants(self, request: Request) -> Response:
        items: Iterable[dict[str, Any]] = self.tenant.grants.values()
        wanted = equality_filter(
            request, frozenset({"clientId", "consentType", "principalId", "resourceId"})
        )
        if wanted:
            items = [g for g in items if g.get(wanted[0]) == wanted[1]]
        return self.page(request, list(items), None)

    def grant(self, request: Request) -> dict[str, Any]:
        item = self.tenant.grants.get(request.params["id"])
        if item is None:
            raise ODataFault(
                404,
                "Request_ResourceNotFound",
                f"Resource '{request.params['id']}' does not exist.",
            )
        return item

    def get_grant(self, request: Request) -> Response:
        return Response(200, self.grant(request))

    def patch_grant(self, request: Request) -> Response:
        item = self.grant(request)
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("scope"), str):
            raise ODataFault(400, "Request_BadRequest", "Only 'scope' can be updated.")
        item["scope"] = body["scope"]
        return Response(204)

    def delete_grant(self, request: Request) -> Response:
        del self.tenant.grants[self.grant(request)["id"]]
        return Response(204)

    def add_grant(self, request: Request) -> Response:
        body = request.json()
        required = ("clientId", "consentType", "resourceId", "scope")
        if not isinstance(body, dict) or any(not body.get(k) for k in required):
            raise ODataFault(400, "Request_BadRequest", "clientId, consentType, resourceId, scope.")
        self.find("servicePrincipals", body["clientId"])
        self.find("servicePrincipals", body["resourceId"])
        grant_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        item = {
            "id": grant_id,
            "principalId": None,
            **{k: body.get(k) for k in (*required, "principalId")},
        }
        self.tenant.grants[grant_id] = item
        return Response(201, item)

    # people, audit, sign-in activity -------------------------------------------------

    def list_users(self, request: Request) -> Response:
        fields = selection(request, "user", USER_FIELDS)
        expand = request.arg("$expand")
        if expand not in (None, "manager", "manager($select=id)"):
            raise ODataFault(400, "Request_BadRequest", f"Unsupported expand: '{expand}'.")
        managers = self.tenant.managers

        def shape(user: dict[str, Any], chosen: list[str] | None) -> dict[str, Any]:
            shown = project(user, chosen)
            manager = managers.get(user["id"]) if expand else None
            if manager:  # Graph leaves the property out for a user with no manager
                shown["manager"] = {"@odata.type": "#microsoft.graph.user", "id": manager}
            return shown

        return self.page(request, list(self.tenant.users.values()), fields, shape)

    def list_audits(self, request: Request) -> Response:
        wanted = equality_filter(request, frozenset({"activityDisplayName"}))
        items = self.tenant.audits
        if wanted:
            items = [a for a in items if a.get(wanted[0]) == wanted[1]]
        return self.page(request, items, None)

    def list_sign_ins(self, request: Request) -> Response:
        if self.switches.sign_in_report == "forbidden":
            raise ODataFault(
                403,
                "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                "Neither tenant is B2C or tenant doesn't have premium license",
            )
        rows = (
            [] if self.switches.sign_in_report == "missing" else list(self.tenant.sign_ins.values())
        )
        return self.page(request, rows, None)

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
            reply = self.dispatch(inner)
        return {
            "id": item["id"],
            "status": reply.status,
            "headers": {"Content-Type": "application/json", **reply.headers},
            "body": reply.body,
        }
