"""Wires the receiver: gRPC and HTTP front ends, one forwarder, one producer, the ops port."""

from __future__ import annotations

import asyncio
import logging
import ssl
from contextlib import AsyncExitStack

from aiohttp import web

from receiver.auth import BearerAuth
from receiver.forward import Forwarder
from receiver.grpc_server import OtlpGrpcServer
from receiver.http_server import otlp_http_app
from receiver.ops import ops_app
from receiver.producer import make_producer
from receiver.readiness import KafkaReadiness
from receiver.telemetry import ReceiverMetrics
from schemas.config import Endpoint, TalonflowConfig

log = logging.getLogger("receiver")


async def _stop_grpc(server: OtlpGrpcServer, grace: float) -> None:
    """Let the calls in flight finish (they wait on Kafka, not on this loop), off the event loop."""
    await asyncio.to_thread(server.stop, grace)


async def _start_http(
    stack: AsyncExitStack, app: web.Application, endpoint: Endpoint, context: ssl.SSLContext | None
) -> None:
    runner = web.AppRunner(app, access_log=None, auto_decompress=False)  # see http_server
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, endpoint.host, endpoint.port, ssl_context=context).start()


async def serve(config: TalonflowConfig, stop: asyncio.Event) -> None:
    """Run until `stop` is set, then drain in-flight requests and flush Kafka.

    Whatever fails on the way up (a port in use, say) still stops what had started: a gRPC server
    or a producer thread left running would keep the process alive.
    """
    receiver = config.receiver
    metrics = ReceiverMetrics()
    async with AsyncExitStack() as stack:
        readiness = KafkaReadiness(config.kafka.bootstrap_servers)
        readiness.start()
        stack.callback(readiness.stop)
        producer = make_producer(config.kafka, receiver.producer)
        stack.callback(producer.close)
        forwarder = Forwarder(
            producer,
            readiness,
            metrics,
            config.kafka.max_message_bytes,
            (receiver.retry_after, receiver.retry_after_max),
        )
        auth = BearerAuth(receiver.bearer_token)

        tls = receiver.tls.server_context() if receiver.tls else None  # bad files: said before grpc
        grpc_server = OtlpGrpcServer(
            forwarder, auth, metrics, receiver.grpc.address, receiver.max_request_bytes, receiver.tls
        )
        stack.push_async_callback(_stop_grpc, grpc_server, 5)
        otlp_http = otlp_http_app(forwarder, auth, metrics, receiver.max_request_bytes)
        await _start_http(stack, otlp_http, receiver.http, tls)
        await _start_http(stack, ops_app(readiness, metrics), receiver.ops, None)
        log.info(
            "receiver listening: OTLP/gRPC %s, OTLP/HTTP %s, ops %s (auth %s, tls %s)",
            receiver.grpc.address,
            receiver.http.address,
            receiver.ops.address,
            "on" if receiver.bearer_token else "off",
            "on" if tls else "off",
        )
        await stop.wait()
        log.info("receiver stopping: draining requests")
