"""API calls only: one function per Google method, raw JSON in and out.

Every list asks for its largest page and only the fields the transform reads. Directory
and Reports calls say so (`api=`), so the client paces them against their shared quota.
"""

from __future__ import annotations

from typing import Any

from connectors.google.client import GoogleClient

USERS_PAGE = 500  # users.list maxResults 1-500 (admin.directory_v1.json)
ACTIVITIES_PAGE = 1000  # activities.list maxResults 1-1000 (admin.reports_v1.json)
ACCOUNTS_PAGE = 100  # serviceAccounts.list pageSize max 100 (iam.v1.json)
USER_FIELDS = "nextPageToken,users(id,primaryEmail,name/fullName,suspended,archived,relations)"
TOKEN_FIELDS = "items(clientId,displayText,scopes,nativeApp,anonymous)"  # noqa: S105 - a field mask
ACTIVITY_FIELDS = "nextPageToken,items(id/time,actor(email,profileId),events(name,parameters))"
ACTOR_FIELDS = "nextPageToken,items(id/time,actor/profileId)"
ACCOUNT_FIELDS = (
    "nextPageToken,accounts(name,projectId,uniqueId,email,displayName,description,"
    "disabled,oauth2ClientId)"
)
KEY_FIELDS = "keys(name,keyType,validAfterTime,validBeforeTime,disabled)"
Json = dict[str, Any]


async def users_page(
    client: GoogleClient,
    customer: str,
    page_token: str | None,
    fields: str = USER_FIELDS,
    size: int = USERS_PAGE,
) -> Json:
    return await client.call(
        lambda s: s.directory.users().list(
            customer=customer, maxResults=size, pageToken=page_token, fields=fields
        ),
        "users",
        api="directory",
    )


async def user_id(client: GoogleClient, user_key: str) -> Json:
    return await client.call(
        lambda s: s.directory.users().get(userKey=user_key, fields="id"),
        user_key,
        api="directory",
    )


async def user_tokens(client: GoogleClient, user_key: str) -> Json:
    return await client.call(
        lambda s: s.directory.tokens().list(userKey=user_key, fields=TOKEN_FIELDS),
        user_key,
        api="directory",
    )


async def delete_token(client: GoogleClient, user_key: str, client_id: str) -> None:
    await client.call(
        lambda s: s.directory.tokens().delete(userKey=user_key, clientId=client_id),
        f"{user_key}:{client_id}",
        api="directory",
    )


async def activities_page(
    client: GoogleClient,
    application: str,
    window: tuple[str, str],
    page_token: str | None = None,
    *,
    event_name: str | None = None,
    filters: str | None = None,
    size: int = ACTIVITIES_PAGE,
    fields: str = ACTIVITY_FIELDS,
) -> Json:
    """One page of `application`'s audit log in [start, end], newest first. Both ends are
    always given: a bounded query is what Google validates (and pages consistently)."""
    start, end = window
    return await client.call(
        lambda s: s.reports.activities().list(
            userKey="all",
            applicationName=application,
            startTime=start,
            endTime=end,
            eventName=event_name,
            filters=filters,
            maxResults=size,
            pageToken=page_token,
            fields=fields,
        ),
        f"activities/{application}",
        api="reports",
    )


def _accounts(services: Any) -> Any:
    return services.iam.projects().serviceAccounts()


async def accounts_page(client: GoogleClient, project: str, page_token: str | None) -> Json:
    return await client.call(
        lambda s: _accounts(s).list(
            name=f"projects/{project}",
            pageSize=ACCOUNTS_PAGE,
            pageToken=page_token,
            fields=ACCOUNT_FIELDS,
        ),
        f"projects/{project}",
    )


async def account_keys(client: GoogleClient, name: str) -> Json:
    return await client.call(
        lambda s: _accounts(s).keys().list(name=name, keyTypes="USER_MANAGED", fields=KEY_FIELDS),
        name,
    )


async def account(client: GoogleClient, name: str) -> Json:
    return await client.call(lambda s: _accounts(s).get(name=name), name)


async def set_account_disabled(client: GoogleClient, name: str, disabled: bool) -> None:
    if disabled:
        await client.call(lambda s: _accounts(s).disable(name=name, body={}), name)
    else:
        await client.call(lambda s: _accounts(s).enable(name=name, body={}), name)
