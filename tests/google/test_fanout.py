"""Google's per-user chunks fanned out and joined: the store ends as after one process."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from celery import Celery
from sqlalchemy import Engine
from sqlmodel import Session, select

import sandbox.google
from recert import chunked
from recert.clock import FixedClock
from recert.config import Tenant
from recert.db import make_engine
from recert.discovery import discover_tenant
from recert.inventory import inventory
from recert.models import Person
from recert.models import Tenant as TenantRow
from sandbox.google import GoogleEmulator
from sandbox.server import serving
from sandbox.tenants import UNHURRIED_GOOGLE_QUOTA
from sandbox.tls import SandboxCA
from tests.conftest import REDIS_URL
from tests.google.conftest import Tenant as Served

Serve = Callable[[GoogleEmulator], Served]


def by_tenant(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Each tenant's inventory and people, without the tenant's name."""
    with Session(engine) as session:
        found: dict[str, list[dict[str, Any]]] = {}
        for entry in inventory(session):
            found.setdefault(entry.pop("tenant"), []).append(entry)
        names = {t.id: t.name for t in session.exec(select(TenantRow))}
        for person in session.exec(select(Person).order_by(Person.external_id)):
            row = person.model_dump(exclude={"id", "tenant_id", "last_seen_run_id"})
            found.setdefault(f"people:{names[person.tenant_id]}", []).append(row)
    return found


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)  # the loads are the store's own
def test_chunks_in_any_order_any_number_of_times_equal_one_run(
    engine: Engine, serve: Serve
) -> None:
    served = serve(sandbox.google.build(seed=13, size=24, users=60, dwd_share=0.2))
    clock = FixedClock(served.emulator.now)
    single = Tenant(name="single", kind="google", read=served.settings)
    fanned = Tenant(name="fanned", kind="google", read=served.settings)
    assert discover_tenant(engine, single, clock, connector=served.connector()).status == (
        "complete"
    )
    started = chunked.start_run(engine, fanned, clock, connector=served.connector())
    assert len(started.chunks) == 1
    small = [started.chunks[0][i : i + 20] for i in range(0, 60, 20)]
    results = []
    for ids in [*reversed(small), small[0]]:  # out of order, and one redelivered
        results.append(
            chunked.load_chunk(
                engine,
                fanned,
                clock,
                started.run_id,
                ids,
                started.plan["unknown_use"],
                connector=served.connector(),
            )
        )
    summary = chunked.finish_run(
        engine, fanned, clock, started.as_dict(), results, connector=served.connector()
    )
    assert summary.status == "complete", summary.error
    assert summary.full
    found = by_tenant(engine)
    assert found["fanned"] == found["single"]
    assert found["people:fanned"] == found["people:single"]
    again = chunked.finish_run(engine, fanned, clock, started.as_dict(), results)
    assert again.as_dict() == summary.as_dict(), "a redelivered join changes nothing"


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_failed_chunk_fails_the_run_and_sweeps_nothing(engine: Engine, serve: Serve) -> None:
    served = serve(sandbox.google.build(seed=13, size=24, users=60))
    clock = FixedClock(served.emulator.now)
    tenant = Tenant(name="fanned", kind="google", read=served.settings)
    assert discover_tenant(engine, tenant, clock, connector=served.connector()).status == (
        "complete"
    )
    before = by_tenant(engine)
    started = chunked.start_run(engine, tenant, clock, connector=served.connector())
    failed = {"ok": False, "error": "google-test/users: cannot reach it"}
    summary = chunked.finish_run(engine, tenant, clock, started.as_dict(), [failed])
    assert summary.status == "failed"
    assert "1 of 1 chunks failed" in (summary.error or "")
    assert by_tenant(engine)["fanned"] == before["fanned"]


def test_a_worker_fans_out_and_joins_on_real_redis(
    tmp_path: Path, sandbox_ca: SandboxCA, redis_client: Any
) -> None:
    emulator = sandbox.google.build(
        seed=13, size=24, users=60, quota_per_minute=UNHURRIED_GOOGLE_QUOTA
    )
    suffix = uuid.uuid4().hex[:8]  # locks and tenants are per run
    single, fanned = f"google-single-{suffix}", f"google-fanned-{suffix}"
    with serving(emulator, sandbox_ca) as server:
        tables = [
            emulator.tenant_table(name, server.url, sandbox_ca.ca_bundle, tmp_path / "s")
            for name in (single, fanned)
        ]
        tables[1]["users_per_chunk"] = 20
        database = tmp_path / "recert.db"
        config = tmp_path / "recert.toml"
        config.write_text(
            tomli_w.dumps({"database": {"url": f"sqlite:///{database}"}, "tenants": tables})
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RECERT_")},
            "RECERT_CONFIG": str(config),
            "RECERT_BROKER_URL": str(REDIS_URL),
            "RECERT_NOW": emulator.now.isoformat(),  # both runs read the same windows
        }
        subprocess.run([sys.executable, "-m", "recert", "init"], env=env, cwd=tmp_path, check=True)
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "jobs", "worker", "--pool", "solo"),
                *("-Q", "discovery", "--without-gossip", "--without-mingle"),
                *("-n", f"fanout-{suffix}@test"),
            ],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = Celery(broker=REDIS_URL, backend=REDIS_URL)
        try:
            one = client.send_task("jobs.tasks.discover_tenant", args=[single], queue="discovery")
            assert one.get(timeout=120)["status"] == "complete"
            start = client.send_task(
                "jobs.tasks.discover_fanned_out", args=[fanned], queue="discovery"
            )
            started = start.get(timeout=120)
            assert started["chunks"] == 3
            joined = client.AsyncResult(started["finish_task_id"]).get(timeout=120)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            client.close()
    assert joined["status"] == "complete", joined
    assert redis_client.get(f"recert:lock:discover:{fanned}") is None, "the join released it"
    found = by_tenant(make_engine(f"sqlite:///{database}"))
    assert found[fanned] == found[single]
    assert found[f"people:{fanned}"] == found[f"people:{single}"]
