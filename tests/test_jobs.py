"""The Celery layer for real: the README's worker command on the real Redis and PostgreSQL.

It runs a discovery sent the way beat sends it; survives `kill -9` of its child in the
middle of a discovery and of an enforcement (the requeued task runs again once the lock's
short TTL has passed, and the end state equals one clean run); and keeps one database
engine per process, whatever the number of tasks.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import tomli_w
from celery import Celery
from sqlalchemy import Engine, func, text
from sqlmodel import Session, col, select

from jobs.schedule import beat_schedule
from recert import db, runs
from recert.campaigns import open_campaign
from recert.clock import FixedClock
from recert.config import Settings, load_settings
from recert.models import (
    AuditEvent,
    EnforcementAction,
    OutboxEmail,
    Principal,
    ReviewItem,
    SyncRun,
    Tenant,
)
from sandbox import okta
from sandbox.okta.app import OktaEmulator
from sandbox.server import serving
from sandbox.tenants import UNHURRIED_OKTA_LIMITS
from sandbox.tls import SandboxCA
from tests.conftest import DATABASE_URL, REDIS_URL, SmtpCapture, capturing_smtp, temporary_database

ROOT = Path(__file__).resolve().parents[1]
DAY0 = datetime.now(UTC).replace(microsecond=0)
DAY15 = DAY0 + timedelta(days=15)
LOCK_TTL = 2.0


def readme_command(program: str) -> list[str]:
    """The command the README gives for `celery -A jobs <program>`, as argv."""
    readme = (ROOT / "README.md").read_text()
    [line] = set(re.findall(rf"^celery -A jobs {program}\b.*$", readme, re.M))
    return line.split()


def wait_until(
    predicate: Callable[[], bool], seconds: float, what: str | Callable[[], str]
) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, (
            f"timed out waiting for {what() if callable(what) else what}"
        )
        threading.Event().wait(0.05)


@dataclass
class Worker:
    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)

    def child(self) -> int:
        """The pool process that runs tasks (one: --concurrency 1)."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        assert len(children) == 1, children
        return int(children[0])

    def text(self) -> str:
        return "".join(self.log)


@dataclass
class World:
    settings: Settings
    engine: Engine
    client: Celery
    worker: Worker
    smtp: SmtpCapture
    discovery_org: OktaEmulator
    enforcement_org: OktaEmulator
    tenants: dict[str, str]  # role -> tenant name
    env: dict[str, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sandbox_ca: SandboxCA) -> Iterator[World]:
    if not (REDIS_URL and DATABASE_URL):
        pytest.skip("needs RECERT_TEST_REDIS_URL and RECERT_TEST_DATABASE_URL")
    folder = tmp_path_factory.mktemp("jobs")
    run = uuid.uuid4().hex[:8]
    tenants = {role: f"{role}-{run}" for role in ("beat", "killed", "overlap", "enforced")}
    discovery_org = okta.build(3, 30, limits=UNHURRIED_OKTA_LIMITS)
    enforcement_org = okta.build(7, 30, limits=UNHURRIED_OKTA_LIMITS)
    with (
        temporary_database() as database,
        capturing_smtp() as smtp,
        serving(discovery_org, sandbox_ca) as discovery_server,
        serving(enforcement_org, sandbox_ca) as enforcement_server,
    ):
        tables = [
            discovery_org.tenant_table(
                tenants[role], discovery_server.url, sandbox_ca.ca_bundle, folder
            )
            for role in ("beat", "killed", "overlap")
        ]
        enforced = enforcement_org.tenant_table(
            tenants["enforced"], enforcement_server.url, sandbox_ca.ca_bundle, folder
        )
        tables.append({**enforced, "enforcement": "enforce"})
        tenants["broken"] = f"broken-{run}"
        broken = {  # its credential's variable is unset: only its own tasks fail
            "name": tenants["broken"],
            "kind": "okta",
            "org_url": "https://broken.okta.test",
            "api_token_env": "RECERT_TEST_UNSET_TOKEN",
        }
        tables.append(broken)
        config = folder / "recert.toml"
        (folder / "web-key").write_text("k" * 32)
        config.write_text(
            tomli_w.dumps(
                {
                    "iam_email": "iam@example.com",
                    "database": {"url": database},
                    "celery": {"lock_ttl_seconds": LOCK_TTL, "key_prefix": f"test-{run}:"},
                    "smtp": {"host": smtp.host, "port": smtp.port},
                    "web": {"secret_key_file": "web-key"},
                    "enforcement": {"max_disable_per_run": 100, "max_disable_fraction": 1.0},
                    "tenants": tables,
                }
            )
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RECERT_", "OKTA_"))},
            "RECERT_CONFIG": str(config),
            "RECERT_BROKER_URL": str(REDIS_URL),
            "RECERT_NOW": DAY15.isoformat(),
        }
        settings = load_settings(config, env)
        engine = db.make_engine(database)
        db.upgrade(engine)
        _overdue_campaign(engine, settings, tenants["enforced"])
        worker = _start_worker(env, folder, run)
        client = Celery(broker=REDIS_URL, backend=REDIS_URL)
        client.conf.broker_transport_options = {"global_keyprefix": f"test-{run}:"}
        try:
            yield World(
                settings,
                engine,
                client,
                worker,
                smtp,
                discovery_org,
                enforcement_org,
                tenants,
                env,
            )
        finally:
            worker.process.terminate()
            worker.process.wait(timeout=30)
            client.close()
            engine.dispose()


def _overdue_campaign(engine: Engine, settings: Settings, tenant: str) -> None:
    """Day 0 discovery and campaign; nobody answers; a fresh discovery on day 15."""
    assert runs.discover(engine, settings, tenant, FixedClock(DAY0)).status == "complete"
    with db.session_scope(engine) as session:
        open_campaign(session, settings, FixedClock(DAY0), name="Q4", tenants=[tenant])
    assert runs.discover(engine, settings, tenant, FixedClock(DAY15)).status == "complete"


def _start_worker(env: dict[str, str], folder: Path, run: str) -> Worker:
    command = readme_command("worker")
    assert command[:4] == ["celery", "-A", "jobs", "worker"]
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", *command, "--concurrency", "1", "-n", f"test-{run}@%h"),
            *("--without-gossip", "--without-mingle", "--loglevel", "INFO"),
        ],
        env=env,
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    worker = Worker(process)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            worker.log.append(line)

    threading.Thread(target=read, daemon=True).start()
    wait_until(lambda: " ready." in worker.text(), 60, "the worker to start")
    return worker


def runs_of(world: World, role: str) -> list[str]:
    with Session(world.engine) as session:
        return list(
            session.exec(
                select(SyncRun.status)
                .join(Tenant, col(Tenant.id) == SyncRun.tenant_id)
                .where(Tenant.name == world.tenants[role])
                .order_by(col(SyncRun.id))
            ).all()
        )


def events_of(world: World, role: str) -> Counter[str]:
    with Session(world.engine) as session:
        actions = session.exec(
            select(AuditEvent.action).where(AuditEvent.tenant == world.tenants[role])
        ).all()
    return Counter(actions)


def send_like_beat(world: World, entry: str) -> str:
    """Send one entry of the beat schedule through beat's own code path."""
    script = (
        "from celery.beat import Scheduler\n"
        "from jobs.celery_app import app\n"
        "scheduler = Scheduler(app=app)\n"
        f"print(scheduler.apply_entry(scheduler.schedule[{entry!r}]) or '', end='')\n"
    )
    sent = subprocess.run(
        [sys.executable, "-c", script],
        env=world.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return sent.stdout


def test_the_readme_worker_runs_a_discovery_sent_by_beat(world: World) -> None:
    entries = beat_schedule(world.settings)
    assert entries[f"discover:{world.tenants['beat']}"]["task"] == "jobs.tasks.discover_tenant"
    send_like_beat(world, f"discover:{world.tenants['beat']}")
    wait_until(lambda: runs_of(world, "beat") == ["complete"], 90, "the scheduled discovery")
    with Session(world.engine) as session:
        stored = session.exec(
            select(func.count())
            .select_from(Principal)
            .join(Tenant, col(Tenant.id) == Principal.tenant_id)
            .where(Tenant.name == world.tenants["beat"])
        ).one()
    assert stored > 0


def test_a_tenant_without_its_secret_fails_alone_with_one_line(world: World) -> None:
    failed = world.client.send_task(
        "jobs.tasks.discover_tenant", args=[world.tenants["broken"]], queue="discovery"
    ).get(timeout=60)
    assert failed["status"] == "failed"
    assert failed["error"].endswith(
        "api_token_env: environment variable RECERT_TEST_UNSET_TOKEN is unset"
    )
    assert runs_of(world, "broken") == [], "no run is recorded for it"


def test_a_discovery_killed_mid_way_runs_again_and_ends_as_one_clean_run(world: World) -> None:
    world.discovery_org.faults.slow_seconds = 0.15
    served_before = _served(world, "/api/v1/apps")
    result = world.client.send_task(
        "jobs.tasks.discover_tenant", args=[world.tenants["killed"]], queue="discovery"
    )
    wait_until(lambda: runs_of(world, "killed") == ["running"], 60, "the discovery to start")
    # Mid-way: some pages served (the store commits several pages at once, so the rows
    # may not show yet), the run still going.
    wait_until(lambda: _served(world, "/api/v1/apps") >= served_before + 5, 30, "its first pages")
    os.kill(world.worker.child(), signal.SIGKILL)
    world.discovery_org.faults.slow_seconds = 0.0
    summary = result.get(timeout=120)
    assert summary["status"] == "complete", summary
    deliveries = re.findall(rf"discover_tenant\[{result.id}\] received", world.worker.text())
    assert len(deliveries) >= 2, "the task was requeued after its process died"
    assert runs_of(world, "killed") == ["abandoned", "complete"], "none is left running"
    events = events_of(world, "killed")
    assert (events["discovery.abandoned"], events["discovery.completed"]) == (1, 1)
    assert events["principal.deleted"] == 0
    assert _loaded(world, "killed") == summary["principals_seen"]


def test_two_overlapping_cli_discoveries_one_runs_the_other_exits_1(world: World) -> None:
    command = [sys.executable, "-m", "recert", "discover", "--tenant", world.tenants["overlap"]]
    world.discovery_org.faults.slow_seconds = 0.15
    first = subprocess.Popen(
        [*command, "--format", "json"],
        env=world.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: runs_of(world, "overlap") == ["running"], 60, "the first discovery")
    second = subprocess.run(
        command, env=world.env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    world.discovery_org.faults.slow_seconds = 0.0
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert second.returncode == 1
    line = rf"discover:{world.tenants['overlap']} is already running since \S+, on host \S+"
    assert re.search(line, second.stderr), second.stderr
    [summary] = json.loads(out)
    assert runs_of(world, "overlap") == ["complete"], "the second run changed nothing"
    assert _loaded(world, "overlap") == summary["principals_seen"]
    assert events_of(world, "overlap")["principal.deleted"] == 0


def _served(world: World, prefix: str) -> int:
    with world.discovery_org.lock:
        return sum(1 for r in world.discovery_org.requests if r.path.startswith(prefix))


def _loaded(world: World, role: str) -> int:
    with Session(world.engine) as session:
        return int(
            session.exec(
                select(func.count())
                .select_from(Principal)
                .join(Tenant, col(Tenant.id) == Principal.tenant_id)
                .where(Tenant.name == world.tenants[role], Principal.status != "deleted")
            ).one()
        )


def test_an_enforcement_killed_mid_way_runs_again_and_ends_as_one_clean_run(
    world: World,
) -> None:
    org = world.enforcement_org
    org.faults.slow_seconds = 0.15
    result = world.client.send_task(
        "jobs.tasks.enforce_tenant", args=[world.tenants["enforced"]], queue="recert"
    )
    wait_until(lambda: _actions(world)["done"] >= 1, 60, lambda: world.worker.text()[-4000:])
    os.kill(world.worker.child(), signal.SIGKILL)
    org.faults.slow_seconds = 0.0
    summary = result.get(timeout=120)
    assert summary["status"] == "enforced", summary
    deliveries = re.findall(rf"enforce_tenant\[{result.id}\] received", world.worker.text())
    assert len(deliveries) >= 2, "the task was requeued after its process died"
    assert summary["failed"] == 0
    actions = _actions(world)
    assert set(actions) == {"done", "refused"}, actions
    with Session(world.engine) as session:
        disabled = session.exec(
            select(EnforcementAction.external_id).where(
                EnforcementAction.action == "disable", EnforcementAction.status == "done"
            )
        ).all()
        pending = session.exec(
            select(func.count()).select_from(ReviewItem).where(ReviewItem.status == "pending")
        ).one()
    assert len(disabled) >= 2
    deactivations = Counter(
        r.path.split("/")[-3] for r in org.requests if r.path.endswith("/lifecycle/deactivate")
    )
    assert set(deactivations) == set(disabled)
    assert max(deactivations.values()) == 1, "no app is deactivated twice"
    held = {**org.org.apps, **org.org.agents}  # AI agents deactivate through their own API
    assert all(held[external_id]["status"] == "INACTIVE" for external_id in disabled)
    events = events_of(world, "enforced")
    assert events["enforcement.disable"] == len(disabled), "one audit event per disable"
    notices = [m for m in world.smtp.messages if "Disabled:" in str(m.message["Subject"])]
    recipients = [tuple(m.recipients) for m in notices]
    assert len(recipients) == len(set(recipients)), "no notice is sent twice"
    with Session(world.engine) as session:
        queued = session.exec(
            select(func.count())
            .select_from(OutboxEmail)
            .where(OutboxEmail.kind == "disabled_notice")
        ).one()
    assert queued == len(notices)
    assert pending > 0, "the refused items stay in the IAM team's queue"


def _actions(world: World) -> Counter[str]:
    with Session(world.engine) as session:
        return Counter(session.exec(select(EnforcementAction.status)).all())


def test_a_running_task_skips_an_overlap_but_a_requeued_one_waits_for_its_own_lock(
    world: World,
) -> None:
    """A lock held by another run is an overlap: skipped, naming who runs. (The requeued
    delivery of a killed task, which finds its own task id there, retried above.)"""
    from recert.locks import job_lock

    tenant = world.tenants["beat"]
    with job_lock(world.settings, world.engine, "discover", tenant, owner="cli"):
        result = world.client.send_task(
            "jobs.tasks.discover_tenant", args=[tenant], queue="discovery"
        )
        summary = result.get(timeout=60)
    assert summary["status"] == "skipped"
    assert "already running since" in summary["error"]
    assert ", on host " in summary["error"]


def test_one_engine_per_worker_process_however_many_tasks(world: World) -> None:
    database = world.engine.url.database

    def connections() -> int:
        with world.engine.connect() as connection:
            return int(
                connection.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid()"
                    ),
                    {"db": database},
                ).scalar_one()
            )

    world.engine.dispose()
    results = [world.client.send_task("jobs.tasks.notify", queue="recert") for _ in range(20)]
    for result in results:
        assert result.get(timeout=60)["failed"] == 0
    world.engine.dispose()
    assert connections() <= 2, "the worker's one pool, not one per task"


def test_the_beat_schedule_comes_from_the_config(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("00token")
    tenant = {"kind": "okta", "org_url": "https://a.okta.test", "api_token_file": "t"}
    config = tmp_path / "recert.toml"
    config.write_text(
        tomli_w.dumps({"tenants": [{"name": "a", **tenant}, {"name": "b", **tenant}]})
    )
    schedule = beat_schedule(load_settings(config, {}))
    assert schedule["discover:a"]["args"] == ("a",)
    assert schedule["enforce:b"]["task"] == "jobs.tasks.enforce_tenant"
    assert schedule["discover:b"]["schedule"] != schedule["discover:a"]["schedule"], "staggered"
    assert {"campaigns", "notify", "orphan-report", "reap-abandoned-runs"} <= set(schedule)
    assert schedule["credential-expiry"]["task"] == "jobs.tasks.credential_expiry_notices"


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


def test_compose_runs_one_beat_workers_on_every_queue_and_a_healthy_web() -> None:
    import yaml

    from jobs.celery_app import QUEUES

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    commands = {
        name: [*(s.get("entrypoint") or ["recert"]), *(s.get("command") or [])]
        for name, s in services.items()
        if "build" in s
    }
    beats = [c for c in commands.values() if c[:4] == ["celery", "-A", "jobs", "beat"]]
    assert len(beats) == 1
    workers = [c for c in commands.values() if c[:4] == ["celery", "-A", "jobs", "worker"]]
    consumed: set[str] = set()
    for worker in workers:
        queues = worker[worker.index("-Q") + 1].split(",") if "-Q" in worker else QUEUES
        consumed.update(queues)
    assert consumed == set(QUEUES)
    assert commands["web"][:2] == ["recert", "web"]
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ("postgresql+psycopg://recert@127.0.0.1:1/recert", "cannot reach database "),
        ("sqlite:///{folder}/empty.db", "has no Recert schema: run `recert init` first"),
    ],
    ids=["unreachable", "not-migrated"],
)
def test_a_task_whose_database_fails_ends_with_one_line(
    tmp_path: Path, database: str, expected: str
) -> None:
    config = tmp_path / "recert.toml"
    url = database.format(folder=tmp_path)
    config.write_text(tomli_w.dumps({"iam_email": "iam@example.com", "database": {"url": url}}))
    script = "from jobs.tasks import notify\nprint(notify.apply().get()['status'])\n"
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "RECERT_CONFIG": str(config)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.stdout == "failed\n"
    [line] = result.stderr.splitlines()
    assert line.startswith("jobs.tasks.notify: "), result.stderr
    assert expected in line
    assert "Traceback" not in result.stderr
