"""The Okta SDK facade: auth, TLS, paging, pacing and retries with the injected sleep, and
the one place where SDK and HTTP failures become the typed connector errors.

Every call goes through the SDK's request executor (its auth, OAuth token handling and
session) and returns raw JSON: bulk lists are validated record by record in transform.py,
so one malformed app is a skip, not a pydantic ValidationError that ends the run.
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
from connectors.settings import OktaSettings

Sleeper = Callable[[float], Awaitable[None]]
log = logging.getLogger(__name__)

RETRYABLE = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 5
BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0)
_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?([\w-]+)"?')


@dataclass(frozen=True, slots=True)
class ApiResult:
    status: int
    headers: Mapping[str, str]
    data: Any
    links: Mapping[str, str]


def next_link(link_headers: list[str]) -> str | None:
    """The `rel="next"` target among any number of (comma-joined) Link headers."""
    for header in link_headers:
        for url, rel in _LINK.findall(header):
            if rel == "next":
                return url
    return None


def seconds_until_reset(headers: Mapping[str, str]) -> float | None:
    """Okta's wait: X-Rate-Limit-Reset (epoch) minus the server's Date, plus one second."""
    try:
        reset = float(headers["X-Rate-Limit-Reset"])
        date = parsedate_to_datetime(headers["Date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.0, reset - date) + 1.0


class OktaClient:
    def __init__(self, settings: OktaSettings, *, sleep: Sleeper) -> None:
        org_url = str(settings.org_url).rstrip("/")
        if urlsplit(org_url).scheme != "https":
            raise PermissionDenied(settings.name, "org_url must be https")
        self.settings = settings
        self.tenant = settings.name
        self.org_url = org_url
        self._sleep = sleep
        self._sdk: Any = None
        self._session: Any = None

    # -- SDK setup ------------------------------------------------------------------------
    def _sdk_config(self) -> dict[str, Any]:
        """Every client key set explicitly, so OKTA_CLIENT_* variables and okta.yaml files
        cannot change what this tenant's config says."""
        settings = self.settings
        config: dict[str, Any] = {
            "orgUrl": self.org_url,
            "userAgent": "recert",
            "requestTimeout": 120,
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
        }
        if settings.api_token is not None:
            config.update(authorizationMode="SSWS", token=settings.api_token.get_secret_value())
        else:
            assert settings.private_key is not None
            config.update(
                authorizationMode="PrivateKey",
                clientId=settings.client_id,
                scopes=list(settings.scopes),
                privateKey=settings.private_key.get_secret_value(),
                kid=settings.key_id or "",
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
            context = ssl.create_default_context(cafile=self.settings.ca_bundle)
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
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
        """One API call with pacing and retries; errors mapped to the typed errors."""
        url = path + (f"?{urlencode(params)}" if params else "")
        for attempt in range(MAX_ATTEMPTS):
            result, wait = await self._attempt(method, url, body, object_id)
            if result is not None:
                await self._pace(result.headers)
                return result
            wait = (
                wait
                if wait is not None
                else BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]
            )
            if attempt + 1 < MAX_ATTEMPTS:
                await self._sleep(wait)
        raise TransientError(
            self.tenant, f"{method} {path}: gave up after retries", object_id, wait
        )

    async def _attempt(
        self, method: str, url: str, body: Mapping[str, Any] | None, object_id: str | None
    ) -> tuple[ApiResult | None, float | None]:
        """A result, or None with the seconds to wait before the next try (None: backoff)."""
        executor = (await self._client()).get_request_executor()
        request, error = await executor.create_request(method, url, dict(body or {}) or None)
        if error is not None:
            raise self._auth_error(error, object_id)
        try:
            response, text, error = await executor.execute(request)
        except (AttributeError, OSError, TimeoutError) as failure:  # SDK raises on transport loss
            log.warning("okta %s: %s %s failed: %r", self.tenant, method, url, failure)
            return None, None
        if response is None:
            log.warning("okta %s: %s %s: %r", self.tenant, method, url, error)
            return None, None
        headers = dict(response.headers.items())
        if response.status in RETRYABLE:
            wait = seconds_until_reset(headers) if response.status == 429 else None
            log.info("okta %s: %s %s answered %s", self.tenant, method, url, response.status)
            return None, wait
        try:
            data = json.loads(text) if text else None
        except ValueError:
            if response.status < 400:
                log.warning("okta %s: %s %s: body is not JSON", self.tenant, method, url)
                return None, None
            data = None
        if response.status >= 400:
            raise self._http_error(response.status, data, object_id)
        links = {"next": found} if (found := next_link(response.headers.getall("Link", []))) else {}
        return ApiResult(response.status, headers, data, links), 0.0

    async def _pace(self, headers: Mapping[str, str]) -> None:
        """Keep `rate_limit_reserve` of the bucket free for the org's other integrations."""
        try:
            limit = float(headers["X-Rate-Limit-Limit"])
            remaining = float(headers["X-Rate-Limit-Remaining"])
        except (KeyError, ValueError):
            return
        if limit > 0 and remaining < self.settings.rate_limit_reserve * limit:
            wait = seconds_until_reset(headers)
            if wait is not None:
                log.info(
                    "okta %s: %d of %d left, pausing %.0fs", self.tenant, remaining, limit, wait
                )
                await self._sleep(wait)

    def _http_error(self, status: int, data: Any, object_id: str | None) -> ConnectorError:
        body = data if isinstance(data, dict) else {}
        code = body.get("errorCode") or body.get("error") or ""
        summary = body.get("errorSummary") or body.get("error_description") or f"HTTP {status}"
        message = f"{code} {summary}".strip()
        if status == 404:
            return NotFound(self.tenant, message, object_id)
        if status in (401, 403):
            return PermissionDenied(self.tenant, message, object_id)
        return ProviderError(self.tenant, f"HTTP {status}: {message}", object_id)

    def _auth_error(self, error: Any, object_id: str | None) -> ConnectorError:
        """The SDK could not get an OAuth access token."""
        status = getattr(error, "status", None)
        message = str(getattr(error, "message", None) or error)
        if status is None or status in RETRYABLE:
            return TransientError(self.tenant, f"token request failed: {message}", object_id)
        return PermissionDenied(self.tenant, f"token request failed: {message}", object_id)

    async def pages(
        self, path: str, params: Mapping[str, Any], object_id: str | None = None
    ) -> AsyncIterator[list[Any]]:
        """Each page of a Link-paged list; the next link is re-anchored on the org URL."""
        result = await self.call("GET", path, params=params, object_id=object_id)
        seen: set[str] = set()
        while True:
            yield result.data if isinstance(result.data, list) else []
            target = result.links.get("next")
            if target is None:
                return
            split = urlsplit(target)
            relative = split.path + (f"?{split.query}" if split.query else "")
            if relative in seen:  # a cursor that repeats would loop forever
                raise ProviderError(self.tenant, f"next link repeats: {relative}", object_id)
            seen.add(relative)
            result = await self.call("GET", relative, object_id=object_id)
