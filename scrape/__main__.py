"""`python -m scrape [--config FILE]`: run the Prometheus scraper in the foreground.

With `scrape.processes` > 1 it runs one process per shard (each told its shard by
$TALONFLOW_SCRAPE_SHARD) and exits as soon as one of them does, stopping the others, so that
supervisord restarts them together. Shard I scrapes the targets whose hash falls to it
(Prometheus' hashmod) and serves /healthz and /metrics on `ops_port + I`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from functools import partial
from typing import Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from receiver.producer import make_producer
from schemas.config import TalonflowConfig
from scrape.scraper import ScrapeMetrics, Shard
from talonflow.serving import load_service_config, run_service, serve_config

SHARD_ENV: Final = "TALONFLOW_SCRAPE_SHARD"  # set by the parent process for each shard
PARENT_ENV: Final = "TALONFLOW_SCRAPE_PARENT"  # the parent's pid: a shard stops when it is gone


def ops_app(metrics: ScrapeMetrics) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text=f"ok {os.getpid()}\n")  # the pid: health checks tell their process

    async def prometheus(_request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus)
    return app


async def _stop_when_orphaned(stop: asyncio.Event, parent: int) -> None:
    """A parent killed with SIGKILL cannot stop its shards, and supervisord's restart would then find
    their ports taken and their targets scraped twice: a shard whose parent is gone stops itself."""
    while not stop.is_set():
        if os.getppid() != parent:
            logging.getLogger("scrape").error("parent process %d is gone: stopping this shard", parent)
            stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def run_shard(config: TalonflowConfig, stop: asyncio.Event, shard: int = 0) -> None:
    settings = config.scrape
    parent = os.environ.get(PARENT_ENV)
    watchdog = asyncio.create_task(_stop_when_orphaned(stop, int(parent))) if parent else None
    metrics = ScrapeMetrics()
    producer = make_producer(config.kafka, config.receiver.producer)
    runner = web.AppRunner(ops_app(metrics), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.ops_host, settings.ops_port + shard).start()
        address = f"{settings.ops_host}:{settings.ops_port + shard}"
        jobs_count = len(config.scrape_configs)
        logging.getLogger("scrape").info(
            "scraper shard %d/%d: %d jobs, ops %s", shard, settings.processes, jobs_count, address
        )
        jobs = config.scrape_configs
        limit = config.kafka.max_message_bytes
        await Shard(jobs, shard, settings.processes, producer, metrics, limit).run(stop)
    finally:
        if watchdog is not None:
            watchdog.cancel()
        await runner.cleanup()
        producer.close()


def _run_shards(argv: list[str], processes: int) -> int:
    """One child per shard; the first to exit ends the rest, and its code is ours."""
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "scrape", *argv],
            env={**os.environ, SHARD_ENV: str(i), PARENT_ENV: str(os.getpid())},
        )
        for i in range(processes)
    ]
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while all(child.poll() is None for child in children):
        time.sleep(0.5)
    for child in children:
        if child.poll() is None:
            child.terminate()
    codes = [child.wait() for child in children]
    return 0 if stopping else next((c for c in codes if c), 1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    shard = os.environ.get(SHARD_ENV)
    if shard is not None:
        return run_service("scrape", partial(run_shard, shard=int(shard)), argv, __doc__)
    loaded = load_service_config("scrape", argv, __doc__)
    if isinstance(loaded, int):
        return loaded
    processes = loaded[0].scrape.processes
    if processes == 1:  # the config is read: serve it, not read it again
        return serve_config("scrape", partial(run_shard, shard=0), loaded[0])
    return _run_shards(argv, processes)


if __name__ == "__main__":
    sys.exit(main())
