"""Issue #16 item 9: the okta SDK behaviour connectors/okta/client.py relies on, pinned, so
an incompatible SDK release fails here and not in a production run.

The connector drives the SDK's request executor directly (auth, OAuth token and DPoP
proofs, session) and reads raw responses; these are the exact calls and shapes it uses.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from okta.http_client import HTTPClient

from connectors.okta.client import CONNECT_SECONDS, OktaClient
from sandbox.server import free_port
from tests.okta.conftest import Org

pytestmark = pytest.mark.anyio


def client_for(org: Org, **settings: Any) -> OktaClient:
    return OktaClient(org.settings(**settings), sleep=org.clock.sleep, pacer=org.pacer())


async def test_the_request_executor_contract(org: Org) -> None:
    client = client_for(org)
    try:
        executor = (await client._client()).get_request_executor()
        # create_request(method, url, body) -> (request dict, None); the org URL is prefixed
        request, error = await executor.create_request("GET", "/api/v1/apps?limit=2", None)
        assert error is None
        assert request["url"] == org.server.url + "/api/v1/apps?limit=2"
        assert request["headers"]["Authorization"] == f"SSWS {org.emulator.read_token}"
        # execute(request) -> (aiohttp response, body text, error); headers keep every Link
        response, text, error = await executor.execute(request)
        assert error is None
        assert response.status == 200
        assert text.startswith("[")
        assert response.headers.getall("Link")
        # An HTTP error is returned with its response, not raised
        request, _ = await executor.create_request("GET", "/api/v1/apps/0oaNope", None)
        response, text, error = await executor.execute(request)
        assert response.status == 404
        assert error is not None
        assert "E0000007" in text
        # rateLimit.maxRetries 0: a 429 comes straight back, the waiting is ours
        org.emulator.faults.throttle_next = 1
        request, _ = await executor.create_request("GET", "/api/v1/users", None)
        response, _, _ = await executor.execute(request)
        assert response.status == 429
        assert not any(r.headers.get("x-okta-retry-count") for r in org.emulator.requests)
        # The `httpClient` key is honoured and its `_timeout` used for each request
        http_client = executor._http_client
        assert isinstance(http_client, HTTPClient)
        assert http_client._timeout.sock_connect == CONNECT_SECONDS
    finally:
        await client.aclose()


async def test_a_connection_that_cannot_be_made_is_returned_not_raised(org: Org) -> None:
    client = client_for(org, org_url=f"https://127.0.0.1:{free_port()}")
    try:
        executor = (await client._client()).get_request_executor()
        request, _ = await executor.create_request("GET", "/api/v1/apps", None)
        response, text, error = await executor.execute(request)
    finally:
        await client.aclose()
    assert response is None
    assert text is None
    assert isinstance(error, aiohttp.ClientConnectorError)


async def test_a_refused_token_request_comes_back_from_create_request(org: Org) -> None:
    org.emulator.service_client.dpop_bound = False
    org.emulator.service_client.scopes -= {"okta.logs.read"}
    client = client_for(
        org, auth="private_key_jwt", scopes=("okta.apps.read", "okta.logs.read"), dpop=False
    )
    try:
        executor = (await client._client()).get_request_executor()
        request, error = await executor.create_request("GET", "/api/v1/apps", None)
    finally:
        await client.aclose()
    assert request is None
    assert error.status == 400
    assert error.error_code == "invalid_scope"
    assert "[okta.logs.read]" in error.error_summary
