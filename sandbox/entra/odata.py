"""OData pieces of the Graph emulator: error bodies, $select, $top, $filter, page tokens."""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from sandbox.server import Request, Response

MAX_TOP = 999
DEFAULT_TOP = 100
FILTER = re.compile(r"^\s*(?P<prop>[\w/]+)\s+eq\s+'(?P<value>(?:[^']|'')*)'\s*$", re.IGNORECASE)


class ODataFault(Exception):
    """Raised inside a handler; becomes Graph's error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    request_id = str(uuid.uuid4())
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": request_id,
            },
        }
    }
    return Response(status, body, headers or {})


def encode_token(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        state = json.loads(base64.urlsafe_b64decode(padded))
    except ValueError as exc:
        raise ODataFault(400, "Request_BadRequest", "Invalid skip token.") from exc
    if not isinstance(state, dict):
        raise ODataFault(400, "Request_BadRequest", "Invalid skip token.")
    return state


def page_size(request: Request, default: int = DEFAULT_TOP) -> int:
    raw = request.arg("$top")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_TOP:
        raise ODataFault(
            400,
            "Request_BadRequest",
            f"Invalid page size specified: '{raw}'. Must be between 1 and 999 inclusive.",
        )
    return int(raw)


def selection(request: Request, entity: str, known: frozenset[str]) -> list[str] | None:
    raw = request.arg("$select")
    if raw is None:
        return None
    fields = [name.strip() for name in raw.split(",") if name.strip()]
    for name in fields:
        if name not in known:
            raise ODataFault(
                400,
                "Request_BadRequest",
                f"Could not find a property named '{name}' on type 'microsoft.graph.{entity}'.",
            )
    return fields


def project(item: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    if fields is None:
        return dict(item)
    shown = {"id": item["id"]} if "id" in item else {}
    shown.update({name: item.get(name) for name in fields})
    return shown


def equality_filter(request: Request, allowed: frozenset[str]) -> tuple[str, str] | None:
    raw = request.arg("$filter")
    if raw is None:
        return None
    match = FILTER.match(raw)
    if not match or match["prop"] not in allowed:
        raise ODataFault(400, "Request_UnsupportedQuery", f"Unsupported query: '{raw}'.")
    return match["prop"], match["value"].replace("''", "'")
