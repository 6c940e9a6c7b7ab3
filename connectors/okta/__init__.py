"""Okta connector: OAuth/OIDC and API service apps, their scope grants, and SSWS API tokens.

Built on the `okta` SDK (3.x, async); see client.py for how it is driven.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from connectors.base import (
    Checkpoint,
    GrantRef,
    Malformed,
    NotFound,
    OwnerHint,
    Page,
    Person,
    PrincipalRef,
    Snapshot,
)
from connectors.okta import act, get, transform
from connectors.okta.client import OktaClient
from connectors.pacing import LocalPacer, Pacer
from connectors.settings import OktaSettings

__all__ = ["RETENTION", "OktaConnector"]

RETENTION = timedelta(days=90)  # System Log retention: older use is unknown, not absent
LOG_WINDOW_MARGIN = timedelta(minutes=5)  # keeps `since` inside retention as time passes
log = logging.getLogger(__name__)


class _Run:
    """What one discovery run learned so far, to tie later records to earlier ones."""

    def __init__(self) -> None:
        self.oauth_apps: dict[str, str | None] = {}  # reviewed app id -> client id
        self.principal_ids: set[str] = set()
        self.people: set[str] = set()
        self.wanted_people: set[str] = set()


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
        self.pacer = pacer or LocalPacer(sleep=sleep)
        self._client = OktaClient(settings, sleep=sleep)

    # -- discovery ------------------------------------------------------------------------
    async def discover(self, cursor: Mapping[str, Any] | None = None) -> AsyncIterator[Page]:
        """A full enumeration every run (the cursor is not needed to resume)."""
        run = _Run()
        async for page in self._apps(run):
            yield page
        yield await self._api_tokens(run)
        now = self._now()  # after the paced app walk: the log window is checked against it
        window_start = now - RETENTION + LOG_WINDOW_MARGIN
        findings = await self._walk_log(window_start, now)
        async for page in self._people(run):
            yield page
        final = Page(checkpoint=Checkpoint(full=True, cursor={"log_until": now.isoformat()}))
        final.owner_hints = [
            hint for app_id, hint in findings.creators.items() if app_id in run.principal_ids
        ]
        final.activity = [
            findings.activity(app_id, client_id, window_start)
            for app_id, client_id in run.oauth_apps.items()
        ]
        final.people = await self._missing_people(run, final.owner_hints)
        yield final

    def _skip(self, page: Page, malformed: Malformed) -> None:
        log.warning(
            "okta %s: skipped malformed %s %s: %s",
            self.tenant,
            malformed.object_type,
            malformed.object_id,
            malformed.reason,
        )
        page.skipped.append(malformed)

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
        page.principals.append(principal)
        page.credentials.extend(records.credentials)
        run.principal_ids.add(principal.external_id)
        if not records.wants_grants:
            return
        run.oauth_apps[principal.external_id] = records.client_id
        try:
            raw_grants = await get.list_grants(self._client, principal.external_id)
        except NotFound:
            return  # deleted while we listed
        grants, skipped = transform.grant_records(principal.external_id, raw_grants)
        page.grants.extend(grants)
        for malformed in skipped:
            self._skip(page, malformed)

    async def _api_tokens(self, run: _Run) -> Page:
        page = Page()
        raw_tokens = await get.list_api_tokens(self._client)
        for raw in raw_tokens if isinstance(raw_tokens, list) else []:
            records = transform.api_token_records(raw)
            if isinstance(records, Malformed):
                self._skip(page, records)
                continue
            page.principals.append(records.principal)
            page.credentials.append(records.credential)
            page.owner_hints.append(records.owner_hint)
            run.principal_ids.add(records.principal.external_id)
            run.wanted_people.add(records.principal.raw["userId"])
        return page

    async def _walk_log(self, since: datetime, until: datetime) -> transform.LogFindings:
        findings = transform.LogFindings()
        async for events in get.list_owner_and_use_events(self._client, since, until):
            for raw in events:
                malformed = findings.add(raw)
                if malformed is not None:
                    log.warning("okta %s: skipped log event: %s", self.tenant, malformed.reason)
        return findings

    async def _people(self, run: _Run) -> AsyncIterator[Page]:
        size = self.settings.page_size
        for listing in (get.list_users, get.list_deprovisioned_users):
            async for raw_users in listing(self._client, size):
                page = Page()
                for raw in raw_users:
                    self._add_person(run, page, transform.person_record(raw))
                yield page

    def _add_person(self, run: _Run, page: Page, person: Person | Malformed) -> None:
        if isinstance(person, Malformed):
            self._skip(page, person)
            return
        page.people.append(person)
        run.people.add(person.external_id)
        if person.manager_id:
            run.wanted_people.add(person.manager_id)

    async def _missing_people(self, run: _Run, hints: list[OwnerHint]) -> list[Person]:
        """People referenced but not listed (e.g. deleted since): fetched one by one."""
        run.wanted_people.update(hint.person_id for hint in hints if hint.person_id)
        page = Page()
        while missing := run.wanted_people - run.people:
            for user_id in sorted(missing):
                run.people.add(user_id)  # asked once, found or not
                try:
                    raw = await get.get_user(self._client, user_id)
                except NotFound:
                    log.info("okta %s: referenced user %s no longer exists", self.tenant, user_id)
                    continue
                self._add_person(run, page, transform.person_record(raw))
        return page.people

    # -- enforcement ----------------------------------------------------------------------
    async def disable(self, ref: PrincipalRef) -> Snapshot:
        return await act.disable(self._client, ref)

    async def enable(self, ref: PrincipalRef, snapshot: Snapshot) -> None:
        await act.enable(self._client, ref, snapshot)

    async def revoke_grant(self, grant: GrantRef) -> Snapshot:
        return await act.revoke_grant(self._client, grant)

    async def restore_grant(self, grant: GrantRef, snapshot: Snapshot) -> None:
        await act.restore_grant(self._client, grant, snapshot)

    async def aclose(self) -> None:
        await self._client.aclose()
