"""The owner's page in a real browser (Chromium): what owners see and what they decide.

Pages are opened with JavaScript off, as the site uses none; the hostile-name test turns
it on so that an injected script would have a chance to run (and fails on any dialog).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import Dialog, Locator, Page, expect
from sqlmodel import select

from recert import links
from recert.db import session_scope
from recert.decisions import ACTIONS, DecisionRequest, decide, latest_decisions
from recert.models import AuditEvent, ReviewItem
from recert.web.app import CHOICES
from tests.web.conftest import (
    GMAIL,
    HOSTILE,
    IAM,
    LONG,
    NO_APP_LOG,
    OPENED,
    UNLISTED_SCOPE,
    Site,
)

pytestmark = pytest.mark.browser
SQLITE_ONLY = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)


@contextmanager
def _browsing(browser: Any, site: Site, javascript: bool) -> Iterator[tuple[Page, list[str]]]:
    """A fresh browser context on the site; collects any dialog a script would open."""
    context = browser.new_context(base_url=site.url, java_script_enabled=javascript)
    page = context.new_page()
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    try:
        yield page, dialogs
    finally:
        context.close()


@pytest.fixture
def page(browser: Any, site: Site) -> Iterator[Page]:
    with _browsing(browser, site, javascript=False) as (page, _):
        yield page


@pytest.fixture
def scripted(browser: Any, site: Site) -> Iterator[tuple[Page, list[str]]]:
    with _browsing(browser, site, javascript=True) as browsing:
        yield browsing


def _field(item: Locator, name: str) -> Locator:
    """The value shown under a heading of the item's summary (a <dt>/<dd> pair)."""
    return item.locator(f"dt:text-is('{name}') + dd")


def _save(page: Page, item: Locator) -> int:
    """Submit the item's form; the status of the POST's own response."""
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        item.get_by_role("button", name="Save decision").click()
    page.wait_for_load_state()
    return int(posted.value.status)


def test_the_form_offers_every_decision_the_domain_knows() -> None:
    assert [value for value, _ in CHOICES] == list(ACTIONS)


def test_owner_drops_one_permission_and_keeps_the_rest(page: Page, site: Site) -> None:
    assert page.goto(site.link("ann@acme.test")).status == 200  # type: ignore[union-attr]
    expect(page.get_by_role("heading", level=1)).to_contain_text("Q4 2026 access review")
    expect(page.locator("header")).to_contain_text("Tue 15 Dec 2026 09:00 UTC")
    payroll = page.locator(f"#item-{site.item_id('payroll')}")
    expect(_field(payroll, "Provider")).to_have_text("Microsoft Entra ID, tenant entra-test")
    expect(_field(payroll, "Kind")).to_have_text("Service principal (id payroll)")
    expect(payroll.locator("tr", has_text="Mail.ReadWrite")).to_contain_text("High risk")
    expect(payroll.locator("tr", has_text="Calendars.Read")).not_to_contain_text("High risk")
    expect(payroll).to_contain_text("Read and write mail in all mailboxes")
    expect(payroll).to_contain_text("app-only access, no signed-in user needed")
    expect(_field(payroll, "Credentials")).to_have_text(
        "Client secret prod: never expires; Certificate: expires on 10 Jan 2027"
    )
    expect(_field(payroll, "Credentials").locator(".warn")).to_have_text("never expires")
    expect(_field(payroll, "Last used")).to_have_text("Tue 1 Dec 2026 09:00 UTC (today)")
    expect(_field(payroll, "Why you")).to_have_text(
        "The identity provider lists you as an owner: listed in /owners of payroll"
    )
    expect(_field(payroll, "Decision")).to_have_text("none yet")

    payroll.get_by_label("Mail.ReadWrite").check()
    payroll.get_by_label("Keep it, but drop the ticked permissions").check()
    payroll.get_by_label("Justification").fill("Payroll exports still run nightly.")
    assert _save(page, payroll) == 303

    assert page.url == f"{site.link('ann@acme.test')}?done={site.item_id('payroll')}"
    expect(page.get_by_role("status")).to_have_text(
        "Saved: you kept Payroll Sync and dropped Microsoft Graph: Mail.ReadWrite."
    )
    [decision] = site.decisions()
    assert (decision.action, decision.dropped_permissions, decision.decided_by) == (
        "reduce",
        ["Microsoft Graph: Mail.ReadWrite"],
        "ann@acme.test",
    )
    assert decision.justification == "Payroll exports still run nightly."
    assert decision.source_ip == "127.0.0.1"
    assert decision.user_agent
    with session_scope(site.engine) as session:
        item = session.get(ReviewItem, site.item_id("payroll"))
        assert item is not None
        assert item.status == "decided"
        events = session.exec(select(AuditEvent).where(AuditEvent.action == "review.decided"))
        assert [e.subject_id for e in events] == [str(site.item_id("payroll"))]


def test_no_get_changes_anything(page: Page, site: Site) -> None:
    with session_scope(site.engine) as session:
        link = links.verify(site.settings.signing_key(), site.token("bo@acme.test"), OPENED)
        request = DecisionRequest("keep", justification="Builds")
        decide(session, site.settings, site.clock, link, site.item_id("builder"), request)
    before = site.state()

    urls = ["/healthz", f"/review/{site.token('ann@acme.test')}"]
    for reviewer in ("ann@acme.test", "bo@acme.test", IAM):
        page.goto(site.link(reviewer))
        urls += [a.get_attribute("href") or "" for a in page.locator("a[href]").all()]
        urls += [f.get_attribute("action") or "" for f in page.locator("form").all()]
    urls.append(f"/review/{site.token('bo@acme.test')}?done={site.item_id('builder')}")
    urls.append(f"/review/{site.token('ann@acme.test')}?done={site.item_id('builder')}")
    assert sum("/items/" in url for url in urls) == 6  # every form on the three pages
    for url in urls:
        response = page.goto(url)
        assert response is not None
        assert response.status in {200, 405}, url
    assert site.state() == before


def test_invalid_links_get_a_clear_page(page: Page, site: Site) -> None:
    genuine = links.ReviewLink(site.campaign_id, "ann@acme.test", site.due_at)
    forged = links.sign(b"not-our-key", genuine)
    stranger = site.token("zed@acme.test")
    for token, reason in (
        (forged, "this link was not issued by Recert"),
        ("garbage", "this link is malformed"),
        (stranger, "nothing in this review is waiting for you any more"),
    ):
        response = page.goto(f"/review/{token}")
        assert response is not None
        assert response.status == 403
        expect(page.locator("body")).to_contain_text(
            f"This review link is not valid: {reason}. Ask {IAM} for a new one."
        )

    site.clock.at = site.due_at + timedelta(seconds=1)
    response = page.goto(site.link("ann@acme.test"))
    assert response is not None
    assert response.status == 403
    expect(page.locator("body")).to_contain_text("this link has expired: the review closed")
    assert site.decisions() == []


@SQLITE_ONLY
def test_another_reviewers_link_cannot_decide_my_app(page: Page, site: Site) -> None:
    page.goto(site.link("bo@acme.test"))
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    before = site.state()
    response = page.request.post(
        f"/review/{site.token('bo@acme.test')}/items/{site.item_id('payroll')}",
        form={"csrf": csrf or "", "action": "revoke"},
        max_redirects=0,
    )
    assert response.status == 409
    page.set_content(response.text())
    expect(page.get_by_role("alert")).to_have_text(
        "Not saved: This app is not part of your review."
    )
    assert site.state() == before


@SQLITE_ONLY
def test_keep_needs_a_justification(page: Page, site: Site) -> None:
    page.goto(site.link("ann@acme.test"))
    payroll = page.locator(f"#item-{site.item_id('payroll')}")
    payroll.get_by_label("Keep it, with all its permissions").check()
    assert _save(page, payroll) == 400
    message = "Not saved: Please say in a few words why the app is still needed."
    expect(page.get_by_role("alert").first).to_contain_text(message)
    payroll = page.locator(f"#item-{site.item_id('payroll')}")
    expect(payroll.get_by_role("alert")).to_have_text(message)
    expect(payroll.get_by_label("Keep it, with all its permissions")).to_be_checked()
    assert site.decisions() == []


@SQLITE_ONLY
def test_hand_over_and_not_mine_move_the_app(page: Page, site: Site) -> None:
    builder_id = site.item_id("builder")
    page.goto(site.link("bo@acme.test"))
    builder = page.locator(f"#item-{builder_id}")
    builder.get_by_label("Hand it over to another owner").check()
    builder.get_by_label("New owner's email").fill("dee@acme.test")
    assert _save(page, builder) == 400
    expect(page.get_by_role("alert").first).to_contain_text("Hand it to an active person")

    builder = page.locator(f"#item-{builder_id}")
    builder.get_by_label("New owner's email").fill("CY@acme.test")
    assert _save(page, builder) == 303
    expect(page.get_by_role("status")).to_have_text(
        "Saved: you handed Build Bot over to cy@acme.test, who will be asked to review it."
    )
    expect(page.locator(f"#item-{builder_id}")).to_have_count(0)
    assert page.goto(site.link("bo@acme.test")).status == 403  # type: ignore[union-attr]

    page.goto(site.link("cy@acme.test"))
    builder = page.locator(f"#item-{builder_id}")
    expect(builder).to_contain_text("It was handed over to you")
    expect(builder).to_contain_text("Handed over to cy@acme.test, by bo@acme.test")
    builder.get_by_label("Not mine").check()
    assert _save(page, builder) == 303
    expect(page.get_by_role("status")).to_contain_text(f"the IAM team ({IAM})")

    page.goto(site.link(IAM))
    expect(page.locator(f"#item-{builder_id}")).to_contain_text("Build Bot")
    expect(page.locator(f"#item-{site.item_id('ghost')}")).to_contain_text(
        "No owner is recorded anywhere"
    )


@SQLITE_ONLY
def test_hostile_names_are_shown_as_text(scripted: tuple[Page, list[str]], site: Site) -> None:
    page, dialogs = scripted
    page.goto(site.link("ann@acme.test"))
    hostile = page.locator(f"#item-{site.item_id('hostile')}")
    expect(hostile.get_by_role("heading", level=2)).to_have_text(HOSTILE)
    expect(hostile.locator("td .hint")).to_have_text(HOSTILE)
    # The right-to-left override is shown, not obeyed; a long name is cut, whole on hover.
    expect(page.locator(f"#item-{site.item_id('rtl')} h2")).to_have_text(
        "[U+202E]txt.exe Invoice viewer"
    )
    long_name = page.locator(f"#item-{site.item_id('long')} h2 .name")
    expect(long_name).to_have_text("W" * 89 + "…")
    expect(long_name).to_have_attribute("title", LONG)
    assert page.locator("script").count() == 0
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    hostile.get_by_label("Revoke it").check()
    assert _save(page, hostile) == 303
    expect(page.get_by_role("status")).to_have_text(
        f"Saved: you revoked {HOSTILE}; Recert will disable it."
    )
    assert dialogs == []


@SQLITE_ONLY
def test_google_apps_say_why_their_use_is_unknown_and_what_scopes_mean(
    browser: Any, google_site: Site
) -> None:
    with _browsing(browser, google_site, javascript=True) as (page, dialogs):
        page.goto(google_site.link(IAM))
        mailer = page.locator(f"#item-{google_site.item_id('mailer')}")
        expect(_field(mailer, "Provider")).to_have_text("Google, tenant google-test")
        expect(_field(mailer, "Last used")).to_have_text(f"Unknown: {NO_APP_LOG}")
        gmail = mailer.locator("tr", has_text=GMAIL)
        expect(gmail.locator(".hint")).to_have_text(
            "Read, compose, send, and permanently delete all your email from Gmail"
        )
        expect(mailer.locator("tr", has_text=UNLISTED_SCOPE).locator(".hint")).to_have_count(0)

        # The provider's reason is untrusted text: shown as text, cut as the email cuts it.
        sly = page.locator(f"#item-{google_site.item_id('sly')}")
        reason = f"{HOSTILE} {LONG}"[:499] + "…"
        expect(_field(sly, "Last used")).to_have_text(f"Unknown: {reason}")
        assert page.locator("script").count() == 0
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert dialogs == []


@SQLITE_ONLY
def test_second_visit_shows_the_decision_and_allows_a_change(page: Page, site: Site) -> None:
    payroll_id = site.item_id("payroll")
    page.goto(site.link("ann@acme.test"))
    payroll = page.locator(f"#item-{payroll_id}")
    payroll.get_by_label("Keep it, with all its permissions").check()
    payroll.get_by_label("Justification").fill("Needed for payroll.")
    assert _save(page, payroll) == 303

    site.clock.at += timedelta(days=3)
    page.goto(site.link("ann@acme.test"))
    payroll = page.locator(f"#item-{payroll_id}")
    expect(payroll.locator("summary")).to_have_text("Payroll Sync Keep")  # one line, collapsed
    expect(payroll.get_by_label("Justification")).to_be_hidden()
    payroll.locator("summary").click()  # reopened to change the decision
    expect(payroll.locator(".decision")).to_contain_text(
        "Keep, by ann@acme.test on Tue 01 Dec 2026 10:00 UTC: Needed for payroll."
    )
    expect(payroll.get_by_label("Keep it, with all its permissions")).to_be_checked()
    expect(payroll.get_by_label("Justification")).to_have_value("Needed for payroll.")

    payroll.get_by_label("Revoke it").check()
    assert _save(page, payroll) == 303
    expect(page.get_by_role("status")).to_have_text(
        "Saved: you revoked Payroll Sync; Recert will disable it."
    )
    with session_scope(site.engine) as session:
        assert latest_decisions(session, [payroll_id])[payroll_id].action == "revoke"
    assert [d.action for d in site.decisions()] == ["keep", "revoke"]


@SQLITE_ONLY
def test_progress_collapse_and_focus_move_on(page: Page, site: Site) -> None:
    page.goto(site.link("ann@acme.test"))
    expect(page).to_have_title("Q4 2026 access review · Recert")
    expect(page.get_by_role("heading", level=1)).to_have_text("Q4 2026 access review")
    items = page.locator("details.item")
    total = items.count()
    expect(page.locator("#progress")).to_have_text(f"0 of {total} decided")
    payroll, hostile = site.item_id("payroll"), site.item_id("hostile")
    form = page.locator(f"#item-{payroll}")
    form.get_by_label("Keep it, with all its permissions").check()
    form.get_by_label("Justification").fill("Payroll runs nightly.")
    assert _save(page, form) == 303

    expect(page.locator("#progress")).to_have_text(f"1 of {total} decided")
    decided = page.locator(f"#item-{payroll}")
    expect(decided).not_to_have_attribute("open", "")
    expect(decided.locator("summary")).to_have_text("Payroll Sync Keep")
    expect(decided.get_by_label("Justification")).to_be_hidden()
    expect(page.locator(f"#item-{hostile} summary")).to_be_focused()  # the next to decide
    decided.locator("summary").click()
    expect(decided.get_by_label("Justification")).to_have_value("Payroll runs nightly.")
