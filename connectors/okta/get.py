"""Okta API calls, and nothing else: paths, query forms and page sizes.

Each list asks for the largest page its endpoint allows (cloudquery PR #17696: the
documented default is not the maximum).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from connectors.okta.client import ApiResult, OktaClient

LOG_PAGE = 1000  # /api/v1/logs `limit` 0-1000 (management spec)
TOKEN_PAGE = 200  # /api/v1/api-tokens `limit` 1-200, default 20 (provider-facts.md)
AGENT_PAGE = 200  # ai-agents and their connections: `limit` 1-200, default 20 (SDK api.yaml)
GROUP_MEMBER_PAGE = 1000  # /api/v1/groups/{id}/users `limit` default 1000 (management spec)
DEPROVISIONED_FILTER = 'status eq "DEPROVISIONED"'
CREATE_EVENT = "application.lifecycle.create"
# Token grants carry the OAuth client in `client.id` (and, for client credentials, in
# `actor.id`): one event type per authorization server kind, for every OIDC client.
TOKEN_GRANT_EVENTS = (
    "app.oauth2.token.grant.access_token",  # org authorization server
    "app.oauth2.as.token.grant.access_token",  # custom authorization servers
)
AGENTS = "/workload-principals/api/v1/ai-agents"


def okta_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def list_apps(client: OktaClient, page_size: int) -> AsyncIterator[list[Any]]:
    return client.pages("/api/v1/apps", {"limit": page_size})


async def list_grants(client: OktaClient, app_id: str) -> Any:
    return (await client.call("GET", f"/api/v1/apps/{app_id}/grants", object_id=app_id)).data


async def list_client_secrets(client: OktaClient, app_id: str) -> Any:
    path = f"/api/v1/apps/{app_id}/credentials/secrets"
    return (await client.call("GET", path, object_id=app_id)).data


async def list_app_keys(client: OktaClient, app_id: str) -> Any:
    path = f"/api/v1/apps/{app_id}/credentials/jwks"
    return (await client.call("GET", path, object_id=app_id)).data


def list_api_tokens(client: OktaClient) -> AsyncIterator[list[Any]]:
    return client.pages("/api/v1/api-tokens", {"limit": TOKEN_PAGE})


def list_users(client: OktaClient, page_size: int) -> AsyncIterator[list[Any]]:
    return client.pages("/api/v1/users", {"limit": page_size})


def list_deprovisioned_users(client: OktaClient, page_size: int) -> AsyncIterator[list[Any]]:
    """Listing users omits DEPROVISIONED ones; departed creators are found here."""
    return client.pages("/api/v1/users", {"limit": page_size, "filter": DEPROVISIONED_FILTER})


async def get_user(client: OktaClient, user_id: str) -> Any:
    return (await client.call("GET", f"/api/v1/users/{user_id}", object_id=user_id)).data


async def get_group(client: OktaClient, group_id: str) -> Any:
    return (await client.call("GET", f"/api/v1/groups/{group_id}", object_id=group_id)).data


def list_group_members(client: OktaClient, group_id: str) -> AsyncIterator[list[Any]]:
    path = f"/api/v1/groups/{group_id}/users"
    return client.pages(path, {"limit": GROUP_MEMBER_PAGE}, object_id=group_id)


def list_log_events(
    client: OktaClient, since: datetime, until: datetime
) -> AsyncIterator[list[Any]]:
    """App creations and OAuth token grants in one bounded window (`since` and `until`
    both given: a polling query without `until` never ends)."""
    kinds = (CREATE_EVENT, *TOKEN_GRANT_EVENTS)
    params = {
        "since": okta_time(since),
        "until": okta_time(until),
        "filter": " or ".join(f'eventType eq "{kind}"' for kind in kinds),
        "sortOrder": "ASCENDING",
        "limit": LOG_PAGE,
    }
    return client.pages("/api/v1/logs", params)


def list_agents(client: OktaClient) -> AsyncIterator[list[Any]]:
    return client.pages(AGENTS, {"limit": AGENT_PAGE})


def list_agent_keys(client: OktaClient, agent_id: str) -> AsyncIterator[list[Any]]:
    return client.pages(f"{AGENTS}/{agent_id}/credentials/jwks", {}, object_id=agent_id)


def list_agent_connections(client: OktaClient, agent_id: str) -> AsyncIterator[list[Any]]:
    path = f"{AGENTS}/{agent_id}/connections"
    return client.pages(path, {"limit": AGENT_PAGE}, object_id=agent_id)


def list_agent_owners(client: OktaClient, agent_id: str) -> AsyncIterator[list[Any]]:
    """Not in the published Okta for AI Agents definitions (one lab saw 405 on every
    method, provider-facts.md): tried only when the agent object carries no owners."""
    path = f"{AGENTS}/{agent_id}/owners"
    return client.pages(path, {"limit": AGENT_PAGE}, object_id=agent_id)


async def get_agent(client: OktaClient, agent_id: str) -> Any:
    return (await client.call("GET", f"{AGENTS}/{agent_id}", object_id=agent_id)).data


async def set_agent_lifecycle(client: OktaClient, agent_id: str, action: str) -> ApiResult:
    """202 with an AIAgentOperationResponse to poll (its types include ai-agent:Activate
    and ai-agent:Deactivate, SDK api.yaml), or a plain 200."""
    path = f"{AGENTS}/{agent_id}/lifecycle/{action}"
    return await client.call("POST", path, object_id=agent_id)


async def get_operation(client: OktaClient, path: str, object_id: str) -> Any:
    return (await client.call("GET", path, object_id=object_id)).data


async def get_app(client: OktaClient, app_id: str) -> Any:
    return (await client.call("GET", f"/api/v1/apps/{app_id}", object_id=app_id)).data


async def set_app_lifecycle(client: OktaClient, app_id: str, action: str) -> None:
    await client.call("POST", f"/api/v1/apps/{app_id}/lifecycle/{action}", object_id=app_id)


async def get_grant(client: OktaClient, app_id: str, grant_id: str) -> Any:
    path = f"/api/v1/apps/{app_id}/grants/{grant_id}"
    return (await client.call("GET", path, object_id=grant_id)).data


async def delete_grant(client: OktaClient, app_id: str, grant_id: str) -> None:
    path = f"/api/v1/apps/{app_id}/grants/{grant_id}"
    await client.call("DELETE", path, object_id=grant_id)


async def create_grant(client: OktaClient, app_id: str, issuer: str, scope_id: str) -> Any:
    body = {"issuer": issuer, "scopeId": scope_id}
    path = f"/api/v1/apps/{app_id}/grants"
    return (await client.call("POST", path, body=body, object_id=app_id)).data
