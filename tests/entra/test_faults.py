"""Paging, throttling, expired tokens, failures half-way, a forbidden sign-in report."""

from __future__ import annotations

import asyncio

import pytest

from connectors.base import Page, PermissionDenied, ProviderError, TransientError
from connectors.settings import EntraSettings
from sandbox.entra import EntraEmulator
from sandbox.tls import SandboxCA
from tests.entra.conftest import FakeSleep, connector, discover, served, settings_for


def principal_ids(pages: list[Page]) -> set[str]:
    return {p.external_id for page in pages for p in page.principals}


def expected_ids(app: EntraEmulator) -> set[str]:
    return set(app.tenant.truth.kinds)


def test_many_pages_are_followed(small_tenant: EntraEmulator, sandbox_ca: SandboxCA) -> None:
    with served(small_tenant, sandbox_ca) as url:
        pages = discover(connector(settings_for(small_tenant, url, sandbox_ca, page_size=999)))
    assert principal_ids(pages) == expected_ids(small_tenant)
    delta_pages = [r for r in small_tenant.requests if "servicePrincipals/delta" in r.path]
    assert len(delta_pages) >= 8  # 120+ principals at 15 per delta page
    assert pages[-1].checkpoint is not None
    assert pages[-1].checkpoint.full


def test_throttling_honours_retry_after(small_tenant: EntraEmulator, sandbox_ca: SandboxCA) -> None:
    sleep = FakeSleep()
    small_tenant.faults.only_paths = r"^/v1\.0/"
    small_tenant.faults.throttle_next = 3
    small_tenant.switches.throttle_batch_items = 5
    small_tenant.faults.fail_next = 1
    with served(small_tenant, sandbox_ca) as url:
        pages = discover(connector(settings_for(small_tenant, url, sandbox_ca), sleep))
    assert principal_ids(pages) == expected_ids(small_tenant)
    assert sleep.waits.count(7.0) == 4  # 3 whole requests + one wait for the batch items
    assert pages[-1].checkpoint is not None
    statuses = [r.headers.get("retry-attempt") for r in small_tenant.requests]
    assert statuses.count(None) == len(statuses)  # no SDK-side retry: ours, via sleep


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


def test_expired_page_token_restarts_the_listing(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    small_tenant.switches.expire_page_tokens_next = 2
    with served(small_tenant, sandbox_ca) as url:
        pages = discover(connector(settings_for(small_tenant, url, sandbox_ca)))
    assert principal_ids(pages) == expected_ids(small_tenant)
    assert pages[-1].checkpoint is not None
    principals = [p.external_id for page in pages for p in page.principals]
    assert len(principals) == len(set(principals))


def test_tokens_that_keep_expiring_fail_the_run(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    small_tenant.faults.expire_page_tokens = True
    seen: list[Page] = []
    with served(small_tenant, sandbox_ca) as url, pytest.raises(ProviderError) as raised:
        discover(connector(settings_for(small_tenant, url, sandbox_ca)), seen=seen)
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


def test_forbidden_sign_in_report_means_unknown_activity(
    small_tenant: EntraEmulator, sandbox_ca: SandboxCA
) -> None:
    small_tenant.switches.sign_in_report = "forbidden"
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
