"""Digests to render, and ways to look inside the messages that come out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from html.parser import HTMLParser
from typing import Any

from emails.render import AppSummary, CredentialInfo, Digest, Kind, Permission

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
DUE = datetime(2026, 12, 14, 9, 0, tzinfo=UTC)
DUE_TEXT = "Mon 14 Dec 2026 09:00 UTC"
REVIEW_URL = "https://recert.example.com/review/abc123?sig=x&exp=1"
IAM = "iam@example.com"
KINDS: tuple[Kind, ...] = (
    "request",
    "reminder",
    "final_warning",
    "disabled_notice",
    "orphan_escalation",
    "orphan_report",
    "credential_expiry",
    "enforcement_alert",
)

MAIL_READWRITE = Permission(
    name="Mail.ReadWrite",
    resource="Microsoft Graph",
    description="Read and write mail in all mailboxes",
    high_risk=True,
    consent="application",
)
USER_READ = Permission("User.Read", "Microsoft Graph", None, high_risk=False, consent="user")
GMAIL = Permission("https://mail.google.com/", "Google Workspace", None, True, "user")


def entra_app(**changes: Any) -> AppSummary:
    app = AppSummary(
        provider="Microsoft Entra ID",
        tenant="entra-prod",
        kind="service_principal",
        display_name="Payroll Sync",
        external_id="6f1c2a9e-0000-4000-8000-000000000001",
        permissions=(USER_READ, MAIL_READWRITE),
        credentials=(
            CredentialInfo("secret", None),
            CredentialInfo("certificate", NOW + timedelta(days=40)),
        ),
        last_used_at=NOW - timedelta(days=12),
        activity_known_since=NOW - timedelta(days=180),
        owner_reason="Listed as owner in Entra (/owners)",
        risk="high",
        risk_reasons=("application permission to all mailboxes",),
        orphan_reason="owner_departed",
    )
    return replace(app, **changes)


def google_app(**changes: Any) -> AppSummary:
    app = AppSummary(
        provider="Google",
        tenant="google-prod",
        kind="third_party_app",
        display_name="Calendly",
        external_id="123456789.apps.googleusercontent.com",
        permissions=(GMAIL,),
        credentials=(),
        last_used_at=None,
        activity_known_since=datetime(2026, 9, 3, tzinfo=UTC),
        owner_reason="You granted it access on behalf of 14 users",
        risk="medium",
        risk_reasons=(),
        reversible=False,
        orphan_reason="no_owner",
    )
    return replace(app, **changes)


def digest(kind: Kind = "request", **changes: Any) -> Digest:
    base = Digest(
        kind=kind,
        campaign="Q4 2026 access review",
        recipient_email="jo@example.com",
        recipient_name="Jo Smith",
        apps=(entra_app(), google_app()),
        review_url=REVIEW_URL,
        due_at=DUE,
        iam_contact=IAM,
        now=NOW,
    )
    return replace(base, **changes)


def parts(message: EmailMessage) -> tuple[str, str]:
    """The text and HTML bodies, checking the multipart/alternative shape on the way."""
    assert message.get_content_type() == "multipart/alternative"
    text_part, html_part = message.iter_parts()
    assert isinstance(text_part, EmailMessage)
    assert isinstance(html_part, EmailMessage)
    assert text_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    assert text_part.get_content_charset() == html_part.get_content_charset() == "utf-8"
    return text_part.get_content(), html_part.get_content()


VOID_TAGS = frozenset({"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr"})


class HtmlShape(HTMLParser):
    """Records every tag and attribute, and whether each end tag closes the open one."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.mismatches: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)
        if tag not in VOID_TAGS:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.mismatches.append(f"</{tag}> while {self.open[-3:]} open")
            return
        self.open.pop()


def html_shape(html: str) -> HtmlShape:
    shape = HtmlShape()
    shape.feed(html)
    shape.close()
    return shape
