"""The google-api-python-client facade: auth, TLS, threads, pacing, retries, error mapping.

The SDK is synchronous and `httplib2.Http` is not thread-safe, so every call runs on a
small thread pool of our own where each thread holds its own service objects (sharing
the credentials, hence the access token). The SDK never retries or sleeps by itself
(`num_retries=0`); `call()` is the one place that waits and turns SDK errors into
connector errors:
- Directory and Reports calls share one quota per Cloud project and impersonated admin
  (2,400 queries a minute by default: developers.google.com/workspace/admin/directory/v1/
  limits and .../reports/v1/limits). Each takes a unit of the pacer's bucket first, so a run
  spreads itself over the window instead of bursting into it.
- A quota answer (403 `userRateLimitExceeded`/`rateLimitExceeded`/`quotaExceeded`, 429,
  and the Reports API's 503) holds the whole bucket off and waits for the window; it never
  uses up the attempts, which are for real failures (5xx, resets) with backoff and jitter.
- Until the first answer arrives, a connection failure is not retried: an unreachable or
  mistyped endpoint fails at once with one readable line.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import json
import random
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import google_auth_httplib2
import httplib2
from google.auth import exceptions as auth_errors
from google.oauth2 import service_account
from googleapiclient import discovery, discovery_cache
from googleapiclient.errors import HttpError

from connectors.base import (
    ConnectorError,
    NotFound,
    PermissionDenied,
    ProviderError,
    TransientError,
)
from connectors.pacing import Limit, LocalPacer, Pacer
from connectors.settings import GoogleSettings

Sleeper = Callable[[float], Awaitable[None]]

SCOPE = "https://www.googleapis.com/auth/"
WORKSPACE_SCOPES = (
    SCOPE + "admin.directory.user.readonly",
    SCOPE + "admin.directory.user.security",
    SCOPE + "admin.reports.audit.readonly",
)
CLOUD_SCOPES = (SCOPE + "cloud-platform",)
QUOTA_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"})
TRANSPORT_ERRORS = (OSError, http.client.HTTPException, httplib2.HttpLib2Error)
ADMIN_SDK = frozenset({"directory", "reports"})  # the APIs that share the paced quota
MAX_ATTEMPTS = 8
BACKOFF_BASE = 1.0
BACKOFF_CAP = 64.0
HTTP_TIMEOUT = 12  # seconds per socket operation; a slow page is retried, a dead host fails
THROTTLE_WINDOWS = 10  # quota waits one call may take before giving up, in windows


@dataclass(frozen=True, slots=True)
class Services:
    directory: Any
    reports: Any
    iam: Any


Request = Callable[[Services], Any]  # builds one googleapiclient HttpRequest


class Throttled(TransientError):
    """The API's quota is spent: wait for the window."""


class Unreachable(TransientError):
    """No answer from the endpoint at all: not worth retrying within this run."""


@functools.cache
def _document(api: str, version: str) -> str:
    document = discovery_cache.get_static_doc(api, version)
    if document is None:
        raise RuntimeError(f"google-api-python-client ships no {api} {version} document")
    return document


def backoff_delay(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter in [50 %, 100 %]; never shorter than Retry-After."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt) * random.uniform(0.5, 1.0)
    return max(delay, retry_after or 0.0)


def _error_body(exc: HttpError) -> dict[str, Any]:
    try:
        body = json.loads(exc.content)
    except (ValueError, TypeError):
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _retry_after(exc: HttpError) -> float | None:
    try:
        return float(exc.resp.get("retry-after", ""))
    except ValueError:
        return None


def map_http_error(tenant: str, exc: HttpError, object_id: str | None) -> ConnectorError:
    """Google's error body (`error.code`, `error.errors[].reason`) -> a typed error."""
    status = int(exc.resp.status)
    error = _error_body(exc)
    details = error.get("errors")
    reasons = (
        {e.get("reason") for e in details if isinstance(e, dict)}
        if isinstance(details, list)
        else set()
    )
    message = f"HTTP {status} {error.get('status', '')}: {error.get('message') or exc.reason}"
    reports = "/admin/reports/" in str(getattr(exc, "uri", "") or "")
    if status == 429 or (status == 403 and reasons & QUOTA_REASONS) or (reports and status == 503):
        return Throttled(tenant, message, object_id, retry_after=_retry_after(exc))
    if status >= 500:
        return TransientError(tenant, message, object_id, retry_after=_retry_after(exc))
    if status == 404:
        return NotFound(tenant, message, object_id)
    if status in (401, 403):
        return PermissionDenied(tenant, message, object_id)
    return ProviderError(tenant, message, object_id)


def transport_text(exc: BaseException) -> str:
    """A transport failure in a few words, not an exception repr."""
    while isinstance(exc, auth_errors.TransportError) and exc.args:
        inner = exc.args[0]
        if not isinstance(inner, BaseException):
            break
        exc = inner
    if isinstance(exc, socket.gaierror):
        return "the host name does not resolve"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer within {HTTP_TIMEOUT} s"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def map_auth_error(tenant: str, exc: auth_errors.GoogleAuthError, token_uri: str) -> ConnectorError:
    if isinstance(exc, auth_errors.TransportError):
        text = transport_text(exc)
        return Unreachable(tenant, f"cannot reach the token endpoint {token_uri}: {text}")
    if getattr(exc, "retryable", False):
        return TransientError(tenant, f"token endpoint: {exc}")
    return PermissionDenied(tenant, f"token request refused: {exc}")


class GoogleClient:
    def __init__(
        self,
        settings: GoogleSettings,
        *,
        sleep: Sleeper,
        pacer: Pacer | None = None,
        workers: int = 8,
    ) -> None:
        self.tenant = settings.name
        self._settings = settings
        self._sleep = sleep
        self._pacer = pacer or LocalPacer(sleep=sleep)
        self._slots = asyncio.Semaphore(workers)  # few waiters on the pacer, not thousands
        self._reached = False  # set by the first answer of any kind
        self.limit = Limit.for_quota(
            settings.quota_per_minute, settings.quota_window_seconds, settings.rate_limit_reserve
        )
        try:
            info = json.loads(settings.credentials.get_secret_value())
            info["token_uri"] = str(settings.token_uri)
            self._workspace = service_account.Credentials.from_service_account_info(
                info, scopes=WORKSPACE_SCOPES, subject=settings.admin_subject
            )
            # The same key (parsing it is the slow part), as itself: no subject.
            self._cloud = self._workspace.with_subject(None).with_scopes(CLOUD_SCOPES)
        except (ValueError, TypeError, KeyError) as exc:
            raise PermissionDenied(self.tenant, f"unusable service-account key: {exc}") from None
        # The quota is per Cloud project (the key's) and per impersonated admin.
        self.quota_key = f"admin-sdk:{info.get('project_id', '')}:{settings.admin_subject}"
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="google-api")

    def _authorized(self, credentials: Any) -> google_auth_httplib2.AuthorizedHttp:
        # The token request goes through this same Http, so it trusts ca_bundle too.
        transport = httplib2.Http(ca_certs=self._settings.ca_bundle, timeout=HTTP_TIMEOUT)
        return google_auth_httplib2.AuthorizedHttp(credentials, http=transport)

    def _build(self, api: str, version: str, url: str, credentials: Any) -> Any:
        """What `discovery.build(static_discovery=True)` does, from the bundled document
        read once per process (each thread still parses its own copy: the SDK edits it)."""
        return discovery.build_from_document(
            _document(api, version),
            http=self._authorized(credentials),
            client_options={"api_endpoint": url},
        )

    def _services(self) -> Services:
        services: Services | None = getattr(self._local, "services", None)
        if services is None:
            settings = self._settings
            services = Services(
                directory=self._build(
                    "admin", "directory_v1", str(settings.directory_url), self._workspace
                ),
                reports=self._build(
                    "admin", "reports_v1", str(settings.reports_url), self._workspace
                ),
                iam=self._build("iam", "v1", str(settings.iam_url), self._cloud),
            )
            self._local.services = services
        return services

    def _url(self, api: str) -> str:
        return str(getattr(self._settings, f"{api}_url"))

    def _execute(self, request: Request, object_id: str | None, api: str) -> Any:
        try:
            answer = request(self._services()).execute(num_retries=0)
        except HttpError as exc:
            self._reached = True
            raise map_http_error(self.tenant, exc, object_id) from None
        except auth_errors.GoogleAuthError as exc:
            error = map_auth_error(self.tenant, exc, str(self._settings.token_uri))
            if isinstance(error, Unreachable) and self._reached:
                error = TransientError(self.tenant, error.message, object_id)
            raise error from None
        except json.JSONDecodeError as exc:
            raise TransientError(self.tenant, f"unreadable response: {exc}", object_id) from None
        except TRANSPORT_ERRORS as exc:
            credentials = self._cloud if api == "iam" else self._workspace
            where = (  # no token yet: the token request is what failed
                self._url(api)
                if credentials.valid
                else f"the token endpoint {self._settings.token_uri}"
            )
            message = f"cannot reach {where}: {transport_text(exc)}"
            if self._reached:
                raise TransientError(self.tenant, message, object_id) from None
            raise Unreachable(self.tenant, message, object_id) from None
        self._reached = True
        return answer

    async def call(self, request: Request, object_id: str | None = None, api: str = "iam") -> Any:
        """Run one API request, paced when it counts against the Admin SDK quota; wait out
        throttling, retry transient failures, then raise a typed error."""
        loop = asyncio.get_running_loop()
        paced = api in ADMIN_SDK
        attempt, throttled = 0, 0
        async with self._slots:
            while True:
                if paced:
                    await self._pacer.acquire(self.quota_key, self.limit)
                try:
                    return await loop.run_in_executor(
                        self._pool, self._execute, request, object_id, api
                    )
                except Unreachable:
                    raise
                except Throttled as exc:
                    if paced and throttled < THROTTLE_WINDOWS * 4:
                        self._pacer.hold_off(self.quota_key, self._throttle_wait(throttled))
                        throttled += 1
                        continue
                    if attempt >= MAX_ATTEMPTS - 1:
                        raise
                    await self._sleep(backoff_delay(attempt, exc.retry_after))
                    attempt += 1
                except TransientError as exc:
                    if attempt >= MAX_ATTEMPTS - 1:
                        raise
                    await self._sleep(backoff_delay(attempt, exc.retry_after))
                    attempt += 1

    def _throttle_wait(self, times: int) -> float:
        """A quarter of the window, then half, then the whole window: Google does not say
        when its window turns, so wait until it surely has."""
        return self.limit.window * min(1.0, 0.25 * 2**times)

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown)
