"""The Okta org emulator: the management API paths Recert uses, Okta for AI Agents, OAuth 2.0
for Okta with DPoP, per-minute rate-limit buckets, Link-header paging and Okta's error
bodies. Each behaviour names where it is documented (../shared/specs/okta or a
developer.okta.com page)."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sandbox.okta import agents_api
from sandbox.okta.auth import (
    READ_ONLY_ADMIN,
    SUPER_ADMIN,
    Caller,
    OktaAuth,
    ServiceClient,
    new_service_client,
)
from sandbox.okta.errors import forbidden, not_found, okta_error, validation
from sandbox.okta.seed import PLACEHOLDER_BASE, RETENTION, OrgData, okta_time
from sandbox.okta.syslog import SSO
from sandbox.server import EmulatorApp, Request, Response

Clock = Callable[[], float]

# Per-minute limits of the buckets (developer.okta.com/docs/reference/rl-global-mgmt, One
# App / Enterprise / Workforce figures). Groups and AI agents are not listed there: assumed.
REALISTIC_LIMITS = {
    "apps": 100,
    "app_by_id": 600,
    "users": 600,
    "user_by_id": 2000,
    "groups": 500,
    "logs": 120,
    "api_tokens": 600,
    "ai_agents": 600,
    "oauth2": 600,
}
SERVICE_SCOPES = frozenset(
    {
        "okta.apps.read",
        "okta.users.read",
        "okta.logs.read",
        "okta.appGrants.read",
        "okta.apiTokens.read",
        "okta.groups.read",
        "okta.aiAgents.read",
        "okta.apps.manage",
        "okta.appGrants.manage",
        "okta.aiAgents.manage",
    }
)
LOG_SINCE_LIMIT = 180 * 86_400  # `since` accepted up to 180 days back (provider-facts.md)
# Events a query may scan before Okta's 30 s query timeout answers 500 E0000009
# (provider-facts.md): a model of cost, calibrated so a quarter of a busy org times out.
SCAN_BUDGET = 250_000


@dataclass
class _Bucket:
    limit: int
    window: int = -1
    used: int = 0


class OktaEmulator(EmulatorApp):
    """An Okta org held in memory. State changes (lifecycle, grants) persist across calls."""

    def __init__(
        self,
        org: OrgData,
        *,
        clock: Clock = time.time,
        limits: dict[str, int] | None = None,
        window: int = 60,
        scan_budget: int = SCAN_BUDGET,
    ) -> None:
        super().__init__()
        self.org = org
        self.truth = org.truth
        self.clock = clock
        self.window = window  # seconds per rate-limit window (60; benchmarks scale it)
        self.scan_budget = scan_budget
        self.buckets = {
            name: _Bucket(limit) for name, limit in {**REALISTIC_LIMITS, **(limits or {})}.items()
        }
        self.read_token = "00read" + secrets.token_urlsafe(24)
        self.write_token = "00write" + secrets.token_urlsafe(24)
        self.readonly_token = "00ro" + secrets.token_urlsafe(24)
        self.auth = OktaAuth(
            clock=clock,
            service_client=new_service_client("0oaRecertSvc01", SERVICE_SCOPES),
            ssws_tokens={
                self.read_token: SUPER_ADMIN,
                self.write_token: SUPER_ADMIN,
                self.readonly_token: READ_ONLY_ADMIN,
            },
        )
        self.ai_agents_subscribed = True
        self.agent_owners = "embedded"  # | "endpoint" | "refused" (see agents_api)
        self.expire_cursors = 0  # the next N `after` cursors are answered as expired
        self.served: list[tuple[float, str, int]] = []  # (clock, bucket, status)
        self.operations: dict[str, dict[str, Any]] = {}
        self.base_url = ""  # learned from the first request
        active = [u["id"] for u in org.users.values() if u["status"] == "ACTIVE"]
        self._sso_users = active or list(org.users)
        self._sso_apps = sorted(self.truth.other_apps) or list(org.apps)
        org.log.render_event = self._render_event
        self._register_routes()

    @property
    def service_client(self) -> ServiceClient:
        return self.auth.service_client

    @service_client.setter
    def service_client(self, client: ServiceClient) -> None:
        self.auth.service_client = client

    # -- plumbing ---------------------------------------------------------------------------
    def _register_routes(self) -> None:
        self.route("POST", "/oauth2/v1/token")(self.auth.token)
        self.route("GET", "/api/v1/apps")(self.list_apps)
        self.route("GET", "/api/v1/apps/{app_id}")(self.get_app)
        self.route("POST", "/api/v1/apps/{app_id}/lifecycle/{action}")(self.lifecycle)
        self.route("GET", "/api/v1/apps/{app_id}/grants")(self.list_grants)
        self.route("POST", "/api/v1/apps/{app_id}/grants")(self.create_grant)
        self.route("GET", "/api/v1/apps/{app_id}/grants/{grant_id}")(self.get_grant)
        self.route("DELETE", "/api/v1/apps/{app_id}/grants/{grant_id}")(self.delete_grant)
        self.route("GET", "/api/v1/apps/{app_id}/credentials/secrets")(self.list_secrets)
        self.route("GET", "/api/v1/apps/{app_id}/credentials/jwks")(self.list_app_keys)
        self.route("GET", "/api/v1/api-tokens")(self.list_api_tokens)
        self.route("GET", "/api/v1/api-tokens/{token_id}")(self.get_api_token)
        self.route("GET", "/api/v1/users")(self.list_users)
        self.route("GET", "/api/v1/users/{user_id}")(self.get_user)
        self.route("GET", "/api/v1/groups/{group_id}")(self.get_group)
        self.route("GET", "/api/v1/groups/{group_id}/users")(self.list_group_users)
        self.route("GET", "/api/v1/logs")(self.list_logs)
        agents_api.register(self)

    def dispatch(self, request: Request) -> Response:
        if self.base_url != request.base_url:
            self._adopt_base_url(request.base_url)
        bucket = self.bucket_name(request)
        if self._over_limit(bucket):
            return self._too_many(request)
        # Management APIs need a credential; the authorization servers and the hosted
        # sign-in page authenticate in their own ways.
        if request.path.startswith(("/api/", "/workload-principals/")):
            caller = self.auth.caller(request)
            if isinstance(caller, Response):
                return caller
            denied = self._authorize(request, caller)
            if denied:
                return denied
        return super().dispatch(request)

    def _adopt_base_url(self, base_url: str) -> None:
        """Seeded links and grant issuers name the org URL, known once the server serves."""
        import json

        old = self.base_url or PLACEHOLDER_BASE
        for name in (
            "users",
            "groups",
            "apps",
            "grants",
            "secrets",
            "app_keys",
            "api_tokens",
            "agents",
            "agent_keys",
            "agent_connections",
        ):
            held = getattr(self.org, name)  # refreshed in place: tests hold references
            text = json.dumps(held).replace(old, base_url)
            held.clear()
            held.update(json.loads(text))
        self.base_url = base_url
        self.auth.base_url = base_url

    def bucket_name(self, request: Request) -> str:
        """The bucket a request counts against (rl-global-mgmt)."""
        path = request.path
        if path.startswith("/oauth2/"):
            return "oauth2"
        if re.fullmatch(r"/api/v1/apps/[^/]+", path) and request.method != "POST":
            return "app_by_id"
        if path.startswith("/api/v1/apps"):
            return "apps"  # grants, secrets and keys of each app included
        if re.fullmatch(r"/api/v1/users/[^/]+", path):
            return "user_by_id"
        for prefix, name in (
            ("/api/v1/users", "users"),
            ("/api/v1/groups", "groups"),
            ("/api/v1/logs", "logs"),
            ("/api/v1/api-tokens", "api_tokens"),
        ):
            if path.startswith(prefix):
                return name
        return "ai_agents"

    def _window(self) -> int:
        return int(self.clock() // self.window)

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
        bucket = self.buckets[self.bucket_name(request)]
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
        """Rate-limit headers on every answer, as in every recording (wire-examples)."""
        name = self.bucket_name(request)
        bucket = self.buckets[name]
        now = self.clock()
        with self.lock:
            remaining = (
                max(0, bucket.limit - bucket.used)
                if bucket.window == self._window()
                else bucket.limit
            )
            self.served.append((now, name, response.status))
        response.headers.setdefault("Date", formatdate(now, usegmt=True))
        response.headers["X-Rate-Limit-Limit"] = str(bucket.limit)
        response.headers["X-Rate-Limit-Remaining"] = str(remaining)
        response.headers["X-Rate-Limit-Reset"] = str((self._window() + 1) * self.window)
        response.headers["X-Okta-Request-Id"] = secrets.token_hex(16)
        return response

    # -- permissions ------------------------------------------------------------------------
    def _authorize(self, request: Request, caller: Caller) -> Response | None:
        if request.path.startswith("/workload-principals/") and not self.ai_agents_subscribed:
            # Okta for AI Agents is a subscription (developer.okta.com/docs/api/secures-ai):
            # without it the feature is refused like any unlicensed one.
            return okta_error(
                401,
                "E0000015",
                "You do not have permission to access the feature you are requesting",
            )
        write = request.method != "GET"
        if caller.role == READ_ONLY_ADMIN and (
            write or request.path.startswith(("/api/v1/api-tokens", "/workload-principals/"))
        ):
            # API tokens are listed to a Super Administrator only (provider-facts.md) and
            # AI agents need SUPER_ADMIN (secures-ai reference, "Admin roles").
            return forbidden()
        if caller.scopes is None:
            return None
        needed = self._required_scope(request)
        manage = needed.replace(".read", ".manage")
        if needed in caller.scopes or manage in caller.scopes:
            return None
        response = forbidden()
        response.headers["WWW-Authenticate"] = (
            f'Bearer authorization_uri="{self.base_url}/oauth2/v1/authorize", '
            f'realm="{self.base_url}", scope="{needed}", error="insufficient_scope", '
            'error_description="The access token provided does not contain the '
            'required scopes.", resource="' + request.path + '"'
        )
        return response

    def _required_scope(self, request: Request) -> str:
        """The scope each endpoint lists under `security` (management spec, SDK api.yaml)."""
        path, write = request.path, request.method != "GET"
        if path.startswith("/workload-principals/"):
            family = "okta.aiAgents"
        elif "/grants" in path:
            family = "okta.appGrants"
        elif path.startswith("/api/v1/apps"):
            family = "okta.apps"
        elif path.startswith("/api/v1/users"):
            family = "okta.users"
        elif path.startswith("/api/v1/groups"):
            family = "okta.groups"
        elif path.startswith("/api/v1/logs"):
            family = "okta.logs"
        else:
            family = "okta.apiTokens"
        return f"{family}.{'manage' if write else 'read'}"

    # -- paging -----------------------------------------------------------------------------
    def page(
        self,
        request: Request,
        items: list[tuple[str, dict[str, Any]]],
        *,
        max_limit: int,
        default_limit: int,
        envelope: bool = False,
    ) -> Response:
        """One page after the `after` cursor, with Okta's `Link` header (self, then next).

        `envelope`: the newer APIs answer `{"data": [...], "_links": {self, next}}` and put
        the same links in the header (SDK api.yaml ListAIAgentsResponse, ManagedConnectionList).
        """
        after = request.arg("after")
        if after is not None and self._cursor_expired():
            # An expired cursor (provider-facts.md, issue #16 item 5).
            return validation("after", "The pagination cursor is invalid or has expired.")
        limit = _int_arg(request, "limit", default_limit, max_limit)
        if limit is None:
            return validation("limit", "must be a number")
        start = 0
        if after is not None:
            keys = [key for key, _ in items]
            start = next((i + 1 for i, key in enumerate(keys) if key == after), len(keys))
        chunk = items[start : start + limit]
        query = {k: v[0] for k, v in request.query.items() if k != "after"}
        self_url = f"{self.base_url}{request.path}?{urlencode(query)}"
        next_url = None
        if start + limit < len(items) and chunk:
            next_query = {**query, "after": chunk[-1][0], "limit": str(limit)}
            next_url = f"{self.base_url}{request.path}?{urlencode(next_query)}"
        links = [f'<{self_url}>; rel="self"'] + ([f'<{next_url}>; rel="next"'] if next_url else [])
        headers = {"Link": ", ".join(links)}
        records = [item for _, item in chunk]
        if not envelope:
            return Response(200, records, headers)
        body_links: dict[str, Any] = {"self": {"rel": "self", "href": self_url}}
        if next_url:
            body_links["next"] = {"rel": "next", "href": next_url}
        return Response(200, {"data": records, "_links": body_links}, headers)

    def _cursor_expired(self) -> bool:
        if self.faults.expire_page_tokens:
            return True
        with self.lock:
            if self.expire_cursors > 0:
                self.expire_cursors -= 1
                return True
        return False

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
        return self.page(request, apps, max_limit=200, default_limit=200)

    def _app(self, app_id: str) -> dict[str, Any] | None:
        app = self.org.apps.get(app_id)
        return app if app is not None and app.get("id") == app_id else None

    def get_app(self, request: Request) -> Response:
        app = self._app(request.params["app_id"])
        if app is None:
            return not_found(request.params["app_id"], "AppInstance")
        return Response(200, app)

    def lifecycle(self, request: Request) -> Response:
        """200 `{}` and the status flips (wire-examples/apps-lifecycle-*.yaml)."""
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
        """An admin grant (source ADMIN): the API cannot consent for a user."""
        app_id = request.params["app_id"]
        app = self._app(app_id)
        if app is None:
            return not_found(app_id, "AppInstance")
        try:
            body = request.json()
        except ValueError:
            return okta_error(400, "E0000003", "The request body was not well-formed.")
        if not isinstance(body, dict) or not body.get("issuer") or not body.get("scopeId"):
            return validation("scopeId", "The field cannot be left blank")
        grants = self.org.grants.setdefault(app_id, {})
        existing = [
            g for g in grants.values() if g["scopeId"] == body["scopeId"] and g["source"] == "ADMIN"
        ]
        if existing:
            return Response(200, existing[0])
        grant_id = "oag" + secrets.token_hex(8)
        at = okta_time(datetime.fromtimestamp(self.clock(), UTC))
        grants[grant_id] = {
            "id": grant_id,
            "status": "ACTIVE",
            "created": at,
            "createdBy": {"id": self.service_client.client_id, "type": "Client"},
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

    def list_secrets(self, request: Request) -> Response:
        """Every client secret, masked, with created and status: at most two per app
        (management spec listOAuth2ClientSecrets, provider-facts.md)."""
        app_id = request.params["app_id"]
        if self._app(app_id) is None:
            return not_found(app_id, "AppInstance")
        return Response(200, list(self.org.secrets.get(app_id, [])))

    def list_app_keys(self, request: Request) -> Response:
        """The app's registered public keys (management spec listJwk: an array)."""
        app_id = request.params["app_id"]
        if self._app(app_id) is None:
            return not_found(app_id, "AppInstance")
        return Response(200, list(self.org.app_keys.get(app_id, [])))

    # -- API tokens, users, groups ----------------------------------------------------------
    def list_api_tokens(self, request: Request) -> Response:
        """20 a page by default, `limit` up to 200, `after` in Link (provider-facts.md;
        the management spec lists no paging parameters, the live API pages)."""
        tokens = list(self.org.api_tokens.items())
        return self.page(request, tokens, max_limit=200, default_limit=20)

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
        return self.page(request, users, max_limit=200, default_limit=200)

    def get_user(self, request: Request) -> Response:
        wanted = request.params["user_id"]
        for user in self.org.users.values():
            if wanted in (user["id"], user["profile"]["login"]):
                return Response(200, user, {"ETag": f'W/"{user["lastUpdated"]}"'})
        return not_found(wanted, "User")

    def get_group(self, request: Request) -> Response:
        group = self.org.groups.get(request.params["group_id"])
        if group is None:
            return not_found(request.params["group_id"], "UserGroup")
        return Response(200, group)

    def list_group_users(self, request: Request) -> Response:
        """Members, every status included (management spec listGroupUsers, limit 1000)."""
        group_id = request.params["group_id"]
        if group_id not in self.org.groups:
            return not_found(group_id, "UserGroup")
        members = [
            (uid, self.org.users[uid])
            for uid in self.org.group_members.get(group_id, [])
            if uid in self.org.users
        ]
        return self.page(request, members, max_limit=1000, default_limit=1000)

    # -- System Log ---------------------------------------------------------------------------
    def list_logs(self, request: Request) -> Response:
        """Bounded queries over the kept events (management spec listLogEvents).

        `since` defaults to 7 days before `until` (default now). Events are kept 90 days;
        `since` is accepted up to 180 days back, older is a 400 (provider-facts.md). A
        query that has to scan more than `scan_budget` events times out (500 E0000009).
        """
        now = self.clock()
        try:
            high = _parse_time(request.arg("until")) if request.arg("until") else now
            low = _parse_time(request.arg("since")) if request.arg("since") else high - 7 * 86400
        except ValueError:
            return validation("since", "The date format in your query is not recognized.")
        if low < now - LOG_SINCE_LIMIT:
            return validation("since", "The since parameter must be within the last 180 days.")
        expression = request.arg("filter")
        predicate = parse_filter(expression) if expression else None
        if expression and predicate is None:
            return okta_error(400, "E0000031", "Invalid search criteria.")
        log = self.org.log
        start, stop = log.span(max(low, now - RETENTION.total_seconds()), high)
        if stop - start > self.scan_budget:
            return okta_error(500, "E0000009", "Internal Server Error", ["The request timed out."])
        return self._log_page(request, start, stop, expression, predicate)

    def _log_page(
        self,
        request: Request,
        start: int,
        stop: int,
        expression: str | None,
        predicate: Callable[[dict[str, Any]], bool] | None,
    ) -> Response:
        descending = request.arg("sortOrder") == "DESCENDING"
        after = request.arg("after")
        if after is not None:
            if self._cursor_expired() or not after.isdigit():
                return validation("after", "The pagination cursor is invalid or has expired.")
            if descending:
                stop = min(stop, int(after))
            else:
                start = max(start, int(after) + 1)
        limit = _int_arg(request, "limit", 100, 1000)
        if limit is None:
            return validation("limit", "must be a number")
        events: list[dict[str, Any]] = []
        last = None
        for index, event in self.org.log.matching(start, stop, expression, predicate, descending):
            if len(events) == limit:
                break
            events.append(event)
            last = index
        more = last is not None and len(events) == limit
        query = {k: v[0] for k, v in request.query.items() if k != "after"}
        links = [f'<{self.base_url}{request.path}?{urlencode(query)}>; rel="self"']
        if more:
            next_query = {**query, "after": str(last), "limit": str(limit)}
            links.append(f'<{self.base_url}{request.path}?{urlencode(next_query)}>; rel="next"')
        return Response(200, events, {"Link": ", ".join(links)})

    def _render_event(
        self, index: int, at: float, event_type: str, detail: tuple[Any, ...]
    ) -> dict[str, Any]:
        """A LogEvent (management spec) from its compact row."""
        actor: dict[str, Any]
        client: dict[str, Any] = {"ipAddress": "203.0.113.7", "userAgent": {"rawUserAgent": "curl"}}
        if event_type == SSO:
            user = self.org.users[self._sso_users[index % len(self._sso_users)]]
            app_id = self._sso_apps[(index * 7) % len(self._sso_apps)]
            actor = {"id": user["id"], "type": "User", "alternateId": user["profile"]["login"]}
            target = [{"id": app_id, "type": "AppInstance", "alternateId": "app"}]
        elif event_type == "application.lifecycle.create":
            user_id, login, display, app_id, label = detail
            actor = {"id": user_id, "type": "User", "alternateId": login, "displayName": display}
            target = [{"id": app_id, "type": "AppInstance", "alternateId": label}]
        else:  # a token grant: `client.id` is the OAuth client (management spec LogClient)
            client_id, kind, actor_id, alternate = detail
            actor_type = "PublicClientApp" if kind == "client" else "User"
            actor = {"id": actor_id, "type": actor_type, "alternateId": alternate}
            client["id"] = client_id
            target = [{"id": f"aut{index:08d}", "type": "access_token", "alternateId": "token"}]
        return {
            "uuid": f"{(index * 2654435761 + 97) % 2**128:032x}",
            "published": okta_time(datetime.fromtimestamp(at, UTC)),
            "eventType": event_type,
            "version": "0",
            "severity": "INFO",
            "displayMessage": event_type,
            "actor": actor,
            "client": client,
            "target": target,
            "outcome": {"result": "SUCCESS"},
            "transaction": {"type": "WEB", "id": f"tx{index}", "detail": {}},
            "debugContext": {"debugData": {}},
            "authenticationContext": {"externalSessionId": "sess"},
            "securityContext": {},
            "request": {"ipChain": []},
        }

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
        """The `[[tenants]]` table pointing Recert at this emulator (secrets go to files).

        `auth`: "ssws" (a Super Administrator's token), "readonly" (a Read-Only
        Administrator's token) or "private_key_jwt" (the service app, DPoP-bound).
        """
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
            read_file.write_text(self.read_token if auth == "ssws" else self.readonly_token)
            table["api_token_file"] = str(read_file)
        table["enforce"] = {"api_token_file": str(write_file)}
        return table


def _int_arg(request: Request, name: str, default: int, maximum: int) -> int | None:
    raw = request.arg(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return default if value < 0 else min(value, maximum)


def _parse_time(text: str | None) -> float:
    if not text:
        raise ValueError("empty")
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
