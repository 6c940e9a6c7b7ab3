"""Credential-expiry notices, travelling with `RECERT_NOW` across the 60-, 30- and 7-day
marks and the expiry, against the three emulated tenants and a real SMTP server."""

from __future__ import annotations

import copy
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from connectors import base
from connectors.settings import EntraSettings, GoogleSettings, OktaSettings
from emails import wording
from jobs.schedule import beat_schedule
from recert import campaigns, links, notices, reports
from recert.analysis import analyze
from recert.cli import app as recert_cli
from recert.clock import FixedClock
from recert.config import (
    ConfigError,
    NoticeSettings,
    Settings,
    SmtpSettings,
    WebSettings,
    load_settings,
)
from recert.db import session_scope
from recert.decisions import DecisionRequest, decide
from recert.discovery import discover_tenant
from recert.models import AuditEvent, CredentialNotice, OutboxEmail, Principal, ReviewItem
from recert.notify import notify, send_outbox
from sandbox.entra.seed import MICROSOFT_TENANTS
from sandbox.tenants import SandboxTenants, Sizes, running_tenants
from tests.conftest import CapturedMail, SmtpCapture
from tests.test_discovery import TENANT, ScriptedConnector

T0 = datetime(2027, 3, 1, 6, tzinfo=UTC)  # the drill's day 0; notify runs at 06:00 UTC
SIZES = Sizes(okta_apps=12, entra_principals=14, google_principals=6, google_users=12)
PAY, DATA, IAM = "pay-owners@acme.test", "data-owners@acme.test", "iam@acme.test"
OWNER_RULE = {"pattern": "drill-{team}-{name}", "owner": "{team}-owners@acme.test"}


def at(day: float) -> datetime:
    return T0 + timedelta(days=day)


def expiring_on(day: int) -> datetime:
    """05:00 UTC on that day: already past when that day's 06:00 run looks."""
    return at(day) - timedelta(hours=1)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the drill's credentials, planted in the emulators -----------------------------------


@dataclass
class Drill:
    tenants: SandboxTenants
    config: Path
    key_ids: dict[str, str] = field(default_factory=dict)  # label -> id shown in the email
    never: dict[str, str] = field(default_factory=dict)  # excluded label -> id
    okta_owner: str = ""
    rotate: dict[str, Any] = field(default_factory=dict)


def entra_credential(kind: str, key_id: str, name: str, ends: datetime) -> dict[str, Any]:
    body = {
        "keyId": key_id,
        "displayName": name,
        "startDateTime": stamp(T0 - timedelta(days=300)),
        "endDateTime": stamp(ends),
    }
    if kind == "secret":
        return {**body, "hint": name[:3]}
    return {**body, "type": "AsymmetricX509Cert", "usage": "Verify"}


def plant_entra_app(
    drill: Drill,
    name: str,
    credentials: list[tuple[str, str, datetime]],
    *,
    registration: bool = True,
    sp_type: str = "Application",
    enabled: bool = True,
    owner_org: str | None = None,
) -> str:
    """An app registration (credentials on it) and its service principal, or an SP alone."""
    emulator = drill.tenants.entra
    tenant_id = emulator.tenant.tenant_id
    app_id, sp_id, object_id = (f"{name}-{part}" for part in ("app", "sp", "object"))
    entries = {"passwordCredentials": [], "keyCredentials": []}  # type: dict[str, list[Any]]
    for kind, label, ends in credentials:
        key_id = f"{label}-key"
        field_name = "passwordCredentials" if kind == "secret" else "keyCredentials"
        entries[field_name].append(entra_credential(kind, key_id, label, ends))
        drill.key_ids[label] = key_id
    sp = {
        "id": sp_id,
        "appId": app_id,
        "displayName": name,
        "appDisplayName": name,
        "accountEnabled": enabled,
        "servicePrincipalType": sp_type,
        "appOwnerOrganizationId": owner_org or tenant_id,
        "publisherName": name,
        "verifiedPublisher": {"displayName": None, "verifiedPublisherId": None},
        "appRoles": [],
        "oauth2PermissionScopes": [],
        "passwordCredentials": [] if registration else entries["passwordCredentials"],
        "keyCredentials": [] if registration else entries["keyCredentials"],
        "servicePrincipalNames": [app_id],
        "tags": [],
    }
    emulator.add_service_principal(sp)
    if registration:
        with emulator.lock:
            emulator.tenant.applications[object_id] = {
                "id": object_id,
                "appId": app_id,
                "displayName": name,
                "createdDateTime": stamp(T0 - timedelta(days=400)),
                "publisherDomain": "acme.test",
                "signInAudience": "AzureADMyOrg",
                "verifiedPublisher": {"displayName": None, "verifiedPublisherId": None},
                **entries,
            }
            emulator.touch("applications", object_id, None)
    return object_id


def plant(drill: Drill) -> None:
    tenants = drill.tenants
    ledger = plant_entra_app(
        drill,
        "drill-pay-ledger",
        [
            ("secret", "ledger-secret", expiring_on(65)),
            ("certificate", "ledger-cert", expiring_on(40)),
        ],
    )
    drill.rotate["ledger"] = ledger
    plant_entra_app(drill, "drill-pay-payouts", [("secret", "payouts-secret", expiring_on(40))])
    plant_entra_app(drill, "Orphan ledger", [("secret", "orphan-secret", expiring_on(33))])
    soon = expiring_on(10)
    plant_entra_app(
        drill, "drill-pay-disabled", [("secret", "disabled-secret", soon)], enabled=False
    )
    plant_entra_app(drill, "drill-pay-protected", [("secret", "protected-secret", soon)])
    plant_entra_app(
        drill,
        "drill-pay-identity",
        [("certificate", "identity-cert", soon)],
        registration=False,
        sp_type="ManagedIdentity",
    )
    plant_entra_app(
        drill,
        "drill-pay-firstparty",
        [("certificate", "firstparty-cert", soon)],
        registration=False,
        owner_org=MICROSOFT_TENANTS[0],
    )
    for label in ("disabled-secret", "protected-secret", "identity-cert", "firstparty-cert"):
        drill.never[label] = drill.key_ids.pop(label)

    google = tenants.google
    project = google.seed.projects[0]
    email = f"drill-data-export@{project}.iam.gserviceaccount.com"
    unique_id = "987650000000000000001"
    key_id = "d" * 40
    with google.lock:
        google.accounts[project].append(
            {
                "name": f"projects/{project}/serviceAccounts/{email}",
                "projectId": project,
                "uniqueId": unique_id,
                "email": email,
                "displayName": "drill-data-export",
                "etag": "ZHJpbGw=",
                "oauth2ClientId": unique_id,
                "disabled": False,
            }
        )
        google.keys[unique_id] = [
            {
                "name": f"projects/{project}/serviceAccounts/{email}/keys/{key_id}",
                "validAfterTime": stamp(T0 - timedelta(days=300)),
                "validBeforeTime": stamp(expiring_on(12)),
                "keyAlgorithm": "KEY_ALG_RSA_2048",
                "keyOrigin": "GOOGLE_PROVIDED",
                "keyType": "USER_MANAGED",
                "disabled": False,
            }
        ]
    drill.key_ids["google-key"] = key_id
    drill.rotate["google"] = unique_id

    okta = tenants.okta.org
    user = next(
        u
        for _, u in sorted(okta.users.items())
        if u["status"] == "ACTIVE" and u["profile"].get("email")
    )
    token = copy.deepcopy(next(iter(okta.api_tokens.values())))
    token.update(
        id="00Tdrill00000000001",
        name="drill deploy token",
        userId=user["id"],
        expiresAt=stamp(expiring_on(20)),
        created=stamp(T0 - timedelta(days=200)),
        lastUpdated=stamp(expiring_on(20) - timedelta(days=30)),
    )
    okta.api_tokens[token["id"]] = token
    drill.key_ids["okta-token"] = token["id"]
    drill.okta_owner = user["profile"]["email"].lower()


def rotate(drill: Drill) -> None:
    """Day 8: a newer certificate on the ledger app, and the Google key deleted."""
    entra, google = drill.tenants.entra, drill.tenants.google
    app = entra.tenant.applications[drill.rotate["ledger"]]
    newer = entra_credential("certificate", "ledger-cert-2027", "ledger cert 2027", at(400))
    newer["startDateTime"] = stamp(at(8) - timedelta(hours=2))
    entra.update_application(drill.rotate["ledger"], keyCredentials=[*app["keyCredentials"], newer])
    with google.lock:
        google.keys[drill.rotate["google"]] = []


def secret_values(tenants: SandboxTenants) -> list[str]:
    """Every secret value the emulators hold: none may appear in any email."""
    okta, entra = tenants.okta, tenants.entra
    client_secrets = [  # as Okta lists them: masked, with a hash (never a usable value)
        value
        for held in okta.org.secrets.values()
        for secret in held
        for value in (secret["client_secret"], secret["secret_hash"])
    ]
    private_key = tenants.google.service_account_info("https://t")["private_key"]
    key_lines = [line for line in private_key.splitlines() if "PRIVATE KEY" not in line]
    entra_secrets = [entra.secret_of(entra.read_client_id), entra.secret_of(entra.write_client_id)]
    values = [okta.read_token, okta.write_token, *client_secrets, *entra_secrets, *key_lines]
    assert len(client_secrets) >= 1
    return values


@pytest.fixture
def drill(tmp_path: Path, smtp_server: SmtpCapture) -> Iterator[Drill]:
    with running_tenants(tmp_path / "sandbox", SIZES, now=T0) as tenants:
        config = tmp_path / "recert.toml"
        made = Drill(tenants, config)
        plant(made)
        entra_table = next(t for t in tenants.tables if t["kind"] == "entra")
        entra_table["protected"] = ["drill-pay-protected"]
        (tmp_path / "web-key").write_text("k" * 32)
        config.write_text(
            tenants.config(
                iam_email=IAM,
                smtp={"host": smtp_server.host, "port": smtp_server.port},
                web={"base_url": "https://recert.acme.test", "secret_key_file": "web-key"},
                owner_rules=[OWNER_RULE],
            )
        )
        yield made


def recert(drill: Drill, database_url: str, day: float, *args: str) -> Any:
    env = {
        "RECERT_CONFIG": str(drill.config),
        "RECERT_DATABASE_URL": database_url,
        "RECERT_NOW": at(day).isoformat(),
    }
    result = CliRunner().invoke(recert_cli, [*args, "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def sent_on(engine: Engine, mails: list[CapturedMail]) -> list[tuple[str, set[str]]]:
    """Each expiry digest among `mails`: its recipient and the ledger's credential ids."""
    digests = []
    with Session(engine) as session:
        for mail in mails:
            row = session.exec(
                select(OutboxEmail).where(OutboxEmail.message_id == str(mail.message["Message-ID"]))
            ).one()
            if row.kind != "credential_expiry":
                continue
            listed = session.exec(
                select(CredentialNotice).where(CredentialNotice.outbox_key == row.idempotency_key)
            ).all()
            text = mail.message.get_body(("plain",)).get_content()
            for notice in listed:
                assert f"(ID {notice.credential_id}" in text, "the ledger matches the email"
            digests.append((row.recipient, {n.credential_id for n in listed}))
    return digests


# Travelling: each mark's day and the day before it; day 8 rotates and rediscovers.
EXPECTED = {  # day -> recipient -> drill credentials listed that day
    0: {PAY: {"ledger-cert", "payouts-secret"}, DATA: {"google-key"}, IAM: {"orphan-secret"}},
    3: {IAM: {"orphan-secret"}},
    5: {PAY: {"ledger-secret"}, DATA: {"google-key"}},
    10: {PAY: {"payouts-secret"}},  # the ledger's certificate was rotated on day 8
    13: {"okta": {"okta-token"}},  # only 7 days: Okta tokens renew on use (30-day window)
    20: {"okta": {"okta-token"}},
    26: {IAM: {"orphan-secret"}},
    33: {PAY: {"payouts-secret"}, IAM: {"orphan-secret"}},
    35: {PAY: {"ledger-secret"}},
    40: {PAY: {"payouts-secret"}},
    58: {PAY: {"ledger-secret"}},
    65: {PAY: {"ledger-secret"}},
}
DAYS = sorted({d for mark in EXPECTED for d in (mark - 1, mark) if d >= 0} | {8, 12, 66})


def test_a_drill_across_the_marks_tells_each_owner_once_per_credential_and_threshold(
    engine: Engine, database_url: str, drill: Drill, smtp_server: SmtpCapture
) -> None:
    assert all(s["status"] == "complete" for s in recert(drill, database_url, 0, "discover"))
    labels = {key_id: label for label, key_id in drill.key_ids.items()}
    seen: dict[int, dict[str, set[str]]] = {}
    for day in DAYS:
        if day == 8:
            rotate(drill)
            recert(
                drill,
                database_url,
                day,
                "discover",
                "--tenant",
                "entra-demo",
                "--tenant",
                "google-demo",
            )
        before = len(smtp_server.messages)
        summary = recert(drill, database_url, day, "notify")
        again = recert(drill, database_url, day + 0.25, "notify")  # later that day
        assert again["credential_expiry"]["digests"] == 0
        assert summary["failed"] == 0
        today = smtp_server.messages[before:]
        recipients = Counter(str(m.message["To"]) for m in today)
        assert set(recipients.values()) <= {1}, f"day {day}: one email per owner per day"
        for recipient, listed in sent_on(engine, today):
            drilled = {labels[i] for i in listed if i in labels}
            if drilled:
                who = "okta" if recipient == drill.okta_owner else recipient
                seen.setdefault(day, {})[who] = drilled
    assert seen == EXPECTED

    with Session(engine) as session:
        ledger = session.exec(select(CredentialNotice)).all()
    pairs = Counter((n.principal_id, n.credential_id, n.threshold_days) for n in ledger)
    assert set(pairs.values()) == {1}, "exactly one notice per credential and threshold"
    stages: dict[tuple[int, str], list[int]] = {}
    for notice in sorted(ledger, key=lambda n: n.notified_at):
        stages.setdefault((notice.principal_id, notice.credential_id), []).append(
            notice.threshold_days
        )
    assert all(s == sorted(s, reverse=True) for s in stages.values()), "stages only tighten"
    drilled = {n.credential_id: n.threshold_days for n in ledger if n.credential_id in labels}
    assert sorted(t for i, t in drilled.items() if labels[i] == "ledger-secret") == [0]

    everything = [everything_in(m) for m in smtp_server.messages]
    for label, key_id in drill.never.items():
        assert not any(key_id in text for text in everything), f"{label} is never mentioned"
    for value in secret_values(drill.tenants):
        assert not any(value in text for text in everything), "no secret value in any email"
    iam_mail = [m for m in smtp_server.to(IAM) if "Orphan ledger" in everything_in(m)]
    assert iam_mail
    assert "Why orphaned: No owner is recorded anywhere" in everything_in(iam_mail[0])


def everything_in(mail: CapturedMail) -> str:
    """Headers and both decoded parts: what a reader (or a leak scanner) could see."""
    message = mail.message
    parts = [message.get_body((kind,)) for kind in ("plain", "html")]
    headers = "".join(f"{k}: {v}\n" for k, v in message.items())
    return headers + "".join(part.get_content() for part in parts if part is not None)


# --- two runs at once, a crash mid-send, links and config -------------------------------


def token(id_: str, user: str, ends: datetime, created: datetime) -> list[Any]:
    principal = base.Principal(id_, base.PrincipalKind.API_TOKEN, f"token {id_}")
    return [
        principal,
        base.Credential(id_, id_, "api_token", f"token {id_}", created, ends),
        base.OwnerHint(id_, base.OwnerSource.TOKEN_CREATOR, "issued to them", person_id=user),
    ]


def app(id_: str, owner: str | None, *credentials: tuple[str, datetime]) -> list[Any]:
    principal = base.Principal(id_, base.PrincipalKind.OAUTH_APP, f"App {id_}", app_id=id_)
    records: list[Any] = [principal]
    for n, (kind, ends) in enumerate(credentials):
        created = T0 - timedelta(days=300 - n)
        records.append(base.Credential(id_, f"{id_}/{kind}{n}", kind, None, created, ends))
    if owner:
        records.append(base.OwnerHint(id_, base.OwnerSource.IDP_OWNER, "listed", person_id=owner))
    return records


def page(*groups: list[Any]) -> base.Page:
    page = base.Page(
        people=[
            base.Person(p, p.title(), f"{p}@acme.test", active=True) for p in ("ann", "dan", "cy")
        ],
        checkpoint=base.Checkpoint(full=True),
    )
    for record in (r for group in groups for r in group):
        bucket = {
            base.Principal: page.principals,
            base.Credential: page.credentials,
            base.OwnerHint: page.owner_hints,
        }[type(record)]
        bucket.append(record)
    return page


SCRIPTED = page(
    app("0oaANN1", "ann", ("secret", at(20)), ("certificate", at(50))),
    app("0oaANN2", "ann", ("secret", at(5))),
    app("0oaDAN1", "dan", ("secret", at(-3))),
    app("0oaCY1", "cy", ("secret", at(29))),
    app("0oaLOST", None, ("secret", at(6))),
    app("0oaROTATED", "dan", ("secret", at(4)), ("secret", at(400))),  # newer one outlives it
    app("0oaNEVER", "dan", ("secret", at(3650))),
)


@pytest.fixture
def settings(tmp_path: Path, smtp_server: SmtpCapture) -> Settings:
    return Settings(
        path=tmp_path / "recert.toml",
        tenants=(TENANT,),
        iam_email=IAM,
        smtp=SmtpSettings(host=smtp_server.host, port=smtp_server.port),
        web=WebSettings(base_url="https://recert.acme.test", secret_key=SecretStr("k" * 32)),
    )


@pytest.fixture
def scripted(engine: Engine, settings: Settings) -> Engine:
    clock = FixedClock(at(-1))
    connector = ScriptedConnector([SCRIPTED])
    assert discover_tenant(engine, TENANT, clock, connector=connector).status == "complete"
    analyze(engine, settings, clock)
    return engine


def test_two_runs_at_once_send_each_notice_once(
    scripted: Engine,
    settings: Settings,
    smtp_server: SmtpCapture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    both_read = threading.Barrier(2)
    read_due = notices.due_notices

    def read_then_wait(*args: Any) -> list[notices.DueNotice]:
        due = read_due(*args)
        both_read.wait()  # each run has seen every notice due before either queues one
        return due

    monkeypatch.setattr(notices, "due_notices", read_then_wait)
    summaries: list[notices.ExpirySummary] = []

    def run() -> None:
        summaries.append(notices.queue_expiry_notices(scripted, settings, FixedClock(at(0))))
        send_outbox(scripted, settings, FixedClock(at(0)))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(str(m.message["To"]) for m in smtp_server.messages) == [
        "ann@acme.test",
        "cy@acme.test",
        "dan@acme.test",
        IAM,
    ]
    assert sum(s.notices for s in summaries) == 6
    assert sum(s.orphaned for s in summaries) == 1
    ann = everything_in(smtp_server.to("ann@acme.test")[0])
    assert "0oaANN1/secret0" not in ann, "Okta ids shown without the app's own id"
    assert "(ID secret0)" in ann
    assert "(ID certificate1)" in ann
    dan = everything_in(smtp_server.to("dan@acme.test")[0])
    assert "Expired: 1 credential on 1 app" in dan
    assert "0oaROTATED" not in dan, "a newer secret that outlives it: already rotated"


def test_a_crash_before_sending_loses_nothing_and_sends_nothing_twice(
    scripted: Engine, settings: Settings, smtp_server: SmtpCapture
) -> None:
    down = settings.model_copy(update={"smtp": SmtpSettings(host="127.0.0.1", port=1)})
    first = notices.queue_expiry_notices(scripted, down, FixedClock(at(0)))
    assert send_outbox(scripted, down, FixedClock(at(0))).retrying == first.digests == 4
    queued_again = notices.queue_expiry_notices(scripted, settings, FixedClock(at(0.5)))
    assert queued_again.digests == 0, "nothing new: those notices are in today's digests"
    assert send_outbox(scripted, settings, FixedClock(at(0.5))).sent == 4
    next_day = notices.queue_expiry_notices(scripted, settings, FixedClock(at(1)))
    assert next_day.as_dict() == notices.ExpirySummary().as_dict()
    assert len(smtp_server.messages) == 4


def test_a_digest_already_sent_today_holds_new_notices_for_tomorrow(
    scripted: Engine, settings: Settings, smtp_server: SmtpCapture
) -> None:
    tight = settings.model_copy(update={"notices": NoticeSettings(credential_expiry_days=(7,))})
    assert notices.queue_expiry_notices(scripted, tight, FixedClock(at(0))).digests == 3
    later = notices.queue_expiry_notices(scripted, settings, FixedClock(at(0.2)))
    assert (later.digests, later.deferred) == (1, 2), "cy now; ann has had today's digest"
    tomorrow = notices.queue_expiry_notices(scripted, settings, FixedClock(at(1)))
    assert (tomorrow.digests, tomorrow.notices) == (1, 2)
    assert len(smtp_server.messages) == 0, "queued only: the outbox sends"


def test_an_address_that_cannot_be_mailed_is_logged_and_the_rest_go_out(
    engine: Engine, settings: Settings, smtp_server: SmtpCapture
) -> None:
    scripted = page(
        app("0oaEVE", "eve", ("secret", at(3))), app("0oaANN", "ann", ("secret", at(3)))
    )
    scripted.people.append(base.Person("eve", "Eve", "eve@acme.test\r\nBcc: x@evil.test", True))
    clock = FixedClock(at(-1))
    discover_tenant(engine, TENANT, clock, connector=ScriptedConnector([scripted]))
    analyze(engine, settings, clock)
    summary = notices.queue_expiry_notices(engine, settings, FixedClock(at(0)))
    assert (summary.digests, summary.unmailable) == (1, 1)
    send_outbox(engine, settings, FixedClock(at(0)))
    assert [m.recipients for m in smtp_server.messages] == [["ann@acme.test"]]


def test_a_bounced_owner_digest_goes_to_the_iam_team_once(
    scripted: Engine, settings: Settings, smtp_server: SmtpCapture
) -> None:
    smtp_server.refuse.add("ann@acme.test")
    notices.queue_expiry_notices(scripted, settings, FixedClock(at(0)))
    assert send_outbox(scripted, settings, FixedClock(at(0))).bounced == 1
    assert notices.queue_expiry_notices(scripted, settings, FixedClock(at(0.5))).digests == 0
    assert send_outbox(scripted, settings, FixedClock(at(0.5))).sent == 0
    own, rerouted = sorted(
        (everything_in(m) for m in smtp_server.to(IAM)), key=lambda text: "0oaANN1" in text
    )
    assert "0oaLOST" in own
    assert "0oaANN" not in own
    assert "(ID secret0)" in rerouted
    assert "(ID certificate1)" in rerouted
    assert "0oaANN2" in rerouted
    assert "These notices were for ann@acme.test, but that address bounced" in rerouted
    assert "Why orphaned: Mail to the owner bounced: they cannot be reached" in rerouted
    assert "Hello IAM team," in rerouted
    with Session(scripted) as session:
        [event] = session.exec(
            select(AuditEvent).where(AuditEvent.action == "owner.mail_bounced")
        ).all()
    assert event.data == {"recipient": "ann@acme.test", "notices_to_iam": 3}


def test_the_iam_teams_own_bounced_digest_goes_nowhere_else(
    scripted: Engine, settings: Settings, smtp_server: SmtpCapture
) -> None:
    smtp_server.refuse.add(IAM)
    notices.queue_expiry_notices(scripted, settings, FixedClock(at(0)))
    summary = send_outbox(scripted, settings, FixedClock(at(0)))
    assert (summary.sent, summary.bounced) == (3, 1)
    with Session(scripted) as session:
        [event] = session.exec(
            select(AuditEvent).where(AuditEvent.action == "owner.mail_bounced")
        ).all()
    assert event.data == {"recipient": IAM, "notices_to_iam": 0}


# One app per orphan reason, each with a secret expiring in five days.
ORPHANS = page(
    app("0oaNOBODY", None, ("secret", at(5))),
    app("0oaGONE", "eve", ("secret", at(5))),
    app("0oaGHOST", "ghost", ("secret", at(5))),
    app("0oaLOOP", None, ("secret", at(5))),
    app("0oaCONSENTED", None, ("secret", at(5))),
    app("0oaNOTMINE", "dan", ("secret", at(5))),
    app("0oaBOUNCED", "cy", ("secret", at(5))),
    app("0oaANN", "ann", ("secret", at(5))),
)
ORPHANS.people.append(base.Person("eve", "Eve", "eve@acme.test", active=False))
ORPHANS.owner_hints.append(
    base.OwnerHint("0oaLOOP", base.OwnerSource.IDP_OWNER, "listed", owner_principal_id="0oaLOOP")
)
ORPHANS.grants.append(
    base.Grant("0oaCONSENTED", "c", "openid", "Okta", base.Consent.USER, consenting_user="ann")
)


def test_credential_notices_call_orphaned_exactly_what_the_orphan_report_does(
    engine: Engine, settings: Settings, smtp_server: SmtpCapture
) -> None:
    opened = FixedClock(at(-1))
    discover_tenant(engine, TENANT, opened, connector=ScriptedConnector([ORPHANS]))
    analyze(engine, settings, opened)
    with session_scope(engine) as session:
        campaign = campaigns.open_campaign(session, settings, opened, name="Q1 review")
    smtp_server.refuse.add("cy@acme.test")
    notify(engine, settings, opened)  # Cy's request bounces: 0oaBOUNCED moves to IAM
    with session_scope(engine) as session:
        item = session.exec(
            select(ReviewItem).join(Principal).where(Principal.external_id == "0oaNOTMINE")
        ).one()
        link = links.ReviewLink(campaign.campaign_id, "dan@acme.test", campaign.due_at)
        decide(session, settings, opened, link, item.id or 0, DecisionRequest("not_mine"))
    with Session(engine) as session:
        report = {r["external_id"]: r["reason"] for r in reports.orphans(session, settings, at(0))}
        due = notices.due_notices(session, settings, at(0))
    assert report == {
        "0oaNOBODY": "no_owner",
        "0oaGONE": "owner_departed",
        "0oaGHOST": "owner_unresolvable",
        "0oaLOOP": "owner_is_app",
        "0oaCONSENTED": "user_consented",
        "0oaNOTMINE": "not_mine",
        "0oaBOUNCED": "owner_unreachable",
    }
    assert set(report.values()) == set(wording.ORPHAN_REASONS), "every reason has its case"
    told = {n.principal.external_id: (n.recipient, n.orphan_reason) for n in due}
    assert told == {
        **{app_id: (IAM, reason) for app_id, reason in report.items()},
        "0oaANN": ("ann@acme.test", None),
    }
    summary = notices.queue_expiry_notices(engine, settings, FixedClock(at(0)))
    assert (summary.notices, summary.orphaned) == (8, 7)
    send_outbox(engine, settings, FixedClock(at(0)))
    [digest] = [m for m in smtp_server.to(IAM) if m.message["Subject"].startswith("Expiring")]
    text = " ".join(everything_in(digest).split())
    for reason in report.values():
        assert f"Why orphaned: {wording.ORPHAN_REASONS[reason]}" in text


def test_rotation_links_follow_each_tenants_cloud() -> None:
    def principal(kind: str, **raw: Any) -> Principal:
        return Principal(
            tenant_id=1,
            external_id="0oa1/x",
            kind=kind,
            display_name="x",
            status="active",
            app_id="5f1c",
            first_seen_at=T0,
            last_seen_at=T0,
            raw=raw,
        )

    okta = OktaSettings(name="o", org_url="https://acme.okta.com", api_token="t")
    assert notices.rotation_url(okta, principal("oauth_app", name="oidc_client")) == (
        "https://acme-admin.okta.com/admin/app/oidc_client/instance/0oa1%2Fx/#tab-general"
    )
    assert notices.rotation_url(okta, principal("api_token")) == (
        "https://acme-admin.okta.com/admin/access/api/tokens"
    )
    custom = OktaSettings(name="o", org_url="https://login.acme.com", api_token="t")
    assert notices.rotation_url(custom, principal("oauth_app")) is None
    gov = EntraSettings(
        name="e",
        tenant_id="t",
        client_id="c",
        client_secret="s",
        graph_url="https://graph.microsoft.us",
        authority="https://login.microsoftonline.us",
    )
    assert notices.rotation_url(gov, principal("oauth_app")) == (
        "https://portal.azure.us/#view/Microsoft_AAD_RegisteredApps/ApplicationMenuBlade"
        "/~/Credentials/appId/5f1c"
    )
    proxied = gov.model_copy(update={"graph_url": "https://graph.proxy.acme.test"})
    china = gov.model_copy(
        update={
            "graph_url": "https://microsoftgraph.chinacloudapi.cn",
            "authority": "https://login.chinacloudapi.cn",
        }
    )
    assert str(notices.rotation_url(china, principal("service_principal"))).startswith(
        "https://portal.azure.cn/#view/Microsoft_AAD_IAM/ManagedAppMenuBlade/~/SignOn/objectId/"
    )
    assert str(notices.rotation_url(proxied, principal("oauth_app"))).startswith(
        "https://portal.azure.us/"
    )
    google = GoogleSettings(name="g", credentials="{}", admin_subject="a@acme.test")
    assert notices.rotation_url(google, principal("service_account", projectId="p 1")) == (
        "https://console.cloud.google.com/iam-admin/serviceaccounts/details/0oa1%2Fx/keys"
        "?project=p%201"
    )


def test_thresholds_are_positive_distinct_days(tmp_path: Path) -> None:
    path = tmp_path / "recert.toml"
    for days, problem in (([30, 0], "1 or more"), ([7, 7], "repeat"), (["7"], "integer")):
        path.write_text(tomli_w.dumps({"notices": {"credential_expiry_days": days}}))
        with pytest.raises(ConfigError, match=f"notices.credential_expiry_days.*{problem}"):
            load_settings(path, {})
    path.write_text(tomli_w.dumps({"notices": {"credential_expiry_days": [7, 90, 30]}}))
    assert load_settings(path, {}).notices.credential_expiry_days == (90, 30, 7)
    assert Settings(path=path).notices.credential_expiry_days == (60, 30, 7)


def test_stages_by_calendar_day_and_okta_token_windows() -> None:
    now, days = at(0), (60, 30, 7)
    assert notices.stage(at(61), now, days) is None
    assert notices.stage(at(60), now, days) == 60
    assert notices.stage(at(6.9), now, days) == 7
    assert notices.stage(at(0.1), now, days) == 7
    assert notices.stage(now, now, days) == notices.EXPIRED
    assert notices._duration("P90D") == timedelta(days=90)
    assert notices._duration("PT12H") == timedelta(hours=12)
    assert notices._duration("soon") is None
    assert notices.digest_key(now, "ann@acme.test") == "credential_expiry:2027-03-01:ann@acme.test"


def test_the_daily_beat_sends_the_digests(tmp_path: Path) -> None:
    from jobs import tasks

    entry = beat_schedule(Settings(path=tmp_path / "recert.toml"))["credential-expiry"]
    assert entry["task"] == tasks.credential_expiry_notices.name
    assert entry["schedule"].hour == {7}, "after the nightly discovery, before the day starts"
