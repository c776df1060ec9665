"""Lifecycle figures: compaction + upload MB/s, files before and after, the same query hot vs warm.

    python -m bench.lifecycle [--hours 12] [--files 30] [--spans 500]

Writes `--hours` hot partitions of `--files` small ingest-style files each, then times one
hot → warm pass (compact, upload, verify) and one warm → cold pass against a real MinIO, and
runs the same SQL over the data while hot (local disk) and while warm (MinIO).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.ingest import spans_request
from bench.stack import bench_stack, stack_settings
from schemas.config import TalonflowConfig, load_config
from schemas.datasets import SPANS
from schemas.flatten import KafkaRecord, flatten
from sinks.lifecycle import LifecycleMetrics, Mover
from sinks.parquet import partition_dir, split_by_hour, write_atomically
from sinks.tiers import Manifest, StoredObject, minio_client
from talonflow.query import run_query

SQL = "SELECT service_name, name, count(*) AS n, avg(duration_ns) AS avg_ns FROM spans GROUP BY 1, 2"


def fill_hot(data: Path, hours: int, files: int, spans: int) -> None:
    now_hour = int(time.time()) // 3600 * 3600
    for hour in range(hours):
        start_ns = (now_hour - (hour + 2) * 3600 + 60) * 10**9
        for index in range(files):
            body = spans_request(spans, start_ns + index * 10**6, hour * files + index)
            record = KafkaRecord("otlp_spans", 0, index, int(time.time() * 1000), b"k", body)
            for hour_ns, rows in split_by_hour(flatten([record]).tables["spans"], SPANS):
                name = f"otlp_spans-{hour}-{index:020d}-{index:020d}.parquet"
                write_atomically(rows, partition_dir(data, "spans", hour_ns) / name, 128 * 1024)


def local_bytes(data: Path) -> tuple[int, int]:
    files = list(data.glob("spans/*/*/*.parquet"))
    return len(files), sum(f.stat().st_size for f in files)


def timed_query(config: TalonflowConfig, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run_query(config, SQL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=int, default=12)
    parser.add_argument("--files", type=int, default=30, help="small files per hour partition")
    parser.add_argument("--spans", type=int, default=500, help="spans per file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="talonflow-bench-lifecycle-") as tmp:
        folder = Path(tmp)
        path = folder / "talonflow.yaml"
        document = stack_settings(folder)
        spans_policy = {"hot_for": "0s", "warm_for": "100d", "cold_for": "200d"}
        document["lifecycle"] |= {"grace": "0s", "policies": {"spans": spans_policy}}
        # the bench moves data itself, timed
        with bench_stack(path, document, stopped=("ingest", "lifecycle")) as stack:
            config = stack.config
            print(f"writing {args.hours} x {args.files} files of {args.spans} spans", file=sys.stderr)
            fill_hot(config.data_dir, args.hours, args.files, args.spans)
            files_before, bytes_before = local_bytes(config.data_dir)
            query_hot = timed_query(config)
            mover = Mover(config, minio_client(config.minio), LifecycleMetrics(), progress=True)
            started = time.perf_counter()
            mover.run_pass()
            to_warm = time.perf_counter() - started
            mover.run_pass()  # grace 0: the local copies go now
            manifest_objects = stored_objects(config)
            warm_bytes = sum(o.bytes for o in manifest_objects)
            query_warm = timed_query(config)
            spans_policy["warm_for"] = "0s"
            path.write_text(yaml.safe_dump(document))
            config = load_config(path)
            mover = Mover(config, minio_client(config.minio), LifecycleMetrics(), progress=True)
            started = time.perf_counter()
            mover.run_pass()
            to_cold = time.perf_counter() - started
            cold_bytes = sum(o.bytes for o in stored_objects(config))
            query_cold = timed_query(config)
    mb = bytes_before / 1e6
    print(f"hot:  {files_before} files, {mb:.1f} MB on local disk")
    print(f"warm: {len(manifest_objects)} objects, {warm_bytes / 1e6:.1f} MB (zstd 3, sorted)")
    print(f"cold: {args.hours} objects, {cold_bytes / 1e6:.1f} MB (zstd 19)")
    print(
        f"hot -> warm (read, compact, upload, verify): {to_warm:.2f} s, {mb / to_warm:.1f} MB/s of hot input"
    )
    print(
        f"warm -> cold (download, recompact, upload, verify): {to_cold:.2f} s, "
        f"{warm_bytes / 1e6 / to_cold:.1f} MB/s"
    )
    print(
        f"query hot {query_hot * 1000:.0f} ms, warm {query_warm * 1000:.0f} ms, "
        f"cold {query_cold * 1000:.0f} ms"
    )
    print(f"  ({SQL}; median of 5)")
    return 0


def stored_objects(config: TalonflowConfig) -> list[StoredObject]:
    manifest = Manifest.load(config.data_dir, "spans")
    return [o for p in manifest.partitions.values() for o in p.objects]


if __name__ == "__main__":
    sys.exit(main())
