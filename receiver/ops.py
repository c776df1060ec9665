"""The ops port: /healthz (the process serves), /readyz (Kafka reachable), /metrics (Prometheus)."""

from __future__ import annotations

import os

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from receiver.readiness import KafkaReadiness
from receiver.telemetry import ReceiverMetrics


def ops_app(readiness: KafkaReadiness, metrics: ReceiverMetrics) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text=f"ok {os.getpid()}\n")  # the pid: `up` tells its receiver from another

    async def readyz(_request: web.Request) -> web.Response:
        if readiness.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {readiness.reason}\n")

    async def prometheus(_request: web.Request) -> web.Response:
        metrics.kafka_ready.set(1 if readiness.ready else 0)
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", prometheus)
    return app
