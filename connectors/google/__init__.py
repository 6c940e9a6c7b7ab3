"""Google Workspace + Cloud connector.

A run is planned (`plan`: a full pass every `full_sync_days`, else the night's changes),
then made of steps that a Celery layer can fan out, each yielding pages:
1. `people_pages` — every user (500 a page), with managers resolved once the whole
   directory is known, so no user is looked up twice;
2. `token_chunks` then `tokens_chunk(user_ids)` — one tokens.list per user: every user in
   a full pass, only users whose consents changed since the last run otherwise;
3. `finish_pages` — service accounts and their keys, domain-wide delegation clients from
   the admin audit log (carried forward in the cursor), and last use from the token log;
   the last page carries the checkpoint.
Directory and Reports calls are paced to the shared Admin SDK quota (see client.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from typing import Any

from connectors import Now, Sleeper
from connectors.base import (
    Activity,
    Checkpoint,
    ConnectorError,
    GrantRef,
    Malformed,
    NotFound,
    NotReversible,
    Page,
    PermissionDenied,
    Person,
    Principal,
    PrincipalKind,
    PrincipalRef,
    ProviderError,
    Snapshot,
)
from connectors.google import act, get, transform, usage
from connectors.google.client import GoogleClient
from connectors.google.state import UNKNOWN_USE, LogState, Plan, TokensRead
from connectors.pacing import LocalPacer, Pacer
from connectors.settings import GoogleSettings

__all__ = ["GoogleConnector", "LogState", "Plan", "TokensRead", "whole_app_grant"]

log = logging.getLogger(__name__)
whole_app_grant = act.whole_app_grant
UNREADABLE = (NotFound, PermissionDenied, ProviderError)  # one user's 404, 403 or 400


class GoogleConnector:
    def __init__(
        self, settings: GoogleSettings, *, sleep: Sleeper, now: Now, pacer: Pacer | None = None
    ) -> None:
        self.tenant = settings.name
        self.pacer = pacer or LocalPacer(sleep=sleep)
        self._settings = settings
        self._now = now
        self._client = GoogleClient(settings, sleep=sleep, pacer=self.pacer)

    # ----- discovery ------------------------------------------------------------------------

    async def discover(self, cursor: Mapping[str, Any] | None = None) -> AsyncIterator[Page]:
        state = LogState.from_cursor(cursor)
        plan = self.plan(state)
        async for page in self.people_pages(plan):
            yield page
        read = TokensRead()
        for chunk in await self.token_chunks(plan, state):
            page, found = await self.tokens_chunk(chunk, plan.unknown_use)
            read.merge(found)
            yield page
        async for page in self.finish_pages(plan, state, read):
            yield page

    def plan(self, state: LogState) -> Plan:
        return Plan.decide(state, self._now(), self._settings.full_sync_days)

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

    async def people_pages(self, plan: Plan) -> AsyncIterator[Page]:
        """Every user, a page at a time; fills `plan.user_ids`. A manager listed after the
        person comes in a last page that repeats those people with their manager."""
        ids_by_email: dict[str, str] = {}
        late: list[tuple[Person, str]] = []
        token: str | None = None
        while True:
            body = await get.users_page(self._client, self._settings.customer, token)
            users = [u for u in body.get("users", []) if isinstance(u, dict)]
            for user in users:
                if isinstance(user.get("id"), str) and isinstance(user.get("primaryEmail"), str):
                    ids_by_email[user["primaryEmail"].lower()] = user["id"]
            page = Page()
            for user in users:
                manager = transform.manager_email(user)
                record = transform.person(user, ids_by_email.get(manager) if manager else None)
                if isinstance(record, Malformed):
                    page.skipped.append(record)
                    continue
                page.people.append(record)
                plan.user_ids.append(record.external_id)
                if manager and record.manager_id is None:
                    late.append((record, manager))
            yield self._logged(page)
            following = body.get("nextPageToken")
            token = following if isinstance(following, str) and following else None
            if token is None:
                break
        fixed = await self._late_managers(late, ids_by_email)
        if fixed.people:
            yield fixed

    async def _late_managers(
        self, late: list[tuple[Person, str]], ids_by_email: dict[str, str]
    ) -> Page:
        outside = sorted({m for _, m in late if m not in ids_by_email})
        found = await asyncio.gather(*(self._manager_id(email) for email in outside))
        ids = {**dict(zip(outside, found, strict=True)), **ids_by_email}
        page = Page()
        for person, manager in late:
            manager_id = ids.get(manager)
            if manager_id:
                page.people.append(dataclasses.replace(person, manager_id=manager_id))
        return page

    async def _manager_id(self, email: str) -> str | None:
        """A manager not in the listing: deleted (404), or outside the domain (403, 400,
        as GAM's USER_GET_THROW_REASONS treat them): no manager, and the run goes on."""
        try:
            found = await get.user_id(self._client, email)
        except UNREADABLE as exc:
            log.warning(
                "google tenant=%s manager %s cannot be read: %s", self.tenant, email, exc.message
            )
            return None
        user_id = found.get("id")
        return user_id if isinstance(user_id, str) else None

    async def token_chunks(self, plan: Plan, state: LogState) -> list[list[str]]:
        """Whose tokens this run reads, in chunks of `users_per_chunk`: everyone in a full
        pass, else the users with consent events since the last run. A full pass also asks
        (one request) whether the domain logs app use at all; a night keeps that answer."""
        if plan.full or state.app_use_logged is None:
            logged = await usage.app_use_logged(self._client, plan.window_start(), plan.now)
        else:
            logged = state.app_use_logged
        plan.unknown_use = None if logged else UNKNOWN_USE
        if plan.full:
            targets = plan.user_ids
        else:
            changed = await usage.changed_users(self._client, plan.since, plan.now)
            targets = [user_id for user_id in plan.user_ids if user_id in changed]
        size = self._settings.users_per_chunk
        return [targets[i : i + size] for i in range(0, len(targets), size)]

    async def tokens_chunk(
        self, user_ids: Iterable[str], unknown_use: str | None = None
    ) -> tuple[Page, TokensRead]:
        """tokens.list for each user, folded into third-party apps and their grants. A user
        whose tokens cannot be read is recorded and skipped; the chunk goes on."""
        wanted = list(user_ids)
        answers = await asyncio.gather(*(self._tokens_of(user_id) for user_id in wanted))
        page, read = Page(), TokensRead()
        for user_id, answer in zip(wanted, answers, strict=True):
            if isinstance(answer, ConnectorError):
                reason = f"tokens.list failed, grants kept as they were: {answer.message}"
                page.skipped.append(Malformed("user_tokens", user_id, reason))
                read.unread.add(user_id)
                continue
            folded = transform.user_tokens(user_id, answer, unknown_use)
            page.principals.extend(folded.principals)
            page.grants.extend(folded.grants)
            page.skipped.extend(folded.skipped)
            read.clients.update(p.external_id for p in folded.principals)
            (read.unread if folded.skipped else read.read).add(user_id)
        return self._logged(page), read

    async def _tokens_of(self, user_id: str) -> dict[str, Any] | ConnectorError:
        try:
            return await get.user_tokens(self._client, user_id)
        except UNREADABLE as exc:
            return exc

    async def finish_pages(
        self, plan: Plan, state: LogState, read: TokensRead
    ) -> AsyncIterator[Page]:
        """Service accounts, delegation clients and last use; the last page carries the
        checkpoint."""
        accounts: dict[str, Principal] = {}  # oauth2ClientId -> service account
        for project in self._settings.projects:
            async for page in self.service_accounts_pages(project):
                for account in page.principals:
                    client_id = account.raw.get("oauth2ClientId")
                    if isinstance(client_id, str):
                        accounts[client_id] = account
                yield page
        delegations, audit_since = await self._delegations(plan, state)
        yield self._delegations_page(delegations, accounts)
        last = Page()
        next_state = LogState(
            delegations=dataclasses.replace(delegations, retired_now=set()),
            log_until=plan.now,
            last_use=dict(state.last_use) if not plan.first else {},
            use_known_since=state.use_known_since if not plan.first else plan.window_start(),
            app_use_logged=plan.unknown_use is None,
            full_at=plan.now if plan.full else state.full_at,
            audit_since=audit_since,
        )
        if plan.unknown_use is None:
            await self._last_use(plan, read, next_state, last)
        if plan.full:
            last.checkpoint = Checkpoint(
                full=True,
                cursor=next_state.cursor(),
                keep_kinds=frozenset({PrincipalKind.OAUTH_APP}),
                unread_consents=frozenset(read.unread),
            )
        else:
            last.checkpoint = Checkpoint(
                full=False, cursor=next_state.cursor(), consents_of=frozenset(read.read)
            )
        yield self._logged(last)

    async def _delegations(
        self, plan: Plan, state: LogState
    ) -> tuple[transform.Delegations, datetime]:
        """The carried-forward clients, updated by the admin audit events since the last
        run, plus those IAM registered in `delegation_clients_file`."""
        delegations = transform.Delegations(
            clients={k: dict(v) for k, v in state.delegations.clients.items()},
            removed=dict(state.delegations.removed),
        )
        audit_since = plan.window_start() if plan.first else state.audit_since or plan.since
        skipped: list[Malformed] = []
        for event in (transform.AUTHORIZE_DWD, transform.REMOVE_DWD):
            token: str | None = None
            while True:
                body = await get.activities_page(
                    self._client,
                    "admin",
                    (usage.rfc3339(plan.since), usage.rfc3339(plan.now)),
                    token,
                    event_name=event,
                )
                delegations.fold(body.get("items", []), skipped)
                token = body.get("nextPageToken")
                if not token:
                    break
        for known in self._settings.delegation_clients:
            if not delegations.register(
                known.client_id, known.scopes, known.name, audit_since.isoformat()
            ):
                log.warning(
                    "google tenant=%s delegation_clients_file lists %s, which the admin audit "
                    "log shows removed at %s: drop it from the file",
                    self.tenant,
                    known.client_id,
                    delegations.removed[known.client_id],
                )
        self._logged(Page(skipped=skipped))
        return delegations, audit_since

    def _delegations_page(
        self, delegations: transform.Delegations, accounts: dict[str, Principal]
    ) -> Page:
        page = Page(removed=sorted(delegations.retired_now))
        for client_id, entry in sorted(delegations.clients.items()):
            principal, grants, hints = transform.delegation_records(
                client_id, entry, accounts.get(client_id)
            )
            page.principals.append(principal)
            page.grants.extend(grants)
            page.owner_hints.extend(hints)
        return page

    async def _last_use(self, plan: Plan, read: TokensRead, state: LogState, page: Page) -> None:
        """Fold the token log since the last run into each app's latest use."""
        scan = await usage.last_use(
            self._client, plan.since, plan.now, read.clients, exhaustive=not plan.first
        )
        page.skipped.extend(scan.skipped)
        for client_id, moment in scan.latest.items():
            previous = state.last_use.get(client_id)
            state.last_use[client_id] = max(moment, previous) if previous else moment
        emit = set(read.clients)
        if not plan.full:
            emit |= scan.latest.keys() & set(state.last_use)
        window = state.use_known_since or plan.window_start()
        page.activity = [
            Activity(principal_id=c, window_start=window, last_used_at=state.last_use.get(c))
            for c in sorted(emit)
        ]

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

    # ----- actions --------------------------------------------------------------------------

    async def disable(self, ref: PrincipalRef) -> Snapshot:
        if ref.kind == PrincipalKind.SERVICE_ACCOUNT:
            return await act.set_service_account(
                self._client, ref, self._settings.projects, disabled=True
            )
        return await self.revoke_grant(act.whole_app_grant(ref))

    async def enable(self, ref: PrincipalRef, snapshot: Snapshot) -> None:
        if ref.kind != PrincipalKind.SERVICE_ACCOUNT:
            raise NotReversible(
                self.tenant,
                "revoked tokens come back only when users consent again",
                ref.external_id,
            )
        if not snapshot.get("disabled", False):
            await act.set_service_account(
                self._client, ref, self._settings.projects, disabled=False
            )

    async def revoke_grant(self, grant: GrantRef) -> Snapshot:
        return await act.revoke_grant(self._client, grant)

    async def restore_grant(self, grant: GrantRef, snapshot: Snapshot) -> None:
        raise NotReversible(
            self.tenant, "Google offers no way to restore a revoked grant", grant.grant_id
        )

    async def aclose(self) -> None:
        await self._client.aclose()
