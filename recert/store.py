"""Bulk writes of the inventory: one upsert statement per page and table, then sweep.

Rows are stamped with the sync run that saw them. Only a run that ended cleanly sweeps:
in a full run whatever was not seen is gone; in a delta run only what the provider said
was removed, plus the stale children of principals the run re-delivered. A principal or
person the connector skipped as malformed was still there: its stored row is stamped
too, so the sweep keeps it as it was.

Provider text is stored as it came, except NUL, which PostgreSQL text cannot hold: it
becomes U+FFFD (the replacement character), on both databases alike.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, replace
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import bindparam, delete, func, or_, update
from sqlalchemy import select as select_columns
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, col, select

from connectors import base
from connectors.base import Status
from recert.models import Credential, Grant, OwnerHint, Person, Principal

log = logging.getLogger(__name__)
_Child = TypeVar("_Child", base.Credential, base.Grant, base.OwnerHint, base.Activity)
_Record = TypeVar("_Record")
NUL, REPLACEMENT = "\x00", "\ufffd"
_Model = TypeVar("_Model", bound=SQLModel)
_BOOKKEEPING = (
    "raw",
    "first_seen_at",
    "first_seen_run_id",
    "last_seen_at",
    "last_seen_run_id",
    "deleted_at",
)


def upsert(
    session: Session,
    model: type[SQLModel],
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    keep: Iterable[str] = (),
) -> None:
    """INSERT .. ON CONFLICT (keys) DO UPDATE every column but `keys` and `keep`."""
    rows_by_key = {tuple(row[k] for k in keys): row for row in rows}  # last one wins
    unique = list(rows_by_key.values())
    if not unique:
        return
    table = model.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    columns = list(unique[0])
    updated = [c for c in columns if c not in keys and c not in set(keep)]
    statement = insert(table)
    if updated:
        excluded = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=list(keys), set_={c: excluded[c] for c in updated}
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(keys))
    # One cached statement with the page as executemany parameters: the drivers batch it
    # (psycopg pipelines, sqlite3 in C) without compiling a new giant VALUES list per page.
    session.execute(statement, unique)


def grouped(session: Session, model: Any, ids: Sequence[int | None]) -> dict[int, list[Any]]:
    """Rows of a per-principal table for many principals, grouped by principal id."""
    by_principal: dict[int, list[Any]] = defaultdict(list)
    for start in range(0, len(ids), 10_000):
        chunk = ids[start : start + 10_000]
        query = select(model).where(col(model.principal_id).in_(chunk)).order_by(col(model.id))
        for row in session.exec(query):
            by_principal[row.principal_id].append(row)
    return by_principal


def rows_of(
    session: Session,
    model: type[_Model],
    *where: Any,
    order: Any = None,
    limit: int | None = None,
    leave_out: Iterable[str] = (),
) -> list[_Model]:
    """Read-only rows with the columns of `model` (but `leave_out`) as attributes, without
    building ORM objects: a fraction of the cost when reading a whole tenant."""
    table = model.__table__  # type: ignore[attr-defined]
    skipped = set(leave_out)
    query = select_columns(*(c for c in table.columns if c.name not in skipped)).where(*where)
    if order is not None:
        query = query.order_by(order)
    if limit is not None:
        query = query.limit(limit)
    return cast(list[_Model], session.connection().execute(query).all())


def grouped_rows(
    session: Session, model: type[_Model], ids: Sequence[int | None]
) -> dict[int, list[_Model]]:
    """`grouped`, as read-only rows."""
    by_principal: dict[int, list[_Model]] = defaultdict(list)
    key = model.principal_id  # type: ignore[attr-defined]
    order = model.id  # type: ignore[attr-defined]
    for start in range(0, len(ids), 10_000):
        chunk = ids[start : start + 10_000]
        for row in rows_of(session, model, col(key).in_(chunk), order=col(order)):
            by_principal[row.principal_id].append(row)  # type: ignore[attr-defined]
    return by_principal


def live_principals(
    session: Session, tenant_id: int, size: int = 2000
) -> Iterator[list[Principal]]:
    """A tenant's principals that are not deleted, as read-only rows (without the provider's
    raw fields and the sync bookkeeping), `size` at a time in id order: memory holds one
    batch."""
    after = 0
    while True:
        batch = rows_of(
            session,
            Principal,
            col(Principal.tenant_id) == tenant_id,
            col(Principal.status) != Status.DELETED,
            col(Principal.id) > after,
            order=col(Principal.id),
            limit=size,
            leave_out=_BOOKKEEPING,
        )
        if not batch:
            return
        after = batch[-1].id or after
        yield batch


def principal_ids(session: Session, tenant_id: int, external_ids: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(external_ids))
    found: dict[str, int] = {}
    for start in range(0, len(wanted), 10_000):
        query = select(Principal.external_id, Principal.id).where(
            Principal.tenant_id == tenant_id,
            col(Principal.external_id).in_(wanted[start : start + 10_000]),
        )
        found.update({external_id: pid for external_id, pid in session.exec(query) if pid})
    return found


def storable(value: Any) -> Any:
    """`value` with every NUL in its strings (keys too, at any depth) made U+FFFD."""
    if isinstance(value, str):
        return value.replace(NUL, REPLACEMENT) if NUL in value else value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(storable(v) for v in value)
    return value


def _storable_record(record: _Record) -> _Record:
    """The record itself when it holds no NUL (the usual case: no copy), else a clean copy."""
    changes = {}
    for name in record.__slots__:  # type: ignore[attr-defined]
        value = getattr(record, name)
        if isinstance(value, str):
            if NUL in value:
                changes[name] = storable(value)
        elif isinstance(value, dict) and value and "\\u0000" in json.dumps(value, default=str):
            changes[name] = storable(value)
    return replace(record, **changes) if changes else record  # type: ignore[type-var]


def storable_page(page: base.Page) -> base.Page:
    return base.Page(
        principals=[_storable_record(p) for p in page.principals],
        credentials=[_storable_record(c) for c in page.credentials],
        grants=[_storable_record(g) for g in page.grants],
        owner_hints=[_storable_record(h) for h in page.owner_hints],
        people=[_storable_record(p) for p in page.people],
        activity=[_storable_record(a) for a in page.activity],
        removed=[storable(r) for r in page.removed],
        skipped=[_storable_record(m) for m in page.skipped],
        checkpoint=page.checkpoint,
    )


class PageLoader:
    """Loads one tenant's pages for one sync run."""

    def __init__(
        self,
        session: Session,
        *,
        tenant_id: int,
        tenant_name: str,
        run_id: int,
        now: datetime,
        protected: Iterable[str] = (),
    ) -> None:
        self.session = session
        self.tenant_id = tenant_id
        self.tenant_name = tenant_name
        self.run_id = run_id
        self.now = now
        self.protected = set(protected)
        self.skipped = 0
        self.removed = 0  # principals a delta page said are gone
        self.returned: list[str] = []  # deleted principals seen again, for the audit log

    def load(self, page: base.Page) -> None:
        page = storable_page(page)
        self.skipped += len(page.skipped)  # the connector logged each one
        self._keep_skipped(page.skipped)
        self._principals(page.principals)
        ids = principal_ids(self.session, self.tenant_id, _referenced(page))
        self._children(page, ids)
        self._people(page.people)
        self._activity(page.activity, ids)
        self._removed(page.removed)

    def _keep_skipped(self, skipped: list[base.Malformed]) -> None:
        """A malformed record is still there: stamp its stored principal (and what hangs
        off it) or person with this run, so the sweep neither retires nor deactivates it."""
        named = sorted({m.object_id for m in skipped if m.object_id})
        if not named:
            return
        kept = list(principal_ids(self.session, self.tenant_id, named).values())
        if kept:
            self.session.execute(
                update(Principal)
                .where(col(Principal.id).in_(kept), col(Principal.status) != Status.DELETED)
                .values(last_seen_run_id=self.run_id)
            )
            for child in (Credential, Grant, OwnerHint):
                self.session.execute(
                    update(child)
                    .where(col(child.principal_id).in_(kept))
                    .values(last_seen_run_id=self.run_id)
                )
        self.session.execute(
            update(Person)
            .where(
                col(Person.tenant_id) == self.tenant_id,
                or_(col(Person.external_id).in_(named), col(Person.email).in_(named)),
            )
            .values(last_seen_run_id=self.run_id)
        )

    def _skip(self, object_type: str, object_id: str | None, reason: str) -> None:
        self.skipped += 1
        log.warning(
            "tenant %s: skipped %s %s: %s", self.tenant_name, object_type, object_id, reason
        )

    def _principals(self, principals: list[base.Principal]) -> None:
        rows = [self._principal_row(p) for p in principals]
        self.returned.extend(
            self.session.exec(
                select(Principal.external_id).where(
                    Principal.tenant_id == self.tenant_id,
                    Principal.status == Status.DELETED,
                    col(Principal.external_id).in_([p.external_id for p in principals]),
                )
            ).all()
        )
        upsert(
            self.session,
            Principal,
            rows,
            ("tenant_id", "external_id"),
            keep=("first_seen_at", "first_seen_run_id"),
        )

    def _principal_row(self, p: base.Principal) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "external_id": p.external_id,
            "kind": p.kind.value,
            "display_name": p.display_name,
            "status": p.status.value,
            "platform_owned": p.platform_owned,
            "protected": p.external_id in self.protected or p.display_name in self.protected,
            "app_id": p.app_id,
            "publisher": p.publisher,
            "publisher_verified": p.publisher_verified,
            "created_at": p.created_at,
            "first_seen_at": self.now,
            "first_seen_run_id": self.run_id,
            "last_seen_at": self.now,
            "last_seen_run_id": self.run_id,
            "deleted_at": None,
            "raw": dict(p.raw),
        }

    def _children(self, page: base.Page, ids: dict[str, int]) -> None:
        credentials = [
            {
                "principal_id": ids[c.principal_id],
                "credential_id": c.credential_id,
                "type": c.type,
                "display_name": c.display_name,
                "created_at": c.created_at,
                "expires_at": c.expires_at,
                "valid_from": c.valid_from,
                "last_seen_run_id": self.run_id,
            }
            for c in self._known(page.credentials, ids, "credential")
        ]
        upsert(self.session, Credential, credentials, ("principal_id", "credential_id"))
        grants = [
            {
                "principal_id": ids[g.principal_id],
                "grant_id": g.grant_id,
                "permission": g.permission,
                "resource": g.resource,
                "consent": g.consent.value,
                "consenting_user": g.consenting_user,
                "description": g.description,
                "last_seen_run_id": self.run_id,
            }
            for g in self._known(page.grants, ids, "grant")
        ]
        upsert(self.session, Grant, grants, ("principal_id", "grant_id", "permission"))
        hints = [
            {
                "principal_id": ids[h.principal_id],
                "source": h.source.value,
                "reference": h.person_id or h.owner_principal_id or h.email or "",
                "person_external_id": h.person_id,
                "owner_principal_external_id": h.owner_principal_id,
                "email": h.email,
                "evidence": h.evidence,
                "last_seen_run_id": self.run_id,
            }
            for h in self._known(page.owner_hints, ids, "owner hint")
        ]
        upsert(self.session, OwnerHint, hints, ("principal_id", "source", "reference"))

    def _known(self, records: list[_Child], ids: dict[str, int], what: str) -> list[_Child]:
        known = []
        for record in records:
            if record.principal_id in ids:
                known.append(record)
            else:
                self._skip(what, record.principal_id, "refers to a principal never delivered")
        return known

    def _people(self, people: list[base.Person]) -> None:
        rows = [
            {
                "tenant_id": self.tenant_id,
                "last_seen_run_id": self.run_id,
                **{k: v for k, v in asdict(p).items() if k not in ("external_id", "manager_id")},
                "external_id": p.external_id,
                "manager_external_id": p.manager_id,
            }
            for p in people
        ]
        upsert(self.session, Person, rows, ("tenant_id", "external_id"))

    def _activity(self, activity: list[base.Activity], ids: dict[str, int]) -> None:
        rows = [
            {"pid": ids[a.principal_id], "used": a.last_used_at, "window": a.window_start}
            for a in self._known(activity, ids, "activity")
        ]
        if rows:
            statement = (
                update(Principal)
                .where(col(Principal.id) == bindparam("pid"))
                .values(last_used_at=bindparam("used"), activity_window_start=bindparam("window"))
            )
            self.session.connection().execute(statement, rows)

    def _removed(self, removed: list[str]) -> None:
        if removed:
            result = self.session.execute(
                update(Principal)
                .where(
                    col(Principal.tenant_id) == self.tenant_id,
                    col(Principal.external_id).in_(removed),
                    col(Principal.status) != Status.DELETED,
                )
                .values(status=Status.DELETED, deleted_at=self.now)
            )
            self.removed += result.rowcount  # type: ignore[attr-defined]

    def sweep(self, checkpoint: base.Checkpoint) -> list[tuple[int, str]]:
        """After a clean run: retire what the run did not see, except what the checkpoint
        says it could not see. Returns deleted principals."""
        unseen = select(Principal.id).where(
            Principal.tenant_id == self.tenant_id, col(Principal.last_seen_run_id) != self.run_id
        )
        kept = self._kept_unseen(unseen, checkpoint)
        if checkpoint.full:
            owners = select(Principal.id).where(Principal.tenant_id == self.tenant_id)
            gone = self.session.exec(
                select(Principal.id, Principal.external_id).where(
                    col(Principal.id).in_(unseen),
                    col(Principal.status) != Status.DELETED,
                    col(Principal.id).not_in(kept),
                )
            ).all()
            if gone:
                self.session.execute(
                    update(Principal)
                    .where(col(Principal.id).in_([pid for pid, _ in gone]))
                    .values(status=Status.DELETED, deleted_at=self.now)
                )
            self.session.execute(
                update(Person)
                .where(
                    col(Person.tenant_id) == self.tenant_id,
                    col(Person.last_seen_run_id) != self.run_id,
                )
                .values(active=False)
            )
        else:
            gone = []
            owners = select(Principal.id).where(
                Principal.tenant_id == self.tenant_id, Principal.last_seen_run_id == self.run_id
            )
        for child in (Credential, Grant, OwnerHint):
            stale = [
                col(child.principal_id).in_(owners),
                col(child.principal_id).not_in(kept),
                col(child.last_seen_run_id) != self.run_id,
            ]
            if child is Grant:
                stale += self._grant_rules(checkpoint)
            self.session.execute(delete(child).where(*stale))
        if checkpoint.consents_of:
            self.session.execute(
                delete(Grant).where(
                    col(Grant.principal_id).in_(
                        select(Principal.id).where(Principal.tenant_id == self.tenant_id)
                    ),
                    col(Grant.consenting_user).in_(sorted(checkpoint.consents_of)),
                    col(Grant.last_seen_run_id) != self.run_id,
                )
            )
        return [(pid, external_id) for pid, external_id in gone if pid is not None]

    def _kept_unseen(self, unseen: Any, checkpoint: base.Checkpoint) -> Any:
        """Unseen principals the run could not have seen: of a kind no API lists in full or
        this credential could not list (`not_visible`), or kept in the inventory by
        consents nobody could read."""
        kinds = sorted({kind.value for kind in checkpoint.keep_kinds} | set(checkpoint.not_visible))
        unread = sorted(checkpoint.unread_consents)
        held = select(Grant.principal_id).where(col(Grant.consenting_user).in_(unread))
        return select(Principal.id).where(
            col(Principal.id).in_(unseen),
            col(Principal.kind).in_(kinds) | col(Principal.id).in_(held),
        )

    @staticmethod
    def _grant_rules(checkpoint: base.Checkpoint) -> list[Any]:
        """Grants of unreadable consents stay; a run that re-read some people's consents
        replaces only theirs (below), never another person's user grant."""
        rules: list[Any] = []
        if checkpoint.unread_consents:
            unread = sorted(checkpoint.unread_consents)
            rules.append(
                col(Grant.consenting_user).is_(None) | col(Grant.consenting_user).not_in(unread)
            )
        if checkpoint.consents_of is not None:
            rules.append(col(Grant.consenting_user).is_(None))
        return rules

    def count_new(self) -> int:
        query = select(func.count()).where(
            Principal.tenant_id == self.tenant_id, Principal.first_seen_run_id == self.run_id
        )
        return int(self.session.exec(query).one())


def _referenced(page: base.Page) -> set[str]:
    children: list[Any] = [*page.credentials, *page.grants, *page.owner_hints, *page.activity]
    return {child.principal_id for child in children}
