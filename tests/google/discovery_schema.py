"""A small validator for the `schemas` section of Google discovery documents.

Checks property names and JSON types (string, boolean, integer, number, array, object,
any), enums and int64-as-string, following `$ref`; unknown properties are errors unless
the schema declares `additionalProperties`.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from tests.conftest import spec_path

PRIMITIVES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}


@cache
def document(name: str) -> dict[str, Any]:
    return json.loads(spec_path("google", name).read_text())


def method(doc: dict[str, Any], method_id: str) -> dict[str, Any]:
    def walk(resources: dict[str, Any]) -> dict[str, Any] | None:
        for resource in resources.values():
            for candidate in resource.get("methods", {}).values():
                if candidate["id"] == method_id:
                    return candidate
            found = walk(resource.get("resources", {}))
            if found:
                return found
        return None

    found = walk(doc["resources"])
    assert found, f"{method_id} is not in the discovery document"
    return found


def validate(
    value: Any, schema: dict[str, Any], schemas: dict[str, Any], at: str = "$"
) -> list[str]:
    if "$ref" in schema:
        return validate(value, schemas[schema["$ref"]], schemas, at)
    kind = schema.get("type", "object" if "properties" in schema else "any")
    if kind == "any":
        return []
    if kind in PRIMITIVES:
        return _primitive(value, schema, kind, at)
    if kind == "array":
        if not isinstance(value, list):
            return [f"{at}: expected array, got {type(value).__name__}"]
        items = schema.get("items", {"type": "any"})
        return [e for i, v in enumerate(value) for e in validate(v, items, schemas, f"{at}[{i}]")]
    if not isinstance(value, dict):
        return [f"{at}: expected object, got {type(value).__name__}"]
    return _object(value, schema, schemas, at)


def _primitive(value: Any, schema: dict[str, Any], kind: str, at: str) -> list[str]:
    if isinstance(value, bool) and kind != "boolean":
        return [f"{at}: expected {kind}, got boolean"]
    if not isinstance(value, PRIMITIVES[kind]):
        return [f"{at}: expected {kind}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{at}: {value!r} is not one of {schema['enum']}"]
    if schema.get("format") in ("int64", "uint64") and not str(value).lstrip("-").isdigit():
        return [f"{at}: {value!r} is not an int64 string"]
    return []


def _object(
    value: dict[str, Any], schema: dict[str, Any], schemas: dict[str, Any], at: str
) -> list[str]:
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    errors = []
    for key, item in value.items():
        if key in properties:
            errors += validate(item, properties[key], schemas, f"{at}.{key}")
        elif extra is not None:
            errors += validate(item, extra, schemas, f"{at}.{key}")
        else:
            errors.append(f"{at}: unknown property {key!r}")
    return errors


def check_response(doc_name: str, method_id: str, body: Any) -> list[str]:
    doc = document(doc_name)
    response = method(doc, method_id)["response"]
    return validate(body, response, doc["schemas"])
