"""Graph calls only: what is read, with which `$select`, and nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING
from urllib.parse import quote

from connectors.base import NotFound
from connectors.entra.client import GraphClient, Json

if TYPE_CHECKING:
    from kiota_abstractions.request_information import RequestInformation

SP_SELECT = [
    "id",
    "appId",
    "displayName",
    "accountEnabled",
    "servicePrincipalType",
    "appOwnerOrganizationId",
    "publisherName",
    "verifiedPublisher",
    "appRoles",
    "oauth2PermissionScopes",
    "passwordCredentials",
    "keyCredentials",
]
APP_SELECT = [
    "id",
    "appId",
    "displayName",
    "createdDateTime",
    "publisherDomain",
    "verifiedPublisher",
    "passwordCredentials",
    "keyCredentials",
]
USER_SELECT = ["id", "displayName", "mail", "userPrincipalName", "accountEnabled"]
OWNER_SELECT = "id,displayName,mail,userPrincipalName,appId"
CREATION_ACTIVITIES = ("Add application", "Add service principal")
PAGE_SIZE = 999


def service_principals_delta(client: GraphClient, delta_link: str | None) -> AsyncIterator[Json]:
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.service_principals.delta.delta_request_builder import (
        DeltaRequestBuilder,
    )

    def first() -> RequestInformation:
        if delta_link:
            return client.request_for(delta_link)
        query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=SP_SELECT)
        config = RequestConfiguration(query_parameters=query)
        return client.sdk.service_principals.delta.to_get_request_information(config)

    return client.pages(first, "servicePrincipals/delta")


def applications_delta(client: GraphClient, delta_link: str | None) -> AsyncIterator[Json]:
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.applications.delta.delta_request_builder import DeltaRequestBuilder

    def first() -> RequestInformation:
        if delta_link:
            return client.request_for(delta_link)
        query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=APP_SELECT)
        config = RequestConfiguration(query_parameters=query)
        return client.sdk.applications.delta.to_get_request_information(config)

    return client.pages(first, "applications/delta")


def users(client: GraphClient) -> AsyncIterator[Json]:
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.users.users_request_builder import UsersRequestBuilder

    def first() -> RequestInformation:
        query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
            select=USER_SELECT, top=PAGE_SIZE, expand=["manager($select=id)"]
        )
        config = RequestConfiguration(query_parameters=query)
        return client.sdk.users.to_get_request_information(config)

    return client.pages(first, "users")


def service_principal_ids(client: GraphClient) -> AsyncIterator[Json]:
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.service_principals.service_principals_request_builder import (
        ServicePrincipalsRequestBuilder,
    )

    def first() -> RequestInformation:
        query = ServicePrincipalsRequestBuilder.ServicePrincipalsRequestBuilderGetQueryParameters(
            select=["id", "appId"], top=PAGE_SIZE
        )
        config = RequestConfiguration(query_parameters=query)
        return client.sdk.service_principals.to_get_request_information(config)

    return client.pages(first, "servicePrincipals")


def delegated_grants(client: GraphClient) -> AsyncIterator[Json]:
    return client.pages(
        client.sdk.oauth2_permission_grants.to_get_request_information, "oauth2PermissionGrants"
    )


def creation_audits(client: GraphClient, activity: str) -> AsyncIterator[Json]:
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.audit_logs.directory_audits.directory_audits_request_builder import (
        DirectoryAuditsRequestBuilder,
    )

    def first() -> RequestInformation:
        query = DirectoryAuditsRequestBuilder.DirectoryAuditsRequestBuilderGetQueryParameters(
            filter=f"activityDisplayName eq '{activity}'"
        )
        config = RequestConfiguration(query_parameters=query)
        return client.sdk.audit_logs.directory_audits.to_get_request_information(config)

    return client.pages(first, "auditLogs/directoryAudits")


def sign_in_activity(client: GraphClient) -> AsyncIterator[Json]:
    """The beta report: one row per appId with its last sign-ins (P1 tenants only)."""
    url = f"{client.graph_url}/beta/reports/servicePrincipalSignInActivities"
    return client.pages(lambda: client.request_for(url), "servicePrincipalSignInActivities")


async def owners(client: GraphClient, paths: Iterable[tuple[str, str]]) -> dict[str, list[Json]]:
    """Owners of many objects: (collection, id) -> owner directory objects."""
    urls = {f"{c}/{i}": f"/{c}/{i}/owners?$select={OWNER_SELECT}" for c, i in paths}
    return await client.batch_collections(urls)


async def app_role_assignments(client: GraphClient, sp_ids: Iterable[str]) -> dict[str, list[Json]]:
    urls = {sp_id: f"/servicePrincipals/{sp_id}/appRoleAssignments" for sp_id in sp_ids}
    return await client.batch_collections(urls)


async def delegated_grants_of(client: GraphClient, sp_ids: Iterable[str]) -> dict[str, list[Json]]:
    urls = {
        sp_id: "/oauth2PermissionGrants?$filter=" + quote(f"clientId eq '{sp_id}'")
        for sp_id in sp_ids
    }
    return await client.batch_collections(urls)


async def service_principals_by_id(client: GraphClient, ids: Iterable[str]) -> dict[str, Json]:
    select = ",".join(SP_SELECT)
    urls = {i: f"/servicePrincipals/{i}?$select={select}" for i in ids}
    return await _objects(client, urls)


async def service_principals_by_app_id(
    client: GraphClient, app_ids: Iterable[str]
) -> dict[str, list[Json]]:
    return await client.batch_collections(_by_app_id("servicePrincipals", app_ids, SP_SELECT))


async def applications_by_id(client: GraphClient, ids: Iterable[str]) -> dict[str, Json]:
    select = ",".join(APP_SELECT)
    return await _objects(client, {i: f"/applications/{i}?$select={select}" for i in ids})


async def applications_by_app_id(
    client: GraphClient, app_ids: Iterable[str]
) -> dict[str, list[Json]]:
    return await client.batch_collections(_by_app_id("applications", app_ids, APP_SELECT))


def _by_app_id(collection: str, app_ids: Iterable[str], select: list[str]) -> dict[str, str]:
    return {
        app_id: f"/{collection}?$select={','.join(select)}&$filter=" + quote(f"appId eq '{app_id}'")
        for app_id in app_ids
    }


async def _objects(client: GraphClient, urls: dict[str, str]) -> dict[str, Json]:
    """Single objects by id; one that is gone (404) is left out."""
    found: dict[str, Json] = {}
    for key, reply in (await client.batch_get(urls)).items():
        error = client.reply_error(reply, key)
        if error is None and isinstance(reply.get("body"), dict):
            found[key] = reply["body"]
        elif error is not None and not isinstance(error, NotFound):
            raise error
    return found
