"""Line → LogRecord mapping (JSON and regex), field by field, and the config's clear errors."""

from __future__ import annotations

import re
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from pydantic import ValidationError

from schemas.tailer import LogFileSource
from tailer.export import Exporter
from tailer.files import Lines
from tailer.records import epoch_nanos, parse_json, parse_regex, severity

NANOS = 1_764_763_200_123_000_000  # 2025-12-03T12:00:00.123Z


def attributes(record: LogRecord) -> dict[str, Any]:
    return {kv.key: MessageToDict(kv.value) for kv in record.attributes}


def test_json_fields_map_onto_the_otlp_log_record() -> None:
    record = LogRecord()
    line = (
        '{"time": "2025-12-03T12:00:00.123Z", "level": "warn", "msg": "tool call slow",'
        ' "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",'
        ' "correlation_id": "c-1", "request_id": "r-2", "session_id": "s-3", "agent_id": "a-4",'
        ' "task_id": "t-5", "latency_ms": 812.5, "attempt": 2, "ok": false, "tool": {"name": "browser"}}'
    )
    assert parse_json(record, line)
    assert record.time_unix_nano == NANOS
    assert (record.severity_number, record.severity_text) == (13, "warn")
    assert record.body.string_value == "tool call slow"
    assert record.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert record.span_id.hex() == "00f067aa0ba902b7"
    assert attributes(record) == {
        "correlation_id": {"stringValue": "c-1"},
        "request_id": {"stringValue": "r-2"},
        "session_id": {"stringValue": "s-3"},
        "agent_id": {"stringValue": "a-4"},
        "task_id": {"stringValue": "t-5"},
        "latency_ms": {"doubleValue": 812.5},
        "attempt": {"intValue": "2"},
        "ok": {"boolValue": False},
        "tool": {"kvlistValue": {"values": [{"key": "name", "value": {"stringValue": "browser"}}]}},
    }


@pytest.mark.parametrize(
    ("value", "nanos"),
    [
        ("2025-12-03T12:00:00.123Z", NANOS),
        ("2025-12-03T13:00:00.123+01:00", NANOS),
        ("2025-12-03T12:00:00.123000789Z", NANOS + 789),
        (1_764_763_200.123, NANOS),
        (1_764_763_200_123, NANOS),
        (1_764_763_200_123_000, NANOS),
        (NANOS, NANOS),
        ("1764763200123", NANOS),
        (1_764_763_200, NANOS - 123_000_000),
        ("2025-12-03 12:00:00", None),  # no offset: ambiguous, stays an attribute
        ("yesterday", None),
        (True, None),
        (-5, None),
    ],
)
def test_times_in_common_formats(value: Any, nanos: int | None) -> None:
    assert epoch_nanos(value) == nanos


@pytest.mark.parametrize("key", ["time", "timestamp", "ts", "@timestamp"])
def test_time_is_read_under_each_common_name(key: str) -> None:
    record = LogRecord()
    parse_json(record, f'{{"{key}": "2025-12-03T12:00:00.123Z", "message": "m"}}')
    assert record.time_unix_nano == NANOS
    assert attributes(record) == {}


@pytest.mark.parametrize(
    ("level", "number"),
    [("info", 9), ("INFO", 9), ("warning", 13), ("error", 17), ("fatal", 21), ("debug", 5),
     ("trace", 1), (30, 9), (50, 17), (17, 17), ("verbose", 0)],
)  # fmt: skip
def test_levels_as_text_and_numbers(level: Any, number: int) -> None:
    assert severity(level) == (number, str(level))


def test_a_line_that_does_not_parse_is_kept_whole() -> None:
    for line, reason in [
        ("plain text, not json", "not JSON"),
        ('{"truncated": ', "not JSON"),
        ("[1, 2]", "JSON list, not an object"),
        ("", "not JSON"),
    ]:
        record = LogRecord()
        assert not parse_json(record, line)
        assert record.body.string_value == line
        assert attributes(record)["log.parse_error"]["stringValue"].startswith(reason)


def test_ids_that_are_not_w3c_hex_stay_attributes() -> None:
    record = LogRecord()
    parse_json(record, '{"msg": "m", "trace_id": "not-a-trace", "span_id": "0000000000000000"}')
    assert record.trace_id == b""
    assert record.span_id == b""
    assert set(attributes(record)) == {"trace_id", "span_id"}


def test_regex_groups_map_like_json_keys() -> None:
    pattern = re.compile(r"^(?P<time>\S+) (?P<level>[A-Z]+) \[(?P<session_id>[^\]]+)\] (?P<message>.*)$")
    record = LogRecord()
    assert parse_regex(record, "2025-12-03T12:00:00.123Z ERROR [s-9] browser crashed", pattern)
    assert (record.time_unix_nano, record.severity_number) == (NANOS, 17)
    assert record.body.string_value == "browser crashed"
    assert attributes(record) == {"session_id": {"stringValue": "s-9"}}
    other = LogRecord()
    assert not parse_regex(other, "free text", pattern)
    assert other.body.string_value == "free text"


def test_requests_are_keyed_and_carry_the_resource_and_file() -> None:
    sources = [
        LogFileSource(
            include=["a.log"], service_name="email_processor", service_instance_id="ep-1",
            resource={"deployment.environment": "prod"},
        )
    ]  # fmt: skip
    exporter = Exporter(sources, request_bytes=200)
    lines = [f'{{"msg": "{i}"}}'.encode() for i in range(10)] + [b"garbage"]
    batch = exporter.batch([Lines(0, "/var/log/a.log", lines, 0)])
    assert (batch.lines, batch.unparsed) == (11, 1)
    assert len(batch.records) > 1  # cut by request_bytes
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    bodies = []
    for key, value in batch.records:
        assert key == b"email_processor/ep-1"
        request = ExportLogsServiceRequest.FromString(value)
        [resource_logs] = request.resource_logs
        resource = {kv.key: kv.value.string_value for kv in resource_logs.resource.attributes}
        assert resource == {
            "service.name": "email_processor",
            "service.instance.id": "ep-1",
            "deployment.environment": "prod",
        }
        for record in resource_logs.scope_logs[0].log_records:
            assert attributes(record)["log.file.name"] == {"stringValue": "a.log"}
            assert record.observed_time_unix_nano > 0
            bodies.append(record.body.string_value)
    assert bodies == [*map(str, range(10)), "garbage"]


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"include": [], "service_name": "s"}, "at least 1 item"),
        ({"include": ["a"], "service_name": "s", "format": "regex"}, "regex: required"),
        (
            {"include": ["a"], "service_name": "s", "format": "regex", "regex": "(unclosed"},
            "does not compile",
        ),
        ({"include": ["a"], "service_name": "s", "format": "regex", "regex": ".*"}, "named groups"),
        ({"include": ["a"], "service_name": "s", "regex": "(?P<m>.*)"}, "only for format: regex"),
        ({"include": ["a"], "service_name": "s", "start_at": "middle"}, "'end' or 'beginning'"),
        ({"include": ["a"]}, "service_name"),
    ],
)
def test_bad_sources_are_refused_with_the_reason(entry: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(problem)):
        LogFileSource.model_validate(entry)
