"""The app catalog: one manifest per app (YAML or JSON), kept by the IAM team.

A manifest is the single source of truth for an app's owner and purpose. A file with any
problem is rejected whole (nothing of it is loaded), and the problem names the file and
the field: unknown keys, repeated keys and oversized files are errors, not silently
dropped or half read. Owner resolution keeps the previous owner of an app whose manifest
was rejected, so a typo never quietly turns a catalogued app into an orphan.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

SUFFIXES = {".yaml", ".yml", ".json"}
MAX_MANIFEST_BYTES = 64 * 1024  # one app's manifest is a few hundred bytes
# A mailbox, not a deliverability check: internal and test domains are legitimate owners.
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)]


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    app_id: str = Field(min_length=1, description="the provider's app id or client id")
    owner: Email
    purpose: str = Field(min_length=1)
    tenant: str | None = None  # restricts the match to one configured tenant
    name: str | None = None
    data_domains: tuple[str, ...] = ()
    requested_scopes: tuple[str, ...] = ()
    risk_tier: Literal["low", "medium", "high"] = "medium"
    environment: Literal["prod", "staging", "dev", "test"] = "prod"
    expires: date | None = None
    approvers: tuple[Email, ...] = ()


@dataclass(frozen=True)
class CatalogEntry:
    path: Path
    manifest: Manifest


@dataclass(frozen=True)
class CatalogProblem:
    path: Path
    field: str
    problem: str

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.field}: {self.problem}"
            if self.field
            else f"{self.path}: {self.problem}"
        )


@dataclass(frozen=True)
class Catalog:
    entries: tuple[CatalogEntry, ...]
    problems: tuple[CatalogProblem, ...]
    # (app_id, tenant) that rejected manifests name, where a file got that far.
    rejected: frozenset[tuple[str, str | None]] = frozenset()

    def match(self, tenant: str, ids: tuple[str | None, ...]) -> CatalogEntry | None:
        """The manifest for a principal, by its external id or app/client id."""
        wanted = {i for i in ids if i}
        for entry in self.entries:
            m = entry.manifest
            if m.app_id in wanted and m.tenant in (None, tenant):
                return entry
        return None

    def rejected_for(self, tenant: str, ids: tuple[str | None, ...]) -> bool:
        """True when a rejected manifest names this principal."""
        return any((i, t) in self.rejected for i in ids if i for t in (None, tenant))


def load_catalog(directory: Path | None) -> Catalog:
    if directory is None:
        return Catalog((), ())
    if not directory.is_dir():
        return Catalog((), (CatalogProblem(directory, "", "catalog folder not found"),))
    entries: list[CatalogEntry] = []
    problems: list[CatalogProblem] = []
    rejected: set[tuple[str, str | None]] = set()
    for path in sorted(p for p in directory.rglob("*") if p.suffix.lower() in SUFFIXES):
        entry, found, claim = _load_one(path)
        if entry:
            entries.append(entry)
        if found and claim:
            rejected.add(claim)
        problems.extend(found)
    duplicates = _duplicates(entries)
    problems.extend(duplicates)
    bad = {p.path for p in problems}
    rejected.update((e.manifest.app_id, e.manifest.tenant) for e in entries if e.path in bad)
    return Catalog(
        tuple(e for e in entries if e.path not in bad), tuple(problems), frozenset(rejected)
    )


def _load_one(
    path: Path,
) -> tuple[CatalogEntry | None, list[CatalogProblem], tuple[str, str | None] | None]:
    try:
        data = _parse(path)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as error:
        return None, [CatalogProblem(path, "", f"cannot parse: {_one_line(error)}")], None
    if not isinstance(data, dict):
        problem = CatalogProblem(path, "", "must hold one mapping (one app per file)")
        return None, [problem], None
    try:
        return CatalogEntry(path, Manifest.model_validate(data)), [], None
    except ValidationError as error:
        return None, [_problem(path, e) for e in error.errors()], _claim(data)


def _claim(data: dict[Any, Any]) -> tuple[str, str | None] | None:
    """The app a rejected manifest was meant for, when it says so plainly."""
    app_id, tenant = data.get("app_id"), data.get("tenant")
    if not isinstance(app_id, str) or not app_id.strip():
        return None
    return app_id.strip(), tenant.strip() if isinstance(tenant, str) else None


def _problem(path: Path, error: Any) -> CatalogProblem:
    field = ".".join(str(part) for part in error["loc"])
    words = {"extra_forbidden": "unknown key", "missing": "missing"}
    return CatalogProblem(path, field, words.get(error["type"], error["msg"]))


def _parse(path: Path) -> Any:
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ValueError(f"{size} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may hold")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        return json.loads(text, object_pairs_hook=_unique_keys)
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"key {repeated[0]!r} appears more than once")
    return dict(pairs)


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice (plain PyYAML keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ValueError(f"key {key!r} appears more than once")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _duplicates(entries: list[CatalogEntry]) -> list[CatalogProblem]:
    """Two manifests that can match one app make its owner ambiguous: both are rejected.
    A manifest without `tenant` matches in every tenant, so it clashes with any other."""
    by_app: dict[str, list[CatalogEntry]] = defaultdict(list)
    for entry in entries:
        by_app[entry.manifest.app_id].append(entry)
    problems = []
    for app_id, claims in by_app.items():
        for entry in claims:
            others = [
                str(other.path)
                for other in claims
                if other is not entry and _overlap(entry.manifest.tenant, other.manifest.tenant)
            ]
            if others:
                also = ", ".join(others)
                problems.append(
                    CatalogProblem(entry.path, "app_id", f"{app_id!r} is also described by {also}")
                )
    return problems


def _overlap(tenant: str | None, other: str | None) -> bool:
    return tenant is None or other is None or tenant == other


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
