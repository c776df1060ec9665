"""Prometheus Remote-Write 1.0 and 2.0: `POST /api/v1/write`, snappy-compressed protobuf.

The Content-Type's `proto` parameter picks the message: none or `prometheus.WriteRequest` is 1.0,
`io.prometheus.write.v2.Request` is 2.0 (read as the 1.0 request it carries, remote_write_v2.py,
and answered with the `X-Prometheus-Remote-Write-*-Written` headers); any other is 415.

Samples become OTLP with the same converter as scraped ones (schemas/prometheus.py) and take the
OTLP path into Kafka (forward.py), so keys, record limits and acknowledgements are the same. The
answers are the spec's: 204 once Kafka acknowledged everything, 400 for data that can never be
written (Prometheus drops it rather than retrying), 413 past `max_request_bytes` (checked
against snappy's length header before inflating, so a bomb costs nothing), and 503 / 429 with
Retry-After while Kafka cannot take it (Prometheus retries those, so nothing is lost).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import cramjam
from aiohttp import web
from aiohttp.helpers import parse_mimetype
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

from receiver import outcome
from receiver.auth import BearerAuth
from receiver.forward import Forwarder
from receiver.outcome import Outcome
from receiver.remote_write_v2 import PROTO_V1, PROTO_V2, Decoded, to_v1
from receiver.signals import METRICS
from receiver.telemetry import ReceiverMetrics
from schemas.prometheus import convert_write_request
from schemas.prometheus_remote_pb2 import WriteRequest
from schemas.prometheus_remote_v2_pb2 import Request

PATH = "/api/v1/write"
TRANSPORT = "remote_write"
_WRITTEN = "X-Prometheus-Remote-Write"


def _inflate(body: bytes, limit: int) -> bytes:
    """Snappy block format, as the spec requires; OverflowError past `limit`, ValueError if corrupt."""
    try:
        length = cramjam.snappy.decompress_raw_len(body)
    except cramjam.DecompressionError as err:
        raise ValueError(f"invalid snappy body: {err}") from err
    if length > limit:
        raise OverflowError(f"decompressed body of {length} bytes exceeds {limit} bytes")
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as err:
        raise ValueError(f"invalid snappy body: {err}") from err


def _proto(request: web.Request) -> str | None:
    """The message the Content-Type names (1.0 when it names none), or None when it is not one."""
    mimetype = parse_mimetype(request.headers.get("Content-Type", ""))
    if f"{mimetype.type}/{mimetype.subtype}" != "application/x-protobuf":
        return None
    proto = mimetype.parameters.get("proto", PROTO_V1)
    return proto if proto in (PROTO_V1, PROTO_V2) else None


def _decode(body: bytes, proto: str) -> Decoded:
    if proto == PROTO_V1:
        write = WriteRequest.FromString(body)
        return Decoded(write, histograms=0, exemplars=0)
    return to_v1(Request.FromString(body))


async def _write(
    request: web.Request, forwarder: Forwarder, auth: BearerAuth, written: dict[str, str]
) -> Outcome:
    """The answer; `written` gets 2.0's X-Prometheus-Remote-Write-*-Written headers."""
    if not auth.allows(request.headers.get("Authorization")):
        return outcome.unauthenticated()
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    proto = _proto(request)
    if proto is None or encoding != "snappy":
        return outcome.unsupported_media(
            "remote-write needs Content-Type application/x-protobuf (proto=prometheus.WriteRequest or "
            "proto=io.prometheus.write.v2.Request) and Content-Encoding snappy"
        )
    limit = request.client_max_size
    try:
        body = _inflate(await request.read(), limit)
        decoded = _decode(body, proto)
        converted, samples = convert_write_request(decoded.write)
    except web.HTTPRequestEntityTooLarge:
        return outcome.too_large(f"request body exceeds {limit} bytes")
    except OverflowError as err:
        return outcome.too_large(str(err))
    except DecodeError as err:
        return outcome.invalid(f"cannot decode {proto}: {err}")
    except ValueError as err:
        return outcome.invalid(str(err))
    result = await forwarder.export(METRICS, converted.SerializeToString())
    if not result.ok:
        return result
    partial = ExportMetricsServiceResponse.FromString(result.response).partial_success
    if proto == PROTO_V2:
        written[f"{_WRITTEN}-Samples-Written"] = str(samples - partial.rejected_data_points)
        written[f"{_WRITTEN}-Histograms-Written"] = written[f"{_WRITTEN}-Exemplars-Written"] = "0"
    if partial.rejected_data_points:
        return outcome.invalid(partial.error_message)
    if decoded.histograms:
        return outcome.invalid(f"{decoded.histograms} native histograms not written: not supported")
    return result


def remote_write_handler(
    forwarder: Forwarder, auth: BearerAuth, metrics: ReceiverMetrics
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        if request.content_length:
            metrics.bytes.labels(METRICS.name, TRANSPORT).inc(request.content_length)
        headers: dict[str, str] = {}
        result = await _write(request, forwarder, auth, headers)
        metrics.observe(METRICS.name, TRANSPORT, result)
        if result.ok:
            return web.Response(status=204, headers=headers)
        if result.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(result.retry_after)))
        return web.Response(status=result.http_status, text=result.message + "\n", headers=headers)

    return handle
