"""OTLP/gRPC: TraceService, MetricsService and LogsService behind the native front door.

HTTP/2, TLS and gRPC framing run in Rust (native/src/grpc_serve.rs) on a thread of their own; the
receiver's logic stays here. One dispatcher thread takes the complete calls in batches (waiting
without the GIL), checks the token and hands each to the Forwarder without waiting on Kafka; the
call is answered from Kafka's delivery callback. grpcio's Python server cost 220-360 us of CPU
per call before any work (README, "Against the OpenTelemetry Collector"), several times the
receiver's own work on a small request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from grpc import StatusCode
from talonflow_native import GrpcServer

from receiver import outcome
from receiver.auth import BearerAuth
from receiver.forward import Forwarder
from receiver.outcome import Outcome
from receiver.signals import LOGS, METRICS, TRACES
from receiver.telemetry import ReceiverMetrics
from schemas.tls import TlsConfig

log = logging.getLogger("receiver.grpc")

SERVICES = (TRACES, METRICS, LOGS)  # as the front door numbers them (grpc_wire.rs, METHODS)
BATCH = 256  # calls taken from the front door at once
INTERNAL = StatusCode.INTERNAL.value[0]


def error_details(result: Outcome) -> list[tuple[str, bytes]]:
    """RetryInfo twice: in the standard rich status, and under the key the Python SDK reads."""
    if result.retry_after is None:
        return []
    retry = RetryInfo(
        retry_delay=Duration(seconds=int(result.retry_after), nanos=int(result.retry_after % 1 * 1e9))
    )
    detail = AnyProto()
    detail.Pack(retry)
    status = Status(code=result.code.value[0], message=result.message, details=[detail])
    return [
        ("grpc-status-details-bin", status.SerializeToString()),
        ("google.rpc.retryinfo-bin", retry.SerializeToString()),
    ]


class ExportCalls:
    """One call's way through the receiver: count, check the token, forward, count the answer and
    give it to `answer` (call id, outcome) once Kafka has answered."""

    def __init__(
        self,
        forwarder: Forwarder,
        auth: BearerAuth,
        metrics: ReceiverMetrics,
        answer: Callable[[int, Outcome], object],
    ) -> None:
        self._forwarder = forwarder
        self._auth = auth
        self._metrics = metrics
        self._answer = answer
        self._received = [metrics.bytes.labels(s.name, "grpc") for s in SERVICES]

    def handle(self, call_id: int, service: int, body: bytes, authorization: str | None) -> None:
        signal = SERVICES[service]
        self._received[service].inc(len(body))

        def done(result: Outcome) -> None:
            self._metrics.observe(signal.name, "grpc", result)
            self._answer(call_id, result)

        if self._auth.allows(authorization):
            self._forwarder.export_then(signal, body, done)
        else:
            done(outcome.unauthenticated())


class OtlpGrpcServer:
    """Serves from construction (the port is bound by then) until `stop`."""

    def __init__(
        self,
        forwarder: Forwarder,
        auth: BearerAuth,
        metrics: ReceiverMetrics,
        address: str,
        max_request_bytes: int,
        tls: TlsConfig | None = None,
    ) -> None:
        pem = (tls.cert_file.read_bytes(), tls.key_file.read_bytes()) if tls else (None, None)
        self._native = GrpcServer(address, max_request_bytes, *pem)
        self._calls = ExportCalls(forwarder, auth, metrics, self._answer)
        self._dispatcher = threading.Thread(target=self._dispatch, name="otlp-grpc-dispatch", daemon=True)
        self._dispatcher.start()

    @property
    def port(self) -> int:
        return self._native.port

    def _answer(self, call_id: int, result: Outcome) -> None:
        code = result.code.value[0]
        self._native.answer(call_id, code, result.message, result.response, error_details(result))

    def _dispatch(self) -> None:
        while (calls := self._native.take(BATCH)) is not None:
            for call_id, service, body, authorization in calls:
                try:
                    self._calls.handle(call_id, service, body, authorization)
                except Exception:  # a bug: fail this call, keep serving the others
                    log.exception("gRPC call %d failed", call_id)
                    self._native.answer(call_id, INTERNAL, "internal error", b"", [])

    def stop(self, grace: float) -> None:
        """Stop accepting, let the calls in flight finish for up to `grace` s, then end."""
        self._native.stop(grace)
        self._dispatcher.join()
