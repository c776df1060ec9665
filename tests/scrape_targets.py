"""Scrape targets for the tests and the benchmark: a seed-metric exporter and hostile endpoints."""

from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, start_http_server

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


def serve_registry(registry: CollectorRegistry, port: int) -> Any:
    """prometheus_client's own HTTP server (it negotiates OpenMetrics like any real exporter)."""
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    return server


_GARBAGE = b"\x00\x01 this is { not an exposition \xff\n"
_DUPLICATES = b'agent_dupe{a="1"} 1\nagent_dupe{a="1"} 2\nagent_dupe{a="2"} 3\n'
_SPECIAL = b"agent_nan NaN\nagent_inf +Inf\nagent_ninf -Inf\n"
_BAD_NAME = b'agent-bad{a="1"} 1\n'


class HostileHandler(BaseHTTPRequestHandler):
    """Each path misbehaves its own way: /slow /error /garbage /huge /duplicates /special /bad-name /gzip."""

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
            else:
                self._send(b"not found\n", status=404)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the scraper hung up (timeout, size limit): exactly what is being tested


def serve_hostile(port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), HostileHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
