"""Credential-expiry notices: each owner hears about their app credentials before they
expire, in one digest a day, and each (credential, threshold) is notified once.

Every day a credential is at the tightest threshold it has crossed (`[notices]
credential_expiry_days`, e.g. 60, 30, 7) or "expired" (threshold 0). A notice is due when
that stage has not been notified yet, nor a tighter one. The ledger (`credential_notice`)
is claimed row by row in the same transaction that queues the digest in the outbox under
the key (day, recipient): two runs at once, re-runs and a crash between claim and queue
can neither send a notice twice nor lose one. A digest already queued today for the
recipient defers the rest to tomorrow's digest.

Notices on an app in the one orphan set (`reports.orphans`, with what open campaigns
moved to the IAM team) go to the IAM team with the report's reason. A digest that
hard-bounces is sent on to the IAM team, once, saying whose address bounced.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from sqlalchemy import Engine, and_, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from connectors.settings import EntraSettings, OktaSettings, TenantSettings
from emails import render as mail
from emails import wording
from recert import reports
from recert.campaigns import reviewer_for
from recert.clock import Clock, as_utc
from recert.config import ConfigError, Settings
from recert.db import session_scope
from recert.models import (
    Credential,
    CredentialNotice,
    OutboxEmail,
    Ownership,
    Person,
    Principal,
    Tenant,
)
from recert.outbox import queue_email
from recert.store import grouped

log = logging.getLogger(__name__)

KIND: mail.Kind = "credential_expiry"
EXPIRED = 0  # the threshold of the notice that a credential has expired
# Okta API tokens expire after this long unused unless `tokenWindow` says otherwise, and
# each use renews them: the wire example in specs/okta/wire-examples/api-tokens-list.yaml
# has `tokenWindow: null` and `expiresAt` = `lastUpdated` + 30 days.
OKTA_TOKEN_WINDOW = timedelta(days=30)
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?$")


@dataclass
class ExpirySummary:
    digests: int = 0  # emails queued
    notices: int = 0  # (credential, threshold) notices in them
    orphaned: int = 0  # of those, on apps in the orphan set: sent to the IAM team
    deferred: int = 0  # due, but the recipient already has today's digest: tomorrow
    unmailable: int = 0  # not queued: the recipient address cannot be mailed (logged)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class DueNotice:
    principal: Principal
    tenant: Tenant
    credential: Credential
    threshold: int
    recipient: str
    owner_reason: str
    orphan_reason: str | None  # set when the app is in the one orphan set (reports.orphans)

    @property
    def orphaned(self) -> bool:
        return self.orphan_reason is not None


# --- what is due ------------------------------------------------------------------------


def stage(expires_at: datetime, now: datetime, thresholds: Sequence[int]) -> int | None:
    """The tightest threshold crossed (by calendar day, UTC), EXPIRED, or None."""
    if expires_at <= now:
        return EXPIRED
    days_left = (expires_at.date() - now.date()).days
    crossed = [days for days in thresholds if days_left <= days]
    return min(crossed) if crossed else None


def thresholds_for(
    tenant: Tenant, principal: Principal, credential: Credential, days: Sequence[int]
) -> list[int]:
    """An Okta API token's expiry slides with each use: a threshold as long as its window
    is always crossed and says nothing, so only the shorter ones count."""
    if tenant.kind != "okta" or credential.type != "api_token":
        return list(days)
    window = _duration(principal.raw.get("tokenWindow")) or OKTA_TOKEN_WINDOW
    return [d for d in days if timedelta(days=d) < window]


def _duration(value: Any) -> timedelta | None:
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None or not any(match.groups()):
        return None
    days, hours, minutes = (int(part or 0) for part in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


def superseded(credential: Credential, siblings: Iterable[Credential]) -> bool:
    """Rotated: the app has a newer credential of the same type that outlives this one.
    Newer by creation, or where the provider records none (Entra), by start of validity."""
    born = credential.created_at or credential.valid_from
    if born is None or credential.expires_at is None:
        return False
    return any(
        other.credential_id != credential.credential_id
        and other.type == credential.type
        and (other.created_at or other.valid_from or born) > born
        and (other.expires_at is None or other.expires_at > credential.expires_at)
        for other in siblings
    )


def due_notices(session: Session, settings: Settings, now: datetime) -> list[DueNotice]:
    """Every notice due now, for principals under review (active, not platform-owned,
    not protected, not a managed identity: Azure rotates those keys itself)."""
    days = settings.notices.credential_expiry_days
    if not days:
        return []
    horizon = now + timedelta(days=max(days) + 1)
    rows = session.exec(
        select(Credential, Principal, Tenant)
        .join(Principal, col(Principal.id) == Credential.principal_id)
        .join(Tenant, col(Tenant.id) == Principal.tenant_id)
        .where(
            col(Credential.expires_at).is_not(None),
            col(Credential.expires_at) <= horizon,
            Principal.status == "active",
            col(Principal.platform_owned).is_(False),
            col(Principal.protected).is_(False),
            Principal.kind != "managed_identity",
        )
        .order_by(col(Credential.expires_at), col(Credential.id))
    ).all()
    ids = sorted({principal.id or 0 for _, principal, _ in rows})
    siblings = grouped(session, Credential, ids)
    owners = grouped(session, Ownership, ids)
    moved = reports.moved_to_iam(session, settings.iam_email, ids)
    notified = _notified(session, ids)
    due = []
    for credential, principal, tenant in rows:
        assert credential.expires_at is not None
        assert principal.id is not None
        current = stage(
            credential.expires_at, now, thresholds_for(tenant, principal, credential, days)
        )
        tightest = notified.get((principal.id, credential.credential_id))
        if current is None or (tightest is not None and tightest <= current):
            continue
        if superseded(credential, siblings[principal.id]):
            continue
        orphan = reports.app_orphan_reason(owners[principal.id], moved.get(principal.id))
        due.append(
            _notice(principal, tenant, credential, current, owners[principal.id], orphan, settings)
        )
    return due


def _notified(session: Session, principal_ids: Sequence[int]) -> dict[tuple[int, str], int]:
    """The tightest threshold already notified, per credential."""
    tightest: dict[tuple[int, str], int] = {}
    for notice in grouped(session, CredentialNotice, principal_ids).values():
        for row in notice:
            key = (row.principal_id, row.credential_id)
            tightest[key] = min(row.threshold_days, tightest.get(key, row.threshold_days))
    return tightest


def _notice(
    principal: Principal,
    tenant: Tenant,
    credential: Credential,
    threshold: int,
    owners: list[Ownership],
    orphan: tuple[str, str] | None,
    settings: Settings,
) -> DueNotice:
    """To the accountable owner; an orphan (`orphan`: reason and evidence, as the orphan
    report has it) to the IAM team."""
    if orphan is not None:
        recipient = settings.iam_email.lower()
        reason = f"no accountable owner: {orphan[1]}"
    else:
        recipient, _ = reviewer_for(owners, settings.iam_email)
        named = next((o for o in owners if (o.email or "").lower() == recipient), None)
        reason = named.evidence if named else "no owner has been resolved for it yet"
    return DueNotice(
        principal=principal,
        tenant=tenant,
        credential=credential,
        threshold=threshold,
        recipient=recipient,
        owner_reason=reason,
        orphan_reason=orphan[0] if orphan else None,
    )


# --- where to rotate ------------------------------------------------------------------

# Okta's admin console is the org's subdomain with "-admin" on the same Okta domain
# (https://developer.okta.com/docs/guides/find-your-domain/); custom domains have none.
_OKTA_DOMAINS = ("okta.com", "oktapreview.com", "okta-emea.com", "okta-gov.com", "okta.mil")
# One Azure portal per cloud, told apart by the tenant's Graph or sign-in host; see
# https://learn.microsoft.com/entra/identity-platform/authentication-national-cloud and
# https://learn.microsoft.com/graph/deployments. Other hosts (a proxy) get the global one.
_AZURE_PORTALS = {
    "graph.microsoft.com": "https://portal.azure.com",
    "login.microsoftonline.com": "https://portal.azure.com",
    "graph.microsoft.us": "https://portal.azure.us",
    "dod-graph.microsoft.us": "https://portal.azure.us",
    "login.microsoftonline.us": "https://portal.azure.us",
    "microsoftgraph.chinacloudapi.cn": "https://portal.azure.cn",
    "login.chinacloudapi.cn": "https://portal.azure.cn",
    "login.partner.microsoftonline.cn": "https://portal.azure.cn",
}
_GOOGLE_CONSOLE = "https://console.cloud.google.com"


def rotation_url(tenant: TenantSettings | None, principal: Principal) -> str | None:
    """The provider's admin page where this app's credentials are rotated, if any.

    Okta: the app's General tab, `/admin/app/{name}/instance/{id}/#tab-general`, or the
    API tokens page `/admin/access/api/tokens` (Okta help, "Create an API token").
    Entra: the app registration's Certificates & secrets blade by appId, or, for a service
    principal with no registration in the tenant, its Single sign-on blade (the portal's
    own deep links, `#view/Microsoft_AAD_RegisteredApps/ApplicationMenuBlade/...`).
    Google: the service account's Keys tab in the Cloud console
    (https://cloud.google.com/iam/docs/keys-create-delete).
    """
    if isinstance(tenant, OktaSettings):
        admin = _okta_admin(str(tenant.org_url))
        if admin is None:
            return None
        if principal.kind == "api_token":
            return f"{admin}/admin/access/api/tokens"
        name = _segment(str(principal.raw.get("name") or "oidc_client"))
        return f"{admin}/admin/app/{name}/instance/{_segment(principal.external_id)}/#tab-general"
    if isinstance(tenant, EntraSettings):
        portal = _azure_portal(str(tenant.graph_url), str(tenant.authority))
        app_id = _segment(principal.app_id or "")
        if principal.kind == "oauth_app" or principal.raw.get("applicationId"):
            blade = "Microsoft_AAD_RegisteredApps/ApplicationMenuBlade/~/Credentials"
            return f"{portal}/#view/{blade}/appId/{app_id}"
        blade = "Microsoft_AAD_IAM/ManagedAppMenuBlade/~/SignOn"
        return f"{portal}/#view/{blade}/objectId/{_segment(principal.external_id)}/appId/{app_id}"
    if tenant is not None and tenant.kind == "google":
        account = _segment(principal.external_id)
        project = principal.raw.get("projectId")
        query = f"?project={quote(str(project), safe='')}" if project else ""
        return f"{_GOOGLE_CONSOLE}/iam-admin/serviceaccounts/details/{account}/keys{query}"
    return None


def _okta_admin(org_url: str) -> str | None:
    host = (urlsplit(org_url).hostname or "").lower()
    for domain in _OKTA_DOMAINS:
        subdomain = host.removesuffix(f".{domain}")
        if subdomain != host and subdomain and "." not in subdomain:
            admin = subdomain if subdomain.endswith("-admin") else f"{subdomain}-admin"
            return f"https://{admin}.{domain}"
    return None


def _azure_portal(graph_url: str, authority: str) -> str:
    for url in (graph_url, authority):
        portal = _AZURE_PORTALS.get((urlsplit(url).hostname or "").lower())
        if portal:
            return portal
    return _AZURE_PORTALS["graph.microsoft.com"]


def _segment(value: str) -> str:
    """Ids come from the provider: quoted, they stay one path segment of our URL."""
    return quote(value, safe="")


def rotation_steps(tenant_kind: str, principal: Principal, credential_type: str) -> str | None:
    if tenant_kind == "okta" and credential_type == "api_token":
        return wording.ROTATION["okta:api_token"]
    enterprise = principal.kind != "oauth_app" and not principal.raw.get("applicationId")
    if tenant_kind == "entra" and enterprise:
        return wording.ROTATION["entra:enterprise_app"]
    return wording.ROTATION.get(tenant_kind)


# --- queueing ---------------------------------------------------------------------------


def queue_expiry_notices(engine: Engine, settings: Settings, clock: Clock) -> ExpirySummary:
    """Queue today's digest for every recipient with notices due; the caller sends them."""
    now = clock.now()
    summary = ExpirySummary()
    with Session(engine) as session:
        due = due_notices(session, settings, now)
        names = _names(session, {notice.recipient for notice in due})
    by_recipient: dict[str, list[DueNotice]] = defaultdict(list)
    for notice in due:
        by_recipient[notice.recipient].append(notice)
    for recipient in sorted(by_recipient):  # one order for every run: no lock cycles
        notices = by_recipient[recipient]
        try:
            with session_scope(engine) as session:
                queued = _queue_digest(session, settings, now, recipient, names, notices)
        except ValueError as error:  # e.g. an address that would inject a header
            log.error("credential-expiry digest for %r not queued: %s", recipient, error)
            summary.unmailable += len(notices)
            continue
        if queued is None:
            summary.deferred += len(notices)
        elif queued:
            summary.digests += 1
            summary.notices += len(queued)
            summary.orphaned += sum(1 for notice in queued if notice.orphaned)
    return summary


def digest_key(now: datetime, recipient: str) -> str:
    return f"{KIND}:{now:%Y-%m-%d}:{recipient}"


def _queue_digest(
    session: Session,
    settings: Settings,
    now: datetime,
    recipient: str,
    names: dict[str, str],
    notices: list[DueNotice],
) -> list[DueNotice] | None:
    """Claim the notices and queue their digest in one transaction. Returns what it
    queued ([] when another run had claimed them all), None when today's digest exists."""
    key = digest_key(now, recipient)
    if session.exec(select(OutboxEmail.id).where(OutboxEmail.idempotency_key == key)).first():
        return None
    claimed = _claim(session, notices, key, now)
    mine = [n for n in notices if (n.principal.id, n.credential.credential_id) in claimed]
    if not mine:
        return []
    digest = mail.Digest(
        kind=KIND,
        campaign=f"Credential expiry {now:%Y-%m-%d}",
        recipient_email=recipient,
        recipient_name=names.get(recipient),
        apps=tuple(_apps(settings, mine)),
        review_url=None,
        due_at=None,
        iam_contact=settings.iam_email,
        now=now,
    )
    message = mail.render(digest, from_address=settings.smtp.from_address)
    if not queue_email(session, key, KIND, recipient, message, now):
        session.rollback()  # another run queued today's digest first: these wait a day
        return None
    return mine


def reroute_bounced(session: Session, settings: Settings, now: datetime, row: OutboxEmail) -> int:
    """An owner's digest hard-bounced: the IAM team gets its notices instead, saying so, so
    no rotation deadline is lost. Once per digest, in the caller's transaction. Returns how
    many notices went on (none when the IAM team's own address bounced)."""
    iam = settings.iam_email.lower()
    if row.recipient.lower() == iam:
        return 0
    rerouted = [
        DueNotice(
            principal=principal,
            tenant=tenant,
            credential=credential,
            threshold=entry.threshold_days,
            recipient=iam,
            owner_reason=f"its owner is {row.recipient}, whose address bounced",
            orphan_reason="owner_unreachable",
        )
        for entry, credential, principal, tenant in _listed_in(session, row.idempotency_key)
    ]
    if not rerouted:
        return 0
    digest = mail.Digest(
        kind=KIND,
        campaign=f"Credential expiry {as_utc(row.created_at):%Y-%m-%d}",
        recipient_email=iam,
        recipient_name=None,
        apps=tuple(_apps(settings, rerouted)),
        review_url=None,
        due_at=None,
        iam_contact=settings.iam_email,
        now=now,
        note=(
            f"These notices were for {row.recipient}, but that address bounced: the owner"
            " cannot be reached. Please see that each credential is rotated before it"
            " expires, and correct the owner's address."
        ),
    )
    message = mail.render(digest, from_address=settings.smtp.from_address)
    queued = queue_email(session, f"{row.idempotency_key}:bounced", KIND, iam, message, now)
    return len(rerouted) if queued else 0


def _listed_in(
    session: Session, key: str
) -> Sequence[tuple[CredentialNotice, Credential, Principal, Tenant]]:
    """The ledger's notices for digest `key`; a credential gone since was rotated away."""
    return session.exec(
        select(CredentialNotice, Credential, Principal, Tenant)
        .join(
            Credential,
            and_(
                col(Credential.principal_id) == CredentialNotice.principal_id,
                col(Credential.credential_id) == CredentialNotice.credential_id,
            ),
        )
        .join(Principal, col(Principal.id) == CredentialNotice.principal_id)
        .join(Tenant, col(Tenant.id) == Principal.tenant_id)
        .where(CredentialNotice.outbox_key == key)
        .order_by(col(CredentialNotice.principal_id), col(CredentialNotice.id))
    ).all()


def _claim(
    session: Session, notices: list[DueNotice], key: str, now: datetime
) -> set[tuple[int | None, str]]:
    """Insert the ledger rows; those another run holds already come back missing."""
    rows = sorted(
        (
            {
                "principal_id": n.principal.id,
                "credential_id": n.credential.credential_id,
                "threshold_days": n.threshold,
                "expires_at": n.credential.expires_at,
                "recipient": n.recipient,
                "outbox_key": key,
                "notified_at": now,
            }
            for n in notices
        ),
        key=lambda row: (row["principal_id"], row["credential_id"], row["threshold_days"]),
    )
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(CredentialNotice)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["principal_id", "credential_id", "threshold_days"])
        .returning(col(CredentialNotice.principal_id), col(CredentialNotice.credential_id))
    )
    return {(pid, cid) for pid, cid in session.execute(statement).all()}


def _apps(settings: Settings, notices: list[DueNotice]) -> list[mail.AppSummary]:
    by_principal: dict[int | None, list[DueNotice]] = defaultdict(list)
    for notice in notices:
        by_principal[notice.principal.id].append(notice)
    return [_app(settings, group) for group in by_principal.values()]


def _app(settings: Settings, notices: list[DueNotice]) -> mail.AppSummary:
    first = notices[0]
    principal, tenant = first.principal, first.tenant
    try:
        tenant_settings: TenantSettings | None = settings.tenant(tenant.name).read
    except ConfigError:  # a tenant no longer configured: no link to build
        tenant_settings = None
    return mail.AppSummary(
        provider=wording.PROVIDERS.get(tenant.kind, tenant.kind),
        tenant=tenant.name,
        kind=principal.kind,
        display_name=principal.display_name,
        external_id=principal.external_id,
        permissions=(),
        credentials=tuple(
            mail.CredentialInfo(
                type=n.credential.type,
                expires_at=n.credential.expires_at,
                key_id=_short_id(n.credential.credential_id, principal.external_id),
                name=n.credential.display_name,
            )
            for n in notices
        ),
        last_used_at=principal.last_used_at,
        activity_known_since=principal.activity_window_start,
        owner_reason=first.owner_reason,
        risk=principal.risk,
        risk_reasons=(),
        orphan_reason=first.orphan_reason if first.orphaned else None,
        rotate_url=rotation_url(tenant_settings, principal),
        rotate_steps=rotation_steps(tenant.kind, principal, first.credential.type),
    )


def _short_id(credential_id: str, external_id: str) -> str:
    """Okta credential ids repeat their app's id ("0oa1/client_secret"): show the rest."""
    return credential_id.removeprefix(f"{external_id}/") or credential_id


def _names(session: Session, emails: set[str]) -> dict[str, str]:
    """Display names of the recipients who are people (not team mailboxes)."""
    people = session.exec(
        select(Person).where(func.lower(col(Person.email)).in_(sorted(emails)), Person.active)
    ).all()
    return {(person.email or "").lower(): person.display_name for person in people}
