"""Kafka stops mid-stream: retryable answers, /readyz red, and the SDK's retries deliver everything."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from typing import Any

import grpc
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from schemas.topics import SPANS_TOPIC
from tests.otlp_clients import grpc_export, http_post, span_request

pytestmark = pytest.mark.integration


def readyz(stack: Any) -> int:
    try:
        return urllib.request.urlopen(f"{stack.ops_url}/readyz", timeout=2).status
    except urllib.error.HTTPError as err:
        return err.code


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def advised_delay(error: grpc.RpcError) -> float:
    """The retry delay in an error's RetryInfo (grpc-status-details-bin), in seconds."""
    trailers = dict(error.trailing_metadata())
    retry = RetryInfo()
    assert Status.FromString(trailers["grpc-status-details-bin"]).details[0].Unpack(retry)
    return retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9


def finished_spans(instance: str, count: int) -> list[Any]:
    """Real SDK spans, recorded and ended, ready for an exporter."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": "outage", "service.instance.id": instance})
    )
    tracer = provider.get_tracer("talonflow.tests")
    spans = []
    for index in range(count):
        span = tracer.start_span(f"loop_iteration_{index}")
        span.end()
        spans.append(span)
    return spans


def test_kafka_outage_is_retryable_and_nothing_is_lost(local_stack: Any) -> None:
    supervisor = local_stack.stack.rpc().supervisor
    exporters = {
        "grpc": GrpcSpans(endpoint=local_stack.grpc_endpoint, insecure=True, timeout=90),
        "http": HttpSpans(endpoint=f"{local_stack.http_url}/v1/traces", timeout=90),
    }
    results: dict[str, SpanExportResult] = {}
    try:
        supervisor.stopProcess("kafka")
        wait_for(lambda: readyz(local_stack) == 503, 15, "/readyz to turn red")

        with (
            grpc.insecure_channel(local_stack.grpc_endpoint) as channel,
            pytest.raises(grpc.RpcError) as raised,
        ):
            grpc_export(channel, "traces", span_request([("outage", "probe")]))
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        # three times the outage's age (at least 2 s): a blip, seen within 2 s, is retried soon
        assert 2 <= advised_delay(raised.value) <= 6
        reply = http_post(f"{local_stack.http_url}/v1/traces", span_request([("outage", "probe")]))
        assert reply.status == 503 and 2 <= int(reply.headers["Retry-After"]) <= 6

        # Agents keep exporting while Kafka is down; their exporters retry as the answers ask.
        threads = [
            threading.Thread(
                target=lambda t=transport: results.__setitem__(t, exporters[t].export(finished_spans(t, 50)))
            )
            for transport in exporters
        ]
        for thread in threads:
            thread.start()
        time.sleep(3)
        assert not results, "an export finished while Kafka was down"
        with (
            grpc.insecure_channel(local_stack.grpc_endpoint) as channel,
            pytest.raises(grpc.RpcError) as later,
        ):
            grpc_export(channel, "traces", span_request([("outage", "probe")]))
        assert advised_delay(later.value) >= 3, "the advised delay grows as the outage lasts"
    finally:
        supervisor.startProcess("kafka")
        # whatever happened above, the tests after this one need Kafka back
        wait_for(lambda: readyz(local_stack) == 200, 120, "/readyz to turn green again")
    for thread in threads:
        thread.join(120)
    assert results == {"grpc": SpanExportResult.SUCCESS, "http": SpanExportResult.SUCCESS}
    for transport in exporters:
        records = local_stack.records(SPANS_TOPIC, f"outage/{transport}".encode(), count=1)
        assert records, f"nothing from the {transport} exporter reached Kafka"
        names = [
            span.name
            for record in records
            for resource in ExportTraceServiceRequest.FromString(record.value()).resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]
        assert set(names) == {f"loop_iteration_{i}" for i in range(50)}
    local_stack.wait_healthy()
