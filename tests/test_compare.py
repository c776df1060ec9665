"""`talonflow compare` on the real stack: spans from the OTel SDK, through the receiver, Kafka and ingest."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

from talonflow.query import run_query
from tests.conftest import LocalStack

pytestmark = pytest.mark.integration
SPANS_PER_VERSION = 400


def send_spans(stack: LocalStack, service: str, version: str, slower: float, seed: int) -> None:
    """LLM-call spans with lognormal latency around 40 ms, 5 % errors, token usage; times set, no sleeping."""
    rng = np.random.default_rng(seed)
    resource = Resource.create({"service.name": service, "service.version": version})
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=stack.grpc_endpoint, insecure=True)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("talonflow.tests.compare")
    start = time.time_ns() - 600 * 10**9
    durations = rng.lognormal(np.log(40e6), 0.4, SPANS_PER_VERSION) * slower
    for index, duration in enumerate(durations):
        began = start + index * 10**6
        attributes: dict[str, str | int] = {
            "gen_ai.request.model": "claude-sonnet-4-20250514",
            "gen_ai.usage.input_tokens": int(rng.poisson(800)),
            "gen_ai.usage.output_tokens": int(rng.poisson(150)),
            "experiment.variant": f"v{version}",
        }
        span = tracer.start_span("llm.chat", start_time=began, attributes=attributes)
        if rng.random() < 0.05:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=began + int(duration))
    provider.shutdown()


def wait_for_spans(stack: LocalStack, service: str, expected: int, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = run_query(stack.config, f"SELECT count(*) AS n FROM spans WHERE service_name = '{service}'")[
            "n"
        ][0]
        if count >= expected:
            break
        time.sleep(1)
    return count


def test_compare_table_json_and_the_regression_gate(local_stack: LocalStack) -> None:
    service = f"compare-{uuid.uuid4().hex[:8]}"
    send_spans(local_stack, service, "1.0", slower=1.0, seed=1)
    send_spans(local_stack, service, "1.1", slower=1.0, seed=2)
    send_spans(local_stack, service, "1.2", slower=1.5, seed=3)
    assert wait_for_spans(local_stack, service, 3 * SPANS_PER_VERSION) == 3 * SPANS_PER_VERSION

    def compare(candidate: str, *extra: str) -> tuple[int, str, str]:
        done = local_stack.cli(
            "compare", "--baseline", "service.version=1.0", "--candidate", candidate,
            "--service", service, "--span-name", "llm.chat", "--since", "1h", *extra, check=False,
        )  # fmt: skip
        return done.returncode, done.stdout, done.stderr

    code, table, _ = compare("service.version=1.1", "--fail-on-regression")
    assert code == 0, table
    assert (
        f"service.version=1.0 ({SPANS_PER_VERSION} spans) vs service.version=1.1 ({SPANS_PER_VERSION} spans)"
        in table
    )
    assert "verdict: no detectable difference" in table
    for label in ("latency p50 (ms)", "latency p95 (ms)", "latency p99 (ms)", "error rate", "cost per call"):
        assert label in table

    code, table, _ = compare("service.version=1.2", "--fail-on-regression")
    assert code == 1, table  # the same gate flips once the candidate is slower
    assert "verdict: worse (latency p50, latency p95" in table

    code, out, _ = compare("service.version=1.2", "--json")
    assert code == 0  # without --fail-on-regression a regression is a result, not a failure
    result = json.loads(out)
    measures = {m["name"]: m for m in result["measures"]}
    assert result["verdict"] == "worse" and measures["latency_p50"]["verdict"] == "worse"
    assert measures["latency_p50"]["change"]["low"] > 0
    assert measures["cost_per_call"]["baseline"]["value"] > 0  # claude-sonnet-4 is in the default prices
    assert result["unpriced_calls"] == {"baseline": 0, "candidate": 0}

    by_span_attribute = local_stack.cli(
        "compare", "--baseline", "experiment.variant=v1.0", "--candidate", "experiment.variant=v1.2",
        "--since", "1h", "--json", check=False,
    )  # fmt: skip
    assert json.loads(by_span_attribute.stdout)["spans"] == {"baseline": 400, "candidate": 400}

    code, out, err = compare("service.version=9.9")
    assert (code, out) == (2, "")
    assert "candidate service.version=9.9 matched no spans (service.version in range: 1.0, 1.1, 1.2)" in err
    code, _, err = compare("service.version")
    assert code == 2 and "expected ATTR=VALUE" in err
