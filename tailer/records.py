"""One log line → one OTLP LogRecord: JSON lines or a regex with named groups, mapped like filelog.

The field names are the ones agent loggers write (pino, structlog, zap, logrus, Python's
json loggers): a time under `time`/`timestamp`/`ts`/`@timestamp`, a level, a message, W3C
trace context, and the agent specs' correlation ids, which stay attributes under their own names
so that `talonflow query` filters on `attributes['session_id']`. A line that does not parse is
kept whole as the body, with `log.parse_error` saying why: never dropped.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

TIME_KEYS: Final = ("time", "timestamp", "ts", "@timestamp")
LEVEL_KEYS: Final = ("level", "severity", "lvl", "loglevel", "log.level")
MESSAGE_KEYS: Final = ("message", "msg")
TRACE_ID_KEYS: Final = ("trace_id", "traceId", "trace.id")
SPAN_ID_KEYS: Final = ("span_id", "spanId", "span.id")
# The agent specs' correlation ids: plain attributes, named as the agents name them.
CORRELATION_KEYS: Final = ("correlation_id", "request_id", "session_id", "agent_id", "task_id")
PARSE_ERROR: Final = "log.parse_error"
FILE_NAME: Final = "log.file.name"  # as the filelog receiver's include_file_name
FILE_PATH: Final = "log.file.path"

# OTel severity numbers (logs data model): the first of each range.
_SEVERITY_TEXT: Final = {
    "trace": 1, "debug": 5, "info": 9, "information": 9, "notice": 10, "warn": 13, "warning": 13,
    "error": 17, "err": 17, "critical": 21, "crit": 21, "fatal": 21, "panic": 21, "alert": 22,
    "emergency": 23, "emerg": 23,
}  # fmt: skip
# pino and bunyan write numbers: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal.
_SEVERITY_PINO: Final = {10: 1, 20: 5, 30: 9, 40: 13, 50: 17, 60: 21}
_HEX = re.compile(r"[0-9a-fA-F]+")
_FRACTION = re.compile(r"\d\d:\d\d[.,](\d+)")
_UINT64 = 2**64


def severity(level: Any) -> tuple[int, str]:
    """(OTel severity number, severity text) of a level as loggers write it; (0, text) if unknown."""
    if isinstance(level, bool):
        return 0, str(level)
    if isinstance(level, int):
        if level in _SEVERITY_PINO:
            return _SEVERITY_PINO[level], str(level)
        return (level if 1 <= level <= 24 else 0), str(level)
    text = str(level)
    return _SEVERITY_TEXT.get(text.strip().lower(), 0), text


def epoch_nanos(value: Any) -> int | None:
    """Unix nanoseconds of an RFC 3339 text or an epoch number (s, ms, µs or ns by magnitude).

    Numbers go through Decimal: a float of seconds times 1e9 would be off by tens of ns.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value).strip()
    try:
        number = Decimal(text)
    except InvalidOperation:
        return _rfc3339_nanos(text)
    if not number.is_finite() or number <= 0 or number >= _UINT64:  # before int() of "1e999999999"
        return None
    scale = 10**9 if number < 10**11 else 10**6 if number < 10**14 else 10**3 if number < 10**17 else 1
    return _in_range(int(number * scale))


def _in_range(nanos: int) -> int | None:
    """None outside 1970 to 2554, the times OTLP's fixed64 can hold (protobuf raises on the rest)."""
    return nanos if 0 <= nanos < _UINT64 else None


def _rfc3339_nanos(text: str) -> int | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None  # a local time without offset is ambiguous: keep it as an attribute
    fraction = _FRACTION.search(text)  # datetime keeps µs; Go and zap write ns
    nanos = int(fraction.group(1)[:9].ljust(9, "0")) if fraction else 0
    return _in_range(int(parsed.replace(microsecond=0).timestamp()) * 1_000_000_000 + nanos)


def _hex_id(value: Any, length: int) -> bytes | None:
    if isinstance(value, str) and len(value) == length and _HEX.fullmatch(value) and value.strip("0"):
        return bytes.fromhex(value)
    return None


def set_value(out: AnyValue, value: Any) -> None:
    """Write a JSON value into an OTLP AnyValue in place, nesting kept (objects as kvlists).

    In place rather than building messages and copying them in: per attribute, a copy was
    most of the time a line took.
    """
    if isinstance(value, str):
        out.string_value = value
    elif isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        if -(2**63) <= value < 2**63:
            out.int_value = value
        else:
            out.string_value = str(value)
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, dict):
        values = out.kvlist_value.values
        for key, item in value.items():
            entry = values.add()
            entry.key = str(key)
            set_value(entry.value, item)
    elif isinstance(value, list):
        array = out.array_value.values
        for item in value:
            set_value(array.add(), item)
    # null: an empty AnyValue, as OTLP represents it


def _first(fields: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for key in keys:
        if key in fields:
            return key, fields[key]
    return None, None


def fill(record: LogRecord, fields: dict[str, Any]) -> None:
    """Map parsed fields onto `record`; a field that does not fit its slot stays an attribute."""
    fields = dict(fields)
    key, value = _first(fields, TIME_KEYS)
    if key is not None and (nanos := epoch_nanos(value)) is not None:
        record.time_unix_nano = nanos
        del fields[key]
    key, value = _first(fields, LEVEL_KEYS)
    if key is not None and value is not None:
        record.severity_number, record.severity_text = severity(value)  # type: ignore[assignment]
        del fields[key]
    key, value = _first(fields, MESSAGE_KEYS)
    if key is not None:
        set_value(record.body, value)
        del fields[key]
    for keys, length, slot in ((TRACE_ID_KEYS, 32, "trace_id"), (SPAN_ID_KEYS, 16, "span_id")):
        key, value = _first(fields, keys)
        if key is not None and (raw := _hex_id(value, length)) is not None:
            setattr(record, slot, raw)
            del fields[key]
    attributes = record.attributes
    for name, value in fields.items():
        entry = attributes.add()
        entry.key = name
        set_value(entry.value, value)


def unparsed(record: LogRecord, line: str, reason: str) -> None:
    record.body.string_value = line
    entry = record.attributes.add()
    entry.key = PARSE_ERROR
    entry.value.string_value = reason


def parse_json(record: LogRecord, line: str) -> bool:
    """Fill `record` from a JSON line; False when it was kept unparsed."""
    try:
        fields = json.loads(line)
    except ValueError as err:
        unparsed(record, line, f"not JSON: {err}")
        return False
    if not isinstance(fields, dict):
        unparsed(record, line, f"JSON {type(fields).__name__}, not an object")
        return False
    fill(record, fields)
    return True


def parse_regex(record: LogRecord, line: str, pattern: re.Pattern[str]) -> bool:
    """Fill `record` from the regex's named groups; False when the line did not match."""
    match = pattern.search(line)
    if match is None:
        unparsed(record, line, "no match for the source's regex")
        return False
    fill(record, {k: v for k, v in match.groupdict().items() if v is not None})
    return True
