"""Reading a snapshot from a file: the document itself, a ConfigMap, or a List of them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import orjson
import yaml

from servicegraph.snapshot import Document, SnapshotError, check_schema_version
from servicegraph.snapshot_configmaps import (
    GZIP_KEY,
    INDEX_KEY,
    PLAIN_KEY,
    SNAPSHOT_LABEL,
    contents,
    decode,
    name_of,
    snapshot_selector,
)


def load_snapshot_file(path: str | Path) -> Document:
    """A snapshot document from a file holding the document itself, one ConfigMap
    (`kubectl get cm NAME -o yaml`), or a List of the index and its shards
    (`kubectl get cm -l graph.slo-engine.io/snapshot=NAME -o yaml`), in JSON or YAML."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise SnapshotError(f"{path}: not a text file: {error}") from error
    try:
        content = json.loads(text)
    except ValueError:
        try:
            # The C loader: kubectl's YAML of a big snapshot is megabytes of base64.
            content = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as error:
            raise SnapshotError(f"{path}: neither JSON nor YAML: {error}") from error
    if not isinstance(content, dict):
        raise SnapshotError(f"{path}: expected a snapshot document, a ConfigMap or a List")

    if "schemaVersion" in content:
        check_schema_version(content)
        doc = content
    elif content.get("kind") == "ConfigMap":
        doc = decode(content, lambda shard: _missing_shard(path, content, shard))
    elif content.get("kind") in ("List", "ConfigMapList"):
        doc = _decode_list(path, content.get("items") or [])
    else:
        raise SnapshotError(f"{path}: expected a snapshot document, a ConfigMap or a List")
    try:
        orjson.dumps(doc)  # JSON's \ud800 escapes decode to text no output can hold
    except orjson.JSONEncodeError as error:
        raise SnapshotError(f"{path}: {error}") from error
    return doc


def _decode_list(path: str | Path, items: list[Mapping[str, Any]]) -> Document:
    by_name = {name_of(item): item for item in items}
    indexes = [item for item in items if _holds_snapshot(item)]
    if len(indexes) != 1:
        raise SnapshotError(
            f"{path}: expected one snapshot in the List, found {len(indexes)}; "
            f"select one with -l {SNAPSHOT_LABEL}=NAME"
        )
    return decode(indexes[0], by_name.get)


def _holds_snapshot(config_map: Mapping[str, Any]) -> bool:
    data, binary_data = contents(config_map)
    return INDEX_KEY in data or PLAIN_KEY in data or GZIP_KEY in binary_data


def _missing_shard(path: str | Path, config_map: Mapping[str, Any], shard: str) -> NoReturn:
    name = name_of(config_map)
    raise SnapshotError(
        f"{path}: snapshot {name} is sharded (shard {shard} is not in the file); save it with "
        f"kubectl get cm -l {snapshot_selector(name)} -o yaml"
    )
