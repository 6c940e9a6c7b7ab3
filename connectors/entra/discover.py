"""Discovery: a full round streamed page by page, then nightly delta rounds.

Full round: start change tracking (`$deltatoken=latest`), then read each collection once in
its cheap form (see get.py) while pages stream out: people as they come; service
principals in 16 slices read side by side, each paired with its app registration (parked
on disk meanwhile, spill.py); app registrations that have no service principal; then
application permissions per resource and delegated grants tenant-wide. Memory holds a few
pages, not the tenant.

Delta round: the delta links of service principals, applications and users, plus the
directory audit log since the last run for the changes delta cannot see (owners, consents,
app role assignments, delegated grants: delta returns no relationships,
learn.microsoft.com/graph/delta-query-overview). Just those principals are read again,
whole. An object delta reports as changed may 404 for a while (replication lag): it is
read again within the run, then carried to the next; only `@removed` removes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connectors.base import (
    Checkpoint,
    Malformed,
    NotFound,
    OwnerHint,
    Page,
    PermissionDenied,
    PrincipalKind,
    ProviderError,
)
from connectors.entra import get
from connectors.entra import transform as tf
from connectors.entra.client import RESTART, ExpiredPageToken, GraphClient, Json, values
from connectors.entra.spill import Spill

log = logging.getLogger("connectors.entra")

CHUNK = 200  # principals per page of a delta round
GRANTS_PER_PAGE = 1000
QUEUED_PAGES = 4  # pages read ahead of the store
SP_CURSOR, APP_CURSOR, USER_CURSOR = "service_principals", "applications", "users"
FULL_AT = "full_round_at"  # when the last full round started, ISO 8601
AUDITS_SINCE = "audits_since"  # directory audits are read from here on
ACTIVITY_SINCE = "activity_since"  # sign-ins after this are news
PENDING = "pending"  # changed objects that still 404 (replication lag): read next run
# Audit events reach the log minutes after the change
# (learn.microsoft.com/entra/identity/monitoring-health/reference-reports-latency).
AUDIT_OVERLAP = timedelta(minutes=30)
REREAD_WAITS = (1.0, 2.0, 4.0)  # for objects that 404 right after a change
FEW_APP_IDS = 300  # fresh sign-ins looked up by appId below this, else all ids listed
PARKED_APP_FIELDS = frozenset([*get.APP_SELECT, "owners", "@odata.type"])


@dataclass
class Entry:
    sp: Json | None
    app: Json | None

    @property
    def principal_id(self) -> str:
        return (self.sp or self.app or {})["id"]


@dataclass
class Changes:
    """What a delta listing said: changed ids, removed ids, the next delta link."""

    changed: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    skipped: list[Malformed] = field(default_factory=list)
    link: str | None = None


@dataclass
class Context:
    """What the pages of a round share."""

    spill: Spill
    resources: dict[str, tf.Resource] = field(default_factory=dict)  # roles/scopes known
    unknown_resources: set[str] = field(default_factory=set)
    role_resources: set[str] = field(default_factory=set)  # SPs that define app roles
    creators: dict[str, list[Json]] = field(default_factory=dict)  # target id -> audits
    sponsors: dict[str, list[Json]] = field(default_factory=dict)  # agent id -> sponsors
    federated: dict[str, list[Json]] = field(default_factory=dict)  # app object id -> FICs
    skipped: list[Malformed] = field(default_factory=list)
    delivered: set[str] = field(default_factory=set)  # principals of pages so far
    paired: set[str] = field(default_factory=set)  # appIds whose registration was paired


Sink = Callable[[Page], Awaitable[None]]


async def merged(*sources: AsyncIterator[Page]) -> AsyncIterator[Page]:
    """Pages of several sources as they come, read ahead at most `QUEUED_PAGES`."""
    queue: asyncio.Queue[Page | BaseException | None] = asyncio.Queue(QUEUED_PAGES)

    async def pump(source: AsyncIterator[Page]) -> None:
        try:
            async for page in source:
                await queue.put(page)
        except Exception as error:  # handed to the consumer, who raises it
            await queue.put(error)
        else:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(source)) for source in sources]
    try:
        running = len(tasks)
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Discovery:
    def __init__(self, client: GraphClient, now: datetime, full_every: timedelta) -> None:
        self.client = client
        self.tenant = client.tenant
        self.now = now
        self.full_every = full_every

    async def run(self, cursor: Mapping[str, Any] | None) -> AsyncIterator[Page]:
        cursor = cursor or {}
        if self.delta_allowed(cursor):
            spill = Spill()
            try:
                async for page in self.delta_round(cursor, Context(spill)):
                    yield page
                return
            except ExpiredPageToken:
                log.warning("tenant %s: delta tokens expired; enumerating in full", self.tenant)
            finally:
                spill.close()
        spill = Spill()
        try:
            async for page in self.full_round(Context(spill)):
                yield page
        finally:
            spill.close()

    def delta_allowed(self, cursor: Mapping[str, Any]) -> bool:
        """Only while the last full round is recent, and the cursor has all it needs."""
        keys = (SP_CURSOR, APP_CURSOR, USER_CURSOR, AUDITS_SINCE, ACTIVITY_SINCE)
        if not all(isinstance(cursor.get(k), str) for k in keys):
            return False
        try:
            last = datetime.fromisoformat(str(cursor.get(FULL_AT)))
        except ValueError:
            return False
        return self.now - last < self.full_every

    # reading helpers -------------------------------------------------------------------

    async def optional(self, what: str, read: Callable[[], Awaitable[Any]]) -> Any:
        """A read some tenants refuse (licence, role, national cloud): unknown, not empty."""
        try:
            return await read()
        except (PermissionDenied, ProviderError, NotFound) as refused:
            if isinstance(refused, ExpiredPageToken):
                raise
            log.warning(
                "tenant %s: %s unavailable (%s); treated as unknown",
                self.tenant,
                what,
                refused.message,
            )
            return None

    async def changes(self, link: str, collection: str) -> Changes:
        result = Changes()
        async for page in get.changes(self.client, link, collection):
            if page is RESTART:
                result = Changes()
                continue
            for item in page.get("value") or []:
                object_id = tf.record_id(item)
                if object_id is None:
                    result.skipped.append(tf.malformed(collection, item, "id is missing"))
                elif "@removed" in item:
                    result.removed.add(object_id)
                    result.changed.discard(object_id)
                else:
                    result.changed.add(object_id)
                    result.removed.discard(object_id)
            found = page.get("@odata.deltaLink")
            result.link = found if isinstance(found, str) else result.link
        return result

    async def start_tracking(self) -> dict[str, str]:
        async def link(collection: str, select: list[str]) -> str:
            found = await self.changes_of(get.start_tracking(self.client, collection, select))
            if found is None:
                raise ProviderError(self.tenant, f"{collection}/delta gave no delta link")
            return found

        sps, apps, users = await asyncio.gather(
            link("servicePrincipals", get.SP_SELECT),
            link("applications", get.APP_SELECT),
            link("users", [*get.USER_SELECT, "manager"]),
        )
        return {SP_CURSOR: sps, APP_CURSOR: apps, USER_CURSOR: users}

    async def changes_of(self, pages: AsyncIterator[Json]) -> str | None:
        link = None
        async for page in pages:
            found = page.get("@odata.deltaLink")
            link = found if isinstance(found, str) else link
        return link

    async def people(self, pages: AsyncIterator[Json]) -> AsyncIterator[Page]:
        async for page in pages:
            out = Page()
            for user in page.get("value") or []:
                person = tf.person_of(user)
                if isinstance(person, Malformed):
                    self.skip(out, person)
                else:
                    out.people.append(person)
            yield out

    async def read_creators(self, context: Context) -> None:
        by_target: dict[str, list[Json]] = {}

        async def read() -> bool:
            for activity in get.CREATION_ACTIVITIES:
                async for page in get.creation_audits(self.client, activity):
                    if page is RESTART:
                        by_target.clear()  # every activity is listed again from the start
                    for audit in page.get("value") or []:
                        for target in tf.audit_targets(audit):
                            by_target.setdefault(target, []).append(audit)
            return True

        if await self.optional("directory audit", read):
            context.creators = by_target

    async def park_sign_ins(self, context: Context, since: datetime | None = None) -> list[str]:
        """Parks the latest sign-in per appId ("" for none, "!<id> <reason>" for a bad row);
        returns the appIds used after `since`."""
        fresh: list[str] = []

        async def read() -> bool:
            async for page in get.sign_in_activity(self.client):
                rows = []
                for row in page.get("value") or []:
                    if not isinstance(row, dict) or not isinstance(row.get("appId"), str):
                        continue
                    app_id, latest = row["appId"].lower(), tf.last_sign_in(row)
                    if isinstance(latest, Malformed):
                        rows.append((app_id, f"!{latest.object_id or ''} {latest.reason}"))
                        continue
                    rows.append((app_id, latest.isoformat() if latest else ""))
                    if since is None or (latest is not None and latest > since):
                        fresh.append(app_id)
                context.spill.put_texts("sign-ins", rows)
            return True

        await self.optional("sign-in activity report", read)
        return fresh

    async def read_sponsors(self, context: Context) -> None:
        async def read() -> None:
            async for page in get.agent_sponsors(self.client):
                for agent in values(page):
                    if isinstance(agent.get("id"), str):
                        context.sponsors[agent["id"]] = values({"value": agent.get("sponsors")})

        await self.optional("agent identity sponsors", read)

    async def read_federated(self, context: Context) -> None:
        async def read() -> None:
            async for page in get.federated_credentials(self.client):
                for app in values(page):
                    if isinstance(app.get("id"), str):
                        found = app.get("federatedIdentityCredentials")
                        context.federated[app["id"]] = found if isinstance(found, list) else []

        await self.optional("federated identity credentials", read)

    async def park_apps(self, context: Context) -> None:
        async for page in get.applications(self.client):
            if page is RESTART:
                continue  # re-listed: parking again replaces what was parked
            rows = []
            for app in page.get("value") or []:
                bad = tf.check_application(app)
                if bad is not None:
                    context.skipped.append(bad)
                else:
                    kept = {k: v for k, v in app.items() if k in PARKED_APP_FIELDS}
                    rows.append((app["appId"].lower(), kept))
            context.spill.put("apps", rows)

    async def park_grants(self, context: Context) -> None:
        """Delegated grants, read while the apps are: they are loaded after the principals."""
        count = 0
        async for page in get.delegated_grants(self.client):
            if page is RESTART:
                continue  # the same ids again: parking replaces
            grants = [g for g in page.get("value") or [] if isinstance(g, dict)]
            context.spill.put(
                "grants", ((str(g.get("id", count + n)), g) for n, g in enumerate(grants))
            )
            count += len(grants)

    async def parked(self, context: Context, bucket: str) -> AsyncIterator[Json]:
        """What `bucket` holds, as pages of a listing."""
        for batch in context.spill.values(bucket):
            yield {"value": batch}

    # full round -----------------------------------------------------------------------

    async def full_round(self, context: Context) -> AsyncIterator[Page]:
        links = await self.start_tracking()
        async for page in merged(self.people(get.users(self.client)), self.principals(context)):
            yield page
        yield Page(checkpoint=self.checkpoint(True, links, self.now, {}))

    async def principals(self, context: Context) -> AsyncIterator[Page]:
        await asyncio.gather(
            self.park_apps(context),
            self.park_grants(context),
            self.park_sign_ins(context),
            self.read_creators(context),
            self.read_sponsors(context),
            self.read_federated(context),
        )
        first = Page(skipped=list(context.skipped))
        for bad in first.skipped:
            self.log_skip(bad)
        yield first
        slices = [self.slice(prefix, context) for prefix in get.SLICES]
        async for page in merged(*slices):
            yield page
        async for page in self.unpaired_apps(context):
            yield page
        async for page in self.application_grants(context):
            yield page
        async for page in self.delegated(self.parked(context, "grants"), context):
            yield page

    async def slice(self, prefix: str, context: Context) -> AsyncIterator[Page]:
        async for listed in get.service_principals(self.client, prefix):
            if listed is RESTART:
                continue  # pages seen again repeat records: the store keeps the last
            page = Page()
            sps = []
            for sp in listed.get("value") or []:
                bad = tf.check_service_principal(sp)
                if bad is None:
                    sps.append(sp)
                else:
                    self.skip(page, bad)
            apps = context.spill.get_many("apps", (sp["appId"].lower() for sp in sps))
            context.paired.update(apps)
            entries = [Entry(sp, apps.get(sp["appId"].lower())) for sp in sps]
            yield (await self.entry_page(page, entries, context))[0]

    async def unpaired_apps(self, context: Context) -> AsyncIterator[Page]:
        for batch in context.spill.values("apps"):
            alone = [a for a in batch if a["appId"].lower() not in context.paired]
            for start in range(0, len(alone), CHUNK):
                entries = [Entry(None, app) for app in alone[start : start + CHUNK]]
                yield (await self.entry_page(Page(), entries, context))[0]

    async def application_grants(self, context: Context) -> AsyncIterator[Page]:
        """App roles held by service principals, read from each resource that defines roles."""
        for resource_id in sorted(context.role_resources):
            async for listed in get.assigned_to(self.client, resource_id):
                assignments = [
                    a
                    for a in listed.get("value") or []
                    if isinstance(a, dict) and a.get("principalType") == "ServicePrincipal"
                ]
                holders = self.delivered(assignments, "principalId", context)
                page = Page()
                for assignment in assignments:
                    if (holder := assignment.get("principalId")) in holders:
                        self.add_grants(page, holder, [assignment], [], context)
                yield page

    async def delegated(self, pages: AsyncIterator[Json], context: Context) -> AsyncIterator[Page]:
        async for listed in pages:
            grants = [g for g in listed.get("value") or [] if isinstance(g, dict)]
            await self.ensure_resources(context, {g.get("resourceId") for g in grants})
            holders = self.delivered(grants, "clientId", context)
            page = Page()
            for grant in grants:
                if (holder := grant.get("clientId")) in holders:
                    self.add_grants(page, holder, [], [grant], context)
            yield page

    def delivered(self, records: list[Json], name: str, context: Context) -> set[str]:
        """Which of the principals these grant records name this round delivered."""
        return {i for r in records if (i := r.get(name)) in context.delivered}

    # delta round ----------------------------------------------------------------------

    async def delta_round(self, cursor: Mapping[str, Any], context: Context) -> AsyncIterator[Page]:
        sps, apps, users = await asyncio.gather(
            self.changes(cursor[SP_CURSOR], "servicePrincipals"),
            self.changes(cursor[APP_CURSOR], "applications"),
            self.changes(cursor[USER_CURSOR], "users"),
        )
        audited_sps, audited_apps = await self.audited(cursor[AUDITS_SINCE])
        pending = cursor.get(PENDING) or {}
        yield await self.changed_people(users)
        found_sps, lost_sps = await self.reread(
            get.service_principals_by_id,
            (sps.changed | audited_sps | set(pending.get(SP_CURSOR, []))) - sps.removed,
        )
        found_apps, lost_apps = await self.reread(
            get.applications_by_id,
            (apps.changed | audited_apps | set(pending.get(APP_CURSOR, []))) - apps.removed,
        )
        entries, skipped = await self.pair_changed(found_sps, found_apps)
        folded = {e.app["id"] for e in entries if e.sp is not None and e.app is not None}
        if entries:
            await asyncio.gather(
                self.read_creators(context),
                self.read_federated_of(context, [e.app["id"] for e in entries if e.app]),
                self.read_sponsors_of(context, entries),
            )
        fresh = await self.park_sign_ins(context, self.activity_since(cursor))
        first = Page(
            skipped=sps.skipped + apps.skipped + skipped,
            removed=sorted(sps.removed | apps.removed | folded),
        )
        for bad in first.skipped:
            self.log_skip(bad)
        yield first
        for start in range(0, len(entries), CHUNK):
            yield await self.changed_page(entries[start : start + CHUNK], context)
        async for page in self.fresh_activity(fresh, entries, context):
            yield page
        links = {SP_CURSOR: sps.link, APP_CURSOR: apps.link, USER_CURSOR: users.link}
        still = {SP_CURSOR: sorted(lost_sps), APP_CURSOR: sorted(lost_apps)}
        if lost_sps or lost_apps:
            log.warning(
                "tenant %s: %d changed objects are not readable yet (replication lag); "
                "they are read again next run",
                self.tenant,
                len(lost_sps) + len(lost_apps),
            )
        full_at = datetime.fromisoformat(str(cursor[FULL_AT]))
        yield Page(checkpoint=self.checkpoint(False, links, full_at, still))

    def activity_since(self, cursor: Mapping[str, Any]) -> datetime:
        return datetime.fromisoformat(str(cursor[ACTIVITY_SINCE]))

    async def audited(self, since: str) -> tuple[set[str], set[str]]:
        """Service principals and applications whose relationships changed since `since`."""
        sps: set[str] = set()
        apps: set[str] = set()

        async def read() -> None:
            async for page in get.audits_since(self.client, since):
                for audit in values(page):
                    if audit.get("activityDisplayName") not in get.RELATIONSHIP_ACTIVITIES:
                        continue
                    for target in audit.get("targetResources") or []:
                        if not isinstance(target, dict) or not isinstance(target.get("id"), str):
                            continue
                        if target.get("type") == "ServicePrincipal":
                            sps.add(target["id"])
                        elif target.get("type") == "Application":
                            apps.add(target["id"])

        await self.optional("directory audit", read)
        return sps, apps

    async def changed_people(self, users: Changes) -> Page:
        found, _ = await get.users_by_id(self.client, users.changed - users.removed)
        page = Page()
        for user in found.values():
            person = tf.person_of(user)
            if isinstance(person, Malformed):
                self.skip(page, person)
            else:
                page.people.append(person)
        page.skipped.extend(users.skipped)
        return page

    async def reread(
        self,
        read: Callable[[GraphClient, Iterable[str]], Awaitable[tuple[dict[str, Json], set[str]]]],
        ids: set[str],
    ) -> tuple[dict[str, Json], set[str]]:
        """Objects by id; one that 404s right after a change is asked for again a little
        later, and the ids still missing are returned for the next run."""
        found, missing = await read(self.client, ids) if ids else ({}, set())
        for wait in REREAD_WAITS:
            if not missing:
                break
            await self.client.sleep(wait)
            more, missing = await read(self.client, missing)
            found.update(more)
        return found, missing

    async def pair_changed(
        self, sps: dict[str, Json], apps: dict[str, Json]
    ) -> tuple[list[Entry], list[Malformed]]:
        """Each changed object with its counterpart (the app of a service principal and the
        service principal of an app), whether or not that one changed."""
        skipped: list[Malformed] = []
        good_sps = {}
        for sp_id, sp in sps.items():
            bad = tf.check_service_principal(sp)
            if bad is None:
                good_sps[sp_id] = sp
            else:
                skipped.append(bad)
        good_apps = {}
        for app_id, app in apps.items():
            bad = tf.check_application(app)
            if bad is None:
                good_apps[app_id] = app
            else:
                skipped.append(bad)
        app_ids = {a["appId"].lower() for a in good_apps.values()}
        sp_app_ids = {s["appId"].lower() for s in good_sps.values()}
        for found in (
            await get.service_principals_by_app_id(self.client, app_ids - sp_app_ids)
        ).values():
            good_sps.update({s["id"]: s for s in found if tf.check_service_principal(s) is None})
        sp_app_ids = {s["appId"].lower() for s in good_sps.values()}
        for found in (await get.applications_by_app_id(self.client, sp_app_ids - app_ids)).values():
            good_apps.update({a["id"]: a for a in found if tf.check_application(a) is None})
        apps_by_app_id = {app["appId"].lower(): app for app in good_apps.values()}
        entries = [
            Entry(sp, apps_by_app_id.pop(sp["appId"].lower(), None)) for sp in good_sps.values()
        ]
        entries.extend(Entry(None, app) for app in apps_by_app_id.values())
        return entries, skipped

    async def read_federated_of(self, context: Context, app_ids: list[str]) -> None:
        found = await get.federated_credentials_of(self.client, app_ids)
        context.federated.update({k: v for k, v in found.items() if v})

    async def read_sponsors_of(self, context: Context, entries: list[Entry]) -> None:
        agents = [
            e.sp["id"] for e in entries if e.sp and tf.kind_of(e.sp) is PrincipalKind.AGENT_IDENTITY
        ]
        if agents:
            found = await self.optional(
                "agent identity sponsors", lambda: get.sponsors_of(self.client, agents)
            )
            context.sponsors.update(found or {})

    async def changed_page(self, entries: list[Entry], context: Context) -> Page:
        """Whole principals again: every credential, grant and owner hint they have now."""
        sp_ids = [e.sp["id"] for e in entries if e.sp is not None]
        assignments, delegated = await asyncio.gather(
            get.app_role_assignments(self.client, sp_ids),
            get.delegated_grants_of(self.client, sp_ids),
        )
        wanted = {a.get("resourceId") for i in sp_ids for a in assignments.get(i, [])}
        wanted |= {g.get("resourceId") for i in sp_ids for g in delegated.get(i, [])}
        await self.ensure_resources(context, wanted)
        page, delivered = await self.entry_page(Page(), entries, context)
        for sp_id in sp_ids:
            if sp_id in delivered:
                held, consented = assignments.get(sp_id, []), delegated.get(sp_id, [])
                self.add_grants(page, sp_id, held, consented, context)
        return page

    async def fresh_activity(
        self, fresh: list[str], entries: list[Entry], context: Context
    ) -> AsyncIterator[Page]:
        """Sign-ins move daily without a directory change: report those since the last run
        (older ones are stored already)."""
        known = {e.sp["appId"].lower() for e in entries if e.sp is not None}
        wanted = set(fresh) - known
        if not wanted:
            return
        if len(wanted) <= FEW_APP_IDS:
            found = await get.service_principal_ids_by_app_id(self.client, wanted)
            batches: list[list[Json]] = list(found.values())
        else:
            batches = [values(p) async for p in get.service_principal_ids(self.client)]
        for batch in batches:
            sps = [
                sp
                for sp in batch
                if tf.record_id(sp)
                and isinstance(sp.get("appId"), str)
                and sp["appId"].lower() in wanted
            ]
            rows = context.spill.texts("sign-ins", (sp["appId"].lower() for sp in sps))
            page = Page()
            for sp in sps:
                self.add_activity(page, sp["id"], rows.get(sp["appId"].lower()))
            yield page

    def checkpoint(
        self,
        full: bool,
        links: Mapping[str, str | None],
        full_at: datetime,
        pending: Mapping[str, list[str]],
    ) -> Checkpoint:
        if not all(isinstance(link, str) for link in links.values()):
            return Checkpoint(full=full)
        cursor: dict[str, Any] = {
            **links,
            FULL_AT: full_at.isoformat(),
            AUDITS_SINCE: (self.now - AUDIT_OVERLAP).strftime("%Y-%m-%dT%H:%M:%SZ"),
            ACTIVITY_SINCE: self.now.isoformat(),
        }
        if any(pending.values()):
            cursor[PENDING] = dict(pending)
        return Checkpoint(full=full, cursor=cursor)

    # pages of principals ------------------------------------------------------------------

    async def entry_page(
        self, page: Page, entries: list[Entry], context: Context
    ) -> tuple[Page, set[str]]:
        """The page with these entries' records, and the principals it delivered."""
        await self.complete_owners(entries)
        app_ids = (e.sp["appId"].lower() for e in entries if e.sp is not None)
        sign_ins = context.spill.texts("sign-ins", app_ids)
        delivered = {e.principal_id for e in entries if self.add_entry(page, e, context, sign_ins)}
        context.delivered |= delivered
        return page, delivered

    async def complete_owners(self, entries: list[Entry]) -> None:
        """An `$expand` gives at most 20 owners: read the full list of those showing 20."""
        crowded = [
            (collection, record["id"])
            for entry in entries
            for collection, record in (("servicePrincipals", entry.sp), ("applications", entry.app))
            if record is not None and len(record.get("owners") or []) >= get.EXPANDED_MAX
        ]
        if crowded:
            found = await get.owners(self.client, crowded)
            for entry in entries:
                for collection, record in (
                    ("servicePrincipals", entry.sp),
                    ("applications", entry.app),
                ):
                    if record is not None and f"{collection}/{record['id']}" in found:
                        record["owners"] = found[f"{collection}/{record['id']}"]

    async def ensure_resources(self, context: Context, wanted: set[Any]) -> None:
        missing = {w for w in wanted if isinstance(w, str)} - set(context.resources)
        missing -= context.unknown_resources
        if missing:
            found = await get.resources_by_id(self.client, missing)
            context.resources.update({i: tf.resource_of(sp) for i, sp in found.items()})
            context.unknown_resources |= missing - set(found)

    def add_entry(
        self, page: Page, entry: Entry, context: Context, sign_ins: Mapping[str, Any]
    ) -> bool:
        principal_id = entry.principal_id
        fics = context.federated.get(entry.app["id"], []) if entry.app else []
        try:
            principal = tf.principal_of(entry.sp, entry.app)
            managed = principal.kind is PrincipalKind.MANAGED_IDENTITY
            holders = [h for h in (entry.sp, entry.app) if h]
            credentials, bad = tf.credentials_of(principal_id, holders, managed=managed)
            federated, bad_federated = tf.federated_credentials(principal_id, fics)
        except tf.Bad as reason:
            self.skip(page, tf.malformed("principal", entry.sp or entry.app, str(reason)))
            return False
        if entry.sp is not None and (unknown := tf.unknown_type(entry.sp)):
            log.warning(
                "tenant %s: service principal %s has servicePrincipalType %r, unknown here; "
                "inventoried as a service principal",
                self.tenant,
                principal_id,
                unknown,
            )
        page.principals.append(principal)
        page.credentials.extend(credentials + federated)
        for item in bad + bad_federated:
            self.skip(page, item)
        if entry.sp is not None:
            self.add_service_principal(page, entry.sp, context)
            self.add_activity(page, principal_id, sign_ins.get(entry.sp["appId"].lower()))
        if entry.app is not None:
            owners = values({"value": entry.app.get("owners")})
            page.owner_hints += tf.owner_hints(principal_id, owners, "app registration")
        page.owner_hints += self.creator_hints(principal_id, entry, context)
        return True

    def add_service_principal(self, page: Page, sp: Json, context: Context) -> None:
        sp_id = sp["id"]
        owners = values({"value": sp.get("owners")})
        page.owner_hints += tf.owner_hints(sp_id, owners, "service principal")
        if sp_id in context.sponsors:
            sponsors = context.sponsors[sp_id]
            page.owner_hints += tf.owner_hints(sp_id, sponsors, "agent identity", "sponsors")
        if sp.get("appRoles") or sp.get("oauth2PermissionScopes"):
            context.resources[sp_id] = tf.resource_of(sp)
            if sp.get("appRoles"):
                context.role_resources.add(sp_id)

    def add_grants(
        self,
        page: Page,
        principal_id: str,
        assignments: list[Any],
        delegated: list[Any],
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

    def add_activity(self, page: Page, principal_id: str, row: str | None) -> None:
        """`row` is the parked sign-in summary of the principal's appId, if any."""
        if row is None:
            return  # no row, or no report: use is unknown, never "unused"
        if row.startswith("!"):
            row_id, _, reason = row[1:].partition(" ")
            kind = "servicePrincipalSignInActivity"
            self.skip(page, Malformed(kind, row_id or None, reason))
            return
        latest = datetime.fromisoformat(row) if row else None
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
