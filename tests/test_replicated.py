"""A replicated stack under fire: 3 KRaft brokers, MinIO erasure-coded over 4 drives.

Spans go in continuously while one broker is kill -9'd (supervision restarts it) and one MinIO drive
folder is deleted. The receiver must keep answering (retryable codes only when not OK), every
acknowledged span must be in Parquet exactly once, and the lifecycle's moves to MinIO must still
verify. Ports are this test's range (26100-26199, below the ephemeral ports), apart from the session stack's.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from confluent_kafka.admin import AdminClient, ConfigResource
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from schemas.config import load_config
from schemas.topics import SPANS_TOPIC
from sinks.lifecycle import hot_files
from sinks.tiers import WARM, Manifest, minio_client
from talonflow.health import kafka_healthy
from talonflow.kafka_retry import again_on_dropped_connection
from talonflow.query import run_query
from talonflow.stack import kafka_cluster_id, kafka_node_dir
from tests.conftest import LocalStack, stack_root
from tests.otlp_clients import grpc_export, span_request

pytestmark = pytest.mark.integration

BROKERS = "127.0.0.1:26192,127.0.0.1:26193,127.0.0.1:26194"
CONFIG: dict[str, Any] = {
    "kafka": {"bootstrap_servers": BROKERS, "brokers": 3, "controller_port": 26195, "heap": "256m"},
    "minio": {"endpoint": {"port": 26100}, "console": {"port": 26101}, "drives": 4},
    "receiver": {"grpc": {"port": 26117}, "http": {"port": 26118}, "ops": {"port": 26133}},
    "ingest": {"commit_interval": "1s"},
    "rollups": {"commit_interval": "1s"},
    "heartbeats": {"commit_interval": "1s"},
    "alerts": {"rule_files": []},
    "console": {"port": 26130},
    # Spans two hours old sit in a closed hour, so the mover takes them to MinIO at once.
    "lifecycle": {
        "ops": {"port": 26134},
        "interval": "2s",
        "grace": "1s",
        "policies": {"spans": {"hot_for": "0s", "warm_for": "1d", "cold_for": "2d"}},
    },
}
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}
SPANS_PER_REQUEST = 50


@pytest.fixture(scope="module")
def replicated() -> Iterator[LocalStack]:
    root = stack_root("talonflow-replicated-stack")
    config_file = root / "talonflow.yaml"
    settings = {**CONFIG, "state_dir": str(root / "state"), "data_dir": str(root / "data")}
    config_file.write_text(yaml.safe_dump(settings))
    stack = LocalStack(load_config(config_file), config_file)
    started = stack.cli("up", "--detach", "--timeout", "240", check=False)
    try:
        assert started.returncode == 0, started.stderr
        yield stack
    finally:
        stack.cli("down", check=False)


class Load:
    """Agents exporting spans over gRPC, each request once: what was acknowledged, what was refused."""

    def __init__(self, stack: LocalStack, instance: str, senders: int = 2) -> None:
        self.stack, self.instance = stack, instance
        self.acknowledged: set[str] = set()
        self.refused: set[str] = set()
        self.codes: Counter[str] = Counter()
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._send, args=(n,)) for n in range(senders)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join()

    def _send(self, sender: int) -> None:
        start = time.time_ns() - 2 * 3600 * 10**9
        with grpc.insecure_channel(self.stack.grpc_endpoint) as channel:
            batch = 0
            while not self.stop.is_set():
                request = ExportTraceServiceRequest.FromString(
                    span_request([("replicated", self.instance)], spans_per_agent=SPANS_PER_REQUEST)
                )
                ids = []
                for index, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
                    span.span_id = ((sender << 40) | (batch << 8) | index).to_bytes(8, "big")
                    span.start_time_unix_nano, span.end_time_unix_nano = start, start + 1000
                    ids.append(span.span_id.hex())
                try:
                    grpc_export(channel, "traces", request.SerializeToString(), timeout=30)
                    outcome = "OK"
                except grpc.RpcError as err:
                    outcome = err.code().name
                with self._lock:
                    (self.acknowledged if outcome == "OK" else self.refused).update(ids)
                    self.codes[outcome] += 1
                batch += 1
                time.sleep(0.02)


def _part(stack: LocalStack, name: str) -> dict[str, Any]:
    return next(p for p in stack.status()["parts"] if p["name"] == name)


def _leader_of_spans() -> int:
    """The broker leading otlp_spans partition 0: killing it forces a leader election mid-load."""
    metadata = AdminClient({"bootstrap.servers": BROKERS}).list_topics(SPANS_TOPIC, timeout=10)
    return int(metadata.topics[SPANS_TOPIC].partitions[0].leader)


def _restarted(stack: LocalStack, victim: dict[str, Any]) -> bool:
    """Supervision started the part again (a new pid) and it is healthy: back in the cluster."""
    now = _part(stack, victim["name"])
    return bool(now["healthy"]) and now["pid"] != victim["pid"]


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _moved_bytes(stack: LocalStack) -> float:
    url = f"http://{stack.config.lifecycle.ops.address}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    found = re.search(r'talonflow_lifecycle_moved_bytes_total\{dataset="spans",tier="warm"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def _hot_spans(stack: LocalStack) -> list[str]:
    """Partitions with span files still on local disk (not yet moved by the lifecycle)."""
    data = stack.config.data_dir
    return list(hot_files(data, "spans", Manifest.load(data, "spans")))


def _span_counts(stack: LocalStack, instance: str) -> Counter[str]:
    """span_id → rows, across the hot and warm tiers, as `talonflow query` reads them."""
    sql = f"SELECT span_id FROM spans WHERE service_instance_id = '{instance}'"
    return Counter(run_query(stack.config, sql)["span_id"].to_list())


def test_the_cluster_is_replicated(replicated: LocalStack, tmp_path: Path) -> None:
    """Three live brokers of the cluster `up` formatted, topics with 3 replicas and min.insync 2."""
    admin = AdminClient({"bootstrap.servers": BROKERS})
    # Each broker learns the others' unfencing from the metadata log on its own time: `up` saw
    # every broker live through one of them, the broker answering here may lag it a moment.
    _wait(lambda: sorted(admin.list_topics(timeout=10).brokers) == [1, 2, 3], 30, "three live brokers")
    metadata = admin.list_topics(timeout=10)
    assert metadata.cluster_id == kafka_cluster_id(replicated.config)
    partitions = metadata.topics[SPANS_TOPIC].partitions.values()
    assert all(sorted(p.replicas) == [1, 2, 3] for p in partitions)
    resource = ConfigResource("topic", SPANS_TOPIC)
    described = again_on_dropped_connection(lambda: admin.describe_configs([resource])[resource].result())
    assert described["min.insync.replicas"].value == "2"
    parts = {p["name"]: p for p in replicated.status()["parts"]}
    assert {"kafka-1", "kafka-2", "kafka-3", "minio"} <= parts.keys()
    assert all(parts[name]["healthy"] for name in ("kafka-1", "kafka-2", "kafka-3", "minio"))
    # Another stack formatted with its own id does not take these brokers for its own.
    other = replicated.config.model_copy(update={"state_dir": tmp_path})
    (kafka_node_dir(other, 1) / "data").mkdir(parents=True)
    (kafka_node_dir(other, 1) / "data" / "meta.properties").write_text("cluster.id=someone-elses\n")
    assert (
        kafka_healthy(other, node=1)
        == f"{BROKERS} answers as cluster {metadata.cluster_id}, not ours (someone-elses)"
    )


def test_a_broker_killed_and_a_drive_lost_under_load_lose_nothing(replicated: LocalStack) -> None:
    instance = f"r{time.time_ns() % 10**9}"
    drive = replicated.config.state_dir / "minio" / "drive2"
    with Load(replicated, instance) as load:
        _wait(lambda: len(load.acknowledged) >= 2000, 60, "spans acknowledged before the kill")
        leader = _leader_of_spans()
        victim = _part(replicated, f"kafka-{leader}")
        os.kill(victim["pid"], signal.SIGKILL)
        killed = time.monotonic()
        _wait(lambda: len(load.acknowledged) >= 4000, 60, "spans acknowledged with a broker down")
        moved_before_loss = _moved_bytes(replicated)
        # The drive is lost at once (a rename), then its files deleted: MinIO writes on meanwhile.
        lost = drive.rename(drive.with_name("drive2.lost"))
        shutil.rmtree(lost, ignore_errors=True)
        _wait(
            lambda: _restarted(replicated, victim),
            120,
            "supervision to restart the killed broker",
        )
        back = time.monotonic() - killed
        _wait(
            lambda: _moved_bytes(replicated) > moved_before_loss, 60, "a move to MinIO after the drive loss"
        )
    print(
        f"\nreplicated: kafka-{leader} killed, healthy again after {back:.1f}s; requests {dict(load.codes)};"
        f" spans acknowledged {len(load.acknowledged)}, refused {len(load.refused)}"
    )  # the figures for the README, with pytest -s
    assert set(load.codes) <= {"OK"} | {code.name for code in RETRYABLE}, load.codes
    assert load.codes["OK"] > 0

    # Every acknowledged span lands once; a refused one at most once (Kafka may have kept it).
    def settled() -> bool:
        return load.acknowledged <= _span_counts(replicated, instance).keys()

    _wait(settled, 90, "every acknowledged span in Parquet")
    _wait(lambda: not _hot_spans(replicated), 60, "the mover to take every span file to MinIO")
    counts = _span_counts(replicated, instance)
    assert [span for span, rows in counts.items() if rows > 1] == []
    assert counts.keys() <= load.acknowledged | load.refused
    assert load.acknowledged <= counts.keys()

    # What the mover put in MinIO reads back whole from the three drives left.
    client = minio_client(replicated.config.minio)
    bucket = replicated.config.minio.bucket
    objects = [
        o for p in Manifest.load(replicated.config.data_dir, "spans").partitions.values() for o in p.objects
    ]
    assert any(o.tier == WARM for o in objects)
    for stored in objects:
        response = client.get_object(bucket, stored.key)
        try:
            body = response.read()
            expected = response.headers["x-amz-meta-sha256"]
        finally:
            response.close()
            response.release_conn()
        assert (len(body), hashlib.sha256(body).hexdigest()) == (stored.bytes, expected), stored.key
