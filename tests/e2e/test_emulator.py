"""The API emulator behaves as kube-apiserver does where Kopf and kubectl look.

One test per gap of kmock 0.8 closed in tests/support/emulator.py (gaps 1-9, as numbered
there), driven over HTTP or with kubectl as a client would, then
a smoke test that runs a real Kopf operator process against it.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.emulator import Api
from tests.support.kubectl import KubectlError, wait_for

pytestmark = pytest.mark.e2e

CMS = "/api/v1/namespaces/default/configmaps"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"
WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {
            "plural": "widgets",
            "singular": "widget",
            "kind": "Widget",
            "shortNames": ["wd"],
            "categories": ["gadgets"],
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {
                        "name": "Ready",
                        "type": "string",
                        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                    },
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }
        ],
    },
}
MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def configmap(name: str, *, labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels or {}, **extra},
        "data": {},
    }


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def widget(name: str, size: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size},
    }


def patch(
    http: httpx.Client, url: str, body: Any, headers: dict[str, str] = MERGE
) -> httpx.Response:
    return http.patch(url, content=json.dumps(body), headers=headers)


def create(http: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post(url, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def watch(api: Api, url: str, **params: str) -> list[dict[str, Any]]:
    """All events of one watch request that the server ends after timeoutSeconds."""
    params = {"watch": "true", "timeoutSeconds": "0.3", **params}
    with httpx.stream("GET", api.url + url, params=params, timeout=10) as response:
        assert response.status_code == 200
        return [json.loads(line) for line in response.iter_lines() if line]


def names(events_or_items: list[dict[str, Any]]) -> list[str]:
    return [(x.get("object") or x)["metadata"]["name"] for x in events_or_items]


def list_names(http: httpx.Client, url: str = CMS, **params: str) -> list[str]:
    response = http.get(url, params=params)
    assert response.status_code == 200, response.text
    return names(response.json()["items"])


@pytest.fixture
def widgets(api: Api) -> str:
    api.kubectl.apply(WIDGET_CRD)
    return WIDGETS


def test_gap1_namespaces_are_objects_not_path_prefixes(api: Api, http: httpx.Client) -> None:
    missing = http.post("/api/v1/namespaces/team-a/configmaps", json=configmap("c1"))
    assert missing.status_code == 404  # as in a cluster, the namespace must exist
    api.kubectl.apply(namespace("team-a"), configmap("c1", namespace="team-a"))
    assert list_names(http, "/api/v1/namespaces") == [  # kmock: 500
        "default",
        "kube-node-lease",
        "kube-public",
        "kube-system",
        "team-a",
    ]
    team = http.get("/api/v1/namespaces/team-a").json()  # kmock: "namespace team-a"
    assert team["kind"] == "Namespace"
    assert team["metadata"]["name"] == "team-a"
    assert "namespace" not in team["metadata"]
    assert "namespace/team-a" in api.kubectl("get", "namespaces", "-o", "name").split()
    assert api.kubectl("get", "cm", "-n", "team-a", "-o", "name") == "configmap/c1\n"
    assert list_names(http, "/api/v1/namespaces/team-a/configmaps") == ["c1"]
    api.kubectl("delete", "namespace", "team-a")  # and its contents
    assert list_names(http, "/api/v1/configmaps") == []


def test_gap2_create_assigns_server_metadata(http: httpx.Client, widgets: str) -> None:
    create(http, "/api/v1/namespaces", namespace("ns1"))
    meta = create(http, "/api/v1/namespaces/ns1/configmaps", {"metadata": {"name": "a"}})
    meta = meta["metadata"]
    assert meta["namespace"] == "ns1"  # from the URL
    assert meta["generation"] == 1
    assert meta["resourceVersion"].isdigit()
    assert uuid.UUID(meta["uid"])
    assert datetime.datetime.fromisoformat(meta["creationTimestamp"])
    duplicate = http.post("/api/v1/namespaces/ns1/configmaps", json={"metadata": {"name": "a"}})
    assert (duplicate.status_code, duplicate.json()["reason"]) == (409, "AlreadyExists")

    # Kopf posts its events with generateName: each gets a name and a uid of its own.
    events = [
        create(
            http,
            "/api/v1/namespaces/ns1/events",
            {"metadata": {"generateName": "kopf-event-"}, "reason": "Logging"},
        )
        for _ in range(2)
    ]
    assert len({e["metadata"]["name"] for e in events}) == 2
    assert all(e["metadata"]["name"].startswith("kopf-event-") for e in events)
    assert len({e["metadata"]["uid"] for e in events}) == 2

    # With a status subresource, the status of a new object is not the client's to set.
    body = create(http, widgets, {**widget("w"), "status": {"phase": "Forged"}})
    assert "status" not in body
    assert "status" not in http.get(f"{widgets}/w").json()


def test_gap3_patch_follows_content_type(http: httpx.Client) -> None:
    url = f"{CMS}/p"
    create(http, CMS, {**configmap("p", labels={"x": "y"}), "data": {"a": "1", "b": "2"}})

    # RFC 7386: null deletes, objects merge, anything else replaces.
    merged = patch(http, url, {"metadata": {"labels": None}, "data": {"a": None, "c": "3"}})
    assert merged.json()["data"] == {"b": "2", "c": "3"}
    assert "labels" not in merged.json()["metadata"]
    assert patch(http, url, {"data": "oops"}).json()["data"] == "oops"
    assert patch(http, url, {"data": {"d": "4"}}).json()["data"] == {"d": "4"}

    # RFC 6902 JSON patch, and its `test` op failing with 422 (Kopf's finalizer guard).
    ops = [{"op": "add", "path": "/data/e", "value": "5"}]
    assert patch(http, url, ops, JSON_PATCH).json()["data"] == {"d": "4", "e": "5"}
    guarded = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "stale"},
        {"op": "remove", "path": "/data"},
    ]
    failed = patch(http, url, guarded, JSON_PATCH)
    assert (failed.status_code, failed.json()["reason"]) == (422, "Invalid")
    assert http.get(url).json()["data"] == {"d": "4", "e": "5"}

    assert patch(http, url, ops).status_code == 400  # a JSON patch sent as a merge patch
    ssa = patch(http, url, {}, {"Content-Type": "application/apply-patch+yaml"})
    assert ssa.status_code == 415


def test_gap3_patch_versions_subresources_and_conflicts(
    api: Api, http: httpx.Client, widgets: str
) -> None:
    url = f"{widgets}/w"
    before = create(http, widgets, widget("w", size=1))["metadata"]

    # The object's own endpoint ignores the status; a spec change bumps the generation.
    main = patch(http, url, {"spec": {"size": 2}, "status": {"phase": "Ignored"}}).json()
    assert main["spec"] == {"size": 2} and "status" not in main
    assert main["metadata"]["generation"] == 2
    assert int(main["metadata"]["resourceVersion"]) > int(before["resourceVersion"])

    # /status changes only the status: no generation bump, but a new resourceVersion.
    status = patch(http, f"{url}/status", {"spec": {"size": 9}, "status": {"phase": "Ready"}})
    assert status.json()["spec"] == {"size": 2}
    assert status.json()["status"] == {"phase": "Ready"}
    assert status.json()["metadata"]["generation"] == 2
    rv = status.json()["metadata"]["resourceVersion"]
    assert int(rv) > int(main["metadata"]["resourceVersion"])

    # A no-op patch: the same resourceVersion and no watch event.
    same = patch(http, url, {"spec": {"size": 2}, "status": {"phase": "Other"}}).json()
    assert same["metadata"]["resourceVersion"] == rv
    assert watch(api, widgets, resourceVersion=rv) == []

    # A resourceVersion in the body is a precondition: 409 when stale, applied when current.
    stale = patch(
        http, url, {"metadata": {"resourceVersion": before["resourceVersion"]}, "spec": {"size": 3}}
    )
    assert (stale.status_code, stale.json()["reason"]) == (409, "Conflict")
    current = patch(http, url, {"metadata": {"resourceVersion": rv}, "spec": {"size": 3}})
    assert current.status_code == 200 and current.json()["spec"] == {"size": 3}


def test_gap4_put_replaces(api: Api, http: httpx.Client) -> None:
    api.kubectl.apply({**configmap("r"), "data": {"a": "1"}})
    api.kubectl("replace", "-f", "-", stdin=json.dumps({**configmap("r"), "data": {"b": "2"}}))
    assert api.kubectl.get("configmap", "r")["data"] == {"b": "2"}

    stale = http.get(f"{CMS}/r").json()
    patch(http, f"{CMS}/r", {"data": {"c": "3"}})
    conflict = http.put(f"{CMS}/r", json={**stale, "data": {"d": "4"}})
    assert conflict.status_code == 409
    fresh = http.get(f"{CMS}/r").json()
    replaced = http.put(f"{CMS}/r", json={**fresh, "data": {"d": "4"}})
    assert replaced.status_code == 200 and replaced.json()["data"] == {"d": "4"}
    assert http.put(f"{CMS}/missing", json=configmap("missing")).status_code == 404


def test_gap5_delete_bumps_version_and_collects_garbage(api: Api, http: httpx.Client) -> None:
    def owned_by(owner: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
            }
        ]

    parent = create(http, CMS, configmap("parent"))
    child = create(http, CMS, configmap("child", ownerReferences=owned_by(parent)))
    create(http, CMS, configmap("grandchild", ownerReferences=owned_by(child)))
    create(http, CMS, configmap("held", ownerReferences=owned_by(parent), finalizers=["x/hold"]))
    create(http, CMS, configmap("unrelated"))
    rv = http.get(CMS).json()["metadata"]["resourceVersion"]

    api.kubectl("delete", "configmap", "parent")
    events = watch(api, CMS, resourceVersion=rv)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("DELETED", "parent"),
        ("DELETED", "child"),
        ("DELETED", "grandchild"),
        ("MODIFIED", "held"),
    ]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(rv)
    assert events[-1]["object"]["metadata"]["deletionTimestamp"]
    assert list_names(http) == ["held", "unrelated"]

    # Removing the last finalizer completes the deletion.
    patch(http, f"{CMS}/held", {"metadata": {"finalizers": None}})
    assert list_names(http) == ["unrelated"]
    assert http.delete(f"{CMS}/held").status_code == 404


def test_gap6_list_is_typed_versioned_and_selective(api: Api, http: httpx.Client) -> None:
    for name, labels in [
        ("a", {"app": "web", "tier": "front"}),
        ("c", {"app": "db"}),
        ("b", {"app": "web", "tier": "back"}),
        ("d", {}),
    ]:
        last = create(http, CMS, configmap(name, labels=labels))
    api.kubectl.apply(namespace("other"), configmap("e", namespace="other"))

    body = http.get(CMS).json()
    assert (body["apiVersion"], body["kind"]) == ("v1", "ConfigMapList")
    assert int(body["metadata"]["resourceVersion"]) > int(last["metadata"]["resourceVersion"])
    assert names(body["items"]) == ["a", "b", "c", "d"]  # sorted, as etcd keys are

    for selector, expected in [
        ("app=web", ["a", "b"]),
        ("app==web", ["a", "b"]),
        ("app!=web", ["c", "d"]),
        ("tier in (front, back)", ["a", "b"]),
        ("app notin (web)", ["c", "d"]),
        ("tier", ["a", "b"]),
        ("!tier", ["c", "d"]),
        ("app=web,tier!=front", ["b"]),
    ]:
        assert list_names(http, labelSelector=selector) == expected, selector
    assert list_names(http, fieldSelector="metadata.name=c") == ["c"]
    assert list_names(http, "/api/v1/configmaps", fieldSelector="metadata.namespace=other") == ["e"]
    assert list_names(http, "/api/v1/configmaps", fieldSelector="metadata.namespace!=other") == [
        "a",
        "b",
        "c",
        "d",
    ]
    assert http.get(CMS, params={"labelSelector": "a in b"}).status_code == 400
    assert api.kubectl("get", "cm", "-l", "app in (web)", "-o", "name").split() == [
        "configmap/a",
        "configmap/b",
    ]


def test_gap7_watch_resumes_from_a_version_without_replay(api: Api, http: httpx.Client) -> None:
    create(http, CMS, configmap("a"))
    listed = http.get(CMS).json()["metadata"]["resourceVersion"]
    create(http, CMS, configmap("b"))  # changes between the list and the watch are not lost
    patch(http, f"{CMS}/a", {"data": {"k": "v"}})

    events = watch(api, CMS, resourceVersion=listed)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"),
        ("MODIFIED", "a"),
    ]
    last_seen = events[-1]["object"]["metadata"]["resourceVersion"]
    assert watch(api, CMS, resourceVersion=last_seen) == []
    # Without a version, the current state comes first, as ADDED.
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in watch(api, CMS)] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
    ]
    assert watch(api, "/api/v1/namespaces/other/configmaps") == []


def test_gap7_watch_streams_live_with_selectors_timeout_and_bookmarks(
    api: Api, http: httpx.Client
) -> None:
    api.emulator.bookmark_interval = 0.2
    rv = http.get(CMS).json()["metadata"]["resourceVersion"]
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        future = pool.submit(
            watch,
            api,
            CMS,
            resourceVersion=rv,
            labelSelector="app=web",
            allowWatchBookmarks="true",
            timeoutSeconds="1",
        )
        time.sleep(0.3)  # the stream is open and waiting
        create(http, CMS, configmap("a", labels={"app": "web"}))
        create(http, CMS, configmap("b", labels={"app": "db"}))
        patch(http, f"{CMS}/a", {"metadata": {"labels": {"app": "db"}}})  # moves out
        patch(http, f"{CMS}/b", {"metadata": {"labels": {"app": "web"}}})  # moves in
        events = future.result()
    assert 1 <= time.monotonic() - started < 5  # ended by timeoutSeconds, not earlier
    changes = [
        (e["type"], e["object"]["metadata"]["name"]) for e in events if e["type"] != "BOOKMARK"
    ]
    assert changes == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "b")]
    bookmarks = [e["object"] for e in events if e["type"] == "BOOKMARK"]
    assert len(bookmarks) >= 2
    assert bookmarks[-1]["kind"] == "ConfigMap"
    assert (
        bookmarks[-1]["metadata"]["resourceVersion"]
        == http.get(CMS).json()["metadata"]["resourceVersion"]
    )


def test_gap8_core_discovery(api: Api, http: httpx.Client) -> None:
    doc = http.get("/api/v1").json()
    assert doc["groupVersion"] == "v1"  # kmock: '/v1'
    resources = {r["name"]: r for r in doc["resources"]}
    assert {"events", "configmaps", "namespaces", "secrets"} <= set(resources)
    assert resources["configmaps"]["shortNames"] == ["cm"]
    assert resources["namespaces/status"]["shortNames"] == []  # kmock: ['ns'] again
    core = api.kubectl("api-resources", "--api-group=", "-o", "name").split()
    assert {"configmaps", "events", "namespaces"} <= set(core)
    assert api.kubectl("get", "events", "-o", "name") == ""


def test_gap9_openapi_and_custom_resource_definitions(api: Api, http: httpx.Client) -> None:
    assert http.get("/openapi/v2").json()["swagger"] == "2.0"
    api.kubectl.apply(WIDGET_CRD)  # kubectl validates against /openapi/v2 (protobuf)
    api.kubectl("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=5s")
    resources = {r["name"]: r for r in http.get("/apis/example.com/v1").json()["resources"]}
    assert resources["widgets"]["namespaced"] is True
    assert resources["widgets"]["shortNames"] == ["wd"]
    assert resources["widgets"]["categories"] == ["gadgets"]
    assert "widgets/status" in resources

    api.kubectl.apply(widget("w1", size=3))
    patch(
        http,
        f"{WIDGETS}/w1/status",
        {"status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}},
    )
    header, row = api.kubectl("get", "widgets").splitlines()  # a server-side Table
    assert header.split() == ["NAME", "SIZE", "PHASE", "READY", "AGE"]
    assert row.split()[:4] == ["w1", "3", "Ready", "True"]
    assert api.kubectl("get", "wd", "-o", "name") == "widget.example.com/w1\n"
    assert api.kubectl("get", "gadgets", "-o", "name") == "widget.example.com/w1\n"

    api.kubectl("delete", "crd", "widgets.example.com")
    assert http.get(WIDGETS).status_code == 404
    # kubectl's discovery cache still lists widgets, so it asks and gets a 404.
    with pytest.raises(KubectlError, match=r"NotFound|doesn't have a resource type"):
        api.kubectl("get", "widgets")


def test_writes_are_counted_and_faults_injected(api: Api, http: httpx.Client, widgets: str) -> None:
    create(http, widgets, widget("w"))
    fault = api.emulator.inject("patch", r"/widgets/w/status$", 500)
    failed = patch(http, f"{widgets}/w/status", {"status": {"phase": "A"}})
    assert (failed.status_code, failed.json()["kind"]) == (500, "Status")
    assert patch(http, f"{widgets}/w/status", {"status": {"phase": "B"}}).status_code == 200
    assert fault.hits == 1
    writes = api.emulator.writes
    assert writes["example.com", "widgets", "status", "patch"] == 2  # attempts, incl. faults
    assert writes["example.com", "widgets", "", "create"] == 1
    assert writes["example.com", "widgets", "", "patch"] == 0

    api.emulator.inject(None, r"/configmaps", 429, times=2, headers={"Retry-After": "1"})
    throttled = [http.get(CMS) for _ in range(3)]
    assert [r.status_code for r in throttled] == [429, 429, 200]
    assert throttled[0].headers["Retry-After"] == "1"
    assert throttled[0].json()["reason"] == "TooManyRequests"


def test_injected_delays_and_dropped_watches(api: Api, http: httpx.Client) -> None:
    slow = api.emulator.inject("post", r"/configmaps$", None, delay=0.5)
    started = time.monotonic()
    assert create(http, CMS, configmap("slow"))["metadata"]["name"] == "slow"  # served, late
    assert time.monotonic() - started >= 0.5 and slow.hits == 1

    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        future = pool.submit(watch, api, CMS, timeoutSeconds="10")
        time.sleep(0.3)  # the stream is open
        api.server.call(api.emulator.drop_watches())
        events = future.result()
    assert time.monotonic() - started < 5  # ended by the drop, not by its timeout
    assert [e["object"]["metadata"]["name"] for e in events] == ["slow"]
    # Streams opened after the drop are served as usual.
    assert [e["object"]["metadata"]["name"] for e in watch(api, CMS)] == ["slow"]


OPERATOR = """
import kopf
import kubernetes


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    # Fail fast and exit fast: the defaults are tuned for real clusters.
    settings.networking.error_backoffs = [0.1, 0.2, 0.5]
    settings.watching.reconnect_backoff = 0.05
    settings.queueing.exit_timeout = 0.5
    settings.background.instant_exit_timeout = 0.5
    kubernetes.config.load_kube_config()


@kopf.on.login()
def login(**kwargs):
    return kopf.login_with_kubeconfig(**kwargs)


@kopf.on.create('example.com', 'v1', 'widgets')
def create_child(body, spec, name, namespace, patch, **_):
    child = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': f'{name}-child'},
             'data': {'size': str(spec['size'])}}
    kopf.adopt(child)
    kubernetes.client.CoreV1Api().create_namespaced_config_map(namespace, child)
    patch.status['phase'] = 'Ready'
    kopf.info(body, reason='ChildCreated', message=child['metadata']['name'])  # a v1 Event


@kopf.on.delete('example.com', 'v1', 'widgets')
def cleanup(**_):
    pass  # a deletion handler makes Kopf keep a finalizer on every widget
"""


def test_kopf_operator_smoke(api: Api, tmp_path: Path) -> None:
    api.kubectl.apply(WIDGET_CRD)
    script = tmp_path / "widget_operator.py"  # not operator.py: that shadows the stdlib module
    script.write_text(OPERATOR)
    log_path = tmp_path / "operator.log"
    with log_path.open("w") as log:
        operator = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "-n", "default", str(script)],
            env=api.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )

    def phase() -> str | None:
        if operator.poll() is not None:
            raise RuntimeError(f"the operator exited:\n{log_path.read_text()}")
        return api.kubectl.get("widget", "w1").get("status", {}).get("phase")

    try:
        api.kubectl.apply(widget("w1", size=3))
        wait_for(lambda: phase() == "Ready", timeout=20)
        owner = api.kubectl.get("widget", "w1")
        child = api.kubectl.get("configmap", "w1-child")
        assert child["data"] == {"size": "3"}
        assert child["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
        assert owner["metadata"]["finalizers"]
        assert api.emulator.writes["example.com", "widgets", "status", "patch"] >= 1
        events = wait_for(lambda: api.kubectl.get("events")["items"])  # posted in background
        assert [(e["reason"], e["involvedObject"]["name"]) for e in events] == [
            ("ChildCreated", "w1")
        ]

        api.kubectl("delete", "widget", "w1", "--timeout=20s")  # Kopf releases its finalizer
        wait_for(lambda: api.kubectl("get", "configmaps", "-o", "name") == "", timeout=10)
    finally:
        operator.terminate()
        operator.wait(10)
    output = log_path.read_text()
    assert "Traceback" not in output, output
