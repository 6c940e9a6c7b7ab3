"""The Okta SDK facade: auth (SSWS, private_key_jwt with DPoP), TLS, paging, pacing per
rate-limit bucket and retries with the injected sleep, and the one place where SDK and HTTP
failures become the typed connector errors.

Every call goes through the SDK's request executor (its auth, OAuth token and DPoP proof
handling, and session) and returns raw JSON: bulk lists are validated record by record in
transform.py, so one malformed app is a skip, not a pydantic ValidationError that ends the
run. tests/okta/test_sdk_seam.py pins the executor behaviour relied on here.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from connectors.base import (
    ConnectorError,
    NotFound,
    PermissionDenied,
    ProviderError,
    TransientError,
)
from connectors.pacing import Limit, Pacer
from connectors.settings import OKTA_OPTIONAL_SCOPES, OktaSettings

Sleeper = Callable[[float], Awaitable[None]]
log = logging.getLogger(__name__)

RETRYABLE = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 5
BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0)
CONNECT_SECONDS = 10.0  # TCP + TLS set-up: an unreachable org fails in seconds, not minutes
REQUEST_SECONDS = 120.0
QUERY_TIMEOUT = "E0000009"  # System Log query over 30 s (provider-facts.md, System Log)
EXPIRED_CURSOR = "E0000001"  # 400 naming `after`: the cursor expired
_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?([\w-]+)"?')
_BRACKETED = re.compile(r"\[([^\]]*)\]")

# Per-minute limits of Okta's buckets (developer.okta.com/docs/reference/rl-global-mgmt,
# One App / Enterprise / Workforce), used until a response's X-Rate-Limit-Limit names the
# org's real figure. Buckets Okta does not document get the smallest documented one.
DEFAULT_LIMITS = {
    "apps": 100,
    "app_by_id": 600,
    "users": 600,
    "user_by_id": 2000,
    "groups": 500,
    "logs": 120,
    "api_tokens": 600,
    "ai_agents": 600,
}
FALLBACK_LIMIT = 50
DEFAULT_WINDOW = 60.0  # seconds; Okta's windows are one minute


def bucket_of(method: str, path: str) -> str:
    """The rate-limit bucket a request counts against (rl-global-mgmt: `/api/v1/apps/{id}`
    has its own bucket for GET/PUT/DELETE; everything else under `/api/v1/apps`, each app's
    grants, secrets and keys included, shares the apps bucket)."""
    if re.fullmatch(r"/api/v1/apps/[^/]+", path) and method != "POST":
        return "app_by_id"
    if path.startswith("/api/v1/apps"):
        return "apps"
    if re.fullmatch(r"/api/v1/users/[^/]+", path):
        return "user_by_id"
    for prefix, bucket in (
        ("/api/v1/users", "users"),
        ("/api/v1/groups", "groups"),
        ("/api/v1/logs", "logs"),
        ("/api/v1/api-tokens", "api_tokens"),
        ("/workload-principals/", "ai_agents"),
    ):
        if path.startswith(prefix):
            return bucket
    return "other"


@dataclass(frozen=True, slots=True)
class ApiResult:
    status: int
    headers: Mapping[str, str]
    data: Any
    links: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class _Raw:
    status: int
    headers: Mapping[str, str]
    text: str
    links: Mapping[str, str]


@dataclass(slots=True)
class _Bucket:
    """What the responses taught us about one bucket."""

    limit: float
    window: float = DEFAULT_WINDOW
    last_reset: float | None = None
    window_known: bool = False  # seen the reset move on: `window` is measured


class QueryTimedOut(TransientError):
    """The System Log gave up on a query (500 E0000009): ask for a smaller window."""


def next_link(link_headers: list[str]) -> str | None:
    """The `rel="next"` target among any number of (comma-joined) Link headers."""
    for header in link_headers:
        for url, rel in _LINK.findall(header):
            if rel == "next":
                return url
    return None


def seconds_until_reset(headers: Mapping[str, str]) -> float | None:
    """Okta's wait: X-Rate-Limit-Reset (epoch) minus the server's Date, plus one second
    (the SDK's own formula, okta/request_executor.py calculate_backoff)."""
    reset, date = _number(headers, "X-Rate-Limit-Reset"), _server_time(headers)
    if reset is None or date is None:
        return None
    return max(0.0, reset - date) + 1.0


def _number(headers: Mapping[str, str], name: str) -> float | None:
    try:
        return float(headers[name])
    except (KeyError, TypeError, ValueError):
        return None


def _server_time(headers: Mapping[str, str]) -> float | None:
    try:
        return parsedate_to_datetime(headers["Date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def _http_client_class() -> type:
    """The SDK's HTTP client with a connect timeout: its own has only a total one."""
    import aiohttp
    from okta.http_client import HTTPClient

    class _TimedHttpClient(HTTPClient):
        def __init__(self, http_config: dict[str, Any]) -> None:
            super().__init__(http_config)
            self._timeout = aiohttp.ClientTimeout(
                total=REQUEST_SECONDS, sock_connect=CONNECT_SECONDS
            )

    return _TimedHttpClient


class OktaClient:
    def __init__(self, settings: OktaSettings, *, sleep: Sleeper, pacer: Pacer) -> None:
        org_url = str(settings.org_url).rstrip("/")
        if urlsplit(org_url).scheme != "https":
            raise PermissionDenied(settings.name, "org_url must be https")
        self.settings = settings
        self.tenant = settings.name
        self.org_url = org_url
        self.pacer = pacer
        self._sleep = sleep
        self._sdk: Any = None
        self._session: Any = None
        self._scopes = list(settings.scopes)
        self.refused_scopes: set[str] = set()
        self._buckets: dict[str, _Bucket] = {}
        self.requests_by_bucket: dict[str, int] = {}

    @property
    def oauth(self) -> bool:
        return self.settings.api_token is None

    def may_use(self, scope: str) -> bool:
        """False when the OAuth token cannot carry `scope` (SSWS rights come from the role)."""
        return not self.oauth or scope in self._scopes

    # -- SDK setup ------------------------------------------------------------------------
    def _sdk_config(self) -> dict[str, Any]:
        """Every client key set explicitly, so OKTA_CLIENT_* variables and okta.yaml files
        cannot change what this tenant's config says."""
        settings = self.settings
        config: dict[str, Any] = {
            "orgUrl": self.org_url,
            "userAgent": "recert",
            "requestTimeout": REQUEST_SECONDS,
            "rateLimit": {"maxRetries": 0},  # retries and waits are ours, via the injected sleep
            "cache": {"enabled": False},
            "logging": {"enabled": False},
            "proxy": {"host": "", "port": "", "username": "", "password": ""},
            "oauthTokenRenewalOffset": 5,
            "dpopEnabled": False,
            "token": "",
            "clientId": "",
            "privateKey": "",
            "scopes": "",
            "kid": "",
            "httpClient": _http_client_class(),
        }
        if settings.api_token is not None:
            config.update(authorizationMode="SSWS", token=settings.api_token.get_secret_value())
        else:
            assert settings.private_key is not None
            config.update(
                authorizationMode="PrivateKey",
                clientId=settings.client_id,
                scopes=list(self._scopes),
                privateKey=settings.private_key.get_secret_value(),
                kid=settings.key_id or "",
                dpopEnabled=settings.dpop,  # the SDK builds proofs and runs the nonce round trip
            )
        return config

    async def _client(self) -> Any:
        if self._sdk is None:
            import aiohttp
            from okta.client import Client

            try:
                sdk = Client(self._sdk_config())
            except ValueError as error:
                raise PermissionDenied(
                    self.tenant, f"Okta SDK rejected the config: {error}"
                ) from None
            if self._session is None:
                context = ssl.create_default_context(cafile=self.settings.ca_bundle)
                connector = aiohttp.TCPConnector(ssl=context)
                self._session = aiohttp.ClientSession(connector=connector)
            sdk.get_request_executor().set_session(self._session)
            self._sdk = sdk
        return self._sdk

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None
        self._sdk = None

    # -- requests -------------------------------------------------------------------------
    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        object_id: str | None = None,
    ) -> ApiResult:
        """One API call, paced in its bucket, retried; errors mapped to the typed errors."""
        url = path + (f"?{urlencode(params)}" if params else "")
        bucket = bucket_of(method, path)
        wait: float | None = None
        for attempt in range(MAX_ATTEMPTS):
            backoff = BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]
            await self.pacer.acquire(bucket, self._limit(bucket))
            self.requests_by_bucket[bucket] = self.requests_by_bucket.get(bucket, 0) + 1
            raw = await self._send(method, url, body, object_id)
            if raw is None:
                await self._sleep(backoff)
                continue
            self._observe(bucket, raw)
            if raw.status == 429:
                # Every caller of the bucket waits (RedisPacer: every worker), not just us.
                wait = seconds_until_reset(raw.headers) or backoff
                log.info("okta %s: %s throttled, holding off %.0fs", self.tenant, bucket, wait)
                self.pacer.hold_off(bucket, wait)
                continue
            data, parsed = _json(raw.text)
            if raw.status in RETRYABLE:
                if raw.status == 500 and _error_code(data) == QUERY_TIMEOUT:
                    raise QueryTimedOut(self.tenant, f"{path}: query timed out", object_id)
                log.info("okta %s: %s %s answered %s", self.tenant, method, path, raw.status)
                await self._sleep(backoff)
                continue
            if raw.status >= 400:
                raise self._http_error(raw.status, data, object_id)
            if not parsed:  # a 2xx whose body was cut short
                log.warning("okta %s: %s %s: body is not JSON", self.tenant, method, path)
                await self._sleep(backoff)
                continue
            return ApiResult(raw.status, raw.headers, data, raw.links)
        raise TransientError(
            self.tenant, f"{method} {path}: gave up after {MAX_ATTEMPTS} attempts", object_id, wait
        )

    async def _send(
        self, method: str, url: str, body: Mapping[str, Any] | None, object_id: str | None
    ) -> _Raw | None:
        """The response, or None when the connection broke mid-way (worth a retry)."""
        while True:
            executor = (await self._client()).get_request_executor()
            request, error = await executor.create_request(method, url, dict(body or {}) or None)
            if error is None:
                break
            failure = self._auth_error(error, object_id)
            if failure is not None:
                raise failure
        try:
            response, text, error = await executor.execute(request)
        except (AttributeError, OSError, TimeoutError) as lost:  # older SDKs raise on loss
            self._lost(lost)
            return None
        if response is None:
            self._lost(error)
            return None
        headers = dict(response.headers.items())
        found = next_link(response.headers.getall("Link", []))
        return _Raw(response.status, headers, text or "", {"next": found} if found else {})

    def _lost(self, error: Any) -> None:
        """A connection that could not be made ends the run now, in one readable line; one
        that broke after it was made is retried."""
        unreachable = unreachable_reason(error)
        if unreachable is not None:
            raise TransientError(self.tenant, f"cannot reach {self.org_url}: {unreachable}")
        log.warning("okta %s: connection lost: %s", self.tenant, _describe(error))
        return None

    # -- pacing ---------------------------------------------------------------------------
    def _limit(self, bucket: str) -> Limit:
        state = self._buckets.get(bucket)
        if state is None:
            state = self._buckets[bucket] = _Bucket(DEFAULT_LIMITS.get(bucket, FALLBACK_LIMIT))
        return Limit.for_quota(state.limit, state.window, self.settings.rate_limit_reserve)

    def _observe(self, bucket: str, raw: _Raw) -> None:
        """Learn the bucket's limit and window from the headers; when X-Rate-Limit-Remaining
        leaves no more than the reserve (others spend the bucket too), hold it off until
        it resets."""
        headers = raw.headers
        limit = _number(headers, "X-Rate-Limit-Limit")
        remaining = _number(headers, "X-Rate-Limit-Remaining")
        reset = _number(headers, "X-Rate-Limit-Reset")
        state = self._buckets.setdefault(
            bucket, _Bucket(DEFAULT_LIMITS.get(bucket, FALLBACK_LIMIT))
        )
        if limit is not None and limit > 0:
            state.limit = limit
        now = _server_time(headers)
        if reset is not None:
            self._learn_window(state, reset, now)
        if raw.status == 429 or limit is None or remaining is None or limit <= 0:
            return
        # The next call would cut into the reserve: wait for the reset.
        full = remaining - 1 < self.settings.rate_limit_reserve * limit
        if full and reset is not None and now is not None and reset > now:
            log.info(
                "okta %s: %s has %d of %d left, pausing %.0fs",
                self.tenant,
                bucket,
                remaining,
                limit,
                reset - now,
            )
            self.pacer.hold_off(bucket, reset - now)

    @staticmethod
    def _learn_window(state: _Bucket, reset: float, now: float | None) -> None:
        if state.last_reset is not None and reset > state.last_reset:
            # The reset moved on by one window (or several: keep the smallest step).
            step = reset - state.last_reset
            state.window = step if not state.window_known else min(state.window, step)
            state.window = min(DEFAULT_WINDOW, max(1.0, state.window))
            state.window_known = True
        elif not state.window_known and now is not None and reset > now:
            # Until then the time left in this window stands in for its length: it can
            # only be shorter, and the Remaining check keeps the reserve anyway.
            state.window = min(DEFAULT_WINDOW, max(1.0, reset - now))
        state.last_reset = reset

    # -- errors ---------------------------------------------------------------------------
    def _http_error(self, status: int, data: Any, object_id: str | None) -> ConnectorError:
        body = data if isinstance(data, dict) else {}
        code = body.get("errorCode") or body.get("error") or ""
        summary = body.get("errorSummary") or body.get("error_description") or f"HTTP {status}"
        causes = [
            str(cause["errorSummary"])
            for cause in body.get("errorCauses") or []
            if isinstance(cause, dict) and cause.get("errorSummary")
        ]
        message = " ".join([f"{code} {summary}".strip(), *causes])
        if status == 404:
            return NotFound(self.tenant, message, object_id)
        if status in (401, 403):
            return PermissionDenied(self.tenant, message, object_id)
        return ProviderError(self.tenant, f"HTTP {status}: {message}", object_id)

    def _auth_error(self, error: Any, object_id: str | None) -> ConnectorError | None:
        """The SDK could not get an OAuth access token. None: scopes that only AI agents
        need were refused, dropped, and the request can go again without them."""
        unreachable = unreachable_reason(error)
        if unreachable is not None:
            return TransientError(self.tenant, f"cannot reach {self.org_url}: {unreachable}")
        status = getattr(error, "status", None)
        code = str(getattr(error, "error_code", "") or "")
        summary = _server_words(str(getattr(error, "error_summary", "") or error))
        if code == "invalid_scope":
            refused = self._refused(summary)
            if refused and refused <= self.refused_scopes:
                return None  # a concurrent request already dropped them: go again
            if refused and refused <= OKTA_OPTIONAL_SCOPES and set(self._scopes) - refused:
                log.info("okta %s: carrying on without %s", self.tenant, ", ".join(refused))
                self.refused_scopes |= refused
                self._scopes = [scope for scope in self._scopes if scope not in refused]
                self._sdk = None  # rebuilt with the scopes it may have, on the same session
                return None
            named = ", ".join(sorted(refused)) or ", ".join(self._scopes)
            return PermissionDenied(
                self.tenant,
                f"token request refused scope {named} (invalid_scope: {summary}): grant it to "
                f"service app "
                f"{self.settings.client_id} (Okta API Scopes) or leave it out of `scopes`",
                object_id,
            )
        message = f"token request failed: {code} {summary}".replace("  ", " ").strip()
        if status is None or status in RETRYABLE:
            return TransientError(self.tenant, message, object_id)
        return PermissionDenied(self.tenant, message, object_id)

    def _refused(self, description: str) -> set[str]:
        """The scopes an `invalid_scope` answer names, e.g. "The following scopes are not
        allowed for this request: [okta.aiAgents.read]"."""
        named: set[str] = set()
        for group in _BRACKETED.findall(description):
            named.update(part.strip() for part in group.split(",") if part.strip())
        return named or {scope for scope in self._scopes if scope in description}

    # -- paging ---------------------------------------------------------------------------
    async def pages(
        self, path: str, params: Mapping[str, Any], object_id: str | None = None
    ) -> AsyncIterator[list[Any]]:
        """Each page of a Link-paged list; the next link is re-anchored on the org URL.

        Lists come as a bare array or, in the newer APIs, as `{"data": [...]}`. A cursor
        that expired (400 E0000001 on `after`) restarts the listing from its first page
        once: records may repeat, which the consumers tolerate.
        """
        restarted = False
        result = await self.call("GET", path, params=params, object_id=object_id)
        seen: set[str] = set()
        while True:
            yield _items(result.data)
            target = result.links.get("next")
            if target is None:
                return
            split = urlsplit(target)
            relative = split.path + (f"?{split.query}" if split.query else "")
            if relative in seen:  # a cursor that repeats would loop forever
                raise ProviderError(self.tenant, f"next link repeats: {relative}", object_id)
            seen.add(relative)
            try:
                result = await self.call("GET", relative, object_id=object_id)
            except ProviderError as error:
                if restarted or not _expired_cursor(error):
                    raise
                restarted = True
                log.info("okta %s: %s cursor expired, listing again", self.tenant, path)
                seen.clear()
                result = await self.call("GET", path, params=params, object_id=object_id)


def _items(data: Any) -> list[Any]:
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        return list(data["data"])
    return data if isinstance(data, list) else []


def _json(text: str) -> tuple[Any, bool]:
    if not text:
        return None, True
    try:
        return json.loads(text), True
    except ValueError:
        return None, False


def _error_code(data: Any) -> str:
    return str(data.get("errorCode") or "") if isinstance(data, dict) else ""


def _expired_cursor(error: ProviderError) -> bool:
    return (
        "HTTP 400" in error.message
        and EXPIRED_CURSOR in error.message
        and "after" in (error.message)
    )


def _server_words(summary: str) -> str:
    """One line: the server's own description when the SDK wrapped it in advice."""
    if "Server error:" in summary:
        summary = summary.rsplit("Server error:", 1)[1]
    return " ".join(summary.split())


def _describe(error: Any) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def unreachable_reason(error: Any) -> str | None:
    """Words for a connection that could not be made (DNS, refused, TLS, connect timeout);
    None for anything else."""
    import aiohttp

    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate not trusted ({_describe(error.certificate_error)}); see ca_bundle"
    if isinstance(error, aiohttp.ClientSSLError):
        return f"TLS handshake failed ({_describe(error)})"
    if isinstance(error, aiohttp.ClientConnectorError):
        cause = error.os_error
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if cause.__class__.__name__ == "gaierror" or isinstance(
            error, getattr(aiohttp, "ClientConnectorDNSError", ())
        ):
            return f"host name not found ({_describe(cause)})"
        return _describe(cause)
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return f"no answer within {CONNECT_SECONDS:.0f}s"
    return None
