from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from recert.catalog import load_catalog
from recert.cli import app

GOOD = """app_id: 0oa1payroll
owner: ann@acme.test
purpose: Nightly payroll export
data_domains: [hr, payroll]
requested_scopes: [okta.users.read]
risk_tier: high
environment: prod
expires: 2027-06-30
approvers: [bo@acme.test]
"""


def write_catalog(folder: Path) -> Path:
    folder.mkdir()
    (folder / "payroll.yaml").write_text(GOOD)
    (folder / "crm.json").write_text(
        json.dumps(
            {
                "app_id": "crm-client",
                "owner": "cy@acme.test",
                "purpose": "CRM sync",
                "tenant": "entra-prod",
            }
        )
    )
    (folder / "typo.yaml").write_text(
        GOOD.replace("app_id: 0oa1payroll", "app_id: x").replace("owner:", "ownr:")
    )
    (folder / "bad-tier.yml").write_text(
        GOOD.replace("0oa1payroll", "y").replace("risk_tier: high", "risk_tier: extreme")
    )
    (folder / "no-owner.yaml").write_text("app_id: z\npurpose: p\n")
    (folder / "list.yaml").write_text("- app_id: a\n- app_id: b\n")
    (folder / "broken.json").write_text("{not json")
    (folder / "dupe.yaml").write_text(GOOD)
    (folder / "README.md").write_text("not a manifest")
    return folder


def test_each_bad_file_is_named_with_its_field_and_none_of_it_is_loaded(tmp_path: Path) -> None:
    catalog = load_catalog(write_catalog(tmp_path / "catalog"))
    problems = {p.path.name: (p.field, p.problem) for p in catalog.problems}
    typo = {(p.field, p.problem) for p in catalog.problems if p.path.name == "typo.yaml"}
    assert typo == {("ownr", "unknown key"), ("owner", "missing")}
    assert problems["bad-tier.yml"][0] == "risk_tier"
    assert problems["no-owner.yaml"] == ("owner", "missing")
    assert "one mapping" in problems["list.yaml"][1]
    assert "cannot parse" in problems["broken.json"][1]
    assert problems["dupe.yaml"][0] == "app_id"
    assert "payroll.yaml" in problems["dupe.yaml"][1]
    assert "dupe.yaml" in problems["payroll.yaml"][1], "an ambiguous owner rejects both"
    assert [e.path.name for e in catalog.entries] == ["crm.json"]
    assert catalog.match("okta-prod", ("crm-client",)) is None, "scoped to another tenant"
    assert catalog.match("entra-prod", ("sp-id", "crm-client")) is not None


def test_validate_command_reports_and_exits_1(tmp_path: Path) -> None:
    folder = write_catalog(tmp_path / "catalog")
    result = CliRunner().invoke(app, ["catalog", "validate", str(folder), "--format", "json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert len(report["valid"]) == 1
    assert {Path(p["path"]).name for p in report["problems"]} == {
        "payroll.yaml",
        "typo.yaml",
        "bad-tier.yml",
        "no-owner.yaml",
        "list.yaml",
        "broken.json",
        "dupe.yaml",
    }


def test_a_clean_catalog_validates(tmp_path: Path) -> None:
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / "payroll.yaml").write_text(GOOD)
    result = CliRunner().invoke(app, ["catalog", "validate", str(folder)])
    loaded = load_catalog(folder).match("okta-prod", ("0oa1payroll", None))
    assert loaded is not None
    assert loaded.manifest.requested_scopes == ("okta.users.read",)
    assert result.exit_code == 0
    assert "1 manifests valid, 0 rejected" in result.stdout


def test_a_scoped_and_an_unscoped_manifest_for_one_app_are_duplicates(tmp_path: Path) -> None:
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / "anywhere.yaml").write_text(GOOD)
    (folder / "okta.yaml").write_text(GOOD + "tenant: okta-prod\n")
    (folder / "entra.yaml").write_text(GOOD.replace("0oa1payroll", "crm") + "tenant: entra\n")
    (folder / "okta-crm.yaml").write_text(GOOD.replace("0oa1payroll", "crm") + "tenant: okta\n")
    catalog = load_catalog(folder)
    assert {p.path.name for p in catalog.problems} == {"anywhere.yaml", "okta.yaml"}
    assert {e.path.name for e in catalog.entries} == {"entra.yaml", "okta-crm.yaml"}


def test_repeated_keys_and_oversized_manifests_are_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / "twice.json").write_text(
        '{"app_id": "a", "owner": "ann@acme.test", "owner": "eve@evil.test", "purpose": "p"}'
    )
    (folder / "twice.yaml").write_text(GOOD.replace("0oa1payroll", "b") + "owner: eve@evil.test\n")
    (folder / "huge.yaml").write_text(
        GOOD.replace("0oa1payroll", "c") + "data_domains: [" + "x, " * 40_000 + "x]\n"
    )
    problems = {p.path.name: p.problem for p in load_catalog(folder).problems}
    assert "'owner' appears more than once" in problems["twice.json"]
    assert "'owner' appears more than once" in problems["twice.yaml"]
    assert "more than the 65536 a manifest may hold" in problems["huge.yaml"]
