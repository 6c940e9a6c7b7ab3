"""The credential-expiry digest: which app, which credential, when, and where to rotate."""

from __future__ import annotations

from datetime import timedelta

import pytest

from emails.render import CredentialInfo, render, subject_for
from tests.emails.builders import IAM, NOW, digest, entra_app, google_app, parts

PORTAL = "https://portal.azure.com/#view/Microsoft_AAD_RegisteredApps/ApplicationMenuBlade/~/Credentials/appId/6f1c"
SOON = CredentialInfo("secret", NOW + timedelta(days=30), key_id="1b2c-secret", name="prod key")
GONE = CredentialInfo("certificate", NOW - timedelta(days=2), key_id="9f8e-cert", name="CN=api")


def expiring(orphan_reason: str | None = None, **changes: object) -> tuple[str, str]:
    app = entra_app(
        orphan_reason=orphan_reason,
        credentials=(GONE, SOON),
        rotate_url=PORTAL,
        rotate_steps="In the app registration's Certificates & secrets, add a new secret.",
    )
    values: dict[str, object] = {"apps": (app,), "review_url": None, "due_at": None}
    message = render(digest("credential_expiry", **{**values, **changes}), from_address="r@x.test")
    return parts(message)


def test_owner_digest_names_each_credential_its_expiry_and_where_to_rotate_it() -> None:
    text, html = expiring()
    for part in (text, html):
        assert "Hello Jo Smith," in part
        assert "to rotate on apps you own" in part
        assert "Payroll Sync" in part
        assert "(ID 1b2c-secret): expires Fri 1 Jan 2027 09:00 UTC (in 30 days)" in part
        assert "(ID 9f8e-cert): expired Mon 30 Nov 2026 09:00 UTC (2 days ago)" in part
        assert "add a new secret" in part
        assert "Listed as owner in Entra (/owners)" in part
        assert "Why orphaned" not in part
        assert "Can reach" not in part, "a notice, not a review: no permissions"
    assert "Recert found 2 credentials to rotate" in text
    assert '- Client secret "prod key" (ID 1b2c-secret): expires' in text
    assert '- [EXPIRED] Certificate "CN=api" (ID 9f8e-cert): expired' in text
    assert f"Rotate it here: {PORTAL}" in text
    assert "Client secret &#34;prod key&#34; (ID 1b2c-secret)" in html
    assert f'href="{PORTAL}"' in html
    assert ">Expired</span>" in html


def test_iam_digest_says_why_each_app_is_orphaned() -> None:
    text, html = expiring("owner_departed", recipient_email=IAM, recipient_name=None)
    for part in (text, html):
        assert "Hello IAM team," in part
        assert "on apps with no accountable owner" in part
        assert "The owner has left the company" in part
    assert "What we found: Listed as owner" in text


@pytest.mark.parametrize(
    ("credentials", "subject"),
    [
        ((GONE,), "Expired: 1 credential on 1 app, rotate or remove them"),
        ((GONE, SOON), "Expiring: 2 credentials on 1 app, 1 already expired"),
        ((SOON,), "Expiring: 1 credential on 1 app, first on Fri 1 Jan 2027"),
    ],
)
def test_subject_counts_what_expires_and_when(
    credentials: tuple[CredentialInfo, ...], subject: str
) -> None:
    one = digest("credential_expiry", apps=(google_app(credentials=credentials),))
    assert subject_for(one) == subject


def test_hostile_credential_names_and_link_ids_stay_inert() -> None:
    hostile = CredentialInfo("secret", NOW, key_id='"><script>x</script>', name="a\r\nBcc: e@x")
    text, html = expiring(apps=(entra_app(credentials=(hostile,)),))
    assert 'Client secret "a  Bcc: e@x" (ID "><script>x</script>)' in text
    assert "<script>" not in html
    with pytest.raises(ValueError, match="http"):
        expiring(apps=(entra_app(rotate_url="javascript:alert(1)"),))
