"""The Celery layer for real: a `celery -A jobs worker` process on the real Redis runs a
scheduled discovery of an emulated Okta org, and the lock keeps a second run out."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from celery import Celery
from sqlmodel import Session, func, select

from jobs.schedule import beat_schedule
from recert.config import load_settings
from recert.db import make_engine
from recert.models import Principal
from sandbox import okta
from sandbox.server import serving
from sandbox.tenants import UNHURRIED_OKTA_LIMITS
from sandbox.tls import SandboxCA
from tests.conftest import REDIS_URL


@pytest.fixture
def worker_world(
    tmp_path: Path, sandbox_ca: SandboxCA, redis_client: Any
) -> Iterator[tuple[Celery, str, Path]]:
    tenant = f"okta-{uuid.uuid4().hex[:8]}"  # the lock key is per tenant: unique per run
    emulator = okta.build(3, 30, limits=UNHURRIED_OKTA_LIMITS)
    with serving(emulator, sandbox_ca) as server:
        table = emulator.tenant_table(tenant, server.url, sandbox_ca.ca_bundle, tmp_path / "s")
        config = tmp_path / "recert.toml"
        database = tmp_path / "recert.db"
        broken = {  # its credential's variable is unset: only its own tasks fail
            "name": f"{tenant}-broken",
            "kind": "okta",
            "org_url": "https://broken.okta.test",
            "api_token_env": "RECERT_TEST_UNSET_TOKEN",
        }
        config.write_text(
            tomli_w.dumps(
                {"database": {"url": f"sqlite:///{database}"}, "tenants": [table, broken]}
            )
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RECERT_")},
            "RECERT_CONFIG": str(config),
            "RECERT_BROKER_URL": str(REDIS_URL),
        }
        subprocess.run(
            [sys.executable, "-m", "recert", "init"],
            env=env,
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )
        queues = f"discovery-{tenant}"
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "jobs",
                "worker",
                "--pool",
                "solo",
                "-Q",
                "discovery",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"{queues}@test",
            ],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        client = Celery(broker=REDIS_URL, backend=REDIS_URL)
        try:
            yield client, tenant, database
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            client.close()


def test_a_worker_runs_a_scheduled_discovery_and_the_lock_stops_an_overlap(
    worker_world: tuple[Celery, str, Path], redis_client: Any
) -> None:
    client, tenant, database = worker_world
    failed = client.send_task(
        "jobs.tasks.discover_tenant", args=[f"{tenant}-broken"], queue="discovery"
    ).get(timeout=60)
    assert failed["status"] == "failed"
    assert failed["error"].endswith(
        "api_token_env: environment variable RECERT_TEST_UNSET_TOKEN is unset"
    )
    result = client.send_task("jobs.tasks.discover_tenant", args=[tenant], queue="discovery")
    summary = result.get(timeout=120)
    assert summary["status"] == "complete", summary
    assert summary["principals_seen"] > 0
    with Session(make_engine(f"sqlite:///{database}")) as session:
        stored = session.exec(select(func.count()).select_from(Principal)).one()
    assert stored == summary["principals_seen"]

    redis_client.set(f"recert:lock:discover:{tenant}", "another-run", ex=60)
    try:
        blocked = client.send_task("jobs.tasks.discover_tenant", args=[tenant], queue="discovery")
        assert blocked.get(timeout=60)["status"] == "skipped"
    finally:
        redis_client.delete(f"recert:lock:discover:{tenant}")


def test_the_beat_schedule_comes_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "recert.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "tenants": [
                    {
                        "name": "a",
                        "kind": "okta",
                        "org_url": "https://a.okta.test",
                        "api_token_file": "t",
                    },
                    {
                        "name": "b",
                        "kind": "okta",
                        "org_url": "https://b.okta.test",
                        "api_token_file": "t",
                    },
                ]
            }
        )
    )
    (tmp_path / "t").write_text("00token")
    schedule = beat_schedule(load_settings(config, {}))
    assert schedule["discover:a"]["args"] == ("a",)
    assert schedule["discover:b"]["schedule"] != schedule["discover:a"]["schedule"], "staggered"
    assert {"campaigns", "notify", "orphan-report"} <= set(schedule)


def test_a_worker_with_a_bad_config_stops_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "recert.toml"
    config.write_text("[risk]\nreview_cadence_days = { high = 30 }\n")
    result = subprocess.run(
        [sys.executable, "-c", "import jobs"],
        env={**os.environ, "RECERT_CONFIG": str(config)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"recert worker: {config}: risk.review_cadence_days: must set high, medium and low "
        "(missing medium, low)\n"
    )
