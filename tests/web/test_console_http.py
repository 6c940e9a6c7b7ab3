"""The console's guarantees where a browser adds nothing: who is an admin (at sign-in and
again on every request), the config, what an unsigned request gets, what a re-enable says
that cannot be undone, and the report pages' words, dates and links."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session, select
from starlette.requests import Request

from recert import reports
from recert.config import ConfigError, OidcSettings, Settings, WebSettings, load_settings
from recert.db import session_scope
from recert.models import AdminSession, AuditEvent, EnforcementAction, Principal
from recert.web import create_app
from recert.web.app import SECURITY_HEADERS
from recert.web.auth import SESSION_COOKIE, AdminAuth, admitted, is_admin
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


def _signed_in(site: Site, oidc: OidcSettings, claims: dict[str, Any]) -> str:
    """A console session started as the OIDC callback starts it; returns the cookie."""
    request = Request({"type": "http", "headers": [], "client": ("10.0.0.7", 4711)})
    auth = AdminAuth(_with_oidc(site, oidc), site.engine, oidc)
    token, _ = auth.start_session(request, site.clock, claims)
    return token


def _with_oidc(site: Site, oidc: OidcSettings) -> Settings:
    web = WebSettings(secret_key=SecretStr(SECRET), base_url="http://testserver", oidc=oidc)
    return site.settings.model_copy(update={"web": web})


@contextmanager
def _console(site: Site, oidc: OidcSettings) -> Iterator[TestClient]:
    app = create_app(_with_oidc(site, oidc), site.engine, site.clock)
    with TestClient(app, follow_redirects=False) as client:
        yield client


@SQLITE
def test_an_admin_removed_from_the_config_loses_the_session_on_the_next_request(
    site: Site,
) -> None:
    by_email = _signed_in(site, OIDC, {"email": "ann@acme.test", "email_verified": True})
    by_group = _signed_in(site, OIDC, {"email": "bo@acme.test", "groups": ["Recert Admins"]})
    with _console(site, OIDC) as console:
        for token in (by_email, by_group):
            assert console.get("/console/inventory", cookies={SESSION_COOKIE: token}).is_success
        page = console.get("/console/queue", cookies={SESSION_COOKIE: by_group}).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    with Session(site.engine) as session:
        stored = {
            row.email: (row.email_verified, row.groups)
            for row in session.exec(select(AdminSession))
        }
    assert stored == {"ann@acme.test": (True, []), "bo@acme.test": (True, ["Recert Admins"])}

    # The config changes (and `recert web` restarts): Ann's email and Bo's group are gone.
    narrower = OIDC.model_copy(
        update={"admin_emails": ("cy@acme.test",), "admin_groups": ("Platform",)}
    )
    before = site.state()
    with _console(site, narrower) as console:
        refused = console.get("/console/inventory", cookies={SESSION_COOKIE: by_email})
        assert refused.status_code == 403
        assert "No longer an IAM admin" in refused.text
        assert "ann@acme.test is no longer an admin of Recert" in refused.text
        assert f'{SESSION_COOKIE}=""' in refused.headers["set-cookie"], "the cookie is cleared"
        posted = console.post(
            "/console/queue/assign",
            cookies={SESSION_COOKIE: by_group},
            data={"csrf": csrf.group(1), "item": "1", "owner": "cy@acme.test"},
        )
        assert posted.status_code == 403
        assert "bo@acme.test is no longer an admin of Recert" in posted.text
        for token in (by_email, by_group):  # ended for good, whatever the config says next
            again = console.get("/console", cookies={SESSION_COOKIE: token})
            assert again.status_code == 303
            assert again.headers["location"].startswith("/console/sign-in")
    with _console(site, OIDC) as console:
        assert console.get("/console", cookies={SESSION_COOKIE: by_email}).status_code == 303
    with Session(site.engine) as session:
        ended = {row.email: row.revoked_at for row in session.exec(select(AdminSession))}
        events = session.exec(
            select(AuditEvent).where(AuditEvent.action == "console.access_withdrawn")
        ).all()
    assert all(at is not None for at in ended.values())
    assert sorted(e.actor for e in events) == ["ann@acme.test", "bo@acme.test"]
    assert {e.data["reason"] for e in events} == {"no longer named in admin_emails or admin_groups"}
    after = site.state()
    assert (after["decisions"], after["items"]) == (before["decisions"], before["items"])


def test_an_unverified_email_admits_nobody_on_a_later_request() -> None:
    assert admitted(OIDC, "Ann@acme.test", True, [])
    assert not admitted(OIDC, "ann@acme.test", False, [])
    assert admitted(OIDC, "bo@acme.test", False, ["Everyone", "Recert Admins"])
    assert not admitted(OIDC, "bo@acme.test", True, ["Everyone"])


@SQLITE
def test_a_reenable_says_which_users_must_consent_again(site: Site) -> None:
    with session_scope(site.engine) as session:
        payroll = session.exec(select(Principal).where(Principal.external_id == "payroll")).one()
        session.add(
            EnforcementAction(
                idempotency_key="entra-test:item:1:revoke_consent:u-ann",
                tenant="entra-test",
                principal_id=payroll.id or 0,
                external_id="payroll",
                display_name=payroll.display_name,
                kind=payroll.kind,
                action="revoke_consent",
                status="done",
                reason="ann@acme.test revoked their own consent on 2026-12-02",
                consenting_user="u-ann",
                reversible=False,
                before={"must_consent_again": ["ann@acme.test"]},
                created_at=site.clock.now(),
                performed_at=site.clock.now(),
            )
        )
    token = _signed_in(site, OIDC, {"email": "ann@acme.test", "email_verified": True})
    with _console(site, OIDC) as console:
        cookies = {SESSION_COOKIE: token}
        page = console.get("/console/enforcement", cookies=cookies).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        form = {"csrf": csrf.group(1), "tenant": "entra-test", "external_id": "payroll"}
        answer = console.post(
            "/console/enforcement/reenable",
            cookies=cookies,
            data={**form, "reason": "Ann needs her calendar sync back"},
        )
    assert answer.status_code == 200
    text = html.unescape(answer.text)
    assert "Payroll Sync (payroll) in entra-test: nothing Recert changed can be restored." in text
    assert (
        "a revoked consent cannot be restored (Google and Okta delete it); "
        "these users must consent again: ann@acme.test" in text
    )
    with Session(site.engine) as session:
        [undo] = session.exec(
            select(EnforcementAction).where(EnforcementAction.action == "restore_consent")
        ).all()
    assert (undo.status, undo.performed_by) == ("not_reversible", "ann@acme.test")
