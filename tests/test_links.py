from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from recert.links import InvalidLink, ReviewLink, csrf_ok, csrf_token, sign, verify

KEY = b"k" * 32
NOW = datetime(2026, 12, 1, tzinfo=UTC)
LINK = ReviewLink(7, "ann@acme.test", NOW + timedelta(days=14))


def test_a_signed_link_verifies_until_it_expires() -> None:
    token = sign(KEY, LINK)
    assert verify(KEY, token, NOW) == LINK
    with pytest.raises(InvalidLink, match="expired"):
        verify(KEY, token, LINK.expires_at)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t.replace(".", "!!.", 1),  # junk a lenient decoder would drop
        lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1],
        lambda t: "eyJjIjo4LCJyIjoiYW5uQGFjbWUudGVzdCIsImUiOjk5OTk5OTk5OTl9" + t[t.index(".") :],
        lambda t: t.split(".")[0],
        lambda t: "",
    ],
)
def test_altered_links_are_refused(tamper: object) -> None:
    with pytest.raises(InvalidLink):
        verify(KEY, tamper(sign(KEY, LINK)), NOW)  # type: ignore[operator]


def test_another_key_is_refused() -> None:
    with pytest.raises(InvalidLink, match="not issued"):
        verify(b"x" * 32, sign(KEY, LINK), NOW)


def test_csrf_tokens_are_bound_to_the_link_and_the_cookie() -> None:
    token = sign(KEY, LINK)
    form = csrf_token(KEY, token, "nonce-1")
    assert csrf_ok(KEY, token, "nonce-1", form)
    assert not csrf_ok(KEY, token, "nonce-2", form)
    assert not csrf_ok(
        KEY, sign(KEY, ReviewLink(8, "ann@acme.test", LINK.expires_at)), "nonce-1", form
    )
    assert not csrf_ok(KEY, token, "", csrf_token(KEY, token, ""))
