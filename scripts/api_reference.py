"""docs/api-reference.md: every field of both kinds, with its type, default, range and the
validation rules that apply to it, generated from the CRDs' schemas (themselves generated from
the models), so the reference cannot drift from what the API server enforces.

    make crds        (or: python scripts/api_reference.py)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from servicegraph.api import API_VERSION, KINDS, PATTERN_MEANINGS
from servicegraph.crds import object_schema

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "api-reference.md"


def reference() -> str:
    lines = [
        "# API reference",
        "",
        f"Both kinds are `{API_VERSION}`. Generated from the CRDs (`make crds`); the API server",
        "and `servicegraph check` enforce every range, pattern and rule below.",
        "",
    ]
    for kind in KINDS:
        schema = object_schema(kind)
        summary = schema["properties"]["spec"].get("description", "")
        lines += [f"## {kind.kind}", "", summary, ""]
        for part in ("spec", "status"):
            if part not in schema.get("properties", {}):
                continue
            lines += [
                f"### {part}",
                "",
                "| field | type | default | allowed | description |",
                "|---|---|---|---|---|",
            ]
            lines += [_row(path, field) for path, field in _fields(schema["properties"][part])]
            lines.append("")
        rules = list(_rules(schema, ""))
        if rules:
            lines += ["### Validation rules", "", "| on | rule |", "|---|---|"]
            lines += [f"| `{where or '.'}` | {_cell(message)} |" for where, message in rules]
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _fields(schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for name, field in schema.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield path, field
        if field.get("type") == "object":
            yield from _fields(field, path)
        elif field.get("type") == "array" and field.get("items", {}).get("type") == "object":
            yield from _fields(field["items"], f"{path}[]")


def _row(path: str, field: dict[str, Any]) -> str:
    kind = field.get("type", "")
    if kind == "array":
        kind = f"list of {field.get('items', {}).get('type', 'any')}"
    default = f"`{json.dumps(field['default'])}`" if "default" in field else ""
    return (
        f"| `{path}` | {kind} | {default} | {_cell(_allowed(field))} | "
        f"{_cell(field.get('description', ''))} |"
    )


def _allowed(field: dict[str, Any]) -> str:
    parts = []
    if "enum" in field:
        parts.append(", ".join(f"`{value}`" for value in field["enum"]))
    parts += _bounds(field, "minimum", "maximum", "{}")
    if "pattern" in field:
        meaning = PATTERN_MEANINGS.get(field["pattern"])
        parts.append(meaning or f"matches `{field['pattern']}`")
    parts += _bounds(field, "minLength", "maxLength", "{} characters")
    parts += _bounds(field, "minItems", "maxItems", "{} items")
    parts += _bounds(field, "minProperties", "maxProperties", "{} entries")
    if field.get("x-kubernetes-list-type") == "map":
        keys = ", ".join(field.get("x-kubernetes-list-map-keys", []))
        parts.append(f"one entry per {keys}")
    parts += [
        rule.get("message", rule["rule"]) for rule in field.get("x-kubernetes-validations", [])
    ]
    return "; ".join(parts)


def _bounds(field: dict[str, Any], low: str, high: str, unit: str) -> list[str]:
    if low in field and high in field:
        return [unit.format(f"{field[low]} to {field[high]}")]
    if low in field:
        return [f"at least {unit.format(field[low])}"]
    if high in field:
        return [f"at most {unit.format(field[high])}"]
    return []


def _rules(schema: dict[str, Any], path: str) -> Iterator[tuple[str, str]]:
    """The object-level rules (those that tie several fields together), where they apply."""
    for rule in schema.get("x-kubernetes-validations", []):
        if schema.get("type") == "object" or not path:
            yield path, rule.get("message", rule["rule"])
    for name, field in schema.get("properties", {}).items():
        yield from _rules(field, f"{path}.{name}")
    if "items" in schema:
        yield from _rules(schema["items"], f"{path}[]")


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def main() -> int:
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(reference(), encoding="utf-8")
    print(f"wrote {REFERENCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
