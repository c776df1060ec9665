"""The console's Prometheus HTTP API beside a real Prometheus 2.42 holding the same samples.

The samples go to talonflow as OTLP (counters, gauges, an up-down sum, a histogram, a summary)
through the real receiver, Kafka and ingest flow into Parquet; to Prometheus as the series its
OTLP receiver would make of them (names written out here by hand), in an OpenMetrics file that
`promtool tsdb create-blocks-from openmetrics` turns into blocks, served on 127.0.0.1:28590.
Every query's instant and range result must agree within float tolerance; `promtool query`
and a Grafana-style POST of query_range work against talonflow's console port.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    SummaryDataPoint,
)

from console import query_results
from tests.conftest import TEST_CONFIG, LocalStack
from tests.otlp_clients import grpc_export
from tests.prometheus_peer import prometheus_server
from tests.test_ingest import wait_for_rows

pytestmark = pytest.mark.integration

PORT = 28590
STEP = 15
POINTS = 40
# Two hours back: recent enough for ingest (it dead-letters week-old points), old enough that the
# console keeps the range queries' hours (console/query_results.py), whose second answers read them.
T0 = (int(time.time()) // 60) * 60 - 2 * 3600
JOB = f"papi-{uuid.uuid4().hex[:8]}"
INSTANCE = "papi-1"
BOUNDS = (0.1, 0.5, 1.0)
SHARES = (0.2, 0.7, 0.9, 1.0)  # cumulative share of the count at or below each bound, then +Inf

Sample = tuple[str, dict[str, str], int, float]  # Prometheus name, labels (no job/instance), t (s), value


def _requests(i: int, route: str) -> float:
    return float(i * 10 if i < 20 else (i - 20) * 7) if route == "a" else i * 3.5


def _temperature(i: int) -> float | None:
    return None if 15 <= i < 35 else 20 + (i % 7) * 0.25  # a gap longer than the 5 m lookback


def _cumulative(i: int) -> list[int]:
    return [int(i * 10 * share) for share in SHARES]


def prometheus_samples() -> list[Sample]:
    """What Prometheus' OTLP receiver stores for the OTLP points `otlp_request` sends."""
    out: list[Sample] = []
    for i in range(POINTS):
        t = T0 + i * STEP
        for route in ("a", "b"):
            out.append(("papi_requests_total", {"route": route}, t, _requests(i, route)))
        if (temp := _temperature(i)) is not None:
            out.append(("papi_temperature_celsius", {"room": "x"}, t, temp))
        out.append(("papi_cpu_utilization_ratio", {}, t, (i % 10) / 10))
        out.append(("papi_queue_depth", {}, t, float(i % 6)))
        for le, count in zip(("0.1", "0.5", "1", "+Inf"), _cumulative(i), strict=True):
            out.append(("papi_latency_seconds_bucket", {"le": le}, t, float(count)))
        out.append(("papi_latency_seconds_sum", {}, t, i * 2.5))
        out.append(("papi_latency_seconds_count", {}, t, float(_cumulative(i)[-1])))
        out.append(("papi_rpc_duration_milliseconds", {"quantile": "0.5"}, t, 10.0 + i % 3))
        out.append(("papi_rpc_duration_milliseconds", {"quantile": "0.99"}, t, 50.0 + i % 5))
        out.append(("papi_rpc_duration_milliseconds_sum", {}, t, i * 12.0))
        out.append(("papi_rpc_duration_milliseconds_count", {}, t, float(i)))
        out.append(("target_info", {"host_name": "h1"}, t, 1.0))
    return out


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def otlp_request() -> bytes:
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.extend(
        [_kv("service.name", JOB), _kv("service.instance.id", INSTANCE), _kv("host.name", "h1")]
    )
    scope = resource.scope_metrics.add()
    scope.scope.name = "papi.tests"
    requests = Metric(name="papi.requests", unit="{request}")
    requests.sum.is_monotonic = True
    requests.sum.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
    queue = Metric(name="papi.queue.depth", unit="{item}")
    queue.sum.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
    temperature = Metric(name="papi.temperature", unit="Cel")
    cpu = Metric(name="papi.cpu.utilization", unit="1")
    latency = Metric(name="papi.latency", unit="s")
    latency.histogram.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
    rpc = Metric(name="papi.rpc.duration", unit="ms")
    for i in range(POINTS):
        ns = (T0 + i * STEP) * 1_000_000_000
        for route in ("a", "b"):
            requests.sum.data_points.append(
                NumberDataPoint(
                    time_unix_nano=ns, as_double=_requests(i, route), attributes=[_kv("route", route)]
                )
            )
        if (temp := _temperature(i)) is not None:
            temperature.gauge.data_points.append(
                NumberDataPoint(time_unix_nano=ns, as_double=temp, attributes=[_kv("room", "x")])
            )
        cpu.gauge.data_points.append(NumberDataPoint(time_unix_nano=ns, as_double=(i % 10) / 10))
        queue.sum.data_points.append(NumberDataPoint(time_unix_nano=ns, as_int=i % 6))
        cumulative = _cumulative(i)
        counts = [b - a for a, b in zip([0, *cumulative], cumulative, strict=False)]
        latency.histogram.data_points.append(
            HistogramDataPoint(
                time_unix_nano=ns,
                count=cumulative[-1],
                sum=i * 2.5,
                explicit_bounds=BOUNDS,
                bucket_counts=counts,
            )
        )
        rpc.summary.data_points.append(
            SummaryDataPoint(
                time_unix_nano=ns,
                count=i,
                sum=i * 12.0,
                quantile_values=[
                    SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=10.0 + i % 3),
                    SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=50.0 + i % 5),
                ],
            )
        )
    scope.metrics.extend([requests, queue, temperature, cpu, latency, rpc])
    return request.SerializeToString()


QUERIES = [
    "papi_requests_total",
    "rate(papi_requests_total[1m])",
    "increase(papi_requests_total[2m])",
    "irate(papi_requests_total[5m])",
    "resets(papi_requests_total[10m])",
    "changes(papi_queue_depth[5m])",
    "delta(papi_temperature_celsius[3m])",
    "idelta(papi_temperature_celsius[3m])",
    "papi_temperature_celsius",
    "avg_over_time(papi_temperature_celsius[2m])",
    "max_over_time(papi_queue_depth[5m]) - min_over_time(papi_queue_depth[5m])",
    "sum_over_time(papi_queue_depth[2m]) / count_over_time(papi_queue_depth[2m])",
    "last_over_time(papi_temperature_celsius[10m])",
    "stddev_over_time(papi_cpu_utilization_ratio[3m]) + stdvar_over_time(papi_cpu_utilization_ratio[3m])",
    "quantile_over_time(0.3, papi_cpu_utilization_ratio[4m])",
    "absent_over_time(papi_temperature_celsius[1m])",
    "absent(papi_nothing_here)",
    "sum by (route) (rate(papi_requests_total[2m]))",
    "avg(papi_requests_total) + min(papi_requests_total) * max(papi_requests_total)",
    "count(papi_requests_total) + group(papi_requests_total)",
    "stddev(papi_requests_total) + stdvar(papi_requests_total)",
    "topk(1, papi_requests_total)",
    "bottomk(1, papi_requests_total)",
    "quantile(0.5, papi_requests_total)",
    'count_values("v", papi_queue_depth)',
    "histogram_quantile(0.9, rate(papi_latency_seconds_bucket[2m]))",
    "histogram_quantile(0.5, sum by (le) (rate(papi_latency_seconds_bucket[5m])))",
    "rate(papi_latency_seconds_sum[2m]) / rate(papi_latency_seconds_count[2m])",
    'papi_rpc_duration_milliseconds{quantile="0.99"}',
    "rate(papi_requests_total[1m]) / ignoring(route) group_left sum(rate(papi_requests_total[1m]))",
    "papi_requests_total > on(job, instance) group_left(host_name) target_info",
    "papi_requests_total and on(job) papi_queue_depth > 2",
    "papi_queue_depth or papi_cpu_utilization_ratio",
    "papi_requests_total unless papi_requests_total{route='a'}",
    "time() - timestamp(papi_temperature_celsius)",
    "vector(1) * scalar(papi_queue_depth)",
    "abs(-papi_queue_depth) + ceil(papi_cpu_utilization_ratio) + floor(papi_cpu_utilization_ratio * 3)",
    "round(papi_temperature_celsius, 0.5)",
    "clamp(papi_queue_depth, 1, 4) + clamp_min(papi_queue_depth, 2) - clamp_max(papi_queue_depth, 3)",
    'label_replace(papi_requests_total, "r", "$1", "route", "(.)")',
    'label_join(papi_requests_total, "jr", "-", "job", "route")',
    "papi_requests_total offset 1m",
    "papi_queue_depth >= bool 3",
    '{__name__=~"papi_requests_total|papi_queue_depth", job!=""}',
    "-papi_queue_depth ^ 2 % 7",
    "deriv(papi_cpu_utilization_ratio[3m])",
    "predict_linear(papi_requests_total[4m], 600)",
    "exp(papi_cpu_utilization_ratio) + sqrt(papi_queue_depth) + ln(papi_requests_total)",
    "log2(papi_requests_total) + log10(papi_requests_total) + sgn(papi_queue_depth - 2)",
    "deg(papi_cpu_utilization_ratio) - rad(papi_cpu_utilization_ratio) * pi()",
    "hour() + minute() + day_of_week() + day_of_year() + days_in_month() + month() + year()",
    "day_of_month(timestamp(papi_temperature_celsius)) + hour(papi_requests_total * 3600)",
    "present_over_time(papi_temperature_celsius[1m])",
    "holt_winters(papi_cpu_utilization_ratio[5m], 0.3, 0.6)",
    "sort_desc(papi_requests_total) + sort(papi_requests_total)",
    "max_over_time(rate(papi_requests_total[1m])[3m:20s])",
    "avg_over_time((papi_queue_depth > 2)[4m:] offset 1m)",
    "min_over_time(rate(papi_requests_total[1m])[2m:15s] @ end())",
]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    target = {"job": JOB, "instance": INSTANCE}
    samples = [
        ({"__name__": name, **labels, **target}, t, value) for name, labels, t, value in prometheus_samples()
    ]
    interval = TEST_CONFIG["alerts"]["evaluation_interval"]  # the step of both sides' `x[4m:]`
    with prometheus_server(tmp_path_factory.mktemp("prometheus"), samples, PORT, interval) as url:
        yield url


@pytest.fixture(scope="module")
def talonflow(local_stack: LocalStack) -> str:
    """The console's base URL, once every sample is in the metrics dataset."""
    with grpc.insecure_channel(local_stack.grpc_endpoint) as channel:
        grpc_export(channel, "metrics", otlp_request())
    points = POINTS * 7 - 20  # per step: 2 request series and 5 more metrics; 20 steps without temperature
    rows, _ = wait_for_rows(
        local_stack.config.data_dir, "metrics", f"service_name = '{JOB}'", points, timeout=120
    )
    assert rows == points
    return local_stack.config.console.url


def _get(base: str, path: str, params: dict[str, str], form: dict[str, str] | None = None) -> tuple[int, Any]:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    body = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=body)  # with a body: a form POST, as Grafana sends
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def _data(base: str, path: str, **params: str) -> Any:
    status, body = _get(base, path, params)
    assert status == 200 and body["status"] == "success", body
    return body["data"]


def _close(a: str, b: str) -> bool:
    x, y = float(a), float(b)
    return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def _same(theirs: dict[str, Any], ours: dict[str, Any]) -> None:
    assert theirs["resultType"] == ours["resultType"]
    if theirs["resultType"] in ("scalar", "string"):
        assert theirs["result"][0] == ours["result"][0] and _close(theirs["result"][1], ours["result"][1])
        return
    key = "values" if theirs["resultType"] == "matrix" else "value"

    def by_metric(result: list[dict[str, Any]]) -> dict[str, Any]:
        return {json.dumps(r["metric"], sort_keys=True): r[key] for r in result}

    expected, got = by_metric(theirs["result"]), by_metric(ours["result"])
    assert got.keys() == expected.keys()
    for metric, points in expected.items():
        mine = got[metric] if key == "values" else [got[metric]]
        points = points if key == "values" else [points]
        assert [t for t, _ in mine] == [t for t, _ in points], metric
        assert all(_close(a, b) for (_, a), (_, b) in zip(mine, points, strict=True)), (metric, mine, points)


@pytest.mark.parametrize("query", QUERIES)
def test_instant_query_matches_prometheus(prometheus: str, talonflow: str, query: str) -> None:
    at = str(T0 + 30 * STEP + 7)
    _same(
        _data(prometheus, "/api/v1/query", query=query, time=at),
        _data(talonflow, "/api/v1/query", query=query, time=at),
    )


@pytest.mark.parametrize("query", QUERIES)
def test_range_query_matches_prometheus(
    prometheus: str, talonflow: str, local_stack: LocalStack, query: str
) -> None:
    """Evaluated, then again from the hours the console kept of the first answer."""
    params = {"query": query, "start": str(T0 + 60), "end": str(T0 + (POINTS - 1) * STEP), "step": "30"}
    theirs = _data(prometheus, "/api/v1/query_range", **params)
    for _ in ("evaluated", "kept"):
        _same(theirs, _data(talonflow, "/api/v1/query_range", **params))
    if "@" not in query:
        assert list((local_stack.config.state_dir / query_results.ROOT).glob("*.arrow"))


def test_grafana_style_query_range_post(talonflow: str) -> None:
    """Grafana POSTs a form with unix seconds and a step in seconds; RFC 3339 and durations work too."""
    form = {
        "query": f'sum by (route) (rate(papi_requests_total{{job="{JOB}"}}[1m]))',
        "start": str(T0 + 60),
        "end": str(T0 + 600),
        "step": "15",
    }
    status, body = _get(talonflow, "/api/v1/query_range", {}, form)
    assert status == 200 and body["status"] == "success"
    result = body["data"]["result"]
    assert [r["metric"] for r in result] == [{"route": "a"}, {"route": "b"}]
    assert len(result[1]["values"]) == (600 - 60) // 15 + 1
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + 60))
    status, again = _get(talonflow, "/api/v1/query_range", {}, {**form, "start": iso, "step": "15s"})
    assert again == body


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"query": "rate(papi_requests_total)"}, 'invalid parameter "query"'),
        (
            {"query": "1", "time": "later"},
            """invalid parameter "time": Invalid time value for 'time': cannot parse""",
        ),
        (
            {"query": "1", "start": "soon", "end": "2", "step": "1"},
            'invalid parameter "start": cannot parse "soon"',
        ),
        ({"query": "1", "start": "1", "end": "2", "step": "0"}, "zero or negative"),
        ({"query": "1", "start": "1", "end": "2", "step": "x"}, 'cannot parse "x" to a valid duration'),
        ({"query": "1", "start": "5", "end": "2", "step": "1"}, "end timestamp must not be before"),
        ({"query": "1", "start": "0", "end": "100000", "step": "1"}, "11,000 points"),
    ],
)
def test_errors_have_prometheus_shape(
    prometheus: str, talonflow: str, params: dict[str, str], message: str
) -> None:
    """Bad input is a 400 with errorType bad_data, as Prometheus answers it."""
    path = "/api/v1/query_range" if "step" in params else "/api/v1/query"
    for base in (prometheus, talonflow):
        status, body = _get(base, path, params)
        assert (status, body["status"], body["errorType"]) == (400, "error", "bad_data"), (base, body)
        assert message in body["error"], (base, body)


def test_refused_constructs_are_not_implemented(prometheus: str, talonflow: str) -> None:
    """Valid PromQL outside talonflow's subset: Prometheus answers, talonflow says 501 and names it,
    which the compliance tester counts as unsupported rather than wrong."""
    query = "sin(papi_queue_depth)"
    assert _get(prometheus, "/api/v1/query", {"query": query})[0] == 200
    status, body = _get(talonflow, "/api/v1/query", {"query": query})
    assert (status, body["errorType"]) == (501, "bad_data")
    assert "function sin() is not supported by talonflow" in body["error"]


def test_series_labels_and_values_match_prometheus(prometheus: str, talonflow: str) -> None:
    window = {"start": str(T0), "end": str(T0 + POINTS * STEP)}
    for path, params in [
        ("/api/v1/series", {"match[]": f'{{job="{JOB}", __name__=~"papi_.*"}}'}),
        ("/api/v1/labels", {"match[]": f'{{job="{JOB}"}}'}),
        ("/api/v1/label/route/values", {"match[]": "papi_requests_total"}),
        ("/api/v1/label/__name__/values", {"match[]": f'{{job="{JOB}"}}'}),
    ]:
        theirs, ours = _data(prometheus, path, **params, **window), _data(talonflow, path, **params, **window)
        key = (lambda s: json.dumps(s, sort_keys=True)) if path.endswith("series") else str
        assert sorted(ours, key=key) == sorted(theirs, key=key), path


def test_metadata_and_buildinfo(talonflow: str) -> None:
    window = {"start": str(T0), "end": str(T0 + POINTS * STEP)}
    metadata = _data(talonflow, "/api/v1/metadata", **window)
    assert metadata["papi_requests_total"] == [{"type": "counter", "help": "", "unit": ""}]
    assert metadata["papi_latency_seconds"] == [{"type": "histogram", "help": "", "unit": "seconds"}]
    assert metadata["papi_rpc_duration_milliseconds"][0]["type"] == "summary"
    assert metadata["papi_queue_depth"][0]["type"] == "gauge"
    assert _data(talonflow, "/api/v1/status/buildinfo")["version"].startswith("2.")
    rules = _data(talonflow, "/api/v1/rules")
    assert rules["groups"] and all(g["rules"] for g in rules["groups"])
    assert isinstance(_data(talonflow, "/api/v1/alerts")["alerts"], list)


@pytest.mark.parametrize(
    "args",
    [
        ["instant", "--time", str(T0 + 30 * STEP), "sum by (route) (rate(papi_requests_total[2m]))"],
        ["range", "--start", str(T0 + 60), "--end", str(T0 + 300), "--step", "30s", "papi_queue_depth"],
    ],
)
def test_promtool_query_reads_talonflow_as_prometheus(
    prometheus: str, talonflow: str, args: list[str]
) -> None:
    promtool = shutil.which("promtool")
    assert promtool
    outputs = [
        subprocess.run(
            [promtool, "query", args[0], base, *args[1:]], capture_output=True, text=True, timeout=60
        )
        for base in (prometheus, talonflow)
    ]
    assert [o.returncode for o in outputs] == [0, 0], [o.stderr for o in outputs]
    assert outputs[1].stdout == outputs[0].stdout
    assert "route" in outputs[1].stdout or "papi_queue_depth" in outputs[1].stdout
