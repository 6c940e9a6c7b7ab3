"""Throttling, expired tokens, failures half-way, missing reports, unreachable tenants."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from connectors.base import (
    ConnectorError,
    Page,
    PermissionDenied,
    PrincipalKind,
    ProviderError,
    TransientError,
)
from connectors.entra import EntraConnector
from connectors.entra.client import Cost, Throttled, map_exception, unreachable
from connectors.settings import EntraSettings
from sandbox.entra import EntraEmulator, build
from sandbox.server import free_port
from sandbox.tls import SandboxCA, make_ca
from tests.entra.conftest import (
    TEST_CLOCK,
    FakeSleep,
    connector,
    discover,
    served,
    settings_for,
)


def principal_ids(pages: list[Page]) -> set[str]:
    return {p.external_id for page in pages for p in page.principals}


def expected_ids(app: EntraEmulator) -> set[str]:
    return set(app.tenant.truth.kinds)


def test_a_429_is_waited_out_then_retried(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    small_tenant.faults.only_paths = r"^/v1\.0/users$"
    small_tenant.faults.throttle_next = 2
    sleep = FakeSleep()
    with served(small_tenant, sandbox_ca) as url:
        pages = discover(connector(settings_for(small_tenant, url, sandbox_ca), sleep))
    assert principal_ids(pages) == expected_ids(small_tenant)
    assert len([w for w in sleep.waits if w == pytest.approx(7.0)]) >= 2  # Retry-After, twice
    assert pages[-1].checkpoint is not None
    statuses = [r.headers.get("retry-attempt") for r in small_tenant.requests]
    assert statuses.count(None) == len(statuses)  # no SDK-side retry: ours, paced


def test_a_429_holds_every_caller_off(small_tenant: EntraEmulator, sandbox_ca: SandboxCA) -> None:
    """Retry-After is for the tenant, not for the one request: another caller of the same
    tenant (another listing, another worker sharing the pacer) waits it out too."""

    async def scenario(conn: EntraConnector, sleep: FakeSleep) -> None:
        throttled = Throttled("entra-test", "429 TooManyRequests", retry_after=7.0)
        await conn.client.failed(throttled, 0, Cost(units=1))
        assert sleep.waits == []  # the throttled request itself only set the hold-off
        await conn.client.admit(Cost(units=2))  # somebody else's next request
        assert sleep.waits == [7.0]

    sleep = FakeSleep()
    with served(small_tenant, sandbox_ca) as url:
        conn = connector(settings_for(small_tenant, url, sandbox_ca), sleep)
        asyncio.run(scenario(conn, sleep))


def test_a_throttled_batch_item_is_retried_alone(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    small_tenant.switches.throttle_batch_items = 1
    with served(small_tenant, sandbox_ca) as url:
        pages = discover(connector(settings_for(small_tenant, url, sandbox_ca)))
    assert principal_ids(pages) == expected_ids(small_tenant)
    batches = [r for r in small_tenant.requests if r.path == "/v1.0/$batch"]
    assert len(batches) == 2  # the crowded app's owners, then that one item again


def test_resets_and_truncated_bodies_are_retried(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    small_tenant.faults.only_paths = r"^/v1\.0/"
    small_tenant.faults.reset_next = 1
    small_tenant.faults.truncate_next = 1
    sleep = FakeSleep()
    with served(small_tenant, sandbox_ca) as url:
        pages = discover(connector(settings_for(small_tenant, url, sandbox_ca), sleep))
    assert principal_ids(pages) == expected_ids(small_tenant)
    assert len(sleep.waits) == 2


def test_expired_page_token_restarts_the_listing(sandbox_ca: SandboxCA) -> None:
    paged = build(seed=3, size=300, clock=TEST_CLOCK)  # more than a page of applications
    paged.switches.expire_page_tokens_next = 2
    with served(paged, sandbox_ca) as url:
        pages = discover(connector(settings_for(paged, url, sandbox_ca)))
    assert principal_ids(pages) == expected_ids(paged)
    assert [r for r in paged.requests if r.arg("$skiptoken")]
    assert pages[-1].checkpoint is not None
    principals = [p.external_id for page in pages for p in page.principals]
    assert len(principals) == len(set(principals))


def test_tokens_that_keep_expiring_fail_the_run(sandbox_ca: SandboxCA) -> None:
    paged = build(seed=3, size=300, clock=TEST_CLOCK)
    paged.faults.expire_page_tokens = True
    seen: list[Page] = []
    with served(paged, sandbox_ca) as url, pytest.raises(ProviderError) as raised:
        discover(connector(settings_for(paged, url, sandbox_ca)), seen=seen)
    assert raised.value.tenant == "entra-test"
    assert all(page.checkpoint is None for page in seen)


def test_run_killed_half_way_yields_no_checkpoint(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    async def first_pages(url: str) -> list[Page]:
        conn = connector(settings_for(small_tenant, url, sandbox_ca))
        pages: list[Page] = []
        stream = conn.discover()
        try:
            async for page in stream:
                pages.append(page)
                if page.principals:
                    break
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
            await conn.aclose()
        return pages

    with served(small_tenant, sandbox_ca) as url:
        pages = asyncio.run(first_pages(url))
    assert pages[-1].principals
    assert all(page.checkpoint is None for page in pages)


def test_outage_half_way_raises_a_typed_error(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    small_tenant.faults.only_paths = r"/\$batch$"
    small_tenant.faults.fail_next = 100
    seen: list[Page] = []
    with served(small_tenant, sandbox_ca) as url, pytest.raises(TransientError) as raised:
        discover(connector(settings_for(small_tenant, url, sandbox_ca)), seen=seen)
    assert raised.value.tenant == "entra-test"
    assert raised.value.object_id == "$batch"
    assert seen
    assert all(page.checkpoint is None for page in seen)


@pytest.mark.parametrize("report", ["forbidden", "national", "absent"])
def test_an_unavailable_sign_in_report_means_unknown_activity(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA, report: str
) -> None:
    """403 without Entra ID P1; 400 or 404 where the beta report does not exist (national
    clouds): use is unknown, never "unused", and the run goes on."""
    small_tenant.switches.sign_in_report = report
    with served(small_tenant, sandbox_ca) as url:
        pages = discover(connector(settings_for(small_tenant, url, sandbox_ca)))
    assert not [a for page in pages for a in page.activity]
    assert principal_ids(pages) == expected_ids(small_tenant)
    assert pages[-1].checkpoint is not None
    assert pages[-1].checkpoint.full


def test_wrong_secret_is_permission_denied(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    with served(small_tenant, sandbox_ca) as url:
        settings = settings_for(small_tenant, url, sandbox_ca, client_secret="wrong")
        with pytest.raises(PermissionDenied):
            discover(connector(settings))


def test_certificate_credential(small_tenant: EntraEmulator, sandbox_ca: SandboxCA) -> None:
    client_id, pem = small_tenant.add_certificate_client()
    with served(small_tenant, sandbox_ca) as url:
        settings = EntraSettings(
            name="entra-cert",
            tenant_id=small_tenant.tenant.tenant_id,
            client_id=client_id,
            certificate=pem.decode(),
            graph_url=url,
            authority=url,
            ca_bundle=str(sandbox_ca.ca_bundle),
        )
        pages = discover(connector(settings))
    assert principal_ids(pages) == expected_ids(small_tenant)


def test_an_unknown_service_principal_type_is_kept_with_a_warning(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA, caplog: pytest.LogCaptureFixture
) -> None:
    """A servicePrincipalType Graph adds later is inventoried, never dropped."""
    future = next(i for i, k in small_tenant.tenant.truth.kinds.items() if k == "service_principal")
    small_tenant.tenant.service_principals[future]["servicePrincipalType"] = "NotYetKnown"
    with served(small_tenant, sandbox_ca) as url:
        pages = discover(connector(settings_for(small_tenant, url, sandbox_ca)))
    principals = {p.external_id: p for page in pages for p in page.principals}
    assert principals[future].kind is PrincipalKind.SERVICE_PRINCIPAL
    assert not [s for page in pages for s in page.skipped]
    assert f"{future} has servicePrincipalType 'NotYetKnown'" in caplog.text


def test_token_endpoint_failures_are_transient(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    """A 5xx from the token endpoint is the service's trouble, not a wrong secret."""
    small_tenant.switches.token_failures_next = 2
    sleep = FakeSleep()
    with served(small_tenant, sandbox_ca) as url:
        pages = discover(connector(settings_for(small_tenant, url, sandbox_ca), sleep))
    assert principal_ids(pages) == expected_ids(small_tenant)
    assert sleep.waits  # waited and asked again
    assert small_tenant.switches.tokens_issued >= 1


@pytest.mark.parametrize("where", ["graph", "authority"])
def test_an_unreachable_tenant_fails_fast_with_one_line(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA, where: str
) -> None:
    """Connection refused: a couple of quick retries, then one readable line naming the
    tenant and the address, not minutes of retries and raw exception reprs."""
    closed = f"https://127.0.0.1:{free_port()}"
    sleep = FakeSleep()
    with served(small_tenant, sandbox_ca) as url:
        ends = {"graph_url": closed} if where == "graph" else {"authority": closed}
        settings = settings_for(small_tenant, url, sandbox_ca, **ends)
        started = time.monotonic()
        with pytest.raises(ConnectorError) as raised:
            discover(connector(settings, sleep))
        elapsed = time.monotonic() - started
    message = str(raised.value)
    assert message.startswith("entra-test: cannot reach ")
    assert closed in message
    assert message.endswith("the connection was refused")
    assert "\n" not in message
    assert elapsed + sum(sleep.waits) < 15


def test_an_untrusted_certificate_fails_at_once(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA, tmp_path: Path
) -> None:
    other = make_ca(tmp_path)  # a CA nobody signed the emulator's certificate with
    sleep = FakeSleep()
    with served(small_tenant, sandbox_ca) as url:
        settings = settings_for(small_tenant, url, sandbox_ca, ca_bundle=str(other.ca_bundle))
        with pytest.raises(ConnectorError) as raised:
            discover(connector(settings, sleep))
    assert "TLS certificate is not trusted (set ca_bundle" in str(raised.value)
    assert sleep.waits == []


def test_dns_failures_read_as_such() -> None:
    error = unreachable("t", socket.gaierror(-2, "Name or service not known"), "Graph at x")
    assert error is not None
    assert error.attempts == 1
    assert str(error) == "t: cannot reach Graph at x: its host name does not resolve"


def test_token_timeouts_are_transient() -> None:
    from azure.core.exceptions import ServiceResponseError

    error = map_exception("t", ServiceResponseError("Read timed out"), None, "the authority x")
    assert isinstance(error, TransientError)
    assert not isinstance(error, PermissionDenied)
