"""Step 2: an accountable, active owner for every principal, or an orphan with a reason.

Sources in order, each match kept with its confidence and the evidence behind it:
catalog manifest > IdP-native owners > creator (API token owner, audit log) > naming
rules. An owner must be an active person of the same tenant; one who left falls back to
their manager; an owner that is itself an app is followed to its own owner (with a cycle
guard). User-consented apps go to their catalog owner or else to the IAM team, never to
an arbitrary consenting user. Re-running with nothing changed writes nothing. While the
catalog has a rejected manifest, the apps it may be about keep their stored owners.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlmodel import Session, col, delete, select

from recert import audit
from recert.catalog import Catalog
from recert.clock import Clock
from recert.config import OwnerRule, Settings
from recert.models import Grant, OwnerHint, Ownership, Person, Principal, Tenant
from recert.store import grouped

CONFIDENCE = {
    "catalog": 1.0,
    "idp_owner": 0.9,
    "token_creator": 0.8,
    "audit_creator": 0.7,
    "rule": 0.5,
}
HINT_ORDER = ("idp_owner", "token_creator", "audit_creator")
MANAGER_DISCOUNT = 0.8
APP_CHAIN_DISCOUNT = 0.9
MAX_MANAGER_HOPS = 3
NOT_REVIEWED_KINDS = {"managed_identity"}


@dataclass(frozen=True)
class Candidate:
    email: str
    source: str
    confidence: float
    evidence: str
    person_id: int | None = None


@dataclass(frozen=True)
class Failure:
    reason: str  # owner_departed | owner_unresolvable | owner_is_app
    evidence: str


@dataclass(frozen=True)
class Resolution:
    owners: tuple[Candidate, ...] = ()
    orphan_reason: str | None = None
    evidence: str = ""
    held: bool = False  # the stored resolution, kept while the catalog is broken


def needs_owner(principal: Principal) -> bool:
    """Platform-owned apps and managed identities are never reviewed."""
    return not principal.platform_owned and principal.kind not in NOT_REVIEWED_KINDS


def is_user_consented(principal: Principal, grants: Iterable[Grant]) -> bool:
    consents = {g.consent for g in grants}
    return principal.kind == "third_party_app" or consents == {"user"}


@dataclass
class TenantIndex:
    """Everything owner resolution reads for one tenant, loaded once."""

    name: str
    principals: dict[str, Principal]
    people_by_id: dict[str, Person]
    people_by_email: dict[str, Person]
    hints: dict[int, list[OwnerHint]]
    grants: dict[int, list[Grant]]
    rules: tuple[OwnerRule, ...]
    catalog: Catalog
    iam_email: str
    _cache: dict[str, Resolution] = field(default_factory=dict)

    @classmethod
    def load(
        cls, session: Session, tenant: Tenant, settings: Settings, catalog: Catalog
    ) -> TenantIndex:
        principals = session.exec(
            select(Principal).where(Principal.tenant_id == tenant.id, Principal.status != "deleted")
        ).all()
        people = session.exec(select(Person).where(Person.tenant_id == tenant.id)).all()
        ids = [p.id for p in principals]
        return cls(
            name=tenant.name,
            principals={p.external_id: p for p in principals},
            people_by_id={p.external_id: p for p in people},
            people_by_email={p.email.lower(): p for p in people if p.email},
            hints=grouped(session, OwnerHint, ids),
            grants=grouped(session, Grant, ids),
            rules=tuple(r for r in settings.owner_rules if r.tenant in (None, tenant.name)),
            catalog=catalog,
            iam_email=settings.iam_email,
        )

    def resolve(self, principal: Principal, visiting: frozenset[str] = frozenset()) -> Resolution:
        if not visiting and principal.external_id in self._cache:
            return self._cache[principal.external_id]
        resolution = self._resolve(principal, visiting | {principal.external_id})
        if not visiting:
            self._cache[principal.external_id] = resolution
        return resolution

    def _resolve(self, principal: Principal, visiting: frozenset[str]) -> Resolution:
        candidates: list[Candidate] = []
        failures: list[Failure] = []
        entry = self.catalog.match(self.name, (principal.external_id, principal.app_id))
        if entry:
            evidence = f"catalog manifest {entry.path.name} names {entry.manifest.owner}"
            self._person_by_email(entry.manifest.owner, "catalog", evidence, candidates, failures)
        if is_user_consented(principal, self.grants.get(principal.id or 0, [])):
            if not candidates:
                evidence = "users consented to it themselves and no catalog entry names an owner"
                candidates.append(Candidate(self.iam_email, "iam_team", 0.3, evidence))
            return _result(candidates, failures)
        for hint in sorted(self.hints.get(principal.id or 0, []), key=_hint_rank):
            self._from_hint(hint, visiting, candidates, failures)
        for rule in self.rules:
            self._from_rule(rule, principal, candidates, failures)
        return _result(candidates, failures)

    def _from_hint(
        self,
        hint: OwnerHint,
        visiting: frozenset[str],
        candidates: list[Candidate],
        failures: list[Failure],
    ) -> None:
        if hint.owner_principal_external_id:
            self._from_owner_app(hint, visiting, candidates, failures)
        elif hint.person_external_id:
            person = self.people_by_id.get(hint.person_external_id)
            if person is None:
                failures.append(
                    Failure(
                        "owner_unresolvable", f"{hint.evidence}; that user is not in the directory"
                    )
                )
            else:
                self._accept(person, hint.source, hint.evidence, candidates, failures)
        elif hint.email:
            self._person_by_email(hint.email, hint.source, hint.evidence, candidates, failures)

    def _from_owner_app(
        self,
        hint: OwnerHint,
        visiting: frozenset[str],
        candidates: list[Candidate],
        failures: list[Failure],
    ) -> None:
        owner_id = hint.owner_principal_external_id or ""
        owner_app = self.principals.get(owner_id)
        if owner_id in visiting or owner_app is None:
            why = "a cycle of apps owning each other" if owner_id in visiting else "an unknown app"
            failures.append(Failure("owner_is_app", f"{hint.evidence}; it leads to {why}"))
            return
        inherited = self.resolve(owner_app, visiting)
        if not inherited.owners:
            failures.append(
                Failure(
                    "owner_is_app",
                    f"{hint.evidence}; that app has no owner ({inherited.orphan_reason})",
                )
            )
        for owner in inherited.owners:
            evidence = f"owned by the app {owner_app.display_name!r}, whose owner: {owner.evidence}"
            candidates.append(
                Candidate(
                    owner.email,
                    hint.source,
                    round(owner.confidence * APP_CHAIN_DISCOUNT, 3),
                    evidence,
                    owner.person_id,
                )
            )

    def _from_rule(
        self,
        rule: OwnerRule,
        principal: Principal,
        candidates: list[Candidate],
        failures: list[Failure],
    ) -> None:
        match = rule.regex().match(principal.display_name)
        if not match:
            return
        mailbox = rule.owner.format(**match.groupdict()).lower()
        evidence = f"the name matches the rule {rule.pattern!r} -> {rule.owner!r}"
        person = self.people_by_email.get(mailbox)
        if person is None:  # a team mailbox, not a person
            candidates.append(Candidate(mailbox, "rule", CONFIDENCE["rule"], evidence))
        else:
            self._accept(person, "rule", evidence, candidates, failures)

    def _person_by_email(
        self,
        email: str,
        source: str,
        evidence: str,
        candidates: list[Candidate],
        failures: list[Failure],
    ) -> None:
        person = self.people_by_email.get(email.lower())
        if person is None:
            failures.append(
                Failure("owner_unresolvable", f"{evidence}; {email} is not a user of {self.name}")
            )
        else:
            self._accept(person, source, evidence, candidates, failures)

    def _accept(
        self,
        person: Person,
        source: str,
        evidence: str,
        candidates: list[Candidate],
        failures: list[Failure],
    ) -> None:
        """An active person owns it; one who left hands it to the nearest active manager."""
        if person.active and person.email:
            candidates.append(
                Candidate(person.email, source, CONFIDENCE[source], evidence, person.id)
            )
            return
        if person.active:
            failures.append(
                Failure("owner_unresolvable", f"{evidence}; {person.display_name} has no email")
            )
            return
        manager = self._active_manager(person)
        if manager is None:
            failures.append(
                Failure(
                    "owner_departed",
                    f"{evidence}; {person.display_name} left, with no active manager",
                )
            )
            return
        candidates.append(
            Candidate(
                manager.email or "",
                "manager",
                round(CONFIDENCE[source] * MANAGER_DISCOUNT, 3),
                f"{evidence}; {person.display_name} left, so their manager "
                f"{manager.display_name} is accountable for it",
                manager.id,
            )
        )

    def _active_manager(self, person: Person) -> Person | None:
        seen = {person.external_id}
        current = person
        for _ in range(MAX_MANAGER_HOPS):
            manager = self.people_by_id.get(current.manager_external_id or "")
            if manager is None or manager.external_id in seen:
                return None
            if manager.active and manager.email:
                return manager
            seen.add(manager.external_id)
            current = manager
        return None


def _hint_rank(hint: OwnerHint) -> tuple[int, str]:
    rank = HINT_ORDER.index(hint.source) if hint.source in HINT_ORDER else len(HINT_ORDER)
    return rank, hint.reference


def _result(candidates: list[Candidate], failures: list[Failure]) -> Resolution:
    unique: dict[str, Candidate] = {}
    for candidate in candidates:
        unique.setdefault(candidate.email.lower(), candidate)
    if unique:
        return Resolution(owners=tuple(unique.values()))
    if failures:
        return Resolution(orphan_reason=failures[0].reason, evidence=failures[0].evidence)
    return Resolution(orphan_reason="no_owner", evidence="no catalog entry, owner, creator or rule")


@dataclass
class OwnersSummary:
    tenant: str
    principals: int = 0
    owned: int = 0
    orphaned: int = 0
    not_reviewed: int = 0
    changed: int = 0
    orphan_reasons: dict[str, int] = field(default_factory=dict)
    held: int = 0  # kept their stored owners: the catalog has a rejected manifest for them


def resolve_tenant(
    session: Session, tenant: Tenant, settings: Settings, catalog: Catalog, clock: Clock
) -> OwnersSummary:
    """Resolve and store owners for one tenant; writes and audits only what changed."""
    index = TenantIndex.load(session, tenant, settings, catalog)
    current = grouped(session, Ownership, [p.id for p in index.principals.values()])
    summary = OwnersSummary(tenant.name)
    reasons: dict[str, int] = defaultdict(int)
    for principal in index.principals.values():
        summary.principals += 1
        stored = current.get(principal.id or 0, [])
        if needs_owner(principal):
            held = _held_by_catalog(index, principal, stored)
            resolution = _as_stored(stored) if held else index.resolve(principal)
            summary.held += held
            if resolution.owners:
                summary.owned += 1
            else:
                summary.orphaned += 1
                reasons[resolution.orphan_reason or "no_owner"] += 1
        else:
            summary.not_reviewed += 1
            resolution = Resolution()
        if not resolution.held and _store(
            session, principal, resolution, stored, clock, tenant.name
        ):
            summary.changed += 1
    summary.orphan_reasons = dict(sorted(reasons.items()))
    return summary


def _held_by_catalog(index: TenantIndex, principal: Principal, stored: list[Ownership]) -> bool:
    """A rejected manifest names it, or the manifest that made its owner no longer loads:
    the stored owner stands until the catalog is fixed (a typo orphans nothing)."""
    catalog = index.catalog
    if not catalog.problems or not stored:
        return False
    ids = (principal.external_id, principal.app_id)
    if catalog.rejected_for(index.name, ids):
        return True
    return any(o.source == "catalog" for o in stored) and catalog.match(index.name, ids) is None


def _as_stored(stored: list[Ownership]) -> Resolution:
    orphan = next((o for o in stored if o.orphan_reason), None)
    if orphan:
        return Resolution(orphan_reason=orphan.orphan_reason, evidence=orphan.evidence, held=True)
    owners = tuple(
        Candidate(o.email or "", o.source, o.confidence, o.evidence, o.person_id) for o in stored
    )
    return Resolution(owners=owners, held=True)


def _rows(principal: Principal, resolution: Resolution, clock: Clock) -> list[Ownership]:
    assert principal.id is not None
    now = clock.now()
    if resolution.orphan_reason:
        return [
            Ownership(
                principal_id=principal.id,
                source="none",
                orphan_reason=resolution.orphan_reason,
                evidence=resolution.evidence,
                resolved_at=now,
            )
        ]
    return [
        Ownership(
            principal_id=principal.id,
            email=c.email,
            person_id=c.person_id,
            source=c.source,
            confidence=c.confidence,
            evidence=c.evidence,
            resolved_at=now,
        )
        for c in resolution.owners
    ]


def _key(row: Ownership) -> tuple[object, ...]:
    return (row.email, row.person_id, row.source, row.confidence, row.evidence, row.orphan_reason)


def _store(
    session: Session,
    principal: Principal,
    resolution: Resolution,
    existing: list[Ownership],
    clock: Clock,
    tenant: str,
) -> bool:
    wanted = _rows(principal, resolution, clock) if needs_owner(principal) else []
    if [_key(r) for r in wanted] == [_key(r) for r in existing]:
        return False
    session.execute(delete(Ownership).where(col(Ownership.principal_id) == principal.id))
    session.add_all(wanted)
    audit.append(
        session,
        clock,
        actor="recert",
        action="owner.resolved",
        subject_type="principal",
        subject_id=principal.external_id,
        tenant=tenant,
        data={
            "owners": [
                {"email": r.email, "source": r.source, "confidence": r.confidence}
                for r in wanted
                if r.email
            ],
            "orphan_reason": resolution.orphan_reason,
            "evidence": resolution.evidence or (wanted[0].evidence if wanted else ""),
        },
    )
    return True
