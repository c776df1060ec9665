"""The chaos harness's short configuration: 3 kill -9 rounds on its own private stack.

bench.chaos runs its own stack on ports 27000-27499 (not the session stack), so this test takes
no stack lock. Seed 816 kills the receiver, Kafka, the rollups flow and the tailer: the path every
item takes, and the one way in that keeps its own positions.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.chaos import Ledger, replayed, unexplained_gaps, verdict
from bench.chaos_alerts import ALERT, Outage, Schedule, alerting_verdict
from bench.chaos_alerts import render as render_alerting
from bench.landed import ID
from bench.ways_in import LINE_ID, SCRAPED, TAILED, WRITTEN, WaysInCounts, deliveries
from bench.webhook import Arrival, Webhook
from flows.heartbeats import ALERT_NAME as HEARTBEAT_ALERT
from schemas.alert_events import ACTIVE_ENDS_AT, alert_rows
from schemas.config import TalonflowConfig
from schemas.datasets import DATASETS
from tests.bench_run import run_bench


def table_rows(output: str, header: str) -> dict[str, list[str]]:
    """The rows of the table under `header` in the harness's report, by their first cell."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [header])
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


def data_at(folder: Path) -> TalonflowConfig:
    """A config whose data (hot tier only: no manifest) is the hand-written partitions in `folder`."""
    return TalonflowConfig.model_validate({"data_dir": str(folder), "state_dir": str(folder / "state")})


@pytest.mark.integration
def test_three_rounds_of_kills_lose_and_duplicate_nothing() -> None:
    """Nothing acknowledged is lost and nothing is in Parquet twice: not a record written twice,
    nor a request the SDK sent again because a kill took its first answer (two Kafka records with
    the same bytes: the flows drop the second, flows/resends.py). Every alert episode and heartbeat
    silence not excused by the Kafka or receiver kill has each transition once and is notified."""
    command = [sys.executable, "-m", "bench.chaos", "--rounds", "4", "--every", "3", "--seed", "816"]
    command += ["--rate", "10", "--quiet", "8", "--after", "75"]  # episodes after Kafka is back
    run = run_bench(command, timeout=600)
    assert run.returncode == 0 and "signal" in run.stdout, run.stdout + run.stderr[-3000:]
    parts = table_rows(run.stdout, "part")
    assert sum(int(kills) for kills, *_ in parts.values()) == 4
    assert all(kills == recovered for kills, recovered, *_ in parts.values())
    assert {"receiver", "kafka", "rollups", "tailer"} == parts.keys()
    signals = table_rows(run.stdout, "signal")
    for name in ("spans", "metrics", "logs"):
        acked, _failed, lost, duplicated, resent = signals[name]
        assert int(acked) > 0 and lost == "0" and duplicated == resent == "0", run.stdout
    assert signals["rollups"][-2] == "0"  # rollup rows beyond one per (series, window, resolution)
    assert signals["rollup_pts"][-2] == "0"  # the load's counter points folded more than once
    ways = table_rows(
        run.stdout, "way"
    )  # remote-write, tailed lines, scrapes: sent, landed, missing, doubled
    assert {"remote-write", "tailed", "scrapes"} == ways.keys(), run.stdout
    for way, cells in ways.items():
        assert int(cells[-4]) > 0 and cells[-2:] == ["0", "0"], (way, run.stdout)
    assert "explains: none" in run.stdout
    moved = run.stdout.split("(moved by the lifecycle mover): ")[1].splitlines()[
        0
    ]  # "spans N, metrics 0, logs N"
    counted = dict(item.split() for item in moved.split(", "))
    assert int(counted["spans"]) > 0 and int(counted["logs"]) > 0, run.stdout  # read back from MinIO
    episodes = table_rows(run.stdout, "episodes")  # expected, exact, lost, doubled, excused
    assert int(episodes["alert_transitions"][0]) > 0, run.stdout  # some not excused by the Kafka kill
    for name in (
        "alert_transitions",
        "heartbeat_verdicts",
        "heartbeat_alerts",
        "alert_notified",
        "heartbeat_notified",
    ):
        assert episodes[name][2:4] == ["0", "0"], run.stdout  # no transition or notification lost, doubled


def test_the_count_finds_a_lost_and_a_doubled_item_and_a_doubled_rollup_window(tmp_path: Path) -> None:
    """The verdict itself, on hand-written partitions: it can fail."""

    def write(dataset: str, stem: str, table: pa.Table) -> None:
        folder = tmp_path / dataset / "date=2026-01-01" / "hour=00"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / f"{stem}.parquet")

    def spans(*ids: str) -> pa.Table:
        attributes = pa.array([[(ID, i)] for i in ids], pa.map_(pa.string(), pa.string()))
        return pa.table({"attributes": attributes})

    write("spans", "otlp_spans-0-00000000000000000000-00000000000000000001", spans("s0", "s1"))
    write("spans", "otlp_spans-0-00000000000000000001-00000000000000000001", spans("s1"))  # replayed
    window = pa.array([0, 0, 60, 0], pa.timestamp("ns", "UTC"))
    rollups = pa.table(
        {
            "series_id": ["a", "a", "a", "b"],
            "window_start": window,
            "resolution": ["1m"] * 4,
            "attributes": spans("m0", "m0", "m0", "m1")["attributes"],
            "points": [1, 1, 1, 1],
        }
    )
    write("rollups_1m", "talon_rollups-0-00000000000000000000-00000000000000000003", rollups)
    letters = pa.table({"reason": ["resent: same key and bytes as offset 3", "undecodable"], "items": [4, 0]})
    write("dead_letters", "otlp_spans-0-00000000000000000004-00000000000000000005", letters)
    ledger = Ledger()
    ledger.book("spans", ["s0", "s1", "s2"], ok=True)
    ledger.book("logs", ["l0"], ok=False)
    result = verdict(data_at(tmp_path), ledger, WaysInCounts(), [])
    assert result.acked == {"spans": 3, "metrics": 0, "logs": 0} and result.failed == {"logs": 1}
    assert result.lost == {"spans": 1, "metrics": 0, "logs": 0}
    assert result.duplicated == {"spans": 1, "metrics": 0, "logs": 0}
    assert result.resent == {"spans": 0, "metrics": 0, "logs": 0}
    assert result.rollup_duplicates == 1 and result.rollup_points_doubled == 1 and not result.clean
    assert result.resends_dropped == (1, 4)


def test_the_ways_in_count_finds_missing_and_doubled_samples_lines_and_scrapes(tmp_path: Path) -> None:
    """Remote-written samples by (series, timestamp), tailed lines by id, scrapes by time."""
    folder = tmp_path / "metrics" / "date=2026-01-01" / "hour=00"
    folder.mkdir(parents=True)
    t0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, ms
    stamps = pa.array([t0 + s for s in (1_000, 1_000, 2_000, 1_000, 5_000, 5_000)], pa.timestamp("ms", "UTC"))
    metrics = pa.table(
        {
            "metric_name": [WRITTEN, WRITTEN, WRITTEN, WRITTEN, "up", "up"],
            "service_name": ["wundr"] * 4 + [SCRAPED] * 2,
            "time": stamps.cast(pa.timestamp("ns", "UTC")),
            "attributes": pa.array(
                [[("i", "0")], [("i", "1")], [("i", "0")], [("i", "0")], [], []],
                pa.map_(pa.string(), pa.string()),
            ),
        }
    )
    pq.write_table(metrics, folder / "otlp_metrics-0-1-6.parquet")
    folder = tmp_path / "logs" / "date=2026-01-01" / "hour=00"
    folder.mkdir(parents=True)
    lines = pa.table(
        {
            "service_name": [TAILED, TAILED, TAILED],
            "attributes": pa.array(
                [[(LINE_ID, "r0")], [(LINE_ID, "r1")], [(LINE_ID, "r1")]], metrics["attributes"].type
            ),
        }
    )
    pq.write_table(lines, folder / "otlp_logs-0-1-3.parquet")
    window = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    counts = WaysInCounts(written_ms=[t0 + 1_000, t0 + 3_000], lines=3, scrape_window=window)
    found = {d.way: d for d in deliveries(data_at(tmp_path), counts)}
    # 2 requests of 100 series acked; 2 distinct samples of the first landed, one twice, none of the
    # second; the 2 000 ms sample was never acknowledged (its request was given up).
    assert (found["remote-write"].sent, found["remote-write"].landed, found["remote-write"].duplicated) == (
        200,
        2,
        1,
    )
    assert (found["tailed lines"].missing, found["tailed lines"].duplicated) == (1, 1)
    assert (found["scrapes (up)"].landed, found["scrapes (up)"].duplicated) == (1, 1)


def test_a_scrape_gap_is_explained_only_by_an_outage_of_the_scraper_or_kafka() -> None:
    at = [datetime.fromtimestamp(t, UTC) for t in (0, 5, 10, 40, 45, 90)]
    outages = [Outage("scraper", 12.0, 20.0), Outage("receiver", 50.0, 55.0)]
    assert unexplained_gaps(at, outages, every=5, slack=10) == ["00:00:45-00:01:30"]
    assert unexplained_gaps(at, [*outages, Outage("kafka", 60.0, 61.0)], every=5, slack=10) == []


def test_two_kafka_records_are_a_resend_and_one_record_twice_a_replay() -> None:
    first, second = (
        "otlp_metrics-3-00000000000000000339-00000000000000000340",
        "otlp_metrics-3-00000000000000000341-00000000000000000344",
    )
    assert not replayed([first, second])
    assert replayed([first, "otlp_metrics-3-00000000000000000340-00000000000000000342"])
    assert not replayed([first, first.replace("-3-", "-2-")])


def test_the_alerting_count_finds_lost_doubled_unsent_and_excused_episodes(tmp_path: Path) -> None:
    """Alert transitions, heartbeat verdicts and notifications counted per scheduled episode, on
    hand-written rows and webhook arrivals: it can fail, and excuses only what an outage owns.
    An episode never notified whose firing and resolved rows one output of the flow wrote is
    unsent (the notifier, as Alertmanager, sends nothing for an alert resolved before its flush)."""
    schedule = Schedule(t0=1_800_000_000.0, agents=1, period=20.0, high=8.0, low=6.0, silent=12.0)
    t0, stop = schedule.t0, schedule.t0 + 45  # episodes 0 and 1 of each kind end before the stop

    def at(seconds: float) -> str:
        return datetime.fromtimestamp(t0 + seconds, UTC).isoformat()

    def alert(labels: dict[str, str], state: str, seconds: float, starts: float) -> dict[str, Any]:
        ends = ACTIVE_ENDS_AT if state != "resolved" else at(seconds)
        return {
            **{"labels": labels, "annotations": {}, "fingerprint": "f", "state": state, "value": 1.0},
            **{"previous_state": "", "evaluatedAt": at(seconds), "startsAt": at(starts), "endsAt": ends},
        }

    def write(dataset: str, table: pa.Table, outputs: str = "1-1") -> None:
        """As the flows' writers name files: `<dataset>-<writer>-<first>-<last output>`."""
        folder = tmp_path / dataset / "date=2027-01-15" / "hour=08"
        folder.mkdir(parents=True, exist_ok=True)
        first, last = (f"{int(n):020d}" for n in outputs.split("-"))
        pq.write_table(table, folder / f"{dataset}-7-{first}-{last}.parquet")

    level = [{"alertname": ALERT, "agent": "a0", "episode": str(k)} for k in (0, 1)]
    down = {"alertname": HEARTBEAT_ALERT, "component": "beat-0"}
    write("alerts", alert_rows([alert(level[0], s, t, 2) for s, t in (("pending", 1), ("firing", 3))]))
    write("alerts", alert_rows([alert(level[0], "resolved", 9, 2)]), "4-4")
    events = [alert(level[1], s, t, 22) for s, t in (("pending", 21), ("firing", 23), ("firing", 24))]
    write("alerts", alert_rows([*events, alert(level[1], "resolved", 29, 23)]), "7-8")  # at once
    events = [alert(down, "firing", 6, 6), alert(down, "resolved", 13, 6)]
    events.append(alert(down, "firing", 26, 26))  # window 1: never resolved, but heartbeats was down
    write("alerts", alert_rows(events), "9-9")
    verdicts = [("up", "new", -4), ("late", "up", 3), ("down", "late", 6), ("up", "down", 12.5)]
    verdicts += [("late", "up", 23), ("down", "late", 26)]
    rows = [{"time": int((t0 + t) * 1e9), "component": "beat-0", "state": s, "previous_state": p}
            for s, p, t in verdicts]  # fmt: skip
    write("heartbeats", pa.Table.from_pylist(rows, DATASETS["heartbeats"].schema))
    outages = [Outage("alerts", t0 + 2, t0 + 4), Outage("heartbeats", t0 + 30, t0 + 31)]

    def arrival(labels: dict[str, str], status: str, seconds: float, starts: float) -> Arrival:
        body = {"labels": labels, "status": status, "startsAt": at(starts).replace("+00:00", "Z")}
        return Arrival("/chaos", int((t0 + seconds) * 1000), body)

    arrivals = [arrival(level[0], "firing", 4, 2), arrival(level[0], "firing", 6, 2)]  # 2 s apart
    arrivals += [arrival(level[0], "resolved", 10, 2), arrival(down, "firing", 7, 6)]  # never resolved
    hook = Webhook(0)  # port 0: any free port, never called
    hook.arrivals.extend(arrivals)
    try:
        result = alerting_verdict(tmp_path, hook, schedule, stop, outages)
    finally:
        hook.close()
    alerts, beats, down_alerts = (result.transitions[k] for k in ("alert", "heartbeat", "HeartbeatDown"))
    assert (alerts.expected, alerts.exact, alerts.lost, alerts.doubled, alerts.excused) == (2, 1, 0, 1, [])
    assert (beats.expected, beats.exact, beats.lost, beats.doubled) == (1, 1, 0, 0)
    assert beats.excused == ["beat-0/1: heartbeats down +10s..+11s from its start"]
    assert (down_alerts.expected, down_alerts.exact, len(down_alerts.excused)) == (1, 1, 1)
    notified, down_notified = result.notifications["alert"], result.notifications["HeartbeatDown"]
    assert (notified.expected, notified.exact, notified.lost, notified.doubled, notified.unsent) == (
        2,
        0,
        0,
        1,
        1,
    )
    assert (down_notified.expected, down_notified.lost, down_notified.excused) == (1, 1, ["beat-0/1"])
    assert not result.clean
    report = "\n".join(render_alerting(result))
    assert "alert_transitions" in report and "a0/1 doubled" in report
