"""A Parquet sink's flush, in process: this tree's `sinks/parquet.py` beside another tree's.

    python -m bench.flush --before DIR [--rows 22000] [--poll 50] [--runs 11]

For each signal, bench.ingest's requests are flattened in polls of `--poll` records (so the flush
gets as many chunks as the flow's would) until about `--rows` rows, the size of a 16 MiB flush of
spans; then the two trees' `split_by_hour` (sort and take) and `write_atomically` (the Parquet
write) run on them, interleaved so that a load that comes and goes falls on both alike. Prints CPU
µs per row, best of `--runs`, and Parquet bytes per row.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import pyarrow as pa

from bench.ingest import SIGNALS
from schemas.datasets import DATASETS
from schemas.flatten import KafkaRecord, flatten


def parquet_module(tree: Path) -> ModuleType:
    """`sinks/parquet.py` of another source tree, loaded under its own name."""
    name = "before_sinks_parquet"
    spec = importlib.util.spec_from_file_location(name, tree / "sinks" / "parquet.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"--before {tree}: no sinks/parquet.py there")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def polls_of(signal: str, rows: int, poll: int) -> list[pa.Table]:
    """One table per poll of bench.ingest's requests, as the flow's sink buffers them."""
    topic, make, _ = SIGNALS[signal]
    now = time.time_ns()
    records = [
        KafkaRecord(topic, 0, i, now // 1_000_000, None, make(100, now, i)) for i in range(-(-rows // 100))
    ]
    return [flatten(records[i : i + poll]).tables[signal] for i in range(0, len(records), poll)]


def flush_cost(
    module: ModuleType, tables: list[pa.Table], dataset: str, folder: Path
) -> tuple[float, float, int]:
    """(CPU s of the sort and take, CPU s of the writes, bytes written) of one flush of `tables`."""
    started = time.process_time()
    parts = module.split_by_hour(pa.concat_tables(tables), DATASETS[dataset])
    sorted_at = time.process_time()
    size = 0
    for hour, rows in parts:
        path = folder / f"{dataset}-{hour}.parquet"
        module.write_atomically(rows, path, 128 * 1024)
        size += path.stat().st_size
    return sorted_at - started, time.process_time() - sorted_at, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--before", type=Path, required=True, help="another source tree, e.g. `git archive HEAD`"
    )
    parser.add_argument("--rows", type=int, default=22_000, help="rows per flush (about 16 MiB of spans)")
    parser.add_argument("--poll", type=int, default=50, help="records per poll: one chunk each")
    parser.add_argument("--runs", type=int, default=11, help="flushes per tree, interleaved; the best counts")
    args = parser.parse_args()
    import sinks.parquet as now

    trees: dict[str, ModuleType] = {"before": parquet_module(args.before), "now": now}
    print(
        f"a flush of about {args.rows} rows in polls of {args.poll} records, CPU µs/row, best of {args.runs}:"
    )
    print(f"{'dataset':<9}{'tree':<8}{'sort+take':>11}{'write':>9}{'B/row':>8}")
    with tempfile.TemporaryDirectory(prefix="talonflow-bench-flush-") as tmp:
        for signal in SIGNALS:
            tables = polls_of(signal, args.rows, args.poll)
            rows = sum(t.num_rows for t in tables)
            best: dict[str, tuple[float, float, int]] = {}
            for _ in range(args.runs):
                for name, module in trees.items():
                    cost = flush_cost(module, tables, signal, Path(tmp))
                    previous = best.get(name, cost)
                    best[name] = (min(previous[0], cost[0]), min(previous[1], cost[1]), cost[2])
            for name, (sort_s, write_s, size) in best.items():
                per_row = f"{sort_s / rows * 1e6:>11.3f}{write_s / rows * 1e6:>9.3f}{size / rows:>8.1f}"
                print(f"{signal:<9}{name:<8}{per_row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
