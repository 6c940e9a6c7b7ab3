"""Issue #16 item 4: the System Log read in bounded windows of only the events used, halved
when Okta times a query out, and continued from the last run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from sandbox.okta import Volume, build
from sandbox.tls import SandboxCA
from tests.okta.conftest import FakeClock, Org, _generous, checkpoint, collect, merged, serve_org

pytestmark = pytest.mark.anyio


@pytest.fixture
def busy_org(sandbox_ca: SandboxCA, clock: FakeClock, tmp_path: Path) -> Iterator[Org]:
    """Thousands of sign-ins a day: a query over the whole 90 days takes too long."""
    emulator = build(
        seed=9,
        size=30,
        clock=clock.time,
        limits=_generous(),
        volume=Volume(sso_per_day=2000, token_every_hours=24),
    )
    emulator.scan_budget = 50_000
    yield from serve_org(emulator, clock, sandbox_ca, tmp_path / "secrets")


def log_requests(org: Org) -> list[httpx.QueryParams]:
    return [
        httpx.QueryParams({k: v[0] for k, v in r.query.items()})
        for r in org.emulator.requests
        if r.path == "/api/v1/logs"
    ]


async def test_only_creations_and_token_grants_in_bounded_windows(org: Org) -> None:
    await collect(org.connector())
    for query in log_requests(org):
        assert query.get("since"), "a bounded window needs both ends"
        assert query.get("until"), "a bounded window needs both ends"
        assert "user.authentication.sso" not in query["filter"]
        assert "application.lifecycle.create" in query["filter"]
        assert "app.oauth2.token.grant.access_token" in query["filter"]


async def test_a_timed_out_window_is_halved_and_the_run_completes(busy_org: Org) -> None:
    truth = busy_org.emulator.truth
    pages = await collect(busy_org.connector())
    served = [status for _, bucket, status in busy_org.emulator.served if bucket == "logs"]
    assert 500 in served, "the 90-day query timed out (E0000009)"
    assert served[-1] == 200
    final = checkpoint(pages)
    assert final.cursor["log_window_seconds"] < timedelta(days=45).total_seconds()
    used = {
        a.principal_id: a.last_used_at
        for a in merged(pages)["activity"]
        if a.principal_id in truth.oauth_apps
    }
    assert used == truth.last_used


async def test_the_next_run_reads_only_what_is_new(org: Org) -> None:
    truth = org.emulator.truth
    first = await collect(org.connector())
    cursor = dict(checkpoint(first).cursor)
    asked_before = len(log_requests(org))
    await org.clock.sleep(86_400)  # a day later
    second = await collect(org.connector(), cursor)
    query = log_requests(org)[asked_before]
    since = datetime.fromisoformat(query["since"].replace("Z", "+00:00"))
    until = datetime.fromisoformat(cursor["log_until"])
    assert timedelta(0) <= until - since <= timedelta(minutes=5), "from the last `until`"
    records = merged(second)
    creators = {
        h.principal_id: h.person_id for h in records["owner_hints"] if h.source == "audit_creator"
    }
    assert creators == truth.creators, "creators found earlier are carried in the checkpoint"
    used = {
        a.principal_id: a.last_used_at
        for a in records["activity"]
        if a.principal_id in truth.oauth_apps
    }
    assert used == truth.last_used


def test_the_emulator_keeps_okta_retention_and_limits(org: Org) -> None:
    """Events are served for 90 days; `since` up to 180 days back is accepted, older is a
    400 E0000001 (provider-facts.md)."""
    now = org.clock.now()
    headers = {"Authorization": f"SSWS {org.emulator.read_token}"}
    url = org.server.url + "/api/v1/logs"

    def stamp(days: int) -> str:
        return (now - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    with httpx.Client(verify=str(org.ca.ca_bundle), headers=headers) as http:
        old = http.get(url, params={"since": stamp(170), "until": stamp(91), "limit": 1000})
        too_old = http.get(url, params={"since": stamp(181), "until": stamp(1)})
        default = http.get(url)
    assert old.status_code == 200
    assert old.json() == [], "older than 90 days: kept nowhere"
    assert too_old.status_code == 400
    assert too_old.json()["errorCode"] == "E0000001"
    assert "since" in too_old.json()["errorSummary"]
    assert len(default.json()) <= 100, "100 a page by default"
