"""The few Kubernetes API calls the operator makes itself, on the `kubernetes` client.

The client is synchronous: every call runs in a worker thread so the operator's event loop
keeps serving watches. Objects come back as plain dicts in the API's own camelCase.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Callable
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from servicegraph.api import GROUP, VERSION

MERGE_PATCH = "application/merge-patch+json"
TIMEOUT = 30.0

Body = dict[str, Any]


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status (0 when no answer came)."""

    def __init__(self, action: str, status: int, reason: str) -> None:
        super().__init__(f"{action}: {status} {reason}".strip())
        self.status = status


def load_client() -> client.ApiClient:
    """In a pod, its service account; elsewhere the kubeconfig in $KUBECONFIG (or ~/.kube)."""
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]  # untyped in the package
        return client.ApiClient()
    api_client: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=os.environ.get("KUBECONFIG")
    )
    return api_client


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    async def _call(self, action: str, call: Callable[[], Any]) -> Body | None:
        """Run `call` in a thread; the decoded JSON answer, None for 404."""

        def run() -> Body | None:
            try:
                response = call()
            except ApiException as error:
                if error.status == 404:
                    return None
                raise KubeError(action, error.status or 0, _reason(error)) from error
            except OSError as error:  # connection refused, reset, timed out
                raise KubeError(action, 0, str(error)) from error
            data = response.data
            return json.loads(data) if data else {}

        return await asyncio.to_thread(run)

    async def patch_status(self, plural: str, namespace: str, name: str, status: Body) -> bool:
        """Merge-patch the status of one of our objects; False when it is gone."""
        found = await self._call(
            f"patch status of {plural} {namespace}/{name}",
            lambda: self._custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                {"status": status},
                _content_type=MERGE_PATCH,
                _preload_content=False,
                _request_timeout=TIMEOUT,
            ),
        )
        return found is not None

    async def read_config_map(self, namespace: str, name: str) -> Body | None:
        return await self._call(
            f"read configmap {namespace}/{name}",
            lambda: self._core.read_namespaced_config_map(
                name, namespace, _preload_content=False, _request_timeout=TIMEOUT
            ),
        )

    async def list_config_maps(self, namespace: str, label_selector: str) -> list[Body]:
        found = await self._call(
            f"list configmaps in {namespace}",
            lambda: self._core.list_namespaced_config_map(
                namespace,
                label_selector=label_selector,
                _preload_content=False,
                _request_timeout=TIMEOUT,
            ),
        )
        return list((found or {}).get("items") or [])

    async def write_config_map(self, namespace: str, body: Body, *, exists: bool) -> None:
        """Replace the ConfigMap whole (keys it no longer has must go), or create it.

        `exists` says which to try first; the other is the fallback when it was wrong.
        """
        name = body["metadata"]["name"]
        manifest = client.V1ConfigMap.from_dict(body)
        assert manifest is not None  # from_dict returns None only for None

        async def create() -> Body | None:
            return await self._call(
                f"create configmap {namespace}/{name}",
                lambda: self._core.create_namespaced_config_map(
                    namespace, manifest, _preload_content=False, _request_timeout=TIMEOUT
                ),
            )

        async def replace() -> Body | None:
            return await self._call(
                f"replace configmap {namespace}/{name}",
                lambda: self._core.replace_namespaced_config_map(
                    name, namespace, manifest, _preload_content=False, _request_timeout=TIMEOUT
                ),
            )

        if exists and await replace() is not None:
            return
        try:
            await create()
        except KubeError as error:
            if error.status != 409:
                raise
            await replace()

    async def delete_config_map(self, namespace: str, name: str) -> None:
        await self._call(
            f"delete configmap {namespace}/{name}",
            lambda: self._core.delete_namespaced_config_map(
                name, namespace, _preload_content=False, _request_timeout=TIMEOUT
            ),
        )

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str | None:
        """One key of a Secret, decoded; None when the Secret or the key is missing."""
        secret = await self._call(
            f"read secret {namespace}/{name}",
            lambda: self._core.read_namespaced_secret(
                name, namespace, _preload_content=False, _request_timeout=TIMEOUT
            ),
        )
        value = ((secret or {}).get("data") or {}).get(key)
        return None if value is None else base64.b64decode(value).decode()


def _reason(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason or "")
    except ValueError:
        return str(error.reason or "")
