"""The one lock per (job, tenant) that CLI runs and Celery tasks share.

A lock is a lease with a short TTL that a heartbeat thread renews while its run lives:
a killed process stops renewing and its lock expires within one TTL, so a requeued task
runs instead of finding a lock that outlived its holder by hours. Each lock records who
holds it, so the run it keeps out can say "already running since …, on host …".

The lease lives in the broker's Redis when a broker is configured, in the database
otherwise (see `recert.broker`). Lease times are the machine's real clock, never the
injected one: `RECERT_NOW` moves the review calendar, not the lock's expiry.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine, delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from recert.broker import broker, broker_configured
from recert.config import Settings
from recert.db import session_scope
from recert.models import JobLock

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: enough for the run it keeps out to say so."""

    host: str
    pid: int
    since: str  # ISO 8601 UTC
    owner: str  # "cli" or "celery"
    task_id: str | None = None

    @classmethod
    def parse(cls, value: str | bytes | None) -> Holder | None:
        try:
            data = json.loads(value or "null")
            return cls(
                host=str(data["host"]),
                pid=int(data["pid"]),
                since=str(data["since"]),
                owner=str(data["owner"]),
                task_id=data.get("task_id"),
            )
        except (ValueError, TypeError, KeyError):
            return None

    def describe(self) -> str:
        since = self.since.replace("+00:00", "Z")
        who = f"celery task {self.task_id}" if self.task_id else f"{self.owner}, pid {self.pid}"
        return f"already running since {since}, on host {self.host} ({who})"


class AlreadyRunning(Exception):
    def __init__(self, name: str, holder: Holder | None, expires_in: float) -> None:
        self.name, self.holder, self.expires_in = name, holder, expires_in
        where = holder.describe() if holder else "already running"
        super().__init__(f"{name} is {where}")


class LockLost(Exception):
    """The heartbeat could not renew the lease: another run may have taken the lock."""


class LeaseStore(Protocol):
    def acquire(self, name: str, value: str, ttl: float) -> bool: ...

    def renew(self, name: str, value: str, ttl: float) -> bool: ...

    def release(self, name: str, value: str) -> None: ...

    def holder(self, name: str) -> tuple[Holder | None, float]:
        """The current holder and the seconds until its lease expires."""
        ...


class RedisLeases:
    """A key per lock with a millisecond TTL; renew and release compare the holder first."""

    def __init__(self, client: Any, prefix: str = "recert:lock:") -> None:
        self.client, self.prefix = client, prefix

    def acquire(self, name: str, value: str, ttl: float) -> bool:
        return bool(self.client.set(self.prefix + name, value, nx=True, px=int(ttl * 1000)))

    def renew(self, name: str, value: str, ttl: float) -> bool:
        return bool(self.client.eval(_RENEW, 1, self.prefix + name, value, int(ttl * 1000)))

    def release(self, name: str, value: str) -> None:
        self.client.eval(_RELEASE, 1, self.prefix + name, value)

    def holder(self, name: str) -> tuple[Holder | None, float]:
        key = self.prefix + name
        value, ttl_ms = self.client.get(key), self.client.pttl(key)
        return Holder.parse(value), max(0.0, ttl_ms / 1000)


class DatabaseLeases:
    """A `job_lock` row per lock: taken by insert, or by a conditional update of an
    expired row, so two runs racing for it on SQLite or PostgreSQL never both win."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def acquire(self, name: str, value: str, ttl: float) -> bool:
        now = _utcnow()
        fields = {"token": value, "holder": json.loads(value), "expires_at": now + _span(ttl)}
        with session_scope(self.engine) as session:
            taken = session.execute(
                update(JobLock)
                .where(col(JobLock.name) == name, col(JobLock.expires_at) <= now)
                .values(**fields)
            )
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                return True
        try:
            with session_scope(self.engine) as session:
                session.add(JobLock(name=name, **fields))
        except IntegrityError:
            return False
        return True

    def renew(self, name: str, value: str, ttl: float) -> bool:
        with session_scope(self.engine) as session:
            renewed = session.execute(
                update(JobLock)
                .where(col(JobLock.name) == name, col(JobLock.token) == value)
                .values(expires_at=_utcnow() + _span(ttl))
            )
            return bool(renewed.rowcount == 1)  # type: ignore[attr-defined]

    def release(self, name: str, value: str) -> None:
        with session_scope(self.engine) as session:
            session.execute(
                delete(JobLock).where(col(JobLock.name) == name, col(JobLock.token) == value)
            )

    def holder(self, name: str) -> tuple[Holder | None, float]:
        with Session(self.engine) as session:
            row = session.get(JobLock, name)
            if row is None:
                return None, 0.0
            left = (row.expires_at - _utcnow()).total_seconds()
            return Holder.parse(row.token), max(0.0, left)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _span(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


class Lease:
    """A held lock, renewed every third of its TTL by a daemon thread."""

    def __init__(self, store: LeaseStore, name: str, value: str, ttl: float) -> None:
        self.store, self.name, self.value, self.ttl = store, name, value, ttl
        self._renewed = time.monotonic()
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease {name}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.store.renew(self.name, self.value, self.ttl):
                    log.error("lock %s: lease lost, another run may hold it now", self.name)
                    self._lost.set()
                    return
                self._renewed = time.monotonic()
            except Exception as error:  # a broker hiccup: keep trying until the TTL runs out
                log.warning("lock %s: could not renew the lease: %s", self.name, error)

    def check(self) -> None:
        """Raise LockLost unless the lease is certainly still ours: renewed within two
        thirds of its TTL, so a stalled holder gives up before anyone can take over."""
        if self._lost.is_set() or time.monotonic() - self._renewed > self.ttl * 2 / 3:
            raise LockLost(f"{self.name}: the lock's lease was lost; stopping this run")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def lease_store(settings: Settings, engine: Engine) -> LeaseStore:
    """Redis when a broker is configured (it must answer), the database otherwise."""
    if broker_configured(settings):
        return RedisLeases(broker(settings), prefix=f"{settings.celery.key_prefix}recert:lock:")
    return DatabaseLeases(engine)


def lock_name(job: str, tenant: str | None = None) -> str:
    return f"{job}:{tenant}" if tenant else job


def take(
    store: LeaseStore, name: str, ttl: float, *, owner: str = "cli", task_id: str | None = None
) -> str:
    """Take `name` for `ttl` seconds, or raise AlreadyRunning naming who holds it. The
    returned value renews and releases it; `hold` keeps it renewed for a block, a run that
    spans tasks renews it from each task."""
    holder = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": _utcnow().isoformat(timespec="seconds"),
        "owner": owner,
        "task_id": task_id,
        "token": uuid.uuid4().hex,
    }
    value = json.dumps(holder, sort_keys=True)
    if not store.acquire(name, value, ttl):
        current, expires_in = store.holder(name)
        raise AlreadyRunning(name, current, expires_in)
    return value


@contextmanager
def hold(
    store: LeaseStore, name: str, ttl: float, *, owner: str = "cli", task_id: str | None = None
) -> Iterator[Lease]:
    """Hold `name` for the block, or raise AlreadyRunning naming who holds it."""
    value = take(store, name, ttl, owner=owner, task_id=task_id)
    lease = Lease(store, name, value, ttl)
    lease.start()
    try:
        yield lease
    finally:
        lease.stop()
        try:
            store.release(name, value)
        except Exception as error:  # it expires on its own within one TTL
            log.warning("lock %s: could not release: %s", name, error)


@contextmanager
def job_lock(
    settings: Settings,
    engine: Engine,
    job: str,
    tenant: str | None = None,
    *,
    owner: str = "cli",
    task_id: str | None = None,
) -> Iterator[Lease]:
    """The lock of one job (discover, enforce, notify, ...) for one tenant."""
    store = lease_store(settings, engine)
    ttl = settings.celery.lock_ttl_seconds
    with hold(store, lock_name(job, tenant), ttl, owner=owner, task_id=task_id) as lease:
        yield lease
