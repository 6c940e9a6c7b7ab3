"""Loopback emulator of the Google APIs Recert reads and writes.

Admin SDK Directory (users, tokens), Reports (activities.list), IAM (service accounts and
their keys, disable/enable) and the OAuth token endpoint for the JWT-bearer grant, shaped
as the bundled discovery documents define them: `pageToken`/`nextPageToken`, `fields`
partial responses, Google's error bodies, 403 `userRateLimitExceeded` for the Admin SDK and
429 `RESOURCE_EXHAUSTED` for IAM.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import json
import secrets
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import exceptions as auth_exceptions
from google.auth import jwt

from sandbox.google.fields import parse_fields, select
from sandbox.google.seed import CUSTOMER_ID, RETENTION, Seed, rfc3339
from sandbox.server import EmulatorApp, Request, Response

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # google-auth's fixed `aud`
SCOPE = "https://www.googleapis.com/auth/"
USERS_READ = (SCOPE + "admin.directory.user.readonly", SCOPE + "admin.directory.user")
USER_SECURITY = (SCOPE + "admin.directory.user.security",)
AUDIT_READ = (SCOPE + "admin.reports.audit.readonly",)
CLOUD = (SCOPE + "cloud-platform", SCOPE + "iam")
REPORT_APPLICATIONS = frozenset({"token", "admin", "login", "drive", "saml", "user_accounts"})
READER_EMAIL = "recert-reader@acme-ops.iam.gserviceaccount.com"


@functools.cache
def _reader_key() -> rsa.RSAPrivateKey:
    """One RSA key per process: generating keys is slow and identity is all it proves."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def google_error(
    code: int, message: str, status: str, reason: str | None = None, domain: str = "global"
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if reason:
        error["errors"] = [{"message": message, "domain": domain, "reason": reason}]
    return {"error": error}


def _is_admin_sdk(path: str) -> bool:
    return path.startswith("/admin/")


class GoogleEmulator(EmulatorApp):
    def __init__(self, seed: Seed) -> None:
        super().__init__()
        self.seed = seed
        self.now = seed.now
        self.key_id = f"{secrets.randbits(160):040x}"
        self.issued: dict[str, tuple[frozenset[str], str | None, float]] = {}
        self.users: list[dict[str, Any]] = [self._user_json(u) for u in seed.users]
        self._user_index: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, dict[str, dict[str, Any]]] = {
            u.id: {cid: self._token_json(u.email, t) for cid, t in u.tokens.items()}
            for u in seed.users
        }
        self.accounts: dict[str, list[dict[str, Any]]] = {p: [] for p in seed.projects}
        self.keys: dict[str, list[dict[str, Any]]] = {}
        for account in seed.service_accounts:
            self.accounts[account.project].append(self._account_json(account))
            self.keys[account.unique_id] = [
                self._key_json(account.project, account.email, k) for k in account.keys
            ]
        self.token_events = self._token_events()
        self.admin_events = self._admin_events()
        self._register()

    # ----- seed -> API JSON ---------------------------------------------------------------

    def _user_json(self, user: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "admin#directory#user",
            "id": user.id,
            "etag": f'"{user.id[-8:]}"',
            "primaryEmail": user.email,
            "name": {"fullName": user.full_name, "givenName": user.full_name.split()[0]},
            "isAdmin": user.is_admin,
            "suspended": user.suspended,
            "archived": user.archived,
            "customerId": CUSTOMER_ID,
            "orgUnitPath": "/",
        }
        if user.manager_email:
            body["relations"] = [{"value": user.manager_email, "type": "manager"}]
        return body

    def _token_json(self, email: str, token: Any) -> dict[str, Any]:
        return {
            "kind": "admin#directory#token",
            "etag": f'"{zlib.crc32(f"{email}:{token.client_id}".encode()):08x}"',
            "clientId": token.client_id,
            "displayText": token.display_text,
            "scopes": list(token.scopes),
            "anonymous": False,
            "nativeApp": token.native_app,
            "userKey": email,
        }

    def _account_json(self, account: Any) -> dict[str, Any]:
        return {
            "name": f"projects/{account.project}/serviceAccounts/{account.email}",
            "projectId": account.project,
            "uniqueId": account.unique_id,
            "email": account.email,
            "displayName": account.display_name,
            "etag": base64.b64encode(account.unique_id[:6].encode()).decode(),
            "oauth2ClientId": account.unique_id,
            "disabled": account.disabled,
        }

    def _key_json(self, project: str, email: str, key: Any) -> dict[str, Any]:
        return {
            "name": f"projects/{project}/serviceAccounts/{email}/keys/{key.key_id}",
            "validAfterTime": key.valid_after,
            "validBeforeTime": key.valid_before,
            "keyAlgorithm": "KEY_ALG_RSA_2048",
            "keyOrigin": "GOOGLE_PROVIDED",
            "keyType": key.key_type,
            "disabled": key.disabled,
        }

    def _activity(
        self, app: str, moment: datetime, actor: Any, event: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "kind": "admin#reports#activity",
            "id": {
                "time": rfc3339(moment),
                "uniqueQualifier": str(secrets.randbits(62)),
                "applicationName": app,
                "customerId": CUSTOMER_ID,
            },
            "etag": '"emulator"',
            "actor": {"email": actor.email, "profileId": actor.id, "callerType": "USER"},
            "events": [event],
        }

    def _token_events(self) -> list[dict[str, Any]]:
        items = []
        for user in self.seed.users:
            for token in user.tokens.values():
                params = [
                    {"name": "client_id", "value": token.client_id},
                    {"name": "app_name", "value": token.display_text},
                ]
                authorize = {
                    "type": "auth",
                    "name": "authorize",
                    "parameters": [*params, {"name": "scope", "multiValue": token.scopes}],
                }
                items.append(
                    (
                        token.consented_at,
                        self._activity("token", token.consented_at, user, authorize),
                    )
                )
                if token.last_used_at:
                    use = {"type": "auth", "name": "activity", "parameters": params}
                    items.append(
                        (token.last_used_at, self._activity("token", token.last_used_at, user, use))
                    )
        return [item for _, item in sorted(items, key=lambda pair: pair[0], reverse=True)]

    def _admin_events(self) -> list[dict[str, Any]]:
        by_email = {u.email: u for u in self.seed.users}
        items = []
        for client in self.seed.dwd_clients:
            actor = by_email[client.authorized_by]
            name = [{"name": "API_CLIENT_NAME", "value": client.client_id}]
            grant = {
                "type": "SECURITY_SETTINGS",
                "name": "AUTHORIZE_API_CLIENT_ACCESS",
                "parameters": [*name, {"name": "API_SCOPES", "multiValue": client.scopes}],
            }
            items.append(
                (client.authorized_at, self._activity("admin", client.authorized_at, actor, grant))
            )
            if client.removed_at:
                removal = {
                    "type": "SECURITY_SETTINGS",
                    "name": "REMOVE_API_CLIENT_ACCESS",
                    "parameters": name,
                }
                items.append(
                    (client.removed_at, self._activity("admin", client.removed_at, actor, removal))
                )
        return [item for _, item in sorted(items, key=lambda pair: pair[0], reverse=True)]

    # ----- credentials ----------------------------------------------------------------------

    def service_account_info(self, token_uri: str) -> dict[str, str]:
        """The key JSON of the reader service account (domain-wide delegation)."""
        pem = _reader_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return {
            "type": "service_account",
            "project_id": "acme-ops",
            "private_key_id": self.key_id,
            "private_key": pem.decode(),
            "client_email": READER_EMAIL,
            "client_id": "104200000000000000001",
            "token_uri": token_uri,
        }

    def tenant_table(
        self, name: str, url: str, ca_bundle: Path, secrets_dir: Path
    ) -> dict[str, Any]:
        """The `[[tenants]]` table (as a dict) that points Recert at this emulator."""
        secrets_dir.mkdir(parents=True, exist_ok=True)
        key_file = secrets_dir / f"{name}-google-sa.json"
        key_file.write_text(json.dumps(self.service_account_info(f"{url}/token")))
        key_file.chmod(0o600)
        return {
            "name": name,
            "kind": "google",
            "credentials_file": str(key_file),
            "admin_subject": self.seed.admin_email,
            "customer": "my_customer",
            "projects": list(self.seed.projects),
            "directory_url": f"{url}/",
            "reports_url": f"{url}/",
            "iam_url": f"{url}/",
            "token_uri": f"{url}/token",
            "ca_bundle": str(ca_bundle),
        }

    def inject_malformed(self) -> dict[str, str]:
        """Add one broken record of each kind; returns what was broken, for assertions."""
        self.users.append({"kind": "admin#directory#user", "primaryEmail": "noid@example.com"})
        victim = self.users[1]
        self.tokens[victim["id"]]["bad-client"] = {"clientId": "bad-client", "scopes": "drive"}
        account = self.accounts[self.seed.projects[0]][-1]
        account.pop("uniqueId")
        key_owner = self.accounts[self.seed.projects[-1]][-2]
        self.keys[key_owner["uniqueId"]].append(
            {
                "name": f"{key_owner['name']}/keys/weird",
                "keyType": "USER_MANAGED",
                "validAfterTime": 7,
            }
        )
        return {
            "user": "noid@example.com",
            "token": f"{victim['id']}:bad-client",
            "account": account["email"],
        }

    # ----- hooks ----------------------------------------------------------------------------

    def throttled(self, request: Request) -> Response:
        if _is_admin_sdk(request.path):
            body = google_error(
                403,
                "Quota exceeded for quota metric 'Queries' and limit "
                "'Queries per minute per user'.",
                "PERMISSION_DENIED",
                "userRateLimitExceeded",
                "usageLimits",
            )
            return Response(403, body)
        body = google_error(
            429,
            "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute'.",
            "RESOURCE_EXHAUSTED",
        )
        return Response(429, body)

    def server_error(self, request: Request) -> Response:
        reason = "backendError" if _is_admin_sdk(request.path) else None
        return Response(
            503, google_error(503, "The service is currently unavailable.", "UNAVAILABLE", reason)
        )

    def not_found(self, request: Request) -> Response:
        return Response(
            404, google_error(404, f"Not Found: {request.path}", "NOT_FOUND", "notFound")
        )

    # ----- routes ---------------------------------------------------------------------------

    def _register(self) -> None:
        self.route("POST", "/token")(self._token)
        base = "/admin/directory/v1/users"
        self.route("GET", base)(self._guard(USERS_READ, self._list_users))
        self.route("GET", base + "/{userKey}")(self._guard(USERS_READ, self._get_user))
        self.route("GET", base + "/{userKey}/tokens")(self._guard(USER_SECURITY, self._list_tokens))
        self.route("DELETE", base + "/{userKey}/tokens/{clientId}")(
            self._guard(USER_SECURITY, self._delete_token)
        )
        self.route("GET", "/admin/reports/v1/activity/users/{userKey}/applications/{app}")(
            self._guard(AUDIT_READ, self._list_activities)
        )
        accounts = "/v1/projects/{project}/serviceAccounts"
        self.route("GET", accounts)(self._guard(CLOUD, self._list_accounts))
        self.route("GET", accounts + "/{account}")(self._guard(CLOUD, self._get_account))
        self.route("GET", accounts + "/{account}/keys")(self._guard(CLOUD, self._list_keys))
        self.route("POST", accounts + "/{account}:disable")(self._guard(CLOUD, self._disable))
        self.route("POST", accounts + "/{account}:enable")(self._guard(CLOUD, self._enable))

    def _guard(
        self, scopes: tuple[str, ...], handler: Callable[[Request], Response]
    ) -> Callable[[Request], Response]:
        def guarded(request: Request) -> Response:
            denied = self._check_token(request, scopes)
            if denied:
                return denied
            request.params = {k: unquote(v) for k, v in request.params.items()}
            response = handler(request)
            fields = request.arg("fields")
            if fields and response.status == 200 and isinstance(response.body, dict):
                try:
                    response.body = select(response.body, parse_fields(fields))
                except ValueError as exc:
                    return self._bad_request(request, f"Invalid field selection: {exc}")
            return response

        return guarded

    def _check_token(self, request: Request, scopes: tuple[str, ...]) -> Response | None:
        header = request.headers.get("authorization", "")
        grant = self.issued.get(header.removeprefix("Bearer "))
        if grant is None or grant[2] < time.time():
            body = google_error(
                401,
                "Request had invalid authentication credentials.",
                "UNAUTHENTICATED",
                "authError",
            )
            return Response(
                401, body, {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}
            )
        granted, subject, _ = grant
        workspace = _is_admin_sdk(request.path)
        if not granted.intersection(scopes) or (workspace and subject is None):
            body = google_error(
                403,
                "Request had insufficient authentication scopes.",
                "PERMISSION_DENIED",
                "insufficientPermissions",
            )
            return Response(403, body)
        return None

    def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return Response(
                400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}
            )
        public = (
            _reader_key()
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                certs={self.key_id: public.decode()},
                audience=[GOOGLE_TOKEN_AUDIENCE, f"{request.base_url}/token"],
            )
        except (ValueError, auth_exceptions.GoogleAuthError) as exc:
            return Response(
                400, {"error": "invalid_grant", "error_description": f"Invalid JWT: {exc}"}
            )
        if claims.get("iss") != READER_EMAIL:
            return Response(
                401,
                {"error": "invalid_client", "error_description": "The OAuth client was not found."},
            )
        subject = claims.get("sub")
        if subject not in (None, READER_EMAIL, self.seed.admin_email):
            return Response(
                401,
                {
                    "error": "unauthorized_client",
                    "error_description": "Client is unauthorized to retrieve access tokens "
                    "using this method.",
                },
            )
        access = secrets.token_urlsafe(24)
        scopes = frozenset(str(claims.get("scope", "")).split())
        self.issued[access] = (
            scopes,
            None if subject == READER_EMAIL else subject,
            time.time() + 3600,
        )
        return Response(200, {"access_token": access, "expires_in": 3599, "token_type": "Bearer"})

    # ----- paging ---------------------------------------------------------------------------

    def _page(
        self, request: Request, items: list[Any], size: int
    ) -> tuple[list[Any], str | None] | Response:
        token = request.arg("pageToken")
        offset = 0
        if token:
            offset = self._decode_page_token(token)
            if offset < 0 or self.faults.expire_page_tokens:
                return self._bad_request(
                    request,
                    "Invalid page token." if not _is_admin_sdk(request.path) else "Invalid Input",
                )
        chunk = items[offset : offset + size]
        following = offset + size
        if following >= len(items):
            return chunk, None
        return chunk, base64.urlsafe_b64encode(f"o:{following}".encode()).decode()

    @staticmethod
    def _decode_page_token(token: str) -> int:
        try:
            kind, _, offset = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
            return int(offset) if kind == "o" else -1
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return -1

    def _bad_request(self, request: Request, message: str) -> Response:
        if _is_admin_sdk(request.path):
            return Response(400, google_error(400, message, "INVALID_ARGUMENT", "invalid"))
        return Response(400, google_error(400, message, "INVALID_ARGUMENT"))

    def _size(self, request: Request, default: int, high: int, name: str) -> int | Response:
        raw = request.arg(name)
        try:
            value = int(raw) if raw is not None else default
        except ValueError:
            return self._bad_request(request, "Invalid Input")
        if not 1 <= value <= high:
            return self._bad_request(
                request, f"Invalid value '{value}'. Values must be within the range: [1, {high}]"
            )
        return value

    # ----- directory ------------------------------------------------------------------------

    def _find_user(self, key: str) -> dict[str, Any] | None:
        if len(self._user_index) != 2 * len(self.users):
            self._user_index = {}
            for user in self.users:
                self._user_index[str(user.get("id"))] = user
                self._user_index[str(user.get("primaryEmail", "")).lower()] = user
        return self._user_index.get(key) or self._user_index.get(key.lower())

    def _user_not_found(self) -> Response:
        return Response(
            404, google_error(404, "Resource Not Found: userKey", "NOT_FOUND", "notFound")
        )

    def _list_users(self, request: Request) -> Response:
        if request.arg("customer") not in ("my_customer", CUSTOMER_ID) and not request.arg(
            "domain"
        ):
            return self._bad_request(request, "Bad Request")
        size = self._size(request, 100, 500, "maxResults")
        if isinstance(size, Response):
            return size
        paged = self._page(request, self.users, size)
        if isinstance(paged, Response):
            return paged
        users, following = paged
        body: dict[str, Any] = {"kind": "admin#directory#users", "etag": '"users"', "users": users}
        if following:
            body["nextPageToken"] = following
        return Response(200, body)

    def _get_user(self, request: Request) -> Response:
        user = self._find_user(request.params["userKey"])
        return Response(200, user) if user else self._user_not_found()

    def _list_tokens(self, request: Request) -> Response:
        user = self._find_user(request.params["userKey"])
        if user is None or "id" not in user:
            return self._user_not_found()
        body: dict[str, Any] = {"kind": "admin#directory#tokenList", "etag": '"tokens"'}
        items = list(self.tokens.get(user["id"], {}).values())
        if items:
            body["items"] = items
        return Response(200, body)

    def _delete_token(self, request: Request) -> Response:
        user = self._find_user(request.params["userKey"])
        if user is None or "id" not in user:
            return self._user_not_found()
        if self.tokens.get(user["id"], {}).pop(request.params["clientId"], None) is None:
            return Response(
                404, google_error(404, "Resource Not Found: clientId", "NOT_FOUND", "notFound")
            )
        return Response(204)

    # ----- reports --------------------------------------------------------------------------

    def _list_activities(self, request: Request) -> Response:
        app = request.params["app"]
        if app not in REPORT_APPLICATIONS:
            return self._bad_request(request, f"Invalid value '{app}' for applicationName")
        size = self._size(request, 1000, 1000, "maxResults")
        if isinstance(size, Response):
            return size
        try:
            start = self._time(request.arg("startTime"), self.now - RETENTION)
            end = self._time(request.arg("endTime"), self.now)
        except ValueError:
            return self._bad_request(request, "Invalid Input: startTime/endTime")
        start = max(start, self.now - RETENTION)
        source = {"token": self.token_events, "admin": self.admin_events}.get(app, [])
        wanted = request.arg("eventName")
        user_key = request.params["userKey"]
        items = [
            item
            for item in source
            if start <= self._time(item["id"]["time"], start) <= end
            and (not wanted or any(e["name"] == wanted for e in item["events"]))
            and user_key in ("all", item["actor"]["email"], item["actor"]["profileId"])
        ]
        paged = self._page(request, items, size)
        if isinstance(paged, Response):
            return paged
        chunk, following = paged
        body: dict[str, Any] = {"kind": "admin#reports#activities", "etag": '"activities"'}
        if chunk:
            body["items"] = chunk
        if following:
            body["nextPageToken"] = following
        return Response(200, body)

    @staticmethod
    def _time(text: str | None, default: datetime) -> datetime:
        if not text:
            return default
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)

    # ----- IAM ------------------------------------------------------------------------------

    def _project_accounts(self, project: str) -> list[dict[str, Any]]:
        if project == "-":
            return [a for accounts in self.accounts.values() for a in accounts]
        return self.accounts.get(project, [])

    def _find_account(self, request: Request) -> dict[str, Any] | None:
        key = request.params["account"]
        for account in self._project_accounts(request.params["project"]):
            if key in (account.get("email"), account.get("uniqueId")):
                return account
        return None

    def _account_missing(self, request: Request) -> Response:
        name = f"projects/{request.params['project']}/serviceAccounts/{request.params['account']}"
        return Response(404, google_error(404, f"Unknown service account: {name}", "NOT_FOUND"))

    def _list_accounts(self, request: Request) -> Response:
        project = request.params["project"]
        if project not in self.accounts:
            message = (
                "Permission 'iam.serviceAccounts.list' denied on resource (or it may not exist)."
            )
            return Response(403, google_error(403, message, "PERMISSION_DENIED"))
        size = self._size(request, 20, 100, "pageSize")
        if isinstance(size, Response):
            return size
        paged = self._page(request, self.accounts[project], size)
        if isinstance(paged, Response):
            return paged
        chunk, following = paged
        body: dict[str, Any] = {"accounts": chunk}
        if following:
            body["nextPageToken"] = following
        return Response(200, body)

    def _get_account(self, request: Request) -> Response:
        account = self._find_account(request)
        return Response(200, account) if account else self._account_missing(request)

    def _list_keys(self, request: Request) -> Response:
        account = self._find_account(request)
        if account is None:
            return self._account_missing(request)
        types = request.query.get("keyTypes") or []
        keys = self.keys.get(str(account.get("uniqueId")), [])
        chosen = [k for k in keys if not types or k.get("keyType") in types]
        return Response(200, {"keys": copy.deepcopy(chosen)})

    def _set_disabled(self, request: Request, disabled: bool) -> Response:
        account = self._find_account(request)
        if account is None:
            return self._account_missing(request)
        account["disabled"] = disabled
        return Response(200, {})

    def _disable(self, request: Request) -> Response:
        return self._set_disabled(request, True)

    def _enable(self, request: Request) -> Response:
        return self._set_disabled(request, False)
