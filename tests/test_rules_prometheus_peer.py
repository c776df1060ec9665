"""range_query and instant_query beside a real Prometheus 2.42 server holding the same samples.

The samples go into a TSDB block with `promtool tsdb create-blocks-from openmetrics`; Prometheus
serves it on 127.0.0.1:21090 (this suite's port range); every query's result, values formatted as
its HTTP API formats them, must be identical.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from promql import Matrix, MemoryStorage, Scalar, Vector, format_float, instant_query, labels_of, range_query
from tests.prometheus_peer import prometheus_server

PORT = 21090
T0 = 1_700_000_000  # seconds; the server keeps it with a long retention
STEP = 15


def _samples() -> list[tuple[dict[str, str], int, float]]:
    """Counters with a reset, a gauge with a gap longer than the lookback, classic buckets."""
    out: list[tuple[dict[str, str], int, float]] = []
    for i in range(80):
        t = T0 + i * STEP
        out.append(({"__name__": "req_total", "job": "a"}, t, float(i * 10 if i < 40 else (i - 40) * 7)))
        out.append(({"__name__": "req_total", "job": "b"}, t, i * 3.5))
        if not 30 <= i < 60:
            out.append(({"__name__": "temp", "room": "x"}, t, 20 + (i % 7) * 0.25))
        for le, share in (("0.1", 0.2), ("0.5", 0.7), ("1", 0.9), ("+Inf", 1.0)):
            out.append(({"__name__": "lat_bucket", "le": le, "job": "a"}, t, float(int(i * 10 * share))))
    return out


QUERIES = [
    "req_total",
    "rate(req_total[1m])",
    "increase(req_total[2m])",
    "irate(req_total[5m])",
    "resets(req_total[10m])",
    "delta(temp[3m])",
    "temp",
    "avg_over_time(temp[2m])",
    "max_over_time(temp[5m]) - min_over_time(temp[5m])",
    "sum by (job) (rate(req_total[2m]))",
    "histogram_quantile(0.9, rate(lat_bucket[2m]))",
    "rate(req_total[1m]) / ignoring(job) group_left sum(rate(req_total[1m]))",
    "absent(temp)",
    "time() - timestamp(temp)",
    "changes(temp[5m]) > bool 2",
    "quantile_over_time(0.3, temp[4m])",
    "topk(1, req_total)",
    "count_over_time(temp[10m] offset 2m)",
    "vector(1) * 3.3",
    "req_total @ start()",
    "rate(req_total[1m] @ end())",
    "req_total offset 1m",
    'label_replace(temp, "floor", "$1", "room", "(.)")',
    'count_values("v", round(temp))',
    "stddev(req_total) + stdvar(req_total)",
    "clamp(temp, 20.2, 21) unless on() absent(req_total)",
    "sum without (le) (lat_bucket) % 7",
    "-temp ^ 2 >= bool -430",
]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prometheus_server(tmp_path_factory.mktemp("prometheus"), _samples(), PORT) as url:
        yield url


def _api(base: str, path: str, **params: str) -> Any:
    with urllib.request.urlopen(f"{base}{path}?{urllib.parse.urlencode(params)}", timeout=30) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]


def _storage() -> MemoryStorage:
    storage = MemoryStorage()
    for labels, t, value in _samples():
        storage.append(labels_of(labels), t * 1000, value)
    return storage


def _key(metric: dict[str, str]) -> str:
    return json.dumps(metric, sort_keys=True)


def _points(timestamps: list[int], values: list[float]) -> list[list[object]]:
    """[[seconds, "value"], ...] as the HTTP API writes a series of a matrix."""
    return [
        [t // 1000 if t % 1000 == 0 else t / 1000, format_float(v)]
        for t, v in zip(timestamps, values, strict=True)
    ]


@pytest.mark.parametrize("query", QUERIES)
def test_range_query_matches_prometheus(prometheus: str, query: str) -> None:
    start, end, step = T0 + 60, T0 + 79 * STEP, 45
    theirs = _api(
        prometheus, "/api/v1/query_range", query=query, start=str(start), end=str(end), step=str(step)
    )
    ours = range_query(query, start * 1000, end * 1000, step * 1000, _storage())
    assert isinstance(ours, Matrix)
    got = {_key(dict(s.labels)): _points(s.timestamps.tolist(), s.values.tolist()) for s in ours.series}
    expected = {_key(r["metric"]): r["values"] for r in theirs["result"]}
    assert got == expected


@pytest.mark.parametrize("query", QUERIES)
def test_instant_query_matches_prometheus(prometheus: str, query: str) -> None:
    at = T0 + 50 * STEP + 7
    theirs = _api(prometheus, "/api/v1/query", query=query, time=str(at))
    ours = instant_query(query, at * 1000, _storage())
    if isinstance(ours, Scalar):
        assert theirs["result"] == [at, format_float(ours.value)]
        return
    assert isinstance(ours, Vector)
    got = {
        _key(dict(ls)): [at, format_float(float(v))] for ls, v in zip(ours.labels, ours.values, strict=True)
    }
    expected = {_key(r["metric"]): r["value"] for r in theirs["result"]}
    assert got == expected
