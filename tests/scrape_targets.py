"""Scrape targets for the tests and the benchmark: a seed-metric exporter and hostile endpoints."""

from __future__ import annotations

import gzip
import hmac
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    make_wsgi_app,
    start_http_server,
)
from prometheus_client.exposition import ThreadingWSGIServer

# Families from the agent-fleet specs (/work/shared/seeds/): PicoClaw, Wundr, OpenClaw, windows_exporter.
_BUCKETS = (0.1, 0.5, 1.0, 5.0)


def seed_registry(scale: int = 1) -> CollectorRegistry:
    """Fixed values, so two scrapers at different moments read the same ones; `scale` copies of the
    labelled families make a bigger target for the benchmark."""
    registry = CollectorRegistry()
    messages = Counter("picoclaw_messages", "Messages handled.", ["channel", "copy"], registry=registry)
    tools = Counter("picoclaw_tool_calls", "Tool calls.", ["tool", "copy"], registry=registry)
    sessions = Gauge("picoclaw_session_count", "Open sessions.", ["copy"], registry=registry)
    response = Histogram(
        "picoclaw_response_time_seconds", "Response time.", ["copy"], buckets=_BUCKETS, registry=registry
    )
    spawned = Counter("wundr_agent_spawned", "Agents spawned.", ["agent_type", "copy"], registry=registry)
    queue = Gauge("wundr_queue_depth", "Queue depth.", ["queue", "copy"], registry=registry)
    tool_time = Summary(
        "wundr_tool_execution_duration_seconds", "Tool time.", ["tool", "copy"], registry=registry
    )
    cost = Gauge("openclaw_session_cost_usd", "Session cost.", ["model", "copy"], registry=registry)
    tokens = Counter("openclaw_session_tokens", "Tokens.", ["model", "type", "copy"], registry=registry)
    disk = Gauge("windows_logical_disk_free_bytes", "Free disk.", ["volume", "copy"], registry=registry)
    cpu = Counter("windows_cpu_time", "CPU time.", ["core", "mode", "copy"], registry=registry)
    for copy in map(str, range(scale)):
        for channel, count in (("telegram", 12), ("discord", 5)):
            messages.labels(channel, copy).inc(count)
        tools.labels("web_search", copy).inc(4)
        sessions.labels(copy).set(3)
        for value in (0.05, 0.3, 0.7, 2.0, 9.0):
            response.labels(copy).observe(value)
        spawned.labels("coder", copy).inc(2)
        queue.labels("tasks", copy).set(17)
        tool_time.labels("bash", copy).observe(1.25)
        cost.labels("claude-sonnet", copy).set(0.42)
        tokens.labels("claude-sonnet", "input", copy).inc(1200)
        disk.labels("C:", copy).set(5.5e10)
        for core in ("0,0", "0,1"):
            cpu.labels(core, "idle", copy).inc(100.5)
    return registry


def serve_registry(registry: CollectorRegistry, port: int, tls: tuple[Path, Path] | None = None) -> Any:
    """prometheus_client's own HTTP server (it negotiates OpenMetrics like any real exporter);
    https with `tls` = (certificate, key) files."""
    cert, key = (str(tls[0]), str(tls[1])) if tls else (None, None)
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry, certfile=cert, keyfile=key)
    return server


def serve_static(body: bytes, content_type: str, port: int) -> Any:
    """A target that answers every scrape with the same prepared `body`: a big target that costs
    its server nothing to render, so a loaded test process never makes it time out."""

    def app(_environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    return _serve_wsgi(app, port)


def _serve_wsgi(app: Callable[..., Any], port: int) -> Any:
    server = make_server("127.0.0.1", port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *_args: Any) -> None:
        pass


def serve_guarded(registry: CollectorRegistry, port: int, authorizations: Iterable[str]) -> Any:
    """An exporter that answers 401 unless the Authorization header is one of `authorizations`."""
    accepted = [a.encode() for a in authorizations]
    inner = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        given = environ.get("HTTP_AUTHORIZATION", "").encode()
        if not any(hmac.compare_digest(given, a) for a in accepted):
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"missing or wrong credentials\n"]
        return inner(environ, start_response)

    return _serve_wsgi(app, port)


_GARBAGE = b"\x00\x01 this is { not an exposition \xff\n"
_DUPLICATES = b'agent_dupe{a="1"} 1\nagent_dupe{a="1"} 2\nagent_dupe{a="2"} 3\n'
_SPECIAL = b"agent_nan NaN\nagent_inf +Inf\nagent_ninf -Inf\n"
_BAD_NAME = b'agent-bad{a="1"} 1\n'


class HostileHandler(BaseHTTPRequestHandler):
    """Each path misbehaves its own way: /slow /error /garbage /huge /duplicates /special /bad-name /gzip,
    and /timestamped: a sample whose explicit timestamp never changes and one whose goes back a
    second at each scrape (the first is a repeat, the second out of order, from the second scrape)."""

    def log_message(self, *_args: Any) -> None:  # quiet test output
        pass

    def _send(self, body: bytes, status: int = 200, gzipped: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
            body = gzip.compress(body)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        try:
            if path == "/slow":
                time.sleep(3)
                self._send(b"agent_slow 1\n")
            elif path == "/error":
                self._send(b"internal error\n", status=500)
            elif path == "/garbage":
                self._send(_GARBAGE)
            elif path == "/huge":  # a 1 GiB body, streamed: only what the scraper reads is ever made
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                line = b'agent_huge{pad="' + b"x" * 1000 + b'"} 1\n'
                for _ in range(1024**3 // len(line)):
                    self.wfile.write(line)
            elif path == "/duplicates":
                self._send(_DUPLICATES)
            elif path == "/special":
                self._send(_SPECIAL)
            elif path == "/bad-name":
                self._send(_BAD_NAME)
            elif path == "/gzip":
                self._send(b"agent_gzipped 42\n", gzipped=True)
            elif path == "/timestamped":
                server = cast(HostileServer, self.server)
                server.timestamped += 1
                served, fixed = server.timestamped, int(server.started * 1000)
                self._send(f"agent_fixed 1 {fixed}\nagent_back {served} {fixed - served * 1000}\n".encode())
            else:
                self._send(b"not found\n", status=404)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the scraper hung up (timeout, size limit): exactly what is being tested


class HostileServer(ThreadingHTTPServer):
    daemon_threads = True
    started = 0.0  # /timestamped's fixed timestamp
    timestamped = 0  # how often /timestamped was served


def serve_hostile(port: int) -> HostileServer:
    server = HostileServer(("127.0.0.1", port), HostileHandler)
    server.started = time.time()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
