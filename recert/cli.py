"""The `recert` command. Exit codes: 0 ok, 1 failure, 2 bad usage or config."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from sqlalchemy import Engine, make_url
from sqlmodel import Session

from recert import audit, db
from recert.clock import Clock, ClockError, clock_from_env
from recert.config import ConfigError, Settings, load_settings

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

    @property
    def engine(self) -> Engine:
        return db.make_engine(self.settings.database.url)

    def database_label(self) -> str:
        return make_url(self.settings.database.url).render_as_string(hide_password=True)


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
    engine = ctx.engine
    revision = db.upgrade(engine)
    if output is Format.JSON:
        _emit_json({"database": ctx.database_label(), "revision": revision})
    else:
        typer.echo(f"database {ctx.database_label()} is at schema revision {revision}")


@app.command()
def discover(tenant: TenantOption = None, output: FormatOption = Format.TEXT) -> None:
    """Enumerate every configured tenant (or --tenant) and update the inventory."""
    from recert.analysis import analyze
    from recert.progress import discover_with_progress

    ctx = _context()
    tenants = [ctx.settings.tenant(n) for n in tenant] if tenant else ctx.settings.tenants
    if not tenants:
        _fail(f"{ctx.settings.path}: no [[tenants]] configured", code=2)
    engine = ctx.engine
    db.upgrade(engine)
    summaries = []
    for configured in tenants:
        summary = discover_with_progress(engine, configured, ctx.clock)
        summaries.append(summary)
        if summary.status == "complete":
            analyze(engine, ctx.settings, ctx.clock, [configured.name])
    if output is Format.JSON:
        _emit_json([s.as_dict() for s in summaries])
    else:
        for s in summaries:
            kinds = ", ".join(f"{n} {k}" for k, n in s.by_kind.items()) or "none"
            line = (
                f"{s.tenant}: {s.status}; {s.principals_seen} principals ({kinds}); "
                f"{s.new} new, {s.deleted} deleted, {s.skipped} malformed records skipped"
            )
            hidden = "".join(f"; not visible: {k} ({why})" for k, why in s.not_visible.items())
            typer.echo(line + hidden + (f"; error: {s.error}" if s.error else ""))
    if any(s.error for s in summaries):
        raise typer.Exit(1)


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
    """Score risk and resolve an accountable, active owner for every principal."""
    from recert.analysis import analyze

    ctx = _context()
    results = analyze(ctx.engine, ctx.settings, ctx.clock, tenant)
    if output is Format.JSON:
        _emit_json(results)
        return
    for r in results:
        reasons = ", ".join(f"{n} {k}" for k, n in r["orphan_reasons"].items())
        typer.echo(
            f"{r['tenant']}: {r['owned']} owned, {r['orphaned']} orphaned"
            + (f" ({reasons})" if reasons else "")
            + f", {r['not_reviewed']} platform-owned or managed; {r['changed']} changed"
        )


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
    from recert.campaigns import open_campaign

    ctx = _context()
    engine = ctx.engine
    db.upgrade(engine)
    with db.session_scope(engine) as session:
        summary = open_campaign(
            session, ctx.settings, ctx.clock, name=name, tenants=tenant, kinds=kind, risks=risk
        )
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
    """Queue the emails that are due (request, reminder, final warning, escalations) and
    send the outbox over SMTP. Safe to re-run: no email is ever sent twice."""
    from recert.notify import notify as run_notify

    ctx = _context()
    engine = ctx.engine
    summary = run_notify(engine, ctx.settings, ctx.clock)
    if output is Format.JSON:
        _emit_json(summary.as_dict())
    else:
        typer.echo(
            f"queued {summary.queued}, sent {summary.sent}, hard bounces {summary.bounced}, "
            f"retrying later {summary.retrying}, failed {summary.failed}"
        )
    if summary.failed:
        raise typer.Exit(1)


@app.command()
def enforce(
    plan: Annotated[
        bool, typer.Option("--plan", help="Show what would happen; act on nothing.")
    ] = False,
) -> None:
    """Disable what nobody attested in time, within the safety rules."""
    _not_yet("recert enforce", "the enforcement issue")


@app.command()
def reenable(
    tenant: Annotated[str, typer.Argument(help="Tenant name from the config.")],
    external_id: Annotated[str, typer.Argument(help="The provider's id of the app.")],
    reason: Annotated[str, typer.Option(help="Why it is re-enabled (audited).")],
) -> None:
    """Restore a disabled app exactly as it was before Recert disabled it."""
    _not_yet("recert reenable", "the enforcement issue")


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


@report_app.command("uncataloged")
def report_uncataloged(
    output: ReportOutput = ReportFormat.CSV, path: ReportFile = None, tenant: ReportTenant = None
) -> None:
    """Apps no catalog manifest describes."""
    _report("uncataloged", output, path, tenant)


@evidence_app.command("export")
def evidence_export() -> None:
    """Write the quarterly evidence bundle (CSV/JSON/HTML with a SHA-256 manifest)."""
    _not_yet("recert evidence export", "the evidence issue")


@evidence_app.command("verify")
def evidence_verify() -> None:
    """Check an evidence bundle against its manifest and audit-chain head."""
    _not_yet("recert evidence verify", "the evidence issue")


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
    """Serve the owners' attestation pages: the signed links in review emails open here.

    Migrates the database first. Needs web.secret_key_env (or _file) to check the links.
    """
    import socket
    from urllib.parse import urlsplit

    import uvicorn

    from recert.web import create_app

    ctx = _context()
    engine = ctx.engine
    db.upgrade(engine)
    site = create_app(ctx.settings, engine, ctx.clock)
    port = port or urlsplit(ctx.settings.web.base_url).port or 8000
    # Bound before announcing: once the line is printed, connections are accepted.
    listener = socket.create_server((host, port))
    typer.echo(
        f"recert web: serving on http://{host}:{port} (links use {ctx.settings.web.base_url})"
    )
    server = uvicorn.Server(uvicorn.Config(site, log_level="warning", server_header=False))
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
    result = demo_run.run(target.resolve(), keep_running=keep_running)
    typer.echo(demo_run.describe(result))


def main() -> None:
    try:
        app()
    except (ConfigError, ClockError) as error:
        typer.echo(f"recert: {error}", err=True)
        sys.exit(2)
