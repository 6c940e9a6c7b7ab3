"""Day 0 to day 16 on the three emulated tenants, with RECERT_NOW moving through time.

Day 0: discovery, a campaign, the request emails (one owner's mailbox bounces). Owners
keep, revoke, reduce, hand over, revoke their own consent, or say nothing. Day 15:
`recert enforce --plan` lists exactly the overdue, revoked and reduced items and none of
the protected, platform-owned, managed-identity, self, bounced or handed-over ones;
`recert enforce` in enforce mode carries the plan out in the emulators, and again changes
nothing. Day 16: `recert reenable` returns each object to its exact pre-disable JSON.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from recert import db, runs
from recert.campaigns import open_campaign
from recert.cli import app
from recert.clock import FixedClock
from recert.config import Settings, load_settings
from recert.decisions import DecisionRequest, decide, latest_decisions
from recert.links import ReviewLink
from recert.models import (
    AuditEvent,
    EnforcementAction,
    Grant,
    OutboxEmail,
    Person,
    Principal,
    ReviewItem,
    Tenant,
)
from recert.notify import notify
from recert.risk import is_stale
from sandbox.entra.app import Client
from sandbox.tenants import SandboxTenants, Sizes, running_tenants
from tests.conftest import SmtpCapture, capturing_smtp

DAY0 = datetime.now(UTC).replace(microsecond=0)
DAY15 = DAY0 + timedelta(days=15)
DAY16 = DAY0 + timedelta(days=16)
IAM = "iam@example.com"
SIZES = Sizes(okta_apps=60, entra_principals=30, google_principals=10, google_users=16)
OWNER_SOURCES = {"catalog", "idp_owner", "audit_creator", "token_creator", "rule", "manager"}


@dataclass
class Timeline:
    tenants: SandboxTenants
    config: Path
    engine: Engine
    smtp: SmtpCapture
    table: dict[str, Any] = field(default_factory=dict)  # top-level config tables
    chosen: dict[str, tuple[str, str]] = field(default_factory=dict)  # role -> (tenant, id)
    expected: set[tuple[str, str, str]] = field(default_factory=set)
    plan: list[dict[str, Any]] = field(default_factory=list)
    plan_text: str = ""
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    done: set[tuple[str, str, str]] = field(default_factory=set)
    enforced: Any = None
    rerun: dict[str, int] = field(default_factory=dict)
    reenabled: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> Settings:
        return load_settings(self.config, {})

    def write(self, mode: str, protected: list[str]) -> None:
        tables = []
        for table in self.tenants.tables:
            extra: dict[str, Any] = {"enforcement": mode}
            if table["kind"] == "okta":
                extra["protected"] = protected
            tables.append({**table, **extra})
        self.config.write_text(_toml({**self.table, "tenants": tables}))


def _toml(document: dict[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps(document)


def cli(timeline: Timeline, now: datetime, *args: str) -> Any:
    env = {"RECERT_CONFIG": str(timeline.config), "RECERT_NOW": now.isoformat()}
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def timeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Timeline]:
    folder = tmp_path_factory.mktemp("timeline")
    with running_tenants(folder, SIZES, now=DAY0) as tenants, capturing_smtp() as smtp:
        (folder / "web-key").write_text("k" * 32)
        self_app = _recert_signs_in_as_an_entra_app(tenants)
        timeline = Timeline(
            tenants, folder / "recert.toml", db.make_engine(f"sqlite:///{folder / 'r.db'}"), smtp
        )
        timeline.table = {
            "iam_email": IAM,
            "database": {"url": f"sqlite:///{folder / 'r.db'}"},
            "smtp": {"host": smtp.host, "port": smtp.port, "from_address": "recert@example.com"},
            "web": {"secret_key_file": "web-key"},
            "enforcement": {"max_disable_per_run": 200, "max_disable_fraction": 1.0},
        }
        timeline.chosen["self"] = ("entra-demo", self_app)
        timeline.write("dry-run", [])
        db.upgrade(timeline.engine)
        _day_zero(timeline)
        _owners_answer(timeline)
        _day_fifteen(timeline)
        yield timeline
        timeline.engine.dispose()


def _recert_signs_in_as_an_entra_app(tenants: SandboxTenants) -> str:
    """Recert's own write client is an enterprise app of the tenant, as in real life."""
    emulator = tenants.entra
    sp_id, sp = next(
        (i, sp)
        for i, sp in emulator.tenant.service_principals.items()
        if i in emulator.tenant.owners
        and sp.get("accountEnabled") is True
        and sp.get("appOwnerOrganizationId") == emulator.tenant.tenant_id
    )
    secret = emulator.secret_of(emulator.write_client_id)
    emulator.clients[sp["appId"]] = Client(secret=secret, certificate_pem=None, can_write=True)
    for table in tenants.tables:
        if table["kind"] == "entra":
            table["enforce"] = {**table["enforce"], "client_id": sp["appId"]}
    return sp_id


def _day_zero(timeline: Timeline) -> None:
    settings, clock = timeline.settings(), FixedClock(DAY0)
    for tenant in settings.tenants:
        assert runs.discover(timeline.engine, settings, tenant.name, clock).status == "complete"
    with db.session_scope(timeline.engine) as session:
        open_campaign(session, settings, clock, name="Q4 review")
    bounced_owner = _items(timeline, "okta-demo", OWNER_SOURCES, kind="oauth_app")[
        -1
    ].reviewer_email
    timeline.smtp.refuse.add(bounced_owner)
    notify(timeline.engine, settings, clock)


def _items(
    timeline: Timeline, tenant: str, sources: set[str], kind: str | None = None
) -> list[ReviewItem]:
    with Session(timeline.engine) as session:
        query = (
            select(ReviewItem)
            .join(Principal, col(Principal.id) == ReviewItem.principal_id)
            .join(Tenant, col(Tenant.id) == Principal.tenant_id)
            .where(Tenant.name == tenant, col(ReviewItem.owner_source).in_(sources))
            .order_by(col(ReviewItem.id))
        )
        if kind:
            query = query.where(Principal.kind == kind)
        return list(session.exec(query).all())


def _external_id(timeline: Timeline, item: ReviewItem) -> str:
    with Session(timeline.engine) as session:
        principal = session.get(Principal, item.principal_id)
        assert principal is not None
        return principal.external_id


def _answer(timeline: Timeline, item: ReviewItem, role: str, **request: Any) -> None:
    tenant = _tenant_of(timeline, item)
    clock = FixedClock(DAY0 + timedelta(days=3))
    link = ReviewLink(item.campaign_id, item.reviewer_email, DAY0 + timedelta(days=14))
    with db.session_scope(timeline.engine) as session:
        decide(session, timeline.settings(), clock, link, item.id or 0, DecisionRequest(**request))
    timeline.chosen[role] = (tenant, _external_id(timeline, item))


def _tenant_of(timeline: Timeline, item: ReviewItem) -> str:
    with Session(timeline.engine) as session:
        principal = session.get(Principal, item.principal_id)
        assert principal is not None
        tenant = session.get(Tenant, principal.tenant_id)
        assert tenant is not None
        return tenant.name


def _owners_answer(timeline: Timeline) -> None:
    owned = [
        i
        for i in _items(timeline, "okta-demo", OWNER_SOURCES, kind="oauth_app")
        if not _bounced(timeline, i)
    ]
    with Session(timeline.engine) as session:
        held = {
            i.id: session.exec(select(Grant).where(Grant.principal_id == i.principal_id)).all()
            for i in owned
        }
    reduce_item = next(i for i in owned if len(held[i.id]) >= 2)
    others = [i for i in owned if i is not reduce_item]
    _answer(timeline, others[0], "okta-kept", action="keep", justification="payroll")
    _answer(timeline, others[1], "okta-revoked", action="revoke")
    dropped = held[reduce_item.id][0]
    _answer(
        timeline,
        reduce_item,
        "okta-reduced",
        action="reduce",
        justification="less",
        dropped=(dropped.id or 0,),
    )
    timeline.chosen["okta-dropped"] = ("okta-demo", dropped.grant_id)
    handover_to = _another_active_person(timeline, "okta-demo", others[2].reviewer_email)
    _answer(timeline, others[2], "okta-handed-over", action="reassign", new_owner=handover_to)
    timeline.chosen["okta-protected"] = ("okta-demo", _external_id(timeline, others[3]))
    timeline.chosen["okta-overdue"] = ("okta-demo", _external_id(timeline, others[4]))

    self_id = timeline.chosen["self"][1]
    entra = [
        i
        for i in _items(timeline, "entra-demo", OWNER_SOURCES, kind="service_principal")
        if _external_id(timeline, i) != self_id
    ]
    _answer(timeline, entra[0], "entra-revoked", action="revoke")
    _answer(timeline, entra[1], "entra-kept", action="keep", justification="in use")
    timeline.chosen["entra-overdue"] = ("entra-demo", _external_id(timeline, entra[2]))
    [entra_consent, *_] = _items(timeline, "entra-demo", {"consented"})
    _answer(timeline, entra_consent, "entra-consent", action="revoke")
    [google_consent, *_] = _items(timeline, "google-demo", {"consented"})
    _answer(timeline, google_consent, "google-consent", action="revoke")


def _bounced(timeline: Timeline, item: ReviewItem) -> bool:
    return item.reviewer_email in timeline.smtp.refuse or item.owner_source == "bounced"


def _another_active_person(timeline: Timeline, tenant: str, not_this: str) -> str:
    with Session(timeline.engine) as session:
        people = session.exec(
            select(Person)
            .join(Tenant, col(Tenant.id) == Person.tenant_id)
            .where(Tenant.name == tenant, col(Person.active).is_(True))
            .order_by(Person.email)
        ).all()
    return next(p.email for p in people if p.email and p.email.lower() != not_this)


def _day_fifteen(timeline: Timeline) -> None:
    protected = [timeline.chosen["okta-protected"][1]]
    timeline.write("dry-run", protected)  # listed after the campaign opened
    settings = timeline.settings()
    for tenant in settings.tenants:  # a fresh discovery, as the nightly job would
        assert runs.discover(timeline.engine, settings, tenant.name, FixedClock(DAY15)).status == (
            "complete"
        )
    timeline.expected = _expected(timeline)
    result = cli(timeline, DAY15, "enforce", "--plan", "--format", "json")
    assert result.exit_code == 0, result.output
    timeline.plan = json.loads(result.stdout)
    timeline.plan_text = cli(timeline, DAY15, "enforce", "--plan").stdout
    timeline.before = _snapshot(timeline)
    timeline.write("enforce", protected)
    enforced = cli(timeline, DAY15, "enforce", "--format", "json")
    assert enforced.exit_code == 0, enforced.output
    timeline.enforced = json.loads(enforced.stdout)
    timeline.after = _snapshot(timeline)
    with Session(timeline.engine) as session:
        rows = session.exec(select(EnforcementAction).where(EnforcementAction.status == "done"))
        timeline.done = {(r.tenant, r.action, r.external_id) for r in rows}
    counts = _counts(timeline)
    again = cli(timeline, DAY15 + timedelta(hours=2), "enforce")
    assert again.exit_code == 0, again.output
    timeline.rerun = {k: _counts(timeline)[k] - v for k, v in counts.items()}
    for role in (
        "okta-overdue",
        "okta-revoked",
        "okta-reduced",
        "entra-revoked",
        "entra-overdue",
        "entra-consent",
        "google-consent",
    ):
        tenant, external_id = timeline.chosen[role]
        timeline.reenabled[role] = cli(
            timeline,
            DAY16,
            "reenable",
            tenant,
            external_id,
            "--reason",
            "still needed",
            "--actor",
            "iam-ann",
            "--format",
            "json",
        )


def _expected(timeline: Timeline) -> set[tuple[str, str, str]]:
    """What a correct plan holds, from the owners' answers and the inventory."""
    stale_days = timeline.settings().risk.stale_days
    skip = {timeline.chosen["okta-protected"][1], timeline.chosen["self"][1]}
    expected = set()
    with Session(timeline.engine) as session:
        rows = session.exec(
            select(ReviewItem, Principal, Tenant)
            .join(Principal, col(Principal.id) == ReviewItem.principal_id)
            .join(Tenant, col(Tenant.id) == Principal.tenant_id)
        ).all()
        decisions = latest_decisions(session, [item.id or 0 for item, _, _ in rows])
    for item, principal, tenant in rows:
        decision = decisions.get(item.id or 0)
        action = _expected_action(
            item, decision.action if decision else None, principal, stale_days
        )
        if action and principal.external_id not in skip and _possible(tenant.kind, principal):
            expected.add((tenant.name, action, principal.external_id))
    return expected


def _expected_action(
    item: ReviewItem, decision: str | None, principal: Principal, stale_days: int
) -> str | None:
    if decision == "reduce":
        return "remove_grant"
    if decision == "revoke":
        return "revoke_consent" if item.consenting_user else "disable"
    if item.status != "pending" or item.consenting_user:
        return None
    if item.owner_source in OWNER_SOURCES:
        return "disable"
    known = principal.last_used_at is not None or principal.activity_window_start is not None
    if item.owner_source in ("orphan", "iam_team") and known:
        return "disable" if is_stale(principal, stale_days, DAY15) else None
    return None


def _possible(provider: str, principal: Principal) -> bool:
    """Okta API tokens, Entra app registrations without a service principal and Google
    domain-wide delegation have no API to disable them."""
    if provider == "okta":
        return principal.kind != "api_token"
    return principal.kind != "oauth_app"


def _snapshot(timeline: Timeline) -> dict[str, Any]:
    tenants = timeline.tenants
    return {
        "okta_apps": copy.deepcopy(tenants.okta.org.apps),
        "okta_grants": copy.deepcopy(tenants.okta.org.grants),
        "entra_sps": copy.deepcopy(tenants.entra.tenant.service_principals),
        "entra_grants": copy.deepcopy(tenants.entra.tenant.grants),
        "google_tokens": copy.deepcopy(tenants.google.tokens),
    }


def _counts(timeline: Timeline) -> dict[str, int]:
    with Session(timeline.engine) as session:

        def rows(model: Any) -> int:
            return int(session.exec(select(func.count()).select_from(model)).one())

        counts = {
            "actions": rows(EnforcementAction),
            "audit": rows(AuditEvent),
            "emails": rows(OutboxEmail),
        }
    counts["writes"] = sum(
        1
        for emulator in (timeline.tenants.okta, timeline.tenants.entra, timeline.tenants.google)
        for request in emulator.requests
        if request.method != "GET" and not request.path.endswith("/token")
    )
    counts["smtp"] = len(timeline.smtp.messages)
    return counts


def _planned(timeline: Timeline) -> set[tuple[str, str, str]]:
    return {
        (plan["tenant"], action["action"], action["external_id"])
        for plan in timeline.plan
        for action in plan["actions"]
    }


def test_the_day_15_plan_lists_exactly_what_is_due(timeline: Timeline) -> None:
    planned = _planned(timeline)
    assert planned == timeline.expected
    chosen = timeline.chosen
    for role, action in (
        ("okta-overdue", "disable"),
        ("okta-revoked", "disable"),
        ("okta-reduced", "remove_grant"),
        ("entra-revoked", "disable"),
        ("entra-overdue", "disable"),
        ("entra-consent", "revoke_consent"),
        ("google-consent", "revoke_consent"),
    ):
        assert (chosen[role][0], action, chosen[role][1]) in planned, role
    assert all(p["mode"] == "dry-run" and p["blocked"] is None for p in timeline.plan)


def test_the_text_plan_says_what_and_why(timeline: Timeline) -> None:
    text = timeline.plan_text
    for plan in timeline.plan:
        assert f"{plan['tenant']} (mode dry-run): {len(plan['actions'])} actions" in text
    protected = timeline.chosen["okta-protected"][1]
    assert re.search(rf"refused\toauth_app\t{protected}\t.*\tprotected: ", text)
    assert "cannot be undone: users must consent again: " in text


def test_the_plan_holds_none_of_the_apps_the_rules_protect(timeline: Timeline) -> None:
    planned = {external_id for _, _, external_id in _planned(timeline)}
    refused = {r["external_id"]: r["rule"] for plan in timeline.plan for r in plan["refused"]}
    chosen = timeline.chosen
    assert refused[chosen["okta-protected"][1]] == "protected"
    assert refused[chosen["self"][1]] == "self"
    assert refused[chosen["okta-handed-over"][1]] == "handover_pending"
    assert chosen["okta-kept"][1] not in planned
    bounced = {r for r, rule in refused.items() if rule == "owner_bounced"}
    assert bounced, "the owner whose mail bounced was escalated"
    with Session(timeline.engine) as session:
        untouchable = set(
            session.exec(
                select(Principal.external_id).where(
                    col(Principal.platform_owned).is_(True) | (Principal.kind == "managed_identity")
                )
            ).all()
        )
    assert untouchable, "the seeds hold platform-owned apps and managed identities"
    guarded = {chosen[r][1] for r in ("okta-protected", "self", "okta-handed-over")}
    assert not planned & (untouchable | bounced | guarded)


def test_enforce_mode_carries_the_plan_out_in_the_emulators(timeline: Timeline) -> None:
    summaries = {s["tenant"]: s for s in timeline.enforced}
    assert all(s["status"] == "enforced" and s["failed"] == 0 for s in summaries.values())
    planned = sum(len(plan["actions"]) for plan in timeline.plan)  # one per permission
    assert sum(s["done"] for s in summaries.values()) == planned
    assert timeline.done == timeline.expected
    after, chosen = timeline.after, timeline.chosen
    for role in ("okta-overdue", "okta-revoked"):
        assert after["okta_apps"][chosen[role][1]]["status"] == "INACTIVE"
    assert chosen["okta-dropped"][1] not in after["okta_grants"][chosen["okta-reduced"][1]]
    assert after["okta_apps"][chosen["okta-kept"][1]]["status"] == "ACTIVE"
    for role in ("entra-revoked", "entra-overdue"):
        assert after["entra_sps"][chosen[role][1]]["accountEnabled"] is False
    assert after["entra_sps"][chosen["self"][1]]["accountEnabled"] is True
    client_id = chosen["google-consent"][1]
    holders = [u for u, tokens in timeline.before["google_tokens"].items() if client_id in tokens]
    assert holders, "the consenting user held a token"
    assert sum(client_id in after["google_tokens"][u] for u in holders) == len(holders) - 1
    notices = [m for m in timeline.smtp.messages if "Disabled:" in str(m.message["Subject"])]
    assert notices, "owners of overdue apps got the disabled notice"
    assert all(IAM in m.recipients for m in notices), "IAM is on every notice"


def test_running_enforce_again_changes_nothing(timeline: Timeline) -> None:
    assert timeline.rerun == {"actions": 0, "audit": 0, "emails": 0, "writes": 0, "smtp": 0}


def test_reenable_returns_each_object_to_its_pre_disable_json(timeline: Timeline) -> None:
    tenants, before, chosen = timeline.tenants, timeline.before, timeline.chosen
    for role in ("okta-overdue", "okta-revoked", "entra-revoked", "entra-overdue"):
        result = timeline.reenabled[role]
        assert result.exit_code == 0, result.output
    for role in ("okta-overdue", "okta-revoked"):
        app_id = chosen[role][1]
        assert _okta_json(tenants.okta.org.apps[app_id]) == _okta_json(before["okta_apps"][app_id])
    for role in ("entra-revoked", "entra-overdue"):
        sp_id = chosen[role][1]
        assert tenants.entra.tenant.service_principals[sp_id] == before["entra_sps"][sp_id]
    reduced = chosen["okta-reduced"][1]
    scopes = {g["scopeId"] for g in tenants.okta.org.grants[reduced].values()}
    assert scopes == {g["scopeId"] for g in before["okta_grants"][reduced].values()}
    assert timeline.reenabled["okta-reduced"].exit_code == 0
    assert timeline.reenabled["entra-consent"].exit_code == 0
    assert _grants_json(tenants.entra.tenant.grants) == _grants_json(before["entra_grants"])


def test_a_google_token_revoke_cannot_be_undone_and_names_who_must_consent(
    timeline: Timeline,
) -> None:
    result = timeline.reenabled["google-consent"]
    assert result.exit_code == 1
    problems = json.loads(result.stdout)["not_reversible"]
    [problem] = [p for p in problems if p["action"] == "revoke_consent"]
    assert "cannot be restored" in problem["message"]
    assert problem["must_consent_again"]
    assert all("@" in user for user in problem["must_consent_again"])
    [planned] = [
        a
        for plan in timeline.plan
        for a in plan["actions"]
        if a["external_id"] == timeline.chosen["google-consent"][1]
        and a["action"] == "revoke_consent"
    ]
    assert planned["reversible"] is False
    assert planned["must_consent_again"] == problem["must_consent_again"]


def _okta_json(app_json: dict[str, Any]) -> dict[str, Any]:
    """Less what Okta maintains itself and the links the emulator points at its URL."""
    return {k: v for k, v in app_json.items() if k not in ("lastUpdated", "_links")}


def _grants_json(grants: dict[str, dict[str, Any]]) -> set[str]:
    """Delegated grants as JSON without their ids (Graph gives a re-created grant a new
    id; everything else must be as it was)."""
    return {
        json.dumps({k: v for k, v in g.items() if k != "id"}, sort_keys=True)
        for g in grants.values()
    }
