"""The heartbeats flow on the real stack: a stalled agent is down within grace + 1 s, back when it beats."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import polars as pl
import pytest
from confluent_kafka import Consumer, TopicPartition

from schemas.topics import HEARTBEATS_TOPIC
from talonflow.query import run_query
from tests.conftest import LocalStack
from tests.isolated import isolated_flows
from tests.otlp_clients import grpc_export, span_request

pytestmark = pytest.mark.integration
COMPONENT = "stall_agent"  # tests/conftest.py: service.name hb-stall, every 2s, grace 3s
INTERVAL, GRACE = 2.0, 3.0


class Transitions:
    """talon_heartbeats documents of one component, read as they are produced."""

    def __init__(self, local_stack: LocalStack) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": local_stack.config.kafka.bootstrap_servers, "group.id": f"t-{uuid.uuid4()}"}
        )
        topic = self._consumer.list_topics(HEARTBEATS_TOPIC, timeout=10).topics[HEARTBEATS_TOPIC]
        # concrete end offsets: OFFSET_END would resolve only at the first fetch
        ends = {
            p: self._consumer.get_watermark_offsets(TopicPartition(HEARTBEATS_TOPIC, p))[1]
            for p in topic.partitions
        }
        self._consumer.assign([TopicPartition(HEARTBEATS_TOPIC, p, end) for p, end in ends.items()])
        self.seen: list[tuple[float, dict[str, Any]]] = []  # (arrival time, document)

    def until(self, state: str, seen_after: float, timeout: float = 30) -> dict[str, Any]:
        """The first `state` verdict about a beat after `seen_after` (the seeded start may come first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for arrived, document in self.seen:
                last_seen = datetime.fromisoformat(document["last_seen"]).timestamp()
                if document["state"] == state and last_seen >= seen_after:
                    self.seen.remove((arrived, document))
                    return {**document, "arrived": arrived}
            message = self._consumer.poll(0.1)
            if message is not None and not message.error() and message.key() == COMPONENT.encode():
                self.seen.append((time.time(), json.loads(message.value() or b"{}")))
        raise AssertionError(f"{COMPONENT} never went {state}; saw {[d['state'] for _, d in self.seen]}")

    def close(self) -> None:
        self._consumer.close()


def beat(local_stack: LocalStack, seconds: float) -> float:
    """Export spans as service hb-stall every 0.5 s for `seconds`; when the last acked export was sent.

    The beat's time is its Kafka timestamp, stamped between that moment and the ack: taking the
    time after the ack instead made a verdict that came exactly on time look a millisecond early.
    """
    last = time.time()
    with grpc.insecure_channel(local_stack.grpc_endpoint) as channel:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sent = time.time()
            grpc_export(channel, "traces", span_request([("hb-stall", "i-1")], spans_per_agent=1))
            last = sent
            time.sleep(0.5)
    return last


def flow_pid(local_stack: LocalStack) -> int:
    parts = {p["name"]: p for p in local_stack.status()["parts"]}
    return int(parts["heartbeats"]["pid"])


def test_a_stall_is_down_within_grace_and_back_on_return_across_a_restart(local_stack: LocalStack) -> None:
    transitions = Transitions(local_stack)
    try:
        last = beat(local_stack, 2)  # the flow may still be starting: its seeded verdicts may come first
        late = transitions.until("late", last - 0.1, timeout=90)
        down = transitions.until("down", last - 0.1)
        assert INTERVAL <= late["arrived"] - last <= INTERVAL + 1
        assert INTERVAL + GRACE <= down["arrived"] - last <= INTERVAL + GRACE + 1  # on an idle pipeline
        assert down["age_seconds"] >= INTERVAL + GRACE

        old = flow_pid(local_stack)
        returned = time.time()
        beat(local_stack, 1)
        assert transitions.until("up", returned)["previous_state"] == "down"
        # a restart in the middle of a stall: the state survives, the verdict still comes, once
        transitions.until("late", returned)
        time.sleep(1.2)  # a snapshot after the verdict, and still well before the down verdict
        os.kill(old, signal.SIGKILL)
        assert transitions.until("down", returned, timeout=60)["previous_state"] == "late"
        assert flow_pid(local_stack) != old
    finally:
        transitions.close()

    def verdicts() -> list[str]:
        rows = run_query(local_stack.config, f"SELECT * FROM heartbeats WHERE component = '{COMPONENT}'")
        return (
            rows.filter(pl.col("last_seen").dt.epoch("ms") >= int((last - 0.1) * 1000))
            .sort("time")["state"]
            .to_list()
        )

    expected = ["late", "down", "up", "late", "down"]
    deadline = time.monotonic() + 30  # the restarted flow writes the last verdict at its next commit
    while len(verdicts()) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    assert verdicts() == expected  # exactly once, across the kill
    alerts = run_query(local_stack.config, "SELECT * FROM alerts WHERE alertname = 'HeartbeatDown'")
    mine = alerts.filter(
        (pl.col("labels").map.get("component") == COMPONENT)
        & (pl.col("time").dt.epoch("ms") >= int(last * 1000))
    )
    assert mine.sort("time")["state"].to_list() == ["firing", "resolved", "firing"]


def _has_verdict(data: Path, component: str, state: str) -> bool:
    files = list(data.glob("heartbeats/date=*/hour=*/*.parquet"))
    if not files:
        return False
    rows = pl.read_parquet(files)
    return rows.filter((pl.col("component") == component) & (pl.col("state") == state)).height > 0


@pytest.mark.parametrize(("processes", "workers"), [(1, 2), (2, 1)], ids=["-w 2", "two processes"])
def test_verdicts_are_the_same_across_workers_and_processes(
    local_stack: LocalStack, tmp_path: Path, processes: int, workers: int
) -> None:
    """Shards spread over workers: the clock reaches every one, and each verdict is written once."""
    service, warm = f"hb-{uuid.uuid4().hex[:8]}", f"hb-warm-{uuid.uuid4().hex[:8]}"
    component = {"match": {"service.name": service}, "expected_interval": "1s", "grace_period": "1s"}
    warming = {"match": {"service.name": warm}, "expected_interval": "1s", "grace_period": "1s"}
    components = {"spread": component, "warm": warming}
    heartbeats = {"components": components, "tick": "200ms", "startup_grace": "1s"}
    flows, data = isolated_flows(
        local_stack, tmp_path, "heartbeats", {"heartbeats": heartbeats}, processes, workers
    )
    flows.start()
    try:
        with grpc.insecure_channel(local_stack.grpc_endpoint) as channel:
            # The flow is up, reading and past its start-up grace once another component's beat got
            # its verdict: a fixed sleep was too short for two workers on a loaded machine.
            deadline = time.monotonic() + 120
            while not _has_verdict(data, "warm", "up") and time.monotonic() < deadline:
                grpc_export(channel, "traces", span_request([(warm, "i-1")], spans_per_agent=1))
                time.sleep(0.5)
            assert _has_verdict(data, "warm", "up"), flows.log_tail()
            time.sleep(2)
            first = time.time()
            for _ in range(6):
                grpc_export(channel, "traces", span_request([(service, "i-1")], spans_per_agent=1))
                time.sleep(0.5)

        def verdicts() -> list[str]:
            files = list(data.glob("heartbeats/date=*/hour=*/*.parquet"))
            if not files:
                return []
            rows = pl.read_parquet(files).filter(pl.col("component") == "spread")
            after = rows.filter(pl.col("last_seen").dt.epoch("ms") >= int(first * 1000) - 100)
            return after.sort("time")["state"].to_list()

        deadline = time.monotonic() + 30
        while "down" not in verdicts() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)  # a duplicate from another worker would show now
        assert verdicts() == ["up", "late", "down"], flows.log_tail()  # up: the seeded watch was down
    finally:
        flows.stop()
