"""OTLP/gRPC: TraceService, MetricsService and LogsService on raw bytes.

The handlers take the request undecoded (no request deserializer) so the forwarder can pass the
wire bytes to Kafka as they came. grpc itself enforces the size cap on the decompressed message.

This is grpc's thread-pool server, not grpc.aio: a handler blocks its worker until Kafka answered,
and no call goes through an event loop. Measured with a handler that answers at once
(bench/receiver.py's load, 10 spans x 16 in flight), the thread-pool server served about twice the
calls per second of the aio one and spent about a quarter less CPU per call.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

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

Handler = Callable[[bytes, grpc.ServicerContext], bytes]
# Requests waiting on Kafka at once; more queue in grpc. A blocked worker costs a thread's stack,
# and the OTel SDKs keep one export in flight per process, so this is many agents' worth.
WORKERS = 64


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


def _authorized(auth: BearerAuth, context: grpc.ServicerContext) -> bool:
    authorization = dict(context.invocation_metadata() or ()).get("authorization")
    return auth.allows(authorization if isinstance(authorization, str) else None)


def _export_handler(
    signal: Signal, forwarder: Forwarder, auth: BearerAuth, metrics: ReceiverMetrics
) -> Handler:
    received = metrics.bytes.labels(signal.name, "grpc")

    def export(body: bytes, context: grpc.ServicerContext) -> bytes:
        received.inc(len(body))
        if not auth.required or _authorized(auth, context):
            result = forwarder.export_blocking(signal, body)
        else:
            result = outcome.unauthenticated()
        metrics.observe(signal.name, "grpc", result)
        if result.ok:
            return result.response
        context.set_trailing_metadata(_error_metadata(result))
        context.abort(result.code, result.message)
        raise AssertionError("unreachable: abort raises")

    return export


def otlp_grpc_server(
    forwarder: Forwarder, auth: BearerAuth, metrics: ReceiverMetrics, max_request_bytes: int
) -> grpc.Server:
    """The server with the three OTLP services added; the caller adds its port and starts it."""
    server = grpc.server(
        ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="otlp-grpc"),
        options=[
            ("grpc.max_receive_message_length", max_request_bytes),
            ("grpc.max_send_message_length", 1024 * 1024),
        ],
    )
    server.add_generic_rpc_handlers(
        [
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
    )
    return server
