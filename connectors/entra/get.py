"""Graph calls only: what is read, in which form, and nothing else.

The cheap forms (learn.microsoft.com/graph/throttling-limits costs; 50,000 service
principals need a few hundred resource units):
- owners come inline: `$expand=owners($select=...)` ("$select nested in $expand" is in the
  owners description of ../shared/specs/msgraph/graph-v1.0-identity-subset.yaml); with
  `$expand` a page holds at most 100 objects and 20 owners each
  (developer.microsoft.com/en-us/graph/known-issues), so a principal showing exactly 20 is
  read again on its own;
- application permissions are read per resource (`appRoleAssignedTo`), delegated grants
  tenant-wide;
- applications are listed without `$select`: their default properties carry
  keyCredentials without the key itself, and only reads that `$select` keyCredentials
  fall under the 150-per-minute limit (learn.microsoft.com/graph/api/application-list);
- service principals are listed in 16 slices by the first hex digit of `appId`
  (`startsWith` is a documented appId filter), read side by side.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from urllib.parse import quote, urlencode

from connectors.entra.client import GraphClient, Json

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
    "createdDateTime",
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
OWNERS = f"owners($select={OWNER_SELECT})"
SPONSORS = f"sponsors($select={OWNER_SELECT})"
EXPANDED_MAX = 20  # items of an expanded relationship Graph returns
AGENTS = "servicePrincipals/microsoft.graph.agentIdentity"
CREATION_ACTIVITIES = ("Add application", "Add service principal")
# Changes delta cannot see (relationships), as the directory audit log names them
# (learn.microsoft.com/entra/identity/monitoring-health/reference-audit-activities).
RELATIONSHIP_ACTIVITIES = frozenset(
    {
        "Add owner to service principal",
        "Remove owner from service principal",
        "Add owner to application",
        "Remove owner from application",
        "Consent to application",
        "Add delegated permission grant",
        "Remove delegated permission grant",
        "Add app role assignment to service principal",
        "Remove app role assignment from service principal",
        "Update application \u2013 Certificates and secrets management ",
    }
)
SLICES = "0123456789abcdef"
PAGE_SIZE = 999


def url(client: GraphClient, path: str, **query: str) -> str:
    encoded = urlencode({f"${k}": v for k, v in query.items()}, quote_via=quote, safe="(),=$'")
    return f"{client.graph_url}/v1.0/{path}" + (f"?{encoded}" if encoded else "")


def start_tracking(client: GraphClient, collection: str, select: list[str]) -> AsyncIterator[Json]:
    """A delta link for changes from now on, without reading the collection
    (`$deltatoken=latest`, learn.microsoft.com/graph/delta-query-overview)."""
    first = url(client, f"{collection}/delta", select=",".join(select), deltatoken="latest")
    return client.listing(first, f"{collection}/delta")


def changes(client: GraphClient, delta_link: str, collection: str) -> AsyncIterator[Json]:
    return client.listing(delta_link, f"{collection}/delta")


def users(client: GraphClient) -> AsyncIterator[Json]:
    query = {
        "select": ",".join(USER_SELECT),
        "top": str(PAGE_SIZE),
        "expand": "manager($select=id)",
    }
    return client.listing(url(client, "users", **query), "users")


def applications(client: GraphClient) -> AsyncIterator[Json]:
    return client.listing(
        url(client, "applications", top=str(PAGE_SIZE), expand=OWNERS), "applications"
    )


def service_principals(client: GraphClient, prefix: str) -> AsyncIterator[Json]:
    query = {
        "select": ",".join(SP_SELECT),
        "top": str(PAGE_SIZE),
        "expand": OWNERS,
        "filter": f"startswith(appId,'{prefix}')",
    }
    return client.listing(url(client, "servicePrincipals", **query), f"servicePrincipals {prefix}")


def agent_sponsors(client: GraphClient) -> AsyncIterator[Json]:
    """learn.microsoft.com/graph/api/agentidentity-list: 100 per page, sponsors expanded."""
    query = {"select": "id", "expand": SPONSORS}
    return client.listing(url(client, AGENTS, **query), "agent identities")


def federated_credentials(client: GraphClient) -> AsyncIterator[Json]:
    """Only the applications that have federated credentials: a `/$count` filter, an
    advanced query (learn.microsoft.com/graph/aad-advanced-queries)."""
    query = {
        "filter": "federatedIdentityCredentials/$count ne 0",
        "count": "true",
        "select": "id,appId",
        "expand": "federatedIdentityCredentials",
    }
    first = url(client, "applications", **query)
    return client.listing(first, "federated credentials", {"ConsistencyLevel": "eventual"})


def delegated_grants(client: GraphClient) -> AsyncIterator[Json]:
    return client.listing(url(client, "oauth2PermissionGrants"), "oauth2PermissionGrants")


def assigned_to(client: GraphClient, resource_id: str) -> AsyncIterator[Json]:
    """Who holds a resource's app roles (serviceprincipal-list-approleassignedto)."""
    path = f"servicePrincipals/{resource_id}/appRoleAssignedTo"
    return client.listing(url(client, path, top=str(PAGE_SIZE)), path)


def audits(client: GraphClient, filter_: str) -> AsyncIterator[Json]:
    query = {"filter": filter_, "top": str(PAGE_SIZE)}
    return client.listing(url(client, "auditLogs/directoryAudits", **query), "directory audits")


def creation_audits(client: GraphClient, activity: str) -> AsyncIterator[Json]:
    return audits(client, f"activityDisplayName eq '{activity}'")


def audits_since(client: GraphClient, since: str) -> AsyncIterator[Json]:
    return audits(client, f"activityDateTime ge {since} and loggedByService eq 'Core Directory'")


def sign_in_activity(client: GraphClient) -> AsyncIterator[Json]:
    """The beta report: one row per appId with its last sign-ins (P1 tenants only)."""
    first = f"{client.graph_url}/beta/reports/servicePrincipalSignInActivities?$top={PAGE_SIZE}"
    return client.listing(first, "servicePrincipalSignInActivities")


# per-object reads, batched --------------------------------------------------------


async def owners(client: GraphClient, paths: Iterable[tuple[str, str]]) -> dict[str, list[Json]]:
    """Owners of many objects: (collection, id) -> owner directory objects."""
    urls = {f"{c}/{i}": f"/{c}/{i}/owners?$select={OWNER_SELECT}" for c, i in paths}
    return await client.batch_collections(urls)


async def sponsors_of(client: GraphClient, agent_ids: Iterable[str]) -> dict[str, list[Json]]:
    ids = sorted(agent_ids)
    urls = {}
    for start in range(0, len(ids), 15):  # "in" takes at most 15 values
        chunk = ",".join(f"'{i}'" for i in ids[start : start + 15])
        urls[str(start)] = f"/{AGENTS}?$select=id&$expand={SPONSORS}&$filter=" + quote(
            f"id in ({chunk})"
        )
    found: dict[str, list[Json]] = {i: [] for i in ids}
    for listed in (await client.batch_collections(urls)).values():
        for agent in listed:
            found[agent["id"]] = [s for s in agent.get("sponsors") or [] if isinstance(s, dict)]
    return found


async def app_role_assignments(client: GraphClient, sp_ids: Iterable[str]) -> dict[str, list[Json]]:
    urls = {sp_id: f"/servicePrincipals/{sp_id}/appRoleAssignments" for sp_id in sp_ids}
    return await client.batch_collections(urls)


async def delegated_grants_of(client: GraphClient, sp_ids: Iterable[str]) -> dict[str, list[Json]]:
    urls = {
        sp_id: "/oauth2PermissionGrants?$filter=" + quote(f"clientId eq '{sp_id}'")
        for sp_id in sp_ids
    }
    return await client.batch_collections(urls)


async def federated_credentials_of(
    client: GraphClient, app_ids: Iterable[str]
) -> dict[str, list[Json]]:
    urls = {i: f"/applications/{i}/federatedIdentityCredentials" for i in app_ids}
    return await client.batch_collections(urls)


async def service_principals_by_id(
    client: GraphClient, ids: Iterable[str]
) -> tuple[dict[str, Json], set[str]]:
    """(found, ids that answered 404); owners expanded."""
    select = ",".join(SP_SELECT)
    urls = {i: f"/servicePrincipals/{i}?$select={select}&$expand={OWNERS}" for i in ids}
    return await client.objects(urls)


async def resources_by_id(client: GraphClient, ids: Iterable[str]) -> dict[str, Json]:
    select = "id,appId,displayName,appRoles,oauth2PermissionScopes"
    found, _ = await client.objects({i: f"/servicePrincipals/{i}?$select={select}" for i in ids})
    return found


async def applications_by_id(
    client: GraphClient, ids: Iterable[str]
) -> tuple[dict[str, Json], set[str]]:
    return await client.objects({i: f"/applications/{i}?$expand={OWNERS}" for i in ids})


async def service_principals_by_app_id(
    client: GraphClient, app_ids: Iterable[str]
) -> dict[str, list[Json]]:
    select = ",".join(SP_SELECT)
    return await client.batch_collections(
        {
            app_id: f"/servicePrincipals?$select={select}&$expand={OWNERS}&$filter="
            + quote(f"appId eq '{app_id}'")
            for app_id in app_ids
        }
    )


async def applications_by_app_id(
    client: GraphClient, app_ids: Iterable[str]
) -> dict[str, list[Json]]:
    return await client.batch_collections(
        {
            app_id: f"/applications?$expand={OWNERS}&$filter=" + quote(f"appId eq '{app_id}'")
            for app_id in app_ids
        }
    )


async def users_by_id(client: GraphClient, ids: Iterable[str]) -> tuple[dict[str, Json], set[str]]:
    select = ",".join(USER_SELECT)
    return await client.objects(
        {i: f"/users/{i}?$select={select}&$expand=manager($select=id)" for i in ids}
    )


async def service_principal_ids_by_app_id(
    client: GraphClient, app_ids: Iterable[str]
) -> dict[str, list[Json]]:
    """`appId in (...)`, 15 at a time: id and appId of the service principals of those apps."""
    wanted = sorted(app_ids)
    urls = {}
    for start in range(0, len(wanted), 15):
        chunk = ",".join(f"'{a}'" for a in wanted[start : start + 15])
        urls[str(start)] = "/servicePrincipals?$select=id,appId&$filter=" + quote(
            f"appId in ({chunk})"
        )
    return await client.batch_collections(urls)


def service_principal_ids(client: GraphClient) -> AsyncIterator[Json]:
    query = {"select": "id,appId", "top": str(PAGE_SIZE)}
    return client.listing(url(client, "servicePrincipals", **query), "servicePrincipals")
