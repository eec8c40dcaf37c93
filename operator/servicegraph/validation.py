"""Admission, offline: the checks the API server runs on our objects, from the generated CRDs.

The same schema (types, enums, ranges, patterns), the same list-map uniqueness and the same CEL
rules, so `servicegraph check` in a CI pipeline refuses exactly what the cluster would refuse,
with messages in the API server's style that name the field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache, partial
from typing import TYPE_CHECKING, Any

import fastjsonschema

from servicegraph.api import API_VERSION, DNS_SUBDOMAIN_PATTERN, KINDS
from servicegraph.crds import JsonSchema, object_schema
from servicegraph.native_rules import INT64_MAX, INT64_MIN, native

if TYPE_CHECKING:  # jsonschema words the errors of an object that fails: imported only then
    import jsonschema

KINDS_BY_NAME = {kind.kind: kind for kind in KINDS}


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        text = f"{self.field}: {self.message}" if self.field else self.message
        return cut(printable(text), 500)


def printable(text: str) -> str:
    """`text` on one line: control and other unprintable characters (a newline in a key, a
    NUL, a right-to-left override) written as escapes, as a terminal should show them."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def validate(obj: dict[str, Any]) -> list[FieldError]:
    """Every reason the API server would refuse this ServiceDependency or ServiceGraph."""
    if not isinstance(obj, dict):
        return [FieldError("", f"Invalid value: {_short(obj)}: must be an object")]
    kind_name = obj.get("kind")
    kind = KINDS_BY_NAME.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        return [FieldError("kind", f"unknown kind {_short(kind_name)}")]
    if obj.get("apiVersion") != API_VERSION:
        return [
            FieldError("apiVersion", f"must be {API_VERSION}, not {_short(obj.get('apiVersion'))}")
        ]
    unreadable = None if _readable(obj) else _unreadable(obj)
    if unreadable is not None:
        return [unreadable]
    errors = list(_metadata_errors(obj.get("metadata")))
    if errors:
        return errors
    schema = _schema(kind.kind)
    if _passes_strictly(kind.kind, obj):  # no schema error, no unknown field: lists remain
        errors = _structure_errors(schema, obj, "", lists_only=True)
    else:
        errors = (
            []
            if _passes_schema(kind.kind, obj)
            else sorted(_schema_errors(schema, obj), key=lambda e: e.field)
        )
        errors += _structure_errors(schema, obj, "")
    if not errors:  # CEL rules only run on objects that pass the schema, as in the API server
        errors += _rule_errors(schema, obj, "")
    return errors


# Our objects are a few levels deep; a value nested past this is refused before the schema
# checks, which recurse and would exhaust Python's stack.
MAX_DEPTH = 64


def _unreadable(obj: Any) -> FieldError | None:
    """The first value the API server could not take, in one walk: one nested more than
    MAX_DEPTH levels deep; NaN or infinity (no JSON form); an integer beyond int64 (its JSON
    decoder, like CEL, counts in 64 bits). Python would carry them on and fail later: in CEL,
    or when printing a 10,000-digit number in a message."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(obj, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_DEPTH:
            where = _path(path[:MAX_DEPTH])
            return FieldError(where, f"Invalid value: nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((item, (*path, key)) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((item, (*path, index)) for index, item in enumerate(value))
        elif isinstance(value, bool | str) or value is None:
            continue
        elif isinstance(value, float) and not math.isfinite(value):
            return FieldError(_path(path), f"Invalid value: {value}: JSON has no such number")
        elif isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            return FieldError(
                _path(path), f"Invalid value: {_short(value)}: must fit in a 64-bit integer"
            )
    return None


def _readable(value: Any, depth: int = 0) -> bool:
    """True when `_unreadable` would find nothing, told quickly (no paths kept); False when
    it may find something: it then says what."""
    if depth > MAX_DEPTH:
        return False
    kind = value.__class__
    if kind is str or kind is bool or value is None:
        return True
    if kind is dict:
        return all(_readable(item, depth + 1) for item in value.values())
    if kind is list:
        return all(_readable(item, depth + 1) for item in value)
    if kind is int:
        return bool(INT64_MIN <= value <= INT64_MAX)
    return kind is float and math.isfinite(value)


@cache
def _schema(kind_name: str) -> JsonSchema:
    return object_schema(KINDS_BY_NAME[kind_name])


# The keys every object has, which the structure walk leaves to the metadata checks.
_OBJECT_KEYS = ("apiVersion", "kind", "metadata")


@cache
def _nothing_below() -> tuple[frozenset[int], frozenset[int]]:
    """The nodes of our kinds' schemas (by id; the schemas are kept, so ids stay theirs) with
    no CEL rule at or below them, and those with no list-type (uniqueness) at or below them:
    the walks skip them. A schema from elsewhere is walked whole."""
    without_rules: set[int] = set()
    without_lists: set[int] = set()

    def visit(node: JsonSchema) -> None:
        # The rule walk follows properties and items; the structure walk additionalProperties too.
        followed = [*node.get("properties", {}).values()]
        if isinstance(node.get("items"), dict):
            followed.append(node["items"])
        extra = node.get("additionalProperties")
        walked = [*followed, *([extra] if isinstance(extra, dict) else [])]
        for child in walked:
            visit(child)
        rules = node.get("x-kubernetes-validations")
        if not rules and all(id(child) in without_rules for child in followed):
            without_rules.add(id(node))
        lists = "x-kubernetes-list-type" in node
        if not lists and all(id(child) in without_lists for child in walked):
            without_lists.add(id(node))

    for kind in KINDS:
        visit(_schema(kind.kind))
    return frozenset(without_rules), frozenset(without_lists)


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
            f"Invalid value: {cut(repr(name[:100]), 80)}: a lowercase RFC 1123 subdomain must "
            "consist of lower case alphanumeric characters, '-' or '.'",
        )
    namespace = metadata.get("namespace")
    if namespace is not None and not (
        isinstance(namespace, str)
        and len(namespace) <= 63
        and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", namespace)
    ):
        shown = cut(repr(namespace[:100]), 80) if isinstance(namespace, str) else _short(namespace)
        yield FieldError("metadata.namespace", f"Invalid value: {shown}")
    for field in ("labels", "annotations"):
        yield from _string_map_errors(f"metadata.{field}", metadata.get(field), field == "labels")
    generation = metadata.get("generation")
    if generation is not None and (isinstance(generation, bool) or not isinstance(generation, int)):
        yield FieldError(
            "metadata.generation", f"Invalid value: {_short(generation)}: must be of type integer"
        )


_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


def _string_map_errors(field: str, value: Any, labels: bool) -> Iterator[FieldError]:
    """Labels and annotations: string keys (qualified names) to strings, label values short."""
    if value is None:
        return
    if not isinstance(value, dict):
        yield FieldError(field, f"Invalid value: {_short(value)}: must be of type object")
        return
    for key, item in value.items():
        prefix, _, name = str(key).rpartition("/")
        if not (
            _QUALIFIED_NAME.fullmatch(name)
            and (not prefix or (len(prefix) <= 253 and re.fullmatch(DNS_SUBDOMAIN_PATTERN, prefix)))
        ):
            yield FieldError(
                field,
                f"Invalid value: {_short(key)}: a qualified name must consist of alphanumeric "
                "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                "character, with an optional DNS subdomain prefix and '/'",
            )
        if not isinstance(item, str):
            yield FieldError(
                f"{field}[{_short(key)}]", f"Invalid value: {_short(item)}: must be of type string"
            )
        elif labels and not _LABEL_VALUE.fullmatch(item):
            yield FieldError(
                f"{field}[{_short(key)}]",
                f"Invalid value: {_short(item)}: a valid label must be an empty string or consist "
                "of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                "alphanumeric character",
            )


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: JsonSchema
) -> Iterator[jsonschema.ValidationError]:
    """`pattern` as the API server (Go, RE2) reads it: `$` is the end of the text. Python's
    `$` also matches before a final newline, which would let "name\\n" through."""
    if validator.is_type(instance, "string") and not _end_anchored(pattern).search(instance):
        from jsonschema import ValidationError

        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@cache
def _end_anchored(pattern: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", pattern))


@cache
def _validator_class() -> Any:
    """Draft 4, as the API server's structural schemas, with its `pattern`."""
    import jsonschema

    return jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        jsonschema.Draft4Validator, {"pattern": _pattern}
    )


@cache
def _fast_schema(kind_name: str, *, strictly: bool = False) -> Callable[[Any], Any]:
    """The kind's schema compiled to Python by fastjsonschema: a verdict fifteen times faster
    than jsonschema's, which is asked only for the messages of an object that fails. Patterns
    end-anchored as the API server reads them; formats ignored and defaults left out, as by
    jsonschema. `strictly`: unknown fields fail too."""
    schema = _schema(kind_name)
    anchored = _with_anchored_patterns(_without_unknown_fields(schema) if strictly else schema)
    return fastjsonschema.compile(
        {"$schema": "http://json-schema.org/draft-04/schema#", **anchored},
        use_default=False,
        use_formats=False,
    )


def _with_anchored_patterns(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: _end_anchored(value).pattern
            if key == "pattern" and isinstance(value, str)
            else _with_anchored_patterns(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_with_anchored_patterns(item) for item in node]
    return node


def _passes_schema(kind_name: str, obj: dict[str, Any], *, strictly: bool = False) -> bool:
    try:
        _fast_schema(kind_name, strictly=strictly)(obj)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def _passes_strictly(kind_name: str, obj: dict[str, Any]) -> bool:
    """The schema's verdict and no unknown field (as `_structure_errors` finds them), at once."""
    return _passes_schema(kind_name, obj, strictly=True)


def _without_unknown_fields(node: Any) -> Any:
    """The schema with `additionalProperties: false` wherever the structure walk reports an
    unknown field: objects with properties and no schema for other keys (which may still be
    apiVersion, kind and metadata), followed as that walk follows them."""
    if not isinstance(node, dict):
        return node
    copy = dict(node)
    props = node.get("properties")
    extra = node.get("additionalProperties")
    if isinstance(props, dict):
        copy["properties"] = {key: _without_unknown_fields(sub) for key, sub in props.items()}
        if node.get("type") == "object" and not isinstance(extra, dict):
            copy["properties"] = {**{key: {} for key in _OBJECT_KEYS}, **copy["properties"]}
            copy["additionalProperties"] = False
    if isinstance(extra, dict):
        copy["additionalProperties"] = _without_unknown_fields(extra)
    if isinstance(node.get("items"), dict):
        copy["items"] = _without_unknown_fields(node["items"])
    return copy


def _schema_errors(schema: JsonSchema, obj: dict[str, Any]) -> Iterator[FieldError]:
    validator = _validator_class()(schema)
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
        return f"Invalid value: {_short(value)}: should be {relation} {expected}"
    if keyword in ("maxLength", "maxItems", "maxProperties"):
        unit = "bytes" if keyword == "maxLength" else "items"
        return f"Too long: may not have more than {expected} {unit}"
    if keyword in ("minLength", "minItems"):
        unit = "characters" if keyword == "minLength" else "items"
        return f"Invalid value: {_short(value)}: should have at least {expected} {unit}"
    return f"Invalid value: {cut(error.message, 200)}"


def _short(value: Any) -> str:
    """`value` as JSON, at most 80 characters, however big, deep or odd the value is (cut
    after unprintable characters are escaped, which makes them longer)."""
    return cut(printable(json.dumps(_clipped(value), ensure_ascii=False, default=repr)), 80)


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clipped(value: Any, depth: int = 0) -> Any:
    """Enough of `value` to fill 80 characters: never walks all of a huge or deep value."""
    if isinstance(value, str):
        return value[:81]
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        # Python refuses to print an int of more than 4300 digits; nobody wants to read one.
        return f"<an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits>"
    if isinstance(value, list | tuple):
        return [_clipped(item, depth + 1) for item in value[:20]] if depth < 4 else ["..."]
    if isinstance(value, dict):
        if depth >= 4:
            return {"...": "..."}
        return {str(k)[:81]: _clipped(v, depth + 1) for k, v in list(value.items())[:20]}
    return value


def _structure_errors(
    schema: JsonSchema, value: Any, path: str, *, lists_only: bool = False
) -> list[FieldError]:
    """Unknown fields (kubectl's strict field validation) and list-map / set uniqueness;
    `lists_only`: uniqueness alone, for an object known to have no unknown field."""
    errors: list[FieldError] = []
    if lists_only and id(schema) in _nothing_below()[1]:
        return errors
    if isinstance(value, dict) and schema.get("type") == "object":
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            child = f"{path}.{key}" if path else key
            if props is not None and key in props:
                errors += _structure_errors(props[key], sub, child, lists_only=lists_only)
            elif isinstance(extra, dict):
                errors += _structure_errors(extra, sub, child, lists_only=lists_only)
            elif props is not None and key not in _OBJECT_KEYS:
                errors.append(FieldError(child, "unknown field"))
    elif isinstance(value, list) and schema.get("type") == "array":
        items = schema.get("items", {})
        if not (lists_only and id(items) in _nothing_below()[1]):
            for index, item in enumerate(value):
                errors += _structure_errors(items, item, f"{path}[{index}]", lists_only=lists_only)
        errors += _uniqueness_errors(schema, value, path)
    return errors


def _uniqueness_errors(schema: JsonSchema, value: list[Any], path: str) -> list[FieldError]:
    list_type = schema.get("x-kubernetes-list-type")
    keys = schema.get("x-kubernetes-list-map-keys", [])
    seen: dict[Any, int] = {}
    errors: list[FieldError] = []
    for index, item in enumerate(value):
        if list_type == "map" and isinstance(item, dict):
            identity: Any = tuple(_hashable(item.get(key)) for key in keys)
        elif list_type == "set":
            identity = repr(item)
        else:
            return errors
        if identity not in seen:
            seen[identity] = index
            continue
        if list_type == "map":
            shown = ", ".join(f'{key}="{cut(str(item.get(key)), 80)}"' for key in keys)
            where = f"{path}[{index}].{keys[0]}" if len(keys) == 1 else f"{path}[{index}]"
        else:
            shown, where = _short(item), f"{path}[{index}]"
        errors.append(
            FieldError(where, f"Duplicate value: {shown} (already at index {seen[identity]})")
        )
    return errors


def _hashable(value: Any) -> Any:
    """A key for a list-map entry whose key field holds a list or an object (a schema error
    of its own): equal values stay equal."""
    try:
        hash(value)
    except TypeError:
        return json.dumps(value, sort_keys=True, default=repr)
    return value


def _rule_errors(schema: JsonSchema, value: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if id(schema) in _nothing_below()[0]:
        return errors
    for rule in schema.get("x-kubernetes-validations", []):
        if not _native_or_cel(rule["rule"])(value):
            field = path + rule.get("fieldPath", "") if rule.get("fieldPath") else path
            errors.append(
                FieldError(field.lstrip("."), f"Invalid value: {_rule_message(rule, value)}")
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
def _native_or_cel(rule: str) -> Callable[[Any], bool]:
    """The rule's Python counterpart (native_rules), else cel-python's evaluation of it;
    cel-python is imported only then, or to word a failed rule's messageExpression."""
    found = native(rule)
    if found is not None:
        return found
    from servicegraph.cel_reference import rule_holds

    return partial(rule_holds, rule)


def _rule_message(rule: dict[str, str], value: Any) -> str:
    from servicegraph.cel_reference import rule_message

    return rule_message(rule, value)
