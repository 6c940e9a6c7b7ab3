"""Discovery: full enumeration on the first round, Graph delta rounds afterwards.

Both rounds end in the same place: a list of entries (a service principal with its app
registration, or an app registration alone) turned into pages of records, each entry's
owners and application permissions read through JSON `$batch`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connectors.base import Checkpoint, Malformed, OwnerHint, Page, PermissionDenied, ProviderError
from connectors.entra import get
from connectors.entra import transform as tf
from connectors.entra.client import RESTART, ExpiredPageToken, GraphClient, Json

log = logging.getLogger("connectors.entra")

CHUNK = 200  # principals per yielded page
SP_CURSOR, APP_CURSOR = "service_principals", "applications"
FULL_AT = "full_round_at"  # when the last full round started, ISO 8601


@dataclass
class Entry:
    sp: Json | None
    app: Json | None

    @property
    def principal_id(self) -> str:
        return (self.sp or self.app or {})["id"]


@dataclass
class Listing:
    """One collection read to its end: objects by id, removals, the next delta link."""

    objects: dict[str, Json] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    skipped: list[Malformed] = field(default_factory=list)
    delta_link: str | None = None


@dataclass
class Context:
    """What every page of a round shares."""

    resources: dict[str, tf.Resource] = field(default_factory=dict)
    delegated: dict[str, list[Json]] | None = None  # clientId -> grants; None: ask per chunk
    creators: dict[str, list[Json]] = field(default_factory=dict)  # target id -> audits
    sign_ins: dict[str, Json] | None = None  # appId -> row; None: report unavailable


class Discovery:
    def __init__(self, client: GraphClient, now: datetime, full_every: timedelta) -> None:
        self.client = client
        self.tenant = client.tenant
        self.now = now
        self.full_every = full_every
        self.last_full: str | None = None

    async def run(self, cursor: Mapping[str, Any] | None) -> AsyncIterator[Page]:
        sp_link = (cursor or {}).get(SP_CURSOR)
        app_link = (cursor or {}).get(APP_CURSOR)
        self.last_full = (cursor or {}).get(FULL_AT)
        if self.delta_allowed() and isinstance(sp_link, str) and isinstance(app_link, str):
            try:
                sps = await self.listing(
                    get.service_principals_delta(self.client, sp_link), tf.check_service_principal
                )
                apps = await self.listing(
                    get.applications_delta(self.client, app_link), tf.check_application
                )
            except ExpiredPageToken:
                log.warning("tenant %s: delta tokens expired; enumerating in full", self.tenant)
            else:
                async for page in self.delta_round(sps, apps):
                    yield page
                return
        async for page in self.full_round():
            yield page

    def delta_allowed(self) -> bool:
        """Only while the last full round is recent: deltas miss some grant changes."""
        try:
            last = datetime.fromisoformat(str(self.last_full))
        except ValueError:
            return False
        return self.now - last < self.full_every

    # reading whole collections ---------------------------------------------------

    async def listing(
        self, pages: AsyncIterator[Json], check: Callable[[Any], Malformed | None]
    ) -> Listing:
        result = Listing()
        async for page in pages:
            if page is RESTART:
                result = Listing()
                continue
            for item in page.get("value") or []:
                if isinstance(item, dict) and "@removed" in item and tf.record_id(item):
                    result.removed.add(item["id"])
                    result.objects.pop(item["id"], None)
                elif (bad := check(item)) is not None:
                    result.skipped.append(bad)
                else:
                    result.objects[item["id"]] = item
                    result.removed.discard(item["id"])
            link = page.get("@odata.deltaLink")
            result.delta_link = link if isinstance(link, str) else result.delta_link
        return result

    async def people(self) -> AsyncIterator[Page]:
        async for page in get.users(self.client):
            out = Page()
            for user in page.get("value") or []:
                person = tf.person_of(user)
                if isinstance(person, Malformed):
                    self.skip(out, person)
                else:
                    out.people.append(person)
            yield out

    async def optional(self, what: str, read: Callable[[], Awaitable[Any]]) -> Any:
        """A read some tenants refuse (licence, role): refused means unknown, not empty."""
        try:
            return await read()
        except (PermissionDenied, ProviderError) as refused:
            if isinstance(refused, ExpiredPageToken):
                raise
            log.warning(
                "tenant %s: %s unavailable (%s); treated as unknown",
                self.tenant,
                what,
                refused.message,
            )
            return None

    async def creators(self) -> dict[str, list[Json]]:
        by_target: dict[str, list[Json]] = {}
        for activity in get.CREATION_ACTIVITIES:
            async for page in get.creation_audits(self.client, activity):
                if page is RESTART:
                    by_target.clear()  # every activity is listed again from the start
                for audit in page.get("value") or []:
                    for target in tf.audit_targets(audit):
                        by_target.setdefault(target, []).append(audit)
        return by_target

    async def sign_ins(self) -> dict[str, Json]:
        rows: dict[str, Json] = {}
        async for page in get.sign_in_activity(self.client):
            for row in page.get("value") or []:
                if isinstance(row, dict) and isinstance(row.get("appId"), str):
                    rows[row["appId"].lower()] = row
        return rows

    async def context(self, delegated: dict[str, list[Json]] | None) -> Context:
        creators = await self.optional("directory audit", self.creators)
        sign_ins = await self.optional("sign-in activity report", self.sign_ins)
        return Context(delegated=delegated, creators=creators or {}, sign_ins=sign_ins)

    # rounds --------------------------------------------------------------------------

    async def full_round(self) -> AsyncIterator[Page]:
        async for page in self.people():
            yield page
        apps = await self.listing(get.applications_delta(self.client, None), tf.check_application)
        sps = await self.listing(
            get.service_principals_delta(self.client, None), tf.check_service_principal
        )
        delegated: dict[str, list[Json]] = {}
        async for listed in get.delegated_grants(self.client):
            if listed is RESTART:
                delegated.clear()
            for grant in listed.get("value") or []:
                client_id = grant.get("clientId") if isinstance(grant, dict) else None
                delegated.setdefault(str(client_id), []).append(grant)
        context = await self.context(delegated)
        context.resources = {i: tf.resource_of(sp) for i, sp in sps.objects.items()}
        first = Page(skipped=apps.skipped + sps.skipped)
        for bad in first.skipped:
            self.log_skip(bad)
        yield first
        async for page in self.entry_pages(
            self.pair(sps.objects.values(), apps.objects.values()), context
        ):
            yield page
        yield Page(checkpoint=self.checkpoint(True, sps, apps))

    async def delta_round(self, sps: Listing, apps: Listing) -> AsyncIterator[Page]:
        async for page in self.people():
            yield page
        fresh_sps = await get.service_principals_by_id(self.client, sps.objects)
        fresh_apps = await get.applications_by_id(self.client, apps.objects)
        removed = sps.removed | apps.removed | (set(sps.objects) - set(fresh_sps))
        removed |= set(apps.objects) - set(fresh_apps)
        linked_sps = await get.service_principals_by_app_id(
            self.client, {a["appId"] for a in fresh_apps.values()}
        )
        for found in linked_sps.values():
            fresh_sps.update(
                {sp["id"]: sp for sp in found if tf.check_service_principal(sp) is None}
            )
        missing = {sp["appId"] for sp in fresh_sps.values()} - {
            a["appId"] for a in fresh_apps.values()
        }
        for found in (await get.applications_by_app_id(self.client, missing)).values():
            fresh_apps.update({a["id"]: a for a in found if tf.check_application(a) is None})
        entries = self.pair(fresh_sps.values(), fresh_apps.values())
        folded = {e.app["id"] for e in entries if e.sp is not None and e.app is not None}
        context = await self.context(None)
        first = Page(skipped=sps.skipped + apps.skipped, removed=sorted(removed | folded))
        for bad in first.skipped:
            self.log_skip(bad)
        yield first
        async for page in self.entry_pages(entries, context):
            yield page
        async for page in self.activity_of_all(context):
            yield page
        yield Page(checkpoint=self.checkpoint(False, sps, apps))

    async def activity_of_all(self, context: Context) -> AsyncIterator[Page]:
        """Sign-ins move daily without a directory change, so a delta round still reports
        activity for every service principal (a cheap id + appId listing maps the rows)."""
        if not context.sign_ins:
            return
        async for listed in get.service_principal_ids(self.client):
            page = Page()
            for sp in listed.get("value") or []:
                if isinstance(sp, dict) and tf.record_id(sp) and isinstance(sp.get("appId"), str):
                    self.add_activity(page, sp["id"], sp["appId"], context)
            yield page

    def pair(self, sps: Iterable[Json], apps: Iterable[Json]) -> list[Entry]:
        """A service principal takes in the app registration with its appId; an app
        registration with no service principal stands alone as an oauth_app."""
        apps_by_app_id = {app["appId"].lower(): app for app in apps}
        entries = []
        for sp in sps:
            entries.append(Entry(sp, apps_by_app_id.pop(sp["appId"].lower(), None)))
        entries.extend(Entry(None, app) for app in apps_by_app_id.values())
        return entries

    def checkpoint(self, full: bool, sps: Listing, apps: Listing) -> Checkpoint:
        cursor = {}
        if sps.delta_link and apps.delta_link:
            full_at = self.now.isoformat() if full else self.last_full
            cursor = {SP_CURSOR: sps.delta_link, APP_CURSOR: apps.delta_link, FULL_AT: full_at}
        return Checkpoint(full=full, cursor=cursor)

    # pages of principals -----------------------------------------------------------------

    async def entry_pages(self, entries: list[Entry], context: Context) -> AsyncIterator[Page]:
        for start in range(0, len(entries), CHUNK):
            yield await self.entry_page(entries[start : start + CHUNK], context)

    async def entry_page(self, entries: list[Entry], context: Context) -> Page:
        sp_ids = [e.sp["id"] for e in entries if e.sp is not None]
        owner_paths = [("servicePrincipals", i) for i in sp_ids]
        owner_paths += [("applications", e.app["id"]) for e in entries if e.app is not None]
        owners = await get.owners(self.client, owner_paths)
        assignments = await get.app_role_assignments(self.client, sp_ids)
        delegated = context.delegated
        if delegated is None:
            delegated = await get.delegated_grants_of(self.client, sp_ids)
        await self.ensure_resources(context, assignments, delegated, sp_ids)
        page = Page()
        for entry in entries:
            self.add_entry(
                page, entry, owners, assignments.get(entry.principal_id, []), delegated, context
            )
        return page

    async def ensure_resources(
        self,
        context: Context,
        assignments: Mapping[str, list[Json]],
        delegated: Mapping[str, list[Json]],
        sp_ids: list[str],
    ) -> None:
        wanted = {a.get("resourceId") for i in sp_ids for a in assignments.get(i, [])}
        wanted |= {
            g.get("resourceId") for i in sp_ids for g in delegated.get(i, []) if isinstance(g, dict)
        }
        missing = {w for w in wanted if isinstance(w, str)} - set(context.resources)
        if missing:
            found = await get.service_principals_by_id(self.client, missing)
            context.resources.update({i: tf.resource_of(sp) for i, sp in found.items()})

    def add_entry(
        self,
        page: Page,
        entry: Entry,
        owners: Mapping[str, list[Json]],
        assignments: list[Json],
        delegated: Mapping[str, list[Json]],
        context: Context,
    ) -> None:
        principal_id = entry.principal_id
        try:
            principal = tf.principal_of(entry.sp, entry.app)
            credentials, bad = tf.credentials_of(
                principal_id, [h for h in (entry.sp, entry.app) if h]
            )
        except tf.Bad as reason:
            self.skip(page, tf.malformed("principal", entry.sp or entry.app, str(reason)))
            return
        page.principals.append(principal)
        page.credentials.extend(credentials)
        for item in bad:
            self.skip(page, item)
        if entry.sp is not None:
            page.owner_hints += tf.owner_hints(
                principal_id,
                owners.get(f"servicePrincipals/{principal_id}", []),
                "service principal",
            )
            self.add_grants(
                page, principal_id, assignments, delegated.get(principal_id, []), context
            )
            self.add_activity(page, principal_id, entry.sp["appId"], context)
        if entry.app is not None:
            page.owner_hints += tf.owner_hints(
                principal_id, owners.get(f"applications/{entry.app['id']}", []), "app registration"
            )
        page.owner_hints += self.creator_hints(principal_id, entry, context)

    def add_grants(
        self,
        page: Page,
        principal_id: str,
        assignments: list[Json],
        delegated: list[Json],
        context: Context,
    ) -> None:
        for assignment in assignments:
            grant = tf.application_grant(principal_id, assignment, context.resources)
            if isinstance(grant, Malformed):
                self.skip(page, grant)
            else:
                page.grants.append(grant)
        for item in delegated:
            grants = tf.delegated_grants(item, context.resources)
            if isinstance(grants, Malformed):
                self.skip(page, grants)
            else:
                page.grants.extend(grants)

    def add_activity(self, page: Page, principal_id: str, app_id: str, context: Context) -> None:
        row = (context.sign_ins or {}).get(app_id.lower())
        if row is None:
            return  # no row, or no report: use is unknown, never "unused"
        latest = tf.last_sign_in(row)
        if isinstance(latest, Malformed):
            self.skip(page, latest)
        else:
            page.activity.append(tf.activity_of(principal_id, latest))

    def creator_hints(self, principal_id: str, entry: Entry, context: Context) -> list[OwnerHint]:
        targets = [h["id"] for h in (entry.sp, entry.app) if h]
        hints = []
        for target in targets:
            for audit in context.creators.get(target, []):
                hint = tf.creator_hint(principal_id, audit)
                if hint is not None:
                    hints.append(hint)
        return hints

    # malformed records ------------------------------------------------------------------

    def skip(self, page: Page, bad: Malformed) -> None:
        page.skipped.append(bad)
        self.log_skip(bad)

    def log_skip(self, bad: Malformed) -> None:
        log.warning(
            "tenant %s: skipped malformed %s %s: %s",
            self.tenant,
            bad.object_type,
            bad.object_id,
            bad.reason,
        )
