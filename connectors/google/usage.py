"""Reading the token audit log: who changed their grants, and each app's last use.

The log is large on editions that record app use (many `activity` events per user and app
per day: developers.google.com/workspace/admin/reports/v1/appendix/activity/token), so it
is streamed page by page, newest first, and folded into one latest time per client:
memory is O(clients), never O(events). Queries are always bounded by a start and an end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from connectors.base import Malformed
from connectors.google import get, transform
from connectors.google.client import GoogleClient

USE = transform.USE_EVENT


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True)
class LastUse:
    latest: dict[str, datetime] = field(default_factory=dict)
    skipped: list[Malformed] = field(default_factory=list)
    pages: int = 0  # log pages streamed


async def app_use_logged(client: GoogleClient, start: datetime, end: datetime) -> bool:
    """Whether the domain logged any app use in [start, end]: editions without token
    `activity` events (Business, Basic) never do, so their last use is unknown."""
    body = await get.activities_page(
        client,
        "token",
        (rfc3339(start), rfc3339(end)),
        event_name=USE,
        size=1,
        fields="items(id/time)",
    )
    return bool(body.get("items"))


async def changed_users(client: GoogleClient, start: datetime, end: datetime) -> set[str]:
    """Profile ids of users who consented to or revoked an app in [start, end]."""
    found: set[str] = set()
    for event in transform.CONSENT_EVENTS:
        token: str | None = None
        while True:
            body = await get.activities_page(
                client,
                "token",
                (rfc3339(start), rfc3339(end)),
                token,
                event_name=event,
                fields=get.ACTOR_FIELDS,
            )
            found |= transform.consenting_actors(body.get("items", []))
            token = body.get("nextPageToken")
            if not token:
                break
    return found


async def last_use(
    client: GoogleClient,
    start: datetime,
    end: datetime,
    known: Iterable[str],
    exhaustive: bool,
) -> LastUse:
    """The latest `activity` per client in [start, end].

    `exhaustive` streams the whole range (a night since the last run). Otherwise (the
    first run: 179 days) it streams newest first until every `known` client has shown up
    or a page finds none it did not know yet, then asks for each remaining client's newest
    event older than the streamed part with one `filters=client_id==…` query each
    (admin.reports_v1.json `filters`): at most about one request per client, however many
    events the window holds.
    """
    result = LastUse()
    wanted = set(known)
    oldest = end
    token: str | None = None
    while True:
        before = len(wanted & result.latest.keys())
        token, oldest = await _fold_page(client, (start, end), token, result, oldest)
        if not token:
            return result
        found = len(wanted & result.latest.keys())
        if not exhaustive and (found == len(wanted) or found == before):
            break
    missing = sorted(wanted - result.latest.keys())
    times = await asyncio.gather(*(_newest(client, start, oldest, cid) for cid in missing))
    result.latest.update(
        (cid, moment) for cid, moment in zip(missing, times, strict=True) if moment
    )
    return result


async def _fold_page(
    client: GoogleClient,
    window: tuple[datetime, datetime],
    token: str | None,
    result: LastUse,
    oldest: datetime,
) -> tuple[str | None, datetime]:
    """One page folded into `result`; the page itself is gone when this returns."""
    start, end = window
    body = await get.activities_page(
        client, "token", (rfc3339(start), rfc3339(end)), token, event_name=USE
    )
    result.pages += 1
    items = body.get("items", [])
    transform.fold_token_use(items, result.latest, result.skipped)
    following = body.get("nextPageToken")
    return following if isinstance(following, str) and following else None, min(
        [oldest, *_times(items)]
    )


def _times(items: list[dict[str, object]]) -> list[datetime]:
    found = []
    for item in items:
        ident = item.get("id")
        try:
            moment = transform.parse_time(ident.get("time") if isinstance(ident, dict) else None)
        except (ValueError, TypeError):
            continue
        if moment is not None:
            found.append(moment)
    return found


async def _newest(
    client: GoogleClient, start: datetime, end: datetime, cid: str
) -> datetime | None:
    body = await get.activities_page(
        client,
        "token",
        (rfc3339(start), rfc3339(end)),
        event_name=USE,
        filters=f"client_id=={cid}",
        size=1,
        fields="items(id/time)",
    )
    times = _times(body.get("items", []))
    return max(times) if times else None
