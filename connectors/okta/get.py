"""Okta API calls, and nothing else: paths, query forms and page sizes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from connectors.okta.client import OktaClient

LOG_PAGE = 1000  # the System Log's largest page
DEPROVISIONED_FILTER = 'status eq "DEPROVISIONED"'
CREATE_EVENT = "application.lifecycle.create"
USE_EVENTS = (
    "app.oauth2.token.grant.access_token",  # org authorization server (client credentials)
    "app.oauth2.as.token.grant.access_token",  # custom authorization servers
    "user.authentication.sso",  # a person signed in to the app
)


def okta_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def list_apps(client: OktaClient, page_size: int) -> AsyncIterator[list[Any]]:
    return client.pages("/api/v1/apps", {"limit": page_size})


async def list_grants(client: OktaClient, app_id: str) -> Any:
    return (await client.call("GET", f"/api/v1/apps/{app_id}/grants", object_id=app_id)).data


async def list_api_tokens(client: OktaClient) -> Any:
    return (await client.call("GET", "/api/v1/api-tokens")).data


def list_users(client: OktaClient, page_size: int) -> AsyncIterator[list[Any]]:
    return client.pages("/api/v1/users", {"limit": page_size})


def list_deprovisioned_users(client: OktaClient, page_size: int) -> AsyncIterator[list[Any]]:
    """Listing users omits DEPROVISIONED ones; departed creators are found here."""
    return client.pages("/api/v1/users", {"limit": page_size, "filter": DEPROVISIONED_FILTER})


async def get_user(client: OktaClient, user_id: str) -> Any:
    return (await client.call("GET", f"/api/v1/users/{user_id}", object_id=user_id)).data


def list_owner_and_use_events(
    client: OktaClient, since: datetime, until: datetime
) -> AsyncIterator[list[Any]]:
    """App creations and uses in one bounded walk: the log bucket is the smallest one."""
    expression = " or ".join(f'eventType eq "{kind}"' for kind in (CREATE_EVENT, *USE_EVENTS))
    params = {
        "since": okta_time(since),
        "until": okta_time(until),
        "filter": expression,
        "sortOrder": "ASCENDING",
        "limit": LOG_PAGE,
    }
    return client.pages("/api/v1/logs", params)


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
