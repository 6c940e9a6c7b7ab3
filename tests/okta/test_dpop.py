"""Issue #16 item 1: OAuth for Okta with DPoP, as API service apps have it by default.

The SDK (okta >= 3.4) builds the proofs and runs the nonce round trip; the emulator checks
htm, htu, the key thumbprint, the token hash and the nonce (RFC 9449), and refuses a
DPoP-bound token sent as a plain Bearer.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from connectors.base import PermissionDenied, PrincipalKind, PrincipalRef
from tests.okta.conftest import ALL_READ_SCOPES, Org, checkpoint, collect, merged

pytestmark = pytest.mark.anyio
MANAGE = ("okta.apps.manage", "okta.appGrants.manage")


def claims(proof: str) -> dict[str, Any]:
    body = proof.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


async def test_private_key_jwt_uses_dpop_by_default(tiny_org: Org) -> None:
    """Each proof costs the SDK a 3072-bit key load (~0.14 s): a tiny org keeps it short."""
    org = tiny_org
    app_id = next(
        a for a, app in org.emulator.org.apps.items() if a in org.emulator.truth.oauth_apps
    )
    connector = org.connector(auth="private_key_jwt", scopes=(*ALL_READ_SCOPES, *MANAGE))
    try:
        pages = [page async for page in connector.discover()]
        org.emulator.auth.rotate_dpop_nonce()  # Okta rotates nonces: the SDK must follow
        await connector.disable(PrincipalRef(app_id, PrincipalKind.OAUTH_APP))
    finally:
        await connector.aclose()
    kinds = {p.kind for p in merged(pages)["principals"]}
    assert PrincipalKind.AGENT_IDENTITY in kinds
    assert checkpoint(pages).full
    assert org.emulator.org.apps[app_id]["status"] == "INACTIVE"

    token_calls = [r for r in org.emulator.requests if r.path == "/oauth2/v1/token"]
    assert len(token_calls) == 2, "one refused for want of a nonce, one that succeeds"
    assert "nonce" not in claims(token_calls[0].headers["dpop"])
    assert claims(token_calls[1].headers["dpop"])["nonce"]
    refusals = [s for _, bucket, s in org.emulator.served if bucket == "oauth2" and s == 400]
    assert refusals == [400]

    api = [r for r in org.emulator.requests if not r.path.startswith("/oauth2/")]
    assert api
    for request in api:
        assert request.headers["authorization"].startswith("DPoP ")
        proof = claims(request.headers["dpop"])
        assert proof["htm"] == request.method
        assert proof["htu"] == org.server.url + request.path
        assert proof["ath"]
    nonce_retries = [s for _, bucket, s in org.emulator.served if bucket != "oauth2" and s == 401]
    assert nonce_retries, "the rotated nonce was refused once and the SDK retried"
    assert_proofs_are_checked(org)


def assert_proofs_are_checked(org: Org) -> None:
    """A proof is good for one request: not again, not for another URL, and a DPoP-bound
    token is no Bearer token."""
    sent = [r for r in org.emulator.requests if r.path == "/api/v1/apps"][-1]
    headers = {"Authorization": sent.headers["authorization"], "DPoP": sent.headers["dpop"]}
    token = sent.headers["authorization"].split()[1]
    with httpx.Client(verify=str(org.ca.ca_bundle)) as http:
        url = org.server.url + sent.path
        replayed = http.get(url, params=sent.query, headers=headers)
        elsewhere = http.get(org.server.url + "/api/v1/users", headers=headers)
        as_bearer = http.get(url, headers={"Authorization": f"Bearer {token}"})
    for response in (replayed, elsewhere, as_bearer):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("DPoP ")
    assert replayed.json()["error"] == "invalid_dpop_proof"
    assert "htu" in elsewhere.json()["error_description"]
    assert as_bearer.json()["error"] == "invalid_token"


async def test_dpop_off_is_refused_by_a_dpop_bound_app(tiny_org: Org) -> None:
    org = tiny_org
    connector = org.connector(auth="private_key_jwt", scopes=ALL_READ_SCOPES, dpop=False)
    with pytest.raises(PermissionDenied, match="invalid_dpop_proof"):
        await collect(connector)


async def test_dpop_off_works_for_an_app_that_does_not_require_it(tiny_org: Org) -> None:
    org = tiny_org
    org.emulator.service_client.dpop_bound = False
    pages = await collect(org.connector(auth="private_key_jwt", scopes=ALL_READ_SCOPES, dpop=False))
    assert checkpoint(pages).full
    api = [r for r in org.emulator.requests if not r.path.startswith("/oauth2/")]
    assert all(r.headers["authorization"].startswith("Bearer ") for r in api)
    assert not any("dpop" in r.headers for r in api)
