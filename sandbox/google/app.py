"""Loopback emulator of the Google APIs Recert reads and writes.

Admin SDK Directory (users, tokens), Reports (activities.list), IAM (service accounts and
their keys, disable/enable) and the OAuth token endpoint for the JWT-bearer grant, shaped
as the bundled discovery documents define them: `pageToken`/`nextPageToken`, `fields`
partial responses, Google's error bodies. Strict where Google is:
- Directory and Reports share one per-minute quota per project and impersonated user
  (developers.google.com/workspace/admin/directory/v1/limits, .../reports/v1/limits):
  Directory answers 403 `userRateLimitExceeded`, Reports 503; IAM throttles with 429.
- `users.get` of an address outside the domain is 403 (another Workspace) or 400 (no
  such domain), never 404 (GAM treats userNotFound, domainNotFound, forbidden and
  badRequest alike: GAM-team/GAM src/gam/gamlib/glgapi.py USER_GET_THROW_REASONS).
- `tokens.list` can fail for one user with 400, 403 or 404 (`break_tokens`), as GAM's
  throw reasons for it list (src/gam/__init__.py, printShowTokens).
- Reports rejects a bounded query (with `endTime`) starting 180 days back or earlier
  (googleapis/google-api-python-client#148: "Start time is after end time";
  Azure/Azure-Sentinel#9726 moved to 179 days); without `endTime` it clamps.
- `projects/-/serviceAccounts/X` answers 403 for an account that does not exist; a named
  project answers 404 (provider-facts.md, "Google").
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import json
import random
import re
import secrets
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import exceptions as auth_exceptions
from google.auth import jwt

from sandbox.google.fields import parse_fields, select
from sandbox.google.seed import CUSTOMER_ID, DOMAIN, RETENTION, Seed, rfc3339
from sandbox.google.tokenlog import DAY_MS, Actor, Event, TokenLog, UseSeries, ms
from sandbox.server import EmulatorApp, Request, Response

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # google-auth's fixed `aud`
SCOPE = "https://www.googleapis.com/auth/"
USERS_READ = (SCOPE + "admin.directory.user.readonly", SCOPE + "admin.directory.user")
USER_SECURITY = (SCOPE + "admin.directory.user.security",)
AUDIT_READ = (SCOPE + "admin.reports.audit.readonly",)
CLOUD = (SCOPE + "cloud-platform", SCOPE + "iam")
REPORT_APPLICATIONS = frozenset({"token", "admin", "login", "drive", "saml", "user_accounts"})
READER_EMAIL = "recert-reader@acme-ops.iam.gserviceaccount.com"
READER_PROJECT = "acme-ops"
CONSUMER_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
FILTER = re.compile(r"^(\w+)(==|<>|<=|>=|<|>)(.*)$")
Clock = Callable[[], float]


class Quota:
    """Queries per sliding window per (project, user): Admin SDK quotas are per minute."""

    def __init__(self, limit: int, window: float, clock: Clock) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.throttled = 0
        self.admitted: list[float] = []  # when each admitted query came (benchmarks, tests)

    def admit(self, key: str) -> bool:
        with self._lock:
            now = self.clock()
            seen = self._seen.setdefault(key, deque())
            while seen and seen[0] <= now - self.window:
                seen.popleft()
            if len(seen) >= self.limit:
                self.throttled += 1
                return False
            seen.append(now)
            self.admitted.append(now)
            return True


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
    def __init__(
        self,
        seed: Seed,
        *,
        quota_per_minute: int = 2400,
        quota_window: float = 60.0,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__()
        self.seed = seed
        self.now = seed.now
        self.quota = Quota(quota_per_minute, quota_window, clock)
        self.key_id = f"{secrets.randbits(160):040x}"
        self.issued: dict[str, tuple[frozenset[str], str | None, float]] = {}
        self.users: list[dict[str, Any]] = [self._user_json(u) for u in seed.users]
        self._user_index: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, dict[str, dict[str, Any]]] = {
            u.id: {cid: self._token_json(u.email, t) for cid, t in u.tokens.items()}
            for u in seed.users
        }
        self.token_faults: dict[str, int] = {}  # user id -> status tokens.list answers
        self.accounts: dict[str, list[dict[str, Any]]] = {p: [] for p in seed.projects}
        self.keys: dict[str, list[dict[str, Any]]] = {}
        for account in seed.service_accounts:
            self.accounts[account.project].append(self._account_json(account))
            self.keys[account.unique_id] = [
                self._key_json(account.project, account.email, k) for k in account.keys
            ]
        self.token_log = self._token_log()
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

    def _token_log(self) -> TokenLog:
        """Consents, and (on editions that log it) every day's app use."""
        series: list[UseSeries] = []
        events: list[Event] = []
        for user in self.seed.users:
            actor = Actor(user.id, user.email)
            for token in user.tokens.values():
                events.append(self._authorize(actor, token.client_id, token, token.consented_at))
                if token.last_used_at is None or self.seed.edition != "enterprise":
                    continue
                step = DAY_MS // token.uses_per_day
                series.append(
                    UseSeries(
                        actor,
                        token.client_id,
                        token.display_text,
                        ms(token.last_used_at),
                        step,
                        token.use_days * token.uses_per_day,
                    )
                )
        return TokenLog(series, events, CUSTOMER_ID)

    @staticmethod
    def _authorize(actor: Actor, client_id: str, token: Any, at: datetime) -> Event:
        return Event(
            ms(at),
            actor,
            "authorize",
            (
                ("client_id", client_id),
                ("app_name", token.display_text),
                ("scope", tuple(token.scopes)),
            ),
        )

    # ----- changes a test makes between runs ----------------------------------------------

    def consent(self, user_id: str, token: Any, at: datetime) -> None:
        """A user grants an app (tokens.list shows it; the log gets `authorize`)."""
        user = self._find_user(user_id)
        assert user is not None
        with self.lock:
            self.tokens.setdefault(user_id, {})[token.client_id] = self._token_json(
                user["primaryEmail"], token
            )
            actor = Actor(user_id, user["primaryEmail"])
            self.token_log.add(self._authorize(actor, token.client_id, token, at))

    def revoke(self, user_id: str, client_id: str, at: datetime) -> None:
        """A user (or an admin for them) revokes an app: the log gets `revoke`."""
        user = self._find_user(user_id)
        assert user is not None
        with self.lock:
            self.tokens.get(user_id, {}).pop(client_id, None)
            self._log_revoke(Actor(user_id, user["primaryEmail"]), client_id, at)

    def _log_revoke(self, actor: Actor, client_id: str, at: datetime) -> None:
        params = (("client_id", client_id), ("app_name", client_id))
        self.token_log.add(Event(ms(at), actor, "revoke", params))

    def advance(self, delta: timedelta, active_share: float = 0.0, seed: int = 0) -> None:
        """Time passes: `now` moves on, and `active_share` of the users' apps in use are
        used through the interval at their usual daily rate (Enterprise edition)."""
        start, self.now = self.now, self.now + delta
        if self.seed.edition != "enterprise" or not active_share:
            return
        rng = random.Random(seed)
        span = ms(self.now) - ms(start)
        with self.lock:
            for user in self.seed.users:
                actor = Actor(user.id, user.email)
                for token in user.tokens.values():
                    if token.last_used_at is None or rng.random() >= active_share:
                        continue
                    step = DAY_MS // token.uses_per_day
                    last = ms(self.now) - rng.randrange(min(step, span))
                    count = max(1, (last - ms(start)) // step)
                    self.token_log.series.append(
                        UseSeries(actor, token.client_id, token.display_text, last, step, count)
                    )

    def break_tokens(self, user_id: str, status: int) -> None:
        """tokens.list for this user answers `status` (400, 403 or 404) from now on."""
        self.token_faults[user_id] = status

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

    def remove_delegation(self, client_id: str, at: datetime) -> None:
        """An admin removes a domain-wide delegation client in the Admin console."""
        admin = self.seed.users[0]
        removal = {
            "type": "SECURITY_SETTINGS",
            "name": "REMOVE_API_CLIENT_ACCESS",
            "parameters": [{"name": "API_CLIENT_NAME", "value": client_id}],
        }
        with self.lock:
            self.admin_events.insert(0, self._activity("admin", at, admin, removal))

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
            "quota_per_minute": self.quota.limit,
            "quota_window_seconds": self.quota.window,
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

    throttle_reason = "userRateLimitExceeded"  # what `faults.throttle_next` answers on Directory

    def throttled(self, request: Request) -> Response:
        if request.path.startswith("/admin/reports/"):
            # Reports signals its quota with 503 (provider-facts.md; GAM maps a 503
            # "quota exceeded for the current request" to quotaExceeded).
            body = google_error(503, "quota exceeded for the current request", "UNAVAILABLE")
            return Response(503, body)
        if _is_admin_sdk(request.path):
            if self.throttle_reason == "429":
                body = google_error(429, "Too many requests.", "RESOURCE_EXHAUSTED")
                return Response(429, body)
            body = google_error(
                403,
                "Quota exceeded for quota metric 'Queries' and limit "
                "'Queries per minute per user'.",
                "PERMISSION_DENIED",
                self.throttle_reason,
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
            if _is_admin_sdk(request.path) and not self.quota.admit(self._quota_key(request)):
                return self.throttled(request)
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

    def _quota_key(self, request: Request) -> str:
        """Admin SDK quotas count per Cloud project and per impersonated user."""
        grant = self.issued.get(request.headers.get("authorization", "").removeprefix("Bearer "))
        return f"{READER_PROJECT}:{grant[1] if grant else ''}"

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
        key = request.params["userKey"]
        user = self._find_user(key)
        if user:
            return Response(200, user)
        return self._foreign_user(key) or self._user_not_found()

    @staticmethod
    def _foreign_user(key: str) -> Response | None:
        """Outside the domain: 403 for another Workspace, 400 for a consumer address."""
        domain = key.rpartition("@")[2].lower() if "@" in key else None
        if domain is None or domain == DOMAIN:
            return None
        if domain in CONSUMER_DOMAINS:
            return Response(400, google_error(400, "Bad Request", "INVALID_ARGUMENT", "badRequest"))
        message = "Not Authorized to access this resource/api"
        return Response(403, google_error(403, message, "PERMISSION_DENIED", "forbidden"))

    def _list_tokens(self, request: Request) -> Response:
        user = self._find_user(request.params["userKey"])
        if user is None or "id" not in user:
            return self._foreign_user(request.params["userKey"]) or self._user_not_found()
        fault = self.token_faults.get(user["id"])
        if fault == 400:
            return Response(400, google_error(400, "Invalid Input", "INVALID_ARGUMENT", "invalid"))
        if fault == 403:
            message = "Not Authorized to access this resource/api"
            return Response(403, google_error(403, message, "PERMISSION_DENIED", "forbidden"))
        if fault == 404:
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
        actor = Actor(user["id"], user["primaryEmail"])
        self._log_revoke(actor, request.params["clientId"], self.now)
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
        oldest = self.now - RETENTION
        if (request.arg("endTime") and start <= oldest) or start > end:
            return self._bad_request(request, "Invalid request: Start time is after end time.")
        start = max(start, oldest)
        keep = self._event_filter(request)
        if app == "token":
            return self._token_page(request, ms(start), ms(end), size, keep)
        source = self.admin_events if app == "admin" else []
        items = [
            item
            for item in source
            if start <= self._time(item["id"]["time"], start) <= end
            and any(keep(e["name"], _actor(item), _params(e)) for e in item["events"])
        ]
        paged = self._page(request, items, size)
        if isinstance(paged, Response):
            return paged
        chunk, following = paged
        return self._activities_body(chunk, following)

    @staticmethod
    def _activities_body(items: list[Any], following: str | None) -> Response:
        body: dict[str, Any] = {"kind": "admin#reports#activities", "etag": '"activities"'}
        if items:
            body["items"] = items
        if following:
            body["nextPageToken"] = following
        return Response(200, body)

    def _token_page(
        self, request: Request, start: int, end: int, size: int, keep: Callable[..., bool]
    ) -> Response:
        cursor: tuple[int, int] | None = None
        token = request.arg("pageToken")
        if token:
            try:
                kind, moment, series = base64.urlsafe_b64decode(token).decode().split(":")
                if kind != "c" or self.faults.expire_page_tokens:
                    raise ValueError(kind)
                cursor = (int(moment), int(series))
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return self._bad_request(request, "Invalid Input")
        items, following = self.token_log.page(start, end, cursor, size, keep)
        encoded = (
            base64.urlsafe_b64encode(f"c:{following[0]}:{following[1]}".encode()).decode()
            if following
            else None
        )
        return self._activities_body(items, encoded)

    def _event_filter(self, request: Request) -> Callable[..., bool]:
        """`eventName`, `userKey` and `filters` (comma-separated `param<op>value`, ANDed; a
        parameter given twice keeps its last value: admin.reports_v1.json `filters`)."""
        wanted = request.arg("eventName")
        user_key = request.params["userKey"]
        conditions: dict[str, tuple[str, str]] = {}
        for part in (request.arg("filters") or "").split(","):
            match = FILTER.match(part.strip())
            if match:
                conditions[match.group(1)] = (match.group(2), match.group(3))

        def keep(name: str, actor: Any, parameters: dict[str, Any]) -> bool:
            if wanted and name != wanted:
                return False
            if user_key != "all" and user_key not in (actor.id, actor.email):
                return False
            for parameter, (operator, value) in conditions.items():
                if parameter not in parameters:
                    return False
                if not _compare(str(parameters[parameter]), operator, value):
                    return False
            return True

        return keep

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
        if request.params["project"] == "-":
            # The wildcard cannot tell "missing" from "not yours" (provider-facts.md).
            permission = "iam.serviceAccounts.get"
            message = f"Permission '{permission}' denied on resource (or it may not exist)."
            return Response(403, google_error(403, message, "PERMISSION_DENIED"))
        return Response(404, google_error(404, f"Unknown service account: {name}", "NOT_FOUND"))

    def delete_account(self, email: str) -> None:
        """The account is deleted (by someone outside Recert)."""
        with self.lock:
            for accounts in self.accounts.values():
                accounts[:] = [a for a in accounts if a.get("email") != email]

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


def _actor(item: dict[str, Any]) -> Actor:
    actor = item.get("actor", {})
    return Actor(str(actor.get("profileId", "")), str(actor.get("email", "")))


def _params(event: dict[str, Any]) -> dict[str, Any]:
    return {p["name"]: p.get("value", p.get("multiValue")) for p in event.get("parameters", [])}


def _compare(actual: str, operator: str, wanted: str) -> bool:
    if operator == "==":
        return actual == wanted
    if operator == "<>":
        return actual != wanted
    return {"<": actual < wanted, "<=": actual <= wanted, ">": actual > wanted}.get(
        operator, actual >= wanted
    )
