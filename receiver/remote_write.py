"""Prometheus Remote-Write 1.0: `POST /api/v1/write`, snappy-compressed `prometheus.WriteRequest`.

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
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

from receiver import outcome
from receiver.auth import BearerAuth
from receiver.forward import Forwarder
from receiver.outcome import Outcome
from receiver.signals import METRICS
from receiver.telemetry import ReceiverMetrics
from schemas.prometheus import convert_write_request
from schemas.prometheus_remote_pb2 import WriteRequest

PATH = "/api/v1/write"
TRANSPORT = "remote_write"


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


async def _write(request: web.Request, forwarder: Forwarder, auth: BearerAuth) -> Outcome:
    if not auth.allows(request.headers.get("Authorization")):
        return outcome.unauthenticated()
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if request.content_type != "application/x-protobuf" or encoding != "snappy":
        return outcome.unsupported_media(
            "remote-write needs Content-Type application/x-protobuf and Content-Encoding snappy"
        )
    limit = request.client_max_size
    try:
        body = _inflate(await request.read(), limit)
        write = WriteRequest.FromString(body)
        converted, _samples = convert_write_request(write)
    except web.HTTPRequestEntityTooLarge:
        return outcome.too_large(f"request body exceeds {limit} bytes")
    except OverflowError as err:
        return outcome.too_large(str(err))
    except DecodeError as err:
        return outcome.invalid(f"cannot decode prometheus.WriteRequest: {err}")
    except ValueError as err:
        return outcome.invalid(str(err))
    result = await forwarder.export(METRICS, converted.SerializeToString())
    if result.ok:
        partial = ExportMetricsServiceResponse.FromString(result.response).partial_success
        if partial.rejected_data_points:
            return outcome.invalid(partial.error_message)
    return result


def remote_write_handler(
    forwarder: Forwarder, auth: BearerAuth, metrics: ReceiverMetrics
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        if request.content_length:
            metrics.bytes.labels(METRICS.name, TRANSPORT).inc(request.content_length)
        result = await _write(request, forwarder, auth)
        metrics.observe(METRICS.name, TRANSPORT, result)
        if result.ok:
            return web.Response(status=204)
        headers = {}
        if result.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(result.retry_after)))
        return web.Response(status=result.http_status, text=result.message + "\n", headers=headers)

    return handle
