"""The decoder checks records in the same walk that fills the columns (native/src/lib.rs).

A poll is read in one pass; only a poll holding a record that Python's protobuf rejects is read
again with each record validated first. These tests pin what that second reading must keep: the
rows of the good records whatever came before them, and the bad record's reason as it reads alone.
"""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError

from schemas.flatten import KafkaRecord, flatten
from schemas.topics import LOGS_TOPIC, METRICS_TOPIC, SPANS_TOPIC
from tests.otlp_corpus import NOW_NS, REQUESTS, sdk_requests
from tests.python_flatten_oracle import assert_same


def records_of(topic: str, values: list[bytes]) -> list[KafkaRecord]:
    return [KafkaRecord(topic, 0, i, NOW_NS // 1_000_000, None, v) for i, v in enumerate(values)]


def reasons(topic: str, values: list[bytes]) -> list[str]:
    return flatten(records_of(topic, values)).tables["dead_letters"]["reason"].to_pylist()


@pytest.mark.parametrize("topic", [SPANS_TOPIC, METRICS_TOPIC, LOGS_TOPIC])
def test_a_bad_record_after_good_ones_costs_only_itself(topic: str) -> None:
    good = sdk_requests()[topic]
    # cut inside the last item: the first items were already in the columns when the cut is met
    bad = good[0][: len(good[0]) - 3]
    with pytest.raises(DecodeError):
        REQUESTS[topic].FromString(bad)
    poll = [*good, bad, *good]
    tables = assert_same(records_of(topic, poll))  # rows, record of each row, dead letters
    assert tables["dead_letters"]["offset"].to_pylist() == [len(good)]
    alone = reasons(topic, [bad])
    assert alone[0].startswith("undecodable ") and reasons(topic, poll) == alone
    dataset = next(name for name in tables if name != "dead_letters")
    assert tables[dataset].num_rows == 2 * flatten(records_of(topic, good)).tables[dataset].num_rows
