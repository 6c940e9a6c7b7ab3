"""The emulator's responses against the discovery documents the SDK is built from."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.google import get
from connectors.google.client import GoogleClient, Services
from tests.google.conftest import Tenant
from tests.google.discovery_schema import check_response, document, method, validate

DIRECTORY, REPORTS, IAM = "admin.directory_v1.json", "admin.reports_v1.json", "iam.v1.json"
REUSABLE = "407408718192.apps.googleusercontent.com"  # the OAuth Playground
END = "2099-01-01T00:00:00Z"  # in the future: the emulator's `now` bounds it
START = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
Call = Callable[[Services], Any]


def fetch(tenant: Tenant, request: Call) -> Any:
    async def go() -> Any:
        client = GoogleClient(tenant.settings, sleep=tenant.sleeps)
        try:
            return await client.call(request)
        finally:
            await client.aclose()

    return asyncio.run(go())


def accounts(s: Services) -> Any:
    return s.iam.projects().serviceAccounts()


CASES: list[tuple[str, str, Call]] = [
    (
        DIRECTORY,
        "directory.users.list",
        lambda s: s.directory.users().list(customer="my_customer", maxResults=50),
    ),
    (
        DIRECTORY,
        "directory.users.list",
        lambda s: s.directory.users().list(customer="my_customer", fields=get.USER_FIELDS),
    ),
    (
        DIRECTORY,
        "directory.users.get",
        lambda s: s.directory.users().get(userKey="admin@example.com"),
    ),
    (
        DIRECTORY,
        "directory.tokens.list",
        lambda s: s.directory.tokens().list(userKey="user00005@example.com"),
    ),
    (
        REPORTS,
        "reports.activities.list",
        lambda s: s.reports.activities().list(
            userKey="all", applicationName="token", maxResults=200
        ),
    ),
    (
        REPORTS,
        "reports.activities.list",
        lambda s: s.reports.activities().list(userKey="all", applicationName="admin"),
    ),
    (
        REPORTS,
        "reports.activities.list",
        lambda s: s.reports.activities().list(
            userKey="all",
            applicationName="token",
            eventName="activity",
            filters=f"client_id=={REUSABLE}",
            startTime=START,
            endTime=END,
            maxResults=1,
        ),
    ),
    (
        REPORTS,
        "reports.activities.list",
        lambda s: s.reports.activities().list(
            userKey="all", applicationName="token", eventName="authorize", fields=get.ACTOR_FIELDS
        ),
    ),
    (
        IAM,
        "iam.projects.serviceAccounts.list",
        lambda s: accounts(s).list(name="projects/acme-prod"),
    ),
    (
        IAM,
        "iam.projects.serviceAccounts.get",
        lambda s: accounts(s).get(
            name="projects/-/serviceAccounts/svc-5@acme-data.iam.gserviceaccount.com"
        ),
    ),
    (
        IAM,
        "iam.projects.serviceAccounts.keys.list",
        lambda s: (
            accounts(s)
            .keys()
            .list(name="projects/acme-data/serviceAccounts/svc-5@acme-data.iam.gserviceaccount.com")
        ),
    ),
    (
        IAM,
        "iam.projects.serviceAccounts.disable",
        lambda s: accounts(s).disable(
            name="projects/acme-data/serviceAccounts/svc-5@acme-data.iam.gserviceaccount.com",
            body={},
        ),
    ),
]


@pytest.mark.parametrize(
    ("doc", "method_id", "request_of"), CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)]
)
def test_response_matches_discovery_schema(
    small: Tenant, doc: str, method_id: str, request_of: Call
) -> None:
    body = fetch(small, request_of)
    assert check_response(doc, method_id, body) == []
    assert body or method_id.endswith("disable")


def test_every_token_and_key_of_the_seed_validates(small: Tenant) -> None:
    schemas = document(DIRECTORY)["schemas"]
    for tokens in small.emulator.tokens.values():
        for token in tokens.values():
            assert validate(token, {"$ref": "Token"}, schemas) == []
    iam = document(IAM)["schemas"]
    for keys in small.emulator.keys.values():
        for key in keys:
            assert validate(key, {"$ref": "ServiceAccountKey"}, iam) == []


def test_validator_rejects_unknown_properties_and_wrong_types() -> None:
    schemas = document(DIRECTORY)["schemas"]
    assert validate({"clientId": "x", "madeUp": 1}, {"$ref": "Token"}, schemas) == [
        "$: unknown property 'madeUp'"
    ]
    assert validate({"scopes": "drive"}, {"$ref": "Token"}, schemas) == [
        "$.scopes: expected array, got str"
    ]
    iam = document(IAM)["schemas"]
    assert validate({"keyType": "WEIRD"}, {"$ref": "ServiceAccountKey"}, iam)


EMULATED = [
    (DIRECTORY, "directory.users.list", "GET"),
    (DIRECTORY, "directory.users.get", "GET"),
    (DIRECTORY, "directory.tokens.list", "GET"),
    (DIRECTORY, "directory.tokens.delete", "DELETE"),
    (REPORTS, "reports.activities.list", "GET"),
    (IAM, "iam.projects.serviceAccounts.list", "GET"),
    (IAM, "iam.projects.serviceAccounts.get", "GET"),
    (IAM, "iam.projects.serviceAccounts.keys.list", "GET"),
    (IAM, "iam.projects.serviceAccounts.disable", "POST"),
    (IAM, "iam.projects.serviceAccounts.enable", "POST"),
]


@pytest.mark.parametrize(("doc", "method_id", "verb"), EMULATED)
def test_emulator_routes_are_discovery_paths(
    small: Tenant, doc: str, method_id: str, verb: str
) -> None:
    spec = method(document(doc), method_id)
    assert spec["httpMethod"] == verb
    path = "/" + re.sub(r"\{[^}]+\}", "X", spec.get("flatPath", spec["path"]))
    assert any(v == verb and rx.match(path) for v, rx, _ in small.emulator.routes), path


def _error_of(tenant: Tenant, request: Call) -> dict[str, Any]:
    """The raw error body Google sends (what googleapiclient's HttpError carries)."""
    from googleapiclient.errors import HttpError

    client = GoogleClient(tenant.settings, sleep=tenant.sleeps)
    try:
        request(client._services()).execute()
    except HttpError as error:
        return dict(json.loads(error.content))
    finally:
        client._pool.shutdown()
    raise AssertionError("the request succeeded")


NOBODY = "nobody@acme-prod.iam.gserviceaccount.com"
ERRORS: list[tuple[str, int, str | None, Call]] = [
    (
        "foreign user",
        403,
        "forbidden",
        lambda s: s.directory.users().get(userKey="boss@partner.example.org"),
    ),
    ("consumer user", 400, "badRequest", lambda s: s.directory.users().get(userKey="x@gmail.com")),
    (
        "180 days back",
        400,
        "invalid",
        lambda s: s.reports.activities().list(
            userKey="all",
            applicationName="token",
            startTime="2000-01-01T00:00:00Z",
            endTime=END,
        ),
    ),
    (
        "deleted account by wildcard",
        403,
        None,
        lambda s: accounts(s).get(
            name="projects/-/serviceAccounts/nobody@acme-prod.iam.gserviceaccount.com"
        ),
    ),
]


@pytest.mark.parametrize(
    ("case", "status", "reason", "request_of"), ERRORS, ids=[e[0] for e in ERRORS]
)
def test_errors_have_googles_shape(
    small: Tenant, case: str, status: int, reason: str | None, request_of: Call
) -> None:
    body = _error_of(small, request_of)
    error = body["error"]
    assert error["code"] == status
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["status"], str)
    if reason:
        assert [e["reason"] for e in error["errors"]] == [reason]
    else:
        assert "errors" not in error  # Cloud APIs speak in `status` only
