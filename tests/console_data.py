"""Synthetic rows written straight into the Parquet datasets, for console unit tests and bench/console.py.

Rows follow schemas/ exactly (missing columns are null), partitioned as ingest partitions them,
so the console reads them through the same tier-aware scan as real data.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.datasets import DATASETS


def write_rows(data_dir: Path, dataset: str, rows: Iterable[dict[str, Any]]) -> int:
    """Writes rows into one file per hour partition of their time column; returns the row count."""
    spec = DATASETS[dataset]
    by_hour: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        moment: datetime = row[spec.time_column]
        by_hour.setdefault((moment.strftime("%Y-%m-%d"), moment.hour), []).append(row)
    for (day, hour), part in by_hour.items():
        folder = data_dir / dataset / f"date={day}" / f"hour={hour:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(part, spec.schema).sort_by([(c, "ascending") for c in spec.sort_by])
        pq.write_table(table, folder / f"synthetic-{uuid.uuid4().hex[:8]}.parquet", compression="zstd")
    return sum(len(p) for p in by_hour.values())


def span(
    service: str,
    name: str,
    trace_id: str,
    span_id: str,
    start: datetime,
    millis: float,
    parent: str = "",
    **extra: Any,
) -> dict[str, Any]:
    attributes = extra.pop("attributes", {})
    return {
        "start_time": start,
        "end_time": start + timedelta(milliseconds=millis),
        "duration_ns": int(millis * 1e6),
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "kind": "INTERNAL",
        "status_code": "UNSET",
        "service_name": service,
        "service_instance_id": f"{service}-1",
        "attributes": list(attributes.items()),
        "resource_attributes": [("service.name", service)],
        "events": [],
        "links": [],
        **extra,
    }


def agent_chain(start: datetime, session: str = "s-1") -> list[dict[str, Any]]:
    """main_agent -> planner (same trace) -> browser_controller (its own trace, linked back)."""
    root, child = (hashlib.md5(f"{session}/{n}".encode()).hexdigest() for n in (1, 2))
    shared: dict[str, Any] = {"attributes": {"session.id": session}}
    usage: dict[str, Any] = {"gen_ai_usage_input_tokens": 1000, "gen_ai_usage_output_tokens": 200}
    link = {"trace_id": root, "span_id": "3" * 16, "attributes": []}
    ms = timedelta(milliseconds=1)
    return [
        span("main_agent", "invoke_agent main", root, "1" * 16, start, 900,
             gen_ai_operation_name="invoke_agent", **shared),
        span("main_agent", "chat claude-sonnet", root, "2" * 16, start + 10 * ms, 200, "1" * 16,
             gen_ai_operation_name="chat", gen_ai_request_model="claude-sonnet", **usage, **shared),
        span("planner", "invoke_agent planner", root, "3" * 16, start + 220 * ms, 600, "1" * 16,
             gen_ai_operation_name="invoke_agent", **shared),
        span("browser_controller", "execute_tool open_page", child, "4" * 16, start + 300 * ms, 400,
             gen_ai_operation_name="execute_tool", gen_ai_tool_name="open_page", status_code="ERROR",
             links=[link], **shared),
    ]  # fmt: skip
