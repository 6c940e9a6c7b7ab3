"""What a Google run carries forward (the checkpoint cursor) and what it decides up front.

The cursor is plain JSON in the store. It holds what no API can give back later: the
domain-wide delegation clients (the audit log forgets after 180 days), the latest use of
each app (so a run reads the token log only since the previous one), when the log was
last read, and when the last full pass ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connectors.google import transform

# Google rejects some queries that start exactly 180 days back (Azure/Azure-Sentinel#9726;
# googleapis/google-api-python-client#148): read 179.
LOG_DAYS = 179
# Reports data arrives with some delay: each run re-reads this much of the previous one.
LOG_OVERLAP = timedelta(hours=1)
UNKNOWN_USE = "this Workspace edition does not log app use (no token activity in 179 days)"


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return transform.parse_time(value)
    except (ValueError, TypeError):
        return None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@dataclass(slots=True)
class LogState:
    delegations: transform.Delegations = field(default_factory=transform.Delegations)
    log_until: datetime | None = None  # the token and admin logs were read up to here
    last_use: dict[str, datetime] = field(default_factory=dict)  # client id -> latest use
    use_known_since: datetime | None = None  # the token log was read without gaps since
    app_use_logged: bool | None = None  # None: not known yet
    full_at: datetime | None = None  # the last full pass
    audit_since: datetime | None = None  # the admin log was read without gaps since

    @classmethod
    def from_cursor(cls, cursor: Mapping[str, Any] | None) -> LogState:
        cursor = cursor or {}
        clients = cursor.get("delegations")
        removed = cursor.get("delegations_removed")
        uses = cursor.get("last_use")
        state = cls(
            delegations=transform.Delegations(
                clients={k: dict(v) for k, v in clients.items() if isinstance(v, dict)}
                if isinstance(clients, dict)
                else {},
                removed={k: str(v) for k, v in removed.items()}
                if isinstance(removed, dict)
                else {},
            ),
            log_until=_when(cursor.get("log_until")),
            use_known_since=_when(cursor.get("use_known_since")),
            app_use_logged=cursor.get("app_use_logged")
            if isinstance(cursor.get("app_use_logged"), bool)
            else None,
            full_at=_when(cursor.get("full_at")),
            audit_since=_when(cursor.get("audit_since")),
        )
        for client_id, text in uses.items() if isinstance(uses, dict) else ():
            moment = _when(text)
            if moment is not None:
                state.last_use[str(client_id)] = moment
        return state

    def cursor(self) -> dict[str, Any]:
        return {
            "delegations": self.delegations.clients,
            "delegations_removed": self.delegations.removed,
            "log_until": _iso(self.log_until),
            "last_use": {k: v.isoformat() for k, v in sorted(self.last_use.items())},
            "use_known_since": _iso(self.use_known_since),
            "app_use_logged": self.app_use_logged,
            "full_at": _iso(self.full_at),
            "audit_since": _iso(self.audit_since),
        }


@dataclass(slots=True)
class Plan:
    """One run, decided before it starts: full pass or a night's changes, and from when
    the logs are read. Plain JSON, so a fanned-out run can hand it from task to task."""

    full: bool
    now: datetime
    since: datetime  # logs are read from here to `now`
    first: bool  # no earlier knowledge of the token log: read 179 days
    unknown_use: str | None = None  # why last use is unknown, if it is
    user_ids: list[str] = field(default_factory=list)  # listed users (not in the JSON)

    @classmethod
    def decide(cls, state: LogState, now: datetime, full_sync_days: int) -> Plan:
        window = now - timedelta(days=LOG_DAYS)
        # A last run that read up to a time still to come (the clock was set back, as in a
        # drill) tells nothing about the logs up to now: read the whole window again.
        gap = (
            state.log_until is None
            or state.log_until - LOG_OVERLAP < window
            or state.log_until > now
        )
        full = gap or state.full_at is None or now - state.full_at >= timedelta(days=full_sync_days)
        since = window if gap or state.log_until is None else state.log_until - LOG_OVERLAP
        return cls(full=full, now=now, since=since, first=gap)

    def window_start(self) -> datetime:
        return self.now - timedelta(days=LOG_DAYS)

    def as_json(self) -> dict[str, Any]:
        return {
            "full": self.full,
            "now": self.now.isoformat(),
            "since": self.since.isoformat(),
            "first": self.first,
            "unknown_use": self.unknown_use,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        now, since = _when(data.get("now")), _when(data.get("since"))
        if now is None or since is None:
            raise ValueError("a plan needs `now` and `since`")
        return cls(
            full=bool(data.get("full")),
            now=now,
            since=since,
            first=bool(data.get("first")),
            unknown_use=data.get("unknown_use") or None,
        )


@dataclass(slots=True)
class TokensRead:
    """What the tokens.list chunks of a run found: the apps, whose tokens were read, and
    whose could not be (their grants must not be swept)."""

    clients: set[str] = field(default_factory=set)
    read: set[str] = field(default_factory=set)
    unread: set[str] = field(default_factory=set)

    def merge(self, other: TokensRead) -> None:
        self.clients |= other.clients
        self.read |= other.read
        self.unread |= other.unread

    def as_json(self) -> dict[str, list[str]]:
        return {
            "clients": sorted(self.clients),
            "read": sorted(self.read),
            "unread": sorted(self.unread),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TokensRead:
        return cls(
            clients=set(data.get("clients", [])),
            read=set(data.get("read", [])),
            unread=set(data.get("unread", [])),
        )
