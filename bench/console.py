"""Console figures: server time of each page's request over a day of generated data, cold and warm.

    python -m bench.console [--spans 1000000] [--logs 1000000] [--runs 5]

Writes a day of spans (20 agents, sessions, LLM and tool calls, 2 % errors, two versions),
logs and heartbeat transitions straight into hot Parquet partitions (one file per hour, as
compaction leaves them), then requests every page in-process through aiohttp. "cold" is the
first request of each page after start-up, "warm" the p50/p95 of the next `--runs`. The floor
is the bare Polars scan every spans page needs at least: counting the day's rows.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from console.server import build_app
from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from schemas.datasets import DATASETS
from tests.console_data import write_rows

AGENTS = 20
MODELS = ("claude-sonnet-4", "gpt-4o", "gpt-4o-mini")
SEVERITY_TEXT = {9: "INFO", 13: "WARN", 17: "ERROR"}


def _hex(rng: np.random.Generator, n: int, digits: int) -> np.ndarray:
    return np.array([f"{v:0{digits}x}" for v in rng.integers(0, 2**62, n)])


def _attributes(keys: str, values: np.ndarray) -> pa.MapArray:
    offsets = pa.array(np.arange(len(values) + 1, dtype=np.int32))
    return pa.MapArray.from_arrays(offsets, pa.array([keys] * len(values)), pa.array(values))


def hour_of_spans(rng: np.random.Generator, start: datetime, n: int) -> pa.Table:
    """n spans in the hour from `start`: traces of 5 spans, one session per trace, an LLM call in each."""
    base = int(start.timestamp() * 1e9)
    starts = base + np.sort(rng.integers(0, 3600 * 10**9, n))
    durations = rng.lognormal(np.log(80e6), 0.8, n).astype(np.int64)
    agent = rng.integers(0, AGENTS, n)
    llm = np.arange(n) % 5 == 1
    model = pa.array(np.array(MODELS)[rng.integers(0, len(MODELS), n)], pa.string(), mask=~llm)
    traces = _hex(rng, n // 5 + 1, 32).repeat(5)[:n]
    sessions = np.char.add("s-", traces.astype(str).astype("<U8"))
    columns = {
        "start_time": pa.array(starts, pa.timestamp("ns", "UTC")),
        "end_time": pa.array(starts + durations, pa.timestamp("ns", "UTC")),
        "duration_ns": durations,
        "trace_id": traces,
        "span_id": _hex(rng, n, 16),
        "parent_span_id": np.where(np.arange(n) % 5 == 0, "", "0" * 16),
        "name": np.where(
            llm, "chat", np.array(["invoke_agent", "execute_tool", "retrieve", "plan"])[agent % 4]
        ),
        "kind": np.full(n, "INTERNAL"),
        "status_code": np.where(rng.random(n) < 0.02, "ERROR", "UNSET"),
        "service_name": np.char.add("agent-", agent.astype(str)),
        "service_instance_id": np.char.add("i-", agent.astype(str)),
        "service_version": np.where(rng.random(n) < 0.5, "1.0", "1.1"),
        "gen_ai_request_model": model,
        "gen_ai_usage_input_tokens": pa.array(rng.integers(200, 4000, n), pa.int64(), mask=~llm),
        "gen_ai_usage_output_tokens": pa.array(rng.integers(20, 800, n), pa.int64(), mask=~llm),
        "attributes": _attributes("session.id", sessions),
    }
    schema = DATASETS["spans"].schema
    arrays = [pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def hour_of_logs(rng: np.random.Generator, start: datetime, n: int) -> pa.Table:
    base = int(start.timestamp() * 1e9)
    times = pa.array(base + np.sort(rng.integers(0, 3600 * 10**9, n)), pa.timestamp("ns", "UTC"))
    severity = rng.choice(np.array([9, 9, 9, 13, 17], dtype=np.int32), n)
    columns = {
        "time": times,
        "observed_time": times,
        "severity_number": severity,
        "severity_text": np.array([SEVERITY_TEXT[v] for v in severity.tolist()]),
        "body": np.char.add("step finished in ms=", rng.integers(1, 5000, n).astype(str)),
        "trace_id": _hex(rng, n, 32),
        "span_id": _hex(rng, n, 16),
        "service_name": np.char.add("agent-", rng.integers(0, AGENTS, n).astype(str)),
    }
    schema = DATASETS["logs"].schema
    arrays = [pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def fill_day(data: Path, spans: int, logs: int, now: datetime) -> str:
    """Writes the 24 whole hours before `now`; returns a trace id of the last one, to open."""
    rng = np.random.default_rng(1)
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=24)  # 24 whole past hours
    trace = ""
    for hour in range(24):
        start = first + timedelta(hours=hour)
        folder = f"date={start:%Y-%m-%d}/hour={start.hour:02d}"
        for dataset, table in (
            ("spans", hour_of_spans(rng, start, spans // 24)),
            ("logs", hour_of_logs(rng, start, logs // 24)),
        ):
            path = data / dataset / folder / "bench.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            ordered = table.sort_by([(c, "ascending") for c in DATASETS[dataset].sort_by])
            pq.write_table(ordered, path, compression="zstd", row_group_size=128 * 1024)
            if dataset == "spans":
                trace = str(table["trace_id"][0])  # the last hour's: inside every range
    beats = [
        {"time": first + timedelta(hours=h), "component": f"agent-{a}", "service_name": f"agent-{a}",
         "service_instance_id": f"i-{a}", "state": ("up", "late")[h % 2], "last_seen": now}
        for a in range(AGENTS) for h in range(0, 24, 3)
    ]  # fmt: skip
    write_rows(data, "heartbeats", beats)
    return trace


PAGES = (
    "/?range=24h",
    "/service/agent-3?range=24h",
    "/traces?range=24h",
    "/traces?range=24h&service=agent-5&status=ERROR",
    "/traces?range=24h&min_ms=2000",
    "/traces/{trace}?range=24h",
    "/sessions?range=1h",
    "/logs?range=24h&severity=error",
    "/logs?range=24h&q=ms%3D4999",
    "/alerts?range=24h",
    "/compare?range=24h&baseline=service.version%3D1.0&candidate=service.version%3D1.1",
)


async def measure(config: TalonflowConfig, trace: str, runs: int) -> list[tuple[str, float, float, float]]:
    from aiohttp.test_utils import TestClient, TestServer

    figures = []
    async with TestClient(TestServer(build_app(config))) as client:
        for page in PAGES:
            path = page.format(trace=trace)
            times = []
            for _ in range(runs + 1):
                started = time.perf_counter()
                response = await client.get(path)
                await response.read()
                times.append(time.perf_counter() - started)
                if response.status != 200:
                    raise SystemExit(f"{path}: HTTP {response.status}")
            warm = sorted(times[1:])
            p95 = warm[min(len(warm) - 1, round(0.95 * (len(warm) - 1)))]
            figures.append((path, times[0] * 1e3, statistics.median(warm) * 1e3, p95 * 1e3))
    return figures


def floor_ms(config: TalonflowConfig, now: datetime) -> float:
    """Counting the day's spans through the same tier-aware scan: the least a spans page costs."""
    from console.scan import scan

    window = TimeRange(now - timedelta(hours=24), now, "24h")
    started = time.perf_counter()
    scan(config, "spans", window).select(pl.len()).collect()
    return (time.perf_counter() - started) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--logs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="talonflow-bench-console-") as root:
        config = TalonflowConfig(data_dir=Path(root) / "data", state_dir=Path(root) / "state")
        started = time.perf_counter()
        trace = fill_day(config.data_dir, args.spans, args.logs, now)
        took = time.perf_counter() - started
        print(f"generated {args.spans:,} spans and {args.logs:,} logs over 24 h in {took:.1f} s")
        print(f"floor: count the day's spans through the scan: {floor_ms(config, now):.0f} ms")
        print(f"{'page':<90} {'cold ms':>8} {'warm p50':>9} {'warm p95':>9}")
        for path, cold, p50, p95 in asyncio.run(measure(config, trace, args.runs)):
            print(f"{path:<90} {cold:8.0f} {p50:9.0f} {p95:9.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
