"""The operator dies (SIGKILL) while it writes a sharded snapshot, then comes back.

Readers never see a half-written snapshot: the shards of a revision carry it in their names,
the index that names them is written last, and `decode` checks every byte against
the revision. The restarted operator reloads the old snapshot (observation history
included), finishes the new revision and removes the shards nobody names any more.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from servicegraph import snapshot, snapshot_configmaps
from servicegraph.api import ServiceDependency, ServiceGraphSpec
from servicegraph.graph import Observation, SourceKind
from tests.e2e.test_operator_snapshot import random_names
from tests.e2e.test_operator_support import (
    API,
    counts,
    graph,
    install,
    jsonpath,
    sdep,
    seed_snapshot,
    snapshot_config_maps,
    snapshot_document,
)
from tests.support.emulator import Api
from tests.support.kubectl import wait_for
from tests.support.operator_process import StartOperator

pytestmark = pytest.mark.e2e

CM_CREATE = r"/api/v1/namespaces/shop/configmaps$"


def seed(
    api: Api, name: str, manifests: Iterable[dict[str, Any]], observations: list[Observation]
) -> snapshot_configmaps.SnapshotWrite:
    """What an earlier run left: the snapshot of ServiceGraph `name` (which must exist) for
    these manifests and observations, shards first. `kubectl create`, not apply: apply would
    copy each megabyte-sized shard into an annotation."""
    uid = jsonpath(api, "servicegraph", name, "{.metadata.uid}")
    declarations = [ServiceDependency.model_validate(m).declaration() for m in manifests]
    analysed = ServiceGraphSpec().analyse(declarations, observations, now=datetime.now(UTC))
    write = snapshot_configmaps.encode(
        snapshot.to_document(analysed, graph_ref=("shop", name)), f"{name}-graph"
    )
    bodies = []
    for payload in write.in_write_order:
        body = payload.manifest()
        body["metadata"]["namespace"] = "shop"
        body["metadata"]["ownerReferences"] = [
            {
                "apiVersion": API,
                "kind": "ServiceGraph",
                "name": name,
                "uid": uid,
                "controller": True,
            }
        ]
        bodies.append(body)
    api.kubectl(
        "create", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": bodies})
    )
    return write


@dataclass
class Readers:
    """Two readers running while the snapshot is rewritten:

    * `listed`: one `kubectl get cm -l <snapshot label> -o json`, then decode: the way the CLI
      and the docs tell tools to read it. It must never fail.
    * `piecewise`: the index, then each shard by name, each a GET of its own, as a careless
      tool would: it may be told to read again ("retry"), never given a wrong document.
    """

    api: Api
    listed: list[str] = field(default_factory=list)  # revision read each time
    piecewise: list[str] = field(default_factory=list)  # revision, or "retry"
    problems: list[str] = field(default_factory=list)
    edges: dict[str, int] = field(default_factory=dict)  # revision: edges in its document
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for target in (self._list, self._piecewise):
            thread = threading.Thread(target=self._loop, args=(target,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def wait_for_reads(self, count: int) -> None:
        """Wait until each kind of reader has read `count` more times."""
        listed, piecewise = len(self.listed), len(self.piecewise)
        wait_for(
            lambda: len(self.listed) >= listed + count and len(self.piecewise) >= piecewise + count,
            timeout=30,
        )

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _loop(self, read: Callable[[], None]) -> None:
        while not self.stop.wait(0.05):
            try:
                read()
            except Exception as error:  # anything but "read again" is a failure
                self.problems.append(f"{read.__name__}: {error!r}")

    def _record(self, doc: snapshot.Document) -> str:
        revision = snapshot_configmaps.revision_of(snapshot_configmaps.canonical_json(doc))
        self.edges[revision] = len(doc["edges"])
        return revision

    def _list(self) -> None:
        self.listed.append(self._record(snapshot_document(self.api, "big-graph")))

    def _piecewise(self) -> None:
        with httpx.Client(base_url=self.api.url, timeout=10) as http:
            url = "/api/v1/namespaces/shop/configmaps/"

            def get(name: str) -> dict[str, Any] | None:
                answer = http.get(url + name)
                if answer.status_code == 404:
                    return None
                answer.raise_for_status()
                found: dict[str, Any] = answer.json()
                return found

            index = get("big-graph")
            assert index is not None, "the index is never missing"
            time.sleep(0.2)  # a slow reader: the shards it wants may be gone by now
            try:
                doc = snapshot_configmaps.decode(index, get)
            except snapshot.SnapshotError as error:
                assert "again" in str(error), error  # a shard went: read again
                self.piecewise.append("retry")
                return
            self.piecewise.append(self._record(doc))


@pytest.fixture
def readers(api: Api) -> Iterator[Readers]:
    found = Readers(api)
    yield found
    found.finish()


def shard_names(api: Api) -> set[str]:
    return {cm["metadata"]["name"] for cm in snapshot_config_maps(api, "big-graph")} - {"big-graph"}


def test_sigkill_in_the_middle_of_a_sharded_snapshot_write(
    api: Api, start_operator: StartOperator, readers: Readers
) -> None:
    install(api, "shop")
    rng = random.Random(11)
    targets = [random_names(rng, 400) for _ in range(12)]
    manifests = [sdep(f"big-{i}", *targets[i]) for i in range(12)]
    api.kubectl.apply(graph("big"), *manifests)
    # The earlier run saw big-0 -> traced in traces an hour ago: that must survive everything.
    seen = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    seen_text = seen.isoformat().replace("+00:00", "Z")
    old = seed(api, "big", manifests, [Observation("big-0", "traced", SourceKind.OTEL, seen)])
    assert len(old.shards) >= 3, "three shards or more, so the kill falls between two"
    old_shards = {s.name for s in old.shards}

    first = start_operator()
    wait_for(lambda: jsonpath(api, "sg", "big", "{.status.snapshot.revision}") == old.revision, 40)
    assert counts(api, "big") == "4813/4801"
    assert "reloaded snapshot big-graph" in first.log()
    readers.start()

    # Slow shard writes (each create takes 1.5 s), then a change: a new revision.
    slow = api.emulator.inject("POST", CM_CREATE, None, times=None, delay=1.5)
    api.kubectl.apply(sdep("big-11", *targets[11][:-1]))
    # The second shard's create arrived, so the first shard of the new revision is written;
    # the index, written after the last shard, is not.
    wait_for(lambda: slow.hits >= 2, timeout=20)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    killed_at = time.monotonic()
    new_shards = wait_for(lambda: shard_names(api) - old_shards, timeout=5)
    assert 1 <= len(new_shards) < len(old.shards), "killed in the middle of the write"
    index = api.kubectl.get("cm", "big-graph", "-n", "shop")
    assert index["data"][snapshot_configmaps.REVISION_KEY] == old.revision
    assert jsonpath(api, "sg", "big", "{.status.snapshot.revision}") == old.revision
    readers.wait_for_reads(3)  # readers read the half-written state a few times
    slow.times = 0

    second = start_operator()
    wait_for(lambda: counts(api, "big") == "4812/4800", timeout=30)
    new_revision = wait_for(
        lambda: (
            (r := jsonpath(api, "sg", "big", "{.status.snapshot.revision}")) != old.revision and r
        )
    )
    recovered_in = time.monotonic() - killed_at
    # Converged: the index names the new revision, exactly its shards exist, the old are gone.
    cms = {cm["metadata"]["name"]: cm for cm in snapshot_config_maps(api, "big-graph")}
    listing = json.loads(cms["big-graph"]["data"][snapshot_configmaps.INDEX_KEY])
    assert listing["revision"] == new_revision
    assert sorted(cms) == sorted(["big-graph", *(s["name"] for s in listing["shards"])])
    assert not set(cms) & old_shards
    doc = snapshot_document(api, "big-graph")
    (traced,) = [e for e in doc["edges"] if e["target"] == "traced"]
    assert traced["sources"] == [{"kind": "otel", "confidence": 0.7, "lastSeen": seen_text}]
    assert "reloaded snapshot big-graph" in second.log()
    readers.wait_for_reads(3)  # and the new one a few times
    assert readers.listed[-1] == new_revision
    readers.finish()

    # What the readers saw: the old snapshot, then the new one, never anything else.
    assert not readers.problems, readers.problems[:3]
    assert set(readers.listed) == {old.revision, new_revision}, set(readers.listed)
    switch = readers.listed.index(new_revision)
    assert set(readers.listed[switch:]) == {new_revision}, "never back to the old one"
    assert set(readers.piecewise) <= {old.revision, new_revision, "retry"}
    assert readers.edges == {old.revision: 4801, new_revision: 4800}
    print(
        f"old revision {old.revision} ({len(old.shards)} shards), killed after "
        f"{len(new_shards)} shard(s) of the new one; recovered {recovered_in:.1f}s after the "
        f"kill to {new_revision} ({len(listing['shards'])} shards); readers: "
        f"{len(readers.listed)} listed reads ({switch} old), {len(readers.piecewise)} piecewise "
        f"({readers.piecewise.count('retry')} told to retry), none failed or mixed"
    )


def test_restart_while_the_snapshot_cannot_be_read_keeps_history(
    api: Api, start_operator: StartOperator
) -> None:
    """The first read of the last snapshot fails (500, then 429): the restarted operator
    tries again instead of starting with no history and overwriting it."""
    install(api, "shop")
    manifests = [sdep("a", "b")]
    api.kubectl.apply(graph("shop"), *manifests)
    seen = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    seen_text = seen.isoformat().replace("+00:00", "Z")
    seed_snapshot(
        api,
        "shop",
        [ServiceDependency.model_validate(m).declaration() for m in manifests],
        [Observation("a", "x", SourceKind.OTEL, seen)],
    )
    selector = r"/namespaces/shop/configmaps\?labelSelector="
    failing = api.emulator.inject("GET", selector, 500)
    throttled = api.emulator.inject("GET", selector, 429, headers={"Retry-After": "1"})
    start_operator()
    api.kubectl.apply(sdep("b", "c"))
    wait_for(lambda: counts(api, "shop") == "4/3", timeout=30)
    assert (failing.hits, throttled.hits) == (1, 1)
    doc = snapshot_document(api, "shop-graph")
    (edge,) = [e for e in doc["edges"] if (e["source"], e["target"]) == ("a", "x")]
    assert edge["sources"] == [{"kind": "otel", "confidence": 0.7, "lastSeen": seen_text}]
