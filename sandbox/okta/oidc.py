"""OpenID Connect sign-in on the emulated Okta org: its `default` custom authorization
server, as an Identity Engine org serves it.

Paths and shapes follow ../shared/specs/okta/okta-oauth-2026.06.3-minimal.yaml (tag
CustomAS): `/oauth2/{authorizationServerId}/.well-known/openid-configuration`,
`/v1/authorize` (GET; without a session it renders the hosted sign-in page, as an
Identity Engine org does), `/v1/token` (authorization_code with PKCE, client_secret_basic
or client_secret_post), `/v1/keys`, `/v1/userinfo` and `/v1/logout`. Errors use the spec's
examples: `OAuthError` bodies at the token endpoint, the `Error` schema (errorCode E0000007)
for an unknown authorization server, `WWW-Authenticate` at userinfo, and redirects to the
client carrying `error`/`error_description` once its redirect URI is trusted.

Tokens are RS256 JWTs signed by a key made for the run; only its public half is published
at `/v1/keys`. The seeded org's ACTIVE users sign in with the provider's one password;
DEPROVISIONED, SUSPENDED and LOCKED_OUT users cannot. Installed onto an `OktaEmulator`
with `install()`, which only adds routes: the org authorization server (`/oauth2/v1/*`)
and the management API are untouched.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from sandbox.okta.app import OktaEmulator, okta_error
from sandbox.server import Request, Response

AUTH_SERVER = "default"
CODE_SECONDS = 60  # Okta authorization codes are good for 60 seconds
TOKEN_SECONDS = 3600
LOGIN_PATH = "/login/emulated"  # the hosted sign-in page's form target (sandbox only)
SESSION_COOKIE = "sid"  # Okta's browser session cookie


@dataclass(frozen=True)
class OidcClient:
    """An OIDC web app integration: confidential, authorization code with PKCE."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Grant:
    client_id: str
    redirect_uri: str
    user_id: str
    scopes: tuple[str, ...]
    nonce: str | None
    challenge: str
    expires: float
    auth_time: int


@dataclass(frozen=True)
class _AccessToken:
    user_id: str
    scopes: tuple[str, ...]
    expires: float


@dataclass
class OidcProvider:
    emulator: OktaEmulator
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    clock: Callable[[], float] = time.time
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # login -> group names
    clients: dict[str, OidcClient] = field(default_factory=dict)
    key: RSAKey = field(
        default_factory=lambda: RSAKey.generate_key(
            2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True
        )
    )
    idp: str = field(default_factory=lambda: "00o" + secrets.token_hex(8))  # the org's IdP id
    _codes: dict[str, _Grant] = field(default_factory=dict)
    _tokens: dict[str, _AccessToken] = field(default_factory=dict)
    _sessions: dict[str, tuple[str, int]] = field(default_factory=dict)  # sid -> user, auth

    # --- setup ---------------------------------------------------------------------------

    def install(self) -> OidcProvider:
        prefix = "/oauth2/{server_id}"
        for method, path, handler in (
            ("GET", prefix + "/.well-known/openid-configuration", self.metadata),
            ("GET", prefix + "/v1/authorize", self.authorize),
            ("POST", prefix + "/v1/token", self.token),
            ("GET", prefix + "/v1/keys", self.keys),
            ("GET", prefix + "/v1/userinfo", self.userinfo),
            ("GET", prefix + "/v1/logout", self.logout),
            ("POST", LOGIN_PATH, self.sign_in),
        ):
            self.emulator.route(method, path)(handler)
        return self

    def register_client(
        self, redirect_uri: str, post_logout_redirect_uri: str | None = None
    ) -> OidcClient:
        client = OidcClient(
            client_id="0oa" + secrets.token_hex(8) + "oidc",
            client_secret=secrets.token_urlsafe(30),
            redirect_uris=(redirect_uri,),
            post_logout_redirect_uris=(post_logout_redirect_uri,)
            if post_logout_redirect_uri
            else (),
        )
        self.clients[client.client_id] = client
        return client

    def active_logins(self) -> list[str]:
        users = self.emulator.org.users.values()
        return sorted(u["profile"]["login"] for u in users if u["status"] == "ACTIVE")

    def issuer(self, request: Request) -> str:
        return f"{request.base_url}/oauth2/{AUTH_SERVER}"

    # --- discovery and keys --------------------------------------------------------------

    def _unknown_server(self, request: Request) -> Response | None:
        server_id = request.params["server_id"]
        if server_id == AUTH_SERVER:
            return None
        return okta_error(
            404, "E0000007", f"Not found: Resource not found: {server_id} (AuthorizationServer)"
        )

    def metadata(self, request: Request) -> Response:
        if (problem := self._unknown_server(request)) is not None:
            return problem
        client_id = request.arg("client_id")
        if client_id is not None and client_id not in self.clients:
            body = okta_error(400, "invalid_client", "Invalid value for `client_id` parameter")
            return body
        issuer = self.issuer(request)
        return Response(
            200,
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/v1/authorize",
                "token_endpoint": f"{issuer}/v1/token",
                "userinfo_endpoint": f"{issuer}/v1/userinfo",
                "registration_endpoint": f"{request.base_url}/oauth2/v1/clients",
                "jwks_uri": f"{issuer}/v1/keys",
                "end_session_endpoint": f"{issuer}/v1/logout",
                "introspection_endpoint": f"{issuer}/v1/introspect",
                "revocation_endpoint": f"{issuer}/v1/revoke",
                "response_types_supported": ["code"],
                "response_modes_supported": ["query", "fragment", "form_post"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "profile", "email", "groups", "offline_access"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "claims_supported": [
                    "iss",
                    "ver",
                    "sub",
                    "aud",
                    "iat",
                    "exp",
                    "jti",
                    "auth_time",
                    "amr",
                    "idp",
                    "nonce",
                    "name",
                    "preferred_username",
                    "given_name",
                    "family_name",
                    "email",
                    "email_verified",
                    "groups",
                    "at_hash",
                ],
                "code_challenge_methods_supported": ["S256"],
                "request_parameter_supported": True,
            },
        )

    def keys(self, request: Request) -> Response:
        if (problem := self._unknown_server(request)) is not None:
            return problem
        return Response(
            200,
            {"keys": [self.key.as_dict(private=False)]},
            {"Cache-Control": "max-age=3832304, must-revalidate"},
        )

    # --- authorize and the hosted sign-in page --------------------------------------------

    def authorize(self, request: Request) -> Response:
        if (problem := self._unknown_server(request)) is not None:
            return problem
        client = self.clients.get(request.arg("client_id") or "")
        if client is None:
            return _error_page(400, "invalid_client", "Invalid value for 'client_id' parameter.")
        redirect_uri = request.arg("redirect_uri") or ""
        if redirect_uri not in client.redirect_uris:
            return _error_page(
                400,
                "invalid_request",
                "The 'redirect_uri' parameter must be a Login redirect URI in the client "
                "app settings.",
            )
        state = request.arg("state")
        refusal = self._authorize_problem(request, state)
        if refusal is not None:
            return _redirect(
                redirect_uri, {"error": refusal[0], "error_description": refusal[1]}, state
            )
        signed_in = self._session(request)
        if signed_in is None or request.arg("prompt") == "login":
            return self._sign_in_page(request.path + "?" + urlencode(_flat(request.query)))
        user_id, auth_time = signed_in
        code = secrets.token_urlsafe(32)
        self._codes[code] = _Grant(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            user_id=user_id,
            scopes=tuple((request.arg("scope") or "").split()),
            nonce=request.arg("nonce"),
            challenge=request.arg("code_challenge") or "",
            expires=self.clock() + CODE_SECONDS,
            auth_time=auth_time,
        )
        return _redirect(redirect_uri, {"code": code}, state)

    def _authorize_problem(self, request: Request, state: str | None) -> tuple[str, str] | None:
        if request.arg("response_type") != "code":
            return (
                "unsupported_response_type",
                "The response type is not supported by the authorization server. "
                "Configured response types: [code].",
            )
        scopes = (request.arg("scope") or "").split()
        if "openid" not in scopes:
            return ("invalid_scope", "The authorization request must include the 'openid' scope.")
        unknown = set(scopes) - {"openid", "profile", "email", "groups", "offline_access"}
        if unknown:
            return (
                "invalid_scope",
                "One or more scopes are not configured for the authorization server resource.",
            )
        if not state:
            return ("invalid_request", "The authorization request is missing a 'state' parameter.")
        if not request.arg("code_challenge") or request.arg("code_challenge_method") != "S256":
            return (
                "invalid_request",
                "PKCE code challenge is required with code_challenge_method 'S256'.",
            )
        return None

    def _session(self, request: Request) -> tuple[str, int] | None:
        sid = _cookies(request).get(SESSION_COOKIE)
        found = self._sessions.get(sid or "")
        if found is None or self.emulator.org.users.get(found[0], {}).get("status") != "ACTIVE":
            return None
        return found

    def _sign_in_page(self, from_uri: str, problem: str = "") -> Response:
        alert = f'<p role="alert" class="error">{html.escape(problem)}</p>' if problem else ""
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign In</title></head>
<body><main><h1>Sign In</h1>{alert}
<form method="post" action="{LOGIN_PATH}">
<input type="hidden" name="fromURI" value="{html.escape(from_uri, quote=True)}">
<p><label for="username">Username</label><br>
<input id="username" name="username" autocomplete="username"></p>
<p><label for="password">Password</label><br>
<input id="password" name="password" type="password" autocomplete="current-password"></p>
<p><button type="submit">Sign in</button></p>
</form></main></body></html>"""
        return Response(200, page.encode(), {"Content-Type": "text/html; charset=utf-8"})

    def sign_in(self, request: Request) -> Response:
        form = _form(request)
        from_uri = form.get("fromURI", "")
        if not from_uri.startswith(f"/oauth2/{AUTH_SERVER}/v1/authorize?"):
            return _error_page(400, "invalid_request", "The sign-in request is not valid.")
        login = form.get("username", "").strip().lower()
        user = next(
            (u for u in self.emulator.org.users.values() if u["profile"]["login"].lower() == login),
            None,
        )
        good = secrets.compare_digest(form.get("password", ""), self.password)
        if user is None or not good or user["status"] != "ACTIVE":
            return self._sign_in_page(from_uri, "Unable to sign in")
        sid = secrets.token_urlsafe(24)
        self._sessions[sid] = (user["id"], int(self.clock()))
        from_uri = from_uri.replace("prompt=login", "prompt=none")
        return Response(
            302,
            None,
            {
                "Location": from_uri,
                "Set-Cookie": f"{SESSION_COOKIE}={sid}; Path=/; Secure; HttpOnly; SameSite=None",
            },
        )

    # --- token and userinfo --------------------------------------------------------------

    def token(self, request: Request) -> Response:
        if (problem := self._unknown_server(request)) is not None:
            return problem
        form = _form(request)
        client, failure = self._client(request, form)
        if failure is not None:
            return failure
        assert client is not None
        if form.get("grant_type") != "authorization_code":
            return _oauth_error(
                400, "unsupported_grant_type", "The grant type in the request isn't supported."
            )
        grant = self._codes.pop(form.get("code", ""), None)
        if grant is None or grant.expires <= self.clock():
            return _oauth_error(
                400, "invalid_grant", "The authorization code is invalid or has expired."
            )
        if grant.client_id != client.client_id:
            return _oauth_error(
                400,
                "invalid_grant",
                "The grant was issued to another client. Ensure that the `client_id` matches "
                "the one used at the authorize request.",
            )
        if form.get("redirect_uri") != grant.redirect_uri:
            return _oauth_error(
                400,
                "invalid_grant",
                "The 'redirect_uri' does not match the redirection URI used in the "
                "authorization request.",
            )
        verifier = form.get("code_verifier", "")
        if not verifier or _s256(verifier) != grant.challenge:
            return _oauth_error(400, "invalid_grant", "PKCE verification failed.")
        return Response(
            200,
            self._tokens_for(request, client, grant),
            {"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    def _client(
        self, request: Request, form: dict[str, str]
    ) -> tuple[OidcClient | None, Response | None]:
        """client_secret_basic or client_secret_post, never both, as Okta insists."""
        basic = request.headers.get("authorization", "")
        presented: list[tuple[str, str]] = []
        if basic.startswith("Basic "):
            try:
                client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None, _oauth_error(401, "invalid_client", "Client authentication failed.")
            presented.append((client_id, secret))
        if "client_secret" in form:
            presented.append((form.get("client_id", ""), form["client_secret"]))
        if len(presented) > 1:
            return None, _oauth_error(
                400,
                "invalid_request",
                "Cannot supply multiple client credentials. Use one of the following: "
                "credentials in the Authorization header, credentials in the post body, or "
                "a client_assertion in the post body.",
            )
        if not presented:
            return None, _oauth_error(401, "invalid_client", "No client credentials found")
        client_id, secret = presented[0]
        client = self.clients.get(client_id)
        if client is None:
            return None, _oauth_error(
                401, "invalid_client", "The client_id provided is invalid or does not exist."
            )
        if not secrets.compare_digest(secret, client.client_secret):
            return None, _oauth_error(
                401,
                "invalid_client",
                "The client secret supplied for a confidential client is invalid.",
            )
        return client, None

    def _tokens_for(self, request: Request, client: OidcClient, grant: _Grant) -> dict[str, Any]:
        user = self.emulator.org.users[grant.user_id]
        now = int(self.clock())
        issuer = self.issuer(request)
        access_claims = {
            "ver": 1,
            "jti": "AT." + secrets.token_urlsafe(24),
            "iss": issuer,
            "aud": "api://default",
            "iat": now,
            "exp": now + TOKEN_SECONDS,
            "cid": client.client_id,
            "uid": user["id"],
            "scp": list(grant.scopes),
            "auth_time": grant.auth_time,
            "sub": user["profile"]["login"],
        }
        access_token = self._sign(access_claims)
        self._tokens[access_token] = _AccessToken(user["id"], grant.scopes, now + TOKEN_SECONDS)
        id_claims: dict[str, Any] = {
            "sub": user["id"],
            "ver": 1,
            "iss": issuer,
            "aud": client.client_id,
            "iat": now,
            "exp": now + TOKEN_SECONDS,
            "jti": "ID." + secrets.token_urlsafe(24),
            "amr": ["pwd"],
            "idp": self.idp,
            "auth_time": grant.auth_time,
            "at_hash": _half_hash(access_token),
            **self._claims(user, grant.scopes),
        }
        if grant.nonce:
            id_claims["nonce"] = grant.nonce
        return {
            "token_type": "Bearer",
            "expires_in": TOKEN_SECONDS,
            "access_token": access_token,
            "scope": " ".join(grant.scopes),
            "id_token": self._sign(id_claims),
        }

    def _claims(self, user: dict[str, Any], scopes: tuple[str, ...]) -> dict[str, Any]:
        profile = user["profile"]
        claims: dict[str, Any] = {}
        if "profile" in scopes:
            claims.update(
                name=profile.get("displayName") or f"{profile['firstName']} {profile['lastName']}",
                preferred_username=profile["login"],
                given_name=profile["firstName"],
                family_name=profile["lastName"],
            )
        if "email" in scopes:
            claims.update(email=profile["email"], email_verified=True)
        if "groups" in scopes:
            claims["groups"] = list(self.groups.get(profile["login"], ("Everyone",)))
        return claims

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode({"alg": "RS256", "kid": self.key.kid, "typ": "JWT"}, claims, self.key)

    def userinfo(self, request: Request) -> Response:
        if (problem := self._unknown_server(request)) is not None:
            return problem
        header = request.headers.get("authorization", "")
        token = (
            self._tokens.get(header.removeprefix("Bearer ").strip())
            if header.startswith("Bearer ")
            else None
        )
        if token is None or token.expires <= self.clock():
            return Response(
                401,
                None,
                {
                    "WWW-Authenticate": 'Bearer error="invalid_token", '
                    'error_description="The access token is invalid"'
                },
            )
        user = self.emulator.org.users[token.user_id]
        return Response(200, {"sub": user["id"], **self._claims(user, token.scopes)})

    # --- sign-out ------------------------------------------------------------------------

    def logout(self, request: Request) -> Response:
        if (problem := self._unknown_server(request)) is not None:
            return problem
        try:
            hint = jwt.decode(request.arg("id_token_hint") or "", self.key).claims
        except (JoseError, ValueError):
            return _error_page(400, "invalid_request", "The 'id_token_hint' parameter is invalid.")
        client = self.clients.get(str(hint.get("aud")))
        target = request.arg("post_logout_redirect_uri")
        if client is None or (target and target not in client.post_logout_redirect_uris):
            return _error_page(
                400,
                "invalid_request",
                "The 'post_logout_redirect_uri' parameter must be a Logout redirect URI in "
                "the client app settings.",
            )
        sid = _cookies(request).get(SESSION_COOKIE)
        session = self._sessions.get(sid or "")
        if session is not None and session[0] == hint.get("sub"):
            del self._sessions[sid or ""]
        headers = {"Set-Cookie": f"{SESSION_COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly"}
        if target:
            state = request.arg("state")
            headers["Location"] = target + (f"?{urlencode({'state': state})}" if state else "")
            return Response(302, None, headers)
        return Response(200, b"Signed out", headers)


def install(emulator: OktaEmulator, **options: Any) -> OidcProvider:
    """Add the `default` authorization server's OpenID Connect endpoints to an org."""
    return OidcProvider(emulator, **options).install()


def _flat(query: dict[str, list[str]]) -> dict[str, str]:
    return {name: values[0] for name, values in query.items() if values}


def _form(request: Request) -> dict[str, str]:
    return _flat(parse_qs(request.body.decode(errors="replace"), keep_blank_values=True))


def _cookies(request: Request) -> dict[str, str]:
    jar: dict[str, str] = {}
    for part in request.headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            jar[name] = value
    return jar


def _redirect(uri: str, params: dict[str, str], state: str | None) -> Response:
    query = {**params, **({"state": state} if state else {})}
    separator = "&" if urlsplit(uri).query else "?"
    return Response(302, None, {"Location": uri + separator + urlencode(query)})


def _oauth_error(status: int, error: str, description: str) -> Response:
    return Response(status, {"error": error, "error_description": description})


def _error_page(status: int, error: str, description: str) -> Response:
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Error</title>'
        f"</head><body><h1>{html.escape(error)}</h1><p>{html.escape(description)}</p></body></html>"
    )
    return Response(status, page.encode(), {"Content-Type": "text/html; charset=utf-8"})


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", errors="replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _half_hash(token: str) -> str:
    """at_hash: the left half of the access token's SHA-256, base64url (OIDC Core 3.1.3.6)."""
    digest = hashlib.sha256(token.encode()).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()
