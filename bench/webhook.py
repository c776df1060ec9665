"""The benches' Alertmanager-webhook receiver: every alert of every POST, with its arrival time.

A webhook POST is Alertmanager's notification of one aggregation group (`groupKey`); each alert in
it is kept as one `Arrival`, so a bench can count deliveries per group, alert and status.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Arrival:
    path: str
    at_ms: int
    alert: dict[str, Any]
    group: str = ""  # the notification's groupKey


class Webhook:
    """An HTTP server on 127.0.0.1:`port` answering 200 to every POST; `close()` stops it."""

    def __init__(self, port: int) -> None:
        self.arrivals: list[Arrival] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                at_ms = int(time.time() * 1000)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                group = str(body.get("groupKey", ""))
                with hook.lock:
                    hook.arrivals.extend(Arrival(self.path, at_ms, a, group) for a in body["alerts"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def received(self) -> list[Arrival]:
        with self.lock:
            return list(self.arrivals)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
