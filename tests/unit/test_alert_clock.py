"""A rule stream's clock as the pipeline's event time over input partitions (rules/stream.py
`observe`), fed by the alerts flow's routing: absent() of a metric never seen fires, and
evaluations are the same whatever the order, the poll sizes and the restarts in which the
partitions are read."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import pytest

from flows.alerts import Poll, read_topics, route, stream_key, topics
from rules.stream import GroupStream, StreamState, components, metric_names
from rules.templates import TemplateContext
from schemas.prometheus_names import prometheus_series
from schemas.prometheus_rules import Group
from schemas.topics import METRICS_TOPIC, ROLLUPS_TOPIC, SPANS_TOPIC
from tests.unit.test_rules import depth, groups_of, metrics_table

S = 1000  # ms
P0, P1 = f"{METRICS_TOPIC}:0", f"{METRICS_TOPIC}:1"
Seen = list[tuple[str, str, str, int]]


def clocked(groups: list[Group], state: StreamState | None = None) -> GroupStream:
    """A stream over two partitions of otlp_metrics, as the alerts flow opens one."""
    return GroupStream(groups, state or StreamState(), 60 * S, TemplateContext(), parts=(P0, P1))


def changes(stream: GroupStream, watermark_ms: int) -> Seen:
    return [
        (c.transition.rule, c.previous, c.transition.new, c.transition.t_ms)
        for c in stream.advance(watermark_ms)
    ]


def test_a_poll_brings_its_time_to_every_stream_reading_its_topic_without_its_samples() -> None:
    frame = prometheus_series(metrics_table([("queue.depth", "a", 1.0, 7000)]))
    names = {
        "q": frozenset({"queue_depth"}),
        "up": frozenset({"up"}),
        "watchdog": frozenset(),  # `vector(1)`: reads no series, runs on otlp_metrics time
        "heartbeats": frozenset({"heartbeat_active"}),
    }
    routed = {key: poll for key, (_key, poll) in route(Poll(frame, None, P0, 7000), names)}
    assert list(routed) == ["q", "up", "watchdog"]  # a rollups-only stream keeps rollup time
    assert routed["q"].series is not None and routed["q"].newest_ms == 7000
    assert [(p.series, p.spans, p.part, p.newest_ms) for p in (routed["up"], routed["watchdog"])] == [
        (None, None, P0, 7000)
    ] * 2
    idle = [
        (key, poll.idle) for key, (_key, poll) in route(Poll(part=f"{ROLLUPS_TOPIC}:0", idle=True), names)
    ]
    assert idle == [("heartbeats", True)]
    assert read_topics(frozenset({"heartbeat_active", "up"})) == {ROLLUPS_TOPIC, METRICS_TOPIC}
    assert read_topics(None) == {METRICS_TOPIC, SPANS_TOPIC, ROLLUPS_TOPIC}
    assert topics(names.values()) == (METRICS_TOPIC, ROLLUPS_TOPIC)


def test_the_clock_waits_for_every_partition_and_leaves_out_idle_ones(tmp_path: Path) -> None:
    groups = groups_of(
        tmp_path, {"name": "g", "interval": "15s", "rules": [{"alert": "A", "expr": "absent(x)"}]}
    )
    stream = clocked(groups)
    stream.observe(P0, 20 * S)
    assert stream.state.clock_ms == 0 and changes(stream, 10**9) == []  # P1 has not spoken yet
    stream.observe(P1, 50 * S)
    assert stream.state.clock_ms == 20 * S and list(stream.state.next_eval.values()) == [30 * S]
    stream.observe(P0, 0, idle=True)  # read to its end and quiet: no longer holds the clock
    assert stream.state.clock_ms == 50 * S and not stream.quiet
    stream.observe(P0, 10 * S)  # sends again, older than the clock: the clock never goes back
    assert stream.state.clock_ms == 50 * S
    assert changes(stream, stream.state.clock_ms) == [("A", "inactive", "firing", 30 * S)]
    stream.observe(P1, 0, idle=True)
    stream.observe(P0, 0, idle=True)  # all read to their end: the newest of their last records
    assert stream.quiet and stream.state.clock_ms == 50 * S  # whichever went idle last; then wall time
    other = clocked(groups)
    other.observe(P0, 10 * S)
    other.observe(P1, 90 * S)
    other.observe(P1, 0, idle=True)  # the newer partition goes quiet first: the older one holds on
    assert other.state.clock_ms == 10 * S
    other.observe(P0, 0, idle=True)
    assert other.state.clock_ms == 90 * S  # in either order, as a worker may see the two marks
    resumed = clocked(groups, pickle.loads(pickle.dumps(stream.snapshot())))
    assert not resumed.quiet  # a restart forgets idleness: each partition must say so again
    resumed.observe(P0, 90 * S)
    assert resumed.state.clock_ms == 50 * S  # P1, restored at 50 s and not yet idle, holds it


def test_absent_of_a_metric_never_seen_fires_on_the_pipelines_time_exactly_once(tmp_path: Path) -> None:
    groups = groups_of(
        tmp_path,
        {"name": "depth", "interval": "15s", "rules": [{"alert": "Deep", "expr": "queue_depth > 5"}]},
        {
            "name": "x",
            "interval": "15s",
            "rules": [
                {"alert": "XGone", "expr": 'absent(up{job="x"})', "for": "30s"},
                {"alert": "XQuiet", "expr": 'absent_over_time(up{job="x"}[1m])'},
            ],
        },
    )
    streams = {stream_key(c): c for c in components(groups)}
    assert len(streams) == 2  # the samples of queue_depth never reach the `x` group's stream
    states = {key: StreamState() for key in streams}
    reads = {key: metric_names(c) for key, c in streams.items()}
    seen: Seen = []

    def poll(part: str, t_ms: int) -> None:
        """A poll of queue_depth: its samples to the stream that reads them, its time to both (as the
        flow would route them), each stream restarted from its snapshot, with a lateness of 1 s."""
        for key, state in states.items():
            stream = clocked(streams[key], pickle.loads(pickle.dumps(state)))
            stream.observe(P1, 0, idle=True)  # P1 never sends: its reader says so after each restart
            if "queue_depth" in (reads[key] or ()):
                stream.add([((("__name__", "queue_depth"), ("instance", "a")), [t_ms], [1.0])])
            stream.observe(part, t_ms)
            seen.extend(changes(stream, stream.state.clock_ms - 1 * S))
            states[key] = stream.snapshot()

    for k in range(8):
        poll(P0, k * 15 * S + 5 * S)
    assert seen == [
        ("XGone", "inactive", "pending", 15 * S),  # the first evaluation after the pipeline's first sample
        ("XQuiet", "inactive", "firing", 15 * S),
        ("XGone", "pending", "firing", 45 * S),
    ]
    stored = {dict(labels)["__name__"] for labels in states[stream_key([groups[1]])].storage.series}
    assert stored == {"ALERTS", "ALERTS_FOR_STATE"}  # time only: no sample of queue_depth was stored


Record = tuple[float, int]  # (value of depth{instance="a"}, t_ms) on P0; P1 carries other metrics


def replay(
    groups: list[Group], p0: list[Record], p1: list[int], rng: random.Random | None
) -> set[tuple[str, ...]]:
    """Read both partitions as a flow would: None reads one record at a time, in time order;
    with `rng`, polls of random sizes interleaved at random, idle marks once a partition is read
    to its end, and restarts from a pickled snapshot at random moments. Lateness 5 s; at the end
    every partition is idle and wall time moves the watermark far on."""
    state, stream = StreamState(), None
    queues = {P0: list(p0), P1: [(0.0, t) for t in p1]}
    said_idle: set[str] = set()
    seen: set[tuple[str, ...]] = set()

    def restart() -> GroupStream:
        said_idle.clear()
        return clocked(groups, pickle.loads(pickle.dumps(state)))

    stream = restart()
    while any(queues.values()) or said_idle != {P0, P1}:
        choices = [p for p in (P0, P1) if queues[p] or p not in said_idle]
        part = choices[0] if rng is None else rng.choice(choices)
        if not queues[part]:
            stream.observe(part, 0, idle=True)
            said_idle.add(part)
        else:
            size = 1 if rng is None else rng.randint(1, 4)
            batch, queues[part] = queues[part][:size], queues[part][size:]
            if part == P0:
                stream.add([(depth("a"), [t], [v]) for v, t in batch])
            stream.observe(part, batch[-1][1])
        watermark = stream.state.clock_ms - 5 * S if not stream.quiet else 10**9
        seen.update(tuple(map(str, c)) for c in changes(stream, watermark))
        state = stream.snapshot()
        if rng is not None and rng.random() < 0.15:
            state = pickle.loads(pickle.dumps(state))  # what the snapshot kept, and nothing else
            stream = restart()
    return seen


@pytest.mark.parametrize("seed", range(12))
def test_evaluations_are_the_same_whatever_the_read_order_poll_sizes_and_restarts(
    tmp_path: Path, seed: int
) -> None:
    groups = groups_of(
        tmp_path,
        {"name": "slow", "interval": "15s", "rules": [{"alert": "Slow", "expr": "depth > 50", "for": "30s"}]},
        {
            "name": "gone",
            "interval": "15s",
            "rules": [{"alert": "Gone", "expr": 'absent(depth{instance="b"})'}],
        },
    )
    base = 600 * S
    p0 = [(90.0 if k % 5 < 3 else 10.0, base + k * 15 * S + 5 * S) for k in range(20)]
    p1 = [base + 40 * 15 * S] * 3 + [base - 300 * S]  # another run's samples, far ahead, then older ones
    reference = replay(groups, p0, p1, None)
    assert ("Slow", "pending", "firing", str(base + 45 * S)) in reference
    assert ("Gone", "inactive", "firing", str(base + 15 * S)) in reference
    assert replay(groups, p0, p1, random.Random(seed)) == reference
