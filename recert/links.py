"""Signed, expiring links: review links bound to one reviewer and one campaign, and the
IAM team's report links.

A link token is `base64url(payload).base64url(HMAC-SHA256(payload))`. It names the
campaign, the reviewer and when it expires (the campaign's due date); nothing else in it
is trusted, and every request re-reads the state it acts on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime


class InvalidLink(Exception):
    """Forged, tampered, expired, or for another campaign or reviewer."""


@dataclass(frozen=True)
class ReviewLink:
    campaign_id: int
    reviewer: str
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict: a token with any character outside the alphabet is not the one we issued."""
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _mac(secret: bytes, purpose: str, payload: bytes) -> bytes:
    return hmac.new(secret, purpose.encode() + b"\0" + payload, hashlib.sha256).digest()


REVIEW = "review"
REPORTS = "reports"  # the IAM team's report pages: `reviewer` is the IAM address


def sign(secret: bytes, link: ReviewLink, purpose: str = REVIEW) -> str:
    """A token for `purpose`; a token signed for one purpose never verifies for another."""
    payload = json.dumps(
        {"c": link.campaign_id, "r": link.reviewer, "e": int(link.expires_at.timestamp())},
        separators=(",", ":"),
    ).encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, purpose, payload))}"


def verify(secret: bytes, token: str, now: datetime, purpose: str = REVIEW) -> ReviewLink:
    try:
        encoded, signature = token.split(".")
        payload = _unb64(encoded)
        good = hmac.compare_digest(_unb64(signature), _mac(secret, purpose, payload))
    except (ValueError, TypeError, binascii.Error) as error:
        raise InvalidLink("this link is malformed") from error
    if not good:
        raise InvalidLink("this link was not issued by Recert")
    try:
        fields = json.loads(payload)
        link = ReviewLink(
            campaign_id=int(fields["c"]),
            reviewer=str(fields["r"]),
            expires_at=datetime.fromtimestamp(int(fields["e"]), UTC),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidLink("this link is malformed") from error
    if now >= link.expires_at:
        raise InvalidLink("this link has expired: the review closed")
    return link


def csrf_token(secret: bytes, link_token: str, nonce: str) -> str:
    """The form token for one page view: bound to the link and to the browser's cookie."""
    return _b64(_mac(secret, "csrf", f"{link_token}:{nonce}".encode()))


def csrf_ok(secret: bytes, link_token: str, nonce: str, presented: str) -> bool:
    return bool(nonce) and hmac.compare_digest(csrf_token(secret, link_token, nonce), presented)
