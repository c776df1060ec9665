"""Console figures: server time of each page's data request over a day of generated data, cold and warm.

    python -m bench.console [--spans 10000000] [--points 50000000] [--logs 10000000] [--runs 5]
                            [--restarts 5] [--data DIR] [--no-results-cache]

The defaults are the issue's day. Writes 24 whole hours of spans (20 agents, traces of 5 spans,
one session per trace, an LLM call in each, 2 % errors, two versions), metric points (counters
and gauges, one series per agent, metric and worker, evenly spaced), logs and heartbeat
transitions straight into hot Parquet partitions (one file per hour, as compaction leaves them),
vectorised in Polars/pyarrow with progress on stderr, and the rollups_1m the rollups flow's
arithmetic makes of the points. Then it requests every page in-process through aiohttp, and
Grafana-style `query_range`s (24 h at 60 s steps) twice: from raw points (rollups_1m moved
aside), then with the rollups (console/rollup_store.py). "cold" is the first request of each after
start-up (the OS page cache is warm: the files were just written), "warm" the p50/p95 of the next
`--runs`. Both are measured cold three ways: with the trace index, the per-file partial aggregates
and the series catalogues (console/trace_index.py, console/partials.py,
console/series_catalogue.py) empty, so that the first request builds them; after the console's
background build (console/warmer.py, timed) from empty; and after `--restarts` real restarts (a
new process each, the caches in memory lost and those on disk kept), as their p50 and p95. The
floor is the bare Polars scan every spans page needs at least: counting the day's rows.
Warm and restarted `query_range`s read the day's hours that the first one kept
(console/query_results.py); `--no-results-cache` evaluates every one instead.
`--data DIR` keeps the generated day in DIR and reuses it on the next run (the pages' windows
stay relative to now, so reuse it within the hour; query_range's follow the day).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import shutil
import sys
import tempfile
import time
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.percentiles import nearest_rank
from console import partials, query_results, series_catalogue, trace_index
from console.malloc_tuning import pin_mmap_threshold
from console.server import build_app
from console.timerange import TimeRange
from console.warmer import CATALOGUES, warm_once
from schemas.config import TalonflowConfig
from schemas.datasets import DATASETS
from tests.console_data import write_rows

AGENTS = 20
MODELS = ("claude-sonnet-4", "gpt-4o", "gpt-4o-mini")
SEVERITY_TEXT = {9: "INFO", 13: "WARN", 17: "ERROR"}
# Metric points: (OTLP name, type, monotonic) per series kind; WORKERS series of each per agent.
METRICS = (("agent.requests", "sum", True), ("agent.queue.depth", "gauge", False))
WORKERS = 100
ROW_GROUP = 128 * 1024


def _hex(rng: np.random.Generator, n: int, digits: int) -> pa.Array:
    """n random lowercase hex ids of `digits` characters (Polars encodes; a Python loop took 10 s per 1M)."""
    raw = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(digits // 2), n, [None, pa.py_buffer(rng.bytes(n * digits // 2))]
    )
    return pl.Series(raw).cast(pl.Binary).bin.encode("hex").to_arrow().cast(pa.string())


def _labelled(prefix: str, numbers: np.ndarray) -> pa.Array:
    """prefix + number as text, vectorised."""
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")


def _map(keys: list[str], values: list[pa.Array]) -> pa.MapArray:
    """A map<string, string> column with the same keys in every row."""
    n, width = len(values[0]), len(keys)
    offsets = pa.array(np.arange(0, (n + 1) * width, width, dtype=np.int32))
    key_column = pa.array(np.tile(np.array(keys, dtype=object), n), pa.string())
    interleaved = pc.take(
        pa.concat_arrays([pc.cast(v, pa.string()) for v in values]),
        pa.array((np.arange(n)[:, None] + n * np.arange(width)[None, :]).ravel()),
    )
    return pa.MapArray.from_arrays(offsets, key_column, interleaved)


def _table(dataset: str, columns: dict[str, object], n: int) -> pa.Table:
    schema = DATASETS[dataset].schema
    arrays = [pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def hour_of_spans(rng: np.random.Generator, start: datetime, n: int) -> pa.Table:
    """n spans in the hour from `start`: traces of 5 spans, one session per trace, an LLM call in each."""
    base = int(start.timestamp() * 1e9)
    starts = base + np.sort(rng.integers(0, 3600 * 10**9, n))
    durations = rng.lognormal(np.log(80e6), 0.8, n).astype(np.int64)
    agent = rng.integers(0, AGENTS, n)
    llm = np.arange(n) % 5 == 1
    model = pa.array(np.array(MODELS)[rng.integers(0, len(MODELS), n)], pa.string(), mask=~llm)
    traces = pc.take(_hex(rng, n // 5 + 1, 32), pa.array(np.arange(n) // 5))
    sessions = pc.binary_join_element_wise("s-", pc.utf8_slice_codeunits(traces, 0, 8), "")
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
        "kind": pa.nulls(n, pa.string()).fill_null("INTERNAL"),
        "status_code": np.where(rng.random(n) < 0.02, "ERROR", "UNSET"),
        "service_name": _labelled("agent-", agent),
        "service_instance_id": _labelled("i-", agent),
        "service_version": np.where(rng.random(n) < 0.5, "1.0", "1.1"),
        "gen_ai_request_model": model,
        "gen_ai_usage_input_tokens": pa.array(rng.integers(200, 4000, n), pa.int64(), mask=~llm),
        "gen_ai_usage_output_tokens": pa.array(rng.integers(20, 800, n), pa.int64(), mask=~llm),
        "attributes": _map(["session.id"], [sessions]),
    }
    return _table("spans", columns, n)


def hour_of_metrics(start: datetime, n: int) -> pa.Table:
    """About n points in the hour from `start`: every series sampled at the same even interval."""
    series = AGENTS * len(METRICS) * WORKERS
    per_series = max(1, n // series)
    step = 3600 * 10**9 // per_series
    times = int(start.timestamp() * 1e9) + step // 2 + np.repeat(np.arange(per_series) * step, series)
    # Off the minute boundaries (as agents' clocks are), else query_range could not read rollups
    # (console/rollup_store.py): a point on one belongs to that step but to the next minute's rollup.
    times += (times // 1_000_000 % 60_000 == 0) * 1_000_000
    ids = np.tile(np.arange(series), per_series)
    agent, kind, worker = ids // (len(METRICS) * WORKERS), ids // WORKERS % len(METRICS), ids % WORKERS
    elapsed = (times - times[0]) / 1e9 + start.hour * 3600
    value = np.where(kind == 0, np.floor(elapsed * (1 + worker % 7)), (ids * 7 + elapsed) % 50)
    names = np.array([m[0] for m in METRICS])[kind]
    rows = len(times)
    columns = {
        "time": pa.array(times, pa.timestamp("ns", "UTC")),
        "start_time": pa.array(
            np.full(rows, int(start.timestamp() * 1e9) - start.hour * 3600 * 10**9), pa.timestamp("ns", "UTC")
        ),
        "metric_name": names,
        "unit": np.where(kind == 0, "1", "{request}"),
        "type": np.array([m[1] for m in METRICS])[kind],
        "temporality": np.where(kind == 0, "cumulative", ""),
        "is_monotonic": np.array([m[2] for m in METRICS])[kind],
        "value": value,
        "service_name": _labelled("agent-", agent),
        "service_instance_id": _labelled("i-", agent),
        "resource_attributes": _map(
            ["service.name", "service.instance.id"], [_labelled("agent-", agent), _labelled("i-", agent)]
        ),
        "attributes": _map(["worker"], [pc.cast(pa.array(worker), pa.string())]),
    }
    return _table("metrics", columns, rows)


def hour_of_logs(rng: np.random.Generator, start: datetime, n: int) -> pa.Table:
    base = int(start.timestamp() * 1e9)
    times = pa.array(base + np.sort(rng.integers(0, 3600 * 10**9, n)), pa.timestamp("ns", "UTC"))
    levels = np.array(sorted(SEVERITY_TEXT), dtype=np.int32)
    level = rng.choice(np.array([0, 0, 0, 1, 2]), n)
    columns = {
        "time": times,
        "observed_time": times,
        "severity_number": levels[level],
        "severity_text": pc.take(pa.array([SEVERITY_TEXT[int(v)] for v in levels]), pa.array(level)),
        "body": _labelled("step finished in ms=", rng.integers(1, 5000, n)),
        "trace_id": _hex(rng, n, 32),
        "span_id": _hex(rng, n, 16),
        "service_name": _labelled("agent-", rng.integers(0, AGENTS, n)),
    }
    return _table("logs", columns, n)


def fill_day(data: Path, spans: int, points: int, logs: int, now: datetime) -> str:
    """Writes the 24 whole hours before `now`; returns a trace id of the last one, to open."""
    rng = np.random.default_rng(1)
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=24)  # 24 whole past hours
    trace = ""
    started = time.perf_counter()
    for hour in range(24):
        start = first + timedelta(hours=hour)
        folder = f"date={start:%Y-%m-%d}/hour={start.hour:02d}"
        for dataset, table in (
            ("spans", hour_of_spans(rng, start, spans // 24)),
            ("metrics", hour_of_metrics(start, points // 24)),
            ("logs", hour_of_logs(rng, start, logs // 24)),
        ):
            path = data / dataset / folder / "bench.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            ordered = table.sort_by([(c, "ascending") for c in DATASETS[dataset].sort_by])
            pq.write_table(ordered, path, compression="zstd", row_group_size=ROW_GROUP)
            if dataset == "spans":
                trace = str(table["trace_id"][0])  # the last hour's: inside every range
        print(f"generated hour {hour + 1}/24 in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    beats = [
        {"time": first + timedelta(hours=h), "component": f"agent-{a}", "service_name": f"agent-{a}",
         "service_instance_id": f"i-{a}", "state": ("up", "late")[h % 2], "last_seen": now}
        for a in range(AGENTS) for h in range(0, 24, 3)
    ]  # fmt: skip
    write_rows(data, "heartbeats", beats)
    return trace


def fill_rollups(data: Path) -> None:
    """rollups_1m of each hour of metric points that has none yet, as the rollups flow's arithmetic
    makes them (tests/metric_data.py; minutes never cross an hour), so query_range can be measured
    on both paths. Idempotent: a run killed half-way resumes where it stopped."""
    from tests.metric_data import rollups_of

    started = time.perf_counter()
    for source in sorted((data / "metrics").glob("date=*/hour=*/bench.parquet")):
        target = data / "rollups_1m" / source.parent.relative_to(data / "metrics") / "bench.parquet"
        if target.exists():
            continue
        rollups = rollups_of(pq.read_table(source))
        ordered = rollups.sort_by([(c, "ascending") for c in DATASETS["rollups_1m"].sort_by])
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(ordered, target.with_suffix(".tmp"), compression="zstd", row_group_size=ROW_GROUP)
        target.with_suffix(".tmp").rename(target)
        print(f"rolled up {source.parent} in {time.perf_counter() - started:.0f} s", file=sys.stderr)


PAGES = (
    "/?range=24h",
    "/service/agent-3?range=24h",
    "/traces?range=24h",
    "/traces?range=24h&service=agent-5&status=ERROR",
    "/traces?range=24h&min_ms=2000",
    "/traces/{trace}?range=24h",
    "/traces/{trace}",
    "/sessions?range=1h",
    "/sessions/s-{session}?range=24h",
    "/logs?range=24h&severity=error",
    "/logs?range=24h&q=ms%3D4999",
    "/alerts?range=24h",
    "/compare?range=24h&baseline=service.version%3D1.0&candidate=service.version%3D1.1",
)
QUERIES = (  # Grafana's query_range over the whole day at 60 s steps, one agent's 100 series each
    'sum by (job) (rate(agent_requests_total{job="agent-3"}[5m]))',
    'max by (job) (agent_queue_depth{job="agent-3"})',
)


def requests(trace: str, now: datetime) -> list[str]:
    end = now.replace(second=0, microsecond=0)
    span = {"start": str((end - timedelta(hours=24)).timestamp()), "end": str(end.timestamp()), "step": "60"}
    pages = [p.format(trace=trace, session=trace[:8]) for p in PAGES]
    return pages + [f"/api/v1/query_range?{urlencode({'query': q, **span})}" for q in QUERIES]


async def first_views(config: TalonflowConfig, paths: list[str]) -> dict[str, float]:
    """The first request of each path, in ms, in a fresh app (a failing one `measure` reports)."""
    from aiohttp.test_utils import TestClient, TestServer

    took = {}
    async with TestClient(TestServer(build_app(config))) as client:
        for path in paths:
            started = time.perf_counter()
            await (await client.get(path)).read()
            took[path] = (time.perf_counter() - started) * 1e3
    return took


def forget_cached(config: TalonflowConfig) -> None:
    """A first start: nothing kept in memory or beside the state (series catalogues included)."""
    shutil.rmtree(config.state_dir, ignore_errors=True)
    forget_memory()


def forget_memory() -> None:
    """What a first start has lost beyond the state_dir: the caches in memory and the queries
    pages ran."""
    partials._memory.clear()
    partials._recent.clear()
    trace_index._cache.clear()
    series_catalogue._memory.clear()
    query_results._memory.clear()


def _restarted_views(config: TalonflowConfig, paths: list[str]) -> dict[str, float]:
    """`first_views` in a new interpreter (as `talonflow console` starts it), state_dir kept."""
    pin_mmap_threshold()
    return asyncio.run(first_views(config, paths))


def restarted_views(config: TalonflowConfig, paths: list[str], restarts: int) -> dict[str, list[float]]:
    """Each path's first request in `restarts` new processes: a restart's cold, which a cleared
    cache in this process understates (its allocator, imports and Polars' thread pool are warm)."""
    took: dict[str, list[float]] = {path: [] for path in paths}
    spawn = multiprocessing.get_context("spawn")
    for restart in range(restarts):
        with spawn.Pool(1) as pool:
            for path, ms in pool.apply(_restarted_views, (config, paths)).items():
                took[path].append(ms)
        print(f"restart {restart + 1}/{restarts} measured", file=sys.stderr, flush=True)
    return took


def percentiles(times: list[float]) -> tuple[float, float]:
    """p50 and p95 of a few samples."""
    return nearest_rank(times, 0.5), nearest_rank(times, 0.95)


async def measure(
    config: TalonflowConfig, paths: list[str], runs: int, figures: dict[str, list[float]] | None = None
) -> int:
    """Prints each request's figures as soon as they are measured (and adds cold, warm p50 and p95
    ms to `figures`); returns how many requests failed."""
    from aiohttp.test_utils import TestClient, TestServer

    failed = 0
    async with TestClient(TestServer(build_app(config))) as client:
        for path in paths:
            times = []
            for _ in range(runs + 1):
                started = time.perf_counter()
                response = await client.get(path)
                body = await response.read()
                times.append(time.perf_counter() - started)
                if response.status != 200:
                    break
            if response.status != 200:  # a broken page is reported, the others still measured
                failed += 1
                print(f"{path:<100} HTTP {response.status}: {body[:200].decode(errors='replace')!r}")
                continue
            p50, p95 = percentiles([t * 1e3 for t in times[1:]])
            print(f"{path[:100]:<100} {times[0] * 1e3:8.0f} {p50:9.0f} {p95:9.0f}", flush=True)
            if figures is not None:
                figures[path] = [times[0] * 1e3, p50, p95]
    return failed


def cold_and_warm(
    config: TalonflowConfig,
    paths: list[str],
    runs: int,
    restarts: int,
    datasets: Collection[str] | None = None,
) -> int:
    """Each request's first time with a truly empty cache, then after the console's background
    build (console/warmer.py over `datasets`, timed) and its warm p50/p95, then the p50/p95 of
    its first time after `restarts` restarts with the cache on disk."""
    forget_cached(config)  # cold means no trace index or catalogue stored yet either
    empty = asyncio.run(first_views(config, paths))
    forget_cached(config)
    built = warm_once(config, datasets=datasets)
    print(f"background build of the caches from empty: {built.seconds:.1f} s ({built})")
    print(f"{'request, after the background build':<100} {'cold ms':>8} {'warm p50':>9} {'warm p95':>9}")
    figures: dict[str, list[float]] = {}
    failed = asyncio.run(measure(config, paths, runs, figures))
    restarted = restarted_views(config, paths, restarts)
    print(
        "\n| request | cold, empty cache | cold, after the build",
        f"| cold, restarted p50 / p95 of {restarts} | warm p50 | warm p95 |",
    )
    print("|---|---|---|---|---|---|")
    for path, (cold, p50, p95) in figures.items():
        restart = " / ".join(f"{ms:,.0f}" for ms in percentiles(restarted[path]))
        print(f"| `{path[:90]}` | {empty[path]:,.0f} | {cold:,.0f} | {restart} | {p50:,.0f} | {p95:,.0f} |")
    return failed


def live_refreshes(config: TalonflowConfig, trace: str, day: datetime, refreshes: int) -> None:
    """A live dashboard over the generated day: the day's end taken as now, so the hours within
    `console.results_freshness` of it are evaluated at every refresh and the older ones read from
    what was kept; the window moves a minute per refresh. Prints each query's first request and
    the p50/p95 of the refreshes after it."""
    behind = (datetime.now(UTC) - day).total_seconds()
    console = config.console.model_copy(
        update={"results_freshness": config.console.results_freshness + behind}
    )
    config = config.model_copy(update={"console": console})
    steps = [requests(trace, day - timedelta(minutes=refreshes - i)) for i in range(refreshes + 1)]
    print(f"\na live dashboard's refreshes ({refreshes}, the window a minute later each):")
    print("| request | first | refresh p50 | refresh p95 |\n|---|---|---|---|")
    for query in range(len(QUERIES)):
        paths = [[p for p in step if p.startswith("/api/")][query] for step in steps]
        took = asyncio.run(first_views(config, paths))
        times = [took[p] for p in paths]
        p50, p95 = percentiles(times[1:])
        print(f"| `{QUERIES[query]}` | {times[0]:,.0f} | {p50:,.0f} | {p95:,.0f} |")


def floor_ms(config: TalonflowConfig, now: datetime) -> float:
    """Counting the day's spans through the same tier-aware scan: the least a spans page costs."""
    from console.scan import scan

    window = TimeRange(now - timedelta(hours=24), now, "24h")
    started = time.perf_counter()
    scan(config, "spans", window).select(pl.len()).collect()
    return (time.perf_counter() - started) * 1e3


def prepared(root: Path, args: argparse.Namespace, now: datetime) -> str:
    """The generated day in `root` (made now, or reused when `root` has one): the trace id to open."""
    marker = root / "bench-console.json"
    asked = {"spans": args.spans, "points": args.points, "logs": args.logs}
    if marker.exists() and (kept := json.loads(marker.read_text()))["asked"] == asked:
        print(f"reusing the day generated at {kept['now']} in {root}", file=sys.stderr)
        if not args.no_query_range:  # the pages read no rollups_1m
            fill_rollups(root / "data")  # days generated before the rollups were
        return str(kept["trace"])
    started = time.perf_counter()
    trace = fill_day(root / "data", args.spans, args.points, args.logs, now)
    took = time.perf_counter() - started
    print(
        f"generated {args.spans:,} spans, {args.points:,} points and {args.logs:,} logs",
        f"over 24 h in {took:.1f} s",
    )
    fill_rollups(root / "data")
    marker.write_text(json.dumps({"asked": asked, "trace": trace, "now": now.isoformat()}))
    return trace


def run(root: Path, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    trace = prepared(root, args, now)
    console = {"results_cache": 0} if args.no_results_cache else {}
    config = TalonflowConfig(data_dir=root / "data", state_dir=root / "state", console=console)
    print(f"floor: count the day's spans through the scan: {floor_ms(config, now):.0f} ms")
    paths = requests(trace, now)
    pages = [p for p in paths if not p.startswith("/api/")]
    failed = 0 if args.query_range_only else cold_and_warm(config, pages, args.runs, args.restarts)
    if args.no_query_range:
        return 1 if failed else 0
    # Over the generated day's own 24 h (a reused day's windows drift from now, its points don't).
    day = datetime.fromisoformat(json.loads((root / "bench-console.json").read_text())["now"])
    ranges = [p for p in requests(trace, day) if p.startswith("/api/")]
    rollups, aside = config.data_dir / "rollups_1m", config.data_dir / "rollups_1m.aside"
    print("\nquery_range from raw points (rollups_1m moved aside):")
    rollups.rename(aside)
    try:
        failed += cold_and_warm(config, ranges, args.runs, args.restarts, CATALOGUES)
    finally:
        aside.rename(rollups)
    print("\nquery_range with rollups_1m (eligible queries read them):")
    failed += cold_and_warm(config, ranges, args.runs, args.restarts, CATALOGUES)
    if config.console.results_cache:
        live_refreshes(config, trace, day, args.runs)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--points", type=int, default=50_000_000)
    parser.add_argument("--logs", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--restarts", type=int, default=5, help="new processes measured cold")
    parser.add_argument("--data", type=Path, help="keep the generated day here and reuse it")
    parser.add_argument("--no-query-range", action="store_true", help="pages only")
    parser.add_argument("--query-range-only", action="store_true", help="query_range only, no pages")
    parser.add_argument(
        "--no-results-cache",
        action="store_true",
        help="query_range evaluated every time (console.results_cache: 0), not read from kept hours",
    )
    args = parser.parse_args()
    pin_mmap_threshold()  # as `talonflow console` does: its large arrays are mapped afresh each time
    if args.data:
        args.data.mkdir(parents=True, exist_ok=True)
        return run(args.data, args)
    with tempfile.TemporaryDirectory(prefix="talonflow-bench-console-") as root:
        return run(Path(root), args)


if __name__ == "__main__":
    raise SystemExit(main())
