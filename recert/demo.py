"""`recert demo`: Recert end to end against emulated Okta, Entra and Google tenants.

Everything runs through the production code paths: the config file it writes, the real
SDKs over TLS, the store, owner resolution, the reports. Mail goes to a local SMTP
server that writes each message as an `.eml` file. Nothing is written outside DIR and
nothing leaves loopback.
"""

from __future__ import annotations

import json
import secrets
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from recert import db, enforcement, evidence, reports
from recert.analysis import analyze
from recert.campaigns import items_by_reviewer, open_campaign
from recert.catalog import load_catalog
from recert.clock import Clock, FixedClock, clock_from_env
from recert.config import Settings, load_settings
from recert.decisions import DecisionRequest, decide
from recert.discovery import discover_tenant
from recert.inventory import inventory
from recert.links import ReviewLink
from recert.models import Grant, ReviewItem
from recert.notices import queue_expiry_notices
from recert.notify import notify, queue_orphan_report, send_outbox
from recert.progress import discover_with_progress, step
from sandbox.server import free_port
from sandbox.tenants import SandboxTenants, Sizes, running_tenants

IAM_EMAIL = "iam-team@example.com"


@dataclass
class DemoResult:
    directory: Path
    config: Path
    summary: dict[str, Any] = field(default_factory=dict)


class MailDrop:
    """aiosmtpd handler: every accepted message becomes DIR/mail/NNN-<recipient>.eml."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        self._lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.count += 1
            first = str(envelope.rcpt_tos[0]).replace("/", "_").replace("@", "_at_")
            path = self.folder / f"{self.count:03d}-{first}.eml"
        path.write_bytes(envelope.content)
        return "250 Message accepted"


@contextmanager
def mail_capture(folder: Path) -> Iterator[tuple[str, int, MailDrop]]:
    from aiosmtpd.controller import Controller

    drop = MailDrop(folder)
    port = free_port()
    controller = Controller(drop, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield "127.0.0.1", port, drop
    finally:
        controller.stop()


def _catalog(folder: Path, tenants: SandboxTenants) -> None:
    """Manifests for two Okta apps the IdP cannot tell an owner for: the catalog can."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = tenants.okta.truth
    users = tenants.okta.org.users
    active = sorted(u["profile"]["email"] for u in users.values() if u["status"] == "ACTIVE")
    uncredited = sorted(set(truth.oauth_apps) - set(truth.creators) - truth.builtins)
    for index, app_id in enumerate(uncredited[:2]):
        manifest = {
            "app_id": app_id,
            "tenant": "okta-demo",
            "owner": active[index],
            "purpose": "Nightly export of HR records to the payroll provider",
            "data_domains": ["hr", "payroll"],
            "requested_scopes": ["okta.users.read"],
            "risk_tier": "high",
            "environment": "prod",
            "expires": "2027-06-30",
            "approvers": [IAM_EMAIL],
        }
        (folder / f"okta-{app_id}.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))


WEB_URL = "http://127.0.0.1:8000"


def _console_sign_in(directory: Path, tenants: SandboxTenants) -> dict[str, Any]:
    """`[web.oidc]`: the emulated Okta org signs IAM admins in to the console."""
    client = tenants.oidc.register_client(
        f"{WEB_URL}/console/auth/callback", f"{WEB_URL}/console/signed-out"
    )
    secret_file = directory / "secrets" / "console-oidc-client-secret"
    secret_file.write_text(client.client_secret, encoding="utf-8")
    secret_file.chmod(0o600)
    return {
        "issuer": f"{tenants.servers['okta-demo'].url}/oauth2/default",
        "client_id": client.client_id,
        "client_secret_file": "secrets/console-oidc-client-secret",
        "admin_emails": tenants.oidc.active_logins()[:1],
        "ca_bundle": str(tenants.ca.ca_bundle),
    }


def _write_config(directory: Path, tenants: SandboxTenants, smtp: tuple[str, int]) -> Path:
    config = directory / "recert.toml"
    key_file = directory / "secrets" / "web-secret-key"
    key_file.parent.mkdir(exist_ok=True)
    key_file.write_text(secrets.token_urlsafe(32), encoding="utf-8")
    key_file.chmod(0o600)
    web = {
        "base_url": WEB_URL,
        "secret_key_file": "secrets/web-secret-key",
        "oidc": _console_sign_in(directory, tenants),
    }
    config.write_text(
        tenants.config(
            catalog_dir="catalog",
            iam_email=IAM_EMAIL,
            database={"url": f"sqlite:///{directory / 'recert.db'}"},
            smtp={"host": smtp[0], "port": smtp[1], "from_address": "recert@example.com"},
            web=web,
            owner_rules=[
                {"pattern": "app-{team}-{name}-{env}", "owner": "{team}-owners@example.com"}
            ],
        ),
        encoding="utf-8",
    )
    return config


DEMO_SIZES = Sizes()


def run(
    directory: Path,
    keep_running: bool = False,
    sizes: Sizes = DEMO_SIZES,
    on_summary: Callable[[DemoResult], None] | None = None,
) -> DemoResult:
    """The whole pipeline; `on_summary` gets the result as soon as it is known (with
    --keep-running, before the tenants are kept up)."""
    directory.mkdir(parents=True, exist_ok=True)
    clock = clock_from_env()
    with (
        running_tenants(directory / "sandbox", sizes, now=clock.now()) as tenants,
        mail_capture(directory / "mail") as (host, port, drop),
    ):
        _catalog(directory / "catalog", tenants)
        config = _write_config(directory, tenants, (host, port))
        settings = load_settings(config)
        result = DemoResult(directory, config)
        result.summary = _pipeline(settings, clock, directory)
        result.summary["emails_sent"] = drop.count
        result.summary["mail_dir"] = str(directory / "mail")
        (directory / "summary.json").write_text(json.dumps(result.summary, indent=2))
        if on_summary:
            on_summary(result)
        if keep_running:
            _wait_for_interrupt(config, tenants)
    return result


def _pipeline(settings: Settings, clock: Clock, directory: Path) -> dict[str, Any]:
    engine = db.make_engine(settings.database.url)
    db.upgrade(engine)
    discovered = []
    for tenant in settings.tenants:
        summary = discover_with_progress(engine, tenant, clock)
        if summary.error:
            raise RuntimeError(f"{tenant.name}: discovery failed: {summary.error}")
        discovered.append(summary.as_dict())
    with step("resolve owners and score risk"):
        owners = analyze(engine, settings, clock)
    with step("write reports"):
        paths = _reports(engine, settings, clock, directory)
    with step("open a review campaign"), db.session_scope(engine) as session:
        campaign = open_campaign(session, settings, clock)
    with step("send the digest emails"):
        sent = notify(engine, settings, clock)
        queue_orphan_report(engine, settings, clock)
        send_outbox(engine, settings, clock, sent)
    with step("send the credential-expiry notices"):
        expiry = queue_expiry_notices(engine, settings, clock)
        send_outbox(engine, settings, clock, sent)
    with Session(engine) as session:
        entries = inventory(session)
        reviewers = len(items_by_reviewer(session, campaign.campaign_id))
        orphaned = reports.orphans(session, settings, clock.now())
    result = _summary(entries, orphaned, discovered, owners, paths, settings)
    result["campaign"] = {**campaign.as_dict(), "reviewers_emailed": reviewers}
    result["outbox"] = sent.as_dict()
    result["credential_expiry"] = expiry.as_dict()
    with step("owners answer; day 15: discover again and plan enforcement (dry run)"):
        result["day15"] = _day_fifteen(engine, settings, clock, campaign.campaign_id)
    with step("write the evidence bundle"):
        result["evidence"] = _evidence(engine, campaign.campaign_id, directory)
    return result


def _evidence(engine: Any, campaign_id: int, directory: Path) -> dict[str, Any]:
    """The campaign's evidence bundle, checked the way compliance would check it."""
    path = directory / "evidence" / f"evidence-campaign-{campaign_id}.zip"
    with Session(engine) as session:
        exported = evidence.export(session, evidence.campaign_scope(session, campaign_id), path)
    check = evidence.verify_bundle(path)
    if not check.ok:
        raise RuntimeError(f"the evidence bundle does not verify: {check.problem}")
    return {"path": str(path), "files": check.files, "sha256": exported.sha256, "verified": True}


OWNER_SOURCES = ("catalog", "idp_owner", "audit_creator", "token_creator", "rule", "manager")


def _day_fifteen(
    engine: Engine, settings: Settings, clock: Clock, campaign_id: int
) -> dict[str, Any]:
    """A few owners keep, revoke or reduce an app; the others say nothing. On day 15 the
    nightly discovery runs again, and enforcement plans (every tenant is in dry-run)."""
    answered = _owners_answer(engine, settings, clock, campaign_id)
    later = FixedClock((clock.now() + timedelta(days=15)).replace(microsecond=0))
    for tenant in settings.tenants:
        discover_tenant(engine, tenant, later)
    with Session(engine) as session:
        plans = enforcement.plan(session, settings, later)
    return {
        "at": later.now().isoformat(),
        "answered": answered,
        "plan": [_plan_summary(p.as_dict()) for p in plans],
    }


def _owners_answer(
    engine: Engine, settings: Settings, clock: Clock, campaign_id: int
) -> dict[str, int]:
    with Session(engine) as session:
        items = session.exec(
            select(ReviewItem)
            .where(
                ReviewItem.campaign_id == campaign_id,
                col(ReviewItem.owner_source).in_(OWNER_SOURCES),
            )
            .order_by(col(ReviewItem.id))
        ).all()
        grants = {
            i.id: session.exec(select(Grant).where(Grant.principal_id == i.principal_id)).all()
            for i in items
        }
    reducible = [i for i in items if len(grants[i.id]) >= 2][:2]
    others = [i for i in items if i not in reducible]
    choices = [
        (i, DecisionRequest("keep", "still needed for the nightly export")) for i in others[:3]
    ]
    choices += [(i, DecisionRequest("revoke")) for i in others[3:6]]
    choices += [
        (i, DecisionRequest("reduce", "read access is enough", dropped=(grants[i.id][0].id or 0,)))
        for i in reducible
    ]
    answered: Counter[str] = Counter()
    for item, request in choices:
        link = ReviewLink(campaign_id, item.reviewer_email, item.due_at)
        with db.session_scope(engine) as session:
            decide(
                session,
                settings,
                FixedClock(clock.now() + timedelta(days=3)),
                link,
                item.id or 0,
                request,
            )
        answered[request.action] += 1
    return dict(answered)


def _plan_summary(plan: dict[str, Any]) -> dict[str, Any]:
    actions = plan["actions"]
    return {
        "tenant": plan["tenant"],
        "mode": plan["mode"],
        "blocked": plan["blocked"],
        "actions": dict(Counter(a["action"] for a in actions)),
        "refused": dict(Counter(r["rule"] for r in plan["refused"]).most_common()),
        "examples": [
            {k: a[k] for k in ("action", "display_name", "external_id", "reason", "reversible")}
            for a in actions[:3]
        ],
    }


def _reports(engine: Any, settings: Settings, clock: Clock, directory: Path) -> dict[str, str]:
    folder = directory / "reports"
    folder.mkdir(exist_ok=True)
    catalog = load_catalog(settings.catalog_dir)
    now = clock.now()
    paths = {}
    with Session(engine) as session:
        for kind in reports.REPORTS:
            rows = reports.build(kind, session, settings, now, catalog=catalog)
            for output in ("html", "json"):
                path = folder / f"{kind}.{output}"
                path.write_text(reports.render(kind, rows, output, now), encoding="utf-8")
            paths[kind] = str(folder / f"{kind}.html")
    return paths


def _summary(
    entries: list[dict[str, Any]],
    orphaned: list[dict[str, Any]],
    discovered: list[dict[str, Any]],
    owners: list[dict[str, Any]],
    paths: dict[str, str],
    settings: Settings,
) -> dict[str, Any]:
    by_tenant: dict[str, Counter[str]] = {}
    for entry in entries:
        by_tenant.setdefault(entry["tenant"], Counter())[entry["kind"]] += 1
    reviewable = [e for e in entries if not e["platform_owned"] and e["kind"] != "managed_identity"]
    orphans = {(o["tenant"], o["external_id"]) for o in orphaned}
    rank = {"high": 0, "medium": 1, "low": 2}
    risky = sorted(
        (e for e in reviewable if e["risk"] == "high"),
        key=lambda e: (rank[e["risk"]], -len(e["risk_reasons"]), e["display_name"]),
    )
    return {
        "principals": len(entries),
        "by_tenant": {t: dict(sorted(c.items())) for t, c in sorted(by_tenant.items())},
        "owned": sum(
            1 for e in reviewable if e["owners"] and (e["tenant"], e["external_id"]) not in orphans
        ),
        "orphaned": len(orphaned),  # the orphan report's set, as the IAM emails count it
        "orphan_reasons": dict(Counter(o["reason"] for o in orphaned).most_common()),
        "platform_owned": sum(1 for e in entries if e["platform_owned"]),
        "managed_identities": sum(1 for e in entries if e["kind"] == "managed_identity"),
        "malformed_skipped": sum(d["skipped"] for d in discovered),
        "top_risky": [
            {
                "tenant": e["tenant"],
                "display_name": e["display_name"][:80],
                "external_id": e["external_id"],
                "reasons": e["risk_reasons"][:3],
            }
            for e in risky[:5]
        ],
        "reports": paths,
        "owners": owners,
        "config": str(settings.path),
        "database": settings.database.url,
    }


def recert_command() -> str:
    """How to run this `recert` from any shell, with or without the venv activated."""
    script = Path(sys.argv[0])
    if script.name == "recert" and script.is_file():
        return str(script.resolve())
    beside = Path(sys.executable).parent / "recert"  # the venv's console script
    return str(beside) if beside.is_file() else f"{sys.executable} -m recert"


def _wait_for_interrupt(config: Path, tenants: SandboxTenants) -> None:
    urls = ", ".join(f"{name} {server.url}" for name, server in tenants.servers.items())
    recert = recert_command()
    print(f"\nEmulated tenants are up ({urls}).", flush=True)
    print(f"In another terminal: RECERT_CONFIG={config} {recert} discover", flush=True)
    admin = tenants.oidc.active_logins()[0]
    print(
        f"IAM console: RECERT_CONFIG={config} {recert} web, then open {WEB_URL}/console and "
        f"sign in as {admin} with password {tenants.oidc.password}",
        flush=True,
    )
    print("Press Ctrl-C to stop them.", flush=True)
    # Started in the background by a shell, Python inherits SIGINT ignored and would never
    # raise KeyboardInterrupt; a service manager stops it with SIGTERM.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopping the emulated tenants", flush=True)


def example_mail(directory: Path) -> Path | None:
    mails = sorted((directory / "mail").glob("*.eml"))
    return mails[0] if mails else None


def describe(result: DemoResult) -> str:
    """The closing summary a person wants: what was found, where to look, what next."""
    s = result.summary
    lines = [f"Recert demo: {s['principals']} principals discovered across three tenants"]
    for tenant, kinds in s["by_tenant"].items():
        lines.append(f"  {tenant}: " + ", ".join(f"{n} {k}" for k, n in kinds.items()))
    lines.append(
        f"Owned: {s['owned']}   orphaned: {s['orphaned']}   platform-owned: {s['platform_owned']}"
        f"   managed identities: {s['managed_identities']}"
        f"   malformed records skipped: {s['malformed_skipped']}"
    )
    if s["orphan_reasons"]:
        reasons = ", ".join(f"{n} {reason}" for reason, n in s["orphan_reasons"].items())
        lines.append(f"Orphaned, by reason: {reasons}")
    if s["top_risky"]:
        lines.append("Top risky apps:")
        for app in s["top_risky"]:
            name = app["display_name"].encode("unicode_escape").decode("ascii")
            lines.append(f"  [{app['tenant']}] {name}: {'; '.join(app['reasons'])}")
    campaign = s["campaign"]
    lines.append(
        f"Campaign {campaign['name']!r}: {campaign['apps']} apps to review; "
        f"{campaign['reviewers_emailed']} reviewers emailed ({campaign['to_iam']} orphaned apps "
        f"went to the IAM team); due {campaign['due_at'][:10]}"
    )
    expiry = s["credential_expiry"]
    lines.append(
        f"Credential-expiry notices: {expiry['digests']} digests listing {expiry['notices']} "
        f"expiring or expired credentials ({expiry['orphaned']} of orphaned apps to IAM)"
    )
    lines.append(f"Emails sent: {s['emails_sent']}, each an .eml file in {s['mail_dir']}")
    lines.extend(_describe_day_fifteen(s["day15"]))
    lines.append("Look at:")
    lines.append(f"  orphan report   {s['reports']['orphans']}")
    lines.append(f"  risky report    {s['reports']['risky']}")
    mail = example_mail(result.directory)
    if mail:
        lines.append(f"  example email   {mail}")
    lines.append(f"  evidence bundle {s['evidence']['path']} (verified)")
    lines.append(f"  config          {result.config}")
    run = f"RECERT_CONFIG={result.config} {recert_command()}"
    lines.append("Explore the same data (no venv to activate):")
    lines.append(f"  {run} inventory --format json")
    lines.append(f"  {run} report orphans --format csv")
    lines.append(f"  {run} campaign status")
    lines.append(f"  {run} audit verify")
    lines.append(f"  {run} evidence verify {s['evidence']['path']}")
    lines.append(f"  RECERT_NOW={s['day15']['at']} {run} enforce --plan")
    lines.append("Answer a review as an owner would: serve the review pages, then open a link:")
    lines.append(f"  {run} web")
    link = review_link(mail) if mail else None
    if link:
        lines.append(f"  {link}")
    lines.append(
        "IAM console: run `recert demo --keep-running`, then `recert web` with its config and "
        f"open {WEB_URL}/console to sign in through the emulated Okta org"
    )
    return "\n".join(lines)


def review_link(path: Path) -> str | None:
    """The signed review link of a digest email, as its reader would click it."""
    body = read_mail(path).get_body(("plain",))
    text = body.get_content() if body else ""
    return next((word for word in text.split() if "/review/" in word), None)


def _describe_day_fifteen(day15: dict[str, Any]) -> list[str]:
    answered = ", ".join(f"{n} {action}" for action, n in sorted(day15["answered"].items()))
    lines = [
        f"Day 15 ({day15['at'][:10]}): owners answered ({answered or 'none'}), the rest said "
        "nothing. Enforcement plan, dry run (nothing is changed):"
    ]
    for plan in day15["plan"]:
        actions = ", ".join(f"{a} {n}" for a, n in sorted(plan["actions"].items())) or "nothing"
        refused = ", ".join(f"{rule} {n}" for rule, n in plan["refused"].items()) or "none"
        lines.append(f"  {plan['tenant']}: would {actions}; refused: {refused}")
        for example in plan["examples"]:
            name = example["display_name"][:60].encode("unicode_escape").decode("ascii")
            final = "" if example["reversible"] else " (cannot be undone)"
            lines.append(f"    {example['action']} '{name}': {example['reason']}{final}")
        if plan["blocked"]:
            lines.append(f"    BLOCKED, so nothing would change here: {plan['blocked']}")
    return lines


def default_directory() -> Path:
    return Path.cwd() / f"recert-demo-{datetime.now(UTC):%Y%m%d-%H%M%S}"


def read_mail(path: Path) -> Any:
    return message_from_bytes(path.read_bytes(), policy=policy.default)
