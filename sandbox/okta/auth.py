"""Who is calling the emulated org: SSWS tokens with an admin role, and OAuth 2.0 for Okta
(client credentials with private_key_jwt, DPoP-bound by default like API service apps made
since 2024: okta-sdk-nodejs #424, provider-facts.md), with the proof checks of RFC 9449.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.okta import jose
from sandbox.okta.errors import okta_error
from sandbox.server import Request, Response

SUPER_ADMIN = "SUPER_ADMIN"
READ_ONLY_ADMIN = "READ_ONLY_ADMIN"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DPOP_ALGS = ("RS256", "ES256")


@dataclass
class ServiceClient:
    """An API service app allowed to use OAuth 2.0 for Okta with private_key_jwt."""

    client_id: str
    key_id: str
    private_key_pem: str
    scopes: frozenset[str]
    role: str = SUPER_ADMIN  # the admin role assigned to the app (scopes AND role apply)
    dpop_bound: bool = True  # "Require DPoP header in token requests"


@dataclass
class Caller:
    role: str
    scopes: frozenset[str] | None = None  # None: SSWS, the role alone decides


@dataclass
class _AccessToken:
    scopes: frozenset[str]
    expires: float
    role: str
    jkt: str | None  # DPoP key thumbprint the token is bound to (RFC 9449 6.1)


def new_service_client(client_id: str, scopes: frozenset[str], **kwargs: Any) -> ServiceClient:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return ServiceClient(client_id, "kid-" + client_id[-6:], pem, scopes, **kwargs)


def oauth_error(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(status, {"error": error, "error_description": description}, headers or {})


@dataclass
class OktaAuth:
    clock: Callable[[], float]
    service_client: ServiceClient
    ssws_tokens: dict[str, str] = field(default_factory=dict)  # token -> admin role
    base_url: str = ""
    dpop_nonce: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    _tokens: dict[str, _AccessToken] = field(default_factory=dict)
    _seen_jti: set[str] = field(default_factory=set)

    def rotate_dpop_nonce(self) -> None:
        self.dpop_nonce = secrets.token_urlsafe(16)

    # -- token endpoint -------------------------------------------------------------------
    def token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode(errors="replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return oauth_error(400, "unsupported_grant_type", "grant_type is not supported.")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return oauth_error(401, "invalid_client", "Client authentication failed.")
        # The assertion's jti is spent even when the answer is use_dpop_nonce (the SDK's
        # own note in okta/oauth.py _retry_token_with_dpop_nonce).
        problem = self._check_assertion(form.get("client_assertion", ""))
        if problem:
            return oauth_error(401, "invalid_client", problem)
        client = self.service_client
        jkt = None
        if client.dpop_bound:
            proof = self._token_proof(request)
            if isinstance(proof, Response):
                return proof
            jkt = proof
        requested = frozenset(form.get("scope", "").split())
        if not requested:
            return oauth_error(400, "invalid_scope", "No scopes were requested.")
        refused = sorted(requested - client.scopes)
        if refused:
            # The wording real Okta uses for scopes not granted to the client, as quoted
            # in public lab notes (see provider-facts.md on the scope that is not granted).
            return oauth_error(
                400,
                "invalid_scope",
                f"The following scopes are not allowed for this request: [{', '.join(refused)}].",
            )
        access_token = "eyJ" + secrets.token_urlsafe(32)
        self._tokens[access_token] = _AccessToken(requested, self.clock() + 3600, client.role, jkt)
        body = {
            "token_type": "DPoP" if jkt else "Bearer",  # RFC 9449 5: token_type DPoP
            "expires_in": 3600,
            "access_token": access_token,
            "scope": " ".join(sorted(requested)),
        }
        return Response(200, body, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _token_proof(self, request: Request) -> str | Response:
        """A DPoP-bound client must prove its key on the token request, with our nonce."""
        header = request.headers.get("dpop")
        if not header:
            return oauth_error(400, "invalid_dpop_proof", "The DPoP proof JWT header is missing.")
        try:
            proof = self._proof(header, "POST", f"{self.base_url}/oauth2/v1/token")
        except jose.JoseError as error:
            return oauth_error(400, "invalid_dpop_proof", str(error))
        if proof.claims.get("nonce") != self.dpop_nonce:
            return oauth_error(
                400,
                "use_dpop_nonce",
                "Authorization server requires nonce in DPoP proof.",
                {"DPoP-Nonce": self.dpop_nonce},
            )
        return jose.thumbprint(proof.header["jwk"])

    def _proof(self, header: str, method: str, url: str) -> jose.Jws:
        proof = jose.verify(header)
        if proof.header.get("typ") != "dpop+jwt" or proof.header.get("alg") not in DPOP_ALGS:
            raise jose.JoseError("The DPoP proof has an invalid typ or alg header.")
        claims = proof.claims
        if claims.get("htm") != method:
            raise jose.JoseError("The DPoP proof htm claim does not match the request method.")
        if claims.get("htu") != url:
            raise jose.JoseError("The DPoP proof htu claim does not match the request URL.")
        jti = str(claims.get("jti") or "")
        if not jti or jti in self._seen_jti or not isinstance(claims.get("iat"), int):
            raise jose.JoseError("The DPoP proof jti was already used or iat is missing.")
        self._seen_jti.add(jti)
        return proof

    def _check_assertion(self, assertion: str) -> str | None:
        client = self.service_client
        key = serialization.load_pem_private_key(
            client.private_key_pem.encode(), password=None
        ).public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        try:
            jws = jose.verify(assertion, key)
        except jose.JoseError:
            return "The client_assertion signature is invalid."
        header, claims = jws.header, jws.claims
        if header.get("kid") not in (None, client.key_id):
            return "The client_assertion key id is not registered for the client."
        if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
            return "The client_assertion token has an invalid issuer or subject."
        if claims.get("aud") != f"{self.base_url}/oauth2/v1/token":
            return "The audience claim for client_assertion must be the endpoint invoked."
        # `exp` comes from the SDK's wall clock while ours may be simulated: present is enough.
        if not isinstance(claims.get("exp"), int | float):
            return "The client_assertion token is expired."
        jti = str(claims.get("jti", ""))
        if not jti or jti in self._seen_jti:
            return "The client_assertion token has already been used."
        self._seen_jti.add(jti)
        return None

    # -- API calls ------------------------------------------------------------------------
    def caller(self, request: Request) -> Caller | Response:
        """The authenticated caller, or Okta's 401."""
        header = request.headers.get("authorization", "")
        if match := re.fullmatch(r"SSWS ?(\S+)", header):
            for token, role in self.ssws_tokens.items():
                if secrets.compare_digest(match.group(1), token):
                    return Caller(role)
            return _invalid_token()
        match = re.fullmatch(r"(Bearer|DPoP) (\S+)", header)
        record = self._tokens.get(match.group(2)) if match else None
        if match is None or record is None or record.expires <= self.clock():
            return _invalid_token()
        if record.jkt is None:
            return (
                Caller(record.role, record.scopes)
                if match.group(1) == "Bearer"
                else (_invalid_token())
            )
        refused = self._api_proof(request, match.group(1), match.group(2), record)
        return refused or Caller(record.role, record.scopes)

    def _api_proof(
        self, request: Request, scheme: str, token: str, record: _AccessToken
    ) -> Response | None:
        """A DPoP-bound token is sent as `Authorization: DPoP` with a proof for this very
        request: method, URL, key thumbprint, token hash and our nonce (RFC 9449 7)."""
        header = request.headers.get("dpop")
        if scheme != "DPoP" or not header:
            return _dpop_refusal("invalid_token", "The access token is DPoP-bound.")
        try:
            proof = self._proof(header, request.method, self.base_url + request.path)
        except jose.JoseError as error:
            return _dpop_refusal("invalid_dpop_proof", str(error))
        if jose.thumbprint(proof.header["jwk"]) != record.jkt:
            return _dpop_refusal("invalid_dpop_proof", "The DPoP proof key is not the token's.")
        if proof.claims.get("ath") != jose.token_hash(token):
            return _dpop_refusal("invalid_dpop_proof", "The DPoP proof ath does not match.")
        if proof.claims.get("nonce") != self.dpop_nonce:
            response = _dpop_refusal("use_dpop_nonce", "Resource server requires nonce in DPoP.")
            response.headers["DPoP-Nonce"] = self.dpop_nonce
            return response
        return None


def _invalid_token() -> Response:
    return okta_error(401, "E0000011", "Invalid token provided")


def _dpop_refusal(error: str, description: str) -> Response:
    challenge = f'DPoP algs="{" ".join(DPOP_ALGS)}", error="{error}"'
    return oauth_error(401, error, description, {"WWW-Authenticate": challenge})
