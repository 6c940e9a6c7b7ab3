"""Per-provider connection settings, validated from a tenant's config table.

Secrets arrive here already resolved: the config layer turns `X_env` / `X_file` keys into
`X` before validation, so connectors never read the environment or guess at files.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, model_validator

HttpsUrl = Annotated[AnyHttpUrl, Field()]


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
    scopes: tuple[str, ...] = (
        "okta.apps.read",
        "okta.users.read",
        "okta.logs.read",
        "okta.appGrants.read",
        "okta.apiTokens.read",
    )
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

SETTINGS_BY_KIND: dict[str, type[_Settings]] = {
    "okta": OktaSettings,
    "entra": EntraSettings,
    "google": GoogleSettings,
}


def settings_for(kind: str, values: dict[str, Any]) -> TenantSettings:
    """Validate one tenant table (secrets resolved) into its provider's settings."""
    model = SETTINGS_BY_KIND[kind]
    return model.model_validate({**values, "kind": kind})  # type: ignore[return-value]
