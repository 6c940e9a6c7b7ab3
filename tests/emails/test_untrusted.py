"""Attacker-controlled names, ids and evidence cannot script, spoof, inject or bloat a mail."""

from __future__ import annotations

import unicodedata
from dataclasses import replace
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emails.render import CredentialInfo, Digest, Kind, Permission, render, subject_for
from tests.emails.builders import (
    KINDS,
    NOW,
    digest,
    entra_app,
    google_app,
    html_shape,
    parts,
)

HOSTILE = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(1)>",
    "\r\nBcc: x@evil.example",
    "\nSubject: you won",
    "\u202egnp.exe",
    "\u2066\u2067\u2068\u2069\u202a\u202b\u202c\u202d",
    "\u200b\u200c\u200d\u200e\u200f\ufeff\u061c",
    "\x00\x01\x07\x1b[31m\x7f\x85\x9b",
    "\u2028\u2029",
    "\ud800",
    "{{ 7 * 7 }}{% raw %}",
    "&lt;script&gt;",
    "A" * 10_000,
)
BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
SAFE_HEADERS = {"subject", "from", "to", "cc", "reply-to", "auto-submitted"}
SAFE_HEADERS |= {"content-type", "mime-version"}

hostile_text = st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40)), max_size=4).map(
    "".join
)


@st.composite
def hostile_digests(draw: st.DrawFn) -> Digest:
    scope = Permission(draw(hostile_text), draw(hostile_text), draw(hostile_text), True, "user")
    secret = CredentialInfo("secret", NOW, key_id=draw(hostile_text), name=draw(hostile_text))
    owned = entra_app(
        display_name=draw(hostile_text),
        external_id=draw(hostile_text),
        owner_reason=draw(hostile_text),
        permissions=(scope,),
        credentials=(secret,),
        risk_reasons=(draw(hostile_text),),
    )
    granted = google_app(display_name=draw(hostile_text), orphan_reason=draw(hostile_text))
    return digest(
        draw(st.sampled_from(KINDS)),
        recipient_name=draw(st.none() | hostile_text),
        campaign=draw(hostile_text),
        apps=(owned, granted),
    )


def render_for(hostile: Digest) -> EmailMessage:
    return render(hostile, from_address="recert@example.com")


def is_invisible(char: str) -> bool:
    return unicodedata.category(char) in {"Cc", "Cf", "Cs", "Zl", "Zp"}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_digests())
def test_html_part_never_carries_markup_from_input(hostile: Digest) -> None:
    _, html = parts(render_for(hostile))
    lowered = html.lower()
    assert "<script" not in lowered
    assert "<img" not in lowered
    assert "<svg" not in lowered
    shape = html_shape(html)
    assert not shape.mismatches
    assert shape.open == []
    assert shape.tags.isdisjoint({"script", "img", "svg", "iframe", "object"})
    assert not any(name.startswith("on") for name in shape.attributes)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_digests())
def test_subject_is_one_short_clean_line(hostile: Digest) -> None:
    subject = subject_for(hostile)
    assert len(subject) <= 120
    assert subject.isascii()
    assert subject.isprintable()
    assert "\r" not in subject
    assert "\n" not in subject
    assert not any(is_invisible(char) for char in subject)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_digests())
def test_message_round_trips_without_injected_headers(hostile: Digest) -> None:
    message = render_for(hostile)
    reparsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert isinstance(reparsed, EmailMessage)
    assert {name.lower() for name in reparsed} <= SAFE_HEADERS
    assert reparsed.get_all("Bcc") is None
    assert reparsed["Subject"] == subject_for(hostile)
    assert reparsed["To"] == "jo@example.com"
    text, html = parts(reparsed)
    assert (text, html) == parts(message)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_digests())
def test_text_part_shows_input_without_invisible_characters(hostile: Digest) -> None:
    text, _ = parts(render_for(hostile))
    assert not BIDI & set(text)
    assert not any(is_invisible(char) for char in text.replace("\n", ""))
    assert len(text) < 20_000


def test_hostile_strings_are_visible_but_inert() -> None:
    app = entra_app(
        display_name="Security Team\r\nBcc: x@evil.example \u202eexe.pdf",
        owner_reason='<script>alert(1)</script> "><img src=x onerror=alert(1)>',
    )
    message = render(digest("request", apps=(app,)), from_address="r@example.com")
    text, html = parts(message)
    assert "Security Team  Bcc: x@evil.example [U+202E]exe.pdf" in text
    assert "Why you: <script>alert(1)</script>" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert message.get_all("Bcc") is None


def test_ten_kilobyte_name_is_cut_with_an_ellipsis() -> None:
    name = "N" * 10_000
    text, html = parts(render_for(digest("request", apps=(entra_app(display_name=name),))))
    shown = "N" * 199 + "…"
    assert f"1. {shown} [HIGH-RISK APP]" in text
    assert "N" * 200 not in text + html
    assert len(html) < 40_000


@pytest.mark.parametrize("kind", KINDS)
def test_recipient_name_stays_out_of_headers(kind: Kind) -> None:
    message = render_for(digest(kind, recipient_name="Eve\r\nBcc: x@evil.example"))
    headers = "".join(f"{name}: {value}\n" for name, value in message.items())
    assert "Eve" not in headers
    text, _ = parts(message)
    assert "Hello Eve  Bcc: x@evil.example," in text


def test_header_injection_through_addresses_is_refused() -> None:
    hostile = replace(digest(), recipient_email="jo@example.com\r\nBcc: x@evil")
    with pytest.raises(ValueError, match="linefeed"):
        render(hostile, from_address="r@example.com")
