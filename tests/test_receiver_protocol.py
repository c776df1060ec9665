"""The receiver's wire contract: gRPC and HTTP agree, resources are keyed, bad input is refused cleanly."""

from __future__ import annotations

import base64
import gzip
import json
import urllib.request
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from schemas.topics import METRICS_TOPIC, SPANS_TOPIC
from tests.otlp_clients import grpc_export, http_post, span_request, summary_request

pytestmark = pytest.mark.integration


@pytest.fixture
def channel(local_stack: Any) -> Any:
    with grpc.insecure_channel(local_stack.grpc_endpoint) as ch:
        yield ch


def otlp_json(body: bytes) -> bytes:
    """OTLP/JSON of a span request: protobuf JSON mapping, but ids in hex as the spec requires."""
    document = json_format.MessageToDict(ExportTraceServiceRequest.FromString(body))
    for resource_spans in document["resourceSpans"]:
        for scope in resource_spans["scopeSpans"]:
            for span in scope["spans"]:
                for field in ("traceId", "spanId"):
                    span[field] = base64.b64decode(span[field]).hex()
    return json.dumps(document).encode()


def test_same_request_over_grpc_and_http_gives_the_same_record(local_stack: Any, channel: Any) -> None:
    keys = []
    for transport in ("grpc", "http-protobuf", "http-json"):
        key = ("agent", f"same-{transport}-{id(channel)}")
        keys.append(key)
        body = span_request([key])
        if transport == "grpc":
            response = grpc_export(channel, "traces", body)
            assert ExportTraceServiceResponse.FromString(response) == ExportTraceServiceResponse()
        elif transport == "http-protobuf":
            reply = http_post(f"{local_stack.http_url}/v1/traces", body)
            assert reply.status == 200 and reply.headers["Content-Type"] == "application/x-protobuf"
        else:
            reply = http_post(f"{local_stack.http_url}/v1/traces", otlp_json(body), "application/json")
            assert reply.status == 200 and json.loads(reply.body) == {}
        [record] = local_stack.records(SPANS_TOPIC, f"{key[0]}/{key[1]}".encode(), count=1)
        assert record.value() == body  # forwarded byte for byte (JSON re-encodes to the same bytes)


def test_summary_metrics_arrive(local_stack: Any, channel: Any, agent_key: Any) -> None:
    """The fifth OTLP metric type; the Python SDK has no Summary instrument, so it is built by hand."""
    body = summary_request(agent_key[0], agent_key[1], 1_700_000_000_000_000_000)
    response = grpc_export(channel, "metrics", body)
    assert ExportMetricsServiceResponse.FromString(response) == ExportMetricsServiceResponse()
    [record] = local_stack.records(METRICS_TOPIC, agent_key[2], count=1)
    assert record.value() == body
    point = ExportMetricsServiceRequest.FromString(record.value()).resource_metrics[0].scope_metrics[0]
    assert point.metrics[0].summary.data_points[0].quantile_values[1].value == 4.2


def test_request_with_several_agents_is_split_by_resource_key(local_stack: Any, channel: Any) -> None:
    agents = [("gateway", "split-a"), ("scheduler", "split-b"), ("gateway", "split-a")]
    body = span_request(agents, spans_per_agent=2)
    grpc_export(channel, "traces", body)
    [first] = local_stack.records(SPANS_TOPIC, b"gateway/split-a", count=1)
    [second] = local_stack.records(SPANS_TOPIC, b"scheduler/split-b", count=1)
    gateway = ExportTraceServiceRequest.FromString(first.value())
    assert len(gateway.resource_spans) == 2  # both gateway resources, in one record
    assert ExportTraceServiceRequest.FromString(second.value()).resource_spans[0].scope_spans[0].spans[1].name
    assert first.value() + second.value() != body  # split, yet every resource kept:
    whole = ExportTraceServiceRequest.FromString(body)
    assert sorted(r.SerializeToString() for r in whole.resource_spans) == sorted(
        r.SerializeToString()
        for r in [
            *gateway.resource_spans,
            *ExportTraceServiceRequest.FromString(second.value()).resource_spans,
        ]
    )


def assert_still_serving(local_stack: Any, channel: Any, tag: str) -> None:
    key = ("agent", f"after-{tag}")
    assert grpc_export(channel, "traces", span_request([key])) is not None
    assert http_post(f"{local_stack.http_url}/v1/traces", span_request([key])).status == 200
    assert len(local_stack.records(SPANS_TOPIC, f"agent/after-{tag}".encode(), count=2)) == 2


GRPC_HOSTILE = {
    "garbage": (b"\xff\xfe\xfd not protobuf", None, grpc.StatusCode.INVALID_ARGUMENT),
    "truncated": (span_request([("agent", "t")])[:-7], None, grpc.StatusCode.INVALID_ARGUMENT),
    "oversize": (b"\n" + b"\x80" * (1024 * 1024), None, grpc.StatusCode.RESOURCE_EXHAUSTED),
    "gzip bomb": (bytes(64 * 1024 * 1024), grpc.Compression.Gzip, grpc.StatusCode.RESOURCE_EXHAUSTED),
}


@pytest.mark.parametrize("case", list(GRPC_HOSTILE))
def test_grpc_hostile_input_is_refused_and_serving_goes_on(local_stack: Any, channel: Any, case: str) -> None:
    body, compression, expected = GRPC_HOSTILE[case]
    with pytest.raises(grpc.RpcError) as raised:
        grpc_export(channel, "traces", body, compression=compression)
    assert raised.value.code() == expected, raised.value.details()
    assert_still_serving(local_stack, channel, f"grpc-{case.replace(' ', '-')}")


def test_grpc_unknown_method_and_empty_request(local_stack: Any, channel: Any) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Nope")(b"")
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # An empty request is a valid request with nothing in it: success, and no record written.
    assert grpc_export(channel, "traces", b"") == b""
    assert_still_serving(local_stack, channel, "grpc-empty")


HTTP_HOSTILE: dict[str, tuple[str, bytes, str, dict[str, str], bool, int]] = {
    # name: (path, body, content type, headers, gzip it, expected status)
    "garbage protobuf": ("/v1/traces", b"\xff\xfe\xfd", "application/x-protobuf", {}, False, 400),
    "garbage json": ("/v1/traces", b"{not json", "application/json", {}, False, 400),
    "json with a bad id": (
        "/v1/traces",
        b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}',
        "application/json",
        {},
        False,
        400,
    ),
    "truncated": (
        "/v1/traces",
        span_request([("agent", "t")])[:-7],
        "application/x-protobuf",
        {},
        False,
        400,
    ),
    "oversize": ("/v1/traces", b"\n" + b"\x80" * (1024 * 1024), "application/x-protobuf", {}, False, 413),
    "gzip bomb": ("/v1/traces", bytes(64 * 1024 * 1024), "application/x-protobuf", {}, True, 413),
    "broken gzip": (
        "/v1/traces",
        b"\x1f\x8b\x08\x00garbage",
        "application/x-protobuf",
        {"Content-Encoding": "gzip"},
        False,
        400,
    ),
    "truncated gzip": (
        "/v1/traces",
        gzip.compress(span_request([("agent", "t")]))[:-12],
        "application/x-protobuf",
        {"Content-Encoding": "gzip"},
        False,
        400,
    ),
    "unknown encoding": (
        "/v1/traces",
        b"abc",
        "application/x-protobuf",
        {"Content-Encoding": "br"},
        False,
        415,
    ),
    "wrong content type": ("/v1/traces", b"hello", "text/plain", {}, False, 415),
    "wrong path": ("/v1/spans", span_request([("agent", "t")]), "application/x-protobuf", {}, False, 404),
}


@pytest.mark.parametrize("case", list(HTTP_HOSTILE))
def test_http_hostile_input_is_refused_and_serving_goes_on(local_stack: Any, channel: Any, case: str) -> None:
    path, body, content_type, headers, gzip_body, expected = HTTP_HOSTILE[case]
    reply = http_post(local_stack.http_url + path, body, content_type, headers=headers, gzip_body=gzip_body)
    assert reply.status == expected, reply.body[:300]
    if expected in (400, 413) and content_type == "application/x-protobuf" and reply.body:
        assert Status.FromString(reply.body).message  # an OTLP error: google.rpc.Status with a reason
    assert_still_serving(local_stack, channel, f"http-{case.replace(' ', '-')}")


def test_http_gzip_and_empty_requests(local_stack: Any, channel: Any) -> None:
    key = ("agent", "http-gzip")
    body = span_request([key])
    assert http_post(f"{local_stack.http_url}/v1/traces", body, gzip_body=True).status == 200
    [record] = local_stack.records(SPANS_TOPIC, b"agent/http-gzip", count=1)
    assert record.value() == body
    reply = http_post(f"{local_stack.http_url}/v1/traces", b"")
    assert reply.status == 200 and reply.body == b""


def test_ops_metrics_count_requests_and_errors(local_stack: Any, channel: Any) -> None:
    http_post(f"{local_stack.http_url}/v1/traces", b"\xff", "application/x-protobuf")
    grpc_export(channel, "traces", span_request([("agent", "metrics")]))
    text = urllib.request.urlopen(f"{local_stack.ops_url}/metrics", timeout=5).read().decode()
    assert 'talonflow_receiver_errors_total{reason="decode",signal="traces"}' in text
    assert 'talonflow_receiver_requests_total{outcome="ok",signal="traces",transport="grpc"}' in text
    assert "talonflow_receiver_kafka_produce_seconds_bucket" in text
    assert "talonflow_receiver_kafka_ready 1.0" in text
    assert urllib.request.urlopen(f"{local_stack.ops_url}/healthz", timeout=5).status == 200
    assert urllib.request.urlopen(f"{local_stack.ops_url}/readyz", timeout=5).status == 200
