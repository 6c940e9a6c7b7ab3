"""The evidence bundle: everything compliance asks for, byte-identical for the same
database, and `verify` naming the first thing that was tampered with."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from recert import evidence, links
from recert.audit import verify as verify_chain
from recert.cli import app
from recert.clock import FixedClock
from recert.db import session_scope
from recert.decisions import DecisionRequest, decide
from recert.models import EnforcementAction, Principal, ReviewItem
from recert.notify import enqueue_due
from tests.web.conftest import OPENED, seed, settings_for

ADMIN = "admin@acme.test"
FILES = sorted(
    [f"{name}.{ext}" for name in (
        "audit_events", "campaigns", "completeness_by_owner", "completeness_by_tenant",
        "decisions", "emails", "enforcement", "exceptions", "items",
    ) for ext in ("csv", "json")]
    + ["manifest.json", "summary.html"]
)  # fmt: skip


def _item(session: Session, external_id: str) -> ReviewItem:
    return session.exec(
        select(ReviewItem)
        .join(Principal, col(Principal.id) == ReviewItem.principal_id)
        .where(Principal.external_id == external_id, ReviewItem.consenting_user == "")
    ).one()


def _enforcement_row(
    session: Session, item: ReviewItem, action: str, status: str, **extra: Any
) -> EnforcementAction:
    principal = session.get(Principal, item.principal_id)
    assert principal is not None
    at = OPENED + timedelta(days=15)
    row = EnforcementAction(
        idempotency_key=extra.pop("idempotency_key", f"test:item:{item.id}:{action}"),
        tenant="entra-test",
        principal_id=item.principal_id,
        external_id=principal.external_id,
        display_name=principal.display_name,
        kind=principal.kind,
        campaign_id=item.campaign_id,
        review_item_id=item.id,
        action=action,
        status=status,
        reason=extra.pop("reason", "its owner chose to revoke it"),
        created_at=at,
        performed_at=extra.pop("performed_at", at),
        **extra,
    )
    session.add(row)
    session.flush()
    return row


def _populate(engine: Engine, tmp_path: Path) -> int:
    """A campaign with decisions, queued emails and enforcement as acting.py and undoing.py
    write it: a disable re-enabled later by an admin, a failed disable, a refusal."""
    settings = settings_for(tmp_path, "https://recert.test")
    campaign, due = seed(engine, settings)
    enqueue_due(engine, settings, FixedClock(OPENED + timedelta(minutes=1)))
    for reviewer, external_id, action, hours in (
        ("ann@acme.test", "payroll", "keep", 2),
        ("ann@acme.test", "hostile", "revoke", 30),
        ("bo@acme.test", "builder", "not_mine", 31),
    ):
        with session_scope(engine) as session:
            item = _item(session, external_id)
            decide(
                session,
                settings,
                FixedClock(OPENED + timedelta(hours=hours)),
                links.ReviewLink(campaign, reviewer, due),
                item.id or 0,
                DecisionRequest(
                    action,
                    justification="Nightly payroll export",
                    source_ip="203.0.113.9",
                    user_agent="Mozilla/5.0 (X11)",
                ),
            )
    with session_scope(engine) as session:
        hostile, rtl, ghost = (_item(session, e) for e in ("hostile", "rtl", "ghost"))
        disable = _enforcement_row(
            session, hostile, "disable", "done", snapshot={"accountEnabled": True}
        )
        hostile.status = "enforced"  # every change it asked for is done
        session.add(hostile)
        _enforcement_row(
            session,
            hostile,
            "enable",
            "done",
            reverses_id=disable.id,
            performed_by=ADMIN,
            performed_at=OPENED + timedelta(days=16),
            reason="Owner needs it for the year-end run",
            idempotency_key=f"undo:{disable.id}",
        )
        _enforcement_row(session, rtl, "disable", "failed", error="403 Authorization_RequestDenied")
        _enforcement_row(session, ghost, "refuse", "refused", rule="not_mine")
    return campaign


def _export(engine: Engine, campaign: int, path: Path) -> evidence.ExportSummary:
    with Session(engine) as session:
        return evidence.export(session, evidence.campaign_scope(session, campaign), path)


def _rows(bundle: Path, name: str) -> list[dict[str, Any]]:
    with zipfile.ZipFile(bundle) as archive:
        return list(json.loads(archive.read(f"{name}.json")))


def test_the_bundle_holds_the_evidence_and_is_byte_identical(
    engine: Engine, tmp_path: Path
) -> None:
    campaign = _populate(engine, tmp_path)
    first, second = tmp_path / "first.zip", tmp_path / "second.zip"
    summary = _export(engine, campaign, first)
    _export(engine, campaign, second)
    assert first.read_bytes() == second.read_bytes()
    assert summary.sha256 == hashlib.sha256(first.read_bytes()).hexdigest()
    assert evidence.verify_bundle(first).ok

    with zipfile.ZipFile(first) as archive:
        assert archive.namelist() == FILES
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        manifest = json.loads(archive.read("manifest.json"))
        for name in [*FILES[:-2], "summary.html"]:
            assert manifest["files"][name] == hashlib.sha256(archive.read(name)).hexdigest()
        decisions_csv = list(csv.DictReader(io.StringIO(archive.read("decisions.csv").decode())))
        summary_html = archive.read("summary.html").decode()
    decisions = _rows(first, "decisions")
    assert [(d["action"], d["decided_by"]) for d in decisions] == [
        ("keep", "ann@acme.test"),
        ("revoke", "ann@acme.test"),
        ("not_mine", "bo@acme.test"),
    ]
    assert {(d["source_ip"], d["user_agent"]) for d in decisions_csv} == {
        ("203.0.113.9", "Mozilla/5.0 (X11)")
    }
    items = {row["external_id"]: row for row in _rows(first, "items") if not row["consenting_user"]}
    assert items["payroll"]["outcome"] == "keep"
    assert items["payroll"]["decided_in_time"] is True
    assert items["hostile"]["outcome"] == f"enforced: disable (undone by {ADMIN})"
    assert items["rtl"]["outcome"] == "enforcement failed: disable"
    assert items["ghost"]["outcome"] == "enforcement refused: not_mine"
    assert items["builder"]["outcome"] == "escalated to the IAM team"
    assert items["ghost"]["owner"] == "iam@acme.test"
    emails = _rows(first, "emails")
    assert emails
    assert all(e["message_id"] and e["status"] == "pending" for e in emails)
    assert {e["kind"] for e in emails} == {"request", "orphan_escalation"}
    enforcement = _rows(first, "enforcement")
    model_columns = {c.name for c in EnforcementAction.__table__.columns}  # type: ignore[attr-defined]
    assert model_columns <= set(enforcement[0]), "every column of the table flows through"
    assert [(e["action"], e["status"], e["error"]) for e in enforcement] == [
        ("disable", "done", None),
        ("enable", "done", None),
        ("disable", "failed", "403 Authorization_RequestDenied"),
        ("refuse", "refused", None),
    ]
    assert (enforcement[1]["reverses_id"], enforcement[1]["performed_by"]) == (
        enforcement[0]["id"],
        ADMIN,
    )
    assert enforcement[0]["snapshot"] == {"accountEnabled": True}
    refused = [e for e in _rows(first, "exceptions") if e["exception"] == "refused"]
    assert [(e["external_id"], e["rule"]) for e in refused] == [("ghost", "not_mine")]
    [tenant] = _rows(first, "completeness_by_tenant")
    assert (
        tenant["items"],
        tenant["decided"],
        tenant["decided_in_time"],
        tenant["escalated"],
        tenant["enforced"],
        tenant["open"],
    ) == (
        len(_rows(first, "items")),
        2,  # kept, and revoked then enforced: an owner's answer either way
        2,  # both before the due date
        1,  # Build Bot, "not mine"
        1,  # the revoked app, disabled (and re-enabled later)
        len(_rows(first, "items")) - 2,
    )
    finished = 2 / len(_rows(first, "items"))
    assert tenant["completion"] == f"{finished:.3f}", "an enforced revoke counts once"
    with Session(engine) as session:
        head = verify_chain(session).head
    assert manifest["chain"]["database_head"]["hash"] == head
    assert manifest["chain"]["head_hash"] == head
    assert "<svg" in summary_html
    assert "<script" not in summary_html

    with Session(engine) as session:
        quarter = evidence.quarter_scope(session, "2026Q4")
        assert quarter.campaign_ids == (campaign,)
        evidence.export(session, quarter, tmp_path / "q1.zip")
        evidence.export(session, quarter, tmp_path / "q2.zip")
    assert (tmp_path / "q1.zip").read_bytes() == (tmp_path / "q2.zip").read_bytes()
    assert evidence.verify_bundle(tmp_path / "q1.zip").ok


def _rewrite(bundle: Path, change: Callable[[dict[str, bytes]], None], rehash: bool) -> None:
    with zipfile.ZipFile(bundle) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    change(contents)
    if rehash:  # a forger who also fixes the manifest: the chain must still catch it
        manifest = json.loads(contents["manifest.json"])
        manifest["files"] = {
            name: hashlib.sha256(data).hexdigest()
            for name, data in contents.items()
            if name != "manifest.json"
        }
        contents["manifest.json"] = json.dumps(manifest).encode()
    bundle.write_bytes(evidence.zip_bytes(contents))


def _edit_table(name: str, edit: Callable[[list[dict[str, Any]]], None]) -> Any:
    def change(contents: dict[str, bytes]) -> None:
        manifest = json.loads(contents["manifest.json"])
        rows = json.loads(contents[f"{name}.json"])
        edit(rows)
        contents[f"{name}.json"] = json.dumps(rows).encode()
        contents[f"{name}.csv"] = evidence.csv_bytes(manifest["tables"][name], rows)

    return change


def _set(key: str, value: Any, index: int = 0) -> Callable[[list[dict[str, Any]]], None]:
    def edit(rows: list[dict[str, Any]]) -> None:
        rows[index][key] = value

    return edit


TAMPERING = {
    "edited file": (
        lambda c: c.update({"emails.csv": c["emails.csv"] + b"x"}),
        False,
        "emails.csv: its SHA-256 does not match the manifest (edited)",
    ),
    "deleted file": (
        lambda c: c.pop("exceptions.json"),
        False,
        "exceptions.json: listed in the manifest but missing from the bundle",
    ),
    "added file": (
        lambda c: c.update({"notes.txt": b"trust me"}),
        False,
        "notes.txt: in the bundle but not in the manifest (added)",
    ),
    "edited decision": (
        _edit_table("decisions", _set("action", "keep", index=1)),
        True,
        "decisions.json: decision 2 on item 2 does not match the audit event that recorded it",
    ),
    "edited csv only": (
        lambda c: c.update({"decisions.csv": c["decisions.csv"].replace(b"revoke", b"keep")}),
        True,
        "decisions.csv: does not match decisions.json",
    ),
    "edited audit event": (
        _edit_table("audit_events", _set("actor", "someone-else@acme.test", index=-1)),
        True,
        "its content does not match its hash (edited)",
    ),
    "deleted audit event": (
        _edit_table("audit_events", lambda rows: rows.pop(1)),
        True,
        "events removed or reordered",
    ),
}


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
@pytest.mark.parametrize("case", list(TAMPERING), ids=list(TAMPERING))
def test_verify_names_the_first_mismatch(engine: Engine, tmp_path: Path, case: str) -> None:
    change, rehash, problem = TAMPERING[case]
    bundle = tmp_path / "bundle.zip"
    _export(engine, _populate(engine, tmp_path), bundle)
    _rewrite(bundle, change, rehash)
    result = evidence.verify_bundle(bundle)
    assert not result.ok
    assert problem in (result.problem or "")


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_the_cli_exports_and_verifies(
    engine: Engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign = _populate(engine, tmp_path)
    config = tmp_path / "recert.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n')
    monkeypatch.setenv("RECERT_CONFIG", str(config))
    runner = CliRunner()
    bundle = tmp_path / "out" / "evidence.zip"
    exported = runner.invoke(
        app, ["evidence", "export", "--campaign", str(campaign), "-o", str(bundle)]
    )
    assert exported.exit_code == 0, exported.output
    assert str(bundle) in exported.output
    verified = runner.invoke(app, ["evidence", "verify", str(bundle), "--format", "json"])
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.output)["ok"] is True

    _rewrite(bundle, TAMPERING["edited decision"][0], rehash=True)
    broken = runner.invoke(app, ["evidence", "verify", str(bundle)])
    assert broken.exit_code == 1
    assert "does not match the audit event" in broken.output

    for usage in (
        ["evidence", "export", "-o", str(bundle)],
        ["evidence", "export", "--campaign", "1", "--quarter", "2026Q4", "-o", str(bundle)],
        ["evidence", "export", "--quarter", "2026-Q4", "-o", str(bundle)],
        ["evidence", "export", "--campaign", "99", "-o", str(bundle)],
    ):
        assert runner.invoke(app, usage).exit_code == 2, usage
