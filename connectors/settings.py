"""Per-provider connection settings, validated from a tenant's config table.

Secrets arrive as `SecretStr` values: the config layer turns each `X_env` / `X_file` key
into a `SecretReference` for `X`, read only when a connector asks for its value, so
connectors never read the environment or guess at files, and a command that never
connects needs no credential at all.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

HttpsUrl = Annotated[AnyHttpUrl, Field()]

# Okta API scopes (developer.okta.com/docs/api/oauth2, "Okta admin management scopes").
OKTA_READ_SCOPES = (
    "okta.apps.read",
    "okta.users.read",
    "okta.logs.read",
    "okta.appGrants.read",
    "okta.apiTokens.read",
    "okta.groups.read",
    "okta.aiAgents.read",
)
OKTA_WRITE_SCOPES = ("okta.apps.manage", "okta.appGrants.manage", "okta.aiAgents.manage")
# Only an org subscribed to Okta for AI Agents can grant the aiAgents scopes, and groups are
# read only for agents' group owners: when the token endpoint refuses just these, the
# connector carries on without them and reports AI agents as not visible.
OKTA_OPTIONAL_SCOPES = frozenset({"okta.aiAgents.read", "okta.aiAgents.manage", "okta.groups.read"})


class SecretReference(SecretStr):
    """A secret named by the config, read each time it is used (so rotation just works).

    `read` raises the config layer's own one-line error when the variable is unset or the
    file unreadable; comparing or hashing settings never reads it.
    """

    def __init__(self, source: str, read: Callable[[], str]) -> None:
        super().__init__("")
        self.source = source  # "environment variable OKTA_TOKEN" or "file /etc/recert/key"
        self._read = read

    def get_secret_value(self) -> str:
        return self._read()

    def _display(self) -> str:
        return "**********"

    def __bool__(self) -> bool:  # named, so present (SecretStr would count its characters)
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretReference) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    ca_bundle: str | None = None  # PEM file of extra trusted CAs (TLS-inspecting proxy, emulator)

    @field_validator("ca_bundle")
    @classmethod
    def _ca_bundle_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"no such file: {value}")
        return value


class OktaSettings(_Settings):
    kind: Literal["okta"] = "okta"
    org_url: HttpsUrl
    api_token: SecretStr | None = None
    client_id: str | None = None
    private_key: SecretStr | None = None  # PEM or JWK of the service app, for private_key_jwt
    key_id: str | None = None
    scopes: tuple[str, ...] = OKTA_READ_SCOPES
    # Demonstrating Proof-of-Possession for private_key_jwt: Okta turns it on by default for
    # API service apps created since 2024; `dpop = false` for apps that do not require it.
    dpop: bool = True
    rate_limit_reserve: float = Field(default=0.3, ge=0.0, lt=1.0)  # share of each bucket left free
    page_size: int = Field(default=200, ge=1, le=200)

    @model_validator(mode="after")
    def _one_auth_mode(self) -> OktaSettings:
        if self.api_token is None and not (self.client_id and self.private_key):
            raise ValueError("needs api_token_env, or client_id with private_key_file")
        return self


class EntraSettings(_Settings):
    kind: Literal["entra"] = "entra"
    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    certificate: SecretStr | None = None  # PEM with the private key
    graph_url: HttpsUrl = AnyHttpUrl("https://graph.microsoft.com")
    authority: HttpsUrl = AnyHttpUrl("https://login.microsoftonline.com")
    page_size: int = Field(default=999, ge=1, le=999)
    # A backstop: nightly delta rounds follow directory audits, and this often a full round
    # re-reads everything.
    full_sync_days: int = Field(default=7, ge=1)
    # Graph's resource units per 10 s for this app in this tenant: 3,500 under 50 users,
    # 5,000 up to 500, 8,000 above (learn.microsoft.com/graph/throttling-limits).
    resource_units_per_10s: int = Field(default=3500, ge=100)
    quota_reserve: float = Field(default=0.3, ge=0.0, lt=1.0)  # share left to other work

    @model_validator(mode="after")
    def _one_credential(self) -> EntraSettings:
        if self.client_secret is None and self.certificate is None:
            raise ValueError("needs client_secret_env or certificate_file")
        return self


class KnownDelegation(BaseModel):
    """A domain-wide delegation client IAM registered (no API lists them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(pattern=r"^[\w.-]+$")
    scopes: tuple[str, ...] = Field(min_length=1)
    name: str | None = None


_SCOPE_SPLIT = re.compile(r"[\s,]+")


def parse_delegation_clients(text: str) -> tuple[KnownDelegation, ...]:
    """CSV with a header: `client_id,scopes[,name]`; scopes separated by spaces or commas
    (the Admin console's domain-wide delegation page shows the same two columns)."""
    reader = csv.DictReader(io.StringIO(text))
    header = set(reader.fieldnames or ())
    if not {"client_id", "scopes"} <= header or not header <= {"client_id", "scopes", "name"}:
        raise ValueError("the header must be client_id,scopes[,name]")
    clients: dict[str, KnownDelegation] = {}
    for line, row in enumerate(reader, start=2):
        client_id = (row.get("client_id") or "").strip()
        try:
            clients[client_id] = KnownDelegation(
                client_id=client_id,
                scopes=tuple(s for s in _SCOPE_SPLIT.split(row.get("scopes") or "") if s),
                name=(row.get("name") or "").strip() or None,
            )
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"line {line}: {where}: {first['msg']}") from None
    return tuple(clients.values())


class GoogleSettings(_Settings):
    kind: Literal["google"] = "google"
    credentials: SecretStr  # the service-account key JSON
    admin_subject: str = Field(min_length=3)
    customer: str = "my_customer"
    projects: tuple[str, ...] = ()
    directory_url: HttpsUrl = AnyHttpUrl("https://admin.googleapis.com/")
    reports_url: HttpsUrl = AnyHttpUrl("https://admin.googleapis.com/")
    iam_url: HttpsUrl = AnyHttpUrl("https://iam.googleapis.com/")
    token_uri: HttpsUrl = AnyHttpUrl("https://oauth2.googleapis.com/token")
    users_per_chunk: int = Field(default=500, ge=1, le=500)
    # Directory and Reports share this many queries per window, per Cloud project and
    # impersonated admin; Recert leaves `rate_limit_reserve` of it to other tools.
    quota_per_minute: int = Field(default=2400, ge=1)
    quota_window_seconds: float = Field(default=60.0, gt=0)  # 60 on Google; emulators scale it
    rate_limit_reserve: float = Field(default=0.2, ge=0.0, lt=1.0)
    # Nights between runs read only what changed; every this many days a full pass.
    full_sync_days: int = Field(default=7, ge=1)
    # `delegation_clients_file`: the CSV resolves into its text; parsed here.
    delegation_clients: tuple[KnownDelegation, ...] = ()

    @field_validator("delegation_clients", mode="before")
    @classmethod
    def _parse_delegation_clients(cls, value: Any) -> Any:
        return parse_delegation_clients(value) if isinstance(value, str) else value


TenantSettings = OktaSettings | EntraSettings | GoogleSettings

# What a [tenants.enforce] table gets for keys it leaves out (the read table's credential
# keys are never inherited): enforcement needs write scopes, not the read defaults.
WRITE_DEFAULTS: dict[str, dict[str, Any]] = {"okta": {"scopes": OKTA_WRITE_SCOPES}}

SETTINGS_BY_KIND: dict[str, type[_Settings]] = {
    "okta": OktaSettings,
    "entra": EntraSettings,
    "google": GoogleSettings,
}


def settings_for(kind: str, values: dict[str, Any]) -> TenantSettings:
    """Validate one tenant table (secrets as references) into its provider's settings."""
    model = SETTINGS_BY_KIND[kind]
    return model.model_validate({**values, "kind": kind})  # type: ignore[return-value]
