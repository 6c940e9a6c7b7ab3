"""The app catalog: one manifest per app (YAML or JSON), kept by the IAM team.

A manifest is the single source of truth for an app's owner and purpose. A file with any
problem is rejected whole (nothing of it is loaded), and the problem names the file and
the field: unknown keys are errors, not silently dropped.
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

    def match(self, tenant: str, ids: tuple[str | None, ...]) -> CatalogEntry | None:
        """The manifest for a principal, by its external id or app/client id."""
        wanted = {i for i in ids if i}
        for entry in self.entries:
            m = entry.manifest
            if m.app_id in wanted and m.tenant in (None, tenant):
                return entry
        return None


def load_catalog(directory: Path | None) -> Catalog:
    if directory is None or not directory.exists():
        return Catalog((), ())
    entries: list[CatalogEntry] = []
    problems: list[CatalogProblem] = []
    for path in sorted(p for p in directory.rglob("*") if p.suffix.lower() in SUFFIXES):
        entry, found = _load_one(path)
        if entry:
            entries.append(entry)
        problems.extend(found)
    problems.extend(_duplicates(entries))
    bad = {p.path for p in problems}
    return Catalog(tuple(e for e in entries if e.path not in bad), tuple(problems))


def _load_one(path: Path) -> tuple[CatalogEntry | None, list[CatalogProblem]]:
    try:
        data = _parse(path)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as error:
        return None, [CatalogProblem(path, "", f"cannot parse: {_one_line(error)}")]
    if not isinstance(data, dict):
        return None, [CatalogProblem(path, "", "must hold one mapping (one app per file)")]
    try:
        return CatalogEntry(path, Manifest.model_validate(data)), []
    except ValidationError as error:
        return None, [_problem(path, e) for e in error.errors()]


def _problem(path: Path, error: Any) -> CatalogProblem:
    field = ".".join(str(part) for part in error["loc"])
    words = {"extra_forbidden": "unknown key", "missing": "missing"}
    return CatalogProblem(path, field, words.get(error["type"], error["msg"]))


def _parse(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)


def _duplicates(entries: list[CatalogEntry]) -> list[CatalogProblem]:
    """Two manifests for one app make its owner ambiguous: both are rejected."""
    claims: dict[tuple[str, str | None], list[Path]] = defaultdict(list)
    for entry in entries:
        claims[(entry.manifest.app_id, entry.manifest.tenant)].append(entry.path)
    problems = []
    for (app_id, _), paths in claims.items():
        for path in paths if len(paths) > 1 else ():
            others = ", ".join(str(other) for other in paths if other != path)
            problems.append(
                CatalogProblem(path, "app_id", f"{app_id!r} is also described by {others}")
            )
    return problems


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
