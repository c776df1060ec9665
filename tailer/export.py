"""Lines of a poll → OTLP ExportLogsServiceRequest Kafka records, keyed like the receiver's.

One request per resource (a source's `service.name`, `service.instance.id` and extra attributes)
and per `request_bytes` of lines, keyed `<service.name>/<service.instance.id>` as
receiver/split.py keys every record, so the ingest flow reads them as it reads any agent's.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs

from schemas.tailer import LogFileSource
from schemas.topics import SERVICE_INSTANCE_ID, SERVICE_NAME
from tailer.files import Lines
from tailer.records import FILE_NAME, FILE_PATH, parse_json, parse_regex

SCOPE_NAME = "talonflow.tailer"


@dataclass
class Batch:
    """The Kafka records of one poll and what they hold."""

    records: list[tuple[bytes, bytes]]  # (key, OTLP request)
    lines: int
    unparsed: int


def _text(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


class Exporter:
    """Builds the requests; one per source's resource, so a file's lines keep their order."""

    def __init__(self, sources: list[LogFileSource], request_bytes: int) -> None:
        self.sources = sources
        self.request_bytes = request_bytes
        self._patterns = [re.compile(s.regex) if s.regex else None for s in sources]

    def key(self, source: int) -> bytes:
        config = self.sources[source]
        return f"{config.service_name}/{config.service_instance_id}".encode()

    def _resource_logs(self, source: int) -> ResourceLogs:
        config = self.sources[source]
        resource = ResourceLogs()
        resource.resource.attributes.extend(
            [
                _text(SERVICE_NAME, config.service_name),
                _text(SERVICE_INSTANCE_ID, config.service_instance_id),
                *(_text(k, v) for k, v in config.resource.items()),
            ]
        )
        resource.scope_logs.add().scope.name = SCOPE_NAME
        return resource

    def batch(self, polled: list[Lines]) -> Batch:
        observed = time.time_ns()
        records: list[tuple[bytes, bytes]] = []
        lines = unparsed = 0
        for source in sorted({chunk.source for chunk in polled}):
            request = ExportLogsServiceRequest()
            request.resource_logs.append(self._resource_logs(source))
            size = 0
            for chunk in (c for c in polled if c.source == source):
                file_attributes = ((FILE_NAME, Path(chunk.path).name), (FILE_PATH, chunk.path))
                overhead = 64 + 2 * len(chunk.path)  # a record's framing, times and file attributes
                log_records = request.resource_logs[-1].scope_logs[0].log_records
                for raw in chunk.lines:
                    if size and size + len(raw) + overhead > self.request_bytes:
                        records.append((self.key(source), request.SerializeToString()))
                        request = ExportLogsServiceRequest()
                        request.resource_logs.append(self._resource_logs(source))
                        log_records = request.resource_logs[-1].scope_logs[0].log_records
                        size = 0
                    record = log_records.add()
                    unparsed += self._parse(source, record, raw)
                    record.observed_time_unix_nano = observed
                    for name, value in file_attributes:
                        entry = record.attributes.add()
                        entry.key = name
                        entry.value.string_value = value
                    size += len(raw) + overhead
                lines += len(chunk.lines)
            records.append((self.key(source), request.SerializeToString()))
        return Batch(records, lines, unparsed)

    def _parse(self, source: int, record: LogRecord, raw: bytes) -> int:
        """Fill `record` from one line; 1 when the line did not parse (it is kept as the body)."""
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        pattern = self._patterns[source]
        parsed = parse_json(record, line) if pattern is None else parse_regex(record, line, pattern)
        return int(not parsed)
