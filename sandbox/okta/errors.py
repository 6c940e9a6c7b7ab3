"""Okta's error bodies (management spec schema `Error`; codes from the recorded exchanges
in ../shared/specs/okta/wire-examples and developer.okta.com/docs/reference/error-codes)."""

from __future__ import annotations

import secrets

from sandbox.server import Response


def okta_error(status: int, code: str, summary: str, causes: list[str] | None = None) -> Response:
    body = {
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": code,
        "errorId": "oae" + secrets.token_urlsafe(16),
        "errorCauses": [{"errorSummary": cause} for cause in causes or []],
    }
    return Response(status, body)


def not_found(object_id: str, type_name: str) -> Response:
    return okta_error(404, "E0000007", f"Not found: Resource not found: {object_id} ({type_name})")


def forbidden() -> Response:
    return okta_error(403, "E0000006", "You do not have permission to perform the requested action")


def validation(field: str, cause: str) -> Response:
    return okta_error(400, "E0000001", f"Api validation failed: {field}", [f"{field}: {cause}"])
