"""Per-provider connection settings, validated from a tenant's config table.

Secrets arrive here already resolved: the config layer turns `X_env` / `X_file` keys into
`X` before validation, so connectors never read the environment or guess at files.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, model_validator

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


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    ca_bundle: str | None = None  # PEM file of extra trusted CAs (TLS-inspecting proxy, emulator)


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
    # Delta rounds miss grant changes on unchanged principals: enumerate in full this often.
    full_sync_days: int = Field(default=7, ge=1)

    @model_validator(mode="after")
    def _one_credential(self) -> EntraSettings:
        if self.client_secret is None and self.certificate is None:
            raise ValueError("needs client_secret_env or certificate_file")
        return self


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
    """Validate one tenant table (secrets resolved) into its provider's settings."""
    model = SETTINGS_BY_KIND[kind]
    return model.model_validate({**values, "kind": kind})  # type: ignore[return-value]
