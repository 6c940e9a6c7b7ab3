"""The IAM console: overview charts, inventory, one page per principal, the IAM queue,
enforcement, reports and evidence. Admins only, signed in through OpenID Connect.

Every page is server-rendered HTML with inline SVG charts: no JavaScript, nothing loaded
from elsewhere, so the strict Content-Security-Policy holds. GET never changes anything;
bulk assignment, re-enabling and signing out are POSTs carrying the session's CSRF token,
and each is audited.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from connectors.base import ConnectorError
from recert import charts, enforcement, evidence, reports
from recert.catalog import load_catalog
from recert.clock import Clock
from recert.config import ConfigError, Settings
from recert.db import session_scope
from recert.enforcement import ReenableRefused, ReenableResult
from recert.iam_queue import AssignRefused, AssignResult, assign
from recert.locks import AlreadyRunning
from recert.models import Campaign, Principal, Tenant
from recert.web import views
from recert.web.auth import (
    CALLBACK,
    SESSION_COOKIE,
    SIGNED_OUT,
    AccessWithdrawn,
    Admin,
    AdminAuth,
    NotAnAdmin,
    SignInFailed,
)

NAV = (
    ("overview", "/console", "Overview"),
    ("inventory", "/console/inventory", "Inventory"),
    ("queue", "/console/queue", "IAM queue"),
    ("enforcement", "/console/enforcement", "Enforcement"),
    ("reports", "/console/reports", "Reports"),
    ("evidence", "/console/evidence", "Evidence"),
)


class FormRefused(Exception):
    """A console form came without a live session or with a stale CSRF token."""


class SignInRequired(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def _safe_next(value: str | None) -> str:
    """Only ever back into the console: never an address a request names."""
    if value and value.startswith("/console") and not value.startswith("//"):
        return value
    return "/console"


@dataclass
class Console:
    settings: Settings
    engine: Engine
    clock: Callable[[], Clock]
    templates: Environment
    auth: AdminAuth | None

    def install(self, app: FastAPI) -> None:
        app.add_exception_handler(SignInRequired, self.sign_in_required)  # type: ignore[arg-type]
        app.add_exception_handler(FormRefused, self.form_refused)  # type: ignore[arg-type]
        app.add_exception_handler(AccessWithdrawn, self.access_withdrawn)  # type: ignore[arg-type]
        routes: list[tuple[str, Callable[..., Any], str]] = [
            ("/console", self.overview, "GET"),
            ("/console/sign-in", self.sign_in, "GET"),
            (CALLBACK, self.callback, "GET"),
            ("/console/sign-out", self.sign_out, "POST"),
            ("/console/signed-out", self.signed_out, "GET"),
            ("/console/inventory", self.inventory, "GET"),
            ("/console/principals/{principal_id}", self.principal, "GET"),
            ("/console/queue", self.queue, "GET"),
            ("/console/queue/assign", self.assign, "POST"),
            ("/console/enforcement", self.enforcement_page, "GET"),
            ("/console/enforcement/reenable", self.reenable, "POST"),
            ("/console/reports", self.report_index, "GET"),
            ("/console/reports/{kind}", self.report, "GET"),
            ("/console/evidence", self.evidence_page, "GET"),
            ("/console/evidence/campaigns/{campaign_id}", self.campaign_bundle, "GET"),
            ("/console/evidence/quarters/{quarter}", self.quarter_bundle, "GET"),
        ]
        for path, handler, method in routes:
            app.add_api_route(path, handler, methods=[method])

    # --- sign-in ---------------------------------------------------------------------------

    def _auth(self) -> AdminAuth:
        if self.auth is None:
            raise HTTPException(404)
        return self.auth

    def _admin(self, request: Request) -> Admin:
        admin = self._auth().current(request, self.clock())
        if admin is None:
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise SignInRequired(path)
        return admin

    def _posting_admin(self, request: Request, csrf: str) -> Admin:
        """A form POST: a live session and its CSRF token, or nothing happens."""
        admin = self._auth().current(request, self.clock())
        if admin is None or not hmac.compare_digest(csrf, admin.csrf(self._auth().secret)):
            raise FormRefused
        return admin

    def form_refused(self, request: Request, error: FormRefused) -> Response:
        return self._problem(
            403,
            "This form could not be accepted",
            "Your console session has ended, or the form came from an old page. Nothing was "
            "changed: sign in again and resubmit.",
        )

    def access_withdrawn(self, request: Request, error: AccessWithdrawn) -> Response:
        response = self._problem(
            403,
            "No longer an IAM admin",
            f"{error.email} is no longer an admin of Recert, so this console session has "
            f"ended and nothing was changed. Ask {self.settings.iam_email} if you need access.",
        )
        response.delete_cookie(SESSION_COOKIE, path="/console")
        return response

    def sign_in_required(self, request: Request, error: SignInRequired) -> Response:
        target = "/console/sign-in?" + urlencode({"next": error.next_path})
        return RedirectResponse(target, status_code=303)

    async def sign_in(self, request: Request, next: str | None = None) -> Response:  # noqa: A002
        auth = self._auth()
        request.session["next"] = _safe_next(next)
        try:
            response: Response = await auth.redirect_to_provider(request)
        except SignInFailed as failure:
            return self._problem(502, "Sign-in is unavailable", f"Sign-in failed: {failure}.")
        return response

    async def callback(self, request: Request) -> Response:
        auth = self._auth()
        try:
            claims = await auth.identity(request)
            token, expires = await run_in_threadpool(
                auth.start_session, request, self.clock(), claims
            )
        except SignInFailed as failure:
            return self._problem(
                400,
                "Sign-in failed",
                f"Sign-in failed: {failure}. Start again from the console's sign-in page.",
            )
        except NotAnAdmin as refused:
            return self._problem(
                403,
                "Not an IAM admin",
                f"You signed in as {refused.email or 'an unknown user'}, who is not an admin "
                f"of Recert. Ask {self.settings.iam_email} for access.",
            )
        target = _safe_next(request.session.pop("next", None))
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            expires=expires,
            httponly=True,
            samesite="lax",
            secure=auth.secure_cookie,
            path="/console",
        )
        return response

    async def sign_out(self, request: Request, csrf: Annotated[str, Form()] = "") -> Response:
        auth = self._auth()
        admin = self._posting_admin(request, csrf)
        id_token = await run_in_threadpool(auth.end_session, admin, self.clock())
        # The provider's sign-out comes next, from the signed-out page: the policy's
        # form-action 'self' forbids a form's redirect to another origin.
        provider_url = await auth.provider_sign_out_url(id_token)
        if provider_url:
            request.session["provider_sign_out"] = provider_url
        response = RedirectResponse(SIGNED_OUT, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/console")
        return response

    def signed_out(self, request: Request) -> Response:
        self._auth()
        return self._render(
            "console/signed_out.html",
            200,
            title="Signed out",
            admin=None,
            active="",
            provider_sign_out=request.session.pop("provider_sign_out", None),
        )

    # --- pages -------------------------------------------------------------------------

    def overview(self, request: Request, campaign: int | None = None) -> Response:
        admin = self._admin(request)
        now = self.clock().now()
        with Session(self.engine) as session:
            data = views.overview(session, self.settings, now, campaign)
        risk_colors = {reports.RISK_LABELS[k]: v for k, v in charts.RISK_COLORS.items()}
        chart_list = [
            (
                "completion",
                "Campaign completion over time",
                data.completion,
                True,
                "No campaign yet.",
            ),
            ("decisions", "Decisions by kind", data.decisions, False, "No decision yet."),
            ("orphans", "Orphans by tenant and kind", data.orphans, False, "No orphans."),
            ("expiries", "Credential expiries by month", data.expiries, False, ""),
        ]
        drawn = {
            key: (
                title,
                charts.bar_chart(
                    title, bars, percent=percent, color=charts.PALETTE[i], empty=empty or "None."
                ),
            )
            for i, (key, title, bars, percent, empty) in enumerate(chart_list)
        }
        drawn["risk"] = ("Risk mix", charts.pie_chart("Risk mix", data.risk, colors=risk_colors))
        order = ("completion", "decisions", "orphans", "risk", "expiries")
        return self._page(
            request,
            admin,
            "console/overview.html",
            "overview",
            "Overview",
            data=data,
            charts=[(key, *drawn[key]) for key in order],
        )

    def inventory(
        self,
        request: Request,
        q: str = "",
        tenant: str = "",
        kind: str = "",
        risk: str = "",
        status: str = "",
        owner: str = "",
        sort: str = "name",
        order: str = "asc",
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        per: int = views.PAGE_SIZE,
    ) -> Response:
        admin = self._admin(request)
        wanted = views.InventoryFilter(
            q=q[:200],
            tenant=tenant,
            kind=kind,
            risk=risk,
            status=status,
            owner=owner,
            sort=sort if sort in views.INVENTORY_SORTS else "name",
            descending=order == "desc",
            page=page,
            size=per if per in views.PAGE_SIZES else views.PAGE_SIZE,
        )
        with Session(self.engine) as session:
            result = views.inventory(session, wanted)
            tenants, kinds = views.tenants_and_kinds(session)
        params = {k: v for k, v in request.query_params.items() if v}
        return self._page(
            request,
            admin,
            "console/inventory.html",
            "inventory",
            "Inventory",
            result=result,
            wanted=wanted,
            tenants=tenants,
            kinds=[(k, views.kind_label(k)) for k in kinds],
            url=_linker("/console/inventory", params),
        )

    def principal(self, request: Request, principal_id: int) -> Response:
        admin = self._admin(request)
        with Session(self.engine) as session:
            page = views.principal_page(session, principal_id, self.clock().now())
        if page is None:
            raise HTTPException(404)
        return self._page(
            request,
            admin,
            "console/principal.html",
            "inventory",
            page.principal.display_name,
            page=page,
            can_reenable=page.disabled_by_recert,
        )

    def queue(
        self,
        request: Request,
        q: str = "",
        reason: str = "",
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    ) -> Response:
        admin = self._admin(request)
        return self._queue_page(request, admin, q[:200], reason, page, 200)

    def _queue_page(
        self,
        request: Request,
        admin: Admin,
        q: str,
        reason: str,
        page: int,
        status: int,
        outcome: AssignResult | None = None,
        error: str | None = None,
    ) -> Response:
        with Session(self.engine) as session:
            result = views.iam_queue(session, self.settings, q, reason, page)
        params = {k: v for k, v in {"q": q, "reason": reason, "page": str(page)}.items() if v}
        return self._page(
            request,
            admin,
            "console/queue.html",
            "queue",
            "IAM queue",
            status=status,
            result=result,
            q=q,
            reason=reason,
            reasons=views.QUEUE_REASONS,
            url=_linker("/console/queue", params),
            outcome=outcome,
            error=error,
        )

    def assign(
        self,
        request: Request,
        csrf: Annotated[str, Form()] = "",
        item: Annotated[list[int] | None, Form()] = None,
        owner: Annotated[str, Form()] = "",
        note: Annotated[str, Form()] = "",
    ) -> Response:
        admin = self._posting_admin(request, csrf)
        clock = self.clock()
        try:
            with session_scope(self.engine) as session:
                outcome = assign(
                    session,
                    self.settings,
                    clock,
                    item or [],
                    owner,
                    actor=admin.email,
                    justification=note,
                    source_ip=request.client.host if request.client else None,
                    user_agent=request.headers.get("user-agent"),
                )
        except AssignRefused as refused:
            return self._queue_page(request, admin, "", "", 1, 400, error=str(refused))
        status = 200 if outcome.assigned else 409
        return self._queue_page(request, admin, "", "", 1, status, outcome=outcome)

    def enforcement_page(self, request: Request) -> Response:
        admin = self._admin(request)
        return self._enforcement_page(request, admin, 200)

    def _enforcement_page(
        self,
        request: Request,
        admin: Admin,
        status: int,
        message: str | None = None,
        notes: list[str] | None = None,
    ) -> Response:
        with Session(self.engine) as session:
            plans = [p.as_dict() for p in enforcement.plan(session, self.settings, self.clock())]
            history = views.enforcement_history(session)
            disabled = views.disabled_by_recert(session)
            principal_ids = self._principal_ids(session, plans)
        return self._page(
            request,
            admin,
            "console/enforcement.html",
            "enforcement",
            "Enforcement",
            status=status,
            plans=plans,
            history=history,
            disabled=disabled,
            principal_ids=principal_ids,
            kinds=views.kind_label,
            message=message,
            message_ok=status == 200,
            notes=notes or [],
        )

    def _principal_ids(
        self, session: Session, plans: list[dict[str, Any]]
    ) -> dict[tuple[str, str], int]:
        """(tenant, external id) -> principal id, to link plan rows to principal pages."""
        wanted = {
            (plan["tenant"], row["external_id"])
            for plan in plans
            for row in [*plan.get("actions", []), *plan.get("refused", [])]
        }
        if not wanted:
            return {}
        rows = session.exec(
            select(Principal.id, Tenant.name, Principal.external_id)
            .join(Tenant, col(Tenant.id) == Principal.tenant_id)
            .where(col(Principal.external_id).in_(sorted({e for _, e in wanted})))
        ).all()
        return {(t, e): pid for pid, t, e in rows if pid and (t, e) in wanted}

    def reenable(
        self,
        request: Request,
        csrf: Annotated[str, Form()] = "",
        tenant: Annotated[str, Form()] = "",
        external_id: Annotated[str, Form()] = "",
        reason: Annotated[str, Form()] = "",
    ) -> Response:
        admin = self._posting_admin(request, csrf)
        why = " ".join(reason.split())
        if not why:
            message = "Say why the app is re-enabled: the reason is audited."
            return self._enforcement_page(request, admin, 400, message)
        try:
            result = enforcement.reenable(
                self.engine, self.settings, self.clock(), tenant, external_id, why, admin.email
            )
        except (ReenableRefused, ConnectorError, AlreadyRunning, ConfigError) as error:
            # The rules, the provider, a running enforcement or the config said no.
            app = self._app_name(tenant, external_id)
            message = f"{app} in {tenant} was not re-enabled: {error}"
            return self._enforcement_page(request, admin, 409, message)
        status, message, notes = _reenabled(result)
        return self._enforcement_page(request, admin, status, message, notes)

    def _app_name(self, tenant: str, external_id: str) -> str:
        with Session(self.engine) as session:
            name = session.exec(
                select(Principal.display_name)
                .join(Tenant, col(Tenant.id) == Principal.tenant_id)
                .where(Tenant.name == tenant, Principal.external_id == external_id)
            ).first()
        return f"{name} ({external_id})" if name else external_id

    def report_index(self, request: Request) -> Response:
        admin = self._admin(request)
        counts = {kind: len(self._report_rows(kind)) for kind in reports.REPORTS}
        return self._page(
            request,
            admin,
            "console/reports.html",
            "reports",
            "Reports",
            titles=reports.TITLES,
            counts=counts,
        )

    def report(
        self,
        request: Request,
        kind: str,
        output: Annotated[str, Query(alias="format")] = "html",
        sort: str = "",
        order: str = "asc",
    ) -> Response:
        self._admin(request)
        if kind not in reports.REPORTS or output not in ("html", "csv", "json"):
            raise HTTPException(404)
        rows = self._report_rows(kind)
        return report_response(
            kind,
            rows,
            output,
            self.clock().now(),
            f"/console/reports/{kind}",
            sort,
            order,
            back=("/console/reports", "All reports"),
        )

    def _report_rows(self, kind: str) -> list[dict[str, Any]]:
        catalog = load_catalog(self.settings.catalog_dir)
        with Session(self.engine) as session:
            return reports.build(kind, session, self.settings, self.clock().now(), catalog=catalog)

    def evidence_page(self, request: Request) -> Response:
        admin = self._admin(request)
        with Session(self.engine) as session:
            campaigns = list(
                session.exec(select(Campaign).order_by(col(Campaign.opened_at).desc()))
            )
        quarters = sorted(
            {f"{c.opened_at.year}Q{(c.opened_at.month - 1) // 3 + 1}" for c in campaigns},
            reverse=True,
        )
        return self._page(
            request,
            admin,
            "console/evidence.html",
            "evidence",
            "Evidence",
            campaigns=campaigns,
            quarters=quarters,
        )

    def campaign_bundle(self, request: Request, campaign_id: int) -> Response:
        self._admin(request)
        with Session(self.engine) as session:
            try:
                scope = evidence.campaign_scope(session, campaign_id)
            except evidence.EvidenceError:
                raise HTTPException(404) from None
            return _zip_response(session, scope, f"evidence-campaign-{campaign_id}.zip")

    def quarter_bundle(self, request: Request, quarter: str) -> Response:
        self._admin(request)
        with Session(self.engine) as session:
            try:
                scope = evidence.quarter_scope(session, quarter)
            except evidence.EvidenceError:
                raise HTTPException(404) from None
            return _zip_response(session, scope, f"evidence-{scope.label}.zip")

    # --- rendering -----------------------------------------------------------------------

    def _page(
        self,
        request: Request,
        admin: Admin,
        template: str,
        active: str,
        title: str,
        status: int = 200,
        **context: Any,
    ) -> Response:
        return self._render(
            template,
            status,
            admin=admin,
            csrf=admin.csrf(self._auth().secret),
            active=active,
            title=title,
            **context,
        )

    def _render(self, template: str, status: int, **context: Any) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            nav=NAV, iam_email=self.settings.iam_email, now=self.clock().now(), **context
        )
        return HTMLResponse(html, status_code=status)

    def _problem(self, status: int, title: str, message: str) -> Response:
        return self._render(
            "problem.html",
            status,
            title=title,
            message=message,
            back="/console/sign-in",
            back_label="Sign in to the console",
        )


def _reenabled(result: ReenableResult) -> tuple[int, str, list[str]]:
    """The page's answer to a re-enable: what was restored, what failed, and what never
    comes back (Google token revokes: those users must consent again)."""
    app = f"{result.display_name} ({result.external_id}) in {result.tenant}"
    notes = [str(item["message"]) for item in result.not_reversible]
    notes += [
        f"{item['action'].replace('_', ' ')} failed: {item['error']}" for item in result.failed
    ]
    if result.failed:
        return 502, f"{app} was not fully re-enabled: the provider refused a change.", notes
    if result.already:
        return 200, f"{app} was already re-enabled: nothing left to undo.", notes
    if not result.restored:
        return 200, f"{app}: nothing Recert changed can be restored.", notes
    restored = ", ".join(what.replace("_", " ") for what in result.restored)
    return 200, f"Re-enabled {app}: {restored}.", notes


def _linker(path: str, params: dict[str, str]) -> Callable[..., str]:
    """url(page=2) keeps the page's other query parameters; url(sort=...) restarts paging."""

    def url(**changes: Any) -> str:
        merged = {**params, **{k: str(v) for k, v in changes.items() if v not in (None, "")}}
        for key, value in changes.items():
            if value in (None, ""):
                merged.pop(key, None)
        if "page" not in changes and any(k in changes for k in ("sort", "order", "q")):
            merged.pop("page", None)
        return f"{path}?{urlencode(merged)}" if merged else path

    return url


def report_response(
    kind: str,
    rows: list[dict[str, Any]],
    output: str,
    now: datetime,
    base: str,
    sort: str,
    order: str,
    back: tuple[str, str],
) -> Response:
    """One report: a page with sortable columns and downloads, or the CSV / JSON file."""
    if output != "html":
        body = reports.render(kind, rows, output, now)
        headers = {"Content-Disposition": f'attachment; filename="{kind}.{output}"'}
        media = "text/csv; charset=utf-8" if output == "csv" else "application/json"
        return Response(body, media_type=media, headers=headers)
    descending = order == "desc"
    columns = set(rows[0]) if rows else set()
    sorted_by = sort if sort in columns else None
    if sorted_by:
        rows = reports.sort_rows(rows, sorted_by, descending)

    def sort_url(column: str, desc: bool) -> str:
        return f"{base}?{urlencode({'sort': column, 'order': 'desc' if desc else 'asc'})}"

    page = reports.PageLinks(
        back=back,
        downloads={"CSV": f"{base}?format=csv", "JSON": f"{base}?format=json"},
        sort_url=sort_url,
        sorted_by=sorted_by,
        descending=descending,
    )
    return HTMLResponse(reports.render(kind, rows, "html", now, page))


def _zip_response(session: Session, scope: evidence.Scope, filename: str) -> Response:
    data = evidence.zip_bytes(evidence.files(evidence.gather(session, scope)))
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(data, media_type="application/zip", headers=headers)
