"""The emulator's answers validated against the Graph definitions in ../shared/specs.

The PowerShell-style slice gives every entity `additionalProperties: {type: object}`
inside `allOf`, which would reject every property a sibling schema declares; those are
dropped before validating (the full Graph document has no such constraint).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from sandbox.entra import EntraEmulator, build
from sandbox.tls import SandboxCA
from tests.conftest import spec_path
from tests.entra.conftest import TEST_CLOCK, served

V1 = "graph-v1.0-identity-subset.yaml"
GRAPH = "00000003-0000-0000-c000-000000000000"
BETA = "graph-beta-servicePrincipalSignInActivities-subset.yaml"


def _without_loose_extras(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _without_loose_extras(v)
            for k, v in node.items()
            if not (k == "additionalProperties" and v == {"type": "object"})
        }
    if isinstance(node, list):
        return [_without_loose_extras(v) for v in node]
    return node


def _load(name: str) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with spec_path("msgraph", name).open() as handle:
        return _without_loose_extras(yaml.load(handle, Loader=loader))  # noqa: S506


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry().with_resources(
        [
            (name, Resource.from_contents(_load(name), default_specification=DRAFT4))
            for name in (V1, BETA)
        ]
    )


def check(registry: Registry, document: str, schema: str, value: Any) -> None:
    ref = {"$ref": f"{document}#/components/schemas/{schema}"}
    OAS30Validator(ref, registry=registry).validate(value)


@pytest.fixture(scope="module")
def graph(sandbox_ca: SandboxCA) -> Iterator[tuple[httpx.Client, EntraEmulator]]:
    app = build(seed=11, size=150)
    with served(app, sandbox_ca) as url:
        form = {
            "client_id": app.read_client_id,
            "client_secret": app.secret_of(app.read_client_id),
            "grant_type": "client_credentials",
            "scope": f"{url}/.default",
        }
        with httpx.Client(base_url=url, verify=str(sandbox_ca.ca_bundle)) as http:
            token = http.post(f"/{app.tenant.tenant_id}/oauth2/v2.0/token", data=form).json()
            http.headers["Authorization"] = f"Bearer {token['access_token']}"
            yield http, app


COLLECTIONS = [
    ("/v1.0/servicePrincipals?$top=50", "microsoft.graph.servicePrincipalCollectionResponse"),
    ("/v1.0/applications?$top=50", "microsoft.graph.applicationCollectionResponse"),
    ("/v1.0/users?$top=999&$expand=manager($select=id)", "microsoft.graph.userCollectionResponse"),
    ("/v1.0/oauth2PermissionGrants", "microsoft.graph.oAuth2PermissionGrantCollectionResponse"),
    (
        "/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq 'Add application'",
        "microsoft.graph.directoryAuditCollectionResponse",
    ),
]


@pytest.mark.parametrize(("path", "schema"), COLLECTIONS)
def test_collections_match_the_spec(
    graph: tuple[httpx.Client, EntraEmulator], registry: Registry, path: str, schema: str
) -> None:
    http, _ = graph
    body = http.get(path).json()
    assert body["value"]
    check(registry, V1, schema, body)
    if "@odata.nextLink" in body:
        assert body["@odata.nextLink"].startswith("https://127.0.0.1:")


def test_delta_sub_collections_and_objects_match_the_spec(
    graph: tuple[httpx.Client, EntraEmulator], registry: Registry
) -> None:
    http, app = graph
    body = http.get("/v1.0/servicePrincipals/delta()").json()
    for item in body["value"]:
        check(registry, V1, "microsoft.graph.servicePrincipal", item)
    assert "@odata.nextLink" in body or "@odata.deltaLink" in body
    owned = next(iter(app.tenant.owners))
    collection = "applications" if owned in app.tenant.applications else "servicePrincipals"
    owners = http.get(f"/v1.0/{collection}/{owned}/owners").json()
    check(registry, V1, "microsoft.graph.directoryObjectCollectionResponse", owners)
    holder = next(iter(app.tenant.assignments.values()))["principalId"]
    assigned = http.get(f"/v1.0/servicePrincipals/{holder}/appRoleAssignments").json()
    check(registry, V1, "microsoft.graph.appRoleAssignmentCollectionResponse", assigned)
    sp = http.get(f"/v1.0/servicePrincipals/{holder}?$select=id,accountEnabled").json()
    check(registry, V1, "microsoft.graph.servicePrincipal", sp)


def test_beta_sign_in_report_matches_the_spec(
    graph: tuple[httpx.Client, EntraEmulator], registry: Registry
) -> None:
    http, _ = graph
    body = http.get("/beta/reports/servicePrincipalSignInActivities").json()
    assert body["value"]
    check(registry, BETA, "microsoft.graph.servicePrincipalSignInActivityCollectionResponse", body)


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1.0/servicePrincipals?$top=1000", 400, "Request_BadRequest"),
        ("/v1.0/servicePrincipals/not-there", 404, "Request_ResourceNotFound"),
        ("/v1.0/servicePrincipals?$filter=startswith(notes,'x')", 400, "Request_UnsupportedQuery"),
        ("/v1.0/servicePrincipals?$select=nope", 400, "Request_BadRequest"),
    ],
)
def test_errors_use_graph_error_bodies(
    graph: tuple[httpx.Client, EntraEmulator], registry: Registry, path: str, status: int, code: str
) -> None:
    http, _ = graph
    answer = http.get(path)
    assert answer.status_code == status
    check(registry, V1, "microsoft.graph.ODataErrors.ODataError", answer.json())
    assert answer.json()["error"]["code"] == code


def test_throttle_and_auth_answers(
    graph: tuple[httpx.Client, EntraEmulator], registry: Registry
) -> None:
    http, app = graph
    app.faults.throttle_next = 1
    throttled = http.get("/v1.0/users")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"].isdigit()
    check(registry, V1, "microsoft.graph.ODataErrors.ODataError", throttled.json())
    anonymous = http.get("/v1.0/users", headers={"Authorization": "Bearer nope"})
    assert anonymous.status_code == 401
    patch = http.patch(
        f"/v1.0/servicePrincipals/{next(iter(app.tenant.service_principals))}",
        json={"accountEnabled": False},
    )
    assert patch.status_code == 403  # the read credential cannot write


def test_batch_rules(graph: tuple[httpx.Client, EntraEmulator]) -> None:
    http, _ = graph
    too_many = {"requests": [{"id": str(n), "method": "GET", "url": "/users"} for n in range(21)]}
    assert http.post("/v1.0/$batch", json=too_many).status_code == 400
    twice = {"requests": [{"id": "1", "method": "GET", "url": "/users"}] * 2}
    assert http.post("/v1.0/$batch", json=twice).status_code == 400
    answer = http.post(
        "/v1.0/$batch", json={"requests": [{"id": "a", "method": "GET", "url": "/users?$top=1"}]}
    ).json()
    assert answer["responses"][0]["status"] == 200
    assert answer["responses"][0]["id"] == "a"


# what the corrected emulator does like Graph ---------------------------------------------


@pytest.fixture
def fresh(sandbox_ca: SandboxCA) -> Iterator[tuple[httpx.Client, EntraEmulator]]:
    """A tenant of its own, for checks that change it or spend its quota."""
    app = build(seed=13, size=150, clock=TEST_CLOCK)
    with served(app, sandbox_ca) as url:
        form = {
            "client_id": app.write_client_id,
            "client_secret": app.secret_of(app.write_client_id),
            "grant_type": "client_credentials",
            "scope": f"{url}/.default",
        }
        with httpx.Client(base_url=url, verify=str(sandbox_ca.ca_bundle)) as http:
            token = http.post(f"/{app.tenant.tenant_id}/oauth2/v2.0/token", data=form).json()
            http.headers["Authorization"] = f"Bearer {token['access_token']}"
            yield http, app


def test_expand_caps_pages_at_100_and_relationships_at_20(
    fresh: tuple[httpx.Client, EntraEmulator], registry: Registry
) -> None:
    http, app = fresh
    crowded = next(i for i, owners in app.tenant.owners.items() if len(owners) == 25)
    body = http.get("/v1.0/servicePrincipals?$top=999&$expand=owners($select=id,mail)").json()
    assert len(body["value"]) == 100
    assert "@odata.nextLink" in body
    check(registry, V1, "microsoft.graph.servicePrincipalCollectionResponse", body)
    one = http.get(f"/v1.0/servicePrincipals/{crowded}?$expand=owners").json()
    assert len(one["owners"]) == 20  # no link to the other 5
    full = http.get(f"/v1.0/servicePrincipals/{crowded}/owners").json()
    assert len(full["value"]) == 25


def test_resource_units_and_the_429_that_follows(
    fresh: tuple[httpx.Client, EntraEmulator], registry: Registry
) -> None:
    """throttling-limits: per-request costs in x-ms-resource-unit, a warning header past
    80% of the quota, then 429 with Retry-After and the throttle scope."""
    http, app = fresh
    costs = {
        "/v1.0/users": "2",
        "/v1.0/users?$select=id": "1",
        "/v1.0/servicePrincipals?$expand=owners": "2",
        "/v1.0/applications?$top=5": "1",
        "/v1.0/oauth2PermissionGrants": "2",
    }
    for path, units in costs.items():
        assert http.get(path).headers["x-ms-resource-unit"] == units
    app.quota.resize(40)  # a quota small enough for a test to spend
    answers = [http.get("/v1.0/users") for _ in range(25)]
    warned = [a for a in answers if "x-ms-throttle-limit-percentage" in a.headers]
    assert warned
    assert all(0.8 < float(a.headers["x-ms-throttle-limit-percentage"]) <= 1.0 for a in warned)
    throttled = [a for a in answers if a.status_code == 429]
    assert throttled
    assert throttled[0].headers["Retry-After"].isdigit()
    assert throttled[0].headers["x-ms-throttle-scope"].startswith("Tenant_Application/")
    check(registry, V1, "microsoft.graph.ODataErrors.ODataError", throttled[0].json())
    assert app.quota.meter.throttled == len(throttled)


def test_reading_key_credentials_is_limited_to_150_a_minute(
    fresh: tuple[httpx.Client, EntraEmulator],
) -> None:
    http, app = fresh
    app.quota.resize(100_000)
    statuses = [
        http.get("/v1.0/applications?$select=id,keyCredentials&$top=1").status_code
        for _ in range(151)
    ]
    assert statuses.count(200) == 150
    assert statuses[-1] == 429
    plain = http.get("/v1.0/applications?$top=1")  # default properties: not that limit
    assert plain.status_code == 200
    assert "keyCredentials" in plain.json()["value"][0]


def test_delta_tokens_latest_partial_changes_and_expiry(
    fresh: tuple[httpx.Client, EntraEmulator], registry: Registry
) -> None:
    http, app = fresh
    latest = http.get("/v1.0/servicePrincipals/delta?$select=id,displayName&$deltatoken=latest")
    assert latest.json()["value"] == []
    link = latest.json()["@odata.deltaLink"]
    sp_id = next(iter(app.tenant.service_principals))
    app.update_service_principal(sp_id, displayName="Changed")
    changed = http.get(link).json()
    assert changed["value"] == [{"id": sp_id, "displayName": "Changed"}]  # what changed
    check(registry, V1, "microsoft.graph.servicePrincipal", changed["value"][0])
    app.expire_delta_tokens()
    expired = http.get(changed["@odata.deltaLink"])
    assert expired.status_code == 400
    assert expired.json()["error"]["code"] == "syncStateNotFound"
    check(registry, V1, "microsoft.graph.ODataErrors.ODataError", expired.json())
    app.switches.expired_delta_status = 410
    assert http.get(changed["@odata.deltaLink"]).status_code == 410


def test_users_delta_tracks_the_manager(fresh: tuple[httpx.Client, EntraEmulator]) -> None:
    http, _ = fresh
    first = http.get("/v1.0/users/delta?$select=id,displayName,manager").json()
    with_manager = [u for u in first["value"] if "manager@delta" in u]
    assert with_manager
    assert with_manager[0]["manager@delta"][0]["@odata.type"] == "#microsoft.graph.user"


def test_grant_ids_are_derived_and_duplicates_conflict(
    fresh: tuple[httpx.Client, EntraEmulator], registry: Registry
) -> None:
    http, app = fresh
    clients = [i for i, k in app.tenant.truth.kinds.items() if k == "service_principal"]
    graph = next(i for i, sp in app.tenant.service_principals.items() if sp["appId"] == GRAPH)
    client = next(
        c for c in clients if not any(g["clientId"] == c for g in app.tenant.grants.values())
    )
    body = {
        "clientId": client,
        "consentType": "AllPrincipals",
        "resourceId": graph,
        "scope": "User.Read",
    }
    created = http.post("/v1.0/oauth2PermissionGrants", json=body)
    assert created.status_code == 201
    raw = uuid.UUID(client).bytes_le + uuid.UUID(graph).bytes_le
    assert created.json()["id"] == base64.urlsafe_b64encode(raw).decode().rstrip("=")
    check(registry, V1, "microsoft.graph.oAuth2PermissionGrant", created.json())
    again = http.post("/v1.0/oauth2PermissionGrants", json=body)
    assert again.status_code == 409
    check(registry, V1, "microsoft.graph.ODataErrors.ODataError", again.json())


def test_app_role_assignments_get_a_new_id_each_time(
    fresh: tuple[httpx.Client, EntraEmulator],
) -> None:
    http, app = fresh
    old = next(iter(app.tenant.assignments.values()))
    path = f"/v1.0/servicePrincipals/{old['principalId']}/appRoleAssignments"
    body = {k: old[k] for k in ("principalId", "resourceId", "appRoleId")}
    assert http.post(path, json=body).status_code == 400  # it is there already
    assert http.delete(f"{path}/{old['id']}").status_code == 204
    created = http.post(path, json=body)
    assert created.status_code == 201
    assert created.json()["id"] != old["id"]


def test_managed_identities_refuse_changes(
    fresh: tuple[httpx.Client, EntraEmulator], registry: Registry
) -> None:
    http, app = fresh
    mi = next(i for i, k in app.tenant.truth.kinds.items() if k == "managed_identity")
    answer = http.patch(f"/v1.0/servicePrincipals/{mi}", json={"accountEnabled": False})
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "Authorization_RequestDenied"
    check(registry, V1, "microsoft.graph.ODataErrors.ODataError", answer.json())


def test_agent_identities_and_their_sponsors(
    graph: tuple[httpx.Client, EntraEmulator], registry: Registry
) -> None:
    http, _ = graph
    body = http.get(
        "/v1.0/servicePrincipals/microsoft.graph.agentIdentity?$expand=sponsors($select=id,mail)"
    ).json()
    assert body["value"]
    for agent in body["value"]:
        assert agent["@odata.type"] == "#microsoft.graph.agentIdentity"
        assert agent["servicePrincipalType"] == "ServiceIdentity"
        assert agent["sponsors"]
        check(registry, V1, "microsoft.graph.servicePrincipal", agent)
    one = body["value"][0]["id"]
    sponsors = http.get(f"/v1.0/servicePrincipals/{one}/microsoft.graph.agentIdentity/sponsors")
    check(registry, V1, "microsoft.graph.directoryObjectCollectionResponse", sponsors.json())
    assert http.get("/v1.0/servicePrincipals?$top=999").json()["value"]  # in the list too


def test_federated_credentials_by_an_advanced_query(
    graph: tuple[httpx.Client, EntraEmulator], registry: Registry
) -> None:
    http, _ = graph
    path = (
        "/v1.0/applications?$filter=federatedIdentityCredentials/$count ne 0&$count=true"
        "&$select=id,appId&$expand=federatedIdentityCredentials"
    )
    assert http.get(path).status_code == 400  # an advanced query needs the header
    body = http.get(path, headers={"ConsistencyLevel": "eventual"}).json()
    assert body["value"]
    assert body["@odata.count"] == len(body["value"])
    for credential in (c for a in body["value"] for c in a["federatedIdentityCredentials"]):
        check(registry, V1, "microsoft.graph.federatedIdentityCredential", credential)


def test_directory_audits_since_a_moment(fresh: tuple[httpx.Client, EntraEmulator]) -> None:
    http, app = fresh
    owned = next(iter(app.tenant.service_principals))
    person = next(iter(app.tenant.users))
    app.add_owner(owned, person)
    since = "2020-01-01T00:00:00Z"
    body = http.get(
        "/v1.0/auditLogs/directoryAudits",
        params={"$filter": f"activityDateTime ge {since} and loggedByService eq 'Core Directory'"},
    ).json()
    added = [
        a for a in body["value"] if a["activityDisplayName"] == "Add owner to service principal"
    ]
    assert [t["id"] for t in added[-1]["targetResources"]] == [owned, person]


@pytest.mark.parametrize(("report", "status"), [("national", 400), ("absent", 404)])
def test_the_beta_sign_in_report_where_it_does_not_exist(
    fresh: tuple[httpx.Client, EntraEmulator], registry: Registry, report: str, status: int
) -> None:
    http, app = fresh
    app.switches.sign_in_report = report
    answer = http.get("/beta/reports/servicePrincipalSignInActivities")
    assert answer.status_code == status
    check(registry, V1, "microsoft.graph.ODataErrors.ODataError", answer.json())
