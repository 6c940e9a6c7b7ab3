"""The emulator's answers validated against Okta's published OpenAPI schemas, so the
emulator and the connector cannot agree on a field the real API lacks."""

from __future__ import annotations

import functools
import re
from typing import Any

import httpx
import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from tests.conftest import spec_path
from tests.okta.conftest import Org


@functools.cache
def management_components() -> dict[str, Any]:
    path = spec_path("okta", "okta-management-2026.06.3-minimal.yaml")
    with path.open() as handle:
        return yaml.load(handle, Loader=yaml.CSafeLoader)["components"]  # type: ignore[no-any-return]


# Real Okta answers `tokenWindow: null` (wire-examples/api-tokens-list.yaml) where the spec
# declares a non-nullable string whose pattern matches nothing: held to the recording instead.
RECORDED_DEVIATIONS = {"ApiToken": {"tokenWindow"}}


@functools.cache
def sdk_components() -> dict[str, Any]:
    """The SDK's api.yaml: the only copy of the Okta for AI Agents definitions we hold."""
    path = spec_path("okta", "okta-sdk-python-3.4.4.api.yaml")
    with path.open() as handle:
        return yaml.load(handle, Loader=yaml.CSafeLoader)["components"]  # type: ignore[no-any-return]


@functools.cache
def oauth_components() -> dict[str, Any]:
    path = spec_path("okta", "okta-oauth-2026.06.3-minimal.yaml")
    with path.open() as handle:
        return yaml.load(handle, Loader=yaml.CSafeLoader)["components"]  # type: ignore[no-any-return]


def assert_valid(instance: Any, schema_name: str, components: dict[str, Any] | None = None) -> None:
    skip = RECORDED_DEVIATIONS.get(schema_name, set())
    if skip and isinstance(instance, dict):
        instance = {key: value for key, value in instance.items() if key not in skip}
    schema = {
        "$ref": f"#/components/schemas/{schema_name}",
        "components": components or management_components(),
    }
    OAS30Validator(schema).validate(instance)


def get(org: Org, path: str, token: str | None = None, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"SSWS {token or org.emulator.read_token}"}
    with httpx.Client(verify=str(org.ca.ca_bundle)) as http:
        return http.get(org.server.url + path, params=params, headers=headers)


def test_apps_match_their_sign_on_mode_schemas(org: Org) -> None:
    apps = get(org, "/api/v1/apps", limit=200).json()
    builtins = org.emulator.truth.builtins
    checked = 0
    for app in apps:
        if not isinstance(app.get("id"), str) or not isinstance(app.get("label"), str):
            continue  # the seeded malformed records
        if app["status"] not in ("ACTIVE", "INACTIVE", "DELETED"):
            continue
        if app["name"] == "oidc_client":
            assert_valid(app, "OpenIdConnectApplication")
        # Okta's built-ins carry names outside the generated per-mode enums: base schema only.
        assert_valid(app, "Application")
        checked += 1
    assert checked >= len(org.emulator.org.apps) - 3
    assert builtins <= {app.get("id") for app in apps}


def test_grants_tokens_users_and_logs_match_schemas(org: Org) -> None:
    app_id = next(a for a, grants in org.emulator.org.grants.items() if grants)
    for grant in get(org, f"/api/v1/apps/{app_id}/grants").json():
        assert_valid(grant, "OAuth2ScopeConsentGrant")
    for token in get(org, "/api/v1/api-tokens").json():
        assert_valid(token, "ApiToken")
    for user in get(org, "/api/v1/users", filter='status eq "DEPROVISIONED"').json():
        assert_valid(user, "User")
    events = get(org, "/api/v1/logs", limit=1000).json()
    assert events
    for event in events:
        assert_valid(event, "LogEvent")


def test_errors_and_rate_limit_headers(org: Org) -> None:
    missing = get(org, "/api/v1/apps/0oaNope")
    assert missing.status_code == 404
    assert_valid(missing.json(), "Error")
    assert missing.json()["errorCode"] == "E0000007"
    denied = get(org, "/api/v1/apps", token="00bogus")
    assert denied.status_code == 401
    assert denied.json()["errorCode"] == "E0000011"
    org.emulator.faults.throttle_next = 1
    throttled = get(org, "/api/v1/users")
    assert throttled.status_code == 429
    assert_valid(throttled.json(), "Error")
    assert throttled.json()["errorCode"] == "E0000047"
    assert throttled.headers["X-Rate-Limit-Remaining"] == "0"
    for response in (missing, denied, throttled):
        for header in ("X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset"):
            assert int(response.headers[header]) >= 0
        assert response.headers["Date"].endswith("GMT")


def test_link_header_sends_self_then_next(org: Org) -> None:
    first = get(org, "/api/v1/users", limit=5)
    link = first.headers["Link"]
    assert re.fullmatch(r'<[^>]+>; rel="self", <[^>]+after=[^>]+>; rel="next"', link)
    assert "limit=5" in link.split(",")[1]


@pytest.mark.parametrize("wire", ["api-tokens-list.yaml", "apps-grants.yaml"])
def test_recorded_okta_answers_fit_the_same_schemas(wire: str) -> None:
    """The recordings of real Okta validate against the schemas the emulator is held to."""
    import json

    with spec_path("okta", "wire-examples", wire).open() as handle:
        interactions = yaml.safe_load(handle)["interactions"]
    for interaction in interactions:
        uri, body = interaction["request"]["uri"], interaction["response"]["body"]["string"]
        if interaction["request"]["method"] != "GET" or not body:
            continue
        records = json.loads(body)
        schema = "ApiToken" if "api-tokens" in uri else "OAuth2ScopeConsentGrant"
        for record in records if isinstance(records, list) else [records]:
            if "/grants" in uri or "api-tokens" in uri:
                assert_valid(record, schema)


def test_api_tokens_secrets_keys_groups_and_consents_match_schemas(org: Org) -> None:
    truth = org.emulator.truth
    page = get(org, "/api/v1/api-tokens")
    assert len(page.json()) <= 20
    assert page.headers["Link"]
    for token in page.json():
        assert_valid(token, "ApiToken")
    app_id = next(iter(truth.secrets))
    secrets = get(org, f"/api/v1/apps/{app_id}/credentials/secrets").json()
    assert 1 <= len(secrets) <= 2
    for secret in secrets:
        assert_valid(secret, "OAuth2ClientSecret")
    app_id = next(iter(truth.app_keys))
    for key in get(org, f"/api/v1/apps/{app_id}/credentials/jwks").json():
        assert_valid(key, "OAuth2ClientJsonSigningKeyResponse")
    group_id = next(iter(truth.agent_group.values()))
    assert_valid(get(org, f"/api/v1/groups/{group_id}").json(), "Group")
    for member in get(org, f"/api/v1/groups/{group_id}/users").json():
        assert_valid(member, "User")
    app_id = next(iter(truth.user_grants))
    consents = [
        g for g in get(org, f"/api/v1/apps/{app_id}/grants").json() if g["source"] == "END_USER"
    ]
    assert consents
    assert all(g["userId"] for g in consents)
    for grant in consents:
        assert_valid(grant, "OAuth2ScopeConsentGrant")
    grant_events = get(
        org, "/api/v1/logs", limit=5, filter='eventType eq "app.oauth2.token.grant.access_token"'
    ).json()
    assert grant_events
    for event in grant_events:
        assert_valid(event, "LogEvent")
        assert event["client"]["id"]


def test_ai_agents_match_the_published_schemas(org: Org) -> None:
    """Shapes from the Okta for AI Agents definitions (SDK api.yaml): the list is
    `{"data", "_links"}`, 20 a page by default, the next page also in Link."""
    components = sdk_components()
    emulator = org.emulator
    emulator.org.agents.update(
        {
            f"wlpExtra{i:03d}": {
                **next(iter(emulator.org.agents.values())),
                "id": f"wlpExtra{i:03d}",
            }
            for i in range(20)
        }
    )
    page = get(org, "/workload-principals/api/v1/ai-agents")
    body = page.json()
    assert set(body) == {"data", "_links"}
    assert len(body["data"]) == 20
    assert "next" in body["_links"]
    assert 'rel="next"' in page.headers["Link"]
    for agent in body["data"]:
        # `owners` is not in the published AIAgent schema: the emulator's stand-in for
        # owners public clients read from the object (provider-facts.md).
        assert_valid({k: v for k, v in agent.items() if k != "owners"}, "AIAgent", components)
    agent_id = next(iter(emulator.truth.agent_owners))
    keys = get(org, f"/workload-principals/api/v1/ai-agents/{agent_id}/credentials/jwks").json()
    for key in keys["data"]:
        assert_valid(key, "AgentJsonSigningKeyResponse", components)
    connections = get(org, f"/workload-principals/api/v1/ai-agents/{agent_id}/connections").json()
    assert_valid(connections, "ManagedConnectionList", components)
    owners = get(org, f"/workload-principals/api/v1/ai-agents/{agent_id}/owners")
    assert owners.status_code == 405
    assert_valid(owners.json(), "Error")
    with httpx.Client(verify=str(org.ca.ca_bundle)) as http:
        headers = {"Authorization": f"SSWS {emulator.write_token}"}
        url = (
            f"{org.server.url}/workload-principals/api/v1/ai-agents/{agent_id}/lifecycle/deactivate"
        )
        started = http.post(url, headers=headers)
        done = http.get(started.headers["Location"], headers=headers)
    assert started.status_code == 202
    assert_valid(started.json(), "AIAgentOperationResponse", components)
    assert_valid(done.json(), "AIAgentOperationResponse", components)
    assert done.json()["status"] == "COMPLETED"
    emulator.ai_agents_subscribed = False
    refused = get(org, "/workload-principals/api/v1/ai-agents")
    assert refused.status_code == 401
    assert_valid(refused.json(), "Error")


def test_token_endpoint_answers_match_the_oauth_spec(org: Org) -> None:
    """Errors are `OAuthError`. A DPoP token answers `token_type: DPoP` (RFC 9449 5), a
    value the spec's Bearer | N_A enum does not list: checked apart."""
    components = oauth_components()
    with httpx.Client(verify=str(org.ca.ca_bundle)) as http:
        url = org.server.url + "/oauth2/v1/token"
        no_proof = http.post(url, data={"grant_type": "client_credentials"})
        bad_grant = http.post(url, data={"grant_type": "password"})
    assert_valid(no_proof.json(), "OAuthError", components)
    assert_valid(bad_grant.json(), "OAuthError", components)
    assert bad_grant.json()["error"] == "unsupported_grant_type"
