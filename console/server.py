"""`build_app(config)`: the console's aiohttp application, and `serve` to run it on its port.

One port for the pages, the Prometheus HTTP API and the Alertmanager API v2 subset, behind
the same optional bearer token or basic auth and TLS.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from aiohttp import web

from console.alertmanager import add_alertmanager_api
from console.auth import auth_middleware
from console.malloc_tuning import pin_mmap_threshold
from console.pages import CONFIG, add_pages, bad_input
from console.prometheus_api import add_prometheus_api
from console.warmer import Warmer
from schemas.config import TalonflowConfig

HERE = Path(__file__).parent
UPLOT = HERE / "web" / "node_modules" / "uplot" / "dist"  # installed by `make setup` (npm ci)


async def healthz(_request: web.Request) -> web.Response:
    """`ok <pid>`: the pid tells `talonflow status` that the supervised process is the one answering."""
    return web.Response(text=f"ok {os.getpid()}\n")


def build_app(config: TalonflowConfig) -> web.Application:
    app = web.Application(middlewares=[auth_middleware(config.console), bad_input])
    app[CONFIG] = config
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/static", HERE / "static")
    if UPLOT.is_dir():
        app.router.add_static("/vendor/uplot", UPLOT)
    add_pages(app)
    add_alertmanager_api(app, config)
    add_prometheus_api(app, config)
    return app


async def serve(config: TalonflowConfig, stop: asyncio.Event) -> None:
    """Serves until `stop`; meanwhile builds the pages' per-file caches as files land (console/warmer.py)."""
    pin_mmap_threshold()  # before the warmer's first pass: its growing lists fragmented the heap
    warmer = Warmer(config) if config.console.warm_interval > 0 else None
    if warmer is not None:
        warmer.start()
    runner = web.AppRunner(build_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(
        runner,
        config.console.host,
        config.console.port,
        ssl_context=tls.server_context() if (tls := config.console.tls) else None,
    )
    await site.start()
    logging.getLogger("console").info("serving on %s", config.console.url)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        if warmer is not None:
            warmer.stop()
