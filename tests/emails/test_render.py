"""What each kind of email says, in both parts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from emails.render import (
    CredentialInfo,
    Kind,
    Permission,
    described,
    last_use,
    render,
    subject_for,
)
from tests.emails.builders import (
    DUE_TEXT,
    GMAIL,
    IAM,
    KINDS,
    NOW,
    REVIEW_URL,
    digest,
    entra_app,
    google_app,
    html_shape,
    parts,
)


def rendered(
    kind: Kind = "request", cc: tuple[str, ...] = (), **changes: object
) -> tuple[str, str]:
    message = render(digest(kind, **changes), from_address="recert@example.com", cc=cc)
    return parts(message)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_lists_every_app_in_both_parts(kind: Kind) -> None:
    text, html = rendered(kind)
    for part in (text, html):
        assert "Payroll Sync" in part
        assert "Calendly" in part
        assert "Microsoft Entra ID" in part
        assert "entra-prod" in part
        assert IAM in part
    shape = html_shape(html)
    assert not shape.mismatches
    assert shape.open == []
    assert "script" not in shape.tags


@pytest.mark.parametrize("kind", KINDS)
def test_headers_and_layout(kind: Kind) -> None:
    message = render(digest(kind), from_address="recert@example.com")
    assert message["To"] == "jo@example.com"
    assert message["Reply-To"] == IAM
    assert message["Subject"] == subject_for(digest(kind))
    assert "Jo Smith" not in str(message["To"])
    _, html = parts(message)
    assert 'role="presentation"' in html
    assert "max-width:640px" in html
    assert "<style" not in html
    assert "src=" not in html


@pytest.mark.parametrize(
    ("kind", "subject"),
    [
        ("request", "Action needed: review 2 apps by Mon 14 Dec 2026"),
        ("reminder", "Reminder: review 2 apps by Mon 14 Dec 2026"),
        ("final_warning", "Final warning: 2 apps will be disabled after Mon 14 Dec 2026"),
        ("disabled_notice", "Disabled: 2 apps, how to get them back"),
        ("orphan_escalation", "Orphaned: 2 apps with no accountable owner"),
        ("orphan_report", "Weekly orphan report, Wed 2 Dec 2026: 2 apps without an owner"),
        ("credential_expiry", "Expiring: 2 credentials on 2 apps, first on Mon 11 Jan 2027"),
        ("enforcement_alert", "Enforcement needs the IAM team: 2 apps"),
    ],
)
def test_subjects(kind: Kind, subject: str) -> None:
    assert subject_for(digest(kind)) == subject


@pytest.mark.parametrize("kind", KINDS)
def test_longest_subject_fits_one_header_line(kind: Kind) -> None:
    longest_date = datetime(2026, 9, 30, tzinfo=UTC)
    many = digest(kind, apps=(entra_app(),) * 9999, due_at=longest_date, now=longest_date)
    assert len(f"Subject: {subject_for(many)}") <= 78


def test_subject_of_one_app_without_due_date() -> None:
    one = digest("request", apps=(entra_app(),), due_at=None)
    assert subject_for(one) == "Action needed: review 1 app"


@pytest.mark.parametrize("kind", ["request", "reminder", "final_warning"])
def test_review_requests_carry_due_date_link_and_app_details(kind: Kind) -> None:
    text, html = rendered(kind)
    for part in (text, html):
        assert DUE_TEXT in part
        assert "Read and write mail in all mailboxes" in part
        assert "Mail.ReadWrite" in part
        assert "User.Read on Microsoft Graph" in part
        assert "Client secret: never expires" in part
        assert "expires Mon 11 Jan 2027 09:00 UTC (in 40 days)" in part
        assert "Fri 20 Nov 2026 09:00 UTC (12 days ago)" in part
        assert "Not used since Thu 3 Sep 2026" in part
        assert "Listed as owner in Entra (/owners)" in part
    assert REVIEW_URL in text
    assert 'href="https://recert.example.com/review/abc123?sig=x&amp;exp=1"' in html
    assert "[HIGH RISK] Read and write mail in all mailboxes" in text
    assert "[HIGH RISK] Read, compose, send, and permanently delete all your email" in text
    assert "[ATTENTION] Client secret: never expires" in text
    assert "Why you: Listed as owner in Entra (/owners)" in text
    assert html.count(">High risk</span>") == 2
    assert "Why you" in html


def test_high_risk_permissions_come_first() -> None:
    text, _ = rendered()
    assert text.index("Mail.ReadWrite") < text.index("User.Read")


def test_request_says_what_happens_next() -> None:
    text, _ = rendered("request")
    assert f"Please review them by {DUE_TEXT}" in text
    assert f"Apps not reviewed by {DUE_TEXT} will be disabled" in text
    assert text.startswith("Hello Jo Smith,\n")


def test_irreversible_app_is_marked_before_it_is_disabled() -> None:
    text, html = rendered("final_warning")
    assert "If disabled: CANNOT BE UNDONE" in text
    assert "Cannot be undone" in html


def test_final_warning_says_apps_will_be_disabled_and_mentions_the_copied_manager() -> None:
    text, html = rendered("final_warning", cc=("manager@example.com",))
    assert f"FINAL WARNING: apps you do not review by {DUE_TEXT} will be disabled." in text
    assert "will be disabled" in html
    for part in (text, html):
        assert "Your manager is copied" in part
    message = render(
        digest("final_warning"),
        from_address="recert@example.com",
        cc=("manager@example.com",),
    )
    assert message["Cc"] == "manager@example.com"


def test_final_warning_without_cc_does_not_claim_a_copy() -> None:
    text, html = rendered("final_warning")
    assert "manager is copied" not in text + html


def test_disabled_notice_explains_how_to_get_apps_back() -> None:
    text, html = rendered("disabled_notice")
    for part in (text, html):
        assert "How to get an app back".upper() in part.upper()
        assert "Reply to this email" in part
        assert "re-enable a disabled app in one step" in part
        assert f"deadline was {DUE_TEXT}" in part
    assert f"write to {IAM}" in text
    assert f'href="mailto:{IAM}"' in html
    assert "Status: DISABLED. Nothing was deleted" in text


def test_disabled_notice_says_plainly_when_access_cannot_come_back() -> None:
    text, html = rendered("disabled_notice")
    assert "Status: ACCESS REVOKED, CANNOT BE UNDONE" in text
    for part in (text, html):
        assert "access was revoked" in part
        assert "must sign in to it and consent" in part


def test_disabled_notice_names_who_must_consent_again() -> None:
    revoked = google_app(must_consent_again=("ann@example.com", "bo\u202e@example.com"))
    text, html = rendered("disabled_notice", apps=(revoked,))
    assert "Must consent again: ann@example.com, bo[U+202E]@example.com" in text
    assert "ann@example.com, bo[U+202E]@example.com" in html


def test_enforcement_alert_says_what_happened_to_each_app() -> None:
    note = "30 apps would be disabled, more than max_disable_per_run (25): nothing was disabled"
    failed = entra_app(note="Could not disable: permission denied <b>")
    text, html = rendered(
        "enforcement_alert", apps=(failed,), note=note, review_url=None, recipient_name=None
    )
    assert text.startswith("Hello IAM team,")
    for part in (text, html):
        assert "30 apps would be disabled" in part
        assert "Nothing listed here is dropped" in part
    assert "What happened: Could not disable: permission denied <b>" in text
    assert "permission denied &lt;b&gt;" in html


def test_disabled_notice_of_reversible_apps_only_has_no_revocation_wording() -> None:
    text, html = rendered("disabled_notice", apps=(entra_app(),), review_url=None)
    for part in (text, html):
        assert "cannot be undone" not in part.lower()
        assert "re-enable" in part
    assert "See your review" not in text


def test_orphan_escalation_gives_the_reason_in_words() -> None:
    text, html = rendered("orphan_escalation", recipient_name=None)
    assert text.startswith("Hello IAM team,")
    for part in (text, html):
        assert "The owner has left the company" in part
        assert "No owner is recorded anywhere" in part
        assert "Please assign an owner" in part
    assert "Why orphaned: The owner has left the company" in text
    assert "What we found: Listed as owner in Entra (/owners)" in text
    assert "Why you" not in text


def test_orphan_report_is_a_table_with_counts_by_reason() -> None:
    text, html = rendered("orphan_report")
    assert html.count("<tr>") >= 3
    assert "The owner has left the company: 1" in text
    assert "No owner is recorded anywhere: 1" in text
    assert ">Why orphaned</td>" in html
    assert "Open the orphan report" in html


def test_empty_orphan_report_says_so() -> None:
    text, html = rendered("orphan_report", apps=())
    for part in (text, html):
        assert "No orphaned apps this week" in part
    assert "0 apps without an owner" in subject_for(digest("orphan_report", apps=()))


def test_notice_without_link_has_no_button() -> None:
    text, html = rendered("disabled_notice", review_url=None)
    for part in (text, html):
        assert "See your review" not in part
    assert 'href="https://' not in html


def test_only_web_links_are_accepted() -> None:
    with pytest.raises(ValueError, match="http"):
        rendered("request", review_url="javascript:alert(1)")


@pytest.mark.parametrize(
    ("app_changes", "expected"),
    [
        ({"last_used_at": NOW - timedelta(days=1)}, "Tue 1 Dec 2026 09:00 UTC (1 day ago)"),
        ({"last_used_at": NOW}, "Wed 2 Dec 2026 09:00 UTC (today)"),
        (
            {"last_used_at": None, "activity_known_since": datetime(2026, 6, 1)},
            "Not used since Mon 1 Jun 2026, as far back as records go",
        ),
        (
            {"last_used_at": None, "activity_known_since": None},
            "Unknown: the provider keeps no record of use",
        ),
    ],
)
def test_last_used(app_changes: dict[str, object], expected: str) -> None:
    text, html = rendered(apps=(entra_app(**app_changes),))
    assert f"Last used: {expected}" in text
    assert expected in html


def test_a_providers_reason_for_unknown_use_comes_first_cleaned_and_cut() -> None:
    text, html = rendered(apps=(google_app(last_use_unknown="Starter does not log app use"),))
    assert "Last used: Unknown: Starter does not log app use" in text
    assert "Unknown: Starter does not log app use" in html
    hostile = "\u202e<b>x</b>" + "W" * 1000
    worded = last_use(NOW, None, hostile, NOW)  # a reason wins over a stale date
    assert worded == "Unknown: " + ("[U+202E]<b>x</b>" + "W" * 1000)[:499] + "…"


def test_permissions_are_described_in_the_providers_words_or_the_shipped_ones() -> None:
    assert described("okta.apps.read", None) == "Read information about Apps"
    assert described("https://mail.google.com/", None) == (
        "Read, compose, send, and permanently delete all your email from Gmail"
    )
    assert described("okta.apps.read", "Its own words\u200b") == "Its own words[U+200B]"
    assert described("User.Read.All", None) is None
    assert described("okta.no.such.scope", "") is None


def test_times_are_shown_in_utc_whatever_zone_they_come_in() -> None:
    paris = timezone(timedelta(hours=1))
    text, _ = rendered(due_at=datetime(2026, 12, 14, 10, 0, tzinfo=paris))
    assert DUE_TEXT in text


def test_expired_credentials_are_flagged() -> None:
    expired = CredentialInfo("api_token", NOW - timedelta(days=3))
    text, _ = rendered(apps=(entra_app(credentials=(expired,)),))
    assert "[ATTENTION] API token: expired Sun 29 Nov 2026 09:00 UTC" in text


def test_long_permission_lists_are_cut_with_a_pointer_to_the_page() -> None:
    many = tuple(Permission(f"scope.{n}", "Okta API", None, False, "admin") for n in range(45))
    text, html = rendered(apps=(entra_app(permissions=many),))
    assert "scope.29" in text
    assert "scope.30" not in text
    for part in (text, html):
        assert "and 15 more; the review page lists them all" in part


def test_unknown_codes_are_shown_as_they_are() -> None:
    odd = entra_app(kind="robot", permissions=(Permission("x", "y", None, False, "magic"),))
    text, _ = rendered("orphan_escalation", apps=(odd, google_app(orphan_reason="lost")))
    assert "robot in Microsoft Entra ID" in text
    assert "x on y (magic)" in text
    assert "Why orphaned: lost" in text


def test_scopes_are_explained_from_the_shipped_data_and_listed_once() -> None:
    apps_read = Permission("okta.apps.read", "Okta API", None, False, "application")
    by_34_users = tuple(GMAIL for _ in range(34))
    message = render(
        digest(apps=(google_app(permissions=(*by_34_users, apps_read)),)),
        from_address="recert@example.com",
    )
    text, html = parts(message)
    for body in (text, html):
        assert body.count("permanently delete all your email from Gmail") == 1
        assert "Read information about Apps" in body
    assert "okta.apps.read on Okta API" in text, "the scope's own name stays in the detail"
