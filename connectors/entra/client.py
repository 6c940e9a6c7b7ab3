"""The msgraph-sdk facade: auth, TLS, paging, `$batch`, retries and THE error mapping.

Bulk reads go through the SDK's request builders, auth provider and middleware but are
parsed with `json.loads`: Kiota's model parsing costs ~5 ms per service principal.
The SDK's own retry handler is switched off so that every wait goes through the
injected `sleep` and honours `Retry-After` with no hidden real sleeping.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpx

from connectors.base import (
    ConnectorError,
    NotFound,
    PermissionDenied,
    ProviderError,
    TransientError,
)
from connectors.entra.transform import as_object
from connectors.settings import EntraSettings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from kiota_abstractions.request_information import RequestInformation
    from msgraph import GraphServiceClient

log = logging.getLogger("connectors.entra")

T = TypeVar("T")
Sleeper = Callable[[float], Awaitable[None]]
Json = dict[str, Any]

MAX_ATTEMPTS = 6
MAX_RESTARTS = 3  # of one listing whose page token expired
MAX_BACKOFF = 120.0
BATCH_SIZE = 20
RETRIABLE = frozenset({429, 500, 502, 503, 504})
EXPIRED_CODES = frozenset({"Directory_ExpiredPageToken", "resyncRequired", "syncStateNotFound"})


RESTART: Json = {}  # yielded by `pages` before it lists again from the first page


class ExpiredPageToken(ProviderError):
    """The service no longer accepts a skip or delta token: restart the listing."""


def error_for(
    tenant: str,
    status: int | None,
    code: str | None,
    message: str,
    object_id: str | None,
    retry_after: str | None = None,
) -> ConnectorError:
    """THE mapping from a Graph answer to the typed errors of connectors.base."""
    text = f"{status} {code or ''}: {message}".strip()
    if status == 410 or code in EXPIRED_CODES:
        return ExpiredPageToken(tenant, text, object_id)
    if status in (401, 403):
        return PermissionDenied(tenant, text, object_id)
    if status == 404:
        return NotFound(tenant, text, object_id)
    if status is None or status in RETRIABLE:
        return TransientError(tenant, text, object_id, retry_after=_seconds(retry_after))
    return ProviderError(tenant, text, object_id)


def map_exception(tenant: str, exc: Exception, object_id: str | None) -> ConnectorError:
    """Every exception the SDK, azure-identity or httpx raises, mapped once."""
    from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
    from kiota_abstractions.api_error import APIError

    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, APIError):
        main = (
            getattr(getattr(exc, "error", None), "code", None),
            getattr(getattr(exc, "error", None), "message", None),
        )
        headers = {k.lower(): v for k, v in (exc.response_headers or {}).items()}
        return error_for(
            tenant,
            exc.response_status_code,
            main[0],
            main[1] or str(exc),
            object_id,
            _header(headers, "retry-after"),
        )
    if isinstance(exc, ClientAuthenticationError):
        return PermissionDenied(tenant, f"token request failed: {exc.message}", object_id)
    if isinstance(exc, httpx.TransportError | ServiceRequestError | json.JSONDecodeError):
        return TransientError(tenant, f"{type(exc).__name__}: {exc}", object_id)
    return ProviderError(tenant, f"{type(exc).__name__}: {exc}", object_id)


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    value = headers.get(name)
    if isinstance(value, list | tuple | set):
        value = next(iter(value), None)
    return str(value) if value is not None else None


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def backoff(error: TransientError, attempt: int) -> float:
    if error.retry_after is not None:
        return min(error.retry_after, MAX_BACKOFF)
    return min(2.0**attempt, MAX_BACKOFF)


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


def make_credential(settings: EntraSettings) -> AsyncTokenCredential:
    from azure.identity.aio import CertificateCredential, ClientSecretCredential

    common: dict[str, Any] = {
        "authority": str(settings.authority).rstrip("/"),
        "disable_instance_discovery": True,
    }
    if settings.ca_bundle:
        common["connection_verify"] = settings.ca_bundle
    if settings.client_secret is not None:
        return ClientSecretCredential(
            settings.tenant_id,
            settings.client_id,
            settings.client_secret.get_secret_value(),
            **common,
        )
    assert settings.certificate is not None
    return CertificateCredential(
        settings.tenant_id,
        settings.client_id,
        certificate_data=settings.certificate.get_secret_value().encode(),
        **common,
    )


class GraphClient:
    """One tenant's Graph session: every request of the connector goes through `call`."""

    def __init__(self, settings: EntraSettings, *, sleep: Sleeper) -> None:
        from kiota_http.middleware.options import RetryHandlerOption
        from msgraph import GraphServiceClient
        from msgraph.graph_request_adapter import GraphRequestAdapter
        from msgraph.graph_request_adapter import options as sdk_options
        from msgraph_core import GraphClientFactory
        from msgraph_core.authentication import AzureIdentityAuthenticationProvider

        self.tenant = settings.name
        self.sleep = sleep
        self.graph_url = str(settings.graph_url).rstrip("/")
        self.credential = make_credential(settings)
        options = dict(sdk_options)
        options[RetryHandlerOption.get_key()] = RetryHandlerOption(max_retries=0)
        self.http = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(verify=tls_context(settings.ca_bundle), timeout=60.0),
            options=options,
        )
        auth = AzureIdentityAuthenticationProvider(
            self.credential,
            scopes=[f"{self.graph_url}/.default"],
            allowed_hosts=[urlsplit(self.graph_url).hostname or ""],
        )
        self.adapter = GraphRequestAdapter(auth, client=self.http)
        self.adapter.base_url = f"{self.graph_url}/v1.0"
        self.sdk: GraphServiceClient = GraphServiceClient(request_adapter=self.adapter)

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.credential.close()

    async def call(self, operation: Callable[[], Awaitable[T]], object_id: str | None = None) -> T:
        """Run one request, retrying throttling and transient failures via `sleep`."""
        for attempt in range(MAX_ATTEMPTS):
            try:
                return await operation()
            except Exception as exc:
                error = map_exception(self.tenant, exc, object_id)
                if not isinstance(error, TransientError) or attempt == MAX_ATTEMPTS - 1:
                    raise error from exc
                log.info("tenant %s: retrying after %s", self.tenant, error.message)
                await self.sleep(backoff(error, attempt))
        raise AssertionError("unreachable")

    def request_for(self, url: str) -> RequestInformation:
        return self.sdk.service_principals.with_url(url).to_get_request_information()

    async def get_json(self, request: RequestInformation, object_id: str | None = None) -> Json:
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError

        async def send() -> Json:
            raw = await self.adapter.send_primitive_async(request, "bytes", {"XXX": ODataError})
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ProviderError(self.tenant, "response is not a JSON object", object_id)
            return body

        return await self.call(send, object_id)

    async def pages(
        self, first: Callable[[], RequestInformation], what: str
    ) -> AsyncIterator[Json]:
        """Every page of a listing: follows `@odata.nextLink` verbatim, stops on a repeated
        link, and restarts from the first page when a page token has expired."""
        restarts = 0
        request, seen = first(), set[str]()
        while True:
            try:
                page = await self.get_json(request, what)
            except ExpiredPageToken:
                if not seen or restarts >= MAX_RESTARTS:
                    raise
                restarts += 1
                log.warning("tenant %s: page token of %s expired, restarting", self.tenant, what)
                request, seen = first(), set()
                yield RESTART
                continue
            yield page
            link = page.get("@odata.nextLink")
            if not isinstance(link, str) or not link:
                return
            if link in seen:
                log.warning("tenant %s: %s repeated a next link; stopping", self.tenant, what)
                return
            seen.add(link)
            request = self.request_for(link)

    async def batch_get(self, urls: Mapping[str, str]) -> dict[str, Json]:
        """GET many relative URLs through JSON `$batch`; a throttled item is retried alone.

        Returns key -> {"status", "headers", "body"} for every key.
        """
        pending, results = dict(urls), dict[str, Json]()
        for attempt in range(MAX_ATTEMPTS):
            waits: list[TransientError] = []
            for chunk in _chunks(list(pending.items()), BATCH_SIZE):
                for key, reply in (await self._batch_once(dict(chunk))).items():
                    error = self.reply_error(reply, key)
                    if isinstance(error, TransientError) and attempt < MAX_ATTEMPTS - 1:
                        waits.append(error)
                        continue
                    results[key] = reply
                    pending.pop(key)
            if not pending:
                return results
            await self.sleep(max(backoff(e, attempt) for e in waits))
        raise AssertionError("unreachable")

    async def _batch_once(self, urls: dict[str, str]) -> dict[str, Json]:
        from kiota_abstractions.method import Method

        keys = list(urls)
        body = {
            "requests": [
                {"id": str(n), "method": "GET", "url": urls[key]} for n, key in enumerate(keys)
            ]
        }
        request = self.request_for(f"{self.graph_url}/v1.0/$batch")
        request.http_method = Method.POST
        request.headers.try_add("Content-Type", "application/json")
        request.content = json.dumps(body).encode()
        answer = await self.get_json(request, "$batch")
        replies: dict[str, Json] = {}
        for item in answer.get("responses") or []:
            if isinstance(item, dict) and str(item.get("id", "")).isdigit():
                index = int(item["id"])
                if index < len(keys):
                    replies[keys[index]] = item
        missing = [k for k in keys if k not in replies]
        if missing:
            raise TransientError(self.tenant, "batch answer lacks some responses", missing[0])
        return replies

    def reply_error(self, reply: Json, object_id: str | None) -> ConnectorError | None:
        status = reply.get("status")
        if isinstance(status, int) and 200 <= status < 300:
            return None
        detail = as_object(as_object(reply.get("body")).get("error"))
        headers = as_object(reply.get("headers"))
        return error_for(
            self.tenant,
            status if isinstance(status, int) else None,
            detail.get("code"),
            str(detail.get("message") or "batch item failed"),
            object_id,
            _header({k.lower(): v for k, v in headers.items()}, "retry-after"),
        )

    async def batch_collections(self, urls: Mapping[str, str]) -> dict[str, list[Json]]:
        """Every item of many sub-collections (owners, assignments): batched first pages;
        a collection with more pages is read whole on its own. A 404 means empty."""
        collected: dict[str, list[Json]] = {}
        for key, reply in (await self.batch_get(urls)).items():
            error = self.reply_error(reply, key)
            if isinstance(error, NotFound):
                collected[key] = []
                continue
            if error is not None:
                raise error
            body = as_object(reply.get("body"))
            collected[key] = _values(body)
            if body.get("@odata.nextLink"):
                collected[key] = await self.collect(f"{self.graph_url}/v1.0{urls[key]}", key)
        return collected

    async def collect(self, url: str, what: str) -> list[Json]:
        """Every item of one listing, read from its first page again (so an expired
        page token restarts it cleanly)."""
        items: list[Json] = []
        async for page in self.pages(lambda: self.request_for(url), what):
            if page is RESTART:
                items.clear()
            items.extend(_values(page))
        return items


def _values(page: Json) -> list[Json]:
    """The objects of a collection page (non-objects are left for the caller's checks)."""
    values = page.get("value")
    return [v for v in values if isinstance(v, dict)] if isinstance(values, list) else []


def _chunks(items: list[T], size: int) -> Iterable[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
