"""The CI short run of bench/fuzz.py, and regression tests for what the long campaign found.

Each target runs its checked-in corpus and a few thousand mutations of it through the same
function its network or config entry point calls; a crash, a hang or a wrong answer fails here.
"""

from __future__ import annotations

import gzip
import json

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench.fuzz import CORPUS, FINDINGS, run_mutate
from bench.fuzz_targets import (
    HTTP_LIMIT,
    TARGETS,
    alertmanager_alerts,
    config_file,
    exposition,
    log_line,
    otlp_grpc,
    otlp_http_gzip,
    otlp_http_json,
    otlp_http_protobuf,
    promql,
    remove_scratch,
    rule_file,
)
from receiver.signals import TRACES
from receiver.split import split_request
from tests.otlp_clients import span_request

SHORT_CASES = 1000


def test_every_target_has_a_corpus() -> None:
    assert sorted(TARGETS) == sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_short_run_finds_no_crash_or_hang(target: str) -> None:
    tally = run_mutate(target, SHORT_CASES, budget=5.0, seed=12)
    assert tally.cases == SHORT_CASES
    assert (tally.crashes, tally.hangs) == (0, 0), f"see {FINDINGS / target}"
    assert len(tally.verdicts) >= 2, f"{target} answered only {tally.verdicts}: the mutations reach nothing"


@pytest.fixture(autouse=True)
def _no_scratch_left() -> object:
    yield
    remove_scratch()


# Found by the campaign, each fixed in the code that owns it.


@pytest.mark.parametrize(
    "query",
    ["µ", "²", "1 + \u3000 2", "0x" + "f" * 20, '"\\U00110000"', '"\\ud800"'],
)
def test_promql_refuses_non_ascii_and_out_of_range_literals(query: str) -> None:
    """The lexer asserted on "²" (str.isdigit) and "µ" (str.isalpha); chr() raised on \\U00110000."""
    assert promql(query.encode()) == "400"


def test_decreasing_histogram_buckets_fail_the_scrape_with_a_reason() -> None:
    body = (
        b"# TYPE h histogram\n"
        b'h_bucket{le="1"} 5\nh_bucket{le="2"} 3\nh_bucket{le="+Inf"} 5\nh_sum 1\nh_count 5\n'
    )
    assert exposition(b"\x00" + body) == "down"  # was struct.error: a negative bucket count


def test_a_valid_histogram_still_scrapes() -> None:
    registry = CollectorRegistry()
    Histogram("latency_seconds", "x", registry=registry).observe(0.3)
    assert exposition(b"\x00" + generate_latest(registry)) == "up"


@pytest.mark.parametrize(
    "line",
    [
        b'{"timestamp": 64780000123000000000, "msg": "x"}',
        b'{"time": "1e999999999", "msg": "x"}',
        b'{"time": "0001-01-01T00:00:00Z", "msg": "x"}',
        b'{"time": "9999-12-31T23:59:59Z", "msg": "x"}',
    ],
)
def test_log_times_outside_otlp_range_stay_attributes(line: bytes) -> None:
    """protobuf raised "Value out of range" on time_unix_nano, which stopped the tailer's batch."""
    assert log_line(b"\x00" + line) == "parsed"


def test_non_utf8_rule_file_and_config_are_refused_with_a_reason() -> None:
    assert rule_file(b"groups:\n- name: \xff\n") == "refused"
    assert config_file(b"receiver:\n  bearer_token: \xfe\n") == "refused"


def test_gzip_bomb_is_413() -> None:
    assert otlp_http_gzip(b"\x00" + gzip.compress(b"\x00" * (HTTP_LIMIT + 1))) == "413"


def test_unknown_group_fields_are_forwarded_not_a_500() -> None:
    """upb keeps a group (wire type 3) as an unknown field; receiver/split.py raised ValueError on it."""
    body = span_request([("a", "1"), ("b", "2")], spans_per_agent=2)
    grouped = b"\x2b\x08\x01\x33\x34\x2c" + body  # field 5 group holding a varint and a nested group
    assert otlp_grpc(b"\x00" + grouped) == "OK"  # every span sent once: the target counts them
    assert otlp_http_protobuf(b"\x00" + grouped) == "200"


def test_field_one_of_another_wire_type_does_not_shift_resources() -> None:
    """A varint field 1 is unknown to upb; counted as a resource it sent resource a's bytes as b's."""
    body = b"\x08\x01" + span_request([("a", "1"), ("b", "2")], spans_per_agent=2)
    assert otlp_grpc(b"\x00" + body) == "OK"
    keys = [record.key for record in split_request(TRACES, body, 1 << 20).records]
    assert keys == [b"a/1", b"b/2"]


@pytest.mark.parametrize(
    ("alert", "answer"),
    [
        ({"labels": {"a": "b"}, "startsAt": "2026-12-03T16:00:00", "endsAt": "2026-12-03T16:30:00Z"}, "200"),
        ({"labels": {"a": "b"}, "startsAt": 5}, "400"),
        ({"labels": {"a": "b"}, "endsAt": ["2026-12-03T16:30:00Z"]}, "400"),
        ({"labels": {"a": "b"}, "annotations": {"summary": "up", "runbook": ""}}, "200"),
        ({"labels": {"a": "b"}, "annotations": {"value": 5}}, "400"),
        ({"labels": {"a": "b"}, "annotations": {"not-a-name": "x"}}, "400"),
        ({"labels": {"a": "b"}, "annotations": ["summary"]}, "400"),
    ],
)
def test_posted_alert_times_are_utc_or_refused(alert: dict[str, object], answer: str) -> None:
    """A time without an offset did not compare with an aware one, and a number had no .startswith:
    both were 500s of POST /api/v2/alerts. go-openapi reads an offset-less time as UTC. Annotations
    are a LabelSet of strings, as in Alertmanager (a number was taken and stored)."""
    assert alertmanager_alerts(json.dumps([alert]).encode()) == answer


@pytest.mark.parametrize("body", [b"5", b"1.5", b"null", b"true", b"[]", b'"x"'])
def test_otlp_json_that_is_not_an_object_is_400(body: bytes) -> None:
    """protobuf's ParseDict raised TypeError on a number (a 500) and took [] for an empty request."""
    assert otlp_http_json(b"\x00" + body) == "400"
