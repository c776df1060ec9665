"""Receiver settings beyond the defaults: bearer token + TLS, and Kafka records smaller than a request."""

from __future__ import annotations

import ssl
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from pydantic import SecretStr

from schemas.config import Endpoint, TlsConfig
from schemas.topics import SPANS_TOPIC
from tests.otlp_clients import grpc_export, http_post, span_request
from tests.receivers import running_receiver, self_signed_certificate

pytestmark = pytest.mark.integration
TOKEN = "s3cret-token"


@pytest.fixture
def secured(local_stack: Any, tmp_path: Path) -> Any:
    cert, key = self_signed_certificate(tmp_path)
    receiver = local_stack.config.receiver.model_copy(
        update={
            "grpc": Endpoint(port=15317),
            "http": Endpoint(port=15318),
            "ops": Endpoint(port=15133),
            "bearer_token": SecretStr(TOKEN),
            "tls": TlsConfig(cert_file=cert, key_file=key),
        }
    )
    with running_receiver(local_stack.config.model_copy(update={"receiver": receiver})) as config:
        yield config, cert


def test_bearer_token_and_tls_over_grpc(local_stack: Any, secured: Any, caplog: Any) -> None:
    config, cert = secured
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    body = span_request([("agent", "tls-grpc")])
    with grpc.secure_channel(config.receiver.grpc.address, credentials) as channel:
        for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)):
            with pytest.raises(grpc.RpcError) as raised:
                grpc_export(channel, "traces", body, metadata=metadata)
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ok = grpc_export(channel, "traces", body, metadata=(("authorization", f"Bearer {TOKEN}"),))
        assert ExportTraceServiceResponse.FromString(ok) == ExportTraceServiceResponse()
    assert len(local_stack.records(SPANS_TOPIC, b"agent/tls-grpc", count=1)) == 1
    assert TOKEN not in caplog.text

    # The SDK's own exporter, with TLS and the header, as an agent would be configured.
    provider = TracerProvider(
        resource=Resource.create({"service.name": "agent", "service.instance.id": "sdk-tls"})
    )
    exporter = OTLPSpanExporter(
        endpoint=config.receiver.grpc.address,
        credentials=credentials,
        headers={"authorization": f"Bearer {TOKEN}"},
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("secured"):
        pass
    provider.shutdown()
    assert len(local_stack.records(SPANS_TOPIC, b"agent/sdk-tls", count=1)) == 1


def test_bearer_token_and_tls_over_http(local_stack: Any, secured: Any) -> None:
    config, cert = secured
    context = ssl.create_default_context(cafile=str(cert))
    url = f"https://{config.receiver.http.address}/v1/traces"
    body = span_request([("agent", "tls-http")])
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
    urllib.request.install_opener(opener)
    try:
        assert http_post(url, body).status == 401
        assert http_post(url, body, headers={"Authorization": "Bearer nope"}).status == 401
        assert http_post(url, body, headers={"Authorization": f"Bearer {TOKEN}"}).status == 200
    finally:
        urllib.request.install_opener(urllib.request.build_opener())
    assert len(local_stack.records(SPANS_TOPIC, b"agent/tls-http", count=1)) == 1


def test_request_larger_than_a_kafka_record_is_split_by_resource_then_scope(local_stack: Any) -> None:
    """With records limited to 64 KiB (say, an existing cluster), a 240 KiB request is written in parts."""
    kafka = local_stack.config.kafka.model_copy(update={"max_message_bytes": 64 * 1024})
    receiver = local_stack.config.receiver.model_copy(
        update={"grpc": Endpoint(port=16317), "http": Endpoint(port=16318), "ops": Endpoint(port=16133)}
    )
    config = local_stack.config.model_copy(update={"kafka": kafka, "receiver": receiver})
    request = ExportTraceServiceRequest.FromString(
        span_request([("big", "one")], spans_per_agent=2, payload=20_000)
    )
    resource = request.resource_spans[0]
    for extra in range(3):  # ~40 KiB scopes: the resource (160 KiB) must split
        scope = resource.scope_spans.add()
        scope.CopyFrom(resource.scope_spans[0])
        scope.scope.name = f"scope-{extra}"
    oversized_scope = resource.scope_spans.add()  # one scope that can never fit: rejected, counted
    oversized_scope.CopyFrom(resource.scope_spans[0])
    oversized_scope.scope.name = "too-big"
    oversized_scope.spans.extend(list(resource.scope_spans[0].spans))
    body = request.SerializeToString()

    with running_receiver(config), grpc.insecure_channel(config.receiver.grpc.address) as channel:
        response = ExportTraceServiceResponse.FromString(grpc_export(channel, "traces", body))
    assert response.partial_success.rejected_spans == 4
    assert "exceeds the Kafka record limit" in response.partial_success.error_message
    records = local_stack.records(SPANS_TOPIC, b"big/one", count=4)
    assert len(records) == 4 and all(len(r.value()) <= 64 * 1024 for r in records)
    scopes = [
        ExportTraceServiceRequest.FromString(r.value()).resource_spans[0].scope_spans[0] for r in records
    ]
    assert sorted(s.scope.name for s in scopes) == ["scope-0", "scope-1", "scope-2", "talonflow.tests"]
    assert sum(len(s.spans) for s in scopes) == 8
