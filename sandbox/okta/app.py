"""The Okta org emulator: management API paths the connector uses, OAuth 2.0 for Okta, rate
limits, Link-header paging and Okta's error bodies (see ../shared/specs/okta)."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sandbox.okta.seed import PLACEHOLDER_BASE, OrgData, okta_time
from sandbox.server import EmulatorApp, Request, Response

Clock = Callable[[], float]

# Per-minute limits of the buckets the connector touches (developer.okta.com rl-global-mgmt,
# One App / Enterprise / Workforce figures).
REALISTIC_LIMITS = {
    "apps": 100,
    "app_by_id": 600,
    "users": 600,
    "user_by_id": 2000,
    "logs": 120,
    "api_tokens": 600,
    "oauth2": 600,
}


def okta_error(status: int, code: str, summary: str, causes: list[str] | None = None) -> Response:
    body = {
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": code,
        "errorId": "oae" + secrets.token_urlsafe(16),
        "errorCauses": [{"errorSummary": cause} for cause in causes or []],
    }
    return Response(status, body)


def not_found(object_id: str, type_name: str) -> Response:
    return okta_error(404, "E0000007", f"Not found: Resource not found: {object_id} ({type_name})")


@dataclass
class ServiceClient:
    """An API service app allowed to use OAuth 2.0 for Okta with private_key_jwt."""

    client_id: str
    key_id: str
    private_key_pem: str
    scopes: frozenset[str]


@dataclass
class _Bucket:
    limit: int
    window: int = -1
    used: int = 0


@dataclass
class _Caller:
    role: str  # "read" | "write" for SSWS, "oauth" for bearer tokens
    scopes: frozenset[str] = field(default_factory=frozenset)


def _new_service_client(client_id: str, scopes: frozenset[str]) -> ServiceClient:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return ServiceClient(client_id, "kid-" + client_id[-6:], pem, scopes)


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class OktaEmulator(EmulatorApp):
    """An Okta org held in memory. State changes (lifecycle, grants) persist across calls."""

    def __init__(
        self,
        org: OrgData,
        *,
        clock: Clock = time.time,
        limits: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.org = org
        self.truth = org.truth
        self.clock = clock
        self.buckets = {
            name: _Bucket(limit) for name, limit in (limits or REALISTIC_LIMITS).items()
        }
        self.read_token = "00read" + secrets.token_urlsafe(24)
        self.write_token = "00write" + secrets.token_urlsafe(24)
        self.service_client = _new_service_client(
            "0oaRecertSvc01",
            frozenset(
                {
                    "okta.apps.read",
                    "okta.users.read",
                    "okta.logs.read",
                    "okta.appGrants.read",
                    "okta.apiTokens.read",
                    "okta.apps.manage",
                    "okta.appGrants.manage",
                }
            ),
        )
        self.access_tokens: dict[str, tuple[frozenset[str], float]] = {}
        self.seen_jti: set[str] = set()
        self.base_url = ""  # learned from the first request
        self._register_routes()

    # -- plumbing ---------------------------------------------------------------------------
    def _register_routes(self) -> None:
        self.route("POST", "/oauth2/v1/token")(self.token)
        self.route("GET", "/api/v1/apps")(self.list_apps)
        self.route("GET", "/api/v1/apps/{app_id}")(self.get_app)
        self.route("POST", "/api/v1/apps/{app_id}/lifecycle/{action}")(self.lifecycle)
        self.route("GET", "/api/v1/apps/{app_id}/grants")(self.list_grants)
        self.route("POST", "/api/v1/apps/{app_id}/grants")(self.create_grant)
        self.route("GET", "/api/v1/apps/{app_id}/grants/{grant_id}")(self.get_grant)
        self.route("DELETE", "/api/v1/apps/{app_id}/grants/{grant_id}")(self.delete_grant)
        self.route("GET", "/api/v1/api-tokens")(self.list_api_tokens)
        self.route("GET", "/api/v1/api-tokens/{token_id}")(self.get_api_token)
        self.route("GET", "/api/v1/users")(self.list_users)
        self.route("GET", "/api/v1/users/{user_id}")(self.get_user)
        self.route("GET", "/api/v1/logs")(self.list_logs)

    def dispatch(self, request: Request) -> Response:
        if self.base_url != request.base_url:
            self._adopt_base_url(request.base_url)
        bucket = self._bucket_name(request)
        if self._over_limit(bucket):
            return self._too_many(request)
        if request.path.startswith("/api/"):
            denied = self._authorize(request)
            if denied:
                return denied
        return super().dispatch(request)

    def _adopt_base_url(self, base_url: str) -> None:
        """Seeded links and grant issuers name the org URL, known once the server serves."""
        old = self.base_url or PLACEHOLDER_BASE
        for name in ("users", "apps", "grants", "api_tokens"):
            text = json.dumps(getattr(self.org, name)).replace(old, base_url)
            setattr(self.org, name, json.loads(text))
        self.base_url = base_url

    def _bucket_name(self, request: Request) -> str:
        path = request.path
        if path.startswith("/oauth2/"):
            return "oauth2"
        if re.fullmatch(r"/api/v1/apps/[^/]+", path):
            return "app_by_id"
        if path.startswith("/api/v1/apps"):
            return "apps"
        if re.fullmatch(r"/api/v1/users/[^/]+", path):
            return "user_by_id"
        if path.startswith("/api/v1/users"):
            return "users"
        if path.startswith("/api/v1/logs"):
            return "logs"
        return "api_tokens"

    def _window(self) -> int:
        return int(self.clock() // 60)

    def _over_limit(self, name: str) -> bool:
        bucket = self.buckets[name]
        with self.lock:
            if bucket.window != self._window():
                bucket.window, bucket.used = self._window(), 0
            if bucket.used >= bucket.limit:
                return True
            bucket.used += 1
            return False

    def _too_many(self, request: Request) -> Response:
        return okta_error(429, "E0000047", "API call exceeded rate limit due to too many requests.")

    def throttled(self, request: Request) -> Response:
        bucket = self.buckets[self._bucket_name(request)]
        with self.lock:
            bucket.window, bucket.used = self._window(), bucket.limit
        return self._too_many(request)

    def server_error(self, request: Request) -> Response:
        return okta_error(503, "E0000010", "Service is temporarily unavailable.")

    def not_found(self, request: Request) -> Response:
        return okta_error(404, "E0000022", "The endpoint does not support the provided HTTP method")

    def not_allowed(self, request: Request) -> Response:
        return okta_error(405, "E0000022", "The endpoint does not support the provided HTTP method")

    def decorate(self, request: Request, response: Response) -> Response:
        bucket = self.buckets[self._bucket_name(request)]
        now = self.clock()
        with self.lock:
            remaining = (
                max(0, bucket.limit - bucket.used)
                if bucket.window == self._window()
                else bucket.limit
            )
        response.headers.setdefault("Date", formatdate(now, usegmt=True))
        response.headers["X-Rate-Limit-Limit"] = str(bucket.limit)
        response.headers["X-Rate-Limit-Remaining"] = str(remaining)
        response.headers["X-Rate-Limit-Reset"] = str((int(now // 60) + 1) * 60)
        response.headers["X-Okta-Request-Id"] = secrets.token_hex(16)
        return response

    # -- auth -------------------------------------------------------------------------------
    def _caller(self, request: Request) -> _Caller | None:
        header = request.headers.get("authorization", "")
        match = re.fullmatch(r"SSWS ?(\S+)", header)
        if match:
            token = match.group(1)
            if secrets.compare_digest(token, self.read_token):
                return _Caller("read")
            if secrets.compare_digest(token, self.write_token):
                return _Caller("write")
            return None
        match = re.fullmatch(r"Bearer (\S+)", header)
        if match and match.group(1) in self.access_tokens:
            scopes, expires = self.access_tokens[match.group(1)]
            if expires > self.clock():
                return _Caller("oauth", scopes)
        return None

    def _authorize(self, request: Request) -> Response | None:
        caller = self._caller(request)
        if caller is None:
            return okta_error(401, "E0000011", "Invalid token provided")
        if caller.role == "read" and request.method != "GET":
            return self._forbidden()
        if caller.role == "oauth":
            needed = self._required_scope(request)
            manage = needed.replace(".read", ".manage")
            if needed not in caller.scopes and manage not in caller.scopes:
                response = self._forbidden()
                response.headers["WWW-Authenticate"] = (
                    f'Bearer authorization_uri="{self.base_url}/oauth2/v1/authorize", '
                    f'realm="{self.base_url}", scope="{needed}", error="insufficient_scope", '
                    'error_description="The access token provided does not contain the '
                    'required scopes.", resource="' + request.path + '"'
                )
                return response
        return None

    def _forbidden(self) -> Response:
        return okta_error(
            403, "E0000006", "You do not have permission to perform the requested action"
        )

    def _required_scope(self, request: Request) -> str:
        path, write = request.path, request.method != "GET"
        if "/grants" in path:
            family = "okta.appGrants"
        elif path.startswith("/api/v1/apps"):
            family = "okta.apps"
        elif path.startswith("/api/v1/users"):
            family = "okta.users"
        elif path.startswith("/api/v1/logs"):
            family = "okta.logs"
        else:
            family = "okta.apiTokens"
        return f"{family}.{'manage' if write else 'read'}"

    def token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in _parse_form(request.body).items()}
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "grant_type is not supported.")
        if form.get("client_assertion_type") != (
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ):
            return _oauth_error(401, "invalid_client", "Client authentication failed.")
        problem = self._check_assertion(form.get("client_assertion", ""))
        if problem:
            return _oauth_error(401, "invalid_client", problem)
        scopes = frozenset(form.get("scope", "").split())
        if not scopes or not scopes <= self.service_client.scopes:
            return _oauth_error(
                400,
                "invalid_scope",
                "The authorization server resource does not have any "
                "configured default scopes, 'scope' must be provided."
                if not scopes
                else "One or more scopes are not configured for the client.",
            )
        access_token = "eyJ" + secrets.token_urlsafe(32)
        self.access_tokens[access_token] = (scopes, self.clock() + 3600)
        return Response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": 3600,
                "access_token": access_token,
                "scope": " ".join(sorted(scopes)),
            },
            {"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    def _check_assertion(self, assertion: str) -> str | None:
        try:
            header_b64, payload_b64, signature_b64 = assertion.split(".")
            header = json.loads(_b64decode(header_b64))
            claims = json.loads(_b64decode(payload_b64))
            signature = _b64decode(signature_b64)
        except ValueError:
            return "The client_assertion is not a valid JWT."
        client = self.service_client
        if header.get("kid") not in (None, client.key_id):
            return "The client_assertion key id is not registered for the client."
        if header.get("alg") != "RS256":
            return "The client_assertion signature algorithm is not supported."
        if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
            return "The client_assertion token has an invalid issuer or subject."
        public_key = serialization.load_pem_private_key(
            client.private_key_pem.encode(), password=None
        ).public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)
        try:
            public_key.verify(
                signature,
                f"{header_b64}.{payload_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except Exception:
            return "The client_assertion signature is invalid."
        if claims.get("aud") != f"{self.base_url}/oauth2/v1/token":
            return "The audience claim for client_assertion must be the endpoint invoked."
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] <= self.clock():
            return "The client_assertion token is expired."
        jti = str(claims.get("jti", ""))
        if not jti or jti in self.seen_jti:
            return "The client_assertion token has already been used."
        self.seen_jti.add(jti)
        return None

    # -- paging -----------------------------------------------------------------------------
    def _page(
        self,
        request: Request,
        items: list[tuple[str, dict[str, Any]]],
        *,
        max_limit: int,
        default_limit: int,
    ) -> Response:
        """One page after the `after` cursor, with Okta's `Link` header (self, then next)."""
        after = request.arg("after")
        if after is not None and self.faults.expire_page_tokens:
            return okta_error(
                400,
                "E0000001",
                "Api validation failed: after",
                ["after: The pagination cursor is invalid or has expired."],
            )
        limit = _int_arg(request, "limit", default_limit, max_limit)
        if limit is None:
            return okta_error(
                400, "E0000001", "Api validation failed: limit", ["limit: must be a number"]
            )
        start = 0
        if after is not None:
            keys = [key for key, _ in items]
            start = next((i + 1 for i, key in enumerate(keys) if key == after), len(keys))
        chunk = items[start : start + limit]
        query = {k: v[0] for k, v in request.query.items() if k != "after"}
        links = [f'<{self.base_url}{request.path}?{urlencode(query)}>; rel="self"']
        if start + limit < len(items) and chunk:
            next_query = {**query, "after": chunk[-1][0], "limit": str(limit)}
            links.append(f'<{self.base_url}{request.path}?{urlencode(next_query)}>; rel="next"')
        return Response(200, [item for _, item in chunk], {"Link": ", ".join(links)})

    # -- apps -------------------------------------------------------------------------------
    def list_apps(self, request: Request) -> Response:
        apps = list(self.org.apps.items())
        expression = request.arg("filter")
        if expression:
            predicate = parse_filter(expression)
            if predicate is None:
                return okta_error(400, "E0000031", "Invalid search criteria.")
            apps = [(key, app) for key, app in apps if predicate(app)]
        prefix = (request.arg("q") or "").lower()
        if prefix:
            apps = [
                (key, app)
                for key, app in apps
                if str(app.get("name", "")).lower().startswith(prefix)
                or str(app.get("label", "")).lower().startswith(prefix)
            ]
        return self._page(request, apps, max_limit=200, default_limit=200)

    def _app(self, app_id: str) -> dict[str, Any] | None:
        app = self.org.apps.get(app_id)
        return app if app is not None and app.get("id") == app_id else None

    def get_app(self, request: Request) -> Response:
        app = self._app(request.params["app_id"])
        if app is None:
            return not_found(request.params["app_id"], "AppInstance")
        return Response(200, app)

    def lifecycle(self, request: Request) -> Response:
        app_id, action = request.params["app_id"], request.params["action"]
        app = self._app(app_id)
        if app is None:
            return not_found(app_id, "AppInstance")
        if action not in ("activate", "deactivate"):
            return self.not_found(request)
        app["status"] = "ACTIVE" if action == "activate" else "INACTIVE"
        app["lastUpdated"] = okta_time(datetime.fromtimestamp(self.clock(), UTC))
        return Response(200, {})

    def list_grants(self, request: Request) -> Response:
        app_id = request.params["app_id"]
        if self._app(app_id) is None:
            return not_found(app_id, "AppInstance")
        return Response(200, list(self.org.grants.get(app_id, {}).values()))

    def get_grant(self, request: Request) -> Response:
        grant = self.org.grants.get(request.params["app_id"], {}).get(request.params["grant_id"])
        if grant is None:
            return not_found(request.params["grant_id"], "OAuth2ScopeConsentGrant")
        return Response(200, grant)

    def create_grant(self, request: Request) -> Response:
        app_id = request.params["app_id"]
        app = self._app(app_id)
        if app is None:
            return not_found(app_id, "AppInstance")
        try:
            body = request.json()
        except ValueError:
            return okta_error(400, "E0000003", "The request body was not well-formed.")
        if not isinstance(body, dict) or not body.get("issuer") or not body.get("scopeId"):
            return okta_error(
                400,
                "E0000001",
                "Api validation failed: scopeId",
                ["scopeId: The field cannot be left blank"],
            )
        grants = self.org.grants.setdefault(app_id, {})
        existing = [g for g in grants.values() if g["scopeId"] == body["scopeId"]]
        if existing:
            return Response(200, existing[0])
        grant_id = "oag" + secrets.token_hex(8)
        at = okta_time(datetime.fromtimestamp(self.clock(), UTC))
        grants[grant_id] = {
            "id": grant_id,
            "status": "ACTIVE",
            "created": at,
            "createdBy": {"id": "0oaRecertSvc01", "type": "Client"},
            "lastUpdated": at,
            "issuer": body["issuer"],
            "clientId": app["credentials"]["oauthClient"]["client_id"],
            "scopeId": body["scopeId"],
            "source": "ADMIN",
            "_links": {
                "app": {"href": f"{self.base_url}/api/v1/apps/{app_id}"},
                "self": {"href": f"{self.base_url}/api/v1/apps/{app_id}/grants/{grant_id}"},
            },
        }
        return Response(200, grants[grant_id])

    def delete_grant(self, request: Request) -> Response:
        grants = self.org.grants.get(request.params["app_id"], {})
        if grants.pop(request.params["grant_id"], None) is None:
            return not_found(request.params["grant_id"], "OAuth2ScopeConsentGrant")
        return Response(204)

    # -- API tokens, users, logs ------------------------------------------------------------
    def list_api_tokens(self, request: Request) -> Response:
        return Response(200, list(self.org.api_tokens.values()))

    def get_api_token(self, request: Request) -> Response:
        token = self.org.api_tokens.get(request.params["token_id"])
        if token is None:
            return not_found(request.params["token_id"], "ApiToken")
        return Response(200, token)

    def list_users(self, request: Request) -> Response:
        users = list(self.org.users.items())
        expression = request.arg("filter")
        predicate = parse_filter(expression) if expression else None
        if expression and predicate is None:
            return okta_error(400, "E0000031", "Invalid search criteria.")
        if predicate is not None:
            users = [(key, user) for key, user in users if predicate(user)]
        else:  # Okta omits DEPROVISIONED users unless a filter asks for them
            users = [(key, user) for key, user in users if user["status"] != "DEPROVISIONED"]
        return self._page(request, users, max_limit=200, default_limit=200)

    def get_user(self, request: Request) -> Response:
        wanted = request.params["user_id"]
        for user in self.org.users.values():
            if wanted in (user["id"], user["profile"]["login"]):
                return Response(200, user, {"ETag": f'W/"{user["lastUpdated"]}"'})
        return not_found(wanted, "User")

    def list_logs(self, request: Request) -> Response:
        now = datetime.fromtimestamp(self.clock(), UTC)
        until = request.arg("until") or okta_time(now)
        since = request.arg("since")
        if since is None:
            since = okta_time(datetime.fromtimestamp(_parse_time(until) - 7 * 86400, UTC))
        try:
            low, high = _parse_time(since), _parse_time(until)
        except ValueError:
            return okta_error(
                400,
                "E0000001",
                "Api validation failed: since",
                ["since: The date format is invalid."],
            )
        if request.arg("after") is None and low < self.clock() - 90 * 86400 - 60:
            return okta_error(
                400,
                "E0000001",
                "Api validation failed: since",
                ["since: The since parameter must be within the last 90 days."],
            )
        predicate = parse_filter(request.arg("filter") or "")
        events = [
            (f"{index:08d}", event)
            for index, event in enumerate(self.org.logs)
            if low <= _parse_time(event["published"]) < high
            and (predicate is None or predicate(event))
        ]
        if request.arg("sortOrder") == "DESCENDING":
            events.reverse()
        return self._page(request, events, max_limit=1000, default_limit=100)

    # -- config for Recert ------------------------------------------------------------------
    def tenant_table(
        self,
        name: str,
        url: str,
        ca_bundle: Path,
        secrets_dir: Path,
        *,
        auth: str = "ssws",
    ) -> dict[str, Any]:
        """The `[[tenants]]` table pointing Recert at this emulator (secrets go to files)."""
        secrets_dir.mkdir(parents=True, exist_ok=True)
        table: dict[str, Any] = {
            "name": name,
            "kind": "okta",
            "org_url": url,
            "ca_bundle": str(ca_bundle),
        }
        write_file = secrets_dir / f"{name}-okta-write-token"
        write_file.write_text(self.write_token)
        if auth == "private_key_jwt":
            key_file = secrets_dir / f"{name}-okta-service-key.pem"
            key_file.write_text(self.service_client.private_key_pem)
            table.update(
                client_id=self.service_client.client_id,
                key_id=self.service_client.key_id,
                private_key_file=str(key_file),
                scopes=sorted(s for s in self.service_client.scopes if s.endswith(".read")),
            )
        else:
            read_file = secrets_dir / f"{name}-okta-read-token"
            read_file.write_text(self.read_token)
            table["api_token_file"] = str(read_file)
        table["enforce"] = {"api_token_file": str(write_file)}
        return table


def _oauth_error(status: int, error: str, description: str) -> Response:
    return Response(status, {"error": error, "error_description": description})


def _parse_form(body: bytes) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    return parse_qs(body.decode(errors="replace"), keep_blank_values=True)


def _int_arg(request: Request, name: str, default: int, maximum: int) -> int | None:
    raw = request.arg(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return default if value < 0 else min(value, maximum)


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


_CLAUSE = re.compile(r'\s*([\w.]+)\s+(eq|sw)\s+"([^"]*)"\s*', re.IGNORECASE)


def parse_filter(expression: str) -> Callable[[dict[str, Any]], bool] | None:
    """`a eq "x" or b eq "y"` / `... and ...` (one connective kind) as a predicate."""
    if not expression.strip():
        return None
    connective = " and " if re.search(r"\sand\s", expression, re.IGNORECASE) else " or "
    clauses = []
    for part in re.split(connective, expression, flags=re.IGNORECASE):
        match = _CLAUSE.fullmatch(part)
        if not match:
            return None
        clauses.append((match.group(1), match.group(2).lower(), match.group(3)))

    def test(record: dict[str, Any]) -> bool:
        results = []
        for path, operator, value in clauses:
            actual: Any = record
            for step in path.split("."):
                actual = actual.get(step) if isinstance(actual, dict) else None
            text = "" if actual is None else str(actual)
            results.append(text == value if operator == "eq" else text.startswith(value))
        return all(results) if connective == " and " else any(results)

    return test
