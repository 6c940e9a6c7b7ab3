"""The one TOML config file, validated into typed settings.

Secrets are never inline: a key ending in `_env` names an environment variable and one
ending in `_file` names a file; both resolve into the key without the suffix before
validation (`api_token_env` -> `api_token`). Every problem is reported as one line that
names the file, the key and what is wrong.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from connectors.settings import SETTINGS_BY_KIND, WRITE_DEFAULTS, TenantSettings, settings_for

DEFAULT_CONFIG = "recert.toml"
EnforcementMode = Literal["off", "dry-run", "enforce"]

# Keys of a [[tenants]] table that are Recert's own, not the connector's.
_TENANT_KEYS = {"name", "kind", "protected", "enforcement", "enforce"}
# Credential keys a [tenants.enforce] table replaces, per provider.
_CREDENTIAL_KEYS = {
    "okta": {"api_token", "client_id", "private_key", "key_id", "scopes", "dpop"},
    "entra": {"client_id", "client_secret", "certificate"},
    "google": {"credentials", "admin_subject"},
}
_NOT_SECRETS = {"ca_bundle"}  # path-valued keys that are not secret references
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class ConfigError(Exception):
    """A bad config: the message is one line naming the file, the key and the problem."""

    def __init__(self, path: Path | str, key: str, problem: str) -> None:
        self.path, self.key, self.problem = str(path), key, problem
        super().__init__(f"{path}: {key}: {problem}" if key else f"{path}: {problem}")


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Table):
    url: str = "sqlite:///recert.db"


class SmtpSettings(_Table):
    host: str = "localhost"
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    from_address: str = "recert@localhost"
    timeout_seconds: float = Field(default=30.0, gt=0)


class WebSettings(_Table):
    base_url: str = "http://127.0.0.1:8000"
    secret_key: SecretStr | None = None


class CelerySettings(_Table):
    broker_url: str = "redis://localhost:6379/0"


class EnforcementSettings(_Table):
    max_disable_per_run: int = Field(default=25, ge=0)
    max_disable_fraction: float = Field(default=0.10, ge=0.0, le=1.0)
    discovery_freshness_hours: float = Field(default=36.0, gt=0)


class CampaignSettings(_Table):
    attestation_days: int = Field(default=14, ge=1)


RiskLevel = Literal["low", "medium", "high"]


def _default_cadence() -> dict[RiskLevel, int]:
    return {"high": 90, "medium": 180, "low": 365}


class RiskSettings(_Table):
    stale_days: int = Field(default=90, ge=1)
    max_secret_days: int = Field(default=365, ge=1)  # longer-lived secrets are a risk
    # How often each risk tier is reviewed.
    review_cadence_days: dict[RiskLevel, int] = Field(default_factory=_default_cadence)


class OwnerRule(_Table):
    """A naming rule: `app-{team}-{name}-{env}` -> `{team}-owners@acme.com`."""

    pattern: str = Field(min_length=1)
    owner: str = Field(min_length=3)
    tenant: str | None = None

    @model_validator(mode="after")
    def _placeholders_known(self) -> OwnerRule:
        unknown = set(_PLACEHOLDER.findall(self.owner)) - set(_PLACEHOLDER.findall(self.pattern))
        if unknown:
            raise ValueError(f"owner uses {{{sorted(unknown)[0]}}}, which the pattern lacks")
        return self

    def regex(self) -> re.Pattern[str]:
        parts = re.split(r"(\{\w+\})", self.pattern)
        body = "".join(
            f"(?P<{part[1:-1]}>[^-_.\\s]+)" if _PLACEHOLDER.fullmatch(part) else re.escape(part)
            for part in parts
        )
        return re.compile(f"^{body}$", re.IGNORECASE)


class Tenant(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    kind: str
    protected: tuple[str, ...] = ()
    enforcement: EnforcementMode = "dry-run"
    read: TenantSettings
    write: TenantSettings | None = None

    @property
    def write_settings(self) -> TenantSettings:
        """The enforcement credential; the read one when no [tenants.enforce] is given."""
        return self.write or self.read


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    path: Path
    tenants: tuple[Tenant, ...] = ()
    catalog_dir: Path | None = None
    iam_email: str = "iam@localhost"
    database: DatabaseSettings = DatabaseSettings()
    smtp: SmtpSettings = SmtpSettings()
    web: WebSettings = WebSettings()
    celery: CelerySettings = CelerySettings()
    enforcement: EnforcementSettings = EnforcementSettings()
    campaigns: CampaignSettings = CampaignSettings()
    risk: RiskSettings = RiskSettings()
    owner_rules: tuple[OwnerRule, ...] = ()

    def signing_key(self) -> bytes:
        """The key that signs review links; required once links are sent."""
        if self.web.secret_key is None:
            problem = "is required to sign review links (secret_key_env or secret_key_file)"
            raise ConfigError(self.path, "web.secret_key_env", problem)
        return self.web.secret_key.get_secret_value().encode("utf-8")

    def tenant(self, name: str) -> Tenant:
        for tenant in self.tenants:
            if tenant.name == name:
                return tenant
        raise ConfigError(self.path, "tenants", f"no tenant named {name!r}")


_TOP_LEVEL = {
    "tenants",
    "catalog_dir",
    "iam_email",
    "database",
    "smtp",
    "web",
    "celery",
    "enforcement",
    "campaigns",
    "risk",
    "owner_rules",
}
_TABLES: dict[str, type[_Table]] = {
    "database": DatabaseSettings,
    "smtp": SmtpSettings,
    "web": WebSettings,
    "celery": CelerySettings,
    "enforcement": EnforcementSettings,
    "campaigns": CampaignSettings,
    "risk": RiskSettings,
}


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("RECERT_CONFIG") or DEFAULT_CONFIG)


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the config; a missing default file means embedded defaults."""
    env = os.environ if environ is None else environ
    explicit = path is not None or bool(env.get("RECERT_CONFIG"))
    path = path or config_path(env)
    if not path.exists():
        if explicit:
            raise ConfigError(path, "", "config file not found")
        return _apply_overrides(Settings(path=path), env)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(path, "", f"cannot read: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(path, "", f"not valid TOML: {error}") from error
    return _apply_overrides(_parse(path, document, env), env)


def _parse(path: Path, document: dict[str, Any], env: Mapping[str, str]) -> Settings:
    unknown = sorted(set(document) - _TOP_LEVEL)
    if unknown:
        raise ConfigError(path, unknown[0], "unknown key")
    base = path.parent
    values: dict[str, Any] = {"path": path}
    for key, model in _TABLES.items():
        if key in document:
            table = _resolve_secrets(path, key, _as_table(path, key, document[key]), env, base)
            values[key] = _validate(path, key, model, table)
    if "catalog_dir" in document:
        values["catalog_dir"] = base / str(document["catalog_dir"])
    if "iam_email" in document:
        values["iam_email"] = str(document["iam_email"])
    rules = document.get("owner_rules", [])
    if not isinstance(rules, list):
        raise ConfigError(path, "owner_rules", "must be an array of tables ([[owner_rules]])")
    values["owner_rules"] = tuple(
        _validate(path, f"owner_rules[{i}]", OwnerRule, _as_table(path, f"owner_rules[{i}]", r))
        for i, r in enumerate(rules)
    )
    tenants = document.get("tenants", [])
    if not isinstance(tenants, list):
        raise ConfigError(path, "tenants", "must be an array of tables ([[tenants]])")
    values["tenants"] = tuple(_tenant(path, i, t, env, base) for i, t in enumerate(tenants))
    names = [t.name for t in values["tenants"]]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(path, "tenants", f"duplicate tenant name {duplicates[0]!r}")
    return Settings(**values)


def _tenant(path: Path, index: int, raw: Any, env: Mapping[str, str], base: Path) -> Tenant:
    where = f"tenants[{index}]"
    table = _as_table(path, where, raw)
    kind = table.get("kind")
    if kind not in SETTINGS_BY_KIND:
        expected = " | ".join(SETTINGS_BY_KIND)
        raise ConfigError(path, f"{where}.kind", f"must be one of {expected}, got {kind!r}")
    if not table.get("name"):
        raise ConfigError(path, f"{where}.name", "missing")
    where = f"tenants[{index}] ({table['name']})"
    enforce = table.get("enforce")
    connector_values = {k: v for k, v in table.items() if k not in _TENANT_KEYS}
    connector_values["name"] = table["name"]
    resolved = _resolve_secrets(path, where, connector_values, env, base)
    read = _connector_settings(path, where, kind, resolved)
    write = None
    if enforce is not None:
        enforce_where = f"{where}.enforce"
        enforce_values = _resolve_secrets(
            path, enforce_where, _as_table(path, enforce_where, enforce), env, base
        )
        shared = {k: v for k, v in resolved.items() if k not in _CREDENTIAL_KEYS[kind]}
        defaults = WRITE_DEFAULTS.get(kind, {})
        write = _connector_settings(
            path, enforce_where, kind, {**defaults, **shared, **enforce_values}
        )
    extra = {k: table[k] for k in ("protected", "enforcement") if k in table}
    try:
        return Tenant(name=table["name"], kind=kind, read=read, write=write, **extra)
    except ValidationError as error:
        raise _first_error(path, where, error) from None


def _connector_settings(
    path: Path, where: str, kind: str, values: dict[str, Any]
) -> TenantSettings:
    try:
        return settings_for(kind, values)
    except ValidationError as error:
        raise _first_error(path, where, error) from None


def _resolve_secrets(
    path: Path, where: str, table: dict[str, Any], env: Mapping[str, str], base: Path
) -> dict[str, Any]:
    """Turn `X_env` / `X_file` references into `X` values; path keys stay paths."""
    resolved: dict[str, Any] = {}
    for key, value in table.items():
        if key in _NOT_SECRETS:
            resolved[key] = str(base / str(value))
        elif key.endswith("_env"):
            name = str(value)
            if not env.get(name):
                raise ConfigError(path, f"{where}.{key}", f"environment variable {name} is unset")
            resolved[key.removesuffix("_env")] = env[name]
        elif key.endswith("_file"):
            secret_path = base / str(value)
            try:
                resolved[key.removesuffix("_file")] = secret_path.read_text(encoding="utf-8")
            except OSError as error:
                problem = f"cannot read {secret_path}: {error.strerror or error}"
                raise ConfigError(path, f"{where}.{key}", problem) from None
        else:
            resolved[key] = value
    return resolved


def _validate(path: Path, where: str, model: type[_Table], table: dict[str, Any]) -> Any:
    try:
        return model.model_validate(table)
    except ValidationError as error:
        raise _first_error(path, where, error) from None


def _as_table(path: Path, where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(path, where, "must be a table")
    return value


def _first_error(path: Path, where: str, error: ValidationError) -> ConfigError:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    key = f"{where}.{location}" if location else where
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "missing"
    return ConfigError(path, key, message)


def _apply_overrides(settings: Settings, env: Mapping[str, str]) -> Settings:
    updates: dict[str, Any] = {}
    if env.get("RECERT_DATABASE_URL"):
        updates["database"] = DatabaseSettings(url=env["RECERT_DATABASE_URL"])
    if env.get("RECERT_BROKER_URL"):
        updates["celery"] = CelerySettings(broker_url=env["RECERT_BROKER_URL"])
    return settings.model_copy(update=updates) if updates else settings
