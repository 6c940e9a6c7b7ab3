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
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, insert
from sqlalchemy import select as select_columns
from sqlmodel import Session, col

from recert import audit
from recert.catalog import Catalog
from recert.clock import Clock
from recert.config import OwnerRule, Settings
from recert.models import Grant, OwnerHint, Ownership, Person, Principal, Tenant
from recert.store import grouped_rows, live_principals, rows_of

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


class Someone(NamedTuple):
    """The columns of a Person that resolution reads: light enough for every user."""

    id: int | None
    external_id: str
    display_name: str
    email: str | None
    active: bool
    manager_external_id: str | None


@dataclass
class TenantIndex:
    """What owner resolution reads for one tenant: all people, and the principals being
    resolved (a batch at a time, see `take`) with the apps that own them."""

    name: str
    principals: dict[str, Principal]
    people_by_id: dict[str, Someone]
    people_by_email: dict[str, Someone]
    hints: dict[int, list[OwnerHint]]
    grants: dict[int, list[Grant]]
    rules: tuple[OwnerRule, ...]
    catalog: Catalog
    iam_email: str
    session: Session | None = None
    tenant_id: int | None = None
    _cache: dict[str, Resolution] = field(default_factory=dict)

    @classmethod
    def load(
        cls, session: Session, tenant: Tenant, settings: Settings, catalog: Catalog
    ) -> TenantIndex:
        columns = [col(getattr(Person, name)) for name in Someone._fields]
        query = select_columns(*columns).where(col(Person.tenant_id) == tenant.id)
        people = [Someone(*row) for row in session.execute(query)]
        return cls(
            name=tenant.name,
            principals={},
            people_by_id={p.external_id: p for p in people},
            people_by_email={p.email.lower(): p for p in people if p.email},
            hints={},
            grants={},
            rules=tuple(r for r in settings.owner_rules if r.tenant in (None, tenant.name)),
            catalog=catalog,
            iam_email=settings.iam_email,
            session=session,
            tenant_id=tenant.id,
        )

    def take(self, principals: list[Principal]) -> None:
        """Resolve these next: their hints and grants replace the previous batch's."""
        ids = [p.id for p in principals]
        self.principals = {p.external_id: p for p in principals}
        self.hints = grouped_rows(self._session, OwnerHint, ids)
        self.grants = grouped_rows(self._session, Grant, ids)
        self._cache.clear()

    def principal(self, external_id: str) -> Principal | None:
        """A principal of this tenant by external id (an owning app outside the batch)."""
        if external_id not in self.principals:
            found = rows_of(
                self._session,
                Principal,
                col(Principal.tenant_id) == self.tenant_id,
                col(Principal.status) != "deleted",
                col(Principal.external_id) == external_id,
            )
            if not found:
                return None
            self.principals[external_id] = found[0]
            self.hints.update(grouped_rows(self._session, OwnerHint, [found[0].id]))
            self.grants.update(grouped_rows(self._session, Grant, [found[0].id]))
        return self.principals[external_id]

    @property
    def _session(self) -> Session:
        assert self.session is not None
        return self.session

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
        owner_app = self.principal(owner_id)
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
        person: Someone,
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

    def _active_manager(self, person: Someone) -> Someone | None:
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
    summary = OwnersSummary(tenant.name)
    reasons: dict[str, int] = defaultdict(int)
    assert tenant.id is not None
    for batch in live_principals(session, tenant.id):
        index.take(batch)
        current = grouped_rows(session, Ownership, [p.id for p in batch])
        changes = _Changes(tenant.name)
        for principal in batch:
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
            if not resolution.held and changes.add(principal, resolution, stored, clock):
                summary.changed += 1
        changes.write(session, clock)
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


class OwnershipRow(NamedTuple):
    """An `Ownership` row to write (the table's columns but the id)."""

    principal_id: int
    source: str
    resolved_at: datetime
    email: str | None = None
    person_id: int | None = None
    confidence: float = 0.0
    evidence: str = ""
    orphan_reason: str | None = None


def _rows(principal: Principal, resolution: Resolution, clock: Clock) -> list[OwnershipRow]:
    assert principal.id is not None
    now = clock.now()
    if resolution.orphan_reason:
        return [
            OwnershipRow(
                principal_id=principal.id,
                source="none",
                orphan_reason=resolution.orphan_reason,
                evidence=resolution.evidence,
                resolved_at=now,
            )
        ]
    return [
        OwnershipRow(
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


def _key(row: Ownership | OwnershipRow) -> tuple[object, ...]:
    return (row.email, row.person_id, row.source, row.confidence, row.evidence, row.orphan_reason)


@dataclass
class _Changes:
    """Ownership rows to replace and their audit events, written for a batch at once."""

    tenant: str
    replaced: list[int] = field(default_factory=list)  # principal ids
    rows: list[dict[str, Any]] = field(default_factory=list)
    events: list[audit.Entry] = field(default_factory=list)

    def add(
        self,
        principal: Principal,
        resolution: Resolution,
        existing: list[Ownership],
        clock: Clock,
    ) -> bool:
        wanted = _rows(principal, resolution, clock) if needs_owner(principal) else []
        if [_key(r) for r in wanted] == [_key(r) for r in existing]:
            return False
        assert principal.id is not None
        self.replaced.append(principal.id)
        self.rows += [r._asdict() for r in wanted]
        self.events.append(
            audit.Entry(
                actor="recert",
                action="owner.resolved",
                subject_type="principal",
                subject_id=principal.external_id,
                tenant=self.tenant,
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
        )
        return True

    def write(self, session: Session, clock: Clock) -> None:
        for start in range(0, len(self.replaced), 10_000):
            chunk = self.replaced[start : start + 10_000]
            session.execute(delete(Ownership).where(col(Ownership.principal_id).in_(chunk)))
        if self.rows:
            session.execute(insert(Ownership), self.rows)
        audit.append_many(session, clock, self.events)
