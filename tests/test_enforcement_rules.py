"""The safety rules of the enforcement plan, one test each: every test fails if its rule
is removed, because the app it guards would then be among the plan's actions.

One inventory per database (SQLite and PostgreSQL) holds every case; each test plans it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from recert import db
from recert.config import Settings
from recert.db import session_scope
from recert.models import OutboxEmail
from tests.conftest import reset_database
from tests.enforcement_world import (
    IAM,
    NOW,
    OKTA_CLIENT,
    OKTA_WRITE_CLIENT,
    World,
    disabled_of,
    google_key,
    rules_of,
    write_config,
)

OPEN_CAPS = {"max_disable_per_run": 100, "max_disable_fraction": 1.0}


@dataclass
class Worlds:
    okta: World
    capped: World
    entra: World
    google: World
    folder: Path


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def worlds(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worlds]:
    folder = tmp_path_factory.mktemp("rules")
    if request.param == "sqlite":
        engine = db.make_engine(f"sqlite:///{folder / 'recert.db'}")
        db.upgrade(engine)
    else:
        engine = request.getfixturevalue("postgres_engine")
        reset_database(engine)
    yield Worlds(
        okta=_okta(engine, folder / "okta"),
        capped=_capped(engine, folder / "capped"),
        entra=_entra(engine, folder / "entra"),
        google=_google(engine, folder / "google"),
        folder=folder,
    )
    if request.param == "sqlite":
        engine.dispose()


def _settings(folder: Path, tenant: dict[str, object] | None = None, **top: object) -> Settings:
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(folder, tenant, **top)


def _okta(engine: Engine, folder: Path) -> World:
    protected = {"protected": ["0oaBreakGlass", "Payroll export"]}
    world = World(engine, _settings(folder, protected, enforcement=OPEN_CAPS))
    world.item(world.app("0oaOverdue", last_used_days=3))
    world.decide(world.item(world.app("0oaKept")), "keep")
    world.decide(world.item(world.app("0oaRevoked")), "revoke")
    reduced = world.item(world.app("0oaReduced", grants=("okta.users.read", "okta.apps.manage")))
    world.decide(reduced, "reduce", dropped=("okta.apps.manage",))
    world.item(world.app("0oaOktaDashboard", platform_owned=True))
    world.item(world.app("mi-1", kind="managed_identity"))
    world.decide(world.item(world.app("0oaBreakGlass")), "revoke")  # listed after opening
    world.decide(world.item(world.app("0oaPayroll", display_name="Payroll export")), "revoke")
    world.decide(world.item(world.app("0oaFlagged", protected=True)), "revoke")
    world.item(world.app(OKTA_CLIENT, app_id=OKTA_CLIENT))
    world.item(world.app(OKTA_WRITE_CLIENT, app_id=OKTA_WRITE_CLIENT))
    world.item(world.app("0oaBounced"), reviewer=IAM, owner_source="bounced")
    world.item(world.app("0oaBouncedMail"), reviewer="gone@acme.test")
    with session_scope(engine) as session:
        session.add(
            OutboxEmail(
                idempotency_key="bounced-request",
                kind="request",
                recipient="gone@acme.test",
                subject="s",
                body_text="t",
                body_html="h",
                status="bounced",
                created_at=NOW,
                campaign_id=world.campaign_id,
            )
        )
    world.item(world.app("0oaHanded"), reviewer="bo@acme.test", owner_source="reassigned")
    world.item(world.app("0oaNotMine", last_used_days=400), reviewer=IAM, owner_source="not_mine")
    world.item(world.app("0oaOrphanUnknown"), reviewer=IAM, owner_source="orphan")
    world.item(world.app("0oaOrphanInUse", last_used_days=5), reviewer=IAM, owner_source="orphan")
    world.item(world.app("0oaOrphanStale", last_used_days=120), reviewer=IAM, owner_source="orphan")
    world.item(world.app("0oaOwnedUnknown"))
    world.item(world.app("00tToken", kind="api_token"))
    return world


def _capped(engine: Engine, folder: Path) -> World:
    """30 apps; the first `n` of them overdue, depending on what the test plans."""
    table = {"name": "okta-capped", "kind": "okta", "org_url": "https://acme.okta.test"}
    (folder).mkdir(parents=True, exist_ok=True)
    (folder / "token").write_text("00token")
    world = World(engine, _settings(folder, {**table, "api_token_file": "token"}), "okta-capped")
    for index in range(30):
        world.item(world.app(f"0oa{index:03d}"))
    return world


def _entra(engine: Engine, folder: Path) -> World:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "secret").write_text("s")
    table = {
        "name": "entra-test",
        "kind": "entra",
        "tenant_id": "t1",
        "client_id": "11111111-aaaa",
        "client_secret_file": "secret",
        "enforce": {"client_id": "22222222-bbbb", "client_secret_file": "secret"},
    }
    world = World(engine, _settings(folder, table, enforcement=OPEN_CAPS), "entra-test")
    world.item(world.app("sp-read", kind="service_principal", app_id="11111111-AAAA"))
    world.item(world.app("sp-write", kind="service_principal", app_id="22222222-bbbb"))
    world.item(world.app("sp-other", kind="service_principal", app_id="33333333-cccc"))
    return world


def _google(engine: Engine, folder: Path) -> World:
    folder.mkdir(parents=True, exist_ok=True)
    key = google_key(folder, "1042", "recert@ops.iam.gserviceaccount.com")
    table = {
        "name": "google-test",
        "kind": "google",
        "credentials_file": str(key),
        "admin_subject": "admin@acme.test",
    }
    world = World(engine, _settings(folder, table, enforcement=OPEN_CAPS), "google-test")
    world.item(world.app("1042", kind="service_account", app_id="x@ops.iam.gserviceaccount.com"))
    world.item(
        world.app("777", kind="service_account", app_id="recert@ops.iam.gserviceaccount.com")
    )
    app = world.app("calendly", kind="third_party_app")
    world.item(app, reviewer="cy@acme.test", owner_source="consented", consenting_user="u-cy")
    chose = world.item(
        app, reviewer="di@acme.test", owner_source="consented", consenting_user="u-di"
    )
    world.decide(chose, "revoke")
    world.decide(world.item(world.app("dwd-client", kind="oauth_app")), "revoke")
    return world


def test_overdue_revoked_and_reduced_apps_are_planned(worlds: Worlds) -> None:
    plan = worlds.okta.plan()
    by_app = {(a.external_id, a.action): a for a in plan.actions}
    assert set(by_app) == {
        ("0oaOverdue", "disable"),
        ("0oaRevoked", "disable"),
        ("0oaReduced", "remove_grant"),
        ("0oaOrphanStale", "disable"),
        ("0oaOwnedUnknown", "disable"),
    }
    assert by_app[("0oaOverdue", "disable")].reason.startswith("not reviewed by 2026-12-15")
    assert by_app[("0oaRevoked", "disable")].reason.startswith("ann@acme.test chose to revoke")
    assert by_app[("0oaReduced", "remove_grant")].permission == "okta.apps.manage"
    assert plan.blocked is None
    shape = plan.as_dict()
    assert {"tenant", "mode", "actions", "refused", "blocked"} <= set(shape)
    action_keys = {"action", "kind", "external_id", "display_name", "reason", "campaign_id"}
    assert action_keys | {"item_id"} <= set(shape["actions"][0])
    assert {"external_id", "display_name", "rule"} <= set(shape["refused"][0])


def test_nothing_is_planned_before_the_due_date(worlds: Worlds) -> None:
    plan = worlds.okta.plan(at=NOW - timedelta(days=2))
    assert disabled_of(plan) == {"0oaRevoked"}  # decisions act at once, silence only when due


def test_platform_owned_apps_are_never_touched(worlds: Worlds) -> None:
    assert rules_of(worlds.okta.plan())["0oaOktaDashboard"] == "platform_owned"


def test_managed_identities_are_never_touched(worlds: Worlds) -> None:
    assert rules_of(worlds.okta.plan())["mi-1"] == "managed_identity"


@pytest.mark.parametrize("external_id", ["0oaBreakGlass", "0oaPayroll", "0oaFlagged"])
def test_the_protected_list_is_never_touched(worlds: Worlds, external_id: str) -> None:
    """By id and by name from the config (listed after the campaign opened), or marked
    protected at discovery: even an owner's revoke does not go through."""
    assert rules_of(worlds.okta.plan())[external_id] == "protected"


@pytest.mark.parametrize("client_id", [OKTA_CLIENT, OKTA_WRITE_CLIENT])
def test_the_okta_app_recert_signs_in_as_is_never_touched(worlds: Worlds, client_id: str) -> None:
    assert rules_of(worlds.okta.plan())[client_id] == "self"


def test_the_entra_apps_recert_signs_in_as_are_never_touched(worlds: Worlds) -> None:
    plan = worlds.entra.plan()
    assert rules_of(plan) == {"sp-read": "self", "sp-write": "self"}
    assert disabled_of(plan) == {"sp-other"}


def test_the_google_service_account_recert_signs_in_as_is_never_touched(worlds: Worlds) -> None:
    rules = rules_of(worlds.google.plan())
    assert (rules["1042"], rules["777"]) == ("self", "self")  # by client id, by email


def test_a_stale_discovery_blocks_the_whole_tenant(worlds: Worlds) -> None:
    fresh = worlds.okta.plan()
    stale = worlds.okta.plan(at=NOW + timedelta(hours=35))  # discovered 37 h before
    assert fresh.blocked is None
    assert stale.blocked_by == "stale_discovery"
    assert str(stale.blocked).startswith("stale discovery")


def test_a_bounced_owner_is_escalated_not_disabled(worlds: Worlds) -> None:
    rules = rules_of(worlds.okta.plan())
    assert (rules["0oaBounced"], rules["0oaBouncedMail"]) == ("owner_bounced", "owner_bounced")


def test_nothing_is_disabled_while_a_handover_is_pending(worlds: Worlds) -> None:
    assert rules_of(worlds.okta.plan())["0oaHanded"] == "handover_pending"


def test_not_mine_goes_to_the_iam_queue_and_is_never_disabled(worlds: Worlds) -> None:
    assert rules_of(worlds.okta.plan())["0oaNotMine"] == "not_mine"


def test_unknown_last_use_never_counts_as_unused(worlds: Worlds) -> None:
    """An orphan nobody decided on is disabled only when it is known to be unused."""
    plan = worlds.okta.plan()
    rules = rules_of(plan)
    assert rules["0oaOrphanUnknown"] == "use_unknown"
    assert rules["0oaOrphanInUse"] == "orphan_in_use"
    [stale] = [a for a in plan.actions if a.external_id == "0oaOrphanStale"]
    assert stale.unused_days == 120
    assert "last used 2026-08-18 (120 days ago)" in stale.reason
    [owned] = [a for a in plan.actions if a.external_id == "0oaOwnedUnknown"]
    assert owned.unused_days is None
    assert owned.reason.endswith("last use unknown")


def test_what_a_provider_cannot_do_is_refused_with_the_reason(worlds: Worlds) -> None:
    assert rules_of(worlds.okta.plan())["00tToken"] == "not_supported"
    assert rules_of(worlds.google.plan())["dwd-client"] == "not_supported"


def test_a_users_own_consent_is_revoked_only_when_they_choose_it(worlds: Worlds) -> None:
    [action] = [a for a in worlds.google.plan().actions if a.external_id == "calendly"]
    assert (action.action, action.consenting_user, action.reversible) == (
        "revoke_consent",
        "u-di",
        False,
    )


@pytest.mark.parametrize(
    ("overdue", "limits", "blocked"),
    [
        (30, {"max_disable_per_run": 25, "max_disable_fraction": 1.0}, True),
        (25, {"max_disable_per_run": 25, "max_disable_fraction": 1.0}, False),
        (4, {"max_disable_per_run": 25, "max_disable_fraction": 0.1}, True),  # 4 of 30
        (3, {"max_disable_per_run": 25, "max_disable_fraction": 0.1}, False),
    ],
)
def test_the_blast_radius_cap_blocks_the_whole_tenant(
    worlds: Worlds, overdue: int, limits: dict[str, float], blocked: bool
) -> None:
    world = worlds.capped
    folder = worlds.folder / f"cap-{overdue}"
    folder.mkdir()
    (folder / "token").write_text("00token")
    table = {
        "name": "okta-capped",
        "kind": "okta",
        "org_url": "https://acme.okta.test",
        "api_token_file": "token",
        "protected": [f"0oa{i:03d}" for i in range(overdue, 30)],
    }
    world.settings = write_config(folder, table, enforcement=limits)
    plan = world.plan()
    assert plan.disables == overdue
    assert plan.in_scope == 30
    assert (plan.blocked_by == "blast_radius") is blocked
