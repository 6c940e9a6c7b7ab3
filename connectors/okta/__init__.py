"""Okta connector: OAuth/OIDC and API service apps with their scope grants, client secrets
and keys; SSWS API tokens; and AI agents (Okta for AI Agents) with their owners, keys and
connections.

Built on the `okta` SDK (3.4+, async); see client.py for how it is driven. Buckets are
walked side by side (the System Log and the API tokens while the apps are listed), each
paced on its own, so a run takes about as long as its busiest bucket allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connectors.base import (
    Checkpoint,
    GrantRef,
    Malformed,
    NotFound,
    OwnerHint,
    OwnerSource,
    Page,
    PermissionDenied,
    Person,
    PrincipalKind,
    PrincipalRef,
    ProviderError,
    Snapshot,
)
from connectors.okta import act, agents, get, transform
from connectors.okta.client import OktaClient, QueryTimedOut
from connectors.pacing import LocalPacer, Pacer
from connectors.settings import OktaSettings

__all__ = ["RETENTION", "OktaConnector"]

RETENTION = timedelta(days=90)  # System Log retention: older use is unknown, not absent
LOG_WINDOW_MARGIN = timedelta(minutes=5)  # keeps `since` inside retention as time passes
LOG_OVERLAP = timedelta(minutes=5)  # events land in the log a little late: re-read the edge
MIN_LOG_WINDOW = timedelta(minutes=15)
AGENT = PrincipalKind.AGENT_IDENTITY.value
TOKEN = PrincipalKind.API_TOKEN.value
log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Group:
    name: str
    members: list[Person]


@dataclass(slots=True)
class _Run:
    """What one discovery run learned so far, to tie later records to earlier ones."""

    oauth_apps: dict[str, str | None] = field(default_factory=dict)  # app id -> client id
    app_labels: dict[str, str] = field(default_factory=dict)
    principal_ids: set[str] = field(default_factory=set)
    people: set[str] = field(default_factory=set)
    wanted_people: set[str] = field(default_factory=set)
    user_status: dict[str, str] = field(default_factory=dict)
    not_visible: dict[str, str] = field(default_factory=dict)
    groups: dict[str, _Group] = field(default_factory=dict)
    owners_unreadable: str | None = None


@dataclass(slots=True)
class _LogState:
    findings: transform.LogFindings
    since: datetime  # no use seen since then (when none is recorded)
    until: datetime
    window: timedelta  # the query window that last worked

    def cursor(self, run: _Run) -> dict[str, Any]:
        """Where the next run goes on, and what it must not forget (apps gone are)."""
        kept = transform.LogFindings(
            creators={a: h for a, h in self.findings.creators.items() if a in run.principal_ids},
            last_use_by_client={
                c: at
                for c, at in self.findings.last_use_by_client.items()
                if c in set(run.oauth_apps.values())
            },
        )
        return {
            "log_until": self.until.isoformat(),
            "log_since": self.since.isoformat(),
            "log_window_seconds": self.window.total_seconds(),
            "log": kept.to_cursor(),
        }


class OktaConnector:
    def __init__(
        self,
        settings: OktaSettings,
        *,
        sleep: Callable[[float], Awaitable[None]],
        now: Callable[[], datetime],
        pacer: Pacer | None = None,
    ) -> None:
        self.tenant = settings.name
        self.settings = settings
        self._now = now
        self._sleep = sleep
        self.pacer = pacer or LocalPacer(sleep=sleep)
        self._client = OktaClient(settings, sleep=sleep, pacer=self.pacer)

    @property
    def requests_by_bucket(self) -> Mapping[str, int]:
        return self._client.requests_by_bucket

    # -- discovery ------------------------------------------------------------------------
    async def discover(self, cursor: Mapping[str, Any] | None = None) -> AsyncIterator[Page]:
        """A full enumeration every run; only the System Log is read from where the last
        complete run (`cursor`) left it."""
        run = _Run()
        now = self._now()
        log_task = asyncio.create_task(self._read_log(cursor or {}, now))
        token_task = asyncio.create_task(self._read_api_tokens(run))
        try:
            async for page in self._apps(run):
                yield page
            async for page in self._agents(run):
                yield page
            async for page in self._people(run):
                yield page
            state = await log_task
            raw_tokens = await token_task
            yield await self._final_page(run, state, raw_tokens)
        finally:
            await _settle(log_task, token_task)

    async def _final_page(self, run: _Run, state: _LogState, raw_tokens: list[Any]) -> Page:
        final = Page()
        final.owner_hints = [
            hint for app_id, hint in state.findings.creators.items() if app_id in run.principal_ids
        ]
        final.activity = [
            state.findings.activity(app_id, client_id, state.since)
            for app_id, client_id in run.oauth_apps.items()
        ]
        run.wanted_people.update(filter(None, map(transform.token_user, raw_tokens)))
        final.people = await self._missing_people(run, final.owner_hints)
        self._add_tokens(run, final, raw_tokens)
        final.checkpoint = Checkpoint(
            full=True, cursor=state.cursor(run), not_visible=run.not_visible
        )
        return final

    def _skip(self, page: Page, malformed: Malformed) -> None:
        log.warning(
            "okta %s: skipped malformed %s %s: %s",
            self.tenant,
            malformed.object_type,
            malformed.object_id,
            malformed.reason,
        )
        page.skipped.append(malformed)

    # -- apps -----------------------------------------------------------------------------
    async def _apps(self, run: _Run) -> AsyncIterator[Page]:
        async for raw_apps in get.list_apps(self._client, self.settings.page_size):
            page = Page()
            for raw in raw_apps:
                records = transform.app_records(raw)
                if isinstance(records, Malformed):
                    self._skip(page, records)
                elif records.principal is not None:
                    await self._add_app(run, page, records)
            yield page

    async def _add_app(self, run: _Run, page: Page, records: transform.AppRecords) -> None:
        principal = records.principal
        assert principal is not None
        app_id = principal.external_id
        page.principals.append(principal)
        page.credentials.extend(records.credentials)
        run.principal_ids.add(app_id)
        run.app_labels[app_id] = principal.display_name
        if not records.wants_grants:
            return
        run.oauth_apps[app_id] = records.client_id
        try:
            grants, skipped = transform.grant_records(
                app_id, await get.list_grants(self._client, app_id)
            )
            if records.wants_secrets:
                credentials, more = transform.secret_records(
                    app_id, await get.list_client_secrets(self._client, app_id)
                )
            elif records.wants_keys:
                credentials, more = transform.key_records(
                    app_id, await get.list_app_keys(self._client, app_id)
                )
            else:
                credentials, more = [], []
        except NotFound:
            return  # deleted while we listed
        page.grants.extend(grants)
        page.credentials.extend(credentials)
        for malformed in (*skipped, *more):
            self._skip(page, malformed)

    # -- API tokens -----------------------------------------------------------------------
    async def _read_api_tokens(self, run: _Run) -> list[Any]:
        """Every page of the org's SSWS tokens; a role that may not list them (403: only
        a Super Administrator may) leaves them not visible, and the rest goes on."""
        if not self._client.may_use("okta.apiTokens.read"):
            run.not_visible[TOKEN] = "okta.apiTokens.read is not among this tenant's scopes"
            return []
        raw_tokens: list[Any] = []
        try:
            async for items in get.list_api_tokens(self._client):
                raw_tokens.extend(items)
        except PermissionDenied as denied:
            run.not_visible[TOKEN] = f"the credential may not list API tokens: {denied.message}"
            log.warning("okta %s: API tokens not visible: %s", self.tenant, denied.message)
            return []
        return raw_tokens

    def _add_tokens(self, run: _Run, page: Page, raw_tokens: list[Any]) -> None:
        for raw in raw_tokens:
            status = run.user_status.get(transform.token_user(raw) or "")
            records = transform.api_token_records(raw, status)
            if isinstance(records, Malformed):
                self._skip(page, records)
                continue
            page.principals.append(records.principal)
            page.credentials.append(records.credential)
            page.owner_hints.append(records.owner_hint)
            if records.activity is not None:
                page.activity.append(records.activity)
            run.principal_ids.add(records.principal.external_id)

    # -- System Log -----------------------------------------------------------------------
    async def _read_log(self, cursor: Mapping[str, Any], now: datetime) -> _LogState:
        """Creators and token grants since the last run, in bounded windows; a window the
        log cannot answer in time (E0000009) is halved and asked again."""
        retention_start = now - RETENTION + LOG_WINDOW_MARGIN
        until = transform.parse_time(cursor.get("log_until"))
        known_since = transform.parse_time(cursor.get("log_since"))
        continuous = until is not None and known_since is not None and until > retention_start
        findings = transform.LogFindings.from_cursor(cursor.get("log") or {})
        start = max(until - LOG_OVERLAP, retention_start) if continuous and until else None
        start = start or retention_start
        since = known_since if continuous and known_since else retention_start
        stored = cursor.get("log_window_seconds")
        window = now - start
        if isinstance(stored, int | float) and stored > 0:  # grows back once a run
            window = min(window, timedelta(seconds=2 * float(stored)))
        while start < now:
            end = min(start + window, now)
            try:
                await self._read_log_window(findings, start, end)
            except QueryTimedOut:
                if window / 2 < MIN_LOG_WINDOW:
                    raise ProviderError(
                        self.tenant, f"System Log times out even on {window} windows"
                    ) from None
                window /= 2
                log.info("okta %s: System Log timed out, windows of %s now", self.tenant, window)
                continue
            start = end
        return _LogState(findings, since, now, window)

    async def _read_log_window(
        self, findings: transform.LogFindings, start: datetime, end: datetime
    ) -> None:
        async for events in get.list_log_events(self._client, start, end):
            for raw in events:
                malformed = findings.add(raw)
                if malformed is not None:
                    log.warning("okta %s: skipped log event: %s", self.tenant, malformed.reason)

    # -- AI agents ------------------------------------------------------------------------
    async def _agents(self, run: _Run) -> AsyncIterator[Page]:
        """Registered AI agents. An org not subscribed to Okta for AI Agents, or a
        credential without the scope or role, answers 401/403/404: not visible."""
        if not self._client.may_use("okta.aiAgents.read"):
            run.not_visible[AGENT] = (
                "okta.aiAgents.read is not among this tenant's scopes, or the org refused it"
            )
            return
        try:
            async for raw_agents in get.list_agents(self._client):
                page = Page()
                for raw in raw_agents:
                    await self._add_agent(run, page, raw)
                yield page
        except (PermissionDenied, NotFound) as refused:
            run.not_visible[AGENT] = f"AI agents not visible: {refused.message}"
            log.warning("okta %s: AI agents not visible: %s", self.tenant, refused.message)

    async def _add_agent(self, run: _Run, page: Page, raw: Any) -> None:
        records = agents.agent_records(raw)
        if isinstance(records, Malformed):
            self._skip(page, records)
            return
        agent_id = records.agent_id
        try:
            raw_keys = [
                key async for keys in get.list_agent_keys(self._client, agent_id) for key in keys
            ]
            raw_connections = [
                item
                async for items in get.list_agent_connections(self._client, agent_id)
                for item in items
            ]
            owners = records.owners
            if owners is None:
                owners = await self._agent_owners(run, page, agent_id)
        except NotFound:
            return  # deleted while we listed
        credentials, bad_keys = transform.key_records(agent_id, raw_keys)
        connections = agents.connection_records(agent_id, raw_connections)
        evidence = await self._owner_hints(run, page, agent_id, owners or [])
        page.principals.append(
            agents.agent_principal(
                records,
                owners=evidence if owners is not None else run.owners_unreadable,
                connections=connections.summaries,
                linked_app_label=run.app_labels.get(records.linked_app or ""),
                inactive_keys=sum(
                    1 for key in raw_keys if isinstance(key, dict) and key.get("status") != "ACTIVE"
                ),
            )
        )
        page.credentials.extend(credentials)
        page.grants.extend(connections.grants)
        run.principal_ids.add(agent_id)
        for malformed in (*records.skipped, *bad_keys, *connections.skipped):
            self._skip(page, malformed)

    async def _agent_owners(
        self, run: _Run, page: Page, agent_id: str
    ) -> list[agents.OwnerRef] | None:
        """Owners from `/owners` when the agent object has none; an API that refuses it
        (one lab saw 405 on every method) is asked once a run, and the agents stay
        without owners: orphans with that evidence, not errors."""
        if run.owners_unreadable is not None:
            return None
        items: list[Any] = []
        try:
            async for found in get.list_agent_owners(self._client, agent_id):
                items.extend(found)
        except (ProviderError, PermissionDenied, NotFound) as refused:
            run.owners_unreadable = f"owners not readable over the Okta API ({refused.message})"
            log.warning("okta %s: %s", self.tenant, run.owners_unreadable)
            return None
        owners, skipped = agents.owner_refs(agent_id, items)
        for malformed in skipped:
            self._skip(page, malformed)
        return owners

    async def _owner_hints(
        self, run: _Run, page: Page, agent_id: str, owners: list[agents.OwnerRef]
    ) -> list[dict[str, Any]]:
        """One idp_owner hint per owning user, and per active member of an owning group
        (the group itself is kept as evidence on the agent)."""
        evidence: list[dict[str, Any]] = []
        for owner in owners:
            if owner.kind == "USER":
                page.owner_hints.append(
                    OwnerHint(
                        agent_id,
                        OwnerSource.IDP_OWNER,
                        "named an owner of this AI agent in Okta",
                        person_id=owner.id,
                    )
                )
                run.wanted_people.add(owner.id)
                evidence.append({"type": "USER", "id": owner.id})
                continue
            group = await self._group(run, page, owner.id)
            active = [member for member in group.members if member.active]
            for member in active:
                page.owner_hints.append(
                    OwnerHint(
                        agent_id,
                        OwnerSource.IDP_OWNER,
                        f"active member of group {group.name} ({owner.id}), "
                        "an owner of this AI agent in Okta",
                        person_id=member.external_id,
                    )
                )
            evidence.append(
                {"type": "GROUP", "id": owner.id, "name": group.name, "active_members": len(active)}
            )
        return evidence

    async def _group(self, run: _Run, page: Page, group_id: str) -> _Group:
        if group_id in run.groups:
            return run.groups[group_id]
        group = _Group(name=group_id, members=[])
        try:
            raw = await get.get_group(self._client, group_id)
            profile = raw.get("profile") if isinstance(raw, dict) else None
            if isinstance(profile, dict) and isinstance(profile.get("name"), str):
                group.name = profile["name"]
            async for members in get.list_group_members(self._client, group_id):
                for member in members:
                    person = transform.person_record(member)
                    self._add_person(run, page, person, transform.user_status(member))
                    if isinstance(person, Person):
                        group.members.append(person)
        except NotFound:
            log.info("okta %s: owning group %s no longer exists", self.tenant, group_id)
        run.groups[group_id] = group
        return group

    # -- people ---------------------------------------------------------------------------
    async def _people(self, run: _Run) -> AsyncIterator[Page]:
        size = self.settings.page_size
        for listing in (get.list_users, get.list_deprovisioned_users):
            async for raw_users in listing(self._client, size):
                page = Page()
                for raw in raw_users:
                    person = transform.person_record(raw)
                    self._add_person(run, page, person, transform.user_status(raw))
                yield page

    def _add_person(
        self, run: _Run, page: Page, person: Person | Malformed, status: str | None
    ) -> None:
        if isinstance(person, Malformed):
            self._skip(page, person)
            return
        if person.external_id in run.people:
            return
        page.people.append(person)
        run.people.add(person.external_id)
        if status:
            run.user_status[person.external_id] = status
        if person.manager_id:
            run.wanted_people.add(person.manager_id)

    async def _missing_people(self, run: _Run, hints: list[OwnerHint]) -> list[Person]:
        """People referenced but not listed (e.g. deleted since): fetched one by one."""
        run.wanted_people.update(hint.person_id for hint in hints if hint.person_id)
        page = Page()
        while missing := run.wanted_people - run.people:
            for user_id in sorted(missing):
                try:
                    raw = await get.get_user(self._client, user_id)
                except NotFound:
                    log.info("okta %s: referenced user %s no longer exists", self.tenant, user_id)
                    run.people.add(user_id)  # asked once, not found
                    continue
                self._add_person(
                    run, page, transform.person_record(raw), transform.user_status(raw)
                )
                run.people.add(user_id)
        return page.people

    # -- enforcement ----------------------------------------------------------------------
    async def disable(self, ref: PrincipalRef) -> Snapshot:
        return await act.disable(self._client, ref, self._sleep)

    async def enable(self, ref: PrincipalRef, snapshot: Snapshot) -> None:
        await act.enable(self._client, ref, snapshot, self._sleep)

    async def revoke_grant(self, grant: GrantRef) -> Snapshot:
        return await act.revoke_grant(self._client, grant)

    async def restore_grant(self, grant: GrantRef, snapshot: Snapshot) -> None:
        await act.restore_grant(self._client, grant, snapshot)

    async def aclose(self) -> None:
        await self._client.aclose()


async def _settle(*tasks: asyncio.Task[Any]) -> None:
    """Cancel what is still running and collect every outcome (no orphaned exceptions)."""
    for task in tasks:
        if not task.done():
            task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
