"""Risk: each principal gets low | medium | high with the reasons behind it.

The tables name the permissions that reach everything of a kind: the directory, role
assignments, all mail, all files, admin APIs. A permission the table does not know adds
no risk and never fails a run. A permission's level does not depend on who consented to
it (full Gmail granted by users reads their mail as surely as an admin grant); the
consent kind is named in the reason. The risk tier sets how often the app is reviewed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, update
from sqlmodel import Session, col

from recert.config import RiskSettings
from recert.models import Credential, Grant, Principal, Tenant
from recert.store import grouped_rows, live_principals

# Microsoft Graph (and Exchange) permissions that write the directory or roles, or reach
# all mail, all files or all sites.
ENTRA_HIGH = frozenset(
    {
        "Application.ReadWrite.All",
        "AppRoleAssignment.ReadWrite.All",
        "Directory.AccessAsUser.All",
        "Directory.ReadWrite.All",
        "Domain.ReadWrite.All",
        "Files.Read.All",
        "Files.ReadWrite.All",
        "full_access_as_app",
        "Group.ReadWrite.All",
        "GroupMember.ReadWrite.All",
        "Mail.Read",
        "Mail.ReadWrite",
        "Mail.Send",
        "MailboxSettings.ReadWrite",
        "Policy.ReadWrite.ConditionalAccess",
        "PrivilegedAccess.ReadWrite.AzureAD",
        "RoleManagement.ReadWrite.Directory",
        "Sites.FullControl.All",
        "Sites.Manage.All",
        "Sites.Read.All",
        "Sites.ReadWrite.All",
        "User.ReadWrite.All",
        "UserAuthenticationMethod.ReadWrite.All",
    }
)
ENTRA_MEDIUM = frozenset(
    {
        "AuditLog.Read.All",
        "Calendars.ReadWrite",
        "ChannelMessage.Read.All",
        "Chat.Read.All",
        "Contacts.ReadWrite",
        "Directory.Read.All",
        "Group.Read.All",
        "Notes.ReadWrite.All",
        "User.Read.All",
    }
)
OKTA_HIGH = re.compile(r"^okta\.[A-Za-z]+\.manage$")
OKTA_MEDIUM = frozenset({"okta.users.read", "okta.logs.read", "okta.apps.read"})
GOOGLE_HIGH = re.compile(
    r"^https://(mail\.google\.com/"
    r"|www\.googleapis\.com/auth/(gmail\.(modify|readonly|insert|settings\.sharing)"
    r"|drive|drive\.readonly|admin\.[\w.]+|cloud-platform|apps\.groups\.settings"
    r"|ediscovery|cloud_search))$"
)
GOOGLE_MEDIUM = re.compile(
    r"^https://www\.googleapis\.com/auth/(calendar|contacts|gmail\.send|gmail\.compose"
    r"|spreadsheets|documents|drive\.metadata\.readonly|directory\.readonly)$"
)

# What an AI agent reaches through its connections is named by the resource's own scopes
# (`crm.write`): writing, managing, deleting or every scope (`*`) is high, and so is being
# handed a vaulted secret or a service account's password.
AGENT_HIGH = re.compile(
    r"(^\*)|((^|[.:/_-])(write|manage|admin|delete|all)$)|(^(secret|service_account):)",
    re.IGNORECASE,
)

SECRET_TYPES = {"secret", "certificate", "key", "api_token", "jwks"}
SECRET_WORDS = {
    "secret": "a client secret",
    "certificate": "a certificate",
    "key": "a key",
    "api_token": "an API token",
    "jwks": "a public key set (JWKS)",
}


def permission_level(permission: str) -> str | None:
    """'high', 'medium' or None (not in the tables) for one permission name.

    Names do not collide across providers (Graph names, `okta.*`, Google scope URLs), so
    one lookup serves every tenant.
    """
    if permission in ENTRA_HIGH or OKTA_HIGH.match(permission) or GOOGLE_HIGH.match(permission):
        return "high"
    medium = (
        permission in ENTRA_MEDIUM or permission in OKTA_MEDIUM or GOOGLE_MEDIUM.match(permission)
    )
    return "medium" if medium else None


@dataclass(frozen=True)
class Assessment:
    level: str
    reasons: tuple[str, ...]


def assess(
    principal: Principal,
    grants: Iterable[Grant],
    credentials: Iterable[Credential],
    settings: RiskSettings,
    now: datetime,
) -> Assessment:
    found: dict[str, str] = {}  # reason -> level; the highest level wins
    grants = list(grants)
    for reason, level in (
        *_grant_reasons(grants),
        *_agent_reasons(principal, grants),
        *_credential_reasons(credentials, settings, now),
        *_principal_reasons(principal, settings, now),
    ):
        if _rank(level) > _rank(found.get(reason)):
            found[reason] = level
    overall = max(found.values(), key=_rank, default="low")
    return Assessment(overall, tuple(sorted(found, key=lambda r: (-_rank(found[r]), r))))


def _rank(level: str | None) -> int:
    return {"low": 0, "medium": 1, "high": 2}.get(level or "", -1)


def _grant_reasons(grants: Iterable[Grant]) -> Iterable[tuple[str, str]]:
    for grant in grants:
        level = permission_level(grant.permission)
        if grant.consent == "domain_wide":
            yield f"domain-wide delegation of {grant.permission}", "high"
        elif level:
            yield f"holds {grant.permission} ({_consent_words(grant.consent)})", level
        if grant.consent == "admin":
            yield "tenant-wide admin consent", "medium"


def _agent_reasons(principal: Principal, grants: Iterable[Grant]) -> Iterable[tuple[str, str]]:
    if principal.kind != "agent_identity":
        return
    for grant in grants:
        if AGENT_HIGH.search(grant.permission):
            yield f"an AI agent that can reach {grant.permission} on {grant.resource}", "high"


def _consent_words(consent: str) -> str:
    return {
        "admin": "tenant-wide admin consent",
        "application": "application permission",
        "user": "user consent",
        "domain_wide": "domain-wide delegation",
    }.get(consent, consent)


def _credential_reasons(
    credentials: Iterable[Credential], settings: RiskSettings, now: datetime
) -> Iterable[tuple[str, str]]:
    longest = timedelta(days=settings.max_secret_days)
    for credential in credentials:
        if credential.type not in SECRET_TYPES:
            continue
        words = SECRET_WORDS[credential.type]
        if credential.expires_at is None:
            yield f"{words} that never expires", "medium"
            continue
        if credential.expires_at <= now:
            continue
        lifetime = credential.expires_at - (credential.created_at or now)
        if lifetime > longest:
            yield f"{words} valid for more than {settings.max_secret_days} days", "medium"


def _principal_reasons(
    principal: Principal, settings: RiskSettings, now: datetime
) -> Iterable[tuple[str, str]]:
    if principal.publisher_verified is False and principal.publisher:
        yield "an unverified external publisher", "medium"
    if is_stale(principal, settings.stale_days, now):
        yield f"no use in {settings.stale_days} days", "medium"


def is_stale(principal: Principal, stale_days: int, now: datetime) -> bool:
    """Unused for `stale_days`. Unknown use (no activity data) is never stale."""
    cutoff = now - timedelta(days=stale_days)
    if principal.last_used_at is not None:
        return principal.last_used_at < cutoff
    window = principal.activity_window_start
    return window is not None and window <= cutoff


def score_tenant(session: Session, tenant: Tenant, settings: RiskSettings, now: datetime) -> int:
    """Store each live principal's risk; returns how many changed."""
    assert tenant.id is not None
    changed = 0
    store = (
        update(Principal)
        .where(col(Principal.id) == bindparam("pid"))
        .values(risk=bindparam("level"), risk_reasons=bindparam("reasons"))
    )
    for batch in live_principals(session, tenant.id):
        ids = [p.id for p in batch]
        grants = grouped_rows(session, Grant, ids)
        credentials = grouped_rows(session, Credential, ids)
        rows = []
        for principal in batch:
            pid = principal.id or 0
            result = assess(principal, grants[pid], credentials[pid], settings, now)
            if (principal.risk, tuple(principal.risk_reasons)) != (result.level, result.reasons):
                rows.append({"pid": pid, "level": result.level, "reasons": list(result.reasons)})
        if rows:
            session.connection().execute(store, rows)
            changed += len(rows)
    return changed
