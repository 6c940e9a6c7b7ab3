"""The owners' attestation site. GET only shows; every decision is a POST with a CSRF
token, so mail scanners that pre-fetch links decide nothing. No JavaScript anywhere.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, Form, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware

from recert import links, reports
from recert.catalog import load_catalog
from recert.clock import Clock
from recert.config import Settings
from recert.db import session_scope
from recert.decisions import DecisionRefused, DecisionRequest, decide
from recert.web import templating
from recert.web.auth import SIGN_IN_COOKIE, AdminAuth
from recert.web.console import Console, report_response
from recert.web.page import Draft, Retry, build_review

CSRF_COOKIE = "recert_csrf"
_NONCE = re.compile(r"[A-Za-z0-9_-]{43}")  # what secrets.token_urlsafe(32) produces
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
CHOICES = (
    ("keep", "Keep it, with all its permissions"),
    ("reduce", "Keep it, but drop the ticked permissions"),
    ("revoke", "Revoke it: it is no longer needed"),
    ("reassign", "Hand it over to another owner"),
    ("not_mine", "Not mine: I do not know this app"),
)

ClockSource = Callable[[], Clock] | Clock


class LinkRefused(Exception):
    """The review link cannot be used; the reason is safe to show."""


def create_app(settings: Settings, engine: Engine, clock: ClockSource) -> FastAPI:
    """The owners' review pages, the IAM report pages and, when `[web.oidc]` is set, the
    IAM console. `clock` is read on every request (a Clock or a factory)."""
    clock_source = clock if callable(clock) else lambda: clock
    site = _ReviewSite(settings, engine, clock_source)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)
    oidc = settings.web.oidc
    auth = AdminAuth(settings, engine, oidc) if oidc else None
    if auth is not None:
        app.add_middleware(
            SessionMiddleware,
            secret_key=auth.sign_in_state_key(),
            session_cookie=SIGN_IN_COOKIE,
            max_age=900,
            path="/console",
            same_site="lax",
            https_only=auth.secure_cookie,
        )
    app.middleware("http")(_security_headers)
    app.add_exception_handler(LinkRefused, site.link_refused)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, site.http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, site.bad_request)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, site.server_error)
    app.add_api_route("/healthz", _healthz, methods=["GET"], response_class=PlainTextResponse)
    app.add_api_route("/review/{token}", site.show, methods=["GET"])
    app.add_api_route("/review/{token}/items/{item_id}", site.decide_item, methods=["POST"])
    app.add_api_route("/reports/{token}", site.report_index, methods=["GET"])
    app.add_api_route("/reports/{token}/{kind}", site.report, methods=["GET"])
    Console(settings, engine, clock_source, site.templates, auth).install(app)
    return app


def _healthz() -> str:
    return "ok"


async def _security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    return _secured(await call_next(request))


def _secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


class _ReviewSite:
    def __init__(self, settings: Settings, engine: Engine, clock: Callable[[], Clock]) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.secret = settings.signing_key()  # fails at start-up, not on the first visit
        self.secure_cookie = settings.web.base_url.lower().startswith("https://")
        self.templates = templating.environment()

    # --- routes ------------------------------------------------------------------------

    def show(self, request: Request, token: str, done: str | None = None) -> Response:
        now = self.clock().now()
        link = self._verified(token, now)
        return self._review(token, link, _nonce(request), now, done=_as_id(done))

    def decide_item(
        self,
        request: Request,
        token: str,
        item_id: int,
        csrf: Annotated[str, Form()] = "",
        action: Annotated[str, Form()] = "",
        justification: Annotated[str, Form()] = "",
        drop: Annotated[list[str] | None, Form()] = None,
        new_owner: Annotated[str, Form()] = "",
    ) -> Response:
        clock = self.clock()
        link = self._verified(token, clock.now())
        nonce = request.cookies.get(CSRF_COOKIE, "")
        if not links.csrf_ok(self.secret, token, nonce, csrf):
            return self._problem(
                403,
                "This form could not be accepted",
                "Decisions are only taken from the review page opened in this browser "
                "(with cookies allowed). Open your review link again and resubmit.",
                back=_review_path(token),
            )
        draft = Draft(action, justification, frozenset(), new_owner)
        try:
            draft = replace(draft, dropped=_grant_ids(drop or []))
            self._decide(request, clock, link, item_id, draft)
        except DecisionRefused as refusal:
            retry = Retry(item_id, draft, str(refusal))
            return self._review(token, link, nonce, clock.now(), retry=retry)
        return RedirectResponse(f"{_review_path(token)}?done={item_id}", status_code=303)

    def _decide(
        self, request: Request, clock: Clock, link: links.ReviewLink, item_id: int, draft: Draft
    ) -> None:
        decision = DecisionRequest(
            action=draft.action,
            justification=draft.justification,
            dropped=tuple(sorted(draft.dropped)),
            new_owner=draft.new_owner or None,
            source_ip=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"),
        )
        with session_scope(self.engine) as session:
            decide(session, self.settings, clock, link, item_id, decision)

    def report_index(self, request: Request, token: str) -> Response:
        """The IAM team's reports, with how many apps each lists now."""
        now = self.clock().now()
        link = self._iam_link(token, now)
        counts = {kind: len(self._report_rows(kind, now)) for kind in reports.REPORTS}
        return self._render(
            "reports.html",
            200,
            token=quote(token, safe=""),
            titles=reports.TITLES,
            counts=counts,
            expires_at=link.expires_at,
        )

    def report(
        self,
        request: Request,
        token: str,
        kind: str,
        output: Annotated[str, Query(alias="format")] = "html",
        sort: str = "",
        order: str = "asc",
    ) -> Response:
        """One report as a page (sortable, with downloads), or as CSV / JSON."""
        now = self.clock().now()
        self._iam_link(token, now)
        if kind not in reports.REPORTS or output not in ("html", "csv", "json"):
            raise HTTPException(status_code=404)
        index = f"/reports/{quote(token, safe='')}"
        return report_response(
            kind,
            self._report_rows(kind, now),
            output,
            now,
            f"{index}/{kind}",
            sort,
            order,
            back=(index, "All reports"),
        )

    # --- error pages ---------------------------------------------------------------------

    def link_refused(self, request: Request, error: LinkRefused) -> Response:
        return self._problem(
            403,
            "Review link not valid",
            f"This review link is not valid: {error}. Ask {self.settings.iam_email} for a new one.",
        )

    def http_error(self, request: Request, error: HTTPException) -> Response:
        titles = {404: "Page not found", 405: "Not allowed"}
        title = titles.get(error.status_code, "Request not accepted")
        response = self._problem(error.status_code, title, "There is nothing to see here.")
        response.headers.update(error.headers or {})
        return response

    def bad_request(self, request: Request, error: RequestValidationError) -> Response:
        return self._problem(400, "Request not understood", "Open your review link again.")

    def server_error(self, request: Request, error: Exception) -> Response:
        # This handler answers outside the middleware stack, so it adds the headers itself.
        return _secured(
            self._problem(
                500,
                "Something went wrong",
                f"Nothing was saved. Try again later, or write to {self.settings.iam_email}.",
            )
        )

    # --- helpers -------------------------------------------------------------------------

    def _iam_link(self, token: str, now: datetime) -> links.ReviewLink:
        try:
            link = links.verify(self.secret, token, now, links.REPORTS)
        except links.InvalidLink as error:
            raise LinkRefused(str(error)) from None
        if link.reviewer != self.settings.iam_email.lower():
            raise LinkRefused("it was issued for another IAM address")
        return link

    def _report_rows(self, kind: str, now: datetime) -> list[dict[str, Any]]:
        catalog = load_catalog(self.settings.catalog_dir)
        with Session(self.engine) as session:
            return reports.build(kind, session, self.settings, now, catalog=catalog)

    def _verified(self, token: str, now: datetime) -> links.ReviewLink:
        try:
            return links.verify(self.secret, token, now)
        except links.InvalidLink as error:
            raise LinkRefused(str(error)) from None

    def _review(
        self,
        token: str,
        link: links.ReviewLink,
        nonce: str,
        now: datetime,
        *,
        done: int | None = None,
        retry: Retry | None = None,
    ) -> Response:
        with Session(self.engine) as session:  # read-only: never committed
            page = build_review(session, link, now, done=done, retry=retry)
        if page is None:
            raise LinkRefused("its review campaign no longer exists")
        if page.empty:
            raise LinkRefused("nothing in this review is waiting for you any more")
        status = 200
        if retry is not None:
            status = 400 if page.error_item is not None else 409
        response = self._render(
            "review.html",
            status,
            page=page,
            token=token,
            csrf=links.csrf_token(self.secret, token, nonce),
            choices=CHOICES,
        )
        response.set_cookie(
            CSRF_COOKIE,
            nonce,
            httponly=True,
            samesite="strict",
            secure=self.secure_cookie,
            path="/review",
        )
        return response

    def _problem(self, status: int, title: str, message: str, back: str | None = None) -> Response:
        return self._render("problem.html", status, title=title, message=message, back=back)

    def _render(self, template: str, status: int, **context: object) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            iam_email=self.settings.iam_email, **context
        )
        return HTMLResponse(html, status_code=status)


def _nonce(request: Request) -> str:
    """The browser's CSRF nonce, kept across page views so two open tabs both work."""
    existing = request.cookies.get(CSRF_COOKIE, "")
    return existing if _NONCE.fullmatch(existing) else secrets.token_urlsafe(32)


def _review_path(token: str) -> str:
    """Always our own review page: redirects never go anywhere a request names."""
    return f"/review/{quote(token, safe='')}"


def _as_id(value: str | None) -> int | None:
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


def _grant_ids(values: list[str]) -> frozenset[int]:
    try:
        return frozenset(int(value) for value in values)
    except ValueError:
        raise DecisionRefused("Some selected permissions do not belong to this app.") from None
