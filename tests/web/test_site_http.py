"""HTTP guarantees where a browser adds nothing: headers, 404s, cookies, CSRF, redirects."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from recert.db import session_scope
from recert.models import Grant, Principal, ReviewItem
from recert.web.app import CSRF_COOKIE, SECURITY_HEADERS
from tests.web.conftest import HOSTILE, IAM, Site, make_site

pytestmark = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
ANN = "ann@acme.test"


@pytest.fixture
def site(engine: Engine, tmp_path: Path) -> Site:
    return make_site(engine, tmp_path, "http://testserver")


@pytest.fixture
def client(site: Site) -> Iterator[TestClient]:
    with TestClient(site.app, follow_redirects=False) as client:
        yield client


def _csrf(client: TestClient, site: Site, reviewer: str = ANN) -> str:
    page = client.get(f"/review/{site.token(reviewer)}")
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def _decide_url(site: Site, external_id: str, reviewer: str = ANN) -> str:
    return f"/review/{site.token(reviewer)}/items/{site.item_id(external_id)}"


def test_every_response_carries_the_security_headers(client: TestClient, site: Site) -> None:
    token = site.token(ANN)
    csrf = _csrf(client, site)
    responses = [
        client.get(f"/review/{token}"),
        client.get(f"/review/{token}?done=1"),
        client.get("/review/forged.token"),
        client.get("/healthz"),
        client.get("/no-such-page"),
        client.post("/healthz"),
        client.post(_decide_url(site, "payroll"), data={"action": "revoke"}),
        client.post(_decide_url(site, "payroll"), data={"csrf": csrf, "action": "keep"}),
        client.post(_decide_url(site, "payroll"), data={"csrf": csrf, "action": "revoke"}),
    ]
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 403, 200, 404, 405, 403, 400, 303]
    for response in responses:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value, (response.request.url, name)


def test_healthz_and_nothing_else(client: TestClient) -> None:
    health = client.get("/healthz")
    assert (health.status_code, health.text) == (200, "ok")
    for path in ("/", "/docs", "/redoc", "/openapi.json", "/review", "/review/", "/healthz/"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "Page not found" in response.text
    assert '"detail"' not in client.get("/docs").text  # FastAPI's own JSON error body


def test_page_sets_a_strict_csrf_cookie_and_has_no_script(client: TestClient, site: Site) -> None:
    response = client.get(f"/review/{site.token(ANN)}")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{CSRF_COOKIE}=")
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/review"):
        assert attribute.lower() in cookie.lower()
    assert "secure" not in cookie.lower()
    assert "<script" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert HOSTILE not in response.text


def test_cookie_is_secure_behind_https(engine: Engine, tmp_path: Path) -> None:
    site = make_site(engine, tmp_path, "https://recert.acme.test")
    with TestClient(site.app, base_url="https://testserver") as client:
        cookie = client.get(f"/review/{site.token(ANN)}").headers["set-cookie"]
    assert "; secure" in cookie.lower()


def test_a_decision_needs_the_cookie_and_the_form_token(client: TestClient, site: Site) -> None:
    csrf = _csrf(client, site)
    url = _decide_url(site, "payroll")
    before = site.state()
    refused = [
        client.post(url, data={"action": "revoke"}),
        client.post(url, data={"csrf": "forged", "action": "revoke"}),
        client.post(url, data={"csrf": csrf, "action": "revoke"}, cookies={CSRF_COOKIE: "x"}),
    ]
    client.cookies.clear()
    refused.append(client.post(url, data={"csrf": csrf, "action": "revoke"}))
    for response in refused:
        assert response.status_code == 403
        assert "This form could not be accepted" in response.text
    assert site.state() == before


def test_a_decision_redirects_only_to_the_review_page(client: TestClient, site: Site) -> None:
    csrf = _csrf(client, site)
    url = f"{_decide_url(site, 'payroll')}?next=https://evil.test/"
    form = {"csrf": csrf, "action": "revoke", "next": "https://evil.test/"}
    response = client.post(url, data=form, headers={"Referer": "https://evil.test/"})
    assert response.status_code == 303
    item_id = site.item_id("payroll")
    assert response.headers["location"] == f"/review/{site.token(ANN)}?done={item_id}"


def test_refusals_are_pages_not_tracebacks(client: TestClient, site: Site) -> None:
    csrf = _csrf(client, site)
    token = site.token(ANN)
    cases = [
        (_decide_url(site, "payroll"), {"action": "reduce", "drop": "abc"}, 400),
        (_decide_url(site, "payroll"), {"action": "reduce"}, 400),
        (_decide_url(site, "payroll"), {"action": "delete-everything"}, 400),
        (_decide_url(site, "builder"), {"action": "revoke"}, 409),
        (f"/review/{token}/items/999999", {"action": "revoke"}, 409),
        (f"/review/{token}/items/not-a-number", {"action": "revoke"}, 400),
    ]
    for url, form, status in cases:
        response = client.post(url, data={"csrf": csrf, **form})
        assert response.status_code == status, (url, form, response.text)
        assert "Traceback" not in response.text
        assert "<h1>" in response.text
    assert site.decisions() == []


def test_confirmation_only_for_the_reviewers_own_decision(client: TestClient, site: Site) -> None:
    bo = "bo@acme.test"
    builder = site.item_id("builder")
    form = {"csrf": _csrf(client, site, bo), "action": "revoke"}
    assert client.post(_decide_url(site, "builder", bo), data=form).status_code == 303
    for done in (str(builder), "abc", "-1", "99999"):
        page = client.get(f"/review/{site.token(ANN)}?done={done}")
        assert page.status_code == 200
        assert "Saved:" not in page.text
    own = client.get(f"/review/{site.token(bo)}?done={builder}")
    assert "Saved: you revoked <bdi>Build Bot</bdi>" in own.text
    assert f"Write to {IAM}" in own.text


def test_a_users_own_consent_offers_no_hand_over(site: Site, client: TestClient) -> None:
    with session_scope(site.engine) as session:
        ghost = session.exec(select(Principal).where(Principal.external_id == "ghost")).one()
        session.add(
            Grant(
                principal_id=ghost.id or 0,
                grant_id="g-ghost",
                permission="Files.Read",
                resource="Microsoft Graph",
                consent="user",
                consenting_user="u-ann",
            )
        )
        item = ReviewItem(
            campaign_id=site.campaign_id,
            principal_id=ghost.id or 0,
            reviewer_email=ANN,
            owner_source="consented",
            due_at=site.due_at,
            consenting_user="u-ann",
        )
        session.add(item)
        session.flush()
        item_id = item.id
    page = client.get(f"/review/{site.token(ANN)}")
    form = page.text.split(f"/items/{item_id}", 1)[1].split("</form>", 1)[0]
    assert 'value="revoke"' in form
    assert 'value="reassign"' not in form
    assert 'value="not_mine"' not in form
    assert 'name="new_owner"' not in form
    assert "You granted this app access to your account yourself" in page.text


def test_the_same_form_sent_twice_records_one_decision(client: TestClient, site: Site) -> None:
    csrf = _csrf(client, site)
    form = {"csrf": csrf, "action": "keep", "justification": "Payroll runs on it"}
    first = client.post(_decide_url(site, "payroll"), data=form)
    after_first = site.state()
    second = client.post(_decide_url(site, "payroll"), data=form)
    assert first.status_code == second.status_code == 303
    assert second.headers["location"] == first.headers["location"]
    assert site.state() == after_first, "no second decision, no second audit event"
    assert len(site.decisions()) == 1
    handover = {"csrf": csrf, "action": "reassign", "new_owner": "CY@acme.test"}
    responses = [client.post(_decide_url(site, "hostile"), data=handover) for _ in range(2)]
    assert [r.status_code for r in responses] == [303, 303], "the repeat is not refused"
    assert [d.action for d in site.decisions()] == ["keep", "reassign"]


def test_another_owners_item_answers_like_an_unknown_one(client: TestClient, site: Site) -> None:
    csrf = _csrf(client, site)
    form = {"csrf": csrf, "action": "revoke"}
    before = site.state()
    base_url = f"/review/{site.token(ANN)}/items"
    someone_elses = client.post(f"{base_url}/{site.item_id('builder')}", data=form)
    unknown = client.post(f"{base_url}/999999", data=form)
    assert someone_elses.status_code == unknown.status_code == 409
    assert someone_elses.text == unknown.text
    assert "This app is not part of your review." in unknown.text
    assert site.state() == before
