"""The API emulator admits our kinds as kube-apiserver does, and only our kinds.

Every write of a ServiceDependency or ServiceGraph (create, replace, merge and JSON patch, of
the object and of its /status) is pruned, defaulted and checked against the CRDs in crds/;
a refusal is the apiserver's 422 Status. The expected wordings are those a real
kube-apiserver (v1.32) gave for the same writes, measured once against a real one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_emulator import create, patch
from tests.support.emulator import Api
from tests.support.kubectl import KubectlError, wait_for
from tests.support.operator_process import StartOperator

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
GROUP = "graph.slo-engine.io"
API = f"{GROUP}/v1alpha1"
SDEPS = f"/apis/{API}/namespaces/default/servicedependencies"
GRAPHS = f"/apis/{API}/namespaces/default/servicegraphs"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
TIME = "2025-01-01T00:00:00Z"


def sdep(name: str, *targets: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ServiceDependency",
        "metadata": {"name": name},
        "spec": {"dependsOn": [{"service": t} for t in targets], **spec},
    }


def graph(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "ServiceGraph", "metadata": {"name": name}, "spec": spec}


def condition(type_: str, status: str = "True", **extra: Any) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "lastTransitionTime": TIME,
        "reason": "Tested",
        "message": "",
        **extra,
    }


def refused(response: httpx.Response) -> dict[str, Any]:
    """The Status of a 422, checked for the apiserver's shape."""
    assert response.status_code == 422, response.text
    status = response.json()
    assert (status["kind"], status["apiVersion"]) == ("Status", "v1")
    assert (status["status"], status["reason"], status["code"]) == ("Failure", "Invalid", 422)
    return status


def causes(status: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["field"], c["reason"], c["message"]) for c in status["details"]["causes"]]


@pytest.fixture
def crds(api: Api) -> None:
    api.kubectl("apply", "-f", str(ROOT / "crds"))


def test_oversized_condition_message_is_refused_on_every_status_write(
    api: Api, http: httpx.Client, crds: None
) -> None:
    create(http, GRAPHS, graph("g"))
    ok = patch(http, f"{GRAPHS}/g/status", {"status": {"conditions": [condition("Ready")]}})
    assert ok.status_code == 200, ok.text
    stored = ok.json()
    huge = {"status": {"conditions": [condition("Ready"), condition("Stale", message="x" * 40000)]}}

    status = refused(patch(http, f"{GRAPHS}/g/status", huge))
    assert status["message"] == (
        'ServiceGraph.graph.slo-engine.io "g" is invalid: '
        "status.conditions[1].message: Too long: may not be more than 32768 bytes"
    )
    assert status["details"] == {
        "name": "g",
        "group": GROUP,
        "kind": "ServiceGraph",
        "causes": [
            {
                "reason": "FieldValueTooLong",
                "message": "Too long: may not be more than 32768 bytes",
                "field": "status.conditions[1].message",
            }
        ],
    }
    # The same status by JSON patch and by PUT, and nothing of it stored.
    ops = [{"op": "add", "path": "/status/conditions/-", "value": huge["status"]["conditions"][1]}]
    assert causes(refused(patch(http, f"{GRAPHS}/g/status", ops, JSON_PATCH)))[0][0] == (
        "status.conditions[1].message"
    )
    put = http.put(f"{GRAPHS}/g/status", json={**stored, **huge})
    assert "Too long" in refused(put)["message"]
    assert http.get(f"{GRAPHS}/g").json() == stored  # same resourceVersion: nothing written
    assert api.emulator.writes[GROUP, "servicegraphs", "status", "patch"] == 3


def test_self_dependency_is_refused_through_kubectl_apply(api: Api, crds: None) -> None:
    with pytest.raises(KubectlError) as created:
        api.kubectl.apply(sdep("checkout", "payment", "checkout"))
    assert (
        'The ServiceDependency "checkout" is invalid: '
        'spec.dependsOn: Invalid value: "object": a service cannot depend on itself'
    ) in created.value.stderr
    # spec.service names the service when it is set; an update (a PATCH) is refused too.
    api.kubectl.apply(sdep("checkout", "payment", service="checkoutservice"))
    with pytest.raises(KubectlError, match="a service cannot depend on itself"):
        api.kubectl.apply(sdep("checkout", "payment", "checkoutservice", service="checkoutservice"))
    deps = api.kubectl.get("servicedependency", "checkout")["spec"]["dependsOn"]
    assert [d["service"] for d in deps] == ["payment"]


def test_duplicate_targets_are_refused_and_rules_still_checked(
    api: Api, http: httpx.Client, crds: None
) -> None:
    with pytest.raises(KubectlError) as applied:
        api.kubectl.apply(sdep("frontend", "cartservice", "cartservice"))
    assert (
        'The ServiceDependency "frontend" is invalid: spec.dependsOn[1]: '
        'Duplicate value: map[string]interface {}{"service":"cartservice"}'
    ) in applied.value.stderr
    # A duplicate does not stop the CEL rules (only wrong types and enums do).
    both = refused(http.post(SDEPS, json=sdep("cart", "redis", "redis", "cart")))
    assert causes(both) == [
        (
            "spec.dependsOn[1]",
            "FieldValueDuplicate",
            'Duplicate value: map[string]interface {}{"service":"redis"}',
        ),
        (
            "spec.dependsOn",
            "FieldValueInvalid",
            'Invalid value: "object": a service cannot depend on itself',
        ),
    ]
    # Duplicate condition types in a status are refused the same way.
    create(http, SDEPS, sdep("cart", "redis"))
    twice = {"status": {"conditions": [condition("Accepted"), condition("Accepted", "False")]}}
    assert causes(refused(patch(http, f"{SDEPS}/cart/status", twice))) == [
        (
            "status.conditions[1]",
            "FieldValueDuplicate",
            'Duplicate value: map[string]interface {}{"type":"Accepted"}',
        )
    ]


def test_status_enum_format_and_required_fields(http: httpx.Client, crds: None) -> None:
    create(http, SDEPS, sdep("cart", "redis"))
    url = f"{SDEPS}/cart/status"
    maybe = refused(patch(http, url, {"status": {"conditions": [condition("Accepted", "Maybe")]}}))
    assert causes(maybe)[0] == (
        "status.conditions[0].status",
        "FieldValueNotSupported",
        'Unsupported value: "Maybe": supported values: "True", "False", "Unknown"',
    )
    # A wrong enum or type keeps the apiserver from evaluating the CEL rules; it says so.
    assert causes(maybe)[-1][0] == "<nil>"
    assert "some validation rules were not checked" in causes(maybe)[-1][2]

    late = {"status": {"conditions": [condition("Accepted", lastTransitionTime="yesterday")]}}
    assert causes(refused(patch(http, url, late))) == [
        (
            "status.conditions[0].lastTransitionTime",
            "FieldValueTypeInvalid",
            'Invalid value: "yesterday": status.conditions[0].lastTransitionTime in body must be '
            'of type date-time: "yesterday"',
        ),
        ("<nil>", "FieldValueInvalid", causes(maybe)[-1][2]),
    ]
    # The object the patch would leave is checked: removing a required field is refused.
    assert patch(http, url, {"status": {"conditions": [condition("Accepted")]}}).is_success
    ops = [{"op": "remove", "path": "/status/conditions/0/reason"}]
    assert causes(refused(patch(http, url, ops, JSON_PATCH))) == [
        ("status.conditions[0].reason", "FieldValueRequired", "Required value")
    ]
    wrong = refused(patch(http, url, {"status": {"inCycle": "yes", "observedGeneration": 1.5}}))
    assert [(field, reason) for field, reason, _ in causes(wrong)[:2]] == [
        ("status.inCycle", "FieldValueTypeInvalid"),
        ("status.observedGeneration", "FieldValueTypeInvalid"),
    ]


def test_spec_writes_are_checked_on_create_replace_and_patch(
    http: httpx.Client, crds: None
) -> None:
    bad_tier = refused(http.post(SDEPS, json=sdep("cart", "redis", tier="urgent")))
    assert causes(bad_tier)[0][:2] == ("spec.tier", "FieldValueNotSupported")
    stored = create(http, SDEPS, sdep("cart", "redis"))
    put = http.put(f"{SDEPS}/cart", json={**stored, "spec": {"dependsOn": [{"service": ""}]}})
    assert causes(refused(put))[0] == (
        "spec.dependsOn[0].service",
        "FieldValueInvalid",
        'Invalid value: "": spec.dependsOn[0].service in body should be at least 1 chars long',
    )
    slow = refused(
        patch(
            http, f"{SDEPS}/cart", {"spec": {"dependsOn": [{"service": "redis", "timeoutMs": 0}]}}
        )
    )
    assert causes(slow)[0][2] == (
        "Invalid value: 0: spec.dependsOn[0].timeoutMs in body should be greater than or equal to 1"
    )
    many = [
        {
            "op": "replace",
            "path": "/spec/dependsOn",
            "value": [{"service": f"s{i}"} for i in range(513)],
        }
    ]
    assert causes(refused(patch(http, f"{SDEPS}/cart", many, JSON_PATCH)))[0] == (
        "spec.dependsOn",
        "FieldValueTooMany",
        "Too many: 513: must have at most 512 items",
    )
    headers = {f"h{i}": "v" for i in range(33)}
    too_many = graph("g", observed={"prometheus": {"url": "http://p:9090", "headers": headers}})
    assert causes(refused(http.post(GRAPHS, json=too_many)))[0] == (
        "spec.observed.prometheus.headers",
        "FieldValueTooMany",
        "Too many: 33: must have at most 32 items",
    )
    no_spec = refused(http.post(GRAPHS, json={**graph("g"), "spec": None}))
    assert causes(no_spec) == [("spec", "FieldValueRequired", "Required value")]
    assert http.get(f"{SDEPS}/cart").json() == stored


def test_unknown_fields_are_pruned_and_defaults_filled_in(
    api: Api, http: httpx.Client, crds: None
) -> None:
    body = sdep("cart", "redis", owner="nobody")
    body["spec"]["dependsOn"][0].update(weight=3, retry={"maxRetries": 1, "jitter": True})
    body["spec"]["tier"] = None  # a null without a default is dropped, not refused
    body["extra"] = {"a": 1}
    created = create(http, SDEPS, body)
    assert created["spec"] == {
        "dependsOn": [
            {
                "service": "redis",
                "communicationMode": "sync",
                "criticality": "hard",
                "retry": {"maxRetries": 1, "backoffMs": 100, "backoffMultiplier": 2.0},
            }
        ]
    }
    assert "extra" not in created
    assert api.emulator.admission.pruned == [
        ("ServiceDependency", "cart", "spec.dependsOn[0].weight"),
        ("ServiceDependency", "cart", "spec.dependsOn[0].retry.jitter"),
        ("ServiceDependency", "cart", "spec.owner"),
        ("ServiceDependency", "cart", "extra"),
    ]
    status = {"kopf": {"progress": {}}, "inCycle": False, "conditions": [condition("Accepted")]}
    stored = patch(http, f"{SDEPS}/cart/status", {"status": status}).json()["status"]
    assert stored == {"inCycle": False, "conditions": [condition("Accepted")]}
    # A write that only adds unknown fields changes nothing: no new resourceVersion.
    again = patch(http, f"{SDEPS}/cart/status", {"status": {"kopf": {"x": 1}}}).json()
    assert (
        again["metadata"]["resourceVersion"]
        == http.get(f"{SDEPS}/cart").json()["metadata"]["resourceVersion"]
    )
    spec = create(http, GRAPHS, graph("g", observed={"prometheus": {"url": "http://p:9090"}}))
    assert spec["spec"] == {
        "observed": {
            "prometheus": {"url": "http://p:9090", "timeout": "30s"},
            "metricPrefix": "traces_service_graph",
            "interval": "15m",
            "window": "1h",
            "minRequestRate": 0.0,
        },
        "staleAfter": "168h",
    }


def test_online_boutique_applies_with_defaults(api: Api, crds: None) -> None:
    boutique = ROOT / "manifests/examples/online-boutique"
    api.kubectl("apply", "-f", str(boutique / "namespace.yaml"))
    api.kubectl("apply", "-f", str(boutique))
    sdeps = api.kubectl.get("servicedependencies", "-n", "online-boutique")["items"]
    assert len(sdeps) == 12
    frontend = next(s for s in sdeps if s["metadata"]["name"] == "frontend")
    assert frontend["spec"]["dependsOn"]
    assert all(
        d["criticality"] in ("hard", "soft", "degraded") for d in frontend["spec"]["dependsOn"]
    )
    assert all("communicationMode" in d for s in sdeps for d in s["spec"].get("dependsOn", []))
    sg = api.kubectl.get("servicegraph", "online-boutique", "-n", "online-boutique")
    assert sg["spec"] == {"staleAfter": "168h"}
    # Applied again, dependsOn lists without the defaults are sent again (kubectl sees they
    # differ), and once defaulted they are what is stored: nothing changes.
    api.kubectl("apply", "-f", str(boutique))
    again = api.kubectl.get("servicedependencies", "-n", "online-boutique")["items"]
    assert [s["metadata"]["resourceVersion"] for s in again] == [
        s["metadata"]["resourceVersion"] for s in sdeps
    ]


def test_other_kinds_are_not_admitted(api: Api, http: httpx.Client, crds: None) -> None:
    """The checks are for our kinds: ConfigMaps, Events, Leases and Kopf's peerings are stored
    as sent, unknown fields and all, while the same content is refused in a ServiceGraph."""
    huge = "x" * 40000
    create(http, GRAPHS, graph("g"))
    refused(
        patch(
            http, f"{GRAPHS}/g/status", {"status": {"conditions": [condition("R", message=huge)]}}
        )
    )

    cm = create(
        http,
        "/api/v1/namespaces/default/configmaps",
        {"metadata": {"name": "c"}, "data": {"message": huge}, "unknown": {"a": 1}},
    )
    assert cm["data"]["message"] == huge and cm["unknown"] == {"a": 1}
    event = create(
        http,
        "/api/v1/namespaces/default/events",
        {
            "metadata": {"generateName": "kopf-event-"},
            "involvedObject": {"kind": "ServiceGraph", "name": "g"},
            "reason": "Logging",
            "message": huge,
            "type": "Whatever",
        },
    )
    assert event["message"] == huge
    lease = create(
        http,
        "/apis/coordination.k8s.io/v1/namespaces/default/leases",
        {
            "metadata": {"name": "servicegraph"},
            "spec": {"holderIdentity": "me", "renewTime": "soon"},
        },
    )
    assert lease["spec"]["renewTime"] == "soon"
    peerings = "/apis/kopf.dev/v1/namespaces/default/kopfpeerings"
    create(
        http,
        peerings,
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "default"}},
    )
    peer = patch(http, f"{peerings}/default", {"status": {"me": {"priority": 0, "lifetime": 60}}})
    assert peer.status_code == 200, peer.text
    assert peer.json()["status"] == {"me": {"priority": 0, "lifetime": 60}}


def test_unknown_fields_are_refused_when_kubectl_asks_for_strict_validation(
    api: Api, crds: None
) -> None:
    """kubectl sends fieldValidation=Strict: the apiserver refuses the fields it would prune."""
    body = sdep("cart", "redis", owner="nobody")
    with pytest.raises(KubectlError) as strict:
        api.kubectl.apply(body)
    assert (
        'ServiceDependency in version "v1alpha1" cannot be handled as a ServiceDependency: '
        'strict decoding error: unknown field "spec.owner"'
    ) in strict.value.stderr
    api.kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(body))  # pruned
    assert api.kubectl.get("servicedependency", "cart")["spec"] == {
        "dependsOn": [{"service": "redis", "communicationMode": "sync", "criticality": "hard"}]
    }


def test_the_operator_writes_only_what_the_apiserver_accepts(
    api: Api, start_operator: StartOperator, crds: None
) -> None:
    """The operator's writes on Online Boutique (statuses, finalizers, annotations) pass
    admission whole: nothing refused, nothing pruned."""
    boutique = ROOT / "manifests/examples/online-boutique"
    api.kubectl("apply", "-f", str(boutique / "namespace.yaml"))
    api.kubectl("apply", "-f", str(boutique))
    start_operator()
    ready = '{.status.conditions[?(@.type=="Ready")].status}'

    def graph_ready() -> bool:
        path = f"jsonpath={ready}"
        return api.kubectl("get", "sg", "online-boutique", "-n", "online-boutique", "-o", path) == (
            "True"
        )

    wait_for(graph_ready, timeout=30)
    wait_for(
        lambda: all(
            s.get("status", {}).get("conditions")
            for s in api.kubectl.get("sdep", "-n", "online-boutique")["items"]
        ),
        timeout=30,
    )
    assert api.emulator.writes[GROUP, "servicegraphs", "status", "patch"] >= 1
    assert api.emulator.admission.refused == []
    assert api.emulator.admission.pruned == []
