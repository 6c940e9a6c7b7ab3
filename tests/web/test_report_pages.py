"""The IAM team's report pages: a signed reports link, the same rows as the CLI."""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from recert import links, reports
from tests.web.conftest import HOSTILE, IAM, Site, make_site

pytestmark = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)


@pytest.fixture
def site(engine: Engine, tmp_path: Path) -> Site:
    return make_site(engine, tmp_path, "http://testserver")


@pytest.fixture
def client(site: Site) -> Iterator[TestClient]:
    with TestClient(site.app, follow_redirects=False) as client:
        yield client


def reports_path(site: Site, days: int = 7) -> str:
    url = reports.report_url(site.settings, site.clock.now(), days)
    return url.removeprefix(site.settings.web.base_url)


def test_the_index_lists_every_report_with_its_count(site: Site, client: TestClient) -> None:
    page = client.get(reports_path(site))
    assert page.status_code == 200
    with Session(site.engine) as session:
        orphans = reports.orphans(session, site.settings, site.clock.now())
    for title in reports.TITLES.values():
        assert title in html.unescape(page.text)
    assert f"<td>{len(orphans)}</td>" in page.text


def test_each_report_matches_the_cli_rows(site: Site, client: TestClient) -> None:
    base = reports_path(site)
    for kind in reports.REPORTS:
        as_json = client.get(f"{base}/{kind}?format=json")
        assert as_json.status_code == 200
        assert "attachment" in as_json.headers["content-disposition"]
        with Session(site.engine) as session:
            expected = reports.build(kind, session, site.settings, site.clock.now())
        assert json.loads(as_json.text) == json.loads(json.dumps(expected))
        assert (
            client.get(f"{base}/{kind}?format=csv").headers["content-type"].startswith("text/csv")
        )
        assert client.get(f"{base}/{kind}").status_code == 200


def test_hostile_names_are_escaped(site: Site, client: TestClient) -> None:
    page = client.get(f"{reports_path(site)}/uncataloged")
    assert HOSTILE not in page.text
    assert "&lt;script&gt;" in page.text


@pytest.mark.parametrize(
    "token",
    [
        "forged.token",
        "review-link",  # a review link is not a reports link
        "other-iam",
        "expired",
    ],
)
def test_other_links_are_refused(site: Site, client: TestClient, token: str) -> None:
    secret = site.settings.signing_key()
    now = site.clock.now()
    tokens: dict[str, Any] = {
        "forged.token": "forged.token",
        "review-link": site.token(IAM),
        "other-iam": links.sign(
            secret, links.ReviewLink(0, "x@acme.test", now + timedelta(days=1)), links.REPORTS
        ),
        "expired": links.sign(
            secret, links.ReviewLink(0, IAM, now - timedelta(seconds=1)), links.REPORTS
        ),
    }
    page = client.get(f"/reports/{tokens[token]}/orphans")
    assert page.status_code == 403
    assert "not valid" in page.text


def test_unknown_reports_and_formats_are_404(site: Site, client: TestClient) -> None:
    base = reports_path(site)
    assert client.get(f"{base}/secrets").status_code == 404
    assert client.get(f"{base}/orphans?format=xml").status_code == 404
