"""Spans of a recomputation and of a Prometheus poll, caught by an in-memory exporter.

The graph loop runs in this process (not as `servicegraph run`) so the test can install its
own tracer provider; it talks to the in-memory API and a stand-in Prometheus as it would in a
pod.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import config
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from servicegraph.api import DiscoverySource, ObservedSource
from servicegraph.graph_loop import GraphLoop, IndexedDependency, IndexedGraph
from servicegraph.kube import Kube
from servicegraph.settings import OperatorSettings
from servicegraph.signals import SignalHub
from servicegraph.telemetry import otlp_tracer_provider
from servicegraph.tenancy import Tenancy
from tests.e2e.test_operator_support import graph, install, sdep
from tests.support.emulator import Api
from tests.support.prometheus import Edge, FakePrometheus

EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # the first test in this process installs it
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    EXPORTER.clear()
    yield EXPORTER


def loop_for(api: Api, body: dict[str, Any], objects: list[dict[str, Any]]) -> GraphLoop:
    dependencies = [
        IndexedDependency.from_object(
            o["metadata"]["namespace"], o["metadata"]["name"], {}, o["spec"], 1, {}
        )
        for o in objects
    ]
    mine = IndexedGraph.from_object("shop", "shop", body["spec"])
    return GraphLoop(
        body=body,
        kube=Kube(config.new_client_from_config(config_file=str(api.kubeconfig))),
        settings=OperatorSettings(),
        signals=SignalHub(),
        tenancy=Tenancy(),
        dependencies=lambda: dependencies,
        graphs=lambda: [mine],
        post_event=lambda *_: None,
        logger=logging.getLogger("test"),
    )


def test_recompute_and_poll_make_spans_with_graph_sizes(
    api: Api, spans: InMemorySpanExporter
) -> None:
    install(api, "shop")
    objects = [sdep("a", "b"), sdep("b", "c"), sdep("c")]
    with FakePrometheus([Edge("a", "x", rate=2), Edge("b", "c", rate=1)]) as prometheus:
        spec = {"observed": {"prometheus": {"url": prometheus.url}, "interval": "1m"}}
        api.kubectl.apply(graph("shop", **spec), *objects)
        body = api.kubectl.get("servicegraph", "shop", "-n", "shop")
        loop = loop_for(api, body, objects)
        source = ObservedSource.model_validate(spec["observed"])

        async def one_round() -> None:
            loop.pollers.sync([DiscoverySource.from_observed(source)])
            poller = loop.pollers.pollers["otel"]
            await poller.poll_once(poller.source)
            await loop.reconcile()
            loop.pollers.stop()

        asyncio.run(one_round())

    by_name = {span.name: span for span in spans.get_finished_spans()}
    poll = by_name["servicegraph.poll"]
    assert poll.attributes is not None
    assert poll.attributes["servicegraph.name"] == "shop"
    assert poll.attributes["servicegraph.healthy"] is True
    assert poll.attributes["servicegraph.series"] >= 2
    recompute = by_name["servicegraph.recompute"]
    assert recompute.attributes is not None
    assert recompute.attributes["servicegraph.declarations"] == 3
    assert recompute.attributes["servicegraph.services"] == 4  # a, b, c and the observed x
    assert recompute.attributes["servicegraph.edges"] == 3
    assert recompute.attributes["servicegraph.drift"] == 2  # a -> x undeclared, a -> b unseen


def test_spans_leave_the_process_only_when_an_otlp_endpoint_is_set() -> None:
    assert otlp_tracer_provider({}) is None
    assert otlp_tracer_provider({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}) is None
    disabled = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}
    assert otlp_tracer_provider(disabled) is None
    provider = otlp_tracer_provider(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SERVICE_NAME": "sg-prod"}
    )
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "sg-prod"
    processors = provider._active_span_processor._span_processors
    assert any(isinstance(p.span_exporter, OTLPSpanExporter) for p in processors)
    provider.shutdown()
