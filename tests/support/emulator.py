"""An in-memory Kubernetes API for end-to-end tests: kmock's emulator with its gaps closed.

There is no cluster on the test machines (no container engine, no kube-apiserver), so the
end-to-end suite runs the real operator process and the real kubectl against
`kmock.KubernetesEmulator` served on 127.0.0.1. kmock 0.8 has gaps that a Kopf operator and
kubectl run into (gaps 1-9, numbered in the code below). `ApiEmulator` closes
them in one subclass; each closed gap has its own test in tests/e2e/test_emulator.py.

How it is built on kmock (pinned ==0.8: this touches its internals):

* Requests for objects (a URL with a resource plural) are served here, in `_handle`, by
  synchronous code with no `await` between reading and writing the store, so every write is
  atomic on the emulator's event loop and no lock is needed. Objects live in kmock's
  `self.objects` (with their history, usable in assertions); every write gets the next
  cluster-wide resourceVersion and is appended to a watch log that watchers replay from.
* Everything else (discovery, /version, /openapi/v2 and any user reaction registered with
  kmock's DSL, e.g. `emulator['get /healthz'] << b'ok'`) still goes through kmock's DSL.
  DSL reactions on object URLs are NOT consulted: use `inject()` for faults there.
* Discovery starts from kmock's bundled built-in resources (core v1 incl. events and
  namespaces, apps, apiextensions, ...) and grows when a CustomResourceDefinition is applied.
  As in a cluster, the namespaces default, kube-system, kube-public and kube-node-lease exist,
  other namespaces must be created before anything goes into them (Kopf watches a namespace
  only once it exists), and deleting a namespace deletes its contents.

Admission of our own kinds (ServiceDependency, ServiceGraph): every create, replace and patch,
of the object and of its /status, is checked as the API server checks it, on the object the
write would store. Unknown fields are pruned (refused with fieldValidation=Strict, which
kubectl sends), `default:` values filled in, then the schema from crds/ (read when the emulator
starts), list-map and set keys and CEL rules are checked by `servicegraph.validation.validate()`
(the checks of `servicegraph check`); a refusal is a 422 Status in the API server's wording.
See `Admission`.

What it never does (keep other checks for these): schema validation of other kinds, admission
webhooks, CEL transition rules, validation ratcheting, server-side apply, strategic-merge list
merging (treated as a JSON merge patch: lists are replaced), field managers, pagination,
deletecollection, scale subresources. Garbage collection is synchronous. `generation` is kept
for every kind (real ConfigMaps have none) and grows on any change outside metadata and status.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import dataclasses
import datetime
import http
import json
import math
import re
import secrets
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
import yaml
from kmock._internal import parsing, rendering

from servicegraph import validation
from servicegraph.crds import object_schema

from .kubectl import Kubectl

T = TypeVar("T")
Body = dict[str, Any]
Key = tuple[kmock.resource, str | None, str]  # (resource, namespace, name): kmock's store key

CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
ADMITTED_GROUP = "graph.slo-engine.io"  # the kinds whose writes are admitted as by the apiserver
NAMESPACES = kmock.resource("", "v1", "namespaces")
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
WRITE_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
# Metadata that only the server writes: restored from the stored object on every update.
SYSTEM_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


# Gap 1. kmock's parse_path() reads /api/v1/namespaces/X as "namespace X" (not the Namespace X)
# and crashes on /api/v1/namespaces. The Namespace objects themselves live at
# /api/v1/namespaces[/NAME[/status|/finalize]]; anything deeper is a namespaced resource.
# kmock's Request._parse() looks the function up in its module on every request, so replacing
# the module attribute is enough; every other path still goes to kmock's own parser.
_kmock_parse_path = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and (
        len(parts) <= 4 or (len(parts) == 5 and parts[4] in ("status", "finalize"))
    ):
        name = parts[3] if len(parts) > 3 else None
        subresource = parts[4] if len(parts) > 4 else None
        return parsing.ParsedPath("", "v1", "namespaces", None, name, subresource)
    return _kmock_parse_path(path)


parsing.parse_path = _parse_path


class _Event(NamedTuple):
    rv: int
    resource: kmock.resource
    type: str  # ADDED, MODIFIED, DELETED
    object: Body
    old: Body | None  # the state before a MODIFIED: selectors turn moves in/out into ADDED/DELETED


@dataclasses.dataclass
class Fault:
    """An injected error response or delay; see `ApiEmulator.inject()`."""

    method: str | None
    path: re.Pattern[str]
    status: int | None  # None: served as usual (after `delay`)
    times: int | None
    headers: dict[str, str]
    delay: float = 0.0
    hits: int = 0
    hit_times: list[float] = dataclasses.field(default_factory=list)  # time.monotonic()


@attrs.define(kw_only=True)
class ApiEmulator(kmock.KubernetesEmulator):
    """kmock's KubernetesEmulator behaving closely enough to kube-apiserver for Kopf and kubectl.

    For assertions, besides kmock's `objects` and request views:

    * `writes`: a Counter of write requests received (including failed and fault-injected ones),
      keyed by (group, plural, subresource or '', verb) with verb in create, update (PUT),
      patch, delete; e.g. `writes['graph.slo-engine.io', 'servicegraphs', 'status', 'patch']`.
    * `inject(method, path_regex, status, times=1, headers=None, delay=0)`: fail, or delay,
      matching requests.
    * `drop_watches()`: end the open watch streams (clients reconnect and resume).
    * `admission.pruned`: the unknown fields dropped from writes of our kinds, as
      (kind, name, field): what a real apiserver would silently not store;
      `admission.refused`: (kind, name, message) of each write of our kinds refused.
    """

    bookmark_interval: float = 5.0  # seconds between BOOKMARKs on watches that allow them
    writes: collections.Counter[tuple[str, str, str, str]] = attrs.field(
        factory=collections.Counter, init=False
    )
    _rv: int = attrs.field(default=0, init=False)
    _log: list[_Event] = attrs.field(factory=list, init=False)
    _tick: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    _watch_epoch: int = attrs.field(default=0, init=False)  # drop_watches() ends older streams
    _faults: list[Fault] = attrs.field(factory=list, init=False)
    _columns: dict[kmock.resource, list[Body]] = attrs.field(factory=dict, init=False)
    admission: Admission = attrs.field(factory=lambda: Admission(), init=False)  # reads crds/

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        with warnings.catch_warnings():  # kmock's own use of a deprecated importlib API
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resources.load_bundled()
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):  # as in clusters
            self._create(
                NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            )

    def inject(
        self,
        method: str | None,
        path: str,
        status: int | None,
        *,
        times: int | None = 1,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> Fault:
        """Answer the next `times` (None: all) requests whose method is `method` (None: any) and
        whose path with query matches the regex `path` (searched) with a Status error `status`
        and `headers` (e.g. Retry-After), without serving them: nothing is written.
        `delay` seconds pass first; with `status` None the request is then served as usual
        (a slow API server). `fault.hit_times` says when each matching request arrived.
        Safe to call from the test thread while the emulator runs; set `times` to stop it."""
        fault = Fault(
            method.upper() if method else None,
            re.compile(path),
            status,
            times,
            dict(headers or {}),
            delay,
        )
        self._faults.append(fault)
        return fault

    def close_watches(self) -> None:
        """End all watch streams (called on the emulator's loop before the server stops)."""
        self._closed = True
        self._wake()

    async def drop_watches(self) -> None:
        """End the watch streams open now, as an API server restart or a proxy timeout does;
        new ones are served as usual. From the test thread: `server.call(drop_watches())`."""
        self._watch_epoch += 1
        self._wake()

    # -- request dispatching -------------------------------------------------------------------

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        plural = res.plural if res is not None else None  # None: not an object API request
        if res is not None and plural is not None and request.method in WRITE_VERBS:
            self.writes[
                res.group or "", plural, request.subresource or "", WRITE_VERBS[request.method]
            ] += 1
        if (fault := self._take_fault(request)) is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status is not None:
                reason = http.HTTPStatus(fault.status).phrase.replace(" ", "")  # TooManyRequests
                error = _error(fault.status, reason, f"injected fault: {fault.status} {reason}")
                response = await self._render_error(error)
                response.headers.update(fault.headers)
                return response
        if request.url.path == "/openapi/v2":
            return _openapi_v2(request)
        if plural is None:  # discovery & co.: kmock's DSL, skipping kmock's own object store
            return await super(kmock.KubernetesEmulator, self)._handle(request)
        try:
            return await self._serve_object_api(request)
        except kmock.KubernetesError as e:
            return await self._render_error(e)

    def _take_fault(self, request: rendering.Request) -> Fault | None:
        for fault in self._faults:
            if (
                (fault.times is None or fault.hits < fault.times)
                and fault.method in (None, request.method)
                and fault.path.search(request.url.path_qs)
            ):
                fault.hits += 1
                fault.hit_times.append(time.monotonic())
                return fault
        return None

    async def _serve_object_api(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        assert res is not None
        if res not in self.resources:
            raise _error(404, "NotFound", "the server could not find the requested resource")
        info = self.resources[res]
        method, name, sub = request.method, request.name, request.subresource
        if method == "GET" and request.params.get("watch") in ("true", "1"):
            return await self._watch(request, res, info)
        if sub is not None and (sub != "status" or sub not in info.subresources):
            raise _error(404, "NotFound", f"the subresource {sub!r} is not served here")
        status = 200
        if method == "GET" and name is None:
            payload = self._list(request, res, info)
        elif method == "GET":
            payload = self._existing(request)[1]
        elif method == "POST" and name is None:
            body = _json_body(request, dict)
            payload = self._create(res, body, request.namespace, strict=_strict(request))
            status = 201
        elif method in ("PUT", "PATCH") and name is not None:
            payload = self._update(request, res, info)
        elif method == "DELETE" and name is not None and sub is None:
            payload = self._delete(request)
        else:
            raise _error(405, "MethodNotAllowed", f"{method} is not supported on this URL")
        # Gap 9. kubectl get asks for a server-rendered Table (columns from the CRD).
        if method == "GET" and "as=Table" in _header(request, "Accept"):
            payload = self._table(res, payload["items"] if name is None else [payload])
        return aiohttp.web.json_response(payload, status=status)

    # -- the store -------------------------------------------------------------------------------

    def _key(self, res: kmock.resource, namespace: str | None, name: str) -> Key:
        return (res, namespace if self.resources[res].namespaced is not False else None, name)

    def _current(self, key: Key) -> Body | None:
        if key in self.objects and not self.objects[key].deleted:
            return copy.deepcopy(self.objects[key].raw)
        return None

    def _existing(self, request: rendering.Request) -> tuple[Key, Body]:
        assert request.resource is not None
        key = self._key(request.resource, request.namespace, request.name or "")
        body = self._current(key)
        if body is None:
            raise _error(404, "NotFound", f'{key[0].plural} "{key[2]}" not found')
        return key, body

    def _commit(self, key: Key, type_: str, body: Body, old: Body | None = None) -> None:
        """Store a new state under the next resourceVersion and wake the watchers."""
        self._rv += 1
        body["metadata"]["resourceVersion"] = str(self._rv)
        if key in self.objects:
            self.objects[key].history.append(copy.deepcopy(body))
        else:
            self.objects[key] = copy.deepcopy(body)
        if type_ == "DELETED":
            self.objects[key].delete()
        self._log.append(_Event(self._rv, key[0], type_, copy.deepcopy(body), old))
        self._wake()
        if key[0] == CRDS:
            self._serve_crd(body, served=type_ != "DELETED")

    def _wake(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    # -- writes ------------------------------------------------------------------------------------

    def _create(
        self, res: kmock.resource, body: Body, namespace: str | None = None, *, strict: bool = False
    ) -> Body:
        """Gap 2: the server assigns the identity and bookkeeping metadata."""
        info = self.resources[res]
        meta = body.setdefault("metadata", {})
        if namespace and meta.get("namespace", namespace) != namespace:
            raise _error(400, "BadRequest", "the namespace of the object does not match the URL")
        name = meta.get("name") or (meta.get("generateName") and meta["generateName"] + _suffix())
        if not name:
            raise _error(422, "Invalid", "metadata.name or metadata.generateName is required")
        key = self._key(res, namespace or meta.get("namespace"), name)
        if self._current(key) is not None:
            raise _error(409, "AlreadyExists", f'{res.plural} "{name}" already exists')
        if info.namespaced and key[1] is None:
            raise _error(400, "BadRequest", "a namespaced object needs a namespace")
        if key[1] is not None and self._current((NAMESPACES, None, key[1])) is None:
            raise _error(404, "NotFound", f'namespaces "{key[1]}" not found')
        for field in SYSTEM_METADATA:
            meta.pop(field, None)
        meta.update(name=name, uid=str(uuid.uuid4()), generation=1, creationTimestamp=_now())
        if key[1] is not None:
            meta["namespace"] = key[1]
        body.setdefault("apiVersion", _group_version(res))
        body.setdefault("kind", info.kind)
        if "status" in info.subresources:  # the status is written through /status only
            body.pop("status", None)
        if res in self.admission:
            self.admission.admit(res, body, strict=strict)
        if res == NAMESPACES:
            body["status"] = {"phase": "Active"}
        if res == CRDS:  # the apiserver accepts the names and serves the resource at once
            body["status"] = {
                "acceptedNames": body.get("spec", {}).get("names", {}),
                "storedVersions": [v["name"] for v in body.get("spec", {}).get("versions", [])],
                "conditions": [
                    {"type": t, "status": "True", "lastTransitionTime": _now()}
                    for t in ("NamesAccepted", "Established")
                ],
            }
        self._commit(key, "ADDED", body)
        return body

    def _update(
        self, request: rendering.Request, res: kmock.resource, info: kmock.ResourceInfo
    ) -> Body:
        """Gaps 3 and 4: PATCH (by Content-Type) and PUT, on the object or on its /status."""
        key, old = self._existing(request)
        if request.method == "PATCH":
            new = self._patched(request, old)
        else:
            new = _json_body(request, dict)
        if not isinstance(new, dict):
            raise _error(422, "Invalid", "the result of the patch is not an object")
        # Optimistic concurrency: a resourceVersion in the body (or left by the patch) must match.
        expected = (new.get("metadata") or {}).get("resourceVersion")
        if expected and expected != old["metadata"]["resourceVersion"]:
            raise _error(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on {res.plural} "
                f'"{key[2]}": the object has been modified; please apply your changes '
                "to the latest version and try again",
            )
        # With a status subresource, /status writes change only .status, other writes never do.
        if request.subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            new.pop("status", None)
            if status is not None:
                new["status"] = status
        elif "status" in info.subresources:
            new.pop("status", None)
            if "status" in old:
                new["status"] = old["status"]
        new.update(apiVersion=old["apiVersion"], kind=old["kind"])
        meta = new["metadata"] = dict(new.get("metadata") or {})
        for field in SYSTEM_METADATA:
            if field in old["metadata"]:
                meta[field] = old["metadata"][field]
            else:
                meta.pop(field, None)
        if res in self.admission:
            self.admission.admit(res, new, strict=_strict(request), old=old)
            if request.subresource == "status":  # defaults fill in the status, not the spec
                new = {**new, **{k: v for k, v in old.items() if k not in ("status", "metadata")}}
        if new == old:  # a no-op: no new resourceVersion, no watch event
            return old
        if _without(new, "metadata", "status") != _without(old, "metadata", "status"):
            meta["generation"] = old["metadata"].get("generation", 0) + 1
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(key, new)  # the last finalizer is gone: the deletion completes
        self._commit(key, "MODIFIED", new, old)
        return new

    def _patched(self, request: rendering.Request, old: Body) -> object:
        content_type = _header(request, "Content-Type").split(";")[0].strip()
        if content_type == "application/json-patch+json":
            try:
                return jsonpatch.apply_patch(old, _json_body(request, list))
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
                # Kopf guards finalizer changes with a `test` op and expects 422 when it fails.
                raise _error(422, "Invalid", f"the JSON patch cannot be applied: {e}") from e
        if content_type in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ):
            return _merge_patch(old, _json_body(request, dict))
        raise _error(
            415,
            "UnsupportedMediaType",
            f"patch type {content_type!r} is not emulated (no server-side apply)",
        )

    def _delete(self, request: rendering.Request) -> Body:
        """Gap 5: deletion respects finalizers, bumps the resourceVersion, collects garbage."""
        key, body = self._existing(request)
        options = request.data if isinstance(request.data, dict) else {}  # DeleteOptions
        policy = request.params.get("propagationPolicy") or options.get("propagationPolicy")
        return self._delete_object(key, body, orphan=policy == "Orphan")

    def _delete_object(self, key: Key, body: Body, *, orphan: bool = False) -> Body:
        meta = body["metadata"]
        if not meta.get("finalizers"):
            return self._remove(key, body, orphan=orphan)
        if not meta.get("deletionTimestamp"):  # finalizers hold it: mark it and let them work
            old = copy.deepcopy(body)
            meta.update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0)
            self._commit(key, "MODIFIED", body, old)
        return body

    def _remove(self, key: Key, body: Body, *, orphan: bool = False) -> Body:
        self._commit(key, "DELETED", body)
        if not orphan:
            self._collect_garbage(body["metadata"]["uid"])
        if key[0] == NAMESPACES:  # the namespace controller deletes what was in it
            for other, obj in list(self.objects.items()):
                if other[1] == key[2] and not obj.deleted:
                    self._delete_object(other, copy.deepcopy(obj.raw))
        return body

    def _collect_garbage(self, uid: str) -> None:
        """Background cascading deletion: delete the dependents whose owners are all gone."""
        alive = {obj.raw["metadata"].get("uid") for obj in self.objects.values() if not obj.deleted}
        for key, obj in list(self.objects.items()):
            if obj.deleted:
                continue
            owners = {ref.get("uid") for ref in obj.raw["metadata"].get("ownerReferences") or []}
            if uid in owners and not owners & alive:
                self._delete_object(key, copy.deepcopy(obj.raw))

    def _serve_crd(self, crd: Body, *, served: bool) -> None:
        """Gap 9: a CustomResourceDefinition adds its resource to discovery and to the API."""
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        for version in spec.get("versions", []):
            res = kmock.resource(spec.get("group"), version.get("name"), names.get("plural"))
            if res in self.resources:
                del self.resources[res]
            self._columns.pop(res, None)
            if not served:  # custom resources go with their definition (finalizers ignored here)
                for key, obj in list(self.objects.items()):
                    if key[0] == res and not obj.deleted:
                        self._commit(key, "DELETED", copy.deepcopy(obj.raw))
            elif version.get("served", True):
                self.resources[res] = kmock.ResourceInfo(
                    kind=names.get("kind"),
                    singular=names.get("singular") or names.get("kind", "").lower(),
                    namespaced=spec.get("scope") == "Namespaced",
                    verbs=ALL_VERBS,
                    shortnames=names.get("shortNames") or [],
                    categories=names.get("categories") or [],
                    subresources={"status"} & set(version.get("subresources") or {}),
                )
                self._columns[res] = version.get("additionalPrinterColumns") or []

    # -- reads -------------------------------------------------------------------------------------

    def _matcher(self, request: rendering.Request) -> Callable[[Body], bool]:
        """Gaps 6 and 7: the namespace, name, labelSelector and fieldSelector of a request."""
        try:
            labels = _parse_label_selector(request.params.get("labelSelector", ""))
            fields = _parse_field_selector(request.params.get("fieldSelector", ""))
        except ValueError as e:
            raise _error(400, "BadRequest", str(e)) from e

        def match(body: Body) -> bool:
            meta = body.get("metadata", {})
            return (
                (request.namespace is None or meta.get("namespace") == request.namespace)
                and (request.name is None or meta.get("name") == request.name)
                and _labels_match(labels, meta.get("labels") or {})
                and all((_field(body, path) == value) == equal for path, equal, value in fields)
            )

        return match

    def _select(self, res: kmock.resource, match: Callable[[Body], bool]) -> list[Body]:
        bodies = [
            copy.deepcopy(obj.raw)
            for (r, _, _), obj in self.objects.items()
            if r == res and not obj.deleted and match(obj.raw)
        ]
        return sorted(
            bodies, key=lambda b: (b["metadata"].get("namespace") or "", b["metadata"]["name"])
        )

    def _list(
        self, request: rendering.Request, res: kmock.resource, info: kmock.ResourceInfo
    ) -> Body:
        """Gap 6: a typed list with the resourceVersion to watch from."""
        return {
            "apiVersion": _group_version(res),
            "kind": f"{info.kind}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": self._select(res, self._matcher(request)),
        }

    async def _watch(
        self, request: rendering.Request, res: kmock.resource, info: kmock.ResourceInfo
    ) -> aiohttp.web.StreamResponse:
        """Gap 7: replay the log after the given resourceVersion, then stream live events."""
        params = request.params
        match = self._matcher(request)
        since = params.get("resourceVersion", "")
        initial_events = since in ("", "0") or params.get("sendInitialEvents") == "true"
        if initial_events:
            # No version ("any"): start with the current state as ADDED, as the apiserver does.
            # The snapshot and the log position are taken with no await in between, so nothing
            # can fall between listing and subscribing.
            initial = self._select(res, match)
            position = len(self._log)
        else:
            if not since.isdigit():
                raise _error(400, "BadRequest", f"invalid resourceVersion {since!r}")
            initial = []
            position = next(
                (i for i, e in enumerate(self._log) if e.rv > int(since)), len(self._log)
            )
        bookmarks = params.get("allowWatchBookmarks") == "true"
        loop = asyncio.get_running_loop()
        timeout = float(params.get("timeoutSeconds") or 0) or math.inf  # 0: the server's default
        deadline = loop.time() + timeout

        def bookmark(**annotations: str) -> Body:
            meta: Body = {"resourceVersion": str(self._rv)}
            if annotations:
                meta["annotations"] = annotations
            return {"kind": info.kind, "apiVersion": _group_version(res), "metadata": meta}

        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        assert request._raw_request is not None
        await response.prepare(request._raw_request)

        async def send(type_: str, body: Body) -> None:
            await response.write(json.dumps({"type": type_, "object": body}).encode() + b"\n")

        epoch = self._watch_epoch
        with contextlib.suppress(ConnectionError):
            for body in initial:
                await send("ADDED", body)
            if initial_events and bookmarks and params.get("sendInitialEvents") == "true":
                await send("BOOKMARK", bookmark(**{"k8s.io/initial-events-end": "true"}))
            while not self._closed and epoch == self._watch_epoch:
                while position < len(self._log):
                    event = self._log[position]
                    position += 1
                    if event.resource == res and (seen_as := _seen_as(event, match)):
                        await send(seen_as, event.object)
                tick = self._tick  # taken after the last check of the log: no event is missed
                wait = deadline - loop.time()
                wait = min(wait, self.bookmark_interval) if bookmarks else wait
                if wait <= 0:
                    break
                try:
                    await asyncio.wait_for(tick.wait(), None if wait == math.inf else wait)
                except TimeoutError:
                    if bookmarks and loop.time() < deadline:
                        await send("BOOKMARK", bookmark())
            await response.write_eof()
        return response

    def _table(self, res: kmock.resource, bodies: list[Body]) -> Body:
        """A meta.k8s.io/v1 Table: Name, then the CRD's printer columns (else Age)."""
        name = {"name": "Name", "type": "string", "format": "name", "jsonPath": ".metadata.name"}
        age = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
        columns = [name, *(self._columns.get(res) or [age])]
        defaults = {"type": "string", "format": "", "description": "", "priority": 0}
        meta_only = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1"}
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(self._rv)},
            "columnDefinitions": [
                {**defaults, **{k: v for k, v in c.items() if k != "jsonPath"}} for c in columns
            ],
            "rows": [
                {
                    "cells": [_cell(b, c) for c in columns],
                    "object": {**meta_only, "metadata": b["metadata"]},
                }
                for b in bodies
            ],
        }

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        """Gap 8: kmock says groupVersion '/v1' for the core group (kubectl then sees no core
        resources) and repeats the parent's shortNames on subresources (ambiguous for kubectl)."""
        doc: Body = await super()._serve_version(request)  # type: ignore[assignment]
        doc["groupVersion"] = doc["groupVersion"].lstrip("/")
        for entry in doc["resources"]:
            if "/" in entry["name"]:
                entry.update(shortNames=[], categories=[], verbs=["get", "patch", "update"])
        return doc


# -- admission of our kinds --------------------------------------------------------------------


class Admission:
    """What kube-apiserver does to a ServiceDependency or ServiceGraph before storing it.

    The schemas are those of crds/ (the files `kubectl apply -f crds/` sends), read once. On the
    object a write would store: prune the fields the schema does not know (silently, as the
    apiserver does for clients that ask for no strict field validation), drop nulls, fill in
    `default:` values, then check it. The checks are `servicegraph.validation.validate()`, so
    the emulator refuses what `servicegraph check` refuses, with two additions of the API
    server's that validate() lacks: `format: date-time`, and CEL rules evaluated when the
    other errors do not block them (only type and enum errors do). The refusal is shaped as
    the apiserver's: 422 Invalid, one cause per error, messages in its wording."""

    def __init__(self, crd_dir: Path = CRD_DIR) -> None:
        self.schemas: dict[kmock.resource, tuple[str, Body]] = {}  # resource -> (kind, schema)
        # Unknown fields dropped from writes, (kind, name, field), for assertions: a real
        # apiserver drops them silently too (with only a Warning header).
        self.pruned: list[tuple[str, str, str]] = []
        self.refused: list[tuple[str, str, str]] = []  # (kind, name, message) of each 422
        for path in sorted(crd_dir.glob(f"{ADMITTED_GROUP}_*.yaml")):
            crd = yaml.safe_load(path.read_text())
            kind = crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                res = kmock.resource(
                    crd["spec"]["group"], version["name"], crd["spec"]["names"]["plural"]
                )
                schema = version["schema"]["openAPIV3Schema"]
                # validate() applies the schema generated from api.py: it must be this one, or
                # the emulator would prune and default by one schema and validate by another.
                generated = object_schema(validation.KINDS_BY_NAME[kind])
                if schema != generated:
                    raise RuntimeError(
                        f"{path.name} is not the schema generated from api.py: "
                        "run `servicegraph crds` to regenerate crds/"
                    )
                self.schemas[res] = (kind, schema)

    def __contains__(self, res: object) -> bool:
        return res in self.schemas and not self.older_schema

    # Objects written before the CRD's schema was tightened are kept and served as they are
    # by a real server; writes while this is set are stored unchecked, as such objects.
    older_schema = False

    @contextlib.contextmanager
    def under_an_older_schema(self) -> Iterator[None]:
        self.older_schema = True
        try:
            yield
        finally:
            self.older_schema = False

    def admit(
        self, res: kmock.resource, body: Body, *, strict: bool = False, old: Body | None = None
    ) -> None:
        """Prune and default `body` in place; raise a 422 if the API server would refuse it.
        `strict` (the request's fieldValidation=Strict, which kubectl sends): unknown fields
        are a 400 instead of being pruned."""
        kind, schema = self.schemas[res]
        pruned = _prune(body, schema, root=True)
        name = (body.get("metadata") or {}).get("name", "")
        if strict and pruned:
            unknown = ", ".join(f"unknown field {json.dumps(path)}" for path in pruned)
            raise _error(
                400,
                "BadRequest",
                f'{kind} in version "{res.version}" cannot be handled as a {kind}: '
                f"strict decoding error: {unknown}",
            )
        self.pruned += [(kind, name, path) for path in pruned]
        _default(body, schema)
        causes = self.causes(schema, body)
        if old is not None:
            # Ratcheting (kube-apiserver 1.30 and later): an update may keep a value that a
            # tightened schema refuses, as long as it does not change it.
            causes = [c for c in causes if not _unchanged(c["field"], old, body)]
        if causes:
            listed = [f"{c['field']}: {c['message']}" for c in causes]
            shown = listed[0] if len(listed) == 1 else f"[{', '.join(listed)}]"
            self.refused.append((kind, name, shown))
            raise kmock.KubernetesError(
                status=422,
                reason="Invalid",
                message=f'{kind}.{res.group} "{name}" is invalid: {shown}',
                details={"name": name, "group": res.group, "kind": kind, "causes": causes},
            )

    def causes(self, schema: Body, body: Body) -> list[Body]:
        """The StatusCauses of every reason to refuse `body`, in the apiserver's order: schema,
        list keys, CEL rules."""
        errors = validation.validate(body)
        if errors and all(e.field.startswith("metadata") for e in errors):
            return [_cause(*_metadata_error(e)) for e in errors]  # validate() stops there
        rules = _rules(schema)
        schema_errors, key_errors, rule_errors = [], [], []
        for error in errors:
            message = error.message
            if message.startswith("Duplicate value: "):
                key_errors.append(_duplicate(schema, body, error.field))
            elif message.startswith("Invalid value: ") and message[15:] in rules:
                rule_errors.append(_rule(rules[message[15:]], error.field))
            else:
                schema_errors.append(_reshape(body, error.field, message))
        schema_errors += _format_errors(schema, body, "")
        schema_errors.sort(key=lambda e: e[1])
        blocked = any(reason in _BLOCKING for reason, _, _ in schema_errors)
        if blocked:
            rule_errors = [("FieldValueInvalid", "<nil>", _UNCHECKED)]
        elif errors and not rule_errors:  # validate() skips CEL when anything else is wrong
            rule_errors = [
                _rule(rules[e.message[15:]], e.field)
                for e in validation._rule_errors(schema, body, "")
            ]
        return [_cause(*e) for e in schema_errors + key_errors + rule_errors]


def _unchanged(field: str, old: Body, new: Body) -> bool:
    """Whether the value at `field` (e.g. spec.dependsOn[0].service) is the same in both."""
    before = _lookup(old, field, default=_MISSING)
    return before is not _MISSING and before == _lookup(new, field, default=_MISSING)


_MISSING = object()


# Errors after which the apiserver does not evaluate CEL rules (it says so instead).
_BLOCKING = {"FieldValueTypeInvalid", "FieldValueNotSupported"}
_UNCHECKED = (
    'Invalid value: "null": some validation rules were not checked because the object was '
    "invalid; correct the existing errors to complete validation"
)
_Error = tuple[str, str, str]  # (StatusCause reason, field, message without the field)


def _cause(reason: str, field: str, message: str) -> Body:
    return {"reason": reason, "message": message, "field": field}


def _metadata_error(error: validation.FieldError) -> _Error:
    reason = "FieldValueRequired" if error.message.startswith("Required") else "FieldValueInvalid"
    return reason, error.field, error.message


def _prune(value: Any, schema: Body, path: str = "", *, root: bool = False) -> list[str]:
    """Structural pruning: drop the fields of objects that their schema does not declare
    (unless it preserves unknown fields), and nulls of fields that have no default.
    Returns the paths of the unknown fields dropped."""
    pruned: list[str] = []
    if isinstance(value, dict) and schema.get("type", "object") == "object":
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key in list(value):
            if root and key in ("apiVersion", "kind", "metadata"):
                continue
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            child = f"{path}.{key}" if path else key
            if sub is None:
                if not (schema.get("x-kubernetes-preserve-unknown-fields") or extra is True):
                    del value[key]
                    pruned.append(child)
            elif value[key] is None and not sub.get("nullable"):
                if "default" not in sub:  # else _default() fills it in
                    del value[key]
            else:
                pruned += _prune(value[key], sub, child)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            pruned += _prune(item, schema["items"], f"{path}[{index}]")
    return pruned


def _default(value: Any, schema: Body) -> None:
    """Structural defaulting: an absent (or null) field with a `default:` gets a copy of it,
    in objects that are there; then the same inside every field and list item."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if "default" in sub and (value.get(key) is None and not sub.get("nullable")):
                value[key] = copy.deepcopy(sub["default"])
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                _default(item, props[key])
            elif isinstance(extra, dict):
                _default(item, extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default(item, schema["items"])


# kube-openapi's strfmt.IsDateTime: a date, "T", a time with seconds and a zone (Z or ±hh:mm).
_DATE_TIME = re.compile(r"([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))")


def _is_date_time(text: str) -> bool:
    parts = text.lower().split("t")
    if len(text) < 4 or len(parts) < 2:
        return False
    try:
        datetime.datetime.strptime(parts[0], "%Y-%m-%d")
    except ValueError:
        return False
    m = _DATE_TIME.fullmatch(parts[1])
    return bool(m) and m[1] <= "23" and m[2] <= "59" and m[3] <= "59"


def _format_errors(schema: Body, value: Any, path: str) -> list[_Error]:
    """`format: date-time`, which validate() does not check (jsonschema ignores formats
    unless asked) and the apiserver does, reported as it reports a wrong type."""
    errors: list[_Error] = []
    if isinstance(value, str) and schema.get("format") == "date-time":
        if not _is_date_time(value):
            detail = f"{path} in body must be of type date-time: {json.dumps(value)}"
            errors.append(("FieldValueTypeInvalid", path, f"Invalid value: {_go(value)}: {detail}"))
    elif isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                errors += _format_errors(sub, item, f"{path}.{key}" if path else key)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            errors += _format_errors(schema["items"], item, f"{path}[{index}]")
    return errors


def _rules(schema: Body) -> dict[str, tuple[str, Body]]:
    """The CEL rules of a schema by the message validate() gives: {message: (type, rule)}."""
    found: dict[str, tuple[str, Body]] = {}
    for rule in schema.get("x-kubernetes-validations", []):
        found[rule.get("message", rule["rule"])] = (schema.get("type", "object"), rule)
    for sub in (schema.get("properties") or {}).values():
        found.update(_rules(sub))
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found.update(_rules(schema[key]))
    return found


def _rule(found: tuple[str, Body], field: str) -> _Error:
    """A broken CEL rule as the apiserver words it: the value shown is the schema's type."""
    type_, rule = found
    reason = rule.get("reason", "FieldValueInvalid")
    message = rule.get("message", rule["rule"])
    return reason, field or "<nil>", f"Invalid value: {json.dumps(type_)}: {message}"


def _field_path(path: str) -> list[str | int]:
    return [
        int(index) if index else key for key, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path)
    ]


def _lookup(body: Any, path: str, default: Any = None) -> Any:
    for part in _field_path(path):
        found = isinstance(body, list) and isinstance(part, int) and part < len(body)
        if not (found or (isinstance(body, dict) and part in body)):
            return default
        body = body[part]
    return body


def _schema_at(schema: Body, path: str) -> Body:
    for part in _field_path(path):
        if isinstance(part, int):
            schema = schema.get("items") or {}
        else:
            extra = schema.get("additionalProperties")
            schema = (schema.get("properties") or {}).get(part) or (
                extra if isinstance(extra, dict) else {}
            )
    return schema


def _duplicate(schema: Body, body: Body, field: str) -> _Error:
    """A repeated list-map key or set item: the apiserver names the item and shows its keys."""
    item_path = re.sub(r"\.[^.\[\]]+$", "", field) if not field.endswith("]") else field
    list_path = re.sub(r"\[\d+\]$", "", item_path)
    list_schema = _schema_at(schema, list_path)
    item = _lookup(body, item_path)
    if list_schema.get("x-kubernetes-list-type") == "map" and isinstance(item, dict):
        keys = list_schema.get("x-kubernetes-list-map-keys", [])
        item = {key: item[key] for key in keys if key in item}
    return "FieldValueDuplicate", item_path, f"Duplicate value: {_go(item)}"


_REWORDED = [  # validate()'s wording -> the apiserver's (kube-openapi's "<field> in body ...")
    (r"Invalid value: (?P<v>.*): should match '(?P<x>.*)'", "should match '{x}'"),
    (
        r"Invalid value: (?P<v>.*): should be (?P<x>(greater|less) than or equal to) (?P<n>\S+)",
        "should be {x} {n}",
    ),
    (
        r"Invalid value: (?P<v>.*): should have at least (?P<n>\d+) characters",
        "should be at least {n} chars long",
    ),
]


def _reshape(body: Body, field: str, message: str) -> _Error:
    """One error of validate() as the apiserver reports it (reason, field, message)."""
    value = _lookup(body, field)
    if m := re.fullmatch(r"Too long: may not have more than (\d+) bytes", message):
        return "FieldValueTooLong", field, f"Too long: may not be more than {m[1]} bytes"
    if m := re.fullmatch(r"Too long: may not have more than (\d+) items", message):
        actual = len(value) if isinstance(value, list | dict) else -1
        return "FieldValueTooMany", field, f"Too many: {actual}: must have at most {m[1]} items"
    if m := re.fullmatch(r"Required value: '(.+)' is a required property", message, re.S):
        return "FieldValueRequired", f"{field}.{m[1]}" if field else m[1], "Required value"
    if message.startswith("Unsupported value: "):
        return "FieldValueNotSupported", field, message
    if m := re.fullmatch(r"Invalid value: .*: must be of type (\w+)", message, re.S):
        detail = f"{field} in body must be of type {m[1]}: {json.dumps(_json_type(value))}"
        return "FieldValueTypeInvalid", field, f"Invalid value: {_go(value)}: {detail}"
    if m := re.fullmatch(r"Invalid value: .*: should have at least (\d+) items", message, re.S):
        actual = len(value) if isinstance(value, list) else value
        detail = f"{field} in body should have at least {m[1]} items"
        return "FieldValueInvalid", field, f"Invalid value: {actual}: {detail}"
    for pattern, wording in _REWORDED:
        if m := re.fullmatch(pattern, message, re.S):
            words = {k: _number(v) for k, v in m.groupdict().items()}
            detail = f"{field} in body " + wording.format(**words)
            return "FieldValueInvalid", field, f"Invalid value: {_go(value)}: {detail}"
    return "FieldValueInvalid", field, message  # as validate() says it


def _number(text: str) -> str:
    """A bound as Go's %v prints a float64: 1.0 is "1"."""
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _go(value: Any) -> str:
    """A JSON value as the apiserver prints it in a field error (Go's %q, %v and %#v)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return _number(str(value))
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)}:{_go(v)}" for k, v in sorted(value.items()))
        return f"map[string]interface {{}}{{{items}}}"
    if isinstance(value, list):
        return f"[]interface {{}}{{{', '.join(_go(v) for v in value)}}}"
    return repr(value)


# -- running it --------------------------------------------------------------------------------


class EmulatorServer:
    """Serves an ApiEmulator on a free 127.0.0.1 port from its own thread and event loop.

    Its own loop keeps it independent of pytest and of an operator run in-process (Kopf's
    shutdown cancels the tasks of the loop it runs in). Use as a context manager or
    start()/stop(); `url` is set once started."""

    def __init__(self, emulator: ApiEmulator | None = None) -> None:
        self.emulator = emulator if emulator is not None else ApiEmulator()
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="api-emulator", daemon=True
        )
        self._stack = contextlib.AsyncExitStack()

    def start(self) -> str:
        self._thread.start()
        self.url = self.call(self._start())
        return self.url

    def stop(self) -> None:
        if self._thread.is_alive():
            try:
                self.call(self._stop())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(10)
        if not self._loop.is_running():
            self._loop.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run a coroutine on the emulator's loop (e.g. to touch its state safely)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> str:
        await self._stack.enter_async_context(self.emulator)
        server = await self._stack.enter_async_context(kmock.Server(self.emulator))  # port 0
        return str(server.url).rstrip("/")

    async def _stop(self) -> None:
        self.emulator.close_watches()  # or the server waits for open watches to end
        await self._stack.aclose()

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def write_kubeconfig(path: Path, server: str, *, namespace: str = "default") -> Path:
    """Write a kubeconfig for `server`: plain http and no credentials, which kubectl, Kopf's
    login_with_kubeconfig and the kubernetes client all accept (no TLS needed)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "emulator", "user": {}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
            }
        ],
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML: every client reads it
    return path


@dataclasses.dataclass(frozen=True)
class Api:
    """What the `api` fixture yields: a running emulator and the ways to reach it."""

    server: EmulatorServer
    kubeconfig: Path
    kubectl: Kubectl

    @property
    def emulator(self) -> ApiEmulator:
        return self.server.emulator

    @property
    def url(self) -> str:
        return self.server.url

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a subprocess (an operator, kubectl) to use this API."""
        return {**self.kubectl.env, **extra}


# -- helpers -----------------------------------------------------------------------------------


def _error(status: int, reason: str, message: str) -> kmock.KubernetesError:
    # Non-empty details keep kmock from putting a server traceback into the Status.
    return kmock.KubernetesError(
        status=status, reason=reason, message=message, details={"causes": []}
    )


def _openapi_v2(request: rendering.Request) -> aiohttp.web.Response:
    """Gap 9. `kubectl apply` validates against /openapi/v2, and insists on protobuf there.
    A document with no definitions validates nothing: every kind passes, as with CRDs
    without schemas. Protobuf by hand: Document{swagger=1: "2.0", info=2: Info{title=1,
    version=2}}; each field is a tag byte (number << 3 | 2 for length-delimited), a length
    and the bytes."""

    def field(number: int, value: bytes) -> bytes:
        return bytes([number << 3 | 2, len(value)]) + value

    if "protobuf" in _header(request, "Accept"):
        info = field(1, b"Kubernetes") + field(2, b"v1.32.0")
        return aiohttp.web.Response(
            body=field(1, b"2.0") + field(2, info),
            content_type="application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        )
    return aiohttp.web.json_response(
        {
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": {},
            "definitions": {},
        }
    )


def _strict(request: rendering.Request) -> bool:
    """Strict field validation asked for (kubectl does): unknown fields are refused."""
    return request.params.get("fieldValidation") == "Strict"


def _header(request: rendering.Request, name: str) -> str:
    return next((v for k, v in request.headers.items() if k.lower() == name.lower()), "")


def _json_body(request: rendering.Request, kind: type[T]) -> T:
    try:
        data = json.loads(request.body)
    except ValueError:  # incl. protobuf, e.g. from `kubectl create configmap`: use `-f`
        raise _error(415, "UnsupportedMediaType", "the body is not JSON") from None
    if not isinstance(data, kind):
        raise _error(400, "BadRequest", f"the body is not a JSON {kind.__name__}")
    return data


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _suffix() -> str:
    return "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


def _group_version(res: kmock.resource) -> str:
    return f"{res.group}/{res.version}" if res.group else str(res.version)


def _without(body: Body, *keys: str) -> Body:
    return {k: v for k, v in body.items() if k not in keys}


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes, all else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _seen_as(event: _Event, match: Callable[[Body], bool]) -> str | None:
    """The event type as a selective watcher sees it: moving in/out is ADDED/DELETED."""
    now, before = match(event.object), event.old is not None and match(event.old)
    if event.type != "MODIFIED":
        return event.type if now else None
    if now:
        return "MODIFIED" if before else "ADDED"
    return "DELETED" if before else None


_NAME = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_LABEL_TERM = re.compile(
    rf"!\s*(?P<absent>{_NAME})"
    rf"|(?P<key>{_NAME})\s*(?:(?P<op>==|!=|=)\s*(?P<value>[-A-Za-z0-9_.]*)"
    rf"|\s+(?P<setop>in|notin)\s+\((?P<values>[^)]*)\))?"
)


def _parse_label_selector(selector: str) -> list[tuple[str, str, set[str]]]:
    """`a=1,b!=2,c in (x,y),d notin (z),e,!f` -> [(key, op, values)]; ValueError if invalid."""
    requirements: list[tuple[str, str, set[str]]] = []
    for term in re.split(r",(?![^(]*\))", selector):  # commas outside parentheses
        if not term.strip():
            continue
        m = _LABEL_TERM.fullmatch(term.strip())
        if m is None:
            raise ValueError(f"invalid label selector term {term!r}")
        if m["absent"]:
            requirements.append((m["absent"], "!", set()))
        elif m["op"]:
            requirements.append((m["key"], "!=" if m["op"] == "!=" else "in", {m["value"]}))
        elif m["setop"]:
            values = {v.strip() for v in m["values"].split(",") if v.strip()}
            requirements.append((m["key"], m["setop"], values))
        else:
            requirements.append((m["key"], "exists", set()))
    return requirements


def _labels_match(requirements: list[tuple[str, str, set[str]]], labels: Mapping[str, str]) -> bool:
    for key, op, values in requirements:
        present = key in labels
        if op == "in" and not (present and labels[key] in values):
            return False
        if op in ("!=", "notin") and present and labels[key] in values:  # absent keys match
            return False
        if (op == "exists" and not present) or (op == "!" and present):
            return False
    return True


def _parse_field_selector(selector: str) -> list[tuple[str, bool, str]]:
    """`metadata.name=x,involvedObject.uid!=y` -> [(path, equal, value)]. The apiserver allows
    metadata.name and metadata.namespace everywhere and a few fields per kind (e.g. the
    involvedObject.* of Events, which `kubectl describe` uses); any field path works here."""
    requirements = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        m = re.fullmatch(r"([A-Za-z][\w.]*)\s*(==|=|!=)\s*(.*)", term)
        if m is None:
            raise ValueError(f"invalid field selector {term!r}")
        requirements.append((m[1], m[2] != "!=", m[3].strip()))
    return requirements


def _field(body: Body, path: str) -> str:
    """A field for a field selector: absent fields are empty strings, as in the apiserver."""
    value: Any = body
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return "" if value is None else str(value)


_JSONPATH_STEP = re.compile(
    r"\.(?P<key>[^.\[]+)|\[(?P<index>\d+)\]"
    r'|\[\?\(@\.(?P<fkey>[-\w]+)\s*==\s*["\'](?P<fvalue>[^"\']*)["\']\)\]'
)


def _jsonpath(body: Any, path: str) -> Any:
    """The printer-column subset of JSONPath: .a.b, [0], [?(@.type=="Ready")]."""
    values = [body]
    for step in _JSONPATH_STEP.finditer(path):
        found: list[Any] = []
        for value in values:
            if step["key"] is not None and isinstance(value, dict) and step["key"] in value:
                found.append(value[step["key"]])
            elif step["index"] is not None and isinstance(value, list):
                found.extend(value[int(step["index"]) : int(step["index"]) + 1])
            elif step["fkey"] is not None and isinstance(value, list):
                found.extend(
                    item
                    for item in value
                    if isinstance(item, dict) and str(item.get(step["fkey"])) == step["fvalue"]
                )
        values = found
    return values[0] if values else None


def _cell(body: Body, column: Body) -> Any:
    value = _jsonpath(body, column.get("jsonPath", ""))
    if value is None:
        return None
    if column.get("type") == "date":  # the apiserver renders dates as ages, like kubectl
        then = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        seconds = max(0, int((datetime.datetime.now(datetime.UTC) - then).total_seconds()))
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= 2 * size:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"
    return value if isinstance(value, str | int | float | bool) else json.dumps(value)
