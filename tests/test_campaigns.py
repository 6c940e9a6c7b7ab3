"""Campaigns and the outbox, travelling through the 14 days against a real SMTP server."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from connectors import base
from recert import campaigns, links, reports
from recert.analysis import analyze
from recert.cli import app as recert_cli
from recert.clock import FixedClock
from recert.config import Settings, SmtpSettings, WebSettings
from recert.db import session_scope
from recert.decisions import DecisionRefused, DecisionRequest, decide
from recert.discovery import discover_tenant
from recert.models import AuditEvent, Campaign, OutboxEmail, ReviewItem
from recert.notify import notify, queue_orphan_report, send_outbox
from tests.conftest import SmtpCapture
from tests.test_discovery import TENANT, ScriptedConnector

DAY0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
K = base.PrincipalKind


def day(n: float) -> FixedClock:
    return FixedClock(DAY0 + timedelta(days=n))


def app(external_id: str, **kw: Any) -> base.Principal:
    return base.Principal(external_id, K.OAUTH_APP, f"App {external_id}", app_id=external_id, **kw)


def owned_by(principal: str, person: str) -> base.OwnerHint:
    return base.OwnerHint(
        principal, base.OwnerSource.IDP_OWNER, "listed as owner", person_id=person
    )


PAGE = base.Page(
    principals=[
        app("ann-1"),
        app("ann-2"),
        app("dan-1"),
        app("cy-1"),
        app("orphan-1"),
        app("platform", platform_owned=True),
        base.Principal("mi", K.MANAGED_IDENTITY, "Managed identity"),
        app("0oaPROTECTED"),
        app("disabled", status=base.Status.DISABLED),
    ],
    people=[
        base.Person("ann", "Ann Owner", "ann@acme.test", active=True, manager_id="bo"),
        base.Person("bo", "Bo Manager", "bo@acme.test", active=True),
        base.Person("dan", "Dan Quick", "dan@acme.test", active=True),
        base.Person("cy", "Cy Gone", "cy@acme.test", active=True),
    ],
    owner_hints=[
        owned_by("ann-1", "ann"),
        owned_by("ann-2", "ann"),
        owned_by("dan-1", "dan"),
        owned_by("cy-1", "cy"),
        owned_by("platform", "ann"),
        owned_by("0oaPROTECTED", "ann"),
        owned_by("disabled", "ann"),
    ],
    grants=[
        base.Grant("ann-1", "g1", "okta.users.manage", "Okta API", base.Consent.APPLICATION),
        base.Grant("ann-1", "g2", "okta.users.read", "Okta API", base.Consent.APPLICATION),
    ],
    checkpoint=base.Checkpoint(full=True),
)


@pytest.fixture
def settings(tmp_path: Path, smtp_server: SmtpCapture) -> Settings:
    return Settings(
        path=tmp_path / "recert.toml",
        tenants=(TENANT,),
        iam_email="iam@acme.test",
        smtp=SmtpSettings(
            host=smtp_server.host, port=smtp_server.port, from_address="recert@acme.test"
        ),
        web=WebSettings(base_url="https://recert.acme.test", secret_key=SecretStr("k" * 32)),
    )


@pytest.fixture
def campaign(engine: Engine, settings: Settings) -> campaigns.CampaignSummary:
    assert (
        discover_tenant(engine, TENANT, day(-1), connector=ScriptedConnector([PAGE])).status
        == "complete"
    )
    analyze(engine, settings, day(-1))
    with session_scope(engine) as session:
        return campaigns.open_campaign(session, settings, day(0), name="Q4 review")


def reviewers(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        items = session.exec(select(ReviewItem)).all()
        from recert.models import Principal

        names = {p.id: p.external_id for p in session.exec(select(Principal))}
    return {names[i.principal_id]: i.reviewer_email for i in items}


def test_a_campaign_reviews_only_what_is_in_scope(
    engine: Engine, settings: Settings, campaign: Any
) -> None:
    assert campaign.created
    assert reviewers(engine) == {
        "ann-1": "ann@acme.test",
        "ann-2": "ann@acme.test",
        "dan-1": "dan@acme.test",
        "cy-1": "cy@acme.test",
        "orphan-1": "iam@acme.test",
    }
    assert campaign.due_at == DAY0 + timedelta(days=14)
    with session_scope(engine) as session:
        again = campaigns.open_campaign(session, settings, day(0.5), name="Q4 review")
    assert not again.created
    assert again.items == campaign.items == 5


def config_file(tmp_path: Path, smtp: SmtpCapture) -> Path:
    """The settings above as an operator writes them, for the `recert` command."""
    (tmp_path / "okta-token").write_text("00read")
    (tmp_path / "web-key").write_text("k" * 32)
    path = tmp_path / "recert.toml"
    path.write_text(
        tomli_w.dumps(
            {
                "iam_email": "iam@acme.test",
                "smtp": {"host": smtp.host, "port": smtp.port, "from_address": "recert@acme.test"},
                "web": {"base_url": "https://recert.acme.test", "secret_key_file": "web-key"},
                "tenants": [
                    {
                        "name": TENANT.name,
                        "kind": "okta",
                        "org_url": "https://acme.okta.test",
                        "api_token_file": "okta-token",
                        "protected": list(TENANT.protected),
                    }
                ],
            }
        )
    )
    return path


def test_fourteen_days_each_person_gets_exactly_their_emails(
    engine: Engine,
    settings: Settings,
    campaign: Any,
    smtp_server: SmtpCapture,
    database_url: str,
    tmp_path: Path,
) -> None:
    smtp_server.refuse.add("cy@acme.test")
    secret = settings.signing_key()
    env = {
        "RECERT_CONFIG": str(config_file(tmp_path, smtp_server)),
        "RECERT_DATABASE_URL": database_url,
    }
    received: list[tuple[int, str, str, tuple[str, ...]]] = []
    for n in range(15):
        clock = day(n)
        if n == 2:  # Dan answers everything early; Ann keeps one of her two apps
            decide_as(engine, settings, clock, secret, "dan@acme.test", "dan-1", "keep")
            decide_as(engine, settings, clock, secret, "ann@acme.test", "ann-2", "keep")
        before = len(smtp_server.messages)
        for _ in range(3):  # re-runs the same day send only what changed since
            result = CliRunner().invoke(
                recert_cli, ["notify"], env={**env, "RECERT_NOW": clock.now().isoformat()}
            )
            assert result.exit_code == 0, result.output
        for mail in smtp_server.messages[before:]:
            kind = kind_of(engine, str(mail.message["Message-ID"]))
            cc = tuple(a.strip() for a in str(mail.message.get("Cc", "")).split(",") if a.strip())
            received.append((n, str(mail.message["To"]), kind, cc))
    assert received == [
        (0, "ann@acme.test", "request", ()),
        (0, "dan@acme.test", "request", ()),
        (0, "iam@acme.test", "orphan_escalation", ()),
        # The next run that day: Cy's mail bounced, so Cy's app joins IAM's list at once.
        (0, "iam@acme.test", "orphan_escalation", ()),
        (7, "ann@acme.test", "reminder", ()),
        (12, "ann@acme.test", "final_warning", ("bo@acme.test",)),
    ]
    assert smtp_server.to("bo@acme.test")[0].message["To"] == "ann@acme.test"
    with Session(engine) as session:
        bounced = session.exec(select(OutboxEmail).where(OutboxEmail.status == "bounced")).one()
        events = session.exec(select(AuditEvent.action)).all()
    assert bounced.recipient == "cy@acme.test"
    assert reviewers(engine)["cy-1"] == "iam@acme.test"
    assert "owner.mail_bounced" in events


def kind_of(engine: Engine, message_id: str) -> str:
    with Session(engine) as session:
        return session.exec(
            select(OutboxEmail.kind).where(OutboxEmail.message_id == message_id)
        ).one()


def decide_as(
    engine: Engine,
    settings: Settings,
    clock: FixedClock,
    secret: bytes,
    reviewer: str,
    app_id: str,
    action: str,
    **kw: Any,
) -> None:
    link = links.verify(
        secret,
        links.sign(secret, links.ReviewLink(1, reviewer, DAY0 + timedelta(days=14))),
        clock.now(),
    )
    with session_scope(engine) as session:
        from recert.models import Principal

        item = session.exec(
            select(ReviewItem).join(Principal).where(Principal.external_id == app_id)
        ).one()
        decide(
            session,
            settings,
            clock,
            link,
            item.id or 0,
            DecisionRequest(action, justification=kw.pop("why", "still needed"), **kw),
        )


def test_decisions_are_checked_and_audited(
    engine: Engine, settings: Settings, campaign: Any
) -> None:
    secret = settings.signing_key()
    with pytest.raises(DecisionRefused, match="not part of your review"):
        decide_as(engine, settings, day(1), secret, "dan@acme.test", "ann-1", "keep")
    with pytest.raises(DecisionRefused, match="why the app is still needed"):
        decide_as(engine, settings, day(1), secret, "ann@acme.test", "ann-1", "keep", why="  ")
    with pytest.raises(DecisionRefused, match="active person"):
        decide_as(
            engine,
            settings,
            day(1),
            secret,
            "ann@acme.test",
            "ann-1",
            "reassign",
            new_owner="ghost@acme.test",
        )
    decide_as(
        engine,
        settings,
        day(1),
        secret,
        "ann@acme.test",
        "ann-1",
        "reassign",
        new_owner="Dan@acme.test",
    )
    assert reviewers(engine)["ann-1"] == "dan@acme.test"
    decide_as(engine, settings, day(2), secret, "dan@acme.test", "ann-1", "not_mine")
    assert reviewers(engine)["ann-1"] == "iam@acme.test"
    with pytest.raises(links.InvalidLink, match="expired"):
        decide_as(engine, settings, day(14), secret, "ann@acme.test", "ann-2", "revoke")
    with session_scope(engine) as session:
        closed = session.exec(select(Campaign)).one()
        closed.closed_at = day(3).now()
        session.add(closed)
    with pytest.raises(DecisionRefused, match="closed"):
        decide_as(engine, settings, day(4), secret, "ann@acme.test", "ann-2", "revoke")
    with Session(engine) as session:
        decided = session.exec(
            select(AuditEvent).where(AuditEvent.action == "review.decided")
        ).all()
    assert [e.data["decision"] for e in decided] == ["reassign", "not_mine"]


def test_two_senders_at_once_send_each_email_once(
    engine: Engine, settings: Settings, campaign: Any, smtp_server: SmtpCapture
) -> None:
    from recert.notify import enqueue_due

    assert enqueue_due(engine, settings, day(0)) == 4
    threads = [
        threading.Thread(target=send_outbox, args=(engine, settings, day(0))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(str(m.message["To"]) for m in smtp_server.messages) == [
        "ann@acme.test",
        "cy@acme.test",
        "dan@acme.test",
        "iam@acme.test",
    ]


def test_an_unreachable_server_is_retried_later_not_lost(
    engine: Engine, settings: Settings, campaign: Any, smtp_server: SmtpCapture
) -> None:
    from recert.config import SmtpSettings as Smtp

    down = settings.model_copy(update={"smtp": Smtp(host="127.0.0.1", port=1, timeout_seconds=2)})
    first = notify(engine, down, day(0))
    assert (first.queued, first.sent, first.retrying) == (4, 0, 4)
    assert notify(engine, settings, day(0)).sent == 0, "not before the backoff elapses"
    later = notify(engine, settings, day(0.5))
    assert later.sent == 4
    assert len(smtp_server.messages) == 4


def test_status_per_tenant_and_owner(engine: Engine, settings: Settings, campaign: Any) -> None:
    decide_as(engine, settings, day(1), settings.signing_key(), "dan@acme.test", "dan-1", "keep")
    with Session(engine) as session:
        [progress] = campaigns.status(session)
    assert (progress["items"], progress["decided"]) == (5, 1)
    assert progress["per_tenant"]["okta-test"]["items"] == 5
    assert progress["per_owner"]["dan@acme.test"] == {"items": 1, "decided": 1}
    assert progress["per_owner"]["ann@acme.test"] == {"items": 2, "pending": 2}


def test_a_handover_gets_the_new_owner_a_request_once(
    engine: Engine, settings: Settings, campaign: Any, smtp_server: SmtpCapture
) -> None:
    secret = settings.signing_key()
    notify(engine, settings, day(0))
    assert len(smtp_server.to("dan@acme.test")) == 1
    decide_as(
        engine,
        settings,
        day(1),
        secret,
        "ann@acme.test",
        "ann-1",
        "reassign",
        new_owner="dan@acme.test",
    )
    notify(engine, settings, day(1))
    notify(engine, settings, day(1.5))
    _request, handover = smtp_server.to("dan@acme.test")
    assert str(handover.message["Subject"]).startswith("Action needed: review 1 app ")
    text = " ".join(handover.message.get_body(("plain",)).get_content().split())
    assert "App ann-1" in text
    assert "Ann Owner (ann@acme.test) handed this app over to you" in text


def test_a_handover_before_the_first_request_is_in_that_request(
    engine: Engine, settings: Settings, campaign: Any, smtp_server: SmtpCapture
) -> None:
    decide_as(
        engine,
        settings,
        day(0),
        settings.signing_key(),
        "ann@acme.test",
        "ann-1",
        "reassign",
        new_owner="dan@acme.test",
    )
    notify(engine, settings, day(0.1))
    notify(engine, settings, day(1))
    [only] = smtp_server.to("dan@acme.test")
    assert str(only.message["Subject"]).startswith("Action needed: review 2 apps ")


def hand_ann_1_to_dan(engine: Engine, settings: Settings, clock: FixedClock) -> None:
    secret = settings.signing_key()
    decide_as(
        engine,
        settings,
        clock,
        secret,
        "ann@acme.test",
        "ann-1",
        "reassign",
        new_owner="dan@acme.test",
    )


def test_a_handover_at_the_requests_instant_but_before_it_is_in_that_request(
    engine: Engine, settings: Settings, campaign: Any, smtp_server: SmtpCapture
) -> None:
    """A pinned clock (RECERT_NOW, the demo) gives the hand-over and the request one time."""
    hand_ann_1_to_dan(engine, settings, day(0))
    notify(engine, settings, day(0))
    notify(engine, settings, day(0))
    [only] = smtp_server.to("dan@acme.test")
    assert str(only.message["Subject"]).startswith("Action needed: review 2 apps ")


def test_a_handover_at_the_requests_instant_but_after_it_gets_a_request_of_its_own(
    engine: Engine, settings: Settings, campaign: Any, smtp_server: SmtpCapture
) -> None:
    notify(engine, settings, day(0))
    hand_ann_1_to_dan(engine, settings, day(0))
    notify(engine, settings, day(0))
    notify(engine, settings, day(0))
    request, handover = smtp_server.to("dan@acme.test")
    assert str(request.message["Subject"]).startswith("Action needed: review 1 app ")
    text = " ".join(handover.message.get_body(("plain",)).get_content().split())
    assert "App ann-1" in text
    assert "App dan-1" not in text


def test_a_request_queued_before_it_recorded_its_items_is_judged_by_time(
    engine: Engine, settings: Settings, campaign: Any, smtp_server: SmtpCapture
) -> None:
    hand_ann_1_to_dan(engine, settings, day(0))
    notify(engine, settings, day(0.1))
    with session_scope(engine) as session:  # as a row from before migration 0011 has it
        for row in session.exec(select(OutboxEmail)):
            row.item_ids = None
            session.add(row)
    notify(engine, settings, day(1))
    [only] = smtp_server.to("dan@acme.test")
    assert str(only.message["Subject"]).startswith("Action needed: review 2 apps ")


def reach(text: str) -> str:
    """The "Can reach" block of a plain-text digest: the permissions under review."""
    return text.split("Can reach:", 1)[1].split("Credentials:", 1)[0]


def test_each_consenting_user_reviews_their_own_consent(
    engine: Engine, settings: Settings, smtp_server: SmtpCapture
) -> None:
    def consent(user: str, scope: str) -> base.Grant:
        return base.Grant(
            "chat-bot", f"{user}:chat-bot", scope, "Google Workspace", base.Consent.USER, user
        )

    mail_scope, calendar = "https://mail.google.com/", "https://www.googleapis.com/auth/calendar"
    page = base.Page(
        principals=[base.Principal("chat-bot", K.THIRD_PARTY_APP, "Chat bot", app_id="chat-bot")],
        people=[
            base.Person("ann", "Ann", "ann@acme.test", active=True),
            base.Person("dan", "Dan", "dan@acme.test", active=True),
            base.Person("eve", "Eve", "eve@acme.test", active=False),
        ],
        grants=[
            consent("ann", mail_scope),
            consent("ann", calendar),
            consent("dan", calendar),
            consent("eve", calendar),
        ],
        checkpoint=base.Checkpoint(full=True),
    )
    assert (
        discover_tenant(engine, TENANT, day(-1), connector=ScriptedConnector([page])).status
        == "complete"
    )
    analyze(engine, settings, day(-1))
    with session_scope(engine) as session:
        opened = campaigns.open_campaign(session, settings, day(0), name="consents")
    assert (opened.apps, opened.items, opened.to_iam) == (1, 3, 1), "apps are not review items"
    with Session(engine) as session:
        items = {i.consenting_user: i for i in session.exec(select(ReviewItem))}
        [orphan] = reports.orphans(session, settings, day(0).now())
    assert (orphan["external_id"], orphan["reason"]) == ("chat-bot", "user_consented")
    assert {u: i.reviewer_email for u, i in items.items()} == {
        "": "iam@acme.test",  # the app as a whole: no catalog owner, so the IAM team
        "ann": "ann@acme.test",
        "dan": "dan@acme.test",  # Eve left: her consent is the app owner's problem
    }
    notify(engine, settings, day(0))
    ann_text = smtp_server.to("ann@acme.test")[0].message.get_body(("plain",)).get_content()
    dan_text = smtp_server.to("dan@acme.test")[0].message.get_body(("plain",)).get_content()
    assert "mail.google.com" in reach(ann_text)
    assert "mail.google.com" not in reach(dan_text), "each user reviews only their own consent"
    assert "calendar" in reach(dan_text)
    assert "granted this app access to your account" in dan_text
    link = links.ReviewLink(1, "ann@acme.test", DAY0 + timedelta(days=14))
    with pytest.raises(DecisionRefused, match="your own consent"), session_scope(engine) as session:
        decide(
            session,
            settings,
            day(1),
            link,
            items["ann"].id or 0,
            DecisionRequest("reassign", new_owner="dan@acme.test"),
        )
    with session_scope(engine) as session:
        decide(session, settings, day(1), link, items["ann"].id or 0, DecisionRequest("revoke"))
    with Session(engine) as session:
        assert session.get(ReviewItem, items["ann"].id).status == "decided"


def test_one_orphan_set_and_iam_hears_of_changes_at_most_daily(
    engine: Engine, settings: Settings, campaign: Any, smtp_server: SmtpCapture
) -> None:
    def orphans() -> dict[str, str]:
        with Session(engine) as session:
            rows = reports.orphans(session, settings, day(0).now())
        return {r["external_id"]: r["reason"] for r in rows}

    assert orphans() == {"orphan-1": "no_owner"}
    assert (campaign.to_iam, campaign.apps) == (1, 5)
    secret = settings.signing_key()
    smtp_server.refuse.add("cy@acme.test")
    notify(engine, settings, day(0))  # Cy's request bounces: cy-1 reaches IAM
    decide_as(engine, settings, day(0.1), secret, "dan@acme.test", "dan-1", "not_mine")
    decide_as(engine, settings, day(0.2), secret, "ann@acme.test", "ann-2", "not_mine")
    notify(engine, settings, day(0.3))
    decide_as(engine, settings, day(0.4), secret, "ann@acme.test", "ann-1", "not_mine")
    notify(engine, settings, day(0.5))
    notify(engine, settings, day(1))
    notify(engine, settings, day(1.5))
    subjects = [str(m.message["Subject"]) for m in smtp_server.to("iam@acme.test")]
    assert [s.split(" with ")[0] for s in subjects] == [
        "Orphaned: 1 app",  # the campaign's orphans
        "Orphaned: 3 apps",  # what reached IAM since: a bounce and two "not mine"
        "Orphaned: 1 app",  # the next day: the third "not mine", not the whole list again
    ]
    assert orphans() == {
        "orphan-1": "no_owner",
        "cy-1": "owner_unreachable",
        "dan-1": "not_mine",
        "ann-2": "not_mine",
        "ann-1": "not_mine",
    }
    with Session(engine) as session:
        evidence = {
            r["external_id"]: r["evidence"]
            for r in reports.orphans(session, settings, day(1).now())
        }
    assert evidence["dan-1"] == "in 'Q4 review', dan@acme.test said it is not theirs"
    assert queue_orphan_report(engine, settings, day(1)) == 1
    send_outbox(engine, settings, day(1))
    weekly = smtp_server.to("iam@acme.test")[-1].message
    assert str(weekly["Subject"]).endswith(": 5 apps without an owner")
    text = weekly.get_body(("plain",)).get_content()
    assert "The person asked to review it said it is not theirs: 3" in text
    assert "Reason not recorded" not in text


def test_a_double_click_records_one_decision(
    engine: Engine, settings: Settings, campaign: Any
) -> None:
    from recert.models import Decision

    secret, start, failures = settings.signing_key(), threading.Barrier(2), []

    def submit() -> None:
        start.wait()
        try:
            decide_as(engine, settings, day(1), secret, "dan@acme.test", "dan-1", "keep")
        except Exception as error:  # reported by the assertion below
            failures.append(error)

    clicks = [threading.Thread(target=submit) for _ in range(2)]
    for click in clicks:
        click.start()
    for click in clicks:
        click.join()
    assert failures == []
    with Session(engine) as session:
        assert len(session.exec(select(Decision)).all()) == 1
        decided = session.exec(select(AuditEvent).where(AuditEvent.action == "review.decided"))
        assert len(decided.all()) == 1
