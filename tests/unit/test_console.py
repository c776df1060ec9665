"""The console without the stack: URL ranges, formatting, auth, and pages over Parquet written here."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from console.alerting import heartbeat_timelines
from console.humanize import millis, number, usd
from console.server import build_app
from console.timerange import RangeError, parse_range
from schemas.config import TalonflowConfig
from tests.console_data import agent_chain, write_rows

NOW = datetime(2026, 12, 3, 11, 30, tzinfo=UTC)


def test_relative_range_stays_relative_and_absolute_wins() -> None:
    window = parse_range({"range": "6h"}, now=NOW)
    assert (window.start, window.end, window.query()) == (NOW - timedelta(hours=6), NOW, {"range": "6h"})
    assert window.step() == 300  # 6 h in at most 120 readable steps
    pinned = parse_range(
        {"range": "6h", "from": "2026-12-03T10:00:00", "to": "2026-12-03T10:30:00Z"}, now=NOW
    )
    assert pinned.start == datetime(2026, 12, 3, 10, tzinfo=UTC) and pinned.relative is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"range": "soon"}, "range: 'soon' is not a duration"),
        ({"from": "yesterday"}, "from: 'yesterday' is not an ISO 8601 time"),
        ({"from": "2026-12-03T10:00:00Z", "to": "2026-12-03T09:00:00Z"}, "must be before to"),
    ],
)
def test_bad_ranges_name_the_parameter(params: dict[str, str], message: str) -> None:
    with pytest.raises(RangeError, match=message):
        parse_range(params, now=NOW)


def test_numbers_for_people() -> None:
    assert [number(v) for v in (7, 1234, 3_400_000, 0.25)] == ["7", "1.2k", "3.4M", "0.25"]
    assert [millis(v) for v in (0.4, 850, 1200, 150_000)] == ["0.40 ms", "850 ms", "1.2 s", "2.5 min"]
    assert [usd(v) for v in (None, 0.006, 12.3)] == ["unpriced", "$0.0060", "$12.30"]


def _config(tmp_path: Path, **console: object) -> TalonflowConfig:
    return TalonflowConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state", console=console)


def test_bearer_token_guards_everything_but_healthz(tmp_path: Path) -> None:
    async def body() -> None:
        app = build_app(_config(tmp_path, bearer_token="s3cret"))
        async with TestClient(TestServer(app)) as client:
            assert (await client.get("/healthz")).status == 200
            refused = await client.get("/")
            assert refused.status == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await client.get("/", headers={"Authorization": "Bearer wrong"})).status == 401
            assert (await client.get("/", headers={"Authorization": "Bearer s3cret"})).status == 200

    asyncio.run(body())


def test_basic_auth(tmp_path: Path) -> None:
    async def body() -> None:
        app = build_app(_config(tmp_path, basic_auth={"username": "ops", "password": "pw"}))

        def basic(user: str, password: str) -> dict[str, str]:
            return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

        async with TestClient(TestServer(app)) as client:
            assert (await client.get("/logs")).headers["WWW-Authenticate"].startswith("Basic")
            assert (await client.get("/logs", headers=basic("ops", "nope"))).status == 401
            assert (await client.get("/logs", headers={"Authorization": "Basic %%%"})).status == 401
            assert (await client.get("/logs", headers=basic("ops", "pw"))).status == 200

    asyncio.run(body())


def test_both_auth_schemes_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bearer_token or basic_auth, not both"):
        _config(tmp_path, bearer_token="a", basic_auth={"username": "u", "password": "p"})


def test_pages_over_parquet_and_bad_input(tmp_path: Path) -> None:
    async def body() -> None:
        config = _config(tmp_path)
        start = datetime.now(UTC) - timedelta(minutes=5)
        chain = agent_chain(start, session="s-7")
        write_rows(config.data_dir, "spans", chain)
        root = chain[0]["trace_id"]
        async with TestClient(TestServer(build_app(config))) as client:
            for path in (
                "/",
                "/service/main_agent",
                "/traces",
                "/sessions",
                "/sessions/s-7",
                "/logs",
                "/alerts",
            ):
                response = await client.get(path)
                assert response.status == 200, (path, await response.text())
            waterfall = await (await client.get(f"/traces/{root}")).text()
            assert all(f'data-span-id="{s["span_id"]}"' in waterfall for s in chain)  # the linked trace too
            assert (await client.get("/traces/" + "0" * 32)).status == 404
            for path, message in (
                ("/?range=soon", "range: 'soon'"),
                ("/traces?attr=novalue", "attr: 'novalue' should read key=value"),
                ("/logs?severity=loud", "severity: 'loud' is not one of"),
            ):
                response = await client.get(path)
                assert (response.status, message in await response.text()) == (400, True), path

    asyncio.run(body())


def test_heartbeat_timeline_starts_with_the_state_before_the_first_verdict(tmp_path: Path) -> None:
    config = _config(tmp_path)
    now = datetime.now(UTC)
    beat = {"component": "planner", "service_name": "planner", "service_instance_id": "p-1"}
    write_rows(
        config.data_dir,
        "heartbeats",
        [
            {**beat, "time": now - timedelta(minutes=20), "state": "late", "previous_state": "up",
             "last_seen": now - timedelta(minutes=21)},
            {**beat, "time": now - timedelta(minutes=10), "state": "down", "previous_state": "late",
             "last_seen": now - timedelta(minutes=21)},
        ],
    )  # fmt: skip
    (timeline,) = heartbeat_timelines(config, parse_range({"range": "1h"}, now=now))
    assert [s["state"] for s in timeline["segments"]] == ["up", "late", "down"]
    assert timeline["state"] == "down"
    assert sum(s["width"] for s in timeline["segments"]) == pytest.approx(100 * 21 / 60)
