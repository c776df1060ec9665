"""The alerts flow's per-poll work, in process: samples/s into the rule streams and rule evaluations/s.

    python -m bench.alerts [--rules 100] [--series 100000] [--steps 4]

`--series` gauge series (`bench.m<i>` for each instance, one resource per instance) report every 15 s
of event time for `--steps` steps, 1,000 points per OTLP request and 20 requests per poll. Each
step is timed through the flow's stages beside the floor they share with ingest and rollups,
flattening alone: naming (schemas/prometheus_names.py), routing to the streams, storing the
samples (rules/stream.py), and evaluating `--rules` alerting rules (`max by (job) (bench_m<i>) >
0.5`, ten per group, `interval: 15s`) at each step.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from flows.alerts import Poll, route, samples, stream_key
from promql import Labels
from rules.loader import load_groups
from rules.stream import GroupStream, StreamState, components, metric_names
from rules.templates import TemplateContext
from schemas.flatten import KafkaRecord, TimeBounds, flatten
from schemas.prometheus_names import prometheus_series
from schemas.topics import METRICS_TOPIC

STEP_NS = 15 * 10**9
PER_REQUEST, PER_POLL = 1000, 20


def requests(metrics: int, instances: int, at_ns: int) -> list[bytes]:
    """One step: every instance's gauges, split into requests of about PER_REQUEST points."""
    per_request = max(1, PER_REQUEST // metrics)
    bodies = []
    for first in range(0, instances, per_request):
        request = ExportMetricsServiceRequest()
        for instance in range(first, min(first + per_request, instances)):
            resource = request.resource_metrics.add()
            for key, text in (
                ("service.name", f"svc{instance % 10}"),
                ("service.instance.id", f"i{instance}"),
            ):
                resource.resource.attributes.append(KeyValue(key=key, value=AnyValue(string_value=text)))
            scope = resource.scope_metrics.add()
            for metric in range(metrics):
                point = scope.metrics.add(name=f"bench.m{metric}").gauge.data_points.add()
                point.time_unix_nano, point.as_double = at_ns, ((instance * 7 + metric) % 100) / 100
        bodies.append(request.SerializeToString())
    return bodies


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rules", type=int, default=100)
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    metrics, instances = args.rules, args.series // args.rules
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rules.yaml"
        rules = [{"alert": f"M{i}", "expr": f"max by (job) (bench_m{i}) > 0.5"} for i in range(args.rules)]
        groups_doc = [
            {"name": f"g{g}", "interval": "15s", "rules": rules[g : g + 10]} for g in range(0, len(rules), 10)
        ]
        path.write_text(yaml.safe_dump({"groups": groups_doc}))
        context = TemplateContext()
        groups = load_groups([path], context)
    streams = {stream_key(c): GroupStream(c, StreamState(), 60_000, context) for c in components(groups)}
    names = {key: metric_names(stream.groups) for key, stream in streams.items()}
    start_ns = (time.time_ns() // STEP_NS - args.steps - 2) * STEP_NS
    bounds = TimeBounds(max_past_s=86400)
    stages = dict.fromkeys(("flatten", "name", "route", "store", "evaluate"), 0.0)
    total_samples = evaluations = offset = 0
    known: dict[str, Labels] = {}  # as each stream of the flow caches its series' labels
    for step in range(args.steps):
        at_ns = start_ns + step * STEP_NS + 10**9
        bodies = requests(metrics, instances, at_ns)
        records = [
            KafkaRecord(METRICS_TOPIC, 0, offset + i, at_ns // 10**6, b"k", b) for i, b in enumerate(bodies)
        ]
        offset += len(records)
        for first in range(0, len(records), PER_POLL):
            t0 = time.perf_counter()
            table = flatten(records[first : first + PER_POLL], bounds).tables["metrics"]
            t1 = time.perf_counter()
            frame = prometheus_series(table)
            t2 = time.perf_counter()
            routed = route(Poll(frame, None, f"{METRICS_TOPIC}:0"), names)
            t3 = time.perf_counter()
            for key, (_key, poll) in routed:
                if poll.series is None:
                    continue  # the poll's time only: none of its samples are for this stream
                streams[key].add(samples(poll.series, known))
                total_samples += poll.series.height
            t4 = time.perf_counter()
            for name, spent in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=False):
                stages[name] += spent
        t5 = time.perf_counter()
        for stream in streams.values():  # every group's evaluation at this step
            stream.advance(at_ns // 10**6 + 1000)
            evaluations += sum(len(g.rules) for g in stream.groups)
        stages["evaluate"] += time.perf_counter() - t5
    print(f"{args.series:,} series, {args.rules} rules in {len(streams)} streams, {args.steps} steps of 15 s")
    print(f"{'stage':<44}{'seconds':>10}{'samples/s':>14}")
    into = 0.0
    for name, seconds in stages.items():
        if name == "evaluate":
            continue
        into += seconds
        label = "flatten only (the floor shared with ingest)" if name == "flatten" else f"+ {name}"
        print(f"{label:<44}{seconds:>10.2f}{total_samples / into:>14,.0f}")
    seconds = stages["evaluate"]
    print(f"rule evaluations: {evaluations:,} in {seconds:.2f} s = {evaluations / seconds:,.0f}/s")
    per_step = total_samples / args.steps / (into + seconds) * 15
    print(f"samples a 15 s interval can take in (all stages): {per_step:,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
