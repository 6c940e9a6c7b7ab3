"""Owner resolution, risk and the IAM reports over a loaded inventory (both databases)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from connectors import base
from recert import reports
from recert.analysis import analyze
from recert.catalog import load_catalog
from recert.clock import FixedClock
from recert.config import OwnerRule, Settings, Tenant
from recert.inventory import inventory
from recert.models import AuditEvent, Ownership
from tests.test_discovery import TENANT, ScriptedConnector

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
CLOCK = FixedClock(NOW)
K = base.PrincipalKind
S = base.OwnerSource


def app(
    external_id: str, name: str | None = None, kind: K = K.OAUTH_APP, **kw: Any
) -> base.Principal:
    return base.Principal(
        external_id, kind, name or external_id, app_id=f"client-{external_id}", **kw
    )


def hint(principal: str, source: S = S.IDP_OWNER, **kw: Any) -> base.OwnerHint:
    return base.OwnerHint(principal, source, evidence=f"{source.value} of {principal}", **kw)


PEOPLE = [
    base.Person("u-ann", "Ann Active", "ann@acme.test", active=True, manager_id="u-bo"),
    base.Person("u-bo", "Bo Boss", "bo@acme.test", active=True),
    base.Person("u-dee", "Dee Departed", "dee@acme.test", active=False, manager_id="u-bo"),
    base.Person("u-eve", "Eve Ex", "eve@acme.test", active=False, manager_id="u-fay"),
    base.Person("u-fay", "Fay Formerboss", "fay@acme.test", active=False),
    base.Person("u-cat", "Cat Catalog", "cat@acme.test", active=True),
]

PAGE = base.Page(
    principals=[
        app("idp-owned"),
        app("token", kind=K.API_TOKEN),
        app("created"),
        app("by-rule", "app-payroll-sync-prod"),
        app("departed-with-manager"),
        app("departed-no-manager"),
        app("unresolvable"),
        app("nobody"),
        app("child"),
        app("loop-a"),
        app("loop-b"),
        app("catalogued"),
        app("ms-graph", platform_owned=True),
        app("mi", kind=K.MANAGED_IDENTITY),
        app("consented", "<script>alert('x')</script>", kind=K.THIRD_PARTY_APP),
    ],
    people=PEOPLE,
    owner_hints=[
        hint("idp-owned", person_id="u-ann"),
        hint("idp-owned", S.AUDIT_CREATOR, person_id="u-bo"),
        hint("token", S.TOKEN_CREATOR, person_id="u-ann"),
        hint("created", S.AUDIT_CREATOR, email="ANN@acme.test"),
        hint("departed-with-manager", person_id="u-dee"),
        hint("departed-no-manager", person_id="u-eve"),
        hint("unresolvable", person_id="u-ghost"),
        hint("child", owner_principal_id="idp-owned"),
        hint("loop-a", owner_principal_id="loop-b"),
        hint("loop-b", owner_principal_id="loop-a"),
        hint("catalogued", person_id="u-ann"),
    ],
    grants=[
        base.Grant(
            "consented", "u-ann:c", "https://mail.google.com/", "Gmail", base.Consent.USER, "u-ann"
        ),
        base.Grant(
            "idp-owned", "g1", "Mail.ReadWrite", "Microsoft Graph", base.Consent.APPLICATION
        ),
        base.Grant("created", "g2", "User.Read", "Microsoft Graph", base.Consent.ADMIN),
    ],
    credentials=[
        base.Credential("token", "t", "api_token", expires_at=None),
        base.Credential(
            "created",
            "s",
            "secret",
            created_at=NOW - timedelta(days=10),
            expires_at=NOW + timedelta(days=700),
        ),
    ],
    activity=[
        base.Activity(
            "nobody", window_start=NOW - timedelta(days=180), last_used_at=NOW - timedelta(days=120)
        ),
        base.Activity("created", window_start=NOW - timedelta(days=180)),
        base.Activity("by-rule", window_start=NOW - timedelta(days=30)),
    ],
    checkpoint=base.Checkpoint(full=True),
)


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / "catalogued.yaml").write_text(
        "app_id: client-catalogued\nowner: cat@acme.test\npurpose: Payroll exports\n"
        "data_domains: [hr]\nrisk_tier: high\nenvironment: prod\nexpires: 2027-06-30\n"
        "approvers: [bo@acme.test]\n"
    )
    return folder


@pytest.fixture
def settings(tmp_path: Path, catalog_dir: Path) -> Settings:
    return Settings(
        path=tmp_path / "recert.toml",
        tenants=(TENANT,),
        catalog_dir=catalog_dir,
        iam_email="iam@acme.test",
        owner_rules=(
            OwnerRule(pattern="app-{team}-{name}-{env}", owner="{team}-owners@acme.test"),
        ),
    )


def load(engine: Engine, settings: Settings, tenant: Tenant = TENANT) -> list[dict[str, Any]]:
    from recert.discovery import discover_tenant

    summary = discover_tenant(engine, tenant, CLOCK, connector=ScriptedConnector([PAGE]))
    assert summary.status == "complete"
    return analyze(engine, settings, CLOCK)


def by_id(engine: Engine) -> dict[str, dict[str, Any]]:
    with Session(engine) as session:
        return {e["external_id"]: e for e in inventory(session)}


def owners_of(entry: dict[str, Any]) -> list[tuple[str, str]]:
    return [(o["email"], o["source"]) for o in entry["owners"]]


def test_each_owner_source(engine: Engine, settings: Settings) -> None:
    load(engine, settings)
    inv = by_id(engine)
    assert owners_of(inv["idp-owned"]) == [
        ("ann@acme.test", "idp_owner"),
        ("bo@acme.test", "audit_creator"),
    ]
    assert owners_of(inv["token"]) == [("ann@acme.test", "token_creator")]
    assert owners_of(inv["created"]) == [("ann@acme.test", "audit_creator")]
    assert owners_of(inv["by-rule"]) == [("payroll-owners@acme.test", "rule")]
    assert inv["idp-owned"]["owners"][0]["confidence"] > inv["created"]["owners"][0]["confidence"]


def test_the_catalog_overrides_the_idp_owner(engine: Engine, settings: Settings) -> None:
    load(engine, settings)
    entry = by_id(engine)["catalogued"]
    assert owners_of(entry)[0] == ("cat@acme.test", "catalog")
    assert entry["owners"][0]["confidence"] == 1.0
    with Session(engine) as session:
        evidence = session.exec(
            select(Ownership.evidence).where(Ownership.source == "catalog")
        ).one()
    assert "catalogued.yaml" in evidence


def test_a_departed_owner_falls_back_to_their_manager(engine: Engine, settings: Settings) -> None:
    load(engine, settings)
    entry = by_id(engine)["departed-with-manager"]
    assert owners_of(entry) == [("bo@acme.test", "manager")]
    with Session(engine) as session:
        evidence = session.exec(
            select(Ownership.evidence).where(Ownership.source == "manager")
        ).one()
    assert evidence.endswith("Dee Departed left, so their manager Bo Boss is accountable for it")


@pytest.mark.parametrize(
    ("external_id", "reason"),
    [
        ("nobody", "no_owner"),
        ("departed-no-manager", "owner_departed"),
        ("unresolvable", "owner_unresolvable"),
        ("loop-a", "owner_is_app"),
        ("loop-b", "owner_is_app"),
    ],
)
def test_each_orphan_reason(
    engine: Engine, settings: Settings, external_id: str, reason: str
) -> None:
    load(engine, settings)
    entry = by_id(engine)[external_id]
    assert entry["owners"] == []
    assert entry["orphan_reason"] == reason


def test_an_app_owned_by_an_app_inherits_that_apps_owner(
    engine: Engine, settings: Settings
) -> None:
    load(engine, settings)
    assert owners_of(by_id(engine)["child"]) == [
        ("ann@acme.test", "idp_owner"),
        ("bo@acme.test", "idp_owner"),
    ]


def test_user_consented_apps_go_to_the_iam_team_not_a_consenting_user(
    engine: Engine, settings: Settings
) -> None:
    load(engine, settings)
    assert owners_of(by_id(engine)["consented"]) == [("iam@acme.test", "iam_team")]


def test_platform_owned_and_managed_identities_get_no_owner_and_are_never_orphans(
    engine: Engine, settings: Settings
) -> None:
    load(engine, settings)
    inv = by_id(engine)
    for external_id in ("ms-graph", "mi"):
        assert inv[external_id]["owners"] == []
        assert inv[external_id]["orphan_reason"] is None
    with Session(engine) as session:
        orphaned = {r["external_id"]: r["reason"] for r in reports.orphans(session, settings, NOW)}
    assert set(orphaned) == {
        "nobody",
        "departed-no-manager",
        "unresolvable",
        "loop-a",
        "loop-b",
        "consented",  # only the IAM team reviews it: an orphan, with its reason
    }
    assert orphaned["consented"] == "user_consented"


def test_rerunning_with_nothing_changed_changes_nothing(engine: Engine, settings: Settings) -> None:
    first = load(engine, settings)
    assert first[0]["changed"] > 0

    def counts() -> tuple[int, int]:
        with Session(engine) as session:
            rows = session.exec(select(func.count()).select_from(Ownership)).one()
            events = session.exec(select(func.count()).select_from(AuditEvent)).one()
        return int(rows), int(events)

    before = counts()
    again = analyze(engine, settings, CLOCK)
    assert again[0]["changed"] == 0
    assert again[0]["risk_changed"] == 0
    assert counts() == before


def test_risk_levels_and_reasons(engine: Engine, settings: Settings) -> None:
    load(engine, settings)
    inv = by_id(engine)
    assert inv["idp-owned"]["risk"] == "high"
    assert "holds Mail.ReadWrite (application permission)" in inv["idp-owned"]["risk_reasons"]
    created = inv["created"]
    assert created["risk"] == "medium"
    assert "tenant-wide admin consent" in created["risk_reasons"]
    assert "a client secret valid for more than 365 days" in created["risk_reasons"]
    assert "no use in 90 days" in created["risk_reasons"], "a window with no use is unused"
    assert "an API token that never expires" in inv["token"]["risk_reasons"]
    assert inv["by-rule"]["risk"] == "low", "30 days of data cannot prove 90 days unused"
    assert inv["ms-graph"]["risk"] == "low"
    assert inv["consented"]["risk"] == "high", "full Gmail is high whoever consented"
    assert inv["consented"]["risk_reasons"] == ["holds https://mail.google.com/ (user consent)"]


def test_a_high_risk_scope_is_high_however_many_users_consented() -> None:
    from recert.config import RiskSettings
    from recert.models import Grant, Principal
    from recert.risk import assess

    gmail = [
        Grant(
            principal_id=1,
            grant_id=f"u{n}",
            permission="https://mail.google.com/",
            resource="Gmail",
            consent="user",
            consenting_user=f"u{n}",
        )
        for n in range(34)
    ]
    principal = Principal(
        tenant_id=1,
        external_id="bot",
        kind="third_party_app",
        display_name="Bot",
        status="active",
        first_seen_at=NOW,
        last_seen_at=NOW,
    )
    assessed = assess(principal, gmail, [], RiskSettings(), NOW)
    assert assessed.level == "high"
    assert assessed.reasons == ("holds https://mail.google.com/ (user consent)",)


def test_stale_report_tells_unused_from_unknown(engine: Engine, settings: Settings) -> None:
    load(engine, settings)
    with Session(engine) as session:
        stale = {r["external_id"]: r for r in reports.stale(session, settings, NOW)}
    assert set(stale) == {"nobody", "created"}
    assert stale["nobody"]["days_unused"] == 120
    assert stale["created"]["last_used_at"] is None


def test_orphan_report_json_matches_the_design_shape(engine: Engine, settings: Settings) -> None:
    load(engine, settings)
    with Session(engine) as session:
        rows = reports.orphans(session, settings, NOW)
    parsed = json.loads(reports.render("orphans", rows, "json", NOW))
    assert parsed
    for row in parsed:
        assert {"tenant", "kind", "external_id", "display_name", "reason"} <= set(row)
        assert row["tenant"] == "okta-test"


def test_reports_escape_hostile_names(engine: Engine, settings: Settings) -> None:
    load(engine, settings)
    with Session(engine) as session:
        rows = reports.uncataloged(
            session, settings, NOW, catalog=load_catalog(settings.catalog_dir)
        )
    names = {r["display_name"] for r in rows}
    assert "<script>alert('x')</script>" in names
    assert "app-payroll-sync-prod" in names
    assert "catalogued" not in {r["external_id"] for r in rows}
    html = reports.render("uncataloged", rows, "html", NOW)
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html


def test_csv_defuses_spreadsheet_formulas() -> None:
    rows = [{"display_name": '=HYPERLINK("http://evil")', "reasons": ["a", "b"], "x": None}]
    text = reports.to_csv(rows)
    assert "'=HYPERLINK" in text
    assert "a; b" in text


def test_a_rejected_manifest_keeps_the_previous_owner_and_owners_exits_1(
    engine: Engine, settings: Settings, catalog_dir: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from recert.cli import app as cli

    load(engine, settings)
    before = owners_of(by_id(engine)["catalogued"])
    assert before[0] == ("cat@acme.test", "catalog")
    manifest = catalog_dir / "catalogued.yaml"
    manifest.write_text(manifest.read_text().replace("risk_tier: high", "risk_tier: extreme"))
    config = tmp_path / "recert.toml"
    config.write_text(
        f'catalog_dir = "{catalog_dir}"\niam_email = "iam@acme.test"\n'
        f'[database]\nurl = "{engine.url.render_as_string(hide_password=False)}"\n'
    )
    result = CliRunner().invoke(cli, ["owners"], env={"RECERT_CONFIG": str(config)})
    assert result.exit_code == 1
    assert f"{manifest}: risk_tier:" in result.stderr
    assert "1 kept their previous owner (catalog problem)" in result.stdout
    assert owners_of(by_id(engine)["catalogued"]) == before
    manifest.write_text("{broken")  # unparseable: its app is unknown, its catalog owner stays
    assert analyze(engine, settings, CLOCK)[0]["held"] == 1
    assert owners_of(by_id(engine)["catalogued"]) == before
    manifest.unlink()
    analyze(engine, settings, CLOCK)
    assert owners_of(by_id(engine)["catalogued"]) == before[1:], "fixed: resolved afresh"
