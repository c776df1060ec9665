"""Prometheus' HTTP API (v1) over the stored metrics, on the console's port, for Grafana and promtool.

    GET/POST /api/v1/query, /api/v1/query_range, /api/v1/series, /api/v1/labels,
    /api/v1/label/{name}/values; GET /api/v1/metadata, /api/v1/rules, /api/v1/alerts,
    /api/v1/query_exemplars, /api/v1/status/buildinfo

Queries run on the one PromQL engine (promql/) over the `metrics` dataset as Prometheus' OTLP
receiver names it (console/metric_store.py). Parameters, JSON shapes, error types and status
codes are Prometheus' (web/api/v1/api.go), so its clients need no adapter. Without `start`/`end`,
the metadata endpoints (series, labels, label values) look at the last 6 hours rather than all
time: every point of the range is read, and Prometheus' own default is its head block, hours too.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, Final

import polars as pl
from aiohttp import web

from console import query_results
from console.fleet import active_alerts
from console.metric_store import MetricStore
from console.rollup_store import store_for
from promql import (
    Matrix,
    ParseError,
    PromQLError,
    QueryTimeout,
    Scalar,
    String,
    Unsupported,
    Value,
    Vector,
    format_float,
    instant_query,
    parse,
)
from promql.ast import Matcher, VectorSelector
from promql.lexer import parse_duration
from rules.loader import load_groups
from rules.templates import TemplateContext
from schemas.config import TalonflowConfig
from schemas.prometheus_names import (
    BASE,
    COUNTER,
    HISTOGRAM,
    KIND,
    NAME,
    SUMMARY,
    names_of,
    unit_name,
    with_base_names,
)
from schemas.prometheus_rules import Group, PromRuleFileError

BUILD_VERSION: Final = "2.42.0"  # the Prometheus whose PromQL semantics the engine follows
MAX_POINTS: Final = 11_000  # per series of a range query, as Prometheus
METADATA_RANGE_MS: Final = 6 * 3600 * 1000
_API_CONFIG: web.AppKey[TalonflowConfig] = web.AppKey("prometheus_api_config", TalonflowConfig)


class ApiError(Exception):
    """A refusal in Prometheus' shape: its errorType and HTTP status."""

    def __init__(self, message: str, error_type: str = "bad_data", status: int = 400) -> None:
        super().__init__(message)
        self.error_type, self.status = error_type, status


def _success(data: Any) -> web.Response:
    return web.json_response({"status": "success", "data": data})


def _failure(error: ApiError) -> web.Response:
    body = {"status": "error", "errorType": error.error_type, "error": str(error)}
    return web.json_response(body, status=error.status)


Params = dict[str, list[str]]


async def _params(request: web.Request) -> Params:
    """URL and form parameters together, as Go's Request.ParseForm gives them."""
    params: Params = {}
    form = await request.post() if request.method == "POST" else {}
    for source in (request.query, form):
        for key, value in source.items():
            if isinstance(value, str):
                params.setdefault(key, []).append(value)
    return params


def _one(params: Params, name: str) -> str:
    values = params.get(name)
    return values[0] if values else ""


def parse_time(text: str, name: str, context: str = "") -> int:
    """Unix seconds (fractions allowed) or RFC 3339, in ms: Prometheus' parseTime. `context` prefixes
    the error as Prometheus' parseTimeParam does for `time` and the metadata ranges."""
    try:
        return round(float(text) * 1000)
    except (ValueError, OverflowError):  # not a number, or NaN / Inf: no time either way
        pass
    try:
        return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise ApiError(
            f'invalid parameter "{name}": {context}cannot parse "{text}" to a valid timestamp'
        ) from None


def parse_step(text: str, name: str) -> int:
    """Seconds as a float, or a Prometheus duration (`15s`, `1m30s`), in ms: parseDuration."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            return parse_duration(text)
        except PromQLError:
            raise ApiError(f'invalid parameter "{name}": cannot parse "{text}" to a valid duration') from None
    if not math.isfinite(seconds) or abs(seconds * 1000) > 2**63 - 1:
        raise ApiError(f'invalid parameter "{name}": cannot parse "{text}" to a valid duration')
    return round(seconds * 1000)


def _time_or(params: Params, name: str, default_ms: int) -> int:
    text = _one(params, name)
    return parse_time(text, name, f"Invalid time value for '{name}': ") if text else default_ms


def _now_ms() -> int:
    return int(time.time() * 1000)


def _timestamp(t_ms: int) -> float | int:
    return t_ms // 1000 if t_ms % 1000 == 0 else t_ms / 1000


def _metric(labels: Iterable[tuple[str, str]]) -> dict[str, str]:
    return dict(labels)


def result_json(value: Value) -> dict[str, Any]:
    """A query result as Prometheus serialises it: values are strings, times are seconds."""
    if isinstance(value, Vector):
        points = [
            {"metric": _metric(ls), "value": [_timestamp(value.t), format_float(v)]}
            for ls, v in zip(value.labels, value.values.tolist(), strict=True)
        ]
        return {"resultType": "vector", "result": points}
    if isinstance(value, Matrix):
        series = [
            {
                "metric": _metric(s.labels),
                "values": [
                    [_timestamp(t), format_float(v)]
                    for t, v in zip(s.timestamps.tolist(), s.values.tolist(), strict=True)
                ],
            }
            for s in value.series
        ]
        return {"resultType": "matrix", "result": series}
    if isinstance(value, Scalar):
        return {"resultType": "scalar", "result": [_timestamp(value.t), format_float(value.value)]}
    assert isinstance(value, String)
    return {"resultType": "string", "result": [_timestamp(value.t), value.value]}


def _query_param(params: Params) -> str:
    query = _one(params, "query")
    if not query:
        raise ApiError(
            'invalid parameter "query": unknown position: parse error: no expression found in input'
        )
    return query


def _timeout_s(config: TalonflowConfig, params: Params) -> float:
    """console.query_timeout, or the request's `timeout` when shorter, as Prometheus' query API."""
    text = _one(params, "timeout")
    asked = parse_step(text, "timeout") / 1000 if text else math.inf
    return min(config.console.query_timeout, asked)


def _subquery_step_ms(config: TalonflowConfig) -> int:
    """`x[5m:]` steps by the global evaluation_interval, in Prometheus' query API as in its rules."""
    return int(config.alerts.evaluation_interval * 1000)


def instant(config: TalonflowConfig, params: Params) -> dict[str, Any]:
    query = _query_param(params)
    t_ms = _time_or(params, "time", _now_ms())
    step, timeout = _subquery_step_ms(config), _timeout_s(config, params)
    store = MetricStore(config)
    return result_json(
        _evaluate(lambda: instant_query(query, t_ms, store, subquery_step_ms=step, timeout_s=timeout))
    )


def ranged(config: TalonflowConfig, params: Params) -> dict[str, Any]:
    query = _query_param(params)
    start = parse_time(_one(params, "start"), "start")
    end = parse_time(_one(params, "end"), "end")
    if end < start:
        raise ApiError('invalid parameter "end": end timestamp must not be before start time')
    step = parse_step(_one(params, "step"), "step")
    if step <= 0:
        raise ApiError(
            'invalid parameter "step": zero or negative query resolution step widths are not accepted. '
            "Try a positive integer"
        )
    if (end - start) // step > MAX_POINTS:
        raise ApiError(
            "exceeded maximum resolution of 11,000 points per timeseries. "
            "Try decreasing the query resolution (?step=XX)"
        )
    store = store_for(config, query, start, end, step)  # 1-minute rollups for long ranges where equal
    sub, deadline = _subquery_step_ms(config), time.monotonic() + _timeout_s(config, params)
    return result_json(
        _evaluate(lambda: query_results.answer(config, query, start, end, step, store, sub, deadline))
    )


def _evaluate(run: Callable[[], Value]) -> Value:
    try:
        return run()
    except Unsupported as err:  # valid PromQL talonflow does not evaluate: 501, as "not implemented"
        raise ApiError(f'invalid parameter "query": {err}', "bad_data", 501) from None
    except ParseError as err:
        raise ApiError(f'invalid parameter "query": {err}') from None
    except QueryTimeout as err:
        raise ApiError(str(err), "timeout", 503) from None
    except PromQLError as err:
        raise ApiError(str(err), "execution", 422) from None


def _selectors(params: Params, required: bool) -> list[list[Matcher]]:
    texts = params.get("match[]", [])
    if required and not texts:
        raise ApiError("no match[] parameter provided")
    selectors = []
    for text in texts:
        try:
            node = parse(text)
        except ParseError as err:
            raise ApiError(f'invalid parameter "match[]": {err}') from None
        if not isinstance(node, VectorSelector):
            raise ApiError(f'invalid parameter "match[]": 1:1: parse error: {text} is not a series selector')
        selectors.append(list(node.matchers))
    return selectors


def _range(params: Params) -> tuple[int, int]:
    end = _time_or(params, "end", _now_ms())
    return _time_or(params, "start", end - METADATA_RANGE_MS), end


_ANY_NAME: Final = [Matcher("__name__", "!=", "")]


def series_labels(config: TalonflowConfig, params: Params, required: bool) -> list[dict[str, str]]:
    """The label sets of the series any selector matches in the range (every series without one)."""
    selectors = _selectors(params, required) or [_ANY_NAME]
    start, end = _range(params)
    store = MetricStore(config)
    found = {s.labels for matchers in selectors for s in store.select(matchers, start, end)}
    return [_metric(labels) for labels in sorted(found)]


def label_names(config: TalonflowConfig, params: Params) -> list[str]:
    return sorted({name for labels in series_labels(config, params, False) for name in labels})


def label_values(config: TalonflowConfig, params: Params, name: str) -> list[str]:
    if name == "__name__" and "match[]" not in params:  # the catalogue knows them: no point read
        start, end = _range(params)
        return sorted(names_of(MetricStore(config).catalogue(start, end))[NAME].unique().to_list())
    values = {labels[name] for labels in series_labels(config, params, False) if name in labels}
    return sorted(values)


_TYPES: Final = {COUNTER: "counter", HISTOGRAM: "histogram", SUMMARY: "summary"}  # the rest: gauge


def metadata(config: TalonflowConfig, params: Params) -> dict[str, list[dict[str, str]]]:
    """Type, help and unit per metric family, as Prometheus' OTLP receiver records them."""
    start, end = _range(params)
    catalogue = with_base_names(MetricStore(config).catalogue(start, end))
    wanted = _one(params, "metric")
    out: dict[str, list[dict[str, str]]] = {}
    for row in catalogue.sort(BASE).iter_rows(named=True):
        if wanted and row[BASE] != wanted:
            continue
        entry = {
            "type": _TYPES.get(row[KIND], "gauge"),
            "help": row["metric_description"] or "",
            "unit": unit_name(row["unit"]),
        }
        if entry not in out.setdefault(row[BASE], []):
            out[row[BASE]].append(entry)
    limit = _one(params, "limit")
    if limit and limit.lstrip("-").isdigit() and int(limit) >= 0:
        out = dict(list(out.items())[: int(limit)])
    return out


def _groups(config: TalonflowConfig) -> list[Group]:
    try:
        return load_groups(list(config.alerts.rule_files), TemplateContext())
    except PromRuleFileError as err:
        raise ApiError(f"error loading rules: {err}", "internal", 500) from None


def _alert(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "labels": dict(row["labels"] or {}),
        "annotations": dict(row["annotations"] or {}),
        "state": row["state"],
        "activeAt": row["starts_at"].isoformat().replace("+00:00", "Z") if row["starts_at"] else None,
        "value": format_float(row["value"]) if row["value"] is not None else "NaN",
    }


def alerts(config: TalonflowConfig) -> dict[str, Any]:
    """The pending and firing alerts, from the alerts dataset (the alerts flow's transitions)."""
    return {"alerts": [_alert(row) for row in active_alerts(config)]}


def rules(config: TalonflowConfig, params: Params) -> dict[str, Any]:
    """The loaded rule files' groups; each alerting rule with its active alerts and state."""
    kind = _one(params, "type")
    if kind not in ("", "alert", "record"):
        raise ApiError('invalid parameter "type": not "alert" or "record"')
    by_name: dict[str, list[dict[str, Any]]] = {}
    for row in active_alerts(config):
        by_name.setdefault(row["alertname"], []).append(_alert(row))
    groups = []
    for group in _groups(config):
        listed = []
        for rule in group.rules:
            node = rule.node
            if rule.is_alert and kind != "record":
                active = by_name.get(rule.name, [])
                states = {a["state"] for a in active}
                state = "firing" if "firing" in states else "pending" if states else "inactive"
                listed.append(
                    {
                        "state": state,
                        "name": rule.name,
                        "query": node.expr,
                        "duration": node.for_ / 1000,
                        "keepFiringFor": node.keep_firing_for / 1000,
                        "labels": node.labels,
                        "annotations": node.annotations,
                        "alerts": active,
                        "health": "unknown",
                        "type": "alerting",
                    }
                )
            elif not rule.is_alert and kind != "alert":
                listed.append(
                    {
                        "name": rule.name,
                        "query": node.expr,
                        "labels": node.labels,
                        "health": "unknown",
                        "type": "recording",
                    }
                )
        interval = group.interval_ms / 1000 if group.interval_ms else config.alerts.evaluation_interval
        groups.append(
            {
                "name": group.name,
                "file": group.file,
                "rules": listed,
                "interval": interval,
                "limit": group.limit,
            }
        )
    return {"groups": groups}


def buildinfo() -> dict[str, str]:
    return {
        "version": BUILD_VERSION,
        "revision": "talonflow",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }


Handler = Callable[[web.Request, TalonflowConfig, Params], Any]


def _route(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Run a blocking handler in a worker thread; an ApiError becomes Prometheus' error body."""

    async def respond(request: web.Request) -> web.Response:
        config = request.app[_API_CONFIG]
        try:
            params = await _params(request)
            return _success(await asyncio.to_thread(handler, request, config, params))
        except ApiError as err:
            return _failure(err)
        except pl.exceptions.PolarsError as err:
            return _failure(ApiError(f"reading the metrics dataset: {err}", "internal", 500))

    return respond


def add_prometheus_api(app: web.Application, config: TalonflowConfig) -> None:
    app[_API_CONFIG] = config
    both = {
        "/api/v1/query": lambda r, c, p: instant(c, p),
        "/api/v1/query_range": lambda r, c, p: ranged(c, p),
        "/api/v1/series": lambda r, c, p: series_labels(c, p, True),
        "/api/v1/labels": lambda r, c, p: label_names(c, p),
        "/api/v1/label/{name}/values": lambda r, c, p: label_values(c, p, r.match_info["name"]),
    }
    for path, handler in both.items():
        app.router.add_get(path, _route(handler))
        app.router.add_post(path, _route(handler))
    get_only = {
        "/api/v1/metadata": lambda r, c, p: metadata(c, p),
        "/api/v1/rules": lambda r, c, p: rules(c, p),
        "/api/v1/alerts": lambda r, c, p: alerts(c),
        "/api/v1/query_exemplars": lambda r, c, p: [],  # no exemplars are stored
        "/api/v1/status/buildinfo": lambda r, c, p: buildinfo(),
    }
    for path, handler in get_only.items():
        app.router.add_get(path, _route(handler))
