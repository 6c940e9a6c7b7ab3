"""What a new user meets first: reads without secrets, one-line errors, no empty success."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from sqlmodel import Session, select

from recert import db
from recert.cli import main
from recert.models import Campaign

CONFIG = """
iam_email = "iam@acme.test"

[database]
url = "{url}"

[smtp]
password_env = "SMTP_PASSWORD"

[web]
secret_key_env = "RECERT_WEB_KEY"

[[tenants]]
name = "okta-prod"
kind = "okta"
org_url = "https://acme.okta.test"
api_token_env = "OKTA_READ_TOKEN"

[tenants.enforce]
api_token_env = "OKTA_WRITE_TOKEN"
"""


class Cli:
    """`recert` run in this process, as the console script runs it (exit code, one line)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
        self.monkeypatch, self.capsys = monkeypatch, capsys
        for name in list(os.environ):
            if name.startswith("RECERT_") or name.endswith("_TOKEN"):
                monkeypatch.delenv(name)

    def config(self, tmp_path: Path, url: str) -> Path:
        path = tmp_path / "recert.toml"
        path.write_text(CONFIG.format(url=url))
        self.monkeypatch.setenv("RECERT_CONFIG", str(path))
        return path

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.monkeypatch.setattr(sys, "argv", ["recert", *args])
        with pytest.raises(SystemExit) as exited:
            main()
        captured = self.capsys.readouterr()
        code = exited.value.code
        return (code if isinstance(code, int) else 1), captured.out, captured.err


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(monkeypatch, capsys)


def one_line(stderr: str) -> str:
    assert stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    return stderr


def test_reads_need_no_provider_secret_or_signing_key(cli: Cli, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'recert.db'}"
    cli.config(tmp_path, url)
    db.upgrade(db.make_engine(url))
    for command in (
        ["inventory", "--format", "json"],
        ["report", "orphans", "--format", "json"],
        ["report", "risky", "--format", "csv"],
        ["campaign", "status", "--format", "json"],
        ["audit", "verify"],
    ):
        code, _, err = cli(*command)
        assert code == 0, (command, err)
    assert json.loads(cli("inventory", "--format", "json")[1]) == []


def test_a_command_that_uses_a_secret_names_the_missing_one(cli: Cli, tmp_path: Path) -> None:
    path = cli.config(tmp_path, f"sqlite:///{tmp_path / 'recert.db'}")
    code, _, err = cli("discover")
    assert code == 2
    assert one_line(err) == (
        f"recert: {path}: tenants[0] (okta-prod).api_token_env: environment variable "
        "OKTA_READ_TOKEN is unset\n"
    )
    assert not (tmp_path / "recert.db").exists(), "nothing started"
    db.upgrade(db.make_engine(f"sqlite:///{tmp_path / 'recert.db'}"))
    code, _, err = cli("notify")
    assert code == 2
    assert "web.secret_key_env: environment variable RECERT_WEB_KEY is unset" in one_line(err)


def test_a_database_without_schema_says_run_init(cli: Cli, tmp_path: Path) -> None:
    cli.config(tmp_path, f"sqlite:///{tmp_path / 'empty.db'}")
    for command in (["inventory"], ["report", "orphans"], ["campaign", "status"], ["owners"]):
        code, _, err = cli(*command)
        assert code == 1, command
        assert "has no Recert schema: run `recert init` first" in one_line(err)


def test_a_postgres_database_without_schema_says_run_init(
    cli: Cli, tmp_path: Path, fresh_postgres_url: str
) -> None:
    cli.config(tmp_path, fresh_postgres_url)
    code, _, err = cli("audit", "verify")
    assert code == 1
    assert "run `recert init` first" in one_line(err)


@pytest.mark.parametrize(
    ("url", "code", "words"),
    [
        ("postgresql+psycopg://recert:hunter2@127.0.0.1:1/recert", 1, "cannot reach database"),
        ("mysql://recert:hunter2@db.acme.test/recert", 2, "mysql is not supported"),
        ("sqlite:///{tmp}/no/such/folder/recert.db", 2, "folder"),
        ("not a url", 2, "is not a URL"),
    ],
    ids=["unreachable", "mysql", "missing-folder", "garbage"],
)
def test_a_bad_or_unreachable_database_is_one_line(
    cli: Cli, tmp_path: Path, url: str, code: int, words: str
) -> None:
    cli.config(tmp_path, url.format(tmp=tmp_path))
    for command in (["init"], ["inventory"]):
        exit_code, _, err = cli(*command)
        assert exit_code == code, err
        assert words in one_line(err)
        assert "hunter2" not in err


def test_campaign_open_on_an_empty_database_is_no_success(cli: Cli, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'recert.db'}"
    cli.config(tmp_path, url)
    code, out, err = cli("campaign", "open")
    assert code == 1
    assert "nothing to review" in one_line(err)
    assert "opened" not in out
    with Session(db.make_engine(url)) as session:
        assert session.exec(select(Campaign)).all() == []
