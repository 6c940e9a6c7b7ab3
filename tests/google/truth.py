"""Ground truth from a seed, and helpers that fold a stream of pages into sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from connectors.base import Activity, Credential, Grant, OwnerHint, Page, Person, Principal
from sandbox.google.seed import NEVER_EXPIRES, Seed

LOG_WINDOW = timedelta(days=179)  # how far back Recert reads the audit logs


@dataclass
class Stream:
    principals: dict[str, Principal] = field(default_factory=dict)
    grants: set[Grant] = field(default_factory=set)
    people: dict[str, Person] = field(default_factory=dict)
    credentials: set[Credential] = field(default_factory=set)
    owner_hints: set[OwnerHint] = field(default_factory=set)
    activity: dict[str, Activity] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def fold(pages: list[Page]) -> Stream:
    stream = Stream()
    for page in pages:
        for principal in page.principals:
            earlier = stream.principals.setdefault(principal.external_id, principal)
            assert earlier.display_name == principal.display_name
            stream.principals[principal.external_id] = principal  # the store keeps the last
        stream.grants.update(page.grants)
        stream.people.update((p.external_id, p) for p in page.people)
        stream.credentials.update(page.credentials)
        stream.owner_hints.update(page.owner_hints)
        stream.activity.update((a.principal_id, a) for a in page.activity)
        stream.skipped.extend(f"{m.object_type}:{m.object_id}" for m in page.skipped)
    return stream


def seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def expected_grants(seed: Seed) -> set[tuple[str, str, str, str]]:
    return {
        (cid, f"{user.id}:{cid}", scope, user.id)
        for user in seed.users
        for cid, token in user.tokens.items()
        for scope in token.scopes
    }


def millis(moment: datetime) -> datetime:
    """The Reports API's precision: milliseconds."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def expected_last_use(seed: Seed) -> dict[str, datetime | None]:
    """Latest `activity` event in the 179 days read, per client (Enterprise edition)."""
    window = seed.now - LOG_WINDOW
    last: dict[str, datetime | None] = {}
    for user in seed.users:
        for cid, token in user.tokens.items():
            used = token.last_used_at
            best = millis(used) if used and used >= window else None
            current = last.get(cid)
            last[cid] = max(filter(None, (current, best)), default=None)
    return last


def expected_delegations(seed: Seed) -> dict[str, list[str]]:
    window = seed.now - LOG_WINDOW
    return {
        c.client_id: c.scopes
        for c in seed.dwd_clients
        if c.authorized_at >= window and c.removed_at is None
    }


def expected_keys(seed: Seed) -> set[tuple[str, str, datetime | None]]:
    def parse(text: str) -> datetime | None:
        if text == NEVER_EXPIRES:
            return None
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return {
        (account.unique_id, key.key_id, parse(key.valid_before))
        for account in seed.service_accounts
        for key in account.keys
        if key.key_type == "USER_MANAGED" and not key.disabled
    }
