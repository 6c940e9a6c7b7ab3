"""The emulator's answers validated against the Graph definitions in ../shared/specs.

The PowerShell-style slice gives every entity `additionalProperties: {type: object}`
inside `allOf`, which would reject every property a sibling schema declares; those are
dropped before validating (the full Graph document has no such constraint).
"""

from __future__ import annotations

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
from tests.entra.conftest import served

V1 = "graph-v1.0-identity-subset.yaml"
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
