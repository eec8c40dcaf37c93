"""Admission, offline: the checks the API server runs on our objects, from the generated CRDs.

The same schema (types, enums, ranges, patterns), the same list-map uniqueness and the same CEL
rules, so `servicegraph check` in a CI pipeline refuses exactly what the cluster would refuse,
with messages in the API server's style that name the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import celpy
import celpy.adapter
import celpy.evaluation
import jsonschema

from servicegraph.api import API_VERSION, DNS_SUBDOMAIN_PATTERN, KINDS
from servicegraph.crds import JsonSchema, object_schema

KINDS_BY_NAME = {kind.kind: kind for kind in KINDS}


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def validate(obj: dict[str, Any]) -> list[FieldError]:
    """Every reason the API server would refuse this ServiceDependency or ServiceGraph."""
    kind = KINDS_BY_NAME.get(obj.get("kind", ""))
    if kind is None:
        return [FieldError("kind", f"unknown kind {obj.get('kind')!r}")]
    if obj.get("apiVersion") != API_VERSION:
        return [FieldError("apiVersion", f"must be {API_VERSION}, not {obj.get('apiVersion')!r}")]
    errors = list(_metadata_errors(obj.get("metadata")))
    if errors:
        return errors
    schema = _schema(kind.kind)
    errors = sorted(_schema_errors(schema, obj), key=lambda e: e.field)
    errors += _structure_errors(schema, obj, "")
    if not errors:  # CEL rules only run on objects that pass the schema, as in the API server
        errors += _rule_errors(schema, obj, "")
    return errors


@cache
def _schema(kind_name: str) -> JsonSchema:
    return object_schema(KINDS_BY_NAME[kind_name])


def _metadata_errors(metadata: Any) -> Iterator[FieldError]:
    if not isinstance(metadata, dict):
        yield FieldError("metadata", "Required value")
        return
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        yield FieldError("metadata.name", "Required value: name is required")
    elif len(name) > 253 or not re.fullmatch(DNS_SUBDOMAIN_PATTERN, name):
        yield FieldError(
            "metadata.name",
            f"Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist of lower case "
            "alphanumeric characters, '-' or '.'",
        )
    namespace = metadata.get("namespace")
    if namespace is not None and not (
        isinstance(namespace, str)
        and len(namespace) <= 63
        and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", namespace)
    ):
        yield FieldError("metadata.namespace", f"Invalid value: {namespace!r}")


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _schema_errors(schema: JsonSchema, obj: dict[str, Any]) -> Iterator[FieldError]:
    validator = jsonschema.Draft4Validator(schema)
    for error in validator.iter_errors(obj):
        yield FieldError(_path(error.absolute_path), _describe(error))


def _describe(error: jsonschema.ValidationError) -> str:
    value = error.instance
    keyword = error.validator
    expected: Any = error.validator_value
    if keyword == "enum":
        supported = ", ".join(_short(v) for v in expected)
        return f"Unsupported value: {_short(value)}: supported values: {supported}"
    if keyword == "type":
        return f"Invalid value: {_short(value)}: must be of type {expected}"
    if keyword == "required":
        return f"Required value: {error.message}"
    if keyword == "pattern":
        return f"Invalid value: {_short(value)}: should match '{expected}'"
    if keyword in ("minimum", "maximum"):
        relation = "greater than or equal to" if keyword == "minimum" else "less than or equal to"
        return f"Invalid value: {value}: should be {relation} {expected}"
    if keyword in ("maxLength", "maxItems", "maxProperties"):
        unit = "bytes" if keyword == "maxLength" else "items"
        return f"Too long: may not have more than {expected} {unit}"
    if keyword in ("minLength", "minItems"):
        unit = "characters" if keyword == "minLength" else "items"
        return f"Invalid value: {_short(value)}: should have at least {expected} {unit}"
    return f"Invalid value: {error.message}"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _structure_errors(schema: JsonSchema, value: Any, path: str) -> list[FieldError]:
    """Unknown fields (kubectl's strict field validation) and list-map / set uniqueness."""
    errors: list[FieldError] = []
    if isinstance(value, dict) and schema.get("type") == "object":
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            child = f"{path}.{key}" if path else key
            if props is not None and key in props:
                errors += _structure_errors(props[key], sub, child)
            elif isinstance(extra, dict):
                errors += _structure_errors(extra, sub, child)
            elif props is not None and key not in ("apiVersion", "kind", "metadata"):
                errors.append(FieldError(child, "unknown field"))
    elif isinstance(value, list) and schema.get("type") == "array":
        items = schema.get("items", {})
        for index, item in enumerate(value):
            errors += _structure_errors(items, item, f"{path}[{index}]")
        errors += _uniqueness_errors(schema, value, path)
    return errors


def _uniqueness_errors(schema: JsonSchema, value: list[Any], path: str) -> list[FieldError]:
    list_type = schema.get("x-kubernetes-list-type")
    keys = schema.get("x-kubernetes-list-map-keys", [])
    seen: dict[Any, int] = {}
    errors: list[FieldError] = []
    for index, item in enumerate(value):
        if list_type == "map" and isinstance(item, dict):
            identity: Any = tuple(item.get(key) for key in keys)
            shown = ", ".join(f'{key}="{item.get(key)}"' for key in keys)
            where = f"{path}[{index}].{keys[0]}" if len(keys) == 1 else f"{path}[{index}]"
        elif list_type == "set":
            identity, shown, where = repr(item), _short(item), f"{path}[{index}]"
        else:
            return errors
        if identity in seen:
            errors.append(
                FieldError(where, f"Duplicate value: {shown} (already at index {seen[identity]})")
            )
        else:
            seen[identity] = index
    return errors


def _rule_errors(schema: JsonSchema, value: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for rule in schema.get("x-kubernetes-validations", []):
        if not _rule_holds(rule["rule"], value):
            field = path + rule.get("fieldPath", "") if rule.get("fieldPath") else path
            errors.append(
                FieldError(field.lstrip("."), f"Invalid value: {rule.get('message', rule['rule'])}")
            )
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key, sub in value.items():
            if key in props:
                errors += _rule_errors(props[key], sub, f"{path}.{key}" if path else key)
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += _rule_errors(schema["items"], item, f"{path}[{index}]")
    return errors


@cache
def _program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def _rule_holds(rule: str, value: Any) -> bool:
    try:
        return bool(_program(rule).evaluate({"self": celpy.adapter.json_to_cel(value)}))
    except (
        celpy.evaluation.CELEvalError
    ):  # the API server refuses an object whose rule cannot evaluate
        return False
