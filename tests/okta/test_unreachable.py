"""Issue #20: an org that cannot be reached ends the run at once, in one readable line that
names the tenant, instead of minutes of retries and raw exception reprs."""

from __future__ import annotations

import time

import pytest

from connectors.base import TransientError
from sandbox.server import free_port
from tests.okta.conftest import Org, collect

pytestmark = pytest.mark.anyio


async def test_connection_refused_fails_fast_and_readably(org: Org) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(TransientError) as raised:
        await collect(org.connector(org_url=url))
    assert time.monotonic() - started < 15
    assert not org.clock.sleeps, "no retries, no backoff"
    message = str(raised.value)
    assert message.startswith("okta-test: cannot reach ")
    assert "connection refused" in message
    assert "\n" not in message
    assert "Error(" not in message


async def test_an_untrusted_certificate_says_so(org: Org) -> None:
    started = time.monotonic()
    with pytest.raises(TransientError, match="TLS certificate not trusted") as raised:
        await collect(org.connector(ca_bundle=None))
    assert time.monotonic() - started < 15
    assert "ca_bundle" in str(raised.value)
    assert "\n" not in str(raised.value)
