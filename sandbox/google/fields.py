"""Google's partial-response `fields` selector: `nextPageToken,users(id,name/fullName)`."""

from __future__ import annotations

from typing import Any

FieldTree = dict[str, "FieldTree"]  # an empty subtree selects the whole value


def parse_fields(text: str) -> FieldTree:
    tree, end = _parse_list(text, 0)
    if end != len(text):
        raise ValueError(f"unexpected ')' at {end} in fields")
    return tree


def _parse_list(text: str, pos: int) -> tuple[FieldTree, int]:
    tree: FieldTree = {}
    while pos < len(text) and text[pos] != ")":
        start = pos
        while pos < len(text) and text[pos] not in ",()":
            pos += 1
        node = tree
        for part in text[start:pos].strip().split("/"):
            if not part:
                raise ValueError(f"empty field name at {start}")
            node = node.setdefault(part, {})
        if pos < len(text) and text[pos] == "(":
            sub, pos = _parse_list(text, pos + 1)
            if pos >= len(text):
                raise ValueError("unclosed '(' in fields")
            node.update(sub)
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
    return tree, pos


def select(value: Any, tree: FieldTree) -> Any:
    """Keep only the selected fields of a JSON value (lists apply it to each element)."""
    if not tree:
        return value
    if isinstance(value, list):
        return [select(item, tree) for item in value]
    if isinstance(value, dict):
        return {key: select(value[key], sub) for key, sub in tree.items() if key in value}
    return value
