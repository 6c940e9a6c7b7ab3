"""Issue #16 items 2 and 3: API tokens are paged, a role may not see them, and what a token
record tells about its use and its user."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from connectors.base import PrincipalKind, Status
from sandbox.okta import build
from sandbox.tls import SandboxCA
from tests.okta.conftest import FakeClock, Org, _generous, checkpoint, collect, merged, serve_org

pytestmark = pytest.mark.anyio


@pytest.fixture
def token_org(sandbox_ca: SandboxCA, clock: FakeClock, tmp_path: Path) -> Iterator[Org]:
    """More tokens than one page of 200 can hold."""
    emulator = build(seed=5, size=15, clock=clock.time, limits=_generous(), api_tokens=230)
    yield from serve_org(emulator, clock, sandbox_ca, tmp_path / "secrets")


def test_the_emulator_pages_tokens_like_okta(token_org: Org) -> None:
    """20 by default, `limit` up to 200, the next page only in Link (provider-facts.md)."""
    url = token_org.server.url + "/api/v1/api-tokens"
    headers = {"Authorization": f"SSWS {token_org.emulator.read_token}"}
    with httpx.Client(verify=str(token_org.ca.ca_bundle), headers=headers) as http:
        default = http.get(url)
        largest = http.get(url, params={"limit": 500})
        refused = http.get(
            url, headers={"Authorization": f"SSWS {token_org.emulator.readonly_token}"}
        )
    assert len(default.json()) == 20
    assert 'rel="next"' in default.headers["Link"]
    assert "after=" in default.headers["Link"]
    assert len(largest.json()) == 200
    assert refused.status_code == 403
    assert refused.json()["errorCode"] == "E0000006"


async def test_every_token_is_found_past_the_first_page(token_org: Org) -> None:
    records = merged(await collect(token_org.connector()))
    tokens = {p.external_id for p in records["principals"] if p.kind == PrincipalKind.API_TOKEN}
    assert tokens == set(token_org.emulator.truth.api_tokens)
    pages = [r for r in token_org.emulator.requests if r.path == "/api/v1/api-tokens"]
    assert len(pages) == 2
    assert pages[1].arg("after")


async def test_read_only_admin_discovers_the_rest(org: Org) -> None:
    pages = await collect(org.connector(auth="readonly"))
    records = merged(pages)
    final = checkpoint(pages)
    assert final.full
    assert "api_token" in final.not_visible
    assert (
        "Super" in final.not_visible["api_token"] or "E0000006" in (final.not_visible["api_token"])
    )
    kinds = {p.kind for p in records["principals"]}
    assert PrincipalKind.API_TOKEN not in kinds
    assert PrincipalKind.OAUTH_APP in kinds
    # A Read-Only Administrator does not see AI agents either (they need SUPER_ADMIN).
    assert "agent_identity" in final.not_visible


async def test_token_last_use_is_derived_and_deactivated_users_tokens_are_disabled(
    org: Org,
) -> None:
    truth = org.emulator.truth
    assert truth.deactivated_tokens, "the seed gives a departed user a token"
    records = merged(await collect(org.connector()))
    tokens = {p.external_id: p for p in records["principals"] if p.kind == PrincipalKind.API_TOKEN}
    disabled = {t for t, p in tokens.items() if p.status == Status.DISABLED}
    assert disabled == truth.deactivated_tokens
    assert all("deactivated" in tokens[t].raw["disabled_reason"] for t in disabled)
    used = {a.principal_id: a.last_used_at for a in records["activity"] if a.principal_id in tokens}
    assert used == truth.token_last_used
    assert all("tokenWindow" in p.raw["last_used_source"] for p in tokens.values())
