"""The audit chain: intact chains verify; each kind of tampering is caught and named."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from recert import audit
from recert.clock import FixedClock
from recert.db import session_scope

CLOCK = FixedClock(datetime(2026, 11, 28, 12, tzinfo=UTC))


def record(engine: Engine, count: int) -> None:
    for i in range(1, count + 1):
        with session_scope(engine) as session:
            audit.append(
                session,
                CLOCK,
                actor="alice@acme.test",
                action="review.decided",
                subject_type="review_item",
                subject_id=str(i),
                tenant="okta-prod",
                data={"decision": "keep", "justification": f"needed for payroll run {i}"},
            )


def verify(engine: Engine) -> audit.Verification:
    with Session(engine) as session:
        return audit.verify(session)


def test_an_intact_chain_verifies(engine: Engine) -> None:
    record(engine, 5)
    result = verify(engine)
    assert result.ok, result.problem
    assert result.events == 5
    with Session(engine) as session:
        assert (
            result.head == session.exec(text("SELECT hash FROM audit_event WHERE seq = 5")).one()[0]
        )


def test_each_event_hash_covers_the_previous_one(engine: Engine) -> None:
    record(engine, 2)
    with Session(engine) as session:
        rows = session.exec(text("SELECT prev_hash, hash FROM audit_event ORDER BY seq")).all()
    assert rows[0][0] == audit.GENESIS
    assert rows[1][0] == rows[0][1]


def test_an_edited_event_is_named(engine: Engine) -> None:
    record(engine, 5)
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_event SET actor = 'mallory@evil.test' WHERE seq = 3"))
    result = verify(engine)
    assert not result.ok
    assert result.first_bad_seq == 3
    assert "edited" in (result.problem or "")


def test_a_deleted_event_is_named(engine: Engine) -> None:
    record(engine, 5)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_event WHERE seq = 2"))
    result = verify(engine)
    assert not result.ok
    assert result.first_bad_seq == 3
    assert "missing" in (result.problem or "")


def test_an_inserted_event_is_named(engine: Engine) -> None:
    record(engine, 5)
    with engine.begin() as connection:
        # Make room after event 2 and forge a well-formed event there.
        for seq in (5, 4, 3):
            connection.execute(
                text("UPDATE audit_event SET seq = :new WHERE seq = :old"),
                {"new": seq + 1, "old": seq},
            )
        prev = connection.execute(text("SELECT hash FROM audit_event WHERE seq = 2")).one()[0]
        forged = audit.AuditEvent(
            seq=3,
            occurred_at=CLOCK.now(),
            actor="mallory@evil.test",
            action="review.decided",
            subject_type="review_item",
            subject_id="99",
            data={"decision": "keep"},
            prev_hash=prev,
            hash="",
        )
        forged.hash = audit.event_hash(forged)
        connection.execute(
            text(
                "INSERT INTO audit_event (seq, occurred_at, actor, action, subject_type, "
                "subject_id, tenant, data, prev_hash, hash) VALUES (3, :at, 'mallory@evil.test', "
                "'review.decided', 'review_item', '99', NULL, :data, :prev, :hash)"
            ),
            {"at": CLOCK.now(), "data": '{"decision": "keep"}', "prev": prev, "hash": forged.hash},
        )
    result = verify(engine)
    assert not result.ok
    assert result.first_bad_seq == 4, "the forged event fits; the next one no longer does"


def test_reordered_events_are_named(engine: Engine) -> None:
    record(engine, 5)
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_event SET seq = -1 WHERE seq = 2"))
        connection.execute(text("UPDATE audit_event SET seq = 2 WHERE seq = 3"))
        connection.execute(text("UPDATE audit_event SET seq = 3 WHERE seq = -1"))
    result = verify(engine)
    assert not result.ok
    assert result.first_bad_seq == 2
    assert "reordered" in (result.problem or "")


def test_a_truncated_tail_is_caught_by_the_head(engine: Engine) -> None:
    record(engine, 4)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_event WHERE seq = 4"))
    result = verify(engine)
    assert not result.ok
    assert "removed from the end" in (result.problem or "")


def run_cli(database_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RECERT_DATABASE_URL": database_url, "RECERT_CONFIG": ""}
    return subprocess.run(
        [sys.executable, "-m", "recert", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_init_then_audit_verify_on_a_fresh_database(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    initialized = run_cli(url, tmp_path, "init")
    assert initialized.returncode == 0, initialized.stderr
    assert "schema revision" in initialized.stdout
    again = run_cli(url, tmp_path, "init")
    assert again.returncode == 0, "init is safe to re-run"
    verified = run_cli(url, tmp_path, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "intact" in verified.stdout


def test_cli_audit_verify_exits_1_naming_the_event(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    record(engine, 3)
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_event SET data = '{}' WHERE seq = 2"))
    result = run_cli(database_url, tmp_path, "audit", "verify")
    assert result.returncode == 1
    assert "broken at event 2" in result.stderr
