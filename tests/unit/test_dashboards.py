"""compose/grafana: every dashboard is a Grafana dashboard on the provisioned talonflow data source,
and every query in it is PromQL talonflow's engine parses, once Grafana has substituted its variables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from promql import ParseError, parse
from schemas.config import load_config
from tests.grafana_requests import (
    go_duration,
    go_float,
    kbn_interval,
    panel_query,
    round_interval,
    targets,
    variable_value,
)

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
GRAFANA = COMPOSE / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PANEL_TYPES = {"timeseries", "stat", "gauge", "bargauge", "table", "heatmap", "row"}
HOUR_MS = 3_600_000


def _datasource() -> dict[str, Any]:
    [source] = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "talonflow.yaml").read_text())[
        "datasources"
    ]
    return dict(source)


@pytest.fixture(scope="module", params=DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(json.loads(request.param.read_text()))


def test_the_seed_specs_panels_each_have_a_dashboard() -> None:
    names = {p.stem for p in DASHBOARDS}
    assert {"fleet-health", "heartbeats", "llm-latency-cost", "error-rates", "queue-depth"} <= names
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)


def test_dashboard_follows_grafanas_schema(dashboard: dict[str, Any]) -> None:
    for key in ("uid", "title", "schemaVersion", "panels", "templating", "time", "tags"):
        assert key in dashboard, key
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert set(dashboard["time"]) == {"from", "to"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    uid = _datasource()["uid"]
    for panel in dashboard["panels"]:
        assert panel["type"] in PANEL_TYPES, panel["type"]
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"} and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] == uid
        assert variable["definition"].startswith("label_values(")


def test_every_expression_parses_after_grafanas_substitution(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    selections = {name: variable_value(["$__all"], v) for name, v in variables.items()}
    to_ms = 1_764_000_000_000
    for panel, target in targets(dashboard):
        query = panel_query(target["expr"], panel, to_ms - 6 * HOUR_MS, to_ms, 60_000, selections)
        assert "$" not in query.expr, f"{panel['title']}: unknown variable in {query.expr}"
        try:
            parse(query.expr)
        except ParseError as err:
            raise AssertionError(f"{dashboard['uid']} / {panel['title']}: {err}") from None


def test_provisioning_points_grafana_at_the_console_and_the_dashboards() -> None:
    source = _datasource()
    config = load_config(COMPOSE / "talonflow.docker.yaml")
    assert source["type"] == "prometheus" and source["url"] == f"http://console:{config.console.port}"
    assert config.console.host == "0.0.0.0"  # reachable from the grafana container
    assert source["jsonData"]["prometheusVersion"].startswith("2.42")
    [provider] = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "talonflow.yaml").read_text())[
        "providers"
    ]
    services = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())["services"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in services["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in services["grafana"]["volumes"]
    assert services["grafana"]["image"].split(":")[1][0].isdigit()  # a pinned tag, not latest
    assert f"127.0.0.1:{config.console.port}:{config.console.port}" in services["console"]["ports"]


def test_grafana_step_and_variables_as_grafana_computes_them() -> None:
    """Figures from Grafana's own interval tests: nice rounding, kbn and Go formats, regex escaping."""
    assert [round_interval(ms) for ms in (21_600, 40_000, 86_400, 200_000)] == [
        20_000,
        30_000,
        60_000,
        120_000,
    ]
    assert (kbn_interval(60_000), kbn_interval(90_000), kbn_interval(500)) == ("1m", "1m", "500ms")
    assert (go_duration(240_000), go_duration(3_600_000), go_duration(45_000)) == ("4m0s", "1h0m0s", "45s")
    assert variable_value(["a.b", "c"], {"allValue": ".*"}) == r"(a\\.b|c)"
    assert variable_value(["$__all"], {"allValue": ".*"}) == ".*"
    panel = {"gridPos": {"w": 12}}
    query = panel_query(
        "rate(x[$__rate_interval])", panel, 1_000_030_000, 1_000_030_000 + 6 * HOUR_MS, 60_000, {}
    )
    assert (query.step_s, query.expr) == (60, "rate(x[4m0s])")
    assert query.start_s % 60 == 0 and query.end_s % 60 == 0
    day = panel_query("x", panel, 0, 24 * HOUR_MS, 15_000, {})
    assert day.step_s == 120  # 86,400 s / 800 px = 108 s → 2m


def test_the_form_carries_the_exact_times_as_grafanas_client_writes_them() -> None:
    """Go's FormatFloat(x, 'f', -1, 64): every digit a time of 2026 needs, and no exponent."""
    assert [go_float(x) for x in (1_796_314_980.0, 60.0, 0.5, 1_796_314_980.25)] == [
        "1796314980",
        "60",
        "0.5",
        "1796314980.25",
    ]
    to_ms = 1_796_314_980_000  # 16:23 UTC on 2026-12-03: "%g" sent 1.79631e+09, 83 minutes earlier
    query = panel_query("x", {"gridPos": {"w": 12}}, to_ms - 6 * HOUR_MS, to_ms, 60_000, {})
    form = query.form()
    assert (float(form["start"]), float(form["end"]), float(form["step"])) == (
        query.start_s,
        query.end_s,
        query.step_s,
    )
    assert float(form["end"]) * 1000 == to_ms
