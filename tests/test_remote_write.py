"""POST /api/v1/write on the session stack's receiver: the Remote-Write 1.0 answers, on real Kafka."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid

import cramjam
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from schemas.prometheus_remote_pb2 import WriteRequest
from schemas.topics import METRICS_TOPIC
from tests.conftest import LocalStack

pytestmark = pytest.mark.integration
HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def post(stack: LocalStack, body: bytes, headers: dict[str, str] = HEADERS) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{stack.http_url}/api/v1/write", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def write_request(job: str, instance: str, samples: int) -> WriteRequest:
    write = WriteRequest()
    series = write.timeseries.add()
    for name, value in (
        ("__name__", "openclaw_tool_calls_total"),
        ("instance", instance),
        ("job", job),
        ("tool", "bash"),
    ):
        series.labels.add(name=name, value=value)
    for i in range(samples):
        series.samples.add(value=float(i), timestamp=1_700_000_000_000 + i * 15_000)
    return write


def snappy(message: WriteRequest | bytes) -> bytes:
    raw = message if isinstance(message, bytes) else message.SerializeToString()
    return bytes(cramjam.snappy.compress_raw(raw))


def test_a_write_is_acknowledged_after_kafka_and_keyed_by_job_and_instance(local_stack: LocalStack) -> None:
    instance = uuid.uuid4().hex[:10]
    assert post(local_stack, snappy(write_request("openclaw", instance, 5))) == (204, "")
    [record] = local_stack.records(METRICS_TOPIC, f"openclaw/{instance}".encode(), 1)
    request = ExportMetricsServiceRequest.FromString(record.value() or b"")
    [metric] = request.resource_metrics[0].scope_metrics[0].metrics
    assert metric.name == "openclaw_tool_calls_total" and metric.sum.is_monotonic
    assert [p.as_double for p in metric.sum.data_points] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert metric.sum.data_points[1].time_unix_nano == 1_700_000_015_000 * 1_000_000


@pytest.mark.parametrize(
    ("body", "headers", "status", "says"),
    [
        (b"not snappy at all", HEADERS, 400, "snappy"),
        (snappy(b"\xff\xff\xff garbage"), HEADERS, 400, "WriteRequest"),
        (snappy(WriteRequest(timeseries=[{"samples": [{"value": 1}]}])), HEADERS, 400, "__name__"),
        (snappy(b"\x00" * (2 * 1024 * 1024)), HEADERS, 413, "exceeds"),  # 100 KB that inflate to 2 MiB
        (b"", {**HEADERS, "Content-Encoding": "gzip"}, 415, "snappy"),
        (b"", {**HEADERS, "Content-Type": "application/json"}, 415, "protobuf"),
    ],
)
def test_bad_writes_get_the_spec_answer_and_cost_nothing(
    local_stack: LocalStack, body: bytes, headers: dict[str, str], status: int, says: str
) -> None:
    code, message = post(local_stack, body, headers)
    assert code == status and says in message
    assert post(local_stack, snappy(write_request("openclaw", "after-bad", 1)))[0] == 204
