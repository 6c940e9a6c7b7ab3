"""The msgraph-sdk facade: auth, TLS, pacing, paging, `$batch`, retries and THE error mapping.

Bulk reads go through the SDK's request builders, auth provider and middleware but are
parsed with `json.loads`: Kiota's model parsing costs ~5 ms per service principal
(../shared/notes/sdk-behaviour.md). The SDK's own retry handler is switched off so that
every wait goes through the injected `sleep` or the shared pacer.

Pacing (learn.microsoft.com/graph/throttling-limits): every directory request first takes
its documented resource-unit cost from the tenant's bucket, then `charge`s the difference
the answer's `x-ms-resource-unit` reports; a 429's `Retry-After` holds every caller of the
tenant off. Application reads that `$select` keyCredentials take from their own
150-per-minute bucket (application-list doc), audit-log reads from the 5-per-10-s reports
bucket.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx

from connectors.base import (
    ConnectorError,
    NotFound,
    PermissionDenied,
    ProviderError,
    TransientError,
)
from connectors.entra.transform import as_object
from connectors.pacing import Limit, Pacer
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
# An unreachable tenant fails within 15 s: a refused connection is tried three times (1 s
# and 2 s apart), a connection that times out twice, TLS and DNS failures once.
UNREACHABLE_ATTEMPTS = {"refused": 3, "timeout": 2, "TLS": 1, "DNS": 1}
MAX_RESTARTS = 3  # of one listing whose page token expired
MAX_BACKOFF = 120.0
BATCH_SIZE = 20
CONNECT_TIMEOUT = 5.0  # seconds
RETRIABLE = frozenset({429, 500, 502, 503, 504})
EXPIRED_CODES = frozenset({"Directory_ExpiredPageToken", "resyncRequired", "syncStateNotFound"})
ALREADY_EXISTS = re.compile(r"already exists", re.IGNORECASE)
TWO_UNIT_PATHS = re.compile(
    r"^(applications|oauth2PermissionGrants|oauth2PermissionGrants/[^/]+"
    r"|servicePrincipals/[^/]+/appRoleAssignments|users)$"
)
UNITS, KEY_READS, REPORTS = "graph-units", "graph-key-reads", "graph-reports"
UNREACHABLE_REASONS = (  # (what the exception says, kind, what the operator reads)
    (
        ("connection refused", "connect call failed", "all connection attempts failed"),
        "refused",
        "the connection was refused",
    ),
    (
        ("certificate_verify_failed", "certificate verify failed"),
        "TLS",
        "its TLS certificate is not trusted (set ca_bundle if a proxy or private CA signs it)",
    ),
    (
        ("name or service not known", "nodename nor servname", "name resolution", "getaddrinfo"),
        "DNS",
        "its host name does not resolve",
    ),
    (("timed out", "timeout"), "timeout", "the connection timed out"),
)

RESTART: Json = {}  # yielded by `pages` before it lists again from the first page


class ExpiredPageToken(ProviderError):
    """The service no longer accepts a skip or delta token: restart the listing."""


class AlreadyExists(ProviderError):
    """A create found its object already there (409, or Graph's 400 "already exists")."""


class Throttled(TransientError):
    """429: the tenant's budget is spent until `retry_after`."""


class Unreachable(TransientError):
    """No HTTP answer at all: refused, unresolvable, untrusted TLS, connect timeout."""

    def __init__(self, tenant: str, message: str, *, kind: str) -> None:
        super().__init__(tenant, message)
        self.kind = kind  # refused | timeout | TLS | DNS
        self.attempts = UNREACHABLE_ATTEMPTS[kind]


@dataclass(frozen=True)
class Cost:
    """What one request takes from which buckets (documented costs, corrected later)."""

    units: int = 1
    key_read: bool = False
    report: bool = False


def request_cost(method: str, url: str) -> Cost:
    """The documented cost (throttling-limits: base 2 or 1, $select -1, $expand +1, $top
    under 20 -1, at least 1) and the narrower limits the request falls under."""
    split = urlsplit(url)
    path = re.sub(r"^/(v1\.0|beta)/", "", split.path)
    query = parse_qs(split.query)
    if path.startswith("auditLogs/"):
        return Cost(units=0, report=True)
    units = 2 if method == "GET" and TWO_UNIT_PATHS.match(path) else 1
    units += ("$expand" in query) - ("$select" in query)
    top = (query.get("$top") or [""])[0]
    if top.isdigit() and int(top) < 20:
        units -= 1
    selected = ",".join(query.get("$select", []))
    # Our applications delta links carry a `$select` with keyCredentials in their token.
    key_read = "keyCredentials" in selected or path.startswith("applications/delta")
    is_app = path.startswith("applications") and path.count("/") <= 1
    return Cost(units=max(1, units), key_read=key_read and is_app)


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
    if status == 409 or (status == 400 and ALREADY_EXISTS.search(message)):
        return AlreadyExists(tenant, text, object_id)
    if status in (401, 403):
        return PermissionDenied(tenant, text, object_id)
    if status == 404:
        return NotFound(tenant, text, object_id)
    if status == 429:
        return Throttled(tenant, text, object_id, retry_after=_seconds(retry_after))
    if status is None or status in RETRIABLE:
        return TransientError(tenant, text, object_id, retry_after=_seconds(retry_after))
    return ProviderError(tenant, text, object_id)


def unreachable(tenant: str, exc: Exception, where: str) -> Unreachable | None:
    """One readable line for a connection that never got an HTTP answer."""
    text = f"{type(exc).__name__} {exc} {exc.__cause__ or ''}".lower()
    for needles, kind, reason in UNREACHABLE_REASONS:
        if any(needle in text for needle in needles):
            return Unreachable(tenant, f"cannot reach {where}: {reason}", kind=kind)
    return None


def map_exception(tenant: str, exc: Exception, object_id: str | None, where: str) -> ConnectorError:
    """Every exception the SDK, azure-identity or httpx raises, mapped once."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        ServiceRequestError,
        ServiceResponseError,
    )
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
        status = getattr(exc.response, "status_code", None)
        if status is not None and status >= 500:  # the token endpoint failed, not the secret
            return TransientError(tenant, f"token request failed ({status})", object_id)
        if status is None:
            return unreachable(tenant, exc, where) or TransientError(
                tenant, f"token request failed: {exc.message}", object_id
            )
        return PermissionDenied(tenant, f"token request failed: {exc.message}", object_id)
    if isinstance(
        exc,
        httpx.TransportError | ServiceRequestError | ServiceResponseError | json.JSONDecodeError,
    ):
        return unreachable(tenant, exc, where) or TransientError(
            tenant, f"{type(exc).__name__}: {exc}", object_id
        )
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
        # Retries are ours (GraphClient.call): azure-identity's own would spend minutes on
        # an authority that refuses connections.
        "retry_total": 0,
        "connection_timeout": CONNECT_TIMEOUT,
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


@dataclass
class Usage:
    """What this client asked of Graph, as the answers reported it."""

    requests: int = 0
    resource_units: int = 0
    throttled: int = 0


class GraphClient:
    """One tenant's Graph session: every request of the connector goes through it."""

    def __init__(self, settings: EntraSettings, *, sleep: Sleeper, pacer: Pacer) -> None:
        from kiota_http.middleware.options import RetryHandlerOption
        from msgraph import GraphServiceClient
        from msgraph.graph_request_adapter import GraphRequestAdapter
        from msgraph.graph_request_adapter import options as sdk_options
        from msgraph_core import GraphClientFactory
        from msgraph_core.authentication import AzureIdentityAuthenticationProvider

        self.tenant = settings.name
        self.sleep = sleep
        self.pacer = pacer
        self.usage = Usage()
        self.graph_url = str(settings.graph_url).rstrip("/")
        self.authority = str(settings.authority).rstrip("/")
        reserve = settings.quota_reserve
        self.limits = {
            UNITS: Limit.for_quota(settings.resource_units_per_10s, 10.0, reserve),
            KEY_READS: Limit.for_quota(150.0, 60.0, reserve),
            # per app and tenant, nobody else's: 4 of the 5 per 10 s, all spendable at once
            REPORTS: Limit(per_window=4.0, window=10.0, burst=4.0),
        }
        self.credential = make_credential(settings)
        options = dict(sdk_options)
        options[RetryHandlerOption.get_key()] = RetryHandlerOption(max_retries=0)
        timeout = httpx.Timeout(60.0, connect=CONNECT_TIMEOUT)
        self.http = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(verify=tls_context(settings.ca_bundle), timeout=timeout),
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

    def where(self, exc: Exception) -> str:
        """Which end an unanswered request was for: the token authority or Graph."""
        from azure.core.exceptions import AzureError

        if isinstance(exc, AzureError):
            return f"the sign-in authority {self.authority}"
        return f"Microsoft Graph at {self.graph_url}"

    # pacing -------------------------------------------------------------------------

    async def admit(self, cost: Cost) -> None:
        if cost.report:
            await self.pacer.acquire(REPORTS, self.limits[REPORTS], 1.0)
            return
        if cost.key_read:
            await self.pacer.acquire(KEY_READS, self.limits[KEY_READS], 1.0)
        await self.pacer.acquire(UNITS, self.limits[UNITS], cost.units)

    def settle(self, cost: Cost, units: str | None) -> None:
        """The answer said what the request really cost: correct the estimate."""
        self.usage.requests += 1
        spent = int(units) if units and units.isdigit() else (0 if cost.report else cost.units)
        self.usage.resource_units += spent
        if not cost.report and spent != cost.units:
            self.pacer.charge(UNITS, self.limits[UNITS], spent - cost.units)

    def refused(self, cost: Cost, error: Throttled) -> None:
        """A 429: nothing was spent, and nobody of this tenant asks again before it says."""
        self.usage.throttled += 1
        bucket = REPORTS if cost.report else (KEY_READS if cost.key_read else UNITS)
        if not cost.report:
            self.pacer.charge(UNITS, self.limits[UNITS], -cost.units)
        self.pacer.hold_off(bucket, error.retry_after or 1.0)

    async def failed(self, error: ConnectorError, attempt: int, cost: Cost | None) -> None:
        """Wait before the next attempt, or raise `error` when it is not worth one."""
        if isinstance(error, Unreachable):
            if attempt >= error.attempts - 1:
                raise error
            await self.sleep(float(attempt + 1))
            return
        if not isinstance(error, TransientError) or attempt == MAX_ATTEMPTS - 1:
            raise error
        log.info("tenant %s: retrying after %s", self.tenant, error.message)
        if isinstance(error, Throttled) and cost is not None:
            self.refused(cost, error)
            return
        await self.sleep(backoff(error, attempt))

    # requests -----------------------------------------------------------------------

    async def call(
        self,
        operation: Callable[[], Awaitable[T]],
        object_id: str | None = None,
        cost: Cost = Cost(),
    ) -> T:
        """One request through the SDK's models (single objects and writes)."""
        for attempt in range(MAX_ATTEMPTS):
            await self.admit(cost)
            try:
                result = await operation()
            except Exception as exc:
                error = map_exception(self.tenant, exc, object_id, self.where(exc))
                try:
                    await self.failed(error, attempt, cost)
                except ConnectorError as final:
                    raise final from exc
                continue
            self.settle(cost, None)
            return result
        raise AssertionError("unreachable")

    def request_for(self, url: str) -> RequestInformation:
        return self.sdk.service_principals.with_url(url).to_get_request_information()

    async def get_json(self, request: RequestInformation, object_id: str | None = None) -> Json:
        """One request parsed with `json.loads`, paced and charged by what it cost."""
        from kiota_http.middleware.options import HeadersInspectionHandlerOption
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError

        method = request.http_method.value if request.http_method else "GET"
        cost = request_cost(method, str(request.url))
        for attempt in range(MAX_ATTEMPTS):
            await self.admit(cost)
            headers = HeadersInspectionHandlerOption(inspect_response_headers=True)
            request.add_request_options([headers])
            try:
                raw = await self.adapter.send_primitive_async(request, "bytes", {"XXX": ODataError})
                body = json.loads(raw or b"{}")
            except Exception as exc:
                error = map_exception(self.tenant, exc, object_id, self.where(exc))
                try:
                    await self.failed(error, attempt, cost)
                except ConnectorError as final:
                    raise final from exc
                continue
            units = headers.response_headers.get("x-ms-resource-unit")
            self.settle(cost, next(iter(units), None) if units else None)
            if not isinstance(body, dict):
                raise ProviderError(self.tenant, "response is not a JSON object", object_id)
            return body
        raise AssertionError("unreachable")

    async def pages(
        self, first: Callable[[], RequestInformation], what: str, headers: Mapping[str, str] = {}
    ) -> AsyncIterator[Json]:
        """Every page of a listing: follows `@odata.nextLink` verbatim (sending `headers`
        with each), stops on a repeated link, and restarts from the first page when a page
        token has expired."""

        def with_headers(request: RequestInformation) -> RequestInformation:
            for name, value in headers.items():
                request.headers.try_add(name, value)
            return request

        restarts, seen = 0, set[str]()
        # The next page is asked for as soon as its link is known: it travels while the
        # caller works on this one.
        ahead = asyncio.ensure_future(self.get_json(with_headers(first()), what))
        try:
            while True:
                try:
                    page = await ahead
                except ExpiredPageToken:
                    if not seen or restarts >= MAX_RESTARTS:
                        raise
                    restarts += 1
                    log.warning(
                        "tenant %s: page token of %s expired, restarting", self.tenant, what
                    )
                    seen = set()
                    ahead = asyncio.ensure_future(self.get_json(with_headers(first()), what))
                    yield RESTART
                    continue
                link = page.get("@odata.nextLink")
                last = not isinstance(link, str) or not link or link in seen
                if isinstance(link, str) and link in seen:
                    log.warning("tenant %s: %s repeated a next link; stopping", self.tenant, what)
                if not last:
                    seen.add(str(link))
                    request = with_headers(self.request_for(str(link)))
                    ahead = asyncio.ensure_future(self.get_json(request, what))
                yield page
                if last:
                    return
        finally:
            if not ahead.done():
                ahead.cancel()
            elif not ahead.cancelled():
                ahead.exception()  # seen: a page asked for but no longer wanted

    def listing(self, url: str, what: str, headers: Mapping[str, str] = {}) -> AsyncIterator[Json]:
        return self.pages(lambda: self.request_for(url), what, headers)

    # $batch --------------------------------------------------------------------------

    async def batch_get(self, urls: Mapping[str, str]) -> dict[str, Json]:
        """GET many relative URLs through JSON `$batch`; a throttled item is retried alone.
        Each sub-request is paced and charged like a request of its own.

        Returns key -> {"status", "headers", "body"} for every key.
        """
        pending, results = dict(urls), dict[str, Json]()
        for attempt in range(MAX_ATTEMPTS):
            throttled: list[TransientError] = []
            for chunk in _chunks(list(pending.items()), BATCH_SIZE):
                costs = {key: request_cost("GET", f"/v1.0{url}") for key, url in chunk}
                for cost in costs.values():
                    await self.admit(cost)
                for key, reply in (await self._batch_once(dict(chunk))).items():
                    error = self.reply_error(reply, key)
                    units = _header(_lower(as_object(reply.get("headers"))), "x-ms-resource-unit")
                    if isinstance(error, TransientError) and attempt < MAX_ATTEMPTS - 1:
                        if isinstance(error, Throttled):
                            self.refused(costs[key], error)
                        throttled.append(error)
                        continue
                    self.settle(costs[key], units)
                    results[key] = reply
                    pending.pop(key)
            if not pending:
                return results
            if not any(isinstance(e, Throttled) for e in throttled):
                await self.sleep(max(backoff(e, attempt) for e in throttled))
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
        answer = await self.post_batch(request)
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

    async def post_batch(self, request: RequestInformation) -> Json:
        """The `$batch` envelope itself costs nothing: its sub-requests were paced."""
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError

        for attempt in range(MAX_ATTEMPTS):
            try:
                raw = await self.adapter.send_primitive_async(request, "bytes", {"XXX": ODataError})
                body = json.loads(raw or b"{}")
            except Exception as exc:
                error = map_exception(self.tenant, exc, "$batch", self.where(exc))
                try:
                    await self.failed(error, attempt, None)
                except ConnectorError as final:
                    raise final from exc
                continue
            if not isinstance(body, dict):
                raise ProviderError(self.tenant, "response is not a JSON object", "$batch")
            return body
        raise AssertionError("unreachable")

    def reply_error(self, reply: Json, object_id: str | None) -> ConnectorError | None:
        status = reply.get("status")
        if isinstance(status, int) and 200 <= status < 300:
            return None
        detail = as_object(as_object(reply.get("body")).get("error"))
        return error_for(
            self.tenant,
            status if isinstance(status, int) else None,
            detail.get("code"),
            str(detail.get("message") or "batch item failed"),
            object_id,
            _header(_lower(as_object(reply.get("headers"))), "retry-after"),
        )

    async def batch_collections(self, urls: Mapping[str, str]) -> dict[str, list[Json]]:
        """Every item of many sub-collections: batched first pages; a collection with more
        pages is read whole on its own. A 404 means empty."""
        collected: dict[str, list[Json]] = {}
        for key, reply in (await self.batch_get(urls)).items():
            error = self.reply_error(reply, key)
            if isinstance(error, NotFound):
                collected[key] = []
                continue
            if error is not None:
                raise error
            body = as_object(reply.get("body"))
            collected[key] = values(body)
            if body.get("@odata.nextLink"):
                collected[key] = await self.collect(f"{self.graph_url}/v1.0{urls[key]}", key)
        return collected

    async def collect(self, url: str, what: str) -> list[Json]:
        """Every item of one listing, read from its first page again (so an expired
        page token restarts it cleanly)."""
        items: list[Json] = []
        async for page in self.listing(url, what):
            if page is RESTART:
                items.clear()
            items.extend(values(page))
        return items

    async def objects(self, urls: Mapping[str, str]) -> tuple[dict[str, Json], set[str]]:
        """Single objects by key: (found, the keys that answered 404)."""
        found: dict[str, Json] = {}
        missing: set[str] = set()
        for key, reply in (await self.batch_get(urls)).items():
            error = self.reply_error(reply, key)
            if error is None and isinstance(reply.get("body"), dict):
                found[key] = reply["body"]
            elif isinstance(error, NotFound):
                missing.add(key)
            elif error is not None:
                raise error
        return found, missing


def values(page: Json) -> list[Json]:
    """The objects of a collection page (non-objects are left for the caller's checks)."""
    found = page.get("value")
    return [v for v in found if isinstance(v, dict)] if isinstance(found, list) else []


def _lower(headers: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in headers.items()}


def _chunks(items: list[T], size: int) -> Iterable[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
