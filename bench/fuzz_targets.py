"""The fuzz targets: one per decoder or parser reachable from the network or a config file.

Each takes the fuzzer's bytes, calls the very function its entry point calls (the receiver's
gRPC and HTTP handlers over a real Forwarder, the scraper's parse and convert, the tailer's line
parsers, the query API's PromQL parser, the rule-file and config loaders) and returns the answer
a client would see: "200", "400", "up", "refused"... A refusal without a message, or an answer
the entry point must never give (a 5xx, an exception of another type), raises Misbehaviour;
anything else that escapes is a crash. Where a target needs a choice the bytes do not carry
(signal, content type, compression), the first byte picks it, so the corpus can hold every kind.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import cramjam
import grpc
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http import HttpVersion11, RawRequestMessage
from aiohttp.streams import StreamReader
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc.status_pb2 import Status
from multidict import CIMultiDict, CIMultiDictProxy
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from yarl import URL

from console.alertmanager import _posted as posted_alert
from promql.errors import ParseError, Unsupported
from promql.parser import parse as parse_promql
from receiver.auth import BearerAuth
from receiver.forward import Forwarder
from receiver.grpc_server import SERVICES, ExportCalls
from receiver.http_server import JSON, PROTOBUF, inflate_gzip, json_to_protobuf, otlp_http_app
from receiver.outcome import Outcome
from receiver.producer import Records, Settled
from receiver.readiness import KafkaReadiness
from receiver.remote_write import PATH as REMOTE_WRITE_PATH
from receiver.remote_write_v2 import PROTO_V1, PROTO_V2
from receiver.signals import SIGNALS, Signal
from receiver.telemetry import ReceiverMetrics
from rules.loader import load_groups
from rules.templates import TemplateContext
from schemas.config import ConfigError, load_config
from schemas.prometheus import ScrapeConverter
from schemas.prometheus_rules import PromRuleFileError
from scrape.parse import OPENMETRICS
from scrape.parse import parse as parse_exposition
from tailer.records import parse_json, parse_regex

SIGNAL_LIST: tuple[Signal, ...] = tuple(SIGNALS.values())
# Small enough that a gzip or snappy bomb from a 4 KiB input reaches 413, and that the split by
# resource and scope (receiver/split.py) runs on fuzz-sized requests.
HTTP_LIMIT = 64 * 1024
RECORD_LIMIT = 2048
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
# A tailer `pattern` as the config's examples write one: named groups become fields.
LOG_PATTERN = re.compile(r"^(?P<time>\S+) (?P<level>\w+) (?P<message>.*)$")


class Misbehaviour(AssertionError):
    """An answer the entry point must never give, although nothing crashed."""


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], str]  # the verdict: the status code or outcome a client would see
    about: str


def _refusal(err: Exception, answer: str) -> str:
    """`answer` for a refusal that says why; one without a message is a Misbehaviour."""
    if not str(err).strip():
        raise Misbehaviour(f"{type(err).__name__} without a message") from err
    return answer


def _head(data: bytes) -> tuple[int, bytes]:
    return (data[0], data[1:]) if data else (0, b"")


class _Accepting:
    """Kafka that acknowledges every record at once, so every answer comes from the decoding."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.sent.append((topic, value))

    def send_then(self, topic: str, records: Records, settled: Settled) -> None:
        self.sent.extend((topic, value) for _, value in records)
        settled([])

    def close(self, timeout: float = 10.0) -> None:
        self.sent.clear()


class _Ready:
    """The broker answers and every topic exists (KafkaReadiness' interface, without a broker)."""

    ready = True
    reason = ""

    def retry_after(self, floor: float, ceiling: float) -> float:
        return floor


class _NeverPaused(BaseProtocol):
    """The connection as Request and StreamReader see it: plain TCP, the body fed whole."""

    ssl_context = None
    peername = ("127.0.0.1", 33500)
    sockname = ("127.0.0.1", 4318)


class Receiver:
    """The receiver's HTTP app and gRPC handlers over one Forwarder, in one event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.producer = _Accepting()
        metrics = ReceiverMetrics()
        readiness = cast(KafkaReadiness, _Ready())
        forwarder = Forwarder(self.producer, readiness, metrics, RECORD_LIMIT, (2.0, 30.0))
        auth = BearerAuth(None)
        self.app = otlp_http_app(forwarder, auth, metrics, HTTP_LIMIT)
        self.grpc = ExportCalls(forwarder, auth, metrics, self._answered)
        self.grpc_answers: dict[int, Outcome] = {}

    def _answered(self, call_id: int, result: Outcome) -> None:
        self.grpc_answers[call_id] = result

    def post(self, path: str, headers: dict[str, str], body: bytes) -> web.Response:
        return self.loop.run_until_complete(self._post(path, headers, body))

    async def _post(self, path: str, headers: dict[str, str], body: bytes) -> web.Response:
        self.producer.sent.clear()
        payload = StreamReader(_NeverPaused(self.loop), 2**20, loop=self.loop)
        payload.feed_data(body)
        payload.feed_eof()
        # A Request as aiohttp's server builds one from the parsed head; make_mocked_request would
        # build a dozen unittest.mock objects per case, 88 % of a case's time.
        head = CIMultiDict({**headers, "Content-Length": str(len(body))})
        message = RawRequestMessage(
            "POST", path, HttpVersion11, CIMultiDictProxy(head), (), False, None, False, False, URL(path)
        )
        protocol = _NeverPaused(self.loop)
        request = web.Request(
            message, payload, cast(Any, protocol), cast(Any, None), cast(Any, None), self.loop,
            client_max_size=HTTP_LIMIT,
        )  # fmt: skip
        match = await self.app.router.resolve(request)
        request._match_info = match  # what aiohttp's server sets before calling the handler
        return cast(web.Response, await match.handler(request))

    def export_grpc(self, signal: Signal, body: bytes) -> tuple[grpc.StatusCode, str, bytes]:
        self.producer.sent.clear()
        self.grpc.handle(0, SERVICES.index(signal), body, None)  # Kafka here answers at once
        result = self.grpc_answers.pop(0)
        return result.code, result.message, result.response

    def check_records(self, signal: Signal, request: bytes | None, response: Message | None) -> None:
        """Every record sent to Kafka is a whole request of the signal, as the ingest flow reads it;
        given the request and response, its items were each sent once or rejected (partial_success)."""
        sent = 0
        for topic, value in self.producer.sent:
            if topic != signal.topic:
                raise Misbehaviour(f"{signal.name} request produced to {topic}")
            sent += _items(signal, signal.request.FromString(value))
        if request is not None and response is not None:
            rejected = getattr(response.partial_success, signal.partial_success_field)
            total = _items(signal, signal.request.FromString(request))
            if sent + rejected != total:
                raise Misbehaviour(f"{total} items in, {sent} sent to Kafka and {rejected} rejected")


def _items(signal: Signal, request: Message) -> int:
    resources = getattr(request, signal.resources_field)
    return sum(signal.count_items(getattr(r, signal.scopes_field)) for r in resources)


_RECEIVER: Receiver | None = None


def receiver() -> Receiver:
    """One per process: ReceiverMetrics and the event loop are built once, as in the receiver."""
    global _RECEIVER
    if _RECEIVER is None:
        _RECEIVER = Receiver()
    return _RECEIVER


def _check_http(response: web.Response, signal: Signal, content_type: str) -> tuple[str, Message]:
    """The OTLP/HTTP answer: 200 with the signal's response, or a 4xx with a google.rpc.Status."""
    status, body = response.status, cast(bytes, response.body)
    if status not in (200, 400, 413, 415):
        raise Misbehaviour(f"OTLP/HTTP answered {status}")
    if content_type == JSON:
        message = json_format.Parse(body, signal.response() if status == 200 else Status())
    else:
        message = (signal.response if status == 200 else Status).FromString(body)
    if status != 200 and not cast(Status, message).message:
        raise Misbehaviour(f"OTLP/HTTP {status} without a message")
    return str(status), message


def otlp_grpc(data: bytes) -> str:
    head, body = _head(data)
    signal = SIGNAL_LIST[head % 3]
    code, details, response = receiver().export_grpc(signal, body)
    if code is grpc.StatusCode.OK:
        receiver().check_records(signal, body, signal.response.FromString(response))
    elif code is not grpc.StatusCode.INVALID_ARGUMENT or not details:
        raise Misbehaviour(f"OTLP/gRPC answered {code.name} {details!r}")
    return code.name


def _otlp_http(data: bytes, content_type: str, encoding: str) -> str:
    head, body = _head(data)
    signal = SIGNAL_LIST[head % 3]
    headers = {"Content-Type": content_type, "Content-Encoding": encoding}
    verdict, message = _check_http(receiver().post(f"/v1/{signal.name}", headers, body), signal, content_type)
    if verdict == "200":  # the request as the receiver read it, to count its items
        raw = inflate_gzip(body, HTTP_LIMIT) if encoding == "gzip" else body
        receiver().check_records(
            signal, json_to_protobuf(signal, raw) if content_type == JSON else raw, message
        )
    return verdict


def otlp_http_protobuf(data: bytes) -> str:
    return _otlp_http(data, PROTOBUF, "identity")


def otlp_http_json(data: bytes) -> str:
    return _otlp_http(data, JSON, "identity")


def otlp_http_gzip(data: bytes) -> str:
    """The gzip layer: the bytes are the compressed body; the head's bit 2 picks JSON."""
    return _otlp_http(data, JSON if data[:1] and data[0] & 4 else PROTOBUF, "gzip")


def remote_write(data: bytes) -> str:
    """Head bit 0: 2.0 rather than 1.0; bit 1: the bytes are the snappy body itself, rather than the
    protobuf the harness compresses (so both the snappy layer and the decoders are reached)."""
    head, body = _head(data)
    proto = PROTO_V2 if head & 1 else PROTO_V1
    if not head & 2:
        body = bytes(cramjam.snappy.compress_raw(body))
    headers = {"Content-Type": f"application/x-protobuf;proto={proto}", "Content-Encoding": "snappy"}
    response = receiver().post(REMOTE_WRITE_PATH, headers, body)
    status = response.status
    if status == 204:
        if proto == PROTO_V2 and "X-Prometheus-Remote-Write-Samples-Written" not in response.headers:
            raise Misbehaviour("2.0 answered without X-Prometheus-Remote-Write-Samples-Written")
        receiver().check_records(SIGNALS["metrics"], None, None)
    elif status not in (400, 413, 415) or not (response.text or "").strip():
        raise Misbehaviour(f"remote-write answered {status} {response.text!r}")
    return str(status)


def alertmanager_alerts(data: bytes) -> str:
    """POST /api/v2/alerts as the console's Alertmanager API reads it (json, then each alert):
    400 with the alert and field named, never a 500."""
    try:
        raw = json.loads(data.decode("utf-8"))  # aiohttp's request.json(): a ValueError is 400
    except ValueError:
        return "400"
    if not isinstance(raw, list):
        return "400"
    now = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)
    for item in raw:
        try:
            posted_alert(item, now, timedelta(minutes=5))
        except ValueError as err:
            return _refusal(err, "400")
    return "200"


def exposition(data: bytes) -> str:
    """Parse and convert a scrape body as the scraper does; ValueError fails the scrape (up 0)."""
    head, raw = _head(data)
    content_type = f"{OPENMETRICS}; version=1.0.0" if head & 1 else TEXT_FORMAT
    text = raw.decode("utf-8", errors="replace")  # as scrape/fetch.py reads a body
    target = {"job": "fuzz", "instance": "127.0.0.1:33500", "env": "prod"}
    try:
        parsed = parse_exposition(text, content_type, target, False, ())
        converter = ScrapeConverter("fuzz", "127.0.0.1:33500", 1_700_000_000_000, True)
        for family in parsed.families:
            converter.add_family(family)
        converter.serialize()
    except ValueError as err:
        return _refusal(err, "down")
    return "up"


def log_line(data: bytes) -> str:
    """One line as the tailer reads it: JSON, or the head's bit 0 picks a regex `pattern`."""
    head, raw = _head(data)
    line = raw.decode("utf-8", errors="replace").rstrip("\r")  # as tailer/export.py
    record = LogRecord()
    parsed = parse_regex(record, line, LOG_PATTERN) if head & 1 else parse_json(record, line)
    LogRecord.FromString(record.SerializeToString())
    return "parsed" if parsed else "unparsed"


def promql(data: bytes) -> str:
    """A `query` parameter as the Prometheus API parses it: 400 when invalid, 501 when unsupported."""
    try:
        parse_promql(data.decode("utf-8", errors="replace"))
    except Unsupported:
        return "501"
    except ParseError as err:
        return _refusal(err, "400")
    return "200"


_SCRATCH: dict[str, Path] = {}


def _scratch(suffix: str) -> Path:
    """A file on tmpfs the loaders read as they read the user's file: by path."""
    if suffix not in _SCRATCH:
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
        handle, name = tempfile.mkstemp(suffix=suffix, dir=folder)
        os.close(handle)
        _SCRATCH[suffix] = Path(name)
    return _SCRATCH[suffix]


def rule_file(data: bytes) -> str:
    """`talonflow rules check` and the alerts flow: refused (exit 1) with every problem named."""
    path = _scratch(".rules.yml")
    path.write_bytes(data)
    try:
        load_groups([path], TemplateContext())
    except PromRuleFileError as err:
        return _refusal(err, "refused")
    return "loaded"


def config_file(data: bytes) -> str:
    """talonflow.yaml as every part loads it: refused (exit 2) with the key named."""
    path = _scratch(".talonflow.yaml")
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError as err:
        return _refusal(err, "refused")
    return "loaded"


def remove_scratch() -> None:
    for path in _SCRATCH.values():
        path.unlink(missing_ok=True)
    _SCRATCH.clear()


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("otlp_grpc", otlp_grpc, "OTLP/gRPC Export handlers (protobuf, split, Kafka records)"),
        Target("otlp_http_protobuf", otlp_http_protobuf, "POST /v1/{signal}, application/x-protobuf"),
        Target("otlp_http_json", otlp_http_json, "POST /v1/{signal}, OTLP/JSON"),
        Target("otlp_http_gzip", otlp_http_gzip, "POST /v1/{signal}, Content-Encoding: gzip"),
        Target("remote_write", remote_write, "POST /api/v1/write, 1.0 and 2.0, snappy"),
        Target("alertmanager_alerts", alertmanager_alerts, "POST /api/v2/alerts (amtool, Prometheus)"),
        Target("exposition", exposition, "scrape bodies: text 0.0.4 and OpenMetrics 1.0"),
        Target("log_line", log_line, "tailed log lines: JSON and regex patterns"),
        Target("promql", promql, "the query API's PromQL parser"),
        Target("rule_file", rule_file, "Prometheus rule files (rules check, alerts flow)"),
        Target("config_file", config_file, "talonflow.yaml"),
    )
}
