"""A campaign seeded through the domain, and the attestation site serving it.

The inventory goes through the real pipeline (scripted connector pages, discovery, risk
and owners, campaign); the site runs under uvicorn on a loopback port, as `recert web`
runs it, and reads its clock on every request so tests can move past the due date.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from connectors import base
from connectors.settings import EntraSettings, GoogleSettings
from recert import links
from recert.analysis import analyze
from recert.campaigns import open_campaign
from recert.clock import FixedClock
from recert.config import Settings, Tenant, WebSettings
from recert.db import session_scope
from recert.discovery import discover_tenant
from recert.models import AuditEvent, AuditHead, Decision, Principal, ReviewItem
from recert.web import create_app
from sandbox.server import free_port
from tests.test_discovery import ScriptedConnector

OPENED = datetime(2026, 12, 1, 9, tzinfo=UTC)
SECRET = "test-key"
IAM = "iam@acme.test"
HOSTILE = "<script>alert(1)</script>"
RTL = "\u202etxt.exe Invoice viewer"
LONG = "W" * 10_000

TENANT = Tenant(
    name="entra-test",
    kind="entra",
    read=EntraSettings(
        name="entra-test", tenant_id="tid", client_id="cid", client_secret=SecretStr("x")
    ),
)
GOOGLE_TENANT = Tenant(
    name="google-test",
    kind="google",
    read=GoogleSettings(
        name="google-test", credentials=SecretStr("{}"), admin_subject="admin@acme.test"
    ),
)
K, S, C = base.PrincipalKind, base.OwnerSource, base.Consent
NO_APP_LOG = "Business Starter does not log app use"
GMAIL = "https://mail.google.com/"
UNLISTED_SCOPE = "https://www.googleapis.com/auth/acme.internal"


def _app(external_id: str, name: str) -> base.Principal:
    return base.Principal(external_id, K.SERVICE_PRINCIPAL, name, app_id=f"app-{external_id}")


def _owner(principal: str, person: str) -> base.OwnerHint:
    evidence = f"listed in /owners of {principal}"
    return base.OwnerHint(principal, S.IDP_OWNER, evidence=evidence, person_id=person)


def _graph(
    principal: str, grant: str, permission: str, consent: base.Consent, **kw: Any
) -> base.Grant:
    return base.Grant(principal, grant, permission, "Microsoft Graph", consent, **kw)


PAGE = base.Page(
    principals=[
        _app("payroll", "Payroll Sync"),
        _app("hostile", HOSTILE),
        _app("rtl", RTL),
        _app("long", LONG),
        _app("builder", "Build Bot"),
        _app("ghost", "Ghost App"),
    ],
    people=[
        base.Person("u-ann", "Ann Active", "ann@acme.test", active=True, manager_id="u-bo"),
        base.Person("u-bo", "Bo Boss", "bo@acme.test", active=True),
        base.Person("u-cy", "Cy Colleague", "cy@acme.test", active=True),
        base.Person("u-dee", "Dee Departed", "dee@acme.test", active=False),
    ],
    owner_hints=[
        _owner("payroll", "u-ann"),
        _owner("hostile", "u-ann"),
        _owner("rtl", "u-ann"),
        _owner("long", "u-ann"),
        _owner("builder", "u-bo"),
    ],
    grants=[
        _graph(
            "payroll",
            "g-mail",
            "Mail.ReadWrite",
            C.APPLICATION,
            description="Read and write mail in all mailboxes",
        ),
        _graph("payroll", "g-users", "User.Read.All", C.ADMIN),
        _graph("payroll", "g-cal", "Calendars.Read", C.USER, consenting_user="u-ann"),
        _graph("hostile", "g-h", "User.Read", C.ADMIN, description=HOSTILE),
        _graph("builder", "g-dir", "Directory.Read.All", C.APPLICATION),
    ],
    credentials=[
        base.Credential("payroll", "s1", "secret", display_name="prod", expires_at=None),
        base.Credential(
            "payroll",
            "c1",
            "certificate",
            created_at=OPENED - timedelta(days=10),
            expires_at=OPENED + timedelta(days=40),
        ),
    ],
    activity=[
        base.Activity("payroll", window_start=OPENED - timedelta(days=180), last_used_at=OPENED),
        base.Activity("builder", window_start=OPENED - timedelta(days=180)),
    ],
    checkpoint=base.Checkpoint(full=True),
)


def _google_app(external_id: str, name: str, unknown_use: str) -> base.Principal:
    """A third-party app whose use the edition does not log, as the Google connector says."""
    raw = {base.LAST_USE_UNKNOWN: unknown_use}
    return base.Principal(external_id, K.THIRD_PARTY_APP, name, app_id=external_id, raw=raw)


def _google_grant(principal: str, grant: str, scope: str) -> base.Grant:
    return base.Grant(principal, grant, scope, "Google Workspace", C.ADMIN)


# Third-party apps, reviewed by the IAM team: one whose reason for unknown use is plain
# words, one whose reason is hostile.
GOOGLE_PAGE = base.Page(
    principals=[
        _google_app("mailer", "Mail Merge", NO_APP_LOG),
        _google_app("sly", "Sly Add-on", f"{HOSTILE} {LONG}"),
    ],
    grants=[
        _google_grant("mailer", "g-gmail", GMAIL),
        _google_grant("mailer", "g-unlisted", UNLISTED_SCOPE),
    ],
    checkpoint=base.Checkpoint(full=True),
)
SEEDS = ((TENANT, PAGE),)
WITH_GOOGLE = (*SEEDS, (GOOGLE_TENANT, GOOGLE_PAGE))


@dataclass
class Site:
    """The seeded campaign and the site; `url` is empty when served by a TestClient."""

    app: FastAPI
    settings: Settings
    engine: Engine
    clock: FixedClock
    campaign_id: int
    due_at: datetime
    url: str = ""

    def token(self, reviewer: str) -> str:
        link = links.ReviewLink(self.campaign_id, reviewer, self.due_at)
        return links.sign(self.settings.signing_key(), link)

    def link(self, reviewer: str) -> str:
        return f"{self.url}/review/{self.token(reviewer)}"

    def item_id(self, external_id: str) -> int:
        with Session(self.engine) as session:
            query = (
                select(ReviewItem.id)
                .join(Principal, col(Principal.id) == ReviewItem.principal_id)
                .where(Principal.external_id == external_id)
            )
            return int(session.exec(query).one() or 0)

    def state(self) -> dict[str, Any]:
        """Every row a decision would touch, to compare before and after."""
        with Session(self.engine) as session:
            head = session.get(AuditHead, 1)
            return {
                "decisions": session.exec(select(func.count()).select_from(Decision)).one(),
                "events": session.exec(select(func.count()).select_from(AuditEvent)).one(),
                "head": (head.seq, head.hash) if head else None,
                "items": sorted(
                    (i.id, i.status, i.reviewer_email, i.owner_source)
                    for i in session.exec(select(ReviewItem))
                ),
            }

    def decisions(self) -> list[Decision]:
        with Session(self.engine) as session:
            return list(session.exec(select(Decision).order_by(col(Decision.id))))


Seeds = tuple[tuple[Tenant, base.Page], ...]


def settings_for(
    tmp_path: Path, base_url: str, tenants: tuple[Tenant, ...] = (TENANT,)
) -> Settings:
    return Settings(
        path=tmp_path / "recert.toml",
        tenants=tenants,
        iam_email=IAM,
        web=WebSettings(secret_key=SecretStr(SECRET), base_url=base_url),
    )


def seed(engine: Engine, settings: Settings, seeds: Seeds = SEEDS) -> tuple[int, datetime]:
    clock = FixedClock(OPENED)
    for tenant, page in seeds:
        connector = ScriptedConnector([page])
        # Discovery runs its own event loop; Playwright's sync API keeps one running here.
        with ThreadPoolExecutor(max_workers=1) as worker:
            run = worker.submit(discover_tenant, engine, tenant, clock, connector=connector)
        assert run.result().status == "complete"
    analyze(engine, settings, clock)
    with session_scope(engine) as session:
        campaign = open_campaign(session, settings, clock, name="Q4 2026 access review")
    return campaign.campaign_id, campaign.due_at


def make_site(engine: Engine, tmp_path: Path, base_url: str, seeds: Seeds = SEEDS) -> Site:
    settings = settings_for(tmp_path, base_url, tuple(tenant for tenant, _ in seeds))
    campaign_id, due_at = seed(engine, settings, seeds)
    clock = FixedClock(OPENED + timedelta(hours=1))
    app = create_app(settings, engine, lambda: clock)
    return Site(app, settings, engine, clock, campaign_id, due_at)


@contextmanager
def serving(app: FastAPI, port: int) -> Iterator[None]:
    """uvicorn in a thread on a socket bound first: requests queue until it accepts them."""
    listener = socket.create_server(("127.0.0.1", port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


@contextmanager
def served_site(engine: Engine, tmp_path: Path, seeds: Seeds) -> Iterator[Site]:
    """The site served over HTTP on a free loopback port."""
    port = free_port()
    site = make_site(engine, tmp_path, f"http://127.0.0.1:{port}", seeds)
    site.url = site.settings.web.base_url
    with serving(site.app, port):
        yield site


@pytest.fixture
def site(engine: Engine, tmp_path: Path) -> Iterator[Site]:
    with served_site(engine, tmp_path, SEEDS) as site:
        yield site


@pytest.fixture
def google_site(engine: Engine, tmp_path: Path) -> Iterator[Site]:
    """The site with a Google tenant too, whose apps' last use cannot be known."""
    with served_site(engine, tmp_path, WITH_GOOGLE) as site:
        yield site
