"""The snapshot in ConfigMaps: how a document is written, sharded and read back.

Pure: no Kubernetes client. The operator writes what `encode` returns and readers (the CLI,
other tools) pass what they read to `decode`.

A snapshot is one ConfigMap named after the snapshot, in one of three encodings:
- plain: `data["snapshot.json"]` holds the document;
- gzip: past `gzip_threshold`, `binaryData["snapshot.json.gz"]` holds it gzipped;
- sharded: when even the gzip exceeds one part, the gzip is cut into shard ConfigMaps named
  `<name>-<revision[:10]>-<i>` (`binaryData["part"]`, `data["partNumber"]`) and the ConfigMap
  `<name>` holds `data["index.json"]` listing them with their sha256.
Every ConfigMap has the label `graph.slo-engine.io/snapshot: <name>` and the annotation
`graph.slo-engine.io/revision`; `<name>` also has `data["revision"]`.
The revision is a hash of the document's content, so an unchanged graph is never rewritten.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from servicegraph.graph import without_gc
from servicegraph.snapshot import SCHEMA_VERSION, Document, SnapshotError, check_schema_version

SNAPSHOT_LABEL = "graph.slo-engine.io/snapshot"
REVISION_ANNOTATION = "graph.slo-engine.io/revision"
# On the index: the `snapshot.topology_of` hash of the graph it holds.
TOPOLOGY_ANNOTATION = "graph.slo-engine.io/topology"
PLAIN_KEY = "snapshot.json"
GZIP_KEY = "snapshot.json.gz"
INDEX_KEY = "index.json"
REVISION_KEY = "revision"
PART_KEY = "part"  # in binaryData: the bytes
# In data: the part's position. Kubernetes refuses a key present in both data and binaryData.
PART_NUMBER_KEY = "partNumber"

# Room for "-<revision[:10]>-<part>" after the name, with up to four digits of part number.
_SHARD_PREFIX_LIMIT = 253 - len("-0123456789-9999")
_LABEL_VALUE_LIMIT = 63


@dataclass(frozen=True, slots=True)
class ConfigMapPayload:
    """One ConfigMap to write; its namespace and owner are for the writer to set."""

    name: str
    data: dict[str, str] = field(default_factory=dict)
    binary_data: dict[str, str] = field(default_factory=dict)  # base64, as the API expects
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        """The ConfigMap body. Write it whole (create or replace): a merge patch would keep
        keys of the previous encoding, and `decode` refuses a ConfigMap holding two."""
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name,
                "labels": dict(self.labels),
                "annotations": dict(self.annotations),
            },
            "data": dict(self.data),
            "binaryData": dict(self.binary_data),
        }


@dataclass(frozen=True, slots=True)
class SnapshotWrite:
    """What to write for one revision of a snapshot.

    Write every shard first and the index last, then delete the shards of the previous
    revision: a reader that fetched the previous index still finds its shards (their names
    carry the revision), and a reader never sees an index whose shards are not all written.
    """

    revision: str
    bytes: int  # size of the canonical JSON document
    index: ConfigMapPayload
    shards: list[ConfigMapPayload]

    @property
    def in_write_order(self) -> list[ConfigMapPayload]:
        return [*self.shards, self.index]


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    """The bytes the revision hashes: compact UTF-8 JSON with sorted keys."""
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def revision_of(canonical: bytes) -> str:
    return hashlib.sha256(canonical).hexdigest()[:16]


def snapshot_label_value(name: str) -> str:
    """The value of the snapshot label for snapshot `name` (label values stop at 63 characters)."""
    return _fit(name, _LABEL_VALUE_LIMIT)


def snapshot_selector(name: str) -> str:
    """The label selector of every ConfigMap of snapshot `name`, for `kubectl get cm -l`."""
    return f"{SNAPSHOT_LABEL}={snapshot_label_value(name)}"


@without_gc
def encode(
    doc: Mapping[str, Any],
    name: str,
    *,
    gzip_threshold: int = 256 * 1024,
    max_part_bytes: int = 700_000,
) -> SnapshotWrite:
    """The ConfigMaps holding `doc` as snapshot `name`.

    The defaults keep every ConfigMap under the API's 1 MiB: base64 makes 700,000 bytes
    into 933,336 characters, which leaves room for the metadata.
    """
    return encode_json(
        canonical_json(doc), name, gzip_threshold=gzip_threshold, max_part_bytes=max_part_bytes
    )


@without_gc
def encode_json(
    canonical: bytes,
    name: str,
    *,
    gzip_threshold: int = 256 * 1024,
    max_part_bytes: int = 700_000,
) -> SnapshotWrite:
    """`encode` for a document already in canonical JSON (see `graph_json`)."""
    revision = revision_of(canonical)

    def payload(
        payload_name: str, data: dict[str, str], binary_data: dict[str, str] | None = None
    ) -> ConfigMapPayload:
        return ConfigMapPayload(
            name=payload_name,
            data=data,
            binary_data=binary_data or {},
            labels={SNAPSHOT_LABEL: snapshot_label_value(name)},
            annotations={REVISION_ANNOTATION: revision},
        )

    if len(canonical) <= gzip_threshold:
        index = payload(name, {PLAIN_KEY: canonical.decode(), REVISION_KEY: revision})
        return SnapshotWrite(revision, len(canonical), index, [])

    # mtime=0 so the same document always gives the same bytes; level 9 would take 2.5 times
    # as long for a fifth fewer bytes.
    packed = gzip.compress(canonical, compresslevel=6, mtime=0)
    if len(packed) <= max_part_bytes:
        index = payload(name, {REVISION_KEY: revision}, {GZIP_KEY: _b64(packed)})
        return SnapshotWrite(revision, len(canonical), index, [])

    parts = [packed[i : i + max_part_bytes] for i in range(0, len(packed), max_part_bytes)]
    shards = [
        payload(
            shard_name(name, revision, i),
            {REVISION_KEY: revision, PART_NUMBER_KEY: str(i)},
            {PART_KEY: _b64(part)},
        )
        for i, part in enumerate(parts)
    ]
    listing = {
        "schemaVersion": SCHEMA_VERSION,
        "revision": revision,
        "encoding": "gzip",
        "bytes": len(canonical),
        "shards": [
            {"name": shard.name, "sha256": hashlib.sha256(part).hexdigest(), "bytes": len(part)}
            for shard, part in zip(shards, parts, strict=True)
        ],
    }
    index = payload(name, {INDEX_KEY: json.dumps(listing, sort_keys=True), REVISION_KEY: revision})
    return SnapshotWrite(revision, len(canonical), index, shards)


def shard_name(name: str, revision: str, part: int) -> str:
    return f"{_fit(name, _SHARD_PREFIX_LIMIT)}-{revision[:10]}-{part}"


def _fit(name: str, limit: int) -> str:
    """`name`, or when longer than `limit` its start and a hash, so distinct names stay distinct."""
    if len(name) <= limit:
        return name
    return f"{name[: limit - 17]}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@without_gc
def decode(
    config_map: Mapping[str, Any], fetch_shard: Callable[[str], Mapping[str, Any] | None]
) -> Document:
    """The document in snapshot ConfigMap `config_map`; `fetch_shard(name)` returns a shard
    ConfigMap or None when it does not exist.

    Every byte is checked against the revision, so a half-written or hand-edited snapshot
    raises SnapshotError instead of being read; read the ConfigMap again and retry.
    """
    name = name_of(config_map)
    data, binary_data = contents(config_map)
    places = ((INDEX_KEY, data), (GZIP_KEY, binary_data), (PLAIN_KEY, data))
    encodings = [key for key, place in places if key in place]
    if len(encodings) != 1:
        found = ", ".join(encodings) or "none"
        raise SnapshotError(
            f"ConfigMap {name} is not a snapshot: it must hold exactly one of "
            f"{INDEX_KEY}, {GZIP_KEY}, {PLAIN_KEY} (found: {found})"
        )
    revision = data.get(REVISION_KEY)
    if not revision:
        raise SnapshotError(f"ConfigMap {name} has no {REVISION_KEY!r} key")

    if INDEX_KEY in data:
        canonical = _gunzip(_read_shards(name, data[INDEX_KEY], revision, fetch_shard), name)
    elif GZIP_KEY in binary_data:
        canonical = _gunzip(_unb64(binary_data[GZIP_KEY], name), name)
    else:
        canonical = data[PLAIN_KEY].encode()
    if revision_of(canonical) != revision:
        raise SnapshotError(
            f"ConfigMap {name}: content does not match revision {revision} "
            "(half-written or edited); read it again"
        )
    doc: Document = orjson.loads(canonical)
    check_schema_version(doc)
    return doc


def _read_shards(
    name: str,
    index_json: str,
    revision: str,
    fetch_shard: Callable[[str], Mapping[str, Any] | None],
) -> bytes:
    try:
        listing = json.loads(index_json)
        entries = [(s["name"], s["sha256"], s["bytes"]) for s in listing["shards"]]
    except (ValueError, KeyError, TypeError) as error:
        raise SnapshotError(f"ConfigMap {name}: malformed {INDEX_KEY}: {error!r}") from error
    check_schema_version(listing)
    if listing.get("revision") != revision or listing.get("encoding") != "gzip":
        raise SnapshotError(
            f"ConfigMap {name}: {INDEX_KEY} describes revision {listing.get('revision')!r} "
            f"encoded {listing.get('encoding')!r}, expected revision {revision} encoded 'gzip'"
        )
    parts = []
    for i, (part_name, sha256, size) in enumerate(entries):
        shard = fetch_shard(part_name)
        if shard is None:
            raise SnapshotError(
                f"shard {part_name} ({i + 1} of {len(entries)}) of snapshot {name} revision "
                f"{revision} is missing (being rewritten?); read the snapshot again"
            )
        shard_data, shard_binary = contents(shard)
        number = shard_data.get(PART_NUMBER_KEY)
        if shard_data.get(REVISION_KEY) != revision or number != str(i):
            raise SnapshotError(
                f"shard {part_name} holds part {number!r} of revision "
                f"{shard_data.get(REVISION_KEY)!r}, expected part {i} of revision {revision}"
            )
        part = _unb64(shard_binary.get(PART_KEY, ""), part_name)
        if len(part) != size or hashlib.sha256(part).hexdigest() != sha256:
            raise SnapshotError(f"shard {part_name} is corrupt: its sha256 or size differs")
        parts.append(part)
    return b"".join(parts)


def name_of(config_map: Mapping[str, Any]) -> str:
    return str((config_map.get("metadata") or {}).get("name", "<unnamed>"))


def contents(config_map: Mapping[str, Any]) -> tuple[Mapping[str, str], Mapping[str, str]]:
    # The kubernetes client's to_dict() spells it binary_data; the API spells it binaryData.
    binary = config_map.get("binaryData") or config_map.get("binary_data") or {}
    return config_map.get("data") or {}, binary


def _unb64(text: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise SnapshotError(f"ConfigMap {name}: invalid base64: {error}") from error


def _gunzip(packed: bytes, name: str) -> bytes:
    try:
        return gzip.decompress(packed)
    except (OSError, EOFError, zlib.error) as error:
        raise SnapshotError(f"ConfigMap {name}: invalid gzip: {error}") from error


def decode_listed(items: Iterable[Mapping[str, Any]], name: str) -> Document | None:
    """The document of snapshot `name` among the ConfigMaps listed with its
    `snapshot_selector`; None when its index is not among them."""
    by_name = {name_of(item): item for item in items}
    index = by_name.get(name)
    return None if index is None else decode(index, by_name.get)
