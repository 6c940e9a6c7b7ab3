"""The one job lock: a lease in Redis (a broker is configured) or in the database
(embedded use), renewed by a heartbeat, naming its holder to the run it keeps out."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, select

from recert import db
from recert.broker import BrokerUnavailable, broker_configured, pacer_for
from recert.clock import FixedClock
from recert.config import Settings, load_settings
from recert.db import session_scope
from recert.locks import (
    AlreadyRunning,
    DatabaseLeases,
    LeaseStore,
    LockLost,
    RedisLeases,
    hold,
    job_lock,
    lease_store,
)
from recert.models import AuditEvent, JobLock, SyncRun, SyncStatus, Tenant
from recert.runs import abandon_runs, reap_abandoned
from tests.conftest import REDIS_URL, reset_database


def wait_until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        threading.Event().wait(0.02)


@pytest.fixture(params=["redis", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> LeaseStore:
    if request.param == "redis":
        client = request.getfixturevalue("redis_client")
        return RedisLeases(client, prefix=client.test_prefix)
    if request.param == "sqlite":
        sqlite = db.make_engine(f"sqlite:///{tmp_path / 'locks.db'}")
        db.upgrade(sqlite)
        return DatabaseLeases(sqlite)
    postgres = request.getfixturevalue("postgres_engine")
    reset_database(postgres)
    return DatabaseLeases(postgres)


def test_a_second_holder_is_kept_out_and_told_who_runs(store: LeaseStore) -> None:
    with hold(store, "discover:okta-prod", 30, owner="cli"):
        with pytest.raises(AlreadyRunning) as refused, hold(store, "discover:okta-prod", 30):
            pass
        message = str(refused.value)
        assert message.startswith("discover:okta-prod is already running since ")
        assert ", on host " in message
        assert 0 < refused.value.expires_in <= 30
        with hold(store, "discover:entra-prod", 30):
            pass  # another tenant's run is not blocked
    with hold(store, "discover:okta-prod", 30):
        pass  # released on exit


def test_the_heartbeat_keeps_a_short_lease_alive(store: LeaseStore) -> None:
    with hold(store, "enforce:okta", 0.3) as lease:
        started = time.monotonic()
        wait_until(lambda: time.monotonic() - started > 0.75)  # 2.5 TTLs
        lease.check()
        with pytest.raises(AlreadyRunning), hold(store, "enforce:okta", 0.3):
            pass


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_release_it(
    store: LeaseStore,
) -> None:
    """A holder that stopped renewing (its process was killed) loses the lock within one
    TTL; when it comes back it finds the lease lost and releases nothing."""
    first = hold(store, "discover:google", 0.3)
    lease = first.__enter__()
    lease.stop()  # the heartbeat dies with its process
    wait_until(lambda: _free(store, "discover:google"))
    with hold(store, "discover:google", 30, owner="second"):
        with pytest.raises(LockLost):
            lease.check()
        first.__exit__(None, None, None)
        holder, _ = store.holder("discover:google")
        assert holder is not None
        assert holder.owner == "second"


def _free(store: LeaseStore, name: str) -> bool:
    holder, expires_in = store.holder(name)
    return holder is None or expires_in <= 0


def test_a_lost_lease_is_noticed_by_the_run(store: LeaseStore) -> None:
    with hold(store, "notify", 0.3) as lease:
        _steal(store, "notify")
        wait_until(lambda: lease._lost.is_set(), seconds=5)
        with pytest.raises(LockLost, match="notify: the lock's lease was lost"):
            lease.check()


def _steal(store: LeaseStore, name: str) -> None:
    thief = json.dumps({"host": "h", "pid": 1, "since": "2026-01-01T00:00:00+00:00", "owner": "x"})
    if isinstance(store, RedisLeases):
        store.client.set(store.prefix + name, thief, px=60_000)
    else:
        assert isinstance(store, DatabaseLeases)
        with session_scope(store.engine) as session:
            session.execute(update(JobLock).where(JobLock.name == name).values(token=thief))


def test_locks_live_in_redis_only_when_a_broker_is_configured(
    engine: Engine, tmp_path: Path
) -> None:
    embedded = Settings(path=tmp_path / "recert.toml")
    assert not broker_configured(embedded)
    assert isinstance(lease_store(embedded, engine), DatabaseLeases)
    config = tmp_path / "recert.toml"
    config.write_text("[celery]\nbroker_url = 'redis://127.0.0.1:1/0'\n")
    unreachable = load_settings(config, {})
    with pytest.raises(BrokerUnavailable, match=r"redis://127\.0\.0\.1:1/0 does not answer"):
        lease_store(unreachable, engine)
    with pytest.raises(BrokerUnavailable):
        job_lock(unreachable, engine, "discover", "okta").__enter__()
    assert type(pacer_for(unreachable, "okta")).__name__ == "LocalPacer"
    if REDIS_URL:
        shared = load_settings(config, {"RECERT_BROKER_URL": REDIS_URL})
        assert isinstance(lease_store(shared, engine), RedisLeases)
        assert type(pacer_for(shared, "okta")).__name__ == "RedisPacer"


@pytest.fixture
def tenant_runs(engine: Engine) -> Engine:
    with session_scope(engine) as session:
        tenant = Tenant(name="okta-prod", kind="okta")
        session.add(tenant)
        session.flush()
        started = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
        session.add(SyncRun(tenant_id=tenant.id or 0, started_at=started))
        session.add(
            SyncRun(
                tenant_id=tenant.id or 0,
                started_at=started - timedelta(days=1),
                status=SyncStatus.COMPLETE,
            )
        )
    return engine


def statuses(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return sorted(session.exec(select(SyncRun.status)).all())


def test_runs_whose_process_died_are_closed_as_abandoned(tenant_runs: Engine) -> None:
    clock = FixedClock(datetime(2026, 12, 1, 3, 0, tzinfo=UTC))
    assert abandon_runs(tenant_runs, "okta-prod", clock) == 1
    assert abandon_runs(tenant_runs, "okta-prod", clock) == 0
    assert statuses(tenant_runs) == ["abandoned", "complete"]
    with Session(tenant_runs) as session:
        events = session.exec(select(AuditEvent.action)).all()
    assert events == ["discovery.abandoned"]


def test_the_reaper_leaves_a_live_run_alone(tenant_runs: Engine, tmp_path: Path) -> None:
    settings = Settings(path=tmp_path / "recert.toml")
    clock = FixedClock(datetime(2026, 12, 1, 3, 0, tzinfo=UTC))
    with job_lock(settings, tenant_runs, "discover", "okta-prod"):
        assert reap_abandoned(tenant_runs, settings, clock) == 0
    assert statuses(tenant_runs) == ["complete", "running"]
    assert reap_abandoned(tenant_runs, settings, clock) == 1
    assert statuses(tenant_runs) == ["abandoned", "complete"]
