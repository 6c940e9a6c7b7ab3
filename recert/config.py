"""The one TOML config file, validated into typed settings.

Secrets are never inline: a key ending in `_env` names an environment variable and one
ending in `_file` names a file; both become the key without the suffix (`api_token_env`
-> `api_token`). Loading checks every key, type and path but reads no secret: a secret
field holds a `SecretReference`, read when a command uses it, so reading a report needs
no provider token. Every problem, at load or at use, is reported as one line that names
the file, the key and what is wrong.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from connectors.settings import (
    SETTINGS_BY_KIND,
    WRITE_DEFAULTS,
    SecretReference,
    TenantSettings,
    settings_for,
)

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
# One mailbox; no line breaks or spaces (it goes into mail headers).
Mailbox = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)]


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


class OidcSettings(_Table):
    """IAM admins sign in to the console through any OpenID Connect provider."""

    issuer: str = Field(min_length=1)  # e.g. https://acme.okta.com/oauth2/default
    discovery_url: str | None = None  # default: issuer + /.well-known/openid-configuration
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    admin_emails: tuple[str, ...] = ()
    group_claim: str = "groups"  # the ID token claim listing the user's groups
    admin_groups: tuple[str, ...] = ()
    ca_bundle: str | None = None  # PEM of extra trusted CAs for the provider's TLS
    session_hours: float = Field(default=8.0, gt=0, le=24 * 7)

    @model_validator(mode="after")
    def _someone_is_admin(self) -> OidcSettings:
        if not self.admin_emails and not self.admin_groups:
            raise ValueError("name the admins: admin_emails and/or admin_groups")
        return self

    @property
    def metadata_url(self) -> str:
        return self.discovery_url or (self.issuer.rstrip("/") + "/.well-known/openid-configuration")


class WebSettings(_Table):
    base_url: str = "http://127.0.0.1:8000"
    secret_key: SecretStr | None = None
    oidc: OidcSettings | None = None  # the IAM console's sign-in; no console without it


class CelerySettings(_Table):
    broker_url: str = "redis://localhost:6379/0"
    # A job lock expires this long after its holder's last heartbeat (a killed run's lock).
    lock_ttl_seconds: float = Field(default=60.0, ge=1.0, le=3600.0)
    # Before every key Recert and Celery keep in Redis: deployments can share one Redis.
    key_prefix: str = ""


class EnforcementSettings(_Table):
    max_disable_per_run: int = Field(default=25, ge=0)
    max_disable_fraction: float = Field(default=0.10, ge=0.0, le=1.0)
    discovery_freshness_hours: float = Field(default=36.0, gt=0)


class CampaignSettings(_Table):
    attestation_days: int = Field(default=14, ge=1)


class NoticeSettings(_Table):
    # Days before a credential expires when its owner is told; an empty list turns it off.
    credential_expiry_days: tuple[StrictInt, ...] = (60, 30, 7)

    @field_validator("credential_expiry_days")
    @classmethod
    def _positive_and_distinct(cls, days: tuple[int, ...]) -> tuple[int, ...]:
        if any(day < 1 for day in days):
            raise ValueError(f"must be whole days of 1 or more, got {list(days)}")
        if len(set(days)) != len(days):
            raise ValueError(f"must not repeat a day, got {list(days)}")
        return tuple(sorted(days, reverse=True))


RiskLevel = Literal["low", "medium", "high"]


def _default_cadence() -> dict[RiskLevel, int]:
    return {"high": 90, "medium": 180, "low": 365}


def _every_tier(cadence: dict[RiskLevel, int]) -> dict[RiskLevel, int]:
    missing = [tier for tier in ("high", "medium", "low") if tier not in cadence]
    if missing:
        raise ValueError(f"must set high, medium and low (missing {', '.join(missing)})")
    return cadence


class RiskSettings(_Table):
    stale_days: int = Field(default=90, ge=1)
    max_secret_days: int = Field(default=365, ge=1)  # longer-lived secrets are a risk
    # How often each risk tier is reviewed.
    review_cadence_days: Annotated[
        dict[RiskLevel, Annotated[int, Field(gt=0)]], AfterValidator(_every_tier)
    ] = Field(default_factory=_default_cadence)


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
    iam_email: Mailbox = "iam@localhost"
    database: DatabaseSettings = DatabaseSettings()
    smtp: SmtpSettings = SmtpSettings()
    web: WebSettings = WebSettings()
    celery: CelerySettings = CelerySettings()
    enforcement: EnforcementSettings = EnforcementSettings()
    campaigns: CampaignSettings = CampaignSettings()
    risk: RiskSettings = RiskSettings()
    notices: NoticeSettings = NoticeSettings()
    owner_rules: tuple[OwnerRule, ...] = ()

    def signing_key(self) -> bytes:
        """The key that signs review links; required once links are sent."""
        if self.web.secret_key is None:
            problem = "is required to sign review links (secret_key_env or secret_key_file)"
            raise ConfigError(self.path, "web.secret_key_env", problem)
        return self.web.secret_key.get_secret_value().encode("utf-8")

    def tenant(self, name: str) -> Tenant:
        """The configured tenant; its secrets are read only when its settings are used."""
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
    "notices",
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
    "notices": NoticeSettings,
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
            table = _as_table(path, key, document[key])
            table = _resolve_secrets(path, key, table, env, base, model)
            if key == "web" and "oidc" in table:  # the one nested table with secrets
                oidc = _as_table(path, "web.oidc", table["oidc"])
                table["oidc"] = _resolve_secrets(path, "web.oidc", oidc, env, base, OidcSettings)
            values[key] = _validate(path, key, model, table)
    if "catalog_dir" in document:
        values["catalog_dir"] = _catalog_dir(path, base, document["catalog_dir"])
    if "iam_email" in document:
        values["iam_email"] = document["iam_email"]
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
    try:
        return Settings(**values)
    except ValidationError as error:
        raise _first_error(path, "", error) from None


def _catalog_dir(path: Path, base: Path, value: Any) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, "catalog_dir", "must be a folder path (a string)")
    folder = base / value
    if folder.exists() and not folder.is_dir():
        raise ConfigError(path, "catalog_dir", f"{folder} is not a folder")
    return folder


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
    model = SETTINGS_BY_KIND[kind]
    resolved = _resolve_secrets(path, where, connector_values, env, base, model)
    read = _connector_settings(path, where, kind, resolved)
    write = None
    if enforce is not None:
        enforce_where = f"{where}.enforce"
        enforce_values = _resolve_secrets(
            path, enforce_where, _as_table(path, enforce_where, enforce), env, base, model
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
    path: Path,
    where: str,
    table: dict[str, Any],
    env: Mapping[str, str],
    base: Path,
    model: type[BaseModel],
) -> dict[str, Any]:
    """Turn `X_env` / `X_file` keys into `X`: a reference, read when used, for a secret
    field; the value, read now, for any other field. Path keys become absolute paths."""
    resolved: dict[str, Any] = {}
    for key, value in table.items():
        if key in _NOT_SECRETS:
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(path, f"{where}.{key}", "must be a file path (a string)")
            resolved[key] = str(base / value)
        elif key.endswith(("_env", "_file")):
            target = key.rsplit("_", 1)[0]
            reference = _reference(path, f"{where}.{key}", value, env, base)
            field = model.model_fields.get(target)
            if field is None or SecretStr in (field.annotation, *get_args(field.annotation)):
                resolved[target] = reference  # an unknown key is reported by validation
            else:
                resolved[target] = reference.get_secret_value()
        else:
            resolved[key] = value
    return resolved


def _reference(
    path: Path, key: str, value: Any, env: Mapping[str, str], base: Path
) -> SecretReference:
    """A secret read only when used; reading it fails with this config's one line."""
    if not isinstance(value, str) or not value.strip():
        what = "an environment variable" if key.endswith("_env") else "a file"
        raise ConfigError(path, key, f"must name {what} (a string)")
    if key.endswith("_env"):

        def from_environment() -> str:
            secret = env.get(value)
            if not secret:
                raise ConfigError(path, key, f"environment variable {value} is unset")
            return secret

        return SecretReference(f"environment variable {value}", from_environment)
    secret_path = base / value

    def from_file() -> str:
        try:
            return secret_path.read_text(encoding="utf-8")
        except OSError as error:
            problem = f"cannot read {secret_path}: {error.strerror or error}"
            raise ConfigError(path, key, problem) from None

    return SecretReference(f"file {secret_path}", from_file)


def require_secrets(settings: BaseModel) -> None:
    """Read every secret `settings` names now, so a missing one stops a command before it
    starts any work (and records nothing half done)."""
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value.get_secret_value()


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
    key = ".".join(part for part in (where, location) if part)
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "missing"
    elif first["type"] == "string_pattern_mismatch":
        message = "must be an email address"
    return ConfigError(path, key, message)


def _apply_overrides(settings: Settings, env: Mapping[str, str]) -> Settings:
    updates: dict[str, Any] = {}
    if env.get("RECERT_DATABASE_URL"):
        updates["database"] = DatabaseSettings(url=env["RECERT_DATABASE_URL"])
    if env.get("RECERT_BROKER_URL"):
        updates["celery"] = settings.celery.model_copy(
            update={"broker_url": env["RECERT_BROKER_URL"]}
        )
    return settings.model_copy(update=updates) if updates else settings
