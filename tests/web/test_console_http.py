"""The console's guarantees where a browser adds nothing: who is an admin, the config,
what an unsigned request gets, and the report pages' words, dates and links."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine

from recert import reports
from recert.config import ConfigError, OidcSettings, WebSettings, load_settings
from recert.web import create_app
from recert.web.app import SECURITY_HEADERS
from recert.web.auth import is_admin
from sandbox.server import free_port
from tests.web.conftest import SECRET, Site, make_site

SQLITE = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
OIDC = OidcSettings(
    issuer=f"https://127.0.0.1:{free_port()}/oauth2/default",  # nobody listens there
    client_id="0oaRecert",
    client_secret=SecretStr("s3cret"),
    admin_emails=("Ann@Acme.test",),
    admin_groups=("Recert Admins",),
)


@pytest.fixture
def site(engine: Engine, tmp_path: Path) -> Site:
    return make_site(engine, tmp_path, "http://testserver")


@pytest.fixture
def client(site: Site) -> Iterator[TestClient]:
    with TestClient(site.app, follow_redirects=False) as client:
        yield client


@pytest.fixture
def signed_site(site: Site) -> Iterator[TestClient]:
    web = WebSettings(secret_key=SecretStr(SECRET), base_url="http://testserver", oidc=OIDC)
    settings = site.settings.model_copy(update={"web": web})
    with TestClient(create_app(settings, site.engine, site.clock), follow_redirects=False) as c:
        yield c


def test_admins_come_from_emails_or_groups() -> None:
    assert is_admin(OIDC, {"email": "ann@acme.TEST", "email_verified": True})
    assert not is_admin(OIDC, {"email": "ann@acme.test", "email_verified": False})
    assert is_admin(OIDC, {"email": "bo@acme.test", "groups": ["Everyone", "Recert Admins"]})
    assert not is_admin(OIDC, {"email": "bo@acme.test", "groups": ["Everyone"]})
    assert not is_admin(OIDC, {"sub": "00u1"})


def test_the_oidc_table_loads_with_its_secret_and_ca(tmp_path: Path) -> None:
    config = tmp_path / "recert.toml"
    config.write_text(
        "[web]\n"
        'secret_key_env = "KEY"\n'
        "[web.oidc]\n"
        'issuer = "https://acme.okta.com/oauth2/default"\n'
        'client_id = "0oa1"\n'
        'client_secret_env = "OIDC_SECRET"\n'
        'admin_groups = ["Recert Admins"]\n'
        'ca_bundle = "proxy-ca.pem"\n'
    )
    settings = load_settings(config, {"KEY": "k", "OIDC_SECRET": "s"})
    oidc = settings.web.oidc
    assert oidc is not None
    assert oidc.client_secret.get_secret_value() == "s"
    assert oidc.ca_bundle == str(tmp_path / "proxy-ca.pem")
    assert (
        oidc.metadata_url == "https://acme.okta.com/oauth2/default/.well-known/openid-configuration"
    )
    unset = load_settings(config, {"KEY": "k"}).web.oidc  # read commands need no secret
    assert unset is not None
    with pytest.raises(ConfigError, match="OIDC_SECRET is unset"):
        unset.client_secret.get_secret_value()
    config.write_text(config.read_text().replace('admin_groups = ["Recert Admins"]\n', ""))
    with pytest.raises(ConfigError, match=r"web\.oidc: .*name the admins"):
        load_settings(config, {"KEY": "k", "OIDC_SECRET": "s"})


@SQLITE
def test_without_oidc_there_is_no_console(client: TestClient) -> None:
    for path in ("/console", "/console/inventory", "/console/sign-in"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert (
            response.headers["content-security-policy"]
            == SECURITY_HEADERS["Content-Security-Policy"]
        )


@SQLITE
def test_unsigned_requests_are_sent_to_sign_in_or_refused(signed_site: TestClient) -> None:
    page = signed_site.get("/console/inventory?q=pay")
    assert page.status_code == 303
    assert page.headers["location"] == "/console/sign-in?next=%2Fconsole%2Finventory%3Fq%3Dpay"
    forged = signed_site.get("/console", cookies={"recert_admin": "not-a-session"})
    assert forged.status_code == 303
    for path in ("/console/queue/assign", "/console/enforcement/reenable", "/console/sign-out"):
        assert signed_site.post(path, data={"csrf": "x"}).status_code == 403, path
    down = signed_site.get("/console/sign-in?next=https://evil.example/")
    assert down.status_code == 502, "the provider is unreachable: said plainly"
    assert "Sign-in failed: the identity provider could not be reached" in down.text


@SQLITE
def test_report_pages_speak_plainly_and_sort(site: Site, client: TestClient) -> None:
    base = reports.report_url(site.settings, site.clock.now()).removeprefix("http://testserver")
    page = client.get(f"{base}/orphans")
    assert page.status_code == 200
    assert ">Service principal<" in page.text
    assert "service_principal" not in page.text
    assert ">Why orphaned<" in page.text
    assert f'href="{base}"' in page.text, "a link back to all reports"
    assert f'href="{base}/orphans?format=csv"' in page.text
    assert 'href="' + base + '/orphans?sort=display_name&amp;order=asc"' in page.text
    by_name = client.get(f"{base}/orphans?sort=display_name&order=desc").text
    names = re.findall(r'<td class="name" title="([^"]*)"', by_name)
    assert names == sorted(names, reverse=True)
    assert 'aria-sort="descending"' in by_name

    stale = client.get(f"{base}/stale").text
    assert "Never" not in stale
    assert not re.search(r"\d{2}:\d{2}:\d{2}\.\d+", stale), "no microseconds"
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", stale)


@SQLITE
def test_a_report_file_from_the_cli_has_no_dead_links(site: Site) -> None:
    html = reports.render("orphans", [], "html", site.clock.now())
    assert "<a " not in html
    assert "Generated " in html
