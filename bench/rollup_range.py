"""query_range over a day at 60 s steps: raw points against the 1-minute rollups, side by side.

    python -m bench.rollup_range [--jobs 25] [--queues 8] [--every 15] [--runs 5]

Writes 24 whole hours of a fleet (per job: `queue.depth` gauges, a `tasks` counter and a
`sessions.open` up-down sum, a point every `--every` s: 25 jobs x 10 series x 5,760 = 1.44M
points) into hot Parquet, and the rollups_1m the rollups flow's arithmetic makes of them. Each
query then goes through the console's /api/v1/query_range in-process (aiohttp), first with the
rollups dataset moved away (every series from raw points, as before console/rollup_store.py),
then with it in place. "cold" is the first request, "warm" the p50/p95 of the next `--runs`; the
answers of both paths must be equal, or the bench fails.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.console import percentiles
from console.server import build_app
from schemas.config import TalonflowConfig
from tests.metric_data import fleet_points, rollups_of, write_table

QUERIES = (
    "sum by (job) (queue_depth)",
    'max by (job) (queue_depth{job="agent-3"})',
    "tasks_total",
    "sum(sessions_open)",
    "sum by (job) (rate(tasks_total[5m]))",  # not eligible: raw both times (the control)
)


async def measure(
    config: TalonflowConfig, paths: list[str], runs: int
) -> list[tuple[float, float, float, Any]]:
    from aiohttp.test_utils import TestClient, TestServer

    figures = []
    async with TestClient(TestServer(build_app(config))) as client:
        for path in paths:
            times, body = [], None
            for _ in range(runs + 1):
                started = time.perf_counter()
                response = await client.get(path)
                body = await response.json()
                times.append((time.perf_counter() - started) * 1e3)
                if response.status != 200:
                    raise SystemExit(f"{path}: HTTP {response.status}: {body}")
            figures.append((times[0], *percentiles(times[1:]), body))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rollup_range", description=__doc__)
    parser.add_argument("--jobs", type=int, default=25)
    parser.add_argument("--queues", type=int, default=8)
    parser.add_argument("--every", type=int, default=15, help="seconds between an agent's points")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(hours=24)
    with tempfile.TemporaryDirectory(prefix="talonflow-bench-rollups-") as root:
        config = TalonflowConfig(data_dir=Path(root) / "data", state_dir=Path(root) / "state")
        started = time.perf_counter()
        points = fleet_points(args.jobs, args.queues, start, 24 * 60, args.every, 7.5)
        write_table(config.data_dir, "metrics", points)
        rollups = rollups_of(points)
        write_table(config.data_dir, "rollups_1m", rollups)
        took = time.perf_counter() - started
        print(f"generated {points.num_rows:,} points and {rollups.num_rows:,} rollup rows in {took:.1f} s")
        window = {"start": str(start.timestamp()), "end": str(end.timestamp()), "step": "60"}
        paths = [f"/api/v1/query_range?{urlencode({'query': q, **window})}" for q in QUERIES]
        aside = config.data_dir / "rollups_1m.aside"
        (config.data_dir / "rollups_1m").rename(aside)
        raw = asyncio.run(measure(config, paths, args.runs))
        aside.rename(config.data_dir / "rollups_1m")
        rolled = asyncio.run(measure(config, paths, args.runs))
    columns = ("raw cold", "p50", "p95", "rollups cold", "p50", "p95")
    widths = (9, 7, 7, 13, 7, 7)
    print(
        f"{'query_range, 24 h at 60 s (ms)':<48}",
        *(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)),
    )
    for query, before, after in zip(QUERIES, raw, rolled, strict=True):
        figures = (*before[:3], *after[:3])
        print(f"{query:<48}", *(f"{f:{w}.0f}" for f, w in zip(figures, widths, strict=True)))
        if before[3] != after[3]:
            print(f"  answers differ for {query}")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
