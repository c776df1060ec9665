"""Tiered lifecycle against the real MinIO: hot → warm → cold → gone, crash-safe, outage-safe."""

from __future__ import annotations

import io
import json
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import duckdb
import fsspec
import pyarrow.parquet as pq
import pytest
import yaml
from minio import Minio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from schemas.config import load_config
from schemas.datasets import SPANS
from schemas.flatten import KafkaRecord, flatten
from sinks.parquet import partition_dir, split_by_hour, write_atomically
from sinks.tiers import Manifest, ensure_bucket, minio_client
from talonflow.query import run_query
from tests.conftest import LocalStack
from tests.otlp_clients import span_request

pytestmark = pytest.mark.integration
HOUR = 3600


def hour_start(hours_ago: int) -> int:
    return (int(time.time()) // HOUR - hours_ago) * HOUR


def write_hot(data: Path, hours_ago: list[int], files_per_hour: int, spans_per_file: int) -> int:
    """Hot partitions as the ingest sink writes them: several small files per hour."""
    total = 0
    for hours in hours_ago:
        for index in range(files_per_hour):
            request = ExportTraceServiceRequest.FromString(
                span_request([("tiers", f"i{hours}")], spans_per_agent=spans_per_file)
            )
            for number, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
                span.span_id = (hours * 1_000_000 + index * 1000 + number + 1).to_bytes(8, "big")
                span.start_time_unix_nano = (hour_start(hours) + 60 + index) * 10**9
            record = KafkaRecord(
                "otlp_spans", 0, index, int(time.time() * 1000), b"k", request.SerializeToString()
            )
            table = flatten([record]).tables["spans"]
            for hour, rows in split_by_hour(table, SPANS):
                name = f"otlp_spans-{hours}-{index:020d}-{index:020d}.parquet"
                write_atomically(rows, partition_dir(data, "spans", hour) / name, 1024)
                total += rows.num_rows
    return total


@pytest.fixture
def tiers(local_stack: LocalStack, tmp_path: Path) -> Any:
    """A data dir and a bucket of its own, on the session's MinIO."""
    bucket = f"tiers-{uuid.uuid4().hex[:8]}"
    document = {
        "state_dir": str(tmp_path / "state"),
        "data_dir": str(tmp_path / "data"),
        "kafka": {"bootstrap_servers": local_stack.config.kafka.bootstrap_servers},
        "minio": {"endpoint": {"port": local_stack.config.minio.endpoint.port}, "bucket": bucket},
        "lifecycle": {"interval": "200ms", "grace": "1s", "ops": {"port": 18134}},
    }
    path = tmp_path / "tiers.yaml"

    def configure(**policy: str) -> Path:
        document["lifecycle"]["policies"] = {"spans": policy}  # type: ignore[index]
        path.write_text(yaml.safe_dump(document))
        return path

    configure(hot_for="0s", warm_for="30d", cold_for="60d")
    ensure_bucket(load_config(path).minio)
    return configure, tmp_path / "data"


def lifecycle(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "talonflow.cli", "--config", str(config), "lifecycle", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def counts(config: Path) -> dict[str, int]:
    """Rows as `talonflow query`, DuckDB (over local files and s3://) and a plain S3 client see them."""
    settings = load_config(config)
    by_query = int(run_query(settings, "SELECT count(*) AS n FROM spans")["n"][0])
    manifest = Manifest.load(settings.data_dir, "spans")
    client: Minio = minio_client(settings.minio)
    by_s3 = 0
    for partition in manifest.partitions.values():
        for stored in partition.objects:
            response = client.get_object(settings.minio.bucket, stored.key)
            try:
                by_s3 += pq.ParquetFile(io.BytesIO(response.read())).metadata.num_rows
            finally:
                response.close()
    local = [
        str(p)
        for p in settings.data_dir.glob("spans/date=*/hour=*/*.parquet")
        if p.name not in manifest.partitions.get(f"{p.parent.parent.name}/{p.parent.name}", _EMPTY).moved
    ]
    by_s3 += sum(pq.read_metadata(p).num_rows for p in local)
    connection = duckdb.connect()
    connection.register_filesystem(
        fsspec.filesystem(
            "s3",
            key=settings.minio.access_key.get_secret_value(),
            secret=settings.minio.secret_key.get_secret_value(),
            client_kwargs={"endpoint_url": f"http://{settings.minio.endpoint.address}"},
        )
    )
    sources = local + [
        f"s3://{settings.minio.bucket}/{o.key}" for p in manifest.partitions.values() for o in p.objects
    ]
    by_duckdb = (
        connection.sql(f"SELECT count(*) FROM read_parquet({sources!r}, hive_partitioning=true)").fetchall()[
            0
        ][0]
        if sources
        else 0
    )
    return {"query": by_query, "duckdb": int(by_duckdb), "s3+local": by_s3}


class _Empty:
    moved: tuple[str, ...] = ()


_EMPTY = _Empty()


def tier_rows(config: Path) -> dict[str, int]:
    report = json.loads(lifecycle(config, "status", "--json").stdout)
    return {r["tier"]: r["rows"] for r in report if r["dataset"] == "spans"}


def test_data_moves_hot_warm_cold_gone_on_schedule(tiers: Any) -> None:
    configure, data = tiers
    old, young = 3, 2  # hours ago; the old partition goes all the way, the young one stays warm
    total = write_hot(data, [old, young], files_per_hour=4, spans_per_file=25)
    old_rows = total // 2
    age_old = time.time() - (hour_start(old) + HOUR)
    # Steps 15 s apart: every step is a CLI call or two, seconds each on a loaded CI machine, and a
    # pass that starts after the next step's age moves the partition two steps at once.
    config = configure(hot_for="0s", warm_for=f"{int(age_old) + 15}s", cold_for=f"{int(age_old) + 30}s")
    assert counts(config) == dict.fromkeys(("query", "duckdb", "s3+local"), total)
    files_before = len(list(data.glob("spans/*/*/*.parquet")))

    moved = lifecycle(config, "run", "--once")
    assert moved.returncode == 0, moved.stderr
    settings = load_config(config)
    rules = minio_client(settings.minio).get_bucket_lifecycle(settings.minio.bucket)
    assert rules is not None
    expiry = {str(rule.rule_id): rule.expiration.days for rule in rules.rules if rule.expiration}
    assert expiry["talonflow-cold-metrics"] == 61 and expiry["talonflow-warm-logs"] == 84  # MinIO's own ILM
    assert not any("spans" in rule for rule in expiry)  # seconds: the service expires those itself
    assert tier_rows(config) == {"hot": 0, "warm": total, "cold": 0}
    assert counts(config) == dict.fromkeys(("query", "duckdb", "s3+local"), total)
    time.sleep(1.2)  # grace: the local copies go on the next pass, after the warm copy was verified
    assert lifecycle(config, "run", "--once").returncode == 0
    assert files_before == 8 and not list(data.glob("spans/*/*/*.parquet"))

    while time.time() - (hour_start(old) + HOUR) < age_old + 16:
        time.sleep(0.5)
    assert lifecycle(config, "run", "--once").returncode == 0
    assert tier_rows(config) == {"hot": 0, "warm": total - old_rows, "cold": old_rows}
    assert counts(config) == dict.fromkeys(("query", "duckdb", "s3+local"), total)

    while time.time() - (hour_start(old) + HOUR) < age_old + 31:
        time.sleep(0.5)
    assert lifecycle(config, "run", "--once").returncode == 0
    assert tier_rows(config) == {"hot": 0, "warm": total - old_rows, "cold": 0}
    assert counts(config) == dict.fromkeys(("query", "duckdb", "s3+local"), total - old_rows)
    time.sleep(1.2)
    assert lifecycle(config, "run", "--once").returncode == 0
    keys = {
        o.object_name
        for o in minio_client(settings.minio).list_objects(settings.minio.bucket, recursive=True)
    }
    manifest = Manifest.load(settings.data_dir, "spans")
    assert keys == {o.key for p in manifest.partitions.values() for o in p.objects}  # nothing left behind
    assert all(k.startswith("warm/spans/") for k in keys)


def test_killed_mover_restarts_without_loss_or_duplicates_and_queries_stay_exact(tiers: Any) -> None:
    configure, data = tiers
    total = write_hot(data, list(range(2, 26)), files_per_hour=3, spans_per_file=40)
    config = configure(hot_for="0s", warm_for="30d", cold_for="60d")
    wrong: list[int] = []
    stop = threading.Event()

    def query_all_along() -> None:
        settings = load_config(config)
        while not stop.is_set():
            try:
                seen = int(run_query(settings, "SELECT count(DISTINCT span_id) AS n FROM spans")["n"][0])
            except Exception:  # a file read as it is garbage-collected: the query fails, it never miscounts
                continue
            if seen != total:
                wrong.append(seen)

    reader = threading.Thread(target=query_all_along)
    reader.start()
    try:
        for _ in range(6):
            service = subprocess.Popen(
                [sys.executable, "-m", "talonflow.cli", "--config", str(config), "lifecycle", "run"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(random.uniform(0.8, 2.5))
            service.send_signal(signal.SIGKILL)
            service.wait()
        for _ in range(3):  # finish, then let the grace pass and clean up
            assert lifecycle(config, "run", "--once").returncode == 0
            time.sleep(1.2)
    finally:
        stop.set()
        reader.join()
    assert wrong == []
    assert counts(config) == dict.fromkeys(("query", "duckdb", "s3+local"), total)
    settings = load_config(config)
    assert int(run_query(settings, "SELECT count(DISTINCT span_id) AS n FROM spans")["n"][0]) == total
    assert tier_rows(config) == {"hot": 0, "warm": total, "cold": 0}


def metric(port: int, name: str) -> float | None:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
    return sum(values) if values else None


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_minio_outage_pauses_moves_and_nothing_is_lost(
    local_stack: LocalStack, tiers: Any, tmp_path: Path
) -> None:
    configure, data = tiers
    total = write_hot(data, [2, 3, 4], files_per_hour=2, spans_per_file=30)
    config = configure(hot_for="0s", warm_for="30d", cold_for="60d")
    supervisor = local_stack.stack.rpc().supervisor
    supervisor.stopProcess("minio")
    minio_down = True
    log = (tmp_path / "lifecycle.log").open("w")
    service = subprocess.Popen(["true"])
    try:
        failed = lifecycle(config, "run", "--once")
        assert failed.returncode == 1 and "nothing was deleted" in failed.stderr
        assert len(list(data.glob("spans/*/*/*.parquet"))) == 6
        assert tier_rows(config)["hot"] == total
        service = subprocess.Popen(
            [sys.executable, "-m", "talonflow.cli", "--config", str(config), "lifecycle", "run"],
            stdout=log,
            stderr=log,
        )
        wait_until(lambda: (metric(18134, "talonflow_lifecycle_errors_total") or 0) >= 1, 30, "a failed pass")
        assert metric(18134, "talonflow_lifecycle_store_up") == 0.0
        assert (metric(18134, "talonflow_lifecycle_overdue_hot_bytes") or 0) > 0
        supervisor.startProcess("minio")
        minio_down = False
        wait_until(
            lambda: tier_rows(config) == {"hot": 0, "warm": total, "cold": 0}, 90, "the moves to finish"
        )
        assert metric(18134, "talonflow_lifecycle_store_up") == 1.0
    finally:
        if minio_down:
            supervisor.startProcess("minio")
        service.send_signal(signal.SIGTERM)
        service.wait(30)
    assert service.returncode == 0
    assert "hot data stays local, retrying" in (tmp_path / "lifecycle.log").read_text()
    local_stack.wait_healthy()
    assert counts(config) == dict.fromkeys(("query", "duckdb", "s3+local"), total)


def test_minio_stopped_in_the_middle_of_moves_then_they_finish(
    local_stack: LocalStack, tiers: Any, tmp_path: Path
) -> None:
    configure, data = tiers
    hours = list(range(2, 40))
    total = write_hot(data, hours, files_per_hour=4, spans_per_file=60)
    config = configure(hot_for="0s", warm_for="30d", cold_for="60d")
    settings = load_config(config)
    supervisor = local_stack.stack.rpc().supervisor
    service = subprocess.Popen(
        [sys.executable, "-m", "talonflow.cli", "--config", str(config), "lifecycle", "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stopped_at = 0
    try:
        wait_until(
            lambda: len(Manifest.load(settings.data_dir, "spans").partitions) >= 3, 60, "moves to start"
        )
        supervisor.stopProcess("minio")
        stopped_at = len(Manifest.load(settings.data_dir, "spans").partitions)
        assert stopped_at < len(hours), "every move finished before MinIO went away"
        wait_until(lambda: metric(18134, "talonflow_lifecycle_store_up") == 0.0, 60, "the pass to fail")
        assert counts_without_store(config) == total  # hot rows still all on disk or in verified objects
        supervisor.startProcess("minio")
        wait_until(
            lambda: tier_rows(config) == {"hot": 0, "warm": total, "cold": 0}, 120, "the moves to finish"
        )
    finally:
        if supervisor.getProcessInfo("minio")["statename"] != "RUNNING":
            supervisor.startProcess("minio")
        service.send_signal(signal.SIGTERM)
        service.wait(30)
    local_stack.wait_healthy()
    assert counts(config) == dict.fromkeys(("query", "duckdb", "s3+local"), total)


def counts_without_store(config: Path) -> int:
    """Rows the manifest vouches for (objects) plus hot rows on disk: what exists while MinIO is away."""
    return sum(tier_rows(config).values())
