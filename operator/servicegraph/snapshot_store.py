"""Where a ServiceGraph's snapshot lives in the cluster: read at start, written on change.

Writes only ConfigMaps that this ServiceGraph controls (by UID): a ConfigMap of the same name
that belongs to anyone else, a user or another graph, is never replaced or deleted; the
write fails with SnapshotConflict instead.

Remembers what it wrote (names of the index and shards, revision, topology, time), so a
write never lists ConfigMaps, and a rename of the snapshot moves it: the new ConfigMaps are
written, then the old ones deleted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from servicegraph import snapshot_configmaps as configmaps
from servicegraph.backoff import retry_delay
from servicegraph.kube import Kube, KubeError
from servicegraph.snapshot import Document, SnapshotError
from servicegraph.status import SnapshotInfo, timestamp
from servicegraph.telemetry import METRICS
from servicegraph.workers import off_the_loop

Body = dict[str, Any]


class SnapshotConflict(Exception):
    """A ConfigMap the snapshot needs exists, and this ServiceGraph does not control it."""

    def __init__(self, namespace: str, name: str, owner: str) -> None:
        super().__init__(
            f"ConfigMap {namespace}/{name} exists and belongs to {owner}, not to this "
            "ServiceGraph: it is left alone; set spec.snapshot.configMapName to a free name"
        )
        self.name = name


@dataclass(frozen=True)
class StoredSnapshot:
    """What the store knows is in the cluster."""

    name: str
    revision: str
    topology: str | None  # None: written by a version that did not record it
    shards: frozenset[str]
    bytes: int
    written_at: datetime


@dataclass(frozen=True)
class WriteOutcome:
    written: bool
    deferred_until: datetime | None = None  # attribute-only change held back until then


class SnapshotStore:
    def __init__(
        self,
        *,
        kube: Kube,
        namespace: str,
        owner_reference: Callable[[], Body],
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.owner_reference = owner_reference
        self.logger = logger
        self.stored: StoredSnapshot | None = None

    def info(self) -> SnapshotInfo | None:
        if self.stored is None:
            return None
        return SnapshotInfo(
            config_map=self.stored.name,
            revision=self.stored.revision,
            bytes=self.stored.bytes,
            shards=len(self.stored.shards),
            updated_at=timestamp(self.stored.written_at),
        )

    async def load(self, names: Iterable[str], status: Mapping[str, Any]) -> Document | None:
        """The last snapshot, under the first of `names` that holds one this graph controls
        (the spec's name, then the one the status names: a rename just before a restart
        keeps its history). Retries the API for ever: without the history, the next write
        would drop every lastSeen."""
        for name in dict.fromkeys(names):
            listed = await self._list_until_answered(name)
            mine = [cm for cm in listed if self._controls(cm)]
            try:
                doc = configmaps.decode_listed(mine, name)
            except SnapshotError as error:
                self.logger.warning(f"cannot reload snapshot {name}: {error}")
                continue
            if doc is None:
                continue
            index = next(cm for cm in mine if configmaps.name_of(cm) == name)
            annotations = index["metadata"].get("annotations") or {}
            info = status.get("snapshot") or {}
            revision = str(index["data"][configmaps.REVISION_KEY])  # decode checked it
            self.stored = StoredSnapshot(
                name=name,
                revision=revision,
                topology=annotations.get(configmaps.TOPOLOGY_ANNOTATION),
                shards=frozenset(configmaps.name_of(cm) for cm in mine) - {name},
                bytes=int(info.get("bytes") or 0) if info.get("revision") == revision else 0,
                written_at=_written_at(info, revision),
            )
            return doc
        return None

    async def _list_until_answered(self, name: str) -> list[Body]:
        failures = 0
        while True:
            try:
                return await self.kube.list_config_maps(
                    self.namespace, configmaps.snapshot_selector(name)
                )
            except KubeError as error:
                failures += 1
                delay = retry_delay(failures, error.retry_after)
                self.logger.warning(
                    f"cannot read snapshot {name}, will retry in {delay:g}s: {error}"
                )
                await asyncio.sleep(delay)

    async def write(
        self,
        canonical: bytes,
        *,
        name: str,
        topology: str,
        now: datetime,
        min_interval: float,
    ) -> WriteOutcome:
        """Write the snapshot if it changed: at once when its topology changed (or its name),
        otherwise no sooner than `min_interval` seconds after the last write.

        Shards first, then the index that names them, then the shards and ConfigMaps nobody
        names any more: readers never see an index whose shards are missing."""
        stored = self.stored
        revision = configmaps.revision_of(canonical)
        if stored is not None and stored.name == name:
            if stored.revision == revision:
                return WriteOutcome(written=False)
            due = stored.written_at.timestamp() + min_interval
            if stored.topology == topology and now.timestamp() < due:
                return WriteOutcome(written=False, deferred_until=datetime.fromtimestamp(due, UTC))
        write = await off_the_loop(configmaps.encode_json, canonical, name)
        for payload in write.shards:
            await self._put(self._body(payload), known=False)
        index = self._body(write.index)
        index["metadata"]["annotations"][configmaps.TOPOLOGY_ANNOTATION] = topology
        await self._put(index, known=stored is not None and stored.name == name)
        current = {payload.name for payload in write.in_write_order}
        if stored is not None:
            leftovers = ({stored.name} | stored.shards) - current
            for leftover in sorted(leftovers):
                await self.kube.delete_config_map(self.namespace, leftover)
        self.stored = StoredSnapshot(
            name=name,
            revision=write.revision,
            topology=topology,
            shards=frozenset(shard.name for shard in write.shards),
            bytes=write.bytes,
            written_at=now,
        )
        self.logger.info(
            f"snapshot {name} written: revision {write.revision}, {write.bytes} bytes, "
            f"{len(write.shards)} shards"
        )
        return WriteOutcome(written=True)

    def _body(self, payload: configmaps.ConfigMapPayload) -> Body:
        body = payload.manifest()
        body["metadata"]["namespace"] = self.namespace
        body["metadata"]["ownerReferences"] = [self.owner_reference()]
        return body

    async def _put(self, body: Body, *, known: bool) -> None:
        """Create the ConfigMap, or replace it when this graph controls it; never another's."""
        if known and await self.kube.replace_config_map(self.namespace, body):
            METRICS.writes.labels("configmap").inc()
            return
        name = body["metadata"]["name"]
        for _ in range(3):  # it may come and go between the calls
            try:
                await self.kube.create_config_map(self.namespace, body)
                METRICS.writes.labels("configmap").inc()
                return
            except KubeError as error:
                if error.status != 409:
                    raise
            existing = await self.kube.read_config_map(self.namespace, name)
            if existing is None:
                continue
            if not self._controls(existing):
                raise SnapshotConflict(self.namespace, name, _owner_of(existing))
            replacement = {**body, "metadata": {**body["metadata"]}}
            # Replace exactly what was checked: a 409 if it changed hands since.
            replacement["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
            if await self.kube.replace_config_map(self.namespace, replacement):
                METRICS.writes.labels("configmap").inc()
                return
        raise KubeError(f"write configmap {self.namespace}/{name}", 409, "keeps changing")

    def _controls(self, config_map: Mapping[str, Any]) -> bool:
        uid = self.owner_reference()["uid"]
        references = (config_map.get("metadata") or {}).get("ownerReferences") or []
        return any(r.get("controller") and r.get("uid") == uid for r in references)


def _owner_of(config_map: Mapping[str, Any]) -> str:
    references = (config_map.get("metadata") or {}).get("ownerReferences") or []
    controller = next((r for r in references if r.get("controller")), None)
    if controller is None:
        return "no controller (created by hand or by another tool)"
    return f"{controller.get('kind')} {controller.get('name')} (uid {controller.get('uid')})"


def _written_at(info: Mapping[str, Any], revision: str) -> datetime:
    """When the stored revision was written, as the status says; long ago if unknown, so
    the first change after a restart is written at once."""
    if info.get("revision") == revision and info.get("updatedAt"):
        try:
            return datetime.fromisoformat(str(info["updatedAt"]).replace("Z", "+00:00"))
        except ValueError:
            pass
    return datetime.fromtimestamp(0, UTC)
