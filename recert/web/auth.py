"""Admin sign-in to the IAM console: OpenID Connect through Authlib, sessions kept here.

Authlib runs the authorization-code flow with PKCE and a nonce against any provider's
discovery document, and validates the ID token (signature from the provider's JWKS,
issuer, audience, expiry, nonce). Who is an admin comes from the config: a list of emails,
or groups named in a claim. A signed-in admin gets a random session token; the database
keeps only its SHA-256, and signing out revokes that row, so a copied cookie cannot be
replayed. The session keeps the claims that made them an admin, and every request checks
them against the config again: someone no longer named there loses the session at once.
Owners never sign in: their signed review links stay as they are.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from authlib.integrations.starlette_client import OAuth, OAuthError
from httpx2 import HTTPError
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select
from starlette.requests import Request

from recert import audit
from recert.clock import Clock
from recert.config import OidcSettings, Settings
from recert.db import session_scope
from recert.models import AdminSession

SESSION_COOKIE = "recert_admin"
SIGN_IN_COOKIE = "recert_signin"  # Authlib's state, nonce and PKCE verifier, signed
CONSOLE = "/console"
CALLBACK = "/console/auth/callback"
SIGNED_OUT = "/console/signed-out"


class SignInFailed(Exception):
    """The provider's answer could not be used; the message is safe to show."""


class NotAnAdmin(Exception):
    def __init__(self, email: str) -> None:
        super().__init__(email)
        self.email = email


class AccessWithdrawn(NotAnAdmin):
    """A live session whose admin the config no longer names: it has just been ended."""


@dataclass(frozen=True)
class Admin:
    email: str
    name: str
    token: str  # the cookie value: only ever compared, never stored

    def csrf(self, secret: bytes) -> str:
        return csrf_token(secret, self.token)


def csrf_token(secret: bytes, session_token: str) -> str:
    """The console's form token: bound to one admin session, useless once it is revoked."""
    return hmac.new(secret, b"console-csrf\0" + session_token.encode(), hashlib.sha256).hexdigest()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def trust(oidc: OidcSettings) -> ssl.SSLContext:
    """The system's CAs, plus `ca_bundle` when given (a proxy's CA, or the emulator's)."""
    context = ssl.create_default_context()
    if oidc.ca_bundle:
        context.load_verify_locations(cafile=oidc.ca_bundle)
    return context


def is_admin(oidc: OidcSettings, claims: dict[str, Any]) -> bool:
    email = str(claims.get("email") or "")
    return admitted(oidc, email, _email_verified(claims), _groups(oidc, claims))


def admitted(oidc: OidcSettings, email: str, email_verified: bool, groups: list[str]) -> bool:
    """Whether [web.oidc] names this person an admin, by verified email or by a group."""
    if email and email_verified and email.lower() in {e.lower() for e in oidc.admin_emails}:
        return True
    return bool(set(groups) & set(oidc.admin_groups))


def _email_verified(claims: dict[str, Any]) -> bool:
    return bool(claims.get("email")) and claims.get("email_verified") is not False


def _groups(oidc: OidcSettings, claims: dict[str, Any]) -> list[str]:
    groups = claims.get(oidc.group_claim) or []
    if isinstance(groups, str):
        groups = [groups]
    return sorted({str(g) for g in groups})


class AdminAuth:
    """The OIDC client and the server-side admin sessions."""

    def __init__(self, settings: Settings, engine: Engine, oidc: OidcSettings) -> None:
        self.settings = settings
        self.engine = engine
        self.oidc = oidc
        self.secret = settings.signing_key()
        self.base_url = settings.web.base_url.rstrip("/")
        self.secure_cookie = self.base_url.lower().startswith("https://")
        self.oauth = OAuth()
        self.client = self.oauth.register(
            "idp",
            client_id=oidc.client_id,
            client_secret=oidc.client_secret.get_secret_value(),
            server_metadata_url=oidc.metadata_url,
            client_kwargs={
                "scope": " ".join(oidc.scopes),
                "code_challenge_method": "S256",
                "verify": trust(oidc),
                "timeout": 15.0,
            },
        )

    def sign_in_state_key(self) -> str:
        return hmac.new(self.secret, b"console-sign-in-state", hashlib.sha256).hexdigest()

    # --- the flow ------------------------------------------------------------------------

    async def redirect_to_provider(self, request: Request) -> Any:
        try:
            return await self.client.authorize_redirect(request, self.base_url + CALLBACK)
        except (HTTPError, OAuthError, ValueError, RuntimeError) as error:
            raise SignInFailed(f"the identity provider could not be reached ({error})") from None

    async def identity(self, request: Request) -> dict[str, Any]:
        """The validated ID token claims (and userinfo, when groups are not in them)."""
        try:
            token = await self.client.authorize_access_token(request)
            claims = dict(token.get("userinfo") or {})
            if not claims:
                raise SignInFailed("the provider sent no ID token")
            if self.oidc.admin_groups and self.oidc.group_claim not in claims:
                claims.update(dict(await self.client.userinfo(token=token)))
        except (HTTPError, OAuthError, ValueError, KeyError) as error:
            raise SignInFailed(f"the sign-in answer was not accepted ({error})") from None
        claims["_id_token"] = token.get("id_token")
        return claims

    def start_session(
        self, request: Request, clock: Clock, claims: dict[str, Any]
    ) -> tuple[str, datetime]:
        """A new admin session for `claims`; raises NotAnAdmin (audited) otherwise."""
        email = str(claims.get("email") or claims.get("sub") or "").lower()
        client = request.client.host if request.client else None
        user_agent = (request.headers.get("user-agent") or "")[:500] or None
        now = clock.now()
        if not is_admin(self.oidc, claims):
            with session_scope(self.engine) as session:
                audit.append(
                    session,
                    clock,
                    actor=email or "unknown",
                    action="console.sign_in_refused",
                    subject_type="admin",
                    subject_id=email or "unknown",
                    data={"reason": "not an admin", "source_ip": client},
                )
            raise NotAnAdmin(email)
        with session_scope(self.engine) as session:
            token = secrets.token_urlsafe(32)
            expires = now + timedelta(hours=self.oidc.session_hours)
            row = AdminSession(
                token_hash=_digest(token),
                email=email,
                name=str(claims.get("name") or ""),
                created_at=now,
                expires_at=expires,
                id_token=claims.get("_id_token"),
                source_ip=client,
                user_agent=user_agent,
                email_verified=_email_verified(claims),
                groups=_groups(self.oidc, claims),
            )
            session.add(row)
            session.flush()
            audit.append(
                session,
                clock,
                actor=email,
                action="console.signed_in",
                subject_type="admin_session",
                subject_id=str(row.id),
                data={"source_ip": client, "expires_at": expires.isoformat()},
            )
        return token, expires

    # --- sessions ----------------------------------------------------------------------

    def current(self, request: Request, clock: Clock) -> Admin | None:
        """The signed-in admin, or None. A session whose admin [web.oidc] no longer names
        (removed from admin_emails or admin_groups) is ended: AccessWithdrawn."""
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token:
            return None
        with Session(self.engine) as session:
            row = session.exec(
                select(AdminSession).where(AdminSession.token_hash == _digest(token))
            ).first()
        if row is None or row.revoked_at is not None or clock.now() >= row.expires_at:
            return None
        if not admitted(self.oidc, row.email, row.email_verified, row.groups):
            reason = "no longer named in admin_emails or admin_groups"
            self._revoke(token, clock, row.email, "console.access_withdrawn", reason)
            raise AccessWithdrawn(row.email)
        return Admin(row.email, row.name, token)

    def end_session(self, admin: Admin, clock: Clock) -> str | None:
        """Revoke the session for good; returns the ID token the provider's sign-out wants."""
        return self._revoke(admin.token, clock, admin.email, "console.signed_out")

    def _revoke(
        self, token: str, clock: Clock, actor: str, action: str, reason: str | None = None
    ) -> str | None:
        """End one session (once, audited); returns its ID token."""
        with session_scope(self.engine) as session:
            row = session.exec(
                select(AdminSession)
                .where(AdminSession.token_hash == _digest(token))
                .with_for_update()
            ).first()
            if row is None or row.revoked_at is not None:
                return None
            id_token = row.id_token
            session.execute(
                update(AdminSession)
                .where(col(AdminSession.id) == row.id)
                .values(revoked_at=clock.now(), id_token=None)
            )
            audit.append(
                session,
                clock,
                actor=actor,
                action=action,
                subject_type="admin_session",
                subject_id=str(row.id),
                data={"reason": reason} if reason else None,
            )
        return id_token

    async def provider_sign_out_url(self, id_token: str | None) -> str | None:
        """Where the provider ends its own session too (RP-initiated logout), if it can."""
        try:
            metadata = await self.client.load_server_metadata()
            if not metadata.get("end_session_endpoint") or not id_token:
                return None
            logout = await self.client.create_logout_url(
                post_logout_redirect_uri=self.base_url + SIGNED_OUT, id_token_hint=id_token
            )
        except (HTTPError, OAuthError, RuntimeError):
            return None
        return str(logout["url"])
