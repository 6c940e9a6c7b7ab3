"""Okta's AI agents and API tokens through the domain, on SQLite and PostgreSQL: what a run
could not list is not swept, and agents are owned, scored, reviewed and reported."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, select

from emails.render import Digest, render
from recert import campaigns, notify, reports
from recert.analysis import analyze
from recert.clock import FixedClock
from recert.config import Settings, Tenant
from recert.discovery import SyncSummary, discover_tenant
from recert.inventory import inventory
from recert.links import ReviewLink
from recert.models import Principal, ReviewItem
from recert.web.page import build_review
from tests.okta.conftest import Org

IAM = "iam@acme.test"


def run(engine: Engine, org: Org, **auth: str) -> SyncSummary:
    tenant = Tenant(name="okta-test", kind="okta", read=org.settings(**auth))
    clock = FixedClock(org.clock.now())
    return discover_tenant(engine, tenant, clock, connector=org.connector(**auth))


def statuses(engine: Engine, kind: str) -> dict[str, str]:
    with Session(engine) as session:
        rows = session.exec(select(Principal).where(Principal.kind == kind)).all()
        return {row.external_id: row.status for row in rows}


def test_what_a_run_could_not_list_is_not_swept(engine: Engine, org: Org) -> None:
    truth = org.emulator.truth
    first = run(engine, org)
    assert first.status == "complete"
    assert first.not_visible == {}
    assert set(statuses(engine, "api_token")) == set(truth.api_tokens)

    hidden = run(engine, org, auth="readonly")  # may list neither tokens nor agents
    assert hidden.status == "complete"
    assert set(hidden.not_visible) == {"api_token", "agent_identity"}
    assert hidden.as_dict()["not_visible"] == hidden.not_visible
    assert hidden.deleted == 0
    assert "deleted" not in set(statuses(engine, "api_token").values())
    assert "deleted" not in set(statuses(engine, "agent_identity").values())

    org.emulator.ai_agents_subscribed = False  # not subscribed any more: still not swept
    gone_agent = next(iter(truth.agents))
    assert run(engine, org).not_visible.keys() == {"agent_identity"}
    assert statuses(engine, "agent_identity")[gone_agent] == "active"

    org.emulator.ai_agents_subscribed = True  # visible again, and one agent really gone
    del org.emulator.org.agents[gone_agent]
    visible = run(engine, org)
    assert visible.not_visible == {}
    assert visible.deleted == 1
    assert statuses(engine, "agent_identity")[gone_agent] == "deleted"


def test_agents_are_owned_scored_reviewed_and_reported(engine: Engine, org: Org) -> None:
    truth = org.emulator.truth
    settings = Settings(path=Path("recert.toml"), iam_email=IAM)
    clock = FixedClock(org.clock.now())
    assert run(engine, org).status == "complete"
    analyze(engine, settings, clock, ["okta-test"])
    emails = {u["id"]: u["profile"]["email"].lower() for u in org.emulator.org.users.values()}

    with Session(engine) as session:
        entries = {e["external_id"]: e for e in inventory(session, "okta-test", False)}
        agents = {a: entries[a] for a in truth.agents}
        assert all(e["kind"] == "agent_identity" for e in agents.values())
        for agent_id, people in truth.agent_owners.items():
            owners = {o["email"] for o in agents[agent_id]["owners"]}
            assert owners == {emails[p] for p in people}
            assert {o["source"] for o in agents[agent_id]["owners"]} == {"idp_owner"}
        assert {a for a, e in agents.items() if e["risk"] == "high"} == truth.risky_agents

        orphaned = {r["external_id"]: r for r in reports.orphans(session, settings, clock.now())}
        assert truth.orphan_agents <= set(orphaned)
        assert all(orphaned[a]["kind"] == "agent_identity" for a in truth.orphan_agents)

        opened = campaigns.open_campaign(session, settings, clock, kinds=["agent_identity"])
        assert opened.items == len(truth.agents)
        items = session.exec(select(ReviewItem)).all()
        by_principal = {session.get(Principal, i.principal_id).external_id: i for i in items}  # type: ignore[union-attr]
        for agent_id in truth.orphan_agents:
            assert by_principal[agent_id].reviewer_email == IAM
        risky = next(iter(truth.risky_agents))
        reviewer = by_principal[risky].reviewer_email
        assert reviewer == emails[next(iter(truth.agent_owners[risky]))]

        mail = render(
            Digest(
                kind="request",
                campaign=opened.name,
                recipient_email=reviewer,
                recipient_name=None,
                apps=tuple(notify._app_summaries(session, [by_principal[risky]], reviewer)),
                review_url="https://recert.acme.test/review/x",
                due_at=clock.now() + timedelta(days=14),
                iam_contact=IAM,
                now=clock.now(),
            ),
            from_address="recert@acme.test",
        )
        text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "AI agent in Okta" in text
        assert "okta.users.manage on Okta Admin API" in text
        assert "AWS access key" in text

        page = build_review(
            session,
            ReviewLink(opened.campaign_id, reviewer, clock.now() + timedelta(days=14)),
            clock.now(),
        )
        assert page is not None
        view = next(i for i in page.items if i.external_id == risky)
        assert view.kind == "AI agent"
        assert {p.name for p in view.permissions} == truth.agent_permissions[risky]
