"""Render a digest as one multipart/alternative email: plain text first, then HTML.

Names, ids, scopes and evidence come from identity providers and are attacker-controlled.
Every such string is cleaned once, while building the view the templates see: control,
bidi and zero-width characters are made visible and long strings are cut short. HTML
templates autoescape on top of that. Subjects hold counts and dates, nothing from input.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from functools import cache
from typing import Literal, assert_never
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from emails import wording
from emails.text import visible

Kind = Literal[
    "request",
    "reminder",
    "final_warning",
    "disabled_notice",
    "orphan_escalation",
    "orphan_report",
    "credential_expiry",
    "enforcement_alert",
]


@dataclass(frozen=True)
class Permission:
    name: str  # "Mail.ReadWrite", "okta.apps.manage", "https://mail.google.com/"
    resource: str  # "Microsoft Graph", "Okta API", "Google Workspace"
    description: str | None  # plain words, when known
    high_risk: bool
    consent: str  # "admin" | "user" | "application" | "domain_wide"


@dataclass(frozen=True)
class CredentialInfo:
    type: str  # "secret" | "certificate" | "key" | "api_token" | "jwks"
    expires_at: datetime | None  # None: never expires
    key_id: str | None = None  # untrusted: the provider's id of it (never its value)
    name: str | None = None  # untrusted: its description or hint


@dataclass(frozen=True)
class AppSummary:
    provider: str  # "Okta" | "Microsoft Entra ID" | "Google"
    tenant: str
    kind: str  # "oauth_app" | "service_principal" | "service_account" | ...
    display_name: str  # untrusted
    external_id: str  # untrusted
    permissions: tuple[Permission, ...]
    credentials: tuple[CredentialInfo, ...]
    last_used_at: datetime | None
    # Both None: use unknown. Only this one set: not used since then.
    activity_known_since: datetime | None
    owner_reason: str  # evidence for ownership, with untrusted parts
    risk: str  # "low" | "medium" | "high"
    risk_reasons: tuple[str, ...]
    reversible: bool = True  # False for Google third-party apps: revoking is final
    last_use_unknown: str | None = None  # why the provider cannot tell last use (untrusted)
    # no_owner | owner_departed | owner_unresolvable | owner_is_app | not_mine |
    # owner_unreachable | user_consented
    orphan_reason: str | None = None
    rotate_url: str | None = None  # the provider's admin page for the app, where one exists
    rotate_steps: str | None = None  # how to rotate its credentials there, in plain words
    # People whose own consent a revoke deleted: they must consent again to use it.
    must_consent_again: tuple[str, ...] = ()
    note: str | None = None  # what happened to this app, e.g. why Recert could not change it


@dataclass(frozen=True)
class Digest:
    kind: Kind
    campaign: str
    recipient_email: str
    recipient_name: str | None  # untrusted: comes from the IdP
    apps: tuple[AppSummary, ...]
    review_url: str | None  # signed link to the owner's page; None for notices
    due_at: datetime | None
    iam_contact: str  # where questions and requests to re-enable go
    now: datetime  # the moment "in N days" and "N days ago" count from
    note: str | None = None  # for IAM alerts: what happened and what to do


_SUBJECT_LIMIT = 120
_NAME_LIMIT = 200
_TEXT_LIMIT = 500
_PERMISSIONS_SHOWN = 30
_PEOPLE_SHOWN = 50
_CREDENTIALS_SHOWN = 10

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --- public API ------------------------------------------------------------------------


def render(digest: Digest, *, from_address: str, cc: tuple[str, ...] = ()) -> EmailMessage:
    """The digest as a ready-to-send message; replies go to the IAM team."""
    view = _digest_view(digest, manager_copied=bool(cc))
    message = EmailMessage()
    message["Subject"] = subject_for(digest)
    message["From"] = from_address
    message["To"] = digest.recipient_email
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Reply-To"] = digest.iam_contact
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office loops
    message.set_content(_render_text(digest.kind, view), charset="utf-8")
    message.add_alternative(_render_html(digest.kind, view), subtype="html", charset="utf-8")
    return message


def subject_for(digest: Digest) -> str:
    """An ASCII line of counts and dates only.

    No input text at all: nothing to inject, and nothing for the header folder to encode
    (it mangles long RFC 2047 subjects, e.g. drops spaces between encoded words). Up to
    9999 apps the line stays within 69 characters, so "Subject: " never needs folding.
    """
    count = _count(len(digest.apps))
    due = f" by {_day(digest.due_at)}" if digest.due_at else ""
    match digest.kind:
        case "request":
            headline = f"Action needed: review {count}{due}"
        case "reminder":
            headline = f"Reminder: review {count}{due}"
        case "final_warning":
            after = f" after {_day(digest.due_at)}" if digest.due_at else ""
            headline = f"Final warning: {count} will be disabled{after}"
        case "disabled_notice":
            headline = f"Disabled: {count}, how to get them back"
        case "orphan_escalation":
            headline = f"Orphaned: {count} with no accountable owner"
        case "orphan_report":
            headline = f"Weekly orphan report, {_day(digest.now)}: {count} without an owner"
        case "credential_expiry":
            headline = _expiry_headline(digest, count)
        case "enforcement_alert":
            headline = f"Enforcement needs the IAM team: {count}"
        case _:
            assert_never(digest.kind)
    return _truncate(headline, _SUBJECT_LIMIT)


def _expiry_headline(digest: Digest, apps: str) -> str:
    """'Expiring: 3 credentials on 2 apps, first on Mon 14 Dec 2026' (or how many expired)."""
    ends = [c.expires_at for app in digest.apps for c in app.credentials]
    listed = f"{_credentials(len(ends))} on {apps}"
    ahead = sorted(_utc(end) for end in ends if end is not None and _utc(end) > _utc(digest.now))
    expired = sum(1 for end in ends if end is not None and _utc(end) <= _utc(digest.now))
    if not ahead:
        return f"Expired: {listed}, rotate or remove them"
    if expired:
        return f"Expiring: {listed}, {expired} already expired"
    return f"Expiring: {listed}, first on {_day(ahead[0])}"


# --- view: everything the templates see, already cleaned and worded --------------------


@dataclass(frozen=True)
class _PermissionView:
    summary: str
    detail: str
    high_risk: bool


@dataclass(frozen=True)
class _CredentialView:
    summary: str
    flagged: bool
    expired: bool = False


@dataclass(frozen=True)
class _AppView:
    name: str
    kind: str
    provider: str
    tenant: str
    external_id: str
    permissions: tuple[_PermissionView, ...]
    more_permissions: int
    credentials: tuple[_CredentialView, ...]
    more_credentials: int
    last_used: str
    owner_reason: str
    high_risk: bool
    risk: str
    risk_reasons: tuple[str, ...]
    reversible: bool
    orphan_reason: str
    orphaned: bool
    rotate_url: str | None
    rotate_steps: str | None
    must_consent_again: tuple[str, ...]
    more_people: int
    note: str | None


@dataclass(frozen=True)
class _DigestView:
    campaign: str
    greeting: str
    apps: tuple[_AppView, ...]
    app_count: str
    review_url: str | None
    due: str | None
    iam_contact: str
    today: str
    manager_copied: bool
    any_irreversible: bool
    orphan_reasons: tuple[tuple[str, int], ...]
    credential_count: str
    to_iam: bool
    note: str | None


def _digest_view(digest: Digest, *, manager_copied: bool) -> _DigestView:
    apps = tuple(_app_view(app, digest.now) for app in digest.apps)
    return _DigestView(
        campaign=_clean(digest.campaign, _NAME_LIMIT),
        greeting=_greeting(digest),
        apps=apps,
        app_count=_count(len(apps)),
        review_url=_checked_url(digest.review_url),
        due=_when(digest.due_at) if digest.due_at else None,
        iam_contact=_clean(digest.iam_contact, _NAME_LIMIT),
        today=_day(digest.now),
        manager_copied=manager_copied,
        any_irreversible=any(not app.reversible for app in apps),
        orphan_reasons=tuple(Counter(app.orphan_reason for app in apps).most_common()),
        credential_count=_credentials(sum(len(app.credentials) for app in digest.apps)),
        to_iam=digest.recipient_email.lower() == digest.iam_contact.lower(),
        note=_clean(digest.note, _TEXT_LIMIT * 2) if digest.note else None,
    )


def _app_view(app: AppSummary, now: datetime) -> _AppView:
    # Each permission once (34 users granting one scope is one line), high-risk ones first
    # so a cut-off list still shows what matters.
    unique = dict.fromkeys(app.permissions)
    permissions = sorted(unique, key=lambda permission: not permission.high_risk)
    return _AppView(
        name=_clean(app.display_name, _NAME_LIMIT) or "(no name)",
        kind=_worded(wording.KINDS, app.kind),
        provider=_clean(app.provider, _NAME_LIMIT),
        tenant=_clean(app.tenant, _NAME_LIMIT),
        external_id=_clean(app.external_id, _NAME_LIMIT),
        permissions=tuple(_permission_view(p) for p in permissions[:_PERMISSIONS_SHOWN]),
        more_permissions=max(0, len(permissions) - _PERMISSIONS_SHOWN),
        credentials=tuple(_credential_view(c, now) for c in app.credentials[:_CREDENTIALS_SHOWN]),
        more_credentials=max(0, len(app.credentials) - _CREDENTIALS_SHOWN),
        last_used=last_use(app.last_used_at, app.activity_known_since, app.last_use_unknown, now),
        owner_reason=_clean(app.owner_reason, _TEXT_LIMIT),
        high_risk=app.risk == "high",
        risk=_clean(app.risk, _NAME_LIMIT),
        risk_reasons=tuple(_clean(reason, _TEXT_LIMIT) for reason in app.risk_reasons),
        reversible=app.reversible,
        orphan_reason=(
            _worded(wording.ORPHAN_REASONS, app.orphan_reason)
            if app.orphan_reason
            else "Reason not recorded"
        ),
        orphaned=app.orphan_reason is not None,
        rotate_url=_checked_url(app.rotate_url),
        rotate_steps=_clean(app.rotate_steps, _TEXT_LIMIT) if app.rotate_steps else None,
        must_consent_again=tuple(
            _clean(person, _NAME_LIMIT) for person in app.must_consent_again[:_PEOPLE_SHOWN]
        ),
        more_people=max(0, len(app.must_consent_again) - _PEOPLE_SHOWN),
        note=_clean(app.note, _TEXT_LIMIT) if app.note else None,
    )


def _permission_view(permission: Permission) -> _PermissionView:
    name = _clean(permission.name, _NAME_LIMIT)
    resource = _clean(permission.resource, _NAME_LIMIT)
    consent = _worded(wording.CONSENTS, permission.consent)
    description = described(permission.name, permission.description)
    if description:
        summary = description
        detail = f"{name} on {resource}, {consent}"
    else:
        summary = f"{name} on {resource}"
        detail = consent
    return _PermissionView(summary=summary, detail=detail, high_risk=permission.high_risk)


def _credential_view(credential: CredentialInfo, now: datetime) -> _CredentialView:
    label = _worded(wording.CREDENTIALS, credential.type)
    if credential.name:
        label += f' "{_clean(credential.name, _NAME_LIMIT)}"'
    if credential.key_id:
        label += f" (ID {_clean(credential.key_id, _NAME_LIMIT)})"
    expires_at = credential.expires_at
    if expires_at is None:
        return _CredentialView(f"{label}: never expires", flagged=True)
    if _utc(expires_at) <= _utc(now):
        ago = _days_ago(expires_at, now)
        summary = f"{label}: expired {_when(expires_at)} ({ago})"
        return _CredentialView(summary, flagged=True, expired=True)
    return _CredentialView(
        f"{label}: expires {_when(expires_at)} ({_days_until(now, expires_at)})", flagged=False
    )


def described(name: str, description: str | None) -> str | None:
    """A permission in plain words: the provider's description, else the shipped words for
    a known Okta or Google scope; cleaned, as the provider's text is untrusted."""
    words = description or wording.permission_description(name)
    return _clean(words, _TEXT_LIMIT) if words else None


def last_use(
    last_used_at: datetime | None,
    known_since: datetime | None,
    unknown_why: str | None,
    now: datetime,
) -> str:
    """When an app was last used, in the words the emails and the review page share;
    `unknown_why` is the provider's untrusted reason it cannot tell, shown cleaned."""
    if unknown_why:
        return f"Unknown: {_clean(unknown_why, _TEXT_LIMIT)}"
    if last_used_at is not None:
        return f"{_when(last_used_at)} ({_days_ago(last_used_at, now)})"
    if known_since is not None:
        return f"Not used since {_day(known_since)}, as far back as records go"
    return "Unknown: the provider keeps no record of use"


def _greeting(digest: Digest) -> str:
    if digest.recipient_name:
        return f"Hello {_clean(digest.recipient_name, 100)},"
    to_iam = digest.recipient_email.lower() == digest.iam_contact.lower()
    if digest.kind in ("orphan_escalation", "orphan_report", "enforcement_alert") or (
        to_iam and digest.kind == "credential_expiry"
    ):
        return "Hello IAM team,"
    return "Hello,"


def _checked_url(url: str | None) -> str | None:
    """Links must be web links: a `javascript:` URL would be a script in a mail client."""
    if url is not None and urlsplit(url).scheme not in ("https", "http"):
        raise ValueError(f"links must be http(s), got {url[:40]!r}")
    return url


# --- words and dates -------------------------------------------------------------------


def _clean(value: str, limit: int) -> str:
    """Untrusted text made safe to show: no invisible characters, at most `limit` long."""
    # Cleaning never shortens, so looking past `limit + 1` characters is wasted work.
    return _truncate(visible(value[: limit + 1]), limit)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _worded(words: dict[str, str], key: str) -> str:
    return words.get(key) or _clean(key, _NAME_LIMIT)


def _count(apps: int) -> str:
    return f"{apps} app" if apps == 1 else f"{apps} apps"


def _credentials(count: int) -> str:
    return f"{count} credential" if count == 1 else f"{count} credentials"


def _utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC, the only zone Recert stores."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _day(moment: datetime) -> str:
    """'Mon 14 Dec 2026': spelled out so no reader swaps day and month; locale-free."""
    utc = _utc(moment)
    return f"{_WEEKDAYS[utc.weekday()]} {utc.day} {_MONTHS[utc.month - 1]} {utc.year}"


def _when(moment: datetime) -> str:
    return f"{_day(moment)} {_utc(moment):%H:%M} UTC"


def _days_ago(moment: datetime, now: datetime) -> str:
    days = (_utc(now) - _utc(moment)).days
    return "today" if days <= 0 else ("1 day ago" if days == 1 else f"{days} days ago")


def _days_until(now: datetime, moment: datetime) -> str:
    days = (_utc(moment) - _utc(now)).days
    return "today" if days <= 0 else ("in 1 day" if days == 1 else f"in {days} days")


# --- templates -------------------------------------------------------------------------


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("emails", "templates"),
        autoescape=select_autoescape(
            enabled_extensions=("html.j2",), disabled_extensions=("txt.j2",), default=True
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _render_text(kind: Kind, view: _DigestView) -> str:
    text = _environment().get_template(f"{kind}.txt.j2").render(d=view)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _render_html(kind: Kind, view: _DigestView) -> str:
    return _environment().get_template(f"{kind}.html.j2").render(d=view)
