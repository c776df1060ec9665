"""PromQL engine and rule evaluation: talonflow's engine beside promtool (Prometheus 2.42's, in Go).

    python -m bench.promql [--series 100000] [--rules 100] [--samples 21] [--evaluations 3]

1. Samples/s: `rate(m[5m])` over every series at one instant (each window holds --samples
   points at 15 s), in process.
2. Rule evaluations/s: one group of --rules rules (half recording `sum by (job) (rate(...))`,
   half alerting `rate(...) > x`, each over --series / --rules series), evaluated --evaluations
   times, in process.
3. The peer: the same rules and series as a promtool unit-test file, run by `promtool test rules`
   and by `talonflow rules test` (the same evaluation schedule; wall time of the whole run, with
   loading), side by side.
4. query_range over 24 h at 60 s of --range-series gauges and counters (a point every 15 s), in
   process: range_query (all steps at once) beside the engine's per-step path (eval() at every
   step, how range_query ran before), which must give the same answer. `--range-only` runs this
   part alone.
5. The raw metric store (console/metric_store.py) over --small-files hot files of 5 s commits (as
   ingest leaves a partition before compaction): `sum by (job) (queue_depth)` over the last 10
   minutes at 10 s, in process, warm p50 of --small-runs, beside the floor: one bare Polars scan of
   the same files reading the metric's points. `--small-only` runs this part alone.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import yaml

from promql import Matrix, MemoryStorage, Vector, instant_query, labels_of, parse, range_query
from promql.engine import DEFAULT_LOOKBACK_MS, DEFAULT_SUBQUERY_STEP_MS, _Evaluator
from rules.evaluation import GroupEvaluator
from rules.templates import TemplateContext
from rules.unit_tests import run_files
from schemas.prometheus_rules import parse_prometheus_rules

STEP_MS = 15_000
DAY_MS, RANGE_STEP_MS = 86_400_000, 60_000
RANGE_QUERIES = (
    'max by (job) (gauge{job="j3"})',
    "sum by (job) (gauge)",
    "avg without (instance) (gauge) * 2 > 10",
    "sum by (job) (rate(counter[5m]))",
)


def build_storage(series: int, rules: int, samples: int) -> MemoryStorage:
    storage = MemoryStorage()
    per_metric = max(1, series // rules)
    for metric in range(rules):
        for i in range(per_metric):
            labels = labels_of(
                {"__name__": f"bench_{metric}_total", "job": f"j{i % 10}", "instance": f"{metric}-{i}"}
            )
            for k in range(samples):
                storage.append(labels, k * STEP_MS, float(k * (i % 7 + 1)))
    return storage


def rule_group(rules: int) -> dict[str, object]:
    body = []
    for metric in range(rules):
        if metric % 2:
            body.append(
                {"alert": f"Bench{metric}", "expr": f"rate(bench_{metric}_total[5m]) > 0.2", "for": "1m"}
            )
        else:
            body.append(
                {
                    "record": f"job:bench_{metric}:rate5m",
                    "expr": f"sum by (job) (rate(bench_{metric}_total[5m]))",
                }
            )
    return {"groups": [{"name": "bench", "interval": "15s", "rules": body}]}


def bench_samples(storage: MemoryStorage, samples: int, series: int) -> float:
    end = (samples - 1) * STEP_MS
    start = time.perf_counter()
    result = instant_query('rate({__name__=~"bench_.*"}[5m])', end, storage)
    elapsed = time.perf_counter() - start
    assert isinstance(result, Vector) and len(result.labels) == series
    return series * samples / elapsed


def bench_rules(storage: MemoryStorage, rules: int, samples: int, evaluations: int) -> float:
    context = TemplateContext(storage)
    (group,) = parse_prometheus_rules(rule_group(rules), "bench.yml", context.funcs())
    evaluator = GroupEvaluator(group, storage, context)
    end = (samples - 1) * STEP_MS
    start = time.perf_counter()
    for n in range(evaluations):
        assert evaluator.evaluate(end + n * STEP_MS).errors == []
    return rules * evaluations / (time.perf_counter() - start)


def bench_peer(series: int, rules: int, samples: int, evaluations: int) -> tuple[float, float | None]:
    """Wall seconds of `talonflow rules test` and `promtool test rules` on the same file."""
    per_metric = max(1, series // rules)
    with tempfile.TemporaryDirectory() as tmp:
        rules_path, test_path = Path(tmp, "rules.yml"), Path(tmp, "test.yml")
        rules_path.write_text(yaml.safe_dump(rule_group(rules)))
        inputs = [
            {
                "series": f'bench_{m}_total{{job="j{i % 10}", instance="{m}-{i}"}}',
                "values": f"0+{i % 7 + 1}x{samples - 1}",
            }
            for m in range(rules)
            for i in range(per_metric)
        ]
        last = (samples - 1 + evaluations - 1) * STEP_MS // 1000
        test = {
            "rule_files": ["rules.yml"],
            "evaluation_interval": "15s",
            "tests": [{"interval": "15s", "input_series": inputs,
                       "promql_expr_test": [{"expr": "vector(1)", "eval_time": f"{last}s",
                                             "exp_samples": [{"labels": "{}", "value": 1}]}]}],
        }  # fmt: skip
        test_path.write_text(yaml.safe_dump(test))
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            assert run_files([str(test_path)], io.StringIO(), io.StringIO()) == 0
        talonflow = time.perf_counter() - start
        promtool = shutil.which("promtool")
        if promtool is None:
            return talonflow, None
        start = time.perf_counter()
        subprocess.run([promtool, "test", "rules", str(test_path)], check=True, capture_output=True)
        return talonflow, time.perf_counter() - start


def build_day(series: int) -> MemoryStorage:
    """A day of gauges and counters, a point every 15 s, for query_range."""
    storage = MemoryStorage()
    points = DAY_MS // STEP_MS + 1
    for i in range(series):
        job, instance = f"j{i % 10}", str(i)
        gauge = labels_of({"__name__": "gauge", "job": job, "instance": instance})
        counter = labels_of({"__name__": "counter", "job": job, "instance": instance})
        for k in range(points):
            storage.append(gauge, k * STEP_MS, float((k * (i + 3)) % 17))
            storage.append(counter, k * STEP_MS, float(k * (i % 7 + 1) % 5000))
    return storage


def per_step_path(query: str, storage: MemoryStorage) -> dict[object, list[tuple[int, float]]]:
    """range_query as it ran before the all-steps evaluation: eval() once per step."""
    node = parse(query)
    evaluator = _Evaluator(storage, node, 0, DAY_MS, DEFAULT_LOOKBACK_MS, DEFAULT_SUBQUERY_STEP_MS)
    out: dict[object, list[tuple[int, float]]] = {}
    for t in range(0, DAY_MS + 1, RANGE_STEP_MS):
        value = evaluator.eval(node, t)
        assert isinstance(value, Vector)
        for ls, v in zip(value.labels, value.values.tolist(), strict=True):
            out.setdefault(ls, []).append((t, v))
    return out


def bench_range(storage: MemoryStorage) -> None:
    print(f"{'query_range, 24 h at 60 s (ms)':<44} {'all steps':>10} {'per step':>10}")
    for query in RANGE_QUERIES:
        range_query(query, 0, DAY_MS, RANGE_STEP_MS, storage)  # the store's arrays, built on first read
        start = time.perf_counter()
        ours: Matrix = range_query(query, 0, DAY_MS, RANGE_STEP_MS, storage)
        blocks = time.perf_counter() - start
        start = time.perf_counter()
        steps = per_step_path(query, storage)
        each = time.perf_counter() - start
        same = {
            s.labels: list(zip(s.timestamps.tolist(), s.values.tolist(), strict=True)) for s in ours.series
        }
        assert same == steps, f"{query}: the two paths differ"
        print(f"{query:<44} {blocks * 1e3:10.0f} {each * 1e3:10.0f}")


def bench_small_files(files: int, runs: int) -> None:
    from console.metric_store import MetricStore
    from schemas.config import TalonflowConfig
    from schemas.prometheus_names import INPUT_COLUMNS
    from tests.metric_data import commits, fleet_points, write_parts

    start = datetime(2026, 12, 3, tzinfo=UTC)  # files of one hour partition: at most 720
    points = fleet_points(
        jobs=10, queues=20, start=start, minutes=-(-files * 5 // 60), every_s=5, offset_s=2.5
    )
    end_ms = int(start.timestamp() * 1000) + files * 5_000 - 1
    first_ms = end_ms - 600_000 + 1
    query = "sum by (job) (queue_depth)"
    with tempfile.TemporaryDirectory(prefix="talonflow-bench-promql-") as root:
        config = TalonflowConfig(data_dir=Path(root, "data"), state_dir=Path(root, "state"))
        paths = write_parts(config.data_dir, commits(points, start, 5, files))
        range_query(query, first_ms, end_ms, 10_000, MetricStore(config))  # catalogues: the warmer's part
        store, floor = [], []
        for _ in range(runs):
            began = time.perf_counter()
            range_query(query, first_ms, end_ms, 10_000, MetricStore(config))
            store.append(time.perf_counter() - began)
            began = time.perf_counter()
            window = pl.col("time").dt.epoch("ms").is_between(first_ms - DEFAULT_LOOKBACK_MS, end_ms)
            scan = pl.scan_parquet(paths).filter(pl.col("metric_name") == "queue.depth", window)
            scan.select(INPUT_COLUMNS).collect()
            floor.append(time.perf_counter() - began)
    print(f"{query} over 10 min at 10 s, {files} files of 5 s commits, warm p50 ms:")
    ours, bare = statistics.median(store) * 1e3, statistics.median(floor) * 1e3
    print(f"  raw store {ours:.0f} | floor (bare scan) {bare:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--rules", type=int, default=100)
    parser.add_argument("--samples", type=int, default=21, help="samples per series, 15 s apart")
    parser.add_argument("--evaluations", type=int, default=3)
    parser.add_argument("--peer-series", type=int, default=10_000, help="series in the promtool comparison")
    parser.add_argument("--range-series", type=int, default=100, help="gauges (and counters) in query_range")
    parser.add_argument("--range-only", action="store_true", help="only the query_range comparison")
    parser.add_argument("--small-files", type=int, default=180, help="hot files of 5 s commits (<= 720)")
    parser.add_argument("--small-runs", type=int, default=5)
    parser.add_argument("--small-only", action="store_true", help="only the raw store over small files")
    args = parser.parse_args()
    if args.small_only:
        bench_small_files(args.small_files, args.small_runs)
        return
    bench_range(build_day(args.range_series))
    if args.range_only:
        return
    bench_small_files(args.small_files, args.small_runs)
    storage = build_storage(args.series, args.rules, args.samples)
    series = len(storage.series)
    print(f"{series} series x {args.samples} samples, {args.rules} rules")
    print(f"samples/s through rate(m[5m]):      {bench_samples(storage, args.samples, series):,.0f}")
    rate = bench_rules(storage, args.rules, args.samples, args.evaluations)
    print(f"rule evaluations/s ({series // args.rules} series each): {rate:,.1f}")
    talonflow, promtool = bench_peer(args.peer_series, args.rules, args.samples, args.evaluations)
    peer = f"{promtool:.1f} s" if promtool is not None else "promtool not installed"
    print(f"promtool-format run, {args.peer_series} series: talonflow {talonflow:.1f} s | promtool {peer}")


if __name__ == "__main__":
    main()
