"""`recert demo` as a newcomer runs it: one process, loopback only, everything in DIR."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import IO

import pytest

from recert.demo import read_mail

GUARD = Path(__file__).parent / "guard"


def test_demo_runs_end_to_end_offline_and_writes_only_its_folder(tmp_path: Path) -> None:
    cwd, home, scratch, target = (tmp_path / n for n in ("cwd", "home", "tmp", "demo"))
    for folder in (cwd, home, scratch):
        folder.mkdir()
    guard_log = tmp_path / "guard.log"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "TMPDIR": str(scratch),
        "PYTHONPATH": str(GUARD),
        "PYTHONDONTWRITEBYTECODE": "1",
        "RECERT_GUARD_LOG": str(guard_log),
    }
    result = subprocess.run(
        [sys.executable, "-m", "recert", "demo", "--dir", str(target)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not guard_log.exists(), guard_log.read_text()
    assert list(cwd.iterdir()) == []
    assert list(home.iterdir()) == []
    assert list(scratch.iterdir()) == []

    summary = json.loads((target / "summary.json").read_text())
    for path in summary["reports"].values():
        assert Path(path).is_file()
        assert Path(path).is_relative_to(target)
    assert (target / "recert.toml").is_file()
    assert str(target / "recert.toml") in result.stdout
    venv_recert = Path(sys.executable).parent / "recert"
    assert f"{venv_recert} inventory --format json" in result.stdout, "works without activating"
    assert f"{venv_recert} web" in result.stdout
    assert "http://127.0.0.1:8000/review/" in result.stdout

    listed = subprocess.run(
        [sys.executable, "-m", "recert", "inventory", "--format", "json"],
        cwd=cwd,
        env={**env, "RECERT_CONFIG": str(target / "recert.toml")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    entries = json.loads(listed.stdout)
    assert summary["principals"] == len(entries)
    assert 120 <= len(entries) <= 180, "around 150 principals"
    by_tenant: dict[str, Counter[str]] = {}
    for entry in entries:
        by_tenant.setdefault(entry["tenant"], Counter())[entry["kind"]] += 1
    assert summary["by_tenant"] == {t: dict(c) for t, c in by_tenant.items()}
    orphan_report = json.loads((target / "reports" / "orphans.json").read_text())
    assert summary["orphaned"] == len(orphan_report) == summary["campaign"]["to_iam"]
    assert summary["campaign"]["apps"] < summary["campaign"]["items"], "consents are not apps"
    assert f"{summary['campaign']['apps']} apps to review" in result.stdout
    assert summary["platform_owned"] == sum(1 for e in entries if e["platform_owned"])
    assert summary["orphaned"] > 0
    assert summary["platform_owned"] > 0
    assert any("<script>" in e["display_name"] for e in entries), "hostile names survive, escaped"
    every_mail = [read_mail(path) for path in sorted((target / "mail").glob("*.eml"))]
    assert len(every_mail) == summary["emails_sent"] > 0
    expiry = [m for m in every_mail if str(m["Subject"]).startswith(("Expiring:", "Expired:"))]
    assert len(expiry) == summary["credential_expiry"]["digests"] > 0, "the demo sends notices"
    mails = [m for m in every_mail if m not in expiry]
    iam = [m for m in mails if m["To"] == "iam-team@example.com"]
    owners = Counter(str(m["To"]) for m in mails if m not in iam)
    assert set(owners.values()) == {1}, "one digest per owner"
    assert summary["campaign"]["reviewers_emailed"] == len(owners) + 1, "owners and IAM"
    subjects = sorted(str(m["Subject"]) for m in iam)
    assert len(subjects) == 2
    assert subjects[0].startswith(f"Orphaned: {summary['orphaned']} apps with no accountable")
    assert subjects[1].startswith("Weekly orphan report")
    assert subjects[1].endswith(f": {summary['orphaned']} apps without an owner")
    bundle = Path(summary["evidence"]["path"])
    assert str(bundle) in result.stdout
    config_env = {**env, "RECERT_CONFIG": str(target / "recert.toml")}
    campaign, again = str(summary["campaign"]["campaign_id"]), tmp_path / "again.zip"
    for args in (["verify", str(bundle)], ["export", "--campaign", campaign, "-o", str(again)]):
        run = subprocess.run(
            [sys.executable, "-m", "recert", "evidence", *args],
            cwd=cwd, env=config_env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
    assert again.read_bytes() == bundle.read_bytes(), "the same database, the same bytes"
    day15 = summary["day15"]
    assert {p["tenant"] for p in day15["plan"]} == set(by_tenant)
    assert {p["mode"] for p in day15["plan"]} == {"dry-run"}
    assert sum(sum(p["actions"].values()) for p in day15["plan"]) > 0
    assert day15["answered"] == {"keep": 3, "revoke": 3, "reduce": 2}
    assert "Enforcement plan, dry run" in result.stdout
    plan_line = next(line for line in result.stdout.splitlines() if "enforce --plan" in line)
    assert plan_line.strip().startswith(f"RECERT_NOW={day15['at']} RECERT_CONFIG=")
    assert {o["source"] for e in entries for o in e["owners"]} >= {
        "catalog",
        "idp_owner",
        "audit_creator",
        "token_creator",
        "manager",
        "iam_team",
    }


def _output_once_stopped(demo: subprocess.Popen[str], errors: IO[str]) -> str:
    """Its output once it has stopped; a demo that hangs fails with every thread's stack."""
    try:
        return demo.communicate(timeout=60)[0]
    except subprocess.TimeoutExpired:
        demo.send_signal(signal.SIGABRT)  # -X faulthandler writes each thread's stack
        demo.communicate(timeout=30)
        errors.seek(0)
        pytest.fail(f"the demo did not stop within 60 s of Ctrl-C:\n{errors.read()[-8000:]}")


def test_keep_running_serves_the_tenants_to_other_commands(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECERT_")}
    with (tmp_path / "stderr").open("w+") as errors:
        command = ["demo", "--dir", str(target), "--keep-running"]
        demo = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-m", "recert", *command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        try:
            assert demo.stdout is not None
            before_waiting = []
            for line in demo.stdout:  # blocks until the demo says the tenants are up
                before_waiting.append(line)
                if "Press Ctrl-C" in line:
                    break
            assert any("Recert demo:" in line for line in before_waiting), "the summary comes first"
            assert any(line.rstrip().endswith("recert web") for line in before_waiting)
            again = subprocess.run(
                [sys.executable, "-m", "recert", "discover", "--format", "json"],
                env={**env, "RECERT_CONFIG": str(target / "recert.toml")},
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert again.returncode == 0, again.stderr[-2000:]
            summaries = json.loads(again.stdout)
            assert [s["status"] for s in summaries] == ["complete"] * 3
            assert all(s["new"] == 0 for s in summaries), "the same tenants the demo saw"
        finally:
            demo.send_signal(signal.SIGINT)
            rest = _output_once_stopped(demo, errors)
        assert demo.returncode == 0
        assert "stopping the emulated tenants" in rest
