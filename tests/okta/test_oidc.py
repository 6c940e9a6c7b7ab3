"""The emulated Okta org as an OpenID Connect provider (its `default` authorization
server): the code flow with PKCE, client authentication, and Okta's errors, held to the
published OAuth spec's schemas and examples."""

from __future__ import annotations

import base64
import functools
import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from joserfc import jwt
from joserfc.jwk import KeySet
from openapi_schema_validator import OAS30Validator

from sandbox import okta
from sandbox.okta.oidc import OidcClient, OidcProvider, install
from sandbox.server import EmulatorServer, serving
from sandbox.tls import SandboxCA
from tests.conftest import spec_path

REDIRECT = "https://recert.example/console/auth/callback"
SIGNED_OUT = "https://recert.example/console/signed-out"


@functools.cache
def oauth_components() -> dict[str, Any]:
    with spec_path("okta", "okta-oauth-2026.06.3-minimal.yaml").open() as handle:
        return yaml.load(handle, Loader=yaml.CSafeLoader)["components"]  # type: ignore[no-any-return]


def assert_valid(instance: Any, schema_name: str) -> None:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": oauth_components()}
    OAS30Validator(schema).validate(instance)


@dataclass
class Idp:
    provider: OidcProvider
    server: EmulatorServer
    client: OidcClient
    http: httpx.Client  # a browser: keeps the Okta session cookie
    ca_bundle: str

    @property
    def issuer(self) -> str:
        return f"{self.server.url}/oauth2/default"

    def authorize(self, **params: str) -> httpx.Response:
        query = {
            "client_id": self.client.client_id,
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": "openid email profile groups",
            "state": "st-1",
            "nonce": "n-1",
            **params,
        }
        return self.http.get(f"{self.issuer}/v1/authorize", params=query)

    def sign_in(
        self, page: httpx.Response, login: str, password: str | None = None
    ) -> httpx.Response:
        """Fill in the hosted sign-in page."""
        assert page.status_code == 200
        assert "Sign In" in page.text
        from_uri = page.text.split('name="fromURI" value="')[1].split('"')[0]
        return self.http.post(
            f"{self.server.url}/login/emulated",
            data={
                "fromURI": from_uri.replace("&amp;", "&"),
                "username": login,
                "password": password or self.provider.password,
            },
        )

    def code(self, login: str, verifier: str) -> str:
        pkce = {"code_challenge": _s256(verifier), "code_challenge_method": "S256"}
        answer = self.authorize(**pkce)
        if answer.status_code == 200:  # no Okta session yet: the sign-in page
            signed_in = self.sign_in(answer, login)
            assert signed_in.status_code == 302
            answer = self.http.get(signed_in.headers["location"])
        assert answer.status_code == 302
        redirect = urlsplit(answer.headers["location"])
        assert f"{redirect.scheme}://{redirect.netloc}{redirect.path}" == REDIRECT
        query = parse_qs(redirect.query)
        assert query["state"] == ["st-1"]
        return query["code"][0]

    def token(self, code: str, verifier: str, **overrides: Any) -> httpx.Response:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        }
        auth = overrides.pop("auth", (self.client.client_id, self.client.client_secret))
        with httpx.Client(verify=self.ca_bundle) as backend:  # Recert's server, no cookies
            return backend.post(f"{self.issuer}/v1/token", data={**form, **overrides}, auth=auth)


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def idp(sandbox_ca: SandboxCA) -> Iterator[Idp]:
    org = okta.build(seed=5, size=6)
    provider = install(org)
    provider.groups[provider.active_logins()[0]] = ("Recert Admins",)
    client = provider.register_client(REDIRECT, SIGNED_OUT)
    with (
        serving(org, sandbox_ca) as server,
        httpx.Client(verify=str(sandbox_ca.ca_bundle), base_url=server.url) as http,
    ):
        yield Idp(provider, server, client, http, str(sandbox_ca.ca_bundle))


@pytest.fixture
def fresh(idp: Idp) -> Idp:
    """The provider with a browser of its own (no Okta session cookie yet)."""
    idp.http.cookies.clear()
    return idp


def test_discovery_and_keys_follow_the_spec(idp: Idp) -> None:
    metadata = idp.http.get("/oauth2/default/.well-known/openid-configuration").json()
    assert_valid(metadata, "OidcMetadata")
    assert metadata["issuer"] == idp.issuer
    assert metadata["end_session_endpoint"] == f"{idp.issuer}/v1/logout"
    keys = idp.http.get("/oauth2/default/v1/keys")
    assert_valid(keys.json(), "OAuthKeys")
    assert "d" not in keys.json()["keys"][0], "only the public half is published"
    missing = idp.http.get("/oauth2/aus0nope/.well-known/openid-configuration")
    assert missing.status_code == 404
    assert_valid(missing.json(), "Error")
    assert missing.json()["errorCode"] == "E0000007"
    unknown = idp.http.get(
        "/oauth2/default/.well-known/openid-configuration", params={"client_id": "0oaNope"}
    )
    assert (unknown.status_code, unknown.json()["errorCode"]) == (400, "invalid_client")


def test_code_flow_with_pkce_issues_verifiable_tokens(fresh: Idp) -> None:
    login = fresh.provider.active_logins()[0]
    verifier = secrets.token_urlsafe(48)
    code = fresh.code(login, verifier)
    response = fresh.token(code, verifier)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert_valid(tokens, "TokenResponseCustomAs")
    keys = KeySet.import_key_set(fresh.http.get("/oauth2/default/v1/keys").json())
    claims = jwt.decode(tokens["id_token"], keys).claims
    assert claims["iss"] == fresh.issuer
    assert claims["aud"] == fresh.client.client_id
    assert (claims["email"], claims["nonce"]) == (login, "n-1")
    assert claims["groups"] == ["Recert Admins"]
    half = hashlib.sha256(tokens["access_token"].encode()).digest()[:16]
    assert claims["at_hash"] == base64.urlsafe_b64encode(half).rstrip(b"=").decode()

    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    userinfo = fresh.http.get("/oauth2/default/v1/userinfo", headers=bearer)
    assert_valid(userinfo.json(), "UserInfo")
    assert userinfo.json()["email"] == login
    refused = fresh.http.get("/oauth2/default/v1/userinfo", headers={"Authorization": "Bearer x"})
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]

    again = fresh.token(code, verifier)  # codes are single use
    assert again.status_code == 400
    assert again.json() == {
        "error": "invalid_grant",
        "error_description": "The authorization code is invalid or has expired.",
    }


def test_token_endpoint_refuses_like_okta(fresh: Idp) -> None:
    login = fresh.provider.active_logins()[0]
    verifier = secrets.token_urlsafe(48)
    code = fresh.code(login, verifier)
    no_client = fresh.token(code, verifier, auth=None)
    assert (no_client.status_code, no_client.json()["error_description"]) == (
        401,
        "No client credentials found",
    )
    both = fresh.token(code, verifier, client_secret=fresh.client.client_secret)
    assert (both.status_code, both.json()["error"]) == (400, "invalid_request")
    wrong = fresh.token(code, verifier, auth=(fresh.client.client_id, "not-the-secret"))
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    for body in (no_client.json(), both.json(), wrong.json()):
        assert_valid(body, "OAuthError")
    other_verifier = fresh.token(code, secrets.token_urlsafe(48))
    assert other_verifier.json() == {
        "error": "invalid_grant",
        "error_description": "PKCE verification failed.",
    }
    grant = fresh.token(
        fresh.code(login, verifier), verifier, grant_type="client_credentials"
    )  # the flow's only grant type
    assert grant.json()["error"] == "unsupported_grant_type"


def test_authorize_refuses_bad_requests(fresh: Idp) -> None:
    base = {"response_type": "code", "scope": "openid", "state": "s"}
    stranger = fresh.http.get(
        "/oauth2/default/v1/authorize",
        params={**base, "client_id": "0oaNope", "redirect_uri": REDIRECT},
    )
    assert stranger.status_code == 400, "never redirects for an unknown client"
    elsewhere = fresh.http.get(
        "/oauth2/default/v1/authorize",
        params={**base, "client_id": fresh.client.client_id, "redirect_uri": "https://evil"},
    )
    assert elsewhere.status_code == 400
    assert "location" not in elsewhere.headers
    no_pkce = fresh.http.get(
        "/oauth2/default/v1/authorize",
        params={**base, "client_id": fresh.client.client_id, "redirect_uri": REDIRECT},
    )
    assert no_pkce.status_code == 302
    query = parse_qs(urlsplit(no_pkce.headers["location"]).query)
    assert (query["error"], query["state"]) == (["invalid_request"], ["s"])


def test_only_active_users_sign_in_and_logout_ends_the_session(fresh: Idp) -> None:
    departed = next(
        u["profile"]["login"]
        for u in fresh.provider.emulator.org.users.values()
        if u["status"] == "DEPROVISIONED"
    )
    pkce = {"code_challenge": _s256("v" * 43), "code_challenge_method": "S256"}
    refused = fresh.sign_in(fresh.authorize(**pkce), departed)
    assert "Unable to sign in" in refused.text
    wrong = fresh.sign_in(fresh.authorize(**pkce), fresh.provider.active_logins()[0], "guess")
    assert "Unable to sign in" in wrong.text

    verifier = secrets.token_urlsafe(48)
    login = fresh.provider.active_logins()[1]
    tokens = fresh.token(fresh.code(login, verifier), verifier).json()
    sid = fresh.http.cookies["sid"]
    forged = fresh.http.get("/oauth2/default/v1/logout", params={"id_token_hint": "e30.e30.sig"})
    assert forged.status_code == 400
    out = fresh.http.get(
        "/oauth2/default/v1/logout",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": SIGNED_OUT,
            "state": "bye",
        },
    )
    assert (out.status_code, out.headers["location"]) == (302, f"{SIGNED_OUT}?state=bye")
    assert "sid=;" in out.headers["set-cookie"]
    fresh.http.cookies.clear()
    fresh.http.cookies.set("sid", sid)  # the old session cookie, replayed
    again = fresh.http.get(
        "/oauth2/default/v1/authorize",
        params={
            "client_id": fresh.client.client_id,
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": "openid",
            "state": "s",
            "code_challenge": _s256(verifier),
            "code_challenge_method": "S256",
        },
    )
    assert again.status_code == 200
    assert "Sign In" in again.text, "the Okta session ended: sign in again"
