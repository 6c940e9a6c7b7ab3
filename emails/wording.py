"""Plain words for Recert's codes, shared by the emails and the review page so both
describe an app the same way."""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources

PROVIDERS = {"okta": "Okta", "entra": "Microsoft Entra ID", "google": "Google"}
KINDS = {
    "oauth_app": "OAuth app",
    "service_principal": "Service principal",
    "service_account": "Service account",
    "third_party_app": "Third-party app",
    "api_token": "API token",
    "managed_identity": "Managed identity",
    "agent_identity": "AI agent",
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
# How to rotate, by provider, or "provider:variant" where one provider has several ways.
ROTATION = {
    "okta": "In the Okta Admin Console, open the app's General tab and generate a new client "
    "secret; update what uses it, then deactivate and delete the old one.",
    "okta:api_token": "In the Okta Admin Console (Security > API > Tokens), create a new token "
    "as the admin it should act as; update what uses it, then revoke the old one. A token "
    "renews itself each time it is used, so one about to expire has not been used for weeks.",
    "entra": "In the app registration's Certificates & secrets, add a new secret or "
    "certificate; update what uses it, then delete the old one.",
    "entra:enterprise_app": "In the enterprise app's Single sign-on page, add a new signing "
    "certificate and make it active; update the other side, then delete the old one.",
    "google": "In the service account's Keys tab, add a new key; update what uses it, then "
    "delete the old key.",
}
ORPHAN_REASONS = {
    "no_owner": "No owner is recorded anywhere",
    "owner_departed": "The owner has left the company",
    "owner_unresolvable": "The recorded owner matches no active person",
    "owner_is_app": "The recorded owner is another app, not a person",
    "not_mine": "The person asked to review it said it is not theirs",
    "owner_unreachable": "Mail to the owner bounced: they cannot be reached",
    "user_consented": "Users consented to it themselves and no catalog entry names an owner",
}


def permission_description(name: str) -> str | None:
    """Plain words for an Okta or Google scope, from the shipped data (emails/data)."""
    return _scope_words().get(name)


@cache
def _scope_words() -> dict[str, str]:
    words: dict[str, str] = {}
    for data in ("okta-scopes.csv", "google-scopes.csv"):
        text = resources.files("emails").joinpath("data", data).read_text("utf-8")
        words.update(
            (row["Value"], row["Description"]) for row in csv.DictReader(text.splitlines())
        )
    return words
