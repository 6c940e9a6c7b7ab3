"""The google-api-python-client facade: auth, TLS, threads, retries and error mapping.

The SDK is synchronous and `httplib2.Http` is not thread-safe, so every call runs on a
small thread pool of our own where each thread holds its own service objects (sharing
the credentials, hence the access token). The SDK never retries or sleeps by itself
(`num_retries=0`): `call()` retries with exponential backoff and jitter through the
injected sleeper, and is the one place that turns SDK errors into connector errors.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import google_auth_httplib2
import httplib2
from google.auth import exceptions as auth_errors
from google.oauth2 import service_account
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from connectors.base import (
    ConnectorError,
    NotFound,
    PermissionDenied,
    ProviderError,
    TransientError,
)
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
MAX_ATTEMPTS = 8
BACKOFF_BASE = 1.0
BACKOFF_CAP = 64.0  # the Admin SDK quota window is one minute
HTTP_TIMEOUT = 60


@dataclass(frozen=True, slots=True)
class Services:
    directory: Any
    reports: Any
    iam: Any


Request = Callable[[Services], Any]  # builds one googleapiclient HttpRequest


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
    if status == 429 or status >= 500 or (status == 403 and reasons & QUOTA_REASONS):
        return TransientError(tenant, message, object_id, retry_after=_retry_after(exc))
    if status == 404:
        return NotFound(tenant, message, object_id)
    if status in (401, 403):
        return PermissionDenied(tenant, message, object_id)
    return ProviderError(tenant, message, object_id)


def map_auth_error(tenant: str, exc: auth_errors.GoogleAuthError) -> ConnectorError:
    if isinstance(exc, auth_errors.TransportError) or getattr(exc, "retryable", False):
        return TransientError(tenant, f"token endpoint: {exc}")
    return PermissionDenied(tenant, f"token request refused: {exc}")


class GoogleClient:
    def __init__(self, settings: GoogleSettings, *, sleep: Sleeper, workers: int = 8) -> None:
        self.tenant = settings.name
        self._settings = settings
        self._sleep = sleep
        try:
            info = json.loads(settings.credentials.get_secret_value())
            info["token_uri"] = str(settings.token_uri)
            self._workspace = service_account.Credentials.from_service_account_info(
                info, scopes=WORKSPACE_SCOPES, subject=settings.admin_subject
            )
            self._cloud = service_account.Credentials.from_service_account_info(
                info, scopes=CLOUD_SCOPES
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise PermissionDenied(self.tenant, f"unusable service-account key: {exc}") from None
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="google-api")

    def _authorized(self, credentials: Any) -> google_auth_httplib2.AuthorizedHttp:
        # The token request goes through this same Http, so it trusts ca_bundle too.
        transport = httplib2.Http(ca_certs=self._settings.ca_bundle, timeout=HTTP_TIMEOUT)
        return google_auth_httplib2.AuthorizedHttp(credentials, http=transport)

    def _build(self, api: str, version: str, url: str, credentials: Any) -> Any:
        return discovery.build(
            api,
            version,
            http=self._authorized(credentials),
            client_options={"api_endpoint": url},
            static_discovery=True,
            cache_discovery=False,
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

    def _execute(self, request: Request, object_id: str | None) -> Any:
        try:
            return request(self._services()).execute(num_retries=0)
        except HttpError as exc:
            raise map_http_error(self.tenant, exc, object_id) from None
        except auth_errors.GoogleAuthError as exc:
            raise map_auth_error(self.tenant, exc) from None
        except json.JSONDecodeError as exc:
            raise TransientError(self.tenant, f"unreadable response: {exc}", object_id) from None
        except TRANSPORT_ERRORS as exc:
            raise TransientError(self.tenant, f"transport: {exc!r}", object_id) from None

    async def call(self, request: Request, object_id: str | None = None) -> Any:
        """Run one API request; retry transient failures, then raise a typed error."""
        loop = asyncio.get_running_loop()
        for attempt in range(MAX_ATTEMPTS - 1):
            try:
                return await loop.run_in_executor(self._pool, self._execute, request, object_id)
            except TransientError as exc:
                await self._sleep(backoff_delay(attempt, exc.retry_after))
        return await loop.run_in_executor(self._pool, self._execute, request, object_id)

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown)
