"""The resend window of flows/resends.py: what it drops, what it forgets, what survives a restart."""

from __future__ import annotations

import pickle
import random

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from flows import resends
from flows.kafka_batches import Batch
from flows.resends import Screened, SeenRecords, resent_letters, screen, screen_resends
from schemas.flatten import KafkaRecord
from schemas.topics import SPANS_TOPIC
from tests.otlp_clients import span_request

WINDOW_MS = 10_000


def record(offset: int, time_ms: int, value: bytes, key: bytes | None = b"agent/1") -> KafkaRecord:
    return KafkaRecord(SPANS_TOPIC, 0, offset, time_ms, key, value)


def test_a_resend_is_dropped_and_names_its_first_copy() -> None:
    seen, first = screen(None, [record(0, 1_000, b"a"), record(1, 1_001, b"b")], WINDOW_MS)
    assert [r.offset for r in first.kept] == [0, 1] and first.resent == {}
    seen, second = screen(seen, [record(2, 5_000, b"c"), record(3, 6_000, b"a")], WINDOW_MS)
    assert [r.offset for r in second.kept] == [2] and second.resent == {3: 0}
    assert seen is not None and len(seen) == 3


def test_same_bytes_under_another_key_are_not_a_resend() -> None:
    _, screened = screen(None, [record(0, 0, b"a"), record(1, 1, b"a", key=b"agent/2")], WINDOW_MS)
    assert len(screened.kept) == 2


def test_a_copy_within_one_poll_is_dropped() -> None:
    _, screened = screen(None, [record(5, 0, b"a"), record(6, 1, b"x"), record(7, 2, b"a")], WINDOW_MS)
    assert [r.offset for r in screened.kept] == [5, 6] and screened.resent == {7: 5}


def test_the_window_expires_and_memory_stays_bounded() -> None:
    seen, _ = screen(None, [record(0, 0, b"a")], WINDOW_MS)
    seen, late = screen(seen, [record(1, WINDOW_MS + 1, b"a")], WINDOW_MS)
    assert [r.offset for r in late.kept] == [1]  # past the window: a new record, remembered anew
    seen, again = screen(seen, [record(2, WINDOW_MS + 2, b"a")], WINDOW_MS)
    assert again.resent == {2: 1}
    # a steady stream of distinct records: the memory holds about one window of them, never more
    for step in range(200):
        time_ms = 2 * WINDOW_MS + step * 500
        seen, _ = screen(seen, [record(10 + step, time_ms, f"r{step}".encode())], WINDOW_MS)
        assert seen is not None and len(seen) <= 1.1 * WINDOW_MS / 500 + 1
    assert seen is not None and len(seen) >= WINDOW_MS / 500


def test_a_resend_refreshes_its_entry() -> None:
    """An SDK retrying on (each copy within the window of the one before) is caught every time."""
    seen: SeenRecords | None = None
    for step in range(5):
        seen, screened = screen(seen, [record(step, step * (WINDOW_MS - 1), b"a")], WINDOW_MS)
        assert screened.resent == ({} if step == 0 else {step: 0})


def oracle(stream: list[KafkaRecord], window_ms: int) -> list[int]:
    """Offsets kept, one record at a time with a dict: the rule the arrays must follow."""
    last: dict[tuple[bytes | None, bytes], int] = {}
    kept = []
    for r in stream:
        when = last.get((r.key, r.value))
        if when is None or abs(r.timestamp_ms - when) > window_ms:
            kept.append(r.offset)
        last[(r.key, r.value)] = (
            r.timestamp_ms
            if when is None or abs(r.timestamp_ms - when) > window_ms
            else max(when, r.timestamp_ms)
        )
    return kept


@pytest.mark.parametrize("merge_min", [4096, 8], ids=["one level", "levels merged"])
@pytest.mark.parametrize("seed", range(8))
def test_any_cut_into_polls_and_restarts_from_state_decides_as_one_pass(
    seed: int, merge_min: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resends, "_MERGE_MIN", merge_min)
    rng = random.Random(seed)
    stream, time_ms = [], 0
    for offset in range(600):
        time_ms += rng.randint(0, 400)
        stream.append(record(offset, time_ms, f"v{rng.randint(0, 150)}".encode()))
    kept: list[int] = []
    seen: SeenRecords | None = None
    start = 0
    while start < len(stream):
        end = min(len(stream), start + rng.randint(1, 40))
        seen, screened = screen(seen, stream[start:end], WINDOW_MS)
        kept += [r.offset for r in screened.kept]
        if rng.random() < 0.3:  # a kill and a resume from the snapshot
            seen = pickle.loads(pickle.dumps(seen))
        start = end
    assert kept == oracle(stream, WINDOW_MS)
    assert len(kept) < len(stream)  # the stream had resends to find


def test_the_dead_letter_counts_what_the_resend_carried() -> None:
    body = span_request([("agent", "1")], spans_per_agent=4)
    records = [record(0, 0, body), record(1, 1, body)]
    table = resent_letters(Screened(records, records[:1], {1: 0}))
    assert table is not None
    assert table.to_pylist() == [
        {
            "time": table["time"][0].as_py(),
            "topic": SPANS_TOPIC,
            "partition": 0,
            "offset": 1,
            "key": "agent/1",
            "reason": "resent: same key and bytes as offset 0",
            "items": 4,
            "payload": b"",
        }
    ]
    assert resent_letters(Screened(records[:1], records[:1])) is None


@pytest.mark.parametrize(("window_s", "kept"), [(10.0, [[0, 1], [], [3]]), (0.0, [[0, 1], [2], [3]])])
def test_the_operator_keeps_a_window_per_partition(window_s: float, kept: list[list[int]]) -> None:
    polls: list[Batch] = [
        ("otlp_spans:0", [record(0, 0, b"a"), record(1, 1, b"b")]),
        ("otlp_spans:0", [record(2, 2, b"a")]),
        ("otlp_spans:1", [KafkaRecord(SPANS_TOPIC, 1, 3, 3, b"agent/1", b"a")]),  # another partition
        ("otlp_spans:1", []),  # an empty poll passes as it came
    ]
    flow = Dataflow("resends")
    out: list[tuple[str, Screened]] = []
    op.output(
        "out",
        screen_resends("resends", op.input("in", flow, TestingSource(polls)), window_s),
        TestingSink(out),
    )
    run_main(flow)
    assert [[r.offset for r in s.kept] for _, s in out if s.records] == kept
