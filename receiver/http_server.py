"""OTLP/HTTP: POST /v1/traces, /v1/metrics, /v1/logs with protobuf or JSON bodies, gzip or not.

Bodies are inflated here rather than by aiohttp, which answers a corrupt gzip stream with an empty
body: that would turn a broken request into a silent success. Inflating stops one byte past the
size limit, so a gzip bomb costs at most the limit in memory and ends as 413.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.rpc.status_pb2 import Status

from receiver import outcome
from receiver.auth import BearerAuth
from receiver.forward import Forwarder
from receiver.outcome import Outcome
from receiver.remote_write import PATH as REMOTE_WRITE_PATH
from receiver.remote_write import remote_write_handler
from receiver.signals import SIGNALS, Signal
from receiver.telemetry import ReceiverMetrics

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# OTLP/JSON writes these bytes fields as hex, where protobuf's JSON mapping expects base64.
_HEX_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId"})


def _hex_ids_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                base64.b64encode(bytes.fromhex(value)).decode()
                if key in _HEX_ID_FIELDS and isinstance(value, str)
                else _hex_ids_to_base64(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    return node


def json_to_protobuf(signal: Signal, body: bytes) -> bytes:
    """An OTLP/JSON request as protobuf bytes; ValueError when it is not one."""
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"invalid OTLP/JSON: {err}") from err
    if not isinstance(document, dict):  # ParseDict raised TypeError on 5, took [] for {}: bench/fuzz.py
        raise ValueError(f"invalid OTLP/JSON: expected an object, not {type(document).__name__}")
    try:
        message = json_format.ParseDict(
            _hex_ids_to_base64(document), signal.request(), ignore_unknown_fields=True
        )
    except (binascii.Error, json_format.ParseError) as err:
        raise ValueError(f"invalid OTLP/JSON: {err}") from err
    except ValueError as err:  # bytes.fromhex
        raise ValueError(f"invalid OTLP/JSON id: {err}") from err
    return message.SerializeToString()


def _reply(result: Outcome, signal: Signal, content_type: str) -> web.Response:
    """The response in the request's encoding; errors carry a google.rpc.Status as the spec says."""
    if result.ok:
        message: Any = signal.response.FromString(result.response)
    else:
        message = Status(code=result.code.value[0], message=result.message)
    headers = {}
    if result.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(result.retry_after)))
    if content_type == JSON:
        body = json_format.MessageToJson(message, indent=None).encode()
    else:
        body, content_type = message.SerializeToString(), PROTOBUF
    return web.Response(status=result.http_status, body=body, content_type=content_type, headers=headers)


def _export_handler(signal: Signal, forwarder: Forwarder, auth: BearerAuth, metrics: ReceiverMetrics) -> Any:
    async def export(request: web.Request) -> web.Response:
        content_type = request.content_type
        if request.content_length:
            metrics.bytes.labels(signal.name, "http").inc(request.content_length)
        if not auth.allows(request.headers.get("Authorization")):
            result = outcome.unauthenticated()
        elif content_type not in (PROTOBUF, JSON):
            result = outcome.unsupported_media(
                f"unsupported content type {content_type!r}; use {PROTOBUF} or {JSON}"
            )
        else:
            result = await _forward(signal, forwarder, request, content_type)
        metrics.observe(signal.name, "http", result)
        return _reply(result, signal, content_type)

    return export


def inflate_gzip(body: bytes, limit: int) -> bytes:
    """gunzip at most `limit` bytes; ValueError for a corrupt or truncated stream, OverflowError past it."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as err:
        raise ValueError(f"invalid gzip body: {err}") from err
    if len(data) > limit:
        raise OverflowError(f"decompressed body exceeds {limit} bytes")
    if not inflater.eof:
        raise ValueError("invalid gzip body: truncated stream")
    return data


async def _forward(signal: Signal, forwarder: Forwarder, request: web.Request, content_type: str) -> Outcome:
    limit = request.client_max_size
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        return outcome.unsupported_media(f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    try:
        body = await request.read()
        if encoding == "gzip":
            body = inflate_gzip(body, limit)
    except web.HTTPRequestEntityTooLarge:
        return outcome.too_large(f"request body exceeds {limit} bytes")
    except OverflowError as err:
        return outcome.too_large(str(err))
    except ValueError as err:
        return outcome.invalid(str(err))
    if content_type == JSON:
        try:
            body = json_to_protobuf(signal, body)
        except ValueError as err:
            return outcome.invalid(str(err))
    return await forwarder.export(signal, body)


def otlp_http_app(
    forwarder: Forwarder, auth: BearerAuth, metrics: ReceiverMetrics, max_request_bytes: int
) -> web.Application:
    app = web.Application(client_max_size=max_request_bytes)
    for signal in SIGNALS.values():
        app.router.add_post(f"/v1/{signal.name}", _export_handler(signal, forwarder, auth, metrics))
    app.router.add_post(REMOTE_WRITE_PATH, remote_write_handler(forwarder, auth, metrics))
    return app
