"""The IAM console in Chromium, signed in through the emulated Okta org's OIDC provider.

One site, one Okta org and one signed-in browser context serve the whole module: the
tests walk every console page in order and sign out last. The browser trusts only the
emulator's own certificate (its SPKI hash), not every HTTPS error. JavaScript is off: the
console needs none.

Known data: the Entra page of tests.web.conftest plus 15 ownerless "Batch job" apps (10
service principals, 5 agent identities); Ann keeps Payroll Sync on day 1 and revokes the
hostile app on day 2, Bo answers "not mine" for Build Bot. The tenant's enforce credential
points at an emulated Entra tenant holding Build Bot's service principal, which Recert
disabled there through the connector: re-enabling it from the console really enables it.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Browser, Page, expect
from pydantic import SecretStr
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from connectors import base, open_connector
from connectors.settings import EntraSettings
from recert import db, evidence, links
from recert.clock import FixedClock
from recert.config import OidcSettings, Settings, Tenant, WebSettings
from recert.db import session_scope
from recert.decisions import DecisionRequest, decide
from recert.models import (
    AdminSession,
    AuditEvent,
    Decision,
    EnforcementAction,
    OutboxEmail,
    Principal,
    ReviewItem,
)
from recert.notify import enqueue_due
from recert.web import create_app
from recert.web.app import SECURITY_HEADERS
from recert.web.auth import CALLBACK, SESSION_COOKIE, SIGNED_OUT
from sandbox import entra, okta
from sandbox.entra import EntraEmulator
from sandbox.okta.oidc import OidcProvider
from sandbox.okta.oidc import install as install_oidc
from sandbox.server import free_port
from sandbox.server import serving as serving_emulator
from sandbox.tls import SandboxCA
from tests.conftest import BROWSER, CHROMIUM_FLAGS
from tests.web.conftest import HOSTILE, OPENED, PAGE, SECRET, TENANT, settings_for
from tests.web.conftest import seed as seed_campaign
from tests.web.conftest import serving as serving_site

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
NOW = OPENED + timedelta(days=3, hours=2)  # the console's clock: day 4 of the campaign
K = base.PrincipalKind
EXTRAS = [
    base.Principal(f"batch-{n:02d}", K.AGENT_IDENTITY if n < 5 else K.SERVICE_PRINCIPAL,
                   f"Batch job {n:02d}")
    for n in range(15)
]  # fmt: skip


@dataclass
class Console:
    url: str
    engine: Engine
    settings: Settings
    provider: OidcProvider
    admin: str
    outsider: str
    entra: EntraEmulator
    spki: str
    campaign_id: int

    def principal_id(self, external_id: str) -> int:
        with Session(self.engine) as session:
            query = select(Principal.id).where(Principal.external_id == external_id)
            return int(session.exec(query).one() or 0)


def _spki_hash(port: int, ca: SandboxCA) -> str:
    """The base64 SHA-256 of the emulator certificate's public key, for Chromium's
    --ignore-certificate-errors-spki-list: that one certificate is trusted, nothing else."""
    pem = ssl.get_server_certificate(("127.0.0.1", port), ca_certs=str(ca.ca_bundle))
    key = x509.load_pem_x509_certificate(pem.encode()).public_key()
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def _decide(engine: Engine, settings: Settings, campaign: int, due: Any, *calls: Any) -> None:
    for reviewer, external_id, action, at in calls:
        with session_scope(engine) as session:
            item = session.exec(
                select(ReviewItem.id)
                .join(Principal, col(Principal.id) == ReviewItem.principal_id)
                .where(Principal.external_id == external_id, ReviewItem.consenting_user == "")
            ).one()
            link = links.ReviewLink(campaign, reviewer, due)
            request = DecisionRequest(
                action, justification="Still needed", source_ip="10.0.0.7", user_agent="UA"
            )
            decide(session, settings, FixedClock(at), link, item or 0, request)


def _entra_tenant(emulator: EntraEmulator, url: str, ca: SandboxCA) -> Tenant:
    """The seeded tenant, reading and enforcing through the emulated Entra tenant."""

    def credential(client_id: str) -> EntraSettings:
        return EntraSettings(
            name="entra-test",
            tenant_id=emulator.tenant.tenant_id,
            client_id=client_id,
            client_secret=SecretStr(emulator.secret_of(client_id)),
            graph_url=url,
            authority=url,
            ca_bundle=str(ca.ca_bundle),
        )

    return Tenant(
        name="entra-test",
        kind="entra",
        read=credential(emulator.read_client_id),
        write=credential(emulator.write_client_id),
    )


def _emulated_entra() -> EntraEmulator:
    """A small Entra tenant that also holds Build Bot's service principal, as discovered."""
    emulator = entra.build(seed=5, size=12, additions=False)
    kinds = emulator.tenant.truth.kinds
    template = next(
        sp
        for sp in emulator.tenant.service_principals.values()
        if kinds.get(sp["id"]) == "service_principal"
    )
    build_bot = {"id": "builder", "appId": "app-builder", "displayName": "Build Bot"}
    emulator.add_service_principal({**copy.deepcopy(template), **build_bot, "accountEnabled": True})
    return emulator


def _disabled_by_recert(engine: Engine, tenant: Tenant, external_id: str) -> None:
    """Recert disabled the app at the provider on day 2 and recorded it as acting.py does."""
    with Session(engine) as session:
        principal = session.exec(
            select(Principal).where(Principal.external_id == external_id)
        ).one()
    ref = base.PrincipalRef(external_id, K(principal.kind), principal.app_id)

    async def disable() -> base.Snapshot:
        connector = open_connector(tenant.write_settings)
        try:
            return await connector.disable(ref)
        finally:
            await connector.aclose()

    with ThreadPoolExecutor(max_workers=1) as worker:  # Playwright's loop runs here
        snapshot = worker.submit(asyncio.run, disable()).result()
    at = OPENED + timedelta(days=2)
    with session_scope(engine) as session:
        principal.status = "disabled"
        session.add(principal)
        session.add(
            EnforcementAction(
                idempotency_key=f"entra-test:item:0:disable:{external_id}",
                tenant="entra-test",
                principal_id=principal.id or 0,
                external_id=external_id,
                display_name=principal.display_name,
                kind=principal.kind,
                action="disable",
                status="done",
                reason="nobody attested it by the due date",
                before={"status": "active", "app_id": principal.app_id, "cause": "overdue"},
                snapshot=snapshot,
                after={"status": "disabled"},
                attempts=1,
                created_at=at,
                performed_at=at,
            )
        )


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, sandbox_ca: SandboxCA) -> Iterator[Console]:
    if not BROWSER:
        pytest.skip("RECERT_TEST_BROWSER is unset: browser tests skipped")
    folder = tmp_path_factory.mktemp("console")
    engine = db.make_engine(f"sqlite:///{folder / 'recert.db'}")
    db.upgrade(engine)
    org = okta.build(seed=3, size=8)
    provider = install_oidc(org)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    graph = _emulated_entra()
    with serving_emulator(org, sandbox_ca) as idp, serving_emulator(graph, sandbox_ca) as tenant:
        client = provider.register_client(url + CALLBACK, url + SIGNED_OUT)
        admin, outsider = provider.active_logins()[:2]
        oidc = OidcSettings(
            issuer=f"{idp.url}/oauth2/default",
            client_id=client.client_id,
            client_secret=SecretStr(client.client_secret),
            admin_emails=(admin.upper(),),  # compared without case
            ca_bundle=str(sandbox_ca.ca_bundle),
        )
        web = WebSettings(secret_key=SecretStr(SECRET), base_url=url, oidc=oidc)
        entra_test = _entra_tenant(graph, tenant.url, sandbox_ca)
        settings = settings_for(folder, url).model_copy(
            update={"web": web, "tenants": (entra_test,)}
        )
        page = replace(PAGE, principals=[*PAGE.principals, *EXTRAS])
        campaign, due = seed_campaign(engine, settings, ((TENANT, page),))
        enqueue_due(engine, settings, FixedClock(OPENED + timedelta(minutes=5)))
        _decide(
            engine,
            settings,
            campaign,
            due,
            ("ann@acme.test", "payroll", "keep", OPENED + timedelta(hours=1)),
            ("ann@acme.test", "hostile", "revoke", OPENED + timedelta(days=1)),
            ("bo@acme.test", "builder", "not_mine", OPENED + timedelta(days=1, hours=1)),
        )
        _disabled_by_recert(engine, entra_test, "builder")
        assert graph.tenant.service_principals["builder"]["accountEnabled"] is False
        app = create_app(settings, engine, FixedClock(NOW))
        with serving_site(app, port):
            yield Console(
                url=url,
                engine=engine,
                settings=settings,
                provider=provider,
                admin=admin,
                outsider=outsider,
                entra=graph,
                spki=_spki_hash(int(idp.url.rsplit(":", 1)[1]), sandbox_ca),
                campaign_id=campaign,
            )
    engine.dispose()


@pytest.fixture(scope="module")
def trusting(browser: Browser, console: Console) -> Iterator[Browser]:
    """A second Chromium from the session's Playwright that trusts the emulator's key."""
    chromium = browser.browser_type.launch(
        executable_path=BROWSER,
        args=[*CHROMIUM_FLAGS, f"--ignore-certificate-errors-spki-list={console.spki}"],
    )
    yield chromium
    chromium.close()


def _sign_in(page: Page, console: Console, login: str) -> None:
    page.goto(f"{console.url}/console")
    expect(page.get_by_role("heading", name="Sign In")).to_be_visible()
    assert page.url.startswith(console.settings.web.oidc.issuer + "/v1/authorize?")  # type: ignore[union-attr]
    page.get_by_label("Username").fill(login)
    page.get_by_label("Password").fill(console.provider.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


@pytest.fixture(scope="module")
def admin_page(trusting: Browser, console: Console) -> Iterator[Page]:
    context = trusting.new_context(java_script_enabled=False)
    page = context.new_page()
    _sign_in(page, console, console.admin)
    yield page
    context.close()


def _range(first: int, last: int, total: int, what: str) -> str:
    return f"{first}\N{EN DASH}{last} of {total} {what}"


def _bars(page: Page, chart: str) -> list[float]:
    bars = page.locator(f"#chart-{chart} svg rect.bar")
    return [float(bars.nth(i).get_attribute("data-value") or "nan") for i in range(bars.count())]


# --- the walk -------------------------------------------------------------------------------


def test_an_admin_signs_in_through_the_emulated_okta_org(
    admin_page: Page, console: Console
) -> None:
    expect(admin_page).to_have_url(f"{console.url}/console")
    expect(admin_page.get_by_role("heading", level=1)).to_have_text("Overview")
    expect(admin_page.locator(".signout")).to_contain_text(console.admin)
    with Session(console.engine) as session:
        [row] = session.exec(select(AdminSession)).all()
        assert row.email == console.admin
        assert row.revoked_at is None
        cookie = next(c for c in admin_page.context.cookies() if c["name"] == SESSION_COOKIE)
        assert hashlib.sha256(cookie["value"].encode()).hexdigest() == row.token_hash
        assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Lax")
        events = session.exec(select(AuditEvent.action, AuditEvent.actor)).all()
    assert ("console.signed_in", console.admin) in events
    token_requests = [r for r in console.provider.emulator.requests if r.path.endswith("/token")]
    assert len(token_requests) == 1
    assert b"code_verifier=" in token_requests[0].body, "authorization code with PKCE"


def test_overview_charts_are_svg_drawn_from_the_data(admin_page: Page, console: Console) -> None:
    page = admin_page
    page.goto(f"{console.url}/console")
    assert page.locator("script").count() == 0
    assert _bars(page, "completion") == [4.8, 9.5, 9.5, 9.5]  # 1, then 2 of 21 decided
    expect(page.locator("#chart-decisions svg rect.bar")).to_have_count(3)
    expect(page.locator("#chart-decisions svg")).to_contain_text("Not mine")
    assert sorted(_bars(page, "orphans")) == [5, 11]  # agent identities; service principals
    with Session(console.engine) as session:
        levels = session.exec(
            select(func.count(func.distinct(Principal.risk))).where(
                col(Principal.platform_owned).is_(False)
            )
        ).one()
    expect(page.locator("#chart-risk svg .slice")).to_have_count(levels)
    expiries = _bars(page, "expiries")
    assert len(expiries) == 12
    assert expiries[1] == 1, "the certificate expiring on 10 Jan 2027"
    expect(page.locator("#chart-expiries")).to_contain_text("Never expire: 1. Expired: 0.")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-overview.png"), full_page=True)
    print(f"screenshot: {ARTIFACTS / 'console-overview.png'}")


def test_inventory_searches_filters_sorts_and_pages(admin_page: Page, console: Console) -> None:
    page = admin_page
    page.goto(f"{console.url}/console/inventory?per=10")
    expect(page.locator("#count")).to_have_text(_range(1, 10, 21, "apps"))
    page.get_by_role("link", name="Next").click()
    expect(page.locator("#count")).to_have_text(_range(11, 20, 21, "apps"))

    page.get_by_label("Search").fill("payroll")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#count")).to_have_text(_range(1, 1, 1, "apps"))
    expect(page.locator("tbody tr")).to_contain_text("ann@acme.test")

    page.goto(f"{console.url}/console/inventory")
    page.get_by_label("Kind").select_option(label="AI agent")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#count")).to_have_text(_range(1, 5, 5, "apps"))
    page.get_by_role("link", name="Name ▲").click()  # sorted by name: now descending
    expect(page.locator("tbody tr").first).to_contain_text("Batch job 04")
    expect(page.locator("th[aria-sort=descending]")).to_have_text("Name ▼")


def test_principal_page_explains_the_app(admin_page: Page, console: Console) -> None:
    page = admin_page
    page.goto(f"{console.url}/console/inventory?q=payroll")
    page.get_by_role("link", name="Payroll Sync").click()
    expect(page).to_have_url(f"{console.url}/console/principals/{console.principal_id('payroll')}")
    owners = page.locator("#owners")
    expect(owners).to_contain_text("ann@acme.test")
    expect(owners).to_contain_text("Listed as an owner by the identity provider")
    expect(owners).to_contain_text("listed in /owners of payroll")
    grants = page.locator("#grants")
    expect(grants.locator("tr", has_text="Mail.ReadWrite")).to_contain_text("High risk")
    expect(grants).to_contain_text("Read and write mail in all mailboxes")
    expect(grants).to_contain_text("app-only access, no signed-in user needed")
    expect(page.locator("#credentials")).to_contain_text("Client secret prod: never expires")
    history = page.locator("#history")
    expect(history.locator("tr", has_text="Decision: Keep")).to_contain_text("ann@acme.test")
    expect(history.locator("tr", has_text="Email: request")).to_contain_text("ann@acme.test")
    expect(history).to_contain_text("In review")
    page.screenshot(path=str(ARTIFACTS / "console-principal.png"), full_page=True)
    print(f"screenshot: {ARTIFACTS / 'console-principal.png'}")

    page.goto(f"{console.url}/console/principals/{console.principal_id('rtl')}")
    expect(page.get_by_role("heading", level=1)).to_have_text("[U+202E]txt.exe Invoice viewer")


def test_iam_queue_searches_and_assigns_in_bulk(admin_page: Page, console: Console) -> None:
    page = admin_page
    page.goto(f"{console.url}/console/queue")
    expect(page.locator("#count")).to_have_text(_range(1, 17, 17, "waiting"))
    page.get_by_label("Why").select_option(label="Answered “not mine”")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#count")).to_have_text(_range(1, 1, 1, "waiting"))
    expect(page.locator("tbody")).to_contain_text("Build Bot")

    page.goto(f"{console.url}/console/queue?q=Batch+job+1")
    expect(page.locator("#count")).to_have_text(_range(1, 5, 5, "waiting"))
    page.get_by_label("Select Batch job 10").check()
    page.get_by_label("Select Batch job 11").check()
    page.get_by_label("New owner's email").fill("CY@acme.test")
    page.get_by_label("Note for the audit trail").fill("Cy runs the batch platform")
    page.get_by_role("button", name="Assign selected").click()
    expect(page.get_by_role("status")).to_have_text(
        "Assigned 2 apps to cy@acme.test; they will be asked to review them."
    )
    expect(page.locator("#count")).to_have_text(_range(1, 15, 15, "waiting"))

    page.get_by_label("Select Batch job 12").check()
    page.get_by_label("New owner's email").fill("dee@acme.test")  # has left the company
    page.get_by_role("button", name="Assign selected").click()
    expect(page.get_by_role("status")).to_contain_text(
        "dee@acme.test is not an active person in tenant entra-test"
    )

    with Session(console.engine) as session:
        moved = session.exec(
            select(ReviewItem, Principal.external_id)
            .join(Principal, col(Principal.id) == ReviewItem.principal_id)
            .where(ReviewItem.reviewer_email == "cy@acme.test")
        ).all()
        assert sorted(e for _, e in moved) == ["batch-10", "batch-11"]
        assert {(i.owner_source, i.status) for i, _ in moved} == {("reassigned", "pending")}
        decisions = session.exec(
            select(Decision).where(col(Decision.review_item_id).in_([i.id for i, _ in moved]))
        ).all()
        assert {(d.action, d.decided_by, d.new_owner_email) for d in decisions} == {
            ("reassign", console.admin, "cy@acme.test")
        }
        events = session.exec(select(AuditEvent).where(AuditEvent.action == "review.assigned"))
        assert sorted(e.data["principal"] for e in events) == ["batch-10", "batch-11"]
    later = FixedClock(NOW + timedelta(minutes=5))  # the next notify run
    enqueue_due(console.engine, console.settings, later)  # as after a hand-over
    with Session(console.engine) as session:
        sent = session.exec(select(OutboxEmail).where(OutboxEmail.recipient == "cy@acme.test"))
        assert [e.kind for e in sent] == ["request"]


def test_enforcement_previews_the_real_plan(admin_page: Page, console: Console) -> None:
    page = admin_page
    page.goto(f"{console.url}/console/enforcement")
    plan = page.locator("#plan")
    expect(plan).to_contain_text("mode: dry-run")
    # Day 4: the last complete discovery (day 1) is older than discovery_freshness_hours.
    expect(plan.locator(".notice.error")).to_contain_text("Blocked: stale discovery")
    revoked = plan.locator(".plan-actions tbody tr")
    expect(revoked).to_have_count(1)
    expect(revoked).to_contain_text("Disable")
    expect(revoked).to_contain_text(HOSTILE)
    expect(revoked).to_contain_text("ann@acme.test chose to revoke it on 2026-12-02")
    # Build Bot's "not mine" is not due before day 15: no refusal yet, and no disable.
    expect(plan.locator(".plan-refused")).to_have_count(0)
    expect(plan).not_to_contain_text("Build Bot")


def test_reenable_by_post_enables_the_app_at_the_provider(
    admin_page: Page, console: Console
) -> None:
    page = admin_page
    page.goto(f"{console.url}/console/enforcement")
    disabled = page.locator("#disabled tr", has_text="Build Bot")
    disabled.get_by_placeholder("why").fill("Owner confirmed it runs the nightly build")
    disabled.get_by_role("button", name="Re-enable").click()
    expect(page.get_by_role("status")).to_have_text(
        "Re-enabled Build Bot (builder) in entra-test: enable."
    )
    assert console.entra.tenant.service_principals["builder"]["accountEnabled"] is True
    patches = [r for r in console.entra.requests if r.method == "PATCH"]
    assert [r.path.rsplit("/", 1)[-1] for r in patches] == ["builder", "builder"]
    expect(page.locator("#disabled")).to_contain_text("Nothing Recert disabled is still disabled")
    history = page.locator("#history tr", has_text="Re-enable")
    expect(history).to_contain_text("done")
    expect(history).to_contain_text(console.admin)
    expect(history).to_contain_text("Owner confirmed it runs the nightly build")
    with Session(console.engine) as session:
        [event] = session.exec(
            select(AuditEvent).where(AuditEvent.action == "enforcement.enable")
        ).all()
        principal = session.exec(select(Principal).where(Principal.external_id == "builder"))
        assert principal.one().status == "active"
    assert (event.actor, event.subject_id, event.tenant) == (console.admin, "builder", "entra-test")
    assert event.data["reason"] == "Owner confirmed it runs the nightly build"
    page.goto(f"{console.url}/console/principals/{console.principal_id('builder')}")
    expect(page.get_by_role("button", name="Re-enable")).to_have_count(0)
    expect(page.locator("#history")).to_contain_text("Enforcement: Re-enable (done)")


def test_reenable_names_the_app_when_refused(admin_page: Page, console: Console) -> None:
    page = admin_page
    page.goto(f"{console.url}/console/queue")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    form: dict[str, str | float | bool] = {
        "csrf": csrf,
        "tenant": "entra-test",
        "external_id": "payroll",
        "reason": "test",
    }
    refused = page.request.post(f"{console.url}/console/enforcement/reenable", form=form)
    assert refused.status == 409
    assert (
        "Payroll Sync (payroll) in entra-test was not re-enabled: entra-test/payroll: Recert "
        "has not disabled or changed this app" in refused.text()
    )
    again = page.request.post(
        f"{console.url}/console/enforcement/reenable", form={**form, "external_id": "builder"}
    )
    assert again.status == 200
    assert "Build Bot (builder) in entra-test was already re-enabled" in again.text()


def test_report_pages_sort_download_and_lead_back(admin_page: Page, console: Console) -> None:
    page = admin_page
    page.goto(f"{console.url}/console/reports")
    page.get_by_role("link", name="Orphaned apps").click()
    expect(page.locator("thead")).to_contain_text("Why orphaned")
    expect(page.locator("tbody")).to_contain_text("Service principal")
    expect(page.locator("tbody")).to_contain_text("No owner recorded")
    expect(page.locator("tbody")).not_to_contain_text("service_principal")
    page.get_by_role("link", name="Name", exact=True).click()
    expect(page.locator("tbody tr").first).to_contain_text("Batch job 00")
    page.get_by_role("link", name="Name ▲").click()
    expect(page.locator("tbody tr").first).to_contain_text("Ghost App")
    href = page.get_by_role("link", name="CSV").get_attribute("href")
    csv = page.request.get(f"{console.url}{href}")
    assert csv.headers["content-type"].startswith("text/csv")
    assert "Batch job 00" in csv.text()
    page.get_by_role("link", name="All reports").click()
    expect(page).to_have_url(f"{console.url}/console/reports")


def test_evidence_downloads_verify(admin_page: Page, console: Console, tmp_path: Path) -> None:
    page = admin_page
    page.goto(f"{console.url}/console/evidence")
    href = page.get_by_role("link", name=f"evidence-campaign-{console.campaign_id}.zip")
    bundle = page.request.get(f"{console.url}{href.get_attribute('href')}")
    assert bundle.headers["content-type"] == "application/zip"
    (tmp_path / "bundle.zip").write_bytes(bundle.body())
    assert evidence.verify_bundle(tmp_path / "bundle.zip").ok


def test_every_console_page_keeps_the_strict_policy(admin_page: Page, console: Console) -> None:
    paths = [
        "/console",
        "/console/inventory",
        f"/console/principals/{console.principal_id('hostile')}",
        "/console/queue",
        "/console/enforcement",
        "/console/reports",
        "/console/reports/risky",
        "/console/evidence",
    ]
    for path in paths:
        response = admin_page.request.get(f"{console.url}{path}")
        assert response.status == 200, path
        for header, value in SECURITY_HEADERS.items():
            assert response.headers[header.lower()] == value, (path, header)
        assert "<script" not in response.text(), path
        assert HOSTILE not in response.text(), path


def test_a_non_admin_is_refused(trusting: Browser, console: Console) -> None:
    context = trusting.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        _sign_in(page, console, console.outsider)
        expect(page.get_by_role("heading", level=1)).to_have_text("Not an IAM admin")
        expect(page.locator("body")).to_contain_text(f"You signed in as {console.outsider}")
        assert SESSION_COOKIE not in {c["name"] for c in context.cookies()}
        response = page.goto(f"{console.url}/console/inventory")  # the Okta session is live
        assert response is not None
        assert response.status == 403
        expect(page.get_by_role("heading", level=1)).to_have_text("Not an IAM admin")
    finally:
        context.close()
    with Session(console.engine) as session:
        emails = session.exec(select(AdminSession.email)).all()
        refused = session.exec(
            select(AuditEvent).where(AuditEvent.action == "console.sign_in_refused")
        ).all()
    assert console.outsider not in emails
    assert [e.actor for e in refused] == [console.outsider] * 2


def test_a_signed_out_session_cannot_be_replayed(admin_page: Page, console: Console) -> None:
    page = admin_page
    page.goto(f"{console.url}/console/queue")
    cookie = next(c for c in page.context.cookies() if c["name"] == SESSION_COOKIE)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    page.get_by_role("button", name="Sign out").click()
    # Signed out of Recert, then (a meta refresh: no script) out of Okta, and back.
    page.wait_for_url(f"{console.url}{SIGNED_OUT}?state=*")
    expect(page.get_by_role("heading", level=1)).to_have_text("Signed out")
    expect(page.get_by_role("link", name="Sign in again")).to_be_visible()
    logout = [r for r in console.provider.emulator.requests if r.path.endswith("/v1/logout")]
    assert len(logout) == 1, "the Okta session ends too (RP-initiated logout)"

    replay = page.context.request
    stolen = {"Cookie": f"{SESSION_COOKIE}={cookie['value']}"}
    again = replay.get(f"{console.url}/console", headers=stolen, max_redirects=0)
    assert again.status == 303
    assert again.headers["location"].startswith("/console/sign-in")
    posted = replay.post(
        f"{console.url}/console/queue/assign",
        headers=stolen,
        form={"csrf": csrf, "item": "1", "owner": "cy@acme.test"},
        max_redirects=0,
    )
    assert posted.status == 403
    with Session(console.engine) as session:
        [row] = session.exec(select(AdminSession)).all()
        assert row.revoked_at is not None
        assert row.id_token is None
