"""OData pieces of the Graph emulator: error bodies, $select, $top, $expand, $filter, tokens.

Query rules follow ../shared/specs/msgraph (graph-v1.0-identity-subset.yaml property
descriptions) and learn.microsoft.com/graph/query-parameters: `$top` is 1-999 with a
default page of 100; a request with `$expand` gets at most 100 directory objects per page
and at most 20 expanded items per object, with no link to the rest
(developer.microsoft.com/en-us/graph/known-issues, "Some limitations apply to query
parameters"); `$filter` supports only the operators each property's description lists.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sandbox.server import Request, Response

MAX_TOP = 999
DEFAULT_TOP = 100
EXPANDED_PAGE = 100  # directory objects per page when $expand is used
EXPANDED_ITEMS = 20  # items of an expanded relationship
MAX_IN_VALUES = 15  # "in" takes at most 15 expressions without advanced queries

_QUOTED = r"'(?:[^']|'')*'"
_CLAUSE = re.compile(
    r"^\s*(?:"
    rf"startswith\(\s*(?P<sw_prop>[\w/]+)\s*,\s*(?P<sw_value>{_QUOTED})\s*\)"
    rf"|(?P<count_prop>\w+)/\$count\s+(?P<count_op>eq|ne)\s+(?P<count_value>\d+)"
    rf"|(?P<in_prop>[\w/]+)\s+in\s+\((?P<in_values>\s*{_QUOTED}(?:\s*,\s*{_QUOTED})*\s*)\)"
    rf"|(?P<prop>[\w/]+)\s+(?P<op>eq|ge|le)\s+(?P<value>{_QUOTED}|null|[\w:.+-]+)"
    r")\s*$",
    re.IGNORECASE,
)
_AND = re.compile(r"\s+and\s+(?=(?:[^']*'[^']*')*[^']*$)", re.IGNORECASE)


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


def not_found(object_id: str) -> ODataFault:
    return ODataFault(
        404,
        "Request_ResourceNotFound",
        f"Resource '{object_id}' does not exist or one of its queried reference-property "
        "objects are not present.",
    )


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
    size = default
    if raw is not None:
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_TOP:
            raise ODataFault(
                400,
                "Request_BadRequest",
                f"Invalid page size specified: '{raw}'. Must be between 1 and 999 inclusive.",
            )
        size = int(raw)
    return min(size, EXPANDED_PAGE) if request.arg("$expand") else size


def fields_of(raw: str | None, entity: str, known: frozenset[str]) -> list[str] | None:
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


def selection(request: Request, entity: str, known: frozenset[str]) -> list[str] | None:
    return fields_of(request.arg("$select"), entity, known)


def project(item: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """`item` cut to `fields`; a derived type keeps its `@odata.type` annotation."""
    if fields is None:
        return {k: v for k, v in item.items() if not k.startswith("_")}
    shown = {"@odata.type": item["@odata.type"]} if "@odata.type" in item else {}
    if "id" in item:
        shown["id"] = item["id"]
    shown.update({name: item.get(name) for name in fields})
    return shown


@dataclass(frozen=True)
class Expansion:
    relationship: str
    select: str | None  # $select nested in $expand (supported for owners and sponsors)


def expansions(request: Request, allowed: frozenset[str]) -> list[Expansion]:
    raw = request.arg("$expand")
    if raw is None:
        return []
    found = []
    for part in re.split(r",(?![^(]*\))", raw):
        match = re.fullmatch(r"\s*(\w+)(?:\(\s*\$select=([\w,]+)\s*\))?\s*", part)
        if not match or match[1] not in allowed:
            raise ODataFault(400, "Request_BadRequest", f"Unsupported expand: '{part.strip()}'.")
        found.append(Expansion(match[1], match[2]))
    return found


@dataclass(frozen=True)
class Clause:
    op: str  # eq | ge | le | startswith | in | count_eq | count_ne
    prop: str
    value: Any


def _unquote(raw: str) -> str:
    return raw[1:-1].replace("''", "'")


def parse_filter(raw: str) -> list[Clause]:
    """`a and b and ...`, each a comparison the emulated properties support."""
    clauses = []
    for part in _AND.split(raw):
        match = _CLAUSE.match(part)
        if not match:
            raise ODataFault(400, "Request_UnsupportedQuery", f"Unsupported query: '{raw}'.")
        if match["sw_prop"]:
            clauses.append(Clause("startswith", match["sw_prop"], _unquote(match["sw_value"])))
        elif match["count_prop"]:
            op = "count_" + match["count_op"].lower()
            clauses.append(Clause(op, match["count_prop"], int(match["count_value"])))
        elif match["in_prop"]:
            values = [_unquote(v.strip()) for v in re.findall(_QUOTED, match["in_values"])]
            if len(values) > MAX_IN_VALUES:
                raise ODataFault(
                    400, "Request_UnsupportedQuery", "Too many expressions in 'in' clause."
                )
            clauses.append(Clause("in", match["in_prop"], values))
        else:
            value = match["value"]
            parsed: Any = None if value.lower() == "null" else value
            if value.startswith("'"):
                parsed = _unquote(value)
            clauses.append(Clause(match["op"].lower(), match["prop"], parsed))
    return clauses


def moment(value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ODataFault(400, "Request_BadRequest", f"Invalid date-time '{value}'.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def matches(item: dict[str, Any], clause: Clause, count: Callable[[str], int]) -> bool:
    value = item.get(clause.prop)
    if clause.op == "eq":
        if isinstance(value, str) and isinstance(clause.value, str):
            return value.lower() == clause.value.lower()
        return value == clause.value
    if clause.op == "in":
        return isinstance(value, str) and value.lower() in {v.lower() for v in clause.value}
    if clause.op == "startswith":
        return isinstance(value, str) and value.lower().startswith(clause.value.lower())
    if clause.op in ("ge", "le"):
        if value is None:
            return False
        mine, theirs = moment(value), moment(clause.value)
        return mine >= theirs if clause.op == "ge" else mine <= theirs
    counted = count(clause.prop)
    return counted == clause.value if clause.op == "count_eq" else counted != clause.value


def filtered(
    request: Request,
    items: Iterable[dict[str, Any]],
    allowed: dict[str, frozenset[str]],
    count: Callable[[dict[str, Any], str], int] | None = None,
) -> list[dict[str, Any]]:
    """Items passing `$filter`; `allowed` maps each property to the operators it takes.

    A `/$count` comparison is an advanced query: it needs `ConsistencyLevel: eventual` and
    `$count=true` (learn.microsoft.com/graph/aad-advanced-queries)."""
    raw = request.arg("$filter")
    if raw is None:
        return list(items)
    clauses = parse_filter(raw)
    for clause in clauses:
        if clause.op not in allowed.get(clause.prop, frozenset()):
            raise ODataFault(400, "Request_UnsupportedQuery", f"Unsupported query: '{raw}'.")
        advanced = request.headers.get("consistencylevel") == "eventual"
        if clause.op.startswith("count_") and not (advanced and request.arg("$count") == "true"):
            raise ODataFault(
                400,
                "Request_UnsupportedQuery",
                "Count filters need the ConsistencyLevel header set to eventual and $count=true.",
            )

    def counter(item: dict[str, Any]) -> Callable[[str], int]:
        return lambda prop: count(item, prop) if count else 0

    return [item for item in items if all(matches(item, c, counter(item)) for c in clauses)]
