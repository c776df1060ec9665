"""Remote-Write 2.0 requests built by hand (Prometheus 2.42 cannot send them) through the handler.

The Kafka side is a small fake that keeps the OTLP request the handler forwards: what is checked
is that a 2.0 request becomes the same OTLP as the 1.0 request with the same series, and the
answers and headers the 2.0 spec asks for.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import cramjam
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from pydantic import SecretStr

from receiver import outcome
from receiver.auth import BearerAuth
from receiver.forward import Forwarder
from receiver.outcome import Outcome
from receiver.remote_write import PATH, remote_write_handler
from receiver.signals import Signal
from receiver.telemetry import ReceiverMetrics
from schemas.prometheus_remote_pb2 import MetricMetadata, WriteRequest
from schemas.prometheus_remote_v2_pb2 import Metadata, Request

V2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
V1 = "application/x-protobuf"
TOKEN = "rw2-token"


class KeptForwarder:
    """Stands in for Kafka: keeps each forwarded request and acknowledges it."""

    def __init__(self) -> None:
        self.requests: list[ExportMetricsServiceRequest] = []

    async def export(self, _signal: Signal, body: bytes) -> Outcome:
        self.requests.append(ExportMetricsServiceRequest.FromString(body))
        return outcome.accepted(ExportMetricsServiceResponse().SerializeToString())


def v2_request() -> Request:
    symbols = ["", "__name__", "agent_requests_total", "job", "picoclaw", "instance", "gw:1",
               "Requests.", "agent_latency_seconds_bucket", "le", "0.5", "agent_queue_depth"]  # fmt: skip
    request = Request(symbols=symbols)
    counter = request.timeseries.add(labels_refs=[1, 2, 3, 4, 5, 6])
    counter.samples.add(value=3, timestamp=1_700_000_000_000)
    counter.samples.add(value=5, timestamp=1_700_000_015_000)
    counter.metadata.type, counter.metadata.help_ref = Metadata.METRIC_TYPE_COUNTER, 7
    bucket = request.timeseries.add(labels_refs=[1, 8, 3, 4, 5, 6, 9, 10])
    bucket.samples.add(value=2, timestamp=1_700_000_000_000)
    bucket.metadata.type = Metadata.METRIC_TYPE_HISTOGRAM
    gauge = request.timeseries.add(labels_refs=[1, 11, 3, 4, 5, 6])
    gauge.samples.add(value=17, timestamp=1_700_000_000_000)
    gauge.metadata.type = Metadata.METRIC_TYPE_GAUGE
    return request


def v1_request() -> WriteRequest:
    """The same series as `v2_request`, as Prometheus 2.42 sends them (metadata by family)."""
    write = WriteRequest()
    target = [("job", "picoclaw"), ("instance", "gw:1")]
    for name, extra, samples in (
        ("agent_requests_total", [], [(3, 1_700_000_000_000), (5, 1_700_000_015_000)]),
        ("agent_latency_seconds_bucket", [("le", "0.5")], [(2, 1_700_000_000_000)]),
        ("agent_queue_depth", [], [(17, 1_700_000_000_000)]),
    ):
        series = write.timeseries.add()
        for label, text in [("__name__", name), *target, *extra]:
            series.labels.add(name=label, value=text)
        for value, timestamp in samples:
            series.samples.add(value=value, timestamp=timestamp)
    write.metadata.add(
        type=MetricMetadata.COUNTER, metric_family_name="agent_requests_total", help="Requests."
    )
    write.metadata.add(type=MetricMetadata.HISTOGRAM, metric_family_name="agent_latency_seconds")
    write.metadata.add(type=MetricMetadata.GAUGE, metric_family_name="agent_queue_depth")
    return write


def post(body: bytes, content_type: str, token: str = TOKEN) -> tuple[int, str, dict[str, str], list[Any]]:
    """(status, body, headers, forwarded OTLP requests) of one POST to a fresh handler."""
    forwarder = KeptForwarder()

    async def run() -> tuple[int, str, dict[str, str]]:
        app = web.Application()
        handler = remote_write_handler(
            cast(Forwarder, forwarder), BearerAuth(SecretStr(TOKEN)), ReceiverMetrics()
        )
        app.router.add_post(PATH, handler)
        async with TestClient(TestServer(app)) as client:
            headers = {"Content-Type": content_type, "Content-Encoding": "snappy",
                       "Authorization": f"Bearer {token}"}  # fmt: skip
            response = await client.post(PATH, data=bytes(cramjam.snappy.compress_raw(body)), headers=headers)
            return response.status, await response.text(), dict(response.headers)

    status, text, headers = asyncio.run(run())
    return status, text, headers, forwarder.requests


def test_a_v2_request_lands_as_the_same_v1_request_and_says_what_was_written() -> None:
    status, _, headers, [request] = post(v2_request().SerializeToString(), V2)
    assert status == 204
    assert headers["X-Prometheus-Remote-Write-Samples-Written"] == "4"
    assert headers["X-Prometheus-Remote-Write-Histograms-Written"] == "0"
    assert headers["X-Prometheus-Remote-Write-Exemplars-Written"] == "0"
    _, _, v1_headers, [same] = post(v1_request().SerializeToString(), V1)
    assert request == same
    assert "X-Prometheus-Remote-Write-Samples-Written" not in v1_headers
    by_name = {m.name: m for m in request.resource_metrics[0].scope_metrics[0].metrics}
    assert by_name["agent_requests_total"].sum.is_monotonic
    assert by_name["agent_requests_total"].description == "Requests."
    assert by_name["agent_latency_seconds_bucket"].sum.is_monotonic  # a bucket counts
    assert by_name["agent_queue_depth"].gauge.data_points[0].as_double == 17


def test_native_histograms_are_refused_by_name_after_the_samples_are_written() -> None:
    request = v2_request()
    request.timeseries[0].histograms.append(b"\x08\x01")
    status, text, headers, [written] = post(request.SerializeToString(), V2)
    assert status == 400 and "1 native histograms not written" in text
    assert headers["X-Prometheus-Remote-Write-Samples-Written"] == "4"
    assert len(written.resource_metrics[0].scope_metrics[0].metrics) == 3


def test_bad_v2_requests_get_a_clear_answer_and_forward_nothing() -> None:
    past = Request(symbols=["", "__name__"], timeseries=[{"labels_refs": [1, 9]}])
    odd = Request(symbols=["", "__name__", "x"], timeseries=[{"labels_refs": [1, 2, 1]}])
    cases = [
        (past.SerializeToString(), V2, TOKEN, 400, "symbol reference 9 past the table of 2 symbols"),
        (odd.SerializeToString(), V2, TOKEN, 400, "not name-value pairs"),
        (b"\xff\xff garbage", V2, TOKEN, 400, "cannot decode io.prometheus.write.v2.Request"),
        (v2_request().SerializeToString(), "application/x-protobuf;proto=io.prometheus.write.v3.Request",
         TOKEN, 415, "proto=io.prometheus.write.v2.Request"),
        (v2_request().SerializeToString(), V2, "wrong", 401, "missing or invalid bearer token"),
    ]  # fmt: skip
    for body, content_type, token, status, says in cases:
        got, text, _, forwarded = post(body, content_type, token)
        assert (got, forwarded) == (status, []) and says in text, (got, text)
