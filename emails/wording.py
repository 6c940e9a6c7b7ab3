"""Plain words for Recert's codes, shared by the emails and the review page so both
describe an app the same way."""

from __future__ import annotations

PROVIDERS = {"okta": "Okta", "entra": "Microsoft Entra ID", "google": "Google"}
KINDS = {
    "oauth_app": "OAuth app",
    "service_principal": "Service principal",
    "service_account": "Service account",
    "third_party_app": "Third-party app",
    "api_token": "API token",
    "managed_identity": "Managed identity",
    "agent_identity": "AI agent identity",
}
CONSENTS = {
    "admin": "granted by an administrator for the whole organisation",
    "user": "granted by individual users",
    "application": "app-only access, no signed-in user needed",
    "domain_wide": "domain-wide delegation: can act as any user",
}
CREDENTIALS = {
    "secret": "Client secret",
    "certificate": "Certificate",
    "key": "Key",
    "api_token": "API token",
    "jwks": "Public key set (JWKS)",
    "federated": "Federated credential (no secret: an outside issuer's tokens)",
    "managed_certificate": "Certificate rotated by Azure",
}
ORPHAN_REASONS = {
    "no_owner": "No owner is recorded anywhere",
    "owner_departed": "The owner has left the company",
    "owner_unresolvable": "The recorded owner matches no active person",
    "owner_is_app": "The recorded owner is another app, not a person",
    "not_mine": "The person asked to review it said it is not theirs",
    "owner_unreachable": "Mail to the owner bounced: they cannot be reached",
}
