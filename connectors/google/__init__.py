"""Google Workspace + Cloud connector.

Discovery, in order, each part as its own page-producing method so a Celery layer can fan
the big one out: `users_chunk(token)` (one users page of up to 500 people, their tokens
folded into third-party apps), `delegations_page(cursor)` (domain-wide delegation clients
from the admin audit log, carried forward in the cursor), `service_accounts_pages(project)`
and `activity_page(client_ids)` (last use from token activity, 180 days).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from connectors import Now, Sleeper
from connectors.base import (
    Activity,
    Checkpoint,
    GrantRef,
    Malformed,
    NotFound,
    NotReversible,
    Page,
    PrincipalKind,
    PrincipalRef,
    Snapshot,
)
from connectors.google import act, get, transform
from connectors.google.client import GoogleClient
from connectors.pacing import LocalPacer, Pacer
from connectors.settings import GoogleSettings

__all__ = ["GoogleConnector", "whole_app_grant"]

log = logging.getLogger(__name__)
RETENTION = timedelta(days=180)  # Reports API keeps token and admin activity this long
whole_app_grant = act.whole_app_grant


class GoogleConnector:
    def __init__(
        self, settings: GoogleSettings, *, sleep: Sleeper, now: Now, pacer: Pacer | None = None
    ) -> None:
        self.tenant = settings.name
        self.pacer = pacer or LocalPacer(sleep=sleep)
        self._settings = settings
        self._now = now
        self._client = GoogleClient(settings, sleep=sleep)
        self._manager_ids: dict[str, str | None] = {}  # manager email -> user id

    # ----- discovery ------------------------------------------------------------------------

    async def discover(self, cursor: Mapping[str, Any] | None = None) -> AsyncIterator[Page]:
        apps: set[str] = set()
        token: str | None = None
        while True:
            page, token = await self.users_chunk(token)
            apps.update(p.external_id for p in page.principals)
            yield page
            if token is None:
                break
        delegations, state = await self.delegations_page(cursor)
        yield delegations
        for project in self._settings.projects:
            async for page in self.service_accounts_pages(project):
                yield page
        last = await self.activity_page(apps)
        last.checkpoint = Checkpoint(full=True, cursor={"delegations": state})
        yield last

    def _window_start(self) -> datetime:
        return self._now() - RETENTION

    def _logged(self, page: Page) -> Page:
        for bad in page.skipped:
            log.warning(
                "google tenant=%s skipped %s id=%r: %s",
                self.tenant,
                bad.object_type,
                bad.object_id,
                bad.reason,
            )
        return page

    async def users_chunk(self, page_token: str | None) -> tuple[Page, str | None]:
        """One users page (`users_per_chunk`, up to 500) with everyone's tokens, and the
        token of the next chunk (None after the last)."""
        settings = self._settings
        body = await get.users_page(
            self._client, settings.customer, page_token, size=settings.users_per_chunk
        )
        users = [u for u in body.get("users", []) if isinstance(u, dict)]
        for user in users:
            if isinstance(user.get("id"), str) and isinstance(user.get("primaryEmail"), str):
                self._manager_ids[user["primaryEmail"].lower()] = user["id"]
        page = Page()
        valid: list[str] = []
        managers = {transform.manager_email(user) for user in users}
        unknown = [m for m in managers if m is not None and m not in self._manager_ids]
        await asyncio.gather(*(self._resolve_manager(m) for m in unknown))
        for user in users:
            manager = transform.manager_email(user)
            record = transform.person(user, self._manager_ids.get(manager) if manager else None)
            if isinstance(record, Malformed):
                page.skipped.append(record)
                continue
            page.people.append(record)
            valid.append(record.external_id)
        for user_id, tokens in zip(valid, await self._tokens_of(valid), strict=True):
            folded = transform.user_tokens(user_id, tokens)
            page.principals.extend(folded.principals)
            page.grants.extend(folded.grants)
            page.skipped.extend(folded.skipped)
        next_token = body.get("nextPageToken")
        return self._logged(page), next_token if isinstance(
            next_token, str
        ) and next_token else None

    async def _tokens_of(self, user_ids: list[str]) -> list[dict[str, Any]]:
        async def one(user_id: str) -> dict[str, Any]:
            try:
                return await get.user_tokens(self._client, user_id)
            except NotFound:
                return {}  # deleted since the users page was read

        return await asyncio.gather(*(one(user_id) for user_id in user_ids))

    async def _resolve_manager(self, email: str) -> None:
        """A manager outside this chunk: look the id up once per connector."""
        try:
            found = await get.user_id(self._client, email)
        except NotFound:
            self._manager_ids[email] = None  # the manager's account is gone
            return
        user_id = found.get("id")
        self._manager_ids[email] = user_id if isinstance(user_id, str) else None

    async def _activities(self, application: str, event: str | None = None) -> list[Any]:
        start = self._window_start().strftime("%Y-%m-%dT%H:%M:%SZ")
        items: list[Any] = []
        page_token: str | None = None
        while True:
            body = await get.activities_page(self._client, application, start, page_token, event)
            items.extend(body.get("items", []))
            page_token = body.get("nextPageToken")
            if not page_token:
                return items

    async def delegations_page(
        self, cursor: Mapping[str, Any] | None
    ) -> tuple[Page, dict[str, dict[str, Any]]]:
        """DWD clients: the previous run's set, updated by the audit events of 180 days."""
        previous = (cursor or {}).get("delegations")
        state = {k: dict(v) for k, v in previous.items()} if isinstance(previous, dict) else {}
        page = Page()
        events = [
            *await self._activities("admin", transform.AUTHORIZE_DWD),
            *await self._activities("admin", transform.REMOVE_DWD),
        ]
        transform.fold_delegations(events, state, page.skipped)
        for client_id, entry in state.items():
            principal, grants, hints = transform.delegation_records(client_id, entry)
            page.principals.append(principal)
            page.grants.extend(grants)
            page.owner_hints.extend(hints)
        return self._logged(page), state

    async def service_accounts_pages(self, project: str) -> AsyncIterator[Page]:
        page_token: str | None = None
        while True:
            body = await get.accounts_page(self._client, project, page_token)
            yield self._logged(await self._accounts_page(project, body.get("accounts", [])))
            page_token = body.get("nextPageToken")
            if not page_token:
                return

    async def _accounts_page(self, project: str, accounts: Iterable[Any]) -> Page:
        page = Page()
        for account in accounts:
            record = transform.service_account(
                project, account if isinstance(account, dict) else {}
            )
            if isinstance(record, Malformed):
                page.skipped.append(record)
            else:
                page.principals.append(record)
        names = [
            str(p.raw.get("name") or f"projects/{project}/serviceAccounts/{p.app_id}")
            for p in page.principals
        ]
        keys = await asyncio.gather(*(get.account_keys(self._client, name) for name in names))
        for principal, body in zip(page.principals, keys, strict=True):
            credentials, skipped = transform.key_credentials(principal.external_id, body)
            page.credentials.extend(credentials)
            page.skipped.extend(skipped)
        return page

    async def activity_page(self, client_ids: Iterable[str]) -> Page:
        """Last use of each third-party app: no token event in 180 days = none seen."""
        page = Page()
        last_use: dict[str, datetime] = {}
        transform.fold_token_use(await self._activities("token"), last_use, page.skipped)
        window = self._window_start()
        page.activity = [
            Activity(principal_id=cid, window_start=window, last_used_at=last_use.get(cid))
            for cid in sorted(set(client_ids))
        ]
        return self._logged(page)

    # ----- actions --------------------------------------------------------------------------

    async def disable(self, ref: PrincipalRef) -> Snapshot:
        if ref.kind == PrincipalKind.SERVICE_ACCOUNT:
            return await act.set_service_account(self._client, ref, disabled=True)
        return await self.revoke_grant(act.whole_app_grant(ref))

    async def enable(self, ref: PrincipalRef, snapshot: Snapshot) -> None:
        if ref.kind != PrincipalKind.SERVICE_ACCOUNT:
            raise NotReversible(
                self.tenant,
                "revoked tokens come back only when users consent again",
                ref.external_id,
            )
        if not snapshot.get("disabled", False):
            await act.set_service_account(self._client, ref, disabled=False)

    async def revoke_grant(self, grant: GrantRef) -> Snapshot:
        return await act.revoke_grant(self._client, self._settings.customer, grant)

    async def restore_grant(self, grant: GrantRef, snapshot: Snapshot) -> None:
        raise NotReversible(
            self.tenant, "Google offers no way to restore a revoked grant", grant.grant_id
        )

    async def aclose(self) -> None:
        await self._client.aclose()
