"""The `recert` command. Exit codes: 0 ok, 1 failure, 2 bad usage or config."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from recert import audit, db
from recert.clock import Clock, ClockError, clock_from_env
from recert.config import ConfigError, Settings, load_settings, require_secrets

if TYPE_CHECKING:
    from recert.discovery import SyncSummary

app = typer.Typer(
    help="Recert finds OAuth clients, service principals and service accounts in Okta, "
    "Entra ID and Google, asks their owners to attest them, and disables what nobody "
    "attests. Config: RECERT_CONFIG (default ./recert.toml). Exit codes: 0 ok, "
    "1 failure, 2 bad usage or config.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
campaign_app = typer.Typer(help="Open review campaigns and follow their progress.")
report_app = typer.Typer(help="IAM reports: orphaned, stale and risky apps.")
evidence_app = typer.Typer(help="Compliance evidence bundles.")
audit_app = typer.Typer(help="The tamper-evident audit log.")
catalog_app = typer.Typer(help="The app catalog kept by the IAM team.")
for sub, name in (
    (campaign_app, "campaign"),
    (report_app, "report"),
    (evidence_app, "evidence"),
    (audit_app, "audit"),
    (catalog_app, "catalog"),
):
    app.add_typer(sub, name=name)


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"


class ReportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"
    HTML = "html"


FormatOption = Annotated[Format, typer.Option("--format", help="text for people, json for scripts")]
TenantOption = Annotated[
    list[str] | None, typer.Option("--tenant", help="Only this tenant (repeatable).")
]


@dataclass
class Context:
    settings: Settings
    clock: Clock

    @cached_property
    def engine(self) -> Engine:
        """The database, which must be at the newest schema (`recert init` migrates)."""
        return db.require_current(db.make_engine(self.settings.database.url))

    def migrated_engine(self) -> Engine:
        """The database, created or migrated to the newest schema first."""
        engine = db.make_engine(self.settings.database.url)
        db.upgrade(engine)
        return engine

    def database_label(self) -> str:
        return db.label(self.settings.database.url)


def _context() -> Context:
    return Context(settings=load_settings(), clock=clock_from_env())


def _emit_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"recert: {message}", err=True)
    raise typer.Exit(code)


def _not_yet(command: str, arrives_with: str) -> NoReturn:
    _fail(f"`{command}` is not available yet: it arrives with {arrives_with}.")


@app.command()
def init(output: FormatOption = Format.TEXT) -> None:
    """Create the database or migrate it to the newest schema (safe to re-run)."""
    ctx = _context()
    ctx.migrated_engine()
    revision = db.head_revision()
    if output is Format.JSON:
        _emit_json({"database": ctx.database_label(), "revision": revision})
    else:
        typer.echo(f"database {ctx.database_label()} is at schema revision {revision}")


@app.command()
def discover(tenant: TenantOption = None, output: FormatOption = Format.TEXT) -> None:
    """Enumerate every configured tenant (or --tenant) and update the inventory.

    Each tenant's discovery holds that tenant's lock, shared with the Celery workers: a
    tenant already being discovered elsewhere is skipped, named, and the exit code is 1.
    """
    from recert import runs
    from recert.locks import AlreadyRunning
    from recert.progress import step

    ctx = _context()
    tenants = [ctx.settings.tenant(n) for n in tenant] if tenant else ctx.settings.tenants
    if not tenants:
        _fail(f"{ctx.settings.path}: no [[tenants]] configured", code=2)
    for configured in tenants:
        require_secrets(configured.read)  # all missing credentials before any tenant runs
    engine = ctx.migrated_engine()
    summaries, busy = [], []
    for configured in tenants:
        try:
            with step(f"discover {configured.name}") as progress:
                summary = runs.discover(
                    engine,
                    ctx.settings,
                    configured.name,
                    ctx.clock,
                    on_page=lambda _t, page: progress.advance(len(page.principals), "records"),
                )
        except AlreadyRunning as running:
            busy.append(str(running))
            typer.echo(f"recert: {running}", err=True)
            continue
        summaries.append(summary)
    if output is Format.JSON:
        _emit_json([s.as_dict() for s in summaries])
    else:
        for s in summaries:
            typer.echo(sync_line(s))
    if busy or any(s.error for s in summaries):
        raise typer.Exit(1)


def sync_line(s: SyncSummary) -> str:
    """One tenant's discovery in a line; a delta run says what changed, not a total."""
    hidden = "".join(f"; not visible: {k} ({why})" for k, why in s.not_visible.items())
    if s.status == "complete" and not s.full:
        return (
            f"{s.tenant}: delta: {s.principals_seen} changed, {s.deleted} removed "
            f"({s.new} new); {s.skipped} malformed records skipped{hidden}"
        )
    kinds = ", ".join(f"{n} {k}" for k, n in s.by_kind.items()) or "none"
    line = (
        f"{s.tenant}: {s.status}; {s.principals_seen} principals ({kinds}); "
        f"{s.new} new, {s.deleted} deleted, {s.skipped} malformed records skipped"
    )
    return line + hidden + (f"; error: {s.error}" if s.error else "")


@app.command()
def inventory(
    output: Annotated[Format, typer.Option("--format")] = Format.JSON,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    include_deleted: Annotated[bool, typer.Option(help="Also list deleted principals.")] = False,
) -> None:
    """Every principal with its owners, grants, credentials, last use and risk."""
    from recert.inventory import inventory as build

    ctx = _context()
    with Session(ctx.engine) as session:
        entries = build(session, tenant, include_deleted)
    if output is Format.JSON:
        _emit_json(entries)
        return
    for e in entries:
        owner = e["owners"][0]["email"] if e["owners"] else e["orphan_reason"] or "-"
        flags = " platform-owned" if e["platform_owned"] else ""
        typer.echo(
            f"{e['tenant']}\t{e['kind']}\t{e['external_id']}\t{e['display_name']!r}\t"
            f"{e['status']}\t{e['risk']}\t{owner}{flags}"
        )


@audit_app.command("verify")
def audit_verify(output: FormatOption = Format.TEXT) -> None:
    """Check the hash chain; exit 1 naming the first event that was tampered with."""
    ctx = _context()
    with Session(ctx.engine) as session:
        result = audit.verify(session)
    if output is Format.JSON:
        _emit_json(
            {
                "ok": result.ok,
                "events": result.events,
                "head": result.head,
                "first_bad_seq": result.first_bad_seq,
                "problem": result.problem,
            }
        )
    elif result.ok:
        typer.echo(f"audit chain intact: {result.events} events, head {result.head}")
    else:
        typer.echo(
            f"audit chain broken at event {result.first_bad_seq}: {result.problem} "
            f"({result.events} events verified before it)",
            err=True,
        )
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def owners(tenant: TenantOption = None, output: FormatOption = Format.TEXT) -> None:
    """Score risk and resolve an accountable, active owner for every principal.

    Exit 1 when a catalog manifest is rejected: each problem is named, and the apps it may
    be about keep their previous owners until it is fixed."""
    from recert.analysis import analyze
    from recert.catalog import load_catalog

    ctx = _context()
    catalog = load_catalog(ctx.settings.catalog_dir)
    results = analyze(ctx.engine, ctx.settings, ctx.clock, tenant, catalog)
    for problem in catalog.problems:
        typer.echo(f"recert: catalog: {problem}", err=True)
    if output is Format.JSON:
        _emit_json(results)
        results = []
    for r in results:
        reasons = ", ".join(f"{n} {k}" for k, n in r["orphan_reasons"].items())
        typer.echo(
            f"{r['tenant']}: {r['owned']} owned, {r['orphaned']} orphaned"
            + (f" ({reasons})" if reasons else "")
            + f", {r['not_reviewed']} platform-owned or managed; {r['changed']} changed"
            + (f"; {r['held']} kept their previous owner (catalog problem)" if r["held"] else "")
        )
    if catalog.problems:
        raise typer.Exit(1)


@campaign_app.command("open")
def campaign_open(
    name: Annotated[str | None, typer.Option(help="Campaign name (default: today's date).")] = None,
    tenant: TenantOption = None,
    kind: Annotated[
        list[str] | None, typer.Option("--kind", help="Only this principal kind (repeatable).")
    ] = None,
    risk: Annotated[
        list[str] | None, typer.Option("--risk", help="Only this risk tier (repeatable).")
    ] = None,
    output: FormatOption = Format.TEXT,
) -> None:
    """Open a review campaign: one review item per in-scope principal (safe to re-run)."""
    from recert.campaigns import NothingToReview, open_campaign

    ctx = _context()
    engine = ctx.migrated_engine()
    try:
        with db.session_scope(engine) as session:
            summary = open_campaign(
                session, ctx.settings, ctx.clock, name=name, tenants=tenant, kinds=kind, risks=risk
            )
    except NothingToReview as nothing:
        _fail(str(nothing))
    if output is Format.JSON:
        _emit_json(summary.as_dict())
        return
    verb = "opened" if summary.created else "already open:"
    typer.echo(
        f"{verb} {summary.name!r} (id {summary.campaign_id}): {summary.items} apps for "
        f"{summary.reviewers} reviewers, {summary.to_iam} to the IAM team; due "
        f"{summary.due_at:%Y-%m-%d %H:%M} UTC. Send the requests with `recert notify`."
    )


@campaign_app.command("status")
def campaign_status(
    campaign: Annotated[int | None, typer.Option(help="Campaign id (default: all open).")] = None,
    output: FormatOption = Format.TEXT,
) -> None:
    """Progress of the open campaigns (or one), per tenant and per owner."""
    from recert.campaigns import status

    ctx = _context()
    with Session(ctx.engine) as session:
        progress = status(session, campaign)
    if output is Format.JSON:
        _emit_json(progress)
        return
    if not progress:
        typer.echo("no open campaigns")
    for c in progress:
        typer.echo(
            f"{c['name']} (id {c['campaign_id']}): {c['decided']}/{c['items']} decided "
            f"({c['completion']:.0%}), due {c['due_at']}"
        )
        for label, rows in (("tenant", c["per_tenant"]), ("owner", c["per_owner"])):
            for key, counts in rows.items():
                typer.echo(f"  {label} {key}: {counts.get('decided', 0)}/{counts['items']} decided")


@app.command()
def notify(output: FormatOption = Format.TEXT) -> None:
    """Queue the emails that are due (request, reminder, final warning, escalations, and
    today's credential-expiry digests) and send the outbox over SMTP. Safe to re-run: no
    email is ever sent twice. Holds the notify lock shared with the Celery workers."""
    from recert import runs
    from recert.locks import AlreadyRunning

    ctx = _context()
    engine = ctx.engine
    try:
        expiry, summary = runs.notify(engine, ctx.settings, ctx.clock)
    except AlreadyRunning as running:
        _fail(str(running))
    if output is Format.JSON:
        _emit_json({**summary.as_dict(), "credential_expiry": expiry.as_dict()})
    else:
        typer.echo(
            f"queued {summary.queued}, sent {summary.sent}, hard bounces {summary.bounced}, "
            f"retrying later {summary.retrying}, failed {summary.failed}; credential-expiry "
            f"digests {expiry.digests} ({expiry.notices} notices, {expiry.orphaned} to IAM, "
            f"{expiry.deferred} held for tomorrow)"
        )
    if summary.failed or expiry.unmailable:
        raise typer.Exit(1)


@app.command()
def enforce(
    plan: Annotated[
        bool, typer.Option("--plan", help="Show what a run would do now; act on nothing.")
    ] = False,
    tenant: TenantOption = None,
    output: FormatOption = Format.TEXT,
) -> None:
    """Disable what nobody attested in time, within the safety rules.

    Each tenant's `enforcement` mode decides: off does nothing, dry-run (the default)
    records the plan as an audit event, enforce carries it out. Exit 1 when a safety rule
    held a tenant's changes back, a tenant is being enforced elsewhere, or a change failed.
    """
    from recert import enforcement
    from recert.locks import AlreadyRunning

    ctx = _context()
    engine = ctx.engine
    db.upgrade(engine)
    if plan:
        with Session(engine) as session:
            plans = enforcement.plan(session, ctx.settings, ctx.clock, tenant)
        if output is Format.JSON:
            _emit_json([p.as_dict() for p in plans])
        else:
            for tenant_plan in plans:
                _print_plan(tenant_plan.as_dict())
        return
    try:
        summaries = enforcement.enforce(engine, ctx.settings, ctx.clock, tenant)
    except AlreadyRunning as running:
        _fail(str(running))
    if output is Format.JSON:
        _emit_json([s.as_dict() for s in summaries])
    else:
        for s in summaries:
            typer.echo(
                f"{s.tenant} ({s.mode}): {s.status}; {s.planned} planned, {s.done} done, "
                f"{s.retrying} to retry, {s.failed} failed, {s.refused} refused; "
                f"{s.notices} notices and {s.alerts} IAM alerts queued"
                + (f"; {s.blocked}" if s.blocked and s.status == "blocked" else "")
                + (f"; {s.error}" if s.error else "")
            )
    held_back = any(s.status == "blocked" and s.planned for s in summaries)
    if held_back or any(s.status == "skipped" or s.failed for s in summaries):
        raise typer.Exit(1)


def _print_plan(plan: dict[str, Any]) -> None:
    head = f"{plan['tenant']} (mode {plan['mode']}): {len(plan['actions'])} actions, "
    head += f"{len(plan['refused'])} refused"
    typer.echo(head + (f"; BLOCKED: {plan['blocked']}" if plan["blocked"] else ""))
    for action in plan["actions"]:
        what = f" {action['permission']}" if action["permission"] else ""
        typer.echo(
            f"  {action['action']}{what}\t{action['kind']}\t{action['external_id']}\t"
            f"{action['display_name']!r}\t{action['reason']}"
        )
        if not action["reversible"]:
            users = ", ".join(action["must_consent_again"]) or "every consenting user"
            typer.echo(f"    cannot be undone: users must consent again: {users}")
    for refusal in plan["refused"]:
        typer.echo(
            f"  refused\t{refusal['kind']}\t{refusal['external_id']}\t"
            f"{refusal['display_name']!r}\t{refusal['rule']}: {refusal['detail']}"
        )
    for failed in plan["failed"]:
        typer.echo(
            f"  failed earlier\t{failed['external_id']}\t{failed['display_name']!r}\t"
            f"{failed['action']}: {failed['error']}"
        )


@app.command()
def reenable(
    tenant: Annotated[str, typer.Argument(help="Tenant name from the config.")],
    external_id: Annotated[str, typer.Argument(help="The provider's id of the app.")],
    reason: Annotated[str, typer.Option(help="Why it is re-enabled (audited).")],
    actor: Annotated[
        str | None, typer.Option(help="Who re-enables it (audited; default: your login).")
    ] = None,
    output: FormatOption = Format.TEXT,
) -> None:
    """Restore an app exactly as it was before Recert disabled or reduced it: its status
    and the permissions Recert removed. Google token revokes cannot be undone: the command
    says so, names the users who must consent again, and exits 1."""
    import getpass

    from recert import enforcement
    from recert.locks import AlreadyRunning

    ctx = _context()
    engine = ctx.engine
    db.upgrade(engine)
    try:
        result = enforcement.reenable(
            engine, ctx.settings, ctx.clock, tenant, external_id, reason, actor or getpass.getuser()
        )
    except (enforcement.ReenableRefused, AlreadyRunning) as refused:
        _fail(str(refused))
    if output is Format.JSON:
        _emit_json(result.as_dict())
    else:
        name = f"{tenant}/{external_id} ({result.display_name!r})"
        if result.already:
            typer.echo(f"{name}: already restored; nothing to do")
        if result.restored:
            typer.echo(f"{name}: restored: {'; '.join(result.restored)}")
        for problem in result.not_reversible:
            typer.echo(f"{name}: {problem['action']}: {problem['message']}", err=True)
        for failure in result.failed:
            typer.echo(f"{name}: {failure['action']} failed: {failure['error']}", err=True)
    if not result.ok:
        raise typer.Exit(1)


ReportOutput = Annotated[ReportFormat, typer.Option("--format", help="csv, json or html")]
ReportFile = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
]
ReportTenant = Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")]


def _report(kind: str, output: ReportFormat, path: Path | None, tenant: str | None) -> None:
    from recert import reports
    from recert.catalog import load_catalog

    ctx = _context()
    now = ctx.clock.now()
    catalog = load_catalog(ctx.settings.catalog_dir)
    with Session(ctx.engine) as session:
        rows = reports.build(kind, session, ctx.settings, now, tenant, catalog)
    text = reports.render(kind, rows, output.value, now)
    if path is None:
        typer.echo(text, nl=not text.endswith("\n"))
    else:
        path.write_text(text, encoding="utf-8")
        typer.echo(f"{len(rows)} apps written to {path}", err=True)


@report_app.command("orphans")
def report_orphans(
    output: ReportOutput = ReportFormat.CSV,
    path: ReportFile = None,
    tenant: ReportTenant = None,
    email: Annotated[
        bool, typer.Option("--email", help="Also mail this week's report to the IAM team.")
    ] = False,
) -> None:
    """Apps with no accountable active owner, and why (no_owner, owner_departed, ...)."""
    _report("orphans", output, path, tenant)
    if email:
        from recert.notify import queue_orphan_report, send_outbox

        ctx = _context()
        queued = queue_orphan_report(ctx.engine, ctx.settings, ctx.clock)
        sent = send_outbox(ctx.engine, ctx.settings, ctx.clock)
        typer.echo(
            f"orphan report for {ctx.settings.iam_email}: "
            + ("queued" if queued else "already sent this week")
            + f"; {sent.sent} sent, {sent.retrying} to retry",
            err=True,
        )


@report_app.command("link")
def report_link(
    days: Annotated[int, typer.Option(min=1, max=31, help="How long the link works.")] = 7,
) -> None:
    """Print a signed link to the report pages for the IAM team (served by `recert web`)."""
    from recert.reports import report_url

    ctx = _context()
    typer.echo(report_url(ctx.settings, ctx.clock.now(), days))


@report_app.command("stale")
def report_stale(
    output: ReportOutput = ReportFormat.CSV, path: ReportFile = None, tenant: ReportTenant = None
) -> None:
    """Apps unused for 90 days (unknown use is never reported as unused)."""
    _report("stale", output, path, tenant)


@report_app.command("risky")
def report_risky(
    output: ReportOutput = ReportFormat.CSV, path: ReportFile = None, tenant: ReportTenant = None
) -> None:
    """Risky apps: tenant-wide consent, mail/files/directory write, long-lived secrets."""
    _report("risky", output, path, tenant)


@report_app.command("enforcement")
def report_enforcement(
    output: ReportOutput = ReportFormat.CSV, path: ReportFile = None, tenant: ReportTenant = None
) -> None:
    """Enforcement changes that failed for good or are waiting for a retry."""
    _report("enforcement", output, path, tenant)


@report_app.command("uncataloged")
def report_uncataloged(
    output: ReportOutput = ReportFormat.CSV, path: ReportFile = None, tenant: ReportTenant = None
) -> None:
    """Apps no catalog manifest describes."""
    _report("uncataloged", output, path, tenant)


@evidence_app.command("export")
def evidence_export(
    output: Annotated[Path, typer.Option("--output", "-o", help="The zip file to write.")],
    campaign: Annotated[int | None, typer.Option(help="One campaign, by id.")] = None,
    quarter: Annotated[
        str | None, typer.Option(help="Every campaign opened in a quarter, e.g. 2026Q4.")
    ] = None,
    fmt: FormatOption = Format.TEXT,
) -> None:
    """Write the evidence bundle: decisions, items, emails, enforcement, exceptions,
    completeness and the audit-chain segment as CSV and JSON, summary.html, and a
    manifest of SHA-256 digests. The same database always gives a byte-identical zip."""
    from recert import evidence

    if (campaign is None) == (quarter is None):
        _fail("give exactly one of --campaign ID or --quarter YYYYQN", code=2)
    ctx = _context()
    with Session(ctx.engine) as session:
        try:
            scope = (
                evidence.campaign_scope(session, campaign)
                if campaign is not None
                else evidence.quarter_scope(session, quarter or "")
            )
        except evidence.EvidenceError as error:
            _fail(str(error), code=2)
        summary = evidence.export(session, scope, output)
    if fmt is Format.JSON:
        _emit_json(summary.as_dict())
        return
    rows = summary.counts
    typer.echo(
        f"evidence for {scope.label} written to {output}: {rows['items']} items, "
        f"{rows['decisions']} decisions, {rows['emails']} emails, {rows['enforcement']} "
        f"enforcement actions, {rows['audit_events']} audit events (head "
        f"{summary.chain['head_hash'][:16]}…); sha256 {summary.sha256}"
    )


@evidence_app.command("verify")
def evidence_verify(
    bundle: Annotated[Path, typer.Argument(help="The evidence zip to check.")],
    fmt: FormatOption = Format.TEXT,
) -> None:
    """Check every file against the manifest and recompute the audit-chain segment up to
    its recorded head; exit 1 naming the first mismatch."""
    from recert.evidence import verify_bundle

    if not bundle.is_file():
        _fail(f"{bundle}: no such file", code=2)
    result = verify_bundle(bundle)
    if fmt is Format.JSON:
        _emit_json(result.as_dict())
    elif result.ok:
        typer.echo(
            f"evidence bundle intact: {result.files} files, {result.events} audit events "
            f"chained to head {result.head}"
        )
    else:
        typer.echo(f"evidence bundle NOT intact: {result.problem}", err=True)
    if not result.ok:
        raise typer.Exit(1)


@catalog_app.command("validate")
def catalog_validate(
    directory: Annotated[Path, typer.Argument(help="The folder of app manifests.")],
    output: FormatOption = Format.TEXT,
) -> None:
    """Check every manifest in a folder; name each bad file and field. Exit 1 if any."""
    from recert.catalog import load_catalog

    if not directory.is_dir():
        _fail(f"{directory}: not a folder", code=2)
    catalog = load_catalog(directory)
    if output is Format.JSON:
        _emit_json(
            {
                "valid": [str(e.path) for e in catalog.entries],
                "problems": [
                    {"path": str(p.path), "field": p.field, "problem": p.problem}
                    for p in catalog.problems
                ],
            }
        )
    else:
        for problem in catalog.problems:
            typer.echo(str(problem), err=True)
        typer.echo(f"{len(catalog.entries)} manifests valid, {len(catalog.problems)} rejected")
    if catalog.problems:
        raise typer.Exit(1)


@app.command()
def web(
    host: Annotated[
        str, typer.Option(help="Address to listen on (behind a TLS proxy in production).")
    ] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option(help="Port to listen on (default: the port of web.base_url, else 8000)."),
    ] = None,
) -> None:
    """Serve the owners' attestation pages (the signed links in review emails open here),
    the IAM report pages and, with [web.oidc], the IAM console at /console.

    Migrates the database first. Needs web.secret_key_env (or _file) to check the links.
    Logs each request (uvicorn's access log), with the link tokens in paths redacted.
    """
    import socket
    from urllib.parse import urlsplit

    import uvicorn

    from recert.web import create_app
    from recert.web.access_log import log_requests

    ctx = _context()
    engine = ctx.migrated_engine()
    site = create_app(ctx.settings, engine, ctx.clock)
    port = port or urlsplit(ctx.settings.web.base_url).port or 8000
    # Bound before announcing: once the line is printed, connections are accepted.
    listener = socket.create_server((host, port))
    base = ctx.settings.web.base_url.rstrip("/")
    console = f"; IAM console at {base}/console" if ctx.settings.web.oidc else ""
    typer.echo(f"recert web: serving on http://{host}:{port} (links use {base}){console}")
    server = uvicorn.Server(uvicorn.Config(site, log_level="warning", server_header=False))
    log_requests()  # after uvicorn's logging setup, which the Config just applied
    server.run(sockets=[listener])


@app.command()
def demo(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Folder for everything the demo writes (default: a new one)."),
    ] = None,
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="Keep the emulated tenants up afterwards.")
    ] = False,
) -> None:
    """Run Recert end to end against emulated Okta, Entra and Google tenants."""
    from recert import demo as demo_run

    target = directory or demo_run.default_directory()
    typer.echo(f"recert demo: writing everything to {target}", err=True)
    demo_run.run(
        target.resolve(),
        keep_running=keep_running,
        on_summary=lambda result: typer.echo(demo_run.describe(result)),
    )


def main() -> None:
    from recert.broker import BrokerUnavailable

    try:
        app()
    except (ConfigError, ClockError) as error:
        typer.echo(f"recert: {error}", err=True)
        sys.exit(2)
    except db.DatabaseError as error:
        typer.echo(f"recert: {error}", err=True)
        sys.exit(error.exit_code)
    except OperationalError as error:  # the database went away in the middle of a command
        typer.echo(f"recert: database error: {db.first_line(error)}", err=True)
        sys.exit(1)
    except BrokerUnavailable as error:
        typer.echo(f"recert: cannot take the job lock: {error}", err=True)
        sys.exit(1)
