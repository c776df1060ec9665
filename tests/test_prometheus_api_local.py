"""The Prometheus API over Parquet files in a temporary data directory, without the stack.

tests/test_prometheus_api.py holds the proof against a real Prometheus; this suite covers what
needs no peer: the metric-name pushdown, parameter parsing, and the rules and alerts endpoints.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from console.metric_store import MetricStore
from console.prometheus_api import ApiError, add_prometheus_api, parse_step, parse_time, result_json
from promql import instant_query
from promql.ast import Matcher
from promql.parser import parse
from schemas.config import TalonflowConfig
from schemas.flatten import KafkaRecord, flatten
from schemas.prometheus_names import SeriesStorage, prometheus_series
from schemas.topics import METRICS_TOPIC
from tests.test_prometheus_api import JOB, STEP, T0, otlp_request

RULES = Path(__file__).parent / "alert_rules.yaml"
START, END = str(T0), str(T0 + 600)


@pytest.fixture(scope="module")
def table() -> Any:
    record = KafkaRecord(METRICS_TOPIC, 0, 0, (T0 + 600) * 1000, b"k", otlp_request())
    return flatten([record]).tables["metrics"]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, table: Any) -> TalonflowConfig:
    """The points as the ingest flow lays them out: one file per date=/hour= partition."""
    root = tmp_path_factory.mktemp("papi")
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    keyed = frame.with_columns(pl.col("time").dt.date().alias("_d"), pl.col("time").dt.hour().alias("_h"))
    for (date, hour), part in keyed.partition_by("_d", "_h", as_dict=True).items():
        folder = root / "data" / "metrics" / f"date={date}" / f"hour={hour:02d}"
        folder.mkdir(parents=True)
        part.drop("_d", "_h").write_parquet(folder / "points.parquet")
    return TalonflowConfig.model_validate(
        {"data_dir": root / "data", "state_dir": root / "state", "alerts": {"rule_files": [str(RULES)]}}
    )


def _call(config: TalonflowConfig, path: str, params: dict[str, str]) -> tuple[int, Any]:
    async def run() -> tuple[int, Any]:
        app = web.Application()
        add_prometheus_api(app, config)
        async with TestClient(TestServer(app)) as client:
            response = await client.get(path, params=params)
            return response.status, await response.json()

    return asyncio.run(run())


def test_parquet_store_answers_as_the_converted_table(config: TalonflowConfig, table: Any) -> None:
    at = (T0 + 30 * STEP) * 1000
    memory = SeriesStorage(prometheus_series(table))
    for query in (
        "sum by (route) (rate(papi_requests_total[2m]))",
        "histogram_quantile(0.9, papi_latency_seconds_bucket)",
    ):
        assert result_json(instant_query(query, at, MetricStore(config))) == result_json(
            instant_query(query, at, memory)
        )


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("papi_latency_seconds_bucket", ["papi.latency"]),
        ('{__name__=~"papi_rpc_duration_milliseconds(_sum)?"}', ["papi.rpc.duration"]),
        ("papi_requests", []),  # the OTLP name without its suffix is not a Prometheus name
        (
            "target_info",
            [
                f"papi.{n}"
                for n in (
                    "cpu.utilization",
                    "latency",
                    "queue.depth",
                    "requests",
                    "rpc.duration",
                    "temperature",
                )
            ],
        ),
    ],
)
def test_name_matchers_choose_the_otlp_metrics_read(
    config: TalonflowConfig, selector: str, expected: list[str]
) -> None:
    node = parse(selector)
    matchers: list[Matcher] = list(getattr(node, "matchers"))  # noqa: B009 - a VectorSelector
    assert sorted(MetricStore(config).metric_names(matchers, T0 * 1000, (T0 + 600) * 1000)) == expected


def test_times_and_steps_as_prometheus_reads_them() -> None:
    assert parse_time("1796299200.5", "time") == 1796299200500
    assert parse_time("2026-12-03T12:00:00.25Z", "time") == 1796299200250
    assert parse_time("2026-12-03T13:00:00+01:00", "time") == 1796299200000
    assert parse_step("15", "step") == 15000
    assert parse_step("0.5", "step") == 500
    assert parse_step("1m30s", "step") == 90000
    for bad in ("soon", "", "inf"):
        with pytest.raises(
            ApiError, match=f'^invalid parameter "start": cannot parse "{bad}" to a valid timestamp$'
        ):
            parse_time(bad, "start")
    with pytest.raises(ApiError, match='invalid parameter "step": cannot parse "5 min" to a valid duration'):
        parse_step("5 min", "step")


def test_rules_alerts_and_metadata_endpoints(config: TalonflowConfig) -> None:
    status, body = _call(config, "/api/v1/rules", {"type": "alert"})
    assert status == 200
    rules = [r for g in body["data"]["groups"] for r in g["rules"]]
    assert rules and {r["type"] for r in rules} == {"alerting"}
    assert rules[0] | {"alerts": []} == rules[0] and rules[0]["state"] == "inactive"
    assert _call(config, "/api/v1/rules", {"type": "nonsense"})[0] == 400
    assert _call(config, "/api/v1/alerts", {}) == (200, {"status": "success", "data": {"alerts": []}})
    status, body = _call(
        config, "/api/v1/metadata", {"metric": "papi_temperature_celsius", "start": START, "end": END}
    )
    assert body["data"] == {"papi_temperature_celsius": [{"type": "gauge", "help": "", "unit": "celsius"}]}


def test_series_needs_a_selector_and_refuses_an_expression(config: TalonflowConfig) -> None:
    status, body = _call(config, "/api/v1/series", {"start": START, "end": END})
    assert (status, body["errorType"], body["error"]) == (400, "bad_data", "no match[] parameter provided")
    status, body = _call(config, "/api/v1/series", {"match[]": "sum(papi_queue_depth)"})
    assert status == 400 and "not a series selector" in body["error"]
    status, body = _call(
        config,
        "/api/v1/series",
        {"match[]": f'{{job="{JOB}", __name__="papi_queue_depth"}}'} | {"start": START, "end": END},
    )
    assert body["data"] == [{"__name__": "papi_queue_depth", "instance": "papi-1", "job": JOB}]


def test_a_query_past_its_timeout_is_stopped(config: TalonflowConfig) -> None:
    """A subquery of 10^13 steps would pin a CPU for days: the request's `timeout` (or
    console.query_timeout) ends it with Prometheus' answer, 503 and errorType timeout."""
    params = {"query": "count_over_time(up[100y:1ms])", "time": END, "timeout": "200ms"}
    status, body = _call(config, "/api/v1/query", params)
    assert (status, body["errorType"]) == (503, "timeout"), body
    assert body["error"] == "query timed out in expression evaluation"
    status, body = _call(config, "/api/v1/query", {**params, "timeout": "soon"})
    assert (status, body["error"]) == (
        400,
        'invalid parameter "timeout": cannot parse "soon" to a valid duration',
    )
    short = config.model_copy(update={"console": config.console.model_copy(update={"query_timeout": 0.2})})
    status, body = _call(short, "/api/v1/query_range", {**params, "start": START, "end": END, "step": "60"})
    assert (status, body["errorType"]) == (503, "timeout"), body
