"""The few Kubernetes API calls the operator makes itself, on the `kubernetes` client.

Through the client's generic request path (its authentication, TLS and kubeconfig handling)
rather than its generated API classes: importing CoreV1Api alone costs the process 21 MiB.
The client is synchronous: every call runs in a worker thread so the operator's event loop
keeps serving watches. Objects come back as plain dicts in the API's own camelCase.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from servicegraph.api import GROUP, VERSION

MERGE_PATCH = "application/merge-patch+json"
TIMEOUT = 30.0

Body = dict[str, Any]


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status (0 when no answer came), `retry_after`
    the seconds the API server asked to wait (429, 503), if it did."""

    def __init__(
        self, action: str, status: int, reason: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{action}: {status} {reason}" if status else f"{action}: {reason}")
        self.status = status
        self.retry_after = retry_after


def load_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """In a pod, its service account; elsewhere `kubeconfig`, else the one in $KUBECONFIG (or
    ~/.kube), with its current context unless `context` names another, as kubectl chooses."""
    in_pod = os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG")
    if in_pod and kubeconfig is None and context is None:
        config.load_incluster_config()  # type: ignore[no-untyped-call]  # untyped in the package
        return client.ApiClient()
    api_client: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig or os.environ.get("KUBECONFIG"), context=context
    )
    return api_client


def api_path(*parts: str) -> str:
    """An API path from its segments, each quoted."""
    return "/" + "/".join(quote(part, safe="") for part in parts)


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._api = api_client

    def request(
        self,
        action: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Body | None:
        """One call, synchronously; the decoded JSON answer, or None for 404."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            method, url, headers, body, _ = self._api.param_serialize(
                method=method,
                resource_path=path,
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._api.call_api(
                method, url, header_params=headers, body=body, _request_timeout=TIMEOUT
            )
            data = response.read()  # type: ignore[no-untyped-call]  # untyped in the package
        except urllib3.exceptions.MaxRetryError as error:  # no answer: say why in a few words
            cause = re.search(r"\[Errno -?\d+\] [^\"')]+", str(error.reason))
            why = cause.group(0) if cause else str(error.reason)
            raise KubeError(
                action, 0, f"cannot reach {self._api.configuration.host}: {why}"
            ) from error
        except ApiException as error:  # raised for transport failures, with status 0
            raise KubeError(action, error.status or 0, str(error.reason or "")) from error
        except (OSError, urllib3.exceptions.HTTPError) as error:
            raise KubeError(action, 0, str(error)) from error
        if response.status == 404:
            return None
        if response.status >= 400:
            retry_after = _seconds(response.getheader("Retry-After"))  # type: ignore[no-untyped-call]
            raise KubeError(action, response.status, _reason(data), retry_after=retry_after)
        return json.loads(data) if data else {}

    async def _call(self, action: str, method: str, path: str, **kwargs: Any) -> Body | None:
        return await asyncio.to_thread(self.request, action, method, path, **kwargs)

    async def patch_status(self, plural: str, namespace: str, name: str, status: Body) -> bool:
        """Merge-patch the status of one of our objects; False when it is gone."""
        found = await self._call(
            f"patch status of {plural} {namespace}/{name}",
            "PATCH",
            api_path("apis", GROUP, VERSION, "namespaces", namespace, plural, name, "status"),
            body={"status": status},
            content_type=MERGE_PATCH,
        )
        return found is not None

    async def list_config_maps(self, namespace: str, label_selector: str) -> list[Body]:
        found = await self._call(
            f"list configmaps in {namespace}",
            "GET",
            api_path("api", "v1", "namespaces", namespace, "configmaps"),
            query={"labelSelector": label_selector},
        )
        return list((found or {}).get("items") or [])

    async def read_config_map(self, namespace: str, name: str) -> Body | None:
        return await self._call(
            f"read configmap {namespace}/{name}",
            "GET",
            api_path("api", "v1", "namespaces", namespace, "configmaps", name),
        )

    async def create_config_map(self, namespace: str, body: Body) -> None:
        """Create it; a KubeError with status 409 when one of that name exists."""
        name = body["metadata"]["name"]
        await self._call(
            f"create configmap {namespace}/{name}",
            "POST",
            api_path("api", "v1", "namespaces", namespace, "configmaps"),
            body=body,
        )

    async def replace_config_map(self, namespace: str, body: Body) -> bool:
        """Replace it whole (keys it no longer has must go); False when it does not exist.

        With `metadata.resourceVersion` set, a 409 says someone else changed it since."""
        name = body["metadata"]["name"]
        found = await self._call(
            f"replace configmap {namespace}/{name}",
            "PUT",
            api_path("api", "v1", "namespaces", namespace, "configmaps", name),
            body=body,
        )
        return found is not None

    async def delete_config_map(self, namespace: str, name: str) -> None:
        await self._call(
            f"delete configmap {namespace}/{name}",
            "DELETE",
            api_path("api", "v1", "namespaces", namespace, "configmaps", name),
        )

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str | None:
        """One key of a Secret, decoded; None when the Secret or the key is missing."""
        secret = await self._call(
            f"read secret {namespace}/{name}",
            "GET",
            api_path("api", "v1", "namespaces", namespace, "secrets", name),
        )
        value = ((secret or {}).get("data") or {}).get(key)
        return None if value is None else base64.b64decode(value).decode()

    async def read_peering(self, name: str, namespace: str | None = None) -> Body | None:
        """Kopf's peering object: a ClusterKopfPeering, or a KopfPeering in `namespace`."""
        if namespace is None:
            path = api_path("apis", "kopf.dev", "v1", "clusterkopfpeerings", name)
        else:
            path = api_path("apis", "kopf.dev", "v1", "namespaces", namespace, "kopfpeerings", name)
        return await self._call(f"read peering {name}", "GET", path)


def _seconds(header: str | None) -> float | None:
    """Retry-After in seconds (the API server sends seconds, never an HTTP date)."""
    try:
        return float(header) if header else None
    except ValueError:
        return None


def _reason(data: bytes) -> str:
    """The message of a Kubernetes Status answer, else the start of the body."""
    try:
        return str(json.loads(data).get("message") or "")
    except (ValueError, AttributeError):
        return data[:200].decode(errors="replace")
