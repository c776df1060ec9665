"""OTLP/gRPC: TraceService, MetricsService and LogsService on raw bytes.

The handlers take the request undecoded (no request deserializer) so the forwarder can pass the
wire bytes to Kafka as they came. grpc itself enforces the size cap on the decompressed message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status

from receiver import outcome
from receiver.auth import BearerAuth
from receiver.forward import Forwarder
from receiver.outcome import Outcome
from receiver.signals import SIGNALS, Signal
from receiver.telemetry import ReceiverMetrics

Handler = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]


def _error_metadata(result: Outcome) -> tuple[tuple[str, bytes], ...]:
    """RetryInfo twice: in the standard rich status, and under the key the Python SDK reads."""
    if result.retry_after is None:
        return ()
    retry = RetryInfo(
        retry_delay=Duration(seconds=int(result.retry_after), nanos=int(result.retry_after % 1 * 1e9))
    )
    detail = AnyProto()
    detail.Pack(retry)
    status = Status(code=result.code.value[0], message=result.message, details=[detail])
    return (
        ("grpc-status-details-bin", status.SerializeToString()),
        ("google.rpc.retryinfo-bin", retry.SerializeToString()),
    )


def _export_handler(
    signal: Signal, forwarder: Forwarder, auth: BearerAuth, metrics: ReceiverMetrics
) -> Handler:
    async def export(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        metrics.bytes.labels(signal.name, "grpc").inc(len(body))
        authorization = dict(context.invocation_metadata() or ()).get("authorization")
        if auth.allows(authorization if isinstance(authorization, str) else None):
            result = await forwarder.export(signal, body)
        else:
            result = outcome.unauthenticated()
        metrics.observe(signal.name, "grpc", result)
        if result.ok:
            return result.response
        await context.abort(result.code, result.message, trailing_metadata=_error_metadata(result))
        raise AssertionError("unreachable: abort raises")

    return export


def add_otlp_services(
    server: grpc.aio.Server, forwarder: Forwarder, auth: BearerAuth, metrics: ReceiverMetrics
) -> None:
    handlers = [
        grpc.method_handlers_generic_handler(
            signal.service,
            {
                "Export": grpc.unary_unary_rpc_method_handler(
                    _export_handler(signal, forwarder, auth, metrics)
                )
            },
        )
        for signal in SIGNALS.values()
    ]
    server.add_generic_rpc_handlers(handlers)
